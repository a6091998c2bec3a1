"""The shipped forecaster on runs it was never fitted on (the paper's p = 113 models): how far it transfers.

    python benchmarks/forecast_transfer.py RUN [RUN ...] [--json out.json] [--record]

The fitted forecaster (``src/grokscope/measures/forecast_model.json``) was fitted on the forecast corpus, small
p = 59 models with a 2,000-epoch budget (``benchmarks/forecast_corpus.py``). Here it forecasts every model of the
given runs that groks (first test accuracy > 99%, ``G``), from the end of memorisation (the first checkpoint at or
after train accuracy 100%) and from 25 / 50 / 75% of ``G`` (epochs >= 40 before ``G``), exactly as ``grokscope
forecast RUN --until E`` would (the causal progress measures: keys chosen at each checkpoint). Printed per point:
the forecasts made, the median absolute relative error ``|pred - G| / G``, the share of 80% intervals holding
``G``, and the trivial forecast "it groks now" (pred = until) on the same models; then one line per model.
Nothing here is fitted: every number is a forecast of a model the forecaster has not seen. ``--record`` stores the
summary in the shipped forecaster's ``trust["transfer"]``, which ``grokscope forecast`` prints for runs outside
the corpus.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from grokscope.measures import forecast_model as fm
from grokscope.training.run import Run

POINTS = ("mem", 0.25, 0.5, 0.75)


def forecasts(path: str, model: fm.ForecastModel) -> list[dict]:
    run = Run.load(path)
    met = run.metrics
    ckpts = run.checkpoint_epochs
    todo = []  # (model, G, point, until)
    for k, G in enumerate(run.milestones()["test_acc_99"].to_numpy(dtype=float)):
        if not np.isfinite(G):
            continue
        t_mem = fm.mem_epoch(met[met["model"] == k])
        mem = next((e for e in ckpts if t_mem is not None and e >= t_mem), None)
        for pt in POINTS:
            until = mem if pt == "mem" else int(round(pt * G))
            if until is None or until < 40 or until >= G:
                continue
            todo.append((k, float(G), pt, int(until), t_mem))
    need = set()
    for k, _, _, until, t_mem in todo:
        need |= set(fm.needed_epochs([e for e in ckpts if e <= until], until, t_mem))
    prog = fm.causal_progress(run, need) if need else None
    out = []
    for k, G, pt, until, _ in todo:
        r = model.predict(fm.series_from_run(run, k, until, met, prog), until)
        out.append({"run": str(path), "model": k, "seed": int(run.configs[k].seed), "p": int(run.configs[k].p),
                    "d_model": int(run.configs[k].d_model), "G": G, "point": pt,
                    "until": until, "predicted": r["predicted"], "lower": r["lower"], "upper": r["upper"],
                    "p_grok": r["p_grok"], "are": abs(r["predicted"] - G) / G, "trivial_are": abs(until - G) / G,
                    "covered": bool(r["lower"] <= G <= r["upper"])})
    return out


def table(rows: list[dict]) -> str:
    lines = ["| from | models | ours: median abs. rel. error (80% interval holds G) | trivial (pred = until) |",
             "| --- | --- | --- | --- |"]
    for pt in POINTS:
        r = [x for x in rows if x["point"] == pt]
        if not r:
            continue
        name = "end of memorisation" if pt == "mem" else f"{pt:.0%} of G"
        lines.append(f"| {name} | {len(r)} | {np.median([x['are'] for x in r]):.2f} "
                     f"({np.mean([x['covered'] for x in r]):.0%}) | {np.median([x['trivial_are'] for x in r]):.2f} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    """The ``trust["transfer"]`` record: models, the runs' sizes, and per forecast point the median relative error,
    the interval coverage, the trivial forecast's error and (from the end of memorisation) the share forecast early."""
    out: dict = {"models": len({(r["run"], r["model"]) for r in rows})}
    out["runs"] = ("p " + ", ".join(str(v) for v in sorted({r["p"] for r in rows})) + "; d_model "
                   + ", ".join(str(v) for v in sorted({r["d_model"] for r in rows})))
    for pt in POINTS:
        r = [x for x in rows if x["point"] == pt]
        if r:
            out[f"mdare_{pt}"] = float(np.median([x["are"] for x in r]))
            out[f"coverage_{pt}"] = float(np.mean([x["covered"] for x in r]))
            out[f"trivial_mdare_{pt}"] = float(np.median([x["trivial_are"] for x in r]))
    mem = [x for x in rows if x["point"] == "mem"]
    if mem:
        out["early_mem"] = float(np.mean([x["predicted"] < x["G"] for x in mem]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--json", help="also write every forecast here")
    ap.add_argument("--record", action="store_true",
                    help="store the summary in the shipped forecaster's trust record (forecast_model.json)")
    a = ap.parse_args(argv)
    model = fm.load_model()
    if model is None:
        ap.error("no fitted forecaster (src/grokscope/measures/forecast_model.json)")
    t0 = time.perf_counter()
    rows = [r for p in a.runs for r in forecasts(p, model)]
    print(table(rows))
    for r in rows:
        pt = "mem" if r["point"] == "mem" else f"{r['point']:.0%}"
        print(f"  {r['run']} model {r['model']} (seed {r['seed']}): G {r['G']:,.0f}, from {pt} (epoch {r['until']:,}): "
              f"{r['predicted']:,.0f} [{r['lower']:,.0f}, {r['upper']:,.0f}], p_grok {r['p_grok']:.2f}")
    print(f"{len(rows)} forecasts in {time.perf_counter() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    if a.record and rows:
        doc = json.loads(fm.MODEL_FILE.read_text())
        doc["model"].setdefault("trust", {})["transfer"] = summary(rows)
        fm.MODEL_FILE.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"recorded in {fm.MODEL_FILE}: {doc['model']['trust']['transfer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
