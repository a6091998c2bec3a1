"""`grokscope train --log tensorboard|wandb` (issue #16): every epoch's metrics in the log, the run directory's
files unchanged. Skipped with a message when the extra is absent, unless GROKSCOPE_REQUIRE_LOGGERS=1 (.ci/run)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from fuzz_cli import TINY
from grokscope import Run
from grokscope.cli import main


def need(module: str, extra: str):
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("GROKSCOPE_REQUIRE_LOGGERS") == "1":
            pytest.fail(f"GROKSCOPE_REQUIRE_LOGGERS=1 but {module} is not installed (pip install 'grokscope[{extra}]')")
        pytest.skip(f"{module} not installed (pip install 'grokscope[{extra}]')")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _files(d):
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def test_tensorboard_gets_every_epoch_of_every_model(tmp_path, capsys):
    need("tensorboard", "tensorboard")
    plain, logged = tmp_path / "plain", tmp_path / "logged"
    assert main(["train", "--out", str(plain), "--no-progress", "--seeds", "0,1"] + TINY) == 0
    assert main(["train", "--out", str(logged), "--no-progress", "--seeds", "0,1", "--log", "tensorboard"]
                + TINY) == 0
    assert _files(plain) == _files(logged)  # nothing added to the run directory
    logs = tmp_path / "logged.logs"
    df = Run.load(logged).metrics
    for k in (0, 1):
        s = _scalars(logs / f"model_{k}")
        m = df[df["model"] == k]
        assert [e for e, _ in s["train/loss"]] == m["epoch"].tolist()  # every epoch, once
        assert [v for _, v in s["train/loss"]] == pytest.approx(m["train_loss"].tolist(), rel=1e-6)
        t = m.dropna(subset=["test_acc"])
        assert [e for e, _ in s["test/acc"]] == t["epoch"].tolist()
        assert [v for _, v in s["test/acc"]] == pytest.approx(t["test_acc"].tolist(), rel=1e-6)


def test_tensorboard_log_survives_until_and_resume(tmp_path):
    need("tensorboard", "tensorboard")
    out, logs = tmp_path / "r", tmp_path / "tb"
    assert main(["train", "--out", str(out), "--no-progress", "--until", "15", "--log", "tensorboard",
                 "--log-dir", str(logs)] + TINY) == 0
    assert main(["train", "--resume", str(out), "--no-progress", "--log", "tensorboard", "--log-dir", str(logs)]) == 0
    steps = sorted({e for e, _ in _scalars(logs / "model_0")["train/loss"]})
    assert steps == Run.load(out).metrics["epoch"].tolist()


def test_wandb_offline(tmp_path, monkeypatch):
    need("wandb", "wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--no-progress", "--log", "wandb"] + TINY) == 0
    runs = list((tmp_path / "r.logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert "r.logs" not in _files(out)


def test_wandb_options(tmp_path, monkeypatch):
    from grokscope.report.tracking import wandb_mode
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode(None) == "offline" and wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(None) == "online"
    need("wandb", "wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    seen = {}
    import wandb
    real = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw) or real(**{**kw, "mode": "offline"}))
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--no-progress", "--log", "wandb", "--wandb-project", "mine",
                 "--wandb-entity", "lab"] + TINY) == 0
    assert (seen["project"], seen["entity"], seen["mode"]) == ("mine", "lab", "online")


def test_bad_log_options_are_one_line(tmp_path, capsys):
    out = tmp_path / "r"
    for args, field in ((["--log", "mlflow"], "log="), (["--log-dir", str(tmp_path / "x")], "log_dir"),
                        (["--wandb-project", "p"], "wandb_project"),
                        (["--log", "wandb", "--wandb-mode", "loud"], "wandb_mode")):
        assert main(["train", "--out", str(out), "--no-progress", *args] + TINY) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and field in err, err
    assert not out.exists() and not (tmp_path / "x").exists()


def test_the_reader_sees_a_missing_epoch(tmp_path):
    """The comparison above could fail: a log that skipped an epoch is not equal to the metrics."""
    need("tensorboard", "tensorboard")
    from grokscope.report.tracking import MetricsLogger

    df = pd.DataFrame({"model": [0, 0, 0], "epoch": [0, 1, 2], "train_loss": [3.0, 2.0, 1.0],
                       "train_acc": [0.1, 0.2, 0.3], "test_loss": [float("nan")] * 3, "test_acc": [float("nan")] * 3})
    log = MetricsLogger("tensorboard", tmp_path / "tb", "x")
    log(df[df["epoch"] != 1])
    log.close()
    assert [e for e, _ in _scalars(tmp_path / "tb" / "model_0")["train/loss"]] != df["epoch"].tolist()


def test_progress_measures_at_every_nth_checkpoint(tmp_path):
    """--progress-every 2: the progress measures of checkpoints 0, 20 (of 0, 10, 20) equal those of
    `grokscope progress` with the same keys."""
    need("tensorboard", "tensorboard")
    from grokscope.measures.progress import compute_progress

    out, logs = tmp_path / "r", tmp_path / "tb"
    assert main(["train", "--out", str(out), "--no-progress", "--log", "tensorboard", "--log-dir", str(logs),
                 "--progress-every", "2", "--progress-keys", "1,2"] + TINY) == 0
    s = _scalars(logs / "model_0")
    assert [e for e, _ in s["progress/excluded_loss"]] == [0, 20]
    assert {"progress/restricted_loss", "progress/gini_W_L", "progress/sum_sq", "progress/excluded_loss_k2",
            "progress/logit_coef_k1"} <= set(s)
    want = compute_progress(Run.load(out), keys=[1, 2], epochs=[20], workers=1)
    got = dict(s["progress/excluded_loss"])[20]
    assert got == pytest.approx(float(want[want["measure"] == "excluded_loss"]["value"].iloc[0]), rel=1e-6)


def test_progress_options_need_log(tmp_path, capsys):
    out = tmp_path / "r"
    for args, field in ((["--progress-every", "2"], "progress_every"),
                        (["--log", "tensorboard", "--progress-keys", "1"], "progress_keys"),
                        (["--log", "tensorboard", "--progress-every", "0"], "every="),
                        (["--log", "tensorboard", "--progress-every", "1", "--progress-keys", "9"], "keys=")):
        assert main(["train", "--out", str(out), "--no-progress", *args] + TINY) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and field in err, err
    assert not out.exists() and not (tmp_path / "r.logs").exists()
