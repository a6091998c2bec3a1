"""Methods beyond the paper (issue #14): each filter / optimiser / loss against a plain loop written here (torch's
AdamW on the plain model, the method applied by hand), batched models with different settings against each
alone, the diagnostics on constructed logits with known answers, bitwise resume with Grokfast's state, bad
flags. Tolerances are scaled to the magnitudes compared (no exact float32 comparison across kernels)."""

import itertools
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_resumed_bitwise, tiny_config

from grokscope import Run
from grokscope.cli import main
from grokscope.config import Config, ConfigError
from grokscope.fast.tables import forward_fast, forward_plain
from grokscope.training.methods import (collapse_fractions, orthogonal_grad, renormalise_, slingshots, softmax_collapse,
                                        stablemax_cross_entropy, stablemax_s)
from grokscope.model.transformer import Transformer, init_params
from grokscope.training.run import resume, train
from grokscope.tasks.modular import make_dataset
from grokscope.training.trainer import NEW_METRICS, Trainer
from grokscope.training.losses import cross_entropy_accurate, cross_entropy_and_collapse, cross_entropy_float64

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 40


def plain_train(cfg: Config, steps: int = STEPS):
    """The authors' loop (full sequence, torch AdamW + LambdaLR) with the method of ``cfg`` applied by hand."""
    ds = make_dataset(cfg)
    model = Transformer(cfg.model_config, seed=cfg.seed)
    ps = dict(model.named_parameters())
    if cfg.norm_constraint is not None:
        with torch.no_grad():
            for p in ps.values():
                p.mul_(cfg.norm_constraint)
    norm0 = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in ps.values()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / cfg.warmup, 1))
    tok, lab = ds.tokens[ds.train_idx], ds.labels[ds.train_idx]
    mu, window = {}, {n: [] for n in ps}
    for _ in range(steps):
        logits = model.answer_logits(tok)
        if cfg.loss == "stablemax":  # written out: s(x) then -log(s_c / sum s), float64
            x = logits.double()
            s = torch.where(x >= 0, x.clamp(min=0) + 1, 1 / (1 - x.clamp(max=0)))
            loss = (-torch.log(s[torch.arange(len(lab)), lab] / s.sum(-1))).mean()
        else:
            loss = cross_entropy_float64(logits, lab).mean()
        loss.backward()
        for n, p in ps.items():
            g = p.grad
            if cfg.grokfast == "ema":
                mu[n] = g.clone() if n not in mu else cfg.grokfast_alpha * mu[n] + (1 - cfg.grokfast_alpha) * g
                g = g + cfg.grokfast_lambda * mu[n]
            elif cfg.grokfast == "ma":
                window[n] = (window[n] + [g.clone()])[-cfg.grokfast_window:]
                if len(window[n]) == cfg.grokfast_window:
                    g = g + cfg.grokfast_lambda * sum(window[n]) / len(window[n])
            if cfg.optimizer == "orthoadamw":
                w, gv = p.detach().reshape(-1), g.reshape(-1)
                gp = gv - torch.dot(w, gv) / (torch.dot(w, w) + 1e-30) * w
                g = (gp * (gv.norm() / (gp.norm() + 1e-30))).view_as(g)
            p.grad = g
        opt.step()
        sched.step()
        opt.zero_grad()
        if cfg.norm_constraint is not None:
            with torch.no_grad():
                norm = torch.sqrt(sum((p.double() ** 2).sum() for p in ps.values()))
                for p in ps.values():
                    p.mul_((norm0 / norm).float())
    return model


