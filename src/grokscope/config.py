"""Configuration: the one place where defaults live.

A run trains K >= 1 models of the same shape as one batched computation. Each model has its own :class:`Config`:
the task (a name of :data:`grokscope.tasks.TASKS`) with the task's own fields (its ``Options``: ``p`` and
``frac_train`` for the modular tasks, ``n_train`` and ``seq_len`` for the sampled ones, ...), and the fields every
run has (model shape, optimiser, methods, logging), declared once here. A task's fields read as the config's own
(``cfg.p``), and a config is flat in JSON and on the command line (``--p``, ``--frac-train``). The fields listed in
:data:`PER_MODEL_FIELDS`, and the task's ``per_model`` fields, may differ between the models of a run; every other
field must be equal. Every field doubles as a CLI flag; the ``help`` metadata is what ``grokscope train --help``
prints. Defaults are the paper's mainline (§3); a task may set other defaults for the shared fields
(``Task.defaults``: the D.3 tasks' model shapes), used where a field is not given.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

from . import checks as ck
from .checks import ConfigError
from .tasks import TASKS, Task, canonical, get_task
from .tasks import option as _f

ACTS = ("relu", "gelu")
#: initial scale of W_E (Config.embed_init; grokscope.model.transformer.init_params)
EMBED_INITS = ("scaled", "unit")
#: how dropout's mask is drawn (Config.dropout_mask; grokscope.training.trainer.dropout_keep)
DROPOUT_MASKS = ("example", "step")
LOSS_DTYPES = ("float64", "float32", "bfloat16")
GROKFASTS = ("none", "ema", "ma")
OPTIMIZERS = ("adamw", "orthoadamw", "muon")
LOSSES = ("softmax", "stablemax")
#: Grokfast's lambda when none is given: the default of each filter's library function (Lee et al. 2024)
GROKFAST_LAMBDA = {"ema": 2.0, "ma": 5.0}

#: Fields every task has that may differ between the models of one batched run (a task adds its own ``per_model``).
PER_MODEL_FIELDS = ("seed", "data_seed", "embed_init", "weight_decay", "lr", "dropout", "l1", "grokfast_alpha",
                    "grokfast_lambda", "norm_constraint", "muon_lr", "muon_momentum")


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


@dataclass(frozen=True, init=False)
class Config:
    """Everything that defines one model's training run: the task with its options, and the shared fields.

    ``Config(p=23, frac_train=0.5, d_model=32)`` (the task's fields given flat, beside the shared ones);
    ``Config(task="skip-trigram", seq_len=200)``; ``cfg.p``, ``cfg.task``, ``cfg.options`` (the task's fields).
    A Config is valid once built: a one-line ConfigError naming the field otherwise."""

    task: str = _f("add", "the task (grokscope.tasks): add | subtract | multiply | x2xyy2 | random | "
                          "digit-addition | repeated-subsequence | skip-trigram | sparse-parity")
    options: Any = dataclasses.field(default=None, metadata={"help": "the task's own fields"})
    data_seed: int | None = _f(None, "seed of the data (the split, the sampled sets and stream); default: seed")
    # --- model (Appendix A)
    n_layers: int = _f(1, "number of transformer blocks")
    d_model: int = _f(128, "residual stream width")
    n_heads: int = _f(4, "attention heads; d_head = d_model / n_heads")
    d_mlp: int = _f(512, "MLP hidden units; 0: attention-only blocks")
    act: str = _f("relu", "MLP activation: relu | gelu")
    embed_init: str = _f("scaled", "initial W_E: scaled (randn / sqrt(d_model), as every other weight: the authors' "
                                   "modular code) | unit (randn: the authors' induction models; only it reproduces "
                                   "their initial loss, 5.06)")
    # --- training (§3)
    seed: int = _f(0, "seed of the initialisation (and of the data unless data_seed is set)")
    epochs: int = _f(40000, "optimizer steps (full-batch epochs for the modular tasks)")
    lr: float = _f(1e-3, "AdamW learning rate")
    weight_decay: float = _f(1.0, "AdamW (decoupled) weight decay")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.98, "AdamW beta2")
    eps: float = _f(1e-8, "AdamW epsilon")
    warmup: int = _f(10, "linear warm-up steps: lr * min(step / warmup, 1), step counted from 0")
    dropout: float = _f(0.0, "dropout probability on MLP neurons (Appendix D.1), in [0, 1)")
    dropout_mask: str = _f("example", "with dropout: example (a fresh mask for every example at every step: standard "
                                      "dropout) | step (one mask per step, shared by the whole batch: with "
                                      "full-batch training, one random sub-network per epoch)")
    l1: float = _f(0.0, "L1 penalty coefficient on the sum of |w| over all parameters (Appendix D.1)")
    loss_dtype: str = _f("float64", "precision of the loss: float64 (the paper's; computed accurately in float32, "
                         "see grokscope.training.losses) | float32 | bfloat16 (a plain log-softmax in that "
                         "dtype, as the authors' low-precision run, Appendix D.2)")
    # --- methods beyond the paper (grokscope.training.methods)
    grokfast: str = _f("none", "Grokfast gradient filter (Lee et al. 2024): none | ema | ma")
    grokfast_alpha: float = _f(0.98, "Grokfast EMA momentum alpha, in [0, 1)")
    grokfast_lambda: float | None = _f(None, "Grokfast amplification lambda >= 0; none: the filter's published "
                                             "default, 2 for ema, 5 for ma (stored resolved)")
    grokfast_window: int = _f(100, "Grokfast MA window (gradients averaged), >= 1")
    optimizer: str = _f("adamw", "adamw | orthoadamw (the gradient's component along each weight tensor removed, "
                                 "rescaled to the gradient's norm, then AdamW; Prieto et al. 2025) | muon (Muon on "
                                 "the hidden matrices W_Q/W_K/W_V/W_O/W_in/W_out, AdamW on the embeddings, W_U and "
                                 "biases; Keller Jordan 2024, torch.optim.Muon)")
    muon_lr: float = _f(0.02, "with --optimizer muon: Muon's learning rate (Keller Jordan's default; warmed up as "
                              "lr; weight decay there is muon_lr x weight_decay per step)")
    muon_momentum: float = _f(0.95, "with --optimizer muon: Muon's Nesterov momentum, in [0, 1)")
    loss: str = _f("softmax", "training loss: softmax (cross-entropy) | stablemax (Prieto et al. 2025, float64)")
    norm_constraint: float | None = _f(None, "Omnigrok's constrained weight norm (Liu et al. 2023): initial weights "
                                             "x ALPHA, then the global L2 norm held at that value after every step; "
                                             "needs weight_decay 0")
    # --- when to stop (grokscope.training.stopping)
    stop_below: float | None = _f(None, "stop a model once its test loss has stayed below this for stop_patience "
                                        "epochs (the run ends when every model has stopped); none: train every "
                                        "epoch (the paper's runs)")
    stop_patience: int = _f(1000, "with stop_below: epochs the test loss must stay below it, >= 0")
    # --- logging
    test_every: int = _f(10, "evaluate test loss/accuracy every N steps (train metrics are logged every step)")
    checkpoint_every: int = _f(100, "save a checkpoint every N steps (the paper: 100)")

    def __init__(self, task: str = "add", options: Any = None, **kw: Any):
        name = canonical(task)
        cls = get_task(name)
        shared = {f.name for f in SHARED_FIELDS}
        mine = {k: kw.pop(k) for k in list(kw) if k not in shared}
        allowed = set(cls.Options.names())
        if options is not None and not isinstance(options, cls.Options):  # another task's: keep the common fields
            carry = options.to_dict() if hasattr(options, "to_dict") else dict(options)
            mine = {**{k: v for k, v in carry.items() if k in allowed}, **mine}
            options = None
        unknown = sorted(set(mine) - allowed)
        if unknown:
            known = sorted(shared | allowed)
            raise ConfigError(f"unknown config field(s) for task {name}: {', '.join(unknown)}; allowed: "
                              f"{', '.join(known)}")
        options = cls.Options(**mine) if options is None else dataclasses.replace(options, **mine)
        object.__setattr__(self, "task", name)
        object.__setattr__(self, "options", options)
        for f in SHARED_FIELDS:
            object.__setattr__(self, f.name, kw[f.name] if f.name in kw else cls.defaults.get(f.name, f.default))
        if self.grokfast in GROKFAST_LAMBDA and self.grokfast_lambda is None:  # pinned: config.json holds the number
            object.__setattr__(self, "grokfast_lambda", GROKFAST_LAMBDA[self.grokfast])
        self.validate()

    def __getattr__(self, name: str) -> Any:  # the task's fields read as the config's own: cfg.p
        opts = self.__dict__.get("options")
        if opts is not None and name in type(opts).names():
            return getattr(opts, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ derived
    @property
    def task_class(self) -> type[Task]:
        return get_task(self.task)

    def make_task(self) -> Task:
        """The task with this config's options and data seed."""
        return self.task_class(self.options, self.split_seed)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def split_seed(self) -> int:
        """The data's seed: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def per_model_fields(self) -> tuple[str, ...]:
        return PER_MODEL_FIELDS + self.task_class.Options.per_model

    @property
    def model_config(self) -> "ModelConfig":
        t = self.make_task()
        return ModelConfig(t.d_vocab, t.n_ctx, self.d_model, self.n_heads, self.d_mlp, self.n_layers, self.act,
                           d_out=None if t.n_out == t.d_vocab else t.n_out)

    @property
    def d_vocab(self) -> int:
        return self.make_task().d_vocab

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Config":
        """Check every field (done at construction; kept for callers that chain it) through
        :mod:`grokscope.checks`: finite numbers, bounds, 64-bit integers and seeds, then the task's own fields and
        what the task refuses. Returns ``self``."""
        self.options.check()
        if self.data_seed is not None:
            ck.seed("data_seed", self.data_seed)
        for name in ("n_layers", "d_model", "n_heads", "epochs", "test_every", "checkpoint_every"):
            ck.integer(name, getattr(self, name), lo=1)
        ck.integer("d_mlp", self.d_mlp, lo=0 if not self.task_class.pair_form else 1)
        ck.choice("act", self.act, ACTS)
        ck.choice("embed_init", self.embed_init, EMBED_INITS)
        ck.choice("loss_dtype", self.loss_dtype, LOSS_DTYPES)
        ck.seed("seed", self.seed)
        ck.integer("warmup", self.warmup, lo=0)
        if self.d_model % self.n_heads != 0:
            raise ConfigError(f"d_model={self.d_model} is invalid: must be divisible by n_heads={self.n_heads}")
        ck.number("lr", self.lr, lo=0, lo_open=True)
        ck.number("weight_decay", self.weight_decay, lo=0)
        ck.number("dropout", self.dropout, lo=0, hi=1, hi_open=True)
        ck.choice("dropout_mask", self.dropout_mask, DROPOUT_MASKS)
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
        ck.number("muon_lr", self.muon_lr, lo=0, lo_open=True)
        ck.number("muon_momentum", self.muon_momentum, lo=0, hi=1, hi_open=True)
        ck.choice("loss", self.loss, LOSSES)
        if self.norm_constraint is not None:
            ck.number("norm_constraint", self.norm_constraint, lo=0, lo_open=True)
            if self.weight_decay != 0:
                raise ConfigError(f"norm_constraint={self.norm_constraint!r} is invalid with weight_decay="
                                  f"{self.weight_decay!r}: the constrained weight norm replaces weight decay; "
                                  "give weight_decay 0 (--weight-decay 0)")
        if self.stop_below is not None:
            ck.number("stop_below", self.stop_below, lo=0, lo_open=True)
        ck.integer("stop_patience", self.stop_patience, lo=0)
        self.make_task().check_config(self)
        if self.dropout and self.d_mlp == 0:
            raise ConfigError(f"dropout={self.dropout} is invalid with d_mlp=0: dropout acts on MLP neurons")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Flat: the task, its fields, then the shared fields (config.json's model entries)."""
        return {"task": self.task, **self.options.to_dict(),
                **{f.name: getattr(self, f.name) for f in SHARED_FIELDS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """The inverse of :meth:`to_dict`; also reads the configs of runs written before tasks had one config:
        a modular model's ``op`` is its task, and a sequence-task run's config carried every task's fields (those
        of other tasks are dropped)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object, found {type(d).__name__}")
        d = dict(d)
        if "op" in d and "task" not in d:  # a modular model written before the task registry
            d["task"] = d.pop("op")
        if d.pop("_legacy_sequence", False):
            keep = {f.name for f in SHARED_FIELDS} | set(get_task(d["task"]).Options.names()) | {"task"}
            d = {k: v for k, v in d.items() if k in keep and not (k == "seq_len" and v is None)}
        return cls(**d)

    def replace(self, **kw: Any) -> "Config":
        return Config(**{**self.to_dict(), **kw})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


#: the fields every run has (declared once, in :class:`Config`)
SHARED_FIELDS = tuple(f for f in fields(Config) if f.name not in ("task", "options"))


def field_help() -> dict[str, str]:
    """Each config field's help text, the shared fields' and every task's (the CLI's flag help)."""
    out = {f.name: f.metadata.get("help", "") for f in fields(Config) if f.name != "options"}
    for cls in TASKS.values():
        for f in fields(cls.Options):
            out.setdefault(f.name, f"{f.metadata.get('help', '')}")
    return out


def field_tasks() -> dict[str, list[str]]:
    """The tasks that have each task field (``n_train``: the sampled tasks)."""
    out: dict[str, list[str]] = {}
    for name, cls in TASKS.items():
        for f in cls.Options.names():
            out.setdefault(f, []).append(name)
    return out


_DIGIT = {"task": "digit-addition", "d_model": 128, "n_heads": 4, "d_mlp": 512, "n_layers": 1}
_INDUCTION = {"task": "repeated-subsequence", "d_model": 48, "n_heads": 4, "d_mlp": 0, "n_layers": 2,
              "beta2": 0.999, "batch_size": 128, "seed": 1, "layout": "segments", "embed_init": "unit"}
# 200 tokens: the length at which 512 fixed examples give Fig 34's train/test divergence (grokscope.tasks.skip_trigram)
_SKIP = {"task": "skip-trigram", "d_model": 128, "n_heads": 4, "d_mlp": 0, "n_layers": 1, "seq_len": 200}

#: Presets for ``grokscope train --preset``.
#: ``mainline`` is the paper's §3 run exactly. ``quick`` is the mainline (p = 113, 30% of the pairs, weight decay
#: 1, the architecture) with lr 3e-3 instead of 1e-3, for 5,000 epochs: the paper's story three times faster.
#: Seed 0 memorises (train accuracy 100% at epoch 76), its three phases end at 1,200 / 2,450 / 3,750 epochs,
#: test accuracy passes 99% at 3,010 and all five decided §5.2 claims hold (benchmarks/quick_search.py found it:
#: docs/results/records/quick-preset-search.md). ``tiny`` (p = 23) groks in seconds: the tour's model.
#: The six Appendix D.3 runs have the authors' step counts; infinite runs take as many fresh examples per step as the
#: finite set has per batch (the authors' files do not record it except for induction: 128).
PRESETS: dict[str, dict[str, Any]] = {
    "mainline": {},
    "quick": {"frac_train": 0.3, "lr": 3e-3, "epochs": 5000, "checkpoint_every": 50},
    "tiny": {"p": 23, "d_model": 32, "n_heads": 4, "d_mlp": 64, "frac_train": 0.5, "lr": 1e-2, "epochs": 2000,
             "checkpoint_every": 50},
    "digit-addition-finite": {**_DIGIT, "n_train": 700, "epochs": 18053, "checkpoint_every": 500},
    "digit-addition-infinite": {**_DIGIT, "n_train": None, "batch_size": 700, "epochs": 6000},
    "repeated-subsequence-finite": {**_INDUCTION, "n_train": 512, "epochs": 285820, "test_every": 40, "checkpoint_every": 4000},
    "repeated-subsequence-infinite": {**_INDUCTION, "n_train": None, "epochs": 6000},
    "skip-trigram-finite": {**_SKIP, "n_train": 512, "epochs": 5000},
    "skip-trigram-infinite": {**_SKIP, "n_train": None, "batch_size": 512, "epochs": 3000},
    # beyond the paper: grokking on sparse parity (grokscope.tasks.sparse_parity; seed 1: train accuracy 100% at
    # step 539, test accuracy > 99% at 5,725 on the 2-core AMD EPYC, one thread; seed 0 generalises at once, 425)
    "sparse-parity": {"task": "sparse-parity", "n_bits": 20, "k": 3, "n_train": 400, "epochs": 8000, "seed": 1,
                      "test_every": 25, "checkpoint_every": 200},
}


def memory_needed(configs: list[Config], grokfast_state: bool = True) -> tuple[int, int]:
    """A lower estimate of the bytes training ``configs`` as one run holds at once: ``(host, device)``.

    Modular tasks (the whole p*p table): host holds the K datasets (the table, labels, the split; the authors' split
    shuffles a Python list of p*p ints); device the padded batches, 7 metric buffers of ``epochs + 1`` rows (twice:
    a copy goes into ``state.pt``), parameters with Adam's moments and gradient (and Grokfast's state), and one
    step's MLP activations and logits. Sampled tasks: the K train and test sets (tokens, targets, mask), the metric
    buffers with the per-token losses, the parameters as above, and one step's activations at every position of
    every layer (queries, keys, values, the attention pattern, the MLP) with the scored logits."""
    c, K = configs[0], len(configs)
    n_params = (2 * c.d_vocab * c.d_model + 3 * c.d_model
                + c.n_layers * (4 * c.d_model * c.d_model + 2 * c.d_model * c.d_mlp + c.d_mlp + c.d_model))
    filt = {"none": 0, "ema": 1, "ma": c.grokfast_window}[c.grokfast] if grokfast_state else 0  # Grokfast's state
    params = (6 + filt + (c.optimizer == "muon")) * 4 * n_params * K  # Muon: its momentum buffer
    task = c.make_task()
    if task.pair_form:
        pairs = c.p * c.p
        n_train = max(int(x.frac_train * pairs) for x in configs)
        host = K * 40 * pairs + (36 * pairs if any(x.split == "authors" for x in configs) else 0)
        device = (K * 25 * pairs + 2 * 7 * 8 * (c.epochs + 1) * K + params
                  + 3 * 4 * K * n_train * c.d_mlp + 12 * K * n_train * c.p)
        return host, device
    n_train, n_test = task.n_examples()
    T, S = task.n_ctx, task.n_scored
    host = K * 17 * T * (n_train + n_test)
    step = task.batch_size or n_train
    acts = 4 * 3 * step * T * c.n_layers * (6 * c.d_model + c.n_heads * T + 2 * c.d_mlp)
    device = (host + 2 * (7 + 2 * S) * 8 * (c.epochs + 1) * K + params + K * acts
              + 12 * K * max(step, n_test) * S * task.n_out)
    return host, device


#: Older preset names, still accepted: a preset is named after its task (``<task>-finite``, ``<task>-infinite``).
PRESET_ALIASES = {"induction-finite": "repeated-subsequence-finite",
                  "induction-infinite": "repeated-subsequence-infinite"}


def preset_key(name: str) -> str:
    """The canonical name of a preset (underscores accepted for hyphens, older names through
    :data:`PRESET_ALIASES`); ConfigError if unknown."""
    key = str(name).replace("_", "-")
    key = PRESET_ALIASES.get(key, key)
    if key not in PRESETS:
        raise ConfigError(f"preset={name!r} is invalid: must be one of {', '.join(PRESETS)}")
    return key


def preset(name: str, **overrides: Any) -> Config:
    """The config of a preset (:data:`PRESETS`) with fields replaced."""
    return Config(**{**PRESETS[preset_key(name)], **overrides})


def check_batchable(configs: list[Config]) -> None:
    """Raise ConfigError unless all configs differ only in their per-model fields (:data:`PER_MODEL_FIELDS` and
    the task's)."""
    if not configs:
        raise ConfigError("a run needs at least one model config")
    first = configs[0].to_dict()
    per_model = configs[0].per_model_fields
    for c in configs[1:]:
        d = c.to_dict()
        for k in sorted(set(d) | set(first)):
            if k not in per_model and d.get(k) != first.get(k):
                raise ConfigError(
                    f"{k} differs between models of one run ({first.get(k)!r} vs {d.get(k)!r}); only "
                    f"{', '.join(per_model)} may differ")
