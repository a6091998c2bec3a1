import random

import pytest
import torch

from grokscope.config import Config, ConfigError, check_batchable, preset
from grokscope.tasks.modular import labels_for, make_dataset, split_indices


@pytest.mark.parametrize("kw,field", [
    ({"p": 2}, "p"), ({"frac_train": 0.0}, "frac_train"), ({"frac_train": 1.5}, "frac_train"),
    ({"d_model": 130}, "d_model"), ({"task": "divide"}, "task"), ({"split": "x"}, "split"),
    ({"dropout": 1.0}, "dropout"), ({"act": "tanh"}, "act"), ({"epochs": 0}, "epochs"),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ConfigError) as e:
        Config(**kw).validate()
    msg = str(e.value)
    assert msg.startswith(field + "=") and "\n" not in msg


def test_presets():
    assert preset("mainline") == Config()
    m = Config()
    assert (m.p, m.frac_train, m.d_model, m.n_heads, m.d_mlp, m.lr, m.weight_decay, m.epochs) == \
        (113, 0.3, 128, 4, 512, 1e-3, 1.0, 40000)
    assert (m.beta1, m.beta2, m.warmup, m.checkpoint_every) == (0.9, 0.98, 10, 100)
    with pytest.raises(ConfigError, match="preset"):
        preset("nope")


def test_batchable_only_per_model_fields():
    check_batchable([Config(seed=0), Config(seed=1, frac_train=0.5, weight_decay=0.0)])
    with pytest.raises(ConfigError, match="d_mlp"):
        check_batchable([Config(), Config(d_mlp=256)])


def test_config_roundtrip():
    c = Config(seed=3, task="multiply")
    assert Config.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown"):
        Config.from_dict({"bogus": 1})


@pytest.mark.parametrize("op,fn", [
    ("add", lambda a, b, p: (a + b) % p), ("subtract", lambda a, b, p: (a - b) % p),
    ("multiply", lambda a, b, p: (a * b) % p), ("x2xyy2", lambda a, b, p: (a * a + a * b + b * b) % p)])
def test_labels(op, fn):
    p = 11
    y = labels_for(op, p)
    for a in range(p):
        for b in range(p):
            assert y[a * p + b] == fn(a, b, p)


def test_random_op_is_seeded_control():
    y0, y1 = labels_for("random", 13, 0), labels_for("random", 13, 1)
    assert torch.equal(y0, labels_for("random", 13, 0)) and not torch.equal(y0, y1)
    assert int(y0.min()) >= 0 and int(y0.max()) < 13


def test_authors_split_is_their_python_shuffle():
    p, frac, seed = 13, 0.3, 7
    pairs = [(i, j, p) for i in range(p) for j in range(p)]
    random.seed(seed)
    random.shuffle(pairs)
    n = int(frac * len(pairs))
    train, test = split_indices(p, frac, seed, "authors")
    assert [(i // p, i % p) for i in train.tolist()] == [(a, b) for a, b, _ in pairs[:n]]
    assert [(i // p, i % p) for i in test.tolist()] == [(a, b) for a, b, _ in pairs[n:]]


def test_split_partitions_and_is_seeded():
    for split in ("authors", "random"):
        tr, te = split_indices(113, 0.3, 0, split)
        assert len(tr) == int(0.3 * 113 * 113) == 3830 and len(te) == 113 * 113 - 3830
        assert torch.equal(torch.sort(torch.cat([tr, te])).values, torch.arange(113 * 113))
        assert torch.equal(tr, split_indices(113, 0.3, 0, split)[0])
        assert not torch.equal(tr, split_indices(113, 0.3, 1, split)[0])


def test_dataset_tokens():
    ds = make_dataset(Config(p=5, frac_train=1.0))
    assert ds.tokens.shape == (25, 3) and bool((ds.tokens[:, 2] == 5).all())
    assert ds.tokens[7].tolist() == [1, 2, 5] and len(ds.test_idx) == 0


def test_config_is_validated_at_construction():
    with pytest.raises(ConfigError, match="^p=2 is invalid"):
        Config(p=2)
    with pytest.raises(ConfigError, match="^lr=-1"):
        Config().replace(lr=-1.0)
    with pytest.raises(ConfigError, match="^frac_train="):
        Config.from_dict({**Config().to_dict(), "frac_train": 0.0})
    with pytest.raises(ConfigError, match="^seed="):
        Config(seed="3")  # a string is not an integer


def test_cli_types_come_from_the_field_types():
    from grokscope.cli.train import FIELD_TYPES, _conv

    assert FIELD_TYPES["p"] is int and FIELD_TYPES["lr"] is float and FIELD_TYPES["task"] is str
    assert _conv(FIELD_TYPES["data_seed"], "data_seed", "none") is None
    assert _conv(FIELD_TYPES["data_seed"], "data_seed", "7") == 7
    assert _conv(FIELD_TYPES["lr"], "lr", "1e-3") == 1e-3 and _conv(FIELD_TYPES["task"], "task", "add") == "add"
    with pytest.raises(ConfigError, match="^data_seed='x' is invalid: must be an integer"):
        _conv(FIELD_TYPES["data_seed"], "data_seed", "x")
    with pytest.raises(ConfigError, match="^lr='fast' is invalid: must be a number"):
        _conv(FIELD_TYPES["lr"], "lr", "fast")
