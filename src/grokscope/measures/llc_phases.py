"""The LLC's turning points against a run's phases: where the local learning coefficient peaks and where it falls
fastest, in which phase each lies, and how closely the LLC tracks the test loss.

    from grokscope.measures.llc_phases import llc_turning_points
    llc_turning_points(Run.load("runs/x"))      # one row per model (a DataFrame)

Reads what ``grokscope progress RUN --llc`` saved (the ``llc`` rows of ``progress.parquet``, ``phases.json``) and
the run's metrics; computes nothing expensive and writes nothing.

Definitions (the choices are ours; devinterp's grokking example shows the LLC rising while a model memorises and
falling as it groks):

* only estimates with a finite ``llc`` count (a checkpoint whose chains all diverged has none);
* ``llc_max_epoch``: the checkpoint of the largest LLC;
* ``llc_fall_epoch``: the steepest fall after the maximum, the midpoint of the two consecutive estimates whose
  LLC falls most per epoch; ``llc_fall_rate``: that fall, per 1,000 epochs;
* ``*_phase``: the phase an epoch lies in by the run's phase boundaries (``memorisation``,
  ``circuit_formation``, ``cleanup``, ``after``; ``-`` where a boundary is undefined);
* ``spearman_test_loss``: the rank correlation, over the LLC's checkpoints, of the LLC with the test loss (the
  test loss at the last evaluation at or before each checkpoint): near 1 where the LLC tracks the test loss.

May import numpy, pandas and :mod:`grokscope.measures.cache`; never the trainer or the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..checks import ConfigError
from .cache import PHASES_FILE, load_phases, saved_llc

PHASES = ("memorisation", "circuit_formation", "cleanup")
COLUMNS = ["model", "memorisation_end", "circuit_formation_end", "cleanup_end", "llc_max", "llc_max_epoch",
           "llc_max_phase", "llc_final", "llc_fall_epoch", "llc_fall_rate", "llc_fall_phase", "spearman_test_loss",
           "estimates"]


def phase_of(epoch: float | None, ends: dict[str, Any]) -> str:
    """The phase ``epoch`` lies in, by the phase ends ``ends`` (``memorisation``, ``circuit_formation``,
    ``cleanup``: epochs or None): the first phase whose end is at or after it; ``after`` past the last; ``-``
    where ``epoch`` is None or the boundary that would decide is undefined."""
    if epoch is None or not np.isfinite(epoch):
        return "-"
    for name in PHASES:
        end = ends.get(name)
        if end is None:
            return "-"
        if epoch <= end:
            return name
    return "after"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra = pd.Series(a[ok]).rank().to_numpy()
    rb = pd.Series(b[ok]).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def turning_points(epochs: np.ndarray, llc: np.ndarray) -> dict[str, float | None]:
    """The maximum and the steepest fall after it of one LLC curve (``epochs`` increasing); NaN entries are
    skipped. ``llc_fall_*`` are None when fewer than two estimates follow the maximum."""
    ok = np.isfinite(llc)
    e, v = np.asarray(epochs, dtype=float)[ok], np.asarray(llc, dtype=float)[ok]
    if not len(v):
        return {"llc_max": None, "llc_max_epoch": None, "llc_final": None, "llc_fall_epoch": None,
                "llc_fall_rate": None}
    i = int(np.argmax(v))
    out: dict[str, float | None] = {"llc_max": float(v[i]), "llc_max_epoch": float(e[i]), "llc_final": float(v[-1]),
                                    "llc_fall_epoch": None, "llc_fall_rate": None}
    if len(v) - i >= 2:
        slope = np.diff(v[i:]) / np.diff(e[i:])
        j = int(np.argmin(slope))
        if slope[j] < 0:
            out["llc_fall_epoch"] = float((e[i + j] + e[i + j + 1]) / 2)
            out["llc_fall_rate"] = float(-slope[j] * 1000)
    return out


def llc_turning_points(run: Any) -> pd.DataFrame:
    """One row per model of ``run`` (a :class:`grokscope.training.run.Run` with the LLC and phases saved by
    ``grokscope progress RUN --llc``): :data:`COLUMNS`. Models without a phases entry get ``-`` phases."""
    saved = saved_llc(run)
    if saved is None:
        raise ConfigError(f"run={str(run.path)!r} has no LLC: run `grokscope progress {run.path} --llc` first")
    rows = saved[0]
    llc = rows[rows["measure"] == "llc"]
    ph = ({int(m["model"]): m.get("ends", {}) for m in load_phases(run).get("models", [])}
          if (run.path / PHASES_FILE).is_file() else {})
    met = run.metrics
    out = []
    for k, g in llc.groupby("model", sort=True):
        g = g.sort_values("epoch")
        ep, v = g["epoch"].to_numpy(), g["value"].to_numpy(dtype=float)
        tp = turning_points(ep, v)
        ends = ph.get(int(k), {})
        tl = met[(met["model"] == k) & met["test_loss"].notna()].sort_values("epoch")
        idx = np.searchsorted(tl["epoch"].to_numpy(), ep, side="right") - 1
        test = np.where(idx >= 0, tl["test_loss"].to_numpy()[np.clip(idx, 0, None)], np.nan) if len(tl) else \
            np.full(len(ep), np.nan)
        out.append({"model": int(k), "memorisation_end": ends.get("memorisation"),
                    "circuit_formation_end": ends.get("circuit_formation"), "cleanup_end": ends.get("cleanup"),
                    **tp, "llc_max_phase": phase_of(tp["llc_max_epoch"], ends),
                    "llc_fall_phase": phase_of(tp["llc_fall_epoch"], ends),
                    "spearman_test_loss": _spearman(v, np.log(np.maximum(test, 1e-30))),
                    "estimates": int(np.isfinite(v).sum())})
    return pd.DataFrame(out, columns=COLUMNS)
