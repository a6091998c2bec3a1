"""Skip trigram (Appendix D.3, Fig 33-34): ``seq_len`` tokens from 0..9, one of them, at a uniform position,
replaced by a uniform token from 10..19; the last position predicts that token minus 10 (10 classes: the authors'
initial loss is ~ln 10).

The paper is silent on the length: the default 10 generalises at once on 512 fixed examples; the presets use 200,
the length at which the finite run memorises before it generalises, as in Fig 34 (a scan of 10, 20, 50, 100, 200:
test/train loss at most 2.5-2.7 up to 50 tokens, 559 at 100, ~1e5 at 200).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks as ck
from .base import Examples, Sampled, Task, option


@dataclass(frozen=True)
class SkipTrigramOptions(Sampled):
    seq_len: int = option(10, "sequence length")

    def check(self) -> None:
        super().check()
        ck.integer("seq_len", self.seq_len, lo=2)


class SkipTrigram(Task):
    name = "skip-trigram"
    summary = "the one big token anywhere in the sequence, read at the last position (Appendix D.3, Fig 33)"
    Options = SkipTrigramOptions
    defaults = {"d_mlp": 0, "epochs": 5000}
    tiny = {"seq_len": 6, "n_train": 16, "n_test": 16}

    reference = {False: ("skip_trigram_finite.pth", "Fig 34"), True: ("skip_trigram_infinite.pth", "Fig 33")}
    attention_probe = "skip-trigram"

    @property
    def d_vocab(self) -> int:
        return 20

    @property
    def n_ctx(self) -> int:
        return self.options.seq_len

    @property
    def n_out(self) -> int:
        return 10

    @property
    def n_scored(self) -> int:
        return 1

    def draw(self, n: int, g: torch.Generator) -> Examples:
        T = self.options.seq_len
        tokens = torch.randint(0, 10, (n, T), generator=g)
        where = torch.randint(0, T, (n, 1), generator=g)
        big = torch.randint(10, 20, (n, 1), generator=g)
        tokens.scatter_(1, where, big)
        targets = torch.zeros(n, T, dtype=torch.long)
        mask = torch.zeros(n, T, dtype=torch.bool)
        targets[:, -1] = big[:, 0] - 10
        mask[:, -1] = True
        return Examples(tokens, targets, mask)
