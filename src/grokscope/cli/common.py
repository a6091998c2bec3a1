"""What the subcommands share: the parser class (a bad option is one line ``grokscope: error: ...``, exit 2),
the option value converters (each through :mod:`grokscope.checks`) and the checks of a run, a checkpoint and
key frequencies that every subcommand makes before anything is computed."""

from __future__ import annotations

import argparse
from typing import Any

from .. import checks as ck
from ..config import ConfigError
from ..files import DamagedFile
from ..fourier.keys import check_keys
from ..training.run import Run


class Parser(argparse.ArgumentParser):
    """The parser of ``grokscope`` and of each subcommand."""

    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        self.exit(2, f"grokscope: error: {message}\n")


def subcommand(sub, name: str, *, help: str, description: str, examples: list[str], **kw: Any
               ) -> argparse.ArgumentParser:
    """A subcommand's parser: its one-line ``help`` (``grokscope --help``), its ``description`` and the
    ``examples`` printed under ``--help``, with every option's default shown."""
    epilog = "examples:\n" + "\n".join("  " + e for e in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=_Formatter, **kw)


class _Formatter(argparse.HelpFormatter):
    """Keeps the examples' lines as written; wraps the rest to the terminal."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def opt(name: str, check: Any) -> Any:
    """An argparse ``type`` for option ``name``: ``check(text)`` through :mod:`grokscope.checks`; its one-line
    message is what argparse prints."""
    def conv(text: str) -> Any:
        try:
            return check(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    conv.__name__ = name
    return conv


#: the options' value converters (argparse types): a bad value is argparse's one line, exit 2
EPOCH = opt("epoch", lambda t: ck.integer("epoch", ck.parse("epoch", t, int), lo=0))
MODEL = opt("model", lambda t: ck.integer("model", ck.parse("model", t, int), lo=0))
UNTIL = opt("until", lambda t: ck.integer("until", ck.parse("until", t, int), lo=1))
EVERY = opt("every", lambda t: ck.integer("every", ck.parse("every", t, int), lo=1))
LOSS_THRESHOLD = opt("threshold", lambda t: ck.number("threshold", ck.parse("threshold", t, float), lo=0,
                                                      lo_open=True))
SEED = opt("seed", lambda t: ck.seed("seed", ck.parse("seed", t, int)))
FRAC = opt("frac_train", lambda t: ck.number("frac_train", ck.parse("frac_train", t, float), lo=0, hi=1, lo_open=True))
FORECAST_EVERY = opt("forecast_every", lambda t: ck.integer("forecast_every", ck.parse("forecast_every", t, int),
                                                          lo=1))
THRESHOLD = opt("threshold", lambda t: ck.number("threshold", ck.parse("threshold", t, float), lo=0, hi=1,
                                                 lo_open=True))


def run_with_checkpoints(path: str, modular_for: str | None = None) -> Run:
    """The run at ``path`` with at least one checkpoint; its config and metrics read (a damaged file is one line
    before anything is computed). ``modular_for``: the command, which needs a modular task's run (the Fourier
    measures read the p*p table)."""
    run = Run.load(path)
    if modular_for is not None and not run.config.make_task().pair_form:
        raise ConfigError(f"run={path!r} is invalid for `grokscope {modular_for}`: its task {run.config.task} is not "
                          "a modular task (the Fourier measures read the p*p table); `grokscope report RUN` draws it")
    if not run.checkpoint_epochs:
        raise ConfigError(f"run={path!r} is invalid: it has no checkpoints yet")
    run.metrics  # noqa: B018 - read to check it
    return run


def parse_keys(text: str | None, p: int) -> list[int] | None:
    """``--keys`` as distinct frequencies in 1..p // 2 (checked before anything is computed)."""
    if text is None:
        return None
    try:
        keys = [int(k) for k in text.split(",")]
    except ValueError:
        raise ConfigError(f"keys={text!r} is invalid: must be comma-separated integers in 1..{p // 2}") from None
    return check_keys(keys, p)


def final_finite(run: Run, command: str, instead: str) -> None:
    """The key frequencies of the progress measures come from each model's final checkpoint: refuse a run whose
    final weights are not finite, saying so."""
    for k in range(run.K):
        try:
            run.require_finite(None, k)
        except DamagedFile:
            raise
        except ConfigError:
            e = run.nonfinite().get(k)
            raise ConfigError(f"run={str(run.path)!r} is invalid for {command}: model {k} diverged"
                              + (f" (train loss non-finite from epoch {e})" if e is not None else "")
                              + f" and its final weights are not finite, so its key frequencies are undefined; "
                              + instead) from None


def run_checkpoint(run: Run, epoch: int | None, model: int) -> int:
    """The checkpoint epoch to analyse (default: the last), checked to exist and to hold finite weights."""
    run.check_model(model)
    epoch = run.checkpoint_epoch(epoch)
    run.require_finite(epoch, model)
    return epoch
