"""The compiled CPU attention of the sequence tasks (grokscope.fast.kernel) against torch's attention, and the
fallback when it cannot be built."""

import math

import pytest
import torch
import torch.nn.functional as F

from grokscope.fast import scored as seqfast, kernel as seqkernel
from grokscope.training import Trainer
from helpers_kernel import need_kernel
from helpers import held_out, tiny, train_examples


def reference(q, k, v, lim, scale):
    """torch's attention on the same inputs (q (n, S, H, dh), keys 0..lim[b, i] for query i)."""
    n, T, H, dh = k.shape
    keep = (torch.arange(T) <= lim[:, :, None])[:, None]  # (n, 1, S, T)
    z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=keep,
                                       scale=scale)
    return z.transpose(1, 2)


def inputs(dtype, n=5, T=37, H=3, dh=12, S=None, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    qkv = (torch.randn(n, T, 3 * H * dh, generator=g, dtype=dtype) * spread).requires_grad_(True)
    q, k, v = (t.view(n, T, H, dh) for t in qkv.split(H * dh, -1))  # the projections' strided views
    if S is None:
        lim = torch.arange(T).expand(n, T)
    else:
        lim = torch.sort(torch.randint(0, T, (n, S), generator=g), 1).values
        q = q[:, :S]
    return qkv, q, k, v, lim


@pytest.mark.parametrize("dh", [5, 12, 16, 40])
@pytest.mark.parametrize("S", [None, 7])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_is_torch_attention(dtype, S, dh):
    """Values and the gradient of q, k, v (through the strided views) against torch's attention: float64 to
    1e-12, float32 to float32 rounding; causal queries at every position and queries at chosen positions, head
    sizes below, at and above one vector."""
    need_kernel()
    qkv, q, k, v, lim = inputs(dtype, dh=dh, S=S)
    scale = 1 / math.sqrt(dh)
    z, zr = seqkernel.attention(q, k, v, lim, scale), reference(q, k, v, lim, scale)
    w = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (g,), (gr,) = torch.autograd.grad((z * w).sum(), qkv), torch.autograd.grad((zr * w).sum(), qkv)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(z, zr, **tol)
    torch.testing.assert_close(g, gr, rtol=tol["rtol"], atol=tol["atol"] * float(gr.abs().max()))
    assert float(g.abs().max()) > 0


def test_kernel_saturated_softmax_and_nan():
    """Scores spread over hundreds (weights that underflow to exactly 0 in float32, as in torch's softmax) stay
    within float32 rounding of torch's attention; a NaN input gives NaN, not a number."""
    need_kernel()
    qkv, q, k, v, lim = inputs(torch.float32, spread=8.0)
    z, zr = seqkernel.attention(q, k, v, lim, 1.0), reference(q, k, v, lim, 1.0)
    z, zr = z.detach(), zr.detach()
    torch.testing.assert_close(z, zr, rtol=1e-4, atol=1e-4 * float(zr.abs().max()))
    bad = q.detach().clone()
    bad[0, 3, 1, 2] = float("nan")
    out = seqkernel.attention(bad, k.detach(), v.detach(), lim, 1.0)
    assert bool(out[0, 3, 1].isnan().all()) and not bool(out[0, :3].isnan().any())


def test_kernel_result_does_not_depend_on_the_thread_count():
    """Slices are independent and each one's loop order is fixed: 1 and 2 threads give the same bits."""
    need_kernel()
    qkv, q, k, v, lim = inputs(torch.float32, n=8)
    before = torch.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            z = seqkernel.attention(q, k, v, lim, 0.3)
            (g,) = torch.autograd.grad(z.square().sum(), qkv)
            out.append((z, g))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_training_with_and_without_the_kernel(monkeypatch):
    """The trainer with the kernel, with GROKSCOPE_SEQ_KERNEL=0 and with a kernel that failed to build (the
    fallback: torch's attention): the same training within float32 rounding."""
    need_kernel()
    c = tiny("repeated_subsequence", n_layers=2, epochs=15)
    runs = {"kernel": Trainer([c]).fit()}
    monkeypatch.setenv("GROKSCOPE_SEQ_KERNEL", "0")
    assert seqkernel.kernel() is None and not seqkernel.usable(torch.zeros(1))
    runs["off"] = Trainer([c]).fit()
    monkeypatch.delenv("GROKSCOPE_SEQ_KERNEL")
    monkeypatch.setattr(seqkernel, "_ext", None)  # as after a failed build
    monkeypatch.setattr(seqkernel, "_tried", True)
    runs["failed"] = Trainer([c]).fit()
    for name in ("off", "failed"):
        torch.testing.assert_close(runs[name].metrics["train_loss"], runs["kernel"].metrics["train_loss"],
                                   rtol=1e-4, atol=1e-6, equal_nan=True)
        torch.testing.assert_close(runs[name].params, runs["kernel"].params, rtol=1e-3, atol=1e-5)
    assert seqfast.USE_KERNEL


def test_failed_build_falls_back(monkeypatch, tmp_path):
    """A build that raises (here: a source that does not compile) leaves kernel() None, once, without raising."""
    monkeypatch.setattr(seqkernel, "_ext", None)
    monkeypatch.setattr(seqkernel, "_tried", False)
    bad = tmp_path / "bad.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(seqkernel, "SOURCE", bad)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    assert seqkernel.kernel() is None and seqkernel._tried
    assert seqkernel.kernel() is None  # not retried


@pytest.mark.parametrize("task,layers,calls", [("repeated_subsequence", 2, 2), ("skip_trigram", 1, 0)])
def test_which_layers_use_the_kernel(task, layers, calls, monkeypatch):
    """seqfast's rule: the kernel where a layer's queries are at least a quarter of its keys (induction: both
    layers), torch's attention for one query over many keys (skip trigram)."""
    need_kernel()
    seen = []
    real = seqkernel.attention
    monkeypatch.setattr(seqkernel, "attention", lambda *a: seen.append(a[0].shape) or real(*a))
    tr = Trainer([tiny(task, n_layers=layers)])
    tr.step()  # step 0 evaluates the test set, then trains: two forwards
    assert len(seen) == 2 * calls


def test_kernel_checks_its_inputs_and_other_layouts():
    """Keys out of range are an error, not a read past the slice; a second derivative is an error, not zeros;
    q with its heads not adjacent (torch's (n, H, S, dh) layout transposed) is copied and gives the same result."""
    need_kernel()
    qkv, q, k, v, lim = inputs(torch.float64)
    with pytest.raises(RuntimeError, match="lim"):
        seqkernel.attention(q, k, v, lim + 1, 0.3)
    z = seqkernel.attention(q, k, v, lim, 0.3)
    (g,) = torch.autograd.grad(z.sum(), qkv, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), qkv)
    qt = q.detach().transpose(1, 2).contiguous().transpose(1, 2)  # (n, S, H, dh) with heads S * dh apart
    assert qt.stride(2) != qt.shape[3]
    torch.testing.assert_close(seqkernel.attention(qt, k.detach(), v.detach(), lim, 0.3), z.detach(),
                               rtol=1e-12, atol=1e-12)
