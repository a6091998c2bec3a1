"""TransformerLens export and import (issue #16): logits and cached activations equal on all p*p inputs.

Skipped with a message when TransformerLens is absent, unless GROKSCOPE_REQUIRE_TL=1 (set by .ci/run)."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from grokscope.model import export
from grokscope.checks import ConfigError
from grokscope.model.transformer import Transformer
from grokscope.tasks.modular import make_dataset
from helpers import need_reference, tiny_config

HOOKS = ("hook_embed", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z", "blocks.0.mlp.hook_post",
         "blocks.0.hook_resid_post")


def need_tl():
    try:
        import transformer_lens  # noqa: F401
    except ImportError:
        if os.environ.get("GROKSCOPE_REQUIRE_TL") == "1":
            pytest.fail("GROKSCOPE_REQUIRE_TL=1 but TransformerLens is not installed (pip install 'grokscope[tl]')")
        pytest.skip("TransformerLens not installed (pip install 'grokscope[tl]')")


def _tiny():
    cfg = tiny_config()
    return Transformer(cfg.model_config, seed=3).eval(), make_dataset(cfg).tokens


def _max_scaled_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over the float32 noise of the values' magnitude (1 = one part in 1e6 of the largest value)."""
    return float((a - b).abs().max() / (1e-6 * max(float(b.abs().max()), 1.0)))


def check_equal(ours: Transformer, tl, tokens: torch.Tensor) -> float:
    """Logits and the cached activations of HOOKS equal (to float32 noise); returns the max abs logit diff."""
    with torch.no_grad():
        want, cache = ours.run_with_cache(tokens, names=list(HOOKS))
        got, tl_cache = tl.run_with_cache(tokens)
    assert got.shape == want.shape
    assert _max_scaled_diff(got, want) <= 10
    for h in HOOKS:
        assert tl_cache[h].shape == cache[h].shape, h
        assert _max_scaled_diff(tl_cache[h], cache[h]) <= 10, h
    return float((got - want).abs().max())


def test_tiny_model_exports_with_equal_logits_and_activations():
    need_tl()
    ours, tokens = _tiny()
    check_equal(ours, export.to_transformer_lens(ours), tokens)


def test_the_comparison_could_fail():
    """A perturbed weight is seen in the logits and in blocks.0.mlp.hook_post."""
    need_tl()
    ours, tokens = _tiny()
    tl = export.to_transformer_lens(ours)
    with torch.no_grad():
        ours.blocks[0].mlp.W_in[0, 0] += 0.05
    with pytest.raises(AssertionError):
        check_equal(ours, tl, tokens)


def test_mainline_model_round_trips(tmp_path):
    """The paper's architecture (p = 113, a trained model of the authors'): export to a file, load into
    TransformerLens, back into grokscope; logits on all p*p inputs equal to 1e-5."""
    need_tl()
    from grokscope.model.authors import load_authors_model

    ours, _ = load_authors_model(need_reference("low_precision_mod_addition.pth"))
    tokens = make_dataset(tiny_config(p=113, d_model=128, n_heads=4, d_mlp=512)).tokens
    f = export.save(ours, tmp_path / "m.pt")
    tl = export.load_transformer_lens(f)
    check_equal(ours, tl, tokens)
    # Its logits reach ~254, where one float32 step is 1.5e-5: 1e-5 absolute is below float32's resolution. What
    # holds: TransformerLens's logits are as close to the float64 truth as ours are (measured: both 1.7e-4 from it,
    # 9.2e-5 from each other, on x86 with AVX-512).
    with torch.no_grad():
        truth = copy.deepcopy(ours).double()(tokens)
        err_ours = float((ours(tokens).double() - truth).abs().max())
        err_tl = float((tl(tokens).double() - truth).abs().max())
    assert err_tl <= 2 * err_ours + 1e-6 * float(truth.abs().max()), (err_tl, err_ours)
    back = export.from_transformer_lens(tl)
    with torch.no_grad():
        assert torch.equal(back(tokens), ours(tokens))


