import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from helpers import tiny_config

from grokscope import Run
from grokscope.cli import main
from grokscope.report.run import figure, load_or_compute_progress
from grokscope.training.run import atomic_write, resume, train


def test_run_directory(tmp_path):
    cfgs = [tiny_config(seed=0), tiny_config(seed=1)]
    run = train(cfgs, tmp_path / "r", device="cpu", progress=False)
    meta = json.loads((tmp_path / "r" / "config.json").read_text())
    assert meta["torch_version"] == torch.__version__ and len(meta["models"]) == 2
    assert run.checkpoint_epochs == [0, 10, 20, 30, 40]
    df = run.metrics
    assert list(df.columns) == ["model", "epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                                "softmax_collapse", "softmax_sum1", "w_u_norm"]  # the last three: issue #14
    assert len(df) == 2 * 41 and set(df.model) == {0, 1}
    assert df[df.epoch % 5 == 0].test_loss.notna().all() and df[df.epoch % 5 != 0].test_loss.isna().all()
    m = run.model(model=1)
    ds = run.dataset(1)
    from grokscope.training.losses import cross_entropy_float64
    with torch.no_grad():
        loss = cross_entropy_float64(m.answer_logits(ds.tokens[ds.train_idx]), ds.labels[ds.train_idx]).mean()
    final = df[(df.model == 1) & (df.epoch == 40)].train_loss.item()
    assert loss.item() == pytest.approx(final, rel=1e-5)
    ms = run.milestones()
    assert list(ms.model) == [0, 1] and list(ms.seed) == [0, 1] and (ms.last_epoch == 40).all()
    assert ms.final_train_loss[1] == pytest.approx(final)
    t = df[(df.model == 1)].dropna(subset=["test_loss"])
    assert ms.min_test_loss[1] == t.test_loss.min() and ms.min_test_loss_epoch[1] in set(t.epoch)
    full = df[(df.model == 1) & (df.train_acc >= 1.0 - 1e-9)]
    assert (ms.train_acc_100[1] == full.epoch.min()) or (full.empty and math.isnan(ms.train_acc_100[1]))
    with pytest.raises(Exception, match="epoch=7"):
        run.params(epoch=7)
    with pytest.raises(Exception, match="model=5"):
        run.model(model=5)


def test_resume_is_bitwise(tmp_path):
    cfg = tiny_config(epochs=40, dropout=0.1)
    straight = train([cfg], tmp_path / "a", device="cpu", progress=False)
    train([cfg], tmp_path / "b", device="cpu", progress=False, until=20)
    half = Run.load(tmp_path / "b")
    assert half.checkpoint_epochs == [0, 10, 20] and half.metrics.epoch.max() == 19  # row 20 is written by the next step
    resumed = resume(tmp_path / "b", device="cpu", progress=False)
    for e in straight.checkpoint_epochs:
        for k, v in straight.params(e).items():
            assert torch.equal(v, resumed.params(e)[k]), (e, k)
    pd.testing.assert_frame_equal(straight.metrics, resumed.metrics)


def test_resume_after_unscheduled_stop(tmp_path):
    cfg = tiny_config(epochs=30)
    straight = train([cfg], tmp_path / "a", device="cpu", progress=False)
    train([cfg], tmp_path / "b", device="cpu", progress=False, until=13)  # not a checkpoint epoch
    resumed = resume(tmp_path / "b", device="cpu", progress=False)
    assert torch.equal(straight.params(30)["W_E"], resumed.params(30)["W_E"])


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.bin"

    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert not target.exists() and os.listdir(tmp_path) == []
    atomic_write(target, lambda t: open(t, "wb").write(b"ok"))
    assert target.read_bytes() == b"ok"


TINY = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "20", "--frac-train", "0.5",
        "--checkpoint-every", "10", "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize("args,field", [
    (["--p", "2"], "p="), (["--frac-train", "0"], "frac_train="), (["--frac-train", "1.5"], "frac_train="),
    (["--d-model", "10", "--n-heads", "4"], "d_model="), (["--task", "divide"], "task="), (["--preset", "x"], "preset="),
    (["--seed", "a"], "seed="), (["--device", "tpu"], "device="), (["--seeds", "0,1", "--lr", "1,2,3"], "values but other lists"),
])
def test_cli_bad_input(tmp_path, capsys, args, field):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grokscope: error:") and field in err and "\n" not in err
    assert not out.exists()


