"""Repeated subsequence, the induction task (Appendix D.3, Fig 31): ``seq_len`` 85 uniform tokens of ``vocab`` 128 in
which one random subsequence of ``subseq_len`` 16 tokens appears ``num_repeats`` 3 times, at random
non-overlapping places (the 37 other tokens are split into 4 random gaps, every split equally likely).

The authors' ``data_config`` gives the sizes, not the placement. Scored: the positions whose *next* token is in
repeat 2 or later *and* is not that repeat's first token, i.e. the tokens an induction head can predict from the
token before them (30 per sequence). Output classes: the ``vocab`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks as ck
from ..checks import ConfigError
from .base import Examples, Sampled, Task, option


@dataclass(frozen=True)
class RepeatedSubsequenceOptions(Sampled):
    seq_len: int = option(85, "sequence length")
    subseq_len: int = option(16, "length of the repeated subsequence")
    num_repeats: int = option(3, "times it appears")
    vocab: int = option(128, "vocabulary size")

    def check(self) -> None:
        super().check()
        ck.integer("seq_len", self.seq_len, lo=2)
        ck.integer("subseq_len", self.subseq_len, lo=1)
        ck.integer("num_repeats", self.num_repeats, lo=1)
        ck.integer("vocab", self.vocab, lo=2)
        if self.num_repeats < 2:
            raise ConfigError(f"num_repeats={self.num_repeats} is invalid: must be >= 2 (a repeat to predict)")
        if self.num_repeats * self.subseq_len > self.seq_len:
            raise ConfigError(f"seq_len={self.seq_len} is invalid: must be >= num_repeats * subseq_len = "
                              f"{self.num_repeats * self.subseq_len}")


class RepeatedSubsequence(Task):
    name = "repeated-subsequence"
    summary = "a random subsequence repeated in random tokens: induction heads (Appendix D.3, Fig 31)"
    Options = RepeatedSubsequenceOptions
    defaults = {"d_model": 48, "d_mlp": 0, "n_layers": 2, "epochs": 5000}
    tiny = {"seq_len": 12, "subseq_len": 3, "num_repeats": 3, "vocab": 10, "n_train": 16, "n_test": 16}

    reference = {False: ("induction_head_finite.pth", "Fig 32"), True: ("induction_head_infinite.pth", "Fig 31")}
    attention_probe = "induction"

    @property
    def d_vocab(self) -> int:
        return self.options.vocab

    @property
    def n_ctx(self) -> int:
        return self.options.seq_len

    @property
    def n_scored(self) -> int:
        o = self.options
        return (o.num_repeats - 1) * (o.subseq_len - 1)

    def draw(self, n: int, g: torch.Generator) -> Examples:
        o = self.options
        T, L, R, V = o.seq_len, o.subseq_len, o.num_repeats, o.vocab
        free = T - R * L  # tokens outside the repeats
        tokens = torch.randint(0, V, (n, T), generator=g)
        sub = torch.randint(0, V, (n, L), generator=g)
        # a uniform split of the free tokens into R + 1 gaps: R sorted draws from 0..free (stars and bars)
        cuts = torch.sort(torch.randint(0, free + 1, (n, R), generator=g), dim=1).values
        starts = cuts + L * torch.arange(R)  # (n, R): start of each repeat
        pos = starts[:, :, None] + torch.arange(L)  # (n, R, L)
        tokens.scatter_(1, pos.reshape(n, -1), sub.repeat(1, R))
        # position pos - 1 predicts the token at pos, for repeats 2.. and offsets 1..L-1
        pred = (pos[:, 1:, 1:] - 1).reshape(n, -1)
        targets = torch.zeros(n, T, dtype=torch.long)
        mask = torch.zeros(n, T, dtype=torch.bool)
        targets.scatter_(1, pred, tokens.gather(1, pred + 1))
        mask.scatter_(1, pred, True)
        return Examples(tokens, targets, mask)
