"""Forecast the epoch at which a model groks (test accuracy > 99%) from the start of its training (paper §6).

Entry points::

    from grokscope.measures.forecast import forecast_run
    res = forecast_run(Run.load("runs/seeds"), until=3000)   # list of Forecast, one per model

No information after ``until`` is used: only the checkpoints at epochs ``<= until`` and the metrics rows at
epochs ``<= until`` are read, and the key frequencies are chosen (:func:`grokscope.measures.progress.resolve_keys`, the
W_L largest-gap rule) at the *last allowed checkpoint*, not the final one the paper uses. The progress measures
(:func:`grokscope.measures.progress.compute_progress`) are computed on at most ``n_points`` checkpoints, evenly spaced
over the second half of the allowed ones (the trend window), the last allowed checkpoint always included.

Our forecaster (explainable, one line of arithmetic)
----------------------------------------------------
Assumption: during circuit formation the restricted loss (the logits kept to the key frequencies' components,
test pairs) falls log-linearly, and the model groks when it reaches ``threshold`` (default ``THRESHOLD = 0.1``,
about where the restricted accuracy saturates). A least-squares line is fitted to ``log10 restricted_loss``
against the epoch over the trend window; the raw forecast is where that line crosses ``log10 threshold``:
``until + (log10 r(until) - log10 threshold) / (-slope)``. A :class:`Calibration` (fitted on *other* models,
:func:`fit_calibration`) rescales the remaining time by ``scale`` (the median ratio of actual to raw remaining
time) and gives the interval from the 10% and 90% quantiles of the log ratios; without one, ``scale = 1`` and the
interval is the remaining time x/÷ 2. No crossing (a flat or rising restricted loss, or no keys yet): no forecast
(``predicted = None``). A model whose test accuracy already passed 99% by ``until`` is reported as grokked, with
the observed epoch.

Baseline: Notsawo et al. 2023, "Predicting grokking long before it happens"
--------------------------------------------------------------------------
Their signal is the spectral signature of the early *training-loss* curve: grokking runs show oscillations
(slingshot-like spikes) that a Fourier transform of the loss curve picks up. Here: ``log10 train_loss`` per epoch
``<= until``, detrended by a least-squares line, its power spectrum (``rfft``) and the share of its power at
periods below ``1/8`` of the window -> ``spectral = log10`` of that high-frequency power per sample. The baseline
is a least-squares regression ``log10 grok_epoch = a + b * spectral`` fitted on other models (its interval: the
10%/90% residual quantiles); it needs a calibration (at least 2 models), else no forecast.

Extra features reported beside (not used by the forecast): the slopes (decades per 1k epochs) of the excluded
loss, the Gini coefficients of W_E and W_L, the sum of squared weights, and the curvature of log10 restricted loss.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..checks import ConfigError, integer, number
from ..files import atomic_write
from ..fourier import basis as fr
from ..jsonutil import clean
from ..fourier.keys import wl_shares
from .progress import compute_progress, resolve_keys, wide
from ..training.run import Run

THRESHOLD = 0.1  # restricted loss (test pairs) at which a model is taken to grok
FALLBACK_KEYS = 5  # a model with no keys yet by the gap rule: its W_L's top 5 frequencies
N_POINTS = 12  # checkpoints in the trend window
ACC = 0.99  # "groks": test accuracy passes 99%
HIGH_PERIOD = 1 / 8  # baseline: power at periods below this fraction of the window
FORECAST_FILE = "forecast.json"

__all__ = ["THRESHOLD", "Features", "Calibration", "Forecast", "trend", "crossing", "spectral_energy",
           "features_run", "fit_calibration", "predict", "forecast_run", "forecast_frame", "write_forecast",
           "format_table", "grok_epochs", "live_text", "LiveForecast", "load_calibration",
           "live_forecast", "print_cost"]


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


@dataclass
class Forecast:
    """One model's forecast of the epoch its test accuracy passes 99% (``None``: no forecast), with its interval,
    and the baseline's beside it."""

    model: int
    until: int
    grokked: bool
    predicted: float | None
    lower: float | None
    upper: float | None
    baseline: float | None
    baseline_lower: float | None
    baseline_upper: float | None
    method: str
    features: Features = field(repr=False)


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


