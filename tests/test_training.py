import pytest
import torch
from helpers import tiny_config

from grokscope.model.transformer import Transformer
from grokscope.tasks.modular import make_dataset
from grokscope.training.trainer import Trainer
from grokscope.training.losses import cross_entropy_accurate, cross_entropy_float64, cross_entropy_low_precision


def test_loss_is_float64():
    # a margin of 40 nats: exp(-40) ~ 4e-18 is below float32's resolution around 1, so a float32 loss is 0
    logits = torch.tensor([[40.0, 0.0, 0.0]], dtype=torch.float32)
    ce = cross_entropy_float64(logits, torch.tensor([0]))
    assert ce.dtype == torch.float64
    assert ce.item() == pytest.approx(2 * torch.exp(torch.tensor(-40.0, dtype=torch.float64)).item(), rel=1e-6)
    f32 = -torch.log_softmax(logits, -1)[0, 0]
    assert f32.item() == 0.0  # what the authors' float32 cast gives: the loss vanishes


def exact_ce(logits, labels):
    """Reference: ``log1p(sum_{j != c} exp(L_j - L_c))`` and its gradient in float64 from the float32
    logits (differences exact in float64). torch's float64 log-softmax is accurate only to ~1e-16 in
    absolute terms (it rounds ``1 + S``), i.e. 1% at a loss of 1e-14, so it is not the reference here."""
    x = logits.double()
    d = x - x.gather(-1, labels[..., None])
    e = d.exp().scatter(-1, labels[..., None], 0.0)
    S = e.sum(-1)
    loss = torch.where(d.amax(-1) <= 0, torch.log1p(S), torch.log(1 + S))
    grad = (e / (1 + S)[..., None]).scatter(-1, labels[..., None], (-S / (1 + S))[..., None])
    return loss, grad


def test_float32_cross_entropy_matches_float64_from_1e_14_to_10():
    g = torch.Generator().manual_seed(0)
    V, N = 113, 64
    checked = []
    for target in [1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 0.3, 1.0, 3.0, 10.0]:
        L = torch.randn(N, V, generator=g) * 5
        y = torch.randint(0, V, (N,), generator=g)
        others = L.double().scatter(-1, y[:, None], -torch.inf).logsumexp(-1)
        # the correct logit that gives this loss (in float32 it lands within rounding of it)
        L[torch.arange(N), y] = (others - torch.log(torch.expm1(torch.tensor(target, dtype=torch.float64)))).float()
        x = L.clone().requires_grad_()
        loss, correct = cross_entropy_accurate(x, y)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        ref_loss, ref_grad = exact_ce(L, y)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-6, atol=0)
        # every gradient entry within 1e-6 relative, except those below float32's normal range (flushed)
        torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-6, atol=1.2e-38)
        assert torch.equal(correct, L.argmax(-1) == y)
        checked.append((float(ref_loss.min()), float(ref_loss.max())))
    assert checked[0][1] < 2e-14 and checked[-1][0] > 9  # the range asked for was covered
    # at ordinary losses the float64 log-softmax agrees too
    L = torch.randn(N, V, generator=g)
    y = torch.randint(0, V, (N,), generator=g)
    torch.testing.assert_close(cross_entropy_accurate(L, y)[0].double(), cross_entropy_float64(L, y), rtol=1e-6, atol=0)


def test_accuracy_ties_and_nan_rows_decided_as_argmax():
    L = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [float("nan"), 0.0, 1.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 1, 2, 0, 1])
    _, correct = cross_entropy_accurate(L, y)
    assert correct.tolist() == (L.argmax(-1) == y).tolist() == [True, False, False, True, True]
    _, correct = cross_entropy_accurate(L[4:], y[4:])  # no tie: decided without argmax
    assert correct.tolist() == [True]


def plain_train(cfg, steps, loss_dtype=torch.float64):
    """The authors' loop: full sequence, torch AdamW + LambdaLR warm-up, loss in float64 (or, as their
    low-precision run, a log-softmax in ``loss_dtype`` and the mean in float32)."""
    ds = make_dataset(cfg)
    model = Transformer(cfg.model_config, seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / cfg.warmup, 1))
    tok, lab = ds.tokens[ds.train_idx], ds.labels[ds.train_idx]
    losses = []
    for _ in range(steps):
        if loss_dtype == torch.float64:
            loss = cross_entropy_float64(model.answer_logits(tok), lab).mean()
        else:
            logp = torch.log_softmax(model.answer_logits(tok).to(loss_dtype), -1)
            loss = -logp.gather(-1, lab[:, None]).float().mean()
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


