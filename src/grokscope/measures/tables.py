"""The one-layer model's answer logits over the full ``(a, b)`` grid for stacked parameter sets, from per-token
tables (the structure of :func:`grokscope.fast.tables.forward_fast`, without autograd): the forward pass of the
progress measures (tested equal to ``forward_fast``).

Only the last position feeds the answer and its query is the same for every input, so the attention scores
are tables over the vocabulary and the values, pushed through ``W_O`` and then ``W_in`` and ``W_U`` side by side,
are tables too: the MLP input and the direct logits of a pair are one ``embedding_bag`` over three table rows
per head. The logits are produced by blocks of pairs (:func:`logit_blocks`) so that a consumer can reduce each
block while it is in cache. The attention tables are training's own (:func:`grokscope.fast.tables.attention_tables`).
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fourier import basis as fr
from ..config import ModelConfig
from ..fast.tables import attention_tables, forward_plain

__all__ = ["one_layer_tables", "logit_blocks", "grid_logits", "block_size"]


def one_layer_tables(params: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Per-model tables of the one-layer model for ``M`` stacked parameter sets (the structure of
    :func:`grokscope.fast.tables.forward_fast`): attention-score tables ``S (M, 2, p, H)``, ``s2 (M, H)``; the
    value tables pushed through ``W_in`` and ``W_U`` side by side, ``TAB (M, 2pH + H, d_mlp + p)`` (rows
    ``[pos 0: t*H + h][pos 1: p*H + t*H + h][pos 2: 2pH + h]``); the constant parts ``c_in`` (MLP input of the
    ``=`` token plus ``b_in``) and ``c_u`` (its direct logits plus ``b_out``'s); ``W_L (M, d_mlp, p)``."""
    W_in, b_in = params["blocks.0.mlp.W_in"], params["blocks.0.mlp.b_in"]
    W_out, b_out = params["blocks.0.mlp.W_out"], params["blocks.0.mlp.b_out"]
    W_U = params["W_U"][:, :, :cfg.p]
    x2, S, s2, table = attention_tables(params, cfg)
    TAB = torch.cat([torch.bmm(table, W_in), torch.bmm(table, W_U)], -1).contiguous()
    c_in = torch.einsum("md,mdj->mj", x2, W_in) + b_in
    c_u = torch.einsum("md,mdc->mc", x2 + b_out, W_U)
    return {"S": S, "s2": s2, "TAB": TAB, "c_in": c_in, "c_u": c_u, "W_L": fr.wl(W_out, params["W_U"], W_out.dtype)}


def _bag_index(p: int, H: int, a: Tensor, b: Tensor) -> Tensor:
    """``(N, H, 3)`` rows of ``TAB`` read by each pair: ``a*H + h``, ``pH + b*H + h``, ``2pH + h``."""
    h = torch.arange(H, device=a.device)
    return torch.stack([a[:, None] * H + h, p * H + b[:, None] * H + h, (2 * p * H + h).expand(a.shape[0], H)], -1)


def logit_blocks(params: Mapping[str, Tensor], cfg: ModelConfig, a: Tensor, b: Tensor, block: int
                 ) -> Iterator[tuple[int, int, int, Tensor]]:
    """Yield ``(m, s0, s1, logits (1, (s1 - s0) * p, p))``: the answer logits of model row ``m`` for the pairs
    with ``s0 <= s < s1``, in s-major order. One row at a time keeps its value table (``2pH + H`` rows of
    ``d_mlp + p`` floats, ~2 MB at p = 113) in cache for the embedding bag; the tables of all ``M`` rows are
    computed together."""
    p, H, M = cfg.p, cfg.n_heads, params["W_E"].shape[0]
    if cfg.n_layers != 1:  # the general model: full forward, then blocks
        L = forward_plain(params, a[None].expand(M, -1), b[None].expand(M, -1), cfg)
        for m in range(M):
            for s0 in range(0, p, block):
                s1 = min(p, s0 + block)
                yield m, s0, s1, L[m:m + 1, s0 * p:s1 * p]
        return
    t = one_layer_tables(params, cfg)
    dm = cfg.d_mlp
    idx_all = _bag_index(p, H, a, b).reshape(p * p, 3 * H)
    for m in range(M):
        TAB, c_in, c_u, W_L = t["TAB"][m], t["c_in"][m], t["c_u"][m], t["W_L"][m]
        sc = torch.stack([t["S"][m, 0][a], t["S"][m, 1][b], t["s2"][m].expand(p * p, H)], -1)
        pat = sc.sub_(sc.amax(-1, keepdim=True)).exp_()  # softmax over the 3 positions, (N, H, 3)
        pat = pat.div_(pat.sum(-1, keepdim=True)).reshape(p * p, 3 * H)
        for s0 in range(0, p, block):
            s1 = min(p, s0 + block)
            sl = slice(s0 * p, s1 * p)
            out = F.embedding_bag(idx_all[sl], TAB, per_sample_weights=pat[sl], mode="sum")
            pre = out[:, :dm]
            pre.add_(c_in).relu_()
            yield m, s0, s1, torch.addmm(out[:, dm:] + c_u, pre, W_L)[None]


def grid_logits(params: Mapping[str, Tensor], cfg: ModelConfig, a: Tensor, b: Tensor, block: int | None = None
                ) -> Tensor:
    """Answer logits ``(M, p*p, p)`` of ``M`` stacked models for the pairs ``a, b (p*p,)`` (any order; the
    progress measures hold them s-major: ``ProgressData.a/b``); the same function as
    :func:`grokscope.fast.tables.forward_fast`."""
    p, M = cfg.p, params["W_E"].shape[0]
    block = block or block_size(p)
    out = torch.empty(M, p * p, p, dtype=params["W_E"].dtype, device=params["W_E"].device)
    for m, s0, s1, Lb in logit_blocks(params, cfg, a, b, block):
        out[m, s0 * p:s1 * p] = Lb[0]
    return out


def block_size(p: int, pairs: int = 512) -> int:
    """Values of ``s`` per block: about ``pairs`` pairs (~1 MB of MLP activations at d_mlp = 512)."""
    return max(1, min(p, pairs // p))
