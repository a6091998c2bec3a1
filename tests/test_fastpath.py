"""The fast training forward is the same function as the plain full-sequence model (float64)."""

import pytest
import torch

from grokscope.config import ModelConfig
from grokscope.fastpath import forward_fast, forward_plain
from grokscope.model import Transformer, init_params

P = 7


def stacked(cfg, seeds):
    ps = {}
    for s in seeds:
        for k, v in init_params(cfg, s, torch.float64).items():
            ps.setdefault(k, []).append(v)
    out = {k: torch.stack(v) for k, v in ps.items()}
    # non-zero biases so that their paths are exercised too
    g = torch.Generator().manual_seed(0)
    for k in out:
        if ".b_" in k:
            out[k] = torch.randn(out[k].shape, generator=g, dtype=torch.float64) * 0.1
    return {k: v.requires_grad_() for k, v in out.items()}


def inputs(K, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, P, (K, N), generator=g), torch.randint(0, P, (K, N), generator=g)


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("K", [1, 3])
def test_fast_equals_plain_values_and_grads(act, K, tables, monkeypatch):
    import grokscope.fastpath as fp
    monkeypatch.setattr(fp, "PRE_VIA_TABLES", tables)
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16, act=act)
    ps = stacked(cfg, range(K))
    a, b = inputs(K, 30)
    w = torch.randn(K, 30, P, dtype=torch.float64)
    lf, lp = forward_fast(ps, a, b, cfg), forward_plain(ps, a, b, cfg)
    torch.testing.assert_close(lf, lp, rtol=1e-12, atol=1e-12)
    gf = torch.autograd.grad((lf * w).sum(), list(ps.values()))
    gp = torch.autograd.grad((lp * w).sum(), list(ps.values()))
    for name, x, y in zip(ps, gf, gp):
        assert x.abs().max() > 0 or name.startswith("W_E"), name
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=name)


def test_fast_equals_plain_with_dropout_mask():
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16)
    ps = stacked(cfg, [0, 1])
    a, b = inputs(2, 20)
    keep = torch.rand(2, 20, 16, generator=torch.Generator().manual_seed(1)) > 0.3
    drop = torch.tensor([0.3, 0.5])
    lf, lp = forward_fast(ps, a, b, cfg, keep, drop), forward_plain(ps, a, b, cfg, keep, drop)
    torch.testing.assert_close(lf, lp, rtol=1e-12, atol=1e-12)
    gf = torch.autograd.grad(lf.square().sum(), list(ps.values()))
    gp = torch.autograd.grad(lp.square().sum(), list(ps.values()))
    for x, y in zip(gf, gp):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_plain_batched_equals_module(n_layers):
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16, n_layers=n_layers)
    ps = stacked(cfg, [3, 4])
    a, b = inputs(2, 25)
    out = forward_plain(ps, a, b, cfg)
    for k in range(2):
        m = Transformer(cfg, seed=None).double()
        m.load_state_dict({n: v[k].detach() for n, v in ps.items()})
        toks = torch.stack([a[k], b[k], torch.full_like(a[k], P)], -1)
        torch.testing.assert_close(out[k], m.answer_logits(toks), rtol=1e-12, atol=1e-12)


def test_fast_rejects_two_layers():
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16, n_layers=2)
    with pytest.raises(ValueError, match="n_layers"):
        forward_fast(stacked(cfg, [0]), *inputs(1, 3), cfg)
