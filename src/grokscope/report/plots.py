"""Figures of the paper drawn from the tidy tables and :class:`grokscope.interp.Analysis` results.

No training, analysis or file logic lives here: every function takes what :attr:`Run.metrics`, the progress
table (:mod:`grokscope.measures.progress`), a phases report (:func:`grokscope.measures.phases.phases_report`) and
:func:`grokscope.interp.analyze` return and draws it with plotly (an optional extra: ``pip install
grokscope[plots]``; imported inside the functions). Each returns a ``plotly.graph_objects.Figure`` whose title
starts with the paper's figure number ("Fig 2: ..."). Figures by name, for a run, and the HTML report are
:mod:`grokscope.report`'s.

    from grokscope import plots
    plots.losses(run.metrics, phases=load_phases(run))
    plots.fourier_norms(analyze(run.model(), run.dataset()))

Phase bands and lines come from a phases report (``phases.json``: ``{"models": [{"model", "ends",
"phases", "claims", ...}]}``) and are those of one model (``phase_model``, default 0) -- the models of a
batched run have their own phases, but one set of bands keeps the figure readable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..fourier.basis import basis_names

__all__ = ["losses", "progress_panels", "fourier_norms", "attention", "neuron", "logit_fourier", "ablate_freqs",
           "excluded_per_key", "restricted_acc", "interference", "logit_coefficients", "all_heads", "neuron_clusters",
           "attention_fourier", "ov_fourier", "more_neurons", "fourier_norms_models", "seed_losses", "gini_models",
           "thin_log"]

PHASE_COLOURS = {"memorisation": "rgba(31,119,180,0.12)", "circuit_formation": "rgba(255,127,14,0.12)",
                 "cleanup": "rgba(44,160,44,0.12)"}
PHASE_LABELS = {"memorisation": "memorisation", "circuit_formation": "circuit formation", "cleanup": "cleanup"}


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError as e:  # pragma: no cover
        raise ImportError("grokscope.report.plots needs plotly: pip install 'grokscope[plots]'") from e
    return go


def _colour(i: int) -> str:
    import plotly.express as px

    pal = px.colors.qualitative.Plotly
    return pal[i % len(pal)]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


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
    """Shade the phase intervals (and draw dashed lines at the phase ends) of ``model`` on ``fig``."""
    ph = _model_phases(phases, model)
    if ph is None:
        return
    where = {} if row is None else {"row": row, "col": col}
    ivals = ph.get("phases") or {}
    for name, colour in PHASE_COLOURS.items():
        iv = ivals.get(name)
        if bands and iv and iv[0] is not None and iv[1] is not None and iv[1] > iv[0]:
            fig.add_vrect(x0=max(iv[0], 1), x1=iv[1], fillcolor=colour, line_width=0, layer="below", **where)
        end = (ph.get("ends") or {}).get(name)
        if lines and end is not None:
            fig.add_vline(x=max(end, 1), line_dash="dash", line_color=colour.replace("0.12", "0.9"),
                          line_width=1, **where)
    if bands and (row is None or (row == 1 and col == 1)):
        # one legend entry per phase (vrects have no legend)
        go = _go()
        for name, colour in PHASE_COLOURS.items():
            if ivals.get(name):
                kw = {} if row is None else {"row": row, "col": col}
                fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers",
                                         marker=dict(size=12, color=colour.replace("0.12", "0.5"), symbol="square"),
                                         name=PHASE_LABELS[name], legendgroup="phases"), **kw)


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
    go = _go()
    from plotly.subplots import make_subplots

    rows = 2 if accuracy else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["loss", "accuracy"][:rows])
    ms = sorted(int(m) for m in metrics["model"].unique()) if models is None else list(models)
    for i, m in enumerate(ms):
        d = metrics[(metrics["model"] == m) & (metrics["epoch"] > 0)].sort_values("epoch")
        c = _colour(i)
        for split, dash in (("train", "solid"), ("test", "dash")):
            for r, what in enumerate(["loss", "acc"][:rows], start=1):
                s = thin_log(d[["epoch", f"{split}_{what}"]].dropna(), f"{split}_{what}")
                fig.add_trace(go.Scatter(x=s["epoch"], y=s[f"{split}_{what}"], mode="lines",
                                         line=dict(color=c, dash=dash), legendgroup=f"m{m}",
                                         showlegend=r == 1, name=f"model {m} {split}"), row=r, col=1)
    for r in range(1, rows + 1):
        _add_phases(fig, phases, phase_model, row=r, col=1)
    fig.update_xaxes(type="log", title_text="epoch", row=rows, col=1)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", title_text="cross-entropy", row=1, col=1)
    if accuracy:
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=2, col=1)
    fig.update_layout(title="Fig 2: train and test loss" + (" and accuracy" if accuracy else ""),
                      height=650 if accuracy else 420)
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


def progress_panels(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0,
                    models: Sequence[int] | None = None, with_losses: bool = True):
    """Fig 7: excluded loss, restricted loss, Gini of the W_E / W_L Fourier norms and the sum of squared
    weights over training (``progress``: the tidy progress table), phase lines of
    ``phase_model``. With ``with_losses`` the loss panels also show train (dotted) and test (dash) loss."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t, _ in PROGRESS_PANELS],
                        horizontal_spacing=0.1, vertical_spacing=0.14)
    df = progress[progress["epoch"] > 0]
    for i, m in enumerate(_models(df, models)):
        c = _colour(i)
        first = True
        for j, (measure, _title, logy) in enumerate(PROGRESS_PANELS):
            r, cc = divmod(j, 2)
            series = ([("gini_W_E", "solid"), ("gini_W_L", "dot")] if measure == "gini" else [(measure, "solid")])
            if with_losses and measure in ("excluded_loss", "restricted_loss"):
                series += [("train_loss", "dot"), ("test_loss", "dash")]
            for name, dash in series:
                s = _tidy_series(df, name, m)
                if s.empty:
                    continue
                fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=c, dash=dash),
                                         name=f"model {m} {name}", legendgroup=f"m{m}",
                                         showlegend=first or name != measure), row=r + 1, col=cc + 1)
                first = False
    for j, (_m, _t, logy) in enumerate(PROGRESS_PANELS):
        r, cc = divmod(j, 2)
        _add_phases(fig, phases, phase_model, bands=False, row=r + 1, col=cc + 1)
        fig.update_yaxes(type="log" if logy else "linear", row=r + 1, col=cc + 1)
        fig.update_xaxes(title_text="epoch", row=r + 1, col=cc + 1)
    fig.update_layout(title="Fig 7: progress measures (excluded loss, restricted loss, Gini, sum of squared weights)",
                      height=700)
    return fig


