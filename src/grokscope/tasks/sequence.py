"""The paper's three other algorithmic tasks (Appendix D.3), finite or infinite data: a small registry.

Each task makes ``Examples``: ``tokens (n, n_ctx)``, ``targets (n, n_ctx)`` and a loss ``mask (n, n_ctx)``. The
model's logits at position ``t`` are scored against ``targets[:, t]`` where ``mask[:, t]`` holds; every example
of a task has the same number of scored positions (``Task.n_scored``), so "the k-th predicted token" is well
defined (the per-token losses of Fig 29 bottom).

* ``digit_addition`` (5-digit addition): ``a4 a3 a2 a1 a0 + b4 .. b0 = s5 s4 .. s0``, most significant digit
  first, ``+`` = token 10, ``=`` = token 11 (``d_vocab`` 12, ``n_ctx`` 18 = 5 + 1 + 5 + 1 + 6, 10 output
  classes). The positions ``=`` and ``s5 .. s1`` predict the 6 sum digits (teacher forcing), the last position
  predicts nothing. The authors' files fix the sizes but not the order or the separators: this format is the one
  their saved model reads (99.6% of sum digits right on our examples; most-significant-first and these two
  separator ids are the only choice that works, ``tests/test_seqtasks.py``).
* ``repeated_subsequence`` (induction): ``seq_len`` 85 uniform tokens of ``vocab`` 128 in which one random
  subsequence of ``subseq_len`` 16 tokens appears ``num_repeats`` 3 times, at random non-overlapping places (the
  37 other tokens are split into 4 random gaps, every split equally likely). The authors' ``data_config`` gives the
  sizes, not the placement. Scored: the positions whose *next* token is in repeat 2 or later *and* is not that
  repeat's first token, i.e. the tokens an induction head can predict from the token before them (30 per
  sequence). Output classes: the 128 tokens.
* ``skip_trigram``: ``seq_len`` tokens (default 10, the paper is silent; the two presets use 200, the length
  at which the finite run memorises before it generalises, as in Fig 34; at 10 it generalises at once) from 0..9,
  one of them, at a uniform position,
  replaced by a uniform token from 10..19. The last position predicts that token minus 10 (10 classes: the
  authors' initial loss is ~ln 10).

Finite data: ``n_train`` examples drawn once from ``data_seed``; infinite (``n_train`` None): ``batch_size``
fresh examples every step from a ``torch.Generator`` whose state is checkpointed (:mod:`grokscope.train.seqrun`).
The test set is ``n_test`` examples from a third stream of the same seed, the same for the finite and the
infinite run of a task. Train and test are not deduplicated: with >= 10**10 possible inputs a collision among
a few thousand examples has probability < 1e-3 (digit addition: ~2e-4; the other two far less).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .. import checks as ck
from ..checks import ConfigError
from ..config import ACTS, ModelConfig, Serialisable
from ..config import field_with_help as _f
from ..config import field_help as config_field_help

TASKS = ("digit_addition", "repeated_subsequence", "skip_trigram")
PLUS, EQUALS = 10, 11  # digit addition's separators


@dataclass
class Examples:
    tokens: torch.Tensor  # (n, n_ctx) int64
    targets: torch.Tensor  # (n, n_ctx) int64, 0 where not scored
    mask: torch.Tensor  # (n, n_ctx) bool: the scored positions

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, idx) -> "Examples":
        return Examples(self.tokens[idx], self.targets[idx], self.mask[idx])




@dataclass(frozen=True)
class SeqConfig(Serialisable):
    """One training run on an Appendix D.3 task. Defaults: the paper's mainline hyperparameters (lr 1e-3, weight
    decay 1, AdamW betas (0.9, 0.98), 10 warm-up steps, d_model 128, 4 heads), the skip-trigram task."""

    task: str = _f("skip_trigram", "task: " + " | ".join(TASKS))
    n_train: int | None = _f(512, "examples of the fixed train set; none (inf): fresh examples every step")
    n_test: int = _f(1000, "examples of the fixed held-out test set")
    batch_size: int | None = _f(None, "examples per step; none: the whole train set (full batch; infinite data "
                                      "needs a number). A finite set of n_train = k * batch_size is k fixed "
                                      "batches, taken in turn")
    data_seed: int | None = _f(None, "seed of the data (train set or stream, test set); default: seed")
    # --- task shape
    n_digits: int = _f(5, "digit_addition: digits of each summand")
    seq_len: int | None = _f(None, "sequence length: repeated_subsequence 85, skip_trigram 10 when none")
    subseq_len: int = _f(16, "repeated_subsequence: length of the repeated subsequence")
    num_repeats: int = _f(3, "repeated_subsequence: times it appears")
    vocab: int = _f(128, "repeated_subsequence: vocabulary size")
    # --- model
    n_layers: int = _f(1, "number of blocks")
    d_model: int = _f(128, "residual stream width")
    n_heads: int = _f(4, "attention heads; d_head = d_model / n_heads")
    d_mlp: int = _f(0, "MLP hidden units; 0: attention-only blocks")
    act: str = _f("relu", "MLP activation: relu | gelu")
    # --- training
    seed: int = _f(0, "seed of the initialisation (and of the data unless data_seed is set)")
    epochs: int = _f(5000, "optimizer steps (one epoch of a finite set split into k batches is k steps)")
    lr: float = _f(1e-3, "AdamW learning rate")
    weight_decay: float = _f(1.0, "AdamW (decoupled) weight decay")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.98, "AdamW beta2")
    eps: float = _f(1e-8, "AdamW epsilon")
    warmup: int = _f(10, "linear warm-up steps: lr * min(step / warmup, 1)")
    test_every: int = _f(10, "evaluate on the test set every N steps")
    checkpoint_every: int = _f(100, "save a checkpoint every N steps")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "SeqConfig":
        ck.choice("task", self.task, TASKS)
        if self.n_train is not None:
            ck.integer("n_train", self.n_train, lo=1)
        for name in ("n_test", "n_layers", "d_model", "n_heads", "epochs", "test_every", "checkpoint_every",
                     "n_digits", "subseq_len", "num_repeats"):
            ck.integer(name, getattr(self, name), lo=1)
        ck.integer("n_digits", self.n_digits, lo=1, hi=18)
        ck.integer("vocab", self.vocab, lo=2)
        ck.integer("d_mlp", self.d_mlp, lo=0)
        ck.integer("warmup", self.warmup, lo=0)
        ck.choice("act", self.act, ACTS)
        ck.seed("seed", self.seed)
        if self.data_seed is not None:
            ck.seed("data_seed", self.data_seed)
        if self.batch_size is not None:
            ck.integer("batch_size", self.batch_size, lo=1)
        if self.n_train is None and self.batch_size is None:
            raise ConfigError("batch_size=None is invalid with n_train=inf: infinite data needs a batch size")
        if self.n_train is not None and self.batch_size is not None and self.n_train % self.batch_size:
            raise ConfigError(f"batch_size={self.batch_size} is invalid: must divide n_train={self.n_train} "
                              "(the train set is n_train / batch_size fixed batches)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} is invalid: must be divisible by n_heads={self.n_heads}")
        if self.seq_len is not None:
            ck.integer("seq_len", self.seq_len, lo=2)
        if self.task == "repeated_subsequence" and self.num_repeats * self.subseq_len > self.ctx_len:
            raise ConfigError(f"seq_len={self.ctx_len} is invalid: must be >= num_repeats * subseq_len = "
                              f"{self.num_repeats * self.subseq_len}")
        if self.task == "repeated_subsequence" and self.num_repeats < 2:
            raise ConfigError(f"num_repeats={self.num_repeats} is invalid: must be >= 2 (a repeat to predict)")
        for name in ("lr", "eps"):
            ck.number(name, getattr(self, name), lo=0, lo_open=True)
        ck.number("weight_decay", self.weight_decay, lo=0)
        ck.number("beta1", self.beta1, lo=0, hi=1, hi_open=True)
        ck.number("beta2", self.beta2, lo=0, hi=1, hi_open=True)
        return self

    # ------------------------------------------------------------------ derived
    @property
    def infinite(self) -> bool:
        return self.n_train is None

    @property
    def split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def ctx_len(self) -> int:
        if self.task == "digit_addition":
            return 3 * self.n_digits + 3
        return self.seq_len if self.seq_len is not None else {"repeated_subsequence": 85, "skip_trigram": 10}[self.task]

    @property
    def step_batch(self) -> int:
        """Examples per step."""
        return self.batch_size if self.batch_size is not None else self.n_train  # type: ignore[return-value]

    @property
    def model_config(self) -> ModelConfig:
        vocab_in, n_out = {"digit_addition": (12, 10), "repeated_subsequence": (self.vocab, self.vocab),
                           "skip_trigram": (20, 10)}[self.task]
        return ModelConfig(vocab_in, self.ctx_len, self.d_model, self.n_heads, self.d_mlp, self.n_layers, self.act,
                           d_out=None if n_out == vocab_in else n_out)

    @property
    def task_spec(self) -> "Task":
        return TASK_REGISTRY[self.task](self)

def field_help() -> dict[str, str]:
    return config_field_help(SeqConfig)


# ---------------------------------------------------------------------- the tasks
@dataclass(frozen=True)
class Task:
    """A task's generator: ``make(n, generator) -> Examples``; ``n_scored`` positions scored per example."""

    name: str
    n_scored: int
    make: Callable[[int, torch.Generator], Examples]


