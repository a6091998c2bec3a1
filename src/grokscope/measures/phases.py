"""The three phases of grokking (paper §5.2) and the paper's claims about them, per model of a run.

Entry points::

    from grokscope.measures.phases import phases_report, detect_phases, check_claims
    rep = phases_report(run, progress)      # progress: the tidy table of grokscope.measures.progress
    rep["models"][0]["ends"]                 # {"memorisation": ..., "circuit_formation": ..., "cleanup": ...}
    claims_frame(rep)                        # one row per model x claim: holds + the deciding numbers

(``phases.json``, the saved report, is :mod:`grokscope.report`'s.)

The paper draws the phase boundaries by eye (mainline: memorisation 0-1.4k, circuit formation 1.4k-9.4k,
cleanup 9.4k-14k epochs). Here they come from one fixed rule, written down before it was run on any real
run and not tuned to one: the *landmark rule*.

Inputs and preprocessing
------------------------
Everything is read from the progress table (:mod:`grokscope.measures.progress`), i.e. at the run's checkpoint
epochs ``t_0 < t_1 < ... < t_n`` (the resolution of every boundary is the checkpoint spacing). Losses and
the sum of squared weights are taken as ``log10``; every series is smoothed by a centred running median
over ``WINDOW = 5`` checkpoints (shrinking at the ends), which removes isolated spikes (slingshots) without
moving the transitions. Rates are finite differences of the smoothed series with respect to the epoch
(``numpy.gradient``); the *descent rate* is minus that.

Landmark detector (used for every boundary): for a series ``y`` and a search window, ``t*`` is the
checkpoint with the largest descent rate ``r*`` in the window. The fall *starts* at the last checkpoint
before ``t*`` whose descent rate is ``<= THETA * r*`` and *ends* at the first checkpoint after ``t*`` whose
descent rate is ``<= THETA * r*`` (``THETA = 0.1``: a fall "starts"/"stops" where it runs at a tenth of its
top speed). If no such checkpoint exists, the start is ``t_0`` / the end is ``t_n`` (and flagged).

The rule
--------
0. *Generalisation.* A model generalises if its test accuracy reaches ``GENERALISED_ACC = 0.9`` at some
   checkpoint and its smoothed test loss falls somewhere after its peak. Otherwise only the end of
   memorisation is defined; circuit formation and cleanup are ``None`` (a run without weight decay,
   Fig. 26, has no such phases).
1. *Circuit formation ends* (``t2``, grokking begins) at the start of the sharp fall of the test loss: the
   landmark detector on ``log10 test_loss`` over the checkpoints after the one where the smoothed test
   loss is largest.
2. *Memorisation ends* (``t1``) at the end of the first fall of the train loss: the landmark detector on
   ``log10 train_loss`` over ``[t_0, t2]`` (the whole run if the model does not generalise); ``t1 <= t2``.
3. *Cleanup ends* (``t3``) when the sum of squared weights stops falling fast: the landmark detector on
   ``log10 sum_sq`` over ``[t2, t_n]`` (rule v1) -- over ``[t2, min(t_n, e + (e - t2))]`` in rule v2, the
   default, where ``e`` is the end of the test loss's fall (see *Revision* below) -- end of the fall.
   ``cleanup_complete`` is false if the fall has not slowed to ``THETA`` of its top speed by the end of the
   window (then ``t3`` is the window's end).

The phases are ``memorisation [t_0, t1]``, ``circuit_formation [t1, t2]``, ``cleanup [t2, t3]`` and
``stable [t3, t_n]``. Two cross-checks are reported but not used: the end of the test loss's fall and the
end of the rise of the Gini coefficient of ``W_L`` (same detector on ``-gini``, over the cleanup window).

Revision (rule v2, made after running v1 on real data)
------------------------------------------------------
Rule v1 is the rule above with the cleanup window ``[t2, t_n]``; it was written down, and committed, before
any real run was looked at. On the partial mainline (checkpoints to 25.7k epochs) it gave 1.4k / 8.3k /
12.1k. On the complete run (40k epochs) two loss spikes long after grokking (slingshots near 36k and 39.6k
epochs: train loss 1e-7 -> 3e-3, sum of squared weights 875 -> 690 -> 830 within a few hundred epochs)
hold a steeper fall of the weights than cleanup itself, and v1 put the end of cleanup at 39.9k, against
11.4k / 11.8k for the two cross-checks. Rule v2 changes only the window, not the detector or any threshold:
cleanup is the shedding of the memorising solution that accompanies grokking, so its end is looked for
within one grokking duration after the test loss stops falling, ``[t2, e + (e - t2)]`` (``e``: the end of
the test loss's fall; ``t_n`` if that fall never ends). ``rule="v1"`` reproduces v1; with v2 the
v1 answer is also reported (``checks.cleanup_end_v1``). Known limit of both: a slingshot whose test loss
recovers faster than it fell at grokking would be taken for the grokking fall in step 1 (not seen on the
mainline, where the recoveries are slower).

The claims (§5.2, §5.3 / Fig. 26)
---------------------------------
Changes over a phase ``[a, b]`` are differences of the smoothed series at ``a`` and ``b``: ``d log10`` for
losses and weights, plain differences for Gini coefficients; rates are per 1000 epochs. Constants:
``RISE = log10 2`` (a change by a factor 2), ``FLAT = 1`` decade, ``SHARP = 3`` (a rate 3x the other
phase's), ``GINI_RISE = 0.1``, ``MONOTONE = 0.9``.

* ``cf_excluded_rises_losses_flat``: over circuit formation ``d log10 excluded_loss >= RISE`` and both
  ``|d log10 train_loss|`` and ``|d log10 test_loss|`` are ``< min(FLAT, d log10 excluded_loss)``.
* ``restricted_falls_before_test``: over circuit formation ``d log10 restricted_loss <= -RISE`` and
  ``d log10 restricted_loss <= d log10 test_loss - RISE`` (the restricted loss falls while the test loss does
  not yet). The start of the restricted loss's own sharp fall (landmark detector) is reported too.
* ``gini_W_E_rises_sharply_in_cleanup`` / ``gini_W_L_...``: the Gini coefficient rises by ``>= GINI_RISE``
  over cleanup, at a mean rate ``>= SHARP`` times its mean rate over circuit formation (if that is > 0).
* ``ssw_smooth_in_cf_sharp_in_cleanup``: the sum of squared weights falls over circuit formation, in
  ``>= MONOTONE`` of the checkpoint-to-checkpoint steps (smoothed), and its mean log-rate of fall over
  cleanup is ``>= SHARP`` times that over circuit formation. (The end of cleanup is itself defined from this
  series, which favours the second half; its start and circuit formation are not.)
* ``no_wd_excluded_does_not_rise`` (only models with ``weight_decay == 0``): after memorisation the excluded
  loss never exceeds its value at ``t1`` by ``RISE`` or more: ``max_{t >= t1} d log10 excluded_loss < RISE``,
  for the key-frequency excluded loss (if the model has keys; with none it equals the train loss) and for
  the model-independent one (max over all frequencies, footnote 3). For other models the numbers are given
  and ``holds`` is ``None``.

A claim whose phases are undefined (model did not generalise, or an empty phase) has ``holds = None`` and a
``reason``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..jsonutil import clean
from .progress import wide as to_wide

THETA = 0.1
WINDOW = 5
GENERALISED_ACC = 0.9
RISE = math.log10(2.0)
FLAT = 1.0
SHARP = 3.0
GINI_RISE = 0.1
MONOTONE = 0.9
PHASE_NAMES = ("memorisation", "circuit_formation", "cleanup", "stable")

RULE = ("landmark rule {version}: log10 losses and log10 sum of squared weights, running median over {window} "
        "checkpoints; a fall starts/ends at the last/first checkpoint before/after its steepest point whose descent "
        "rate is <= {theta} x the steepest rate. Circuit formation ends where the test loss's sharp fall (after its "
        "peak) starts; memorisation ends where the train loss's first fall (before that) ends; cleanup ends where "
        "the sum of squared weights' fall after circuit formation ends, searched {window3}. Only for models whose "
        "test accuracy reaches {acc}.")
WINDOW3 = {"v1": "up to the last checkpoint",
           "v2": "up to one grokking duration after the end of the test loss's fall (v2: revised after v1 met "
                 "post-grokking loss spikes; see the module docstring)"}

__all__ = ["THETA", "WINDOW", "GENERALISED_ACC", "RULE", "smooth", "descent_rate", "fall", "detect_phases",
           "check_claims", "phases_report", "phases_of", "phases_frame", "claims_frame", "summary"]


# ---------------------------------------------------------------------- series helpers
def smooth(y: np.ndarray, window: int = WINDOW, log: bool = True) -> np.ndarray:
    """``log10`` (if ``log``; values clamped at 1e-300) then a centred running median over ``window`` points."""
    y = np.asarray(y, dtype=np.float64)
    if log:
        y = np.log10(np.clip(y, 1e-300, None))
    return pd.Series(y).rolling(window, center=True, min_periods=1).median().to_numpy()


def descent_rate(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Minus the derivative of ``y`` with respect to ``t`` (finite differences, ``numpy.gradient``)."""
    if len(y) < 2:
        return np.zeros_like(y)
    return -np.gradient(y, np.asarray(t, dtype=np.float64))


