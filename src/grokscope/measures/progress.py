"""Progress measures over training (paper §5.1, Fig. 7, Appendix C.1.5 Figs. 13-15, C.2 footnote 3).

Entry points::

    from grokscope.measures.progress import compute_progress, wide
    df = compute_progress(Run.load("runs/x"))  # tidy DataFrame: model, epoch, measure, freq, value
    wide(df, model=0)                          # one row per epoch, one column per measure

(``progress.parquet``, the saved table, is :mod:`grokscope.measures.cache`'s: ``load_or_compute_progress(run)``.)

Every measure is computed for every model of the run at every checkpoint (``every=n``: every n-th one, the
last always included), from the checkpoint's parameters, in chunks of checkpoints x models stacked on a
leading axis (``rows_per_chunk``):

* the per-token tables of the one-layer model for the whole chunk (the structure of
  :func:`grokscope.fast.tables.forward_fast`), then the answer logits of all ``p * p`` inputs by blocks of
  ``s = (a + b) mod p`` (:mod:`grokscope.measures.tables`, tested equal to ``forward_fast``), pairs held *s-major*;
* while each block is in cache, its per-pair statistics (label logit, best wrong class, the sum over wrong
  classes of ``exp(L - max L)``) and its sums over pairs per ``s``;
* then tensor algebra over the whole chunk: the ``cos/sin(w_k(a+b))`` coefficients of all frequencies as
  batched matmuls, the ``p // 2`` single-frequency removals and the key set in one batched matmul.

Python loops run over chunks, model rows and blocks of pairs (for cache locality), never over frequencies
or neurons. The heavy tensors are float32, as the model is (``dtype=torch.float64`` for a reference);
losses stay exact when tiny (``log1p`` of the wrong-class sum), coefficients and means are float64.
By default as many chunks as torch has threads run side by side (``workers``), one intra-op thread each.

Key frequencies
---------------
Per model, from the run's *final* checkpoint (as the paper does): :func:`grokscope.fourier.keys.select_by_gap`
on the per-frequency shares of ``W_L = W_out @ W_U[:, :p]`` with the defaults of
:func:`grokscope.interp.analysis.key_frequencies` (:func:`grokscope.fourier.keys.wl_keys`; equal to ``key_frequencies(...).keys``).
``keys=`` overrides them: one list for every model, or ``{model: list}``. A model with no keys (its final
``W_L`` is not sparse, e.g. without weight decay) gets restricted logits = the constant only and excluded
logits = the full logits; the model-independent excluded loss does not need keys.

Measures (``measure`` column; losses are mean float64 cross-entropies, accuracies fractions)
------------------------------------------------------------------------------------------
``s = (a + b) mod p``. The ``cos/sin(w_k(a+b))`` components of the logits are their projections on the unit
directions of :func:`grokscope.fourier.sum_directions` over the full ``(a, b)`` grid, per output ``c``.

* ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``: the model's own logits (float32 forward as in
  training, cross-entropy in float64), on the model's train / test pairs.
* ``restricted_loss``, ``restricted_acc``: logits restricted to the constant plus the ``cos/sin(w_k(a+b))``
  components of the key frequencies, with the authors' bias correction (the constant is the mean logit over
  all pairs; :func:`grokscope.interp.ablations.restricted_logits`), on the **test** pairs;
  ``restricted_loss_all``, ``restricted_acc_all``: the same on all pairs (the authors' logged ``trig_loss``).
* ``excluded_loss``, ``excluded_acc``: those key components removed from the logits (everything else kept;
  :func:`grokscope.interp.ablations.excluded_logits`), on the **train** pairs.
* ``excluded_loss_k``, ``excluded_acc_k`` (one row per key, its frequency in the ``freq`` column): only that key
  frequency removed (Fig. 15), train pairs.
* ``excluded_loss_max``: the model-independent variant (footnote 3): the largest train excluded loss over
  the ``p // 2`` single-frequency removals ``k = 1 .. p // 2``; ``excluded_loss_max_freq``: that ``k``.
* ``gini_W_E``, ``gini_W_L``: the Gini coefficient (below) of the vector of per-frequency Fourier norms
  ``n_k``, ``k = 1 .. p // 2`` (the constant excluded): for ``W_E`` the transform of ``W_E[:p]`` (the number
  tokens; ``=`` excluded) along the token axis, ``n_k = sqrt(||coef cos k||^2 + ||coef sin k||^2)`` with the
  norms over ``d_model``; for ``W_L = W_out @ W_U[:, :p]`` (``(d_mlp, p)``) the transform along the output
  (logit) axis, norms over the neurons. (:func:`grokscope.fourier.freq_norms` entries ``1..p//2``.)
* ``sum_sq``: the sum of squares of all parameters (biases included, as the authors' ``sum_sq_weights``);
  ``sum_sq.<name>``: per parameter tensor (``W_E``, ``blocks.0.attn.W_Q``, ...).
* ``logit_coef_k`` (per key, ``freq``): the least-squares coefficient ``alpha_k`` of ``cos(w_k(a+b-c))`` in the logits over all
  pairs and outputs (Fig. 14; the regressors of different ``k`` are orthogonal, so it is a projection),
  ``logits ~ sum_k alpha_k cos(w_k(a+b-c))`` -- the same number as
  :func:`grokscope.interp.composition.composition`'s ``logit_alphas``. The authors' Fig. 14 normalises the regressor
  to unit norm; their coefficient is ``alpha_k * sqrt(p**3 / 2)``.

Gini coefficient (Hurley & Rickard 2009): for ``x >= 0`` of length ``n`` sorted ascending,
``G = 1 - 2 sum_i (x_(i) / ||x||_1) (n - i + 1/2) / n`` ``= sum_i (2i - n - 1) x_(i) / (n sum x)``: 0 when all
entries are equal, ``(n - 1) / n`` when one entry holds everything (here ``n = p // 2``: 55/56 for p = 113);
NaN for the zero vector.

The frame's ``attrs`` (kept in the parquet file) hold ``keys`` (``{"0": [..], ...}``), ``every`` and the
checkpoint epochs used.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..fourier import basis as fr
from ..config import ModelConfig
from ..fourier.keys import check_keys, wl_keys
from ..train.run import Run
from .tables import block_size, logit_blocks

DTYPE = torch.float64
ROWS_PER_CHUNK = 8  # checkpoints x models per chunk (~25 MB of float32 per row at p = 113)

__all__ = ["gini", "weight_measures", "resolve_keys", "ProgressData", "batch_measures", "compute_progress", "wide",
           "label", "PER_FREQUENCY"]


# ====================================================================== small pieces
def gini(x: Tensor, dim: int = -1) -> Tensor:
    """Gini coefficient of non-negative ``x`` along ``dim`` (see the module docstring); NaN where ``x`` sums to 0."""
    x = torch.movedim(x.to(DTYPE), dim, -1)
    n = x.shape[-1]
    xs = torch.sort(x, dim=-1).values
    i = torch.arange(1, n + 1, dtype=DTYPE, device=x.device)
    tot = xs.sum(-1)
    g = (xs * (2 * i - n - 1)).sum(-1) / (n * tot)
    return torch.where(tot > 0, g, torch.full_like(g, float("nan")))


def weight_measures(params: Mapping[str, Tensor], n_layers: int = 1) -> dict[str, Tensor]:
    """``gini_W_E``, ``gini_W_L``, ``sum_sq`` and ``sum_sq.<name>`` of stacked parameters ``(M, ...)``, each
    ``(M,)`` (the Fourier norms: :func:`grokscope.fourier.weight_freq_norms`)."""
    norms = fr.weight_freq_norms(params, n_layers)
    out = {"gini_W_E": gini(norms["W_E"]), "gini_W_L": gini(norms["W_L"])}
    sq = {f"sum_sq.{k}": v.to(DTYPE).pow(2).flatten(1).sum(1) for k, v in params.items()}
    out["sum_sq"] = torch.stack(list(sq.values())).sum(0)
    out.update(sq)
    return out


def resolve_keys(run: Run, keys: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
                 epoch: int | None = None) -> dict[int, list[int]]:
    """Keys per model: ``keys`` if given (one list for all, or per model), else :func:`grokscope.fourier.keys.wl_keys`
    of each model's final checkpoint (or ``epoch``)."""
    p = run.configs[0].p
    out: dict[int, list[int]] = {}
    if keys is None:
        stacked = run.stacked_params(epoch)  # one read of the checkpoint for all models
    for k in range(run.K):
        if keys is None:
            ks = wl_keys(fr.wl_from_params({n: v[k] for n, v in stacked.items()}, run.configs[k].n_layers))
        elif isinstance(keys, Mapping):
            ks = keys.get(k, keys.get(str(k), []))
        else:
            ks = keys
        out[k] = check_keys(ks, p, f" for model {k}")
    return out

