"""Repeated subsequence, the induction task (Appendix D.3, Fig 31): sequences of ``seq_len`` 85 tokens of
``vocab`` 128 in which one random subsequence of ``subseq_len`` 16 tokens appears ``num_repeats`` 3 times. The
authors' ``data_config`` gives these sizes, not the placement; two layouts:

* ``layout="segments"`` (the presets'), rebuilt from the authors' saved models (``benchmarks/d3_oracle``,
  docs/results/records/d3-data-oracle.md): position 0 holds a beginning-of-sequence token 0 that occurs nowhere
  else; the other positions form ``num_repeats`` segments of ``(seq_len - 1) // num_repeats`` positions (28: 1-28,
  29-56, 57-84 after the BOS; the last takes any rest), copy ``k`` starting at a uniform offset ``1 ..
  segment - subseq_len`` into segment ``k`` (positions ``28 k + U{1..12}``); every token of a sequence is distinct
  except through the copies (the subsequence and the filler are one random permutation of ``1 .. vocab - 1``);
  scored: every token of copies 2 and later, the first one of each copy included (32 per sequence).
* ``layout="uniform"`` (grokscope's first reading, kept for the runs made with it): i.i.d. tokens ``0 .. vocab -
  1``, the copies at random non-overlapping places (the other tokens split into ``num_repeats + 1`` random gaps,
  every split equally likely), scored: the tokens an induction head can predict from the token before them (the
  copies' tokens after their first: 30 per sequence).

Output classes: the ``vocab`` tokens.
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
    layout: str = option("uniform", "where the copies sit and what is scored: segments (BOS, one copy per segment, "
                                    "distinct tokens: the authors' data as their models show it; the presets') | "
                                    "uniform (i.i.d. tokens, copies anywhere)")

    def check(self) -> None:
        super().check()
        ck.integer("seq_len", self.seq_len, lo=2)
        ck.integer("subseq_len", self.subseq_len, lo=1)
        ck.integer("num_repeats", self.num_repeats, lo=1)
        ck.integer("vocab", self.vocab, lo=2)
        if self.num_repeats < 2:
            raise ConfigError(f"num_repeats={self.num_repeats} is invalid: must be >= 2 (a repeat to predict)")
        ck.choice("layout", self.layout, LAYOUTS)
        if self.layout == "uniform" and self.num_repeats * self.subseq_len > self.seq_len:
            raise ConfigError(f"seq_len={self.seq_len} is invalid: must be >= num_repeats * subseq_len = "
                              f"{self.num_repeats * self.subseq_len}")
        if self.layout == "segments":
            seg = (self.seq_len - 1) // self.num_repeats
            if seg - self.subseq_len < 1:
                raise ConfigError(f"seq_len={self.seq_len} is invalid with layout 'segments': each of the "
                                  f"{self.num_repeats} segments after the BOS needs >= subseq_len + 1 = "
                                  f"{self.subseq_len + 1} positions (seq_len >= {1 + self.num_repeats * (self.subseq_len + 1)})")
            if self.vocab - 1 < self.subseq_len + self.seq_len - 1:
                raise ConfigError(f"vocab={self.vocab} is invalid with layout 'segments': its tokens 1..vocab-1 must "
                                  f"hold the subsequence and the filler distinct (vocab >= subseq_len + seq_len = "
                                  f"{self.subseq_len + self.seq_len})")


LAYOUTS = ("uniform", "segments")
BOS = 0


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
        return (o.num_repeats - 1) * (o.subseq_len - (o.layout == "uniform"))

    def draw(self, n: int, g: torch.Generator) -> Examples:
        o = self.options
        if o.layout == "segments":
            return self._draw_segments(n, g)
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

    def _draw_segments(self, n: int, g: torch.Generator) -> Examples:
        o = self.options
        T, L, R, V = o.seq_len, o.subseq_len, o.num_repeats, o.vocab
        seg = (T - 1) // R
        perm = torch.argsort(torch.rand(n, V - 1, generator=g), dim=1) + 1  # a permutation of 1..V-1 per sequence
        sub = perm[:, :L]
        tokens = torch.cat([torch.full((n, 1), BOS, dtype=torch.long), perm[:, L: L + T - 1]], 1)
        starts = torch.stack([seg * k + torch.randint(1, seg - L + 1, (n,), generator=g) for k in range(R)], 1)
        pos = starts[:, :, None] + torch.arange(L)  # (n, R, L)
        tokens.scatter_(1, pos.reshape(n, -1), sub.repeat(1, R))
        pred = (pos[:, 1:, :] - 1).reshape(n, -1)  # position p - 1 predicts the token at p, every copy token scored
        targets = torch.zeros(n, T, dtype=torch.long)
        mask = torch.zeros(n, T, dtype=torch.bool)
        targets.scatter_(1, pred, tokens.gather(1, pred + 1))
        mask.scatter_(1, pred, True)
        return Examples(tokens, targets, mask)
