"""The paper's experiments as data: :class:`Spec` (an experiment's base config and per-model fields), the
registry :data:`EXPERIMENTS`, their expansion into model configs, the grouping of those configs into batched runs
(:func:`group_configs`, :data:`PAD_TOLERANCE`), an experiment's JSON :func:`plan` and its one-line-each
:func:`listing`. Nothing here trains or reads a run."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from .. import checks as ck
from ..config import PER_MODEL_FIELDS, Config, ConfigError
from ..version import __version__


def _grid(**lists: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """The cartesian product of the lists as one dict per model (the last list varies fastest)."""
    names = list(lists)
    return tuple(dict(zip(names, vals)) for vals in itertools.product(*lists.values()))


@dataclass(frozen=True)
class Spec:
    """One of the paper's experiments: the :class:`Config` fields shared by its models (``base``, on top of the
    defaults, which are the mainline's) and one dict of fields per model (``models``). ``needs``: config fields
    the experiment needs that this grokscope may lack (the experiment refuses to run without them).
    ``reference``: the authors' curves for it in ``../shared/reference``."""

    name: str
    section: str
    doc: str
    base: dict[str, Any] = field(default_factory=dict)
    models: tuple[dict[str, Any], ...] = ({},)
    needs: tuple[str, ...] = ()
    reference: str | None = None

    def missing(self) -> list[str]:
        """Config fields in ``needs`` that :class:`Config` does not have."""
        have = {f.name for f in fields(Config)}
        return [n for n in self.needs if n not in have]

    def configs(self, epochs: int | None = None, tiny: bool = False,
                seeds: Sequence[int] | None = None, test_every: int | None = None) -> list[Config]:
        """The models' configs; ``epochs`` shortens (or lengthens) every model's training; ``tiny`` shrinks
        them to seconds (:func:`tiny_overrides`) keeping the experiment's groups and per-model values; ``seeds``
        keeps only the models of those seeds (a cheaper look: one seed of each setting); ``test_every``
        evaluates the test set every that many epochs instead of the experiment's (for large test sets: at
        p = 401 evaluating every 10 epochs is half of the training time)."""
        if self.missing():
            raise ConfigError(f"experiment={self.name!r} is invalid here: it needs the training option(s) "
                              + ", ".join("--" + n.replace("_", "-") for n in self.missing())
                              + ", which this grokscope does not have yet")
        dicts = [{**self.base, **m} for m in self.models]
        if tiny:
            dicts = tiny_overrides(dicts)
        for key, value in (("epochs", epochs), ("test_every", test_every)):
            if value is not None:
                dicts = [{**d, key: ck.integer(key, value, lo=1)} for d in dicts]
        cs = [Config(**d) for d in dicts]
        if seeds is not None:
            have = sorted({c.seed for c in cs})
            if not seeds or any(s not in have for s in seeds):
                raise ConfigError(f"seeds={','.join(map(str, seeds))} is invalid for the experiment {self.name!r}: "
                                  f"each must be one of {', '.join(map(str, have))}")
            cs = [c for c in cs if c.seed in seeds]
        return cs

    def size(self) -> tuple[int, int, int]:
        """(models, groups, model-epochs) at full length (counted from the spec alone, so also for an experiment
        whose ``needs`` are missing: those fields are not per-model, so they split groups)."""
        have = {f.name for f in fields(Config)}
        dicts = [{**self.base, **m} for m in self.models]
        cs = [Config(**{k: v for k, v in d.items() if k in have}) for d in dicts]
        missing = [json.dumps({k: v for k, v in d.items() if k not in have}, sort_keys=True) for d in dicts]
        groups = sum(len(group_configs([c for c, m in zip(cs, missing) if m == key])) for key in dict.fromkeys(missing))
        return len(cs), groups, sum(c.epochs for c in cs)


TINY_PRIMES = (7, 11, 13, 17, 19, 23, 29, 31)


