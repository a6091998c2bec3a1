"""The optimiser's update and the flat parameter layout: K models' parameters as one ``(K, P)`` tensor, updated by
torch.optim.AdamW's arithmetic with a learning rate and weight decay per model; the device to train on."""

from __future__ import annotations

import math

import torch

from ..checks import ConfigError
from ..config import ModelConfig
from ..model import param_shapes


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"device={device!r} is invalid: must be one of auto, cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} is invalid: CUDA is not available on this machine (use auto or cpu)")
    return torch.device(device)


@torch.no_grad()
def adamw_update(p: torch.Tensor, m: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, step: int,
                 lr: torch.Tensor | float, wd: torch.Tensor | float, beta1: float, beta2: float, eps: float,
                 warmup: int) -> None:
    """torch.optim.AdamW's update of ``p`` in place (moments ``m``, ``v`` too) for optimiser step ``step``
    (0-based), after the linear warm-up ``lr * min(step / warmup, 1)``. ``lr`` and ``wd`` may be ``(K, 1)`` columns:
    one value per model (row of a flat ``(K, P)`` parameter tensor), as the trainer keeps them for every task
    (:class:`grokscope.training.trainer.Trainer`)."""
    factor = min(step / warmup, 1.0) if warmup > 0 else 1.0
    lr = lr * factor
    t = step + 1
    p.mul_(1 - lr * wd)
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bc1 = 1 - beta1 ** t
    bc2_sqrt = math.sqrt(1 - beta2 ** t)
    denom = (v.sqrt() / bc2_sqrt).add_(eps)
    p.addcdiv_(m * (-lr / bc1), denom)


class ParamLayout:
    """Maps the K models' parameters onto one flat ``(K, P)`` tensor and back."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.shapes = param_shapes(cfg)
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.size = sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        K = flat.shape[0]
        parts = torch.split(flat, self.sizes, dim=1)
        return {n: t.reshape(K, *s) for (n, s), t in zip(self.shapes.items(), parts)}

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        K = next(iter(params.values())).shape[0]
        return torch.cat([params[n].reshape(K, -1) for n in self.shapes], dim=1)
