"""The fitted grok forecaster and the norm-separation delay law, on what is known of a model at
``until``: its config's learning rate, weight decay and data fraction, its metrics rows ``<= until`` and its
*causal* progress measures at checkpoints ``<= until`` (the restricted/excluded losses at checkpoint ``e`` use the
key frequencies chosen at ``e``; :func:`causal_progress`).

Entry points::

    from grokscope.measures.forecast_model import series_from_run, ForecastModel, load_model
    s = series_from_run(run, model=0, until=600)          # what is known at epoch 600
    fm = load_model()                                     # fitted on the corpus's development part
    fm.predict(s, 600)   # {"predicted", "lower", "upper", "p_grok", "grokked", ...}

Our forecaster (:class:`ForecastModel`)
---------------------------------------
Two small regressions on log-time features (:func:`features`), fitted on a development corpus
(``benchmarks/forecast_corpus.py``; the constants shipped in ``forecast_model.json``):

* the grokking epoch ``G`` (first test accuracy > 99%): ridge regression of ``log10(G / until)`` on the
  standardised features; the point forecast ``until * 10**yhat``; the 80% interval from the 10% / 90% quantiles of
  the *out-of-fold* residuals (5 folds by config on the fitting models), so it is not narrowed by in-sample fit;
* whether the model groks within the budget at all: an L2-penalised logistic regression on the same features
  and the regression's margin ``log10(budget / predicted G)`` (label: ``G <= budget``), ``p_grok``.

Fitting rows: every fitting model at a grid of forecast epochs that does not depend on its ``G`` (every
checkpoint from epoch 40 on, at most 25 per model, each model weighted equally) while it has not grokked -- never
at fractions of ``G``, which would teach the regression the evaluation's own answer ``G = until / fraction``.

Features (:data:`FEATURES`): ``log10 until``; ``log10(lr * weight_decay)`` (the effective decay rate); the data
fraction; whether train accuracy has reached 100% and ``log10`` of the epochs since; the last train and test
accuracy; ``log10`` test loss and its slope; ``log10`` restricted loss and its slope (its fall); the excluded
loss's slope (its rise); ``log10`` of the sum of squared weights and its slope (the weight norm's fall); the Gini
coefficient of W_L's and of W_E's Fourier norms and the slope of W_L's; the number of key frequencies the W_L gap
rule finds (their emergence); and the delay law's remaining time from now, ``log10(ln(|theta_now|^2 /
|theta_post|^2) / gamma)``. Slopes are least-squares slopes over the checkpoints in ``[until / 2, until]`` (at
most 12), per 1,000 epochs, in decades for logs.

Assumptions: (1) the model to forecast is like the fitting corpus (the same task and architecture family, full-batch
AdamW-like training with decoupled weight decay; the shipped fit is on p = 59, d_model = 64 models with budgets of
2,000 epochs, so ``p_grok`` is the probability of grokking within about that many epochs); (2) ``log10(G / until)``
is close to linear in the features over the corpus's range; (3) the residuals of new models are distributed like
the out-of-fold residuals of the fitting ones (the interval's coverage depends on it). Outside the corpus's range
the forecast's held-out error (``trust``) does not apply.

Baseline: the norm-separation delay law (Truong et al., arXiv 2603.13331)
-------------------------------------------------------------------------
``T_grok - T_mem = C / gamma_eff * ln(|theta_mem|^2 / |theta_post|^2)`` (:func:`delay_law`), applied at the end of
memorisation: ``T_mem`` the first epoch of train accuracy 100%, ``|theta_mem|^2`` the sum of squared weights at
the first checkpoint at or after it, ``gamma_eff = lr * weight_decay`` per step (AdamW's decoupled decay shrinks
every weight by the factor ``1 - lr * wd`` each step; one step per epoch, full batch; the 10 warm-up steps are
ignored). ``|theta_post|^2`` is not observable at forecast time; it is estimated from the weight-decay / gradient
balance of AdamW: at equilibrium the decay ``lr * wd * theta`` balances Adam's normalised update of size ~``lr``
per coordinate, so ``|theta_post|^2 = A / wd^2`` with one constant ``A`` fitted on the fitting models (the median
of ``|theta_G|^2 * wd^2``, the norm at their grokking epoch). ``C`` is the median of ``(G - T_mem) * gamma /
ln(...)`` over the fitting models; the log ratio is floored at ``LOG_FLOOR`` (a model already at the post norm
is forecast to grok ``LOG_FLOOR * C / gamma`` after memorising). Its interval: the 10% / 90% quantiles of the
fitting models' ``log10(actual / predicted)``. Before memorisation it makes no forecast. The second estimate
(``post="ratio"``): ``|theta_post|^2 = rho * |theta_mem|^2`` with ``rho`` the fitting models' median of
``|theta_G|^2 / |theta_mem|^2``, which turns the law into ``T_mem + C' / gamma``. On the corpus (development fit):
balance ``A = 4,037``, ``C = 2.60``; ratio ``rho = 0.755``, ``C = 3.63``, i.e. ``T_grok - T_mem = 1.02 / (lr * wd)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .forecast_features import spectral_energy
from .forecast_series import (MEASURES, Series, causal_progress, load_corpus, mem_epoch, needed_epochs,
                              observed, series_from_run, wide_progress, window)

MIN_UNTIL = 40
LOG_FLOOR = 0.05
RIDGE = 1.0
MAX_ROWS = 25
MODEL_FILE = Path(__file__).with_name("forecast_model.json")
FEATURES = ("log_until", "log_gamma", "frac", "memorised", "log_since_mem", "train_acc", "test_acc",
            "log_test_loss", "test_loss_slope", "log_restricted", "restricted_slope", "excluded_slope",
            "log_sum_sq", "sum_sq_slope", "gini_W_L", "gini_W_L_slope", "gini_W_E", "n_keys", "dl_remaining")

__all__ = ["Series", "causal_progress", "series_from_run", "window", "features", "observed", "delay_law",
           "mem_epoch", "needed_epochs", "wide_progress", "MEASURES",
           "DelayLaw", "ForecastModel", "fit_rows", "load_model", "load_corpus", "auc", "MODEL_FILE", "FEATURES"]


# ====================================================================== features
def _slope(t, y) -> float:
    t, y = np.asarray(t, float), np.asarray(y, float)
    ok = np.isfinite(t) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(t[ok]) == 0:
        return 0.0
    return float(np.polyfit(t[ok] / 1000.0, y[ok], 1)[0])


def _log(v):
    return np.log10(np.clip(np.asarray(v, float), 1e-12, None))


def post_norm(A: float, wd: float) -> float:
    """The delay law's ``|theta_post|^2``: the AdamW weight-decay / gradient balance ``A / wd^2``."""
    return A / max(wd, 1e-12) ** 2


