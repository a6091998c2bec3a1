"""The report: what ``grokscope report`` does with a run, above the figures.

* the progress cache and the phases file (``progress.parquet``, ``phases.json``: :func:`load_or_compute_progress`,
  :func:`run_progress`, :func:`write_phases`, ...) are :mod:`grokscope.measures.cache`'s, re-exported here;
* the figure context (:class:`FigureContext`: the analysis, progress table, phases, weight norms and keys of one
  run, each computed once) and :data:`FIGURES`, the registry of the paper's figures by name (drawn by
  :mod:`grokscope.report.plot_curves` and :mod:`grokscope.report.plot_fourier`), and the LLC's two
  (:mod:`grokscope.report.plot_llc`; drawn when the run has the LLC, :data:`LLC_FIGURES`);
* the tables, the header's key numbers (:func:`header_cards`) and the self-contained HTML file
  (:func:`report_html`; the page layout, :func:`html_table` and :data:`CSS` are :mod:`grokscope.report.html`'s,
  the captions :mod:`grokscope.report.captions`'), and the PNG export (:func:`write_pngs`).

    from grokscope.report.run import figure, load_or_compute_progress, report_html
    df = load_or_compute_progress(run)             # tidy: model, epoch, measure, freq, value
    figure(run, "losses")                          # a plotly Figure; names in FIGURES
    report_html(run, "report.html")                # every figure + Tables 1, 2 and the §5.2 claims, one file

Every function takes a :class:`grokscope.training.run.Run` (``Run.load(path)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from ..measures import phases as ph
from . import captions, plot_curves, plot_fourier, plot_llc
from .captions import caption
from .html import CSS, card, cell, figure_section, html_table, page, table_section, verdict
from .plot_common import style
from ..fourier.basis import weight_freq_norms
from ..interp import analyze
from ..measures import llc as lc
from ..measures.cache import (PHASES_FILE, PROGRESS_FILE, load_or_compute_progress, load_phases, load_progress,
                              run_progress, save_progress, write_phases)
from ..measures.progress import resolve_keys
from ..files import atomic_write
from ..training.run import Run

__all__ = ["PROGRESS_FILE", "PHASES_FILE", "save_progress", "load_progress", "load_or_compute_progress",
           "run_progress", "write_phases", "load_phases", "FigureContext", "FIGURES", "MULTI_MODEL", "LLC_FIGURES",
           "figure",
           "table1", "table2", "phases_table", "milestones_table", "claims_table", "analysis_rows", "header_cards",
           "html_table", "CSS", "report_html",
           "write_pngs", "write_png"]


# ---------------------------------------------------------------------- dispatch
class FigureContext:
    """Lazily computed inputs of the figures of one run (each computed once; progress and phases read from the
    run's files when they are up to date, else computed and saved)."""

    def __init__(self, run: Run, *, epoch=None, model=0, analysis=None, progress=None, phases=None,
                 show: bool = False):
        self.run, self.show = run, show
        self.epoch, self.model = epoch, model
        self._analysis, self._progress, self._phases = analysis, progress, phases
        self._weight_norms: dict[int, dict[str, Any]] | None = None
        self._keys: dict[int, list[int]] | None = None

    @property
    def analysis(self):
        if self._analysis is None:
            self._analysis = analyze(self.run.model(self.epoch, self.model), self.run.dataset(self.model))
        return self._analysis

    @property
    def weight_norms(self) -> dict[int, dict[str, Any]]:
        """:func:`grokscope.fourier.weight_freq_norms` of every model at ``epoch`` (default: the last)."""
        if self._weight_norms is None:
            norms = weight_freq_norms(self.run.stacked_params(self.epoch), self.run.configs[0].n_layers)
            self._weight_norms = {m: {name: v[m] for name, v in norms.items()} for m in range(self.run.K)}
        return self._weight_norms

    @property
    def keys(self) -> dict[int, list[int]]:
        """Key frequencies of every model (those of the progress measures: each model's final checkpoint)."""
        if self._keys is None:
            self._keys = resolve_keys(self.run, epoch=self.epoch)
        return self._keys

    @property
    def progress(self) -> pd.DataFrame:
        if self._progress is None:
            self._progress = load_or_compute_progress(self.run, progress=self.show)
        return self._progress

    @property
    def llc_calibration(self) -> dict[str, Any]:
        """The run's ``llc_calibration.json`` (``grokscope progress RUN --llc``)."""
        return lc.load_calibration(self.run)

    def has_llc(self) -> bool:
        """Whether the run has the LLC (``llc`` rows in its progress table) and its calibration."""
        return (self.run.path / lc.CALIBRATION_FILE).is_file() and bool((self.progress["measure"] == "llc").any())

    @property
    def phases(self) -> dict[str, Any]:
        if self._phases is None:
            if (self.run.path / PHASES_FILE).is_file():
                self._phases = load_phases(self.run)
            else:
                self._phases = write_phases(self.run, ph.phases_report(self.run, self.progress))
        return self._phases


FIGURES: dict[str, Callable[..., Any]] = {  # in the paper's order
    "losses": lambda c, **kw: plot_curves.mark_slingshots(
        plot_curves.losses(c.run.metrics, c.phases, phase_model=c.model, **kw), c.run.metrics, kw.get("models")),
    "fourier_norms": lambda c, **kw: plot_fourier.fourier_norms(c.analysis, **kw),
    "attention": lambda c, **kw: plot_fourier.attention(c.analysis, **kw),
    "neuron": lambda c, **kw: plot_fourier.neuron(c.analysis, **kw),
    "logit_fourier": lambda c, **kw: plot_fourier.logit_fourier(c.analysis, **kw),
    "neuron_clusters": lambda c, **kw: plot_fourier.neuron_clusters(c.analysis, **kw),
    "ablate_freqs": lambda c, **kw: plot_fourier.ablate_freqs(c.analysis, **kw),
    "progress": lambda c, **kw: plot_curves.progress_panels(c.progress, c.phases, phase_model=c.model,
                                                            **{"models": [c.model], **kw}),
    "interference": lambda c, **kw: plot_fourier.interference(c.analysis.keys, c.analysis.p, **kw),
    "all_heads": lambda c, **kw: plot_fourier.all_heads(c.analysis, **kw),
    "attention_fourier": lambda c, **kw: plot_fourier.attention_fourier(c.analysis, **kw),
    "ov_fourier": lambda c, **kw: plot_fourier.ov_fourier(c.analysis, **kw),
    "more_neurons": lambda c, **kw: plot_fourier.more_neurons(c.analysis, **kw),
    "restricted_acc": lambda c, **kw: plot_curves.restricted_acc(c.progress, c.phases, phase_model=c.model, **kw),
    "logit_coefficients": lambda c, **kw: plot_curves.logit_coefficients(c.progress, c.phases, model=c.model, **kw),
    "excluded_per_key": lambda c, **kw: plot_curves.excluded_per_key(c.progress, c.phases, model=c.model, **kw),
    "fourier_norms_models": lambda c, **kw: plot_fourier.fourier_norms_models(c.weight_norms, c.keys, **kw),
    "seed_losses": lambda c, **kw: plot_curves.seed_losses(c.run.metrics, c.progress, c.phases, **kw),
    "gini_models": lambda c, **kw: plot_curves.gini_models(c.progress, c.phases, phase_model=c.model, **kw),
    "llc": lambda c, **kw: plot_llc.llc_curve(c.progress, c.phases, phase_model=c.model, **kw),
    "llc_calibration": lambda c, **kw: plot_llc.llc_calibration(c.llc_calibration, **kw),
}

#: Figures that compare the models of a run; a one-model report leaves them out (Figs 3, 2 and 7 show it).
MULTI_MODEL = ("fourier_norms_models", "seed_losses", "gini_models")
#: Figures of the local learning coefficient: in the report when the run has it (``grokscope progress RUN --llc``)
LLC_FIGURES = ("llc", "llc_calibration")


def figure(run: Run, name: str, *, epoch: int | None = None, model: int = 0, analysis=None,
           progress: pd.DataFrame | None = None, phases: Mapping[str, Any] | None = None, **kw):
    """The figure ``name`` (a key of :data:`FIGURES`) of ``run`` (a :class:`grokscope.training.run.Run`), for ``model``
    (phase bands; the analysis of checkpoint ``epoch``, default the last). ``analysis`` / ``progress`` /
    ``phases`` skip computing / loading those; ``kw`` go to the figure function (e.g. ``head=1``)."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    ctx = run if isinstance(run, FigureContext) else FigureContext(run, epoch=epoch, model=model, analysis=analysis,
                                                 progress=progress, phases=phases)
    return FIGURES[name](ctx, **kw)


# ---------------------------------------------------------------------- tables and the HTML report
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table1(analysis_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Table 1 rows from ``Analysis.to_dict()``: per W_L direction (u_k: cos, v_k: sin), its two largest 2-D
    Fourier terms and the FVE by the single ``cos/sin(w_k(a+b))`` term."""
    rows = []
    for d in analysis_dict["composition"]["directions"]:
        terms = "; ".join(f"{_fmt(t.get('value'))} {t.get('a')}(a) {t.get('b')}(b)" if isinstance(t, dict)
                          else str(t) for t in d.get("top_terms", []))
        rows.append({"W_L component": f"{d['kind']} w_{d['freq']}", "largest Fourier terms": terms,
                     "coefficient of the sum term": d["sum_coef"], "FVE": _pct(d["fve"])})
    return rows


def table2(analysis_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Table 2 rows from ``Analysis.to_dict()``: per head, the fit ``0.5 + alpha (cos w_k a - cos w_k b) +
    beta (sin w_k a - sin w_k b)`` of its attention from '=' to 'a'."""
    return [{"head": h["head"], "frequency k": h["freq"], "alpha": h["alpha"], "beta": h["beta"],
             "FVE": _pct(h["fve"])} for h in analysis_dict["neurons"]["heads"]]


def _pct(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and x != x) else f"{100 * x:.1f}%"


def phases_table(phases: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per model: its key frequencies, phase ends and how many of the §5.2 claims hold
    (:func:`grokscope.measures.phases.phases_frame`)."""
    return [{"model": r["model"], "keys": ", ".join(map(str, r["keys"])), "memorisation ends": r["memorisation_end"],
             "circuit formation ends": r["circuit_formation_end"], "cleanup ends": r["cleanup_end"],
             "claims holding": f"{r['claims_holding']}/{r['claims_decided']}"}
            for r in ph.phases_frame(phases).to_dict("records")]


def milestones_table(run: Run) -> list[dict[str, Any]]:
    """:meth:`Run.milestones` as rows (epochs as integers, '' where never reached)."""
    out = []
    for r in run.milestones().to_dict("records"):
        out.append({k: ("" if isinstance(v, float) and v != v else int(v) if k not in _LOSS_COLS else v)
                    for k, v in r.items()})
    return out


_LOSS_COLS = ("min_test_loss", "final_train_loss", "final_test_loss", "final_test_acc")


def claims_table(phases: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The §5.2 claims of every model, one row each: the claim in words, its verdict (holds / does not hold /
    undecided, :func:`grokscope.report.html.verdict`) and the numbers that decide it (or why it is undecided)."""
    rows = []
    for r in ph.claims_frame(phases).to_dict("records"):
        nums = {k: v for k, v in (r["numbers"] or {}).items() if k not in ("keys", "weight_decay")}
        evidence = "; ".join(f"{k.replace('_', ' ')} = {cell(v)}" for k, v in nums.items())
        rows.append({"model": r["model"], "claim": r["text"], "verdict": verdict(r["holds"]),
                     "evidence": evidence if r["holds"] is not None or not r["reason"] else r["reason"]})
    return rows


def analysis_rows(analysis) -> list[dict[str, Any]]:
    """The analysis's summary (:meth:`grokscope.interp.Analysis.summary`) as rows of (what, value, meaning)."""
    kf, co, ne, ab = analysis.key_frequencies, analysis.composition, analysis.neurons, analysis.ablations
    r = ab.results
    mm = analysis.model_metrics
    rows = [("key frequencies", ", ".join(map(str, kf.keys)) or "none",
             f"from W_E: {', '.join(map(str, kf.we_keys)) or 'none'}; from the neurons: "
             f"{', '.join(map(str, kf.neuron_keys)) or 'none'}; {'consistent' if kf.consistent else 'inconsistent'}"),
            ("loss (train / test)", f"{mm.loss_train:.3g} / {mm.loss_test:.3g}", "the analysed checkpoint"),
            ("logit FVE", _pct(co.logit_fve), "logits explained by the key frequencies' cos(w_k(a+b-c)) terms"),
            ("W_L outside the key directions", f"{co.wl_residual_share:.3%}",
             f"share of W_L's norm (centred: {co.wl_residual_share_centered:.3%})"),
            ("neurons explained by one frequency", f"{ne.n_well_fit}/{ne.n_neurons} ({ne.frac_well_fit:.1%})",
             f"FVE > {ne.threshold:g}; clusters (frequency: neurons): "
             + ", ".join(f"{k}: {v}" for k, v in sorted(ne.clusters.items()))),
            ("restricted loss (all pairs)", f"{r['logits_restricted'].after.loss_all:.3g}",
             "only the key frequencies kept in the logits"),
            ("excluded loss (train)", f"{r['logits_excluded'].after.loss_train:.3g}",
             "the key frequencies removed from the logits"),
            ("loss before ablations (all pairs)", f"{ab.baseline.loss_all:.3g}", "")]
    return [{"measure": a, "value": b, "what it is": c} for a, b, c in rows]


def header_cards(ctx: FigureContext) -> list[str]:
    """The key numbers of the report's model: grokking epoch (first epoch of test accuracy > 99%), key
    frequencies, logit FVE, phase ends and the §5.2 claims held / decided."""
    m = ctx.run.milestones()
    row = m[m["model"] == ctx.model].iloc[0]
    grok = row["test_acc_99"]
    a = ctx.analysis
    pm = next((x for x in ctx.phases.get("models", []) if int(x["model"]) == ctx.model), {})
    ends = pm.get("ends") or {}
    decided = [c for c in pm.get("claims", []) if c.get("holds") is not None]
    held = sum(bool(c["holds"]) for c in decided)
    fve = a.composition.logit_fve
    return [card("grokking epoch", "never" if grok != grok else int(grok),
                 f"first epoch with test accuracy > 99% (of {int(row['last_epoch'])})",
                 "bad" if grok != grok else "good"),
            card("key frequencies", ", ".join(map(str, a.keys)) or "none", f"p = {a.p}",
                 "good" if a.keys else "bad"),
            card("logit FVE", _pct(fve), "logits explained by the key frequencies", "good" if fve > 0.9 else ""),
            card("memorisation ends", ends.get("memorisation"), "epoch (§5.2)"),
            card("circuit formation ends", ends.get("circuit_formation"), "epoch"),
            card("cleanup ends", ends.get("cleanup"), "epoch"),
            card("claims hold", f"{held} / {len(decided)}", f"decided, of {len(pm.get('claims', []))} (§5.2)",
                 "none" if not decided else "good" if held == len(decided) else "bad"),
            card("final test loss", float(row["final_test_loss"]), f"train {cell(float(row['final_train_loss']))}")]


def _default_names(ctx: FigureContext) -> list[str]:
    llc = ctx.has_llc()
    return [n for n in FIGURES if (ctx.run.K > 1 or n not in MULTI_MODEL) and (llc or n not in LLC_FIGURES)]


def report_html(run: Run, path: str | Path, figures: Sequence[str] | None = None, *, epoch: int | None = None,
                model: int = 0, analysis=None, progress: pd.DataFrame | None = None,
                phases: Mapping[str, Any] | None = None, show: bool = False, stamp: str = "") -> Path:
    """Write ONE self-contained HTML file at ``path``: the key numbers as cards, a table of contents, the
    figures (``figures``: names of :data:`FIGURES`, default all) each with a caption saying what to look for,
    Tables 1 and 2 (from the analysis of ``model`` at ``epoch``) and the §5.2 phases and claims (``phases.json``,
    computed by :func:`grokscope.measures.phases.phases_report` if missing). The plotly JS is embedded once
    (viewing needs no network). ``show``: progress on stderr (a bar over the progress measures' checkpoints, then
    over the figures). ``stamp``: written into the page's head (the inputs' fingerprint that ``grokscope report``
    compares to skip an unchanged run). Returns the path."""
    ctx = FigureContext(run, epoch=epoch, model=model, analysis=analysis, progress=progress, phases=phases,
                        show=show)
    names = _default_names(ctx) if figures is None else list(figures)
    figs = []
    bar = None
    if show:
        from tqdm.auto import tqdm
        bar = tqdm(names, desc="figures", unit="figure", dynamic_ncols=True)
    for i, name in enumerate(names):
        if bar is not None:
            bar.set_postfix_str(name)
        title, cap = caption(captions.RUN, name)
        figs.append(figure_section(figure(ctx, name), name, title, cap, first=i == 0))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ad = ctx.analysis.to_dict()
    sections = [table_section("table-milestones", "Training milestones per model", milestones_table(ctx.run),
                              "milestones", "First epochs each model reached the accuracy / loss thresholds "
                              "(empty: never); the lowest and final losses."),
                table_section("table-phases", "Phases (§5.2) per model", phases_table(ctx.phases), "phases",
                              "The epochs at which memorisation, circuit formation and cleanup end (empty: the phase "
                              "was not found) and how many of the decided claims hold."),
                table_section("table-claims", "§5.2 claims and verdicts", claims_table(ctx.phases), "claims",
                              "The paper's claims about the phases, checked on each model's progress measures; "
                              "undecided where a phase is missing."),
                table_section("table-analysis", f"The mechanism at epoch {ctx.epoch or run.checkpoint_epochs[-1]} "
                              f"(model {model})", analysis_rows(ctx.analysis), "analysis")]
    sections += figs
    sections += [table_section("table1", "Table 1: W_L directions and their Fourier terms", table1(ad), "table1",
                               "Each key frequency's cos (u_k) and sin (v_k) direction of W_L: its largest 2-D "
                               "Fourier terms over (a, b) and how much the single cos/sin(w_k(a+b)) term explains."),
                 table_section("table2", "Table 2: attention fits per head", table2(ad), "table2",
                               "The fit 0.5 + alpha (cos w_k a - cos w_k b) + beta (sin w_k a - sin w_k b) of each "
                               "head's attention from '=' to 'a', and its FVE.")]
    doc = page(f"grokscope report: model {model}", f"{ctx.run.path} — p = {ctx.run.configs[model].p}, "
               f"{ctx.run.K} model(s), {run.checkpoint_epochs[-1]} epochs", cards=header_cards(ctx),
               sections=sections, stamp=stamp)
    path = Path(path)
    atomic_write(path, lambda t: Path(t).write_text(doc, encoding="utf-8"))
    return path


#: attempts per figure of the PNG export (kaleido drives a Chromium page that can fail transiently)
PNG_TRIES = 3


def check_png_export() -> None:
    """ImportError (one line, what to install) unless PNGs can be written: plotly's image export needs kaleido,
    and kaleido 1.x a local Chrome or Chromium, which it does not bring (without one it fails at the first figure
    with "Kaleido requires Google Chrome")."""
    try:
        import kaleido  # noqa: F401  (an optional extra)
    except ImportError as e:
        raise ImportError("PNG export needs kaleido (and a local Chrome or Chromium): pip install kaleido") from e
    try:
        from choreographer.browsers.chromium import Chromium  # kaleido >= 1.0's browser driver
    except ImportError:
        return  # an older kaleido, which brings its own renderer
    if Chromium.find_browser(skip_local=False) is None:
        raise ImportError("PNG export needs a local Chrome or Chromium for kaleido, and none was found: "
                          "`plotly_get_chrome` downloads one, or install chromium")


def write_pngs(run: Run, outdir: str | Path, figures: Sequence[str] | None = None, *, epoch: int | None = None,
               model: int = 0, scale: float = 1.0) -> list[Path]:
    """Write each figure as ``outdir/<name>.png`` (static images of the report's figures). Needs plotly's
    image export (``pip install kaleido``), which drives a local Chrome/Chromium. Returns the paths."""
    check_png_export()
    ctx = FigureContext(run, epoch=epoch, model=model)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in (_default_names(ctx) if figures is None else list(figures)):
        path = outdir / f"{name}.png"
        write_png(figure(ctx, name), path, scale)
        paths.append(path)
    return paths


def write_png(fig, path: str | Path, scale: float = 1.0) -> None:
    """One figure as a PNG (kaleido), at its layout's size (1000 x 600 where it has none), tried
    :data:`PNG_TRIES` times."""
    style(fig)
    for attempt in range(PNG_TRIES):  # kaleido's Chromium page sometimes is not ready yet on a loaded machine
        try:  # ("ReferenceError: kaleido_scopes is not defined"): the same figure again then succeeds
            fig.write_image(str(path), width=fig.layout.width or 1000, height=fig.layout.height or 600, scale=scale)
            return
        except Exception:
            if attempt == PNG_TRIES - 1:
                raise
