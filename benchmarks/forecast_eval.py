"""Leave-one-model-out evaluation of grokscope.measures.forecast against the Notsawo et al. 2023 baseline.

    python benchmarks/forecast_eval.py RUN [RUN ...] --out forecast_eval.json [--html forecast_eval.html]
                                       [--png forecast_eval.png]

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
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="forecast_eval.json")
    ap.add_argument("--html", default=None, help="the figure as a self-contained HTML file")
    ap.add_argument("--png", default=None, help="the figure as PNG (needs kaleido and a local Chromium)")
    a = ap.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
