"""Batched forward passes over K stacked models: a plain one and the fast training path.

Parameters are a dict ``{name: (K, *shape)}`` with the names of :func:`grokscope.model.param_shapes`.
Both functions return the answer logits ``(K, N, p)`` -- the last position over the p number tokens --
for inputs ``a, b`` of shape ``(K, N)`` (the third token is always ``=``).

:func:`forward_plain` runs all three positions through every block (any ``n_layers``), exactly as
:class:`grokscope.model.Transformer` does, with a leading model axis.

:func:`forward_deep` (any number of blocks, no dropout) computes the same function with the sequence tasks'
scored-position forward (only position 2 through the last block).

:func:`forward_fast` (one block only) computes the *same function* using the task's structure:

* only the last position feeds the loss, and its query ``x_2 = W_E[=] + W_pos[2]`` is the same for every
  input, so each head's attention score for position 0 depends only on ``a`` and for position 1 only on
  ``b``: the scores are computed once per vocabulary entry (``(K, p, H)`` tables) and gathered;
* the values, pushed through ``W_O`` (and then through ``W_in``), are likewise per-token tables, so the
  MLP pre-activation is ``x_2 W_in + b_in + sum_h sum_pos A[pos, h] * T_pos[token, h]``, an
  ``embedding_bag`` with per-sample weights instead of a ``(N, d_model) x (d_model, d_mlp)`` matmul;
* the MLP output goes straight to the logits through ``W_L = W_out W_U`` (``(d_mlp, p)``).

Only the order of floating-point operations differs; ``tests/test_fastpath.py`` checks logits and every
parameter's gradient against the plain path in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from .scored import forward_scored


def _act(x: torch.Tensor, act: str) -> torch.Tensor:
    return F.relu(x) if act == "relu" else F.gelu(x)


def _dropout_scale(keep: torch.Tensor, dropout: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``keep / (1 - p)`` per model: the inverted-dropout multiplier of each neuron."""
    return keep.to(dtype) / (1 - dropout.to(dtype)).view(-1, 1, 1)


def _apply_dropout(post: torch.Tensor, keep: torch.Tensor | None, dropout: torch.Tensor | None) -> torch.Tensor:
    if keep is None:
        return post
    return post * _dropout_scale(keep, dropout, post.dtype)


