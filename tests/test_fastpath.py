"""The fast training forward is the same function as the plain full-sequence model (float64)."""

import pytest
import torch

from grokscope.config import ModelConfig
from grokscope.fast.tables import forward_deep, forward_fast, forward_plain
from grokscope.model.transformer import Transformer, init_params

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


VARIANTS = {"dense": dict(PRE_VIA_TABLES=False, W_L_PATH=False), "tables": dict(PRE_VIA_TABLES=True, W_L_PATH=False),
            "W_L": dict(PRE_VIA_TABLES=False, W_L_PATH=True)}


def dropout_inputs(K, N, d_mlp):
    keep = torch.rand(K, N, d_mlp, generator=torch.Generator().manual_seed(1)) > 0.3
    return keep, torch.linspace(0.3, 0.5, K)


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("K", [1, 3])
def test_fast_equals_plain_values_and_grads(act, K, variant, dropout, monkeypatch):
    """Logits and every parameter's gradient, in float64: the fast path (each option, buffers reused
    across two calls) against the plain full-sequence model."""
    import grokscope.fast.tables as fp
    for name, value in VARIANTS[variant].items():
        monkeypatch.setattr(fp, name, value)
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16, act=act)
    a, b = inputs(K, 30)
    keep, drop = dropout_inputs(K, 30, 16) if dropout else (None, None)
    ws = fp.Workspace()
    for call, seeds in enumerate((range(K), range(10, 10 + K))):  # the second call reuses the first's buffers
        ps = stacked(cfg, seeds)
        w = torch.randn(K, 30, P, dtype=torch.float64, generator=torch.Generator().manual_seed(call))
        lf, lp = forward_fast(ps, a, b, cfg, keep, drop, ws=ws), forward_plain(ps, a, b, cfg, keep, drop)
        torch.testing.assert_close(lf, lp, rtol=1e-12, atol=1e-12)
        gf = torch.autograd.grad((lf * w).sum(), list(ps.values()))
        gp = torch.autograd.grad((lp * w).sum(), list(ps.values()))
        for name, x, y in zip(ps, gf, gp):
            assert x.abs().max() > 0 or name.startswith("W_E"), name
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=name)


def test_workspace_gives_the_fresh_outputs_bitwise_in_float32():
    import grokscope.fast.tables as fp
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16)
    ps = {k: v.detach().float().requires_grad_() for k, v in stacked(cfg, [0, 1]).items()}
    a, b = inputs(2, 25)
    ws = fp.Workspace()
    outs = []
    for use in (None, ws, ws):
        lf = forward_fast(ps, a, b, cfg, ws=use)
        outs.append((lf.detach().clone(), torch.autograd.grad(lf.square().sum(), list(ps.values()))))
    for lf, g in outs[1:]:
        assert torch.equal(lf, outs[0][0])
        assert all(torch.equal(x, y) for x, y in zip(g, outs[0][1]))


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


@pytest.mark.parametrize("kernel", ["compiled", "torch"])
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_deep_equals_plain_values_and_grads(n_layers, K, kernel, monkeypatch):
    """forward_deep (any number of blocks: the scored-position path per model) against the plain full-sequence
    model: logits and every parameter's gradient in float64, with the compiled attention and without."""
    from grokscope.fast import scored
    if kernel == "compiled":
        from helpers_kernel import need_kernel
        need_kernel()
    monkeypatch.setattr(scored, "USE_KERNEL", kernel == "compiled")
    cfg = ModelConfig(d_vocab=P + 1, d_model=8, n_heads=2, d_mlp=16, n_layers=n_layers)
    ps = stacked(cfg, range(K))
    a, b = inputs(K, 30)
    ld, lp = forward_deep(ps, a, b, cfg), forward_plain(ps, a, b, cfg)
    assert ld.shape == (K, 30, P)
    torch.testing.assert_close(ld, lp, rtol=1e-12, atol=1e-12)
    w = torch.randn(K, 30, P, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    gd = torch.autograd.grad((ld * w).sum(), list(ps.values()), allow_unused=True)
    gp = torch.autograd.grad((lp * w).sum(), list(ps.values()), allow_unused=True)
    for name, x, y in zip(ps, gd, gp):
        if y is None:  # W_U's '=' column, ...: no gradient on either path
            assert x is None or float(x.abs().max()) == 0, name
            continue
        assert float(y.abs().max()) > 0 or name.startswith("W_E"), name
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=name)
