"""Leave-one-model-out evaluation of grokscope.measures.forecast against the Notsawo et al. 2023 baseline; with
``--corpus``, the held-out evaluation of the fitted forecaster against the trivial forecast, Notsawo et al. and the
norm-separation delay law (issue #34; :func:`corpus_main`).

    python benchmarks/forecast_eval.py RUN [RUN ...] --out forecast_eval.json [--html forecast_eval.html]
                                       [--png forecast_eval.png]
    python benchmarks/forecast_eval.py --corpus benchmarks/results/forecast_corpus --out corpus_eval.json
                                       [--png corpus_eval.png] [--write-model]

Corpus mode: the models of ``benchmarks/forecast_corpus.py``'s output, split by config into a development and a
held-out part (``split.json``). Every forecaster's constants are fitted on the *development* part only; the table
is on the held-out part (and, for design decisions, leave-one-config-out within the development part: ``dev``).
Forecast points per model that groks within its budget: the end of memorisation (the first checkpoint at or after
train accuracy 100%) and 25 / 50 / 75% of its grokking epoch ``G`` (only epochs ``>= 40``). Per forecaster: the
forecasts made, their median absolute relative error ``|pred - G| / G`` and the share of 80% intervals holding
``G``. The grok / no-grok AUC: ``p_grok`` at fixed epochs (100, 200, 400) over every model not grokked by then.
``--write-model`` writes the forecaster fitted on the development part, with its held-out errors as ``trust``, to
``src/grokscope/measures/forecast_model.json`` (what ``grokscope forecast`` uses).

For every model of every run that groks (test accuracy > 99%, ``Run.milestones``) at epoch G, and each fraction
f in 25%, 50%, 75%: features at ``until = f * G`` (only checkpoints/metrics <= until), constants (our remaining-time
scale and interval, the baseline's regression) fitted on the *other* models at the same fraction only, then the
held-out model's forecast. Prints the median absolute relative error |pred - G| / G and the interval coverage.

The figure (``--html``, ``--png``): predicted vs actual grokking epoch, log-log, one panel for ours and one for the
baseline, a colour per forecast point (25/50/75% of G), the intervals as error bars and the line y = x; it is
drawn from the same ``rows`` as the JSON (:func:`figure`), and each panel's title carries that panel's numbers from
``summary``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from grokscope.measures import forecast as fc, forecast_calibration as fcal, forecast_features as ff
from grokscope.training.run import Run

FRACTIONS = (0.25, 0.5, 0.75)
#: (name, JSON key of the forecast, of its lower and upper bound, panel title)
METHODS = (("ours", "predicted", "lower", "upper", "ours: restricted-loss trend"),
           ("baseline", "baseline", "baseline_lower", "baseline_upper", "baseline: Notsawo et al. 2023 spectral"))
COLOURS = {0.25: "#1f77b4", 0.5: "#ff7f0e", 0.75: "#2ca02c"}


def collect(paths) -> tuple[list, list]:
    """``(models, skipped)``: ``models`` = ``(run path, model, grok epoch, {fraction: Features})`` of every model
    that groks; ``skipped`` = ``(run path, model)`` of those that do not (no target)."""
    models, skipped = [], []
    for path in paths:
        run = Run.load(path)
        cache: dict[int, list] = {}  # until -> features of every model of the run
        for k, G in fc.grok_epochs(run).items():
            if not np.isfinite(G):
                skipped.append((str(path), k))
                continue
            fs = {}
            for frac in FRACTIONS:
                until = max(1, int(frac * G))
                if until not in cache:
                    cache[until] = ff.features_run(run, until)
                fs[frac] = cache[until][k]
            models.append((str(path), k, G, fs))
    return models, skipped


def rows_of(models) -> list[dict]:
    """One row per (model, fraction): its forecast from constants fitted on the other models at that fraction."""
    rows = []
    for i, (path, k, G, fs) in enumerate(models):
        for frac, f in fs.items():
            others = [(m[3][frac], m[2]) for j, m in enumerate(models) if j != i and frac in m[3]]
            res = fc.predict(f, fcal.fit_calibration(others))
            rows.append({"run": path, "model": k, "grok_epoch": G, "fraction": frac, "until": f.until,
                         "predicted": res.predicted, "lower": res.lower, "upper": res.upper,
                         "baseline": res.baseline, "baseline_lower": res.baseline_lower,
                         "baseline_upper": res.baseline_upper, "method": res.method})
    return rows


def summarize(rows) -> dict:
    """Per fraction: ``n`` models and, for ours and the baseline, the number of forecasts, the median absolute
    relative error |pred - G| / G and the share of intervals that hold G (over the forecasts made)."""
    summary = {}
    for frac in FRACTIONS:
        rs = [r for r in rows if r["fraction"] == frac]
        s = {"n": len(rs)}
        for name, key, lo, hi, _ in METHODS:
            ok = [r for r in rs if r[key] is not None]
            err = [abs(r[key] - r["grok_epoch"]) / r["grok_epoch"] for r in ok]
            cov = [r[lo] <= r["grok_epoch"] <= r[hi] for r in ok]
            s[name] = {"forecasts": len(ok), "median_abs_rel_error": float(np.median(err)) if err else None,
                       "coverage": float(np.mean(cov)) if cov else None, "covered": int(sum(cov))}
        summary[str(frac)] = s
    return summary


def _cell(d: dict) -> str:
    e = "-" if d["median_abs_rel_error"] is None else f"{d['median_abs_rel_error']:.2f}"
    c = "-" if d["coverage"] is None else f"{d['covered']}/{d['forecasts']}"
    return f"{d['forecasts']}, {e}, {c}"


def table(summary: dict) -> str:
    lines = [f"{'from':>5} {'n':>3}  {'ours: n, MdARE, coverage':>28}  {'baseline: n, MdARE, coverage':>30}"]
    for frac, s in summary.items():
        lines.append(f"{float(frac):>5.0%} {s['n']:>3}  {_cell(s['ours']):>28}  {_cell(s['baseline']):>30}")
    return "\n".join(lines)


def figure(rows, summary: dict | None = None):
    """Predicted vs actual grokking epoch (log-log): panel 1 ours, panel 2 the baseline; one trace per
    (method, fraction) named ``"<method> from <f>%"``, with the intervals as asymmetric error bars; y = x in both.
    Panel titles: the per-fraction MdARE and coverage of ``summary`` (default: :func:`summarize` of ``rows``)."""
    import plotly.graph_objects as go  # a script, not a package module
    from plotly.subplots import make_subplots

    summary = summarize(rows) if summary is None else summary
    titles = []
    for name, _, _, _, title in METHODS:
        parts = [f"{float(f):.0%}: {_cell(s[name]).split(', ', 1)[1]}" for f, s in summary.items()]
        titles.append(f"{title}<br><sub>MdARE, coverage: {'; '.join(parts)}</sub>")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.06)
    vals = [r["grok_epoch"] for r in rows] + [r[k] for r in rows for k in
                                               ("predicted", "lower", "upper", "baseline", "baseline_lower",
                                                "baseline_upper") if r[k] is not None]
    lo, hi = (min(vals) / 1.3, max(vals) * 1.3) if vals else (1.0, 10.0)
    for col, (name, key, lk, hk, _) in enumerate(METHODS, start=1):
        for frac in FRACTIONS:
            ok = [r for r in rows if r["fraction"] == frac and r[key] is not None]
            fig.add_scatter(
                x=[r["grok_epoch"] for r in ok], y=[r[key] for r in ok], mode="markers", row=1, col=col,
                name=f"{name} from {frac:.0%}", legendgroup=str(frac), marker=dict(color=COLOURS[frac], size=8),
                error_y=dict(type="data", symmetric=False, array=[r[hk] - r[key] for r in ok],
                             arrayminus=[r[key] - r[lk] for r in ok], thickness=1),
                text=[f"{r['run']} model {r['model']}: from epoch {r['until']:,}" for r in ok],
                hovertemplate="%{text}<br>actual %{x:,.0f}, predicted %{y:,.0f}<extra></extra>")
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="grey", dash="dash"), row=1, col=col,
                        name="y = x", legendgroup="yx", showlegend=col == 1)
        fig.update_xaxes(type="log", range=[np.log10(lo), np.log10(hi)], title_text="actual grokking epoch "
                         "(test accuracy > 99%)", row=1, col=col)
    # both panels' y axes log (shared_yaxes only matches the range: an axis left linear draws the log range's
    # numbers as linear values, which put every baseline point at the bottom of its panel)
    fig.update_yaxes(type="log", range=[np.log10(lo), np.log10(hi)])
    fig.update_yaxes(title_text="predicted grokking epoch", row=1, col=1)
    n_models = len({(r["run"], r["model"]) for r in rows})
    fig.update_layout(title=f"Forecast grokking epoch vs actual: {n_models} models, leave-one-model-out",
                      width=1200, height=560, margin=dict(t=110))
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--out", default="forecast_eval.json")
    ap.add_argument("--corpus", default=None, help="corpus mode: the forecast_corpus directory")
    ap.add_argument("--write-model", action="store_true", help="corpus mode: write the dev-fitted forecaster")
    ap.add_argument("--no-dev", action="store_true", help="corpus mode: skip the leave-one-config-out dev table")
    ap.add_argument("--dev-only", action="store_true", help="corpus mode: only the development table (for design "
                    "decisions, which must not look at the held-out part)")
    ap.add_argument("--md", default=None, help="corpus mode: the tables as Markdown")
    ap.add_argument("--partial", action="store_true", help="corpus mode: the corpus is not complete (labelled)")
    ap.add_argument("--html", default=None, help="the figure as a self-contained HTML file")
    ap.add_argument("--png", default=None, help="the figure as PNG (needs kaleido and a local Chromium)")
    a = ap.parse_args(argv)
    if a.corpus:
        return corpus_main(a)
    if not a.runs:
        ap.error("give RUN directories or --corpus")
    t0 = time.perf_counter()
    models, skipped = collect(a.runs)
    rows = rows_of(models)
    summary = summarize(rows)
    print(table(summary))
    print(f"{len(models)} models grok (forecast targets); {len(skipped)} do not (skipped); "
          f"{time.perf_counter() - t0:.0f} s")
    pooled = fcal.fit_calibration([(f, G) for _, _, G, fs in models for f in fs.values()])
    print(f"calibration fitted on all of them (every fraction): ours scale {pooled.scale:.3g} (n = {pooled.n}), "
          f"interval x{10 ** pooled.lo:.2f}..x{10 ** pooled.hi:.2f}; baseline a {pooled.base_a}, b {pooled.base_b}")
    doc = {"runs": a.runs, "models": len(models), "skipped": [list(s) for s in skipped], "summary": summary,
           "calibration": asdict(pooled), "rows": rows}
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    if a.html or a.png:
        fig = figure(rows, summary)
        if a.html:
            fig.write_html(a.html, include_plotlyjs=True)
        if a.png:
            try:
                fig.write_image(a.png, width=1200, height=560)
            except Exception as e:  # noqa: BLE001 - kaleido without a local Chrome/Chromium, ...
                msg = str(e).strip().splitlines()
                print(f"forecast_eval: error: png={a.png!r} not written ({type(e).__name__}: "
                      f"{msg[0] if msg else ''}); the JSON{' and HTML' if a.html else ''} are", file=sys.stderr)
                return 2
    return 0



# ====================================================================== corpus mode (issue #34)
POINTS = ("mem", 0.25, 0.5, 0.75)
AUC_AT = (100, 200, 400)
CORPUS_METHODS = ("ours", "trivial", "notsawo", "delay_balance", "delay_ratio", "trend")


def _notsawo_fit(rows):
    """Notsawo et al.: weighted least squares ``log10 G = a + b * spectral`` on the fitting rows of grokking
    models; interval from the 10/90% residual quantiles."""
    from grokscope.measures.forecast_model import _wquantile
    r = [x for x in rows if x["groks"] and np.isfinite(x["spectral"])]
    x = np.array([q["spectral"] for q in r]); y = np.log10([q["G"] for q in r]); w = np.array([q["w"] for q in r])
    A = np.vstack([x, np.ones_like(x)]).T
    b, a = np.linalg.solve(A.T @ (w[:, None] * A), A.T @ (w * y))
    res = y - (a + b * x)
    return a, b, min(_wquantile(res, w, 0.1), 0.0), max(_wquantile(res, w, 0.9), 0.0)


class Fitted:
    """Every forecaster's constants fitted on ``series`` (the fitting part only)."""

    def __init__(self, series, rows=None):
        from grokscope.measures import forecast_model as fm
        self.fm = fm
        self.law = {"balance": fm.DelayLaw.fit(series, "balance"), "ratio": fm.DelayLaw.fit(series, "ratio")}
        self.rows = fm.fit_rows(series, self.law["balance"].A) if rows is None else rows
        self.ours = fm.ForecastModel.fit(series, A=self.law["balance"].A, rows=self.rows)
        self.notsawo = _notsawo_fit(self.rows)

    def forecast(self, s, until):
        """``{method: (pred, lo, hi) or None}`` and ``p_grok`` at ``until``."""
        f = self.fm.features(s, until, self.ours.A)
        o = self.ours.predict(s, until, f)
        a, b, lo, hi = self.notsawo
        out = {"ours": (o["predicted"], o["lower"], o["upper"]), "trivial": (float(until), None, None)}
        if np.isfinite(f["spectral"]):
            y = a + b * f["spectral"]
            out["notsawo"] = tuple(max(10 ** (y + d), float(until)) for d in (0.0, lo, hi))
        else:
            out["notsawo"] = None
        for k, law in self.law.items():
            out[f"delay_{k}"] = law.predict(s, until, f)
        out["trend"] = _trend(f, until)
        return out, o["p_grok"], f


