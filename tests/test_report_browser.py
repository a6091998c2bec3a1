"""The HTML reports in a real browser (headless Chromium): every figure renders, no JavaScript errors, and at
1,400 px nothing is wider than its container or the window (wide tables scroll inside their own box) -- for a
run, an experiment and a sequence-task run. Plus the page's structure without a browser: cards, contents,
captions, human column names, the claims' verdicts, plotly's JS once.

Skips when Chromium is absent, unless GROKSCOPE_REQUIRE_BROWSER=1 (set by .ci/run, which installs Debian's
chromium), so CI cannot pass by skipping. The screenshot goes to tmp_path, or to $GROKSCOPE_SCREENSHOT_DIR.
"""

import json
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


WINDOW = "1400,4000"


def _browse(exe: str, html: Path, tmp: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """(rendered DOM, browser log) of a local file in a 1,400 px wide window; no network."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", f"--window-size={WINDOW}", "--hide-scrollbars"]
    url = html.resolve().as_uri()
    r = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    if screenshot is not None:
        subprocess.run([exe, *flags, f"--screenshot={screenshot}", url], capture_output=True, text=True,
                       timeout=120)
    return r.stdout, r.stderr


#: run in the page once it has drawn: every element of the page (plotly's own layers aside, and what lies inside
#: a box that scrolls sideways) must lie within its parent, the page must not scroll sideways, and every plotly
#: figure must have its SVG with traces, no wider than its box. Writes the findings as JSON into <pre id=check>.
CHECK = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const vw = document.documentElement.clientWidth, out = {viewport: vw, overflowing: [], plots: []};
  out.page_scroll_width = document.documentElement.scrollWidth;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/ +/).join('.') : '');
  for (const el of document.querySelectorAll('main, main *')) {  // the page (not plotly's off-screen tester)
    if (el.id === 'check' || el.closest('.js-plotly-plot') !== null && !el.classList.contains('js-plotly-plot'))
      continue;
    const box = el.parentElement.closest('.table-wrap');
    if (box !== null) continue;  // inside a box that scrolls: it may be wider
    const r = el.getBoundingClientRect(), p = el.parentElement.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > p.right + 1 || r.left < p.left - 1 || r.right > vw + 1)
      out.overflowing.push(name(el) + ' in ' + name(el.parentElement) + ': ' + Math.round(r.left) + '..' +
                           Math.round(r.right) + ' vs ' + Math.round(p.left) + '..' + Math.round(p.right));
  }
  for (const el of document.querySelectorAll('.js-plotly-plot')) {
    const svg = el.querySelector('svg.main-svg');
    out.plots.push({id: el.id, svg: svg !== null, traces: el.querySelectorAll('.trace, .hm').length,
                    width: svg ? Math.round(svg.getBoundingClientRect().width) : 0,
                    box: Math.round(el.parentElement.getBoundingClientRect().width)});
  }
  const pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 500));
</script>"""


def layout_check(exe: str, html: Path, tmp: Path, screenshot: Path | None = None) -> tuple[dict, str]:
    """(:data:`CHECK`'s findings, browser log) on a copy of ``html`` with the check injected."""
    probe = tmp / (html.stem + ".check.html")
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom, log = _browse(exe, probe, tmp, screenshot)
    m = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert m, "the layout check did not run:\n" + log[-2000:]
    return json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")), log


def _js_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Uncaught" in line or ("CONSOLE" in line and "rror" in line)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    cfgs = [Config(p=11, d_model=16, n_heads=2, d_mlp=32, frac_train=0.5, epochs=60, checkpoint_every=20,
                   seed=s) for s in (0, 1)]
    run = train(cfgs, tmp / "run", device="cpu", progress=False)
    return report_html(run, tmp / "report.html"), tmp


@pytest.fixture(scope="module")
def experiment_report(tmp_path_factory):
    from grokscope.experiments import run_experiment
    from grokscope.report.experiment import report_html as exp_html

    tmp = tmp_path_factory.mktemp("exp")
    exp = run_experiment("frac", tmp / "exp", tiny=True, progress=False)
    return exp_html(exp, tmp / "report.html"), tmp


@pytest.fixture(scope="module")
def sequence_report(tmp_path_factory):
    from helpers import tiny

    from grokscope.report.sequence import seq_report_html

    tmp = tmp_path_factory.mktemp("seq")
    run = train([tiny("repeated_subsequence", epochs=40)], tmp / "run", progress=False)
    return seq_report_html(run, tmp / "report.html"), tmp


