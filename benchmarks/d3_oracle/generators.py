"""Candidate data generators for two Appendix D.3 tasks of Nanda et al. (ICLR 2023), checked against the authors'
saved models (``score.py``, ``FINDINGS.md``).

Standalone: pure torch, no grokscope import. Every generator is ``make(n, g) -> Examples`` with ``g`` a
``torch.Generator``; ``Examples`` has grokscope's shape (``src/grokscope/seqtasks.py``): ``tokens (n, T)`` int64,
``targets (n, T)`` int64 (0 where not scored) and a bool ``mask (n, T)``. The logit at position ``t`` is scored
against ``targets[:, t]`` where ``mask[:, t]``; every example of a generator has the same number of scored positions.

Induction (repeated subsequence; the authors' ``data_config``: seq_len 85, subseq_len 16, num_repeats 3,
vocab 128). What the authors' weights and optimiser state fix (FINDINGS.md):

* position 0 holds a BOS token 0, and token 0 occurs nowhere else (``W_E[:, 0]`` equals ``W_pos[0]``, cos 0.99998:
  the two only ever receive the same gradient); the other tokens are 1..127, all used alike (per-token gradient
  RMS in Adam's ``exp_avg_sq`` is flat over 1..127);
* three segments of 28 positions (0-27, 28-55, 56-84), one copy of the 16-token subsequence in each; positions 28
  and 56 are "segment starts" (``W_pos[28]`` and ``W_pos[56]`` have cos 1.00 with each other and 0.86-0.88 with
  ``W_E[0]``; they are attention sinks of the layer-0 heads), never inside a copy;
* copy k starts at ``28 k + U{1..12}`` (the per-position gradient RMS of ``W_pos`` in Adam's state: copy-1 keys
  ramp 1 -> 10, plateau, ramp 22 -> 27, with p = 1 and p = 27 equal, as a 16-token copy with a start in 1..12).

The remaining difference is the token content. The one property found that matters: **no token repeats inside a
sequence except through the copies** (each sequence drawn from a random permutation of 1..127). It brings the
finite model's loss on the 32 tokens of copies 2-3 from 2.50 to 1.72 (30 induction tokens: 1.62 -> 0.83); the
infinite model gains little (2.05 -> 1.87). ``induction_periodic`` (a subsequence that repeats a 2- or 3-token
unit) is kept only as a reference: it is the only family found on which the infinite model gets near its
recorded 0.30, and it is not a plausible reading of the paper.

Skip trigram: the authors' files hold loss curves only (no model), so there is no oracle for the data; the
generators here are the ones whose training timing was probed (FINDINGS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Examples", "INDUCTION", "SKIP_TRIGRAM", "induction", "skip_trigram"]


@dataclass
class Examples:
    tokens: torch.Tensor  # (n, T) int64
    targets: torch.Tensor  # (n, T) int64, 0 where not scored
    mask: torch.Tensor  # (n, T) bool, the scored positions

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, idx) -> "Examples":
        return Examples(self.tokens[idx], self.targets[idx], self.mask[idx])


def _scored(tokens: torch.Tensor, target_pos: torch.Tensor) -> Examples:
    """Position ``p - 1`` predicts the token at ``p`` for every ``p`` in ``target_pos (n, k)``."""
    targets = torch.zeros_like(tokens)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    targets.scatter_(1, target_pos - 1, tokens.gather(1, target_pos))
    mask.scatter_(1, target_pos - 1, True)
    return Examples(tokens, targets, mask)


def _permutations(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``n`` independent random permutations of ``1..k`` (one per row)."""
    return torch.argsort(torch.rand(n, k, generator=g), dim=1) + 1


# ---------------------------------------------------------------------------------------------- induction
SEQ_LEN, SUBSEQ_LEN, NUM_REPEATS, VOCAB, SEGMENT, BOS = 85, 16, 3, 128, 28, 0


