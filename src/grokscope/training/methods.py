"""Grokking methods published after the paper, and the diagnostics of two of them: one implementation each, used
by :class:`grokscope.training.trainer.Trainer` (README, "Methods beyond the paper").

Every function works on K models stacked along a leading axis: parameters and gradients are one flat ``(K, P)``
tensor (:class:`grokscope.training.trainer.ParamLayout`), and every per-tensor or per-model quantity is reduced over all
axes but the model axis, so the K models never mix.

* **Grokfast** (Lee et al. 2024), a filter between backward and the optimiser step, elementwise:
  :class:`GradFilter`. EMA: ``mu <- alpha mu + (1 - alpha) g`` (``mu`` starts at the first gradient),
  ``g <- g + lambda mu``. MA: the last ``w`` gradients kept; once ``w`` are held, ``g <- g + lambda mean(window)``
  (the window includes the current gradient, as their ``gradfilter_ma``).
* **⊥Grad** (Prieto et al. 2025, "Grokking at the edge of numerical stability"): per weight tensor and model,
  ``g_perp = g - (w.g) / (w.w + 1e-30) w``, rescaled to ``|g|`` (``|g| / (|g_perp| + 1e-30)``, as their code),
  before the AdamW step (:func:`orthogonal_grad`).
* **StableMax** (same paper): ``s(x) = x + 1`` for ``x >= 0``, ``1 / (1 - x)`` for ``x < 0``, ``p_i = s(x_i) /
  sum_j s(x_j)``, the cross-entropy in float64 (:func:`stablemax_cross_entropy`).
* **Softmax collapse** (same paper): :func:`softmax_collapse`.
* **Constrained weight norm** (Liu et al. 2023, Omnigrok): :func:`renormalise_`.
* **Slingshots** (Thilak et al. 2022): :func:`slingshots` finds the loss spikes in a metrics table.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import torch


# ---------------------------------------------------------------------- Grokfast
class GradFilter:
    """Grokfast's state for K models: ``mode`` ``ema`` (``mu (K, P)``) or ``ma`` (a ring of ``window`` gradients
    ``(window, K, P)``); ``alpha`` and ``lam`` are per model ``(K, 1)`` columns. :meth:`apply` returns the filtered
    gradient and updates the state; :meth:`state_dict` is what a resumed run needs to stay bit-exact."""

    def __init__(self, mode: str, shape: tuple[int, int], alpha: torch.Tensor, lam: torch.Tensor, window: int,
                 device: torch.device | str = "cpu"):
        self.mode, self.window = mode, window
        self.alpha, self.lam = alpha, lam  # (K, 1) float32
        self.count = 0  # gradients seen
        K, P = shape
        self.buf = torch.zeros((window if mode == "ma" else 1, K, P), dtype=torch.float32, device=device)

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        if self.mode == "ema":
            mu = self.buf[0]
            if self.count == 0:
                mu.copy_(g)
            else:
                mu.mul_(self.alpha).add_(g * (1 - self.alpha))
            self.count += 1
            return g + self.lam * mu
        self.buf[self.count % self.window].copy_(g)  # ma: the oldest gradient replaced
        self.count += 1
        if self.count < self.window:
            return g
        return g + self.lam * self.buf.mean(0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"grokfast.buf": self.buf, "grokfast.count": torch.tensor(self.count)}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        self.buf.copy_(st["grokfast.buf"].to(self.buf.device))
        self.count = int(st["grokfast.count"])


# ---------------------------------------------------------------------- ⊥Grad
def orthogonal_grad(w: torch.Tensor, g: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """⊥Grad of flat ``(K, P)`` weights and gradients, per tensor (``sizes``: the tensors' lengths along ``P``, in
    order) and per model: the gradient's component along the tensor's weights removed, then rescaled to the
    gradient's norm."""
    out = torch.empty_like(g)
    for wt, gt, ot in zip(torch.split(w, list(sizes), 1), torch.split(g, list(sizes), 1),
                          torch.split(out, list(sizes), 1)):
        proj = (wt * gt).sum(1, keepdim=True) / ((wt * wt).sum(1, keepdim=True) + 1e-30)
        gp = gt - proj * wt
        ot.copy_(gp * (gt.norm(dim=1, keepdim=True) / (gp.norm(dim=1, keepdim=True) + 1e-30)))
    return out


