"""What a task is: the :class:`Task` interface every task implements, its :class:`Options` (the config fields that
belong to the task) and the :class:`Examples` it makes.

A task says what a model of it reads and predicts (``d_vocab`` input tokens, ``n_ctx`` positions, ``n_out`` output
classes), which positions are scored (``n_scored`` per example, the same for every example, so that "the k-th
predicted token" is defined), and where its examples come from: a fixed train set and a fixed test set (finite
data, optionally split into fixed minibatches), or a fixed test set and fresh examples every step (infinite data).
The model's logits at position ``t`` are scored against ``targets[:, t]`` where ``mask[:, t]`` holds.

Seeds: the data of a task comes from one seed (``Config.data_seed``, default the model's seed) through independent
streams (:func:`generator`): 0 the train set, 1 the test set, 2 the infinite stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from .. import checks as ck
from ..checks import ConfigError


def option(default: Any, help: str) -> Any:
    """A config field whose ``help`` is its CLI flag's help."""
    return field(default=default, metadata={"help": help})


@dataclass
class Examples:
    """``tokens (n, n_ctx)`` int64, ``targets (n, n_ctx)`` int64 (0 where not scored), ``mask (n, n_ctx)`` bool."""

    tokens: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, idx) -> "Examples":
        return Examples(self.tokens[idx], self.targets[idx], self.mask[idx])

    def to(self, device: torch.device | str) -> "Examples":
        return Examples(self.tokens.to(device), self.targets.to(device), self.mask.to(device))


@dataclass(frozen=True)
class Options:
    """A task's own config fields (none here; each task subclasses it). ``per_model``: the fields that may differ
    between the models of one batched run. :meth:`check` raises a one-line ConfigError naming the field."""

    per_model: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Validate every field (ConfigError naming it)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Sampled(Options):
    """The fields of a task whose examples are sampled: a fixed train set of ``n_train`` examples (or fresh ones
    every step), a fixed test set, and the examples per step."""

    n_train: int | None = option(512, "examples of the fixed train set; none (inf): fresh examples every step")
    n_test: int = option(1000, "examples of the fixed held-out test set")
    batch_size: int | None = option(None, "examples per step; none: the whole train set (full batch; infinite data "
                                          "needs a number). A finite set of n_train = k * batch_size is k fixed "
                                          "batches, taken in turn")

    def check(self) -> None:
        if self.n_train is not None:
            ck.integer("n_train", self.n_train, lo=1)
        ck.integer("n_test", self.n_test, lo=1)
        if self.batch_size is not None:
            ck.integer("batch_size", self.batch_size, lo=1)
        if self.n_train is None and self.batch_size is None:
            raise ConfigError("batch_size=None is invalid with n_train=inf: infinite data needs a batch size")
        if self.n_train is not None and self.batch_size is not None and self.n_train % self.batch_size:
            raise ConfigError(f"batch_size={self.batch_size} is invalid: must divide n_train={self.n_train} "
                              "(the train set is n_train / batch_size fixed batches)")


def generator(seed: int, stream: int) -> torch.Generator:
    """Stream 0: the train set, 1: the test set, 2: the infinite train stream (independent seeds of one seed)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 7919 * (stream + 1)) % 2**64)


class Task:
    """A task with its options and data seed. Subclasses set the class attributes and implement :meth:`draw`
    (sampled tasks) or override :meth:`train_set` / :meth:`test_set` (tasks with a fixed table, the modular ones).

    Class attributes: ``name`` (the registry key), ``Options`` (its config fields), ``summary`` (one line for
    listings), ``tiny`` (options of a seconds-long run), ``defaults`` (values of :class:`grokscope.config.Config` fields this task uses unless given: its
    model shape and step count), ``exclusive`` (Config fields that cannot apply to it, with the reason).
    ``pair_form``: every example is ``a b =`` scored at the last position only (the modular tasks), which the
    one-layer table path of :mod:`grokscope.fast` computes without running the positions. ``reference``,
    ``reference_per_token``, ``attention_probe``: what the report overlays and probes."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    summary: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: options of a seconds-long run of this task: the conformance tests and ``grokscope experiment --tiny``
    tiny: ClassVar[dict[str, Any]] = {}
    pair_form: ClassVar[bool] = False
    #: the authors' saved runs of this task in ``../shared/reference``: infinite data? -> (file, the paper's figure)
    reference: ClassVar[dict[bool, tuple[str, str]]] = {}
    #: the authors' per-token loss curve (digit addition, Fig 29 bottom), if they published one
    reference_per_token: ClassVar[str | None] = None
    #: the attention mechanism the report scores heads by: "induction" (previous-token and induction heads),
    #: "skip-trigram" (attention to the one big token), or None
    attention_probe: ClassVar[str | None] = None

    def __init__(self, options: Options, data_seed: int = 0):
        self.options = options
        self.data_seed = int(data_seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r}, data_seed={self.data_seed})"

    # ------------------------------------------------------------------ the model's interface
    @property
    def d_vocab(self) -> int:
        raise NotImplementedError

    @property
    def n_ctx(self) -> int:
        raise NotImplementedError

    @property
    def n_out(self) -> int:
        """Output classes (default: the input vocabulary)."""
        return self.d_vocab

    @property
    def n_scored(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    @property
    def infinite(self) -> bool:
        """Fresh examples every step (no fixed train set)."""
        return getattr(self.options, "n_train", 0) is None

    @property
    def batch_size(self) -> int | None:
        """Examples per step; None: the whole train set."""
        return getattr(self.options, "batch_size", None)

    def draw(self, n: int, g: torch.Generator) -> Examples:
        """``n`` fresh examples from ``g``."""
        raise NotImplementedError

    def train_set(self) -> Examples | None:
        """The fixed train set (None for infinite data)."""
        o = self.options
        return None if self.infinite else self.draw(o.n_train, generator(self.data_seed, 0))

    def test_set(self) -> Examples:
        return self.draw(self.options.n_test, generator(self.data_seed, 1))

    def stream(self) -> torch.Generator:
        """The generator of the infinite stream, at its start (its state goes into ``state.pt``)."""
        return generator(self.data_seed, 2)

    def n_examples(self) -> tuple[int, int]:
        """``(train, test)`` examples (train: per step for infinite data), without making them: the memory
        estimate reads these."""
        o = self.options
        return (o.n_train if o.n_train is not None else o.batch_size), o.n_test

    def check_config(self, cfg: Any) -> None:
        """Refuse, in one line, config fields that cannot apply to this task (here: dropout, which acts on the
        MLP neurons of the answer position of the ``a b =`` tasks, Appendix D.1)."""
        if getattr(cfg, "dropout", 0) and not self.pair_form:
            raise ConfigError(f"dropout={cfg.dropout} is invalid for task {self.name}: dropout acts on the MLP "
                              "neurons of the answer of the modular tasks (Appendix D.1) only; use 0")
