"""Faults (issue #11): signals inside a step, kill -9 at random moments, --overwrite, locks, a full disk, stale
temporary files, a diverging run, long runs' checkpoint names. Every test here failed before its fix."""

import errno
import math
import os
import random
import signal
import subprocess
import sys
import time
import types
import warnings

import pandas as pd
import pytest
import torch
from helpers import tiny_config

from grokscope import Run
from grokscope.training import optim, rundir, run as runs
from grokscope.cli import main
from grokscope.config import ConfigError
from grokscope.files import NoSpace, atomic_write, clean_stale_tmp
from grokscope.training.run import resume, train


def _bitwise(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Equal bit for bit (NaN equal to the same NaN: the metric buffers hold NaN where nothing was logged)."""
    return x.dtype == y.dtype and x.shape == y.shape and x.numpy().tobytes() == y.numpy().tobytes()


def assert_same_run(a: Run, b: Run) -> None:
    assert a.checkpoint_epochs == b.checkpoint_epochs
    for e in a.checkpoint_epochs:
        pa, pb = a.stacked_params(e), b.stacked_params(e)
        for k in pa:
            assert torch.equal(pa[k], pb[k]), (e, k)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    sa = torch.load(a.path / "state.pt", weights_only=True)
    sb = torch.load(b.path / "state.pt", weights_only=True)
    assert sa.keys() == sb.keys() and [k for k in sa if not _bitwise(sa[k], sb[k])] == []


def test_sigint_inside_the_optimiser_step_resumes_bitwise(tmp_path, monkeypatch):
    """A SIGINT delivered in the middle of ``_adamw`` (after the parameters' decay, before their update) takes
    effect only after the step: the saved state is a whole step, and resuming gives the uninterrupted run."""
    cfg = tiny_config(epochs=30, dropout=0.1)
    straight = train([cfg], tmp_path / "a", device="cpu", progress=False)
    calls = [0]

    def sqrt(x):  # _adamw's only math.sqrt call, after p.mul_, m.lerp_ and v's update
        calls[0] += 1
        if calls[0] == 17:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler right here, inside the step
        return math.sqrt(x)

    monkeypatch.setattr(optim, "math", types.SimpleNamespace(sqrt=sqrt, prod=math.prod))
    with pytest.raises(KeyboardInterrupt):
        train([cfg], tmp_path / "b", device="cpu", progress=False)
    monkeypatch.undo()
    assert calls[0] == 17 and int(torch.load(tmp_path / "b" / "state.pt")["epoch"]) == 17
    assert not (tmp_path / "b" / ".lock").exists()
    assert_same_run(straight, resume(tmp_path / "b", device="cpu", progress=False))


TRAIN = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--frac-train", "0.5", "--dropout", "0.1",
         "--epochs", "600", "--checkpoint-every", "20", "--test-every", "5", "--no-progress", "--device", "cpu"]


def test_kill_at_random_moments_then_resume_is_bitwise(tmp_path):
    """Kill a training subprocess (SIGKILL, SIGTERM, SIGKILL) at random moments after its first checkpoint, resume
    each time, and compare with an uninterrupted run: every checkpoint, the metrics and state.pt, bitwise."""
    rng = random.Random(11)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "grokscope.cli", "train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): bitwise equality needs the same threads
    try:
        straight = train([tiny_config(epochs=600, checkpoint_every=20, dropout=0.1)], tmp_path / "a", device="cpu",
                         progress=False)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "b"
    args = ["--out", str(out)] + TRAIN
    landed = 0
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        before = int(torch.load(out / "state.pt")["epoch"]) if (out / "state.pt").exists() else -1
        proc = subprocess.Popen(cli + args, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ((out / "state.pt").exists()
                                           and int(torch.load(out / "state.pt")["epoch"]) > before):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            proc.send_signal(sig)
            landed += 1
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        args = ["--resume", str(out), "--no-progress", "--device", "cpu"]
    assert landed >= 2
    r = subprocess.run(cli + args, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert_same_run(straight, Run.load(out))
    assert not [f for f in out.rglob("*.tmp")] and not (out / ".lock").exists()


TINY = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "20", "--frac-train", "0.5",
        "--checkpoint-every", "10", "--no-progress", "--device", "cpu"]


def test_overwrite_deletes_only_a_runs_files(tmp_path, capsys):
    home = tmp_path / "home"  # `--out ~ --overwrite` must not empty a home directory
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    assert main(["train", "--out", str(home), "--overwrite"] + TINY) == 2
    assert (home / "thesis.tex").read_text() == "years of work" and sorted(os.listdir(home)) == ["thesis.tex"]
    assert "not a grokscope run" in capsys.readouterr().err
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY) == 0
    assert main(["analyze", str(out)]) == 0
    (out / "checkpoints" / "epoch_000099.safetensors").write_bytes(b"old")
    assert main(["train", "--out", str(out), "--overwrite"] + TINY + ["--seeds", "0,1"]) == 0
    assert Run.load(out).K == 2 and Run.load(out).checkpoint_epochs == [0, 10, 20]
    assert not (out / "analysis.json").exists()  # a run's file: replaced along with the run
    (out / "mine").mkdir()
    assert main(["train", "--out", str(out), "--overwrite"] + TINY) == 2
    assert (out / "mine").is_dir() and Run.load(out).K == 2
    assert main(["train", "--out", str(tmp_path / "home" / "thesis.tex"), "--overwrite"] + TINY) == 2
    assert (home / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_run_being_trained_and_a_lock_is_only_released_by_its_holder(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out)] + TINY + ["--until", "10"]) == 0
    (out / ".lock").write_text(str(os.getppid()))  # a live trainer holds it
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(["train", "--out", str(out), "--overwrite"] + TINY) == 2
    assert "being trained by process" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    lock = rundir.acquire_lock(tmp_path)  # ours; then another process takes it over
    lock.write_text(str(os.getppid()))
    rundir.release_lock(lock)
    assert lock.read_text() == str(os.getppid())


def test_nan_rows_are_kept_with_one_warning_and_analyze_says_so(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        run = train([tiny_config(lr=100.0, epochs=60, checkpoint_every=20)], tmp_path / "r", device="cpu",
                    progress=False)
    assert [str(x.message) for x in w if issubclass(x.category, runs.NonFiniteLoss)] != []
    assert len([x for x in w if issubclass(x.category, runs.NonFiniteLoss)]) == 1
    df = run.metrics
    assert len(df) == 61 and list(df.epoch) == list(range(61))  # every row, NaN losses included
    first = run.nonfinite()[0]
    assert df.train_loss[:first].notna().all() and not math.isfinite(df.train_loss[first])
    assert main(["analyze", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not finite" in err and f"from epoch {first}" in err and "--epoch 0" in err
    assert main(["report", str(tmp_path / "r"), "--epoch", "0"]) == 2
    assert "diverged" in capsys.readouterr().err
    assert not (tmp_path / "r" / "progress.parquet").exists()


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_one_line_and_the_run_stays_resumable(tmp_path, monkeypatch, capsys):
    cfg = tiny_config(epochs=30)
    straight = train([cfg], tmp_path / "a", device="cpu", progress=False)
    calls = [0]
    real = rundir.save_file

    def fills_up(params, path):  # the disk is full from the 3rd checkpoint on
        calls[0] += 1
        return _enospc() if calls[0] >= 3 else real(params, path)

    monkeypatch.setattr(rundir, "save_file", fills_up)
    with pytest.raises(NoSpace, match=r"no space left on device .*needed ~.* MB.*--resume"):
        train([cfg], tmp_path / "b", device="cpu", progress=False)
    monkeypatch.setattr(rundir, "save_file", _enospc)  # not even the first checkpoint fits
    assert main(["train", "--out", str(tmp_path / "c")] + TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left on device" in err and "--resume" in err
    monkeypatch.undo()
    assert not list((tmp_path / "b").rglob("*.tmp")) and not (tmp_path / "b" / ".lock").exists()
    assert_same_run(straight, resume(tmp_path / "b", device="cpu", progress=False))
    assert main(["train", "--resume", str(tmp_path / "c"), "--no-progress", "--device", "cpu"]) == 0
    assert Run.load(tmp_path / "c").checkpoint_epochs == [0, 10, 20]


def test_atomic_write_names_a_full_disk(tmp_path):
    with pytest.raises(NoSpace, match="needed ~"):
        atomic_write(tmp_path / "x", _enospc)
    assert os.listdir(tmp_path) == []


def test_stale_temporary_files_are_cleaned(tmp_path):
    train([tiny_config(epochs=20)], tmp_path / "r", device="cpu", progress=False, until=10)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [tmp_path / "r" / f".state.pt.{dead.stdout.strip()}.abc123.tmp",
             tmp_path / "r" / "checkpoints" / f".epoch_000020.safetensors.{dead.stdout.strip()}.x.tmp"]
    live = tmp_path / "r" / f".progress.parquet.{os.getppid()}.y.tmp"  # a live writer's: kept
    for f in stale + [live]:
        f.write_bytes(b"half")
    resume(tmp_path / "r", device="cpu", progress=False)
    assert [f.exists() for f in stale] == [False, False] and live.exists()
    assert clean_stale_tmp(tmp_path / "r") == []


def test_checkpoint_names_beyond_six_digits_and_stray_files(tmp_path):
    run = train([tiny_config(epochs=20)], tmp_path / "r", device="cpu", progress=False)
    ck = tmp_path / "r" / "checkpoints"
    os.rename(ck / "epoch_000020.safetensors", ck / runs.ckpt_name(1_234_567))
    (ck / "epoch_abc.safetensors").write_bytes(b"junk")
    assert runs.ckpt_name(1_234_567) == "epoch_1234567.safetensors"
    assert run.checkpoint_epochs == [0, 10, 1_234_567]
    assert torch.equal(run.params(1_234_567)["W_E"], train([tiny_config(epochs=20)], tmp_path / "s", device="cpu",
                                                           progress=False).params(20)["W_E"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pth_files_are_loaded_weights_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": _Evil()}, tmp_path / "evil.pth")
    assert main(["analyze", str(tmp_path / "evil.pth"), "--seed", "1", "--frac-train", "0.3"]) == 2
    assert not (tmp_path / "PWNED").exists()
    err = capsys.readouterr().err
    assert "evil.pth is damaged" in err and "--trust-pickle" in err and err.count("\n") == 1


def test_interrupt_hint_names_the_real_directory(tmp_path, monkeypatch, capsys):
    out = tmp_path / "somewhere"

    def interrupted(*a, **k):
        (out / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "train", interrupted)
    assert main(["train", "--out", str(out)] + TINY) == 130
    assert f"grokscope train --resume {out}`" in capsys.readouterr().err
    monkeypatch.setattr("grokscope.cli.progress.run_progress", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    train([tiny_config(epochs=10)], tmp_path / "r", device="cpu", progress=False)
    assert main(["progress", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "progress wrote nothing further" in err and "resume" not in err


def test_memory_a_config_needs_is_checked_before_allocating():
    with pytest.raises(ConfigError, match=r"needs at least ~.* of memory"):
        runs.check_memory([tiny_config(p=100_003)], torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"epochs=10000000000000"):
        runs.check_memory([tiny_config(epochs=10**13)], torch.device("cpu"))
    runs.check_memory([tiny_config()], torch.device("cpu"))


def test_a_writer_that_hides_the_errno_on_a_full_disk_is_named(tmp_path, monkeypatch):
    """torch.save on a full disk raises RuntimeError("... unexpected pos ..."): named as no space when the disk has
    less room than the file needs; any other error passes through unchanged."""
    def torch_save_on_full_disk(tmp):
        open(tmp, "wb").write(b"x" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed, unexpected pos 174400 vs 174296")

    import grokscope.files as files
    monkeypatch.setattr(files, "_free", lambda d: 10)
    with pytest.raises(NoSpace, match="needed ~"):
        atomic_write(tmp_path / "state.pt", torch_save_on_full_disk)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unexpected pos"):
        atomic_write(tmp_path / "state.pt", torch_save_on_full_disk)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- issue #35: signals at any moment
def _py(code: str, delay: float | None = None) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    if delay is not None:
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


@pytest.mark.parametrize("command", ["report", "forecast", "train"])
def test_sigint_while_torch_imports_is_one_line_exit_130(command):
    """Before: a Ctrl-C in the first 1-2 s (torch importing) was a KeyboardInterrupt traceback. The signal here
    arrives exactly as the subcommands (and torch) start to import."""
    code = ("import os, signal, sys, importlib; import grokscope.cli as cli; "
            f"sys.argv = ['grokscope', {command!r}, 'nowhere']; "
            "cli.import_module = lambda *a: (os.kill(os.getpid(), signal.SIGINT), importlib.import_module(*a))[1]; "
            "sys.exit(cli.main())")
    rc, err = _py(code)
    assert rc == 130 and err.count("\n") == 1 and err.startswith("grokscope: interrupted"), (rc, err)


def test_importing_the_command_line_does_not_import_torch():
    """The console script imports grokscope.cli before main() can handle signals: it must be light."""
    rc, err = _py("import sys, grokscope.cli; sys.exit(3 if 'torch' in sys.modules else 0)")
    assert rc == 0, err


@pytest.mark.parametrize("delay", [0.6, 1.2])
def test_sigint_early_in_a_real_command(delay, tmp_path):
    """A real `python -m grokscope report` interrupted while it imports: one line, exit 130, nothing written."""
    rc, err = _py(f"import sys; sys.argv = ['grokscope', 'report', {str(tmp_path / 'nowhere')!r}, '-o', "
                  f"{str(tmp_path / 'r.html')!r}]; import runpy; runpy.run_module('grokscope', run_name='__main__')",
                  delay=delay)
    assert (rc == 130 and err.count("\n") == 1 and "Traceback" not in err) or (rc == 2 and "not a grokscope run" in err), \
        (rc, err)
    assert list(tmp_path.iterdir()) == []


def test_a_finished_command_reports_success_despite_a_late_sigint():
    """Before: a SIGINT just after the work finished (in `sys.exit(main())`, at exit) gave exit -2 although it was
    done."""
    rc, err = _py("import os, signal, sys, time; from grokscope.cli import main; "
                  "sys.argv = ['grokscope', 'experiment', 'list']; rc = main(); "
                  "os.kill(os.getpid(), signal.SIGINT); time.sleep(0.3); sys.exit(rc)")
    assert rc == 0 and err == "", (rc, err)


def test_forecast_says_a_diverged_model_diverged(tmp_path, capsys):
    """Before: `grokscope forecast` of a diverged model said nothing of the divergence ("restricted loss not
    falling", or a forecast from NaN features)."""
    cs = [tiny_config(epochs=20, checkpoint_every=5, lr=lr, seed=s) for s, lr in ((0, 1e30), (1, 1e-3))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cs, tmp_path / "r", device="cpu", progress=False)
    assert main(["forecast", str(tmp_path / "r"), "--until", "20", "--out", str(tmp_path / "f.json")]) == 0
    rows = capsys.readouterr().out.splitlines()
    model0 = next(r for r in rows if r.split()[:1] == ["0"])
    model1 = next(r for r in rows if r.split()[:1] == ["1"])
    assert "diverged (train loss non-finite from epoch" in model0 and "diverged" not in model1
    import json
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["models"][0]["predicted"] is None and doc["models"][0]["method"].startswith("diverged")
