"""Evidence 1 (paper §4.1): periodic embeddings, attention, neurons and logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor

from ..fourier import basis as fr
from ..jsonutil import clean
from .activations import DTYPE, Activations, Result
from .spectra import neuron_spectra, resolve_keys, top_components

if TYPE_CHECKING:  # annotations only
    from jaxtyping import Float  # noqa: F401

__all__ = ['Periodicity', 'periodicity']


def _key_block_share(blocks: Tensor, keys: Sequence[int], total: Tensor) -> Tensor:
    """Share of ``total`` energy in the 3x3 blocks of ``keys`` (``blocks (K, 3, 3, ...)``), per trailing index."""
    if not keys:
        return torch.zeros_like(total)
    kb = blocks[torch.tensor(list(keys), device=blocks.device) - 1].pow(2)
    kb[:, 0, 0] = 0  # the constant is not a key term
    return kb.sum((0, 1, 2)) / total.clamp_min(1e-300)


@dataclass
class Periodicity(Result):
    """Evidence 1 (§4.1): Fourier structure of the embeddings, attention, neurons and logits.

    Norm vectors of length ``p // 2 + 1`` have the constant at index 0 and frequency ``k`` at index ``k``.
    ``attn_to_a[h]``: the attention from ``=`` to ``a`` over the ``(a, b)`` grid; ``attn_spectrum`` its 2-D
    coefficient magnitudes; ``logit_spectrum[i, j]``: the norm over the output ``c`` of the 2-D coefficients of
    the logits (centred over ``c``); ``*_top``: the largest components; ``*_key_share``: the share of the
    non-constant energy in key-frequency terms (the 3x3 blocks for attention and neurons, the
    ``{cos,sin} w_k a x {cos,sin} w_k b`` 2x2 blocks for the logits -- the paper's "20 components").

    Appendix C.1.3 (Figs 10, 11): ``attn_C_fourier[h]`` are the Fourier coefficients (along ``a``, basis as
    :func:`grokscope.fourier.basis_names`) of ``C_h[a]``, head ``h``'s attention score from ``=`` to the token
    ``a`` at position 0 (so the pattern ``= -> a`` is ``sigmoid(C_h[a] - C_h[b])`` when ``= -> =`` is
    negligible); ``ov_fourier_norms[h]``: the norm over ``d_model`` of each Fourier component (along ``a``) of
    the OV output ``W_O^h W_V^h x^(0)`` of position 0.
    """

    _arrays = ("attn_to_a", "attn_spectrum", "neuron_acts", "logit_spectrum", "attn_C_fourier", "ov_fourier_norms")

    keys: list[int]
    we_freq_norms: "Float[Tensor, 'K1']"
    wl_freq_norms: "Float[Tensor, 'K1']"
    attn_to_a: "Float[Tensor, 'H p p']"
    attn_spectrum: "Float[Tensor, 'H p p']"
    attn_top: list[list[dict[str, Any]]]
    attn_key_share: list[float]
    attn_best_freq: list[int]  # the frequency whose 3x3 block holds most of each head's variance
    neuron_acts: "Float[Tensor, 'p p m']"  # blocks.0.mlp.hook_post at '=' over the (a, b) grid
    neuron_key_share: float  # share of all centred neuron variance in key-frequency 3x3 blocks
    logit_spectrum: "Float[Tensor, 'p p']"
    logit_top: list[dict[str, Any]]
    logit_key_share: float
    attn_C_fourier: "Float[Tensor, 'H p']"
    ov_fourier_norms: "Float[Tensor, 'H p']"


def periodicity(acts: Activations, keys: Sequence[int] | None = None, n_top: int = 8) -> Periodicity:
    """Evidence 1: ``W_E``/``W_L`` frequency norms, attention ``= -> a`` per head and its 2-D spectrum, neuron
    activations' key-frequency share, 2-D Fourier norms of the logits."""
    keys = resolve_keys(acts, keys)
    p, names = acts.p, fr.basis_names(acts.p)
    we = fr.embed_freq_norms(acts.W_E)
    wl = fr.wl_freq_norms(acts.W_L)
    A = acts.pattern2[:, :, 0]  # (N, H)
    attn_spec = fr.fft2d(A, p)  # (p, p, H)
    Ac = A - A.mean(0)
    a_blocks = fr.freq_blocks(fr.fft2d(Ac, p))  # (K, 3, 3, H)
    a_energy = Ac.pow(2).sum(0)
    a_fve = a_blocks.pow(2).sum((1, 2)) / a_energy.clamp_min(1e-300)  # (K, H)
    attn_share = _key_block_share(a_blocks, keys, a_energy)
    ns = neuron_spectra(acts)
    neuron_share = float(_key_block_share(ns.blocks, keys, ns.energy).mul(ns.energy).sum()
                         / ns.energy.sum().clamp_min(1e-300))
    L = acts.logits
    Lc = L - L.mean(-1, keepdim=True)
    Lspec = fr.fft2d(Lc, p)  # (p, p, c)
    lnorm = Lspec.norm(dim=-1)
    non_const = lnorm.pow(2).sum() - lnorm[0, 0].pow(2)
    if keys:
        ci = torch.tensor([fr.cos_index(k) for k in keys])
        si = torch.tensor([fr.sin_index(k, p) if fr.sin_index(k, p) is not None else fr.cos_index(k) for k in keys])
        rows = torch.stack([ci, si], 1)  # (r, 2)
        sub = lnorm[rows[:, :, None], rows[:, None, :]].pow(2)  # (r, 2, 2)
        has_sin = torch.tensor([fr.sin_index(k, p) is not None for k in keys])
        sub = torch.where(has_sin[:, None, None], sub, sub * torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=DTYPE))
        logit_share = float(sub.sum() / non_const.clamp_min(1e-300))
    else:
        logit_share = 0.0
    H = A.shape[1]
    # C_h[a]: the score '=' -> position 0 depends on a only (the query at '=' is one vector): read it at b = 0
    C = fr.as_grid(acts.scores2[:, :, 0], p)[:, 0, :]  # (p a, H)
    ov = torch.einsum("ahe,hed->ahd", fr.as_grid(acts.v[:, 0], p)[:, 0], acts.W_O)  # (p a, H, d)
    ov_norms = fr.fft1d(ov, dim=0).norm(dim=-1)  # (p, H)
    return Periodicity(
        keys=keys, we_freq_norms=we, wl_freq_norms=wl, attn_to_a=A.T.reshape(H, p, p),
        attn_spectrum=attn_spec.abs().permute(2, 0, 1),
        attn_top=[top_components(attn_spec[:, :, h], names, n_top) for h in range(H)],
        attn_key_share=[clean(x) for x in attn_share], attn_best_freq=[int(k) + 1 for k in a_fve.argmax(0)],
        neuron_acts=acts.post2.reshape(p, p, -1), neuron_key_share=neuron_share, logit_spectrum=lnorm,
        logit_top=top_components(lnorm, names, n_top),
        logit_key_share=logit_share, attn_C_fourier=fr.fft1d(C, dim=0).T.contiguous(),
        ov_fourier_norms=ov_norms.T.contiguous())