def fall(y: np.ndarray, t: np.ndarray, lo: int = 0, hi: int | None = None, theta: float = THETA
         ) -> dict[str, Any] | None:
    """Landmark detector on the already smoothed ``y`` over checkpoint indices ``[lo, hi]``: the steepest
    descent, where it starts and where it ends (indices), or ``None`` if ``y`` does not fall there.
    ``start_found`` / ``end_found`` are false when the window edge was used instead."""
    n = len(y)
    hi = n - 1 if hi is None else hi
    if hi <= lo:
        return None
    r = descent_rate(y, t)
    seg = r[lo:hi + 1]
    i = lo + int(np.argmax(seg))
    peak = float(r[i])
    if not peak > 0:
        return None
    below = r <= theta * peak
    start = next((j for j in range(i - 1, lo - 1, -1) if below[j]), None)
    end = next((j for j in range(i + 1, hi + 1) if below[j]), None)
    return {"steepest": i, "rate": peak, "start": lo if start is None else start, "start_found": start is not None,
            "end": hi if end is None else end, "end_found": end is not None}


# ---------------------------------------------------------------------- phases
def _ep(t: np.ndarray, i: int | None) -> int | None:
    return None if i is None else int(t[i])


def detect_phases(wide: pd.DataFrame, *, theta: float = THETA, window: int = WINDOW,
                  generalised_acc: float = GENERALISED_ACC, rule: str = "v2") -> dict[str, Any]:
    """Phase boundaries of one model by the landmark rule (module docstring; ``rule`` "v2" or "v1").
    ``wide``: one row per checkpoint epoch (index or column ``epoch``) with columns ``train_loss``,
    ``test_loss``, ``test_acc``, ``sum_sq`` and (for the cross-check) ``gini_W_L``. Returns a JSON-ready dict;
    epochs are ints, ``None`` when undefined."""
    if rule not in ("v1", "v2"):
        raise ValueError(f"rule={rule!r} is invalid: must be 'v1' or 'v2'")
    w = _sorted(wide)
    t = w.index.to_numpy()
    n = len(t)
    tr = smooth(w["train_loss"].to_numpy(), window)
    te = smooth(w["test_loss"].to_numpy(), window)
    ss = smooth(w["sum_sq"].to_numpy(), window)
    generalised = bool(n > 0 and np.nanmax(w["test_acc"].to_numpy()) >= generalised_acc)
    out: dict[str, Any] = {"generalised": generalised, "n_checkpoints": int(n),
                           "first_epoch": _ep(t, 0) if n else None, "last_epoch": _ep(t, n - 1) if n else None}
    i2 = i3 = None
    i_te_end = n - 1
    lm: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    cleanup_complete = None
    if generalised and n >= 2:
        peak = int(np.argmax(te))
        f_te = fall(te, t, peak, n - 1, theta)
        if f_te is not None:
            i2 = f_te["start"]
            lm["test_loss_peak"] = _ep(t, peak)
            lm["test_loss_steepest"] = _ep(t, f_te["steepest"])
            lm["test_loss_fall_start_found"] = f_te["start_found"]
            checks["test_loss_fall_end"] = _ep(t, f_te["end"]) if f_te["end_found"] else None
            i_te_end = f_te["end"]
        else:
            generalised = False  # accuracy reached the bar but the test loss never fell: no grokking fall
            out["generalised"] = False
    hi1 = i2 if i2 is not None else n - 1
    f_tr = fall(tr, t, 0, hi1, theta) if n >= 2 else None
    if f_tr is not None:
        i1 = f_tr["end"]
        lm["train_loss_steepest"] = _ep(t, f_tr["steepest"])
        lm["train_loss_fall_end_found"] = f_tr["end_found"]
    else:
        i1 = 0
    if i2 is not None:
        i1 = min(i1, i2)
        hi3 = n - 1
        if rule == "v2":  # one grokking duration after the test loss stops falling
            hi3 = int(np.searchsorted(t, 2 * t[i_te_end] - t[i2], side="right")) - 1
            hi3 = max(i_te_end, min(n - 1, hi3))
            lm["cleanup_window_end"] = _ep(t, hi3)
        f_ss = fall(ss, t, i2, hi3, theta)
        if f_ss is not None:
            i3 = f_ss["end"]
            cleanup_complete = bool(f_ss["end_found"])
            lm["sum_sq_steepest_after_cf"] = _ep(t, f_ss["steepest"])
        else:  # the weights do not fall after circuit formation: no cleanup to speak of
            i3 = i2
            cleanup_complete = False
        if rule == "v2":
            f_v1 = fall(ss, t, i2, n - 1, theta)
            checks["cleanup_end_v1"] = _ep(t, f_v1["end"]) if f_v1 is not None else _ep(t, i2)
        if "gini_W_L" in w:
            g = smooth(w["gini_W_L"].to_numpy(), window, log=False)
            f_g = fall(-g, t, i2, hi3, theta)
            checks["gini_W_L_rise_end"] = _ep(t, f_g["end"]) if f_g is not None and f_g["end_found"] else None
    ends = {"memorisation": _ep(t, i1) if n else None, "circuit_formation": _ep(t, i2), "cleanup": _ep(t, i3)}
    phases: dict[str, Any] = {k: None for k in PHASE_NAMES}
    if n:
        phases["memorisation"] = [_ep(t, 0), ends["memorisation"]]
        if i2 is not None:
            phases["circuit_formation"] = [ends["memorisation"], ends["circuit_formation"]]
            phases["cleanup"] = [ends["circuit_formation"], ends["cleanup"]]
            phases["stable"] = [ends["cleanup"], _ep(t, n - 1)]
    out.update({"rule_version": rule, "ends": ends, "phases": phases, "cleanup_complete": cleanup_complete,
                "landmarks": lm, "checks": checks})
    return out


