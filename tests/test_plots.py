"""grokscope.report.plot_curves, .plot_fourier: every figure of a tiny run, and the self-contained HTML report."""

import math
import re

import pytest

pytest.importorskip("plotly")

from grokscope.report import plot_curves as plots, plot_fourier, run as report
from grokscope.interp import analyze
from grokscope.config import Config
from grokscope.training.run import train

NUMBERS = {"losses": "Fig 2", "progress": "Fig 7", "fourier_norms": "Fig 3", "attention": "Fig 4", "neuron": "Fig 4",
           "logit_fourier": "Fig 4", "ablate_freqs": "Fig 6", "interference": "Fig 8", "restricted_acc": "Fig 13",
           "excluded_per_key": "Fig 15", "logit_coefficients": "Fig 14", "all_heads": "Fig 9",
           "neuron_clusters": "Fig 5", "attention_fourier": "Fig 10", "ov_fourier": "Fig 11", "more_neurons": "Fig 12",
           "fourier_norms_models": "Figs 16, 17", "seed_losses": "Fig 18", "gini_models": "Fig 19", "llc": "LLC",
           "llc_calibration": "LLC calibration"}
KEYS = [1, 2]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "r"
    cfgs = [Config(p=11, d_model=16, n_heads=2, d_mlp=32, frac_train=0.5, epochs=60, checkpoint_every=20, seed=s)
            for s in (0, 1)]
    run = train(cfgs, path, device="cpu", progress=False)
    return run, analyze(run.model(), run.dataset(), keys=KEYS), report.load_or_compute_progress(run, keys=KEYS)


def test_every_figure_has_traces_and_number(ctx):
    run, analysis, progress = ctx
    assert set(report.FIGURES) == set(NUMBERS)
    for name, num in NUMBERS.items():
        if name in report.LLC_FIGURES:  # this run has no LLC: test_llc.py draws them
            continue
        fig = report.figure(run, name, analysis=analysis, progress=progress)
        assert fig.layout.title.text.startswith(num + ":"), (name, fig.layout.title.text)
        assert len(fig.data) > 0, name


def test_batched_losses_one_colour_per_model_and_phase_bands(ctx):
    run, analysis, progress = ctx
    phases = {"models": [{"model": 0, "ends": {"memorisation": 20, "circuit_formation": 40, "cleanup": 60},
                          "phases": {"memorisation": [0, 20], "circuit_formation": [20, 40], "cleanup": [40, 60]}}]}
    fig = plots.losses(run.metrics, phases)
    colours = {t.line.color for t in fig.data if t.mode == "lines"}
    assert len(colours) == 2  # two models
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert sum(s.type == "rect" for s in fig.layout.shapes) == 3 * 2  # three bands on both panels
    fig7 = plots.progress_panels(progress, phases)
    assert sum(s.type == "line" for s in fig7.layout.shapes) == 3 * 4  # three phase lines on four panels


def test_per_key_and_interference(ctx):
    run, analysis, progress = ctx
    fig = plots.excluded_per_key(progress, model=1)
    assert [t.name for t in fig.data[:2]] == ["k = 1 removed", "k = 2 removed"]
    fig8 = plot_fourier.interference(KEYS, 11)
    assert fig8.data[-1].y[0] == pytest.approx(len(KEYS))  # constructive at x = 0
    with pytest.raises(KeyError):
        report.figure(run, "nope", analysis=analysis, progress=progress)


def test_report_html_self_contained(ctx, tmp_path):
    run, analysis, progress = ctx
    (run.path / "phases.json").unlink(missing_ok=True)  # earlier figures may have written it
    out = report.report_html(run, tmp_path / "rep" / "report.html", analysis=analysis, progress=progress)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    text = out.read_text(encoding="utf-8")
    assert text.count("plotly.js v") >= 1 and len(text) > 1_000_000  # the JS itself, embedded
    # two models: all of them but the LLC's (this run has none)
    assert len(re.findall(r'<div id="plot-[a-z_]+"', text)) == len(report.FIGURES) - len(report.LLC_FIGURES)
    assert not re.search(r'<script[^>]+src=["\']?https?:', text)
    for cls in ("table1", "table2", "claims", "milestones", "phases"):
        assert f'class="{cls}"' in text
    assert (run.path / "phases.json").is_file()  # computed when missing
    assert "Table 1" in text and "Table 2" in text


def test_figures_comparing_models(ctx):
    """Figs 16-19 show every model of a batched run; a one-model report leaves them out."""
    run, analysis, progress = ctx
    fig = report.figure(run, "fourier_norms_models", analysis=analysis, progress=progress)
    assert len(fig.data) == 2 * run.K  # W_E and W_L bars per model
    assert len(fig.data[0].y) == 11 // 2
    fig18 = report.figure(run, "seed_losses", analysis=analysis, progress=progress)
    assert {t.name for t in fig18.data} == {"train loss", "test loss", "restricted loss"}
    assert len(fig18.data) == 3 * run.K
    fig19 = report.figure(run, "gini_models", analysis=analysis, progress=progress)
    assert len({t.line.color for t in fig19.data}) == run.K