# ====================================================================== per-run constant tensors
@dataclass
class ProgressData:
    """Everything that does not depend on the parameters, for the K models of a run.

    Pairs are held in *s-major* order: position ``i = s * p + a`` is the pair ``(a, b = (s - a) mod p)``
    (``order[i]`` is its a-major index), so that everything that depends on the pair only through
    ``s = (a + b) mod p`` is a broadcast over ``a``. ``y (K, N)`` labels and ``w (K, N, 3)`` train/test/all
    0/1 masks in that order; ``key_mask (K, p//2)``; ``keys_pad (K, R)`` 1-based keys padded with 1
    (``keys_valid``); ``T (p//2, 2, p)`` the unit ``cos/sin(w_k(a+b))`` directions as functions of ``s``.
    The train pairs grouped by ``s``: ``tr_a (K, p, G)`` their ``a`` (padded with 0, ``tr_valid``), so the
    ``g``-th train pair with sum ``s`` sits at s-major position ``s * p + tr_a[k, s, g]``."""

    p: int
    order: Tensor
    a: Tensor
    b: Tensor
    y: Tensor
    w: Tensor
    tr_a: Tensor
    tr_valid: Tensor
    key_mask: Tensor
    keys_pad: Tensor
    keys_valid: Tensor
    keys: dict[int, list[int]]
    T: Tensor
    waves: Tensor  # (p//2, 2, p) cos/sin(w_k x)
    alpha_den: Tensor  # (p//2,) squared norm of cos(w_k(a+b-c)) over all pairs and outputs

    @classmethod
    def build(cls, datasets: Sequence, keys: Mapping[int, Sequence[int]], device=None) -> "ProgressData":
        p = datasets[0].p
        K, N, Kf = len(datasets), p * p, p // 2
        dev = torch.device(device or "cpu")
        s_ = torch.arange(p, device=dev).repeat_interleave(p)
        a_ = torch.arange(p, device=dev).repeat(p)
        b_ = (s_ - a_).remainder(p)
        order = a_ * p + b_
        y = torch.stack([d.labels.to(dev)[order] for d in datasets])
        w = torch.zeros(K, N, 3, dtype=DTYPE, device=dev)
        for k, d in enumerate(datasets):
            w[k, d.train_idx.to(dev), 0] = 1.0
            w[k, d.test_idx.to(dev), 1] = 1.0
        w[:, :, 2] = 1.0
        w = w[:, order]
        is_tr = w[:, :, 0].view(K, p, p) > 0  # (K, s, a)
        G = max(1, int(is_tr.sum(-1).max()))
        # a stable sort puts each s's train a's first, in increasing a
        tr_a = torch.sort((~is_tr).to(torch.int8), dim=-1, stable=True).indices[..., :G].contiguous()
        tr_valid = is_tr.gather(-1, tr_a)
        tr_a = torch.where(tr_valid, tr_a, torch.zeros_like(tr_a))
        R = max([1] + [len(v) for v in keys.values()])
        key_mask = torch.zeros(K, Kf, dtype=torch.bool, device=dev)
        keys_pad = torch.ones(K, R, dtype=torch.long, device=dev)
        keys_valid = torch.zeros(K, R, dtype=torch.bool, device=dev)
        for k in range(K):
            ks = sorted(int(x) for x in keys.get(k, []))
            if ks:
                kt = torch.tensor(ks, device=dev)
                key_mask[k, kt - 1] = True
                keys_pad[k, : len(ks)] = kt
                keys_valid[k, : len(ks)] = True
        freqs = range(1, Kf + 1)
        return cls(p, order, a_, b_, y, w, tr_a, tr_valid, key_mask, keys_pad, keys_valid,
                   {int(k): sorted(int(x) for x in v) for k, v in keys.items()},
                   fr.sum_direction_table(p, freqs, dev), fr.sum_waves(p, freqs, dev), fr.diff_cos_sq_norm(p, freqs, dev))


