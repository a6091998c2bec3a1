"""``grokscope report`` for the Appendix D.3 sequence-task runs (every task but the modular ones): one HTML file.

* ``losses`` (Figs 29-34 top): train and test loss and accuracy over training
  (:func:`grokscope.report.plot_curves.losses`), the authors' saved curve of the same setup overlaid, dotted (when
  ``../shared/reference`` is there; ``$GROKSCOPE_REFERENCE`` overrides it, as for :mod:`grokscope.report.experiment`);
* ``per_token`` (digit addition, Fig 29 bottom): the test loss of each of the 6 sum digits over training, with the
  authors' per-token curve (``5_digit_addition_infinite_per_token.pth``) beside the infinite run's;
* ``attention`` and ``head_scores`` (induction, skip trigram): the attention patterns that show the mechanism on a
  few test examples. Induction: per head, the *previous-token score* (mean attention of position t to t - 1) and
  the *induction score* (at the scored positions, the attention to the tokens right after an earlier occurrence of
  the current token), and the patterns of the best previous-token head (layer 0) and the best induction head (last
  layer). Skip trigram: per head, the attention of the answer position (the last) to the token >= 10, and that
  position's attention over the sequence for a few test examples, the token >= 10 marked.
* tables: our milestones beside the authors' curve's (first epoch train accuracy is 100% / test accuracy passes
  95% -- the authors' files hold losses only --, first epoch train loss < 1e-2, final losses, the largest ratio of
  test to train loss: the train/test divergence of grokking), the head scores and the config.

Step alignment: the authors' ``train_losses[i]`` is the loss before their optimiser step ``i + 1``, i.e. of the
model after ``i`` steps: our ``epoch`` ``i``. Their induction-finite test loss is logged once per epoch of 4
batches: index ``j`` is step ``4 j``.

    from grokscope.report.sequence import seq_report_html
    seq_report_html(Run.load("runs/da-inf"), "report.html")
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .plot_common import as_array, colour, plotly_go
from .plot_curves import losses, thin_log
from . import plot_llc
from ..measures import llc as lc
from ..measures.cache import PROGRESS_FILE, load_progress
from ..model.authors import SAFE_GLOBALS
from ..checks import ConfigError
from .experiment import REFERENCE
from ..files import atomic_write
from . import captions
from .html import card, cell, column_name, config_table, figure_section, page, table_section, text_section
from .run import check_png_export, write_png
from ..tasks import Examples
from ..training import Run

__all__ = ["reference_curves", "reference_per_token", "figure_names",
           "seq_figure", "milestones_rows", "head_scores", "scores_of_heads", "attention_patterns", "check_epoch",
           "seq_cards", "seq_report_html", "write_seq_pngs"]

N_EXAMPLES = 3  # test examples whose attention patterns are drawn (skip trigram: 4x as many rows)


def _root(reference: str | Path | None) -> Path:
    return REFERENCE if reference is None else Path(reference)


def _load(f: Path) -> Any:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(f, map_location="cpu", weights_only=True)


def reference_curves(run: Run, reference: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The authors' loss curves of the run's setup: ``{"train": df, "test": df}`` (columns ``epoch``, ``loss``;
    ``test`` only where they saved one); empty when the reference folder or the file is absent."""
    entry = run.task.reference.get(run.task.infinite)
    if entry is None:  # the authors published no run of this setup
        return {}
    f = _root(reference) / entry[0]
    if not f.is_file():
        return {}
    d = _load(f)
    arr = lambda v: np.asarray([float(x) for x in v], dtype=float)  # noqa: E731
    if isinstance(d, (list, tuple)):  # skip_trigram_infinite.pth: the train losses alone
        d = {"train_losses": d}
    out = {}
    train = arr(d["train_losses"])
    out["train"] = pd.DataFrame({"epoch": np.arange(len(train)), "loss": train})
    if "test_losses" in d:
        test = arr(d["test_losses"])
        every = len(train) // len(test)
        out["test"] = pd.DataFrame({"epoch": np.arange(len(test)) * every, "loss": test})
    return out


def reference_per_token(run: Run, reference: str | Path | None = None) -> np.ndarray | None:
    """The authors' per-token loss curve of the run's task (infinite-data digit addition: ``(steps, 6)``), or None
    when they published none or it is absent."""
    name = run.task.reference_per_token
    if name is None:
        return None
    f = _root(reference) / name
    return np.asarray(_load(f), dtype=float) if f.is_file() else None


