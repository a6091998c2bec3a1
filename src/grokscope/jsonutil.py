"""The one JSON cleaner: results (tensors, numpy scalars, dataclasses with ``to_dict``) -> plain JSON values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["clean"]


def clean(x: Any) -> Any:
    """Tensors -> lists/numbers, numpy scalars -> Python ones, NaN and inf -> None, dict keys -> str, tuples ->
    lists, objects with ``to_dict()`` -> that; anything else unchanged."""
    if isinstance(x, Tensor):
        return clean(x.detach().cpu().tolist()) if x.ndim else clean(x.item())
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if hasattr(x, "to_dict") and not isinstance(x, type):
        return x.to_dict()
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x
