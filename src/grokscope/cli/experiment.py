"""``grokscope experiment``: list the paper's experiments, or run one (:func:`grokscope.experiments.run_experiment`:
its groups trained locally or on Ray, resumed on a rerun), print its summary and write its report
(:func:`grokscope.report.experiment.report_html`).

    grokscope experiment list
    grokscope experiment frac --out exp/frac [--epochs 2000] [--executor local|ray] [--address ray://head:10001]
"""

from __future__ import annotations

from .common import subcommand

import argparse
from pathlib import Path

from ..config import ConfigError
from ..experiments import EXPERIMENTS, listing, run_experiment
from ..report.experiment import fmt, model_label, report_html


def _seed_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds={text!r} is invalid: must be integers separated by commas, "
                                         "e.g. 0 or 0,1") from None


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope experiment`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "experiment", examples=[
                       'grokscope experiment list',
                       'grokscope experiment frac --out exp/frac',
                       'grokscope experiment wd --seeds 0 --out exp/wd          # one seed of each setting',
                       'grokscope experiment seeds --tiny --out /tmp/seeds     # the machinery in seconds',
                       'grokscope experiment primes --test-every 100            # large test sets: evaluate less often',
                       'grokscope experiment methods --executor ray --address ray://head:10001',
                   ],
                       help="the paper's experiments, one command each (list: what there is)",
                       description="Run one of the paper's experiments (Appendices C.2, D.1, D.2): its models are "
                                   "trained in batched groups, locally or as Ray tasks; a rerun resumes unfinished "
                                   "groups and skips finished ones; then OUT/summary.parquet and OUT/report.html. "
                                   "`grokscope experiment list` lists them.")
    p.add_argument("name", help="list | " + " | ".join(EXPERIMENTS))
    p.add_argument("--out", help="experiment directory (default exp/NAME)")
    p.add_argument("--epochs", type=int, default=None, help="train every model this many epochs (a shortened run)")
    p.add_argument("--seeds", type=_seed_list, default=None, help="only the models of these seeds, e.g. 0 or 0,1 "
                                                                  "(a cheaper look: one seed of each setting)")
    p.add_argument("--test-every", type=int, default=None, help="evaluate the test set every N epochs instead of "
                                                                "the experiment's 10 (large test sets: p = 401)")
    p.add_argument("--tiny", action="store_true", help="shrink every model to seconds (p 7.., d_model 8.., 60 "
                                                       "epochs): tests and quick looks at the machinery")
    p.add_argument("--executor", default="local", help="local | ray (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. ray://head:10001); default: a local Ray")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--jobs", type=int, default=1, help="local: groups trained at once, each in its own process "
                                                       "with cpu_count/JOBS threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    return p


def run(args: argparse.Namespace) -> int:
    if args.name == "list":
        print(listing())
        return 0
    spec = EXPERIMENTS.get(args.name)
    if spec is None:
        raise ConfigError(f"experiment={args.name!r} is invalid: must be one of list, {', '.join(EXPERIMENTS)}")
    out = Path(args.out or f"exp/{args.name}")
    exp = run_experiment(args.name, out, epochs=args.epochs, tiny=args.tiny, executor=args.executor,
                         address=args.address, device=args.device, progress=not args.no_progress, jobs=args.jobs,
                         seeds=args.seeds, test_every=args.test_every)
    s = exp.summary
    print(f"experiment {exp.name}: {len(exp.groups)} groups, {len(s)} models -> {exp.path / 'summary.parquet'}")
    for _, r in s.iterrows():
        print(f"  {r.group} model {r.model} ({model_label(r, exp.name)}): train {r.final_train_loss:.2e} test "
              f"{r.final_test_loss:.2e} acc {r.final_test_acc:.3f}; test loss < 1e-6 at {fmt(r.epoch_test_loss_1e6)}, "
              f"test acc > 99% at {fmt(r.epoch_test_acc_99)}")
    if not args.no_report:
        try:
            import plotly  # noqa: F401  (an optional extra)
        except ImportError:
            print("no report.html: it needs plotly (pip install 'grokscope[plots]')")
            return 0
        print(f"wrote {report_html(exp)}")
    return 0