def _sorted(wide: pd.DataFrame) -> pd.DataFrame:
    w = wide.set_index("epoch") if "epoch" in wide.columns else wide
    return w.sort_index()


# ---------------------------------------------------------------------- claims
def _claim(cid: str, text: str, holds: bool | None, numbers: dict[str, Any], reason: str | None = None
           ) -> dict[str, Any]:
    return {"claim": cid, "text": text, "holds": holds, "numbers": clean(numbers), "reason": reason}


def check_claims(wide: pd.DataFrame, ph: dict[str, Any], *, weight_decay: float | None = None,
                 keys: list[int] | None = None, window: int = WINDOW, theta: float = THETA) -> list[dict[str, Any]]:
    """The claims of the module docstring for one model, given its wide progress table and
    :func:`detect_phases` output. Each: ``claim``, ``text``, ``holds`` (bool or None), ``numbers``, ``reason``."""
    w = _sorted(wide)
    t = w.index.to_numpy()
    pos = {int(e): i for i, e in enumerate(t)}
    e1, e2, e3 = ph["ends"]["memorisation"], ph["ends"]["circuit_formation"], ph["ends"]["cleanup"]

    def series(col: str, log: bool = True) -> np.ndarray | None:
        return smooth(w[col].to_numpy(), window, log) if col in w else None

    S = {c: series(c) for c in ("train_loss", "test_loss", "excluded_loss", "excluded_loss_max", "restricted_loss",
                                "sum_sq")}
    G = {c: series(c, log=False) for c in ("gini_W_E", "gini_W_L")}

    def d(y: np.ndarray, a: int, b: int) -> float:
        return float(y[pos[b]] - y[pos[a]])

    def rate(y: np.ndarray, a: int, b: int) -> float:
        return d(y, a, b) / max(b - a, 1) * 1000.0

    out: list[dict[str, Any]] = []
    undefined = None
    if not ph["generalised"] or e2 is None:
        undefined = "model did not generalise (test accuracy never reached %g): no circuit formation or cleanup" \
            % GENERALISED_ACC
    cf_empty = undefined is None and e2 <= e1
    cl_empty = undefined is None and e3 <= e2

    # 1. circuit formation: excluded loss rises, train and test loss flat
    text = "during circuit formation the excluded loss rises while train and test loss stay flat"
    if undefined or cf_empty or S["excluded_loss"] is None:
        out.append(_claim("cf_excluded_rises_losses_flat", text, None, {},
                          undefined or ("empty circuit-formation phase" if cf_empty else "no excluded_loss")))
    else:
        dx, dtr, dte = d(S["excluded_loss"], e1, e2), d(S["train_loss"], e1, e2), d(S["test_loss"], e1, e2)
        holds = dx >= RISE and max(abs(dtr), abs(dte)) < min(FLAT, dx)
        out.append(_claim("cf_excluded_rises_losses_flat", text, holds, {
            "from_epoch": e1, "to_epoch": e2, "dlog10_excluded_loss": dx, "dlog10_train_loss": dtr,
            "dlog10_test_loss": dte, "excluded_loss_start": 10 ** S["excluded_loss"][pos[e1]],
            "excluded_loss_end": 10 ** S["excluded_loss"][pos[e2]], "rise_threshold": RISE,
            "flat_threshold": FLAT}))

    # 2. restricted loss falls before the test loss
    text = "the restricted loss starts falling before the test loss (falls during circuit formation)"
    if undefined or cf_empty or S["restricted_loss"] is None:
        out.append(_claim("restricted_falls_before_test", text, None, {},
                          undefined or ("empty circuit-formation phase" if cf_empty else "no restricted_loss")))
    else:
        dr, dte = d(S["restricted_loss"], e1, e2), d(S["test_loss"], e1, e2)
        y = S["restricted_loss"]
        f_r = fall(y, t, int(np.argmax(y)), len(t) - 1, theta)
        holds = dr <= -RISE and dr <= dte - RISE
        out.append(_claim("restricted_falls_before_test", text, holds, {
            "from_epoch": e1, "to_epoch": e2, "dlog10_restricted_loss": dr, "dlog10_test_loss": dte,
            "restricted_fall_start": None if f_r is None else int(t[f_r["start"]]),
            "test_fall_start": e2, "rise_threshold": RISE}))

    # 3-4. Gini coefficients rise sharply in cleanup
    for name in ("W_E", "W_L"):
        cid = f"gini_{name}_rises_sharply_in_cleanup"
        text = f"the Gini coefficient of the Fourier norms of {name} rises sharply in cleanup"
        g = G[f"gini_{name}"]
        if undefined or cf_empty or cl_empty or g is None:
            out.append(_claim(cid, text, None, {}, undefined or ("empty phase" if g is not None else "no Gini")))
            continue
        d_cf, d_cl = d(g, e1, e2), d(g, e2, e3)
        r_cf, r_cl = rate(g, e1, e2), rate(g, e2, e3)
        holds = d_cl >= GINI_RISE and (r_cf <= 0 or r_cl >= SHARP * r_cf)
        out.append(_claim(cid, text, holds, {
            "gini_start_memorisation": g[0], "gini_end_memorisation": g[pos[e1]], "gini_end_cf": g[pos[e2]],
            "gini_end_cleanup": g[pos[e3]], "d_gini_memorisation": d(g, int(t[0]), e1), "d_gini_cf": d_cf,
            "d_gini_cleanup": d_cl, "rate_cf_per_kepoch": r_cf, "rate_cleanup_per_kepoch": r_cl,
            "rate_ratio": r_cl / r_cf if r_cf > 0 else None}))

    # 5. sum of squared weights
    text = "the sum of squared weights falls smoothly during circuit formation and sharply during cleanup"
    y = S["sum_sq"]
    if undefined or cf_empty or cl_empty:
        out.append(_claim("ssw_smooth_in_cf_sharp_in_cleanup", text, None, {}, undefined or "empty phase"))
    else:
        seg = y[pos[e1]:pos[e2] + 1]
        steps = np.diff(seg)
        frac_down = float((steps < 0).mean()) if len(steps) else float("nan")
        d_cf, d_cl = d(y, e1, e2), d(y, e2, e3)
        r_cf, r_cl = -rate(y, e1, e2), -rate(y, e2, e3)  # rates of fall (log10 per kepoch)
        holds = d_cf < 0 and frac_down >= MONOTONE and r_cl >= SHARP * r_cf
        out.append(_claim("ssw_smooth_in_cf_sharp_in_cleanup", text, holds, {
            "sum_sq_end_memorisation": 10 ** y[pos[e1]], "sum_sq_end_cf": 10 ** y[pos[e2]],
            "sum_sq_end_cleanup": 10 ** y[pos[e3]], "dlog10_cf": d_cf, "dlog10_cleanup": d_cl,
            "fall_rate_cf_log10_per_kepoch": r_cf, "fall_rate_cleanup_log10_per_kepoch": r_cl,
            "rate_ratio": r_cl / r_cf if r_cf > 0 else None, "frac_steps_falling_cf": frac_down}))

    # 6. no weight decay: the excluded loss does not rise (Fig. 26)
    text = "without weight decay the excluded loss does not rise after memorisation (Fig. 26)"
    nums: dict[str, Any] = {"weight_decay": weight_decay, "keys": list(keys or []), "generalised": ph["generalised"],
                            "from_epoch": e1}
    verdicts = []
    for col in ("excluded_loss", "excluded_loss_max"):
        y = S[col]
        if y is None or e1 is None:
            continue
        rise = float(np.max(y[pos[e1]:]) - y[pos[e1]])
        nums[f"max_dlog10_{col}_after_memorisation"] = rise
        nums[f"epoch_of_max_{col}"] = int(t[pos[e1] + int(np.argmax(y[pos[e1]:]))])
        if col == "excluded_loss_max" or keys:
            verdicts.append(rise < RISE)
    if weight_decay is None or weight_decay != 0:
        out.append(_claim("no_wd_excluded_does_not_rise", text, None, nums,
                          "not applicable: the model has weight decay %s" % weight_decay))
    elif not verdicts:
        out.append(_claim("no_wd_excluded_does_not_rise", text, None, nums, "no excluded-loss measures"))
    else:
        out.append(_claim("no_wd_excluded_does_not_rise", text, all(verdicts), nums))
    return out


