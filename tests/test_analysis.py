"""The reverse-engineering analysis (grokscope.interp.analysis) on a hand-built Fourier-multiplication transformer,
on small random models (fast path == hooks path), and on the authors' grokked checkpoint when present."""

import json
import math
from pathlib import Path

import pytest
import torch

from grokscope.interp import analysis as an
from grokscope.fourier import basis as fr
from grokscope.config import Config, ModelConfig
from grokscope.model.transformer import Transformer
from grokscope.tasks.modular import make_dataset

from helpers import need_reference
from helpers_fourier import fourier_dataset, fourier_model

KEYS = [3, 7, 10]
P = 31
SCALE = 20.0


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


@pytest.fixture(scope="module")
def hand():
    """The hand-built model (float32, as trained models are) and its analysis, computed once."""
    model = fourier_model(P, tuple(KEYS), scale=SCALE)
    ds = fourier_dataset(P)
    return model, ds, an.analyze(model, ds)


# ---------------------------------------------------------------------- key frequencies
def test_key_frequencies_recovered_exactly(hand):
    _, _, res = hand
    kf = res.key_frequencies
    assert kf.keys == KEYS and kf.wl_keys == KEYS and kf.we_keys == KEYS and kf.neuron_keys == KEYS
    assert kf.consistent
    assert kf.wl_gap > 1e6  # W_L holds nothing but the key frequencies
    assert {k: int(kf.neuron_counts[k - 1]) for k in KEYS} == {3: 96, 7: 96, 10: 96}
    assert "largest multiplicative gap" in kf.rule


def test_select_by_gap_rule():
    torch.manual_seed(0)
    noise = 1 + 0.1 * torch.rand(56)
    assert an.select_by_gap(noise) == []  # no sparsity: nothing, never noise frequencies
    v = noise.clone() * 1e-3
    v[[13, 34, 40, 41, 51]] = torch.tensor([0.3, 0.2, 0.25, 0.15, 0.1])
    assert an.select_by_gap(v) == [14, 35, 41, 42, 52]
    v[40] = 0.04  # a weaker key (~40x the noise, 2.5x below the next key) is still above the largest gap
    assert an.select_by_gap(v) == [14, 35, 41, 42, 52]
    v[40] = 0.005  # ~5x the noise but 20x below the other keys: the largest gap is above it
    assert an.select_by_gap(v) == [14, 35, 42, 52]
    counts = torch.zeros(56)
    counts[[2, 5, 22, 38]] = torch.tensor([88.0, 110, 209, 105])
    counts[10] = 1  # a stray neuron does not make a key
    assert an.select_by_gap(counts, smooth=1.0) == [3, 6, 23, 39]
    assert an.select_by_gap(torch.zeros(10)) == []


def test_random_init_has_no_key_frequencies():
    model = Transformer(ModelConfig(d_vocab=24, d_model=32, n_heads=4, d_mlp=64), seed=0)
    ds = make_dataset(Config(p=23, d_model=32, n_heads=4, d_mlp=64))
    kf = an.key_frequencies(an.collect(model, ds))
    assert kf.keys == [] and kf.we_keys == [] and not kf.consistent


# ---------------------------------------------------------------------- evidence 1-3
def test_periodicity(hand):
    _, _, res = hand
    pe = res.periodicity
    shares_we = pe.we_freq_norms[1:].pow(2) / pe.we_freq_norms[1:].pow(2).sum()
    assert set(torch.nonzero(shares_we > 1e-9).flatten().add(1).tolist()) == set(KEYS)
    assert pe.neuron_key_share > 0.9  # the rest: harmonics of the piecewise-linear squares
    assert pe.logit_key_share > 0.9999
    top = {(t["a"], t["b"]) for t in pe.logit_top[:6]}
    assert top == {(f"{f} {k}", f"{f} {k}") for k in KEYS for f in ("cos", "sin")}
    assert pe.attn_to_a.shape == (3, P, P) and pe.attn_spectrum.shape == (3, P, P)
    torch.testing.assert_close(pe.attn_to_a[0], torch.ones(P, P, dtype=torch.float64))  # head 0 reads a
    assert pe.attn_best_freq[2] == KEYS[0]



