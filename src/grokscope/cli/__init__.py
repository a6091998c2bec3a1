"""The ``grokscope`` command line: :mod:`.app` (the parser and :func:`main`), :mod:`.common` (what the subcommands
share) and one module per subcommand (:mod:`.train`, :mod:`.analyze`, :mod:`.progress`, :mod:`.report`,
:mod:`.forecast`, :mod:`.export`, :mod:`.experiment`). The top layer: it may import every other package."""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