# ---------------------------------------------------------------------- a run
def phases_report(run: Any, progress: pd.DataFrame, **kw) -> dict[str, Any]:
    """Phases and claims for every model of a run (a :class:`grokscope.training.run.Run`: its configs give each
    model's weight decay) from its tidy progress table (:mod:`grokscope.measures.progress`). ``kw`` go to
    :func:`detect_phases` (``theta``, ``window``, ``generalised_acc``, ``rule``). Writes nothing
    (:func:`grokscope.measures.cache.write_phases` saves it)."""
    return phases_of(progress, [c.weight_decay for c in run.configs], **kw)


def phases_of(progress: pd.DataFrame, weight_decays: Sequence[float | None] = (), **kw) -> dict[str, Any]:
    """:func:`phases_report` from the progress table and the models' weight decays alone."""
    df = progress
    keys = df.attrs.get("keys", {})
    models = []
    for k in sorted(int(m) for m in df["model"].unique()):
        wk = to_wide(df, model=k)
        ph = detect_phases(wk, **kw)
        mk = [int(x) for x in keys.get(k, keys.get(str(k), []))]
        ph = {"model": k, "weight_decay": weight_decays[k] if k < len(weight_decays) else None, "keys": mk, **ph}
        ph["claims"] = check_claims(wk, ph, weight_decay=ph["weight_decay"], keys=mk,
                                    window=kw.get("window", WINDOW), theta=kw.get("theta", THETA))
        models.append(ph)
    theta, window, version = kw.get("theta", THETA), kw.get("window", WINDOW), kw.get("rule", "v2")
    return {"rule": RULE.format(version=version, window=window, theta=theta, window3=WINDOW3[version],
                                acc=kw.get("generalised_acc", GENERALISED_ACC)), "rule_version": version,
            "params": {"theta": theta, "window": window, "generalised_acc": kw.get("generalised_acc", GENERALISED_ACC),
                       "rise": RISE, "flat": FLAT, "sharp": SHARP, "gini_rise": GINI_RISE, "monotone": MONOTONE},
            "models": models}