def digit_addition(cfg: SeqConfig) -> Task:
    nd = cfg.n_digits
    T = 3 * nd + 3
    place = 10 ** torch.arange(nd, -1, -1)  # 10**nd .. 1: the nd + 1 digits of the sum, most significant first

    def make(n: int, g: torch.Generator) -> Examples:
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

    return Task("digit_addition", nd + 1, make)


def repeated_subsequence(cfg: SeqConfig) -> Task:
    T, L, R, V = cfg.ctx_len, cfg.subseq_len, cfg.num_repeats, cfg.vocab
    free = T - R * L  # tokens outside the repeats

    def make(n: int, g: torch.Generator) -> Examples:
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

    return Task("repeated_subsequence", (R - 1) * (L - 1), make)


def skip_trigram(cfg: SeqConfig) -> Task:
    T = cfg.ctx_len

    def make(n: int, g: torch.Generator) -> Examples:
        tokens = torch.randint(0, 10, (n, T), generator=g)
        where = torch.randint(0, T, (n, 1), generator=g)
        big = torch.randint(10, 20, (n, 1), generator=g)
        tokens.scatter_(1, where, big)
        targets = torch.zeros(n, T, dtype=torch.long)
        mask = torch.zeros(n, T, dtype=torch.bool)
        targets[:, -1] = big[:, 0] - 10
        mask[:, -1] = True
        return Examples(tokens, targets, mask)

    return Task("skip_trigram", 1, make)


