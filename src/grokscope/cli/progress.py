"""``grokscope progress``: the progress measures of every checkpoint (``progress.parquet``), the phases and the
§5.2 claims (``phases.json``) of a run, and the phase table printed."""

from __future__ import annotations

import argparse
import sys

from ..measures.cache import PHASES_FILE, PROGRESS_FILE, run_progress
from ..files import check_output
from ..measures.phases import summary
from .common import EVERY, final_finite, parse_keys, run_with_checkpoints, subcommand


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope progress`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "progress", examples=[
                       'grokscope progress runs/quick',
                       'grokscope progress runs/mainline --keys 14,35,41,42,52',
                   ],
                       help="progress measures over every checkpoint, phases and the §5.2 claims",
                       description="Compute the progress measures (paper Section 5) for every checkpoint of every "
                                   "model of a run into RUN/progress.parquet, detect the three phases and check "
                                   "the paper's claims into RUN/phases.json, and print the phase table.")
    p.add_argument("run", help="run directory")
    p.add_argument("--keys", default=None, help="comma-separated key frequencies for every model "
                                                "(default: found on each model's final checkpoint)")
    p.add_argument("--every", type=EVERY, default=None, help="use every N-th checkpoint (default: all)")
    p.add_argument("--recompute", action="store_true", help="ignore a saved progress.parquet")
    return p


def run(args: argparse.Namespace) -> int:
    run = run_with_checkpoints(args.run, modular_for="progress")
    keys = parse_keys(args.keys, run.configs[0].p)
    for name in (PROGRESS_FILE, PHASES_FILE):
        check_output("run", run.path / name, owner="progress")
    if keys is None:
        final_finite(run, "progress", "give the key frequencies with --keys")
    df, rep = run_progress(run, keys=keys, every=args.every, recompute=args.recompute, progress=True)
    for k, e in run.nonfinite().items():
        print(f"grokscope: warning: model {k} diverged (train loss non-finite from epoch {e}): its progress "
              "measures from then on are NaN", file=sys.stderr)
    print(summary(rep))
    print(f"wrote {run.path / 'progress.parquet'} ({len(df)} rows) and {run.path / 'phases.json'}")
    return 0
