"""Muon (Keller Jordan 2024; ``torch.optim.Muon``) for K stacked models: SGD with Nesterov momentum whose update of
each hidden weight matrix is orthogonalised by the quintic Newton–Schulz iteration; AdamW on every other parameter
(``optimizer="muon"``; :class:`Muon`, used by :class:`grokscope.training.trainer.Trainer`).

torch.optim.Muon's arithmetic, per matrix ``W`` with gradient ``g`` and momentum buffer ``B`` (zero at first):
``B <- lerp(B, g, 1 - mu)``, ``U = lerp(g, B, mu)`` (Nesterov), ``O = NS5(U)``, ``W <- W (1 - lr_adam wd)``, then
``W <- W - lr sqrt(max(1, fan_out / fan_in)) O`` (its default ``adjust_lr_fn``, "original": Keller Jordan's scale
for rectangular matrices). ``NS5``: ``X = U / max(|U|_F, 1e-7)`` (the wide orientation: transposed when it has
more rows than columns), then 5 times ``A = X X^T``, ``X <- a X + (b A + c A^2) X`` with ``(a, b, c) = (3.4445,
-4.7750, 2.0315)``. Defaults: ``muon_lr`` 0.02 (Keller Jordan's; torch's generic default 1e-3 is 20x smaller),
``muon_momentum`` 0.95, Nesterov, 5 steps. The linear warm-up of the run (``lr * min(step / warmup, 1)``) scales
Muon's learning rate too, as one ``LambdaLR`` over both optimisers would.

Documented choices:

* **Which parameters.** Muon on the hidden matrices: every layer's W_Q, W_K, W_V, W_O and the MLP's W_in, W_out;
  AdamW (the run's ``lr``, betas, eps and ``weight_decay``) on W_E, W_pos, W_U and the biases: the usual split
  (Keller Jordan; torch.optim.Muon's docs), since an embedding is a lookup table, not a linear map of a
  normalised input, and the unembedding's output scale is the logits'.
* **A per-head tensor is one matrix.** W_Q, W_K, W_V ``(n_heads, d_model, d_head)`` are orthogonalised as the one
  ``(n_heads d_head, d_model)`` projection (the authors' ``nn.Linear``-like layout, heads stacked along the output
  rows) and W_O ``(n_heads, d_head, d_model)`` as the one ``(d_model, n_heads d_head)`` map: the same matrices as
  Muon sees in a GPT (modded-nanogpt orthogonalises the whole Q, K, V and O projections, never a head alone), so
  the heads share the update's spectrum. Per head, each ``(d_head, d_model)`` block would be scaled to unit
  singular values on its own whatever its gradient's size, and torch's ``adjust_lr_fn`` would see a different
  shape.
* **Orientation.** The fan-out x fan-in orientation (``nn.Linear``'s, the authors'): ``max(1, fan_out / fan_in)``
  is then Keller Jordan's (W_in ``(d_mlp, d_model)``: sqrt(4) = 2 at the mainline's shape; the others 1).
* **Weight decay** decoupled, at the paper's rate: ``W <- W (1 - lr wd)`` with the run's AdamW ``lr`` (after the
  warm-up) and the model's ``weight_decay``, the factor every other weight gets, so that choosing Muon changes
  the update's direction and size, not the regulariser (torch.optim.Muon decays by ``lr_muon wd``, 20 times the
  mainline's 1e-3 per step at Muon's usual lr 0.02; its ``weight_decay = wd lr / lr_muon`` is the same decay).
* **Precision.** The iteration runs in the parameters' dtype (float32 in training: within 1e-5 of float64).
  torch.optim.Muon casts to bfloat16 first, Keller Jordan's choice for GPU speed: the polynomial is the same, but
  bfloat16's rounding (2^-8 of the largest singular value) is amplified along a gradient's small singular directions
  by the quintic's slope of 3.4 at zero, so its updates differ visibly from the exact iteration's in a tiny
  model's first steps. ``ns_dtype=torch.bfloat16`` gives torch's numbers (identical in the float64 test,
  tests/test_muon.py).
* **Batched over K.** Every matrix is iterated for the K models at once (``baddbmm`` over a leading model axis):
  the models never mix (the norm is per model and matrix), so each gets what it would alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..config import Config
from .optim import ParamLayout

#: Newton–Schulz quintic coefficients, steps and the norm's floor (torch.optim.Muon's, Keller Jordan's)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def newton_schulz(G: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The quintic Newton–Schulz orthogonalisation of a stack of matrices ``(B, rows, cols)``, each on its own
    (torch.optim.Muon's ``_zeropower_via_newtonschulz``, batched); computed in ``dtype`` (default ``G``'s)."""
    a, b, c = NS_COEFFICIENTS
    X = G.to(dtype) if dtype is not None else G
    tall = G.shape[-2] > G.shape[-1]
    if tall:
        X = X.mT
    X = X / X.flatten(1).norm(dim=1).clamp(min=NS_EPS)[:, None, None]
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    return X.mT if tall else X


