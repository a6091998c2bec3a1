"""Evidence 4 (paper §4.4, Appendix A.1): ablations of neurons, logits, MLP directions, the skip connection and attention, each as loss and accuracy before/after."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from ..fourier import basis as fr
from ..jsonutil import clean
from .activations import (DTYPE, HOOK_PATTERN, HOOK_POST, HOOK_RESID_POST, Activations, Metrics, Result, metrics, metrics_s_table, run_patched, split_masks, tail_logits)
from .spectra import NeuronSpectra, neuron_spectra, resolve_keys

if TYPE_CHECKING:  # annotations only
    from jaxtyping import Float  # noqa: F401

    from ..model.transformer import Transformer

__all__ = ['Ablation', 'FrequencyAblation', 'Ablations', 'restricted_logits', 'excluded_logits', 'frequency_ablation', 'ablations']


@dataclass
class Ablation(Result):
    name: str
    description: str
    before: Metrics
    after: Metrics


@dataclass
class FrequencyAblation(Result):
    """Fig. 6: the logits with one frequency's ``cos(w_k(a+b))``, ``sin(w_k(a+b))`` components (over the
    ``(a, b)`` grid) removed, for every ``k = 1 .. p // 2`` (entry ``k - 1``)."""

    freqs: list[int]
    loss_train: "Float[Tensor, 'K']"
    loss_test: "Float[Tensor, 'K']"
    loss_all: "Float[Tensor, 'K']"
    acc_train: "Float[Tensor, 'K']"
    acc_test: "Float[Tensor, 'K']"
    acc_all: "Float[Tensor, 'K']"

    def metrics(self, k: int) -> Metrics:
        i = k - 1
        return Metrics(*(float(getattr(self, f)[i]) for f in
                         ("loss_train", "loss_test", "loss_all", "acc_train", "acc_test", "acc_all")))


@dataclass
class Ablations(Result):
    """Evidence 4 (§4.4, A.1): every ablation as loss and accuracy before/after on train, test and all pairs.

    ``results`` names (descriptions in each entry): ``neurons_poly``, ``neurons_sum_terms``,
    ``neurons_sum_terms_all``, ``logits_restricted``, ``logits_excluded``, ``mlp_proj_wl_directions``,
    ``mlp_proj_wl_nullspace`` (and ``..._raw`` variants that project the mean too), ``skip_mlp_zero``,
    ``skip_mlp_mean``, ``attn_no_self_renorm`` and/or ``attn_no_self_zero`` (see :func:`ablations`),
    ``attn_linear_sigmoid``, and ``logits_ablate_freq_<k>`` for each key ``k``.
    ``per_frequency`` holds the same single-frequency ablation for every frequency. ``linear_sigmoid`` gives
    each head's slope ``E`` (pattern ``0.5 + E (s_a - s_b)``) and the FVE of ``sigmoid`` by that line.
    """

    keys: list[int]
    method: str
    baseline: Metrics
    results: dict[str, Ablation]
    per_frequency: FrequencyAblation
    linear_sigmoid: list[dict[str, float]]

    def loss(self, name: str, split: str = "all") -> float:
        return getattr(self.results[name].after, f"loss_{split}")


def restricted_logits(acts: Activations, keys: Sequence[int], logits: Tensor | None = None) -> Tensor:
    """The authors' restricted logits (``calculate_trig_loss`` with bias correction): the projection of the
    logit table on the key directions ``cos/sin(w_k(a+b))`` over the grid, plus the mean logits over all pairs
    (the constant component). Returned as an ``(p, p)`` table over ``(s = a+b mod p, c)``."""
    L = acts.logits if logits is None else logits
    p = acts.p
    table = L.mean(0).expand(p, p).clone()
    if keys:
        T = fr.sum_direction_table(p, keys, L.device).reshape(-1, p)  # (2r, p_s)
        coef = T[:, acts.s] @ L  # (2r, c)
        table = table + T.T @ coef
    return table