# ====================================================================== the first pass, by blocks of s
@dataclass
class _Pass1:
    """Results of the first pass for ``M`` models. All pairs, s-major ``(M, N)``: ``q = max L - L_y``,
    ``S0 = sum_{c != y} exp(L_c - max L)``, ``correct``; ``Ls (M, p_s, p_c)`` float64, the logits summed over
    the pairs with each ``s``. Train pairs grouped by ``s`` (``(M, p_s, G, ...)``, see ``ProgressData.tr_a``):
    ``Qt = exp(L - max L)`` with 0 at the label, the logits ``Lt`` and ``qt``."""

    q: Tensor
    S0: Tensor
    correct: Tensor
    Ls: Tensor
    Qt: Tensor
    Lt: Tensor
    qt: Tensor



def _pass1(params: Mapping[str, Tensor], cfg: ModelConfig, data: ProgressData, mk: Tensor,
           block: int | None = None) -> _Pass1:
    """Forward over all pairs by blocks of ``s`` and, while each block is in cache, its per-pair statistics."""
    p, M = cfg.p, mk.numel()
    dt, dev = params["W_E"].dtype, params["W_E"].device
    N = p * p
    y = data.y[mk]
    tr_a = data.tr_a[mk]  # (M, s, G)
    G = tr_a.shape[-1]
    tr_rows = tr_a + torch.arange(p, device=dev)[:, None] * p  # s-major positions
    q, S0 = torch.empty(M, N, dtype=dt, device=dev), torch.empty(M, N, dtype=dt, device=dev)
    correct = torch.empty(M, N, dtype=torch.bool, device=dev)
    Ls = torch.empty(M, p, p, dtype=DTYPE, device=dev)
    Qt = torch.empty(M, p, G, p, dtype=dt, device=dev)
    Lt = torch.empty_like(Qt)
    qt = torch.empty(M, p, G, dtype=dt, device=dev)
    for m, s0, s1, Lb in logit_blocks(params, cfg, data.a, data.b, block or block_size(p)):
        sl, bs = slice(s0 * p, s1 * p), s1 - s0
        L2 = Lb[0]  # (B, c)
        yb = y[m, sl]
        ly = L2.gather(1, yb[:, None])[:, 0]
        v = L2.scatter(1, yb[:, None], float("-inf")).amax(1)  # best wrong class
        correct[m, sl] = _beats(ly, v, L2, yb)
        mL = torch.maximum(ly, v)
        qb = mL - ly
        q[m, sl] = qb
        Qb = torch.sub(L2, mL[:, None]).exp_().scatter_(1, yb[:, None], 0.0)
        S0[m, sl] = Qb.sum(1)
        Ls[m, s0:s1] = L2.view(bs, p, p).sum(1, dtype=DTYPE)
        rows = tr_rows[m, s0:s1].reshape(-1) - s0 * p  # the block's train pairs, grouped by s
        torch.index_select(Qb, 0, rows, out=Qt[m, s0:s1].view(bs * G, p))
        torch.index_select(L2, 0, rows, out=Lt[m, s0:s1].view(bs * G, p))
        qt[m, s0:s1] = qb.index_select(0, rows).view(bs, G)
    return _Pass1(q, S0, correct, Ls, Qt, Lt, qt)


