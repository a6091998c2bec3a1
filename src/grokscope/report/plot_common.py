"""What every figure module of the report shares: plotly (an optional extra, ``pip install grokscope[plots]``,
imported inside the functions), the colour of the i-th model or line, and tensors as numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plotly_go", "colour", "as_array", "style", "FIG_WIDTH", "FIG_MAX_HEIGHT"]

#: the width of every figure of the report, in pixels (the page's column is this wide)
FIG_WIDTH = 1100
#: figures taller than this are scaled down to it (keeping their aspect)
FIG_MAX_HEIGHT = 1000


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


def style(fig, width: int = FIG_WIDTH):
    """``fig`` in the report's look (in place; returns it): white background, ``width`` pixels wide (square
    heatmaps stay square: their y axis is anchored to x), the title left-aligned and wrapped to the width, log
    axes labelled in scientific notation (1e-4, not 100µ)."""
    lay = fig.layout
    height = lay.height or 500
    text = lay.title.text or ""
    if text:
        text = _wrap(text, width - 180)  # clear of the modebar's icons at the top right
        fig.update_layout(title=dict(text=text, x=0.01, xanchor="left", yref="container", y=1, yanchor="top",
                                     pad=dict(t=16), font=dict(size=16)))
    top = 48 + 22 * (text.count("<br>") + 1) if text else 40  # the title's lines, then the subplot titles
    fig.update_layout(template="plotly_white", width=width, height=min(height, FIG_MAX_HEIGHT),
                      margin=dict(l=70, r=30, t=top, b=60), font=dict(size=13))
    fig.for_each_xaxis(_sci)
    fig.for_each_yaxis(_sci)
    return fig


def _sci(ax) -> None:
    if ax.type == "log":
        ax.update(exponentformat="e", showexponent="all", minexponent=3)


def _wrap(text: str, width: int) -> str:
    """A figure title broken into lines (``<br>``) that fit ``width`` pixels at 16 px (about 8.5 px a character)."""
    if "<br>" in text:
        return text
    n = max(40, int((width - 40) / 8.5))
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > n:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join(lines + [line])


def as_array(x: Any) -> np.ndarray:
    """``x`` (a tensor, array or sequence) as a float numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)
