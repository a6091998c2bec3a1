"""The HTML report in a real browser (headless Chromium): every figure renders, no JavaScript errors.

Skips when Chromium is absent, unless GROKSCOPE_REQUIRE_BROWSER=1 (set by .ci/run, which installs Debian's
chromium), so CI cannot pass by skipping. The screenshot goes to tmp_path, or to $GROKSCOPE_SCREENSHOT_DIR.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("plotly")

from grokscope.config import Config
from grokscope.report.run import FIGURES, LLC_FIGURES, report_html
from grokscope.training.run import Run, train


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("GROKSCOPE_REQUIRE_BROWSER") == "1":
            pytest.fail("GROKSCOPE_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")
    return exe


def _browse(exe: str, html: Path, tmp: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """(rendered DOM, browser log) of a local file; no network."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000"]
    url = html.resolve().as_uri()
    r = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    if screenshot is not None:
        subprocess.run([exe, *flags, "--window-size=1400,4000", f"--screenshot={screenshot}", url],
                       capture_output=True, text=True, timeout=120)
    return r.stdout, r.stderr


def _js_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Uncaught" in line or ("CONSOLE" in line and "rror" in line)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    cfgs = [Config(p=11, d_model=16, n_heads=2, d_mlp=32, frac_train=0.5, epochs=60, checkpoint_every=20,
                   seed=s) for s in (0, 1)]
    run = train(cfgs, tmp / "run", device="cpu", progress=False)
    return report_html(run, tmp / "report.html"), tmp


def test_report_renders_in_chromium(report):
    exe = _chromium()
    html, tmp = report
    shots = Path(os.environ.get("GROKSCOPE_SCREENSHOT_DIR", tmp))
    shots.mkdir(parents=True, exist_ok=True)
    dom, log = _browse(exe, Path(html), tmp, shots / "report.png")
    assert _js_errors(log) == []
    plotted = re.findall(r'<div[^>]*id="plot-([^"]+)"[^>]*class="[^"]*js-plotly-plot', dom) + \
        re.findall(r'<div[^>]*class="[^"]*js-plotly-plot[^"]*"[^>]*id="plot-([^"]+)"', dom)
    want = sorted(set(FIGURES) - set(LLC_FIGURES))  # this run has no LLC
    assert sorted(set(plotted)) == want, (sorted(set(plotted)), want)
    assert dom.count('class="main-svg"') >= len(want)  # plotly drew an SVG for each
    assert (shots / "report.png").stat().st_size > 10_000


def test_browser_check_catches_a_script_error(report):
    exe = _chromium()
    html, tmp = report
    broken = tmp / "broken.html"
    broken.write_text(Path(html).read_text().replace("</body>", "<script>throw new Error('boom')</script></body>"))
    _, log = _browse(exe, broken, tmp)
    assert _js_errors(log), "the console check would not notice a JavaScript error"


def test_png_export(report, tmp_path):
    _chromium()
    pytest.importorskip("kaleido")
    from grokscope.report.run import write_pngs

    html, tmp = report
    paths = write_pngs(Run.load(tmp / "run"), tmp_path / "figs", figures=["losses", "interference"])
    assert [p.name for p in paths] == ["losses.png", "interference.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000