METHODS = {
    "grokfast_ema": dict(grokfast="ema"),
    "grokfast_ema_custom": dict(grokfast="ema", grokfast_alpha=0.8, grokfast_lambda=0.5),
    "grokfast_ma": dict(grokfast="ma", grokfast_window=5),
    "orthoadamw": dict(optimizer="orthoadamw"),
    "stablemax": dict(loss="stablemax"),
    "norm_constraint": dict(norm_constraint=1.5, weight_decay=0.0),
    "all_at_once": dict(grokfast="ema", optimizer="orthoadamw", loss="stablemax", norm_constraint=0.8,
                        weight_decay=0.0),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_method_matches_a_plain_loop(name):
    cfg = tiny_config(epochs=STEPS, **METHODS[name])
    model = plain_train(cfg)
    tr = Trainer([cfg])
    tr.fit(STEPS)
    ours = tr.named_params()
    scale = max(float(v.abs().max()) for v in model.state_dict().values())
    for k, v in model.state_dict().items():
        # float32 in a different order of operations (and the fast forward): ~1e-6 relative per step, which Adam
        # can amplify where a gradient is near zero; 1e-4 of the largest weight is ~1000 ulps, far below the
        # weights' movement in 40 steps
        torch.testing.assert_close(ours[k][0], v, rtol=1e-4, atol=1e-4 * scale, msg=k)
    # ... and each method changes the training (the test would notice it switched off) by more than 20x the
    # tolerance (Adam is nearly invariant to Grokfast's early g + lambda mu ~ (1 + lambda) g: the change is small)
    base = Trainer([tiny_config(epochs=STEPS, weight_decay=cfg.weight_decay)])
    base.fit(STEPS)
    assert float((base.params - tr.params).abs().max()) > 2e-3 * scale


def test_grokfast_lambda_defaults_per_filter_and_is_stored():
    assert Config(grokfast="ema").grokfast_lambda == 2.0 and Config(grokfast="ma").grokfast_lambda == 5.0
    assert Config().grokfast_lambda is None and Config(grokfast="ma", grokfast_lambda=1.0).grokfast_lambda == 1.0
    c = Config(grokfast="ema")
    assert Config.from_dict(c.to_dict()) == c and c.grokfast_alpha == 0.98 and c.grokfast_window == 100


def test_norm_constraint_holds_the_initial_scaled_norm_per_model():
    cfgs = [tiny_config(norm_constraint=0.5, weight_decay=0.0), tiny_config(seed=1, weight_decay=1.0)]
    tr = Trainer(cfgs)
    init = torch.stack([torch.cat([v.flatten() for v in init_params(c.model_config, c.seed).values()]) for c in cfgs])
    assert torch.allclose(tr.params.norm(dim=1)[0], 0.5 * init[0].norm(), rtol=1e-6)
    assert torch.equal(tr.params[1], tr.layout.flatten({k: v[None] for k, v in init_params(
        cfgs[1].model_config, 1).items()})[0])  # the other model is untouched
    tr.fit(30)
    n = tr.params.norm(dim=1)
    assert abs(float(n[0]) / float(0.5 * init[0].norm()) - 1) < 1e-5
    assert abs(float(n[1]) / float(init[1].norm()) - 1) > 1e-3  # decayed, not held


BATCHED = [
    [dict(seed=0, grokfast="ema", grokfast_alpha=0.9, grokfast_lambda=1.0),
     dict(seed=1, grokfast="ema", grokfast_alpha=0.98, grokfast_lambda=3.0, lr=3e-3)],
    [dict(seed=0, grokfast="ma", grokfast_window=4, grokfast_lambda=2.0),
     dict(seed=1, grokfast="ma", grokfast_window=4, grokfast_lambda=0.5, weight_decay=0.3)],
    [dict(seed=0, optimizer="orthoadamw"), dict(seed=1, optimizer="orthoadamw", weight_decay=0.1, frac_train=0.7)],
    [dict(seed=0, loss="stablemax"), dict(seed=1, loss="stablemax", lr=3e-3)],
    [dict(seed=0, norm_constraint=0.7, weight_decay=0.0), dict(seed=1, weight_decay=1.0)],
]


@pytest.mark.parametrize("models", BATCHED, ids=["ema", "ma", "ortho", "stablemax", "norm"])
def test_batched_models_with_different_settings_match_each_alone(models):
    cfgs = [tiny_config(**m) for m in models]
    tr = Trainer(cfgs)
    tr.fit(STEPS)
    for k, c in enumerate(cfgs):
        alone = Trainer([c])
        alone.fit(STEPS)
        scale = float(alone.params[0].abs().max())  # bmm vs mm rounding (see test_training): 1e-5 of the scale
        torch.testing.assert_close(tr.params[k], alone.params[0], rtol=1e-5, atol=1e-5 * scale)
        for m in ("train_loss", "w_u_norm"):
            torch.testing.assert_close(tr.metrics[m][:STEPS, k], alone.metrics[m][:STEPS, 0], rtol=1e-5, atol=0)


def test_orthogonal_grad_is_per_tensor_and_per_model():
    g = torch.Generator().manual_seed(0)
    w, grad = torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    out = orthogonal_grad(w, grad, [3, 4])
    for k in range(2):
        for sl in (slice(0, 3), slice(3, 7)):
            assert abs(float(torch.dot(out[k, sl], w[k, sl]))) < 1e-5 * float(w[k, sl].norm() * grad[k, sl].norm())
            assert float(out[k, sl].norm()) == pytest.approx(float(grad[k, sl].norm()), rel=1e-5)
    # a model's result does not depend on the other model
    torch.testing.assert_close(orthogonal_grad(w[1:], grad[1:], [3, 4]), out[1:], rtol=1e-6, atol=1e-7)


def test_renormalise_only_the_constrained_models():
    p = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    renormalise_(p, torch.tensor([[10.0], [5.0]]), torch.tensor([[True], [False]]))
    assert p.tolist() == [[6.0, 8.0], [1.0, 1.0]]


# ---------------------------------------------------------------------- StableMax
def test_stablemax_known_values_and_gradient():
    x = torch.tensor([[0.0, -1.0, 1.0], [2.0, -3.0, 0.5]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2, 1])
    assert stablemax_s(torch.tensor([0.0, -1.0, 1.0, -3.0])).tolist() == [1.0, 0.5, 2.0, 0.25]
    loss = stablemax_cross_entropy(x, y)
    assert loss.dtype == torch.float64
    assert loss.tolist() == pytest.approx([math.log(3.5 / 2), math.log((3 + 0.25 + 1.5) / 0.25)], rel=1e-15)
    assert torch.autograd.gradcheck(stablemax_cross_entropy, (x, y))
    # float32 logits: the loss is still float64, and large logits give finite values and gradients
    big = torch.tensor([[80.0, -1e6, 1e6]], requires_grad=True)
    lb = stablemax_cross_entropy(big, torch.tensor([2]))
    (gb,) = torch.autograd.grad(lb.sum(), big)
    assert lb.dtype == torch.float64 and torch.isfinite(lb).all() and torch.isfinite(gb).all()


def _stacked(cfg, seeds):
    ps = {}
    for s in seeds:
        for k, v in init_params(cfg, s, torch.float64).items():
            ps.setdefault(k, []).append(v)
    return {k: torch.stack(v).requires_grad_() for k, v in ps.items()}


def test_stablemax_through_the_fast_path_equals_the_plain_path():
    """The fast forward (forward_fast) with the StableMax loss: loss and every parameter's gradient equal the
    plain full-sequence forward's, in float64."""
    cfg = tiny_config().model_config
    params = _stacked(cfg, [0, 1])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 7, (2, 30), generator=g), torch.randint(0, 7, (2, 30), generator=g)
    y = (a + b) % 7
    got = {}
    for name, fwd in (("fast", forward_fast), ("plain", forward_plain)):
        loss = stablemax_cross_entropy(fwd(params, a, b, cfg), y).sum()
        got[name] = (loss.detach(), torch.autograd.grad(loss, list(params.values())))
    torch.testing.assert_close(got["fast"][0], got["plain"][0], rtol=1e-12, atol=0)
    for n, gf, gp in zip(params, got["fast"][1], got["plain"][1]):
        torch.testing.assert_close(gf, gp, rtol=1e-10, atol=1e-12 * float(gp.abs().max()), msg=n)