# ====================================================================== forecasting
def _raw(f: Features, threshold: float) -> float | None:
    """Our uncalibrated forecast: where the restricted-loss line crosses ``threshold`` (epochs)."""
    if not f.keys:
        return None
    c = crossing(f.last_checkpoint / 1000.0, f.log_restricted, f.restricted_slope, math.log10(threshold))
    return None if c is None else max(c * 1000.0, float(f.until))


def _fit_baseline(cal: Calibration, xs: Sequence[tuple[float, float]]) -> None:
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
        raw = _raw(f, threshold)
        if raw is not None and actual > f.until and raw > f.until:
            ratios.append((actual - f.until) / (raw - f.until))
    if len(ratios) >= 2:
        cal.scale = float(np.median(ratios))
        for f, actual in pairs:
            raw = _raw(f, threshold)
            if raw is not None and actual > f.until and raw > f.until:
                rem.append(math.log10(actual / (f.until + cal.scale * (raw - f.until))))
        cal.lo, cal.hi = float(min(np.quantile(rem, 0.1), 0.0)), float(max(np.quantile(rem, 0.9), 0.0))
        cal.n = len(ratios)
    _fit_baseline(cal, [(f.spectral, a) for f, a in pairs if a > f.until])
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


def predict(f: Features, cal: Calibration | None = None, threshold: float = THRESHOLD) -> Forecast:
    """The :class:`Forecast` of one model from its features (and constants fitted on other models)."""
    cal = cal or Calibration()
    base = base_lo = base_hi = None
    if cal.base_a is not None and math.isfinite(f.spectral):
        y = cal.base_a + cal.base_b * f.spectral
        base, base_lo, base_hi = (max(10 ** (y + d), float(f.until)) for d in (0.0, cal.base_lo, cal.base_hi))
    if f.grokked_at is not None:
        e = float(f.grokked_at)
        return Forecast(f.model, f.until, True, e, e, e, base, base_lo, base_hi, "observed", f)
    raw = _raw(f, threshold)
    if raw is None:
        why = "no keys at the last checkpoint" if not f.keys else "restricted loss not falling"
        return Forecast(f.model, f.until, False, None, None, None, base, base_lo, base_hi, f"none ({why})", f)
    pred = f.until + cal.scale * (raw - f.until)
    if cal.n:
        lo, hi = pred * 10 ** cal.lo, pred * 10 ** cal.hi
    else:
        lo, hi = f.until + (pred - f.until) / 2, f.until + (pred - f.until) * 2
    return Forecast(f.model, f.until, False, pred, max(lo, float(f.until)), max(hi, pred), base, base_lo, base_hi,
                    "restricted-loss trend", f)


def grok_epochs(run: Run) -> dict[int, float]:
    """Each model's observed grokking epoch (first test accuracy > 99%; NaN if never): ``Run.milestones``."""
    ms = run.milestones()
    return {int(r.model): float(r.test_acc_99) for r in ms.itertuples()}


def forecast_run(run: Run, until: int, calibration: Calibration | Mapping[int, Calibration] | None = None, *,
                 threshold: float = THRESHOLD, n_points: int = N_POINTS, workers: int | None = None,
                 metrics: pd.DataFrame | None = None) -> list[Forecast]:
    """Forecasts of every model of ``run`` from epochs ``<= until``. Without a ``calibration``, ours uses the
    defaults and the baseline is fitted leave-one-out on the run's *other* models that grokked by ``until``
    (their observed epochs are known at ``until``; none if fewer than 2)."""
    feats = features_run(run, until, n_points=n_points, workers=workers, metrics=metrics)
    out = []
    for f in feats:
        if isinstance(calibration, Mapping):
            cal = calibration.get(f.model)
        elif calibration is not None:
            cal = calibration
        else:  # the other models' observed epochs are known at ``until``: the baseline only
            cal = Calibration()
            _fit_baseline(cal, [(g.spectral, float(g.grokked_at)) for g in feats
                                if g.model != f.model and g.grokked_at is not None])
        out.append(predict(f, cal, threshold))
    return out


