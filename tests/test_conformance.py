"""One suite of checks for every registered task (in the spirit of scikit-learn's ``parametrize_with_checks``): a task
added to :data:`grokscope.tasks.TASKS` is tested by being registered. Each check runs a seconds-long config built
from the task's own ``tiny`` options: K = 2 models train, resume bit-exactly after an interrupt, run every method
flag (or refuse it in one line), log to TensorBoard, draw their report, and export to TransformerLens; and every
bad value of its options is refused in one line (the task's cases of tests/fuzz_cli.py)."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grokscope import Config, Run
from grokscope.checks import ConfigError
from grokscope.tasks import TASKS
from grokscope.training import resume, train

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = sorted(TASKS)
#: every method flag of the trainer, as config fields
METHODS = {
    "grokfast-ema": {"grokfast": "ema"},
    "grokfast-ma": {"grokfast": "ma", "grokfast_window": 2},
    "orthoadamw": {"optimizer": "orthoadamw"},
    "muon": {"optimizer": "muon"},
    "stablemax": {"loss": "stablemax"},
    "norm-constraint": {"norm_constraint": 0.8, "weight_decay": 0.0},
    "l1": {"l1": 1e-3},
    "dropout": {"dropout": 0.2},
    "float32-loss": {"loss_dtype": "float32"},
    "bfloat16-loss": {"loss_dtype": "bfloat16"},
}


def tiny(name: str, **kw) -> Config:
    cls = TASKS[name]
    shape = {"d_model": 8, "n_heads": 2, "n_layers": 1, "epochs": 5, "test_every": 1, "checkpoint_every": 2}
    if cls.defaults.get("d_mlp", 1) != 0:
        shape["d_mlp"] = 16
    return Config(task=name, **{**cls.tiny, **shape, **kw})


def configs(name: str, **kw) -> list[Config]:
    return [tiny(name, seed=s, **kw) for s in (0, 1)]


@pytest.mark.parametrize("name", NAMES)
def test_task_describes_its_model_and_data(name):
    task = tiny(name).make_task()
    ex = task.test_set()
    T = task.n_ctx
    assert ex.tokens.shape == ex.targets.shape == ex.mask.shape and ex.tokens.shape[1] == T
    assert int(ex.tokens.min()) >= 0 and int(ex.tokens.max()) < task.d_vocab
    assert (ex.mask.sum(1) == task.n_scored).all()  # the same scored count in every example
    assert int(ex.targets[ex.mask].max()) < task.n_out
    train_set = task.train_set()
    assert (train_set is None) == task.infinite
    again = tiny(name).make_task().test_set()
    assert torch.equal(ex.tokens, again.tokens)  # seeded
    assert TASKS[name].summary and TASKS[name].tiny


@pytest.mark.parametrize("name", NAMES)
def test_k_models_train_and_resume_bit_exactly(name, tmp_path):
    a = train(configs(name), tmp_path / "a", progress=False)
    assert a.K == 2 and a.checkpoint_epochs == [0, 2, 4, 5]
    m = a.metrics
    assert sorted(m["model"].unique()) == [0, 1] and int(m["epoch"].max()) == 5
    assert np.isfinite(m["train_loss"]).all() and np.isfinite(m.dropna(subset=["test_loss"])["test_loss"]).all()
    # the two models are different models (seeds), trained together
    assert not m[m.model == 0]["train_loss"].reset_index(drop=True).equals(m[m.model == 1]["train_loss"].reset_index(drop=True))
    train(configs(name), tmp_path / "b", progress=False, until=3)
    b = resume(tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
    for k, v in a.stacked_params().items():
        assert torch.equal(v, b.stacked_params()[k]), k
    assert Run.load(tmp_path / "a").configs == configs(name)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("name", NAMES)
def test_every_method_trains_or_refuses_in_one_line(name, method, tmp_path):
    try:
        cs = configs(name, epochs=3, **METHODS[method])
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and name in msg and "invalid" in msg, msg
        return
    run = train(cs, tmp_path / "r", progress=False)
    m = run.metrics
    assert int(m["epoch"].max()) == 3 and np.isfinite(m["train_loss"]).all(), method


@pytest.mark.parametrize("name", NAMES)
def test_tensorboard_log(name, tmp_path):
    pytest.importorskip("tensorboard") if not os.environ.get("GROKSCOPE_REQUIRE_LOGGERS") else None
    from grokscope.report.tracking import MetricsLogger

    cs = configs(name)
    log = MetricsLogger("tensorboard", tmp_path / "logs", "r", {"models": [c.to_dict() for c in cs]})
    try:
        train(cs, tmp_path / "r", progress=False, log=log)
    finally:
        log.close()
    assert list((tmp_path / "logs").rglob("events.out.tfevents*"))


@pytest.mark.parametrize("name", NAMES)
def test_report_is_drawn(name, tmp_path):
    pytest.importorskip("plotly")
    train(configs(name, epochs=4), tmp_path / "r", progress=False)
    out = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "report", str(tmp_path / "r"), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000 and "<html" in out.read_text()[:500].lower()


@pytest.mark.parametrize("name", NAMES)
def test_export_to_transformer_lens(name, tmp_path):
    if not os.environ.get("GROKSCOPE_REQUIRE_TL"):
        pytest.importorskip("transformer_lens")
    run = train(configs(name, epochs=2), tmp_path / "r", progress=False)
    ours = run.model(model=1)
    tl = run.to_transformer_lens(model=1)
    tokens = run.configs[1].make_task().test_set().tokens[:4]
    with torch.no_grad():
        want, got = ours(tokens), tl(tokens)
    scale = float(want.abs().max())
    assert math.isfinite(scale) and float((got - want).abs().max()) <= 1e-5 * max(scale, 1.0)


@pytest.mark.parametrize("command", ["analyze", "progress", "forecast"])
@pytest.mark.parametrize("name", NAMES)
def test_every_subcommand_works_or_refuses_in_one_line(name, command, tmp_path, capsys):
    from grokscope.cli import main

    train(configs(name, epochs=4), tmp_path / "r", progress=False)
    argv = [command, str(tmp_path / "r")] + (["--until", "4"] if command == "forecast" else [])
    rc = main(argv)
    err = capsys.readouterr().err
    if TASKS[name].pair_form:
        assert rc == 0, err
    else:
        assert rc == 2 and err.count("\n") == 1 and f"its task {name} is not a modular task" in err


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_of_the_task_are_one_line_exit_2_nothing_written(name, tmp_path):
    """tests/fuzz_cli.py's cases of this task (:func:`fuzz_cli.task_cases`: bad values of each of its options,
    of its model's shape and length, memory beyond the machine, another task's option): each refused in one line
    naming the field, exit code 2, nothing written."""
    from fuzz_cli import run_case, task_cases

    cases = task_cases(name)
    assert len(cases) >= 15
    unclean = []
    for i, case in enumerate(cases):
        d = tmp_path / f"c{i}"
        d.mkdir()
        ok, why = run_case(case, {}, d)
        if not ok:
            unclean.append(f"{' '.join(case[1])}: {why}")
    assert unclean == []
