"""The Appendix D.3 sequence tasks (issue #12): generators, the attention-only model, the trainer, resume, CLI."""

import pandas as pd
import pytest
import torch
from helpers import need_reference, held_out, tiny, train_examples

from grokscope.cli import main
from grokscope.model.transformer import (Transformer, config_from_authors_state_dict, from_authors_state_dict, param_shapes)
from grokscope.training.run import Run
from grokscope.config import PRESETS, Config, preset
from grokscope.tasks.digit_addition import EQUALS, PLUS
from grokscope.training import Trainer, resume, train
from grokscope.checks import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_digit_addition_answers():
    ex = train_examples(tiny("digit_addition"))
    nd = 3
    num = lambda d: sum(int(x) * 10 ** (len(d) - 1 - i) for i, x in enumerate(d))  # noqa: E731
    for t, y, m in zip(ex.tokens, ex.targets, ex.mask):
        assert t[nd] == PLUS and t[2 * nd + 1] == EQUALS
        a, b, s = num(t[:nd]), num(t[nd + 1: 2 * nd + 1]), num(t[2 * nd + 2:])
        assert a + b == s
        assert m.nonzero().flatten().tolist() == list(range(2 * nd + 1, 3 * nd + 2))
        assert torch.equal(y[m], t[2 * nd + 2:])  # position i predicts token i + 1


def test_skip_trigram_answers():
    ex = train_examples(tiny("skip_trigram", n_train=200))
    big = ex.tokens >= 10
    assert (big.sum(1) == 1).all() and (ex.tokens < 20).all()
    assert torch.equal(ex.targets[:, -1], ex.tokens[big] - 10)
    assert ex.mask[:, -1].all() and ex.mask.sum() == 200


def test_repeated_subsequence_answers():
    c = tiny("repeated_subsequence", n_train=100)
    ex = train_examples(c)
    assert (ex.mask.sum(1) == (3 - 1) * (4 - 1)).all()
    for t, y, m in zip(ex.tokens, ex.targets, ex.mask):
        for p in m.nonzero().flatten().tolist():
            assert y[p] == t[p + 1]
            # an induction head predicts it: the current token occurred before, followed by the target
            prev = [q for q in range(p) if t[q] == t[p] and t[q + 1] == t[p + 1]]
            assert prev, (t, p)


def test_finite_set_is_fixed_and_seeded_infinite_stream_differs():
    c = tiny("skip_trigram")
    assert torch.equal(train_examples(c).tokens, train_examples(c).tokens)
    assert not torch.equal(train_examples(c).tokens, train_examples(c.replace(seed=1)).tokens)
    assert not torch.equal(train_examples(c).tokens, held_out(c).tokens)
    assert torch.equal(held_out(c).tokens, held_out(c.replace(n_train=None, batch_size=8)).tokens)
    tr = Trainer([tiny("skip_trigram", n_train=None, batch_size=8)])
    b0, b1 = tr.batch(0), tr.batch(1)
    assert not torch.equal(b0.tokens, b1.tokens)
    peek = tr.batch(2, advance=False)
    assert torch.equal(peek.tokens, tr.batch(2).tokens)  # peeking does not move the stream
    ft = Trainer([tiny("skip_trigram", batch_size=8)])  # 4 fixed batches, in turn
    assert torch.equal(ft.batch(1).tokens, ft.batch(5).tokens) and not torch.equal(ft.batch(0).tokens,
                                                                                  ft.batch(1).tokens)


