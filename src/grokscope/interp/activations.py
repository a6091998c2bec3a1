"""Activations at the ``=`` position from one forward pass over all ``p * p`` pairs, the patches of hook points,
and the loss/accuracy of answer logits (paper §4; everything after the forward pass is float64).

Interventions on the model are *patches* of hook points at position 2 (``blocks.0.attn.hook_pattern``,
``blocks.0.mlp.hook_post``, ``blocks.0.hook_resid_post``). They are evaluated either by running the model
under the scoped :func:`grokscope.model.hooks.hooks` (:func:`run_patched`) or by recomputing the model's
output downstream of the patched point in float64 from the cached activations (:func:`tail_logits`). A model of
several layers is read through its final block (the hooks of ``blocks.{n_layers-1}``; the paper's two-layer rows of
Table 5 read the final MLP): everything downstream of that block's input is exact, the analyses of ``W_E`` and of the
attention describe that block's input and attention.
Losses are the mean float64 cross-entropy of ``logits[:, -1, :p]`` (:func:`grokscope.training.trainer.cross_entropy_float64`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fourier import basis as fr
from ..model.hooks import hooks, run_with_cache
from ..jsonutil import clean
from ..training.losses import cross_entropy_float64

if TYPE_CHECKING:  # annotations only
    from jaxtyping import Float, Int  # noqa: F401

    from ..model.transformer import Transformer
    from ..tasks.modular import Dataset

DTYPE = torch.float64
POS = 2  # the '=' position, where the answer is read

HOOK_PATTERN = "blocks.0.attn.hook_pattern"
HOOK_POST = "blocks.0.mlp.hook_post"
HOOK_RESID_POST = "blocks.0.hook_resid_post"
PATCHABLE = (HOOK_PATTERN, HOOK_POST, HOOK_RESID_POST)

__all__ = ["DTYPE", "POS", "HOOK_PATTERN", "HOOK_POST", "HOOK_RESID_POST", "PATCHABLE", "Result", "Activations",
           "collect", "tail_logits", "patch_hooks", "run_patched", "Metrics", "split_masks", "metrics",
           "metrics_s_table"]


class Result:
    """``to_dict()`` for the result dataclasses: every field except those in ``_arrays`` (large tensors)."""

    _arrays: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: clean(getattr(self, f.name)) for f in fields(self) if f.name not in self._arrays}

# ====================================================================== activations at the '=' position
@dataclass
class Activations:
    """What the analysis needs from one forward pass over all ``p * p`` pairs (a-major), float64.

    ``*2`` tensors are at the ``=`` position. Weights are copied in float64; ``W_Up = W_U[:, :p]``,
    ``W_L = W_out @ W_Up`` (our layouts: ``(d_mlp, p)``).
    """

    p: int
    labels: "Int[Tensor, 'N']"
    train_idx: "Int[Tensor, 'ntr']"
    test_idx: "Int[Tensor, 'nte']"
    a: "Int[Tensor, 'N']"
    b: "Int[Tensor, 'N']"
    resid_pre2: "Float[Tensor, 'N d']"
    v: "Float[Tensor, 'N 3 H e']"
    scores2: "Float[Tensor, 'N H 3']"
    pattern2: "Float[Tensor, 'N H 3']"
    resid_mid2: "Float[Tensor, 'N d']"
    post2: "Float[Tensor, 'N m']"
    model_logits: "Float[Tensor, 'N p']"
    W_E: "Float[Tensor, 'V d']"
    W_O: "Float[Tensor, 'H e d']"
    W_in: "Float[Tensor, 'd m']"
    b_in: "Float[Tensor, 'm']"
    W_out: "Float[Tensor, 'm d']"
    b_out: "Float[Tensor, 'd']"
    W_Up: "Float[Tensor, 'd p']"
    act: str
    #: the block whose attention and MLP these are: the last one (0 for the paper's one-layer model; a deeper
    #: model's logits are read through its final block, as the paper's two-layer rows of Table 5)
    layer: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def W_L(self) -> "Float[Tensor, 'm p']":
        if "W_L" not in self._cache:
            self._cache["W_L"] = fr.wl(self.W_out, self.W_Up, p=self.p)
        return self._cache["W_L"]

    @property
    def n_heads(self) -> int:
        return self.pattern2.shape[1]

    @property
    def d_mlp(self) -> int:
        return self.post2.shape[1]

    @property
    def s(self) -> "Int[Tensor, 'N']":
        """``(a + b) mod p`` per pair."""
        return (self.a + self.b).remainder(self.p)

    @property
    def resid_logits(self) -> "Float[Tensor, 'N p']":
        """Logits contributed by everything but the MLP neurons: ``(resid_mid + b_out) @ W_U[:, :p]``."""
        if "resid_logits" not in self._cache:
            self._cache["resid_logits"] = (self.resid_mid2 + self.b_out) @ self.W_Up
        return self._cache["resid_logits"]

    @property
    def logits(self) -> "Float[Tensor, 'N p']":
        """The unpatched model's answer logits recomputed in float64 (the 'before' of every ablation)."""
        if "logits" not in self._cache:
            self._cache["logits"] = self.resid_logits + self.post2 @ self.W_L
        return self._cache["logits"]

    def mlp(self, resid_mid2: Tensor) -> Tensor:
        pre = resid_mid2 @ self.W_in + self.b_in
        return F.relu(pre) if self.act == "relu" else F.gelu(pre)