# ====================================================================== output
def forecast_frame(forecasts: Sequence[Forecast]) -> pd.DataFrame:
    """One row per model: the forecast, the baseline and the features."""
    rows = []
    for fc in forecasts:
        d = {k: v for k, v in asdict(fc).items() if k != "features"}
        d.update({f"f_{k}": v for k, v in asdict(fc.features).items() if k not in ("model", "until")})
        rows.append(d)
    return pd.DataFrame(rows)


def write_forecast(path: str | Path, forecasts: Sequence[Forecast], **meta) -> Path:
    """``forecast.json`` (atomic): ``{meta..., "models": [forecast with its features]}``."""
    path = Path(path)
    doc = clean({**meta, "threshold": meta.get("threshold", THRESHOLD), "models": [asdict(f) for f in forecasts]})
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(doc, indent=1) + "\n"))
    return path


def format_table(forecasts: Sequence[Forecast]) -> str:
    """The per-model table ``grokscope forecast`` prints."""
    def e(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f}"

    lines = [f"{'model':>5} {'grokked':>7} {'predicted':>10} {'interval':>17} {'baseline':>9}  "
             f"{'keys':<18} {'log10 r':>7} {'r slope':>8} {'excl slope':>10}  method"]
    for fc in forecasts:
        f = fc.features
        iv = "-" if fc.lower is None else f"{e(fc.lower)}-{e(fc.upper)}"
        keys = ",".join(map(str, f.keys)) or "none"
        lines.append(f"{fc.model:>5} {'yes' if fc.grokked else 'no':>7} {e(fc.predicted):>10} {iv:>17} "
                     f"{e(fc.baseline):>9}  {keys:<18.18} {f.log_restricted:>7.2f} {f.restricted_slope:>8.3f} "
                     f"{f.excluded_slope:>10.3f}  {fc.method}")
    return "\n".join(lines)


# ====================================================================== while training: grokscope train --forecast
def live_text(forecasts: Sequence[Forecast], epoch: int) -> str:
    """The progress-bar postfix of :class:`LiveForecast`: per model ``~PRED [LOWER-UPPER]``, ``grokked at E`` or
    ``no forecast yet`` (models numbered when there are several)."""
    def one(fc: Forecast) -> str:
        if fc.grokked:
            return f"grokked at {fc.predicted:,.0f}"
        if fc.predicted is None:
            return "no forecast yet"
        return f"~{fc.predicted:,.0f} [{fc.lower:,.0f}-{fc.upper:,.0f}]"

    parts = [one(fc) if len(forecasts) == 1 else f"{fc.model}: {one(fc)}" for fc in forecasts]
    return f"grok forecast @{epoch:,}: " + "; ".join(parts)


