"""The sequence tasks' training forward: the logits of the scored positions only.

:class:`grokscope.model.Transformer` runs every position through every block; the loss of a sequence task
(:mod:`grokscope.tasks`) reads the logits of ``n_scored`` positions per example only (digit addition: 6 of 18;
induction: 30 of 85; skip trigram: 1 of its 200 at the presets' length). :func:`forward_scored` computes *the same function* at those
positions:

* the blocks before the last run on every position (their outputs are the last block's keys and values);
* the last block takes the query, the attention output, the MLP and the unembedding at the scored positions
  only, its keys and values still from every position (causally masked by each query's own position);
* the first block's input is the embedding ``W_E[token] + W_pos[t]``, so its queries, keys and values are
  gathered from small tables ``W_E @ W`` and ``W_pos @ W`` (``d_vocab`` and ``n_ctx`` rows) instead of a
  ``(n * n_ctx, d_model) x (d_model, 3 * n_heads * d_head)`` matmul (the modular fast path's trick,
  :mod:`grokscope.fast.tables`); later blocks' Q, K and V are one fused matmul;
* the heads' outputs go through ``W_O`` concatenated, as one ``(n_heads * d_head, d_model)`` matmul.

The attention is the compiled kernel of :mod:`grokscope.fast.kernel` where it can be built (CPU), else
``torch.nn.functional.scaled_dot_product_attention`` (fused; ~25% faster on CPU than the three separate ops) with a
boolean mask: a masked key's weight is exactly 0, as ``exp(-1e10 - max)`` is in the plain
path's ``where(mask, scores, -1e10)``. Only the order of floating-point
operations differs; ``tests/test_seqtasks.py`` checks the logits, the loss and every parameter's gradient against
the plain full-sequence path in float64, for 1- and 2-layer, full and attention-only models, and for every task,
with the kernel and without it.

Parameters are a dict ``{name: tensor}`` without a model axis (one model of :meth:`grokscope.training.trainer.Trainer.named_params`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import kernel as seqkernel
from ..config import ModelConfig

#: use the compiled attention (:mod:`grokscope.fast.kernel`) where it is built; else PyTorch's fused attention.
#: KERNEL_RULE: only where a layer's queries are at least a quarter of its keys: the kernel copies each (example,
#: head)'s keys and values into its own layouts, which costs more than it saves for few queries over many keys
#: (the skip trigram's one query over 200 keys: 0.89x torch's attention; induction-finite 1.31x, digit addition
#: 1.05x; ``benchmarks/seq_speed.py``, README "Other tasks").
USE_KERNEL = True


def scored_positions(mask: torch.Tensor) -> torch.Tensor:
    """``(n, n_scored)`` positions of each example's scored tokens, ascending (every example of a task has the
    same number): the order of ``logits[mask]``."""
    n = mask.shape[0]
    return mask.nonzero()[:, 1].reshape(n, -1)


def _heads(t: torch.Tensor, H: int) -> torch.Tensor:
    """(n, pos, H * dh) -> (n, H, pos, dh)."""
    n, T, _ = t.shape
    return t.view(n, T, H, -1).transpose(1, 2)


def _w(p: dict[str, torch.Tensor], name: str, cfg: ModelConfig) -> torch.Tensor:
    """``W_Q`` / ``W_K`` / ``W_V`` ``(H, D, dh)`` as one ``(D, H * dh)`` matrix, head-major columns."""
    return p[name].transpose(0, 1).reshape(cfg.d_model, cfg.n_heads * cfg.d_head)


def _project(p: dict[str, torch.Tensor], x: torch.Tensor | None, tokens: torch.Tensor, pos: torch.Tensor | None,
             W: torch.Tensor) -> torch.Tensor:
    """``x @ W`` for a block's input ``x``, or, for the first block (``x`` None: its input is the embedding
    ``W_E[tokens] + W_pos[pos]``), the same from two small tables: ``(W_E @ W)[tokens] + (W_pos @ W)[pos]``
    (``pos`` None: positions 0..T-1)."""
    if x is not None:
        return x @ W
    T = tokens.shape[1]
    return (p["W_E"] @ W)[tokens] + (p["W_pos"][:T] @ W if pos is None else (p["W_pos"] @ W)[pos])


def _attention(p: dict[str, torch.Tensor], pre: str, x: torch.Tensor | None, tokens: torch.Tensor,
               qpos: torch.Tensor | None, xq: torch.Tensor | None, cfg: ModelConfig) -> torch.Tensor:
    """One attention layer on the block input ``x (n, T, D)`` (None for the first block: the embedding of
    ``tokens``). ``qpos is None``: queries at every position (causal); else queries at positions ``qpos (n, S)``
    (their residual ``xq``, unless this is the first block), keys and values from every position. Returns ``(n,
    queries, D)``."""
    H, D, dh = cfg.n_heads, cfg.d_model, cfg.d_head
    n, T = tokens.shape
    W_Q, W_K, W_V = (_w(p, pre + w, cfg) for w in ("W_Q", "W_K", "W_V"))
    if qpos is None:
        q, k, v = _project(p, x, tokens, None, torch.cat([W_Q, W_K, W_V], 1)).split(H * dh, dim=-1)
        keep = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # (q, k)
    else:
        k, v = _project(p, x, tokens, None, torch.cat([W_K, W_V], 1)).split(H * dh, dim=-1)
        q = xq @ W_Q if x is not None else _project(p, None, tokens.gather(1, qpos), qpos, W_Q)
        keep = (torch.arange(T, device=tokens.device) <= qpos[:, :, None])[:, None]  # (n, 1, S, T)
    if USE_KERNEL and 4 * q.shape[1] >= T and seqkernel.usable(q):  # the compiled attention (see KERNEL_RULE)
        lim = torch.arange(T, device=tokens.device).expand(n, T) if qpos is None else qpos  # last key each query sees
        z = seqkernel.attention(q.view(n, -1, H, dh), k.view(n, T, H, dh), v.view(n, T, H, dh), lim, 1 / math.sqrt(dh))
        return z.reshape(n, -1, H * dh) @ p[pre + "W_O"].reshape(H * dh, D)
    q, k, v = _heads(q, H), _heads(k, H), _heads(v, H)
    # softmax(q k^T / sqrt(dh), masked) v, fused (the masked keys' weights are exactly 0, as with -1e10)
    z = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1 / math.sqrt(dh))  # (n, H, queries, dh)
    z = z.transpose(1, 2).reshape(n, -1, H * dh)
    return z @ p[pre + "W_O"].reshape(H * dh, D)


def _mlp(p: dict[str, torch.Tensor], pre: str, x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    h = torch.addmm(p[pre + "b_in"], x.reshape(-1, x.shape[-1]), p[pre + "W_in"])
    h = F.relu(h) if cfg.act == "relu" else F.gelu(h)
    return torch.addmm(p[pre + "b_out"], h, p[pre + "W_out"]).view_as(x)


def forward_scored(p: dict[str, torch.Tensor], tokens: torch.Tensor, pos: torch.Tensor,
                   cfg: ModelConfig) -> torch.Tensor:
    """Logits ``(n, S, n_out)`` at positions ``pos (n, S)`` of ``tokens (n, T)``: the plain path's
    ``Transformer(tokens)`` gathered at ``pos``."""
    n, T = tokens.shape
    D = cfg.d_model
    x = None  # the residual stream (n, T, D); None while it is still the embedding (first block)

    def embed() -> torch.Tensor:
        return p["W_E"][tokens] + p["W_pos"][:T]

    L = cfg.n_layers
    for i in range(L):
        pre = f"blocks.{i}."
        if i < L - 1:
            a = _attention(p, pre + "attn.", x, tokens, None, None, cfg)
            x = (embed() if x is None else x) + a
            if not cfg.attn_only:
                x = x + _mlp(p, pre + "mlp.", x, cfg)
            continue
        if x is None:
            xs = p["W_E"][tokens.gather(1, pos)] + p["W_pos"][pos]  # (n, S, D): the scored positions' residual
        else:
            xs = x.gather(1, pos[:, :, None].expand(-1, -1, D))
        xs = xs + _attention(p, pre + "attn.", x, tokens, pos, xs, cfg)
        if not cfg.attn_only:
            xs = xs + _mlp(p, pre + "mlp.", xs, cfg)
        return xs @ p["W_U"]
    raise AssertionError("n_layers >= 1")
