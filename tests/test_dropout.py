"""Dropout on the MLP neurons (Appendix D.1): the two mask readings (a fresh mask per example, or one mask per
step shared by the batch), their draws, resume, and the flag's error."""

import pytest
import torch
from helpers import assert_resumed_bitwise, tiny_config

from grokscope import Run
from grokscope.cli import main
from grokscope.config import ConfigError
from grokscope.training.run import resume, train
from grokscope.training.trainer import Trainer, dropout_keep

P = torch.tensor([0.2, 0.8])


def test_example_masks_are_the_draw_runs_always_made():
    """``example`` draws exactly what every dropout run drew before the option existed (so old runs resume)."""
    got = dropout_keep(torch.Generator().manual_seed(3), P, 50, 64, "example")
    want = torch.rand((2, 50, 64), generator=torch.Generator().manual_seed(3)) >= P[:, None, None]
    assert torch.equal(got, want)
    assert not torch.equal(got[:, 0], got[:, 1])  # another mask for another example


def test_step_masks_are_shared_by_the_batch_at_each_models_rate():
    g = torch.Generator().manual_seed(3)
    keep = dropout_keep(g, P, 50, 4000, "step")
    assert keep.shape == (2, 50, 4000) and keep.is_contiguous()
    assert torch.equal(keep, keep[:, :1].expand_as(keep))
    rate = keep[:, 0].float().mean(1)
    assert torch.allclose(rate, 1 - P, atol=0.03)  # 4,000 neurons: the binomial SD is under 0.007
    assert not torch.equal(keep[:, 0], dropout_keep(g, P, 50, 4000, "step")[:, 0])  # a new mask next step


def test_step_masks_train_their_own_run_and_resume_bitwise(tmp_path):
    ex = train([tiny_config(dropout=0.3)], tmp_path / "ex", device="cpu", progress=False)
    cfg = tiny_config(dropout=0.3, dropout_mask="step")
    straight = train([cfg], tmp_path / "a", device="cpu", progress=False)
    assert not straight.metrics.train_loss.equals(ex.metrics.train_loss)
    train([cfg], tmp_path / "b", device="cpu", progress=False, until=13)
    resumed = resume(tmp_path / "b", device="cpu", progress=False)
    assert_resumed_bitwise(straight, resumed, tmp_path / "a", tmp_path / "b")
    assert Run.load(tmp_path / "a").configs[0].dropout_mask == "step"


def test_step_mask_is_one_draw_per_model_in_a_batched_run():
    """Two models with different rates in one run: each step's mask is constant over the batch, per model."""
    tr = Trainer([tiny_config(dropout=0.2, dropout_mask="step"), tiny_config(dropout=0.6, dropout_mask="step")])
    seen = []
    real = tr.logits

    def spy(params, batch, keep=None, ws=None):
        if keep is not None:  # the step's forward (the test evaluation's has none)
            seen.append(keep.clone())
        return real(params, batch, keep, ws=ws)
    tr.logits = spy
    tr.step()
    (keep,) = seen
    assert keep.shape[0] == 2 and torch.equal(keep, keep[:, :1].expand_as(keep))


def test_a_bad_mask_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "5",
                 "--dropout", "0.1", "--dropout-mask", "neuron", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("grokscope: error: dropout_mask=") and "must be one of" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="dropout_mask"):
        tiny_config(dropout=0.1, dropout_mask="batch")
