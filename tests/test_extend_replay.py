"""A finished run trained on (`train --resume RUN --epochs N`) equals one trained to N from the start; a run's
config.json replays it (`train --config`); config.json records the code that trained it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from grokscope.cli import main
from grokscope.training import Run, resume, train

from helpers import tiny, tiny_config


def _same_runs(a: Run, b: Run) -> None:
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    common = sorted(set(a.checkpoint_epochs) & set(b.checkpoint_epochs))
    assert common and common[-1] == b.checkpoint_epochs[-1]
    for e in common:
        x, y = a.stacked_params(e), b.stacked_params(e)
        assert all(torch.equal(x[n], y[n]) for n in x), e


@pytest.mark.parametrize("make", [
    lambda **kw: [tiny_config(seed=s, **kw) for s in (0, 1)],  # full-batch modular, two models
    lambda **kw: [tiny("digit-addition", batch_size=8, **kw)],  # fixed set in minibatches
    lambda **kw: [tiny("repeated-subsequence", n_train=None, batch_size=8, **kw)],  # fresh data every step
], ids=["modular", "minibatch", "infinite"])
def test_extended_run_equals_a_run_trained_through(tmp_path, make):
    short, long_ = make(epochs=27), make(epochs=43)  # 27: the final row is not a test step
    through = train(long_, tmp_path / "through", progress=False)
    ext = train(short, tmp_path / "ext", progress=False)
    assert ext.finished and ext.checkpoint_epochs[-1] == 27
    ext = resume(ext.path, progress=False, epochs=43)
    assert ext.config.epochs == 43 and ext.finished
    _same_runs(ext, through)
    meta = json.loads((ext.path / "config.json").read_text())
    assert [x["to_epochs"] for x in meta["extended"]] == [43] and meta["extended"][0]["from_epochs"] == 27


def test_cli_extend_replay_and_records(tmp_path, capsys):
    flags = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--frac-train", "0.5",
             "--test-every", "5", "--checkpoint-every", "10", "--no-progress"]
    a = tmp_path / "a"
    assert main(["train", "--out", str(a), "--epochs", "20", *flags]) == 0
    meta = json.loads((a / "config.json").read_text())
    assert {"git_commit", "git_dirty", "numpy_version", "pandas_version"} <= set(meta)
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40
    assert main(["train", "--resume", str(a), "--epochs", "10"]) == 2
    assert "--until 10" in capsys.readouterr().err
    assert main(["train", "--resume", str(a), "--epochs", "30", "--seed", "3"]) == 2
    assert main(["train", "--resume", str(a), "--epochs", "30", "--no-progress"]) == 0
    b = tmp_path / "b"
    assert main(["train", "--out", str(b), "--epochs", "30", *flags]) == 0
    _same_runs(Run.load(a), Run.load(b))
    # replay: the same configs, the same numbers
    c = tmp_path / "c"
    assert main(["train", "--config", str(b / "config.json"), "--out", str(c), "--no-progress"]) == 0
    assert Run.load(c).configs == Run.load(b).configs
    _same_runs(Run.load(c), Run.load(b))
    d = tmp_path / "d"
    assert main(["train", "--config", str(b), "--out", str(d), "--seed", "5", "--epochs", "10",
                 "--no-progress"]) == 0
    assert [(x.seed, x.epochs, x.p) for x in Run.load(d).configs] == [(5, 10, 7)]
    capsys.readouterr()
    assert main(["train", "--config", str(b / "config.json")]) == 2  # no --out
    assert main(["train", "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "e")]) == 2
    (tmp_path / "bad.json").write_text("[1, 2")
    assert main(["train", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bad.json" in err and not (tmp_path / "e").exists()


def test_preset_names_follow_their_tasks():
    from grokscope.config import PRESET_ALIASES, PRESETS, preset, preset_key
    from grokscope.tasks import TASKS
    for name, fields in PRESETS.items():
        task = fields.get("task")
        if task is not None and task != "sparse-parity":
            assert name in (f"{task}-finite", f"{task}-infinite"), name  # one scheme: <task>-finite/-infinite
    for old, new in PRESET_ALIASES.items():  # the older names still work
        assert preset_key(old) == new and preset(old.replace("-", "_")) == preset(new)
    assert all("_" not in n for n in list(PRESETS) + list(TASKS))


def test_summary_after_until_names_the_epoch_reached(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "tiny", "--out", str(out), "--until", "20", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "stopped at epoch 20 of 2000" in text and f"--resume {out}" in text
    assert main(["export", str(out)]) == 0  # --to defaults to its one format, --out to a file beside the run
    assert (tmp_path / "r-epoch0-model0.pt").is_file()


def test_every_subcommand_help_has_examples_and_train_has_groups(capsys):
    from grokscope.cli.app import COMMANDS
    for cmd in COMMANDS:
        name = cmd.__name__.rsplit(".", 1)[-1]
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        examples = text.split("examples:\n", 1)[1].splitlines()
        assert examples and all(e.startswith(f"  grokscope {name}") for e in examples if e.strip()), name
    main(["train", "--help"])
    text = capsys.readouterr().out
    for group in ("what to train and where:", "data (the task's fields", "model:", "optimiser and training:",
                  "regularisation and methods beyond the paper:", "stopping", "progress and logging:"):
        assert group in text, group
    assert len(text.split("usage:", 1)[1].split("\n\n")[0].splitlines()) <= 2  # a short usage line


def test_a_second_report_of_an_unchanged_run_is_skipped(tmp_path, capsys):
    pytest.importorskip("plotly")
    out = tmp_path / "r"
    train([tiny_config(epochs=40)], out, progress=False)
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert "figures" in err and "progress measures" in err  # progress shown on stderr
    first = (out / "report.html").stat().st_mtime_ns
    assert main(["report", str(out)]) == 0
    assert "up to date" in capsys.readouterr().out and (out / "report.html").stat().st_mtime_ns == first
    assert main(["report", str(out), "--epoch", "20"]) == 0  # other options: drawn again
    assert "wrote" in capsys.readouterr().out
    resume(out, progress=False, epochs=50)  # the run changed: drawn again
    assert main(["report", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out


def test_ctrl_c_during_the_closing_summary_still_reports_success(tmp_path, monkeypatch, capsys):
    import grokscope.cli.train as cli_train

    def interrupted(run):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_train, "_summary", interrupted)
    assert main(["train", "--preset", "tiny", "--epochs", "20", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "the run is complete" in capsys.readouterr().err and Run.load(tmp_path / "r").finished
