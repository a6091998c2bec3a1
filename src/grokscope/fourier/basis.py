"""The real orthonormal Fourier basis of Z_p and the transforms the analysis uses (float64).

Basis rows, in this order (the authors' ``fourier_basis``): the constant ``1/sqrt(p)``, then
``cos k`` and ``sin k`` for ``k = 1 .. p // 2`` -- each ``cos(2 pi k x / p)`` / ``sin(...)`` scaled to unit
norm. For even ``p`` the last frequency ``k = p/2`` has only its cosine (``(-1)^x / sqrt(p)``), since its
sine is identically zero; the basis is square ``(p, p)`` and orthonormal in every case. Row ``2k - 1`` is
``cos k`` and row ``2k`` is ``sin k`` (:func:`cos_index`, :func:`sin_index`).

Conventions used throughout grokscope's analysis:

* a 1-D transform along an axis of length ``p`` gives coefficients ``c = B @ x`` (``x = B.T @ c``);
* the 2-D transform of a function on the ``(a, b)`` grid -- a tensor of shape ``(p * p, ...)`` indexed
  a-major (:mod:`grokscope.tasks`), or ``(p, p, ...)`` -- is ``C[i, j] = sum_ab B[i, a] B[j, b] x[a, b]``:
  ``i`` indexes the basis over ``a``, ``j`` the basis over ``b``;
* "frequency" means ``k in 1 .. p // 2``; frequency 0 is the constant.

Everything here is a pure, vectorised tensor function; results are float64.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:  # annotations only; jaxtyping is not a runtime dependency
    from jaxtyping import Float, Int  # noqa: F401

DTYPE = torch.float64

__all__ = [
    "n_freqs", "cos_index", "sin_index", "basis_names", "fourier_basis", "wave", "fft1d", "ifft1d", "fft2d",
    "ifft2d", "as_grid", "component_norms", "freq_norms", "freq_norms_from_sq", "freq_shares", "wl",
    "wl_from_params", "embed_freq_norms", "wl_freq_norms", "weight_freq_norms", "block_index", "freq_blocks",
    "freq_block", "sum_direction_table", "sum_directions", "sum_waves", "diff_cos_table", "diff_cos_sq_norm", "fve",
]


# ---------------------------------------------------------------------- indices and names
def n_freqs(p: int) -> int:
    """Number of non-constant frequencies, ``p // 2``."""
    return p // 2


def cos_index(k: int) -> int:
    """Row of ``cos k`` in the basis."""
    return 2 * k - 1


def sin_index(k: int, p: int) -> int | None:
    """Row of ``sin k`` in the basis, or ``None`` for ``k = p/2`` with even ``p`` (no sine there)."""
    return None if 2 * k == p else 2 * k