# ====================================================================== the measures of a batch
def _beats(ly: Tensor, v: Tensor, L: Tensor | None, y: Tensor) -> Tensor | None:
    """``argmax L == y`` from the label logit ``ly`` and the best other logit ``v`` (``amax`` is much faster than
    ``argmax``): ``ly > v``, except at exact ties, which ``argmax`` (first index) settles -- recomputed from ``L``
    for those rows, or ``None`` if ``L`` is not given and there is a tie."""
    out = ly > v
    tie = ly == v
    if bool(tie.any()):
        if L is None:
            return None
        idx = tie.nonzero(as_tuple=True)
        out[idx] = L[idx].argmax(-1) == y[idx]
    return out


def _ce(logS: Tensor, A: Tensor) -> Tensor:
    """Cross-entropy ``log(1 + S e^A)`` from ``log S`` (``S``: the sum over the wrong classes of the shifted
    exponentials, ``A``: the shift) -- exact for tiny losses, never overflows."""
    return F.softplus(logS + A)


def _wmean(v: Tensor, w: Tensor) -> Tensor:
    """``sum_n v[m, n, ...] w[m, n, j] / sum_n w[m, n, j]``: ``(M, N, *F)``, ``(M, N, J)`` -> ``(M, *F, J)``."""
    cnt = w.sum(1)  # (M, J)
    num = torch.einsum("mn...,mnj->m...j", v.to(DTYPE), w)
    return num / cnt.view(cnt.shape[0], *([1] * (num.ndim - 2)), cnt.shape[1])