def test_stablemax_fast_and_plain_trainers_agree():
    cfg = tiny_config(epochs=30, loss="stablemax")
    a, b = Trainer([cfg], fast=True), Trainer([cfg], fast=False)
    a.fit(30)
    b.fit(30)
    torch.testing.assert_close(a.params, b.params, rtol=1e-4, atol=1e-5 * float(b.params.abs().max()))


# ---------------------------------------------------------------------- diagnostics
def test_softmax_collapse_on_constructed_logits():
    # margins: 100 (every exp(-100) far below float32's half ulp of 1: the sum is exactly 1), 20 (exp(-20) = 2e-9,
    # still below 6e-8: exactly 1), 15 (exp(-15) = 3e-7 twice: not 1), 1 (not); label 0 (the maximum) or 1
    L = torch.tensor([[[100.0, 0, 0], [100.0, 0, 0], [20.0, 0, 0], [15.0, 0, 0], [1.0, 0, 0], [0.0, 20.0, 0.0]]])
    y = torch.tensor([[0, 1, 0, 0, 0, 0]])
    loss0, sum1 = softmax_collapse(L, y)
    assert loss0.tolist() == [2 / 6] and sum1.tolist() == [4 / 6]
    # the first fraction is exactly the examples whose float32 cross-entropy is 0
    assert (F.cross_entropy(L[0], y[0], reduction="none") == 0).tolist() == [True, False, True, False, False, False]
    # only the valid rows count; and per model
    valid = torch.tensor([[True, True, True, False, False, False]])
    loss0, sum1 = softmax_collapse(L, y, valid)
    assert loss0.tolist() == [2 / 3] and sum1.tolist() == [1.0]
    loss0, sum1 = softmax_collapse(torch.cat([L, L[:, [4, 4, 4, 4, 4, 4]]]), torch.cat([y, y]))
    assert loss0.tolist() == [2 / 6, 0.0] and sum1.tolist() == [4 / 6, 0.0]