TASK_REGISTRY: dict[str, Callable[[SeqConfig], Task]] = {
    "digit_addition": digit_addition, "repeated_subsequence": repeated_subsequence, "skip_trigram": skip_trigram}


def _generator(seed: int, stream: int) -> torch.Generator:
    """Stream 0: the train set, 1: the test set, 2: the infinite train stream (independent seeds of one seed)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 7919 * (stream + 1)) % 2**64)


def make_train_set(cfg: SeqConfig) -> Examples | None:
    """The fixed train set (None for infinite data)."""
    return None if cfg.infinite else cfg.task_spec.make(cfg.n_train, _generator(cfg.split_seed, 0))


def make_test_set(cfg: SeqConfig) -> Examples:
    return cfg.task_spec.make(cfg.n_test, _generator(cfg.split_seed, 1))


def stream_generator(cfg: SeqConfig) -> torch.Generator:
    """The generator of the infinite stream, at its start; its state goes into ``state.pt``."""
    return _generator(cfg.split_seed, 2)


# ---------------------------------------------------------------------- presets: the paper's six runs
_DIGIT = {"task": "digit_addition", "d_model": 128, "n_heads": 4, "d_mlp": 512, "n_layers": 1}
_INDUCTION = {"task": "repeated_subsequence", "d_model": 48, "n_heads": 4, "d_mlp": 0, "n_layers": 2,
              "beta2": 0.999, "batch_size": 128, "seed": 1}
# 200 tokens: the length at which 512 fixed examples give Fig 34's train/test divergence (a scan of 10, 20, 50,
# 100, 200: test/train loss at most 2.5-2.7 up to 50 tokens, 559 at 100, ~1e5 at 200; README "Other tasks")
_SKIP = {"task": "skip_trigram", "d_model": 128, "n_heads": 4, "d_mlp": 0, "n_layers": 1, "seq_len": 200}

#: ``grokscope train --preset NAME``: the authors' six runs of Appendix D.3, their step counts (README "Other
#: tasks"). Infinite runs take as many fresh examples per step as the finite set has per batch (the authors'
#: files do not record it except for induction: 128).
SEQ_PRESETS: dict[str, dict[str, Any]] = {
    "digit-addition-finite": {**_DIGIT, "n_train": 700, "epochs": 18053, "checkpoint_every": 500},
    "digit-addition-infinite": {**_DIGIT, "n_train": None, "batch_size": 700, "epochs": 6000},
    "induction-finite": {**_INDUCTION, "n_train": 512, "epochs": 285820, "test_every": 40, "checkpoint_every": 4000},
    "induction-infinite": {**_INDUCTION, "n_train": None, "epochs": 6000},
    "skip-trigram-finite": {**_SKIP, "n_train": 512, "epochs": 5000},
    "skip-trigram-infinite": {**_SKIP, "n_train": None, "batch_size": 512, "epochs": 3000},
}


def seq_preset(name: str, **overrides: Any) -> SeqConfig:
    if name not in SEQ_PRESETS:
        raise ConfigError(f"preset={name!r} is invalid: must be one of {', '.join(SEQ_PRESETS)}")
    return SeqConfig(**{**SEQ_PRESETS[name], **overrides})