def phases_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The phases table: one row per model, columns ``model``, ``weight_decay``, ``keys`` (a list),
    ``generalised``, ``memorisation_end``, ``circuit_formation_end``, ``cleanup_end`` (epochs, None where
    undefined), ``cleanup_complete``, ``claims_holding`` and ``claims_decided`` (claims whose ``holds`` is not
    None)."""
    rows = []
    for m in report.get("models", []):
        e = m.get("ends", {})
        decided = [c for c in m.get("claims", []) if c.get("holds") is not None]
        rows.append({"model": m["model"], "weight_decay": m.get("weight_decay"), "keys": list(m.get("keys", [])),
                     "generalised": m.get("generalised"), "memorisation_end": e.get("memorisation"),
                     "circuit_formation_end": e.get("circuit_formation"), "cleanup_end": e.get("cleanup"),
                     "cleanup_complete": m.get("cleanup_complete"),
                     "claims_holding": sum(bool(c["holds"]) for c in decided), "claims_decided": len(decided)})
    return pd.DataFrame(rows, columns=["model", "weight_decay", "keys", "generalised", "memorisation_end",
                                       "circuit_formation_end", "cleanup_end", "cleanup_complete", "claims_holding",
                                       "claims_decided"])


def claims_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The claims table: one row per model x claim, columns ``model``, ``memorisation_end``,
    ``circuit_formation_end``, ``cleanup_end``, ``claim``, ``text``, ``holds``, ``numbers`` (a dict of the
    deciding numbers), ``reason``."""
    rows = []
    for m in report.get("models", []):
        e = m.get("ends", {})
        for c in m.get("claims", []):
            rows.append({"model": m["model"], "memorisation_end": e.get("memorisation"),
                         "circuit_formation_end": e.get("circuit_formation"), "cleanup_end": e.get("cleanup"),
                         "claim": c["claim"], "text": c["text"], "holds": c["holds"], "numbers": c["numbers"],
                         "reason": c.get("reason")})
    return pd.DataFrame(rows, columns=["model", "memorisation_end", "circuit_formation_end", "cleanup_end", "claim",
                                       "text", "holds", "numbers", "reason"])


