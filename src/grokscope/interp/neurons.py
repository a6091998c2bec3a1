"""Evidence 3 (paper §4.3, Appendix C.1.2-C.1.3, Table 2): neurons are degree-2 polynomials of one frequency, clustered by frequency; attention heads fit ``0.5 + alpha (cos w_k a - cos w_k b) + ...``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from ..fourier import basis as fr
from .activations import DTYPE, Activations, Result
from .spectra import key_mask, neuron_spectra, resolve_keys

if TYPE_CHECKING:  # annotations only
    from jaxtyping import Float, Int  # noqa: F401

__all__ = ['HeadFit', 'head_fits', 'Neurons', 'neurons']


@dataclass
class HeadFit(Result):
    """Table 2: attention ``= -> a`` of one head ~ ``0.5 + alpha (cos w_k a - cos w_k b) + beta (sin w_k a -
    sin w_k b)`` (raw, unnormalised waves), best ``k`` by FVE; ``self_attention`` the mean attention ``= -> =``.
    A head whose pattern does not vary has ``freq = 0`` and ``fve = NaN``."""

    head: int
    freq: int
    alpha: float
    beta: float
    fve: float
    self_attention: float


def head_fits(acts: Activations) -> list[HeadFit]:
    """Table 2 for every head; all frequencies are tried at once and the best FVE is kept."""
    p = acts.p
    A = acts.pattern2[:, :, 0]  # (N, H)
    W = fr.sum_waves(p, range(1, p // 2 + 1), A.device)  # (K, 2, p): cos/sin(w_k x)
    y = A - 0.5
    # regressors x_kj(a, b) = W[k, j, a] - W[k, j, b]; on the full grid the two are orthogonal, so least squares
    # is per regressor and ss_res = ||y||^2 - sum_j coef_j^2 ||x_j||^2. Sums over the grid via sums over a and b.
    ya = torch.zeros(p, y.shape[1], dtype=DTYPE, device=A.device).index_add_(0, acts.a, y)
    yb = torch.zeros(p, y.shape[1], dtype=DTYPE, device=A.device).index_add_(0, acts.b, y)
    xy = torch.einsum("kjx,xh->kjh", W, ya - yb)  # (K, 2, H)
    xx = 2 * p * W.pow(2).sum(-1) - 2 * W.sum(-1).pow(2)  # (K, 2)
    coef = xy / xx.clamp_min(1e-300)[..., None]
    coef = torch.where(xx[..., None] > 1e-9, coef, torch.zeros_like(coef))
    ss_res = y.pow(2).sum(0)[None] - (coef.pow(2) * xx[..., None]).sum(1)  # (K, H)
    ss_tot = (A - A.mean(0)).pow(2).sum(0)
    fv = 1 - ss_res / ss_tot.clamp_min(1e-300)
    best = fv.argmax(0)
    out = []
    for h in range(A.shape[1]):
        k = int(best[h])
        if float(ss_tot[h]) > 1e-24 * A.shape[0]:
            out.append(HeadFit(h, k + 1, float(coef[k, 0, h]), float(coef[k, 1, h]), float(fv[k, h]),
                               float(acts.pattern2[:, h, 2].mean())))
        else:  # a constant pattern: nothing to explain
            out.append(HeadFit(h, 0, 0.0, 0.0, float("nan"), float(acts.pattern2[:, h, 2].mean())))
    return out


@dataclass
class Neurons(Result):
    """Evidence 3 (§4.3): each neuron's best single frequency and the FVE of its degree-2 polynomial there.

    ``n_well_fit``/``frac_well_fit``: neurons with FVE > ``threshold`` (paper: 433/512 = 84.6% > 85%);
    ``clusters``: well-fit neurons per best frequency; ``clusters_all``: all live neurons per best frequency;
    ``cluster_wl_share[k]``: share of the cluster's ``||W_L rows||^2`` (over ``c``) in frequency ``k``'s
    ``cos/sin`` (paper Fig. 5 right: the map to the logits is localised by frequency); ``heads``: Table 2;
    ``wl_fourier``: the rows of ``W_L`` (one per neuron) in the Fourier basis along the output ``c``.
    """

    _arrays = ("best_freq", "fve", "wl_fourier")

    keys: list[int]
    threshold: float
    best_freq: "Int[Tensor, 'm']"
    fve: "Float[Tensor, 'm']"
    n_neurons: int
    n_dead: int
    n_well_fit: int
    frac_well_fit: float
    n_well_fit_key: int  # well-fit neurons whose best frequency is a key frequency
    clusters: dict[int, int]
    clusters_all: dict[int, int]
    cluster_wl_share: dict[int, float]
    heads: list[HeadFit]
    wl_fourier: "Float[Tensor, 'm p']"


def neurons(acts: Activations, keys: Sequence[int] | None = None, threshold: float = 0.85) -> Neurons:
    """Evidence 3: neuron frequencies and polynomial FVEs, clusters, and the per-head attention fits."""
    keys = resolve_keys(acts, keys)
    p = acts.p
    ns = neuron_spectra(acts)
    well = ns.alive & (ns.best_fve > threshold)
    keymask = key_mask(p, keys, ns.best_freq.device)

    def count(mask):
        c = torch.bincount(ns.best_freq[mask].cpu() - 1, minlength=p // 2)
        return {int(k) + 1: int(v) for k, v in enumerate(c.tolist()) if v}

    clusters = count(well)
    C = fr.fft1d(acts.W_L, dim=1)  # (m, p)
    share: dict[int, float] = {}
    for k in clusters:
        rows = C[well & (ns.best_freq == k)]
        tot = rows.pow(2).sum()
        cols = [fr.cos_index(k)] + ([fr.sin_index(k, p)] if fr.sin_index(k, p) is not None else [])
        share[k] = float(rows[:, cols].pow(2).sum() / tot.clamp_min(1e-300))
    n = acts.d_mlp
    return Neurons(
        keys=keys, threshold=threshold, best_freq=ns.best_freq, fve=ns.best_fve, n_neurons=n,
        n_dead=int((~ns.alive).sum()), n_well_fit=int(well.sum()), frac_well_fit=float(well.sum()) / n,
        n_well_fit_key=int((well & keymask[ns.best_freq - 1]).sum()), clusters=clusters,
        clusters_all=count(ns.alive), cluster_wl_share=share, heads=head_fits(acts), wl_fourier=C)