@torch.no_grad()
def batch_measures(params: Mapping[str, Tensor], cfg: ModelConfig, mk: Tensor, data: ProgressData,
                   block: int | None = None) -> dict[str, Tensor]:
    """Every logit-based measure of ``M`` stacked parameter sets (``(M, ...)`` each) of models ``mk (M,)``.

    Returns ``name -> (M,)`` for the scalar measures, and ``per_key_loss``/``per_key_acc`` ``(M, R)`` (the
    padded keys of ``data``), ``single_freq_loss`` ``(M, p//2)`` and ``logit_coef`` ``(M, p//2)``.

    How: one forward pass by blocks of ``s`` (:func:`_pass1`) gives, per pair, ``q = max L - L_y`` and
    ``S0 = sum_{c != y} exp(L_c - max L)``; the loss is ``log(1 + S0 e^q)`` (exact for tiny losses from
    float32 logits). Removing the components of a set ``f`` of frequencies subtracts a table ``D_f[s, c]``, so
    that loss becomes ``log(1 + e^{A} sum_{c != y} Q_c H_f[s, c])`` with ``Q = exp(L - max L)``,
    ``H_f = exp(min_c D_f[s, c] - D_f[s, c]) <= 1`` and ``A = q - min_c D_f[s, c] + D_f[s, y]``: one batched
    matmul ``(s, f, c) @ (s, c, train pairs with that s)`` for the ``p // 2`` single frequencies and the key
    set at once. Excluded accuracies: the argmax of ``L - D_f`` over the train pairs, one pass per set.
    """
    p, M = cfg.p, mk.numel()
    Kf = p // 2
    P1 = _pass1(params, cfg, data, mk, block)
    dt = P1.Qt.dtype
    y = data.y[mk]
    w = data.w[mk]  # (M, N, 3)
    valid = data.tr_valid[mk]  # (M, s, G)
    yt = y.view(M, p, p).gather(2, data.tr_a[mk])  # (M, s, G) labels of the grouped train pairs
    out: dict[str, Tensor] = {}

    ce = _ce(P1.S0.to(DTYPE).log(), P1.q.to(DTYPE))
    loss3 = _wmean(ce, w)
    acc3 = _wmean(P1.correct, w)
    out["train_loss"], out["test_loss"] = loss3[:, 0], loss3[:, 1]
    out["train_acc"], out["test_acc"] = acc3[:, 0], acc3[:, 1]

    # cos/sin(w_k(a+b)) parts of the logits, per frequency, as tables over (s, c)
    coef = torch.einsum("kds,msc->mkdc", data.T, P1.Ls)  # (M, Kf, 2, c) float64
    kmask = data.key_mask[mk].to(DTYPE)
    D_keys = torch.einsum("kds,mkdc->msc", data.T, coef * kmask[:, :, None, None])  # (M, s, c) float64
    # D[m, s, f, c] (forward dtype): f < Kf the part of frequency f + 1, f = Kf all keys together
    Tt, cf = data.T.to(dt).permute(2, 0, 1), coef.to(dt)  # (s, Kf, 2), (M, Kf, 2, c)
    D = torch.empty(M, p, Kf + 1, p, dtype=dt, device=coef.device)
    torch.mul(Tt[None, :, :, 0, None], cf[:, None, :, 0], out=D[:, :, :Kf])
    D[:, :, :Kf].addcmul_(Tt[None, :, :, 1, None], cf[:, None, :, 1])
    D[:, :, Kf] = D_keys

    # restricted logits: the mean logits + the key parts
    Rt = P1.Ls.sum(1)[:, None, :] / (p * p) + D_keys  # (M, s, c)
    ys = y.view(M, p, p)  # (M, s, a)
    r_loss = torch.logsumexp(Rt, -1)[..., None] - Rt.gather(-1, ys)  # (M, s, a)
    r_corr = Rt.argmax(-1)[..., None] == ys
    rl = _wmean(r_loss.reshape(M, -1), w)
    ra = _wmean(r_corr.reshape(M, -1), w)
    out["restricted_loss"], out["restricted_acc"] = rl[:, 1], ra[:, 1]
    out["restricted_loss_all"], out["restricted_acc_all"] = rl[:, 2], ra[:, 2]

    # excluded losses on the train pairs: every single frequency and the key set, one batched matmul
    Dmin = D.amin(-1, keepdim=True)  # (M, s, F, 1)
    H = torch.sub(Dmin, D).exp_()  # (M, s, F, c), <= 1
    Sx = torch.matmul(H, P1.Qt.transpose(-1, -2))  # (M, s, F, G)
    Dy = D.gather(-1, yt[:, :, None, :].expand(-1, -1, Kf + 1, -1))  # (M, s, F, G): D_f[s, y]
    A = (Dy - Dmin).add_(P1.qt[:, :, None, :])
    ce_f = _ce(Sx.log_(), A)  # finite on the padding too (copies of a real pair), weighted 0 below
    ex = torch.einsum("msfg,msg->mf", ce_f, valid.to(dt)).to(DTYPE) / valid.sum((1, 2)).to(DTYPE)[:, None]
    single = ex[:, :Kf]
    out["excluded_loss"] = ex[:, Kf]
    mx, arg = single.max(-1)
    out["excluded_loss_max"], out["excluded_loss_max_freq"] = mx, (arg + 1).to(DTYPE)
    out["single_freq_loss"] = single
    kp = data.keys_pad[mk] - 1  # (M, R)
    out["per_key_loss"] = single.gather(1, kp)
    del Sx, A, ce_f, H

    # excluded accuracies (key set and each key): argmax over c of L - D_f on the grouped train pairs
    sets = torch.cat([torch.full_like(kp[:, :1], Kf), kp], 1)  # (M, 1 + R) indices into F
    nS = sets.shape[1]
    Ds = D.gather(2, sets[:, None, :, None].expand(-1, p, -1, p))  # (M, s, nS, c)
    hits = torch.empty(M, nS, dtype=DTYPE, device=Ds.device)
    buf = torch.empty_like(P1.Lt)
    yi = yt[..., None]
    for j in range(nS):  # 1 + (number of keys) passes over the train logits
        torch.sub(P1.Lt, Ds[:, :, j, None, :], out=buf)
        lv = buf.gather(-1, yi)[..., 0]
        ok = _beats(lv, buf.scatter_(-1, yi, float("-inf")).amax(-1), None, yt)
        if ok is None:  # exact ties: argmax on the original rows
            torch.sub(P1.Lt, Ds[:, :, j, None, :], out=buf)
            ok = buf.argmax(-1) == yt
        hits[:, j] = (ok & valid).sum((1, 2)).to(DTYPE)
    acc = hits / valid.sum((1, 2)).to(DTYPE)[:, None]  # (M, nS)
    out["excluded_acc"], out["per_key_acc"] = acc[:, 0], acc[:, 1:]

    # coefficients of cos(w_k(a + b - c)) (all frequencies; the caller keeps the keys)
    Wv = data.waves
    num = torch.einsum("ks,msc,kc->mk", Wv[:, 0], P1.Ls, Wv[:, 0]) + \
        torch.einsum("ks,msc,kc->mk", Wv[:, 1], P1.Ls, Wv[:, 1])
    out["logit_coef"] = num / data.alpha_den
    return out