# ---------------------------------------------------------------------- Fig 13 / 15
def restricted_acc(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0,
                   models: Sequence[int] | None = None):
    """Fig 13: restricted accuracy (test pairs, solid; all pairs, dot) beside the test accuracy (dash)."""
    go = _go()
    fig = go.Figure()
    df = progress[progress["epoch"] > 0]
    for i, m in enumerate(_models(df, models)):
        c = _colour(i)
        for name, dash in (("restricted_acc", "solid"), ("restricted_acc_all", "dot"), ("test_acc", "dash")):
            s = _tidy_series(df, name, m)
            if not s.empty:
                fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=c, dash=dash),
                                         name=f"model {m} {name}", legendgroup=f"m{m}"))
    _add_phases(fig, phases, phase_model)
    fig.update_xaxes(type="log", title_text="epoch")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    fig.update_layout(title="Fig 13: restricted accuracy over training")
    return fig


def _per_key_lines(progress: pd.DataFrame, measure: str, label: str, model: int):
    """A figure with one line per frequency (the ``freq`` column) of the per-frequency ``measure`` of ``model``
    (``label.format(k=k)``) and the ``(epoch > 0)`` rows of that model; an annotation when there are none."""
    go = _go()
    fig = go.Figure()
    df = progress[(progress["epoch"] > 0) & (progress["model"] == model)]
    rows = df[df["measure"] == measure]
    freqs = sorted(int(k) for k in rows["freq"].unique())
    for i, k in enumerate(freqs):
        s = rows[rows["freq"] == k][["epoch", "value"]].sort_values("epoch")
        fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=_colour(i)),
                                 name=label.format(k=k)))
    if not freqs:
        fig.add_annotation(text=f"no key frequencies: no {measure} rows in the progress table",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=1.05)
    return fig, df