def test_attention_and_ov_circuits_in_fourier_basis(hand):
    """Figs 10, 11 on the hand-built model: head 2's score to token a is 0.4 cos(w_3 a) (one component,
    0.4 sqrt(P/2) in the unit basis); heads 0/1 score a constant; heads 0/1 copy T (cos/sin of every key, unit
    amplitude: norm sqrt(P/2) per component) and head 2 has W_V = 0."""
    from grokscope.fourier import basis as fr

    _, _, res = hand
    pe = res.periodicity
    C, OV = pe.attn_C_fourier, pe.ov_fourier_norms
    assert C.shape == (3, P) and OV.shape == (3, P)
    i3 = fr.cos_index(3)
    assert C[2, i3].abs().item() == pytest.approx(0.4 * math.sqrt(P / 2), rel=1e-5)
    others = torch.ones(P, dtype=torch.bool)
    others[i3] = False
    assert C[2, others].abs().max() < 1e-5
    assert C[:2, 1:].abs().max() < 1e-9 and C[0, 0].abs() > 100  # heads 0/1: constant scores (+M, 0)
    key_idx = [fr.cos_index(k) for k in KEYS] + [fr.sin_index(k, P) for k in KEYS]
    for h in (0, 1):
        torch.testing.assert_close(OV[h, key_idx], torch.full((6,), math.sqrt(P / 2), dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)
        rest = torch.ones(P, dtype=torch.bool)
        rest[key_idx] = False
        assert OV[h, rest].max() < 1e-5
    assert OV[2].max() == 0.0
    assert "attn_C_fourier" not in pe.to_dict() and "wl_fourier" not in res.neurons.to_dict()


def test_weight_fourier_norms_match_analysis(hand):
    """grokscope.fourier.weight_freq_norms (stacked, weights only) == the analysis' W_E / W_L norms."""
    model, _, res = hand
    params = {k: v.detach().unsqueeze(0) for k, v in model.state_dict().items()}
    norms = fr.weight_freq_norms(params)
    pe = res.periodicity
    torch.testing.assert_close(norms["W_E"][0], pe.we_freq_norms[1:], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(norms["W_L"][0], pe.wl_freq_norms[1:], rtol=1e-6, atol=1e-9)
    one = fr.weight_freq_norms({k: v[0] for k, v in params.items()})  # unstacked works too
    torch.testing.assert_close(one["W_L"], norms["W_L"][0])

def test_composition_table1_and_logit_fit(hand):
    _, _, res = hand
    co = res.composition
    assert co.wl_residual_share < 1e-5 and co.wl_residual_share_centered < 1e-5
    assert [(d.freq, d.kind) for d in co.directions] == [(k, s) for k in KEYS for s in ("cos", "sin")]
    for d in co.directions:
        assert d.fve > 0.999, d
        names = {(t["a"], t["b"]) for t in d.top_terms}
        f = d.freq
        expect = ({(f"cos {f}", f"cos {f}"), (f"sin {f}", f"sin {f}")} if d.kind == "cos"
                  else {(f"sin {f}", f"cos {f}"), (f"cos {f}", f"sin {f}")})
        assert names == expect
    assert co.logit_fve > 0.9999 and co.logit_fve_interaction > 0.9999
    for k in KEYS:
        assert co.logit_alphas[k] == pytest.approx(SCALE, rel=2e-3)
    assert co.logit_fit_metrics.acc_all == 1.0
    assert co.logit_fit_metrics.loss_all == pytest.approx(res.ablations.baseline.loss_all, rel=0.02)


def test_neurons_and_heads(hand):
    _, _, res = hand
    ne = res.neurons
    assert ne.clusters_all == {3: 96, 7: 96, 10: 96} and ne.n_dead == 0
    # every neuron is a function of one frequency by construction; the ReLU kinks put some of its variance in
    # harmonics, so "well fit" (> 85%) is 2/3 of them here -- all in the key clusters
    assert ne.n_well_fit == ne.n_well_fit_key and ne.frac_well_fit > 0.6
    assert set(ne.clusters) == set(KEYS)
    assert all(share > 0.999 for share in ne.cluster_wl_share.values())  # W_L localised by frequency
    from grokscope.fourier import basis as fr

    hand_model = hand[0]
    WL = hand_model.blocks[0].mlp.W_out.detach().double() @ hand_model.W_U[:, :P].detach().double()
    torch.testing.assert_close(ne.wl_fourier, fr.fft1d(WL, dim=1))
    h0, h1, h2 = ne.heads
    assert math.isnan(h0.fve) and math.isnan(h1.fve) and h0.freq == h1.freq == 0  # constant: nothing to explain
    # head 2: sigmoid(0.4 (cos 3a - cos 3b)) ~ 0.5 + 0.1 (cos 3a - cos 3b)
    assert h2.freq == 3 and h2.alpha == pytest.approx(0.1, abs=0.005) and abs(h2.beta) < 1e-6 and h2.fve > 0.999
    assert all(h.self_attention < 1e-15 for h in ne.heads)


# ---------------------------------------------------------------------- evidence 4
def test_ablations(hand):
    _, _, res = hand
    ab = res.ablations
    base = ab.baseline.loss_all
    assert 1e-5 < base < 1e-3 and ab.baseline.acc_all == 1.0
    # the float32 model's own loss vs the float64 recomputation from its float32 activations: they differ by the
    # float32 rounding of logits of size |L| <= 60, i.e. by a few eps32 * max|L| in the margins, which is the
    # loss's relative difference (the loss is ~ sum exp(-margin) this close to zero)
    with torch.no_grad():
        logit_rel = 8 * torch.finfo(torch.float32).eps * float(hand[0](hand[1].tokens)[:, -1, :P].abs().max())
    assert 1e-6 < logit_rel < 1e-4
    assert res.model_metrics.loss_all == pytest.approx(base, rel=logit_rel)
    loss = lambda name, split="all": ab.loss(name, split)  # noqa: E731
    assert loss("logits_restricted") == pytest.approx(base, rel=0.01)
    assert loss("logits_excluded", "train") > 3.0  # ~ ln 31: nothing is left
    assert loss("mlp_proj_wl_directions") == pytest.approx(base, rel=1e-6)
    assert loss("mlp_proj_wl_nullspace") > 3.0
    assert loss("neurons_sum_terms_all") == pytest.approx(base, rel=0.01)
    # dropping only part of the harmonics (the well-fit neurons') leaves them uncancelled: worse, still accurate
    assert ab.results["neurons_poly"].after.acc_all == 1.0 and loss("neurons_poly") < 30 * base
    for name in ("skip_mlp_zero", "skip_mlp_mean"):  # the skip path carries nothing W_U reads: exact in float64
        assert loss(name) == pytest.approx(base, rel=1e-9), name
    for name in ("attn_no_self_renorm", "attn_linear_sigmoid"):  # the MLP recomputed in float64 from float32 inputs
        assert loss(name) == pytest.approx(base, rel=logit_rel), name
    fa = ab.per_frequency
    assert fa.freqs == list(range(1, P // 2 + 1))
    for k in fa.freqs:
        if k in KEYS:
            assert fa.loss_all[k - 1] > 1.3 * base, k
            assert loss(f"logits_ablate_freq_{k}") == pytest.approx(float(fa.loss_all[k - 1]))
        else:
            assert float(fa.loss_all[k - 1]) == pytest.approx(base, rel=1e-3), k
    for split in ("train", "test", "all"):
        assert getattr(ab.results["logits_excluded"].before, f"loss_{split}") == getattr(ab.baseline, f"loss_{split}")


def test_to_dict_is_json(hand):
    _, _, res = hand
    d = res.to_dict()
    s = json.dumps(d, allow_nan=False)
    back = json.loads(s)
    assert back["key_frequencies"]["keys"] == KEYS
    assert back["neurons"]["heads"][0]["fve"] is None
    assert back["ablations"]["results"]["logits_restricted"]["after"]["loss_all"] > 0
    assert "attn_to_a" not in back["periodicity"]  # big grids stay out of the JSON
    text = res.summary()
    assert text.startswith(f"p={P}  key frequencies {KEYS} (W_E {KEYS}, neurons {KEYS}; consistent=True)")
    assert "heads: 0: k=0 " in text and "; 2: k=3 alpha=+0.097 " in text


# ---------------------------------------------------------------------- fast path == hooks path
def _small_random(act="relu", n_layers=1):
    cfg = ModelConfig(d_vocab=14, d_model=16, n_heads=2, d_mlp=32, act=act, n_layers=n_layers)
    model = Transformer(cfg, seed=1).double()
    return model, make_dataset(Config(p=13, d_model=16, n_heads=2, d_mlp=32, frac_train=0.5, seed=3))


@pytest.mark.parametrize("which", ["hand", "random-relu", "random-gelu", "random-relu-2layers"])
def test_fast_path_equals_hooks(which):
    """Every ablation's recomputation equals running the model under hooks; a two-layer model's are those of
    its final block (Table 5's two-layer rows)."""
    if which == "hand":
        model, ds, keys = fourier_model(P, tuple(KEYS), scale=SCALE, dtype=torch.float64), fourier_dataset(P), KEYS
    else:
        model, ds = _small_random(which.split("-")[1], n_layers=2 if which.endswith("2layers") else 1)
        keys = [1, 4]  # a random model has no key frequencies: force some to exercise every path
    acts = an.collect(model, ds)
    torch.testing.assert_close(an.tail_logits(acts), acts.model_logits, rtol=1e-12, atol=1e-12)
    fast = an.ablations(acts, keys, method="fast", self_attention="both")
    slow = an.ablations(acts, keys, method="hooks", model=model, self_attention="both")
    assert "attn_no_self_zero" in fast.results
    assert fast.results.keys() == slow.results.keys()
    for name in fast.results:
        a, b = fast.results[name].after, slow.results[name].after
        for split in ("train", "test", "all"):
            assert getattr(a, f"loss_{split}") == pytest.approx(getattr(b, f"loss_{split}"), rel=1e-9, abs=1e-12), name
        if not name.startswith("mlp_proj_wl_nullspace"):  # all-equal logits there: argmax ties
            assert a.acc_all == pytest.approx(b.acc_all, abs=1e-12), name


def test_frequency_ablation_matches_explicit():
    model, ds = _small_random()
    acts = an.collect(model, ds)
    D = fr.sum_directions(13)  # (K, 2, N)
    for scale in (1.0, 300.0):  # 300: logits of several hundred, exp() would overflow without the shift
        L0 = acts.logits * scale
        fa = an.frequency_ablation(acts, L0)
        for k in range(1, 7):
            Dk = D[k - 1]
            m = an.metrics(L0 - Dk.T @ (Dk @ L0), acts)
            assert float(fa.loss_all[k - 1]) == pytest.approx(m.loss_all, rel=1e-10)
            assert float(fa.loss_train[k - 1]) == pytest.approx(m.loss_train, rel=1e-10)
            assert float(fa.acc_test[k - 1]) == pytest.approx(m.acc_test)


def test_a_two_layer_model_is_read_through_its_final_block():
    model, ds = _small_random(n_layers=2)
    acts = an.collect(model, ds)
    assert acts.layer == 1
    torch.testing.assert_close(acts.W_out, model.blocks[1].mlp.W_out.detach().double())
    torch.testing.assert_close(acts.logits, acts.model_logits, rtol=1e-12, atol=1e-12)
    one = an.collect(*_small_random())
    assert one.layer == 0
    res = an.analyze(model, ds, keys=[1, 4])
    assert res.composition.keys == [1, 4] and 0 <= res.composition.logit_fve <= 1
    assert len(res.composition.directions) == 4


def test_rejects_unsupported_models():
    with pytest.raises(ValueError, match="method"):
        model, ds = _small_random()
        an.ablations(an.collect(model, ds), [1], method="nope")


# ---------------------------------------------------------------------- input helpers
def test_analysis_from_run(tmp_path):
    from grokscope.training.run import train

    cfg = Config(p=11, d_model=8, n_heads=2, d_mlp=16, epochs=20, checkpoint_every=10, frac_train=0.5)
    train([cfg], tmp_path / "run", device="cpu", progress=False)
    res = an.analysis_from_run(tmp_path / "run")
    assert res.p == 11 and res.n_train == int(0.5 * 121)
    early = an.analysis_from_run(tmp_path / "run", epoch=10)
    assert early.model_metrics.loss_all != res.model_metrics.loss_all
    json.dumps(res.to_dict(), allow_nan=False)  # also with no key frequencies (an untrained model)


def test_authors_low_precision_checkpoint():
    path = need_reference("low_precision_mod_addition.pth")
    res = an.analysis_from_authors(path, seed=1, frac_train=0.3)
    kf = res.key_frequencies
    assert 3 <= len(kf.keys) <= 7
    assert kf.keys == [3, 6, 23, 39] and kf.consistent  # observed; W_E adds the unused 35 (cf. paper §4.1)
    assert set(kf.keys) < set(kf.we_keys)
    ab, base = res.ablations, res.ablations.baseline
    assert res.model_metrics.loss_train == pytest.approx(3.05e-4, rel=0.01)  # README: train 3e-4, test 4e-3
    assert res.model_metrics.loss_test == pytest.approx(4.0e-3, rel=0.01)
    assert ab.loss("logits_restricted") < 2 * base.loss_all
    assert ab.loss("logits_excluded", "train") > math.log(113)  # worse than chance
    for k in kf.keys:
        assert ab.loss(f"logits_ablate_freq_{k}") > 10 * base.loss_all
    non_key = [float(x) for k, x in zip(ab.per_frequency.freqs, ab.per_frequency.loss_all) if k not in kf.keys]
    assert max(non_key) < 5 * base.loss_all
    assert ab.loss("mlp_proj_wl_nullspace") > math.log(113)
    assert ab.results["skip_mlp_zero"].after.acc_all > 0.99
    co, ne = res.composition, res.neurons
    assert co.logit_fve > 0.4 and co.logit_fve_interaction > 0.55  # a messier model than the paper's (95%)
    assert ne.frac_well_fit > 0.7 and ne.n_well_fit == ne.n_well_fit_key
    assert all(h.fve > 0.8 and h.freq in kf.keys for h in ne.heads)