def _trend(f, until, threshold=0.1):
    """The uncalibrated restricted-loss trend (grokscope.measures.forecast's default): where the line through
    log10 restricted loss (its last value, its slope over the window) crosses log10 threshold; interval x/÷ 2 of
    the remaining time; ``None`` if it does not fall."""
    c = ff.crossing(until / 1000.0, f["log_restricted"], f["restricted_slope"], np.log10(threshold))
    if c is None:
        return None
    pred = max(c * 1000.0, float(until))
    return pred, until + (pred - until) / 2, until + (pred - until) * 2


def points(s):
    """The forecast points of a model that groks within its budget: ``{point: until}``."""
    from grokscope.measures import forecast_model as fm
    G, tm = fm.observed(s)
    if not np.isfinite(G) or G > s.budget:
        return {}
    out = {}
    if tm is not None:
        after = [e for e in s.progress.index if e >= tm]
        if after and after[0] < G:
            out["mem"] = int(after[0])
    for f in POINTS[1:]:
        u = int(f * G)
        if u >= 40:
            out[f] = u
    return out


def corpus_rows(fit, series):
    """One row per (model, point) of ``series`` with every forecaster's forecast, and the AUC rows."""
    from grokscope.measures import forecast_model as fm
    rows, arows = [], []
    for s in series:
        G, tm = fm.observed(s)
        for pt, u in points(s).items():
            fc, p, _ = fit.forecast(s.upto(u), u)
            rows.append({"model": s.name, "config": s.config, "part": s.part, "G": G, "t_mem": tm, "point": str(pt),
                         "until": u, "p_grok": p, **{m: (None if fc[m] is None else list(fc[m]))
                                                     for m in CORPUS_METHODS}})
        for u in AUC_AT:
            if u < G and u <= s.budget:
                fc, p, f = fit.forecast(s.upto(u), u)
                arows.append({"model": s.name, "part": s.part, "until": u, "groks": bool(G <= s.budget),
                              "p_grok": p, "gamma": s.lr * s.weight_decay})
    return rows, arows