def excluded_per_key(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, model: int = 0):
    """Fig 15: train excluded loss with one key frequency removed (``excluded_loss_k``), one line per key,
    beside the excluded loss with all keys removed and the train loss, for one model."""
    go = _go()
    fig, df = _per_key_lines(progress, "excluded_loss_k", "k = {k} removed", model)
    for name, dash in (("excluded_loss", "dash"), ("train_loss", "dot")):
        s = _tidy_series(df, name, model)
        if not s.empty:
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color="black", dash=dash),
                                     name="all keys removed" if name == "excluded_loss" else "train loss"))
    _add_phases(fig, phases, model)
    fig.update_xaxes(type="log", title_text="epoch")
    fig.update_yaxes(type="log", title_text="train excluded loss")
    fig.update_layout(title=f"Fig 15: excluded loss per key frequency (model {model})")
    return fig


def logit_coefficients(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, model: int = 0):
    """Fig 14: the coefficient of ``cos(w_k(a+b-c))`` in the logits (``logit_coef_k``) over training, one
    line per key frequency, for one model."""
    fig, _ = _per_key_lines(progress, "logit_coef_k", "k = {k}", model)
    _add_phases(fig, phases, model)
    fig.update_xaxes(type="log", title_text="epoch")
    fig.update_yaxes(title_text="coefficient of cos(w_k(a+b-c))")
    fig.update_layout(title=f"Fig 14: coefficients of cos(w_k(a+b-c)) in the logits (model {model})")
    return fig


# ---------------------------------------------------------------------- Analysis figures
def fourier_norms(analysis):
    """Fig 3: norms of the Fourier components of W_E (along the token axis) and W_L (along the logit axis)
    per frequency ``k = 1 .. p // 2`` (the constant omitted), key frequencies highlighted."""
    go = _go()
    from plotly.subplots import make_subplots

    per = analysis.periodicity
    keys = set(per.keys)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["W_E", "W_L"])
    for j, (name, v) in enumerate((("W_E", per.we_freq_norms), ("W_L", per.wl_freq_norms)), start=1):
        v = _np(v)[1:]
        k = np.arange(1, len(v) + 1)
        fig.add_trace(go.Bar(x=k, y=v, name=name, marker_color=["crimson" if int(x) in keys else "steelblue"
                                                                   for x in k]), row=1, col=j)
        fig.update_xaxes(title_text="frequency k", row=1, col=j)
    fig.update_yaxes(title_text="norm of Fourier component", row=1, col=1)
    fig.update_layout(title=f"Fig 3: W_E and W_L Fourier norms per frequency (keys {sorted(keys)} in red)",
                      showlegend=False)
    return fig


def _grid(z: np.ndarray, title: str, colorscale: str = "RdBu", zmid: float | None = None, x="b", y="a"):
    go = _go()
    fig = go.Figure(go.Heatmap(z=z, colorscale=colorscale, zmid=zmid))
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y, autorange="reversed")
    fig.update_layout(title=title, width=560, height=520)
    return fig


def attention(analysis, head: int = 0):
    """Fig 4 (left): attention of head ``head`` from '=' to 'a' over the ``(a, b)`` grid."""
    z = _np(analysis.periodicity.attn_to_a[head])
    return _grid(z, f"Fig 4: attention of head {head} from '=' to 'a' over (a, b)", zmid=0.5)


def all_heads(analysis):
    """Fig 9: attention from '=' to 'a' over ``(a, b)`` for every head, side by side."""
    from plotly.subplots import make_subplots

    go = _go()
    grids = _np(analysis.periodicity.attn_to_a)
    H = grids.shape[0]
    fig = make_subplots(rows=1, cols=H, subplot_titles=[f"head {h}" for h in range(H)])
    for h in range(H):
        fig.add_trace(go.Heatmap(z=grids[h], colorscale="RdBu", zmid=0.5, showscale=h == H - 1), row=1, col=h + 1)
        fig.update_yaxes(autorange="reversed", title_text="a" if h == 0 else None, row=1, col=h + 1)
        fig.update_xaxes(title_text="b", row=1, col=h + 1)
    fig.update_layout(title="Fig 9: attention from '=' to 'a' over (a, b), every head", height=360,
                      width=max(560, 300 * H))
    return fig


def neuron(analysis, index: int = 0):
    """Fig 4 (middle): activation of MLP neuron ``index`` at '=' over the ``(a, b)`` grid."""
    z = _np(analysis.periodicity.neuron_acts[:, :, index])
    return _grid(z, f"Fig 4: activation of neuron {index} over (a, b)", colorscale="Viridis")