class LiveForecast:
    """``grokscope train --forecast``: :func:`forecast_run` of the run directory at ``until = epoch``, at epochs
    that have a checkpoint -- the same function as ``grokscope forecast RUN --until epoch``, given the trainer's
    metrics rows ``<= epoch`` (the file on disk lags the trainer by the epoch's own row), so it reads nothing
    after the current epoch.

    When: with ``every``, at every multiple of ``every`` (a checkpoint epoch); else at the checkpoints that keep
    the forecasts' share of the wall time since the first one within ``budget`` (default 5%: a forecast computes
    the progress measures of up to 12 checkpoints, seconds for the paper's model, against ~0.1-1 s an epoch);
    ``budget=None``: every checkpoint. Always at the final epoch. Never at epoch 0 (no trend yet).

    Calibration: ``calibration`` if given, else the uncalibrated defaults of :func:`forecast_run` (``scale = 1``:
    the raw restricted-loss line; interval: remaining time x/÷ 2; the baseline fitted on the run's other models
    that grokked by then, none before two have), so the bar shows what ``grokscope forecast`` prints.

    Called as ``live(run_dir, epoch, metrics)`` -> the postfix text; keeps ``history`` (epoch -> forecasts),
    ``seconds`` (epoch -> wall seconds of the update) and ``errors`` (epoch -> message: a forecast that fails,
    e.g. on a diverged model, is shown as failed and never stops training)."""

    BUDGET = 0.05

    def __init__(self, every: int | None = None, calibration: Calibration | Mapping[int, Calibration] | None = None,
                 threshold: float = THRESHOLD, workers: int | None = 1, budget: float | None = BUDGET,
                 clock=None):
        import time

        self.every = None if every is None else integer("forecast_every", every, lo=1)
        self.budget = None if budget is None else number("forecast_budget", budget, lo=0, hi=1, lo_open=True)
        self.calibration, self.threshold, self.workers = calibration, threshold, workers
        self.clock = clock or time.perf_counter
        self.history: dict[int, list[Forecast]] = {}
        self.seconds: dict[int, float] = {}
        self.errors: dict[int, str] = {}
        self.text = "grok forecast: none yet"
        self._t0: float | None = None

    def due(self, epoch: int, checkpoint_every: int, final: int) -> bool:
        """Whether to forecast at ``epoch``: one with a checkpoint, >= 1, and the final epoch, or a multiple of
        ``every``, or (no ``every``) within the time ``budget``."""
        if epoch < 1 or (epoch % checkpoint_every != 0 and epoch != final):
            return False
        if epoch == final:
            return True
        if self.every is not None:
            return epoch % self.every == 0
        if self.budget is None or self._t0 is None:
            return True
        return sum(self.seconds.values()) <= self.budget * (self.clock() - self._t0)

    def __call__(self, run_dir: str | Path, epoch: int, metrics: pd.DataFrame | None = None) -> str:
        t0 = self.clock()
        if self._t0 is None:
            self._t0 = t0
        try:
            res = forecast_run(Run.load(run_dir), epoch, self.calibration, threshold=self.threshold,
                               workers=self.workers, metrics=metrics)
        except Exception as e:  # noqa: BLE001 - a display: it must not stop a training run
            self.errors[epoch] = f"{type(e).__name__}: {e}"
            self.text = f"grok forecast @{epoch:,}: failed ({type(e).__name__})"
        else:
            self.history[epoch] = res
            self.text = live_text(res, epoch)
        self.seconds[epoch] = self.clock() - t0
        return self.text


def live_forecast(enabled: bool, every: int | None, calibration_file: str | None,
                  checkpoint_every: int) -> LiveForecast | None:
    """``grokscope train --forecast [--forecast-every N] [--forecast-calibration FILE]``: the live forecaster, or
    None without ``--forecast``; ``every`` must be a multiple of ``checkpoint_every`` (forecasts are made at
    checkpoints)."""
    if not enabled:
        return None
    if every is not None and every % checkpoint_every != 0:
        raise ConfigError(f"forecast_every={every} is invalid: must be a multiple of "
                          f"checkpoint_every={checkpoint_every} (forecasts are made at checkpoints)")
    cal = None if calibration_file is None else load_calibration(calibration_file)
    return LiveForecast(every=every, calibration=cal)


def print_cost(live: LiveForecast | None, wall_s: float) -> None:
    """``--forecast``: one stderr line with the updates' count, median and maximum time and their share of
    ``wall_s`` (the command's wall time so far; also printed when training was interrupted)."""
    if live is None or not live.seconds:
        return
    ms = sorted(1e3 * v for v in live.seconds.values())
    share = sum(ms) / 1e3 / max(wall_s, 1e-9)
    print(f"forecast: {len(ms)} updates, median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms "
          f"({share:.1%} of this command's wall time)"
          + (f"; {len(live.errors)} failed (last: {list(live.errors.values())[-1]})" if live.errors else ""),
          file=sys.stderr)