def corpus_summary(rows, arows) -> dict:
    out = {}
    for pt in POINTS:
        rs = [r for r in rows if r["point"] == str(pt)]
        d = {"n": len(rs)}
        for m in CORPUS_METHODS:
            ok = [r for r in rs if r[m] is not None]
            err = [abs(r[m][0] - r["G"]) / r["G"] for r in ok]
            cov = [r[m][1] <= r["G"] <= r[m][2] for r in ok if r[m][1] is not None]
            same = [abs(r["ours"][0] - r["G"]) / r["G"] for r in ok]  # ours on the models this one forecasts
            d[m] = {"forecasts": len(ok), "mdare": float(np.median(err)) if err else None,
                    "coverage": float(np.mean(cov)) if cov else None,
                    "ours_same": float(np.median(same)) if same else None}
        out[str(pt)] = d
    from grokscope.measures.forecast_model import auc
    out["auc"] = {}
    for u in AUC_AT:
        a = [r for r in arows if r["until"] == u]
        out["auc"][str(u)] = {"n": len(a), "groks": sum(r["groks"] for r in a),
                              "ours": auc([r["p_grok"] for r in a], [r["groks"] for r in a]),
                              "gamma_only": auc([r["gamma"] for r in a], [r["groks"] for r in a])}
    return out