def test_low_precision_loss_matches_plain_torch_loop():
    """``loss_dtype=float32`` (Appendix D.2) is the authors' float32 cast: same parameters and losses as a plain
    torch loop whose loss is a float32 log-softmax, within the tolerance of the float64 comparison above."""
    cfg = tiny_config(epochs=60, loss_dtype="float32")
    model, losses = plain_train(cfg, 60, torch.float32)
    tr = Trainer([cfg])
    tr.fit(60)
    ours = tr.named_params()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ours[k][0], v, rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(tr.metrics["train_loss"][:60, 0], torch.tensor(losses, dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)
    # bfloat16 trains too (8-bit mantissa: its first loss is ln(p)-ish, within bfloat16's rounding of the plain one)
    b = Trainer([tiny_config(epochs=5, loss_dtype="bfloat16")])
    b.fit(5)
    _, lb = plain_train(tiny_config(epochs=5, loss_dtype="bfloat16"), 1, torch.bfloat16)
    assert b.metrics["train_loss"][0, 0].item() == pytest.approx(lb[0], rel=2 ** -7)


def test_low_precision_loss_collapses_where_the_accurate_one_does_not():
    """The softmax collapse of Appendix D.2: with margins of 20 and 40 nats the float32 log-softmax loss and its
    gradient's correct-class entry are exactly 0 (1 - softmax_c rounds to 0; the wrong classes keep their tiny
    softmax), while the project's accurate loss keeps 2 exp(-margin) and a correct-class entry of -2 exp(-margin)."""
    L = torch.tensor([[20.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 0])
    lo, correct = cross_entropy_low_precision(L, y, torch.float32)
    assert lo.dtype == torch.float32 and correct.tolist() == [True, True, False]
    assert lo[:2].tolist() == [0.0, 0.0] and lo[2].item() > 1.0
    (g,) = torch.autograd.grad(lo[:2].sum(), L)
    assert g[:2, 0].tolist() == [0.0, 0.0] and bool((g[:2, 1:] > 0).all())
    acc, _ = cross_entropy_accurate(L, y)
    (ga,) = torch.autograd.grad(acc[:2].sum(), L)
    for i, m in enumerate((20.0, 40.0)):
        want = 2 * torch.exp(torch.tensor(-m, dtype=torch.float64)).item()
        assert acc[i].item() == pytest.approx(want, rel=1e-6)
        assert ga[i, 0].item() == pytest.approx(-want, rel=1e-6)


def test_batched_models_match_each_trained_alone():
    cfgs = [tiny_config(seed=0), tiny_config(seed=1, frac_train=0.7, weight_decay=0.3),
            tiny_config(seed=2, lr=3e-3, l1=1e-4)]
    tr = Trainer(cfgs)
    tr.fit(60)
    for k, c in enumerate(cfgs):
        alone = Trainer([c])
        alone.fit(60)
        # bmm (batched) and mm (alone) round differently in float32: each step's gradients differ by ~1e-7
        # relative, and Adam, which divides by sqrt(v), can amplify that in entries whose gradient is near
        # zero. Measured on an Intel Xeon: <= 1 ulp of the largest parameter (1.2e-7). The tolerance is 1e-5
        # of the largest parameter's magnitude (~100 ulps: other CPUs' kernels round differently), far below
        # the parameters' movement in 60 steps (>= 0.04) and the differences between the models.
        scale = float(alone.params[0].abs().max())
        torch.testing.assert_close(tr.params[k], alone.params[0], rtol=1e-5, atol=1e-5 * scale)
        torch.testing.assert_close(tr.metrics["train_loss"][:60, k], alone.metrics["train_loss"][:60, 0],
                                   rtol=1e-5, atol=0)
    assert not torch.allclose(tr.params[0], tr.params[1])


def test_fast_and_plain_trainers_agree():
    cfg = tiny_config(epochs=50)
    a, b = Trainer([cfg], fast=True), Trainer([cfg], fast=False)
    a.fit(50)
    b.fit(50)
    torch.testing.assert_close(a.params, b.params, rtol=1e-4, atol=1e-5)


def test_a_two_layer_model_trains_on_the_scored_path_as_on_the_plain_one():
    """Two layers take forward_deep by default (with dropout, the plain path): 50 steps agree with the plain
    trainer within float32 rounding."""
    cfg = tiny_config(epochs=50, n_layers=2)
    a, b = Trainer([cfg]), Trainer([cfg], fast=False)
    assert a.fast and not b.fast
    a.fit(50)
    b.fit(50)
    torch.testing.assert_close(a.params, b.params, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.metrics["train_loss"], b.metrics["train_loss"], rtol=1e-4, atol=1e-6, equal_nan=True)
    c, d = Trainer([tiny_config(epochs=5, n_layers=2, dropout=0.3)]), Trainer([tiny_config(epochs=5, n_layers=2, dropout=0.3)], fast=False)
    c.fit(5)
    d.fit(5)
    assert torch.equal(c.params, d.params)  # dropout in a deeper model: the plain path on both


def test_same_seed_same_numbers_and_dropout_runs():
    cfg = tiny_config(dropout=0.2, epochs=30)
    a, b = Trainer([cfg]), Trainer([cfg])
    a.fit()
    b.fit()
    assert torch.equal(a.params, b.params)
    for k in a.metrics:  # bitwise, NaN in the same places (rows not evaluated)
        torch.testing.assert_close(a.metrics[k], b.metrics[k], rtol=0, atol=0, equal_nan=True, msg=k)
    assert not torch.isnan(a.metrics["train_loss"]).any()
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
    # row 0 is the initial model: its losses and accuracies equal evaluating the init directly
    init = Trainer([cfg])
    for split, batch in (("train", init.train), ("test", init.test)):
        loss, acc = init.evaluate(batch)
        assert torch.equal(m[split + "_loss"][0], loss), split
        assert torch.equal(m[split + "_acc"][0], acc), split
    assert 0 < m["train_acc"][0, 0] <= 1 and m["train_loss"][0, 0] > 1  # p = 7: ~log(7) at init


def test_tiny_model_learns():
    cfg = tiny_config(p=11, d_model=32, n_heads=4, d_mlp=64, frac_train=0.8, epochs=300, weight_decay=0.1, lr=3e-3)
    tr = Trainer([cfg]).fit()
    assert tr.metrics["train_acc"][-1, 0] == 1.0
    assert tr.metrics["train_loss"][-1, 0] < 0.05 < tr.metrics["train_loss"][0, 0]


def _run_python(code: str) -> str:
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_flush_denormal_reaches_every_worker_thread():
    """Set before the thread pool starts, the mode is in every thread (judged by its effect); set after a
    parallel operation, only in the calling one, and the Trainer says so."""
    before = _run_python("import torch; torch.set_num_threads(2)\n"
                         "from grokscope.numerics import configure_denormals, denormals_flushed\n"
                         "print(configure_denormals(True), denormals_flushed())")
    assert before.split() == ["True", "True"]
    after = _run_python("import torch, warnings; torch.set_num_threads(2)\n"
                        "from grokscope.numerics import configure_denormals, denormals_flushed\n"
                        "print(denormals_flushed())\n"  # a parallel op: starts the pool in the default mode
                        "print(configure_denormals(True), denormals_flushed())\n"
                        "from grokscope.config import Config\nfrom grokscope.training.trainer import Trainer\n"
                        "Trainer([Config(p=7, d_model=8, n_heads=2, d_mlp=16)])")
    assert after.split()[:3] == ["False", "False", "None"]  # None: some threads flush, some do not
    assert "could not set flush_denormal=True in every thread" in after


def n_denormal(x: torch.Tensor) -> int:
    """Float32 denormals in x, counted on the bits (a float comparison would read them as 0 here)."""
    bits = x.contiguous().view(torch.int32)
    return int((((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)).sum())


def _loss_and_grads(tr):
    flat = tr.params.detach().requires_grad_(True)
    logits = tr.logits(tr.layout.unflatten(flat), tr.train)
    loss, _, _ = tr.loss_acc(logits, tr.train)
    g_logits, g_params = torch.autograd.grad(loss.sum(), [logits, flat])
    return loss, g_logits, g_params


def test_flushing_denormals_changes_no_loss_or_gradient():
    """Large margins put float32 denormals into the loss's gradient; flushing them to zero leaves the loss
    and every parameter's gradient within the float32 tolerance (1 thread: the mode toggled here is the
    only thread's)."""
    n_threads = torch.get_num_threads()
    tr = Trainer([tiny_config()])
    W_U = tr.named_params()["W_U"]
    W_U.mul_(60)  # logit gaps of ~90 nats: some softmax entries below 1.2e-38 (W_U is a view into tr.params)
    try:
        torch.set_num_threads(1)
        torch.set_flush_denormal(False)
        loss_off, gl_off, gp_off = _loss_and_grads(tr)
        torch.set_flush_denormal(True)
        loss_on, gl_on, gp_on = _loss_and_grads(tr)
    finally:
        torch.set_flush_denormal(True)  # conftest's mode
        torch.set_num_threads(n_threads)
    assert n_denormal(gl_off) >= 5  # denormals without flushing ...
    assert n_denormal(gl_on) == 0  # ... none with it
    torch.testing.assert_close(loss_on, loss_off, rtol=1e-6, atol=0)
    torch.testing.assert_close(gp_on, gp_off, rtol=1e-5, atol=1e-6 * float(gp_off.abs().max()))