def pair_tokens(a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """The ``a b =`` sequences ``(..., 3)`` of operands ``a, b`` (``=`` is token ``p``)."""
    return torch.stack([a, b, torch.full_like(a, p)], dim=-1)


def forward_plain(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, cfg: ModelConfig,
                  keep: torch.Tensor | None = None, dropout: torch.Tensor | None = None) -> torch.Tensor:
    """Full-sequence batched forward. ``keep``: optional ``(K, N, d_mlp)`` dropout mask applied to the
    last position's MLP neurons of every block (the only position whose neurons reach the loss when
    n_layers == 1)."""
    p = cfg.p
    K, N = a.shape
    tokens = pair_tokens(a, b, p)  # (K, N, 3)
    W_E = params["W_E"]
    x = torch.gather(W_E, 1, tokens.reshape(K, -1, 1).expand(-1, -1, W_E.shape[-1])).view(K, N, 3, -1)
    x = x + params["W_pos"][:, None, :3]  # (K, N, pos, d_model)
    mask = torch.tril(torch.ones(3, 3, dtype=torch.bool, device=a.device))
    for i in range(cfg.n_layers):
        pre_ = f"blocks.{i}."
        q = torch.einsum("knpd,khde->knphe", x, params[pre_ + "attn.W_Q"])
        k = torch.einsum("knpd,khde->knphe", x, params[pre_ + "attn.W_K"])
        v = torch.einsum("knpd,khde->knphe", x, params[pre_ + "attn.W_V"])
        scores = torch.einsum("knqhe,knphe->knhqp", q, k) / math.sqrt(cfg.d_head)
        scores = torch.where(mask, scores, scores.new_tensor(-1e10))
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("knhqp,knphe->knqhe", pattern, v)
        x = x + torch.einsum("knqhe,khed->knqd", z, params[pre_ + "attn.W_O"])
        pre = torch.einsum("knpd,kdm->knpm", x, params[pre_ + "mlp.W_in"]) + params[pre_ + "mlp.b_in"][:, None, None]
        post = _act(pre, cfg.act)
        if keep is not None:
            post = torch.cat([post[:, :, :2], _apply_dropout(post[:, :, 2], keep, dropout)[:, :, None]], dim=2)
        x = x + torch.einsum("knpm,kmd->knpd", post, params[pre_ + "mlp.W_out"]) + params[pre_ + "mlp.b_out"][:, None, None]
    return torch.einsum("knd,kdv->knv", x[:, :, 2], params["W_U"][:, :, :p])


def forward_deep(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The answer logits ``(K, N, p)`` of models with any ``n_layers`` (no dropout): per model, the sequence tasks'
    scored-position forward (:func:`grokscope.fast.scored.forward_scored`) on ``a b =`` read at position 2 -- the
    blocks before the last on all three positions, the last block's query, MLP and unembedding at position 2
    only, the first block's Q, K, V from per-token tables. The same function as :func:`forward_plain` (tested in
    float64, ``tests/test_fastpath.py``); 2.0x faster per epoch for the two-layer mainline
    (``benchmarks/deep_speed.py``, ``docs/performance.md``)."""
    p = cfg.p
    K, N = a.shape
    tokens = pair_tokens(a, b, p)  # (K, N, 3)
    pos = torch.full((N, 1), 2, dtype=torch.long, device=a.device)
    return torch.stack([forward_scored({n: v[k] for n, v in params.items()}, tokens[k], pos, cfg)[:, 0, :p]
                        for k in range(K)])


#: compute the MLP pre-activation from per-token tables (True) or as one dense matmul (False)
PRE_VIA_TABLES = False  # measured: the dense matmul is ~20% faster per epoch on a 2-core CPU


def segment_plan(tok: torch.Tensor, p: int) -> torch.Tensor:
    """Group the examples of each model by token: ``(K, p, L)`` flat row indices into ``K*N`` rows, padded
    with the dummy row ``K*N``. Used to turn the embedding-bag backward into small dense matmuls."""
    K, N = tok.shape
    key = (tok + p * torch.arange(K, device=tok.device)[:, None]).flatten()  # (K*N,) group id k*p + token
    sorted_key, order = torch.sort(key, stable=True)
    counts = torch.bincount(key, minlength=K * p)
    L = max(int(counts.max()), 1)
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(K * N, device=tok.device) - start[sorted_key]
    seg = torch.full((K * p, L), K * N, dtype=torch.long, device=tok.device)
    seg[sorted_key, pos] = order
    return seg.view(K, p, L)


class _TokenBag(torch.autograd.Function):
    """``out[k, n] = sum_h sum_s pattern[k, n, h, s] * table[k, row(s, token_s[k, n], h)]`` where the rows of
    ``table (K, 2*p*H + H, F)`` are [position 0: p*H][position 1: p*H][position 2: H] (row ``t*H + h``).

    Forward is one ``embedding_bag``. Backward uses the examples grouped by token (``segment_plan``): the
    table gradient of token t is ``pattern[group t]^T @ g[group t]``, a batched matmul, instead of torch's
    scatter-based embedding-bag backward."""

    @staticmethod
    def forward(ctx, table, pattern, a, b, seg_a, seg_b):
        K, N, H, _ = pattern.shape
        R, p = table.shape[1], (table.shape[1] - H) // (2 * H)
        hh = torch.arange(H, device=a.device)
        kk = torch.arange(K, device=a.device)[:, None, None, None] * R
        idx = torch.stack([a[..., None] * H + hh, p * H + b[..., None] * H + hh, (2 * p * H + hh).expand(K, N, H)],
                          dim=-1) + kk  # (K, N, H, 3)
        out = F.embedding_bag(idx.reshape(K * N, 3 * H), table.reshape(K * R, -1),
                              per_sample_weights=pattern.reshape(K * N, 3 * H), mode="sum")
        ctx.save_for_backward(table, pattern, seg_a, seg_b)
        return out.view(K, N, -1)

    @staticmethod
    def backward(ctx, g):
        table, pattern, seg_a, seg_b = ctx.saved_tensors
        K, N, H, _ = pattern.shape
        R, Fd = table.shape[1], table.shape[2]
        p = (R - H) // (2 * H)
        g = g.contiguous()
        g_pad = torch.cat([g.reshape(K * N, Fd), g.new_zeros(1, Fd)])
        g_table = table.new_empty(K, R, Fd)
        g_pattern = pattern.new_empty(K, N, H, 3)
        for s, seg in ((0, seg_a), (1, seg_b)):
            L = seg.shape[-1]
            rows = seg.flatten()
            gs = torch.index_select(g_pad, 0, rows).view(K * p, L, Fd)  # gradient rows grouped by token
            w_pad = torch.cat([pattern[..., s].reshape(K * N, H), pattern.new_zeros(1, H)])
            ws = torch.index_select(w_pad, 0, rows).view(K * p, L, H)
            g_table[:, s * p * H:(s + 1) * p * H] = torch.bmm(ws.transpose(1, 2), gs).view(K, p * H, Fd)
            tab = table[:, s * p * H:(s + 1) * p * H].reshape(K * p, H, Fd)
            gw = pattern.new_empty(K * N + 1, H)  # the padding entries all land on the dummy last row
            gw.index_copy_(0, rows, torch.bmm(gs, tab.transpose(1, 2)).view(-1, H))
            g_pattern[..., s] = gw[: K * N].view(K, N, H)
        g_table[:, 2 * p * H:] = torch.bmm(pattern[..., 2].transpose(1, 2), g)
        g_pattern[..., 2] = torch.bmm(g, table[:, 2 * p * H:].transpose(1, 2))
        return g_table, g_pattern, None, None, None, None


def attention_tables(params: dict[str, torch.Tensor], cfg: ModelConfig
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one-block model's attention as per-token tables, for ``K`` stacked parameter sets (training's
    :func:`forward_fast` and the progress measures' :mod:`grokscope.measures.tables` both build on it). Returns
    ``x2 (K, D)``, the residual of the ``=`` position (the same for every input); the score tables
    ``S (K, 2, p, H)`` (position 0 or 1, token, head) and ``s2 (K, H)`` (``=`` to itself); and the value
    tables through ``W_O``, ``table (K, 2pH + H, D)`` with rows ``[pos 0: t*H + h][pos 1: pH + t*H + h]
    [pos 2: 2pH + h]``."""
    p, H = cfg.p, cfg.n_heads
    W_E, W_pos = params["W_E"], params["W_pos"]
    W_Q, W_K, W_V, W_O = (params["blocks.0.attn." + w] for w in ("W_Q", "W_K", "W_V", "W_O"))
    K = W_E.shape[0]
    x2 = W_E[:, p] + W_pos[:, 2]  # (K, D): the '=' position, the same for every input
    X = W_E[:, None, :p] + W_pos[:, :2, None]  # (K, 2, p, D): positions 0 and 1, per token
    q = torch.einsum("kd,khde->khe", x2, W_Q)
    qk = torch.einsum("khde,khe->khd", W_K, q) / math.sqrt(cfg.d_head)  # (K, H, D)
    S = torch.einsum("kstd,khd->ksth", X, qk)  # (K, 2, p, H): score tables
    s2 = torch.einsum("kd,khd->kh", x2, qk)  # (K, H)
    OV = torch.einsum("kstd,khde,khef->ksthf", X, W_V, W_O)  # (K, 2, p, H, D): value tables through W_O
    ov2 = torch.einsum("kd,khde,khef->khf", x2, W_V, W_O)  # (K, H, D)
    table = torch.cat([OV.reshape(K, 2 * p * H, -1), ov2], dim=1)  # (K, 2pH + H, D)
    return x2, S, s2, table


def forward_fast(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, cfg: ModelConfig,
                 keep: torch.Tensor | None = None, dropout: torch.Tensor | None = None,
                 plan: tuple[torch.Tensor, torch.Tensor] | None = None, ws: "Workspace | None" = None) -> torch.Tensor:
    """One-block fast path; same function as :func:`forward_plain` (see module docstring).
    ``plan``: ``(segment_plan(a, p), segment_plan(b, p))``, computed here if not given. ``ws``: a
    :class:`Workspace` whose buffers the outputs may reuse (the returned logits included)."""
    if cfg.n_layers != 1:
        raise ValueError("forward_fast supports n_layers == 1 only; use forward_plain")
    p, H = cfg.p, cfg.n_heads
    K, N = a.shape
    if plan is None:
        plan = (segment_plan(a, p), segment_plan(b, p))
    W_in, b_in = params["blocks.0.mlp.W_in"], params["blocks.0.mlp.b_in"]
    W_out, b_out = params["blocks.0.mlp.W_out"], params["blocks.0.mlp.b_out"]
    W_U = params["W_U"][:, :, :p]  # (K, D, p)
    x2, S, s2, table = attention_tables(params, cfg)

    kk = torch.arange(K, device=a.device)[:, None]
    scores = torch.stack([S[kk, 0, a], S[kk, 1, b], s2[:, None].expand(K, N, H)], dim=-1)  # (K, N, H, 3)
    pattern = torch.softmax(scores, dim=-1)

    resid_mid = x2[:, None] + _TokenBag.apply(table, pattern, a, b, *plan)  # (K, N, D)
    if not PRE_VIA_TABLES and cfg.act == "relu":
        return _MLPUnembed.apply(resid_mid, W_in, b_in, W_out, b_out, W_U,
                                 None if keep is None else _dropout_scale(keep, dropout, resid_mid.dtype), ws)
    if PRE_VIA_TABLES:
        # pre = resid_mid @ W_in + b_in, with the tables pushed through W_in instead of every example
        pre = _TokenBag.apply(torch.bmm(table, W_in), pattern, a, b, *plan) + \
            (torch.einsum("kd,kdm->km", x2, W_in) + b_in)[:, None]
    else:
        pre = torch.baddbmm(b_in[:, None], resid_mid, W_in)
    post = _apply_dropout(_act(pre, cfg.act), keep, dropout)
    resid = torch.baddbmm(resid_mid + b_out[:, None], post, W_out)
    return torch.bmm(resid, W_U)


class Workspace:
    """Output buffers reused across training steps, by name and shape: large fresh outputs are new memory
    mappings that page-fault on every step. Owned by one :class:`grokscope.training.trainer.Trainer`; a buffer
    is overwritten by the next forward that asks for it, so only a caller that is done with the previous
    step's tensors may pass one (``forward_fast(..., ws=None)``, the default, allocates fresh outputs)."""

    def __init__(self):
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (name, tuple(shape), like.dtype, like.device)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


def _out(ws: Workspace | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device) if ws is None else ws.get(name, shape, like)


def _mm(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Batched matmul; plain 2-D ``mm`` for a single model (faster on CPU); into ``out`` if given."""
    if out is None:
        out = x.new_empty(x.shape[0], x.shape[1], y.shape[2])
    if x.shape[0] == 1:
        torch.mm(x[0], y[0], out=out[0])
    else:
        torch.bmm(x, y, out=out)
    return out


def _addmm_(acc: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``acc += x @ y`` in place (batched)."""
    if x.shape[0] == 1:
        acc[0].addmm_(x[0], y[0])
    else:
        acc.baddbmm_(x, y)
    return acc


#: route the MLP output to the logits through ``W_L = W_out W_U`` (True) or through the residual stream
W_L_PATH = False  # measured: no faster per epoch on a 2-core Xeon (5% fewer FLOPs), so off by default


class _MLPUnembed(torch.autograd.Function):
    """``(resid_mid + (relu(resid_mid W_in + b_in) * scale) W_out + b_out) W_U`` with a hand-written
    backward: every large product is one matmul (plain ``mm`` for a single model) written into a reused
    buffer (``ws``), the ReLU and its mask in place. With ``W_L_PATH`` the MLP output goes to the logits
    through ``W_L = W_out W_U`` (``(d_mlp, p)``, fewer columns than ``d_model``) and the residual through
    ``W_U`` directly. Same maths as autograd through the ops (tested in tests/test_fastpath.py)."""

    @staticmethod
    def forward(ctx, resid_mid, W_in, b_in, W_out, b_out, W_U, scale, ws):
        K, N, _ = resid_mid.shape
        M, V = W_in.shape[2], W_U.shape[2]
        post = _mm(resid_mid, W_in, _out(ws, "post", (K, N, M), resid_mid))
        post.add_(b_in[:, None]).clamp_min_(0)
        post_s = post if scale is None else torch.mul(post, scale, out=_out(ws, "post_s", (K, N, M), post))
        logits = _out(ws, "logits", (K, N, V), resid_mid)
        if W_L_PATH:
            W_L = torch.bmm(W_out, W_U)  # (K, d_mlp, p)
            _mm(post_s, W_L, logits)
            _addmm_(logits, resid_mid, W_U).add_(torch.bmm(b_out[:, None], W_U))
            ctx.save_for_backward(resid_mid, W_in, W_out, W_U, post, post_s, W_L, b_out, scale)
        else:
            resid = _mm(post_s, W_out, _out(ws, "resid", (K, N, W_out.shape[2]), post))
            resid.add_(resid_mid).add_(b_out[:, None])
            _mm(resid, W_U, logits)
            ctx.save_for_backward(resid_mid, W_in, W_out, W_U, post, post_s, resid, b_out, scale)
        ctx.ws = ws
        return logits.detach()  # a buffer is not itself an autograd output (a fresh tensor object on it is)

    @staticmethod
    def backward(ctx, g):
        resid_mid, W_in, W_out, W_U, post, post_s, X, b_out, scale = ctx.saved_tensors
        ws = ctx.ws
        K, N, M = post.shape
        g = g.contiguous()
        WUt = W_U.transpose(1, 2)
        if W_L_PATH:
            W_L = X
            gW_L = _mm(post_s.transpose(1, 2), g)  # (K, d_mlp, p)
            g_pre = _mm(g, W_L.transpose(1, 2), _out(ws, "g_pre", (K, N, M), g))
            gW_out = torch.bmm(gW_L, WUt)
            gsum = g.sum(1)  # (K, p)
            gW_U = _mm(resid_mid.transpose(1, 2), g).add_(torch.bmm(W_out.transpose(1, 2), gW_L))
            gW_U.add_(b_out[:, :, None] * gsum[:, None])
            gb_out = torch.bmm(gsum[:, None], WUt)[:, 0]
            g_skip = g  # the residual's gradient is g @ W_U^T, added below
        else:
            resid = X
            g_resid = _mm(g, WUt)
            gW_U = _mm(resid.transpose(1, 2), g)
            gW_out = _mm(post_s.transpose(1, 2), g_resid)
            g_pre = _mm(g_resid, W_out.transpose(1, 2), _out(ws, "g_pre", (K, N, M), g))
            gb_out = g_resid.sum(1)
            g_skip = None
        if scale is not None:
            g_pre.mul_(scale)
        torch.ops.aten.threshold_backward.grad_input(g_pre, post, 0.0, grad_input=g_pre)  # ReLU mask, in place
        gW_in = _mm(resid_mid.transpose(1, 2), g_pre)
        g_resid_mid = _mm(g_pre, W_in.transpose(1, 2))
        if g_skip is not None:
            _addmm_(g_resid_mid, g_skip, WUt)
        else:
            g_resid_mid.add_(g_resid)
        return g_resid_mid, gW_in, g_pre.sum(1), gW_out, gb_out, gW_U, None, None