# ---------------------------------------------------------------------- StableMax
def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """``s(x) = x + 1`` for ``x >= 0``, ``1 / (1 - x)`` for ``x < 0`` (each branch fed only its own half, so that
    neither branch's gradient is inf or NaN where the other is chosen)."""
    return torch.where(x >= 0, x.clamp(min=0) + 1, 1 / (1 - x.clamp(max=0)))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example ``-log(s(x_c) / sum_j s(x_j))`` in float64 (``logits`` of any float dtype, last axis the
    classes); differentiable."""
    s = stablemax_s(logits.to(torch.float64))
    return torch.log(s.sum(-1)) - torch.log(s.gather(-1, labels[..., None])[..., 0])


# ---------------------------------------------------------------------- softmax collapse
@torch.no_grad()
def softmax_collapse(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax collapse per model (logits ``(K, N, V)``, labels ``(K, N)``, ``valid``: the real rows), in
    float32 (the logits' dtype if wider): ``(loss0, sum1)``, the fraction of examples whose float32 softmax
    cross-entropy ``log(sum_j exp(x_j - M)) - (x_c - M)`` rounds to exactly 0 (that is: the correct logit is
    the row's maximum ``M`` and the sum is exactly 1), and the fraction whose ``sum_j exp(x_j - M)`` is exactly
    1 in float32 (every other class's ``exp`` below half an ulp of 1: its gradient vanishes)."""
    x = logits.detach()
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    s = x - x.amax(-1, keepdim=True)
    one = torch.exp(s).sum(-1) == 1
    loss0 = one & (s.gather(-1, labels[..., None])[..., 0] == 0)
    return collapse_fractions(loss0, one, valid)


def collapse_fractions(loss0: torch.Tensor, sum1: torch.Tensor, valid: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`softmax_collapse`'s two fractions per model from its per-example booleans ``(K, N)`` (also given by
    the trainer's fast path, :func:`grokscope.training.losses.cross_entropy_and_collapse`)."""
    if valid is None:
        valid = torch.ones_like(sum1)
    n = valid.sum(-1).clamp(min=1).to(torch.float64)
    return (loss0 & valid).sum(-1) / n, (sum1 & valid).sum(-1) / n


# ---------------------------------------------------------------------- constrained weight norm
@torch.no_grad()
def renormalise_(params: torch.Tensor, target: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """Rescale each model's flat parameters ``(K, P)`` in place to the global L2 norm ``target (K, 1)``, for the
    models where ``on (K, 1)`` is True (the others untouched, bit for bit)."""
    scale = target / params.norm(dim=1, keepdim=True)
    params.copy_(torch.where(on, params * scale, params))
    return params


# ---------------------------------------------------------------------- slingshots
#: a spike: the train loss above SLINGSHOT_FACTOR x its running minimum ...
SLINGSHOT_FACTOR = 10.0
#: ... once the model has memorised (train accuracy 100%) and its loss has fallen below this
SLINGSHOT_FLOOR = 1e-3


def slingshots(metrics: pd.DataFrame, factor: float = SLINGSHOT_FACTOR, floor: float = SLINGSHOT_FLOOR
               ) -> pd.DataFrame:
    """Slingshot spikes (Thilak et al. 2022) in a metrics table (:attr:`grokscope.training.run.Run.metrics`): one row per
    spike and model: ``model, start, peak, peak_loss, min_before`` (epochs; the loss at the peak; the running
    minimum it rose from).

    Rule (fixed before any run was looked at): per model, after the first epoch at which train accuracy is 100%
    and the train loss's running minimum is below ``floor``, a spike starts at the first epoch whose train loss
    exceeds ``factor`` x the running minimum, and ends when the loss falls back below ``factor`` x that minimum
    (the minimum is frozen during the spike); its peak is the largest loss inside. NaN losses end the search (a
    diverged run is not a slingshot)."""
    rows = []
    for k, d in metrics.groupby("model"):
        d = d.sort_values("epoch")
        e, loss, acc = (d[c].to_numpy(dtype=float) for c in ("epoch", "train_loss", "train_acc"))
        run_min, armed, spike = math.inf, False, None
        for i in range(len(e)):
            if not math.isfinite(loss[i]):
                break
            if spike is None:
                armed = armed or (acc[i] >= 1.0 - 1e-9 and min(run_min, loss[i]) < floor)
                if armed and loss[i] > factor * run_min:
                    spike = [i, i]
                else:
                    run_min = min(run_min, loss[i])
            else:
                if loss[i] > loss[spike[1]]:
                    spike[1] = i
                if loss[i] <= factor * run_min:
                    rows.append((int(k), int(e[spike[0]]), int(e[spike[1]]), loss[spike[1]], run_min))
                    spike = None
                    run_min = min(run_min, loss[i])
        if spike is not None:
            rows.append((int(k), int(e[spike[0]]), int(e[spike[1]]), loss[spike[1]], run_min))
    return pd.DataFrame(rows, columns=["model", "start", "peak", "peak_loss", "min_before"]).astype(
        {"model": "int64", "start": "int64", "peak": "int64"})


def w_u_norm(W_U: torch.Tensor) -> torch.Tensor:
    """``|W_U|`` (Frobenius) per model of stacked ``(K, d_model, d_vocab)`` unembeddings, in float64."""
    return W_U.detach().to(torch.float64).flatten(1).norm(dim=1)


__all__ = ["GradFilter", "orthogonal_grad", "stablemax_s", "stablemax_cross_entropy", "softmax_collapse",
           "renormalise_", "slingshots", "w_u_norm", "SLINGSHOT_FACTOR",
           "SLINGSHOT_FLOOR"]