def corpus_table(summ: dict, title: str) -> str:
    def c(d):
        e = "-" if d["mdare"] is None else f"{d['mdare']:.2f}"
        v = "" if d["coverage"] is None else f" ({d['coverage']:.0%})"
        return f"{d['forecasts']}: {e}{v}"
    lines = [title, f"{'from':>6} {'n':>3} " + " ".join(f"{m:>17}" for m in CORPUS_METHODS)]
    for pt in POINTS:
        d = summ[str(pt)]
        name = "mem" if pt == "mem" else f"{float(pt):.0%}"
        lines.append(f"{name:>6} {d['n']:>3} " + " ".join(f"{c(d[m]):>17}" for m in CORPUS_METHODS))
    lines.append("grok-within-budget AUC (p_grok; gamma = lr*wd alone): " + "; ".join(
        f"@{u}: n={d['n']} ({d['groks']} grok) ours {_f(d['ours'])}, gamma {_f(d['gamma_only'])}"
        for u, d in summ["auc"].items()))
    return "\n".join(lines)


NAMES = {"ours": "ours (fitted)", "trivial": "trivial (pred = until)", "notsawo": "Notsawo et al.",
         "delay_balance": "delay law, balance norm", "delay_ratio": "delay law, fitted ratio",
         "trend": "restricted-loss trend"}