def _check_model(model: "Transformer") -> None:
    if model.cfg.n_ctx != 3:
        raise ValueError(f"the analysis expects inputs 'a b =' (n_ctx=3), got n_ctx={model.cfg.n_ctx}")


@torch.no_grad()
def collect(model: "Transformer", dataset: "Dataset") -> Activations:
    """Run ``model`` once over ``dataset.tokens`` (all ``p * p`` pairs) with ``run_with_cache``."""
    _check_model(model)
    p = dataset.p
    if model.cfg.p != p:
        raise ValueError(f"model has p={model.cfg.p} but the dataset has p={p}")
    if dataset.tokens.shape[0] != p * p:
        raise ValueError("the dataset must hold all p*p pairs (a-major), as grokscope.tasks.make_dataset builds")
    was_training = model.training
    model.eval()
    L = model.cfg.n_layers - 1  # the final block: what the logits read (Table 5's two-layer rows: its MLP)
    names = [at_layer(n, L) for n in ("blocks.0.hook_resid_pre", "blocks.0.attn.hook_v",
                                      "blocks.0.attn.hook_attn_scores", HOOK_PATTERN, "blocks.0.hook_resid_mid",
                                      HOOK_POST)]
    dev = next(model.parameters()).device
    try:
        logits, cache = run_with_cache(model, dataset.tokens.to(dev), names)
    finally:
        model.train(was_training)
    d = lambda t: t.detach().to(DTYPE)  # noqa: E731
    pre, v, scores, pattern, mid, post = (cache[n] for n in names)
    blk = model.blocks[L]
    return Activations(
        p=p, labels=dataset.labels.to(dev), train_idx=dataset.train_idx.to(dev), test_idx=dataset.test_idx.to(dev),
        a=dataset.tokens[:, 0].to(dev), b=dataset.tokens[:, 1].to(dev),
        resid_pre2=d(pre[:, POS]), v=d(v), scores2=d(scores[:, :, POS]), pattern2=d(pattern[:, :, POS]),
        resid_mid2=d(mid[:, POS]), post2=d(post[:, POS]),
        model_logits=d(logits[:, -1, :p]), W_E=d(model.W_E), W_O=d(blk.attn.W_O), W_in=d(blk.mlp.W_in),
        b_in=d(blk.mlp.b_in), W_out=d(blk.mlp.W_out), b_out=d(blk.mlp.b_out), W_Up=d(model.W_U[:, :p]),
        act=model.cfg.act, layer=L)


def at_layer(hook: str, layer: int) -> str:
    """A hook name of block 0 (:data:`PATCHABLE`, ...) moved to block ``layer``."""
    return hook.replace("blocks.0.", f"blocks.{layer}.", 1)