def test_collapse_from_the_loss_pass_equals_softmax_collapse():
    """The trainer's fast path (softmax collapse's booleans from the cross-entropy's own pass) against the plain
    :func:`softmax_collapse`, bit for bit: constructed rows (sums exactly 1 or not, the label at the maximum or
    not, a tie, a label whose exp underflows, NaN and inf logits) and random ones in float32 and float64; the
    loss, correctness and gradient are those of :func:`cross_entropy_accurate`."""
    rows = [[100.0, 0, 0], [100.0, 0, 0], [20.0, 0, 0], [15.0, 0, 0], [1.0, 0, 0], [0.0, 20.0, 0.0],
            [30.0, 30.0, 0], [0.0, 200.0, 0.0], [float("nan"), 0, 0], [float("inf"), 0, 0], [-float("inf"), 5, 0]]
    L = torch.tensor([rows])
    y = torch.tensor([[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]])
    g = torch.Generator().manual_seed(0)
    R = torch.randn(3, 400, 13, generator=g) * torch.tensor([1.0, 30.0, 300.0])[:, None, None]
    yr = torch.randint(0, 13, (3, 400), generator=g)
    valid = torch.rand(3, 400, generator=g) > 0.2
    for (logits, labels, v), flushed in itertools.product([(L, y, None), (R, yr, valid), (R.double(), yr, valid)],
                                                          (False, True)):  # flushed: the fast exp (conftest's mode)
        x = logits.clone().requires_grad_(True)
        loss, correct, loss0, sum1 = cross_entropy_and_collapse(x, labels, flushed=flushed)
        want = softmax_collapse(logits, labels, v)
        got = collapse_fractions(loss0, sum1, v)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), (got, want)
        ref = logits.clone().requires_grad_(True)
        ref_loss, ref_correct = cross_entropy_accurate(ref, labels)
        same = dict(rtol=0, atol=0, equal_nan=True)  # bit for bit, NaN where NaN
        torch.testing.assert_close(loss, ref_loss, **same)
        assert torch.equal(correct, ref_correct)
        fin = torch.isfinite(loss)
        (loss[fin].sum()).backward()
        (ref_loss[fin].sum()).backward()
        torch.testing.assert_close(x.grad, ref.grad, **same)
    assert softmax_collapse(L, y)[1].item() > 0 and softmax_collapse(R, yr)[1].sum() > 0  # the cases occur
    assert (cross_entropy_and_collapse(L, y, collapse=False)[3] == 0).all()


