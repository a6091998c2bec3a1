"""Load the paper authors' checkpoints (their ``Transformer`` state dicts; ../shared/reference/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import Config
from .model import Transformer, config_from_authors_state_dict, from_authors_state_dict


def load_authors_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "model" in obj:
        return obj
    if isinstance(obj, dict) and "embed.W_E" in obj:
        return {"model": obj}
    raise ValueError(f"{path} is not an authors' checkpoint: expected a dict with a 'model' state dict")


def load_authors_model(path: str | Path, act: str = "relu") -> tuple[Transformer, dict[str, Any]]:
    """Our :class:`Transformer` with the authors' weights, and the rest of their file (losses, ...)."""
    obj = load_authors_file(path)
    sd = obj["model"]
    mcfg = config_from_authors_state_dict(sd, act)
    model = Transformer(mcfg, seed=None)
    model.load_state_dict(from_authors_state_dict(sd, mcfg))
    return model, {k: v for k, v in obj.items() if k != "model"}


def authors_task_config(model: Transformer, seed: int, frac_train: float, op: str = "add") -> Config:
    """The task config that goes with an authors' modular-arithmetic checkpoint (their split)."""
    m = model.cfg
    return Config(p=m.p, op=op, frac_train=frac_train, split="authors", seed=seed, n_layers=m.n_layers,
                  d_model=m.d_model, n_heads=m.n_heads, d_mlp=m.d_mlp, act=m.act)
