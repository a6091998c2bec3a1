"""Regenerate the golden outputs in tests/data (run from the repository root: python tests/data/make_golden.py).

They were first written by main at 30841f0, before the structure refactor of issue #9 moved any code (this
script then used the old API: progress.save_progress, phases_report(..., save=False), plots.figure);
tests/test_golden.py checks that the current code reproduces them (to float noise). Regenerate only on purpose,
when a number is meant to change, and say so in the commit.

* analysis_hand.json: ``analyze`` of the hand-built Fourier model (p = 31, keys 3, 7, 10, float64 weights).
* golden_run/: a tiny two-model run (p = 11; model 1 without weight decay): config, metrics, checkpoints
  (state.pt left out), and the ``progress.parquet`` computed on it with keys {0: [1, 3], 1: [2]}.
* phases_run.json: the phases report of that progress table; phases_synthetic.json: detect_phases and
  check_claims of the synthetic grokking table of tests/test_phases.py (which does generalise).
* figures.json: name, title and number of traces of every figure of the report of golden_run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers_fourier import fourier_dataset, fourier_model  # noqa: E402

from grokscope.config import Config

RUN_KEYS = {0: [1, 3], 1: [2]}
ANALYSIS_KEYS = [1, 2]


def golden_configs() -> list[Config]:
    kw = dict(p=11, d_model=16, n_heads=2, d_mlp=32, frac_train=0.5, epochs=120, checkpoint_every=10, test_every=10)
    return [Config(seed=0, **kw), Config(seed=1, weight_decay=0.0, **kw)]


def main() -> None:
    torch.set_num_threads(1)
    from grokscope.interp.analysis import analyze

    res = analyze(fourier_model(31, (3, 7, 10), scale=20.0, dtype=torch.float64), fourier_dataset(31))
    d = res.to_dict()
    d.pop("seconds")
    (HERE / "analysis_hand.json").write_text(json.dumps(d, indent=1, allow_nan=False))

    from grokscope.training.run import train

    run_dir = HERE / "golden_run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    train(golden_configs(), run_dir, device="cpu", progress=False)
    (run_dir / "state.pt").unlink()
    from grokscope.training.run import Run

    run = Run.load(run_dir)
    write_outputs(run, HERE)


def write_outputs(run, out: Path) -> None:
    """progress.parquet (into the run), phases_run.json, phases_synthetic.json and figures.json."""
    from grokscope.measures import phases as ph
    from grokscope.report import run as report

    df = report.save_progress(run, keys=RUN_KEYS)
    rep = ph.phases_report(run, df)
    (out / "phases_run.json").write_text(json.dumps(rep, indent=1))
    from test_phases import synthetic

    w = synthetic()
    r = ph.detect_phases(w)
    syn = {"phases": r, "claims": ph.check_claims(w, r, weight_decay=1.0, keys=[14, 35])}
    (out / "phases_synthetic.json").write_text(json.dumps(syn, indent=1))
    analysis = analyze_run(run)
    figs = []
    for name in report.FIGURES:
        if name in report.LLC_FIGURES:  # the golden run has no LLC (tests/test_llc.py draws them)
            continue
        fig = report.figure(run, name, analysis=analysis, progress=df, phases=rep)
        figs.append({"name": name, "title": fig.layout.title.text, "traces": len(fig.data)})
    (out / "figures.json").write_text(json.dumps(figs, indent=1))


def analyze_run(run):
    from grokscope.interp.analysis import analyze

    return analyze(run.model(), run.dataset(), keys=ANALYSIS_KEYS)


if __name__ == "__main__":
    main()
