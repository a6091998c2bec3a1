"""Every bad input and damaged run file of tests/fuzz_cli.py (its cases of the registered tasks: in
tests/test_conformance.py), on every subcommand: exit code 2, one line naming
the field or file, no traceback, nothing written (issue #11)."""

import pytest
from fuzz_cli import CASES, make_bases, run_case


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return make_bases(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def base_run(bases):
    return bases["run"]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{' '.join(c[1][:1] + c[1][-2:])}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_nothing_written(case, bases, tmp_path):
    ok, why = run_case(case, bases, tmp_path)
    assert ok, why


def test_the_checker_can_fail(base_run, tmp_path):
    """run_case is not vacuous: a good command (exit 0, writes analysis.json) is not clean."""
    ok, why = run_case(("analyze", ["analyze", "{run}"], None, "x"), base_run, tmp_path)
    assert not ok and "exit 0" in why


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``grokscope experiment list | head -1``: the reader leaves early; no traceback and no error line."""
    import subprocess
    import sys
    # a listing of 4 MB, far more than a pipe holds, so the writer does meet the closed pipe
    code = ("import sys; import grokscope.cli.experiment as r; r.listing = lambda: 'seeds\\n' + 'x' * 4_000_000; "
            "from grokscope.cli import main; sys.exit(main(['experiment', 'list']))")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})
    first = p.stdout.readline()
    p.stdout.close()  # as head does after its line
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert first.startswith(b"seeds") and err == "", err
    assert rc == 141


# ---------------------------------------------------------------------- issue #35: experiments, loggers
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from fuzz_cli import snapshot  # noqa: E402

from grokscope.cli import main  # noqa: E402

EXP = ["experiment", "seeds", "--tiny", "--epochs", "3", "--seeds", "0", "--no-progress", "--no-report"]


def _one_line(capsys, rc: int, expect: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("grokscope: error: ") and err.count("\n") == 1, (rc, err)
    assert expect in err, err
    return err


@pytest.fixture(scope="module")
def finished_experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "e"
    assert main(EXP + ["--out", str(out)]) == 0
    return out


def _edit_plan(fn):
    def f(out: Path) -> None:
        meta = json.loads((out / "experiment.json").read_text())
        fn(meta)
        (out / "experiment.json").write_text(json.dumps(meta))
    return f


def _set(path: str, data: str | bytes):
    return lambda out: (out / path).write_bytes(data if isinstance(data, bytes) else data.encode())


PLAN_DAMAGE = {
    "truncated": lambda out: (out / "experiment.json").write_text((out / "experiment.json").read_text()[:50]),
    "empty": _set("experiment.json", ""),
    "a list": _set("experiment.json", "[1, 2]"),
    "no groups": _edit_plan(lambda m: m.pop("groups")),
    "no experiment": _edit_plan(lambda m: m.pop("experiment")),
    "tampered group name": _edit_plan(lambda m: m["groups"][0].update(name="01")),
    "group name outside": _edit_plan(lambda m: m["groups"][0].update(name="../../elsewhere")),
    "bad model field": _edit_plan(lambda m: m["groups"][0]["models"][0].update(lr="abc")),
    "unknown model field": _edit_plan(lambda m: m["groups"][0]["models"][0].update(zzz=1)),
    "models not a list": _edit_plan(lambda m: m["groups"][0].update(models=3)),
}


@pytest.mark.parametrize("damage", sorted(PLAN_DAMAGE))
def test_a_damaged_experiment_plan_is_one_line_naming_it(finished_experiment, tmp_path, capsys, damage):
    """Before: "internal error" (JSONDecodeError, TypeError, KeyError), exit 1; a tampered group name was refused
    with a message about --tiny; a bad field inside a model config did not name the file."""
    out = tmp_path / "e"
    shutil.copytree(finished_experiment, out)
    PLAN_DAMAGE[damage](out)
    before = snapshot(out)
    _one_line(capsys, main(EXP + ["--out", str(out)]), f"{out / 'experiment.json'} is damaged")
    assert snapshot(out) == before
    from grokscope.config import ConfigError
    from grokscope.experiments import Experiment
    if damage != "tampered group name":  # the plan alone is sound; it differs from what the options give
        with pytest.raises(ConfigError, match="experiment.json is damaged"):
            Experiment.load(out)


@pytest.mark.parametrize("which", ["groups/00/summary.parquet", "summary.parquet"])
@pytest.mark.parametrize("data", [b"", b"PAR1junk"])
def test_a_damaged_summary_is_one_line_naming_it(finished_experiment, tmp_path, capsys, which, data):
    """Before: a damaged finished group's summary.parquet was "internal error" (ArrowInvalid), exit 1."""
    out = tmp_path / "e"
    shutil.copytree(finished_experiment, out)
    (out / which).write_bytes(data)
    from grokscope.config import ConfigError
    from grokscope.experiments import Experiment
    if which == "summary.parquet":
        with pytest.raises(ConfigError, match="summary.parquet is damaged"):
            Experiment.load(out).summary
    else:
        _one_line(capsys, main(EXP + ["--out", str(out)]), f"{out / which} is damaged")


@pytest.mark.parametrize("extra,expect", [
    (["--device", "cuda"], "device='cuda' is invalid"),
    (["--epochs", str(10**13)], "memory"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "address='127.0.0.1:1' is invalid"),
    (["--executor", "ray", "--address", "no address"], "address='no address' is invalid"),
])
def test_a_refused_experiment_writes_nothing_and_the_corrected_command_works(tmp_path, capsys, extra, expect):
    """Before: experiment.json was written before the memory check, before finding no CUDA and before a bad Ray
    address failed; the corrected command on the same --out was then refused (another plan)."""
    import time

    import torch
    if extra[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if "ray" in extra:
        pytest.importorskip("ray")
    out = tmp_path / "e"
    t0 = time.perf_counter()
    argv = [a for a in EXP if a not in ("--epochs", "3")] if "--epochs" in extra else EXP
    _one_line(capsys, main(argv + ["--out", str(out)] + extra), expect)
    assert time.perf_counter() - t0 < 60  # an unreachable Ray address: seconds, not Ray's 14 minutes of retries
    assert not out.exists()
    out.mkdir()  # an empty folder given as --out is left empty too
    main(argv + ["--out", str(out)] + extra)
    capsys.readouterr()
    assert list(out.iterdir()) == []
    assert main(EXP + ["--out", str(out)]) == 0


TRAIN_TINY = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "4", "--frac-train",
              "0.5", "--checkpoint-every", "2", "--no-progress"]


@pytest.mark.parametrize("log", ["wandb", "tensorboard"])
@pytest.mark.parametrize("extra,expect", [(["--device", "cuda"], "device="), (["--epochs", str(10**13)], "memory")])
def test_log_creates_no_folder_before_the_run_is_refused(tmp_path, capsys, monkeypatch, log, extra, expect):
    """Before: --log wandb created its folder (and a W&B run) before the memory and device checks refused."""
    import torch
    pytest.importorskip("wandb" if log == "wandb" else "tensorboard")
    if extra[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.chdir(tmp_path)
    _one_line(capsys, main(["train", "--out", "r", "--log", log] + TRAIN_TINY + extra), expect)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("log_dir", ["r", "r/logs", "./r/"])
def test_log_dir_in_the_run_directory_is_refused(tmp_path, capsys, monkeypatch, log_dir):
    """Before: --log-dir equal to the run directory wrote the logs into the run."""
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    _one_line(capsys, main(["train", "--out", "r", "--log", "tensorboard", "--log-dir", log_dir] + TRAIN_TINY),
              "log_dir=")
    assert list(tmp_path.iterdir()) == []


def test_train_out_dot_with_a_log_in_an_empty_folder(tmp_path, capsys, monkeypatch):
    """Before: `train --out . --log tensorboard` in an empty folder was an internal error (the default log folder
    "..logs" had no name)."""
    pytest.importorskip("tensorboard")
    d = tmp_path / "here"
    d.mkdir()
    monkeypatch.chdir(d)
    assert main(["train", "--out", ".", "--log", "tensorboard", "--device", "cpu"] + TRAIN_TINY) == 0, \
        capsys.readouterr().err
    assert (d / "config.json").is_file() and list((tmp_path / "here.logs").rglob("events.out.tfevents*"))


# ---------------------------------------------------------------------- issue #35: the rest
def test_a_too_large_grokfast_window_names_grokfast_window(tmp_path, capsys):
    """Before: refused with advice to shrink p, d_model, d_mlp or epochs, which were not the cause."""
    err = _one_line(capsys, main(["train", "--out", str(tmp_path / "r"), "--grokfast", "ma", "--grokfast-window",
                                  str(10**9)] + TRAIN_TINY), "grokfast_window=1000000000 is invalid")
    assert "smaller grokfast_window" in err and "d_model" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["train", "--out", "{tmp}/a\nb"] + TRAIN_TINY,
                                  ["experiment", "seeds", "--tiny", "--out", "{tmp}/e\rx"],
                                  ["analyze", "{run}", "--out", "{tmp}/x\n.json"]])
