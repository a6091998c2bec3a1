"""Figures of the local learning coefficient (``grokscope progress RUN --llc``; :mod:`grokscope.measures.llc`): the
LLC over training beside the restricted and excluded losses with the phase boundaries (:func:`llc_curve`), and the
calibration sweep that chose its SGLD settings (:func:`llc_calibration`). Plotly only inside the functions (an
optional extra); figures by name are :mod:`grokscope.report.run`'s.

    from grokscope.report import plot_llc
    plot_llc.llc_curve(load_progress(run), load_phases(run))
    plot_llc.llc_calibration(load_calibration(run))
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from .plot_common import colour, plotly_go
from .plot_curves import add_phases

__all__ = ["llc_curve", "llc_calibration", "LOSSES"]

#: the losses drawn above the LLC (those the table has): (measure, label, dash)
LOSSES = (("restricted_loss", "restricted loss (test)", "solid"), ("excluded_loss", "excluded loss (train)", "dash"),
          ("train_loss", "train loss", "dot"), ("test_loss", "test loss", "dashdot"))


def llc_curve(progress: pd.DataFrame, phases: Mapping[str, Any] | None = None, *, phase_model: int = 0,
              models: Sequence[int] | None = None):
    """The LLC (``llc``, error bars ``llc_std``: the spread over the chains kept) of each model over training;
    above it, where the table has them, the restricted, excluded, train and test losses (log y), and the phase
    boundaries of ``phase_model`` on both panels."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    llc = progress[progress["measure"] == "llc"]
    has_losses = bool(progress["measure"].isin([m for m, _, _ in LOSSES]).any())
    rows = 2 if has_losses else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=(["losses", "local learning coefficient"] if has_losses else
                                        ["local learning coefficient"]))
    ms = sorted(int(m) for m in llc["model"].unique()) if models is None else list(models)
    for i, m in enumerate(ms):
        c = colour(i)
        if has_losses:
            llc_epochs = set(llc.loc[llc["model"] == m, "epoch"])
            for measure, label, dash in LOSSES:
                s = progress[(progress["model"] == m) & (progress["measure"] == measure) & (progress["epoch"] > 0)]
                if s.empty:
                    continue
                s = s.sort_values("epoch")
                fig.add_trace(go.Scatter(x=s["epoch"], y=s["value"], mode="lines", line=dict(color=c, dash=dash),
                                         name=f"model {m} {label}", legendgroup=f"m{m}",
                                         visible=True if measure in ("restricted_loss", "excluded_loss")
                                         or not llc_epochs else "legendonly"), row=1, col=1)
        v = llc[llc["model"] == m].sort_values("epoch")
        sd = progress[(progress["model"] == m) & (progress["measure"] == "llc_std")].set_index("epoch")["value"]
        fig.add_trace(go.Scatter(x=v["epoch"], y=v["value"], mode="lines+markers", line=dict(color=c),
                                 error_y=dict(type="data", array=sd.reindex(v["epoch"]).to_numpy(), visible=True),
                                 name=f"model {m} LLC", legendgroup=f"m{m}"), row=rows, col=1)
    for r in range(1, rows + 1):
        add_phases(fig, phases, phase_model, bands=r == 1, row=r, col=1)
    if has_losses:
        fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="LLC (lambda-hat)", row=rows, col=1)
    fig.update_xaxes(title_text="epoch", row=rows, col=1)
    fig.update_layout(title="LLC: the local learning coefficient over training (devinterp SGLD; error bars: "
                            "spread over chains)", height=700 if has_losses else 420)
    return fig


def llc_calibration(cal: Mapping[str, Any]):
    """The calibration sweep (``llc_calibration.json``): the LLC against the step size, one line per n_beta, the
    settings whose chains were not all converged hollow, the chosen one starred; beside it the mean loss trace
    of each setting at the chosen n_beta (flat after burn-in where stable)."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    rows = pd.DataFrame(cal["rows"])
    chosen = cal["chosen"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["LLC vs step size (hollow: not all chains converged)",
                                                        f"mean loss trace at n_beta {chosen['nbeta']:.3g}"],
                        horizontal_spacing=0.12)
    for i, (nb, g) in enumerate(rows.groupby("nbeta", sort=True)):
        g = g.sort_values("lr")
        fig.add_trace(go.Scatter(x=g["lr"], y=g["llc"], mode="lines+markers", line=dict(color=colour(i)),
                                 marker=dict(symbol=["circle" if s else "circle-open" for s in g["stable"]], size=9),
                                 name=f"n_beta {nb:.3g}", text=g["status"]), row=1, col=1)
    pick = rows[(rows["lr"] == chosen["lr"]) & (rows["nbeta"] == chosen["nbeta"])]
    if len(pick):
        fig.add_trace(go.Scatter(x=pick["lr"], y=pick["llc"], mode="markers", name="chosen",
                                 marker=dict(symbol="star", size=16, color="black")), row=1, col=1)
    same = rows[rows["nbeta"] == chosen["nbeta"]].sort_values("lr")
    for j, r in enumerate(same.itertuples()):
        fig.add_trace(go.Scatter(y=r.mean_trace, mode="lines", line=dict(color=colour(j), width=1),
                                 name=f"lr {r.lr:g} ({r.status.replace('_', ' ')})", legendgroup="traces"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="step size (epsilon)", row=1, col=1)
    fig.update_yaxes(title_text="LLC", row=1, col=1)
    fig.update_xaxes(title_text="step (block means)", row=1, col=2)
    fig.update_yaxes(type="log", title_text="minibatch loss", row=1, col=2)
    where = f"model {cal.get('model', 0)}, epoch {cal.get('epoch', '?')}"
    fig.update_layout(title=f"LLC calibration: step size x n_beta sweep on the final checkpoint ({where}); chosen lr "
                            f"{chosen['lr']:g}" + ("" if cal.get("stable", True) else " (NO setting was stable)"),
                      height=480)
    return fig
