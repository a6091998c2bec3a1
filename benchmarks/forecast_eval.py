"""Leave-one-model-out evaluation of grokscope.forecast against the Notsawo et al. 2023 baseline.

    python benchmarks/forecast_eval.py RUN [RUN ...] --out forecast_eval.json [--html forecast_eval.html]

For every model of every run that groks (test accuracy > 99%, ``Run.milestones``) at epoch G, and each fraction
f in 25%, 50%, 75%: features at ``until = f * G`` (only checkpoints/metrics <= until), constants (our remaining-time
scale and interval, the baseline's regression) fitted on the *other* models at the same fraction only, then the
held-out model's forecast. Prints the median absolute relative error |pred - G| / G and the interval coverage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from grokscope import forecast as fc
from grokscope.runs import Run

FRACTIONS = (0.25, 0.5, 0.75)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="forecast_eval.json")
    ap.add_argument("--html", default=None)
    a = ap.parse_args(argv)
    models = []  # (run path, model, grok epoch, {fraction: Features})
    for path in a.runs:
        run = Run.load(path)
        g = fc.grok_epochs(run)
        for frac in FRACTIONS:
            for k, G in g.items():
                if not np.isfinite(G):
                    continue
                until = max(1, int(frac * G))
                f = fc.features_run(run, until)[k]
                ent = next((m for m in models if m[0] == path and m[1] == k), None)
                if ent is None:
                    ent = (path, k, G, {})
                    models.append(ent)
                ent[3][frac] = f
    rows = []
    for i, (path, k, G, fs) in enumerate(models):
        for frac, f in fs.items():
            others = [(m[3][frac], m[2]) for j, m in enumerate(models) if j != i and frac in m[3]]
            res = fc.predict(f, fc.fit_calibration(others))
            rows.append({"run": path, "model": k, "grok_epoch": G, "fraction": frac, "until": f.until,
                         "predicted": res.predicted, "lower": res.lower, "upper": res.upper,
                         "baseline": res.baseline, "baseline_lower": res.baseline_lower,
                         "baseline_upper": res.baseline_upper, "method": res.method})
    summary = {}
    for frac in FRACTIONS:
        rs = [r for r in rows if r["fraction"] == frac]
        s = {"n": len(rs)}
        for name, lo, hi in (("ours", "lower", "upper"), ("baseline", "baseline_lower", "baseline_upper")):
            key = "predicted" if name == "ours" else "baseline"
            ok = [r for r in rs if r[key] is not None]
            err = [abs(r[key] - r["grok_epoch"]) / r["grok_epoch"] for r in ok]
            cov = [r[lo] <= r["grok_epoch"] <= r[hi] for r in ok]
            s[name] = {"forecasts": len(ok), "median_abs_rel_error": float(np.median(err)) if err else None,
                       "coverage": float(np.mean(cov)) if cov else None}
        summary[str(frac)] = s
    print(f"{'from':>5} {'n':>3}  {'ours: n, MdARE, coverage':>28}  {'baseline: n, MdARE, coverage':>30}")
    for frac, s in summary.items():
        def f(d):
            e = "-" if d["median_abs_rel_error"] is None else f"{d['median_abs_rel_error']:.2f}"
            c = "-" if d["coverage"] is None else f"{d['coverage']:.0%}"
            return f"{d['forecasts']}, {e}, {c}"
        print(f"{float(frac):>5.0%} {s['n']:>3}  {f(s['ours']):>28}  {f(s['baseline']):>30}")
    Path(a.out).write_text(json.dumps({"runs": a.runs, "summary": summary, "rows": rows}, indent=1) + "\n")
    if a.html:
        import plotly.graph_objects as go  # a script, not a package module
        fig = go.Figure()
        for key, name in (("predicted", "ours"), ("baseline", "Notsawo et al. baseline")):
            ok = [r for r in rows if r[key] is not None]
            fig.add_scatter(x=[r["grok_epoch"] for r in ok], y=[r[key] for r in ok], mode="markers", name=name,
                            text=[f"{r['run']} model {r['model']} from {r['fraction']:.0%}" for r in ok])
        top = max([r["grok_epoch"] for r in rows] or [1])
        fig.add_scatter(x=[0, top], y=[0, top], mode="lines", name="y = x")
        fig.update_layout(xaxis_title="actual grokking epoch", yaxis_title="predicted")
        fig.write_html(a.html, include_plotlyjs=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
