"""Figures of training curves (Figs 2, 7, 13-15, 18, 19) drawn from the tidy tables: :attr:`Run.metrics`, the
progress table (:mod:`grokscope.measures.progress`) and a phases report
(:func:`grokscope.measures.phases.phases_report`), with the phase bands; and the slingshots of
:mod:`grokscope.training.methods` marked on the loss curve (:func:`mark_slingshots`).

No training, analysis or file logic lives here; plotly only inside the functions (an optional extra). Each
returns a ``plotly.graph_objects.Figure`` whose title starts with the paper's figure number ("Fig 2: ...").
Figures by name, for a run, and the HTML report are :mod:`grokscope.report.run`'s.

    from grokscope.report import plot_curves
    plot_curves.losses(run.metrics, phases=load_phases(run))

Phase bands and lines come from a phases report (``phases.json``: ``{"models": [{"model", "ends",
"phases", "claims", ...}]}``) and are those of one model (``phase_model``, default 0) -- the models of a
batched run have their own phases, but one set of bands keeps the figure readable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..training.methods import slingshots
from .plot_common import colour, plotly_go

__all__ = ["add_phases", "thin_log", "losses", "mark_slingshots", "progress_panels", "restricted_acc", "excluded_per_key",
           "logit_coefficients", "seed_losses", "gini_models"]


#: the phases' hues (red, green, blue): memorisation violet, circuit formation orange, cleanup green -- apart from
#: each other and from the white background and the blue / red / green of the curves' first colours
PHASE_RGB = {"memorisation": (121, 80, 242), "circuit_formation": (247, 140, 0), "cleanup": (47, 158, 68)}
PHASE_LABELS = {"memorisation": "memorisation", "circuit_formation": "circuit formation", "cleanup": "cleanup"}
BAND_ALPHA = 0.16


def phase_colour(name: str, alpha: float = BAND_ALPHA) -> str:
    """The ``rgba`` colour of phase ``name`` at opacity ``alpha`` (bands: :data:`BAND_ALPHA`; lines: ~0.9)."""
    r, g, b = PHASE_RGB[name]
    return f"rgba({r},{g},{b},{alpha})"


#: the band colours (memorisation, circuit formation, cleanup)
PHASE_COLOURS = {name: phase_colour(name) for name in PHASE_RGB}


# ---------------------------------------------------------------------- phases
def _model_phases(phases: Mapping[str, Any] | None, model: int) -> dict[str, Any] | None:
    if not phases:
        return None
    for m in phases.get("models", []):
        if int(m.get("model", -1)) == model:
            return m
    return None


def _add_phases(fig, phases: Mapping[str, Any] | None, model: int = 0, *, bands: bool = True,
                lines: bool = True, row: int | None = None, col: int | None = None) -> None:
    """Shade the phase intervals (and draw dashed lines at the phase ends) of ``model`` on ``fig``; the bands
    of the first panel are labelled with the phase's name at their top."""
    ph = _model_phases(phases, model)
    if ph is None:
        return
    where = {} if row is None else {"row": row, "col": col}
    first = row is None or (row == 1 and col == 1)
    ivals = ph.get("phases") or {}
    if row is None:
        xaxis, xref, yref = fig.layout.xaxis, "x", "y domain"
    else:
        sp = fig.get_subplot(row, col)
        xaxis = sp.xaxis
        xref, yref = sp.xaxis.plotly_name.replace("axis", ""), sp.yaxis.plotly_name.replace("axis", "") + " domain"
    logx = xaxis.type == "log"  # annotations on a log axis are placed by log10 of the value
    drawn = []
    for i, name in enumerate(PHASE_RGB):
        iv = ivals.get(name)
        if bands and iv and iv[0] is not None and iv[1] is not None and iv[1] > iv[0]:
            drawn.append(name)
            x0 = max(iv[0], 1)
            fig.add_vrect(x0=x0, x1=iv[1], fillcolor=phase_colour(name), line_width=0, layer="below", **where)
            if first:  # the band's name at its top left, in the phase's colour
                fig.add_annotation(x=math.log10(x0) if logx else x0, y=1 - 0.07 * i, xref=xref, yref=yref,
                                   text=PHASE_LABELS[name], showarrow=False, xanchor="left", yanchor="top",
                                   font=dict(size=12, color=phase_colour(name, 1.0)),
                                   bgcolor="rgba(255,255,255,0.7)")
        end = (ph.get("ends") or {}).get(name)
        if lines and end is not None:
            fig.add_vline(x=max(end, 1), line_dash="dash", line_color=phase_colour(name, 0.9), line_width=1.5,
                          **where)
    if bands and first:  # one legend entry per phase (vrects have none)
        go = plotly_go()
        for name in drawn:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=PHASE_LABELS[name],
                                     marker=dict(size=12, color=phase_colour(name, 0.45), symbol="square"),
                                     legendgroup="phases"), **where)


