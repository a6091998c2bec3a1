"""Configuration: the one place where defaults live.

A run trains K >= 1 models of the same shape as one batched computation. Each model has its own
:class:`Config`; the fields listed in :data:`PER_MODEL_FIELDS` may differ between the models of a
run, every other field must be equal. Every field doubles as a CLI flag (``--frac-train`` for
``frac_train``); the ``help`` metadata is what ``grokscope train --help`` prints.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from . import checks as ck
from .checks import ConfigError

OPS = ("add", "subtract", "multiply", "x2xyy2", "random")
SPLITS = ("authors", "random")
ACTS = ("relu", "gelu")
LOSS_DTYPES = ("float64", "float32", "bfloat16")
GROKFASTS = ("none", "ema", "ma")
OPTIMIZERS = ("adamw", "orthoadamw")
LOSSES = ("softmax", "stablemax")
#: Grokfast's lambda when none is given: the default of each filter's library function (Lee et al. 2024)
GROKFAST_LAMBDA = {"ema": 2.0, "ma": 5.0}

#: Fields that may differ between the models of one batched run.
PER_MODEL_FIELDS = ("seed", "data_seed", "frac_train", "weight_decay", "lr", "dropout", "l1", "grokfast_alpha",
                    "grokfast_lambda", "norm_constraint")


class Serialisable:
    """The (de)serialisation of a frozen config dataclass (:class:`Config`, ``seqtasks.SeqConfig``): a dict, JSON,
    a copy with fields replaced; unknown fields in a dict are a one-line ConfigError naming the allowed ones."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **kw: Any):
        return dataclasses.replace(self, **kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def field_with_help(default: Any, help: str) -> Any:
    """A dataclass field whose ``help`` is the CLI's flag help (:func:`field_help`)."""
    return field(default=default, metadata={"help": help})


_f = field_with_help


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the transformer (7 fields, as nanoGPT's GPTConfig)."""

    d_vocab: int = 114
    n_ctx: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_layers: int = 1
    act: str = "relu"
    #: classes of the unembedding; None: d_vocab (the modular task's). The sequence tasks of Appendix D.3 predict
    #: fewer classes than they read (digits, not the separators).
    d_out: int | None = None

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_out(self) -> int:
        """Output classes of ``W_U``: ``d_out``, else ``d_vocab``."""
        return self.d_vocab if self.d_out is None else self.d_out

    @property
    def attn_only(self) -> bool:
        """``d_mlp == 0``: attention-only blocks, no MLP (the paper's repeated-subsequence and skip-trigram models)."""
        return self.d_mlp == 0

    @property
    def p(self) -> int:
        return self.d_vocab - 1


@dataclass(frozen=True)
class Config(Serialisable):
    """Everything that defines one model's training run. Defaults are the paper's mainline (§3)."""

    # --- task
    p: int = _f(113, "modulus; inputs are the tokens 'a b =' with '=' = token id p")
    op: str = _f("add", "operation: " + " | ".join(OPS))
    frac_train: float = _f(0.3, "fraction of the p*p pairs used for training, in (0, 1]")
    split: str = _f("authors", "train/test split: authors (Python random.shuffle, as the paper's code) | random (torch.randperm)")
    data_seed: int | None = _f(None, "seed of the split (and of the 'random' op's labels); default: seed")
    # --- model (Appendix A)
    n_layers: int = _f(1, "number of transformer blocks")
    d_model: int = _f(128, "residual stream width")
    n_heads: int = _f(4, "attention heads; d_head = d_model / n_heads")
    d_mlp: int = _f(512, "MLP hidden units")
    act: str = _f("relu", "MLP activation: relu | gelu")
    # --- training (§3)
    seed: int = _f(0, "seed of the initialisation (and of the split unless data_seed is set)")
    epochs: int = _f(40000, "full-batch steps")
    lr: float = _f(1e-3, "AdamW learning rate")
    weight_decay: float = _f(1.0, "AdamW (decoupled) weight decay")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.98, "AdamW beta2")
    eps: float = _f(1e-8, "AdamW epsilon")
    warmup: int = _f(10, "linear warm-up steps: lr * min(step / warmup, 1), step counted from 0")
    dropout: float = _f(0.0, "dropout probability on MLP neurons (Appendix D.1), in [0, 1)")
    l1: float = _f(0.0, "L1 penalty coefficient on the sum of |w| over all parameters (Appendix D.1)")
    loss_dtype: str = _f("float64", "precision of the loss: float64 (the paper's; computed accurately in float32, "
                         "see training.cross_entropy_accurate) | float32 | bfloat16 (a plain log-softmax in that "
                         "dtype, as the authors' low-precision run, Appendix D.2)")
    # --- methods beyond the paper (grokscope.train.methods; README "Methods beyond the paper")
    grokfast: str = _f("none", "Grokfast gradient filter (Lee et al. 2024): none | ema | ma")
    grokfast_alpha: float = _f(0.98, "Grokfast EMA momentum alpha, in [0, 1)")
    grokfast_lambda: float | None = _f(None, "Grokfast amplification lambda >= 0; none: the filter's published "
                                             "default, 2 for ema, 5 for ma (stored resolved)")
    grokfast_window: int = _f(100, "Grokfast MA window (gradients averaged), >= 1")
    optimizer: str = _f("adamw", "adamw | orthoadamw (the gradient's component along each weight tensor removed, "
                                 "rescaled to the gradient's norm, then AdamW; Prieto et al. 2025)")
    loss: str = _f("softmax", "training loss: softmax (cross-entropy) | stablemax (Prieto et al. 2025, float64)")
    norm_constraint: float | None = _f(None, "Omnigrok's constrained weight norm (Liu et al. 2023): initial weights "
                                             "x ALPHA, then the global L2 norm held at that value after every step; "
                                             "needs weight_decay 0")
    # --- logging
    test_every: int = _f(10, "evaluate test loss/accuracy every N epochs (train metrics are logged every epoch)")
    checkpoint_every: int = _f(100, "save a checkpoint every N epochs (the paper: 100)")

    def __post_init__(self) -> None:
        if self.grokfast in GROKFAST_LAMBDA and self.grokfast_lambda is None:  # pinned: config.json holds the number
            object.__setattr__(self, "grokfast_lambda", GROKFAST_LAMBDA[self.grokfast])
        self.validate()  # a Config is valid once built: ConfigError naming the field otherwise

    # ------------------------------------------------------------------ derived
    @property
    def d_vocab(self) -> int:
        return self.p + 1

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(self.d_vocab, 3, self.d_model, self.n_heads, self.d_mlp, self.n_layers, self.act)

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Config":
        """Check every field (done at construction; kept for callers that chain it) through
        :mod:`grokscope.checks`: finite numbers, bounds, 64-bit integers and seeds. Returns ``self``."""
        ck.integer("p", self.p, lo=3)
        ck.choice("op", self.op, OPS)
        ck.number("frac_train", self.frac_train, lo=0, hi=1, lo_open=True)
        ck.choice("split", self.split, SPLITS)
        if self.data_seed is not None:
            ck.seed("data_seed", self.data_seed)
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "epochs", "test_every", "checkpoint_every"):
            ck.integer(name, getattr(self, name), lo=1)
        ck.choice("act", self.act, ACTS)
        ck.choice("loss_dtype", self.loss_dtype, LOSS_DTYPES)
        ck.seed("seed", self.seed)
        ck.integer("warmup", self.warmup, lo=0)
        if int(self.frac_train * self.p * self.p) < 1:
            raise ck.bad("frac_train", self.frac_train,
                          f"large enough that at least one of the {self.p * self.p} pairs is in the train set")
        if self.d_model % self.n_heads != 0:
            raise ConfigError(f"d_model={self.d_model} is invalid: must be divisible by n_heads={self.n_heads}")
        ck.number("lr", self.lr, lo=0, lo_open=True)
        ck.number("weight_decay", self.weight_decay, lo=0)
        ck.number("dropout", self.dropout, lo=0, hi=1, hi_open=True)
        ck.number("l1", self.l1, lo=0)
        ck.number("beta1", self.beta1, lo=0, hi=1, hi_open=True)
        ck.number("beta2", self.beta2, lo=0, hi=1, hi_open=True)
        ck.number("eps", self.eps, lo=0, lo_open=True)
        ck.choice("grokfast", self.grokfast, GROKFASTS)
        ck.number("grokfast_alpha", self.grokfast_alpha, lo=0, hi=1, hi_open=True)
        if self.grokfast_lambda is not None:
            ck.number("grokfast_lambda", self.grokfast_lambda, lo=0)
        ck.integer("grokfast_window", self.grokfast_window, lo=1)
        ck.choice("optimizer", self.optimizer, OPTIMIZERS)
        ck.choice("loss", self.loss, LOSSES)
        if self.norm_constraint is not None:
            ck.number("norm_constraint", self.norm_constraint, lo=0, lo_open=True)
            if self.weight_decay != 0:
                raise ConfigError(f"norm_constraint={self.norm_constraint!r} is invalid with weight_decay="
                                  f"{self.weight_decay!r}: the constrained weight norm replaces weight decay; "
                                  "give weight_decay 0 (--weight-decay 0)")
        return self

    # ------------------------------------------------------------------ (de)serialisation


