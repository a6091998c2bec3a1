"""Phase detection and the §5.2 claims (grokscope.measures.phases) on synthetic progress curves with known transitions,
and end to end on a tiny run."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from grokscope.measures import phases as ph
from grokscope.report import run as report
from grokscope.config import Config
from grokscope.training.run import train

EPOCHS = np.arange(0, 20001, 100)
# one logistic transition per phase end: centre c, width w; the landmark detector (THETA = 0.1) puts the start
# of a logistic fall at c - X w and its end at c + X w, where sigma(1 - sigma) = 0.1 / 4 -> X = 3.64
X = math.log((1 + math.sqrt(1 - 0.1)) / (1 - math.sqrt(1 - 0.1)))
MEM_C, MEM_W = 700.0, 150.0  # memorisation: train loss falls
GROK_C, GROK_W = 11000.0, 550.0  # grokking / cleanup
T1, T2, T3 = MEM_C + X * MEM_W, GROK_C - X * GROK_W, GROK_C + X * GROK_W


def sig(t, c, w):
    return 1 / (1 + np.exp(-(t - c) / w))


def synthetic(wd: bool = True, excluded_rises: bool = True, spike: bool = False, late_slingshot: bool = False
              ) -> pd.DataFrame:
    """A wide progress table shaped like the paper's Fig. 7 (log10 values given, then exponentiated)."""
    t = EPOCHS.astype(float)
    mem = sig(t, MEM_C, MEM_W)
    grok = sig(t, GROK_C, GROK_W) if wd else np.zeros_like(t)
    cf = np.clip((t - 1300) / (T2 - 1300), 0, 1) if wd else np.zeros_like(t)  # circuit formation progress
    train = 0.7 - 2.7 * mem - 5.0 * grok
    test = 0.7 + 0.5 * mem - 7.5 * grok
    if spike:
        test = test.copy()
        test[np.searchsorted(EPOCHS, 5000)] += 3.0  # a one-checkpoint slingshot
    if late_slingshot:  # a loss spike long after grokking with a sharp dip of the weights (cf. the mainline);
        bump = np.exp(-0.5 * ((t - 18000) / 800) ** 2)  # the loss recovers more slowly than it grokked
        train = train + 4.0 * bump
        test = test + 2.0 * bump
    excluded = train + (2.5 * cf if excluded_rises else 0.0)
    restricted = 1.0 - 1.0 * cf - 6.0 * grok
    ssw = 3.2 - 0.15 * cf - 0.5 * grok
    if late_slingshot:
        ssw = ssw - 0.4 * (np.exp(-0.5 * ((t - 18000) / 250) ** 2))
    gini_e = 0.15 + 0.03 * cf + 0.55 * grok
    gini_l = 0.10 + 0.02 * cf + 0.70 * grok
    return pd.DataFrame({
        "epoch": EPOCHS, "train_loss": 10 ** train, "test_loss": 10 ** test, "test_acc": 0.01 + 0.99 * grok,
        "excluded_loss": 10 ** excluded, "excluded_loss_max": 10 ** (excluded + 0.1),
        "restricted_loss": 10 ** restricted,
        "sum_sq": 10 ** ssw, "gini_W_E": gini_e, "gini_W_L": gini_l}).set_index("epoch")


def near(epoch, target, tol=250):
    return epoch is not None and abs(epoch - target) <= tol


# ---------------------------------------------------------------------- the detector
def test_fall_detector():
    t = EPOCHS.astype(float)
    y = -sig(t, 8000, 400)
    f = ph.fall(y, t)
    assert near(t[f["steepest"]], 8000, 100) and f["start_found"] and f["end_found"]
    assert near(t[f["start"]], 8000 - X * 400, 150) and near(t[f["end"]], 8000 + X * 400, 150)
    assert ph.fall(t / 1000, t) is None  # rising: no fall
    g = ph.fall(-t / 1000, t)  # constant rate: never slows down, the window edges are used
    assert g is not None and not g["start_found"] and not g["end_found"]


def test_phases_of_a_synthetic_grokking_run():
    for spike in (False, True):
        r = ph.detect_phases(synthetic(spike=spike))
        assert r["generalised"] and r["cleanup_complete"]
        e = r["ends"]
        assert near(e["memorisation"], T1), e
        assert near(e["circuit_formation"], T2), e
        assert near(e["cleanup"], T3), e
        assert r["phases"]["circuit_formation"] == [e["memorisation"], e["circuit_formation"]]
        assert r["phases"]["stable"] == [e["cleanup"], 20000]
        assert near(r["checks"]["test_loss_fall_end"], T3) and near(r["checks"]["gini_W_L_rise_end"], T3)
    json.dumps(r)


def test_late_slingshot_needs_the_v2_window():
    w = synthetic(late_slingshot=True)
    v2 = ph.detect_phases(w)
    assert v2["rule_version"] == "v2" and near(v2["ends"]["cleanup"], T3), v2["ends"]
    e, t2 = v2["checks"]["test_loss_fall_end"], v2["ends"]["circuit_formation"]
    assert near(v2["landmarks"]["cleanup_window_end"], 2 * e - t2, 100)
    assert v2["checks"]["cleanup_end_v1"] > 17000  # v1 finds the slingshot's dip instead
    v1 = ph.detect_phases(w, rule="v1")
    assert v1["ends"]["cleanup"] == v2["checks"]["cleanup_end_v1"] and "cleanup_end_v1" not in v1["checks"]
    assert v1["ends"]["memorisation"] == v2["ends"]["memorisation"]
    assert v1["ends"]["circuit_formation"] == v2["ends"]["circuit_formation"]
    with pytest.raises(ValueError, match="rule"):
        ph.detect_phases(w, rule="v3")