def dl_remaining(norm_now: float, wd: float, gamma: float, A: float) -> float:
    """The feature ``dl_remaining``: ``log10(max(ln(norm_now / (A / wd^2)), LOG_FLOOR) / gamma)``."""
    post = post_norm(A, wd)
    ratio = math.log(norm_now / post) if norm_now > 0 and post > 0 else LOG_FLOOR
    ratio = ratio if math.isfinite(ratio) else LOG_FLOOR
    return math.log10(max(ratio, LOG_FLOOR) / max(gamma, 1e-12))


def features(s: Series, until: int, A: float) -> dict[str, float]:
    """:data:`FEATURES` of ``s`` at ``until`` (rows after ``until`` ignored), ``A``: the delay law's balance
    constant. Also ``t_mem``, ``norm_mem`` (for the delay law) and ``spectral`` (the Notsawo et al. feature)."""
    s = s.upto(until)
    met, prog = s.metrics, s.progress
    ckpts = list(prog.index)
    # the window over *all* the run's checkpoints (a series read from a run holds only the ones features reads)
    allc = [e for e in s.extra.get("checkpoints", ckpts) if e <= until]
    win = [e for e in window(allc, until) if e in prog.index]
    w = prog.loc[win] if win else prog.iloc[-1:]
    t = np.asarray(w.index, float)
    last = prog.iloc[-1] if len(prog) else pd.Series(dtype=float)
    t_mem = mem_epoch(met)
    tm = met.dropna(subset=["test_acc"])
    tw = tm[tm["epoch"] >= until / 2]
    gamma = s.lr * s.weight_decay
    norm_now = float(last.get("sum_sq", np.nan))
    norm_mem = np.nan
    if t_mem is not None:
        after = [e for e in ckpts if e >= t_mem]
        norm_mem = float(prog.loc[after[0], "sum_sq"]) if after else norm_now
    f = {
        "log_until": math.log10(until),
        "log_gamma": math.log10(max(gamma, 1e-12)),
        "frac": s.frac,
        "memorised": float(t_mem is not None),
        "log_since_mem": math.log10(until - t_mem + 20) if t_mem is not None else 0.0,
        "train_acc": float(met["train_acc"].iloc[-1]) if len(met) else 0.0,
        "test_acc": float(tm["test_acc"].iloc[-1]) if len(tm) else 0.0,
        "log_test_loss": float(_log(tm["test_loss"].iloc[-1])) if len(tm) else 0.0,
        "test_loss_slope": _slope(tw["epoch"], _log(tw["test_loss"])),
        "log_restricted": float(_log(last.get("restricted_loss", np.nan))),
        "restricted_slope": _slope(t, _log(w["restricted_loss"])) if "restricted_loss" in w else 0.0,
        "excluded_slope": _slope(t, _log(w["excluded_loss"])) if "excluded_loss" in w else 0.0,
        "log_sum_sq": float(_log(norm_now)),
        "sum_sq_slope": _slope(t, _log(w["sum_sq"])) if "sum_sq" in w else 0.0,
        "gini_W_L": float(last.get("gini_W_L", 0.0)),
        "gini_W_L_slope": _slope(t, w["gini_W_L"]) if "gini_W_L" in w else 0.0,
        "gini_W_E": float(last.get("gini_W_E", 0.0)),
        "n_keys": float(last.get("n_keys", 0.0)),
        "dl_remaining": dl_remaining(norm_now, s.weight_decay, gamma, A),
    }
    f = {k: (v if math.isfinite(v) else 0.0) for k, v in f.items()}
    f.update(t_mem=t_mem, norm_mem=norm_mem, norm_now=norm_now, spectral=spectral_energy(met["train_loss"].to_numpy(float)))
    return f


