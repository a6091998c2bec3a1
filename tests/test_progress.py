"""Progress measures over training (grokscope.measures.progress): the batched path against a plain per-checkpoint loop over
the single-checkpoint analysis functions, the Gini coefficient, and a hand-built Fourier-multiplication model."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from grokscope.interp import analysis as an
from grokscope.fourier import basis as fr
from grokscope.measures import checkpoint_measures as cm, progress as pg
from grokscope.report import run as report
from grokscope.measures import tables
from grokscope.fourier.keys import wl_keys
from grokscope.config import Config
from grokscope.fast.tables import forward_fast
from grokscope.training.run import Run, train

from helpers_fourier import fourier_dataset, fourier_model

KEYS = {0: [2, 5], 1: [3]}  # the tiny models have not grokked: keys given explicitly


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two p = 13 models (different seeds, splits and weight decay), 100 epochs, a checkpoint every 20."""
    kw = dict(p=13, d_model=32, n_heads=4, d_mlp=64, epochs=100, checkpoint_every=20, test_every=10)
    cfgs = [Config(seed=0, frac_train=0.5, **kw), Config(seed=1, frac_train=0.6, weight_decay=0.0, **kw)]
    return train(cfgs, tmp_path_factory.mktemp("progress") / "r", device="cpu", progress=False)


def plain_gini(x) -> float:
    """Textbook Gini: mean absolute difference over twice the mean."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def reference(run: Run, epoch: int, k: int, keys: list[int]) -> tuple[dict[str, float], torch.Tensor]:
    """The measures of one model at one checkpoint, from grokscope.interp.analysis (one checkpoint at a time), and the
    train loss with each single frequency removed."""
    model, ds = run.model(epoch, k), run.dataset(k)
    acts = an.collect(model, ds)
    p = acts.p
    own = an.metrics(acts.model_logits, acts)
    rest = an.metrics(an.restricted_logits(acts, keys)[acts.s], acts)
    exc = an.metrics(an.excluded_logits(acts, keys), acts)
    fa = an.frequency_ablation(acts)
    out = {"train_loss": own.loss_train, "test_loss": own.loss_test, "train_acc": own.acc_train,
           "test_acc": own.acc_test, "restricted_loss": rest.loss_test, "restricted_acc": rest.acc_test,
           "restricted_loss_all": rest.loss_all, "restricted_acc_all": rest.acc_all,
           "excluded_loss": exc.loss_train, "excluded_acc": exc.acc_train,
           "excluded_loss_max": float(fa.loss_train.max()), "excluded_loss_max_freq": float(fa.loss_train.argmax() + 1),
           "gini_W_E": plain_gini(fr.freq_norms(fr.fft1d(acts.W_E[:p], dim=0), dim=0)[1:]),
           "gini_W_L": plain_gini(fr.freq_norms(fr.fft1d(acts.W_L, dim=1), dim=1)[1:])}
    params = run.params(epoch, k)
    out["sum_sq"] = float(sum(v.double().pow(2).sum() for v in params.values()))
    for name, v in params.items():
        out[f"sum_sq.{name}"] = float(v.double().pow(2).sum())
    for f in keys:
        m = an.metrics(an.excluded_logits(acts, [f]), acts)
        out[f"excluded_loss_k{f}"], out[f"excluded_acc_k{f}"] = m.loss_train, m.acc_train
        assert m.loss_train == pytest.approx(float(fa.loss_train[f - 1]), rel=1e-9)
    for f, alpha in an.composition(acts, keys).logit_alphas.items():
        out[f"logit_coef_k{f}"] = alpha
    return out, fa.loss_train


# ---------------------------------------------------------------------- the batched path == the plain loop
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_per_checkpoint_analysis(tiny_run, dtype):
    """The reference reads the float32 model's activations, so both forward dtypes differ from it by float32
    rounding: logit-based numbers to a few eps32 of the largest logit (the magnitude of their inputs, not of the
    result, which may be near 0), weight-based ones (Gini, sums of squares: float64 of the same weights) to
    float64 noise. Accuracies may differ by one pair of their own split (a near tie between roundings); the
    argmax frequency is compared by the loss it selects."""
    df = pg.compute_progress(tiny_run, keys=KEYS, rows_per_chunk=3, dtype=dtype)
    assert list(df.columns) == ["model", "epoch", "measure", "freq", "value"]
    assert df.attrs["keys"] == {"0": [2, 5], "1": [3]}
    per_key = df[df.measure.isin(pg.PER_FREQUENCY)]
    assert set(zip(per_key.model, per_key.freq)) == {(0, 2), (0, 5), (1, 3)} and (df[df.freq == 0].measure.isin(
        pg.PER_FREQUENCY)).sum() == 0
    assert not df.measure.str.contains(r"_k\d").any()  # frequencies live in the freq column, not in names
    eps32 = torch.finfo(torch.float32).eps
    for k in range(tiny_run.K):
        w = pg.wide(df, model=k)
        assert list(w.index) == tiny_run.checkpoint_epochs
        ds = tiny_run.dataset(k)
        n = {"train": len(ds.train_idx), "test": len(ds.test_idx), "all": ds.p * ds.p}
        for e in tiny_run.checkpoint_epochs:
            ref, single = reference(tiny_run, e, k, KEYS[k])
            assert set(w.columns) == set(ref), (set(w.columns) ^ set(ref))
            with torch.no_grad():
                lmax = float(tiny_run.model(e, k).answer_logits(ds.tokens).abs().max())
            logit_tol = 64 * eps32 * max(lmax, 1.0)
            for name, v in ref.items():
                got = w.loc[e, name]
                if name == "excluded_loss_max_freq":
                    assert float(single[int(got) - 1]) == pytest.approx(ref["excluded_loss_max"], abs=logit_tol)
                elif "_acc" in name:
                    split = "all" if name.endswith("_all") else "test" if name.startswith(("test", "restricted")) \
                        else "train"
                    assert abs(got - v) <= 1.01 / n[split], (k, e, name, got, v)
                elif name.startswith(("gini", "sum_sq")):
                    assert got == pytest.approx(v, rel=1e-9, abs=1e-12), (k, e, name, got, v)
                else:
                    assert got == pytest.approx(v, rel=logit_tol, abs=logit_tol), (k, e, name, got, v)


def test_workers_give_the_same_table(tiny_run):
    a = pg.compute_progress(tiny_run, keys=KEYS, rows_per_chunk=2)
    n = torch.get_num_threads()
    b = pg.compute_progress(tiny_run, keys=KEYS, rows_per_chunk=2, workers=2)
    assert torch.get_num_threads() == n
    pd.testing.assert_frame_equal(a, b)


def test_default_keys_are_the_analysis_keys(tiny_run):
    """Keys come from the final checkpoint by analysis.key_frequencies' rule (the tiny models have none)."""
    keys = pg.resolve_keys(tiny_run)
    for k in range(tiny_run.K):
        acts = an.collect(tiny_run.model(None, k), tiny_run.dataset(k))
        assert keys[k] == an.key_frequencies(acts).keys
    model = fourier_model(31, (3, 7, 10))
    params = {n: v.detach() for n, v in model.state_dict().items()}
    assert wl_keys(fr.wl_from_params(params)) == [3, 7, 10]
    assert pg.resolve_keys(tiny_run, [4, 1, 4]) == {0: [1, 4], 1: [1, 4]}
    with pytest.raises(ValueError, match="keys"):
        pg.resolve_keys(tiny_run, [7])