# ====================================================================== a run
def _select_epochs(all_epochs: list[int], every: int, epochs: Iterable[int] | None) -> list[int]:
    if epochs is not None:
        want = sorted({int(e) for e in epochs})
        missing = [e for e in want if e not in set(all_epochs)]
        if missing:
            raise ValueError(f"epochs={missing} have no checkpoint")
        return want
    if every < 1:
        raise ValueError(f"every={every} is invalid: must be >= 1")
    sel = all_epochs[::every]
    if all_epochs and sel[-1] != all_epochs[-1]:
        sel.append(all_epochs[-1])
    return sel


def compute_progress(run: Run, keys: Sequence[int] | Mapping[int, Sequence[int]] | None = None, every: int = 1, *,
                     epochs: Iterable[int] | None = None, rows_per_chunk: int = ROWS_PER_CHUNK,
                     dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                     block: int | None = None, workers: int | None = None, timings: dict | None = None
                     ) -> pd.DataFrame:
    """The tidy progress table (columns ``model, epoch, measure, freq, value``; ``freq`` is the key frequency of
    the per-frequency measures, 0 for the others) of a :class:`grokscope.train.run.Run`.

    ``keys``: see :func:`resolve_keys` (default: each model's final checkpoint). ``every``: every n-th
    checkpoint (the last always included) or an explicit ``epochs`` list. ``dtype`` of the forward pass
    (float32, as in training; float64 for a reference). ``rows_per_chunk``: checkpoints x models per batched
    computation; ``block``: values of ``s`` per block of the forward pass (default: about 512 pairs).
    ``workers``: chunks computed side by side in that many threads, each with one intra-op thread (torch's
    setting is restored afterwards); default ``torch.get_num_threads()`` (the cores). Much better than
    intra-op threads here (many small ops); use ``workers=1`` when the other cores are busy. ``timings``: if a
    dict, filled with the seconds spent loading and computing (summed over workers) and in total.
    """
    t_start = time.perf_counter()
    cfg = run.configs[0].model_config
    p, K = cfg.p, run.K
    dev = torch.device(device)
    sel = _select_epochs(run.checkpoint_epochs, every, epochs)
    if not sel:
        raise ValueError(f"run={str(run.path)!r} has no checkpoints")
    key_map = resolve_keys(run, keys)
    data = ProgressData.build([run.dataset(k) for k in range(K)], key_map, dev)
    per_chunk = max(1, rows_per_chunk // K)
    cols: dict[str, list] = {"model": [], "epoch": [], "measure": [], "freq": [], "value": []}
    t_load = t_comp = 0.0

    def chunk(eps: list[int]) -> tuple[dict[str, Tensor], np.ndarray, np.ndarray, float, float]:
        t0 = time.perf_counter()
        loaded = [run.stacked_params(e) for e in eps]
        params = {n: torch.cat([d[n] for d in loaded]).to(dev, dtype) for n in loaded[0]}
        mk = torch.arange(K, device=dev).repeat(len(eps))
        t1 = time.perf_counter()
        res = batch_measures(params, cfg, mk, data, block)
        res.update(weight_measures(params, cfg.n_layers))
        return res, mk.cpu().numpy(), np.repeat(np.asarray(eps, dtype=np.int64), K), t1 - t0, time.perf_counter() - t1

    chunks = [sel[i:i + per_chunk] for i in range(0, len(sel), per_chunk)]
    workers = max(1, min(int(torch.get_num_threads() if workers is None else workers), len(chunks)))
    if workers == 1:
        results = map(chunk, chunks)
        pool = None
    else:  # torch ops release the GIL: chunks run side by side, one intra-op thread each
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(workers)
        results = pool.map(chunk, chunks)
    try:
        for res, mk_np, ep, tl, tc in results:
            _append(cols, res, mk_np, ep, data)
            t_load += tl
            t_comp += tc
    finally:
        if pool is not None:
            pool.shutdown()
            torch.set_num_threads(n_threads)
    df = pd.DataFrame({"model": np.concatenate(cols["model"]).astype("int32"),
                       "epoch": np.concatenate(cols["epoch"]).astype("int64"),
                       "measure": np.concatenate(cols["measure"]).astype(object),
                       "freq": np.concatenate(cols["freq"]).astype("int32"),
                       "value": np.concatenate(cols["value"]).astype("float64")})
    df = df.sort_values(["model", "epoch"], kind="stable", ignore_index=True)
    df.attrs = {"keys": {str(k): v for k, v in key_map.items()}, "every": int(every), "epochs": [int(e) for e in sel],
                "forward_dtype": str(dtype).replace("torch.", ""), "p": int(p)}
    if timings is not None:
        timings.update({"load_s": t_load, "compute_s": t_comp, "total_s": time.perf_counter() - t_start,
                        "checkpoints": len(sel), "models": K})
    return df


_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "restricted_loss", "restricted_acc",
            "restricted_loss_all", "restricted_acc_all", "excluded_loss", "excluded_acc", "excluded_loss_max",
            "excluded_loss_max_freq", "gini_W_E", "gini_W_L", "sum_sq")


