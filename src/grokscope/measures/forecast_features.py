"""What the grok forecasters see of each model of a run at ``until``: :func:`features_run` (paper §6; the
forecasters are :mod:`grokscope.measures.forecast`'s).

No information after ``until`` is used: only the checkpoints at epochs ``<= until`` and the metrics rows at
epochs ``<= until`` are read, and the key frequencies are chosen (:func:`grokscope.measures.progress.resolve_keys`, the
W_L largest-gap rule) at the *last allowed checkpoint*, not the final one the paper uses. The progress measures
(:func:`grokscope.measures.progress.compute_progress`) are computed on at most ``n_points`` checkpoints, evenly spaced
over the second half of the allowed ones (the trend window), the last allowed checkpoint always included.

Features: the fitted ``log10 restricted_loss`` at the last checkpoint, its slope and curvature (:func:`trend`); the
slopes (decades per 1k epochs) of the excluded loss, the Gini coefficients of W_E and W_L and the sum of squared
weights; the last test accuracy and the epoch it passed 99% if it has; the baseline's ``spectral``
(:func:`spectral_energy`: ``log10`` of the high-frequency power of the detrended ``log10`` training-loss curve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..checks import ConfigError, integer
from ..fourier import basis as fr
from ..fourier.keys import wl_shares
from ..training.run import Run
from .progress import compute_progress, resolve_keys, wide

FALLBACK_KEYS = 5  # a model with no keys yet by the gap rule: its W_L's top 5 frequencies
N_POINTS = 12  # checkpoints in the trend window
ACC = 0.99  # "groks": test accuracy passes 99%
HIGH_PERIOD = 1 / 8  # baseline: power at periods below this fraction of the window

__all__ = ["N_POINTS", "Features", "trend", "crossing", "spectral_energy", "keys_at", "features_run"]


# ====================================================================== pure pieces
def trend(t: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line through finite ``(t, y)``: ``(value at the last t, slope, curvature)``; curvature is the
    second-order coefficient of a quadratic fit (0 with fewer than 3 points); NaNs if fewer than 2 points."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(t) < 2 or np.ptp(t) == 0:
        return float("nan"), float("nan"), float("nan")
    b, a = np.polyfit(t, y, 1)
    curv = float(np.polyfit(t - t[-1], y, 2)[0]) if len(t) >= 3 else 0.0
    return float(a + b * t[-1]), float(b), curv


def crossing(t_now: float, value_now: float, slope: float, target: float) -> float | None:
    """Epoch at which a line with ``value_now`` at ``t_now`` and ``slope`` reaches ``target`` (already below:
    ``t_now``); ``None`` if it never does (slope >= 0, or not finite)."""
    if not (math.isfinite(value_now) and math.isfinite(slope)):
        return None
    if value_now <= target:
        return float(t_now)
    if slope >= 0:
        return None
    return float(t_now + (value_now - target) / -slope)


def spectral_energy(train_loss: Sequence[float]) -> float:
    """The baseline's feature: ``log10`` of the mean high-frequency power (periods below ``HIGH_PERIOD`` of the
    window) of the linearly detrended ``log10`` training-loss curve; NaN with fewer than 16 finite points."""
    y = np.log10(np.clip(np.asarray(train_loss, float), 1e-300, None))
    y = y[np.isfinite(y)]
    n = len(y)
    if n < 16:
        return float("nan")
    x = np.arange(n, dtype=float)
    y = y - np.polyval(np.polyfit(x, y, 1), x)
    power = np.abs(np.fft.rfft(y)) ** 2 / n
    f = np.fft.rfftfreq(n)  # cycles per sample; period n * HIGH_PERIOD <-> frequency 1 / (n * HIGH_PERIOD)
    hi = power[f > 1.0 / (n * HIGH_PERIOD)]
    return float(np.log10(hi.mean() + 1e-30)) if len(hi) else float("nan")


# ====================================================================== typed results
@dataclass
class Features:
    """What the forecasters see of one model at ``until``. Slopes are per 1,000 epochs, in decades for the losses
    and the sum of squares (log10), plain units for the Gini coefficients."""

    model: int
    until: int
    last_checkpoint: int
    keys: list[int]
    keys_rule: str  # "gap" (the W_L largest-gap rule) or "top5" (no gap yet: the 5 largest W_L shares)
    window: list[int]  # the checkpoint epochs of the trend window
    log_restricted: float  # fitted log10 restricted loss at the last checkpoint
    restricted_slope: float
    restricted_curvature: float
    excluded_slope: float
    gini_W_E_slope: float
    gini_W_L_slope: float
    sum_sq_slope: float
    test_acc: float  # last logged test accuracy <= until
    grokked_at: int | None  # first epoch <= until with test accuracy > 99%
    spectral: float  # the baseline's feature


# ====================================================================== features of a run
def _allowed(run: Run, until: int) -> list[int]:
    until = integer("until", until, lo=1)
    eps = [e for e in run.checkpoint_epochs if e <= until]
    if not eps:
        first = run.checkpoint_epochs[0] if run.checkpoint_epochs else None
        raise ConfigError(f"until={until} is invalid: the run has no checkpoint at or before it"
                          + (f" (the first is epoch {first})" if first is not None else ""))
    return eps


def _window(eps: list[int], n_points: int) -> list[int]:
    half = eps[len(eps) // 2:] if len(eps) >= 4 else eps
    idx = np.unique(np.round(np.linspace(0, len(half) - 1, min(n_points, len(half)))).astype(int))
    return [half[i] for i in idx]


def keys_at(run: Run, epoch: int) -> tuple[dict[int, list[int]], dict[int, str]]:
    """Key frequencies per model at checkpoint ``epoch``: the W_L largest-gap rule
    (:func:`grokscope.measures.progress.resolve_keys`), or, for a model whose W_L has no gap yet, its ``FALLBACK_KEYS``
    largest per-frequency shares; and which rule gave them."""
    keys = resolve_keys(run, None, epoch=epoch)
    rule = {k: "gap" for k in keys}
    empty = [k for k, v in keys.items() if not v]
    if empty:
        stacked = run.stacked_params(epoch)
        for k in empty:
            sh = wl_shares(fr.wl_from_params({n: v[k] for n, v in stacked.items()}, run.configs[k].n_layers))
            keys[k] = sorted(int(i) + 1 for i in np.argsort(-sh.numpy(), kind="stable")[:FALLBACK_KEYS])
            rule[k] = f"top{FALLBACK_KEYS}"
    return keys, rule


def features_run(run: Run, until: int, *, n_points: int = N_POINTS, workers: int | None = None,
                 metrics: pd.DataFrame | None = None) -> list[Features]:
    """:class:`Features` of every model of ``run`` from the checkpoints and metrics at epochs ``<= until``.
    ``metrics``: the metrics frame to read instead of ``run.metrics`` (a trainer's rows so far, for
    :class:`LiveForecast`); its rows after ``until`` are dropped too."""
    eps = _allowed(run, until)
    n_points = integer("n_points", n_points, lo=2)
    last = eps[-1]
    keys, rule = keys_at(run, last)
    win = _window(eps, n_points)
    prog = compute_progress(run, keys, epochs=win, workers=workers)
    met = run.metrics if metrics is None else metrics
    met = met[met["epoch"] <= until]
    out = []
    for k in range(run.K):
        w = wide(prog, model=k)
        t = w.index.to_numpy(float) / 1000.0

        def slope(col: str, log: bool = True) -> float:
            if col not in w:
                return float("nan")
            v = w[col].to_numpy(float)
            return trend(t, np.log10(np.clip(v, 1e-300, None)) if log else v)[1]

        r_now, r_slope, r_curv = trend(t, np.log10(np.clip(w["restricted_loss"].to_numpy(float), 1e-300, None)))
        m = met[met["model"] == k].sort_values("epoch")
        tm = m.dropna(subset=["test_acc"])
        hit = tm.loc[tm["test_acc"] > ACC, "epoch"]
        out.append(Features(
            model=k, until=int(until), last_checkpoint=int(last), keys=list(keys[k]), keys_rule=rule[k], window=[int(e) for e in win],
            log_restricted=r_now, restricted_slope=r_slope, restricted_curvature=r_curv,
            excluded_slope=slope("excluded_loss"), gini_W_E_slope=slope("gini_W_E", False),
            gini_W_L_slope=slope("gini_W_L", False), sum_sq_slope=slope("sum_sq"),
            test_acc=float(tm["test_acc"].iloc[-1]) if len(tm) else float("nan"),
            grokked_at=int(hit.iloc[0]) if len(hit) else None,
            spectral=spectral_energy(m["train_loss"].to_numpy(float))))
    return out