def test_grid_logits_equal_forward_fast(tiny_run):
    cfg = tiny_run.configs[0].model_config
    data = cm.ProgressData.build([tiny_run.dataset(0)], {0: []})
    stacked = [tiny_run.stacked_params(e) for e in (20, 100)]
    params = {n: torch.cat([d[n] for d in stacked]) for n in stacked[0]}
    M, p = 4, cfg.p
    a = data.a[None].expand(M, -1)  # s-major pairs
    b = data.b[None].expand(M, -1)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        pd_ = {n: v.to(dtype) for n, v in params.items()}
        ref = forward_fast(pd_, a, b, cfg)
        for block in (1, 3, None):
            got = tables.grid_logits(pd_, cfg, data.a, data.b, block)
            assert got.shape == (M, p * p, p)
            assert torch.allclose(got, ref, rtol=tol, atol=tol)


# ---------------------------------------------------------------------- Gini
def test_gini_known_vectors():
    n = 56
    assert float(cm.gini(torch.full((n,), 3.0))) == pytest.approx(0.0, abs=1e-15)
    one = torch.zeros(n)
    one[7] = 2.5
    assert float(cm.gini(one)) == pytest.approx((n - 1) / n)
    assert math.isnan(float(cm.gini(torch.zeros(n))))
    torch.manual_seed(0)
    x = torch.rand(5, 3, n)
    g = cm.gini(x)
    assert g.shape == (5, 3)
    assert float(g[2, 1]) == pytest.approx(plain_gini(x[2, 1]), rel=1e-12)
    assert torch.allclose(cm.gini(x.transpose(0, 2), dim=0), g.T)
    assert torch.allclose(cm.gini(7 * x), g)  # scale-free


