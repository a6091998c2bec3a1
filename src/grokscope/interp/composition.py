"""Evidence 2 (paper §4.2, Table 1): the weights compose ``cos/sin(w_k(a+b))`` and the logits ``cos(w_k(a+b-c))``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..fourier import basis as fr
from .activations import DTYPE, Activations, Metrics, Result, metrics_s_table
from .spectra import resolve_keys, top_components


__all__ = ['DirectionFit', 'Composition', 'composition']


@dataclass
class DirectionFit(Result):
    """One row of Table 1: the MLP activations projected on ``u_k`` (``kind='cos'``) or ``v_k`` (``'sin'``)."""

    freq: int
    kind: str
    norm: float  # ||u_k|| (the W_L coefficient vector of the unit basis wave cos k / sin k)
    mean: float  # the projection's mean over the pairs
    top_terms: list[dict[str, Any]]  # its two largest non-constant 2-D Fourier coefficients (unit 2-D basis)
    sum_coef: float  # its coefficient on the unit direction cos(w_k(a+b)) (kind 'cos') / sin(w_k(a+b))
    fve: float  # FVE of the projection by that single term


@dataclass
class Composition(Result):
    """Evidence 2 (§4.2): ``W_L ~ sum_k cos_k u_k^T + sin_k v_k^T``; the MLP computes ``cos/sin(w_k(a+b))``
    along ``u_k, v_k``; the logits are ``~ sum_k alpha_k cos(w_k(a+b-c))``.

    ``cos_k``/``sin_k`` are the unit-norm basis waves over the output ``c``, so ``u_k = W_L @ cos_k``.
    ``wl_residual_share`` is ``||W_L - approx||_F / ||W_L||_F`` (paper: 0.55%); ``..._centered`` the same for
    ``W_L`` centred over ``c`` (the constant, which softmax ignores, removed from both). ``logit_fve`` is the
    FVE of the logits centred over ``c`` (per pair: the part softmax ignores) by the least-squares
    ``sum_k alpha_k cos(w_k(a+b-c))`` (paper: 95%); ``logit_fve_interaction`` the same for the logits also
    centred over the pairs (per ``c``: the class-bias term removed too); ``logit_fit_metrics`` the loss/accuracy of
    that approximation used as the logits.
    """

    keys: list[int]
    wl_residual_share: float
    wl_residual_share_centered: float
    directions: list[DirectionFit]
    logit_alphas: dict[int, float]
    logit_fve: float
    logit_fve_interaction: float
    logit_fit_metrics: Metrics


def composition(acts: Activations, keys: Sequence[int] | None = None) -> Composition:
    """Evidence 2 (Table 1 and the logit fit)."""
    keys = resolve_keys(acts, keys)
    p, names = acts.p, fr.basis_names(acts.p)
    WL = acts.W_L
    C = fr.fft1d(WL, dim=1)  # (m, p): W_L = C @ B
    B = fr.fourier_basis(p, WL.device)
    idx = [fr.cos_index(k) for k in keys] + [i for k in keys if (i := fr.sin_index(k, p)) is not None]
    approx = C[:, idx] @ B[idx] if idx else torch.zeros_like(WL)
    wl_res = float((WL - approx).norm() / WL.norm().clamp_min(1e-300))
    WLc = WL - WL.mean(1, keepdim=True)
    wl_res_c = float((WLc - approx).norm() / WLc.norm().clamp_min(1e-300))
    # Table 1: projections of the activations on u_k, v_k
    dirs: list[DirectionFit] = []
    if keys:
        cols, kinds = [], []
        for k in keys:
            for kind in ("cos", "sin"):
                i = fr.cos_index(k) if kind == "cos" else fr.sin_index(k, p)
                if i is not None:
                    cols.append(i)
                    kinds.append((k, kind))
        U = C[:, cols]  # (m, n_dir)
        proj = acts.post2 @ U  # (N, n_dir)
        spec = fr.fft2d(proj, p)  # (p, p, n_dir)
        T = fr.sum_direction_table(p, [k for k, _ in kinds], WL.device)  # (n_dir, 2, p_s)
        sel = torch.tensor([0 if kind == "cos" else 1 for _, kind in kinds], device=WL.device)
        Dk = T[torch.arange(len(kinds)), sel][:, acts.s]  # (n_dir, N)
        coef = (Dk * proj.T).sum(1)
        projc = proj - proj.mean(0)
        fv = coef.pow(2) / projc.pow(2).sum(0).clamp_min(1e-300)
        spec[0, 0] = 0  # the mean, not a term of interest
        for j, (k, kind) in enumerate(kinds):
            dirs.append(DirectionFit(k, kind, float(U[:, j].norm()), float(proj[:, j].mean()),
                                     top_components(spec[:, :, j], names, 2), float(coef[j]), float(fv[j])))
    # logits ~ sum_k alpha_k cos(w_k (a + b - c)), least squares (the regressors are orthogonal)
    L = acts.logits
    Lc = L - L.mean(-1, keepdim=True)
    alphas: dict[int, float] = {}
    table = torch.zeros(p, p, dtype=DTYPE, device=L.device)  # (s, c)
    if keys:
        W = fr.sum_waves(p, keys, L.device)  # (r, 2, p): cos/sin(w_k x)
        s = acts.s
        # <Lc, cos(w(s - c))> = sum_n cos(w s_n) (Lc_n . cos(wc)) + sin(w s_n) (Lc_n . sin(wc))
        num = (W[:, 0, s] * (Lc @ W[:, 0].T).T).sum(1) + (W[:, 1, s] * (Lc @ W[:, 1].T).T).sum(1)
        basis = fr.diff_cos_table(p, keys, L.device)  # (r, s, c)
        den = fr.diff_cos_sq_norm(p, keys, L.device)
        al = num / den
        alphas = {k: float(x) for k, x in zip(keys, al)}
        table = (al[:, None, None] * basis).sum(0)
        explained = (al.pow(2) * den).sum()
        logit_fve = float(explained / Lc.pow(2).sum().clamp_min(1e-300))
        logit_fve_i = float(explained / (Lc - Lc.mean(0)).pow(2).sum().clamp_min(1e-300))
    else:
        logit_fve = logit_fve_i = 0.0
    return Composition(keys, wl_res, wl_res_c, dirs, alphas, logit_fve, logit_fve_i, metrics_s_table(table, acts))
