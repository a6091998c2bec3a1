"""The constants of the grok forecasts fitted on *other* models: our forecaster's raw crossing
(:func:`raw_forecast`), its :class:`Calibration` (:func:`fit_calibration`, :func:`load_calibration`) and the
baseline's regression (:func:`fit_baseline`). The forecasts themselves are :mod:`grokscope.measures.forecast`'s.

Ours: a least-squares line through ``log10 restricted_loss`` against the epoch over the trend window; the raw
forecast is where it crosses ``log10 threshold`` (default ``THRESHOLD = 0.1``, about where the restricted
accuracy saturates). A calibration rescales the remaining time by ``scale`` (the median ratio of actual to raw
remaining time) and gives the interval from the 10% and 90% quantiles of the log ratios.

Baseline (Notsawo et al. 2023): a least-squares regression ``log10 grok_epoch = a + b * spectral``, its interval
from the 10%/90% residual quantiles.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..checks import ConfigError, integer, number
from .forecast_features import Features, crossing

THRESHOLD = 0.1  # restricted loss (test pairs) at which a model is taken to grok

__all__ = ["THRESHOLD", "Calibration", "raw_forecast", "fit_baseline", "fit_calibration", "load_calibration"]


@dataclass
class Calibration:
    """Constants fitted on other models (:func:`fit_calibration`): ours ``scale`` (remaining-time factor) and
    ``lo``/``hi`` (log10 quantiles of actual/predicted); the baseline's regression ``a + b * spectral`` and its
    residual quantiles. ``n``: models used."""

    scale: float = 1.0
    lo: float = -math.log10(2.0)
    hi: float = math.log10(2.0)
    base_a: float | None = None
    base_b: float | None = None
    base_lo: float = 0.0
    base_hi: float = 0.0
    n: int = 0
    n_base: int = 0


def raw_forecast(f: Features, threshold: float) -> float | None:
    """Our uncalibrated forecast: where the restricted-loss line crosses ``threshold`` (epochs; ``None``: no keys
    or no crossing)."""
    if not f.keys:
        return None
    c = crossing(f.last_checkpoint / 1000.0, f.log_restricted, f.restricted_slope, math.log10(threshold))
    return None if c is None else max(c * 1000.0, float(f.until))


def fit_baseline(cal: Calibration, xs: Sequence[tuple[float, float]]) -> None:
    """The baseline's regression ``log10 epoch = a + b * spectral`` on ``(spectral, epoch)`` pairs, into ``cal``."""
    xs = [(s, math.log10(a)) for s, a in xs if math.isfinite(s) and a > 0]
    if len(xs) < 2:
        return
    x, y = np.array(xs).T
    if np.ptp(x) > 0:
        cal.base_b, cal.base_a = (float(v) for v in np.polyfit(x, y, 1))
    else:
        cal.base_b, cal.base_a = 0.0, float(y.mean())
    res = y - (cal.base_a + cal.base_b * x)
    cal.base_lo, cal.base_hi = float(min(np.quantile(res, 0.1), 0.0)), float(max(np.quantile(res, 0.9), 0.0))
    cal.n_base = len(xs)


def fit_calibration(pairs: Sequence[tuple[Features, float]], threshold: float = THRESHOLD) -> Calibration:
    """Fit the constants on ``(features, actual grokking epoch)`` of models *other than* the one to forecast
    (models that grokked after their ``until``; others are skipped). Fewer than 2 usable models: defaults."""
    cal = Calibration()
    ratios, rem = [], []
    for f, actual in pairs:
        raw = raw_forecast(f, threshold)
        if raw is not None and actual > f.until and raw > f.until:
            ratios.append((actual - f.until) / (raw - f.until))
    if len(ratios) >= 2:
        cal.scale = float(np.median(ratios))
        for f, actual in pairs:
            raw = raw_forecast(f, threshold)
            if raw is not None and actual > f.until and raw > f.until:
                rem.append(math.log10(actual / (f.until + cal.scale * (raw - f.until))))
        cal.lo, cal.hi = float(min(np.quantile(rem, 0.1), 0.0)), float(max(np.quantile(rem, 0.9), 0.0))
        cal.n = len(ratios)
    fit_baseline(cal, [(f.spectral, a) for f, a in pairs if a > f.until])
    return cal


def load_calibration(path: str | Path) -> Calibration:
    """A :class:`Calibration` from JSON: the ``"calibration"`` object of ``benchmarks/forecast_eval.py``'s output
    (fitted on every model it evaluated, all fractions pooled) or a bare object of the same fields. One-line
    ConfigError naming the file and the field otherwise."""
    name = f"calibration={str(path)!r}"
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{name} is invalid: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"{name} is invalid: not JSON ({str(e).splitlines()[0]})") from None
    d = doc.get("calibration", doc) if isinstance(doc, dict) else None
    if not isinstance(d, dict):
        raise ConfigError(f"{name} is invalid: must hold a JSON object of Calibration fields")
    known = {f.name for f in Calibration.__dataclass_fields__.values()}
    extra = sorted(set(d) - known)
    if extra:
        raise ConfigError(f"{name} is invalid: unknown field {extra[0]!r} (fields: {', '.join(sorted(known))})")
    kw = {}
    for k, v in d.items():
        where = f"{name} field {k}"
        if k in ("base_a", "base_b") and v is None:
            kw[k] = None
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}={v!r} is invalid: must be a number")
        elif k in ("n", "n_base"):
            kw[k] = integer(f"{name} field {k}", v, lo=0)
        elif k == "scale":
            kw[k] = number(where, v, lo=0, lo_open=True)
        elif k in ("lo", "base_lo"):
            kw[k] = number(where, v, hi=0)
        elif k in ("hi", "base_hi"):
            kw[k] = number(where, v, lo=0)
        else:
            kw[k] = number(where, v)
    cal = Calibration(**kw)
    if (cal.base_a is None) != (cal.base_b is None):
        raise ConfigError(f"{name} is invalid: base_a and base_b must both be numbers or both null")
    return cal