# ---------------------------------------------------------------------- a hand-built Fourier model
def test_hand_built_fourier_model():
    """Restricting the logits to the key frequencies keeps the loss; removing them destroys it."""
    P, keys, scale = 31, [3, 7, 10], 20.0
    model = fourier_model(P, tuple(keys), scale=scale)
    ds = fourier_dataset(P)
    params = {n: v.detach()[None] for n, v in model.state_dict().items()}
    data = cm.ProgressData.build([ds], {0: keys})
    res = cm.batch_measures(params, model.cfg, torch.zeros(1, dtype=torch.long), data)
    v = {k: t[0].item() if t.ndim == 1 else t[0] for k, t in res.items()}
    full = v["test_loss"]
    assert v["train_acc"] == 1.0 and v["test_acc"] == 1.0 and full < 1e-3
    assert v["restricted_loss"] == pytest.approx(full, rel=0.05, abs=1e-4) and v["restricted_acc"] == 1.0
    assert v["excluded_loss"] > 1.0 > 1000 * v["train_loss"]  # excluded >> full
    assert v["excluded_acc"] < 0.2
    # one key alone hurts less (the other two still vote for the answer) but always more than nothing
    assert torch.all(v["per_key_loss"] > v["train_loss"]) and float(v["per_key_loss"].max()) > 100 * v["train_loss"]
    assert int(v["excluded_loss_max_freq"]) in keys
    others = [k for k in range(1, P // 2 + 1) if k not in keys]
    assert float(v["single_freq_loss"][[k - 1 for k in others]].max()) < 10 * v["train_loss"]
    alphas = v["logit_coef"][[k - 1 for k in keys]]  # logits ~ scale * sum_k cos(w_k(a+b-c)) (up to the ReLU fit)
    assert torch.allclose(alphas, alphas.mean().expand(3), rtol=0.02) and float(alphas.mean()) > 0
    w = cm.weight_measures(params)
    n = P // 2
    assert float(w["gini_W_L"][0]) == pytest.approx(1 - 2 * 3 * (3 / 2) / (3 * n), abs=0.02)  # 3 equal of 15
    assert float(w["gini_W_E"][0]) == pytest.approx(1 - 2 * 3 * (3 / 2) / (3 * n), abs=1e-6)  # float32 weights


# ---------------------------------------------------------------------- the run file
def test_save_load_and_wide(tiny_run):
    df = report.save_progress(tiny_run, keys=KEYS, every=2)
    assert sorted(df.epoch.unique()) == [0, 40, 80, 100]  # every 2nd checkpoint, the last always included
    back = report.load_progress(tiny_run)
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["keys"] == {"0": [2, 5], "1": [3]} and back.attrs["every"] == 2
    assert report.load_or_compute_progress(tiny_run).equals(df)  # up to date: not recomputed
    assert report.load_or_compute_progress(tiny_run, keys=KEYS, every=2).equals(df)
    other = report.load_or_compute_progress(tiny_run, keys={0: [1], 1: [1]}, every=2)  # other keys: recomputed, saved
    assert other.attrs["keys"] == {"0": [1], "1": [1]} and report.load_progress(tiny_run).attrs["keys"]["0"] == [1]
    report.save_progress(tiny_run, df)
    report.save_progress(tiny_run, df.drop(columns="freq"))  # a table saved before the freq column existed
    assert "freq" in report.load_or_compute_progress(tiny_run, keys=KEYS, every=2).columns  # recomputed
    report.save_progress(tiny_run, df)
    w = pg.wide(df)
    assert w.index.names == ["model", "epoch"] and w.shape[0] == 8
    assert {"excluded_loss_k2", "excluded_loss_k5", "logit_coef_k3", "sum_sq.W_E"} <= set(w.columns)
    assert w.loc[1, "excluded_loss_k2"].isna().all()  # model 1's keys are [3]
    row = df[(df.model == 0) & (df.epoch == 100) & (df.measure == "train_loss")].value.item()
    logged = tiny_run.metrics.query("model == 0 and epoch == 100").train_loss.item()
    assert row == pytest.approx(logged, rel=1e-5)