def corpus_markdown(summ: dict) -> str:
    """The table of :func:`corpus_summary` in Markdown: per forecast point and forecaster, ``forecasts: MdARE
    (80% coverage)`` and, where it forecasts fewer models than there are, ``[ours MdARE on the same models]``;
    and the AUC table."""
    lines = ["| from | n | " + " | ".join(NAMES[m] for m in CORPUS_METHODS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in CORPUS_METHODS) + " |"]
    for pt in POINTS:
        d = summ[str(pt)]
        name = "end of memorisation" if pt == "mem" else f"{float(pt):.0%} of G"
        cells = []
        for m in CORPUS_METHODS:
            x = d[m]
            e = "-" if x["mdare"] is None else f"{x['mdare']:.2f}"
            v = "" if x["coverage"] is None else f" ({x['coverage']:.0%})"
            same = (f" [ours {x['ours_same']:.2f}]" if m != "ours" and x["ours_same"] is not None
                    and x["forecasts"] < d["n"] else "")
            cells.append(f"{x['forecasts']}: {e}{v}{same}")
        lines.append(f"| {name} | {d['n']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| p_grok AUC at epoch | models (grok) | ours | lr * wd alone |")
    lines.append("| --- | --- | --- | --- |")
    for u, d in summ["auc"].items():
        lines.append(f"| {u} | {d['n']} ({d['groks']}) | {_f(d['ours'])} | {_f(d['gamma_only'])} |")
    return "\n".join(lines)