@dataclass(frozen=True)
class Matrix:
    """One hidden matrix of the flat layout: its columns ``start:stop`` of the ``(K, P)`` tensor, its layout shape,
    how it becomes the fan-out x fan-in matrix (``kind``: ``heads`` W_Q/W_K/W_V ``(H, D, dh) -> (H dh, D)``,
    ``T`` a transposed one: W_O ``(H dh, D)``, W_in ``(D, M)``, W_out ``(M, D)``) and torch's lr scale."""

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]
    kind: str

    @property
    def rows_cols(self) -> tuple[int, int]:
        if self.kind == "heads":
            H, D, dh = self.shape
            return H * dh, D
        return self.shape[-1], math.prod(self.shape[:-1])

    @property
    def scale(self) -> float:
        """torch.optim.Muon's ``adjust_lr_fn="original"``: ``sqrt(max(1, fan_out / fan_in))``."""
        r, c = self.rows_cols
        return math.sqrt(max(1, r / c))

    def to_matrix(self, flat: torch.Tensor) -> torch.Tensor:
        """``(K, size)`` -> ``(K, fan_out, fan_in)`` (a view where it can be)."""
        K = flat.shape[0]
        if self.kind == "heads":
            return flat.reshape(K, *self.shape).permute(0, 1, 3, 2).reshape(K, *self.rows_cols)
        return flat.reshape(K, self.rows_cols[1], self.rows_cols[0]).mT

    def from_matrix(self, M: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_matrix`: ``(K, fan_out, fan_in)`` -> ``(K, size)``."""
        K = M.shape[0]
        if self.kind == "heads":
            H, D, dh = self.shape
            return M.reshape(K, H, dh, D).permute(0, 1, 3, 2).reshape(K, -1)
        return M.mT.reshape(K, -1)


def muon_matrices(layout: ParamLayout) -> list[Matrix]:
    """The hidden matrices Muon updates, in layout order: every block's attention W_Q, W_K, W_V, W_O and MLP W_in,
    W_out (none of W_E, W_pos, W_U, the biases)."""
    out, start = [], 0
    for (name, shape), size in zip(layout.shapes.items(), layout.sizes):
        leaf = name.rsplit(".", 1)[-1]
        if ".attn." in name and leaf in ("W_Q", "W_K", "W_V"):
            out.append(Matrix(name, start, start + size, tuple(shape), "heads"))
        elif ".attn." in name and leaf == "W_O":
            out.append(Matrix(name, start, start + size, (shape[0] * shape[1], shape[2]), "T"))
        elif ".mlp." in name and leaf in ("W_in", "W_out"):
            out.append(Matrix(name, start, start + size, tuple(shape), "T"))
        start += size
    return out


def complement(mats: Sequence[Matrix], size: int) -> list[slice]:
    """The column ranges of ``0:size`` outside ``mats`` (AdamW's share), adjacent ones merged."""
    out, at = [], 0
    for m in mats:
        if m.start > at:
            out.append(slice(at, m.start))
        at = m.stop
    if size > at:
        out.append(slice(at, size))
    return out


class Muon:
    """Muon's state for K models (the momentum buffer ``buf``, ``(K, P)`` like the parameters; only the matrices'
    columns used) and its per-model settings, kept as Python floats so that every factor is computed in double
    precision as torch.optim.Muon computes its scalars. :attr:`adam` holds the column ranges AdamW updates.
    ``dtype``: the parameters' (float32 in training); ``ns_dtype``: the iteration's (default the parameters')."""

    def __init__(self, layout: ParamLayout, configs: Sequence[Config], device: torch.device | str = "cpu",
                 ns_dtype: torch.dtype | None = None, dtype: torch.dtype = torch.float32):
        self.mats = muon_matrices(layout)
        self.adam = complement(self.mats, layout.size)
        self.lr = [float(c.muon_lr) for c in configs]
        self.adam_lr = [float(c.lr) for c in configs]
        self.wd = [float(c.weight_decay) for c in configs]
        self.momentum = [float(c.muon_momentum) for c in configs]
        self.ns_dtype = ns_dtype
        self.buf = torch.zeros((len(configs), layout.size), dtype=dtype, device=device)

    @torch.no_grad()
    def step(self, p: torch.Tensor, grad: torch.Tensor, step: int, warmup: int) -> None:
        """Update the matrices' columns of ``p (K, P)`` in place for optimiser step ``step`` (0-based) after the
        warm-up ``muon_lr * min(step / warmup, 1)``; ``buf`` too."""
        factor = min(step / warmup, 1.0) if warmup > 0 else 1.0
        lrs = [lr * factor for lr in self.lr]

        def col(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor(list(values), dtype=p.dtype, device=p.device)[:, None]

        keep, mom = col(1 - m for m in self.momentum), col(self.momentum)
        decay = col(1 - lr * factor * wd for lr, wd in zip(self.adam_lr, self.wd))  # the paper's rate
        for m in self.mats:
            sl = slice(m.start, m.stop)
            g, b = grad[:, sl], self.buf[:, sl]
            b.lerp_(g, keep)
            O = newton_schulz(m.to_matrix(g.lerp(b, mom)), dtype=self.ns_dtype)
            p[:, sl].mul_(decay).sub_(m.from_matrix(O).to(p.dtype) * col(lr * m.scale for lr in lrs))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"muon.buf": self.buf}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        self.buf.copy_(st["muon.buf"].to(self.buf.device))


__all__ = ["Muon", "Matrix", "muon_matrices", "complement", "newton_schulz", "NS_COEFFICIENTS", "NS_STEPS",
           "NS_EPS"]