def test_fast_and_plain_trainers_log_the_same_collapse():
    """Trained until the softmax collapses, the fast trainer's (fused) and the plain trainer's collapse metrics
    agree at every step on the same logits (the plain trainer computes them with :func:`softmax_collapse`)."""
    cfg = tiny_config(epochs=300, lr=3e-2, weight_decay=0.0, frac_train=0.8)
    a = Trainer([cfg], fast=True)
    a.fit(300)
    col, s1 = a.metrics["softmax_collapse"][:300], a.metrics["softmax_sum1"][:300]
    assert float(s1.max()) > 0  # it collapses
    # the same parameters, step by step, through the plain diagnostic
    b = Trainer([cfg], fast=True)
    for e in range(300):
        batch = b.batch(e, advance=False)
        with torch.no_grad():
            named = b.named_params()
            logits = b.logits(named, batch, ws=b.ws)
            K, N, S, V = logits.shape
            rows = batch.valid[..., None].expand(K, N, S).reshape(K, N * S)
            want = softmax_collapse(logits.reshape(K, N * S, V), batch.y.reshape(K, N * S), rows)
        assert float(col[e]) == float(want[0][0]) and float(s1[e]) == float(want[1][0]), e
        b.step()


def _metrics(loss, acc=1.0, model=0):
    return pd.DataFrame({"model": model, "epoch": range(len(loss)), "train_loss": loss, "train_acc": acc})


def test_slingshots_on_a_constructed_curve():
    loss = [2.0] * 5 + [1e-2, 1e-4, 1e-6, 1e-7, 5e-6, 3e-4, 2e-5, 5e-7, 1e-7, 1e-8, 2e-7, 1e-8]
    df = _metrics(loss)
    s = slingshots(df)
    assert s[["model", "start", "peak"]].values.tolist() == [[0, 9, 10], [0, 15, 15]]
    assert s.peak_loss.tolist() == [3e-4, 2e-7] and s.min_before.tolist() == [1e-7, 1e-8]
    # before memorisation nothing counts (a noisy high loss is not a slingshot)
    assert slingshots(_metrics([2.0, 0.1, 3.0, 0.01, 5.0], acc=0.5)).empty
    # a diverged run is not a slingshot; several models are found separately
    assert slingshots(_metrics([1e-4, 1e-5, float("nan"), 1.0])).empty
    two = pd.concat([df, _metrics(loss[:12], model=1)])
    assert slingshots(two).groupby("model").size().tolist() == [2, 1]


def test_new_metrics_are_logged_every_epoch(tmp_path):
    cfg = tiny_config(epochs=20)
    run = train([cfg], tmp_path / "r", device="cpu", progress=False)
    m = run.metrics
    assert list(m.columns)[:6] == ["model", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert all(c in m.columns and m[c].notna().all() for c in NEW_METRICS)
    W_U = run.params(20)["W_U"]
    assert float(m[m.epoch == 20].w_u_norm.iloc[0]) == pytest.approx(float(W_U.double().norm()), rel=1e-12)
    # an older run without the new columns still loads (they read as NaN)
    m[[c for c in m.columns if c not in NEW_METRICS]].to_parquet(tmp_path / "r" / "metrics.parquet", index=False)
    old = Run.load(tmp_path / "r").metrics
    assert all(old[c].isna().all() for c in NEW_METRICS) and len(old) == len(m)
    assert run.milestones().shape[0] == 1


def test_a_state_without_the_new_metrics_still_resumes(tmp_path):
    cfg = tiny_config(epochs=30)
    train([cfg], tmp_path / "r", device="cpu", progress=False, until=10)
    st = torch.load(tmp_path / "r" / "state.pt", weights_only=True)
    torch.save({k: v for k, v in st.items() if k[len("metrics."):] not in NEW_METRICS}, tmp_path / "r" / "state.pt")
    run = resume(tmp_path / "r", device="cpu", progress=False)
    m = run.metrics
    assert m[m.epoch < 10].softmax_sum1.isna().all() and m[m.epoch >= 10].softmax_sum1.notna().all()


# ---------------------------------------------------------------------- resume and flags
@pytest.mark.parametrize("method", [dict(grokfast="ema"), dict(grokfast="ma", grokfast_window=7),
                                    dict(optimizer="orthoadamw", loss="stablemax", norm_constraint=0.9,
                                         weight_decay=0.0, grokfast="ema")], ids=["ema", "ma", "others"])
def test_resume_is_bitwise_with_the_methods(tmp_path, method):
    cfg = tiny_config(epochs=40, dropout=0.1, **method)
    straight = train([cfg], tmp_path / "a", device="cpu", progress=False)
    train([cfg], tmp_path / "b", device="cpu", progress=False, until=13)  # mid-window, not at a checkpoint
    st = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert ("grokfast.buf" in st) == (cfg.grokfast != "none")
    resumed = resume(tmp_path / "b", device="cpu", progress=False)
    assert_resumed_bitwise(straight, resumed, tmp_path / "a", tmp_path / "b")


TINY = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "5", "--no-progress",
        "--device", "cpu"]