def test_a_control_character_in_an_output_path_is_refused_in_one_line(base_run, tmp_path, capsys, argv):
    """Before: a newline in --out made a run directory whose name broke every message in two lines."""
    argv = [a.format(tmp=tmp_path, run=base_run) for a in argv]
    _one_line(capsys, main(argv), "control character")
    assert list(tmp_path.iterdir()) == []


def test_a_stray_file_in_a_group_folder_is_not_blamed_on_overwrite(finished_experiment, tmp_path, capsys):
    """Before: "out=... is invalid for --overwrite", an option the user did not give."""
    out = tmp_path / "e"
    shutil.copytree(finished_experiment, out)
    group = out / "groups" / "00"
    shutil.rmtree(group)
    group.mkdir()
    (group / "notes.txt").write_text("mine")
    err = _one_line(capsys, main(EXP + ["--out", str(out)]), "notes.txt")
    assert "overwrite" not in err and "group='00'" in err
    assert [f.name for f in group.iterdir()] == ["notes.txt"]
    (group / "notes.txt").unlink()
    (group / ".lock").write_text("999999999")  # a trainer killed before its first file: no run, a stale lock
    assert main(EXP + ["--out", str(out)]) == 0


def test_the_report_of_a_sequence_run_with_nan_weights_refuses(tmp_path, capsys):
    """Before: a sequence checkpoint of NaN weights got a report without a warning (the modular report refuses)."""
    pytest.importorskip("plotly")
    import torch
    from helpers import tiny
    from safetensors.torch import load_file, save_file

    from grokscope import train
    run = train([tiny("skip_trigram", epochs=10)], tmp_path / "seq", progress=False)
    f = run.path / "checkpoints" / "epoch_000010.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(str(f)).items()}, str(f))
    _one_line(capsys, main(["report", str(run.path), "-o", str(tmp_path / "r.html")]), "weights are not finite")
    assert not (tmp_path / "r.html").exists()
    assert main(["report", str(run.path), "-o", str(tmp_path / "r.html"), "--epoch", "0"]) == 0


@pytest.mark.parametrize("task", ["add", "skip_trigram"])
def test_png_without_a_browser_is_one_line_exit_2_nothing_written(task, tmp_path, capsys, monkeypatch):
    """Before: with kaleido >= 1.0 and no Chrome, ``report --png`` failed at the first figure as an "internal
    error" with an empty message, after creating the folder."""
    pytest.importorskip("plotly")
    pytest.importorskip("kaleido")
    chromium = pytest.importorskip("choreographer.browsers.chromium")
    from helpers import tiny, tiny_config

    from grokscope import train
    monkeypatch.setattr(chromium.Chromium, "find_browser", classmethod(lambda cls, **kw: None))
    cfg = tiny_config(epochs=10) if task == "add" else tiny(task, epochs=10)
    run = train([cfg], tmp_path / "r", progress=False)
    _one_line(capsys, main(["report", str(run.path), "--png", str(tmp_path / "figs")]),
              "needs a local Chrome or Chromium")
    assert not (tmp_path / "figs").exists()
