"""``grokscope report``: the paper's figures and tables of a run in one self-contained HTML file, or as PNG files
(:mod:`grokscope.report.run`; a sequence-task run: :mod:`grokscope.report.sequence`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..report import sequence as seqreport
from ..config import ConfigError
from ..files import check_output
from ..measures.cache import PHASES_FILE, PROGRESS_FILE, run_progress
from ..report.run import report_html, write_pngs
from ..training import Run
from .common import EPOCH, MODEL, final_finite, run_checkpoint, run_with_checkpoints, subcommand


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope report`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "report", examples=['grokscope report runs/quick                 # -> runs/quick/report.html',
                                                    'grokscope report runs/seeds --model 2 --epoch 10000 -o seed2.html',
                                                    'grokscope report runs/quick --png figures/   # PNG files instead'],
                       help="the paper's figures for a run, in one self-contained HTML file",
                       description="Draw the paper's figures (loss curves with phases, Fourier norms, attention and "
                                   "neuron maps, frequency ablations, progress measures, ...) and Tables 1, 2 and the "
                                   "claims table into one HTML file that opens offline. Computes progress.parquet "
                                   "and phases.json first if the run has none. On a sequence-task run (Appendix D.3): its loss "
                                   "curves over the authors', per-token losses (digit addition) or attention "
                                   "patterns and head scores (induction, skip trigram).")
    p.add_argument("run", help="run directory")
    p.add_argument("-o", "--out", default=None, help="HTML file (default RUN/report.html)")
    p.add_argument("--png", default=None, metavar="DIR", help="write the figures as PNG images into DIR instead "
                                                              "(needs `pip install kaleido` and a local Chromium)")
    p.add_argument("--epoch", type=EPOCH, default=None, help="checkpoint analysed for the per-model figures (default: last)")
    p.add_argument("--model", type=MODEL, default=0, help="model analysed for the per-model figures (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Everything is checked first (run, model, epoch, finite weights, output paths); nothing is written before."""
    run = run_with_checkpoints(args.run)
    if not run.config.make_task().pair_form:
        return _run_seq_report(args, run)
    run_checkpoint(run, args.epoch, args.model)
    final_finite(run, "report", "analyse an earlier checkpoint with `grokscope analyze RUN --epoch E`")
    try:
        import plotly  # noqa: F401  (an optional extra)
    except ImportError:
        raise ConfigError("report needs plotly: pip install 'grokscope[plots]'") from None
    for name in (PROGRESS_FILE, PHASES_FILE):
        check_output("run", run.path / name, owner="progress")
    if args.png:
        check_output("png", args.png, kind="dir")
        try:
            paths = write_pngs(run, args.png, epoch=args.epoch, model=args.model)
        except ImportError as e:
            raise ConfigError(f"png={args.png!r} is invalid here: {e}") from None
        print(f"wrote {len(paths)} PNG files into {args.png}")
        return 0
    out = check_output("out", Path(args.out) if args.out else run.path / "report.html", owner="report")
    if up_to_date(out, run, args):
        print(f"{out} is up to date (the run and the options are unchanged since it was written)")
        return 0
    run_progress(run, progress=True)  # the saved ones when up to date; computed first, so the stamp sees them
    print(f"analysing model {args.model} at epoch {run_checkpoint(run, args.epoch, args.model)} (§4)...",
          file=sys.stderr)
    path = report_html(run, out, epoch=args.epoch, model=args.model, show=True, stamp=inputs_stamp(run, args))
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0


def inputs_stamp(run: Run, args: argparse.Namespace) -> str:
    """A fingerprint of what a report is drawn from: grokscope's version, the options, and the name, size and
    modification time of the run's config, metrics, checkpoints and saved measures."""
    import hashlib

    from ..version import __version__
    files = [run.path / n for n in ("config.json", "metrics.parquet", PROGRESS_FILE, PHASES_FILE, "llc.json",
                                    "llc_calibration.json")]
    files += sorted((run.path / "checkpoints").glob("*.safetensors"))
    parts = [__version__, str(args.epoch), str(args.model)]
    parts += [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def up_to_date(out: Path, run: Run, args: argparse.Namespace) -> bool:
    """Whether ``out`` is a report of this run with these options whose inputs have not changed since."""
    if not out.is_file() or not (run.path / PROGRESS_FILE).is_file() or not (run.path / PHASES_FILE).is_file():
        return False
    with open(out, encoding="utf-8", errors="replace") as f:
        head = f.read(4096)
    return f"<meta name='grokscope-inputs' content='{inputs_stamp(run, args)}'>" in head


def _run_seq_report(args: argparse.Namespace, run: Run) -> int:
    """``grokscope report`` on a run of a task other than the modular ones (:mod:`grokscope.report.sequence`)."""
    if args.model != 0:
        raise ConfigError(f"model={args.model} is invalid: the report of task {run.config.task} draws model 0")
    run.metrics  # noqa: B018 - read to check it
    try:
        import plotly  # noqa: F401  (an optional extra)
    except ImportError:
        raise ConfigError("report needs plotly: pip install 'grokscope[plots]'") from None
    epoch = seqreport.check_epoch(run, args.epoch)
    run.require_finite(epoch, 0)  # a diverged model's attention is meaningless: refused as the modular report does
    if args.png:
        check_output("png", args.png, kind="dir")
        try:
            paths = seqreport.write_seq_pngs(run, args.png, epoch=epoch)
        except ImportError as e:
            raise ConfigError(f"png={args.png!r} is invalid here: {e}") from None
        print(f"wrote {len(paths)} PNG files into {args.png}")
        return 0
    out = check_output("out", Path(args.out) if args.out else run.path / "report.html", owner="report")
    path = seqreport.seq_report_html(run, out, epoch=epoch)
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0