def excluded_logits(acts: Activations, keys: Sequence[int], logits: Tensor | None = None) -> Tensor:
    """The authors' excluded logits: the logit table minus its projection on the key ``cos/sin(w_k(a+b))``
    directions (everything else, constant included, kept). ``(N, p)``."""
    L = acts.logits if logits is None else logits
    if not keys:
        return L.clone()
    D = fr.sum_direction_table(acts.p, keys, L.device).reshape(-1, acts.p)[:, acts.s]  # (2r, N)
    return L - D.T @ (D @ L)


def frequency_ablation(acts: Activations, logits: Tensor | None = None) -> FrequencyAblation:
    """Loss/accuracy with each frequency's ``cos/sin(w_k(a+b))`` logit components removed, all ``k`` at once.

    Removing frequency ``k`` subtracts ``Delta_k[n, c] = d_k(s_n) . coef_k[c]``, which depends on the pair only
    through ``s = a + b mod p``. So ``sum_c exp(L - Delta_k) = sum_c exp(L - max L) * G_k[s, c]`` with the small
    table ``G_k = exp(-Delta_k)``: one batched matmul over the ``p`` groups of equal ``s`` instead of ``p // 2``
    passes over the ``(p*p, p)`` table. Accuracy is exact: a pair is certified correct when its margin exceeds
    twice the largest ``|Delta_k|`` of its row, and only uncertified pairs are re-checked explicitly.
    """
    L = acts.logits if logits is None else logits
    p, K, dev = acts.p, acts.p // 2, L.device
    N = p * p
    freqs = list(range(1, K + 1))
    dS = fr.sum_direction_table(p, freqs, dev)  # (K, 2, p_s)
    # coefficients: sum_n d(s_n) L[n, c] = sum_s d(s) (sum of the L rows with that s)
    Ls = torch.zeros(p, p, dtype=DTYPE, device=dev).index_add_(0, acts.s, L)  # (s, c)
    coef = torch.einsum("kds,sc->kdc", dS, Ls)  # (K, 2, c)
    delta = torch.einsum("kds,kdc->ksc", dS, coef)  # (K, s, c)
    mL = L.max(-1, keepdim=True).values
    P = torch.exp(L - mL)  # (N, c)
    # group the pairs by s: for s, the pairs (a, (s - a) mod p)
    a_ = torch.arange(p, device=dev)
    grp = a_[None, :] * p + (torch.arange(p, device=dev)[:, None] - a_[None, :]).remainder(p)  # (s, a) -> n
    gmax = (-delta).amax(-1, keepdim=True)  # (K, s, 1): keeps G <= 1, so nothing overflows
    G = torch.exp(-delta - gmax).permute(1, 2, 0)  # (s, c, K)
    S = torch.bmm(P[grp], G)  # (s, a, K)
    y = acts.labels
    s = acts.s
    lse = torch.empty(K, N, dtype=DTYPE, device=dev)
    lse[:, grp.reshape(-1)] = S.reshape(N, K).T.log()
    lse += gmax[:, :, 0][:, s]
    loss = lse + mL[:, 0][None] - (L[torch.arange(N, device=dev), y][None] - delta[:, s, y])  # (K, N)
    # accuracy
    Ly = L.gather(1, y[:, None])[:, 0]
    other = L.scatter(1, y[:, None], float("-inf")).max(-1).values
    margin = Ly - other  # (N,)
    bound = delta.abs().amax(-1)[:, s]  # (K, N): max_c |Delta_k| of each pair's row
    correct = (margin[None] > 2 * bound)
    todo = (~correct) & (margin[None] > -2 * bound)  # undecided pairs
    wrong_for_sure = margin[None] <= -2 * bound
    correct = correct & ~wrong_for_sure
    kk, nn = torch.nonzero(todo, as_tuple=True)
    if kk.numel():
        for start in range(0, kk.numel(), 65536):
            ks, ns_ = kk[start:start + 65536], nn[start:start + 65536]
            rows = L[ns_] - delta[ks, s[ns_]]
            correct[ks, ns_] = rows.argmax(-1) == y[ns_]
    Wt = split_masks(acts)
    ml, mc = (loss @ Wt) / Wt.sum(0), (correct.to(DTYPE) @ Wt) / Wt.sum(0)  # (K, 3)
    return FrequencyAblation(freqs, ml[:, 0], ml[:, 1], ml[:, 2], mc[:, 0], mc[:, 1], mc[:, 2])