def summary(report: dict[str, Any]) -> str:
    """A few lines per model: keys, phase ends, and each claim's verdict with its deciding numbers."""
    lines = []
    for m in report["models"]:
        e = m["ends"]
        lines.append(f"model {m['model']} (weight decay {m['weight_decay']}): keys {m['keys']}; "
                     + ("generalises" if m["generalised"] else "does not generalise")
                     + f"; memorisation ends {e['memorisation']}, circuit formation ends {e['circuit_formation']}, "
                     f"cleanup ends {e['cleanup']}" + ("" if m["cleanup_complete"] in (True, None) else
                                                      " (cleanup not finished by the end of its window)")
                     + (f" [rule {m['rule_version']}; v1 would end cleanup at {m['checks']['cleanup_end_v1']}]"
                        if m["checks"].get("cleanup_end_v1") not in (None, e["cleanup"]) else ""))
        for c in m["claims"]:
            verdict = {True: "holds", False: "FAILS", None: "n/a"}[c["holds"]]
            nums = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in c["numbers"].items() if k not in ("keys", "weight_decay"))
            lines.append(f"  [{verdict}] {c['text']}" + (f" -- {c['reason']}" if c["reason"] else "")
                         + (f" ({nums})" if nums and c["holds"] is not None else ""))
    return "\n".join(lines)
