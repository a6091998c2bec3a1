"""5-digit addition (Appendix D.3, Fig 29): ``a4 a3 a2 a1 a0 + b4 .. b0 = s5 s4 .. s0``, most significant digit
first, ``+`` = token 10, ``=`` = token 11 (``d_vocab`` 12, ``n_ctx`` 18 = 5 + 1 + 5 + 1 + 6, 10 output classes).

The positions ``=`` and ``s5 .. s1`` predict the 6 sum digits (teacher forcing), the last position predicts nothing.
The authors' files fix the sizes but not the order or the separators: this format is the one their saved model
reads (99.6% of sum digits right on our examples; most-significant-first and these two separator ids are the only
choice that works, ``tests/test_tasks.py``). With >= 10**10 possible inputs a collision between the train and the
test set among a few thousand examples has probability ~2e-4, so they are not deduplicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks as ck
from .base import Examples, Sampled, Task, option

PLUS, EQUALS = 10, 11  # the separators


@dataclass(frozen=True)
class DigitAdditionOptions(Sampled):
    n_digits: int = option(5, "digits of each summand")

    def check(self) -> None:
        super().check()
        ck.integer("n_digits", self.n_digits, lo=1, hi=18)


class DigitAddition(Task):
    name = "digit-addition"
    summary = "n-digit addition, the sum's digits predicted one by one (Appendix D.3, Fig 29)"
    Options = DigitAdditionOptions
    defaults = {"d_mlp": 512, "epochs": 5000}
    tiny = {"n_digits": 2, "n_train": 16, "n_test": 16}

    #: the authors' saved runs of this task (``../shared/reference``): infinite data? -> (file, the paper's figure)
    reference = {False: ("5_digit_addition_finite.pth", "Fig 30"), True: ("5_digit_addition_infinite.pth", "Fig 29")}
    reference_per_token = "5_digit_addition_infinite_per_token.pth"

    @property
    def d_vocab(self) -> int:
        return 12

    @property
    def n_ctx(self) -> int:
        return 3 * self.options.n_digits + 3

    @property
    def n_out(self) -> int:
        return 10

    @property
    def n_scored(self) -> int:
        return self.options.n_digits + 1

    def draw(self, n: int, g: torch.Generator) -> Examples:
        nd, T = self.options.n_digits, self.n_ctx
        place = 10 ** torch.arange(nd, -1, -1)  # 10**nd .. 1: the nd + 1 digits of the sum, most significant first
        a = torch.randint(0, 10, (n, nd), generator=g)
        b = torch.randint(0, 10, (n, nd), generator=g)
        s = ((a + b) * place[1:]).sum(1)  # a + b as a number
        digits = (s[:, None] // place) % 10  # (n, nd + 1)
        sep = lambda t: torch.full((n, 1), t, dtype=torch.long)  # noqa: E731
        tokens = torch.cat([a, sep(PLUS), b, sep(EQUALS), digits], 1)
        targets = torch.zeros(n, T, dtype=torch.long)
        mask = torch.zeros(n, T, dtype=torch.bool)
        targets[:, 2 * nd + 1: T - 1] = digits  # '=' predicts the first sum digit, s_k the next one
        mask[:, 2 * nd + 1: T - 1] = True
        return Examples(tokens, targets, mask)