def logit_fourier(analysis):
    """Fig 4 (right): norms (over the output ``c``) of the 2-D Fourier components of the logits over
    ``(a, b)``; rows: component of ``a``, columns: component of ``b`` (basis names as
    :func:`grokscope.fourier.basis_names`)."""
    z = _np(analysis.periodicity.logit_spectrum)
    names = basis_names(z.shape[0])
    fig = _grid(z, "Fig 4: norms of the logits' 2-D Fourier components", colorscale="Blues",
                x="Fourier component of b", y="Fourier component of a")
    fig.data[0].update(x=names, y=names)
    fig.update_layout(width=680, height=640)
    return fig


def ablate_freqs(analysis, split: str = "all"):
    """Fig 6: loss when the ``cos/sin(w_k(a+b))`` components of one frequency ``k`` are removed from the
    logits, for every ``k``, beside the original loss and the restricted loss (key frequencies kept only)."""
    go = _go()
    ab = analysis.ablations
    pf = ab.per_frequency
    v = _np(getattr(pf, f"loss_{split}"))
    k = np.asarray(pf.freqs) if len(pf.freqs) == len(v) else np.arange(1, len(v) + 1)
    keys = set(analysis.keys)
    fig = go.Figure(go.Bar(x=k, y=v, name="frequency k ablated",
                           marker_color=["crimson" if int(x) in keys else "steelblue" for x in k]))
    base = getattr(ab.baseline, f"loss_{split}")
    restr = getattr(ab.results["logits_restricted"].after, f"loss_{split}") if "logits_restricted" in ab.results \
        else None
    fig.add_trace(go.Scatter(x=[k.min(), k.max()], y=[base, base], mode="lines", line=dict(color="black", dash="dash"),
                             name=f"original loss {base:.3g}"))
    if restr is not None:
        fig.add_trace(go.Scatter(x=[k.min(), k.max()], y=[restr, restr], mode="lines",
                                 line=dict(color="green", dash="dot"), name=f"restricted loss {restr:.3g}"))
    fig.update_xaxes(title_text="frequency k")
    fig.update_yaxes(type="log", title_text=f"loss ({split} pairs)")
    fig.update_layout(title="Fig 6: loss when ablating each frequency, and the restricted loss")
    return fig


def interference(keys: Sequence[int], p: int):
    """Fig 8: constructive interference: ``sum_k cos(w_k x)`` over the key frequencies for ``x = 0 .. p-1``
    (``w_k = 2 pi k / p``), peaked at ``x = 0`` (i.e. ``c = a + b``), beside each single wave."""
    go = _go()
    x = np.arange(p)
    fig = go.Figure()
    total = np.zeros(p)
    for i, k in enumerate(keys):
        y = np.cos(2 * math.pi * k * x / p)
        total += y
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=_colour(i), width=1), opacity=0.5,
                                 name=f"cos(w_{k} x)"))
    fig.add_trace(go.Scatter(x=x, y=total, mode="lines", line=dict(color="black", width=2), name="sum over keys"))
    if not len(keys):
        fig.add_annotation(text="no key frequencies", showarrow=False, xref="paper", yref="paper", x=0.5, y=1.05)
    fig.update_xaxes(title_text="x = a + b - c (mod p)")
    fig.update_yaxes(title_text="value")
    fig.update_layout(title=f"Fig 8: constructive interference of the key frequencies {list(keys)}")
    return fig


