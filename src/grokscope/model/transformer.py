"""The paper's transformer (Appendix A), top to bottom, with named hook points.

One or more blocks of attention + MLP, no LayerNorm, learned positional embedding, untied embed and
unembed, no attention biases, MLP biases. Weights are named as in the paper and TransformerLens:
``W_E (d_vocab, d_model)``, ``W_pos (n_ctx, d_model)``, ``W_Q/W_K/W_V (n_heads, d_model, d_head)``,
``W_O (n_heads, d_head, d_model)``, ``W_in (d_model, d_mlp)``, ``b_in``, ``W_out (d_mlp, d_model)``,
``b_out``, ``W_U (d_model, d_vocab)``.

This is the *plain* implementation: it runs all ``n_ctx`` positions, and is what analysis and the
equivalence tests use. Training uses the fast path in :mod:`grokscope.fast.tables`, tested against it.

Initialisation follows the authors' code exactly (same shapes, same draw order from one generator):
every weight is ``randn / sqrt(d_model)`` except ``W_U``, which is ``randn / sqrt(d_vocab)``; biases
are zero (``W_out`` too is divided by ``sqrt(d_model)``, not ``sqrt(d_mlp)``). ``embed_init="unit"`` draws
``W_E`` as plain ``randn`` (the same numbers times ``sqrt(d_model)``): the authors' induction models start at
loss 5.06, which only an unscaled ``W_E`` reproduces (``docs/results/records/d3-data-oracle.md``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks as ck
from ..config import EMBED_INITS, ModelConfig
from .hooks import HookPoint, name_hook_points, run_with_cache


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        H, D, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(H, D, dh))
        self.W_K = nn.Parameter(torch.empty(H, D, dh))
        self.W_V = nn.Parameter(torch.empty(H, D, dh))
        self.W_O = nn.Parameter(torch.empty(H, dh, D))
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)), persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, pos, d_model)
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q))  # (batch, pos, head, d_head)
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K))
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])  # (batch, head, q, k)
        T = x.shape[1]
        # the authors' tril(scores) - 1e10 * (1 - mask), written as a where
        scores = self.hook_attn_scores(torch.where(self.mask[:T, :T], scores, scores.new_tensor(-1e10)))
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))  # (batch, pos, head, d_head)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act = cfg.act
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(F.relu(pre) if self.act == "relu" else F.gelu(pre))
        return post @ self.W_out + self.b_out


class Block(nn.Module):
    """Attention then MLP; an attention-only block (``d_mlp == 0``) has no MLP and no ``hook_resid_mid`` /
    ``hook_mlp_out`` (as TransformerLens's ``attn_only`` blocks)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        if not cfg.attn_only:
            self.mlp = MLP(cfg)
            self.hook_resid_mid, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        if not hasattr(self, "mlp"):
            return self.hook_resid_post(x + self.hook_attn_out(self.attn(x)))
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(x)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(x)))


class Transformer(nn.Module):
    """``forward(tokens (batch, pos)) -> logits (batch, pos, n_out)`` (``n_out``: ``d_out``, else ``d_vocab``);
    for modular addition the answer is ``logits[:, -1, :p]`` (see :meth:`answer_logits`)."""

    def __init__(self, cfg: ModelConfig, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.n_out))
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        name_hook_points(self)
        if seed is not None:
            self.load_state_dict(init_params(cfg, seed))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """No dropout: this model is for analysis; training's dropout (Appendix D.1) is in :mod:`grokscope.fast.tables`."""
        x = self.hook_embed(self.W_E[tokens]) + self.hook_pos_embed(self.W_pos[: tokens.shape[1]])
        for block in self.blocks:
            x = block(x)
        return x @ self.W_U

    def answer_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of the last position over the p number tokens, ``(batch, p)``."""
        return self(tokens)[:, -1, : self.cfg.p]

    def run_with_cache(self, tokens: torch.Tensor, names=None, fwd_hooks=None):
        return run_with_cache(self, tokens, names, fwd_hooks)

    @property
    def hook_names(self) -> list[str]:
        return list(name_hook_points(self))


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the parameters, in ``state_dict`` order."""
    H, D, dh, M, V = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"W_E": (V, D), "W_pos": (cfg.n_ctx, D)}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        shapes |= {b + "attn.W_Q": (H, D, dh), b + "attn.W_K": (H, D, dh), b + "attn.W_V": (H, D, dh),
                   b + "attn.W_O": (H, dh, D)}
        if not cfg.attn_only:
            shapes |= {b + "mlp.W_in": (D, M), b + "mlp.b_in": (M,), b + "mlp.W_out": (M, D), b + "mlp.b_out": (D,)}
    shapes["W_U"] = (D, cfg.n_out)
    return shapes