# ====================================================================== the delay law
def delay_law(t_mem: float, norm_mem: float, post: float, gamma: float, C: float) -> float:
    """``T_mem + C / gamma * max(ln(norm_mem / post), LOG_FLOOR)``: the norm-separation delay law."""
    ratio = math.log(norm_mem / post) if norm_mem > 0 and post > 0 else LOG_FLOOR
    return t_mem + C / gamma * max(ratio, LOG_FLOOR)


@dataclass
class DelayLaw:
    """The delay law's fitted constants: ``A`` (``|theta_post|^2 = A / wd^2``), ``C``, the interval's log10
    quantiles ``lo``/``hi``; ``n`` fitting models."""

    A: float = 1.0
    C: float = 1.0
    lo: float = 0.0
    hi: float = 0.0
    n: int = 0
    post: str = "balance"

    def post_of(self, s: Series, norm_mem: float) -> float:
        """``|theta_post|^2``: ``A / wd^2`` (``post="balance"``) or ``A * |theta_mem|^2`` (``"ratio"``: a fixed
        fraction of the memorisation norm, which makes the law ``T_mem + C' / gamma``)."""
        return post_norm(self.A, s.weight_decay) if self.post == "balance" else self.A * norm_mem

    @classmethod
    def fit(cls, series: Sequence[Series], post: str = "balance") -> "DelayLaw":
        """From the complete curves of fitting models that memorise and grok: ``A`` the median of ``|theta_G|^2 *
        wd^2`` (``post="balance"``) or of ``|theta_G|^2 / |theta_mem|^2`` (``"ratio"``), ``C`` the median of
        ``(G - T_mem) * gamma / ln(|theta_mem|^2 / |theta_post|^2)``."""
        pts = []
        for s in series:
            G, tm = observed(s)
            if not math.isfinite(G) or tm is None or G < tm:
                continue
            ck = list(s.progress.index)
            eg = min(ck, key=lambda e: abs(e - G))
            after = [e for e in ck if e >= tm]
            if not after:
                continue
            pts.append((s, G, tm, float(s.progress.loc[eg, "sum_sq"]), float(s.progress.loc[after[0], "sum_sq"])))
        if len(pts) < 2:
            return cls(post=post)
        if post == "balance":
            A = float(np.median([ng * s.weight_decay ** 2 for s, _, _, ng, _ in pts]))
        else:
            A = float(np.median([ng / nm for s, _, _, ng, nm in pts]))
        law = cls(A=A, n=len(pts), post=post)
        cs = [(G - tm) * s.lr * s.weight_decay / max(math.log(nm / law.post_of(s, nm)), LOG_FLOOR)
              for s, G, tm, _, nm in pts]
        law.C = float(np.median(cs))
        res = [math.log10(G / delay_law(tm, nm, law.post_of(s, nm), s.lr * s.weight_decay, law.C))
               for s, G, tm, _, nm in pts]
        law.lo, law.hi = float(min(np.quantile(res, 0.1), 0)), float(max(np.quantile(res, 0.9), 0))
        return law

    def predict(self, s: Series, until: int, f: dict | None = None) -> tuple[float, float, float] | None:
        """``(pred, lower, upper)`` at ``until`` (each at least ``until``), ``None`` before memorisation."""
        f = features(s, until, 1.0) if f is None else f
        if f["t_mem"] is None or not math.isfinite(f["norm_mem"]):
            return None
        p = delay_law(f["t_mem"], f["norm_mem"], self.post_of(s, f["norm_mem"]), s.lr * s.weight_decay, self.C)
        return max(p, until), max(p * 10 ** self.lo, until), max(p * 10 ** self.hi, until)