def induction(n: int, g: torch.Generator, *, offsets: tuple[int, int] = (1, 12),
              first_copy: tuple[int, int] | None = None, distinct: bool = True, score_first: bool = True,
              period: int | None = None) -> Examples:
    """BOS (token 0) at position 0, then tokens 1..127; the subsequence (16 tokens) is copied once into each of the
    three 28-position segments, copy ``k`` starting at ``28 k + U{offsets}`` (drawn independently per copy;
    ``first_copy`` overrides the range of copy 1).

    ``distinct``: the sequence's tokens come from a random permutation of 1..127 (subsequence = its first 16,
    filler = the next 84), so a token repeats only through the copies; otherwise all tokens are i.i.d. uniform.
    ``score_first``: score all 32 tokens of copies 2 and 3 (the first token of each copy included, unpredictable);
    otherwise the 30 tokens an induction head can predict. ``period``: reference only, the subsequence repeats a
    ``period``-token unit."""
    L, T = SUBSEQ_LEN, SEQ_LEN
    if distinct:
        perm = _permutations(n, VOCAB - 1, g)
        sub = perm[:, :L].clone()
        tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), perm[:, L: L + T - 1]], 1)
    else:
        tokens = torch.randint(1, VOCAB, (n, T), generator=g)
        sub = torch.randint(1, VOCAB, (n, L), generator=g)
    tokens[:, 0] = BOS
    if period is not None:
        sub = sub[:, :period].repeat(1, L // period + 1)[:, :L]
    ranges = [first_copy or offsets] + [offsets] * (NUM_REPEATS - 1)
    starts = torch.stack([SEGMENT * k + torch.randint(lo, hi + 1, (n,), generator=g)
                          for k, (lo, hi) in enumerate(ranges)], 1)
    pos = starts[:, :, None] + torch.arange(L)  # (n, R, L)
    tokens.scatter_(1, pos.reshape(n, -1), sub.repeat(1, NUM_REPEATS))
    target_pos = pos[:, 1:, :] if score_first else pos[:, 1:, 1:]
    return _scored(tokens, target_pos.reshape(n, -1))


def induction_grokscope(n: int, g: torch.Generator) -> Examples:
    """grokscope's generator at the time of this study (``seqtasks.repeated_subsequence``): tokens 0..127, no BOS,
    the 37 free tokens split into 4 uniformly random gaps around the 3 copies, the 30 induction tokens scored."""
    L, R, T = SUBSEQ_LEN, NUM_REPEATS, SEQ_LEN
    free = T - R * L
    tokens = torch.randint(0, VOCAB, (n, T), generator=g)
    sub = torch.randint(0, VOCAB, (n, L), generator=g)
    cuts = torch.sort(torch.randint(0, free + 1, (n, R), generator=g), dim=1).values
    pos = (cuts + L * torch.arange(R))[:, :, None] + torch.arange(L)
    tokens.scatter_(1, pos.reshape(n, -1), sub.repeat(1, R))
    return _scored(tokens, pos[:, 1:, 1:].reshape(n, -1))


#: name -> generator, in the order of FINDINGS.md's table (``best``: the generator this study recommends)
INDUCTION: dict[str, Callable[[int, torch.Generator], Examples]] = {
    "grokscope-current": induction_grokscope,
    "segments-iid-32": lambda n, g: induction(n, g, distinct=False),
    "segments-iid-30": lambda n, g: induction(n, g, distinct=False, score_first=False),
    "best = segments-distinct-32": lambda n, g: induction(n, g),
    "segments-distinct-30": lambda n, g: induction(n, g, score_first=False),
    "segments-distinct-32, copy 1 at 5..9": lambda n, g: induction(n, g, first_copy=(5, 9)),
    "reference: period-3 subsequence, 32": lambda n, g: induction(n, g, period=3),
    "reference: period-2 subsequence, 32": lambda n, g: induction(n, g, period=2),
}


# ---------------------------------------------------------------------------------------------- skip trigram
def skip_trigram(n: int, g: torch.Generator, *, seq_len: int = 200, bos: bool = False,
                 big_at_last: bool = True) -> Examples:
    """``seq_len`` tokens from 0..9, one of them (at a uniform position; never the last one when ``big_at_last`` is
    False) replaced by a uniform token from 10..19; the last position predicts that token minus 10 (10 classes).
    ``bos``: a token 20 is prepended (d_vocab 21; the sequence is then ``seq_len + 1`` long)."""
    tokens = torch.randint(0, 10, (n, seq_len), generator=g)
    where = torch.randint(0, seq_len if big_at_last else seq_len - 1, (n, 1), generator=g)
    big = torch.randint(10, 20, (n, 1), generator=g)
    tokens.scatter_(1, where, big)
    if bos:
        tokens = torch.cat([torch.full((n, 1), 20, dtype=torch.long), tokens], 1)
    targets = torch.zeros_like(tokens)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    targets[:, -1] = big[:, 0] - 10
    mask[:, -1] = True
    return Examples(tokens, targets, mask)


SKIP_TRIGRAM: dict[str, Callable[[int, torch.Generator], Examples]] = {
    "grokscope-current (T=200)": lambda n, g: skip_trigram(n, g),
    "T=10": lambda n, g: skip_trigram(n, g, seq_len=10),
    "T=200, BOS 20": lambda n, g: skip_trigram(n, g, bos=True),
    "T=200, big token never last": lambda n, g: skip_trigram(n, g, big_at_last=False),
}