def test_attention_only_shapes_hook_names_and_causality():
    mc = tiny("repeated_subsequence", n_layers=2).model_config
    assert mc.attn_only and mc.n_out == 12
    m = Transformer(mc, seed=0)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == param_shapes(mc)
    assert not any("mlp" in k for k in m.state_dict())
    names = m.hook_names
    assert "blocks.1.attn.hook_pattern" in names and "hook_embed" in names and "blocks.0.hook_resid_post" in names
    assert not any("mlp" in n or "resid_mid" in n for n in names)
    tok = train_examples(tiny("repeated_subsequence")).tokens[:3]
    logits, cache = m.run_with_cache(tok)
    assert logits.shape == (3, 20, 12) and cache["blocks.1.attn.hook_pattern"].shape == (3, 2, 20, 20)
    for t in range(tok.shape[1]):  # the plain path against a loop over positions (each prefix alone)
        torch.testing.assert_close(m(tok[:, : t + 1])[:, -1], logits[:, t], rtol=1e-5, atol=1e-5)
    dc = tiny("digit_addition").model_config
    assert dc.d_vocab == 12 and dc.n_out == 10 and dc.n_ctx == 12
    assert Transformer(dc)(train_examples(tiny("digit_addition")).tokens).shape == (32, 12, 10)