@pytest.mark.parametrize("flags,field", [
    (["--grokfast", "fast"], "grokfast"), (["--grokfast-alpha", "1"], "grokfast_alpha"),
    (["--grokfast-alpha", "nan"], "grokfast_alpha"), (["--grokfast", "ema", "--grokfast-lambda", "-1"], "grokfast_lambda"),
    (["--grokfast-window", "0"], "grokfast_window"), (["--grokfast-window", "2.5"], "grokfast_window"),
    (["--optimizer", "sgd"], "optimizer"), (["--loss", "taylor"], "loss"),
    (["--norm-constraint", "0"], "norm_constraint"), (["--norm-constraint", "inf"], "norm_constraint"),
    (["--norm-constraint", "1.0"], "norm_constraint"),  # weight decay 1 (the default) with the constrained norm
])
def test_bad_method_flags_are_one_line_exit_2(tmp_path, capsys, flags, field):
    assert main(["train", *TINY, "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"grokscope: error: {field}=") and not (tmp_path / "r").exists()
    if field in ("grokfast", "optimizer", "loss"):
        assert "must be one of" in err


def test_method_flags_train_and_take_per_model_lists(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(out), "--grokfast", "ema", "--grokfast-lambda", "1,3", "--optimizer",
                 "orthoadamw", "--loss", "stablemax", "--norm-constraint", "none,0.8", "--weight-decay", "1,0"]) == 0
    cs = Run.load(out).configs
    assert [c.grokfast_lambda for c in cs] == [1.0, 3.0] and [c.norm_constraint for c in cs] == [None, 0.8]
    assert {c.optimizer for c in cs} == {"orthoadamw"} and {c.loss for c in cs} == {"stablemax"}
    with pytest.raises(ConfigError, match="grokfast differs"):
        Trainer([tiny_config(grokfast="ema"), tiny_config(grokfast="ma")])


def test_the_loss_figure_marks_slingshots():
    pytest.importorskip("plotly")
    from grokscope.report import plot_curves as plots
    from grokscope.report.plot_curves import mark_slingshots

    loss = [2.0] * 5 + [1e-2, 1e-4, 1e-6, 1e-7, 5e-6, 3e-4, 2e-5, 5e-7, 1e-7, 1e-8, 2e-7, 1e-8]
    df = _metrics(loss).assign(test_loss=1.0, test_acc=0.5)
    fig = mark_slingshots(plots.losses(df), df)
    marks = [t for t in fig.data if t.name == "model 0 slingshot"]
    assert len(marks) == 1 and list(marks[0].x) == [10, 15] and list(marks[0].y) == [3e-4, 2e-7]
    assert len(fig.layout.shapes) == 2
    quiet = _metrics([2.0, 1e-3, 1e-5, 1e-6]).assign(test_loss=1.0, test_acc=0.5)
    assert not [t for t in mark_slingshots(plots.losses(quiet), quiet).data if "slingshot" in (t.name or "")]
