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

from grokscope import Run, runs, training
from grokscope.cli import main
from grokscope.config import ConfigError
from grokscope.files import NoSpace, atomic_write, clean_stale_tmp
from grokscope.runs import resume, train


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

    monkeypatch.setattr(training, "math", types.SimpleNamespace(sqrt=sqrt, prod=math.prod))
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