@pytest.mark.parametrize("kernel", ["compiled", "torch"])
@pytest.mark.parametrize("task,kw", [
    ("digit_addition", {}), ("digit_addition", {"n_layers": 2, "act": "gelu"}), ("skip_trigram", {}),
    ("repeated_subsequence", {"n_layers": 2}), ("repeated_subsequence", {"n_layers": 1, "d_mlp": 8}),
])
def test_fast_path_is_the_plain_path_in_float64(task, kw, kernel, monkeypatch):
    """forward_scored (last block at the scored positions only; the compiled attention of grokscope.fast.kernel,
    or torch's fused one) against the full-sequence Transformer: logits, loss, per-token losses and every
    parameter's gradient, in float64."""
    from grokscope.fast import scored as seqfast
    from grokscope.fast.scored import forward_scored, scored_positions
    from helpers_kernel import need_kernel
    if kernel == "compiled":
        need_kernel()
    monkeypatch.setattr(seqfast, "USE_KERNEL", kernel == "compiled")
    tr = Trainer([tiny(task, **kw)])
    tr.params = (tr.params.double() + 0.3 * torch.randn(tr.params.shape, dtype=torch.float64,
                                                        generator=torch.Generator().manual_seed(5)))
    batch = tr.batch(0)
    named = {k: v[0] for k, v in tr.named_params().items()}
    pos = batch.pos[0]
    assert pos.shape == (32, tr.task.n_scored) and bool((pos[:, 1:] > pos[:, :-1]).all())
    ex = train_examples(tiny(task, **kw))
    assert torch.equal(pos, scored_positions(ex.mask)) and torch.equal(batch.tokens[0], ex.tokens)
    plain = tr.model.to(torch.float64)
    full = torch.func.functional_call(plain, named, (batch.tokens[0],))
    torch.testing.assert_close(forward_scored(named, batch.tokens[0], pos, tr.mcfg).reshape(-1, tr.mcfg.n_out),
                               full[ex.mask], rtol=1e-12, atol=1e-12)
    out = {}
    for fast in (False, True):
        tr.fast = fast
        flat = tr.params.detach().requires_grad_(True)
        loss, acc, tok = tr.loss_acc(tr.logits(tr.named_params(flat), batch), batch)
        (grad,) = torch.autograd.grad(loss.sum(), flat)
        out[fast] = loss.detach(), acc, tok, tr.layout.unflatten(grad)
    assert float(out[False][0]) > 0.1  # a loss with gradients worth comparing
    for a, b in zip(out[False][:3], out[True][:3]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    for k, g in out[False][3].items():
        assert float(g.abs().max()) > 0, k  # every parameter gets a gradient
        torch.testing.assert_close(out[True][3][k], g, rtol=1e-10, atol=1e-12 * float(g.abs().max()), msg=k)


def test_fast_path_trains_as_the_plain_path_float32():
    """In float32 the two paths differ by rounding only: 20 steps stay within float32 tolerances."""
    c = tiny("digit_addition", epochs=20)
    a, b = Trainer([c]).fit(), Trainer([c], fast=False).fit()
    torch.testing.assert_close(a.metrics["train_loss"], b.metrics["train_loss"], rtol=1e-4, atol=1e-6,
                               equal_nan=True)
    torch.testing.assert_close(a.params, b.params, rtol=1e-3, atol=1e-5)


def test_our_digit_format_is_the_authors_model_input():
    """The authors' 5-digit-addition model reads our examples: MSB first, '+' = 10, '=' = 11."""
    sd = torch.load(need_reference("5_digit_addition_infinite.pth"), map_location="cpu", weights_only=False)["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith("mask")}
    m = Transformer(config_from_authors_state_dict(sd), seed=None)
    m.load_state_dict(from_authors_state_dict(sd))
    ex = held_out(preset("digit-addition-infinite", n_test=300))
    with torch.no_grad():
        acc = (m(ex.tokens)[ex.mask].argmax(-1) == ex.targets[ex.mask]).float().mean()
    assert acc > 0.98


def test_authors_induction_model_loads_and_predicts_our_repeats():
    sd = torch.load(need_reference("induction_head_infinite.pth"), map_location="cpu", weights_only=False)["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith("mask")}
    mc = config_from_authors_state_dict(sd)
    assert mc.attn_only and mc.n_layers == 2 and mc.d_model == 48 and mc.n_ctx == 85
    m = Transformer(mc, seed=None)
    m.load_state_dict(from_authors_state_dict(sd))
    ex = held_out(preset("induction-infinite", n_test=64))
    with torch.no_grad():
        acc = (m(ex.tokens)[ex.mask].argmax(-1) == ex.targets[ex.mask]).float().mean()
    # far above chance (1/128) but not the ~95% of their own data: the authors' placement of the repeats is not
    # recorded and ours (random gaps) is not quite it (README "Other tasks"); adjacent repeats give ~0%
    assert acc > 0.3


def test_authors_induction_model_reads_absolute_positions():
    """What the first reading of the data (layout 'uniform') showed of the authors' infinite-data induction model on
    random placements: it copies
    only where its own data had copies to predict. Targets at positions <= 29 (a predicting position <= 28) and at
    57 are almost never right; targets at 30..56 mostly are."""
    sd = torch.load(need_reference("induction_head_infinite.pth"), map_location="cpu", weights_only=False)["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith("mask")}
    m = Transformer(config_from_authors_state_dict(sd), seed=None)
    m.load_state_dict(from_authors_state_dict(sd))
    ex = held_out(preset("induction-infinite", n_test=256, layout="uniform"))
    with torch.no_grad():
        right = m(ex.tokens).argmax(-1) == ex.targets
    target_pos = torch.nonzero(ex.mask)[:, 1] + 1  # the logit at t predicts the token at t + 1
    right = right[ex.mask]
    early, at57, middle = target_pos <= 29, target_pos == 57, (target_pos >= 30) & (target_pos <= 56)
    assert early.sum() > 200 and at57.sum() > 20 and middle.sum() > 1000  # enough tokens of each kind
    assert right[early].float().mean() < 0.25
    assert right[at57].float().mean() < 0.25
    assert right[middle].float().mean() > 0.5


@pytest.mark.parametrize("task", ["digit_addition", "repeated_subsequence", "skip_trigram"])
@pytest.mark.parametrize("n_train", [32, None])
def test_short_training_lowers_the_loss(task, n_train):
    c = tiny(task, n_train=n_train, batch_size=16 if n_train is None else None, epochs=40, lr=1e-2)
    tr = Trainer([c]).fit()
    m = tr.metrics
    assert float(m["train_loss"][40]) < float(m["train_loss"][0]) - 0.05
    if n_train is None:  # fresh data: the test loss falls with it (32 fixed examples may overfit instead)
        assert float(m["test_loss"][40]) < float(m["test_loss"][0])


@pytest.mark.parametrize("n_train", [32, None])
def test_resume_is_bit_exact_with_the_stream(tmp_path, n_train):
    c = tiny("skip_trigram", n_train=n_train, batch_size=16 if n_train is None else None)
    a = train([c], tmp_path / "a", progress=False)
    train([c], tmp_path / "b", progress=False, until=13)
    b = resume(tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    assert a.checkpoint_epochs == [0, 10, 20, 30]
    for k, v in a.model().state_dict().items():
        assert torch.equal(v, b.model().state_dict()[k])
    cols = set(a.metrics.columns)
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "train_loss_tok0", "test_loss_tok0"} <= cols
    assert Run.load(tmp_path / "a").config == c  # one Run for every task


def test_state_holds_the_rows_so_far_and_older_full_length_states_resume(tmp_path):
    """``state.pt`` keeps the metric rows 0..epoch only (not the NaN rows of steps still to come); a state written
    with the full-length buffers (runs before this change) resumes to the same run; a row block of the wrong
    length is reported as damage."""
    from grokscope.files import DamagedFile
    c = tiny("skip_trigram", n_train=32, epochs=40)
    a = train([c], tmp_path / "a", progress=False)
    train([c], tmp_path / "b", progress=False, until=13)
    st = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert int(st["epoch"]) == 13 and st["metrics.train_loss"].shape == (14, 1)
    assert st["tok_rows"].tolist() == [0, 5, 10] and st["tok.test"].shape == (3, 1, c.make_task().n_scored)
    full = Trainer([c])
    full.load_state_dict(st)
    old = {k: v for k, v in full.state_dict().items() if k != "tok_rows"}
    old |= {"metrics." + k: v.clone() for k, v in full.metrics.items()} | {"tok." + k: v.clone() for k, v in full.tok.items()}
    assert old["metrics.train_loss"].shape == (41, 1)
    torch.save(old, tmp_path / "b" / "state.pt")
    b = resume(tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    bad = dict(st) | {"metrics.test_loss": st["metrics.test_loss"][:5]}
    torch.save(bad, tmp_path / "b" / "state.pt")
    with pytest.raises(DamagedFile, match="metrics.test_loss"):
        resume(tmp_path / "b", progress=False)


def test_per_token_columns_of_digit_addition(tmp_path):
    run = train([tiny("digit_addition", epochs=10)], tmp_path / "r", progress=False)
    df = run.metrics
    assert [c for c in df.columns if c.startswith("test_loss_tok")] == [f"test_loss_tok{k}" for k in range(4)]
    row = df[df["epoch"] == 10].iloc[0]
    assert abs(row[[f"test_loss_tok{k}" for k in range(4)]].mean() - row["test_loss"]) < 1e-9


SEQ_PRESETS = [n for n in PRESETS if n.endswith("finite")]


def test_the_sparse_parity_preset():
    c = preset("sparse-parity")
    task = c.make_task()
    assert (c.task, c.n_bits, c.k, c.n_train, c.seed) == ("sparse-parity", 20, 3, 400, 1) and task.n_scored == 1
    ex = task.train_set()
    assert torch.equal(ex.targets[:, -1], ex.tokens[:, task.secret()].sum(1) % 2)  # the parity of the secret bits
    assert len(task.secret()) == 3 and ex.tokens[:, -1].eq(2).all()  # '=' last


@pytest.mark.parametrize("name,most", [("induction_head_infinite.pth", 2.0), ("induction_head_finite.pth", 1.85)])
def test_the_authors_induction_models_score_the_rebuilt_data(name, most):
    """The oracle of the D.3 data: the authors' saved models' loss on our test set (theirs: 0.30 infinite, 1.23 the
    finite run's test loss). The rebuilt layout ('segments', the presets') brings their finite model from 13.7 nats
    (layout 'uniform') to 1.70 and the infinite one from 2.66 to 1.87; the finite target (<= 1.85) is met, the
    infinite one (<= 0.45) is not (docs/results/records/d3-data-oracle.md)."""
    sd = torch.load(need_reference(name), map_location="cpu", weights_only=False)["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith("mask")}
    m = Transformer(config_from_authors_state_dict(sd), seed=None)
    m.load_state_dict(from_authors_state_dict(sd))
    loss = {}
    for layout in ("segments", "uniform"):
        ex = held_out(preset("repeated-subsequence-infinite", n_test=512, layout=layout))
        with torch.no_grad():
            loss[layout] = float(torch.nn.functional.cross_entropy(m(ex.tokens)[ex.mask], ex.targets[ex.mask]))
    assert loss["segments"] < most < loss["uniform"], loss


def test_the_segments_layout():
    c = preset("repeated-subsequence-finite")
    assert c.layout == "segments" and c.make_task().n_scored == 32
    ex = held_out(c)[:64]
    assert ex.tokens[:, 0].eq(0).all() and not ex.tokens[:, 1:].eq(0).any()  # BOS only at position 0
    for row, mask in zip(ex.tokens, ex.mask):
        counts = torch.bincount(row[1:], minlength=128)
        assert counts.max() <= 3 and int((counts == 3).sum()) == 16  # only the 16 copied tokens repeat (3 times)
        scored = torch.nonzero(mask)[:, 0] + 1  # the positions predicted
        assert len(scored) == 32 and (scored >= 29).all()  # copies 2 and 3: in segments 2 and 3
    with pytest.raises(ConfigError, match="layout"):
        preset("repeated-subsequence-finite", layout="spiral")
    with pytest.raises(ConfigError, match="seq_len"):
        preset("repeated-subsequence-finite", seq_len=40)


def test_presets_are_the_authors_runs():
    assert set(SEQ_PRESETS) == {f"{t}-{d}" for t in ("digit-addition", "repeated-subsequence", "skip-trigram")
                                for d in ("finite", "infinite")}
    assert preset("digit-addition-finite").n_train == 700 and preset("digit-addition-finite").epochs == 18053
    assert preset("skip-trigram-finite").epochs == 5000 and preset("skip-trigram-infinite").epochs == 3000
    assert preset("skip-trigram-finite").seq_len == preset("skip-trigram-infinite").seq_len == 200
    assert preset("skip-trigram-finite", seq_len=10).model_config.n_ctx == 10  # the flag still overrides it
    ind = preset("induction-finite")
    assert ind.n_train // ind.batch_size == 4 and ind.model_config.attn_only and ind.model_config.n_layers == 2
    for name in SEQ_PRESETS:
        preset(name).model_config  # noqa: B018 - valid


def test_cli_trains_and_resumes(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "--task", "skip_trigram", "--n-train", "inf", "--batch-size", "8", "--epochs", "12",
            "--d-model", "8", "--n-heads", "2", "--n-test", "16", "--checkpoint-every", "5", "--no-progress"]
    assert main(args + ["--out", str(out), "--until", "7"]) == 0
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert Run.load(out).metrics["epoch"].max() == 12
    assert "task: skip-trigram" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--task", "nope"], ["--n-train", "5"], ["--task", "skip_trigram", "--frac-train", "0.3"],
    ["--task", "skip_trigram", "--n-train", "0"], ["--task", "skip_trigram", "--n-train", "inf"],
    ["--preset", "quick", "--task", "skip_trigram"], ["--preset", "induction-finite", "--batch-size", "100"],
    ["--task", "digit_addition", "--n-digits", "x"], ["--task", "skip_trigram", "--dropout", "0.1"],
    # the memory estimate covers every task: refused in one line, not in the allocator
    ["--task", "skip_trigram", "--n-train", "1000000000000"], ["--task", "skip_trigram", "--seq-len", "1000000000"],
    ["--preset", "induction-infinite", "--batch-size", "1000000000"], ["--task", "skip-trigram", "--d-model", "1000000"],
])
def test_bad_input_is_one_line_exit_2(argv, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