def test_neuron_cluster_heatmap_is_localised():
    """Fig 5 right on the hand-built Fourier model: the W_L rows of a cluster have only cos/sin w_k."""
    import numpy as np

    from grokscope.interp import analysis as an
    from helpers_fourier import fourier_dataset, fourier_model

    model = fourier_model(31, (3, 7, 10))
    res = an.analyze(model, fourier_dataset(31))
    fig = plot_fourier.neuron_clusters(res, freq=7)
    heat = next(t for t in fig.data if t.type == "heatmap")
    z = np.abs(np.asarray(heat.z))
    assert z.shape[0] == res.neurons.clusters[7]
    big = {heat.x[j] for j in np.nonzero(z.max(0) > 1e-6 * z.max())[0]}
    assert big == {"cos 7", "sin 7"}
    n_scatter = sum(len(t.x) for t in fig.data if t.type == "scatter")
    assert n_scatter == res.neurons.n_neurons  # every neuron, key clusters coloured, the rest grey


def test_phase_and_milestone_tables(ctx):
    run, analysis, progress = ctx
    phases = {"models": [{"model": 0, "keys": [3, 5], "ends": {"memorisation": 20, "circuit_formation": 40,
                                                                "cleanup": None},
                          "claims": [{"holds": True}, {"holds": False}, {"holds": None}]}]}
    assert report.phases_table(phases) == [{"model": 0, "keys": "3, 5", "memorisation ends": 20,
                                           "circuit formation ends": 40, "cleanup ends": None,
                                           "claims holding": "1/2"}]
    rows = report.milestones_table(run)
    ms = run.milestones()
    assert [r["model"] for r in rows] == [0, 1] and rows[1]["last_epoch"] == 60
    assert rows[1]["final_test_loss"] == ms.final_test_loss[1]
    assert all(r["test_acc_999"] == "" or isinstance(r["test_acc_999"], int) for r in rows)


def test_thin_log_keeps_spikes_and_small_series():
    import numpy as np
    import pandas as pd

    e = np.arange(1, 40001)
    v = np.exp(-e / 3000.0) + 1e-7
    v[35166] = 0.84  # a one-epoch slingshot spike
    v[20000] = 1e-12  # and a dip
    s = pd.DataFrame({"epoch": e, "train_loss": v})
    t = plots.thin_log(s, "train_loss", n=500)
    assert len(t) <= 3 * 500 and t["epoch"].is_monotonic_increasing
    assert t["train_loss"].max() == v.max() and t["train_loss"].min() == v.min()
    assert t["epoch"].iloc[0] == 1 and 40000 - t["epoch"].iloc[-1] < 200
    small = s.iloc[:800]
    assert plots.thin_log(small, "train_loss", n=500) is small


PHASES = {"models": [{"model": 0, "ends": {"memorisation": 20, "circuit_formation": 40, "cleanup": 60},
                      "phases": {"memorisation": [0, 20], "circuit_formation": [20, 40], "cleanup": [40, 60]}}]}


def test_fig7_legend_names_each_measure_once_with_the_restricted_loss(ctx):
    run, analysis, progress = ctx
    for models, want in (([0], {"excluded loss", "restricted loss", "train loss", "test loss", "Gini of W_E",
                                "Gini of W_L", "sum of squared weights"}), (None, None)):
        fig = plots.progress_panels(progress, PHASES, models=models)
        names = [t.name for t in fig.data if t.showlegend is not False]
        assert len(names) == len(set(names)), names  # no repeated legend entries
        assert "restricted loss" in " ".join(names)
        if want is not None:
            assert set(names) - {"memorisation", "circuit formation", "cleanup"} == want


def test_phase_bands_are_visible_and_labelled_on_a_log_axis(ctx):
    from grokscope.report.plot_common import style

    run, analysis, progress = ctx
    fig = style(plots.losses(run.metrics, PHASES))
    labels = {a.text: a for a in fig.layout.annotations if a.text in ("memorisation", "circuit formation", "cleanup")}
    assert set(labels) == {"memorisation", "circuit formation", "cleanup"}  # once each, on the first panel
    assert labels["cleanup"].x == pytest.approx(math.log10(40))  # a log axis places annotations by log10(x)
    fills = {s.fillcolor for s in fig.layout.shapes if s.type == "rect"}
    assert len(fills) == 3
    for f in fills:  # each band differs clearly from the white background: opacity x distance from white
        r, g, b, a = (float(x) for x in f[5:-1].split(","))
        assert a * max(255 - r, 255 - g, 255 - b) > 15, f
    assert fig.layout.template.layout.plot_bgcolor in ("white", "#fff", "#ffffff", "rgb(255,255,255)")
    assert fig.layout.xaxis.exponentformat == "e" and fig.layout.yaxis.exponentformat == "e"  # log axes: 1e-4
    assert fig.layout.yaxis2.exponentformat is None  # the linear accuracy axis keeps plain numbers