# ---------------------------------------------------------------------- milestones
def _curve_stats(train: pd.DataFrame | None, test: pd.DataFrame | None) -> dict[str, float]:
    """First epoch train loss < 1e-2, final losses and the largest test / train loss ratio at the test epochs."""
    nan = float("nan")
    out = {"train_loss_1e-2": nan, "final_train_loss": nan, "final_test_loss": nan, "max_test_over_train": nan}
    if train is not None and len(train):
        below = train[train["loss"] < 1e-2]
        out["train_loss_1e-2"] = float(below["epoch"].iloc[0]) if len(below) else nan
        out["final_train_loss"] = float(train["loss"].iloc[-1])
    if test is not None and len(test):
        out["final_test_loss"] = float(test["loss"].iloc[-1])
        if train is not None and len(train):
            j = test.merge(train, on="epoch", suffixes=("_test", "_train"))
            if len(j):
                out["max_test_over_train"] = float((j["loss_test"] / j["loss_train"]).max())
    return out


def milestones_rows(run: Run, reference: str | Path | None = None) -> list[dict[str, Any]]:
    """Ours and the authors' (their curve of the same setup, when present) side by side; the last column is
    each curve's train loss at our last epoch (a run stopped early compared at the same step)."""
    m = run.milestones().iloc[0]
    df = run.metrics
    train = df[["epoch", "train_loss"]].dropna().rename(columns={"train_loss": "loss"})
    test = df[["epoch", "test_loss"]].dropna().rename(columns={"test_loss": "loss"})
    last = m["last_epoch"]
    ours = {"curve": "grokscope", "last epoch": last, "train acc 100% at": m["train_acc_100"],
            "test acc > 95% at": m["test_acc_95"], **_curve_stats(train, test),
            "train loss at our last epoch": m["final_train_loss"]}
    rows = [ours]
    ref = reference_curves(run, reference)
    if ref:
        at = ref["train"][ref["train"]["epoch"] == last]["loss"]
        theirs = {"curve": "authors (" + run.task.reference[run.task.infinite][0] + ")",
                  "last epoch": float(ref["train"]["epoch"].iloc[-1]), "train acc 100% at": None,
                  "test acc > 95% at": None, **_curve_stats(ref["train"], ref.get("test")),
                  "train loss at our last epoch": float(at.iloc[0]) if len(at) else None}
        rows.append(theirs)
    ints = ("last epoch", "train acc 100% at", "test acc > 95% at", "train_loss_1e-2")
    return [{k: ("" if v is None or (isinstance(v, float) and v != v) else int(v) if k in ints else v)
             for k, v in r.items()} for r in rows]