def _f(x):
    return "-" if x is None else f"{x:.2f}"


def corpus_main(a) -> int:
    from grokscope.measures import forecast_model as fm
    t0 = time.perf_counter()
    series = fm.load_corpus(a.corpus)
    dev = [s for s in series if s.part == "dev"]
    held = [s for s in series if s.part == "heldout"]
    n_batches = len({s.name.split("/")[0] for s in series})
    print(f"corpus: {len(series)} models in {n_batches} batches ({len(dev)} dev, {len(held)} held out); "
          f"grok within budget: dev {sum(np.isfinite(fm.observed(s)[0]) for s in dev)}, "
          f"held out {sum(np.isfinite(fm.observed(s)[0]) for s in held)}")
    doc = {"corpus": str(a.corpus), "models": len(series), "batches": n_batches, "dev": len(dev), "heldout": len(held)}
    fit = Fitted(dev)
    # development: leave one config out (design decisions look only at this)
    if not a.no_dev:
        drows, darows = [], []
        for cfg in sorted({s.config for s in dev}):
            rest = [s for s in dev if s.config != cfg]
            f_rows = [r for r in fit.rows if r["config"] != cfg]
            idx = {s.name for s in rest}
            sub = Fitted.__new__(Fitted)
            sub.fm = fm
            sub.law = {"balance": fm.DelayLaw.fit(rest, "balance"), "ratio": fm.DelayLaw.fit(rest, "ratio")}
            sub.rows = f_rows
            sub.ours = fm.ForecastModel.fit(rest, A=sub.law["balance"].A, rows=f_rows)
            sub.notsawo = _notsawo_fit(f_rows)
            r1, r2 = corpus_rows(sub, [s for s in dev if s.config == cfg])
            drows += r1
            darows += r2
            assert not idx & {s.name for s in dev if s.config == cfg}
        doc["dev_summary"] = corpus_summary(drows, darows)
        print(corpus_table(doc["dev_summary"], "development part, leave one config out "
                           "(n: forecast points; each cell forecasts: MdARE (80% coverage))"))
    if a.dev_only:
        held = []
    if held:
        hrows, harows = corpus_rows(fit, held)
        doc["heldout_summary"] = corpus_summary(hrows, harows)
        doc["rows"] = hrows
        doc["auc_rows"] = harows
        print(corpus_table(doc["heldout_summary"], "HELD-OUT part, fitted on the development part"))
        if a.md:
            Path(a.md).write_text("development part, leave one config out:\n\n"
                                  + (corpus_markdown(doc["dev_summary"]) if "dev_summary" in doc else "-")
                                  + "\n\nheld-out part, fitted on the development part:\n\n"
                                  + corpus_markdown(doc["heldout_summary"]) + "\n")
    doc["delay_law"] = {k: vars(v) for k, v in fit.law.items()}
    doc["model"] = fit.ours.to_dict()
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    Path(a.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"wrote {a.out} ({doc['seconds']:.0f} s)")
    if a.write_model and held:
        hs = doc["heldout_summary"]
        fit.ours.trust = {"heldout_models": len(held), "corpus": "benchmarks/results/forecast_corpus (p=59, "
                          "d_model=64, 2,000-epoch budgets)", "partial": a.partial,
                          **{f"mdare_{p}": hs[p]["ours"]["mdare"] for p in map(str, POINTS)},
                          **{f"coverage_{p}": hs[p]["ours"]["coverage"] for p in map(str, POINTS)},
                          **{f"trivial_mdare_{p}": hs[p]["trivial"]["mdare"] for p in map(str, POINTS)},
                          "auc_200": hs["auc"]["200"]["ours"], "domain": corpus_domain(a.corpus)}
        old = fm.load_model()  # the transfer record (benchmarks/forecast_transfer.py --record) stays if present
        if old is not None and old.trust and "transfer" in old.trust:
            fit.ours.trust["transfer"] = old.trust["transfer"]
        fm.MODEL_FILE.write_text(json.dumps({"model": fit.ours.to_dict(),
                                             "delay_law": {k: vars(v) for k, v in fit.law.items()}},
                                            indent=1) + "\n")
        print(f"wrote {fm.MODEL_FILE}")
    if a.png and held:
        corpus_figure(doc["rows"], a.png)
    return 0