def tiny_overrides(dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model shrunk to run in about a second: the distinct primes mapped in order onto 7, 11, 13, ...,
    the distinct widths onto 8, 16, 24, ... (d_mlp 2 d_model, 2 heads), 60 epochs, a checkpoint every 10,
    test every 5; the experiment's other values (seeds, fractions, weight decays, layers, ...) kept, so it
    has the same models and groups as at full size."""
    ps = sorted({d.get("p", 113) for d in dicts})
    ws = sorted({d.get("d_model", 128) for d in dicts})
    out = []
    for d in dicts:
        w = 8 * (ws.index(d.get("d_model", 128)) + 1)
        out.append({**d, "p": TINY_PRIMES[ps.index(d.get("p", 113))], "d_model": w, "d_mlp": 2 * w, "n_heads": 2,
                    "epochs": 60, "checkpoint_every": 10, "test_every": 5})
    return out


SEEDS3, SEEDS5 = (0, 1, 2), (0, 1, 2, 3, 4)
#: The stopping rule (grokscope.training.stopping) of the experiments whose claim is decided once a model has
#: generalised (when, and whether, it groks; Fig 21's epoch of test loss < 1e-6): a model stops after its test loss
#: has stayed below 1e-6 for 500 epochs. Not used where what comes after matters: the seeds (cleanup, Tables 3-4 at
#: the end), two layers and low precision (slingshots), l1 and width-no-wd (never below), methods.
STOP = {"stop_below": 1e-6, "stop_patience": 500}

#: The paper's experiments. Defaults of every field are the mainline's (§3, Appendix A: p 113, 30% of the pairs,
#: AdamW lr 1e-3, weight decay 1, 40,000 epochs, one layer of d_model 128, 4 heads, d_mlp 512).
EXPERIMENTS: dict[str, Spec] = {s.name: s for s in [
    Spec("seeds", "§3, Appendix C.2.1 (Figs 16-19, Tables 3-4)",
         "the mainline with 5 seeds: the other seeds also learn the Fourier algorithm and show the same phases",
         models=_grid(seed=SEEDS5)),
    Spec("frac", "Appendix C.2.2 (Figs 20-21), C.2.3 (Table 5 rows 40-90%)",
         "the mainline on 10%..90% of the pairs, 40k epochs: smaller fractions grok later; >= 60% generalises at "
         "once; 10% and 20% never grok", base=STOP, models=_grid(frac_train=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
         reference="mod_addition_frac_train_sweep.pth"),
    Spec("wd", "Appendix D.1 (Figs 26-27)",
         "weight decay 0, 0.3, 1, 3 x 3 seeds: ~3k epochs to grok at 0.3, 5-10k at 1, ~20k at 3 (the paper's "
         "words); no grokking and no rise of the excluded loss at 0", base=STOP, models=_grid(weight_decay=(0.0, 0.3, 1.0, 3.0),
                                                                                  seed=SEEDS3)),
    Spec("primes", "Appendix C.2.2 (Figs 24-25), C.2.3 (Table 5 rows P=53, P=109)",
         "p = 53 with weight decay 5 and p = 109, 5 seeds each, groks like the mainline; p = 401 on 5%, 10%, 20% "
         "of the pairs, 3 seeds: 5% and 10% overfit and never generalise, 20% generalises at once; p = 53 with "
         "weight decay 1 never generalises (5 seeds); p = 401 on 30% generalises at once with weight decay 0.3, "
         "0.5, 1, 3, 5, 8 (seed 0)", base=STOP,
         models=_grid(p=(53,), weight_decay=(5.0,), seed=SEEDS5) + _grid(p=(109,), seed=SEEDS5)
         + _grid(p=(401,), frac_train=(0.05, 0.1, 0.2), seed=SEEDS3)
         # added later, so after the first groups (a directory started without them adds them on resume)
         + _grid(p=(53,), weight_decay=(1.0,), seed=SEEDS5)
         + _grid(p=(401,), frac_train=(0.3,), weight_decay=(0.3, 0.5, 1.0, 3.0, 5.0, 8.0), seed=(0,))),
    Spec("two-layer", "Appendix C.2.2 (Figs 22-23), C.2.3 (Table 5 rows '2 Layer Transformer'), Table 6",
         "the mainline with two layers, 5 seeds: grokking complicated by slingshots; the excluded loss improves "
         "smoothly before grokking", base={"n_layers": 2}, models=_grid(seed=SEEDS5)),
    Spec("dropout", "Appendix D.1 (Fig 28), C.2.3 (Table 5 rows 'Dropout'), Table 6",
         "dropout 0.2, 0.5, 0.8 on the MLP neurons instead of weight decay, 3 seeds: 0.2 and 0.5 grok",
         base={"weight_decay": 0.0, **STOP}, models=_grid(dropout=(0.2, 0.5, 0.8), seed=SEEDS3)),
    Spec("l1", "Appendix D.1 (Fig 28)",
         "an L1 penalty 1, 10, 100 (not decoupled) instead of weight decay, 3 seeds: no grokking",
         base={"weight_decay": 0.0}, models=_grid(l1=(1.0, 10.0, 100.0), seed=SEEDS3)),
    Spec("low-precision", "Appendix D.2",
         "the loss computed in float32 and in bfloat16 (the authors' low-precision run: seed 1, 50k epochs): "
         "lower precision induces slingshots in a one-layer model",
         base={"seed": 1, "epochs": 50_000}, models=_grid(loss_dtype=("float32", "bfloat16")), needs=("loss_dtype",),
         reference="low_precision_mod_addition.pth"),
    Spec("width-no-wd", "the authors' no_wd_width_scan.pth (not described in the paper's text)",
         "no weight decay, d_model 8..1024 (d_mlp 4 d_model, 4 heads), 3k epochs, on 90% of the pairs (the "
         "fraction of the authors' no-wd run; the scan's own is not recorded)",
         base={"weight_decay": 0.0, "epochs": 3000, "frac_train": 0.9},
         models=tuple({"d_model": w, "d_mlp": 4 * w} for w in (8, 16, 32, 64, 128, 256, 512, 1024)),
         reference="no_wd_width_scan.pth"),
    Spec("methods", "beyond the paper (README \"Methods beyond the paper\")",
         "the mainline with each later grokking method, 3 seeds each: baseline; Grokfast EMA (alpha 0.98, lambda 2) "
         "and MA (window 100, lambda 5); ⊥AdamW with the mainline's weight decay 1 and with none (Prieto et al.'s "
         "setting: ⊥Grad is their remedy for grokking without regularisation); StableMax loss; Omnigrok's "
         "constrained norm (alpha 0.7, wd 0); Muon (lr 0.02, momentum 0.95) on the hidden matrices with AdamW on "
         "the rest, weight decay 1",
         models=tuple({**m, "seed": s} for m in ({}, {"grokfast": "ema"}, {"grokfast": "ma"},
                                                 {"optimizer": "orthoadamw"},
                                                 {"optimizer": "orthoadamw", "weight_decay": 0.0},
                                                 {"loss": "stablemax"},
                                                 {"norm_constraint": 0.7, "weight_decay": 0.0},
                                                 {"optimizer": "muon"}) for s in SEEDS3)),
]}


def get_spec(name: str) -> Spec:
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment={name!r} is invalid: must be one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# ---------------------------------------------------------------------- grouping
def _shape_key(c: Config) -> tuple:
    """What models of one group share: every field outside the per-model ones; with the stopping rule also the
    per-model fields other than the seeds (models of different settings stop far apart, and a stopped model still
    costs its share of every step until the last one stops: the seeds of one setting stop close together)."""
    free = set(c.per_model_fields) & {"seed", "data_seed"} if c.stop_below is not None else set(c.per_model_fields)
    return tuple((k, v) for k, v in c.to_dict().items() if k not in free)


#: How much padding a batched group may carry: a batched run pads every model's train set to the largest one's,
#: so frac 0.1 beside frac 0.9 would cost the small model 9x its own work (the frac sweep: 1.8x in all). Models
#: of one shape whose train sets differ by more than this fraction of the larger train separately.
PAD_TOLERANCE = 0.1


def _n_train(c: Config) -> int:
    return c.make_task().n_examples()[0]


def group_configs(configs: Sequence[Config]) -> list[list[Config]]:
    """The configs split into batchable groups, in order of first appearance, each keeping its models' order:
    equal outside :data:`PER_MODEL_FIELDS` (with the stopping rule: outside the seeds), and with train sets
    within :data:`PAD_TOLERANCE` of each other."""
    by_shape: dict[tuple, list[list[Config]]] = {}
    order: list[list[Config]] = []
    for c in configs:
        subs = by_shape.setdefault(_shape_key(c), [])
        for g in subs:
            ns = [_n_train(x) for x in g] + [_n_train(c)]
            if min(ns) >= (1 - PAD_TOLERANCE) * max(ns):
                g.append(c)
                break
        else:
            subs.append([c])
            order.append(subs[-1])
    return order


def _group_names(groups: list[list[Config]]) -> list[str]:
    """``00``, or ``00_p53``, ``01_p109``, ``00_weightdecay0.3``...: the index and the fields that differ between
    groups: the shape fields, and the per-model fields that split them (``frac_train`` where the padding does, see
    :data:`PAD_TOLERANCE`; with the stopping rule every per-model field but the seeds, see :func:`_shape_key`)."""
    ds = [[c.to_dict() for c in g] for g in groups]
    first = groups[0][0]
    split_by_frac = all(len({c.frac_train for c in g}) == 1 for g in groups) and \
        any(len({x[0].frac_train for x in groups if _shape_key(x[0]) == _shape_key(g[0])}) > 1 for g in groups)
    splitting = {k for k in first.per_model_fields if (k == "frac_train" and split_by_frac)
                 or (first.stop_below is not None and k not in ("seed", "data_seed"))}
    differ = [k for k in ds[0][0] if (k not in first.per_model_fields or k in splitting)
              and all(len({json.dumps(d[k]) for d in g}) == 1 for g in ds)
              and len({json.dumps(g[0][k]) for g in ds}) > 1]
    return [f"{i:02d}" + "".join(f"_{k.replace('_', '')}{g[0][k]}" for k in differ) for i, g in enumerate(ds)]


#: The options of an experiment's command that change its plan, as recorded in ``experiment.json`` (a plan
#: saved before an option existed has no entry for it: read as None, the option's absence).
PLAN_OPTIONS = ("epochs", "test_every", "seeds", "tiny")


def plan(name: str, epochs: int | None = None, tiny: bool = False,
         seeds: Sequence[int] | None = None, test_every: int | None = None) -> dict[str, Any]:
    """The JSON plan of an experiment: its name, the options (:data:`PLAN_OPTIONS`), and every group's name and
    model configs."""
    spec = get_spec(name)
    seeds = None if seeds is None else sorted(set(seeds))
    groups = group_configs(spec.configs(epochs, tiny, seeds, test_every))
    return {"experiment": name, "epochs": epochs, "test_every": test_every, "tiny": tiny, "seeds": seeds,
            "grokscope_version": __version__,
            "groups": [{"name": n, "models": [c.to_dict() for c in g]} for n, g in zip(_group_names(groups), groups)]}


def listing() -> str:
    """The experiments, their sizes and paper sections, one line each (``grokscope experiment list``)."""
    lines = []
    for s in EXPERIMENTS.values():
        n, g, me = s.size()
        need = f"  [needs {', '.join('--' + x.replace('_', '-') for x in s.missing())}]" if s.missing() else ""
        lines.append(f"{s.name:<14} {n:>3} models in {g} group{'s' if g > 1 else ' '}  {me / 1e3:>6.0f}k model-epochs  "
                     f"{s.section}{need}\n{'':<15}{s.doc}")
    return "\n".join(lines)
