"""The ``grokscope`` command line: :mod:`.app` (the parser and :func:`main`), :mod:`.common` (what the subcommands
share) and one module per subcommand (:mod:`.train`, :mod:`.analyze`, :mod:`.progress`, :mod:`.report`,
:mod:`.forecast`, :mod:`.export`, :mod:`.experiment`). The top layer: it may import every other package.

:func:`main` is light to import (the console script and ``python -m grokscope`` import it before anything runs):
as the process's entry (``argv=None``) it defers Ctrl-C and ``kill`` while torch and the subcommands import, so an
interrupt at any moment is one line and exit code 130, never a traceback."""

from __future__ import annotations

import signal
import sys
from importlib import import_module
from typing import Sequence

__all__ = ["build_parser", "main"]


def build_parser():
    """The parser of ``grokscope`` and its subcommands (:func:`grokscope.cli.app.build_parser`)."""
    return import_module(".app", __name__).build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``grokscope ARGV`` (:func:`grokscope.cli.app.main`); returns the exit code. ``argv=None``: the
    process's own command line, and this process's signal handling (see the module's docstring)."""
    if argv is not None:
        return import_module(".app", __name__).main(argv)
    hits: list[int] = []

    def defer(signum, frame):  # the first signal waits for the imports to finish; a second one stops them
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    try:
        before = {s: signal.signal(s, defer) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no handlers to install
        return import_module(".app", __name__).main(argv)
    try:
        app = import_module(".app", __name__)
    except KeyboardInterrupt:
        hits.append(signal.SIGINT)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    if hits:
        for s in before:
            signal.signal(s, signal.SIG_IGN)
        print("grokscope: interrupted before the command started; nothing was written", file=sys.stderr)
        return 130
    return app.main(argv)