def neuron_clusters(analysis, freq: int | None = None):
    """Fig 5: (left) each live neuron's FVE by a degree-2 polynomial of its best single frequency, sorted, coloured
    by that frequency, with the threshold; (right) the ``W_L`` rows of the well-fit neurons of one cluster
    (``freq``, default the largest key-frequency cluster) in the Fourier basis along the output ``c``: the paper
    finds only ``cos w_k`` and ``sin w_k`` non-trivial."""
    go = _go()
    from plotly.subplots import make_subplots

    ne = analysis.neurons
    fve, best = _np(ne.fve), _np(ne.best_freq)
    keys = list(analysis.keys)
    if freq is None:
        cand = {k: v for k, v in ne.clusters.items() if k in keys} or ne.clusters
        freq = max(cand, key=cand.get) if cand else (keys[0] if keys else 1)
    rows = np.where((best == freq) & (fve > ne.threshold))[0]
    W = _np(ne.wl_fourier)[rows]
    names = basis_names(W.shape[1])
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.12,
                        subplot_titles=[f"neuron FVE by one frequency ({ne.n_well_fit}/{ne.n_neurons} > "
                                        f"{ne.threshold:g})", f"W_L rows of the {len(rows)} neurons of frequency "
                                        f"{freq}, Fourier basis"])
    order = np.argsort(-fve)
    rank = np.empty(len(fve), dtype=int)
    rank[order] = np.arange(len(fve))
    groups = [(f"k = {k}", best == k, _colour(i)) for i, k in enumerate(keys)]
    groups.append(("other k", ~np.isin(best, keys), "lightgray"))
    for label, sel, colour in groups:
        if sel.any():
            fig.add_trace(go.Scatter(x=rank[sel], y=fve[sel], mode="markers", marker=dict(size=4, color=colour),
                                     name=label), row=1, col=1)
    fig.add_hline(y=ne.threshold, line=dict(color="black", dash="dash"), row=1, col=1)
    fig.update_xaxes(title_text="neuron (sorted by FVE)", row=1, col=1)
    fig.update_yaxes(title_text="fraction of variance explained", range=[0, 1.02], row=1, col=1)
    fig.add_trace(go.Heatmap(z=W, x=names, y=[f"n{r}" for r in rows], colorscale="RdBu", zmid=0, showscale=True),
                  row=1, col=2)
    fig.update_xaxes(title_text="Fourier component of c", row=1, col=2)
    fig.update_yaxes(title_text="neuron", autorange="reversed", row=1, col=2)
    fig.update_layout(title=f"Fig 5: neurons are degree-2 polynomials of one frequency; W_L of the k = {freq} "
                            "cluster is cos/sin w_k only", width=1100, height=540,
                      legend=dict(x=0.01, y=0.02, xanchor="left", yanchor="bottom", bgcolor="rgba(255,255,255,0.7)"))
    return fig


def _per_head_bars(values: np.ndarray, title: str, ytitle: str, keys: Sequence[int]):
    go = _go()
    from plotly.subplots import make_subplots

    H, p = values.shape
    names = basis_names(p)
    key_idx = {i for i, n in enumerate(names) for k in keys if n in (f"cos {k}", f"sin {k}")}
    fig = make_subplots(rows=1, cols=H, subplot_titles=[f"head {h}" for h in range(H)], shared_yaxes=True)
    for h in range(H):
        fig.add_trace(go.Bar(x=names, y=values[h], marker_color=["crimson" if i in key_idx else "steelblue"
                                                                 for i in range(p)], showlegend=False),
                      row=1, col=h + 1)
        fig.update_xaxes(title_text="Fourier component of a", showticklabels=False, row=1, col=h + 1)
    fig.update_yaxes(title_text=ytitle, row=1, col=1)
    fig.update_layout(title=title, height=380, width=max(700, 320 * H))
    return fig


def attention_fourier(analysis):
    """Fig 10: each head's attention score weights ``C_h[a]`` ('=' -> token ``a``) in the Fourier basis over
    ``a`` (the constant dropped); key-frequency components in red."""
    v = _np(analysis.periodicity.attn_C_fourier).copy()
    v[:, 0] = 0.0
    return _per_head_bars(v, "Fig 10: attention score weights C_h in the Fourier basis (constant dropped)",
                          "coefficient", analysis.keys)


def ov_fourier(analysis):
    """Fig 11: the norm of each Fourier component (over ``a``) of each head's OV output ``W_O W_V x^(0)``."""
    v = _np(analysis.periodicity.ov_fourier_norms).copy()
    v[:, 0] = 0.0
    return _per_head_bars(v, "Fig 11: OV circuit output W_O W_V x(a) per Fourier component (constant dropped)",
                          "norm over d_model", analysis.keys)


def more_neurons(analysis, indices: Sequence[int] = (1, 2, 3, 4)):
    """Fig 12: activations of MLP neurons ``indices`` over the ``(a, b)`` grid."""
    go = _go()
    from plotly.subplots import make_subplots

    acts = _np(analysis.periodicity.neuron_acts)
    idx = [i for i in indices if i < acts.shape[-1]]
    fig = make_subplots(rows=1, cols=len(idx), subplot_titles=[f"neuron {i}" for i in idx])
    for j, i in enumerate(idx):
        fig.add_trace(go.Heatmap(z=acts[:, :, i], colorscale="Viridis", showscale=False), row=1, col=j + 1)
        fig.update_yaxes(autorange="reversed", title_text="a" if j == 0 else None, row=1, col=j + 1)
        fig.update_xaxes(title_text="b", row=1, col=j + 1)
    fig.update_layout(title=f"Fig 12: activations of neurons {idx} over (a, b)", height=400,
                      width=max(560, 330 * len(idx)))
    return fig


