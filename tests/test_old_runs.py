"""Run directories written by grokscope before the one-design refactor (tests/data/v0_runs, made by its make.py
with the old code): they load, resume bit-exactly with today's code, continue to the numbers the old code reached
(to float32 noise: they were written on another CPU than the one running this), and are reported."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokscope import Run

DATA = Path(__file__).resolve().parent / "data" / "v0_runs"
RUNS = ("modular", "skip_trigram", "digit_addition_infinite")
COLS = ["train_loss", "train_acc", "test_loss", "test_acc"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(DATA / name, dst)
    return dst


@pytest.mark.parametrize("name", RUNS)
def test_old_run_loads(tmp_path, name):
    run = Run.load(_copy(tmp_path, name))
    assert run.checkpoint_epochs == [0, 20, 40]
    assert int(run.metrics["epoch"].max()) == 39  # the rows of the steps taken (row 40 comes with step 41)
    assert run.model(40) is not None


@pytest.mark.parametrize("name", RUNS)
def test_old_run_resumes_bit_exactly(tmp_path, name):
    a, b = _copy(tmp_path / "a", name), _copy(tmp_path / "b", name)
    Run.load(a).resume(progress=False)  # 40 -> 60 in one go
    Run.load(b).resume(progress=False, until=50)  # 40 -> 50, a new process would start here
    Run.load(b).resume(progress=False)  # 50 -> 60
    ma, mb = Run.load(a).metrics, Run.load(b).metrics
    assert int(ma["epoch"].max()) == 60
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    # and where the old code went from the same state (on the CPU that wrote the data): float32 noise apart
    full = pd.read_parquet(DATA / f"{name}_full.parquet")
    got = ma.sort_values(["model", "epoch"]).reset_index(drop=True)
    want = full.sort_values(["model", "epoch"]).reset_index(drop=True)
    assert list(got["epoch"]) == list(want["epoch"])
    for c in COLS:
        g, w = got[c].to_numpy(float), want[c].to_numpy(float)
        assert np.array_equal(np.isnan(g), np.isnan(w)), c
        ok = ~np.isnan(w)
        np.testing.assert_allclose(g[ok], w[ok], rtol=1e-4, atol=1e-4 * np.abs(w[ok]).max(), err_msg=c)