# ====================================================================== our forecaster
def _grid(s: Series, stop: float) -> list[int]:
    eps = [int(e) for e in s.progress.index if MIN_UNTIL <= e < stop]
    if len(eps) > MAX_ROWS:
        eps = [eps[i] for i in np.unique(np.round(np.linspace(0, len(eps) - 1, MAX_ROWS)).astype(int))]
    return eps


def fit_rows(series: Sequence[Series], A: float) -> list[dict]:
    """Fitting rows of :class:`ForecastModel`: per model, its features at the grid of forecast epochs
    (:func:`_grid`: checkpoints from ``MIN_UNTIL`` until it groks or its budget ends, at most ``MAX_ROWS``), with
    ``G``, the label ``groks`` (``G <= budget``), its weight ``1 / rows`` and its ``config`` (the CV group)."""
    rows = []
    for i, s in enumerate(series):
        G, _ = observed(s)
        grid = _grid(s, min(G, s.budget))
        for u in grid:
            f = features(s, u, A)
            rows.append({"i": i, "config": s.config or str(i), "until": u, "G": G, "groks": G <= s.budget,
                         "w": 1.0 / len(grid), **{k: f[k] for k in FEATURES}, "spectral": f["spectral"],
                         "norm_now": f["norm_now"], "wd": s.weight_decay, "gamma": s.lr * s.weight_decay,
                         "budget": s.budget})
    return rows


def _ridge(X, y, w, lam):
    Xa = np.hstack([X, np.ones((len(X), 1))])
    P = lam * np.eye(Xa.shape[1])
    P[-1, -1] = 0.0
    return np.linalg.solve(Xa.T @ (w[:, None] * Xa) + P, Xa.T @ (w * y))


def _logistic(X, y, w, lam, iters=50):
    Xa = np.hstack([X, np.ones((len(X), 1))])
    b = np.zeros(Xa.shape[1])
    P = lam * np.eye(Xa.shape[1])
    P[-1, -1] = 1e-6
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(Xa @ b, -30, 30)))
        g = Xa.T @ (w * (p - y)) + P @ b
        H = Xa.T @ ((w * p * (1 - p))[:, None] * Xa) + P
        step = np.linalg.solve(H, g)
        b -= step
        if np.abs(step).max() < 1e-8:
            break
    return b


