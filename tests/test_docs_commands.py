"""Every command in the README and the documentation runs as written: each `grokscope ...` line of a bash block
parses (its config builds, its run directory is accepted); the README's quick commands run for real in a folder
where `runs/quick`, `runs/mainline` and `runs/seeds` are tiny stand-ins; the README's Python block runs there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from grokscope.cli import main
from grokscope.cli.app import build_parser
from grokscope.cli.train import configs_from_args
from grokscope.training import train

from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: commands the stand-in runs cannot stand for (they train for minutes) are parsed, not run
LONG = ("train", "experiment")


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def commands(path: Path) -> list[list[str]]:
    out = []
    for block in blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part.strip())
                while words and "=" in words[0] and not words[0].startswith("-"):  # OMP_NUM_THREADS=1 grokscope ...
                    words = words[1:]
                if words[:1] == ["grokscope"]:
                    out.append(words[1:])
    return out


ALL = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in commands(p)]


def test_the_docs_have_commands():
    assert len(ALL) > 20 and any(c[:1] == ["train"] for _, c in ALL)


@pytest.mark.parametrize("where,cmd", ALL, ids=[f"{w}:{' '.join(c)[:60]}" for w, c in ALL])
def test_every_documented_command_parses(where, cmd):
    args = build_parser().parse_args(cmd)  # SystemExit (exit 2) on an unknown option
    if args.command == "train" and args.resume is None and args.config is None:
        configs_from_args(args)  # the config it would train is valid


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """A folder whose runs/quick, runs/mainline and runs/seeds are tiny runs (seconds each)."""
    root = tmp_path_factory.mktemp("readme")
    train([tiny_config(epochs=1000, checkpoint_every=100, test_every=50)], root / "runs" / "quick", progress=False)
    train([tiny_config(p=113, epochs=200, checkpoint_every=50)], root / "runs" / "mainline", progress=False)
    train([tiny_config(epochs=40, seed=s) for s in range(5)], root / "runs" / "seeds", progress=False, until=20)
    return root


def test_readme_quick_commands_run(standins, monkeypatch, capsys):
    monkeypatch.chdir(standins)
    ran = 0
    for cmd in commands(ROOT / "README.md"):
        if cmd[0] in LONG and "--resume" not in cmd:
            continue
        assert main(cmd) == 0, (cmd, capsys.readouterr().err)
        ran += 1
    assert ran >= 5


def test_readme_python_runs(standins, monkeypatch):
    monkeypatch.chdir(standins)
    (code,) = blocks(ROOT / "README.md", "python")
    exec(compile(code, "README.md", "exec"), {})


#: documentation Python blocks not run here, and why
NOT_RUN = {"docs/guides/extending.md": "excerpts of a task's file (with '...'), not a script",
           "docs/guides/transformerlens-and-logging.md": "needs the mainline's checkpoint 10,000 and a file the CLI "
                                                         "wrote (the export is tested in tests/test_export.py)"}
PY_DOCS = [(p.relative_to(ROOT).as_posix(), i) for p in DOCS[1:] for i, _ in enumerate(blocks(p, "python"))]


@pytest.mark.parametrize("where,i", PY_DOCS, ids=[f"{w}[{i}]" for w, i in PY_DOCS])
def test_docs_python_blocks_run(standins, monkeypatch, where, i):
    if where in NOT_RUN:
        pytest.skip(NOT_RUN[where])
    monkeypatch.chdir(standins)
    if not (standins / "exp" / "frac").exists():
        from grokscope.experiments import run_experiment
        run_experiment("frac", standins / "exp" / "frac", tiny=True, progress=False)
    code = blocks(ROOT / where, "python")[i]
    if "llc" in code and not (standins / "runs" / "mainline" / "llc.json").is_file():
        _with_llc(standins / "runs" / "mainline", monkeypatch)
    exec(compile(code, where, "exec"), {})


def _with_llc(run, monkeypatch):
    """The stand-in's LLC, as `grokscope progress RUN --llc` writes it, with few short chains (devinterp needed)."""
    from test_llc import _shrink, need_devinterp

    need_devinterp()
    _shrink(monkeypatch)
    assert main(["progress", str(run), "--llc-every", "2"]) == 0