#: the phase bands and lines of one model on a figure (the LLC's figures draw them too)
add_phases = _add_phases


# ---------------------------------------------------------------------- Fig 2 / 18
def thin_log(s: pd.DataFrame, col: str, n: int = 1500) -> pd.DataFrame:
    """At most ~``2 n`` rows of ``s`` (columns ``epoch``, ``col``; sorted by epoch) for a log-x plot: the epochs
    are cut into ``n`` log-spaced buckets and each bucket keeps its first row and the rows of its min and max
    of ``col`` -- spikes (slingshots) survive, and the file holds thousands of points, not 40,000 per curve."""
    if len(s) <= 2 * n:
        return s
    e = s["epoch"].to_numpy(dtype=float)
    edges = np.geomspace(max(e.min(), 1.0), e.max() + 1, n + 1)
    bucket = pd.Series(np.searchsorted(edges, np.maximum(e, 1.0), side="right"), index=s.index)
    g = s[col].groupby(bucket)
    keep = pd.Index(g.idxmin().dropna()).union(pd.Index(g.idxmax().dropna())).union(
        pd.Index(bucket.index.to_series().groupby(bucket).first()))
    return s.loc[s.index.intersection(keep)]


def losses(metrics: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0,
           models: Sequence[int] | None = None, accuracy: bool = True):
    """Fig 2 (and 18): train and test loss (and accuracy) of every model over training, log-log, phase bands
    of ``phase_model`` shaded. ``metrics``: :attr:`Run.metrics` (test columns NaN between evaluations)."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    rows = 2 if accuracy else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["loss", "accuracy"][:rows])
    ms = sorted(int(m) for m in metrics["model"].unique()) if models is None else list(models)
    for i, m in enumerate(ms):
        d = metrics[(metrics["model"] == m) & (metrics["epoch"] > 0)].sort_values("epoch")
        c = colour(i)
        for split, dash in (("train", "solid"), ("test", "dash")):
            for r, what in enumerate(["loss", "acc"][:rows], start=1):
                s = thin_log(d[["epoch", f"{split}_{what}"]].dropna(), f"{split}_{what}")
                fig.add_trace(go.Scatter(x=s["epoch"], y=s[f"{split}_{what}"], mode="lines",
                                         line=dict(color=c, dash=dash), legendgroup=f"m{m}",
                                         showlegend=r == 1, name=f"model {m} {split}"), row=r, col=1)
    fig.update_xaxes(type="log", title_text="epoch", row=rows, col=1)
    fig.update_xaxes(type="log")
    for r in range(1, rows + 1):
        _add_phases(fig, phases, phase_model, row=r, col=1)
    fig.update_yaxes(type="log", title_text="cross-entropy", row=1, col=1)
    if accuracy:
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=2, col=1)
    fig.update_layout(title="Fig 2: train and test loss" + (" and accuracy" if accuracy else ""),
                      height=650 if accuracy else 420)
    return fig


def mark_slingshots(fig, metrics: pd.DataFrame, models=None):
    """Mark every slingshot (:func:`grokscope.training.methods.slingshots` of ``metrics``) on the loss panel (row 1) of
    :func:`losses`'s figure: a triangle at each spike's peak in its model's colour, and a dotted
    vertical line at its start. Returns ``fig``."""
    go = plotly_go()
    ms = sorted(int(m) for m in metrics["model"].unique()) if models is None else list(models)
    s = slingshots(metrics[metrics["model"].isin(ms)]) if len(metrics) else slingshots(metrics)
    for i, m in enumerate(ms):
        d = s[s["model"] == m]
        if d.empty:
            continue
        c = colour(i)
        fig.add_trace(go.Scatter(x=d["peak"], y=d["peak_loss"], mode="markers", legendgroup=f"m{m}",
                                 marker=dict(symbol="triangle-up", size=11, color=c, line=dict(width=1, color="black")),
                                 name=f"model {m} slingshot", customdata=d[["start", "min_before"]].to_numpy(),
                                 hovertemplate="slingshot: start %{customdata[0]}, peak %{x}, loss %{y:.2e} "
                                               "(from %{customdata[1]:.2e})<extra></extra>"), row=1, col=1)
        for e in d["start"]:
            fig.add_vline(x=max(int(e), 1), line=dict(color=c, dash="dot", width=1), row=1, col=1)
    return fig


# ---------------------------------------------------------------------- progress-measure panels
def _tidy_series(df: pd.DataFrame, measure: str, model: int) -> pd.DataFrame:
    d = df[(df["model"] == model) & (df["measure"] == measure)]
    return d[["epoch", "value"]].sort_values("epoch")


def _models(df: pd.DataFrame, models: Sequence[int] | None) -> list[int]:
    return sorted(int(m) for m in df["model"].unique()) if models is None else list(models)


PROGRESS_PANELS = (("excluded_loss", "excluded loss (train)", True),
                   ("restricted_loss", "restricted loss (test)", True),
                   ("gini", "Gini of W_E (solid) / W_L (dot) Fourier norms", False),
                   ("sum_sq", "sum of squared weights", False))


#: the progress table's measures in words (legends)
SERIES_LABELS = {"excluded_loss": "excluded loss", "restricted_loss": "restricted loss", "train_loss": "train loss",
                 "test_loss": "test loss", "gini_W_E": "Gini of W_E", "gini_W_L": "Gini of W_L",
                 "sum_sq": "sum of squared weights"}
#: their colours when one model is drawn
SERIES_COLOURS = {"excluded_loss": "#d62728", "restricted_loss": "#2ca02c", "train_loss": "#1f77b4",
                  "test_loss": "#444444", "gini_W_E": "#1f77b4", "gini_W_L": "#9467bd", "sum_sq": "#8c564b"}


def progress_panels(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0,
                    models: Sequence[int] | None = None, with_losses: bool = True):
    """Fig 7: excluded loss, restricted loss, Gini of the W_E / W_L Fourier norms and the sum of squared
    weights over training (``progress``: the tidy progress table), the phase bands and lines of
    ``phase_model``; one legend entry per measure (and model). With ``with_losses`` the loss panels also show train (dotted) and test (dash) loss."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t, _ in PROGRESS_PANELS],
                        horizontal_spacing=0.1, vertical_spacing=0.14)
    df = progress[progress["epoch"] > 0]
    ms = _models(df, models)
    shown: set[str] = set()
    for i, m in enumerate(ms):
        for j, (measure, _title, logy) in enumerate(PROGRESS_PANELS):
            r, cc = divmod(j, 2)
            series = ([("gini_W_E", "solid"), ("gini_W_L", "dot")] if measure == "gini" else [(measure, "solid")])
            if with_losses and measure in ("excluded_loss", "restricted_loss"):
                series += [("train_loss", "dot"), ("test_loss", "dash")]
            for name, dash in series:
                s = _tidy_series(df, name, m)
                if s.empty:
                    continue
                # one model: a colour per measure; several: a colour per model, the measure by its dash
                label = SERIES_LABELS.get(name, name) if len(ms) == 1 else f"model {m} {SERIES_LABELS.get(name, name)}"
                c = SERIES_COLOURS.get(name, colour(i)) if len(ms) == 1 else colour(i)
                fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=c, dash=dash),
                                         name=label, legendgroup=label, showlegend=label not in shown),
                              row=r + 1, col=cc + 1)
                shown.add(label)
    for j, (_m, _t, logy) in enumerate(PROGRESS_PANELS):
        r, cc = divmod(j, 2)
        _add_phases(fig, phases, phase_model, row=r + 1, col=cc + 1)
        fig.update_yaxes(type="log" if logy else "linear", row=r + 1, col=cc + 1)
        fig.update_xaxes(title_text="epoch", row=r + 1, col=cc + 1)
    fig.update_layout(title="Fig 7: progress measures (excluded loss, restricted loss, Gini, sum of squared weights)",
                      height=700)
    return fig


