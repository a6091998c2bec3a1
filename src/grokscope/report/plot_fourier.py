"""Figures of the Fourier structure and the mechanism (Figs 3-6, 8-12, 16, 17) drawn from
:func:`grokscope.interp.analyze` results (one checkpoint of one model) and the weight norms of every model.

No training, analysis or file logic lives here; plotly only inside the functions (an optional extra). Each
returns a ``plotly.graph_objects.Figure`` whose title starts with the paper's figure number ("Fig 3: ...").
Figures by name, for a run, and the HTML report are :mod:`grokscope.report.run`'s.

    from grokscope.report import plot_fourier
    plot_fourier.fourier_norms(analyze(run.model(), run.dataset()))
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..fourier.basis import basis_names
from .plot_common import as_array, colour, plotly_go

__all__ = ["fourier_norms", "attention", "all_heads", "neuron", "logit_fourier", "ablate_freqs", "interference",
           "neuron_clusters", "attention_fourier", "ov_fourier", "more_neurons", "fourier_norms_models"]


# ---------------------------------------------------------------------- one checkpoint's analysis (Figs 3-6, 8-12)
def fourier_norms(analysis):
    """Fig 3: norms of the Fourier components of W_E (along the token axis) and W_L (along the logit axis)
    per frequency ``k = 1 .. p // 2`` (the constant omitted), key frequencies highlighted."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    per = analysis.periodicity
    keys = set(per.keys)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["W_E", "W_L"])
    for j, (name, v) in enumerate((("W_E", per.we_freq_norms), ("W_L", per.wl_freq_norms)), start=1):
        v = as_array(v)[1:]
        k = np.arange(1, len(v) + 1)
        fig.add_trace(go.Bar(x=k, y=v, name=name, marker_color=["crimson" if int(x) in keys else "steelblue"
                                                                   for x in k]), row=1, col=j)
        fig.update_xaxes(title_text="frequency k", row=1, col=j)
    fig.update_yaxes(title_text="norm of Fourier component", row=1, col=1)
    fig.update_layout(title=f"Fig 3: W_E and W_L Fourier norms per frequency (keys {sorted(keys)} in red)",
                      showlegend=False)
    return fig


