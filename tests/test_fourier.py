"""The real Fourier basis of Z_p and its transforms (grokscope.fourier)."""

import math

import pytest
import torch

from grokscope.fourier import basis as fr

PRIMES_AND_EVENS = [2, 3, 4, 5, 7, 8, 12, 23, 31, 113]


@pytest.mark.parametrize("p", PRIMES_AND_EVENS)
def test_basis_is_orthonormal_and_named(p):
    B = fr.fourier_basis(p)
    assert B.shape == (p, p) and B.dtype == torch.float64
    torch.testing.assert_close(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-12, rtol=0)
    names = fr.basis_names(p)
    assert len(names) == p and names[:3] == ["const", "cos 1", "sin 1"][: min(3, p)]
    assert fr.n_freqs(p) == p // 2
    x = torch.arange(p, dtype=torch.float64)
    for k in range(1, p // 2 + 1):
        assert names[fr.cos_index(k)] == f"cos {k}"
        c = torch.cos(2 * math.pi * k * x / p)
        torch.testing.assert_close(B[fr.cos_index(k)], c / c.norm())
        si = fr.sin_index(k, p)
        if 2 * k == p:
            assert si is None  # even p: (-1)^x has no sine partner
        else:
            s = torch.sin(2 * math.pi * k * x / p)
            assert names[si] == f"sin {k}"
            torch.testing.assert_close(B[si], s / s.norm())


def test_fft1d_known_transform_any_axis():
    p = 31
    x = torch.arange(p, dtype=torch.float64)
    sig = 2.0 + 3 * torch.cos(2 * math.pi * 4 * x / p) - torch.sin(2 * math.pi * 9 * x / p)
    c = fr.fft1d(sig)
    expect = torch.zeros(p, dtype=torch.float64)
    expect[0] = 2.0 * math.sqrt(p)
    expect[fr.cos_index(4)] = 3 * math.sqrt(p / 2)
    expect[fr.sin_index(9, p)] = -math.sqrt(p / 2)
    torch.testing.assert_close(c, expect, atol=1e-10, rtol=0)
    # along another axis of a batch, and back
    M = torch.stack([sig, 2 * sig, torch.zeros(p, dtype=torch.float64)])  # (3, p)
    C = fr.fft1d(M, dim=1)
    torch.testing.assert_close(C[1], 2 * expect, atol=1e-10, rtol=0)
    torch.testing.assert_close(fr.ifft1d(C, dim=1), M, atol=1e-10, rtol=0)
    norms = fr.freq_norms(C, dim=1)
    assert norms.shape == (p // 2 + 1,)
    assert torch.nonzero(norms[1:] > 1e-9).flatten().add(1).tolist() == [4, 9]
    shares = fr.freq_shares(norms)
    torch.testing.assert_close(shares.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(shares[3] / shares[8], torch.tensor(45.0 / 5.0, dtype=torch.float64))


@pytest.mark.parametrize("p", [7, 8, 23])
def test_fft2d_of_sum_waves(p):
    a = torch.arange(p).repeat_interleave(p).double()
    b = torch.arange(p).repeat(p).double()
    k = 3
    w = 2 * math.pi * k / p
    grid = torch.stack([torch.cos(w * (a + b)), torch.sin(w * (a + b)), torch.ones(p * p, dtype=torch.float64)], 1)
    C = fr.fft2d(grid, p)  # (p, p, 3): accepts the a-major flat layout
    ci, si = fr.cos_index(k), fr.sin_index(k, p)
    expect = torch.zeros(p, p, 3, dtype=torch.float64)
    # cos(w(a+b)) = cos a cos b - sin a sin b; unit basis waves carry a factor sqrt(p/2) each
    expect[ci, ci, 0], expect[si, si, 0] = p / 2, -p / 2
    expect[si, ci, 1], expect[ci, si, 1] = p / 2, p / 2
    expect[0, 0, 2] = p
    torch.testing.assert_close(C, expect, atol=1e-9, rtol=0)
    torch.testing.assert_close(fr.ifft2d(C).reshape(p * p, 3), grid, atol=1e-10, rtol=0)
    # (p, p, ...) input gives the same; Parseval
    torch.testing.assert_close(fr.fft2d(grid.reshape(p, p, 3), p), C)
    torch.testing.assert_close(C.pow(2).sum((0, 1)), grid.pow(2).sum(0))


@pytest.mark.parametrize("p", [7, 8])
def test_sum_directions_match_authors_construction(p):
    B = fr.fourier_basis(p)
    D = fr.sum_directions(p)  # (K, 2, p*p)
    K = p // 2
    assert D.shape == (K, 2, p * p)
    T = fr.sum_direction_table(p)
    s = (torch.arange(p)[:, None] + torch.arange(p)[None, :]).remainder(p).reshape(-1)
    torch.testing.assert_close(D, T[:, :, s])
    for k in range(1, K + 1):
        c = B[fr.cos_index(k)]
        if 2 * k == p:
            torch.testing.assert_close(D[k - 1, 0], torch.outer(c, c).reshape(-1))
            assert D[k - 1, 1].abs().max() == 0
            continue
        sn = B[fr.sin_index(k, p)]
        cos_xpy = (torch.outer(c, c) - torch.outer(sn, sn)).reshape(-1) / math.sqrt(2)
        sin_xpy = (torch.outer(sn, c) + torch.outer(c, sn)).reshape(-1) / math.sqrt(2)
        torch.testing.assert_close(D[k - 1, 0], cos_xpy)
        torch.testing.assert_close(D[k - 1, 1], sin_xpy)
    flat = D.reshape(-1, p * p)
    flat = flat[flat.norm(dim=1) > 0]
    torch.testing.assert_close(flat @ flat.T, torch.eye(flat.shape[0], dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("p", [7, 8])
def test_freq_blocks(p):
    torch.manual_seed(0)
    C = torch.randn(p, p, 5, dtype=torch.float64)
    blocks = fr.freq_blocks(C)
    assert blocks.shape == (p // 2, 3, 3, 5)
    for k in range(1, p // 2 + 1):
        torch.testing.assert_close(blocks[k - 1], fr.freq_block(C, k))
    rows = [0, 1, 2]
    torch.testing.assert_close(blocks[0], C[rows][:, rows])
    if p % 2 == 0:  # the missing sin p/2 row and column are zero
        assert blocks[-1, 2].abs().max() == 0 and blocks[-1, :, 2].abs().max() == 0


def test_fve():
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert fr.fve(t, t).item() == pytest.approx(1.0)
    assert fr.fve(t, torch.full_like(t, 2.5)).item() == pytest.approx(0.0)
    assert fr.fve(t, t + 1).item() == pytest.approx(1 - 4 / 5)
    assert math.isnan(fr.fve(torch.ones(4), torch.ones(4)).item())  # no variance: undefined
    M = torch.stack([t, 2 * t])
    torch.testing.assert_close(fr.fve(M, M, dim=1), torch.ones(2, dtype=torch.float64))
