"""Modular arithmetic tasks: the full p x p table of inputs, labels and a seeded train/test split.

Inputs are the three tokens ``a b =`` with ``=`` the token id ``p``. Pairs are indexed ``i = a * p + b``
(a-major), so reshaping any per-pair tensor to ``(p, p)`` gives an ``[a, b]`` grid.
"""

from __future__ import annotations

import random as _pyrandom
from dataclasses import dataclass

import torch

from ..config import Config


def labels_for(op: str, p: int, seed: int = 0) -> torch.Tensor:
    """The answer ``(a op b) mod p`` for every pair, shape ``(p*p,)`` int64, a-major."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if op == "add":
        y = a + b
    elif op == "subtract":
        y = a - b
    elif op == "multiply":
        y = a * b
    elif op == "x2xyy2":
        y = a * a + a * b + b * b
    elif op == "random":  # control: a fixed random label per pair
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, p, (p * p,), generator=g)
    else:  # pragma: no cover - validated by Config
        raise ValueError(f"op={op!r}")
    return torch.remainder(y, p)


def split_indices(p: int, frac_train: float, seed: int, split: str = "authors") -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (into the a-major pair list) of the train and test pairs.

    ``authors``: exactly the paper code's split -- ``random.seed(seed); random.shuffle(pairs)`` over
    ``[(i, j) for i in range(p) for j in range(p)]``, the first ``int(frac_train * p * p)`` are train.
    ``random``: ``torch.randperm(p*p)`` from a generator seeded with ``seed``, same count.
    """
    n = p * p
    n_train = int(frac_train * n)
    if split == "authors":
        order = list(range(n))
        rng = _pyrandom.Random(seed)  # same stream as random.seed(seed); random.shuffle(...)
        rng.shuffle(order)
        perm = torch.tensor(order, dtype=torch.long)
    elif split == "random":
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"split={split!r}")
    return perm[:n_train].clone(), perm[n_train:].clone()


@dataclass(frozen=True)
class Dataset:
    """All p*p inputs of one task with their split."""

    p: int
    tokens: torch.Tensor  # (p*p, 3) int64: a, b, '='
    labels: torch.Tensor  # (p*p,) int64
    train_idx: torch.Tensor  # (n_train,)
    test_idx: torch.Tensor  # (n_test,)

    @property
    def a(self) -> torch.Tensor:
        return self.tokens[:, 0]

    @property
    def b(self) -> torch.Tensor:
        return self.tokens[:, 1]

    def train_mask(self) -> torch.Tensor:
        m = torch.zeros(self.p * self.p, dtype=torch.bool)
        m[self.train_idx] = True
        return m


def all_tokens(p: int) -> torch.Tensor:
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    return torch.stack([a, b, torch.full_like(a, p)], dim=1)


def make_dataset(cfg: Config) -> Dataset:
    train_idx, test_idx = split_indices(cfg.p, cfg.frac_train, cfg.split_seed, cfg.split)
    return Dataset(cfg.p, all_tokens(cfg.p), labels_for(cfg.op, cfg.p, cfg.split_seed), train_idx, test_idx)