def _grid(z: np.ndarray, title: str, colorscale: str = "RdBu", zmid: float | None = None, x="b", y="a"):
    go = plotly_go()
    fig = go.Figure(go.Heatmap(z=z, colorscale=colorscale, zmid=zmid))
    fig.update_xaxes(title_text=x, constrain="domain")
    fig.update_yaxes(title_text=y, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(title=title, width=560, height=600)
    return fig


def attention(analysis, head: int = 0):
    """Fig 4 (left): attention of head ``head`` from '=' to 'a' over the ``(a, b)`` grid."""
    z = as_array(analysis.periodicity.attn_to_a[head])
    return _grid(z, f"Fig 4: attention of head {head} from '=' to 'a' over (a, b)", zmid=0.5)


def all_heads(analysis):
    """Fig 9: attention from '=' to 'a' over ``(a, b)`` for every head, side by side."""
    from plotly.subplots import make_subplots

    go = plotly_go()
    grids = as_array(analysis.periodicity.attn_to_a)
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
    z = as_array(analysis.periodicity.neuron_acts[:, :, index])
    return _grid(z, f"Fig 4: activation of neuron {index} over (a, b)", colorscale="Viridis")


def logit_fourier(analysis):
    """Fig 4 (right): norms (over the output ``c``) of the 2-D Fourier components of the logits over
    ``(a, b)``; rows: component of ``a``, columns: component of ``b`` (basis names as
    :func:`grokscope.fourier.basis_names`)."""
    z = as_array(analysis.periodicity.logit_spectrum)
    names = basis_names(z.shape[0])
    fig = _grid(z, "Fig 4: norms of the logits' 2-D Fourier components", colorscale="Blues",
                x="Fourier component of b", y="Fourier component of a")
    fig.data[0].update(x=names, y=names)
    fig.update_layout(width=680, height=640)
    return fig


def ablate_freqs(analysis, split: str = "all"):
    """Fig 6: loss when the ``cos/sin(w_k(a+b))`` components of one frequency ``k`` are removed from the
    logits, for every ``k``, beside the original loss and the restricted loss (key frequencies kept only)."""
    go = plotly_go()
    ab = analysis.ablations
    pf = ab.per_frequency
    v = as_array(getattr(pf, f"loss_{split}"))
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
    go = plotly_go()
    x = np.arange(p)
    fig = go.Figure()
    total = np.zeros(p)
    for i, k in enumerate(keys):
        y = np.cos(2 * math.pi * k * x / p)
        total += y
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=colour(i), width=1), opacity=0.5,
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
    go = plotly_go()
    from plotly.subplots import make_subplots

    ne = analysis.neurons
    fve, best = as_array(ne.fve), as_array(ne.best_freq)
    keys = list(analysis.keys)
    if freq is None:
        cand = {k: v for k, v in ne.clusters.items() if k in keys} or ne.clusters
        freq = max(cand, key=cand.get) if cand else (keys[0] if keys else 1)
    rows = np.where((best == freq) & (fve > ne.threshold))[0]
    W = as_array(ne.wl_fourier)[rows]
    names = basis_names(W.shape[1])
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.12,
                        subplot_titles=[f"neuron FVE by one frequency ({ne.n_well_fit}/{ne.n_neurons} > "
                                        f"{ne.threshold:g})", f"W_L rows of the {len(rows)} neurons of frequency "
                                        f"{freq}, Fourier basis"])
    order = np.argsort(-fve)
    rank = np.empty(len(fve), dtype=int)
    rank[order] = np.arange(len(fve))
    groups = [(f"k = {k}", best == k, colour(i)) for i, k in enumerate(keys)]
    groups.append(("other k", ~np.isin(best, keys), "lightgray"))
    for label, sel, marker_colour in groups:
        if sel.any():
            fig.add_trace(go.Scatter(x=rank[sel], y=fve[sel], mode="markers", marker=dict(size=4, color=marker_colour),
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
    go = plotly_go()
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
    v = as_array(analysis.periodicity.attn_C_fourier).copy()
    v[:, 0] = 0.0
    return _per_head_bars(v, "Fig 10: attention score weights C_h in the Fourier basis (constant dropped)",
                          "coefficient", analysis.keys)


def ov_fourier(analysis):
    """Fig 11: the norm of each Fourier component (over ``a``) of each head's OV output ``W_O W_V x^(0)``."""
    v = as_array(analysis.periodicity.ov_fourier_norms).copy()
    v[:, 0] = 0.0
    return _per_head_bars(v, "Fig 11: OV circuit output W_O W_V x(a) per Fourier component (constant dropped)",
                          "norm over d_model", analysis.keys)


def more_neurons(analysis, indices: Sequence[int] = (1, 2, 3, 4)):
    """Fig 12: activations of MLP neurons ``indices`` over the ``(a, b)`` grid."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    acts = as_array(analysis.periodicity.neuron_acts)
    idx = [i for i in indices if i < acts.shape[-1]]
    fig = make_subplots(rows=1, cols=len(idx), subplot_titles=[f"neuron {i}" for i in idx])
    for j, i in enumerate(idx):
        fig.add_trace(go.Heatmap(z=acts[:, :, i], colorscale="Viridis", showscale=False), row=1, col=j + 1)
        fig.update_yaxes(autorange="reversed", title_text="a" if j == 0 else None, row=1, col=j + 1)
        fig.update_xaxes(title_text="b", row=1, col=j + 1)
    fig.update_layout(title=f"Fig 12: activations of neurons {idx} over (a, b)", height=400,
                      width=max(560, 330 * len(idx)))
    return fig


# ---------------------------------------------------------------------- every model of a run (Figs 16, 17)
def fourier_norms_models(norms: Mapping[int, Mapping[str, Any]], keys: Mapping[int, Sequence[int]] | None = None):
    """Figs 16 and 17: the W_E (left) and W_L (right) norms per frequency of every model (one row each).
    ``norms[model]``: :func:`grokscope.fourier.weight_freq_norms` of its parameters; ``keys[model]``: the
    frequencies drawn red."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    ms = sorted(norms)
    fig = make_subplots(rows=len(ms), cols=2, shared_xaxes=True, vertical_spacing=min(0.1, 0.5 / len(ms)),
                        subplot_titles=[f"model {m} {w}" for m in ms for w in ("W_E (Fig 16)", "W_L (Fig 17)")])
    for r, m in enumerate(ms, start=1):
        ks = set((keys or {}).get(m, ()))
        for c, name in enumerate(("W_E", "W_L"), start=1):
            v = as_array(norms[m][name])
            k = np.arange(1, len(v) + 1)
            fig.add_trace(go.Bar(x=k, y=v, marker_color=["crimson" if int(x) in ks else colour(r - 1) for x in k],
                                 showlegend=False), row=r, col=c)
    fig.update_xaxes(title_text="frequency k", row=len(ms))
    fig.update_layout(title="Figs 16, 17: W_E and W_L Fourier norms of every model (key frequencies red)",
                      height=max(400, 260 * len(ms)))
    return fig