def basis_names(p: int) -> list[str]:
    """``["const", "cos 1", "sin 1", ...]``, one name per basis row."""
    names = ["const"]
    for k in range(1, p // 2 + 1):
        names.append(f"cos {k}")
        if 2 * k != p:
            names.append(f"sin {k}")
    return names


# ---------------------------------------------------------------------- the basis
@functools.lru_cache(maxsize=32)
def _basis(p: int, device: str) -> Tensor:
    x = torch.arange(p, dtype=DTYPE, device=device)
    k = torch.arange(1, p // 2 + 1, dtype=DTYPE, device=device)
    ang = 2 * math.pi * k[:, None] * x[None, :] / p  # (K, p)
    cs = torch.stack([torch.cos(ang), torch.sin(ang)], dim=1).reshape(-1, p)  # cos 1, sin 1, cos 2, ...
    if p % 2 == 0:
        cs = cs[:-1]  # drop sin(pi x) == 0
    rows = torch.cat([torch.ones(1, p, dtype=DTYPE, device=device), cs])
    B = rows / rows.norm(dim=1, keepdim=True)
    B.requires_grad_(False)
    return B


def fourier_basis(p: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = DTYPE) -> "Float[Tensor, 'p p']":
    """The ``(p, p)`` orthonormal real Fourier basis (rows: const, cos 1, sin 1, ...). Do not modify it in place."""
    B = _basis(int(p), str(torch.device(device or "cpu")))
    return B if dtype == DTYPE else B.to(dtype)


def wave(p: int, k: int, kind: str = "cos", device=None) -> "Float[Tensor, 'p']":
    """The unit-norm basis row ``cos k`` / ``sin k`` (``k = 0``: the constant)."""
    if k == 0:
        return fourier_basis(p, device)[0]
    i = cos_index(k) if kind == "cos" else sin_index(k, p)
    if i is None:
        return torch.zeros(p, dtype=DTYPE, device=device)
    return fourier_basis(p, device)[i]


# ---------------------------------------------------------------------- transforms
def fft1d(x: Tensor, dim: int = 0) -> Tensor:
    """Coefficients of ``x`` in the Fourier basis along ``dim`` (length ``p``); same shape, float64."""
    x = x.to(DTYPE)
    p = x.shape[dim]
    B = fourier_basis(p, x.device)
    return torch.movedim(torch.tensordot(B, x, dims=([1], [dim])), 0, dim)


def ifft1d(c: Tensor, dim: int = 0) -> Tensor:
    """Inverse of :func:`fft1d`."""
    c = c.to(DTYPE)
    p = c.shape[dim]
    B = fourier_basis(p, c.device)
    return torch.movedim(torch.tensordot(B.T, c, dims=([1], [dim])), 0, dim)


def as_grid(x: Tensor, p: int) -> Tensor:
    """View a per-pair tensor ``(p*p, ...)`` (a-major) as ``(p, p, ...)``; a ``(p, p, ...)`` one is returned as is."""
    if x.shape[0] == p * p and p > 1:
        return x.reshape(p, p, *x.shape[1:])
    if x.shape[:2] == (p, p):
        return x
    raise ValueError(f"expected a tensor of shape (p*p, ...) or (p, p, ...) with p={p}, got {tuple(x.shape)}")


def _transform2d(x: Tensor, M: Tensor) -> Tensor:
    p = M.shape[0]
    rest = x.shape[2:]
    r = math.prod(rest)
    y = (M @ x.reshape(p, p * r)).reshape(p, p, r)  # over a
    y = (M @ y.transpose(0, 1).reshape(p, p * r)).reshape(p, p, r).transpose(0, 1)  # over b
    return y.reshape(p, p, *rest)


def fft2d(x: Tensor, p: int) -> "Float[Tensor, 'p p ...']":
    """2-D transform over the ``(a, b)`` grid: ``(p*p, ...)`` or ``(p, p, ...)`` -> ``(p, p, ...)`` coefficients,
    ``C[i, j] = sum_ab B[i, a] B[j, b] x[a, b]``."""
    x = as_grid(x.to(DTYPE), p)
    return _transform2d(x, fourier_basis(p, x.device))


def ifft2d(c: Tensor, p: int | None = None) -> "Float[Tensor, 'p p ...']":
    """Inverse of :func:`fft2d`; returns the ``(p, p, ...)`` grid."""
    p = p or c.shape[0]
    c = as_grid(c.to(DTYPE), p)
    return _transform2d(c, fourier_basis(p, c.device).T)


# ---------------------------------------------------------------------- norms per component / frequency
def component_norms(c: Tensor, dim: int = 0) -> "Float[Tensor, 'p']":
    """L2 norm of each basis component (index along ``dim``), taken over every other axis."""
    c = torch.movedim(c.to(DTYPE), dim, 0)
    return c.reshape(c.shape[0], -1).norm(dim=1)


def freq_norms_from_sq(sq: Tensor) -> "Float[Tensor, '... K1']":
    """Squared norms per basis row along the last axis ``(..., p)`` -> norms per frequency ``(..., p // 2 + 1)``:
    index 0 the constant, index ``k`` the joint norm of ``cos k`` and ``sin k``."""
    p = sq.shape[-1]
    K = p // 2
    out = torch.cat([sq[..., :1], sq[..., 1::2][..., :K]], -1)  # const, then cos k at 2k - 1
    sins = sq[..., 2::2]  # sin k at 2k (K of them for odd p, K - 1 for even p)
    out[..., 1:1 + sins.shape[-1]] += sins
    return out.sqrt()


def freq_norms(c: Tensor, dim: int = 0) -> "Float[Tensor, 'K1']":
    """L2 norm per frequency, shape ``(p // 2 + 1,)``: index 0 the constant, index k the joint norm of the
    ``cos k`` and ``sin k`` components, over every other axis. ``c`` holds coefficients along ``dim``."""
    return freq_norms_from_sq(component_norms(c, dim).pow(2))


def freq_shares(norms: Tensor) -> "Float[Tensor, 'K']":
    """Share of the non-constant squared norm per frequency ``k = 1 .. K`` from :func:`freq_norms` output
    (entry ``k - 1`` is frequency ``k``); sums to 1 (all zeros if there is no non-constant norm)."""
    sq = norms[1:].to(DTYPE).pow(2)
    tot = sq.sum()
    return sq / tot if tot > 0 else torch.zeros_like(sq)


# ---------------------------------------------------------------------- the weights' spectra
def wl(W_out: Tensor, W_U: Tensor, dtype: torch.dtype = DTYPE, p: int | None = None) -> "Float[Tensor, '... m p']":
    """``W_L = W_out @ W_U[:, :p]``, the map from MLP neurons to the ``p`` answer logits (default
    ``p = d_vocab - 1``: the ``=`` token's logit is dropped); stacked ``(..., d_mlp, d_model)`` and
    ``(..., d_model, d_vocab)`` work."""
    p = W_U.shape[-1] - 1 if p is None else p
    return W_out.to(dtype) @ W_U[..., :p].to(dtype)


def wl_from_params(params: dict[str, Tensor], n_layers: int = 1, dtype: torch.dtype = DTYPE) -> Tensor:
    """:func:`wl` of a parameter dict (the last block's ``W_out``), stacked or not."""
    return wl(params[f"blocks.{n_layers - 1}.mlp.W_out"], params["W_U"], dtype)


def embed_freq_norms(W_E: Tensor) -> "Float[Tensor, '... K1']":
    """Norms per frequency (:func:`freq_norms_from_sq`) of the number tokens' embeddings ``W_E[:p]`` along the
    token axis, norms over ``d_model``; ``W_E (..., d_vocab, d_model)``."""
    p = W_E.shape[-2] - 1
    C = fourier_basis(p, W_E.device) @ W_E[..., :p, :].to(DTYPE)  # (..., p basis, d)
    return freq_norms_from_sq(C.pow(2).sum(-1))


def wl_freq_norms(W_L: Tensor) -> "Float[Tensor, '... K1']":
    """Norms per frequency of ``W_L (..., d_mlp, p)`` along the logit axis, norms over the neurons."""
    C = W_L.to(DTYPE) @ fourier_basis(W_L.shape[-1], W_L.device).T  # (..., m, p basis)
    return freq_norms_from_sq(C.pow(2).sum(-2))


def weight_freq_norms(params: dict[str, Tensor], n_layers: int = 1) -> dict[str, Tensor]:
    """``{"W_E": ..., "W_L": ...}``: :func:`embed_freq_norms` and :func:`wl_freq_norms` of a parameter dict
    without the constant: entries ``k = 1 .. p // 2``, ``(M, p // 2)`` for stacked parameters (Figs 3, 16, 17;
    the vectors whose Gini coefficients are the progress measures ``gini_W_E`` / ``gini_W_L``)."""
    return {"W_E": embed_freq_norms(params["W_E"])[..., 1:],
            "W_L": wl_freq_norms(wl_from_params(params, n_layers))[..., 1:]}


# ---------------------------------------------------------------------- 2-D blocks and (a+b) directions
def block_index(p: int, device=None) -> "Int[Tensor, 'K 3']":
    """``(K, 3)`` rows ``[0, cos k, sin k]`` for ``k = 1 .. K``. For even ``p`` the missing ``sin p/2`` is the
    index ``p``, which points at the zero row that :func:`freq_blocks` pads with."""
    k = torch.arange(1, p // 2 + 1, device=device)
    idx = torch.stack([torch.zeros_like(k), 2 * k - 1, 2 * k], dim=1)
    return idx  # 2k == p only when p is even and k = p/2: index p == the pad


def freq_blocks(c: Tensor) -> "Float[Tensor, 'K 3 3 ...']":
    """All 3x3 blocks ``(const, cos k, sin k) over a  x  (const, cos k, sin k) over b`` of a 2-D spectrum
    ``(p, p, ...)``: shape ``(K, 3, 3, ...)``; block ``k - 1`` is frequency ``k``. Terms that do not exist
    (``sin p/2`` for even ``p``) are zero. These are the 9 terms ``1, cos/sin w_k a, cos/sin w_k b`` and
    their four products."""
    p = c.shape[0]
    if p % 2 == 0:
        c = torch.nn.functional.pad(c.movedim((0, 1), (-2, -1)), (0, 1, 0, 1)).movedim((-2, -1), (0, 1))
    idx = block_index(p, c.device)
    return c[idx[:, :, None], idx[:, None, :]]


def freq_block(c: Tensor, k: int) -> "Float[Tensor, '3 3 ...']":
    """The 3x3 block of frequency ``k`` (see :func:`freq_blocks`)."""
    p = c.shape[0]
    if not 1 <= k <= p // 2:
        raise ValueError(f"k={k} is invalid: must be in 1..{p // 2}")
    rows = [0, cos_index(k), sin_index(k, p)]
    out = torch.zeros(3, 3, *c.shape[2:], dtype=c.dtype, device=c.device)
    for i, ri in enumerate(rows):
        for j, rj in enumerate(rows):
            if ri is not None and rj is not None:
                out[i, j] = c[ri, rj]
    return out


def sum_waves(p: int, freqs: Sequence[int] | Tensor, device=None) -> "Float[Tensor, 'n 2 p']":
    """``cos(w_k s)`` and ``sin(w_k s)`` for ``s = 0 .. p-1`` (unnormalised), shape ``(len(freqs), 2, p)``."""
    k = torch.as_tensor(list(freqs) if not isinstance(freqs, Tensor) else freqs, dtype=DTYPE, device=device)
    s = torch.arange(p, dtype=DTYPE, device=device)
    ang = 2 * math.pi * k[:, None] * s[None, :] / p
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)


def sum_direction_table(p: int, freqs: Sequence[int] | Tensor | None = None, device=None) -> "Float[Tensor, 'n 2 p']":
    """The unit directions of :func:`sum_directions` as functions of ``s = (a + b) mod p``: ``(n, 2, p)``, so that
    ``sum_directions(p, freqs)[..., a * p + b] == sum_direction_table(p, freqs)[..., (a + b) % p]``."""
    if freqs is None:
        freqs = range(1, p // 2 + 1)
    w = sum_waves(p, freqs, device)  # (n, 2, p) over s
    n = w.norm(dim=-1, keepdim=True) * math.sqrt(p)  # each s occurs p times on the grid
    return torch.where(n > 1e-9, w / n.clamp_min(1e-300), torch.zeros_like(w))


def sum_directions(p: int, freqs: Sequence[int] | Tensor | None = None, device=None) -> "Float[Tensor, 'n 2 pp']":
    """Unit vectors ``cos(w_k (a + b))`` and ``sin(w_k (a + b))`` over the ``(a, b)`` grid, a-major:
    shape ``(len(freqs), 2, p * p)`` (default: all ``k = 1 .. p // 2``). Equal to
    ``(cos_a cos_b - sin_a sin_b) / sqrt 2`` and ``(sin_a cos_b + cos_a sin_b) / sqrt 2`` in the unit 2-D basis
    (the authors' ``get_component_cos_xpy`` / ``sin_xpy``). The sine of ``k = p/2`` (even ``p``) is zero."""
    s = (torch.arange(p, device=device)[:, None] + torch.arange(p, device=device)[None, :]).remainder(p).reshape(-1)
    return sum_direction_table(p, freqs, device)[:, :, s]


def diff_cos_table(p: int, freqs: Sequence[int] | Tensor, device=None) -> "Float[Tensor, 'n p p']":
    """``cos(w_k (s - c))`` over ``s, c = 0 .. p-1``, shape ``(len(freqs), p, p)``: the regressor of the logits'
    ``cos(w_k(a+b-c))`` term as a function of ``s = (a + b) mod p`` and the output ``c``."""
    k = torch.as_tensor(list(freqs) if not isinstance(freqs, Tensor) else freqs, dtype=DTYPE, device=device)
    x = torch.arange(p, dtype=DTYPE, device=device)
    return torch.cos(2 * math.pi * k[:, None, None] * (x[:, None] - x[None, :]) / p)


def diff_cos_sq_norm(p: int, freqs: Sequence[int] | Tensor, device=None) -> "Float[Tensor, 'n']":
    """Squared norm of ``cos(w_k(a+b-c))`` over all ``p * p`` pairs and ``p`` outputs (each ``s`` occurs ``p``
    times on the grid): the denominator of its least-squares coefficient in the logits."""
    return diff_cos_table(p, freqs, device).pow(2).sum((1, 2)) * p


# ---------------------------------------------------------------------- fraction of variance explained
def fve(target: Tensor, approx: Tensor, dim: int | tuple[int, ...] | None = None, eps: float = 1e-30) -> Tensor:
    """Fraction of variance explained, ``1 - sum (t - a)^2 / sum (t - mean t)^2``, reduced over ``dim``
    (default: all). NaN where the target has (numerically) no variance."""
    t, a = target.to(DTYPE), approx.to(DTYPE)
    if dim is None:
        dim = tuple(range(t.ndim))
    ss_res = (t - a).pow(2).sum(dim)
    ss_tot = (t - t.mean(dim, keepdim=True)).pow(2).sum(dim)
    scale = t.pow(2).sum(dim)
    out = 1 - ss_res / ss_tot.clamp_min(eps)
    return torch.where(ss_tot > 1e-24 * scale.clamp_min(eps), out, torch.full_like(out, float("nan")))
