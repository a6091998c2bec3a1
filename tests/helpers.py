from __future__ import annotations

import os
from pathlib import Path

import pytest

from grokscope.config import Config

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def need_reference(name: str) -> Path:
    """An authors' checkpoint from ../shared/reference beside the checkout: skips when it is absent, unless
    GROKSCOPE_REQUIRE_REFERENCE=1 (set by .ci/run), so that CI cannot pass by skipping."""
    f = REFERENCE / name
    if not f.is_file():
        if os.environ.get("GROKSCOPE_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"GROKSCOPE_REQUIRE_REFERENCE=1 but the authors' checkpoint {f} is missing")
        pytest.skip(f"authors' reference checkpoint {f} not present (../shared/reference beside the checkout)")
    return f


def tiny_config(**overrides) -> Config:
    """p = 7, d_model = 8, one layer: forward and backward take milliseconds."""
    kw = dict(p=7, d_model=8, n_heads=2, d_mlp=16, frac_train=0.5, epochs=40, test_every=5, checkpoint_every=10)
    kw.update(overrides)
    return Config(**kw)


def assert_close_tree(got, want, *, rtol: float, atol: float, path: str = "", skip: tuple[str, ...] = ()):
    """Compare two JSON trees: ints, strings, bools and None exactly; floats to ``rtol * max(|a|, |b|) + atol``
    (``atol``: the float noise of the inputs' magnitude, so near-zero values are not held to their own size).
    Lists named ``*_top``/``top_terms`` (largest entries of a map, ``{"a", "b", "value"}``) are compared by
    their sorted magnitudes, and by name only for entries clear of the noise, since ties order arbitrarily.
    ``skip``: paths (prefixes) whose values are determined by float noise (e.g. a ratio to a zero)."""
    if any(path == s or path.startswith(s + ".") or path.startswith(s + "[") for s in skip):
        return
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (path, set(got) ^ set(want))
        for k in want:
            assert_close_tree(got[k], want[k], rtol=rtol, atol=atol, path=f"{path}.{k}".lstrip("."), skip=skip)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        name = path.rsplit(".", 1)[-1].split("[")[0]
        if (name.endswith("_top") or name == "top_terms") and want and isinstance(want[0], (list, dict)):
            if isinstance(want[0], list):  # one list per head
                for i, (g, w) in enumerate(zip(got, want)):
                    assert_close_tree(g, w, rtol=rtol, atol=atol, path=f"{path}[{i}]", skip=skip)
                return
            mg = sorted(abs(t["value"]) for t in got)
            mw = sorted(abs(t["value"]) for t in want)
            assert_close_tree(mg, mw, rtol=rtol, atol=atol, path=path + "|magnitudes")
            clear = lambda ts: {(t["a"], t["b"]) for t in ts if abs(t["value"]) > 1e3 * atol}  # noqa: E731
            assert clear(got) == clear(want), (path, got, want)
            return
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close_tree(g, w, rtol=rtol, atol=atol, path=f"{path}[{i}]", skip=skip)
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        assert abs(got - want) <= rtol * max(abs(got), abs(want)) + atol, (path, got, want)
    else:
        assert got == want, (path, got, want)


def tiny(task: str, **kw) -> Config:
    """A tiny config of a sampled task (one layer unless given): 32 train and 40 test examples, 30 steps."""
    base = dict(task=task, n_train=32, n_test=40, d_model=16, n_heads=2, n_layers=1, epochs=30, test_every=5,
                checkpoint_every=10)
    if task.replace("_", "-") == "repeated-subsequence":
        base |= dict(seq_len=20, subseq_len=4, num_repeats=3, vocab=12)
    if task.replace("_", "-") == "digit-addition":
        base |= dict(n_digits=3, d_mlp=32)
    return Config(**{**base, **kw})


def train_examples(cfg: Config):
    return cfg.make_task().train_set()


def held_out(cfg: Config):
    return cfg.make_task().test_set()


def same_tensor(a, b) -> bool:
    """Bitwise equal: dtype, shape and bytes."""
    return a.dtype == b.dtype and a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()


def assert_resumed_bitwise(straight, resumed, dir_a: Path, dir_b: Path) -> None:
    """A run trained straight through (in ``dir_a``) and one stopped and resumed (``dir_b``) agree bitwise: every
    checkpoint's parameters, the metrics, and every tensor of the final ``state.pt``."""
    import pandas as pd
    import torch

    for e in straight.checkpoint_epochs:
        pa, pb = straight.stacked_params(e), resumed.stacked_params(e)
        assert all(torch.equal(pa[k], pb[k]) for k in pa), e
    pd.testing.assert_frame_equal(straight.metrics, resumed.metrics)
    sa = torch.load(Path(dir_a) / "state.pt", weights_only=True)
    sb = torch.load(Path(dir_b) / "state.pt", weights_only=True)
    assert sa.keys() == sb.keys() and [k for k in sa if not same_tensor(sa[k], sb[k])] == []
