"""Figures of the methods beyond the paper (:mod:`grokscope.training.methods`): the slingshots marked on the loss curve.
No training, analysis or file logic; plotly only inside the functions (an extra)."""

from __future__ import annotations

import pandas as pd

from ..training.methods import slingshots
from .plots import _colour, _go


def mark_slingshots(fig, metrics: pd.DataFrame, models=None):
    """Mark every slingshot (:func:`grokscope.training.methods.slingshots` of ``metrics``) on the loss panel (row 1) of
    :func:`grokscope.report.plots.losses`'s figure: a triangle at each spike's peak in its model's colour, and a dotted
    vertical line at its start. Returns ``fig``."""
    go = _go()
    ms = sorted(int(m) for m in metrics["model"].unique()) if models is None else list(models)
    s = slingshots(metrics[metrics["model"].isin(ms)]) if len(metrics) else slingshots(metrics)
    for i, m in enumerate(ms):
        d = s[s["model"] == m]
        if d.empty:
            continue
        c = _colour(i)
        fig.add_trace(go.Scatter(x=d["peak"], y=d["peak_loss"], mode="markers", legendgroup=f"m{m}",
                                 marker=dict(symbol="triangle-up", size=11, color=c, line=dict(width=1, color="black")),
                                 name=f"model {m} slingshot", customdata=d[["start", "min_before"]].to_numpy(),
                                 hovertemplate="slingshot: start %{customdata[0]}, peak %{x}, loss %{y:.2e} "
                                               "(from %{customdata[1]:.2e})<extra></extra>"), row=1, col=1)
        for e in d["start"]:
            fig.add_vline(x=max(int(e), 1), line=dict(color=c, dash="dot", width=1), row=1, col=1)
    return fig