def init_params(cfg: ModelConfig, seed: int, dtype: torch.dtype = torch.float32,
                embed_init: str = "scaled") -> dict[str, torch.Tensor]:
    """The authors' initialisation, drawn in their order and their layouts, converted to ours.

    Same numbers as ``torch.manual_seed(seed); Transformer(...)`` in the paper's code. An attention-only model
    draws no MLP weights; ``W_U`` is ``(d_model, n_out)`` divided by ``sqrt(n_out)`` (``sqrt(d_vocab)`` for the
    modular task, where the two are equal).
    """
    g = torch.Generator().manual_seed(seed)
    H, D, dh, M, V = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.d_vocab

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g) / scale

    sd = math.sqrt(D)
    ck.choice("embed_init", embed_init, EMBED_INITS)
    theirs: dict[str, torch.Tensor] = {"embed.W_E": randn(D, V, scale=sd if embed_init == "scaled" else 1.0),
                                       "pos_embed.W_pos": randn(cfg.n_ctx, D, scale=sd)}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        theirs[b + "attn.W_K"] = randn(H, dh, D, scale=sd)
        theirs[b + "attn.W_Q"] = randn(H, dh, D, scale=sd)
        theirs[b + "attn.W_V"] = randn(H, dh, D, scale=sd)
        theirs[b + "attn.W_O"] = randn(D, H * dh, scale=sd)
        if not cfg.attn_only:
            theirs[b + "mlp.W_in"] = randn(M, D, scale=sd)
            theirs[b + "mlp.b_in"] = torch.zeros(M)
            theirs[b + "mlp.W_out"] = randn(D, M, scale=sd)
            theirs[b + "mlp.b_out"] = torch.zeros(D)
    theirs["unembed.W_U"] = randn(D, cfg.n_out, scale=math.sqrt(cfg.n_out))
    return {k: v.to(dtype) for k, v in from_authors_state_dict(theirs, cfg).items()}


def from_authors_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Convert the authors' ``Transformer`` state dict (see shared/reference/README.md) to ours. Their
    attention-only models (``attn_blocks.{i}.attn.*``, no MLP) become our ``blocks.{i}.attn.*``."""
    pre = _authors_block_prefix(sd)
    n_heads = sd[f"{pre}.0.attn.W_K"].shape[0]
    out = {"W_E": sd["embed.W_E"].T.contiguous(), "W_pos": sd["pos_embed.W_pos"].clone()}
    i = 0
    while f"{pre}.{i}.attn.W_K" in sd:
        a, b = f"{pre}.{i}.", f"blocks.{i}."
        for w in ("W_Q", "W_K", "W_V"):
            out[b + "attn." + w] = sd[a + "attn." + w].transpose(1, 2).contiguous()  # (H, dh, D) -> (H, D, dh)
        W_O = sd[a + "attn.W_O"]  # (D, H*dh)
        D = W_O.shape[0]
        out[b + "attn.W_O"] = W_O.reshape(D, n_heads, -1).permute(1, 2, 0).contiguous()  # (H, dh, D)
        if a + "mlp.W_in" in sd:
            out[b + "mlp.W_in"] = sd[a + "mlp.W_in"].T.contiguous()
            out[b + "mlp.b_in"] = sd[a + "mlp.b_in"].clone()
            out[b + "mlp.W_out"] = sd[a + "mlp.W_out"].T.contiguous()
            out[b + "mlp.b_out"] = sd[a + "mlp.b_out"].clone()
        i += 1
    out["W_U"] = sd["unembed.W_U"].clone()
    return out


def _authors_block_prefix(sd: dict[str, torch.Tensor]) -> str:
    return "blocks" if "blocks.0.attn.W_K" in sd else "attn_blocks"


def config_from_authors_state_dict(sd: dict[str, torch.Tensor], act: str = "relu") -> ModelConfig:
    """The shape of an authors' model: full or attention-only (no MLP keys: ``d_mlp`` 0), its output classes from
    ``W_U`` (``d_out`` None when they equal the vocabulary, as in the modular task)."""
    D, V = sd["embed.W_E"].shape
    pre = _authors_block_prefix(sd)
    H = sd[f"{pre}.0.attn.W_K"].shape[0]
    n_layers = sum(1 for k in sd if k.endswith("attn.W_K"))
    M = sd[f"{pre}.0.mlp.W_in"].shape[0] if f"{pre}.0.mlp.W_in" in sd else 0
    n_out = sd["unembed.W_U"].shape[1]
    return ModelConfig(d_vocab=V, n_ctx=sd["pos_embed.W_pos"].shape[0], d_model=D, n_heads=H, d_mlp=M,
                       n_layers=n_layers, act=act, d_out=None if n_out == V else n_out)