# ---------------------------------------------------------------------- attention
def attention_patterns(model, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each layer's attention pattern ``(n, heads, query, key)`` of ``model`` (a :class:`Transformer`) on ``tokens``."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names=lambda s: s.endswith("attn.hook_pattern"))
    return {i: cache[f"blocks.{i}.attn.hook_pattern"] for i in range(model.cfg.n_layers)}


def _patterns(run: Run, epoch: int | None, n: int) -> tuple[Examples, dict[int, torch.Tensor]]:
    """The first ``n`` examples of the run's test set and the attention patterns on them at checkpoint ``epoch``."""
    ex = run.task.test_set()[:n]
    return ex, attention_patterns(run.model(epoch), ex.tokens)


def head_scores(run: Run, epoch: int | None = None, n: int = 64) -> list[dict[str, Any]]:
    """:func:`scores_of_heads` on the first ``n`` test examples at checkpoint ``epoch``; empty for digit addition."""
    if run.task.attention_probe is None:
        return []
    ex, pats = _patterns(run, epoch, n)
    return scores_of_heads(run.task.attention_probe, ex, pats)


def scores_of_heads(probe: str, ex: Examples, pats: dict[int, torch.Tensor]) -> list[dict[str, Any]]:
    """Per (layer, head): induction (``repeated_subsequence``): ``prev_token`` (mean attention of position t to
    t - 1, t >= 1) and ``induction`` (at the scored positions p, the attention summed over the positions q + 1 with
    q < p and token[q] == token[p], averaged over the scored positions); skip trigram: ``to_big_token`` (the last
    position's attention to the token >= 10)."""
    tokens = ex.tokens
    rows = []
    if probe == "skip-trigram":
        big = (tokens >= 10).float()  # (n, T): one per example
        for layer, p in pats.items():
            s = (p[:, :, -1, :] * big[:, None, :]).sum(-1).mean(0)  # (H,)
            rows += [{"layer": layer, "head": h, "to_big_token": float(s[h])} for h in range(p.shape[1])]
        return rows
    n, T = tokens.shape
    same = tokens[:, :, None] == tokens[:, None, :]  # (n, p, q)
    earlier = torch.ones(T, T, dtype=torch.bool).tril(-1)
    target = torch.zeros(n, T, T, dtype=torch.bool)  # (n, p, k): k = q + 1 for such q
    target[:, :, 1:] = (same & earlier)[:, :, :-1]
    for layer, p in pats.items():
        prev = torch.diagonal(p, offset=-1, dim1=-2, dim2=-1).mean((0, -1))  # (H,)
        ind = (p * target[:, None]).sum(-1)  # (n, H, T)
        ind = (ind * ex.mask[:, None]).sum((0, -1)) / ex.mask.sum()
        rows += [{"layer": layer, "head": h, "prev_token": float(prev[h]), "induction": float(ind[h])}
                 for h in range(p.shape[1])]
    return rows


def _attention_induction(run: Run, epoch: int | None, scores: list[dict[str, Any]]):
    go = plotly_go()
    from plotly.subplots import make_subplots

    _, pats = _patterns(run, epoch, N_EXAMPLES)
    last = run.config.n_layers - 1
    prev = max((r for r in scores if r["layer"] == 0), key=lambda r: r["prev_token"])
    ind = max((r for r in scores if r["layer"] == last), key=lambda r: r["induction"])
    heads = [(prev, f"L{prev['layer']}H{prev['head']} previous-token ({prev['prev_token']:.2f})"),
             (ind, f"L{ind['layer']}H{ind['head']} induction ({ind['induction']:.2f})")]
    fig = make_subplots(rows=2, cols=N_EXAMPLES, horizontal_spacing=0.05, vertical_spacing=0.12,
                        subplot_titles=[f"{t}, example {j}" for _, t in heads for j in range(N_EXAMPLES)])
    for i, (r, _) in enumerate(heads, start=1):
        for j in range(N_EXAMPLES):
            z = as_array(pats[r["layer"]][j, r["head"]])
            fig.add_trace(go.Heatmap(z=z, colorscale="Blues", zmin=0, zmax=1, showscale=(i == 1 and j == 0)),
                          row=i, col=j + 1)
    fig.update_yaxes(autorange="reversed", title_text="query position")
    fig.update_xaxes(title_text="key position")
    fig.update_layout(title="Attention patterns of the induction circuit (rows: query, columns: key): the "
                            "previous-token head's off-diagonal, the induction head's stripes one after the "
                            "earlier copy", height=900, width=1300)
    return fig


def _attention_skip(run: Run, epoch: int | None, scores: list[dict[str, Any]]):
    go = plotly_go()
    from plotly.subplots import make_subplots

    n = 4 * N_EXAMPLES
    ex, pats = _patterns(run, epoch, n)
    tokens = ex.tokens
    p = pats[run.config.n_layers - 1]
    H = p.shape[1]
    titles = [f"head {h} (to token >= 10: {scores[h]['to_big_token']:.2f})" for h in range(H)]
    fig = make_subplots(rows=1, cols=H, horizontal_spacing=0.04, subplot_titles=titles)
    where = (tokens >= 10).nonzero()  # (n, 2): example, position
    for h in range(H):
        text = [[str(int(t)) for t in row] for row in tokens]
        fig.add_trace(go.Heatmap(z=as_array(p[:, h, -1, :]), colorscale="Blues", zmin=0, zmax=1, text=text,
                                 hovertemplate="example %{y} position %{x} token %{text}: %{z:.3f}<extra></extra>",
                                 showscale=h == 0), row=1, col=h + 1)
        fig.add_trace(go.Scatter(x=where[:, 1].numpy(), y=where[:, 0].numpy(), mode="markers",
                                 marker=dict(symbol="x", color="red", size=7), name="token >= 10",
                                 showlegend=h == 0), row=1, col=h + 1)
    fig.update_yaxes(autorange="reversed", title_text="test example", col=1)
    fig.update_xaxes(title_text="key position")
    fig.update_layout(title="Skip trigram: attention of the answer position (the last) over the sequence, per head, "
                            f"on {n} test examples (x: the token >= 10)", height=520, width=1300)
    return fig


def _head_scores_fig(run: Run, scores: list[dict[str, Any]]):
    go = plotly_go()
    fig = go.Figure()
    labels = [f"L{r['layer']}H{r['head']}" for r in scores]
    for k in [k for k in scores[0] if k not in ("layer", "head")]:
        fig.add_trace(go.Bar(x=labels, y=[r[k] for r in scores], name=column_name(k)))
    fig.update_layout(title="Attention scores per head on 64 test examples (chance for the previous-token score "
                            "~ 1 / position)", yaxis_title="mean attention", barmode="group", height=420)
    return fig


# ---------------------------------------------------------------------- figures
def figure_names(run: Run) -> list[str]:
    names = ["losses"]
    if run.task.attention_probe is None:
        names.append("per_token")
    else:
        names += ["attention", "head_scores"]
    if _has_llc(run):  # `grokscope progress RUN --llc`
        names += ["llc", "llc_calibration"]
    return names


def _has_llc(run: Run) -> bool:
    return ((run.path / lc.CALIBRATION_FILE).is_file() and (run.path / PROGRESS_FILE).is_file()
            and bool((load_progress(run)["measure"] == "llc").any()))


def _losses(run: Run, reference: str | Path | None):
    go = plotly_go()
    fig = losses(run.metrics)
    for t in fig.data:
        if t.name:
            t.name = t.name.replace("model 0 ", "grokscope ")
    ref = reference_curves(run, reference)
    for split, dash in (("train", "dot"), ("test", "dashdot")):
        if split not in ref:
            continue
        s = thin_log(ref[split][ref[split]["epoch"] > 0], "loss")
        fig.add_trace(go.Scatter(x=s["epoch"], y=s["loss"], mode="lines", line=dict(color="black", dash=dash,
                                                                                     width=1),
                                 name=f"authors {split}"), row=1, col=1)
    c = run.config
    entry = run.task.reference.get(run.task.infinite)
    fnum = entry[1] if entry else run.task.summary
    data = "fresh data every step" if run.task.infinite else f"{c.n_train} fixed examples"
    src = (f"; authors' curves dotted ({entry[0]})" if ref else
           "; authors' curves: reference folder absent")
    fig.update_layout(title=f"{fnum}: {c.task}, {data}: train (solid) and test (dashed) loss and accuracy{src}")
    return fig


def _per_token(run: Run, reference: str | Path | None):
    go = plotly_go()
    df = run.metrics
    S = len([col for col in df.columns if col.startswith("test_loss_tok")])
    fig = go.Figure()
    for k in range(S):
        s = df[["epoch", f"test_loss_tok{k}"]].dropna()
        fig.add_trace(go.Scatter(x=s["epoch"], y=s[f"test_loss_tok{k}"], mode="lines", line=dict(color=colour(k)),
                                 name=f"grokscope test, token {k}", legendgroup=f"t{k}"))
    ref = reference_per_token(run, reference) if run.task.infinite and run.config.n_digits == 5 else None
    if ref is not None:
        for k in range(min(S, ref.shape[1])):
            fig.add_trace(go.Scatter(x=np.arange(len(ref)), y=ref[:, k], mode="lines",
                                     line=dict(color=colour(k), dash="dot"), name=f"authors, token {k}",
                                     legendgroup=f"t{k}"))
    note = (" (dotted: the authors' infinite-data run, " + str(run.task.reference_per_token) + ")") if ref is not None else ""
    fig.update_layout(title=f"Fig 29 (bottom): loss per sum digit (token 0 = the most significant){note}",
                      xaxis_title="step", yaxis_title="cross-entropy", yaxis_type="log", height=480)
    return fig


def seq_figure(run: Run, name: str, *, epoch: int | None = None, reference: str | Path | None = None,
               scores: list[dict[str, Any]] | None = None):
    """The figure ``name`` (of :func:`figure_names`) of a sequence-task run; the attention ones at checkpoint
    ``epoch`` (default: the last)."""
    if name not in figure_names(run):
        raise KeyError(f"unknown figure {name!r} for task {run.config.task}; known: {', '.join(figure_names(run))}")
    if name == "losses":
        return _losses(run, reference)
    if name == "per_token":
        return _per_token(run, reference)
    if name == "llc":
        return plot_llc.llc_curve(load_progress(run))
    if name == "llc_calibration":
        return plot_llc.llc_calibration(lc.load_calibration(run))
    scores = head_scores(run, epoch) if scores is None else scores
    if name == "head_scores":
        return _head_scores_fig(run, scores)
    return (_attention_skip if run.task.attention_probe == "skip-trigram" else _attention_induction)(run, epoch, scores)


def check_epoch(run: Run, epoch: int | None) -> int:
    eps = run.checkpoint_epochs
    if not eps:
        raise ConfigError(f"run={str(run.path)!r} is invalid: it has no checkpoints yet")
    if epoch is not None and epoch not in eps:
        raise ConfigError(f"epoch={epoch} is invalid: must be one of the checkpoints {eps[0]}..{eps[-1]}")
    return eps[-1] if epoch is None else epoch


def seq_cards(run: Run, rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> list[str]:
    """The header's key numbers: the task and its data, steps trained, when train accuracy reached 100% and test
    accuracy passed 95%, the final losses and (attention tasks) the best head's score."""
    c = run.config
    ours = rows[0]
    test95 = ours["test acc > 95% at"]
    out = [card("task", c.task.replace("_", " "), "fresh data every step" if run.task.infinite else
                f"{c.n_train} fixed training examples"),
           card("steps", ours["last epoch"], f"{c.n_layers} layer(s), d_model {c.d_model}"),
           card("test acc > 95% at", test95 if test95 != "" else "never", "first step",
                "good" if test95 != "" else "bad"),
           card("train acc 100% at", ours["train acc 100% at"] if ours["train acc 100% at"] != "" else "never",
                "first step"),
           card("final test loss", ours["final_test_loss"], f"train {cell(ours['final_train_loss'])}")]
    if len(rows) > 1:
        out.append(card("authors' final train loss", rows[1]["final_train_loss"], "their saved curve"))
    for key, label in (("induction", "best induction head"), ("to_big_token", "best head to token >= 10")):
        if scores and key in scores[0]:
            best = max(scores, key=lambda r: r[key])
            out.append(card(label, f"{best[key]:.2f}", f"layer {best['layer']} head {best['head']}"))
    return out


def seq_report_html(run: Run, path: str | Path, *, epoch: int | None = None,
                    reference: str | Path | None = None, figures: Sequence[str] | None = None) -> Path:
    """Write ONE self-contained HTML file (plotly JS embedded once): key numbers as cards, a table of contents,
    the figures with captions (default: all of :func:`figure_names`), the milestones, the head scores and the
    config. Returns the path."""
    epoch = check_epoch(run, epoch)
    names = figure_names(run) if figures is None else list(figures)
    scores = head_scores(run, epoch) if run.task.attention_probe else []
    sections = []
    for i, name in enumerate(names):
        fig = seq_figure(run, name, epoch=epoch, reference=reference, scores=scores)
        title, cap = captions.caption(captions.SEQUENCE, name)
        sections.append(figure_section(fig, name, title, cap, first=i == 0))
    ref_note = ("" if reference_curves(run, reference) else
                f"<p class='note'>The authors' reference curves are not shown: "
                f"{html.escape(str(_root(reference)))} is absent.</p>")
    rows = milestones_rows(run, reference)
    sections.append(table_section("table-milestones", "Milestones: ours beside the authors' curve", rows,
                                  "milestones", "First steps train accuracy reaches 100%, test accuracy passes 95% "
                                  "and train loss falls below 1e-2 (empty: never, or not in the authors' files, "
                                  "which hold losses only); final losses; the largest test / train loss ratio."))
    if scores:
        sections.append(table_section("table-head-scores", f"Attention scores per head (step {epoch})", scores,
                                      "head-scores", "Mean attention on 64 test examples."))
    c = run.config
    sections.append(text_section("config", "Config", config_table(c.to_dict())
                                 + f"<p class='note'>The attention figures are of checkpoint {epoch}.</p>"))
    doc = page(f"grokscope report: {c.task.replace('_', ' ')}",
               f"{run.path} — n_train {c.n_train or 'infinite'} (Appendix D.3)",
               cards=seq_cards(run, rows, scores), intro=ref_note, sections=sections)
    path = Path(path)
    atomic_write(path, lambda t: Path(t).write_text(doc, encoding="utf-8"))
    return path


def write_seq_pngs(run: Run, outdir: str | Path, *, epoch: int | None = None,
                   reference: str | Path | None = None, scale: float = 1.0) -> list[Path]:
    """Each figure as ``outdir/<name>.png`` (needs kaleido and a local Chromium, as
    :func:`grokscope.report.write_pngs`)."""
    check_png_export()
    epoch = check_epoch(run, epoch)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    scores = head_scores(run, epoch) if run.task.attention_probe else []
    paths = []
    for name in figure_names(run):
        path = outdir / f"{name}.png"
        write_png(seq_figure(run, name, epoch=epoch, reference=reference, scores=scores), path, scale)
        paths.append(path)
    return paths