def test_grokking_demo_state_dict_loads_into_grokscope():
    """The 3.x Grokking demo's layout (d_vocab_out = p, zero biases): the answer logits are equal."""
    need_tl()
    ours, tokens = _tiny()
    cfg, sd = export.hooked_state_dict(ours)
    p = ours.cfg.p
    sd["unembed.W_U"], sd["unembed.b_U"] = sd["unembed.W_U"][:, :p], sd["unembed.b_U"][:p]
    back = export.from_transformer_lens({"model": sd, "config": {**cfg, "d_vocab_out": p}})
    tl = export.build({**cfg, "d_vocab_out": p}, sd)
    with torch.no_grad():
        assert torch.equal(back.answer_logits(tokens), ours.answer_logits(tokens))
        assert _max_scaled_diff(tl(tokens)[:, -1], ours.answer_logits(tokens)) <= 10


def test_bad_transformer_lens_models_are_one_line():
    ours, _ = _tiny()
    _, sd = export.hooked_state_dict(ours)
    with pytest.raises(ConfigError, match="blocks.0.attn.b_Q is invalid"):
        export.from_transformer_lens({**sd, "blocks.0.attn.b_Q": torch.ones(2, 4)})
    with pytest.raises(ConfigError, match="d_vocab_out=3 is invalid"):
        export.from_transformer_lens({**sd, "unembed.W_U": sd["unembed.W_U"][:, :3]})
    for name in ("ln_final.w", "blocks.0.ln2.weight"):
        with pytest.raises(ConfigError, match=f"LayerNorm weights \\({name}\\)"):
            export.from_transformer_lens({**sd, name: torch.ones(8)})
    with pytest.raises(ConfigError, match="no unembed.W_U"):
        export.from_transformer_lens({k: v for k, v in sd.items() if k != "unembed.W_U"})
    # non-finite weights, a missing or wrong-shape tensor: one line each, never a raw RuntimeError / KeyError
    with pytest.raises(ConfigError, match="blocks.0.mlp.W_out has non-finite weights"):
        export.from_transformer_lens({**sd, "blocks.0.mlp.W_out": torch.full_like(sd["blocks.0.mlp.W_out"], float("nan"))})
    with pytest.raises(ConfigError, match="missing blocks.0.attn.W_K"):
        export.from_transformer_lens({k: v for k, v in sd.items() if k != "blocks.0.attn.W_K"})
    with pytest.raises(ConfigError, match="wrong shapes: blocks.0.mlp.b_in"):
        export.from_transformer_lens({**sd, "blocks.0.mlp.b_in": torch.zeros(3)})


def test_loading_a_foreign_file_is_one_line(tmp_path):
    f = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, f)
    with pytest.raises(ConfigError, match="not a file of `grokscope export`"):
        export.load_transformer_lens(f)


def test_cli_export_and_run_method(tmp_path, capsys):
    from fuzz_cli import TINY

    from grokscope import Run
    from grokscope.cli import main

    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--no-progress"] + TINY) == 0
    before = sorted(p.name for p in out.rglob("*"))
    f = tmp_path / "m.pt"
    assert main(["export", str(out), "--epoch", "10", "--to", "transformer-lens", "--out", str(f)]) == 0
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written into the run
    obj = torch.load(f, weights_only=True)
    run = Run.load(out)
    back = export.from_transformer_lens(obj)
    tokens = run.dataset().tokens
    with torch.no_grad():
        assert torch.equal(back(tokens), run.model(10)(tokens))
    capsys.readouterr()
    for args, field in ((["--to", "onnx"], "to="), (["--epoch", "7", "--to", "transformer-lens"], "epoch=7"),
                        (["--model", "3", "--to", "transformer-lens"], "model=3")):
        assert main(["export", str(out), *args, "--out", str(tmp_path / "x.pt")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "x.pt").exists()
    need_tl()
    check_equal(run.model(), run.to_transformer_lens(), tokens)


def test_an_ablation_by_hook_name_is_the_same_in_transformer_lens():
    """Zero-ablating blocks.0.mlp.hook_post through TransformerLens's run_with_hooks gives our ablated logits."""
    need_tl()
    from grokscope.model.hooks import hooks

    ours, tokens = _tiny()
    tl = export.to_transformer_lens(ours)
    zero = lambda act, hook: torch.zeros_like(act)  # noqa: E731
    with torch.no_grad():
        with hooks(ours, [("blocks.0.mlp.hook_post", zero)]):
            want = ours(tokens)
        got = tl.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", zero)])
        plain = ours(tokens)
    assert _max_scaled_diff(got, want) <= 10
    assert _max_scaled_diff(plain, want) > 1e3  # the ablation changed something