def test_claims_hold_on_the_synthetic_run_and_fail_when_broken():
    w = synthetic()
    r = ph.detect_phases(w)
    claims = {c["claim"]: c for c in ph.check_claims(w, r, weight_decay=1.0, keys=[14, 35])}
    assert set(claims) == {"cf_excluded_rises_losses_flat", "restricted_falls_before_test",
                           "gini_W_E_rises_sharply_in_cleanup", "gini_W_L_rises_sharply_in_cleanup",
                           "ssw_smooth_in_cf_sharp_in_cleanup", "no_wd_excluded_does_not_rise"}
    for name, c in claims.items():
        if name == "no_wd_excluded_does_not_rise":
            assert c["holds"] is None and "not applicable" in c["reason"]
            assert c["numbers"]["max_dlog10_excluded_loss_after_memorisation"] > 2  # it does rise with wd
        else:
            assert c["holds"] is True, (name, c)
    c1 = claims["cf_excluded_rises_losses_flat"]["numbers"]
    assert 2.0 < c1["dlog10_excluded_loss"] < 2.6 and abs(c1["dlog10_test_loss"]) < 0.3
    assert claims["restricted_falls_before_test"]["numbers"]["restricted_fall_start"] < T2
    json.dumps(claims)

    flat = synthetic(excluded_rises=False)
    c = {c["claim"]: c for c in ph.check_claims(flat, ph.detect_phases(flat), weight_decay=1.0)}
    assert c["cf_excluded_rises_losses_flat"]["holds"] is False

    no_gini = synthetic()
    no_gini["gini_W_E"] = 0.2  # flat Gini: no sharp rise in cleanup
    c = {c["claim"]: c for c in ph.check_claims(no_gini, ph.detect_phases(no_gini), weight_decay=1.0)}
    assert c["gini_W_E_rises_sharply_in_cleanup"]["holds"] is False
    assert c["gini_W_L_rises_sharply_in_cleanup"]["holds"] is True


def test_no_weight_decay_run():
    w = synthetic(wd=False)
    r = ph.detect_phases(w)
    assert not r["generalised"]
    assert r["ends"]["circuit_formation"] is None and r["ends"]["cleanup"] is None
    assert near(r["ends"]["memorisation"], T1)
    claims = {c["claim"]: c for c in ph.check_claims(w, r, weight_decay=0.0, keys=[])}
    assert claims["no_wd_excluded_does_not_rise"]["holds"] is True
    assert claims["cf_excluded_rises_losses_flat"]["holds"] is None
    w2 = w.copy()
    w2["excluded_loss_max"] = w2["excluded_loss_max"] * np.where(w2.index > 5000, 30.0, 1.0)
    claims = {c["claim"]: c for c in ph.check_claims(w2, r, weight_decay=0.0, keys=[])}
    assert claims["no_wd_excluded_does_not_rise"]["holds"] is False


# ---------------------------------------------------------------------- a run
def test_phases_report_on_a_run(tmp_path, one_thread):
    kw = dict(p=11, d_model=16, n_heads=2, d_mlp=32, epochs=60, checkpoint_every=20, test_every=10)
    run = train([Config(seed=0, frac_train=0.5, **kw), Config(seed=1, frac_train=0.5, weight_decay=0.0, **kw)],
                tmp_path / "r", device="cpu", progress=False)
    df, rep = report.run_progress(run, keys={0: [2], 1: []})
    assert (tmp_path / "r" / report.PROGRESS_FILE).is_file() and df.attrs["keys"] == {"0": [2], "1": []}
    assert (tmp_path / "r" / report.PHASES_FILE).is_file()
    back = report.load_phases(run)
    assert back == json.loads(json.dumps(rep))
    assert [m["model"] for m in rep["models"]] == [0, 1] and rep["models"][0]["keys"] == [2]
    assert rep["models"][1]["weight_decay"] == 0.0
    df = ph.claims_frame(rep)
    assert len(df) == 2 * 6 and list(df.columns) == ["model", "memorisation_end", "circuit_formation_end",
                                                     "cleanup_end", "claim", "text", "holds", "numbers", "reason"]
    assert list(df.model) == [0] * 6 + [1] * 6 and (df.memorisation_end == 60).all()
    assert df.set_index(["model", "claim"]).loc[(1, "no_wd_excluded_does_not_rise"), "holds"] is not None
    assert "landmark rule" in rep["rule"]
    pf = ph.phases_frame(rep)
    assert list(pf.model) == [0, 1] and list(pf.weight_decay) == [1.0, 0.0] and pf["keys"][0] == [2]
    assert list(pf.claims_decided) == [sum(c["holds"] is not None for c in m["claims"]) for m in rep["models"]]
    text = ph.summary(rep)
    assert text.startswith("model 0 ") and "\nmodel 1 " in text and "Fig. 26" in text
