"""grokscope.measures.forecast: the crossing of synthetic curves, calibration on other models, --until hides the future."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from grokscope.measures import (forecast as fc, forecast_calibration as fcal, forecast_features as ff,
                                forecast_live as fl)
from grokscope.cli import main
from grokscope.config import Config
from grokscope.training.run import Run, train

pytestmark = pytest.mark.usefixtures("one_thread")


def feats(model=0, until=2000, log_r=0.0, slope=-0.5, grokked_at=None, spectral=float("nan"), keys=(3, 5)):
    return ff.Features(model=model, until=until, last_checkpoint=until, keys=list(keys), keys_rule="gap",
                       window=[until], log_restricted=log_r, restricted_slope=slope, restricted_curvature=0.0,
                       excluded_slope=0.0, gini_W_E_slope=0.0, gini_W_L_slope=0.0, sum_sq_slope=0.0,
                       test_acc=0.1, grokked_at=grokked_at, spectral=spectral)


def test_trend_and_crossing_of_a_synthetic_curve():
    # log10 restricted loss = 0.5 - 0.5 t (t in thousands of epochs): reaches log10 0.1 = -1 at t = 3
    t = np.linspace(1.0, 2.0, 12)
    now, slope, curv = ff.trend(t, 0.5 - 0.5 * t)
    assert now == pytest.approx(-0.5) and slope == pytest.approx(-0.5) and abs(curv) < 1e-9
    assert ff.crossing(2.0, now, slope, -1.0) == pytest.approx(3.0)
    assert ff.crossing(2.0, now, 0.1, -1.0) is None  # rising: never
    assert ff.crossing(2.0, -2.0, 0.1, -1.0) == 2.0  # already below
    assert math.isnan(ff.trend([1.0], [2.0])[0])


def test_predict_synthetic_crossing_and_interval():
    f = feats(until=2000, log_r=-0.5, slope=-0.5)  # crosses log10(0.1) at 3000
    res = fc.predict(f)
    assert res.predicted == pytest.approx(3000.0) and not res.grokked
    assert res.lower == pytest.approx(2500.0) and res.upper == pytest.approx(4000.0)  # remaining time x/÷ 2
    assert res.baseline is None  # the baseline needs a calibration
    done = fc.predict(feats(grokked_at=1800))
    assert done.grokked and done.predicted == 1800 and done.method == "observed"
    flat = fc.predict(feats(slope=0.2))
    assert flat.predicted is None and "not falling" in flat.method


def test_calibration_is_fitted_on_other_models_only():
    # every model's real remaining time is twice the raw line's: the fitted scale recovers 2
    pairs = [(feats(model=i, until=u, log_r=-0.5, slope=-0.5 * 2000 / u), u + 2 * (3000 - 2000) * u / 2000)
             for i, u in enumerate([1000, 2000, 3000, 4000])]
    cal = fcal.fit_calibration(pairs)
    assert cal.scale == pytest.approx(2.0) and cal.n == 4
    held = feats(until=2000, log_r=-0.5, slope=-0.5)
    assert fc.predict(held, cal).predicted == pytest.approx(4000.0)
    # the baseline: log10 epoch linear in the spectral feature, recovered exactly
    pairs = [(feats(model=i, until=10, spectral=s), 10 ** (3.0 + 0.5 * s)) for i, s in enumerate([-2.0, -1.0, 0.0, 1.0])]
    cal = fcal.fit_calibration(pairs)
    assert cal.base_b == pytest.approx(0.5) and cal.base_a == pytest.approx(3.0)
    assert fc.predict(feats(until=10, spectral=2.0, slope=0.2), cal).baseline == pytest.approx(1e4)


def test_spectral_energy_sees_oscillations():
    x = np.arange(400)
    smooth = 10 ** (-x / 200)
    spiky = smooth * 10 ** (0.3 * np.sin(x / 2.0))
    assert ff.spectral_energy(spiky) > ff.spectral_energy(smooth) + 3
    assert math.isnan(ff.spectral_energy(smooth[:10]))


# ---------------------------------------------------------------------- a run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    kw = dict(p=11, d_model=16, n_heads=2, d_mlp=32, epochs=100, checkpoint_every=10, test_every=5)
    return train([Config(seed=0, frac_train=0.5, **kw), Config(seed=1, frac_train=0.5, **kw)],
                 tmp_path_factory.mktemp("fc") / "r", device="cpu", progress=False)


def _doc(path):
    d = json.loads(path.read_text())
    d.pop("run")
    return d


def test_until_hides_later_checkpoints(tiny_run, tmp_path, capsys):
    until = 50
    cut = tmp_path / "cut"
    shutil.copytree(tiny_run.path, cut)
    for f in (cut / "checkpoints").iterdir():
        if int(f.stem.split("_")[1]) > until:
            f.unlink()
    m = pd.read_parquet(cut / "metrics.parquet")
    m[m["epoch"] <= until].to_parquet(cut / "metrics.parquet")
    (cut / "state.pt").unlink()
    assert max(Run.load(cut).checkpoint_epochs) == until
    assert main(["forecast", str(tiny_run.path), "--until", "50"]) == 0
    assert main(["forecast", str(cut), "--until", "50"]) == 0
    full, part = _doc(tiny_run.path / fc.FORECAST_FILE), _doc(cut / fc.FORECAST_FILE)
    assert full == part
    assert [m["features"]["last_checkpoint"] for m in full["models"]] == [50, 50]
    assert all(max(m["features"]["window"]) <= until for m in full["models"])
    out = capsys.readouterr().out
    assert "predicted" in out and "wrote" in out
    # a later checkpoint changes the forecast at a later --until (the features do see it)
    res = fc.forecast_run(tiny_run, 100)
    assert res[0].features.last_checkpoint == 100


def test_forecast_frame(tiny_run):
    df = fc.forecast_frame(fc.forecast_run(tiny_run, 40))
    assert list(df["model"]) == [0, 1] and "f_restricted_slope" in df and (df["until"] == 40).all()


@pytest.mark.parametrize("args, text", [
    (["--until", "0"], "until=0 is invalid"),
    (["--until", "x"], "until='x' is invalid"),
    (["--until", "nan"], "until"),
    (["--until", "50", "--threshold", "-1"], "threshold=-1"),
    (["--until", "50", "--threshold", "inf"], "threshold"),
    ([], "--until"),
])
def test_bad_input_exits_2(tiny_run, args, text, capsys):
    assert main(["forecast", str(tiny_run.path), *args]) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1


def test_bad_run_exits_2(tmp_path, capsys):
    assert main(["forecast", str(tmp_path / "none"), "--until", "5"]) == 2
    assert "not a grokscope run" in capsys.readouterr().err
    assert main(["forecast", str(tmp_path), "--until", "5", "--out", "/proc/x.json"]) == 2


# ---------------------------------------------------------------------- grokscope train --forecast
def _plain(forecasts):
    from dataclasses import asdict

    from grokscope.jsonutil import clean
    return clean([asdict(f) for f in forecasts])  # NaN -> None, so equal dicts compare equal


LIVE_KW = dict(p=11, d_model=16, n_heads=2, d_mlp=32, epochs=60, checkpoint_every=10, test_every=5)


def test_live_forecast_is_forecast_run_at_that_epoch(tmp_path, capsys):
    live = fl.LiveForecast(budget=None)  # every checkpoint
    run = train([Config(seed=0, frac_train=0.5, **LIVE_KW), Config(seed=1, frac_train=0.5, **LIVE_KW)],
                tmp_path / "r", device="cpu", progress=True, forecast=live)
    assert sorted(live.history) == [10, 20, 30, 40, 50, 60] and not live.errors  # every checkpoint but epoch 0
    for e, res in live.history.items():  # the finished run, cut at e, gives the same numbers
        assert _plain(res) == _plain(fc.forecast_run(run, e)), e
        assert res[0].features.last_checkpoint == e and max(res[0].features.window) == e
    assert all(s > 0 for s in live.seconds.values())
    assert live.text == fl.live_text(live.history[60], 60) and live.text.startswith("grok forecast @60: 0: ")
    assert live.text in capsys.readouterr().err  # the progress bar's final postfix


def test_live_forecast_every_and_final(tmp_path):
    live = fl.LiveForecast(every=20)
    train([Config(seed=0, frac_train=0.5, **{**LIVE_KW, "epochs": 55})], tmp_path / "r", device="cpu",
          progress=False, forecast=live)
    assert sorted(live.history) == [20, 40, 55]  # every 20 epochs, and the final epoch (no multiple of 10)
    assert live.due(40, 10, 55) and not live.due(30, 10, 55) and not live.due(0, 10, 55)
    assert not live.due(45, 10, 55) and live.due(55, 10, 55)


def test_live_forecast_time_budget():
    now = [0.0]
    live = fl.LiveForecast(budget=0.05, clock=lambda: now[0])
    assert live.due(10, 10, 100)  # the first checkpoint: always
    live._t0, live.seconds = 0.0, {10: 5.0}  # one update of 5 s, started at t = 0
    now[0] = 99.0
    assert not live.due(20, 10, 100)  # 5 s > 5% of 99 s
    assert live.due(100, 10, 100)  # the final epoch: always
    now[0] = 100.0
    assert live.due(20, 10, 100) and not live.due(25, 10, 100)  # 5 s <= 5% of 100 s; 25 has no checkpoint
    with pytest.raises(fl.ConfigError, match="forecast_budget=0 is invalid"):
        fl.LiveForecast(budget=0)


def test_live_forecast_failure_does_not_stop_training(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(fl, "forecast_run", broken)
    live = fl.LiveForecast(budget=None)
    run = train([Config(seed=0, frac_train=0.5, **{**LIVE_KW, "epochs": 20})], tmp_path / "r", device="cpu",
                progress=False, forecast=live)
    assert max(run.checkpoint_epochs) == 20 and sorted(live.errors) == [10, 20] and not live.history
    assert live.text == "grok forecast @20: failed (RuntimeError)" and "boom" in live.errors[20]


def test_live_text():
    f = feats()
    mk = lambda m, g, p, lo, hi: fc.Forecast(m, 100, g, p, lo, hi, None, None, None, "x", f)  # noqa: E731
    assert fl.live_text([mk(0, False, 3000.0, 2500.0, 4000.0)], 100) == "grok forecast @100: ~3,000 [2,500-4,000]"
    text = fl.live_text([mk(0, True, 1170.0, 1170.0, 1170.0), mk(1, False, None, None, None)], 1200)
    assert text == "grok forecast @1,200: 0: grokked at 1,170; 1: no forecast yet"


def test_cli_train_forecast_without_bar_logs_lines(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "tiny", "--epochs", "40", "--checkpoint-every", "10", "--out", str(out),
                 "--no-progress", "--forecast", "--forecast-every", "20"]) == 0
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if "grok forecast" in ln]
    assert [ln.split(":")[0] for ln in lines] == ["r epoch 20", "r epoch 40"]
    want = fl.live_text(fc.forecast_run(Run.load(out), 40), 40)
    assert lines[-1].startswith(f"r epoch 40: {want} (") and lines[-1].endswith(" s)")
    assert "forecast: 2 updates, median" in cap.err and "of this command's wall time" in cap.err


@pytest.mark.parametrize("args, text", [
    (["--forecast-every", "20"], "forecast_every is invalid without --forecast"),
    (["--forecast-calibration", "x.json"], "forecast_calibration is invalid without --forecast"),
    (["--forecast", "--forecast-calibration", "/nonexistent/x.json"], "calibration='/nonexistent/x.json' is invalid"),
    (["--forecast", "--forecast-every", "15"], "forecast_every=15 is invalid: must be a multiple of checkpoint_every=10"),
    (["--forecast", "--forecast-every", "0"], "forecast_every=0 is invalid"),
    (["--forecast", "--forecast-every", "x"], "forecast_every='x' is invalid"),
    (["--forecast", "--preset", "digit-addition-finite"], "forecast is invalid for task digit-addition"),
])
def test_cli_train_forecast_bad_input_exits_2(tmp_path, args, text, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "tiny", "--epochs", "40", "--checkpoint-every", "10", "--out", str(out),
                 "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------- --calibration FILE
def test_forecast_with_a_calibration_file(tiny_run, tmp_path):
    from dataclasses import asdict
    cal = fcal.Calibration(scale=2.0, lo=-0.5, hi=0.25, base_a=3.0, base_b=0.5, base_lo=-0.1, base_hi=0.2, n=5,
                           n_base=5)
    f = tmp_path / "eval.json"
    f.write_text(json.dumps({"summary": {}, "calibration": asdict(cal)}))
    assert fcal.load_calibration(f) == cal
    out = tmp_path / "fc.json"
    assert main(["forecast", str(tiny_run.path), "--until", "50", "--calibration", str(f), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    want = [fc.predict(g, cal) for g in ff.features_run(tiny_run, 50)]
    assert [m["predicted"] for m in doc["models"]] == pytest.approx([w.predicted for w in want])
    assert [m["baseline"] for m in doc["models"]] == pytest.approx([w.baseline for w in want])
    assert doc["calibration"] == str(f)
    live = fl.LiveForecast(calibration=cal)
    live(tiny_run.path, 50)
    assert _plain(live.history[50]) == _plain(fc.forecast_run(tiny_run, 50, cal))


@pytest.mark.parametrize("content, text", [
    ("{", "not JSON"),
    ('{"calibration": {"scale": -1}}', "field scale=-1 is invalid: must be a finite number > 0"),
    ('{"calibration": {"scale": "2"}}', "field scale='2' is invalid: must be a number"),
    ('{"calibration": {"lo": 0.5}}', "field lo=0.5 is invalid: must be a finite number <= 0"),
    ('{"calibration": {"n": 1.5}}', "field n=1.5 is invalid"),
    ('{"calibration": {"bogus": 1}}', "unknown field 'bogus'"),
    ('{"calibration": {"base_a": 1.0}}', "base_a and base_b must both be"),
    ("[1, 2]", "must hold a JSON object"),
])
def test_bad_calibration_file_exits_2(tiny_run, tmp_path, content, text, capsys):
    f = tmp_path / "c.json"
    f.write_text(content)
    assert main(["forecast", str(tiny_run.path), "--until", "50", "--calibration", str(f),
                 "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert text in err and f"calibration='{f}'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()
    out = tmp_path / "r"
    assert main(["train", "--preset", "tiny", "--epochs", "20", "--out", str(out), "--no-progress", "--forecast",
                 "--forecast-calibration", str(f)]) == 2
    assert text in capsys.readouterr().err and not out.exists()


def test_until_beyond_the_last_checkpoint_is_refused(tiny_run, tmp_path, capsys):
    """A forecast from epochs the run does not have would echo --until back as a 'prediction': refused, one line."""
    last = tiny_run.checkpoint_epochs[-1]
    assert main(["forecast", str(tiny_run.path), "--until", str(last + 1), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"grokscope: error: until={last + 1} is invalid: the run's last checkpoint is epoch {last}")
    assert err.count("\n") == 1 and not (tmp_path / "o.json").exists()
    assert main(["forecast", str(tiny_run.path), "--until", str(last), "--out", str(tmp_path / "o.json")]) == 0
