"""The LLC's turning points against the phases (grokscope.measures.llc_phases): the maximum, the steepest fall
after it, the phase each lies in, and the LLC's rank correlation with the test loss."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from grokscope.checks import ConfigError
from grokscope.measures.cache import PHASES_FILE, save_progress
from grokscope.measures.llc_phases import COLUMNS, llc_turning_points, phase_of, turning_points
from grokscope.training.run import Run, train
from helpers import tiny_config

ENDS = {"memorisation": 100, "circuit_formation": 500, "cleanup": 800}


@pytest.mark.parametrize("epoch, phase", [(0, "memorisation"), (100, "memorisation"), (101, "circuit_formation"),
                                          (800, "cleanup"), (801, "after"), (None, "-"), (float("nan"), "-")])
def test_phase_of(epoch, phase):
    assert phase_of(epoch, ENDS) == phase


def test_phase_of_an_undefined_boundary():
    assert phase_of(50, {"memorisation": None}) == "-"
    assert phase_of(600, {"memorisation": 100, "circuit_formation": 500, "cleanup": None}) == "-"
    assert phase_of(300, {"memorisation": 100, "circuit_formation": 500, "cleanup": None}) == "circuit_formation"


def test_turning_points_find_the_peak_and_the_steepest_fall_after_it():
    e = np.array([0, 100, 200, 300, 400, 600])
    v = np.array([10.0, 50.0, np.nan, 40.0, 10.0, 5.0])  # NaN skipped: 50 at 100, then 40 at 300, 10 at 400
    tp = turning_points(e, v)
    assert tp["llc_max"] == 50.0 and tp["llc_max_epoch"] == 100 and tp["llc_final"] == 5.0
    # falls per epoch: 100->300: 0.05, 300->400: 0.3, 400->600: 0.025
    assert tp["llc_fall_epoch"] == 350 and tp["llc_fall_rate"] == pytest.approx(300.0)
    # the steepest fall is taken after the maximum, not before it
    tp = turning_points(np.array([0, 10, 20, 30]), np.array([100.0, 0.0, 5.0, 4.0]))
    assert tp["llc_max_epoch"] == 0 and tp["llc_fall_epoch"] == 5.0
    rising = turning_points(np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0]))
    assert rising["llc_max_epoch"] == 20 and rising["llc_fall_epoch"] is None
    assert turning_points(np.array([0, 10]), np.array([np.nan, np.nan]))["llc_max"] is None


def test_the_late_fall_and_the_tenth_are_taken_from_the_end_of_memorisation_on():
    e = np.array([0, 100, 200, 300, 400, 500, 600, 700])
    v = np.array([1.0, 100.0, 40.0, 38.0, 30.0, 10.0, 3.0, 2.0])
    tp = turning_points(e, v, memorised=300)
    assert tp["llc_fall_epoch"] == 150  # 100 -> 200, the fall right after the peak
    assert tp["llc_late_fall_epoch"] == 450 and tp["llc_late_fall_rate"] == pytest.approx(200.0)
    assert tp["llc_tenth_epoch"] == 600  # a tenth of 38 (the estimate at 300) is 3.8: 3.0 at 600
    assert turning_points(e, v)["llc_late_fall_epoch"] is None and turning_points(e, v)["llc_tenth_epoch"] is None
    never = turning_points(e, np.array([1.0, 100.0, 40.0, 38.0, 30.0, 20.0, 10.0, 5.0]), memorised=300)
    assert never["llc_tenth_epoch"] is None
    assert turning_points(e, v, memorised=float("nan"))["llc_tenth_epoch"] is None


def _with_llc(run: Run, values: dict[int, list[float]]) -> None:
    eps = run.checkpoint_epochs
    rows = [{"model": k, "epoch": e, "measure": "llc", "freq": 0, "value": v}
            for k, vs in values.items() for e, v in zip(eps, vs)]
    df = pd.DataFrame(rows).astype({"model": "int32", "epoch": "int64", "freq": "int32", "value": "float64"})
    df.attrs = {"llc_every": 1, "llc_epochs": eps}
    save_progress(run, df)


def test_llc_turning_points_of_a_run(tmp_path):
    out = tmp_path / "r"
    train([tiny_config(epochs=40), tiny_config(epochs=40, seed=1)], out, device="cpu", progress=False)
    run = Run.load(out)
    with pytest.raises(ConfigError, match="has no LLC"):
        llc_turning_points(run)
    eps = run.checkpoint_epochs
    n = len(eps)
    assert n >= 4
    up_down = list(np.r_[np.linspace(1, 9, n // 2), np.linspace(8, 1, n - n // 2)])
    _with_llc(run, {0: up_down, 1: list(np.linspace(1, 5, n))})
    ends = {"memorisation": eps[1], "circuit_formation": eps[-2], "cleanup": eps[-1]}
    (out / PHASES_FILE).write_text(json.dumps({"models": [{"model": 0, "ends": ends}]}))
    df = llc_turning_points(run)
    assert list(df.columns) == COLUMNS and list(df["model"]) == [0, 1]
    r0, r1 = df.iloc[0], df.iloc[1]
    assert r0["llc_max"] == 9 and r0["llc_max_epoch"] == eps[n // 2 - 1] and r0["estimates"] == n
    assert r0["llc_max_phase"] == phase_of(eps[n // 2 - 1], ends) and r0["memorisation_end"] == eps[1]
    assert r1["llc_max_epoch"] == eps[-1] and pd.isna(r1["llc_fall_epoch"])
    assert r1["llc_max_phase"] == "-"  # no phases for model 1
    # the rank correlation with the test loss at each checkpoint is computed from the run's own metrics
    met = run.metrics
    tl = met[(met["model"] == 1) & met["test_loss"].notna()].set_index("epoch")["test_loss"].reindex(eps)
    want = np.corrcoef(pd.Series(np.linspace(1, 5, n)).rank(), pd.Series(np.log(tl.to_numpy())).rank())[0, 1]
    assert r1["spearman_test_loss"] == pytest.approx(want)
