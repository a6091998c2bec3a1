"""Golden outputs recorded by main at 30841f0, before the structure refactor (tests/data/make_golden.py): the
moved code must reproduce them to float noise.

Tolerances: the hand-built model is float64, so its analysis is compared to ~1e-8 relative with an absolute
floor of 1e-10 (its weights and logits are O(1)-O(60): float64 noise is ~1e-13 there). The tiny run's progress
measures come from a float32 forward (last bits differ between CPUs): each measure to 1e-5 of the magnitude of
what it is computed from (the measure's own largest value; the logits' largest value for the logit
coefficients), accuracies to one pair of their split, the argmax frequency by the value it selects."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import assert_close_tree
from helpers_fourier import fourier_dataset, fourier_model

from grokscope.measures import phases as ph
from grokscope.measures import progress as pg
from grokscope.report import run as report
from grokscope.training.run import Run

DATA = Path(__file__).resolve().parent / "data"
RUN_KEYS = {0: [1, 3], 1: [2]}
# Decided by float noise: ratios to a zero denominator, the best frequency of heads whose pattern to 'a' does not
# vary, and accuracies of ablated logits that are equal across classes up to rounding (argmax ties; seen to flip
# with MKL_ENABLE_INSTRUCTIONS=SSE4_2)
NOISE = ("key_frequencies.wl_gap", "key_frequencies.we_gap", "periodicity.attn_best_freq[0]",
         "periodicity.attn_best_freq[1]") + tuple(
    f"ablations.results.mlp_proj_wl_nullspace{raw}.after.acc_{split}" for raw in ("", "_raw")
    for split in ("train", "test", "all"))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    dst = tmp_path_factory.mktemp("golden") / "run"
    shutil.copytree(DATA / "golden_run", dst)
    (dst / report.PROGRESS_FILE).unlink()
    return Run.load(dst)


def test_analysis_of_the_hand_built_model():
    from grokscope.interp.analysis import analyze

    res = analyze(fourier_model(31, (3, 7, 10), scale=20.0, dtype=torch.float64), fourier_dataset(31))
    got = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    got.pop("seconds")
    want = json.loads((DATA / "analysis_hand.json").read_text())
    assert_close_tree(got, want, rtol=1e-8, atol=1e-10, skip=NOISE)


def test_progress_of_the_tiny_run(run):
    want = pd.read_parquet(DATA / "golden_run" / report.PROGRESS_FILE)
    got = pg.compute_progress(run, keys=RUN_KEYS)
    assert got.attrs["keys"] == want.attrs["keys"] and got.attrs["epochs"] == want.attrs["epochs"]
    g, w = pg.wide(got), pg.wide(want)
    assert list(g.columns) == list(w.columns) and list(g.index) == list(w.index)
    with torch.no_grad():
        logit_max = max(float(run.model(e, k).answer_logits(run.dataset(k).tokens).abs().max())
                        for e in run.checkpoint_epochs for k in range(run.K))
    n = {k: {"train": len(run.dataset(k).train_idx), "test": len(run.dataset(k).test_idx), "all": 11 * 11}
         for k in range(run.K)}
    for name in w.columns:
        for (k, e), v in w[name].items():
            x = g.loc[(k, e), name]
            if pd.isna(v):
                assert pd.isna(x), (name, k, e)
            elif name == "excluded_loss_max_freq":
                # an argmax: equal, or the two frequencies' losses tie (the maxima agree)
                assert x == v or abs(g.loc[(k, e), "excluded_loss_max"] - w.loc[(k, e), "excluded_loss_max"]) \
                    <= 1e-5 * w["excluded_loss_max"].abs().max(), (k, e, x, v)
            elif "_acc" in name:
                split = "all" if name.endswith("_all") else "test" if name.startswith(("test", "restricted")) \
                    else "train"
                assert abs(x - v) <= 1.0 / n[k][split] + 1e-12, (name, k, e, x, v)
            else:
                scale = logit_max if name.startswith("logit_coef") else float(w[name].abs().max())
                assert abs(x - v) <= 1e-5 * scale, (name, k, e, x, v)


def test_phases_of_the_tiny_run(run):
    df = pd.read_parquet(DATA / "golden_run" / report.PROGRESS_FILE)
    rep = ph.phases_report(run, df)
    assert_close_tree(json.loads(json.dumps(rep)), json.loads((DATA / "phases_run.json").read_text()),
                      rtol=1e-9, atol=1e-12)


def test_phases_of_the_synthetic_run():
    from test_phases import synthetic

    w = synthetic()
    r = ph.detect_phases(w)
    got = {"phases": r, "claims": ph.check_claims(w, r, weight_decay=1.0, keys=[14, 35])}
    assert_close_tree(json.loads(json.dumps(got)), json.loads((DATA / "phases_synthetic.json").read_text()),
                      rtol=1e-9, atol=1e-12)


def test_report_figure_list(run):
    pytest.importorskip("plotly")
    from grokscope.interp.analysis import analyze

    df = pg.compute_progress(run, keys=RUN_KEYS)  # the stored table predates the freq column
    rep = json.loads((DATA / "phases_run.json").read_text())
    analysis = analyze(run.model(), run.dataset(), keys=[1, 2])
    got = []
    for name in report.FIGURES:
        if name in report.LLC_FIGURES:  # the golden run has no LLC (tests/test_llc.py draws them)
            continue
        fig = report.figure(run, name, analysis=analysis, progress=df, phases=rep)
        got.append({"name": name, "title": fig.layout.title.text, "traces": len(fig.data)})
    assert got == json.loads((DATA / "figures.json").read_text())
