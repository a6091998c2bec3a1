"""A D.3 run's loss curves beside the authors' saved ones: the losses at chosen steps and the first step below
chosen levels, one table for each.

    python benchmarks/d3_oracle/curve_landmarks.py RUN [--reference DIR]
        [--at 1000,50000,...] [--below 12,10,5,2,1.5] [--after 50000] [--window 200]

Losses at a step are the mean over a window of +-``--window`` steps of the logged values (the test loss is logged
every ``test_every`` steps, the authors' every 4), so the two curves are compared at the same smoothing. The first
step below a level is the first logged test step from ``--after`` on (default 50,000: past memorisation's rise
of the test loss) whose loss is below it. Reads ``../shared/reference`` beside the repository; prints Markdown."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from grokscope.report.sequence import reference_curves
from grokscope.training.run import Run


def curves(run: Run, reference: str | None) -> tuple[dict, dict]:
    """``(ours, authors')``: ``{"train": (steps, losses), "test": (steps, losses)}`` each; the authors' file is the
    one of the run's setup (:func:`grokscope.report.sequence.reference_curves`)."""
    logged = {s: run.metrics[["epoch", f"{s}_loss"]].dropna() for s in ("train", "test")}
    ours = {s: (df["epoch"].to_numpy(), df[f"{s}_loss"].to_numpy(dtype=float)) for s, df in logged.items()}
    theirs = {s: (df["epoch"].to_numpy(), df["loss"].to_numpy()) for s, df in reference_curves(run, reference).items()}
    if not theirs:
        sys.exit(f"no curve of the authors for this run's setup in {reference or 'the reference folder'}")
    return ours, theirs


def at(curve: tuple[np.ndarray, np.ndarray], step: int, window: int) -> float:
    steps, loss = curve
    keep = np.abs(steps - step) <= window
    return float(loss[keep].mean()) if keep.any() else float("nan")


def first_below(curve: tuple[np.ndarray, np.ndarray], level: float, after: int) -> int | None:
    """The first logged step from ``after`` on whose loss is below ``level``."""
    steps, loss = curve
    hit = np.flatnonzero((steps >= after) & (loss < level))
    return int(steps[hit[0]]) if hit.size else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--reference", default=None, help="the authors' folder (default ../shared/reference)")
    ap.add_argument("--at", default="1000,50000,100000,150000,190000,200000,250000,285819")
    ap.add_argument("--below", default="12,10,5,2,1.5")
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--after", type=int, default=50000)
    a = ap.parse_args()
    us, them = curves(Run.load(a.run), a.reference)
    print("| step | train (ours / authors') | test (ours / authors') |\n| --- | --- | --- |")
    for step in map(int, a.at.split(",")):
        cells = [f"{at(us[s], step, a.window):.3g} / {at(them[s], step, a.window):.3g}" if s in them else
                 f"{at(us[s], step, a.window):.3g} / -" for s in ("train", "test")]
        print(f"| {step:,} | {cells[0]} | {cells[1]} |")
    print(f"\n| test loss below (from step {a.after:,}) | ours | authors' |\n| --- | --- | --- |")
    fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
    for level in map(float, a.below.split(",")):
        print(f"| {level:g} | {fmt(first_below(us['test'], level, a.after))} | "
              f"{fmt(first_below(them['test'], level, a.after)) if 'test' in them else '-'} |")


if __name__ == "__main__":
    main()