def _append(cols: dict[str, list], res: dict[str, Tensor], mk: np.ndarray, ep: np.ndarray, data: ProgressData) -> None:
    """Move one chunk's results into the tidy column lists (one block per measure)."""
    M = len(mk)

    def put(name: str, values: np.ndarray, rows: np.ndarray | None = None, freq: int = 0) -> None:
        r = np.arange(M) if rows is None else rows
        cols["model"].append(mk[r])
        cols["epoch"].append(ep[r])
        cols["measure"].append(np.full(len(r), name, dtype=object))
        cols["freq"].append(np.full(len(r), freq, dtype=np.int32))
        cols["value"].append(values[r])

    for name in _SCALARS:
        put(name, res[name].cpu().numpy())
    for name in sorted(n for n in res if n.startswith("sum_sq.")):
        put(name, res[name].cpu().numpy())
    pkl, pka = res["per_key_loss"].cpu().numpy(), res["per_key_acc"].cpu().numpy()
    coef = res["logit_coef"].cpu().numpy()
    for k in sorted(set(mk.tolist())):
        rows = np.nonzero(mk == k)[0]
        for j, f in enumerate(data.keys.get(k, [])):
            put("excluded_loss_k", pkl[:, j], rows, f)
            put("excluded_acc_k", pka[:, j], rows, f)
        for f in data.keys.get(k, []):
            put("logit_coef_k", coef[:, f - 1], rows, f)



PER_FREQUENCY = ("excluded_loss_k", "excluded_acc_k", "logit_coef_k")


def label(measure: str, freq: int) -> str:
    """Column name of a measure in :func:`wide`: the measure, with its frequency appended when it has one
    (``excluded_loss_k`` of ``freq`` 3 -> ``excluded_loss_k3``)."""
    return f"{measure}{int(freq)}" if freq else measure


def wide(df: pd.DataFrame, model: int | None = None) -> pd.DataFrame:
    """Pivot the tidy table: index ``epoch`` (one model) or ``(model, epoch)``; one column per measure and
    frequency (:func:`label`), in the order they first appear. (Tables saved before the ``freq`` column
    existed had the frequency in the measure name already.)"""
    if model is not None:
        df = df[df["model"] == model]
    if "freq" in df.columns:
        df = df.assign(measure=[label(m, f) for m, f in zip(df["measure"], df["freq"])])
    order = list(dict.fromkeys(df["measure"]))
    index = "epoch" if model is not None else ["model", "epoch"]
    out = df.pivot(index=index, columns="measure", values="value").sort_index()
    out = out.reindex(columns=order)
    out.columns.name = None
    return out