# ====================================================================== patches: fast tail and hooks
def tail_logits(acts: Activations, patches: dict[str, Tensor] | None = None) -> "Float[Tensor, 'N p']":
    """Answer logits with hook points replaced at position 2, recomputed downstream in float64.

    ``patches`` maps a hook name in :data:`PATCHABLE` to its new value at position 2: the pattern row of the
    ``=`` query ``(N, H, 3)``, the MLP activations ``(N, d_mlp)``, or ``resid_post`` ``(N, d_model)``.
    """
    patches = dict(patches or {})
    unknown = set(patches) - set(PATCHABLE)
    if unknown:
        raise KeyError(f"cannot patch {sorted(unknown)}; patchable: {', '.join(PATCHABLE)}")
    if HOOK_RESID_POST in patches:
        return patches[HOOK_RESID_POST].to(DTYPE) @ acts.W_Up
    if HOOK_PATTERN in patches:
        z = torch.einsum("nhk,nkhe->nhe", patches[HOOK_PATTERN].to(DTYPE), acts.v)
        resid_mid = acts.resid_pre2 + torch.einsum("nhe,hed->nd", z, acts.W_O)
        post = patches[HOOK_POST].to(DTYPE) if HOOK_POST in patches else acts.mlp(resid_mid)
        return (resid_mid + acts.b_out) @ acts.W_Up + post @ acts.W_L
    if HOOK_POST in patches:
        return acts.resid_logits + patches[HOOK_POST].to(DTYPE) @ acts.W_L
    return acts.logits


def patch_hooks(patches: dict[str, Tensor], pos: int = POS, layer: int = 0) -> list[tuple[str, Any]]:
    """Hook functions for :func:`grokscope.model.hooks.hooks` that write ``patches`` (see :func:`tail_logits`) at
    ``pos``, in block ``layer`` (the names of :data:`PATCHABLE` are block 0's)."""
    out = []
    for name, value in patches.items():
        if name.endswith("hook_pattern"):
            def fn(x, hook, value=value):
                x = x.clone()
                x[:, :, pos, : value.shape[-1]] = value.to(x.dtype)
                return x
        else:
            def fn(x, hook, value=value):
                x = x.clone()
                x[:, pos] = value.to(x.dtype)
                return x
        out.append((at_layer(name, layer), fn))
    return out


@torch.no_grad()
def run_patched(model: "Transformer", tokens: Tensor, patches: dict[str, Tensor] | None = None) -> Tensor:
    """Answer logits ``(N, p)`` (float64) of ``model`` run on ``tokens`` under :func:`patch_hooks` (in its final
    block, where :func:`collect` reads the activations)."""
    with hooks(model, patch_hooks(patches or {}, layer=model.cfg.n_layers - 1)):
        return model(tokens)[:, -1, : model.cfg.p].to(DTYPE)


# ====================================================================== metrics
@dataclass
class Metrics(Result):
    """Mean float64 cross-entropy and accuracy on the train pairs, the test pairs and all pairs."""

    loss_train: float
    loss_test: float
    loss_all: float
    acc_train: float
    acc_test: float
    acc_all: float

    @classmethod
    def from_per_example(cls, loss: Tensor, correct: Tensor, masks: Tensor) -> "Metrics":
        """``masks (N, 3)``: 0/1 membership of the train pairs, the test pairs and all pairs (:func:`split_masks`)."""
        v = (torch.stack([loss.to(DTYPE), correct.to(DTYPE)]) @ masks) / masks.sum(0)  # (2, 3); 0/0 -> NaN
        (lt, le, la), (at, ae, aa) = v.tolist()
        return cls(lt, le, la, at, ae, aa)


def split_masks(acts: Activations) -> Tensor:
    """``(N, 3)`` float 0/1 masks of the train pairs, the test pairs and all pairs."""
    if "split_masks" not in acts._cache:
        W = torch.zeros(acts.labels.shape[0], 3, dtype=DTYPE, device=acts.labels.device)
        W[acts.train_idx, 0] = 1.0
        W[acts.test_idx, 1] = 1.0
        W[:, 2] = 1.0
        acts._cache["split_masks"] = W
    return acts._cache["split_masks"]


def metrics(logits: Tensor, acts: Activations) -> Metrics:
    """:class:`Metrics` of answer logits ``(N, p)`` for the pairs and split of ``acts``."""
    loss = cross_entropy_float64(logits, acts.labels)
    return Metrics.from_per_example(loss, logits.argmax(-1) == acts.labels, split_masks(acts))


def metrics_s_table(table: Tensor, acts: Activations) -> Metrics:
    """Metrics of logits that depend on the pair only through ``s = (a + b) mod p``: ``table (p, p)``."""
    logp = torch.log_softmax(table.to(DTYPE), dim=-1)
    loss = -logp[acts.s, acts.labels]
    correct = table.argmax(-1)[acts.s] == acts.labels
    return Metrics.from_per_example(loss, correct, split_masks(acts))
