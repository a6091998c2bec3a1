"""No output path may overwrite a run's own files: every command that writes checks, before computing, that it writes
inside a run directory only the run files it owns (grokscope.files.check_inside_run). Each case below replaced a
run's file before the rule (the run then no longer loaded or resumed)."""

import hashlib
import shutil
from pathlib import Path

import pytest
from helpers import tiny

from grokscope import Config, train
from grokscope.cli import main
from grokscope.files import check_inside_run
from grokscope.checks import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train([Config(p=7, d_model=8, n_heads=2, d_mlp=16, epochs=20, checkpoint_every=10)], root / "mod", progress=False)
    train([tiny("skip_trigram", epochs=10)], root / "seq", progress=False)
    return root


def _digest(d: Path) -> dict[str, str]:
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.rglob("*")) if f.is_file()}


CASES = [
    ("mod", ["forecast", "{run}", "--until", "20", "--out", "{run}/state.pt"]),
    ("mod", ["export", "{run}", "--to", "transformer-lens", "--out", "{run}/checkpoints/epoch_000010.safetensors"]),
    ("mod", ["export", "{run}", "--to", "transformer-lens", "--out", "{run}/config.json"]),
    ("seq", ["report", "{run}", "-o", "{run}/state.pt"]),
    ("mod", ["analyze", "{run}", "--out", "{run}/state.pt"]),
    ("mod", ["report", "{run}", "--png", "{run}/checkpoints"]),
    ("mod", ["analyze", "{run}", "--out", "{run}/metrics.parquet"]),
    ("mod", ["train", "--p", "7", "--epochs", "2", "--out", "{run}/nested"]),
]


@pytest.mark.parametrize("name,argv", CASES, ids=[" ".join(a[:1] + a[-1:]) for _, a in CASES])
def test_no_command_overwrites_a_runs_files(runs, tmp_path, capsys, name, argv):
    run = tmp_path / name
    shutil.copytree(runs / name, run)
    before = _digest(run)
    assert main([a.replace("{run}", str(run)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: ") and err.count("\n") == 1 and "run" in err
    assert _digest(run) == before  # nothing written, nothing replaced


def test_a_command_writes_its_own_files_and_outside_runs(runs, tmp_path):
    run = tmp_path / "mod"
    shutil.copytree(runs / "mod", run)
    check_inside_run("out", run / "report.html", "report")
    check_inside_run("out", run / "progress.parquet", "report")  # report computes the progress files
    check_inside_run("out", run / "analysis.json", "analyze")
    check_inside_run("out", tmp_path / "elsewhere.pt", None)
    with pytest.raises(ConfigError, match="report.html, which `grokscope report` writes"):
        check_inside_run("out", run / "report.html", "forecast")
    other = tmp_path / "project"
    other.mkdir()
    (other / "config.json").write_text("{}")  # another program's config.json does not make a run directory
    check_inside_run("out", other / "state.pt", None)
