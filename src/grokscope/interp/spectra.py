"""What several lines of evidence share: the neurons' 2-D Fourier spectra, the key frequencies (the rule of
:mod:`grokscope.fourier.keys` on ``W_L``, with the ``W_E`` and neuron-cluster cross-checks) and the largest entries of
a 2-D map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor

from ..fourier import basis as fr
from ..jsonutil import clean
from ..fourier.keys import (FLOOR_RATIO, MIN_GAP, RULE, check_keys, default_max_keys, gap, key_mask, select_by_gap, wl_shares)
from .activations import DTYPE, Activations, Result

if TYPE_CHECKING:  # annotations only
    from jaxtyping import Float, Int  # noqa: F401

__all__ = ["NeuronSpectra", "neuron_spectra", "KeyFrequencies", "key_frequencies", "resolve_keys", "key_mask",
           "top_components"]


# ====================================================================== neuron spectra (shared by several parts)
@dataclass
class NeuronSpectra:
    """2-D Fourier structure of the centred MLP activations at ``=`` over the ``(a, b)`` grid.

    ``blocks[k-1, :, :, n]``: the 3x3 block of frequency ``k`` of neuron ``n`` (rows const/cos k/sin k of ``a``,
    columns of ``b``; the const x const entry is 0 since the activations are centred); ``energy[n]`` the total
    centred sum of squares; ``fve[k-1, n]`` the block's share of it -- the FVE of the best degree-2
    polynomial in ``cos/sin w_k a``, ``cos/sin w_k b`` (terms 1, the 4 linear ones and the 4 products).
    """

    mean: "Float[Tensor, 'm']"
    energy: "Float[Tensor, 'm']"
    blocks: "Float[Tensor, 'K 3 3 m']"
    fve: "Float[Tensor, 'K m']"
    best_freq: "Int[Tensor, 'm']"
    best_fve: "Float[Tensor, 'm']"
    alive: "Tensor"  # bool (m,): neurons whose activation varies over the inputs


def _blocks_from_acts(X: Tensor, p: int) -> Tensor:
    """All 3x3 frequency blocks of the 2-D transform of ``X (p*p, m)`` without the cross-frequency terms:
    one transform over ``a`` (a ``(p, p) @ (p, p*m)`` matmul), then only the needed columns over ``b``."""
    m = X.shape[1]
    B = fr.fourier_basis(p, X.device)
    K = p // 2
    T = (B @ X.reshape(p, p * m)).reshape(p, p, m)  # (i over a, b, m)
    # row 0 (const over a): every column j
    row0 = B @ T[0]  # (j, m)
    # rows i >= 1: columns const, cos g(i), sin g(i) where g(i) is the frequency of row i
    Bp = torch.cat([B, torch.zeros(1, p, dtype=DTYPE, device=X.device)])
    g = (torch.arange(1, p, device=X.device) + 1) // 2  # frequency of rows 1..p-1
    cols = torch.stack([torch.zeros_like(g), 2 * g - 1, 2 * g], 1)  # (p-1, 3); 2g == p -> pad row
    part = torch.bmm(Bp[cols], T[1:])  # (p-1, 3, p_b) @ (p-1, p_b, m) -> (p-1, 3, m)
    blocks = torch.zeros(K, 3, 3, m, dtype=DTYPE, device=X.device)
    k = torch.arange(1, K + 1, device=X.device)
    blocks[:, 0, 0] = row0[0]
    blocks[:, 0, 1] = row0[2 * k - 1]
    has_sin = 2 * k < p
    blocks[has_sin, 0, 2] = row0[2 * k[has_sin]]
    blocks[:, 1] = part[2 * k - 2]  # row cos k = 2k-1 -> part index 2k-2
    blocks[has_sin, 2] = part[2 * k[has_sin] - 1]
    return blocks


def neuron_spectra(acts: Activations) -> NeuronSpectra:
    """:class:`NeuronSpectra` of ``blocks.0.mlp.hook_post`` at ``=`` (cached on ``acts``)."""
    if "neuron_spectra" in acts._cache:
        return acts._cache["neuron_spectra"]
    X = acts.post2
    mean = X.mean(0)
    Xc = X - mean
    energy = Xc.pow(2).sum(0)
    blocks = _blocks_from_acts(Xc, acts.p)
    alive = energy > 1e-20 * max(float(energy.max()), 1e-300)
    fve_ = blocks.pow(2).sum((1, 2)) / energy.clamp_min(1e-300)
    fve_ = torch.where(alive[None], fve_, torch.zeros_like(fve_))
    best_fve, best = fve_.max(0)
    res = NeuronSpectra(mean, energy, blocks, fve_, best + 1, best_fve, alive)
    acts._cache["neuron_spectra"] = res
    return res


# ====================================================================== key frequencies
@dataclass
class KeyFrequencies(Result):
    """The key frequencies (from ``W_L``) and the two cross-checks, with the rule that chose them."""

    keys: list[int]
    rule: str
    wl_keys: list[int]
    we_keys: list[int]
    neuron_keys: list[int]
    wl_shares: "Float[Tensor, 'K']"  # share of non-constant ||W_L||^2 per frequency k = 1..K
    we_shares: "Float[Tensor, 'K']"
    neuron_counts: "Int[Tensor, 'K']"  # number of (live) neurons whose best frequency is k
    wl_gap: float  # weakest key share / strongest non-key share in W_L
    we_gap: float
    consistent: bool  # wl_keys == neuron_keys and wl_keys is a subset of we_keys

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["neuron_counts"] = {int(k) + 1: int(c) for k, c in enumerate(self.neuron_counts.tolist()) if c}
        return d




def key_frequencies(acts: Activations, *, min_gap: float = MIN_GAP, floor_ratio: float = FLOOR_RATIO,
                    max_keys: int | None = None) -> KeyFrequencies:
    """Key frequencies by :func:`grokscope.fourier.keys.select_by_gap` on ``W_L`` (see :mod:`grokscope.fourier.keys`), with the
    ``W_E`` and neuron-cluster cross-checks."""
    p = acts.p
    max_keys = max_keys or default_max_keys(p)
    kw = dict(min_gap=min_gap, floor_ratio=floor_ratio, max_keys=max_keys)
    wl_sh = wl_shares(acts.W_L)
    we_shares = fr.freq_shares(fr.embed_freq_norms(acts.W_E))
    ns = neuron_spectra(acts)
    counts = torch.bincount(ns.best_freq[ns.alive].cpu() - 1, minlength=p // 2)
    wl = select_by_gap(wl_sh, **kw)
    we = select_by_gap(we_shares, **kw)
    nk = select_by_gap(counts.to(DTYPE), smooth=1.0, **kw)
    return KeyFrequencies(
        keys=wl, rule=RULE.format(floor_ratio=floor_ratio, min_gap=min_gap), wl_keys=wl, we_keys=we, neuron_keys=nk,
        wl_shares=wl_sh, we_shares=we_shares, neuron_counts=counts, wl_gap=gap(wl_sh, wl),
        we_gap=gap(we_shares, we), consistent=bool(wl) and wl == nk and set(wl) <= set(we))


def resolve_keys(acts: Activations, keys: Sequence[int] | None) -> list[int]:
    """``keys`` checked (:func:`grokscope.fourier.keys.check_keys`), or the model's own key frequencies if None."""
    return check_keys(key_frequencies(acts).keys if keys is None else keys, acts.p)


def top_components(spec: Tensor, names: list[str], n: int) -> list[dict[str, Any]]:
    """Largest-magnitude entries of a 2-D ``(p, p)`` map, as ``{"a": name, "b": name, "value": v}`` (signed)."""
    p = spec.shape[0]
    flat = spec.reshape(-1)
    _, idx = flat.abs().topk(min(n, spec.numel()))
    return [{"a": names[int(i) // p], "b": names[int(i) % p], "value": clean(flat[i])} for i in idx]
