"""What every figure module of the report shares: plotly (an optional extra, ``pip install grokscope[plots]``,
imported inside the functions), the colour of the i-th model or line, and tensors as numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plotly_go", "colour", "as_array"]


def plotly_go():
    """``plotly.graph_objects``, or an ImportError saying how to install it."""
    try:
        import plotly.graph_objects as go
    except ImportError as e:  # pragma: no cover
        raise ImportError("grokscope.report needs plotly: pip install 'grokscope[plots]'") from e
    return go


def colour(i: int) -> str:
    """The ``i``-th colour of plotly's qualitative palette (cycled)."""
    import plotly.express as px

    pal = px.colors.qualitative.Plotly
    return pal[i % len(pal)]


def as_array(x: Any) -> np.ndarray:
    """``x`` (a tensor, array or sequence) as a float numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)
