"""``grokscope progress``: the progress measures of every checkpoint (``progress.parquet``), the phases and the
§5.2 claims (``phases.json``) of a run, and the phase table printed; with ``--llc`` also the local learning
coefficient of every checkpoint (``llc.json``, ``llc_calibration.json``; every task, a sequence task's run gets
only the LLC)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from .. import checks as ck
from ..config import ConfigError
from ..files import check_output
from ..measures import llc as lc
from ..measures.llc_phases import llc_turning_points
from ..measures.cache import PHASES_FILE, PROGRESS_FILE, run_llc, run_progress
from ..measures.phases import summary
from .common import EVERY, final_finite, opt, parse_keys, run_with_checkpoints, subcommand

LLC_EVERY = opt("llc_every", lambda t: ck.integer("llc_every", ck.parse("llc_every", t, int), lo=1))


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope progress`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "progress", examples=[
                       'grokscope progress runs/quick',
                       'grokscope progress runs/mainline --keys 14,35,41,42,52',
                       'grokscope progress runs/mainline --llc-every 10',
                   ],
                       help="progress measures over every checkpoint, phases and the §5.2 claims",
                       description="Compute the progress measures (paper Section 5) for every checkpoint of every "
                                   "model of a run into RUN/progress.parquet, detect the three phases and check "
                                   "the paper's claims into RUN/phases.json, and print the phase table. With "
                                   "--llc also the local learning coefficient (devinterp's SGLD; any task).")
    p.add_argument("run", help="run directory")
    p.add_argument("--keys", default=None, help="comma-separated key frequencies for every model "
                                                "(default: found on each model's final checkpoint)")
    p.add_argument("--every", type=EVERY, default=None, help="use every N-th checkpoint (default: all)")
    p.add_argument("--recompute", action="store_true", help="ignore a saved progress.parquet (and LLC calibration)")
    p.add_argument("--llc", action="store_true",
                   help="also estimate the local learning coefficient of every model at its checkpoints on the "
                        "run's training set (needs pip install 'grokscope[llc]'): a step-size sweep on the final "
                        "checkpoint into llc_calibration.json, the estimates into progress.parquet (llc, llc_std) "
                        "and llc.json (per-checkpoint diagnostics). The only measure of a sequence task's run")
    p.add_argument("--llc-every", type=LLC_EVERY, default=None,
                   help="the LLC of every N-th checkpoint only, the last always included (implies --llc; "
                        "default 1)")
    return p


def run(args: argparse.Namespace) -> int:
    llc = args.llc or args.llc_every is not None
    run = run_with_checkpoints(args.run)
    pair = run.config.make_task().pair_form
    if not pair and not llc:
        raise ConfigError(f"run={args.run!r} is invalid for `grokscope progress`: its task {run.config.task} is not "
                          "a modular task (the Fourier measures read the p*p table); `grokscope progress RUN --llc` "
                          "estimates its LLC, `grokscope report RUN` draws it")
    if not pair and (args.keys is not None or args.every is not None):
        raise ConfigError(f"{'keys' if args.keys is not None else 'every'} is invalid for run={args.run!r}: its task "
                          f"{run.config.task} has no Fourier measures (use --llc-every for the LLC)")
    keys = parse_keys(args.keys, run.configs[0].p) if pair else None
    for name in ((PROGRESS_FILE, PHASES_FILE) if pair else (PROGRESS_FILE,)) + \
            ((lc.LLC_FILE, lc.CALIBRATION_FILE) if llc else ()):
        check_output("run", run.path / name, owner="progress")
    if llc:
        lc.devinterp()  # the extra's one line before anything is computed
    df = None
    if pair:
        if keys is None:
            final_finite(run, "progress", "give the key frequencies with --keys")
        df, rep = run_progress(run, keys=keys, every=args.every, recompute=args.recompute, progress=True)
        for k, e in run.nonfinite().items():
            print(f"grokscope: warning: model {k} diverged (train loss non-finite from epoch {e}): its progress "
                  "measures from then on are NaN", file=sys.stderr)
        print(summary(rep))
    if llc:
        df, report, computed = run_llc(run, df, every=args.llc_every or 1, recompute=args.recompute)
        print(llc_summary(report, computed))
        print(turns_summary(llc_turning_points(run)))
    extra = " and " + " and ".join(str(run.path / n) for n in (PHASES_FILE,) * pair + (lc.LLC_FILE,) * llc)
    print(f"wrote {run.path / PROGRESS_FILE} ({len(df)} rows){extra if extra != ' and ' else ''}")
    return 0


def turns_summary(df) -> str:
    """Per model, where the LLC peaks and falls fastest, with the phase of each (``-``: no phases)."""
    import pandas as pd

    def f(v, fmt):
        return "-" if v is None or pd.isna(v) else format(v, fmt)
    lines = ["LLC turning points (phase in brackets):"]
    for r in df.itertuples():
        lines.append(f"  model {r.model}: peak {f(r.llc_max, '.4g')} at epoch {f(r.llc_max_epoch, ',.0f')} "
                     f"({r.llc_max_phase}), steepest fall at {f(r.llc_fall_epoch, ',.0f')} ({r.llc_fall_phase}), "
                     f"after memorisation at {f(r.llc_late_fall_epoch, ',.0f')} ({r.llc_late_fall_phase}); "
                     f"rank correlation with the test loss {f(r.spearman_test_loss, '.2f')}")
    return "\n".join(lines)


def llc_summary(report: dict, computed: bool) -> str:
    """A few lines: the settings and, per model, the checkpoints' statuses and the final LLC."""
    s = report["settings"]
    lines = [f"LLC ({'computed' if computed else 'saved'}): lr {s['lr']:g}, n_beta {s['nbeta']:.4g}, localization "
             f"{s['localization']:g}, {s['num_chains']} chains x {s['num_draws']} draws after {s['num_burnin_steps']} "
             f"burn-in steps, batch {s['batch_size']}"]
    by_model: dict[int, list] = {}
    for c in report["checkpoints"]:
        by_model.setdefault(int(c["model"]), []).append(c)
    for k, cs in sorted(by_model.items()):
        counts = Counter(c["status"] for c in cs)
        last = cs[-1]
        val = "nan" if last["llc"] is None else f"{last['llc']:.4g}"
        lines.append(f"  model {k}: {len(cs)} checkpoints ("
                     + ", ".join(f"{n} {st.replace('_', ' ')}" for st, n in sorted(counts.items()))
                     + f"); final epoch {last['epoch']}: llc {val}")
    return "\n".join(lines)
