"""grokscope models to and from TransformerLens (an optional extra: ``pip install 'grokscope[tl]'``).

Our weights already have TransformerLens's names and layouts (``W_Q (n_heads, d_model, d_head)``, ...), so the
export is a renaming plus the biases our model does not have, all zero (``b_Q, b_K, b_V, b_O, b_U``):

* :func:`hooked_state_dict` — the ``HookedTransformer`` state dict and config keywords; needs no TransformerLens.
* :func:`to_transformer_lens` — a live TransformerLens model: on TransformerLens 3.x a ``HookedTransformer``; on
  4.x (which removed ``HookedTransformer``) a ``TransformerBridge`` around its native model (``boot_native``).
  Both have the hook names of our model (``blocks.0.attn.hook_pattern``, ``blocks.0.mlp.hook_post``, ...) and
  the same logits (all positions, all ``p + 1`` outputs: ``d_vocab_out = d_vocab``).
* :func:`save` / :func:`load_transformer_lens` — the file ``grokscope export`` writes: ``torch.save`` of
  ``{"cfg": HookedTransformerConfig keywords, "state_dict": HookedTransformer state dict}``.
* :func:`from_transformer_lens` — the way back: a ``HookedTransformer``, a ``TransformerBridge`` or a state
  dict of either (e.g. the 3.x Grokking demo's, ``d_vocab_out = p``) as a grokscope :class:`Transformer`.

TransformerLens is imported only inside the functions that need it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..checks import ConfigError
from ..config import ModelConfig
from ..files import atomic_write
from .transformer import Transformer

_ATTN_BIASES = ("b_Q", "b_K", "b_V")


def hooked_state_dict(model: Transformer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config keywords, state dict)`` of the equivalent ``HookedTransformer`` (float32, on the CPU)."""
    c = model.cfg
    cfg = dict(n_layers=c.n_layers, d_model=c.d_model, d_head=c.d_head, n_heads=c.n_heads, d_mlp=c.d_mlp,
               act_fn=c.act, normalization_type=None, d_vocab=c.d_vocab, d_vocab_out=c.n_out, n_ctx=c.n_ctx,
               positional_embedding_type="standard", attn_only=c.attn_only)
    p = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    sd = {"embed.W_E": p["W_E"], "pos_embed.W_pos": p["W_pos"]}
    for i in range(c.n_layers):
        b = f"blocks.{i}."
        for w in ("W_Q", "W_K", "W_V"):
            sd[b + "attn." + w] = p[b + "attn." + w]
        for w in _ATTN_BIASES:
            sd[b + "attn." + w] = torch.zeros(c.n_heads, c.d_head)
        sd[b + "attn.W_O"] = p[b + "attn.W_O"]
        sd[b + "attn.b_O"] = torch.zeros(c.d_model)
        for w in ("W_in", "b_in", "W_out", "b_out") if not c.attn_only else ():
            sd[b + "mlp." + w] = p[b + "mlp." + w]
    sd["unembed.W_U"] = p["W_U"]
    sd["unembed.b_U"] = torch.zeros(c.n_out)
    return cfg, sd


def _tl_major() -> int:
    """The installed TransformerLens's major version (ConfigError naming the extra if it is absent)."""
    try:
        from importlib.metadata import version

        import transformer_lens  # noqa: F401
    except ImportError:
        raise ConfigError("to='transformer-lens' needs TransformerLens: pip install 'grokscope[tl]'") from None
    return int(version("transformer_lens").split(".")[0])


def build(cfg: dict[str, Any], sd: dict[str, torch.Tensor], device: str | torch.device = "cpu"):
    """A TransformerLens model from HookedTransformer config keywords and state dict: a ``HookedTransformer`` on
    TransformerLens 3.x, a ``TransformerBridge`` around the native model on 4.x. Eval mode."""
    if _tl_major() < 4:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        with warnings.catch_warnings():  # 3.x warns that HookedTransformer goes in 4.0: we use the bridge there
            warnings.simplefilter("ignore", DeprecationWarning)
            tl = HookedTransformer(HookedTransformerConfig(**cfg, device=str(device), dtype=torch.float32))
        res = tl.load_state_dict({k: v.to(device) for k, v in sd.items()}, strict=False)
        bad = [k for k in res.missing_keys if not k.endswith((".mask", ".IGNORE"))] + list(res.unexpected_keys)
    else:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.sources.native import boot
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        tcfg = TransformerBridgeConfig(**cfg)
        tl = boot(tcfg, device=device, dtype=torch.float32)
        res = tl.load_state_dict(convert_tl_checkpoint(sd, tcfg), strict=False)
        bad = list(res.missing_keys) + list(res.unexpected_keys)
    if bad:
        raise ConfigError(f"state_dict is invalid for TransformerLens: mismatched tensors {', '.join(bad)}")
    return tl.eval()


