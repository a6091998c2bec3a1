"""The stopping rule (stop_below / stop_patience): models of one batched run stop at different epochs, stay frozen,
the run ends when the last one stops, and an interrupted run resumes bit-exactly (Appendix runs use it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from grokscope.config import Config, ConfigError
from grokscope.training import Run, resume, train
from grokscope.training.stopping import StopRule

# p 23 at lr 1e-2 on 80% of the pairs: the three seeds' test loss falls below 0.05 at epochs ~200-330
BASE = dict(p=23, d_model=32, n_heads=4, d_mlp=64, frac_train=0.8, lr=1e-2, epochs=600, test_every=5,
            checkpoint_every=50, stop_below=0.05, stop_patience=20)


def configs(**kw):
    return [Config(seed=s, **{**BASE, **kw}) for s in (0, 1, 2)]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return train(configs(), tmp_path_factory.mktemp("stop") / "run", progress=False)


def test_rule_unit():
    r = StopRule(0.1, 10, 3)
    r.update(0, np.array([0.05, np.nan, 1.0]))
    assert r.stopped.tolist() == [-1, -1, -1] and r.since.tolist() == [0, -1, -1]
    r.update(5, np.array([0.5, 0.05, 0.05]))  # model 0 went back above: its stretch restarts
    r.update(10, np.array([0.05, 0.05, 0.05]))
    r.update(15, np.array([0.05, 0.05, 0.05]))
    assert r.stopped.tolist() == [-1, 15, 15] and not r.all_stopped
    r.update(20, np.array([0.05, 0.5, 0.5]))  # a stopped model stays stopped
    assert r.stopped.tolist() == [20, 15, 15] and r.all_stopped
    assert StopRule(0.1, 0, 1).update(3, np.array([0.01])).tolist() == [True]  # patience 0: at the first one below
    assert not StopRule(None, 0, 2).update(0, np.array([0.0, 0.0])).any()


def test_models_stop_at_different_epochs_and_the_run_ends_with_the_last(whole):
    stops = whole.stop_epochs()
    assert all(s is not None for s in stops) and len(set(stops)) > 1, stops
    assert whole.finished and whole.checkpoint_epochs[-1] == max(stops) < BASE["epochs"]
    m = whole.metrics
    assert m.groupby("model").epoch.max().tolist() == [max(stops)] * 3
    for k, s in enumerate(stops):
        t = m[(m.model == k) & m.test_loss.notna()].set_index("epoch").test_loss
        assert (t.loc[s - BASE["stop_patience"]: s] < BASE["stop_below"]).all()
        assert t.loc[s - BASE["stop_patience"] - 5] >= BASE["stop_below"]  # the stretch began at s - patience
        after = t.loc[s:]
        assert (after == after.iloc[0]).all()  # frozen: the same weights give the same test loss
    k = int(np.argmin(stops))
    later = [e for e in whole.checkpoint_epochs if e > stops[k]]
    first_after = whole.params(later[0], k)
    for e in later[1:]:
        assert all(torch.equal(first_after[n], v) for n, v in whole.params(e, k).items())
    assert not all(torch.equal(whole.params(later[0], j)[n], whole.params(later[-1], j)[n])
                   for j in range(3) if j != k for n in ("W_E",))


def test_interrupted_between_stops_resumes_bit_exactly(whole, tmp_path):
    stops = sorted(whole.stop_epochs())
    out = tmp_path / "run"
    train(configs(), out, progress=False, until=stops[0] + 7)  # one model stopped, the others training
    assert not Run.load(out).finished
    run = resume(out, progress=False)
    assert run.finished and run.stop_epochs() == whole.stop_epochs()
    pd.testing.assert_frame_equal(run.metrics, whole.metrics)
    for e in whole.checkpoint_epochs:
        a, b = run.stacked_params(e), whole.stacked_params(e)
        assert all(torch.equal(a[n], b[n]) for n in a)
    again = resume(out, progress=False)  # a finished, stopped run: resuming changes nothing
    pd.testing.assert_frame_equal(again.metrics, whole.metrics)


def test_without_the_rule_every_epoch_is_trained(tmp_path):
    run = train([Config(**{**BASE, "stop_below": None, "epochs": 60})], tmp_path / "r", progress=False)
    assert run.stop_epochs() == [None] and run.finished and run.checkpoint_epochs[-1] == 60


@pytest.mark.parametrize("field,value", [("stop_below", 0.0), ("stop_below", float("nan")), ("stop_patience", -1),
                                         ("stop_patience", 1.5)])
def test_bad_values_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(**{**BASE, field: value})


def test_with_the_rule_experiments_group_only_seeds_together():
    from grokscope.experiments.registry import plan
    groups = plan("wd")["groups"]
    assert [g["name"] for g in groups] == ["00_weightdecay0.0", "01_weightdecay0.3", "02_weightdecay1.0",
                                           "03_weightdecay3.0"]
    for g in groups:
        assert len({m["weight_decay"] for m in g["models"]}) == 1 and [m["seed"] for m in g["models"]] == [0, 1, 2]
        assert all(m["stop_below"] == 1e-6 for m in g["models"])
    assert len(plan("l1")["groups"]) == 1  # no rule: one batched group of every setting
