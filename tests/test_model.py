import math

import pytest
import torch

from grokscope.config import ModelConfig
from grokscope.model.transformer import Transformer, from_authors_state_dict, init_params, param_shapes
from grokscope.tasks.modular import all_tokens

CFG = ModelConfig(d_vocab=8, n_ctx=3, d_model=8, n_heads=2, d_mlp=16, n_layers=1)


def test_shapes_and_names():
    m = Transformer(CFG, seed=0)
    sd = m.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == param_shapes(CFG)
    assert set(sd) == {"W_E", "W_pos", "blocks.0.attn.W_Q", "blocks.0.attn.W_K", "blocks.0.attn.W_V",
                       "blocks.0.attn.W_O", "blocks.0.mlp.W_in", "blocks.0.mlp.b_in", "blocks.0.mlp.W_out",
                       "blocks.0.mlp.b_out", "W_U"}
    toks = all_tokens(7)
    logits, cache = m.run_with_cache(toks)
    assert logits.shape == (49, 3, 8) and m.answer_logits(toks).shape == (49, 7)
    assert cache["blocks.0.attn.hook_pattern"].shape == (49, 2, 3, 3)
    assert cache["blocks.0.mlp.hook_post"].shape == (49, 3, 16)
    assert cache["blocks.0.hook_resid_post"].shape == (49, 3, 8)
    assert "hook_embed" in m.hook_names
    # causal: position 0 attends only to itself
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"][:, :, 0, 0], torch.ones(49, 2))


def test_hooks_are_scoped_and_can_intervene():
    from grokscope.model.hooks import hooks
    m = Transformer(CFG, seed=0)
    toks = all_tokens(7)
    base = m(toks)
    with hooks(m, [("blocks.0.hook_mlp_out", lambda x, h: torch.zeros_like(x))]):
        ablated = m(toks)
    assert not torch.allclose(base, ablated)
    assert torch.equal(m(toks), base)  # hook removed
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())


def _authors_init(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """The authors' Transformer.__init__, written out: global RNG, their layouts and draw order."""
    torch.manual_seed(seed)
    D, V, H, dh, M = cfg.d_model, cfg.d_vocab, cfg.n_heads, cfg.d_head, cfg.d_mlp
    sd = {"embed.W_E": torch.randn(D, V) / math.sqrt(D), "pos_embed.W_pos": torch.randn(cfg.n_ctx, D) / math.sqrt(D)}
    sd["blocks.0.attn.W_K"] = torch.randn(H, dh, D) / math.sqrt(D)
    sd["blocks.0.attn.W_Q"] = torch.randn(H, dh, D) / math.sqrt(D)
    sd["blocks.0.attn.W_V"] = torch.randn(H, dh, D) / math.sqrt(D)
    sd["blocks.0.attn.W_O"] = torch.randn(D, H * dh) / math.sqrt(D)
    sd["blocks.0.mlp.W_in"] = torch.randn(M, D) / math.sqrt(D)
    sd["blocks.0.mlp.b_in"] = torch.zeros(M)
    sd["blocks.0.mlp.W_out"] = torch.randn(D, M) / math.sqrt(D)
    sd["blocks.0.mlp.b_out"] = torch.zeros(D)
    sd["unembed.W_U"] = torch.randn(D, V) / math.sqrt(V)
    return sd


def _authors_forward(sd, tokens, n_heads):
    """The authors' forward (their einsums and layouts) for one block."""
    x = torch.einsum("dbp->bpd", sd["embed.W_E"][:, tokens]) + sd["pos_embed.W_pos"][: tokens.shape[1]]
    k = torch.einsum("ihd,bpd->biph", sd["blocks.0.attn.W_K"], x)
    q = torch.einsum("ihd,bpd->biph", sd["blocks.0.attn.W_Q"], x)
    v = torch.einsum("ihd,bpd->biph", sd["blocks.0.attn.W_V"], x)
    scores = torch.einsum("biph,biqh->biqp", k, q)
    mask = torch.tril(torch.ones(3, 3))
    scores = torch.tril(scores) - 1e10 * (1 - mask)
    attn = torch.softmax(scores / math.sqrt(k.shape[-1]), dim=-1)
    z = torch.einsum("biph,biqp->biqh", v, attn)
    z = z.permute(0, 2, 1, 3).reshape(z.shape[0], z.shape[2], -1)
    x = x + torch.einsum("df,bqf->bqd", sd["blocks.0.attn.W_O"], z)
    h = torch.relu(torch.einsum("md,bpd->bpm", sd["blocks.0.mlp.W_in"], x) + sd["blocks.0.mlp.b_in"])
    x = x + torch.einsum("dm,bpm->bpd", sd["blocks.0.mlp.W_out"], h) + sd["blocks.0.mlp.b_out"]
    return x @ sd["unembed.W_U"]


def test_init_is_the_authors():
    theirs = _authors_init(CFG, 5)
    ours = init_params(CFG, 5)
    for k, v in from_authors_state_dict(theirs).items():
        assert torch.equal(ours[k], v), k
    # and the converted model computes what the authors' forward computes
    m = Transformer(CFG, seed=5)
    toks = all_tokens(7)
    assert torch.allclose(m(toks), _authors_forward(theirs, toks, 2), atol=1e-5)


def test_unit_embed_init_draws_the_same_numbers_with_W_E_unscaled():
    scaled, unit = init_params(CFG, 5), init_params(CFG, 5, embed_init="unit")
    assert scaled.keys() == unit.keys()
    for k in scaled:
        if k == "W_E":
            torch.testing.assert_close(unit[k], scaled[k] * math.sqrt(CFG.d_model), rtol=1e-6, atol=0)
        else:
            assert torch.equal(unit[k], scaled[k]), k
    with pytest.raises(ValueError, match="embed_init"):
        init_params(CFG, 5, embed_init="nope")


def test_induction_preset_starts_at_the_authors_initial_loss():
    """The authors' induction runs start at loss 5.04-5.07 (their first train losses, both files); ln 128 = 4.85
    is where a scaled W_E starts. The preset (embed_init unit) must land on theirs, the scaled init must not."""
    from grokscope.config import preset
    from grokscope.training.trainer import Trainer

    def first_loss(**kw):
        tr = Trainer([preset("repeated-subsequence-infinite", epochs=1, **kw)]).fit()
        return tr.metrics["train_loss"][0, 0].item()

    assert 4.95 < first_loss() < 5.2
    assert abs(first_loss(embed_init="scaled") - math.log(128)) < 0.05
