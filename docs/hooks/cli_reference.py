"""MkDocs hook: write grokscope's command-line reference into a page at build time.

A page that contains the placeholder ``<!-- cli-reference -->`` gets, in its place, the ``--help`` text of
``grokscope`` and of every subcommand, found by walking the parser that ``grokscope.cli.build_parser()`` returns
(subcommands added later appear without changes here). The package is imported from this checkout's ``src/``
when there is one, so the page documents the code beside it rather than whatever version is installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

PLACEHOLDER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps help text to $COLUMNS

log = logging.getLogger("mkdocs.hooks.cli_reference")


def _build_parser(config) -> argparse.ArgumentParser:
    src = Path(config["config_file_path"]).resolve().parent / "src"
    if (src / "grokscope").is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from grokscope.cli import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser):
    """(name, aliases, help, subparser) for each subcommand, in the order they were added."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        seen: dict[int, list[str]] = {}
        order: list[tuple[str, argparse.ArgumentParser]] = []
        for name, sub in action.choices.items():
            if id(sub) in seen:
                seen[id(sub)].append(name)  # an alias of a subcommand already listed
                continue
            seen[id(sub)] = []
            order.append((name, sub))
        for name, sub in order:
            yield name, seen[id(sub)], helps.get(name) or "", sub


def _help(parser: argparse.ArgumentParser) -> str:
    if hasattr(parser, "color"):  # Python >= 3.14 may colour the help
        parser.color = False
    return parser.format_help().rstrip()


def _render(parser: argparse.ArgumentParser, level: int = 2) -> list[str]:
    out: list[str] = []
    for name, aliases, help_, sub in _subcommands(parser):
        out.append(f"{'#' * level} {sub.prog}\n")
        if help_:
            out.append(help_[0].upper() + help_[1:] + ".\n")
        if aliases:
            out.append("Also spelled " + ", ".join(f"`{a}`" for a in aliases) + ".\n")
        out.append(f"```text\n{_help(sub)}\n```\n")
        out.extend(_render(sub, level + 1))  # nested subcommands, if any appear
    return out


def on_page_markdown(markdown: str, page, config, files) -> str:
    if PLACEHOLDER not in markdown:
        return markdown
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = _build_parser(config)
        parts = [f"## {parser.prog}\n", f"```text\n{_help(parser)}\n```\n", *_render(parser)]
    except Exception as exc:  # the site still builds; a strict build fails on the warning
        log.warning("cli_reference: could not build grokscope's parser (%s: %s)", type(exc).__name__, exc)
        parts = ["!!! warning\n    The command-line reference could not be generated: grokscope's parser did not "
                 "import.\n    Run `grokscope --help` and `grokscope COMMAND --help` instead.\n"]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return markdown.replace(PLACEHOLDER, "\n".join(parts))
