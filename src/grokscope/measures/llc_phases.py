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
* ``llc_late_fall_epoch``, ``llc_late_fall_rate``: the same steepest fall, among the estimates from the end of
  memorisation on (the fall that goes with grokking; the LLC also falls right after its peak, inside memorisation);
* ``llc_tenth_epoch``: the first estimate after the end of memorisation at or below a tenth of the LLC there (the
  first estimate at or after that end): the epoch the LLC has shed 90% of its memorising level, to set beside the
  epoch of test accuracy > 99%;
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
           "llc_max_phase", "llc_final", "llc_fall_epoch", "llc_fall_rate", "llc_fall_phase", "llc_late_fall_epoch",
           "llc_late_fall_rate", "llc_late_fall_phase", "llc_tenth_epoch", "spearman_test_loss", "estimates"]


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


def _steepest_fall(e: np.ndarray, v: np.ndarray) -> tuple[float | None, float | None]:
    """(midpoint epoch, fall per 1,000 epochs) of the steepest fall between consecutive estimates; Nones when
    there are fewer than two or nothing falls."""
    if len(v) < 2:
        return None, None
    slope = np.diff(v) / np.diff(e)
    j = int(np.argmin(slope))
    if slope[j] >= 0:
        return None, None
    return float((e[j] + e[j + 1]) / 2), float(-slope[j] * 1000)


def turning_points(epochs: np.ndarray, llc: np.ndarray, memorised: float | None = None) -> dict[str, float | None]:
    """The maximum and the steepest fall after it of one LLC curve (``epochs`` increasing); NaN entries are
    skipped. ``llc_fall_*`` are None when fewer than two estimates follow the maximum. With ``memorised`` (the
    end of memorisation), also the steepest fall from there on (``llc_late_fall_*``) and ``llc_tenth_epoch``; both
    None without it."""
    ok = np.isfinite(llc)
    e, v = np.asarray(epochs, dtype=float)[ok], np.asarray(llc, dtype=float)[ok]
    out: dict[str, float | None] = dict.fromkeys(("llc_max", "llc_max_epoch", "llc_final", "llc_fall_epoch",
                                                  "llc_fall_rate", "llc_late_fall_epoch", "llc_late_fall_rate",
                                                  "llc_tenth_epoch"))
    if not len(v):
        return out
    i = int(np.argmax(v))
    out.update(llc_max=float(v[i]), llc_max_epoch=float(e[i]), llc_final=float(v[-1]))
    out["llc_fall_epoch"], out["llc_fall_rate"] = _steepest_fall(e[i:], v[i:])
    if memorised is not None and np.isfinite(memorised):
        late = e >= memorised
        out["llc_late_fall_epoch"], out["llc_late_fall_rate"] = _steepest_fall(e[late], v[late])
        if late.any():
            first = int(np.argmax(late))
            below = np.flatnonzero(late & (v <= v[first] / 10) & (np.arange(len(v)) > first))
            out["llc_tenth_epoch"] = float(e[below[0]]) if len(below) else None
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
        ends = ph.get(int(k), {})
        tp = turning_points(ep, v, ends.get("memorisation"))
        tl = met[(met["model"] == k) & met["test_loss"].notna()].sort_values("epoch")
        idx = np.searchsorted(tl["epoch"].to_numpy(), ep, side="right") - 1
        test = np.where(idx >= 0, tl["test_loss"].to_numpy()[np.clip(idx, 0, None)], np.nan) if len(tl) else \
            np.full(len(ep), np.nan)
        out.append({"model": int(k), "memorisation_end": ends.get("memorisation"),
                    "circuit_formation_end": ends.get("circuit_formation"), "cleanup_end": ends.get("cleanup"),
                    **tp, "llc_max_phase": phase_of(tp["llc_max_epoch"], ends),
                    "llc_fall_phase": phase_of(tp["llc_fall_epoch"], ends),
                    "llc_late_fall_phase": phase_of(tp["llc_late_fall_epoch"], ends),
                    "spearman_test_loss": _spearman(v, np.log(np.maximum(test, 1e-30))),
                    "estimates": int(np.isfinite(v).sum())})
    return pd.DataFrame(out, columns=COLUMNS)