# ---------------------------------------------------------------------- Figs 13-15
def restricted_acc(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0,
                   models: Sequence[int] | None = None):
    """Fig 13: restricted accuracy (test pairs, solid; all pairs, dot) beside the test accuracy (dash)."""
    go = plotly_go()
    fig = go.Figure()
    df = progress[progress["epoch"] > 0]
    for i, m in enumerate(_models(df, models)):
        c = colour(i)
        for name, dash in (("restricted_acc", "solid"), ("restricted_acc_all", "dot"), ("test_acc", "dash")):
            s = _tidy_series(df, name, m)
            if not s.empty:
                fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=c, dash=dash),
                                         name=f"model {m} {name}", legendgroup=f"m{m}"))
    fig.update_xaxes(type="log", title_text="epoch")
    _add_phases(fig, phases, phase_model)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    fig.update_layout(title="Fig 13: restricted accuracy over training")
    return fig


def _per_key_lines(progress: pd.DataFrame, measure: str, label: str, model: int):
    """A figure with one line per frequency (the ``freq`` column) of the per-frequency ``measure`` of ``model``
    (``label.format(k=k)``) and the ``(epoch > 0)`` rows of that model; an annotation when there are none."""
    go = plotly_go()
    fig = go.Figure()
    df = progress[(progress["epoch"] > 0) & (progress["model"] == model)]
    rows = df[df["measure"] == measure]
    freqs = sorted(int(k) for k in rows["freq"].unique())
    for i, k in enumerate(freqs):
        s = rows[rows["freq"] == k][["epoch", "value"]].sort_values("epoch")
        fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=colour(i)),
                                 name=label.format(k=k)))
    if not freqs:
        fig.add_annotation(text=f"no key frequencies: no {measure} rows in the progress table",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=1.05)
    return fig, df