def _shots(tmp: Path) -> Path:
    shots = Path(os.environ.get("GROKSCOPE_SCREENSHOT_DIR", tmp))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _assert_reads_well(exe: str, html: Path, tmp: Path, shot: str) -> dict:
    """The layout check at 1,400 px: nothing overflows its container or the window, every figure drawn (an SVG
    with traces, as wide as its box allows), no JavaScript errors; the screenshot written. Returns the findings."""
    got, log = layout_check(exe, Path(html), tmp, _shots(tmp) / shot)
    assert _js_errors(log) == []
    assert got["overflowing"] == [], got["overflowing"][:10]
    assert got["page_scroll_width"] <= got["viewport"], got
    assert got["plots"] and all(p["svg"] and p["traces"] > 0 for p in got["plots"]), got["plots"]
    assert all(p["width"] <= p["box"] + 1 for p in got["plots"]), got["plots"]
    assert len({p["width"] for p in got["plots"]}) == 1, got["plots"]  # one figure width
    assert (_shots(tmp) / shot).stat().st_size > 10_000
    return got


def test_report_renders_in_chromium(report):
    exe = _chromium()
    html, tmp = report
    got = _assert_reads_well(exe, Path(html), tmp, "report.png")
    want = sorted(set(FIGURES) - set(LLC_FIGURES))  # this run has no LLC
    assert sorted(p["id"][len("plot-"):] for p in got["plots"]) == want


def test_experiment_report_reads_well_in_chromium(experiment_report):
    exe = _chromium()
    html, tmp = experiment_report
    got = _assert_reads_well(exe, Path(html), tmp, "experiment.png")
    assert "plot-frac-sweep" in {p["id"] for p in got["plots"]}


def test_sequence_report_reads_well_in_chromium(sequence_report):
    exe = _chromium()
    html, tmp = sequence_report
    got = _assert_reads_well(exe, Path(html), tmp, "sequence.png")
    assert {p["id"] for p in got["plots"]} == {"plot-losses", "plot-attention", "plot-head_scores"}


def test_layout_check_catches_overflow_and_an_undrawn_figure(report):
    exe = _chromium()
    html, tmp = report
    bad = tmp / "wide.html"
    bad.write_text(Path(html).read_text().replace(
        '<nav class="toc">', '<div id="too-wide" style="width:1800px">x</div><div class="js-plotly-plot" '
        'id="plot-undrawn"></div><nav class="toc">', 1))
    got, _ = layout_check(exe, bad, tmp)
    assert any(o.startswith("div#too-wide") for o in got["overflowing"]), got["overflowing"]
    assert got["page_scroll_width"] > got["viewport"]
    undrawn = [p for p in got["plots"] if p["id"] == "plot-undrawn"]
    assert undrawn == [{"id": "plot-undrawn", "svg": False, "traces": 0, "width": 0, "box": undrawn[0]["box"]}]


# ---------------------------------------------------------------------- the page's structure (no browser)
def _structure(text: str) -> None:
    """Cards, contents linking to every section, a caption under every figure, human column names, JS once."""
    assert text.count("window.PlotlyConfig") == 1  # plotly's JS embedded once
    assert not re.search(r'<script[^>]+src=["\']?https?:', text)
    assert text.count('class="card') >= 4
    ids = re.findall(r'<section id="([^"]+)"', text)
    links = re.findall(r'<nav class="toc">.*?</nav>', text, re.S)[0]
    assert re.findall(r'href="#([^"]+)"', links) == ids and len(ids) >= 4
    for sec in re.findall(r'<section id="fig-[^"]+">.*?</section>', text, re.S):
        cap = re.search(r"<figcaption>(.*?)</figcaption>", sec, re.S)
        assert cap and len(cap.group(1)) > 40, sec[:200]
    for table in re.findall(r'<table class="(?!config)[^"]*">.*?</table>', text, re.S):
        for th in re.findall(r"<th>(.*?)</th>", table):
            assert not re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", th), th  # no raw snake_case column
    assert "<pre>" not in text  # no monospace dump running off the page


def test_run_report_structure(report):
    html, _ = report
    text = Path(html).read_text(encoding="utf-8")
    _structure(text)
    for label in ("grokking epoch", "key frequencies", "logit FVE", "memorisation ends", "claims hold"):
        assert f'<div class="label">{label}</div>' in text, label
    claims = re.search(r'<table class="claims">(.*?)</table>', text, re.S).group(1)
    assert "<th>verdict</th>" in claims and "{" not in claims  # verdicts, not raw JSON
    assert len(re.findall(r'class="verdict (holds|fails|undecided)"', claims)) == 12  # 6 claims x 2 models
    assert '<table class="analysis">' in text and "logit FVE" in text


def test_experiment_report_structure(experiment_report):
    html, _ = experiment_report
    text = Path(html).read_text(encoding="utf-8")
    _structure(text)
    assert text.count('<section id="fig-losses-') == 0 and 'id="fig-frac-sweep"' in text  # Fig 20: one plot


def test_sequence_report_structure(sequence_report):
    html, _ = sequence_report
    _structure(Path(html).read_text(encoding="utf-8"))


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
