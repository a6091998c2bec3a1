"""benchmarks/forecast_eval.py: the summary and the figure are computed from the same rows, and agree."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from grokscope.config import Config
from grokscope.training.run import train

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("plotly")

_spec = importlib.util.spec_from_file_location(
    "forecast_eval", Path(__file__).resolve().parents[1] / "benchmarks" / "forecast_eval.py")
ev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ev)


def row(G, frac, pred, lo, hi, base=None, blo=None, bhi=None, model=0):
    return {"run": "r", "model": model, "grok_epoch": G, "fraction": frac, "until": int(frac * G),
            "predicted": pred, "lower": lo, "upper": hi, "baseline": base, "baseline_lower": blo,
            "baseline_upper": bhi, "method": "x"}


def test_summarize_synthetic_rows():
    rows = [row(1000, 0.5, 1100, 900, 1200, model=0),            # error 0.1, covered
            row(2000, 0.5, 3000, 2500, 3500, 1000, 900, 1100, 1),  # error 0.5, not covered; baseline 0.5, no
            row(4000, 0.5, None, None, None, 4400, 4000, 5000, 2),  # no forecast of ours; baseline 0.1, covered
            row(1000, 0.25, 500, 400, 2000, model=0)]
    s = ev.summarize(rows)
    assert s["0.5"]["n"] == 3 and s["0.5"]["ours"]["forecasts"] == 2
    assert s["0.5"]["ours"]["median_abs_rel_error"] == pytest.approx(0.3)
    assert s["0.5"]["ours"]["coverage"] == pytest.approx(0.5) and s["0.5"]["ours"]["covered"] == 1
    assert s["0.5"]["baseline"]["median_abs_rel_error"] == pytest.approx(0.3)
    assert s["0.5"]["baseline"]["covered"] == 1 and s["0.5"]["baseline"]["forecasts"] == 2
    assert s["0.25"]["ours"]["median_abs_rel_error"] == pytest.approx(0.5) and s["0.25"]["baseline"]["forecasts"] == 0
    assert s["0.75"]["n"] == 0 and s["0.75"]["ours"]["median_abs_rel_error"] is None


def _check_figure_matches(fig, rows, summary):
    traces = {t.name: t for t in fig.data}
    for name, key, lk, hk, _ in ev.METHODS:
        for frac in ev.FRACTIONS:
            ok = [r for r in rows if r["fraction"] == frac and r[key] is not None]
            t = traces[f"{name} from {frac:.0%}"]
            assert list(t.x) == [r["grok_epoch"] for r in ok] and list(t.y) == [r[key] for r in ok]
            assert list(t.error_y.array) == pytest.approx([r[hk] - r[key] for r in ok])
            assert list(t.error_y.arrayminus) == pytest.approx([r[key] - r[lk] for r in ok])
            assert t.marker.color == ev.COLOURS[frac]
    titles = [a.text for a in fig.layout.annotations]
    for (name, *_), title in zip(ev.METHODS, titles):
        for f, s in summary.items():
            assert f"{float(f):.0%}: " + ev._cell(s[name]).split(", ", 1)[1] in title
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis2.type == "log" and fig.layout.yaxis2.type == "log"  # the baseline panel too
    yx = [t for t in fig.data if t.name == "y = x"]
    assert len(yx) == 2 and all(list(t.x) == list(t.y) for t in yx)


def test_figure_of_synthetic_rows():
    rows = [row(1000, 0.5, 1100, 900, 1200, 1500, 1000, 2000), row(2000, 0.75, 2500, 2100, 2600, model=1),
            row(3000, 0.25, None, None, None, 800, 700, 900, 2)]
    _check_figure_matches(ev.figure(rows), rows, ev.summarize(rows))


@pytest.fixture(scope="module")
def grokked_runs(tmp_path_factory):
    """Two copies of a tiny run whose metrics say the models pass 99% test accuracy at chosen epochs (the
    forecast reads checkpoints and metrics <= until only, so the targets can be set this way)."""
    base = tmp_path_factory.mktemp("ev")
    kw = dict(p=11, d_model=16, n_heads=2, d_mlp=32, epochs=100, checkpoint_every=10, test_every=5)
    run = train([Config(seed=0, frac_train=0.5, **kw), Config(seed=1, frac_train=0.5, **kw)], base / "r",
                device="cpu", progress=False)
    out = []
    for name, groks in (("a", {0: 80, 1: 90}), ("b", {0: 60})):  # b's model 1 never groks: skipped
        d = base / name
        shutil.copytree(run.path, d)
        m = pd.read_parquet(d / "metrics.parquet")
        m["test_acc"] = m["test_acc"].where(m["test_acc"].isna(), 0.5)
        for k, G in groks.items():
            hit = (m["model"] == k) & (m["epoch"] >= G) & m["test_acc"].notna()
            m.loc[hit, "test_acc"] = 1.0
        m.to_parquet(d / "metrics.parquet")
        out.append(d)
    return out


def test_main_writes_json_and_a_figure_that_agree(grokked_runs, tmp_path, capsys):
    js, html = tmp_path / "e.json", tmp_path / "e.html"
    assert ev.main([*map(str, grokked_runs), "--out", str(js), "--html", str(html)]) == 0
    doc = json.loads(js.read_text())
    assert doc["models"] == 3 and doc["skipped"] == [[str(grokked_runs[1]), 1]]
    assert sorted((r["grok_epoch"], r["fraction"], r["until"]) for r in doc["rows"]) == sorted(
        (G, f, int(f * G)) for G in (80.0, 90.0, 60.0) for f in ev.FRACTIONS)
    assert doc["summary"] == json.loads(json.dumps(ev.summarize(doc["rows"])))
    assert all(s["n"] == 3 for s in doc["summary"].values())
    _check_figure_matches(ev.figure(doc["rows"], doc["summary"]), doc["rows"], doc["summary"])
    text = html.read_text()
    assert "Forecast grokking epoch vs actual: 3 models" in text and "ours from 25%" in text
    assert "3 models grok (forecast targets); 1 do not" in capsys.readouterr().out
