import pytest
import torch
from helpers import tiny_config

from grokscope.model import Transformer
from grokscope.tasks import make_dataset
from grokscope.training import Trainer, cross_entropy_float64


def test_loss_is_float64():
    # a margin of 40 nats: exp(-40) ~ 4e-18 is below float32's resolution around 1, so a float32 loss is 0
    logits = torch.tensor([[40.0, 0.0, 0.0]], dtype=torch.float32)
    ce = cross_entropy_float64(logits, torch.tensor([0]))
    assert ce.dtype == torch.float64
    assert ce.item() == pytest.approx(2 * torch.exp(torch.tensor(-40.0, dtype=torch.float64)).item(), rel=1e-6)
    f32 = -torch.log_softmax(logits, -1)[0, 0]
    assert f32.item() == 0.0  # what the authors' float32 cast gives: the loss vanishes


def plain_train(cfg, steps):
    """The authors' loop: full sequence, torch AdamW + LambdaLR warm-up, loss in float64."""
    ds = make_dataset(cfg)
    model = Transformer(cfg.model_config, seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / cfg.warmup, 1))
    tok, lab = ds.tokens[ds.train_idx], ds.labels[ds.train_idx]
    losses = []
    for _ in range(steps):
        loss = cross_entropy_float64(model.answer_logits(tok), lab).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, losses


def test_trainer_matches_plain_torch_loop():
    cfg = tiny_config(epochs=60)
    model, losses = plain_train(cfg, 60)
    tr = Trainer([cfg])
    tr.fit(60)
    ours = tr.named_params()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ours[k][0], v, rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(tr.metrics["train_loss"][:60, 0], torch.tensor(losses, dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)
    # first step has lr 0 (the authors' LambdaLR): loss unchanged after it
    assert losses[0] == losses[1]


def test_batched_models_match_each_trained_alone():
    cfgs = [tiny_config(seed=0), tiny_config(seed=1, frac_train=0.7, weight_decay=0.3),
            tiny_config(seed=2, lr=3e-3, l1=1e-4)]
    tr = Trainer(cfgs)
    tr.fit(60)
    for k, c in enumerate(cfgs):
        alone = Trainer([c])
        alone.fit(60)
        torch.testing.assert_close(tr.params[k], alone.params[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tr.metrics["train_loss"][:60, k], alone.metrics["train_loss"][:60, 0],
                                   rtol=1e-5, atol=1e-7)
    assert not torch.allclose(tr.params[0], tr.params[1])


def test_fast_and_plain_trainers_agree():
    cfg = tiny_config(epochs=50)
    a, b = Trainer([cfg], fast=True), Trainer([cfg], fast=False)
    a.fit(50)
    b.fit(50)
    torch.testing.assert_close(a.params, b.params, rtol=1e-4, atol=1e-5)


def test_same_seed_same_numbers_and_dropout_runs():
    cfg = tiny_config(dropout=0.2, epochs=30)
    a, b = Trainer([cfg]), Trainer([cfg])
    a.fit()
    b.fit()
    assert torch.equal(a.params, b.params)
    assert torch.equal(a.metrics["train_loss"], b.metrics["train_loss"], ) or torch.allclose(
        a.metrics["train_loss"], b.metrics["train_loss"], equal_nan=True)
    c = Trainer([tiny_config(dropout=0.0, epochs=30)])
    c.fit()
    assert not torch.allclose(a.params, c.params)


def test_metrics_rows():
    cfg = tiny_config(epochs=20, test_every=5)
    tr = Trainer([cfg]).fit()
    m = tr.metrics
    assert not torch.isnan(m["train_loss"]).any()  # rows 0..20, the last is the final evaluation
    tested = (~torch.isnan(m["test_loss"][:, 0])).nonzero().flatten().tolist()
    assert tested == [0, 5, 10, 15, 20]
    # row 0 is the initial model: its test loss equals evaluating the init directly
    assert 0 < m["train_acc"][0, 0] <= 1


def test_tiny_model_learns():
    cfg = tiny_config(p=11, d_model=32, n_heads=4, d_mlp=64, frac_train=0.8, epochs=300, weight_decay=0.1, lr=3e-3)
    tr = Trainer([cfg]).fit()
    assert tr.metrics["train_acc"][-1, 0] == 1.0
    assert tr.metrics["train_loss"][-1, 0] < 0.05 < tr.metrics["train_loss"][0, 0]