# ---------------------------------------------------------------------- every model of a run (Figs 16-19)
def fourier_norms_models(norms: Mapping[int, Mapping[str, Any]], keys: Mapping[int, Sequence[int]] | None = None):
    """Figs 16 and 17: the W_E (left) and W_L (right) norms per frequency of every model (one row each).
    ``norms[model]``: :func:`grokscope.fourier.weight_freq_norms` of its parameters; ``keys[model]``: the
    frequencies drawn red."""
    go = _go()
    from plotly.subplots import make_subplots

    ms = sorted(norms)
    fig = make_subplots(rows=len(ms), cols=2, shared_xaxes=True, vertical_spacing=0.04 if len(ms) > 1 else 0.1,
                        subplot_titles=[f"model {m} {w}" for m in ms for w in ("W_E (Fig 16)", "W_L (Fig 17)")])
    for r, m in enumerate(ms, start=1):
        ks = set((keys or {}).get(m, ()))
        for c, name in enumerate(("W_E", "W_L"), start=1):
            v = _np(norms[m][name])
            k = np.arange(1, len(v) + 1)
            fig.add_trace(go.Bar(x=k, y=v, marker_color=["crimson" if int(x) in ks else _colour(r - 1) for x in k],
                                 showlegend=False), row=r, col=c)
    fig.update_xaxes(title_text="frequency k", row=len(ms))
    fig.update_layout(title="Figs 16, 17: W_E and W_L Fourier norms of every model (key frequencies red)",
                      height=max(360, 220 * len(ms)))
    return fig


def seed_losses(metrics: pd.DataFrame, progress: pd.DataFrame, phases: Mapping[str, Any] | None = None):
    """Fig 18: train, test and restricted loss of every model (one panel each, its own phase lines)."""
    go = _go()
    from plotly.subplots import make_subplots

    ms = sorted(int(m) for m in metrics["model"].unique())
    cols = min(len(ms), 3)
    nrows = math.ceil(len(ms) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[f"model {m}" for m in ms],
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for i, m in enumerate(ms):
        r, c = divmod(i, cols)
        d = metrics[(metrics["model"] == m) & (metrics["epoch"] > 0)].sort_values("epoch")
        for name, s, dash, colour in (("train", thin_log(d[["epoch", "train_loss"]].dropna(), "train_loss"), "solid",
                                       "#1f77b4"),
                                      ("test", thin_log(d[["epoch", "test_loss"]].dropna(), "test_loss"), "dash",
                                       "#ff7f0e")):
            fig.add_trace(go.Scatter(x=s["epoch"], y=s.iloc[:, 1], mode="lines", line=dict(color=colour, dash=dash),
                                     name=f"{name} loss", legendgroup=name, showlegend=i == 0), row=r + 1, col=c + 1)
        s = _tidy_series(progress[progress["epoch"] > 0], "restricted_loss", m)
        if not s.empty:
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color="#2ca02c"),
                                     name="restricted loss", legendgroup="restricted", showlegend=i == 0),
                          row=r + 1, col=c + 1)
        _add_phases(fig, phases, m, bands=False, row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", row=r + 1, col=c + 1)
        fig.update_yaxes(type="log", row=r + 1, col=c + 1)
    fig.update_layout(title="Fig 18: train, test and restricted loss of every model (its own phase lines)",
                      height=360 * nrows)
    return fig


def gini_models(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0):
    """Fig 19: the Gini coefficients of the W_E (left) and W_L (right) Fourier norms of every model over
    training."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["Gini of W_E Fourier norms", "Gini of W_L Fourier norms"])
    df = progress[progress["epoch"] > 0]
    for i, m in enumerate(_models(df, None)):
        for c, name in enumerate(("gini_W_E", "gini_W_L"), start=1):
            s = _tidy_series(df, name, m)
            fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=_colour(i)),
                                     name=f"model {m}", legendgroup=f"m{m}", showlegend=c == 1), row=1, col=c)
    for c in (1, 2):
        _add_phases(fig, phases, phase_model, bands=False, row=1, col=c)
        fig.update_xaxes(type="log", title_text="epoch", row=1, col=c)
    fig.update_layout(title="Fig 19: Gini coefficients of the W_E and W_L Fourier norms of every model", height=420)
    return fig
