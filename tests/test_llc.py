"""The local learning coefficient (issue #33): grokscope's estimate is devinterp's own on the same model, data,
settings and seeds; a chain that diverges or falls below the reference is reported and excluded; ``grokscope
progress RUN --llc`` works on a modular and a sequence run. Skipped when devinterp is absent, unless
GROKSCOPE_REQUIRE_LLC=1 (set by .ci/run)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from grokscope.cli import main
from grokscope.measures import llc as lc
from grokscope.model import Transformer
from grokscope.training.run import train
from helpers import tiny, tiny_config

#: a few chains of few steps: the tests check the plumbing, not the statistics
FAST = lc.Settings(lr=1e-3, nbeta=5.0, localization=100.0, num_chains=2, num_draws=20, num_burnin_steps=5,
                   batch_size=8, init_seed=100, num_init_loss_batches=3)


def need_devinterp():
    try:
        import devinterp.slt.sampler  # noqa: F401
    except ImportError:
        if os.environ.get("GROKSCOPE_REQUIRE_LLC") == "1":
            pytest.fail("GROKSCOPE_REQUIRE_LLC=1 but devinterp is not installed (pip install 'grokscope[llc]')")
        pytest.skip("devinterp not installed (pip install 'grokscope[llc]')")


def _model_and_data():
    cfg = tiny_config()
    ex = cfg.make_task().train_set()
    return Transformer(cfg.model_config, seed=3), ex, cfg.p


@pytest.mark.parametrize("burnin", [0, 5])
def test_estimate_equals_devinterps_own(burnin, tmp_path):
    """Same sampler, seeds and minibatches: devinterp's ``llc()`` (its whole pipeline: zarr traces, its own
    reference loss) gives the same numbers. Tolerance 1e-5 relative: the traces agree exactly (the same chains);
    only float32 sums in a different order differ (devinterp stores the per-token losses in float32 and sums
    its init loss in float32), ~1e-7 of losses ~2, times n_beta 5."""
    need_devinterp()
    import datasets
    from devinterp.slt.llc import llc as devinterp_llc

    model, ex, classes = _model_and_data()
    s = lc.Settings(**{**FAST.__dict__, "num_burnin_steps": burnin})
    ours = lc.estimate(model, ex, classes, s, trace=True)
    ids = lc.pack(ex)
    ds = datasets.Dataset.from_dict({"input_ids": ids.tolist()}).with_format("torch")
    theirs = devinterp_llc(lc.Wrapped(model), ds, {}, lr=s.lr, n_beta=s.nbeta, loss_fn=lc.loss_fn(classes, 3),
                           num_chains=s.num_chains, num_draws=s.num_draws, num_burnin_steps=burnin,
                           batch_size=s.batch_size, num_init_loss_batches=s.num_init_loss_batches,
                           init_seed=s.init_seed, localization=s.localization, device="cpu",
                           output_path=str(tmp_path / "samples.zarr"))
    trace = theirs["loss_trace"].values  # (chain, step), all steps
    np.testing.assert_allclose(ours["trace"], trace, rtol=1e-6)
    init = float(theirs["init_loss"].values)
    assert ours["init_loss"] == pytest.approx(init, rel=1e-6)
    assert ours["status"] in ("converged", "not_flat") and ours["chains_used"] == 2
    # devinterp averages every step; ours the steps after burn-in (the same when burn-in is 0)
    want = s.nbeta * (trace[:, burnin:].mean(1) - init)
    np.testing.assert_allclose([c["llc"] for c in ours["chains"]], want, rtol=1e-5)
    assert ours["llc"] == pytest.approx(want.mean(), rel=1e-5)
    assert ours["llc_std"] == pytest.approx(want.std(), rel=1e-4, abs=1e-6)
    if burnin == 0:
        assert ours["llc"] == pytest.approx(float(theirs["llc_mean"].values), rel=1e-5)


def test_a_huge_step_size_diverges_and_is_excluded():
    need_devinterp()
    model, ex, classes = _model_and_data()
    r = lc.estimate(model, ex, classes, lc.Settings(**{**FAST.__dict__, "lr": 1e3}))
    assert [c["status"] for c in r["chains"]] == ["diverged", "diverged"]
    assert r["status"] == "diverged" and r["chains_used"] == 0 and math.isnan(r["llc"])
    assert "excluded" in r["reason"] and ("blew up" in r["reason"] or "non-finite" in r["reason"])


def test_diagnose_each_status():
    """The per-chain diagnostic on made-up traces (burn-in 2, reference 1.0, 10 classes: blow-up above 1 +
    log 10)."""
    flat = np.array([5.0, 3.0] + [1.5, 1.6] * 20)
    assert lc.diagnose(flat, 1.0, 2, 10)["status"] == "converged"
    assert lc.diagnose(np.r_[flat, np.nan], 1.0, 2, 10)["status"] == "diverged"
    assert lc.diagnose(np.r_[flat, 9.0], 1.0, 2, 10)["status"] == "diverged"
    below = lc.diagnose(flat - 0.6, 1.0, 2, 10)
    assert below["status"] == "below_reference" and "below the reference" in below["reason"]
    drift = lc.diagnose(np.r_[[5.0, 3.0], np.linspace(1.1, 2.0, 40)], 1.0, 2, 10)
    assert drift["status"] == "not_flat"


def _shrink(monkeypatch):
    monkeypatch.setattr(lc, "DEFAULT", lc.Settings(num_chains=2, num_draws=20, num_burnin_steps=5))
    monkeypatch.setattr(lc, "LR_GRID", (1e-4, 1e-3))
    monkeypatch.setattr(lc, "NBETA_FACTORS", (1.0, 3.0))


@pytest.mark.parametrize("cfg", [tiny_config(epochs=20), tiny("skip-trigram", epochs=20)], ids=["modular", "sequence"])
def test_progress_llc_on_a_modular_and_a_sequence_run(cfg, tmp_path, monkeypatch, capsys):
    need_devinterp()
    _shrink(monkeypatch)
    out = tmp_path / "r"
    train([cfg], out, device="cpu", progress=False)
    assert main(["progress", str(out), "--llc-every", "2"]) == 0
    text = capsys.readouterr().out
    assert "LLC (computed)" in text
    assert "LLC turning points" in text and "model 0: peak " in text
    df = pd.read_parquet(out / "progress.parquet")
    llc = df[df["measure"] == "llc"]
    assert sorted(llc["epoch"]) == [0, 20]  # every 2nd of 0, 10, 20 (the last always)
    assert set(lc.MEASURES) <= set(df["measure"])
    report = json.loads((out / "llc.json").read_text())
    assert [c["epoch"] for c in report["checkpoints"]] == [0, 20]
    assert all(c["status"] in lc.ORDER and "reason" in c and len(c["chains"]) == 2 for c in report["checkpoints"])
    cal = json.loads((out / "llc_calibration.json").read_text())
    assert len(cal["rows"]) == 4 and cal["epoch"] == 20 and cal["chosen"]["lr"] in (1e-4, 1e-3)
    assert report["settings"] == cal["chosen"]
    assert (out / "phases.json").is_file() == cfg.make_task().pair_form
    if cfg.make_task().pair_form:  # the Fourier measures are there too, and survive a recomputation
        assert "restricted_loss" in set(df["measure"])
        assert main(["progress", str(out), "--recompute"]) == 0
        assert "llc" in set(pd.read_parquet(out / "progress.parquet")["measure"])
    assert main(["progress", str(out), "--llc-every", "2"]) == 0  # saved: not recomputed
    assert "LLC (saved)" in capsys.readouterr().out


def test_bad_llc_options_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    train([tiny("skip-trigram", epochs=10)], out, device="cpu", progress=False)
    before = sorted(p.name for p in out.iterdir())
    for argv in (["--llc-every", "0"], ["--llc-every", "x"], [], ["--keys", "1"]):
        assert main(["progress", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("grokscope: error:"), err
    monkeypatch.setitem(__import__("sys").modules, "devinterp", None)  # the extra missing
    monkeypatch.setitem(__import__("sys").modules, "devinterp.slt", None)
    assert main(["progress", str(out), "--llc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'grokscope[llc]'" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_report_draws_the_llc_and_its_calibration(tmp_path, monkeypatch):
    """The two LLC figures: in the report when the run has the LLC, with its curve below the restricted and
    excluded losses, and the sweep with the chosen setting starred."""
    need_devinterp()
    pytest.importorskip("plotly")
    from grokscope import report
    from grokscope.training.run import Run

    _shrink(monkeypatch)
    out = tmp_path / "r"
    train([tiny_config(epochs=20), tiny_config(epochs=20, seed=1)], out, device="cpu", progress=False)
    assert main(["progress", str(out), "--llc"]) == 0
    run = Run.load(out)
    fig = report.figure(run, "llc")
    names = [t.name for t in fig.data]
    assert fig.layout.title.text.startswith("LLC:") and "model 1 LLC" in names
    assert "model 0 restricted loss (test)" in names and "model 0 excluded loss (train)" in names
    cal = report.figure(run, "llc_calibration")
    assert cal.layout.title.text.startswith("LLC calibration:") and "chosen" in [t.name for t in cal.data]
    html = report.report_html(run, tmp_path / "rep.html").read_text(encoding="utf-8")
    assert 'id="plot-llc"' in html and 'id="plot-llc_calibration"' in html


def test_sequence_report_draws_the_llc(tmp_path, monkeypatch):
    need_devinterp()
    pytest.importorskip("plotly")
    from grokscope.report import sequence
    from grokscope.training.run import Run

    _shrink(monkeypatch)
    out = tmp_path / "r"
    train([tiny("skip-trigram", epochs=10)], out, device="cpu", progress=False)
    assert "llc" not in sequence.figure_names(Run.load(out))
    assert main(["progress", str(out), "--llc"]) == 0
    run = Run.load(out)
    assert sequence.figure_names(run)[-2:] == ["llc", "llc_calibration"]
    assert "model 0 LLC" in [t.name for t in sequence.seq_figure(run, "llc").data]
    assert sequence.seq_figure(run, "llc_calibration").layout.title.text.startswith("LLC calibration:")