def test_cli_existing_dir_and_bad_resume(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY) == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["train", "--out", str(out)] + TINY) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a grokscope run" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--overwrite"] + TINY + ["--seeds", "0,1"]) == 0
    assert Run.load(out).K == 2
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # already finished: a no-op


def test_cli_entry_point_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "grokscope.cli", "train", "--p", "1", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_cli_analyze_run_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY) == 0
    capsys.readouterr()
    assert main(["analyze", str(out)]) == 0
    text = capsys.readouterr().out
    assert "key frequencies" in text and "Ablations" in text
    d = json.loads((out / "analysis.json").read_text())
    assert d["p"] == 7 and "ablations" in d
    assert main(["analyze", str(out / "checkpoints" / "epoch_000010.safetensors")]) == 0
    assert json.loads((out / "analysis_epoch_10.json").read_text())["source"].endswith("epoch 10")
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "path=" in capsys.readouterr().err
    assert main(["analyze", str(out), "--epoch", "7"]) == 2
    assert "epoch=7" in capsys.readouterr().err


def test_run_lock_refuses_a_second_trainer(tmp_path):
    cfg = tiny_config(epochs=20)
    train([cfg], tmp_path / "r", device="cpu", progress=False, until=10)
    (tmp_path / "r" / ".lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(Exception, match="being trained by process"):
        resume(tmp_path / "r", device="cpu", progress=False)
    (tmp_path / "r" / ".lock").write_text("999999999")  # stale lock: its process is gone
    assert resume(tmp_path / "r", device="cpu", progress=False).checkpoint_epochs[-1] == 20
    assert not (tmp_path / "r" / ".lock").exists()


def test_sigterm_saves_state(tmp_path):
    """``kill PID`` during training saves the state (as Ctrl-C does) and the run resumes from it. Robust to a
    loaded machine: no fixed sleeps decide the outcome, only generous deadlines."""
    import signal
    import time
    out = tmp_path / "r"
    args = [sys.executable, "-m", "grokscope.cli", "train", "--out", str(out), "--no-progress", "--device", "cpu",
            "--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "1000000",
            "--checkpoint-every", "1000000"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / "epoch_000000.safetensors"
    deadline = time.monotonic() + 300
    # the epoch-0 checkpoint is written after the SIGTERM handler is installed; state.pt goes with it
    while not ((out / "state.pt").is_file() and first.is_file()) and proc.poll() is None:
        assert time.monotonic() < deadline, "the trainer did not write its first checkpoint in 300 s"
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    saved_at_start = (out / "state.pt").stat().st_mtime_ns
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "resume" in err and "Traceback" not in err, err
    assert (out / "state.pt").stat().st_mtime_ns > saved_at_start  # written again, on the signal
    st = torch.load(out / "state.pt", weights_only=True)
    e = int(st["epoch"])
    assert not (out / ".lock").exists()
    run = resume(out, device="cpu", progress=False, until=e + 3)
    assert run.metrics.epoch.max() == e + 2  # it continued from the saved epoch


def test_cli_progress_and_run_progress(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY) == 0
    capsys.readouterr()
    assert main(["progress", str(out)]) == 0
    text = capsys.readouterr().out
    assert "model 0" in text and (out / "progress.parquet").is_file() and (out / "phases.json").is_file()
    df = load_or_compute_progress(Run.load(out))
    assert set(df.columns) >= {"model", "epoch", "measure", "value"}
    assert sorted(df.epoch.unique()) == [0, 10, 20]
    assert main(["progress", str(tmp_path / "none")]) == 2
    assert main(["progress", str(out), "--every", "0"]) == 2


def test_cli_report_and_run_figure(tmp_path, capsys):
    pytest.importorskip("plotly")
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY) == 0
    assert main(["report", str(out), "-o", str(tmp_path / "rep.html")]) == 0
    html = (tmp_path / "rep.html").read_text()
    assert "plotly" in html and 'id="plot-losses"' in html
    fig = figure(Run.load(out), "losses")
    assert fig.layout.title.text.startswith("Fig 2")
    assert main(["report", str(tmp_path / "nope")]) == 2


@pytest.mark.parametrize("argv,says", [([], "would train the paper's mainline (40,000 epochs"),
                                       (["--task", "skip-trigram"], "the skip-trigram run"),
                                       (["--epochs", "5"], "would train the paper's mainline")])
def test_a_bare_train_explains_instead_of_starting_the_mainline(argv, says, tmp_path, monkeypatch, capsys):
    """Without --preset and --out, `grokscope train` says what it would do (and how to ask for it), writes nothing."""
    from grokscope.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: out is required") and says in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