def to_transformer_lens(source, epoch: int | None = None, model: int = 0, device: str | torch.device = "cpu"):
    """A TransformerLens model equal to ``source``: a :class:`Transformer`, or a :class:`grokscope.Run` (its model
    ``model`` at checkpoint ``epoch``, default the last)."""
    m = source if isinstance(source, Transformer) else source.model(epoch, model)
    return build(*hooked_state_dict(m), device=device)


def save(model: Transformer, path: str | Path) -> Path:
    """Write ``{"cfg", "state_dict"}`` (HookedTransformer format) with ``torch.save``, atomically."""
    cfg, sd = hooked_state_dict(model)
    atomic_write(Path(path), lambda t: torch.save({"format": "transformer_lens.HookedTransformer", "cfg": cfg,
                                                  "state_dict": sd}, t))
    return Path(path)


def load_transformer_lens(path: str | Path, device: str | torch.device = "cpu"):
    """The TransformerLens model of a file written by :func:`save` (``grokscope export``)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(obj, dict) and isinstance(obj.get("cfg"), dict) and isinstance(obj.get("state_dict"), dict)):
        raise ConfigError(f"path={str(path)!r} is invalid: not a file of `grokscope export` (a dict with 'cfg' and "
                          "'state_dict')")
    return build(obj["cfg"], obj["state_dict"], device=device)


# ---------------------------------------------------------------------- the way back
def _native_to_hooked(sd: dict[str, torch.Tensor], n_heads: int) -> dict[str, torch.Tensor]:
    """TransformerLens 4.x native (``TransformerBridge``) tensors in HookedTransformer layout."""
    out = {"embed.W_E": sd["embed.weight"], "pos_embed.W_pos": sd["pos_embed.weight"],
           "unembed.W_U": sd["unembed.weight"].T, "unembed.b_U": sd.get("unembed.bias")}
    i = 0
    while f"blocks.{i}.attn.q.weight" in sd:
        b = f"blocks.{i}."
        for w, n in (("W_Q", "q"), ("W_K", "k"), ("W_V", "v")):
            t = sd[f"{b}attn.{n}.weight"]  # (n_heads * d_head, d_model)
            out[b + "attn." + w] = t.reshape(n_heads, -1, t.shape[1]).transpose(1, 2)
            if f"{b}attn.{n}.bias" in sd:
                out[b + "attn.b_" + w[-1]] = sd[f"{b}attn.{n}.bias"].reshape(n_heads, -1)
        o = sd[b + "attn.o.weight"]  # (d_model, n_heads * d_head)
        out[b + "attn.W_O"] = o.reshape(o.shape[0], n_heads, -1).permute(1, 2, 0)
        out[b + "attn.b_O"] = sd.get(b + "attn.o.bias")
        out[b + "mlp.W_in"], out[b + "mlp.b_in"] = sd[b + "mlp.in.weight"].T, sd[b + "mlp.in.bias"]
        out[b + "mlp.W_out"], out[b + "mlp.b_out"] = sd[b + "mlp.out.weight"].T, sd[b + "mlp.out.bias"]
        i += 1
    return {k: v for k, v in out.items() if v is not None}


def from_transformer_lens(source, act: str | None = None, n_heads: int | None = None) -> Transformer:
    """A grokscope :class:`Transformer` from a TransformerLens grokking model: a ``HookedTransformer``, a
    ``TransformerBridge``, a state dict of either, a file dict of :func:`save` or of the Grokking demo
    (``{"model": state_dict, ...}``). ``act`` (default: the model's ``act_fn``, else relu) and ``n_heads`` (4.x
    state dicts only) cannot be read off a bare state dict. The model must be ours: no LayerNorm, zero attention
    and unembedding biases, ``d_vocab_out`` ``p`` (the '=' column of ``W_U`` is then zero) or ``p + 1``."""
    cfg = getattr(source, "cfg", None)
    if isinstance(source, dict):
        sd = source.get("state_dict", source.get("model", source))
        cfg = source.get("cfg", source.get("config"))
    else:
        sd = source.state_dict()
    if isinstance(cfg, dict):
        act, n_heads = act or cfg.get("act_fn"), n_heads or cfg.get("n_heads")
    elif cfg is not None:
        act, n_heads = act or getattr(cfg, "act_fn", None), n_heads or getattr(cfg, "n_heads", None)
        if getattr(cfg, "normalization_type", None) is not None:
            raise ConfigError(f"normalization_type={cfg.normalization_type!r} is invalid: grokscope's model has "
                              "no LayerNorm (it must be None)")
    sd = {k: v.detach().to("cpu", torch.float32) for k, v in sd.items() if isinstance(v, torch.Tensor)}
    ln = [k for k in sd if re.search(r"(^|\.)ln(\d|_final)?\.", k)]
    if ln:
        raise ConfigError(f"state_dict is invalid: it has LayerNorm weights ({ln[0]}); grokscope's model has none")
    if "embed.weight" in sd:
        if n_heads is None:
            raise ConfigError("n_heads is required for a TransformerLens 4.x state dict (it is not in its shapes)")
        sd = _native_to_hooked(sd, n_heads)
    needed = ("embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q", "blocks.0.mlp.W_in", "unembed.W_U")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ConfigError(f"state_dict is invalid: not a TransformerLens transformer (no {', '.join(missing)})")
    V, D = sd["embed.W_E"].shape
    H, _, dh = sd["blocks.0.attn.W_Q"].shape
    act = act or "relu"
    if act not in ("relu", "gelu"):
        raise ConfigError(f"act_fn={act!r} is invalid: grokscope's model has relu or gelu")
    if H * dh != D:
        raise ConfigError(f"d_head={dh} is invalid: grokscope needs n_heads * d_head = d_model ({H} * {dh} != {D})")
    n_layers = sum(1 for k in sd if k.endswith("attn.W_Q"))
    mcfg = ModelConfig(d_vocab=V, n_ctx=sd["pos_embed.W_pos"].shape[0], d_model=D, n_heads=H,
                       d_mlp=sd["blocks.0.mlp.W_in"].shape[1], n_layers=n_layers, act=act)
    nonzero = [k for k in sd if k.rsplit(".", 1)[-1] in (*_ATTN_BIASES, "b_O", "b_U") and bool(sd[k].any())]
    if nonzero:
        raise ConfigError(f"{nonzero[0]} is invalid: grokscope's model has no such bias, so it must be zero")
    W_U = sd["unembed.W_U"]
    if W_U.shape[1] == V - 1:
        W_U = torch.cat([W_U, W_U.new_zeros(D, 1)], 1)  # no logit for '=' (the demo's d_vocab_out = p)
    elif W_U.shape[1] != V:
        raise ConfigError(f"d_vocab_out={W_U.shape[1]} is invalid: must be p = {V - 1} or p + 1 = {V}")
    ours = {"W_E": sd["embed.W_E"], "W_pos": sd["pos_embed.W_pos"], "W_U": W_U}
    names = ("attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O", "mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out")
    missing = [f"blocks.{i}.{k}" for i in range(n_layers) for k in names if f"blocks.{i}.{k}" not in sd]
    if missing:
        raise ConfigError(f"state_dict is invalid: missing {', '.join(missing[:3])}")
    for i in range(n_layers):
        for k in names:
            ours[f"blocks.{i}.{k}"] = sd[f"blocks.{i}.{k}"]
    bad = [k for k, v in ours.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ConfigError(f"state_dict is invalid: {bad[0]} has non-finite weights (NaN or infinite)")
    m = Transformer(mcfg, seed=None)
    want = m.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(want[k].shape)})" for k, v in ours.items()
             if tuple(v.shape) != tuple(want[k].shape)]
    if wrong:
        raise ConfigError(f"state_dict is invalid: wrong shapes: {', '.join(wrong[:3])}")
    m.load_state_dict({k: v.contiguous() for k, v in ours.items()})
    return m.eval()
