"""Load the paper authors' checkpoints (their ``Transformer`` state dicts; ../shared/reference/README.md).

Their files are ``torch.save`` pickles. They are read with ``weights_only=True`` (no code from the file runs) and
an allow-list of the few numpy globals their loss curves need (:data:`SAFE_GLOBALS`); ``trust_pickle=True``
(``grokscope analyze --trust-pickle``) loads a file one trusts with full unpickling. A file that is not such a
checkpoint (random bytes, a partial model, another architecture) is one line: ``FILE is damaged: WHAT; ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..files import load
from .transformer import Transformer, config_from_authors_state_dict, from_authors_state_dict

#: what a weights-only load may rebuild besides tensors and containers (numpy arrays of loss curves)
_RECONSTRUCT = getattr(np, "_core", np).multiarray._reconstruct  # numpy 2 moved numpy.core to numpy._core
SAFE_GLOBALS = [np.ndarray, np.dtype, type(np.dtype("float64")), type(np.dtype("float32")), _RECONSTRUCT,
                (_RECONSTRUCT, "numpy.core.multiarray._reconstruct")]
HINT = ("expected an authors' modular-arithmetic checkpoint (a dict with a 'model' state dict of their one-layer "
        "Transformer); --trust-pickle loads a pickle you trust that needs more than tensors")


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False)
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def _problem(obj: Any) -> str | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("model", obj), dict):
        return f"it holds a {type(obj).__name__}, not a dict with a 'model' state dict"
    sd = obj.get("model", obj)
    if "embed.W_E" not in sd:
        return "its state dict has no embed.W_E"
    return None


def load_authors_file(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    path = Path(path)
    obj = load(path, lambda p: _torch_load(p, trust_pickle), _problem, HINT)
    return obj if "model" in obj else {"model": obj}


def load_authors_model(path: str | Path, act: str = "relu", trust_pickle: bool = False) -> tuple[Transformer, dict[str, Any]]:
    """Our :class:`Transformer` with the authors' weights, and the rest of their file (losses, ...)."""
    obj = load_authors_file(path, trust_pickle)

    def build(_: Path) -> Transformer:
        sd = obj["model"]
        model = Transformer(config_from_authors_state_dict(sd, act), seed=None)
        model.load_state_dict(from_authors_state_dict(sd, model.cfg))
        return model

    model = load(path, build, lambda m: None if (m.cfg.n_layers, m.cfg.n_ctx) == (1, 3) else
                 f"a {m.cfg.n_layers}-layer model with n_ctx={m.cfg.n_ctx} (the analysis needs 1 layer, 'a b =')",
                 HINT)
    return model, {k: v for k, v in obj.items() if k != "model"}


def authors_task_config(model: Transformer, seed: int, frac_train: float, op: str = "add") -> Config:
    """The task config that goes with an authors' modular-arithmetic checkpoint (their split)."""
    m = model.cfg
    return Config(p=m.p, task=op, frac_train=frac_train, split="authors", seed=seed, n_layers=m.n_layers,
                  d_model=m.d_model, n_heads=m.n_heads, d_mlp=m.d_mlp, act=m.act)