def corpus_domain(corpus: str) -> dict:
    """The sizes the corpus covers (its batches' configs): the p, d_model and n_layers values and the longest
    budget; ``grokscope.measures.forecast.trust_text`` says when a run lies outside them."""
    metas = [json.loads(m.read_text()) for m in sorted(Path(corpus).glob("*/meta.json"))]
    cs = [m["config"] for m in metas]
    return {"p": sorted({c["p"] for c in cs}), "d_model": sorted({c["d_model"] for c in cs}),
            "n_layers": sorted({c["n_layers"] for c in cs}), "epochs": max(int(m["budget"]) for m in metas)}


def corpus_figure(rows, png):
    """Predicted vs actual grokking epoch on the held-out part (log-log), a panel per forecaster, a colour per
    forecast point, the 80% intervals as error bars (plotly; PNG through kaleido, else HTML beside it)."""
    from plotly.subplots import make_subplots
    ms = ("ours", "notsawo", "delay_balance", "trivial")
    cols = {"mem": "#9467bd", "0.25": "#1f77b4", "0.5": "#ff7f0e", "0.75": "#2ca02c"}
    fig = make_subplots(rows=1, cols=len(ms), shared_yaxes=True, subplot_titles=ms, horizontal_spacing=0.03)
    G = [r["G"] for r in rows]
    lo, hi = min(G) / 2, max(G) * 4
    for j, m in enumerate(ms, start=1):
        for pt, c in cols.items():
            rs = [r for r in rows if r["point"] == pt and r[m] is not None]
            if not rs:
                continue
            y = [r[m][0] for r in rs]
            err = None
            if rs[0][m][1] is not None:
                err = dict(type="data", symmetric=False, array=[r[m][2] - r[m][0] for r in rs],
                           arrayminus=[r[m][0] - r[m][1] for r in rs], thickness=1)
            fig.add_scatter(x=[r["G"] for r in rs], y=y, mode="markers", error_y=err, row=1, col=j,
                            marker=dict(color=c, size=6), legendgroup=pt, showlegend=j == 1,
                            name="end of memorisation" if pt == "mem" else f"from {float(pt):.0%} of G")
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="grey", dash="dash"), row=1, col=j,
                        showlegend=False)
        fig.update_xaxes(type="log", range=[np.log10(lo), np.log10(hi)], title_text="actual G", row=1, col=j)
    fig.update_yaxes(type="log", range=[np.log10(lo), np.log10(hi)])
    fig.update_yaxes(title_text="predicted G", row=1, col=1)
    fig.update_layout(title="Held-out corpus models: forecast vs actual grokking epoch (80% intervals)",
                      width=1400, height=420)
    try:
        fig.write_image(png, width=1400, height=420)
    except Exception as e:  # noqa: BLE001 - kaleido without Chromium
        html = str(Path(png).with_suffix(".html"))
        fig.write_html(html, include_plotlyjs="cdn")
        print(f"png not written ({type(e).__name__}); wrote {html}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
