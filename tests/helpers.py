from __future__ import annotations

from pathlib import Path

from grokscope.config import Config

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def tiny_config(**overrides) -> Config:
    """p = 7, d_model = 8, one layer: forward and backward take milliseconds."""
    kw = dict(p=7, d_model=8, n_heads=2, d_mlp=16, frac_train=0.5, epochs=40, test_every=5, checkpoint_every=10)
    kw.update(overrides)
    return Config(**kw).validate()
