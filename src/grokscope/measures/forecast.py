"""Forecast the epoch at which a model groks (test accuracy > 99%) from the start of its training (paper §6).

Entry points::

    from grokscope.measures.forecast import forecast_run
    res = forecast_run(Run.load("runs/seeds"), until=3000)   # list of Forecast, one per model

This module: the forecasts of a run (:func:`forecast_run`, :func:`predict`) and their output (a frame,
``forecast.json``, the printed table). What the forecasters see at ``until`` (nothing after it) is
:mod:`grokscope.measures.forecast_features`'s; the constants fitted on other models
:mod:`grokscope.measures.forecast_calibration`'s; the forecast while training
:mod:`grokscope.measures.forecast_live`'s.

Which forecaster: the fitted one, where it exists
-------------------------------------------------
:func:`forecast_run` (``grokscope forecast``, ``train --forecast``) uses the *fitted* forecaster of
:mod:`grokscope.measures.forecast_model` (small regressions on log-time features -- the excluded loss's
rise, the restricted loss's and the weight norm's fall, the Gini of the Fourier norms, the key frequencies'
emergence, the effective weight decay -- fitted on the development part of ``benchmarks/forecast_corpus.py``; its
point forecast, 80% interval and ``p_grok``, the probability that the model groks within its budget) when its
constants are shipped (``forecast_model.json``) and no ``calibration`` is given (a calibration belongs to the
trend forecaster below); each forecast then carries ``trust``, the forecaster's held-out error on the corpus, and
``trend``, the restricted-loss trend's forecast beside it. ``forecaster="trend"`` forces the trend forecaster.

The trend forecaster (explainable, one line of arithmetic)
------------------------------------------------------------
Assumption: during circuit formation the restricted loss (the logits kept to the key frequencies' components,
test pairs) falls log-linearly, and the model groks when it reaches ``threshold`` (default ``THRESHOLD = 0.1``,
about where the restricted accuracy saturates). A least-squares line is fitted to ``log10 restricted_loss``
against the epoch over the trend window; the raw forecast is where that line crosses ``log10 threshold``:
``until + (log10 r(until) - log10 threshold) / (-slope)``. A :class:`Calibration` (fitted on *other* models,
:func:`~grokscope.measures.forecast_calibration.fit_calibration`) rescales the remaining time by ``scale`` (the
median ratio of actual to raw remaining time) and gives the interval from the 10% and 90% quantiles of the log
ratios; without one, ``scale = 1`` and the interval is the remaining time x/÷ 2. No crossing (a flat or rising
restricted loss, or no keys yet): no forecast (``predicted = None``). A model whose test accuracy already passed
99% by ``until`` is reported as grokked, with the observed epoch.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..checks import ConfigError
from ..files import atomic_write
from ..jsonutil import clean
from ..training.run import Run
from . import forecast_model as fmod
from .forecast_calibration import THRESHOLD, Calibration, fit_baseline, raw_forecast
from .forecast_features import N_POINTS, Features, features_run

FORECAST_FILE = "forecast.json"

__all__ = ["Forecast", "predict", "grok_epochs", "forecast_run", "forecast_frame", "write_forecast", "format_table",
           "FORECAST_FILE"]


# ====================================================================== forecasting
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
    p_grok: float | None = None  # the fitted forecaster's probability of grokking within the budget
    trend: float | None = None  # the restricted-loss trend's forecast, when the fitted one is shown
    trust: str = ""  # how much to trust the forecast: the fitted forecaster's held-out error


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
    raw = raw_forecast(f, threshold)
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


def trust_text(fm_model, config=None) -> str:
    """One line: the fitted forecaster's held-out errors (``ForecastModel.trust``); with the run's ``config``, and
    where the run lies outside the fitting corpus (``trust["domain"]``: its p, d_model, n_layers, longest budget),
    also that, and the errors measured on such runs (``trust["transfer"]``, by ``benchmarks/forecast_transfer.py
    --record``) if any."""
    t = fm_model.trust or {}
    if not t:
        return "fitted forecaster: no held-out error recorded; do not trust it"
    def g(k, d=t):
        v = d.get(k)
        return "-" if v is None else f"{v:.2f}"
    def c(k, d=t):
        v = d.get(k)
        return "-" if v is None else f"{v:.0%}"
    line = (f"how much to trust it: on {t.get('heldout_models', '?')} held-out corpus models"
            f"{' (partial corpus)' if t.get('partial') else ''} its median |pred - G| / G was "
            f"{g('mdare_mem')} from the end of memorisation, {g('mdare_0.25')} / {g('mdare_0.5')} / "
            f"{g('mdare_0.75')} from 25 / 50 / 75% of G (the trivial 'it groks now': {g('trivial_mdare_mem')}, "
            f"0.75, 0.50, 0.25), its 80% intervals held G {c('coverage_mem')} / {c('coverage_0.25')} / "
            f"{c('coverage_0.5')} / {c('coverage_0.75')}; p_grok AUC {g('auc_200')} at epoch 200. "
            f"Fitted on {t.get('corpus', 'the corpus')}: other sizes, tasks or optimisers are outside it.")
    outside = _outside(t.get("domain"), config)
    if not outside:
        return line
    line += f" This run is outside it ({outside})"
    x = t.get("transfer")
    if not x:
        return line + ": its error here is unmeasured."
    early = x.get("early_mem")
    return (line + f": on {x.get('models', '?')} grokked models outside it ({x.get('runs', '')}) its median "
            f"|pred - G| / G was {g('mdare_mem', x)} from the end of memorisation (trivial {g('trivial_mdare_mem', x)}) "
            f"and {g('mdare_0.25', x)} from 25% of G, its intervals held G {c('coverage_mem', x)} / "
            f"{c('coverage_0.25', x)}" + (f", and it forecast too early {c('early_mem', x)} of the time: read it as a "
                                        "lower bound." if early is not None and early >= 0.8 else "."))


def _outside(domain: dict | None, config) -> str:
    """How ``config`` lies outside the corpus ``domain`` ("p 113, d_model 128"), or "" (inside, or unknown)."""
    if not domain or config is None:
        return ""
    out = [f"{k} {getattr(config, k)}" for k in ("p", "d_model", "n_layers")
           if k in domain and getattr(config, k, None) not in domain[k]]
    if "epochs" in domain and getattr(config, "epochs", 0) > 2 * domain["epochs"]:
        out.append(f"a {config.epochs:,}-epoch budget")
    return ", ".join(out)


def _fitted(run: Run, until: int, metrics: pd.DataFrame | None):
    """The fitted forecaster's ``{model: result}`` at ``until`` (``None``: no shipped constants, or a run it does
    not apply to: not one-layer modular addition with AdamW)."""
    model = fmod.load_model()
    c = run.config
    if model is None or c.task != "add" or c.n_layers != 1 or c.optimizer not in ("adamw", "orthoadamw"):
        return None, None
    met = run.metrics if metrics is None else metrics
    met = met[met["epoch"] <= until]
    ckpts = [e for e in run.checkpoint_epochs if e <= until]
    need = set()
    for k in range(run.K):
        need |= set(fmod.needed_epochs(ckpts, until, fmod.mem_epoch(met[met["model"] == k])))
    prog = fmod.causal_progress(run, need)
    return {k: model.predict(fmod.series_from_run(run, k, until, met, prog), until) for k in range(run.K)}, model


def forecast_run(run: Run, until: int, calibration: Calibration | Mapping[int, Calibration] | None = None, *,
                 threshold: float = THRESHOLD, n_points: int = N_POINTS, workers: int | None = None,
                 metrics: pd.DataFrame | None = None, forecaster: str = "auto") -> list[Forecast]:
    """Forecasts of every model of ``run`` from epochs ``<= until``. ``forecaster``: ``"auto"`` (the fitted
    forecaster where it applies and no ``calibration`` is given, else the trend), ``"fitted"`` or ``"trend"``.
    Without a ``calibration``, the trend uses the defaults and the baseline is fitted leave-one-out on the run's
    *other* models that grokked by ``until`` (their observed epochs are known at ``until``; none if fewer than
    2)."""
    if forecaster not in ("auto", "fitted", "trend"):
        raise ValueError(f"forecaster={forecaster!r}: must be auto, fitted or trend")
    feats = features_run(run, until, n_points=n_points, workers=workers, metrics=metrics)
    diverged = _diverged(run.metrics if metrics is None else metrics, until)
    out = []
    for f in feats:
        if f.model in diverged:  # its weights are no longer a model: nothing to extrapolate
            out.append(Forecast(f.model, f.until, False, None, None, None, None, None, None,
                                f"diverged (train loss non-finite from epoch {diverged[f.model]})", f))
            continue
        if isinstance(calibration, Mapping):
            cal = calibration.get(f.model)
        elif calibration is not None:
            cal = calibration
        else:  # the other models' observed epochs are known at ``until``: the baseline only
            cal = Calibration()
            fit_baseline(cal, [(g.spectral, float(g.grokked_at)) for g in feats
                               if g.model != f.model and g.grokked_at is not None])
        out.append(predict(f, cal, threshold))
    if forecaster == "trend" or (forecaster == "auto" and calibration is not None):
        return out
    fitted, model = _fitted(run, until, metrics)
    if fitted is None:
        if forecaster == "fitted":
            raise ConfigError("forecaster='fitted' is invalid for this run: the fitted forecaster needs "
                              "forecast_model.json and a one-layer modular-addition run trained with AdamW")
        return out
    trust = trust_text(model, run.config)
    for fc in out:
        r = fitted[fc.model]
        if fc.model in diverged:  # stays "diverged": no forecast of a model whose weights are not finite
            continue
        if fc.grokked:
            fc.p_grok, fc.trust = 1.0, trust
            continue
        fc.trend = fc.predicted
        fc.predicted, fc.lower, fc.upper, fc.p_grok = r["predicted"], r["lower"], r["upper"], r["p_grok"]
        fc.method, fc.trust = "fitted (log-time regression)", trust
    return out


def _diverged(metrics: pd.DataFrame, until: int) -> dict[int, int]:
    """``{model: first epoch <= until whose train loss is NaN or infinite}``."""
    m = metrics[metrics["epoch"] <= until]
    bad = m[~np.isfinite(m["train_loss"].to_numpy(dtype=float))]
    return {int(k): int(g["epoch"].min()) for k, g in bad.groupby("model")}


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

    lines = [f"{'model':>5} {'grokked':>7} {'predicted':>10} {'80% interval':>17} {'p_grok':>6} {'baseline':>9}  "
             f"{'keys':<18} {'log10 r':>7} {'r slope':>8} {'excl slope':>10}  method"]
    for fc in forecasts:
        f = fc.features
        iv = "-" if fc.lower is None else f"{e(fc.lower)}-{e(fc.upper)}"
        keys = ",".join(map(str, f.keys)) or "none"
        pg = "-" if fc.p_grok is None else f"{fc.p_grok:.2f}"
        lines.append(f"{fc.model:>5} {'yes' if fc.grokked else 'no':>7} {e(fc.predicted):>10} {iv:>17} {pg:>6} "
                     f"{e(fc.baseline):>9}  {keys:<18.18} {f.log_restricted:>7.2f} {f.restricted_slope:>8.3f} "
                     f"{f.excluded_slope:>10.3f}  {fc.method}")
    trust = next((fc.trust for fc in forecasts if fc.trust), "")
    if trust:
        lines.append(trust)
    return "\n".join(lines)