def _padded_basis(p: int, device) -> Tensor:
    return torch.cat([fr.fourier_basis(p, device), torch.zeros(1, p, dtype=DTYPE, device=device)])


def _neuron_poly(acts: Activations, ns: NeuronSpectra, which: Tensor) -> Tensor:
    """Activations with the ``which`` neurons replaced by mean + their best frequency's 3x3 block polynomial."""
    p = acts.p
    sel = which.nonzero()[:, 0]
    Bn = _padded_basis(p, acts.post2.device)[fr.block_index(p, acts.post2.device)[ns.best_freq[sel] - 1]]  # (w,3,p)
    blk = ns.blocks[ns.best_freq[sel] - 1, :, :, sel].clone()  # (w, 3, 3)
    blk[:, 0, 0] = 0
    grid = torch.einsum("wij,wia,wjb->abw", blk, Bn, Bn).reshape(p * p, -1) + ns.mean[sel]
    out = acts.post2.clone()
    out[:, sel] = grid
    return out


def _neuron_poly_logits(acts: Activations, ns: NeuronSpectra, which: Tensor, rest: Tensor) -> Tensor:
    """Fast logits of :func:`_neuron_poly`: the replaced neurons' polynomials are pushed through ``W_L`` per
    frequency as 3x3 blocks (``M_k = sum_n block_n W_L[n]``), then expanded over the grid once per frequency."""
    p, dev = acts.p, acts.post2.device
    sel = which.nonzero()[:, 0]
    if sel.numel() == 0:
        return rest + acts.resid_logits
    k = ns.best_freq[sel] - 1
    blk = ns.blocks[k, :, :, sel].clone()
    blk[:, 0, 0] = 0
    WLs = acts.W_L[sel]
    M = torch.zeros(p // 2, 3, 3, p, dtype=DTYPE, device=dev).index_add_(0, k, torch.einsum("wij,wc->wijc", blk, WLs))
    present = torch.unique(k)
    Bk = _padded_basis(p, dev)[fr.block_index(p, dev)[present]]  # (f, 3, p)
    Y = torch.einsum("fia,fijc->ajcf", Bk, M[present]).reshape(p, p * 3 * present.numel())  # (a, (j c f))
    Y = Y.reshape(p, 3, p, -1).permute(0, 2, 3, 1).reshape(p * p, -1)  # (a c, (f j))
    Z = (Y @ Bk.reshape(-1, p)).reshape(p, p, p).permute(0, 2, 1).reshape(p * p, p)  # (a, b, c)
    return acts.resid_logits + rest + ns.mean[sel] @ WLs + Z


def _neuron_sum_terms(acts: Activations, ns: NeuronSpectra, which: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean + best-frequency ``cos/sin(w(a+b))`` terms of the ``which`` neurons: ``(sel, coefs (w, 2),
    tables (w, 2, p_s))`` -- the replacement of neuron ``sel[i]`` is ``mean + coefs[i] . tables[i][:, s]``."""
    sel = which.nonzero()[:, 0]
    k = ns.best_freq[sel]
    blk = ns.blocks[k - 1, :, :, sel]  # (w, 3, 3)
    c_cos = (blk[:, 1, 1] - blk[:, 2, 2]) / math.sqrt(2)
    c_sin = (blk[:, 2, 1] + blk[:, 1, 2]) / math.sqrt(2)
    return sel, torch.stack([c_cos, c_sin], 1), fr.sum_direction_table(acts.p, k, acts.post2.device)


def _linear_sigmoid(acts: Activations) -> tuple[Tensor, list[dict[str, float]]]:
    """Pattern rows of ``=`` with the 2-way softmax replaced by its least-squares line through 0.5."""
    d = acts.scores2[:, :, 0] - acts.scores2[:, :, 1]  # (N, H)
    sig = torch.sigmoid(d)
    E = ((sig - 0.5) * d).sum(0) / d.pow(2).sum(0).clamp_min(1e-300)
    lin = 0.5 + E * d
    fv = fr.fve(sig, lin, dim=0)
    pat = torch.stack([lin, 1 - lin, torch.zeros_like(lin)], -1)  # (N, H, 3)
    info = [{"head": h, "slope": float(E[h]), "fve": clean(fv[h])} for h in range(d.shape[1])]
    return pat, info


def ablations(acts: Activations, keys: Sequence[int] | None = None, *, threshold: float = 0.85,
              method: str = "fast", model: "Transformer | None" = None, self_attention: str = "renorm") -> Ablations:
    """Evidence 4 (see :class:`Ablations` for the list).

    ``self_attention``: how the attention from ``=`` to itself is removed -- ``"renorm"`` (the attention to ``a``
    and ``b`` rescaled to sum to 1: the paper's "softmax over 2 elements"), ``"zero"`` (just set to 0), or
    ``"both"``. Each costs one recomputation of the MLP at ``=``.

    ``method='hooks'`` builds every model-level ablation as a patch of a hook point at ``=`` and runs ``model``
    under :func:`grokscope.model.hooks.hooks` (:func:`run_patched`). ``method='fast'`` (default) gets the same logits
    without re-running the model: MLP-activation patches go through ``W_L`` exploiting their structure (low
    rank, or a few Fourier terms per frequency), the skip ablations subtract ``resid_mid @ W_U``, and attention
    patches recompute the MLP at ``=`` only (:func:`tail_logits`). The two agree to float64 rounding (tested).
    """
    keys = resolve_keys(acts, keys)
    p, dev = acts.p, acts.post2.device
    if method == "hooks":
        if model is None:
            raise ValueError("method='hooks' needs the model")
        tokens = torch.stack([acts.a, acts.b, torch.full_like(acts.a, p)], 1)
    elif method != "fast":
        raise ValueError(f"method={method!r} is invalid: must be 'fast' or 'hooks'")
    base = metrics(acts.logits, acts)
    results: dict[str, Ablation] = {}

    def add(name: str, desc: str, patches=None, fast=None, logits=None) -> None:
        if logits is None:
            logits = run_patched(model, tokens, patches()) if method == "hooks" else fast()
        after = logits if isinstance(logits, Metrics) else metrics(logits, acts)
        results[name] = Ablation(name, desc, base, after)

    X, WL = acts.post2, acts.W_L
    mu = X.mean(0)
    s = acts.s
    ns = neuron_spectra(acts)
    well = ns.alive & (ns.best_fve > threshold)
    rest = None if method == "hooks" else X[:, ~well] @ WL[~well]  # logits of the untouched neurons
    add("neurons_poly", f"neurons with FVE > {threshold} replaced by their mean + best-frequency degree-2 polynomial "
        "(3x3 block); other neurons untouched", lambda: {HOOK_POST: _neuron_poly(acts, ns, well)},
        lambda: _neuron_poly_logits(acts, ns, well, rest))
    sel, cf, tab = _neuron_sum_terms(acts, ns, well)

    def sum_terms_patch():
        out = X.clone()
        out[:, sel] = torch.einsum("wd,wds->sw", cf, tab)[s] + mu[sel]
        return {HOOK_POST: out}

    def sum_terms_fast():
        table = torch.einsum("wd,wds,wc->sc", cf, tab, WL[sel])  # (s, c)
        return acts.resid_logits + rest + mu[sel] @ WL[sel] + table[s]

    add("neurons_sum_terms", f"neurons with FVE > {threshold} replaced by their mean + the cos/sin(w_k(a+b)) terms of "
        "their best frequency k; other neurons untouched", sum_terms_patch, sum_terms_fast)
    T = fr.sum_direction_table(p, keys, dev).reshape(-1, p)  # (2r, p_s): key directions as functions of s
    Xs = torch.zeros(p, X.shape[1], dtype=DTYPE, device=dev).index_add_(0, s, X)  # (s, m): sums over pairs with s
    DX = T @ (Xs - p * mu)  # (2r, m): coefficients of the centred activations on the key directions
    add("neurons_sum_terms_all", "every neuron replaced by its mean + its cos/sin(w_k(a+b)) terms over all key "
        "frequencies", lambda: {HOOK_POST: mu + T[:, s].T @ DX},
        lambda: acts.resid_logits + mu @ WL + (T.T @ (DX @ WL))[s])
    add("logits_restricted", "logits restricted to the constant + cos/sin(w_k(a+b)) components of the key "
        "frequencies (the authors' trig loss with bias correction; the paper reports all pairs)",
        logits=metrics_s_table(restricted_logits(acts, keys), acts))
    add("logits_excluded", "cos/sin(w_k(a+b)) components of the key frequencies removed from the logits "
        "(the paper's excluded loss is the train split)", logits=excluded_logits(acts, keys))
    fa = frequency_ablation(acts)
    for k in keys:
        add(f"logits_ablate_freq_{k}", f"cos/sin(w_{k}(a+b)) components of the logits removed", logits=fa.metrics(k))
    # projections of the MLP activations on the W_L directions u_k, v_k
    C = fr.fft1d(WL, dim=1)
    cols = [fr.cos_index(k) for k in keys] + [i for k in keys if (i := fr.sin_index(k, p)) is not None]
    Q = torch.linalg.qr(C[:, cols])[0] if cols else torch.zeros(X.shape[1], 0, dtype=DTYPE, device=dev)
    QWL = Q.T @ WL  # (r, p)
    Xc = X - mu
    XcQ, XQ = Xc @ Q, X @ Q
    n = len(cols)
    add("mlp_proj_wl_directions", f"MLP activations: mean kept, variation projected on the {n} W_L directions "
        "u_k, v_k of the key frequencies", lambda: {HOOK_POST: mu + XcQ @ Q.T},
        lambda: acts.resid_logits + mu @ WL + XcQ @ QWL)
    add("mlp_proj_wl_nullspace", f"MLP activations: mean kept, variation projected on the orthogonal complement "
        f"of those {n} directions", lambda: {HOOK_POST: X - XcQ @ Q.T}, lambda: acts.logits - XcQ @ QWL)
    add("mlp_proj_wl_directions_raw", f"MLP activations (mean included) projected on the {n} W_L directions",
        lambda: {HOOK_POST: XQ @ Q.T}, lambda: acts.resid_logits + XQ @ QWL)
    add("mlp_proj_wl_nullspace_raw", "MLP activations (mean included) projected on the orthogonal complement",
        lambda: {HOOK_POST: X - XQ @ Q.T}, lambda: acts.logits - XQ @ QWL)
    # skip connection around the MLP
    skip = acts.resid_mid2 @ acts.W_Up
    mean_mid = acts.resid_mid2.mean(0)
    mlp_out = lambda: X @ acts.W_out + acts.b_out  # noqa: E731
    add("skip_mlp_zero", "skip connection around the MLP zero-ablated (resid_post = mlp_out)",
        lambda: {HOOK_RESID_POST: mlp_out()}, lambda: acts.logits - skip)
    add("skip_mlp_mean", "skip connection around the MLP mean-ablated (resid_post = mean(resid_mid) + mlp_out)",
        lambda: {HOOK_RESID_POST: mlp_out() + mean_mid}, lambda: acts.logits - skip + mean_mid @ acts.W_Up)
    # attention from '=' to itself; the attention sigmoid by its linear fit
    pat = acts.pattern2.clone()
    pat[:, :, 2] = 0
    pat_r = pat / pat.sum(-1, keepdim=True).clamp_min(1e-300)
    pat_lin, info = _linear_sigmoid(acts)
    if self_attention not in ("renorm", "zero", "both"):
        raise ValueError(f"self_attention={self_attention!r} is invalid: must be 'renorm', 'zero' or 'both'")
    todo = []
    if self_attention in ("zero", "both"):
        todo.append(("attn_no_self_zero", "attention from '=' to itself set to 0 (rows not renormalised)", pat))
    if self_attention in ("renorm", "both"):
        todo.append(("attn_no_self_renorm", "attention from '=' to itself removed, attention to a and b "
                     "renormalised to sum to 1", pat_r))
    todo.append(("attn_linear_sigmoid", "'=' self-attention removed and sigmoid(s_a - s_b) replaced by its "
                 "least-squares line 0.5 + E (s_a - s_b) per head", pat_lin))
    for name, desc, pt in todo:
        add(name, desc, lambda pt=pt: {HOOK_PATTERN: pt}, lambda pt=pt: tail_logits(acts, {HOOK_PATTERN: pt}))
    return Ablations(keys, method, base, results, fa, info)
