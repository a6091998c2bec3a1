"""grokscope.measures.forecast_model: the delay law on synthetic inputs with a known answer, the fitted forecaster's
interval and probability, and the corpus evaluation's split (nothing held out is ever fitted on)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grokscope.measures import forecast_model as fm

ROOT = Path(__file__).resolve().parents[1]


def synthetic(lr, wd, t_mem, G, A=4000.0, C=10.0, budget=2000, every=20, name="s", config=None, part="dev"):
    """A model whose curves follow the delay law exactly: the sum of squares decays from |theta_mem|^2 at T_mem to
    the balance norm A / wd^2 at G (``G = inf``: it never reaches it within the budget)."""
    gamma = lr * wd
    post = A / wd ** 2
    if math.isfinite(G):
        norm_mem = post * math.exp((G - t_mem) * gamma / C)
    else:
        norm_mem = post * math.exp(5.0)
    e = np.arange(budget + 1)
    train_acc = np.clip(e / t_mem, 0, 1)
    g = G if math.isfinite(G) else 10 * budget
    test_acc = 1 / (1 + np.exp(-(e - g) / max(g / 10, 5))) * 0.999 + 0.0
    test_acc = np.where(e >= g, np.maximum(test_acc, 0.995), np.minimum(test_acc, 0.98))
    met = pd.DataFrame({"epoch": e, "train_loss": 4 * np.exp(-e / t_mem) + 1e-3, "train_acc": train_acc,
                        "test_loss": np.where(e % 10 == 0, 4 * (1 - test_acc) + 1e-3, np.nan),
                        "test_acc": np.where(e % 10 == 0, test_acc, np.nan)})
    ck = np.arange(every, budget + 1, every)
    first = ck[ck >= t_mem][0]
    sum_sq = np.where(ck <= first, norm_mem * (1 + 0.1 * (first - ck) / first),
                      norm_mem * np.exp(-(ck - first) * gamma / C))
    prog = pd.DataFrame({"restricted_loss": 4 * np.exp(-ck / g * 3), "restricted_acc": np.clip(ck / g, 0, 1),
                         "excluded_loss": 1 + ck / g, "excluded_loss_max": 1 + ck / g,
                         "gini_W_E": np.clip(ck / g, 0, 1) * 0.5, "gini_W_L": np.clip(ck / g, 0, 1) * 0.6,
                         "sum_sq": sum_sq, "n_keys": np.where(ck > g / 2, 4.0, 0.0)}, index=pd.Index(ck, name="epoch"))
    return fm.Series(lr, wd, 0.5, budget, met, prog, name=name, config=config or name, part=part)


def test_delay_law_formula():
    post = 100.0
    assert fm.delay_law(100, post * math.e ** 2, post, 0.01, 1.0) == pytest.approx(300.0)
    # at or below the post norm: the floor
    assert fm.delay_law(100, post / 2, post, 0.01, 1.0) == pytest.approx(100 + fm.LOG_FLOOR / 0.01)


def test_delay_law_fit_recovers_the_constants_and_the_answer():
    A, C = 3000.0, 7.0
    models = [synthetic(lr, wd, tm, G, A=A, C=C, name=f"m{i}")
              for i, (lr, wd, tm, G) in enumerate([(1e-3, 1, 200, 1500), (1e-3, 2, 220, 700), (3e-3, 1, 100, 800),
                                                   (3e-3, 3, 160, 260), (1e-3, 4, 300, 500)])]
    law = fm.DelayLaw.fit(models, "balance")
    assert law.n == 5
    assert law.A == pytest.approx(A, rel=0.02)   # the norm at G is read at the nearest checkpoint
    assert law.C == pytest.approx(C, rel=0.05)
    for s in models:
        G, tm = fm.observed(s)
        first = [e for e in s.progress.index if e >= tm][0]
        pred, lo, hi = law.predict(s.upto(first), first)
        assert pred == pytest.approx(G, rel=0.05)
        assert lo <= pred <= hi and lo >= first
    # before memorisation: no forecast
    s = models[0]
    assert law.predict(s.upto(100), 100) is None


def test_delay_law_ratio_mode_is_c_over_gamma():
    models = [synthetic(lr, wd, 100, 100 + 0.5 / (lr * wd), name=f"m{i}")
              for i, (lr, wd) in enumerate([(1e-3, 1), (2e-3, 1), (1e-3, 4), (4e-3, 2)])]
    law = fm.DelayLaw.fit(models, "ratio")
    for s in models:
        G, _ = fm.observed(s)
        pred, _, _ = law.predict(s.upto(100), 100)
        assert pred == pytest.approx(G, rel=0.1)


def _corpus(n=24):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        lr, wd = rng.choice([1e-3, 3e-3]), rng.choice([0.3, 1.0, 2.0, 4.0])
        tm = int(rng.integers(80, 300))
        G = tm + 0.6 / (lr * wd) if i % 5 else math.inf
        out.append(synthetic(lr, wd, tm, G if G <= 2000 else math.inf, name=f"m{i}", config=f"c{i // 2}",
                             part="heldout" if (i // 2) % 3 == 0 else "dev"))
    return out


def test_forecaster_interval_and_probability_are_well_formed():
    series = _corpus()
    model = fm.ForecastModel.fit([s for s in series if s.part == "dev"])
    assert model.lo <= 0 <= model.hi
    for s in series:
        for u in (60, 200, 400):
            r = model.predict(s.upto(u), u)
            assert 0.0 <= r["p_grok"] <= 1.0
            assert r["lower"] <= r["predicted"] <= r["upper"]
            G, _ = fm.observed(s)
            if G <= u:
                assert r["grokked"] and r["predicted"] == G and r["p_grok"] == 1.0
            else:
                assert not r["grokked"] and u <= r["lower"] and r["lower"] < r["upper"]
    # round trip through the JSON form
    again = fm.ForecastModel.from_dict(json.loads(json.dumps(model.to_dict())))
    s = series[1]
    assert again.predict(s.upto(200), 200) == model.predict(s.upto(200), 200)


def test_features_see_nothing_after_until():
    s = synthetic(1e-3, 1.0, 200, 1500)
    other = synthetic(1e-3, 1.0, 200, 1500)
    other.metrics.loc[other.metrics["epoch"] > 400, ["test_acc", "train_loss"]] = 0.123
    other.progress.loc[other.progress.index > 400, :] = 7.0
    assert fm.features(s, 400, 3000.0) == pytest.approx(fm.features(other, 400, 3000.0), nan_ok=True)


def test_auc():
    assert fm.auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert fm.auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert fm.auc([0.5, 0.5], [True, False]) == 0.5
    assert fm.auc([0.5], [True]) is None


def _eval_module():
    spec = importlib.util.spec_from_file_location("forecast_eval", ROOT / "benchmarks" / "forecast_eval.py")
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)
    return ev


def test_held_out_models_never_reach_the_fit():
    pytest.importorskip("plotly")
    ev = _eval_module()
    series = _corpus()
    dev = [s for s in series if s.part == "dev"]
    fit = ev.Fitted(dev)
    assert {r["config"] for r in fit.rows} <= {s.config for s in dev}
    # changing every held-out model's curves changes no fitted constant
    changed = [s if s.part == "dev" else synthetic(s.lr, s.weight_decay, 150, 333, name=s.name, config=s.config,
                                                   part="heldout") for s in series]
    fit2 = ev.Fitted([s for s in changed if s.part == "dev"])
    assert fit2.ours.to_dict() == fit.ours.to_dict()
    assert vars(fit2.law["balance"]) == vars(fit.law["balance"]) and fit2.notsawo == fit.notsawo


def test_corpus_split_is_by_config_and_fixed():
    spec = importlib.util.spec_from_file_location("forecast_corpus", ROOT / "benchmarks" / "forecast_corpus.py")
    fc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fc)
    sp = fc.split()
    assert set(sp.values()) == {"dev", "heldout"} and sum(v == "heldout" for v in sp.values()) == len(sp) // 3
    saved = json.loads((ROOT / "benchmarks" / "results" / "forecast_corpus" / "split.json").read_text())
    assert saved["configs"] == sp
    # every seed of a config lands in the same part: the part is a function of the seedless key
    for frac, seed, method in fc.BATCHES:
        for lr in fc.LRS:
            for wd in fc.WDS:
                assert fc.part_of(fc.config_key(frac, lr, wd, method)) in ("dev", "heldout")
    # the committed batches agree with the split
    for meta in (ROOT / "benchmarks" / "results" / "forecast_corpus").glob("*/meta.json"):
        for m in json.loads(meta.read_text())["models"]:
            assert sp[m["config"]] == m["part"]


def test_forecast_run_uses_the_fitted_forecaster_and_says_how_much_to_trust_it(tmp_path):
    from grokscope.config import Config
    from grokscope.measures import forecast as fc
    from grokscope.training.run import train

    kw = dict(p=11, d_model=16, n_heads=2, d_mlp=32, epochs=60, checkpoint_every=10, test_every=5, frac_train=0.5)
    run = train([Config(seed=0, **kw), Config(seed=1, **kw)], tmp_path / "r", device="cpu", progress=False)
    trend = fc.forecast_run(run, 40, forecaster="trend")
    assert all(f.p_grok is None and not f.trust for f in trend)
    model = fm.load_model()
    res = fc.forecast_run(run, 40)
    if model is None:  # no shipped constants: the trend, as before
        assert [f.method for f in res] == [f.method for f in trend]
        return
    for f in res:
        assert 0.0 <= f.p_grok <= 1.0 and f.trust.startswith("how much to trust it")
        if not f.grokked:
            assert f.method.startswith("fitted") and 40 <= f.lower <= f.predicted <= f.upper
    assert res[0].trust in fc.format_table(res)
    if (model.trust or {}).get("domain"):  # p 11, d_model 16 lie outside the shipped corpus: the line says so
        assert "This run is outside it (p 11, d_model 16)" in res[0].trust
    # a calibration is the trend's: auto then keeps the trend
    assert fc.forecast_run(run, 40, fc.Calibration())[0].p_grok is None


def test_a_series_read_from_a_run_has_the_corpus_features(tmp_path):
    """series_from_run computes only the checkpoints features() reads; the features equal those of the same
    model with every checkpoint's causal measures (the corpus's form)."""
    from grokscope.config import Config
    from grokscope.training.run import train

    kw = dict(p=11, d_model=16, n_heads=2, d_mlp=32, epochs=200, checkpoint_every=10, test_every=5, frac_train=0.6,
              weight_decay=2.0, lr=3e-3)
    run = train([Config(seed=0, **kw)], tmp_path / "r", device="cpu", progress=False)
    full = fm.causal_progress(run, run.checkpoint_epochs)
    for until in (60, 150, 200):
        a = fm.features(fm.series_from_run(run, 0, until), until, 100.0)
        b = fm.features(fm.series_from_run(run, 0, until, progress=full), until, 100.0)
        assert a == pytest.approx(b, nan_ok=True), until


def test_the_trust_line_says_when_a_run_lies_outside_the_corpus_and_what_was_measured_there():
    from types import SimpleNamespace

    from grokscope.measures import forecast as fc
    base = {"heldout_models": 34, "corpus": "c", "mdare_mem": 0.2, "coverage_mem": 0.8}
    domain = {"p": [59], "d_model": [64], "n_layers": [1], "epochs": 2000}
    inside = SimpleNamespace(p=59, d_model=64, n_layers=1, epochs=2000)
    big = SimpleNamespace(p=113, d_model=128, n_layers=1, epochs=40000)
    plain = fc.trust_text(SimpleNamespace(trust=base), big)
    assert plain.startswith("how much to trust it: on 34") and "outside it (" not in plain  # no domain recorded
    m = SimpleNamespace(trust={**base, "domain": domain})
    assert fc.trust_text(m, inside) == fc.trust_text(m)
    line = fc.trust_text(m, big)
    assert "This run is outside it (p 113, d_model 128, a 40,000-epoch budget): its error here is unmeasured." in line
    x = {"models": 10, "runs": "p 113", "mdare_mem": 0.72, "trivial_mdare_mem": 0.97, "mdare_0.25": 0.46,
         "coverage_mem": 0.0, "coverage_0.25": 0.4, "early_mem": 1.0}
    line = fc.trust_text(SimpleNamespace(trust={**base, "domain": domain, "transfer": x}), big)
    assert "on 10 grokked models outside it (p 113) its median |pred - G| / G was 0.72" in line
    assert "(trivial 0.97)" in line and "held G 0% / 40%" in line and line.endswith("read it as a lower bound.")
    x["early_mem"] = 0.5
    line = fc.trust_text(SimpleNamespace(trust={**base, "domain": domain, "transfer": x}), big)
    assert "lower bound" not in line and line.endswith("40%.")
