"""An experiment's report (``OUT/report.html``; the command is :mod:`grokscope.cli.experiment`).

The report puts the experiment's summary (:attr:`grokscope.experiments.Experiment.summary`) next to the paper's
numbers for the same rows (:data:`PAPER_TABLE5`, :data:`PAPER_TABLE6`, :data:`PAPER_WORDS`) and draws:

* the frac sweep's test losses overlaid in one plot (the paper's Fig 20, :func:`sweep`); every other
  experiment's group loss curves (the run report's ``losses`` figure, :func:`grokscope.report.figure`, its traces
  labelled by the models' configs): the paper's Figs 22, 24-25, 27, 28;
* the grokking epochs against the varied field: first epoch of train / test loss < 1e-6 and of test accuracy
  > 99% (Fig 21 for ``frac``);
* our curves over the authors' (``../shared/reference``: the frac sweep, the width scan, the low-precision run)
  where an experiment has them;
* the multi-model figures of the run report (Figs 16-19) for ``seeds``, and the progress panels (excluded loss:
  Figs 23, 26) of the first model for ``two-layer`` and ``wd``.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..experiments import EXPERIMENTS, Experiment
from . import captions
from .html import Section, card, figure_section, page, table_section
from .plot_common import colour
from .plot_curves import thin_log
from .run import figure
from ..files import atomic_write

#: the authors' saved runs: $GROKSCOPE_REFERENCE, else ../shared/reference beside the checkout
REFERENCE = Path(os.environ.get("GROKSCOPE_REFERENCE") or Path(__file__).resolve().parents[4] / "shared" / "reference")
REPORT = "report.html"


def _t5(match: dict[str, Any], loss: float, ge: float, gl: float, keys: list[int], lf: float, mf: float,
        ms: float) -> dict[str, Any]:
    return {"match": match, "test_loss": loss, "gini_W_E": ge, "gini_W_L": gl, "keys": keys, "logit_fve": lf,
            "mlp_fve": mf, "mlp_fve_std": ms}


#: Table 5 of the paper (Appendix C.2.3), by experiment: each row's matching config fields and its numbers
#: (test loss "< 1e-8" entered as 1e-8). The paper does not say which seed each row is.
PAPER_TABLE5: dict[str, list[dict[str, Any]]] = {
    "frac": [_t5({"frac_train": 0.4}, 1.98e-7, 0.76, 0.79, [17, 43, 49, 55], 0.949, 0.833, 0.261),
             _t5({"frac_train": 0.5}, 1.68e-7, 0.75, 0.77, [2, 17, 31, 41, 44], 0.912, 0.852, 0.282),
             _t5({"frac_train": 0.6}, 1.23e-7, 0.79, 0.84, [2, 23, 34, 51], 0.964, 0.957, 0.014),
             _t5({"frac_train": 0.7}, 9.85e-8, 0.80, 0.91, [14, 15, 26], 0.990, 0.989, 0.004),
             _t5({"frac_train": 0.8}, 5.83e-7, 0.62, 0.80, [38, 41], 0.639, 0.941, 0.025),
             _t5({"frac_train": 0.9}, 1.11e-7, 0.79, 0.88, [3, 26, 34, 43], 0.986, 0.987, 0.003)],
    "two-layer": [_t5({}, 9.54e-7, 0.59, 0.80, [14, 18, 29], 0.918, 0.952, 0.019),
                  _t5({}, 4.41e-5, 0.55, 0.73, [7, 12, 35, 49], 0.861, 0.862, 0.064),
                  _t5({}, 6.50e-2, 0.66, 0.80, [4, 9, 28], 0.885, 0.854, 0.059),
                  _t5({}, 4.18e-2, 0.56, 0.76, [4, 5, 15, 54], 0.914, 0.812, 0.178),
                  _t5({}, 1.75e-2, 0.68, 0.71, [3, 4, 13, 30, 38], 0.840, 0.719, 0.195)],
    "primes": [_t5({"p": 53, "weight_decay": 5.0}, 3.00e-4, 0.61, 0.68, [6, 9, 16, 21], 0.912, 0.902, 0.058),
               _t5({"p": 53, "weight_decay": 5.0}, 1.03e-4, 0.56, 0.72, [4, 13, 16], 0.948, 0.931, 0.064),
               _t5({"p": 53, "weight_decay": 5.0}, 1.21e-5, 0.66, 0.79, [13, 22, 23], 0.982, 0.976, 0.009),
               _t5({"p": 53, "weight_decay": 5.0}, 3.95e-6, 0.66, 0.74, [3, 14, 15], 0.885, 0.918, 0.046),
               _t5({"p": 53, "weight_decay": 5.0}, 5.56e-6, 0.67, 0.80, [10, 14, 22], 0.981, 0.983, 0.006),
               _t5({"p": 109}, 2.02e-7, 0.76, 0.83, [6, 7, 22, 25], 0.980, 0.973, 0.019),
               _t5({"p": 109}, 2.95e-7, 0.69, 0.82, [8, 14, 29, 32, 41], 0.952, 0.947, 0.023),
               _t5({"p": 109}, 1.66e-7, 0.78, 0.86, [13, 23, 39, 45], 0.985, 0.976, 0.009),
               _t5({"p": 109}, 2.50e-7, 0.68, 0.82, [8, 13, 32, 41], 0.968, 0.955, 0.023),
               _t5({"p": 109}, 2.77e-7, 0.76, 0.85, [29, 37, 38, 49], 0.979, 0.981, 0.008)],
    "dropout": [_t5({"dropout": 0.2}, 2.65e-1, 0.19, 0.46, [1, 4, 7, 17, 22, 33, 40, 49, 55], 0.713, 0.650, 0.175),
                _t5({"dropout": 0.2}, 4.52e-1, 0.19, 0.46, [3, 8, 19, 28, 32, 34, 40, 44], 0.733, 0.714, 0.107),
                _t5({"dropout": 0.2}, 2.03e-1, 0.20, 0.45, [4, 5, 32, 38, 41, 44, 49, 50], 0.742, 0.711, 0.106),
                _t5({"dropout": 0.5}, 1e-8, 0.26, 0.56, [1, 4, 26, 46, 47, 55], 0.894, 0.889, 0.035),
                _t5({"dropout": 0.5}, 2.01e-2, 0.20, 0.49, [16, 21, 35, 47, 53], 0.884, 0.884, 0.030),
                _t5({"dropout": 0.5}, 1e-8, 0.25, 0.54, [1, 4, 7, 19, 29, 31, 42], 0.861, 0.856, 0.040)],
}

#: Table 6 (Appendix C.2.3): loss and accuracy on all pairs, before and with the skip connection around the MLP
#: mean-ablated, averaged over the runs (std of the loss in parentheses in the paper).
PAPER_TABLE6: dict[str, list[dict[str, Any]]] = {
    "frac": [{"match": {}, "loss": 1.83e-7, "loss_std": 1.65e-7, "acc": 1.0, "ablated_loss": 7.74e-7,
              "ablated_loss_std": 6.74e-7, "ablated_acc": 1.0}],
    "two-layer": [{"match": {}, "loss": 1.97e-2, "loss_std": 2.41e-2, "acc": 0.996, "ablated_loss": 4.63e-2,
                   "ablated_loss_std": 6.72e-2, "ablated_acc": 0.987}],
    "primes": [{"match": {"p": 53, "weight_decay": 5.0}, "loss": 5.96e-5, "loss_std": 8.91e-5, "acc": 1.0, "ablated_loss": 1.5e-4,
                "ablated_loss_std": 2.70e-4, "ablated_acc": 1.0},
               {"match": {"p": 109}, "loss": 1.94e-7, "loss_std": 3.74e-8, "acc": 1.0, "ablated_loss": 6.53e-7,
                "ablated_loss_std": 1.41e-7, "ablated_acc": 1.0}],
    "dropout": [{"match": {"dropout": 0.2}, "loss": 0.215, "loss_std": 0.091, "acc": 0.997, "ablated_loss": 0.205,
                 "ablated_loss_std": 0.075, "ablated_acc": 0.997},
                {"match": {"dropout": 0.5}, "loss": 4.68e-3, "loss_std": 8.11e-3, "acc": 1.0, "ablated_loss": 3.6e-3,
                 "ablated_loss_std": 5.82e-3, "ablated_acc": 1.0}],
}

#: What the paper says in words where it gives no table (grokking epochs of D.1 as numbers where it gives them).
PAPER_WORDS: dict[str, str] = {
    "seeds": "All 5 seeds use the Fourier algorithm with the same phases (C.2.1); our mainline: ~1.4k / ~9.4k / ~14k.",
    "frac": "Smaller fractions grok later; >= 60% generalises at once; 10% and 20% do not grok in 40k epochs (Fig 20); "
            "train loss < 1e-6 almost at once for all fractions (Fig 21).",
    "wd": "On average ~3k epochs to grok at weight decay 0.3, 5-10k at 1, ~20k at 3; no grokking and no rise of the "
          "excluded loss at 0 (D.1, Figs 26-27). [sic: the paper says smaller weight decay leads to slower "
          "grokking, which its numbers contradict]",
    "primes": "P=53 generalises only with weight decay 5; P=109 behaves like the mainline; P=401 at 5% and 10% never "
              "generalises, at 20% generalises at once, and at 30% generalises at once with any weight decay "
              "in 0.3-8 (C.2.2).",
    "two-layer": "Two layers also grok, complicated by slingshots; the excluded loss improves smoothly before "
                 "grokking (Figs 22-23).",
    "dropout": "Grokking occurs for all three seeds with dropout 0.2 and 0.5 (D.1, Fig 28).",
    "l1": "No grokking with L1 regularisation (D.1, Fig 28).",
    "low-precision": "A lower-precision loss induces slingshots in a one-layer model (D.2).",
    "width-no-wd": "Not in the paper's text; the authors' saved curves are overlaid.",
}

_PAPER_WD_EPOCHS = {0.3: 3000, 1.0: 7500, 3.0: 20000}  # "~3k", "5-10k" (middle), "~20k" epochs to grok

#: The per-model fields an experiment varies besides the seed: the x axis of its grokking-epochs figure.
VARIED = {"frac": "frac_train", "wd": "weight_decay", "primes": "p", "dropout": "dropout", "l1": "l1",
          "width-no-wd": "d_model", "low-precision": "loss_dtype"}


#: the varied fields in words (legends, axis titles)
VARIED_NAMES = {"frac_train": "training fraction", "weight_decay": "weight decay", "p": "p", "dropout": "dropout",
                "l1": "L1 strength", "d_model": "d_model (width)", "loss_dtype": "loss precision", "seed": "seed"}


def _value(field: str, v: Any) -> str:
    if field == "frac_train":
        return f"{100 * v:.0f}%"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _matches(row: pd.Series, match: dict[str, Any]) -> bool:
    return all(k in row and row[k] == v for k, v in match.items())


def model_label(row: pd.Series, exp: str) -> str:
    """A summary row's model in words: the experiment's varied field's value (and the fraction and weight decay,
    for ``primes``) and the seed."""
    v = VARIED.get(exp)
    parts = [f"{VARIED_NAMES.get(v, v)} {_value(v, row[v])}"] if v and v in row else []
    if exp == "primes":
        parts += [f"training fraction {_value('frac_train', row['frac_train'])}",
                  f"weight decay {_value('weight_decay', row['weight_decay'])}"]
    return ", ".join(parts + [f"seed {row['seed']}"])


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: a float to ``digits`` significant digits, NaN and None as empty, anything else as text."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


# ---------------------------------------------------------------------- tables
def table5(summary: pd.DataFrame, exp: str) -> list[dict[str, Any]]:
    """Table 5's columns for every model of the summary, each followed by the paper's rows that match it (by the
    matching fields; the paper's rows are listed once, after the first of our models they match)."""
    paper = PAPER_TABLE5.get(exp, [])
    shown: set[int] = set()
    rows = []
    for _, r in summary.iterrows():
        rows.append({"source": "grokscope", "model": model_label(r, exp), "test loss": fmt(r.final_test_loss),
                     "Gini(W_E)": fmt(r.gini_W_E, 2), "Gini(W_L)": fmt(r.gini_W_L, 2),
                     "key frequencies": ", ".join(map(str, r["keys"])), "logit FVE": _pct(r.logit_fve),
                     "MLP FVE [std]": _pct(r.mlp_fve) + (f" [{_pct(r.mlp_fve_std)}]" if r.mlp_fve == r.mlp_fve else ""),
                     "test acc": _pct(r.final_test_acc)})
        for i, pr in enumerate(paper):
            if i not in shown and _matches(r, pr["match"]):
                shown.add(i)
                rows.append({"source": "paper", "model": _match_label(pr["match"], exp),
                             "test loss": fmt(pr["test_loss"]), "Gini(W_E)": fmt(pr["gini_W_E"], 2),
                             "Gini(W_L)": fmt(pr["gini_W_L"], 2), "key frequencies": ", ".join(map(str, pr["keys"])),
                             "logit FVE": _pct(pr["logit_fve"]),
                             "MLP FVE [std]": f"{_pct(pr['mlp_fve'])} [{_pct(pr['mlp_fve_std'])}]", "test acc": ""})
    return rows


def _pct(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def table6(summary: pd.DataFrame, exp: str) -> list[dict[str, Any]]:
    """Table 6 (skip connection around the MLP mean-ablated; all pairs): our mean (std) over the models matching
    each of the paper's rows, beside the paper's (for experiments without a paper row: over all models)."""
    paper = PAPER_TABLE6.get(exp) or [{"match": {}}]
    rows = []
    for pr in paper:
        sel = summary[[_matches(r, pr["match"]) for _, r in summary.iterrows()]] if len(summary) else summary
        what = _match_label(pr["match"], exp)
        if len(sel):
            rows.append({"source": "grokscope", "rows": f"{what} ({len(sel)} models)",
                         "loss": f"{fmt(sel.loss_all.mean())} ({fmt(sel.loss_all.std())})",
                         "accuracy": _pct(sel.acc_all.mean()),
                         "ablated loss": f"{fmt(sel.skip_mean_loss.mean())} ({fmt(sel.skip_mean_loss.std())})",
                         "ablated accuracy": _pct(sel.skip_mean_acc.mean()),
                         "zero-ablated loss": fmt(sel.skip_zero_loss.mean())})
        if "loss" in pr:
            rows.append({"source": "paper", "rows": what, "loss": f"{fmt(pr['loss'])} ({fmt(pr['loss_std'])})",
                         "accuracy": _pct(pr["acc"]),
                         "ablated loss": f"{fmt(pr['ablated_loss'])} ({fmt(pr['ablated_loss_std'])})",
                         "ablated accuracy": _pct(pr["ablated_acc"]), "zero-ablated loss": ""})
    return rows


SUMMARY_COLUMNS = ("group", "model", "final_train_loss", "final_test_loss", "final_test_acc", "epoch_train_loss_1e6",
                   "epoch_test_loss_1e6", "epoch_test_acc_99", "memorisation_end", "circuit_formation_end",
                   "cleanup_end", "restricted_loss", "excluded_loss")


def summary_rows(summary: pd.DataFrame, exp: str) -> list[dict[str, Any]]:
    """One row per model: its config in words (:func:`model_label`; the group is in the groups table) and
    :data:`SUMMARY_COLUMNS`."""
    return [{"model": model_label(r, exp), **{c: fmt(r[c]) if isinstance(r[c], float) else r[c]
                                              for c in SUMMARY_COLUMNS if c not in ("group", "model")}}
            for _, r in summary.iterrows()]


def _match_label(match: dict[str, Any], exp: str) -> str:
    """A paper row's matching fields in words (the experiment's name when it has none)."""
    return ", ".join(f"{VARIED_NAMES.get(k, k)} {_value(k, v)}" for k, v in match.items()) or exp


# ---------------------------------------------------------------------- figures
def grokking_epochs(summary: pd.DataFrame, exp: str):
    """First epoch of train / test loss < 1e-6 and of test accuracy > 99% against the varied field, every model a
    marker, the mean per value a line (Fig 21 for ``frac``; the paper's epochs to grok for ``wd``)."""
    import plotly.graph_objects as go

    x = VARIED.get(exp, "seed")
    fig = go.Figure()
    for col, name, sym in (("epoch_train_loss_1e6", "train loss < 1e-6", "circle"),
                           ("epoch_test_loss_1e6", "test loss < 1e-6", "diamond"),
                           ("epoch_test_acc_99", "test accuracy > 99%", "x")):
        fig.add_trace(go.Scatter(x=summary[x], y=summary[col], mode="markers", name=name, marker=dict(symbol=sym)))
        mean = summary.groupby(x)[col].mean()
        fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines", name=name + " (mean)", showlegend=False))
    if exp == "wd":
        fig.add_trace(go.Scatter(x=list(_PAPER_WD_EPOCHS), y=list(_PAPER_WD_EPOCHS.values()), mode="markers",
                                 name="paper: epochs to grok (D.1, in words)", marker=dict(symbol="star", size=12)))
    title = "Fig 21: " if exp == "frac" else ""
    fig.update_layout(title=f"{title}epochs to train / test loss < 1e-6 and test accuracy > 99% vs "
                            f"{VARIED_NAMES.get(x, x)} (missing: never reached)", xaxis_title=VARIED_NAMES.get(x, x),
                      yaxis_title="epoch", yaxis_type="log",
                      height=450)
    return fig


def reference_curves(exp: str, root: Path = REFERENCE) -> dict[Any, tuple[np.ndarray, np.ndarray, int]]:
    """The authors' curves for an experiment: ``{value of the varied field: (train losses, test losses, test
    every)}`` (``None`` as the key when there is one curve); empty when the experiment has none or the file is
    absent."""
    spec = EXPERIMENTS[exp]
    f = root / spec.reference if spec.reference else None
    if f is None or not f.is_file():
        return {}
    d = torch.load(f, map_location="cpu", weights_only=False)
    arr = lambda v: np.asarray([float(x) for x in v])  # noqa: E731
    if exp == "frac":
        fracs, curves = d
        return {float(fr): (arr(curves[2 * i]), arr(curves[2 * i + 1]), 1) for i, fr in enumerate(fracs)}
    if exp == "width-no-wd":
        return {int(w): (arr(d["losses"][2 * i]), arr(d["losses"][2 * i + 1]), 1) for i, w in enumerate(d["d_models"])}
    return {None: (arr(d["train_losses"]), arr(d["test_losses"]), len(d["train_losses"]) // len(d["test_losses"]))}


def overlay(exp: Experiment, ref: dict[Any, tuple[np.ndarray, np.ndarray, int]], summary: pd.DataFrame):
    """Our train / test losses (solid) over the authors' (dotted), for every model matching a reference curve
    (the same value of the varied field; every model for a single curve). The authors log the loss before each
    step, we after: their epoch e is our e - 1."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = VARIED.get(exp.name)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=["train loss", "test loss"])
    i = 0
    for _, r in summary.iterrows():
        key = None if None in ref else r[x]
        if key not in ref:
            continue
        m = exp.run(r.group).metrics
        m = m[(m["model"] == r.model) & (m["epoch"] > 0)]
        tr, te, every = ref[key]
        c, lab = colour(i), model_label(r, exp.name)
        for row, (col, theirs, step) in enumerate((("train_loss", tr, 1), ("test_loss", te, every)), start=1):
            s = thin_log(m[["epoch", col]].dropna(), col)
            fig.add_trace(go.Scatter(x=s["epoch"], y=s[col], mode="lines", line=dict(color=c), legendgroup=lab,
                                     showlegend=row == 1, name=f"grokscope {lab}"), row=row, col=1)
            t = thin_log(pd.DataFrame({"epoch": np.arange(1, len(theirs) + 1) * step, col: theirs}), col)
            fig.add_trace(go.Scatter(x=t["epoch"], y=t[col], mode="lines", line=dict(color=c, dash="dot"),
                                     legendgroup=lab, showlegend=row == 1, name="authors" + (f" {_value(x, key)}" if key is not None else "")),
                          row=row, col=1)
        i += 1
    fig.update_xaxes(type="log", title_text="epoch", row=2, col=1)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    fig.update_layout(title=f"{exp.name}: our losses (solid) over the authors' saved curves (dotted; "
                            f"{EXPERIMENTS[exp.name].reference})", height=700)
    return fig


def sweep(exp: Experiment, summary: pd.DataFrame):
    """Fig 20: the train (dotted) and test (solid) loss of every model over training in ONE log-log plot, a colour
    per value of the varied field (a sequential scale: the smallest value darkest), one legend entry each."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    x = VARIED.get(exp.name, "seed")
    values = sorted(summary[x].unique()) if len(summary) else []
    hues = dict(zip(values, sample_colorscale("Viridis", [0.9 * i / max(1, len(values) - 1) for i in
                                                          range(len(values))])))
    fig = go.Figure()
    shown = set()
    for _, r in summary.sort_values(x).iterrows():
        m = exp.run(r.group).metrics
        m = m[(m["model"] == r.model) & (m["epoch"] > 0)]
        v = r[x]
        lab = _value(x, v)
        for col, dash, width in (("test_loss", "solid", 2), ("train_loss", "dot", 1)):
            s = thin_log(m[["epoch", col]].dropna(), col)
            fig.add_trace(go.Scatter(x=s["epoch"], y=s[col], mode="lines", line=dict(color=hues[v], dash=dash,
                                                                                   width=width),
                                     name=lab if col == "test_loss" else f"{lab} (train)", legendgroup=lab,
                                     showlegend=col == "test_loss" and lab not in shown,
                                     hovertemplate=f"{model_label(r, exp.name)} {col.replace('_', ' ')}: "
                                                   "%{y:.3g} at epoch %{x}<extra></extra>"))
        shown.add(lab)
    fig.update_xaxes(type="log", title_text="epoch")
    fig.update_yaxes(type="log", title_text="cross-entropy")
    name = VARIED_NAMES.get(x, x)
    fig.update_layout(title=f"Fig 20: test loss (solid) and train loss (dotted) for every {name}", height=560,
                      legend=dict(title=dict(text=name)))
    return fig


def _losses(exp: Experiment, group: str, summary: pd.DataFrame):
    """The run report's ``losses`` figure of one group, its traces named by the models' configs."""
    fig = figure(exp.run(group), "losses")
    labels = {int(r.model): model_label(r, exp.name) for _, r in summary[summary.group == group].iterrows()}
    for t in fig.data:
        if t.name and t.name.startswith("model "):
            m, rest = t.name[6:].split(" ", 1)
            t.name = f"{labels.get(int(m), 'model ' + m)} {rest}"
    fig.update_layout(title=f"{exp.name}, group {group}: train (solid) and test (dashed) loss and accuracy; "
                            "phase bands of its first model")
    return fig


def figures(exp: Experiment, summary: pd.DataFrame, reference: Path = REFERENCE) -> list[tuple[str, Any]]:
    """``(name, plotly Figure)`` of the experiment report, in order (see the module docstring); the frac sweep's
    groups overlaid in one plot (Fig 20), every other experiment's groups one plot each."""
    if exp.name == "frac" and len(summary):
        out = [("frac-sweep", sweep(exp, summary))]
    else:
        out = [(f"losses-{g.name}", _losses(exp, g.name, summary)) for g in exp.groups
               if (g.path / "summary.parquet").is_file()]
    if len(summary):
        out.append(("grokking-epochs", grokking_epochs(summary, exp.name)))
        ref = reference_curves(exp.name, reference)
        if ref:
            out.append(("reference-overlay", overlay(exp, ref, summary)))
    done = [g for g in exp.groups if (g.path / "summary.parquet").is_file()]
    if exp.name == "seeds" and done and len(done[0].configs) > 1:
        run = exp.run(done[0].name)
        out += [(n, figure(run, n)) for n in ("fourier_norms_models", "seed_losses", "gini_models")]
    if exp.name in ("two-layer", "wd") and done:
        out.append(("progress", figure(exp.run(done[0].name), "progress", model=0)))
    return out


def cards(exp: Experiment, summary: pd.DataFrame) -> list[str]:
    """The header's key numbers: models trained, how many grokked (test accuracy > 99%) and when, the median
    logit FVE and the §5.2 claims held / decided over all models."""
    status = exp.status()
    done = int((status["state"] == "done").sum())
    out = [card("groups done", f"{done} / {len(status)}", f"{len(summary)} models", "good" if done == len(status)
                else "bad")]
    if len(summary):
        grok = summary["epoch_test_acc_99"].dropna()
        out.append(card("grokked", f"{len(grok)} / {len(summary)}", "models with test accuracy > 99%",
                        "good" if len(grok) else "bad"))
        out.append(card("grokking epoch", f"{int(grok.min())}–{int(grok.max())}" if len(grok) > 1 else
                        (int(grok.iloc[0]) if len(grok) else "never"), "first epoch of test accuracy > 99%"))
        fve = summary["logit_fve"].dropna()
        out.append(card("logit FVE (median)", f"{100 * fve.median():.1f}%" if len(fve) else "", "over the models"))
        if "claims_decided" in summary:
            held, dec = int(summary["claims_holding"].fillna(0).sum()), int(summary["claims_decided"].fillna(0).sum())
            out.append(card("claims hold", f"{held} / {dec}", "decided §5.2 claims, all models",
                            "none" if not dec else "good" if held == dec else "bad"))
    return out


def report_html(exp: Experiment, path: str | Path | None = None, reference: Path = REFERENCE) -> Path:
    """Write the experiment's self-contained HTML report (default ``OUT/report.html``): key numbers as cards, a
    table of contents, the tables beside the paper's and the figures with captions; returns its path."""
    summary = exp.summary
    spec = exp.spec
    intro = (f"<p>{html.escape(spec.section)}. {html.escape(spec.doc)}.</p>"
             f"<p><b>The paper:</b> {html.escape(PAPER_WORDS.get(exp.name, ''))}</p>")
    sections = [table_section("table-groups", "Groups", exp.status().to_dict("records"), "status",
                              "One batched run each.")]
    if len(summary):
        sections += [table_section("table-models", "Per model: losses, grokking epochs, phases",
                                   summary_rows(summary, exp.name), "summary",
                                   "Final losses; first epochs of train / test loss &lt; 1e-6 (test loss also "
                                   "&lt; 1e-2) and of test accuracy &gt; 99% (empty: never); phase ends (§5.2); "
                                   "restricted and excluded loss."),
                     table_section("table5", "Table 5: ours beside the paper's rows", table5(summary, exp.name),
                                   "table5", "MLP FVE: mean [std] over the W_L directions; a two-layer model is read "
                                   "through its final block (its MLP, as the paper's two-layer rows)."),
                     table_section("table6", "Table 6: skip connection around the MLP mean-ablated",
                                   table6(summary, exp.name), "table6", "All pairs; mean (std) over the models.")]
    figs: list[Section] = []
    for i, (name, fig) in enumerate(figures(exp, summary, reference)):
        title, cap = captions.caption(captions.EXPERIMENT, name, group=name.split("-", 1)[-1])
        figs.append(figure_section(fig, name, title, cap, first=i == 0))
    doc = page(f"grokscope experiment {exp.name}", str(exp.path), cards=cards(exp, summary), intro=intro,
               sections=figs + sections)
    path = Path(path) if path is not None else exp.path / REPORT
    atomic_write(path, lambda t: Path(t).write_text(doc, encoding="utf-8"))
    return path


__all__ = ["PAPER_TABLE5", "PAPER_TABLE6", "PAPER_WORDS", "VARIED", "table5", "table6", "summary_rows",
           "grokking_epochs", "reference_curves", "overlay", "sweep", "figures", "cards", "report_html", "model_label",
           "fmt"]
