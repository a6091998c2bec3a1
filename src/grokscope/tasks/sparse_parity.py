"""Sparse parity (Barak et al. 2022, "Hidden progress in deep learning: SGD learns parities near the computational
limit"): ``n_bits`` uniform bits, the label is the parity of a fixed secret subset of ``k`` of them. Not in the
paper: the task that shows how a task is added (one file and its registry line; docs "Adding a task").

Tokens: the bits (token ids 0 and 1) and then ``=`` (token 2); the answer (0 or 1) is read at ``=``. The secret
subset is drawn from the data seed (stream 3), so the models of a seed sweep each have their own. On a fixed train
set the model may memorise first and find the parity much later: grokking (Merrill et al. 2023 study the same task).
The preset ``sparse-parity`` (20 bits, k 3, 400 fixed examples, the paper's model and optimiser, seed 1) memorises at
step 539 and passes 99% test accuracy at 5,725; with seed 0 the same config generalises at once (step 425), and
with 600 or 1,000 examples both seeds generalise 15-25 steps after memorising: whether it groks depends on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks as ck
from ..checks import ConfigError
from .base import Examples, Sampled, Task, generator, option


@dataclass(frozen=True)
class SparseParityOptions(Sampled):
    n_bits: int = option(30, "input bits")
    k: int = option(3, "bits in the secret subset whose parity is the label")

    def check(self) -> None:
        super().check()
        ck.integer("n_bits", self.n_bits, lo=1, hi=10_000)
        ck.integer("k", self.k, lo=1)
        if self.k > self.n_bits:
            raise ConfigError(f"k={self.k} is invalid: must be <= n_bits={self.n_bits}")


class SparseParity(Task):
    name = "sparse-parity"
    summary = "the parity of k secret bits among n (Barak et al. 2022): a task beyond the paper"
    Options = SparseParityOptions
    defaults = {"epochs": 3000}
    tiny = {"n_bits": 6, "k": 2, "n_train": 16, "n_test": 16}

    @property
    def d_vocab(self) -> int:
        return 3

    @property
    def n_ctx(self) -> int:
        return self.options.n_bits + 1

    @property
    def n_out(self) -> int:
        return 2

    @property
    def n_scored(self) -> int:
        return 1

    def secret(self) -> torch.Tensor:
        """The ``k`` bit positions whose parity is the label (sorted)."""
        o = self.options
        return torch.randperm(o.n_bits, generator=generator(self.data_seed, 3))[: o.k].sort().values

    def draw(self, n: int, g: torch.Generator) -> Examples:
        T = self.n_ctx
        bits = torch.randint(0, 2, (n, T - 1), generator=g)
        tokens = torch.cat([bits, torch.full((n, 1), 2, dtype=torch.long)], 1)
        targets = torch.zeros(n, T, dtype=torch.long)
        mask = torch.zeros(n, T, dtype=torch.bool)
        targets[:, -1] = bits[:, self.secret()].sum(1) % 2
        mask[:, -1] = True
        return Examples(tokens, targets, mask)