def excluded_per_key(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, model: int = 0):
    """Fig 15: train excluded loss with one key frequency removed (``excluded_loss_k``), one line per key,
    beside the excluded loss with all keys removed and the train loss, for one model."""
    go = plotly_go()
    fig, df = _per_key_lines(progress, "excluded_loss_k", "k = {k} removed", model)
    for name, dash in (("excluded_loss", "dash"), ("train_loss", "dot")):
        s = _tidy_series(df, name, model)
        if not s.empty:
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color="black", dash=dash),
                                     name="all keys removed" if name == "excluded_loss" else "train loss"))
    fig.update_xaxes(type="log", title_text="epoch")
    _add_phases(fig, phases, model)
    fig.update_yaxes(type="log", title_text="train excluded loss")
    fig.update_layout(title=f"Fig 15: excluded loss per key frequency (model {model})")
    return fig


def logit_coefficients(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, model: int = 0):
    """Fig 14: the coefficient of ``cos(w_k(a+b-c))`` in the logits (``logit_coef_k``) over training, one
    line per key frequency, for one model."""
    fig, _ = _per_key_lines(progress, "logit_coef_k", "k = {k}", model)
    fig.update_xaxes(type="log", title_text="epoch")
    _add_phases(fig, phases, model)
    fig.update_yaxes(title_text="coefficient of cos(w_k(a+b-c))")
    fig.update_layout(title=f"Fig 14: coefficients of cos(w_k(a+b-c)) in the logits (model {model})")
    return fig



# ---------------------------------------------------------------------- every model of a run (Figs 18, 19)
def seed_losses(metrics: pd.DataFrame, progress: pd.DataFrame, phases: Mapping[str, Any] | None = None):
    """Fig 18: train, test and restricted loss of every model (one panel each, its own phase lines)."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    ms = sorted(int(m) for m in metrics["model"].unique())
    cols = min(len(ms), 3)
    nrows = math.ceil(len(ms) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[f"model {m}" for m in ms],
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for i, m in enumerate(ms):
        r, c = divmod(i, cols)
        d = metrics[(metrics["model"] == m) & (metrics["epoch"] > 0)].sort_values("epoch")
        for name, s, dash, hue in (("train", thin_log(d[["epoch", "train_loss"]].dropna(), "train_loss"), "solid",
                                    "#1f77b4"),
                                   ("test", thin_log(d[["epoch", "test_loss"]].dropna(), "test_loss"), "dash",
                                    "#ff7f0e")):
            fig.add_trace(go.Scatter(x=s["epoch"], y=s.iloc[:, 1], mode="lines", line=dict(color=hue, dash=dash),
                                     name=f"{name} loss", legendgroup=name, showlegend=i == 0), row=r + 1, col=c + 1)
        s = _tidy_series(progress[progress["epoch"] > 0], "restricted_loss", m)
        if not s.empty:
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color="#2ca02c"),
                                     name="restricted loss", legendgroup="restricted", showlegend=i == 0),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", row=r + 1, col=c + 1)
        _add_phases(fig, phases, m, bands=False, row=r + 1, col=c + 1)
        fig.update_yaxes(type="log", row=r + 1, col=c + 1)
    fig.update_layout(title="Fig 18: train, test and restricted loss of every model (its own phase lines)",
                      height=360 * nrows)
    return fig


def gini_models(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0):
    """Fig 19: the Gini coefficients of the W_E (left) and W_L (right) Fourier norms of every model over
    training."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["Gini of W_E Fourier norms", "Gini of W_L Fourier norms"])
    df = progress[progress["epoch"] > 0]
    for i, m in enumerate(_models(df, None)):
        for c, name in enumerate(("gini_W_E", "gini_W_L"), start=1):
            s = _tidy_series(df, name, m)
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=colour(i)),
                                     name=f"model {m}", legendgroup=f"m{m}", showlegend=c == 1), row=1, col=c)
    for c in (1, 2):
        fig.update_xaxes(type="log", title_text="epoch", row=1, col=c)
        _add_phases(fig, phases, phase_model, bands=False, row=1, col=c)
    fig.update_layout(title="Fig 19: Gini coefficients of the W_E and W_L Fourier norms of every model", height=420)
    return fig