@dataclass
class ForecastModel:
    """Our fitted forecaster (module docstring): feature means/scales, the ridge coefficients ``beta`` of
    ``log10(G / until)``, the logistic coefficients ``gamma_`` of ``P(G <= budget)``, the interval's log10
    quantiles ``lo``/``hi``, the delay law's ``A``; ``trust``: the held-out errors measured by
    ``benchmarks/forecast_eval.py`` (shown with every forecast); ``n`` fitting models."""

    mean: list[float]
    scale: list[float]
    beta: list[float]
    gamma_: list[float]
    lo: float
    hi: float
    A: float
    n: int = 0
    n_grok: int = 0
    trust: dict = field(default_factory=dict)
    features: tuple = FEATURES
    stack: bool = True

    @classmethod
    def fit(cls, series: Sequence[Series], A: float | None = None, lam: float = RIDGE, folds: int = 5,
            rows: list[dict] | None = None, stack: bool = True) -> "ForecastModel":
        A = DelayLaw.fit(series).A if A is None else A
        rows = fit_rows(series, A) if rows is None else [
            {**r, "dl_remaining": dl_remaining(r["norm_now"], r["wd"], r["gamma"], A)} for r in rows]
        X = np.array([[r[k] for k in FEATURES] for r in rows], float)
        mean, scale = X.mean(0), X.std(0)
        scale[scale < 1e-9] = 1.0
        Z = (X - mean) / scale
        w = np.array([r["w"] for r in rows])
        g = np.array([r["groks"] for r in rows], float)
        reg = g > 0
        y = np.array([math.log10(r["G"] / r["until"]) if r["groks"] else 0.0 for r in rows])
        beta = _ridge(Z[reg], y[reg], w[reg], lam)
        if stack:  # the classifier also sees the regression's margin log10(budget / predicted G)
            Za = np.hstack([Z, np.ones((len(Z), 1))])
            budget = np.array([r.get("budget", 2000) for r in rows], float)
            until = np.array([r["until"] for r in rows], float)
            margin = np.log10(budget / until) - np.maximum(Za @ beta, 0.0)
            Zc = np.hstack([Z, margin[:, None]])
        else:
            Zc = Z
        gam = _logistic(Zc, g, w, lam)
        # out-of-fold residuals, folds by config
        cfgs = sorted({r["config"] for r in rows if r["groks"]})
        res, rw = [], []
        for k in range(min(folds, len(cfgs))):
            test = {c for j, c in enumerate(cfgs) if j % folds == k}
            te = np.array([r["config"] in test for r in rows]) & reg
            tr = ~np.array([r["config"] in test for r in rows]) & reg
            if te.sum() == 0 or tr.sum() < 3:
                continue
            b = _ridge(Z[tr], y[tr], w[tr], lam)
            pred = np.hstack([Z[te], np.ones((te.sum(), 1))]) @ b
            res.extend(y[te] - np.maximum(pred, 0.0))
            rw.extend(w[te])
        lo, hi = (_wquantile(res, rw, 0.1), _wquantile(res, rw, 0.9)) if res else (-0.3, 0.3)
        return cls(mean.tolist(), scale.tolist(), beta.tolist(), gam.tolist(), float(min(lo, 0)), float(max(hi, 0)),
                   float(A), n=len({r["i"] for r in rows}), n_grok=len({r["i"] for r in rows if r["groks"]}),
                   stack=stack)

    def _z(self, f: dict) -> np.ndarray:
        x = np.array([f[k] for k in self.features] + [], float)
        return np.append((x - np.array(self.mean)) / np.array(self.scale), 1.0)

    def predict(self, s: Series, until: int, f: dict | None = None) -> dict:
        """At ``until``: ``predicted``/``lower``/``upper`` (epochs, >= ``until``; the observed epoch if the model
        already grokked), ``p_grok`` (1 if grokked), ``grokked``."""
        f = features(s, until, self.A) if f is None else f
        G, _ = observed(s.upto(until))
        if math.isfinite(G):
            return {"predicted": G, "lower": G, "upper": G, "p_grok": 1.0, "grokked": True}
        z = self._z(f)
        yhat = max(float(z @ np.array(self.beta)), 0.0)
        zc = np.insert(z, len(z) - 1, math.log10(s.budget / until) - yhat) if self.stack else z
        p = float(1 / (1 + math.exp(-max(min(float(zc @ np.array(self.gamma_)), 30.0), -30.0))))
        pred = until * 10 ** yhat
        return {"predicted": pred, "lower": max(pred * 10 ** self.lo, float(until)),
                "upper": max(pred * 10 ** self.hi, pred), "p_grok": p, "grokked": False}

    def to_dict(self) -> dict:
        return {"mean": self.mean, "scale": self.scale, "beta": self.beta, "gamma_": self.gamma_, "lo": self.lo,
                "hi": self.hi, "A": self.A, "n": self.n, "n_grok": self.n_grok, "trust": self.trust,
                "features": list(self.features), "stack": self.stack}

    @classmethod
    def from_dict(cls, d: dict) -> "ForecastModel":
        d = dict(d)
        d["features"] = tuple(d.get("features", FEATURES))
        if list(d["features"]) != list(FEATURES):
            raise ValueError(f"forecast model features {d['features']} differ from this version's {FEATURES}")
        return cls(**d)


def _wquantile(v, w, q) -> float:
    v, w = np.asarray(v, float), np.asarray(w, float)
    o = np.argsort(v)
    c = np.cumsum(w[o]) / w.sum()
    return float(v[o][min(np.searchsorted(c, q), len(v) - 1)])


def load_model(path: str | Path | None = None) -> ForecastModel | None:
    """The shipped :class:`ForecastModel` (``forecast_model.json`` beside this module, written by
    ``benchmarks/forecast_eval.py --corpus ... --write-model``), or ``None`` if there is none."""
    path = Path(path) if path is not None else MODEL_FILE
    if not path.is_file():
        return None
    return ForecastModel.from_dict(json.loads(path.read_text())["model"])


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties half); ``None`` without both classes."""
    s, l = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = s[l], s[~l]
    if not len(pos) or not len(neg):
        return None
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))