def field_help(cls: type = None) -> dict[str, str]:
    """Each field's help text of a config class (default :class:`Config`): the CLI's flag help."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls or Config)}


#: Presets for ``grokscope train --preset``.
#: ``mainline`` is the paper's §3 run exactly. ``quick`` keeps the paper's architecture, optimiser and
#: p = 113 but trains on 50% of the pairs for 1,500 epochs: it memorises first (train accuracy 100% at
#: epoch ~160) and then groks (test accuracy > 99% at epoch 1,170 for seed 0) to
#: >= 99% test accuracy within a few minutes on a 2-core CPU (numbers in the README).
PRESETS: dict[str, dict[str, Any]] = {
    "mainline": {},
    "quick": {"frac_train": 0.5, "epochs": 1500, "checkpoint_every": 20},
    "tiny": {"p": 23, "d_model": 32, "n_heads": 4, "d_mlp": 64, "frac_train": 0.5, "epochs": 300,
             "checkpoint_every": 50},
}


def memory_needed(configs: list[Config]) -> tuple[int, int]:
    """A lower estimate of the bytes training ``configs`` as one run holds at once: ``(host, device)``. Host: the
    K datasets (the p*p table, labels, the split; the authors' split shuffles a Python list of p*p ints).
    Device: the padded batches, 7 metric buffers of ``epochs + 1`` rows (twice: a copy goes into ``state.pt``),
    parameters with Adam's moments and gradient (and Grokfast's state), and one step's MLP activations and logits."""
    c, K = configs[0], len(configs)
    pairs = c.p * c.p
    n_train = max(int(x.frac_train * pairs) for x in configs)
    host = K * 40 * pairs + (36 * pairs if any(x.split == "authors" for x in configs) else 0)
    n_params = (2 * c.d_vocab * c.d_model + 3 * c.d_model
                + c.n_layers * (4 * c.d_model * c.d_model + 2 * c.d_model * c.d_mlp + c.d_mlp + c.d_model))
    filt = {"none": 0, "ema": 1, "ma": c.grokfast_window}[c.grokfast]  # Grokfast's state per parameter
    device = (K * 25 * pairs + 2 * 7 * 8 * (c.epochs + 1) * K + (6 + filt) * 4 * n_params * K
              + 3 * 4 * K * n_train * c.d_mlp + 12 * K * n_train * c.p)
    return host, device


def preset(name: str, **overrides: Any) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is invalid: must be one of {', '.join(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides})


def check_batchable(configs: list[Config]) -> None:
    """Raise ConfigError unless all configs differ only in PER_MODEL_FIELDS."""
    if not configs:
        raise ConfigError("a run needs at least one model config")
    first = configs[0].to_dict()
    for c in configs[1:]:
        d = c.to_dict()
        for k, v in d.items():
            if k not in PER_MODEL_FIELDS and v != first[k]:
                raise ConfigError(
                    f"{k} differs between models of one run ({first[k]!r} vs {v!r}); only "
                    f"{', '.join(PER_MODEL_FIELDS)} may differ")
