"""The modular arithmetic tasks (the paper's §3 and Appendix C.2): ``add``, ``subtract``, ``multiply``, ``x2xyy2``
(``a^2 + ab + b^2``) and ``random`` (a fixed random label per pair, the control), for any prime-or-not ``p``.

Inputs are the three tokens ``a b =`` with ``=`` the token id ``p``; the answer is read at the last position
(``n_scored`` 1; the unembedding has ``p + 1`` classes, as the authors' model). All ``p * p`` pairs exist once; a
seeded split sends ``frac_train`` of them to the train set (:func:`split_indices`). Pairs are indexed
``i = a * p + b`` (a-major), so reshaping any per-pair tensor to ``(p, p)`` gives an ``[a, b]`` grid.
"""

from __future__ import annotations

import random as _pyrandom
from dataclasses import dataclass

import torch

from .. import checks as ck
from .base import Examples, Options, Task, option

OPS = ("add", "subtract", "multiply", "x2xyy2", "random")
SPLITS = ("authors", "random")


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


def make_dataset(cfg) -> Dataset:
    """The dataset of a modular-task :class:`grokscope.config.Config`."""
    return cfg.make_task().dataset()


@dataclass(frozen=True)
class ModularOptions(Options):
    p: int = option(113, "modulus; inputs are the tokens 'a b =' with '=' = token id p")
    frac_train: float = option(0.3, "fraction of the p*p pairs used for training, in (0, 1]")
    split: str = option("authors", "train/test split: authors (Python random.shuffle, as the paper's code) | "
                                   "random (torch.randperm)")
    per_model = ("frac_train",)

    def check(self) -> None:
        ck.integer("p", self.p, lo=3)
        ck.number("frac_train", self.frac_train, lo=0, hi=1, lo_open=True)
        ck.choice("split", self.split, SPLITS)
        if int(self.frac_train * self.p * self.p) < 1:
            raise ck.bad("frac_train", self.frac_train,
                         f"large enough that at least one of the {self.p * self.p} pairs is in the train set")


class Modular(Task):
    """``(a op b) mod p`` for every pair; subclasses name the operation."""

    Options = ModularOptions
    pair_form = True
    tiny = {"p": 7, "frac_train": 0.6}
    op: str = "add"

    @property
    def d_vocab(self) -> int:
        return self.options.p + 1

    @property
    def n_ctx(self) -> int:
        return 3

    @property
    def n_scored(self) -> int:
        return 1

    @property
    def infinite(self) -> bool:
        return False

    @property
    def batch_size(self) -> None:
        return None  # full batch, as the paper

    def dataset(self) -> Dataset:
        """The p*p table with its split (made once per task object: the train and the test set share it)."""
        if getattr(self, "_dataset", None) is None:
            o = self.options
            train_idx, test_idx = split_indices(o.p, o.frac_train, self.data_seed, o.split)
            self._dataset = Dataset(o.p, all_tokens(o.p), labels_for(self.op, o.p, self.data_seed), train_idx,
                                    test_idx)
        return self._dataset

    def _examples(self, which: str) -> Examples:
        ds = self.dataset()
        idx = ds.train_idx if which == "train" else ds.test_idx
        tokens = ds.tokens[idx]
        targets = torch.zeros_like(tokens)
        targets[:, 2] = ds.labels[idx]
        mask = torch.zeros(tokens.shape, dtype=torch.bool)
        mask[:, 2] = True
        return Examples(tokens, targets, mask)

    def train_set(self) -> Examples:
        return self._examples("train")

    def test_set(self) -> Examples:
        return self._examples("test")

    def n_examples(self) -> tuple[int, int]:
        pairs = self.options.p ** 2
        n = int(self.options.frac_train * pairs)
        return n, pairs - n


def _op(name: str, doc: str) -> type[Modular]:
    return type(name.capitalize(), (Modular,), {"name": name, "op": name, "summary": doc, "__doc__": doc})


Add = _op("add", "(a + b) mod p: the paper's task (§3)")
Subtract = _op("subtract", "(a - b) mod p (Appendix C.2)")
Multiply = _op("multiply", "(a * b) mod p (Appendix C.2)")
X2xyy2 = _op("x2xyy2", "(a^2 + ab + b^2) mod p (Appendix C.2)")
Random = _op("random", "a fixed random label per pair (a control: nothing to generalise)")
