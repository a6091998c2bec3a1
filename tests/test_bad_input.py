"""Every bad input and damaged run file of tests/fuzz_cli.py, on every subcommand: exit code 2, one line naming
the field or file, no traceback, nothing written (issue #11)."""

import pytest
from fuzz_cli import CASES, make_base_run, run_case


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return make_base_run(tmp_path_factory.mktemp("base") / "run")


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{' '.join(c[1][:1] + c[1][-2:])}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_nothing_written(case, base_run, tmp_path):
    ok, why = run_case(case, base_run, tmp_path)
    assert ok, why


def test_the_checker_can_fail(base_run, tmp_path):
    """run_case is not vacuous: a good command (exit 0, writes analysis.json) is not clean."""
    ok, why = run_case(("analyze", ["analyze", "{run}"], None, "x"), base_run, tmp_path)
    assert not ok and "exit 0" in why


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``grokscope experiment list | head -1``: the reader leaves early; no traceback and no error line."""
    import subprocess
    import sys
    # a listing of 4 MB, far more than a pipe holds, so the writer does meet the closed pipe
    code = ("import sys; import grokscope.cli.experiment as r; r.listing = lambda: 'seeds\\n' + 'x' * 4_000_000; "
            "from grokscope.cli import main; sys.exit(main(['experiment', 'list']))")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})
    first = p.stdout.readline()
    p.stdout.close()  # as head does after its line
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert first.startswith(b"seeds") and err == "", err
    assert rc == 141
