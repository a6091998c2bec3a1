"""``grokscope`` command line: the parser of the subcommands (:data:`COMMANDS`, one module each: its
``add(subparsers)`` declares it, its ``run(args)`` runs it) and :func:`main`, which turns every failure into
one line and an exit code.

    grokscope train --preset mainline --out runs/mainline
    grokscope progress runs/mainline
    grokscope report runs/mainline

Bad input exits with code 2 and one line ``grokscope: error: ...`` naming the field; nothing is written: every
value goes through :mod:`grokscope.checks` (config fields in :class:`Config`, options here) and every output path
is checked (:func:`grokscope.files.check_output`) before anything is computed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Sequence

from ..training import run as runs
from ..config import ConfigError
from ..training.run import NonFiniteLoss
from ..version import __version__
from . import analyze, experiment, export, forecast, progress, report, train
from .common import Parser

#: the subcommands, in the order of ``grokscope --help``: one line each
COMMANDS = (
    train,
    analyze,
    progress,
    report,
    forecast,
    export,
    experiment,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``grokscope`` and its subcommands (each one's ``run`` as the default ``run_command``)."""
    parser = Parser(prog="grokscope", description="Train and reverse-engineer grokking transformers "
                                                  "(Nanda et al., ICLR 2023).")
    parser.add_argument("--version", action="version", version=f"grokscope {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in COMMANDS:
        command.add(sub).set_defaults(run_command=command.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings (a diverging run) as one line; others as Python shows them."""
    if issubclass(category, NonFiniteLoss):
        print(f"grokscope: warning: {message}", file=sys.stderr)
    else:
        _PY_SHOWWARNING(message, category, filename, lineno, file, line)


_PY_SHOWWARNING = warnings.showwarning


def _interrupted(args: argparse.Namespace) -> None:
    if args.command == "train":
        where = Path(args.resume or args.out or f"runs/{args.preset}")
        if (where / runs.CONFIG).is_file():
            print("grokscope: interrupted; the run directory holds everything so far: resume with "
                  f"`grokscope train --resume {where}`", file=sys.stderr)
        else:
            print("grokscope: interrupted before training started; nothing was written", file=sys.stderr)
    elif args.command == "experiment":
        print("grokscope: interrupted; every group keeps its last checkpoint: rerun the same command to resume",
              file=sys.stderr)
    else:  # analyze/progress/report write their files atomically: nothing half-written is left
        print(f"grokscope: interrupted; {args.command} wrote nothing further", file=sys.stderr)


def _done(entry: bool) -> None:
    """The command has finished (or is reporting its interrupt): as the process's entry, a Ctrl-C or ``kill``
    from now on no longer changes its outcome (the exit code it reports, its one line)."""
    if entry:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    """``grokscope ARGV``: the exit code (0 done, 2 bad input, 130 interrupted, 1 a bug). ``argv=None``: the
    process's own command line; a signal after the command has finished then leaves its exit code as it is."""
    entry = argv is None
    try:
        rc = _main(argv, entry)
    except KeyboardInterrupt:  # before the command started (building the parser, reading the options)
        _done(entry)
        print("grokscope: interrupted before the command started; nothing was written", file=sys.stderr)
        return 130
    _done(entry)
    return rc


def _main(argv: Sequence[str] | None, entry: bool) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (one line printed, code 2), or --help / --version (0)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2

    def _terminate(signum, frame):  # `kill PID` stops like Ctrl-C (training: between steps, state saved)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run_command(args)
        except ConfigError as e:
            print(f"grokscope: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            _done(entry)  # a second Ctrl-C does not interrupt the message
            _interrupted(args)
            return 130
        except BrokenPipeError:  # `grokscope ... | head`: the reader left; stop quietly, as a SIGPIPE'd tool does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 141
        except OSError as e:  # the file system refused (permissions, a vanished directory, ...)
            print(f"grokscope: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
            return 2
        except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback on request
            if os.environ.get("GROKSCOPE_TRACEBACK") == "1":
                traceback.print_exc()
            print(f"grokscope: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                  "(please report it; GROKSCOPE_TRACEBACK=1 shows the traceback)", file=sys.stderr)
            return 1
