"""The paper's experiments as one command each (issue #13; Appendices C.2, D.1, D.2), locally or on Ray.

    grokscope experiment list
    grokscope experiment frac --out exp/frac [--epochs 2000] [--executor local|ray] [--address ray://head:10001]

    from grokscope.experiments import Experiment, run_experiment
    run_experiment("wd", "exp/wd")               # trains (resuming), summarises; returns an Experiment
    Experiment.load("exp/wd").summary            # DataFrame, one row per model (summary.parquet)

An experiment (:data:`EXPERIMENTS`) expands to model configs (:meth:`Spec.configs`). Models whose configs differ
only in the per-model fields (:data:`grokscope.config.PER_MODEL_FIELDS`: seed, frac_train, weight_decay, ...)
share one batched run (the trainer's model axis) when their train sets are about the same size
(:data:`PAD_TOLERANCE`); the others (p, n_layers, d_model, ..., very different fractions) are separate runs. Each
such *group* is one unit of work: one run directory under ``OUT/groups/``, trained (or resumed) by the runs layer
(:func:`grokscope.training.run.train` / :func:`grokscope.training.run.resume`), then summarised into the group's
``summary.parquet``. ``OUT/experiment.json`` records the plan; a rerun checks it is the same plan, skips finished
groups, resumes unfinished ones from their last checkpoint (a killed experiment loses at most the epochs since
each group's last checkpoint) and concatenates the groups' summaries into ``OUT/summary.parquet``.

Executors: ``local`` (default) runs the groups in turn in this process; ``ray`` submits each group as one Ray
task (one CPU, or one GPU with ``device="cuda"``) to a local Ray (``ray.init()``) or a cluster (``address``).
On a cluster, ``OUT`` must be a path every node sees (a shared filesystem) and grokscope installed on every node.

The summary (:func:`summarise_run`) reuses the rest of grokscope: :meth:`grokscope.training.run.Run.milestones`, the
progress cache and phases (:func:`grokscope.report.run_progress`, :func:`grokscope.measures.phases.phases_frame`), the
Gini coefficients of the final weights (:func:`grokscope.measures.checkpoint_measures.weight_measures`) and the analysis
(:func:`grokscope.interp.analysis.analyze`: logit FVE, the W_L directions' FVE, the skip-connection ablations).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..training import run as runs
from ..interp.analysis import analyze
from ..config import PER_MODEL_FIELDS, Config, ConfigError
from ..numerics import configure_denormals
from ..measures.phases import phases_frame
from ..measures.checkpoint_measures import weight_measures
from ..report.run import run_progress
from ..training.run import Run, atomic_write
from ..version import __version__

META = "experiment.json"
SUMMARY = "summary.parquet"
GROUPS = "groups"
EXECUTORS = ("local", "ray")
#: the grokking thresholds of the summary: Fig 21's losses, and the usual test accuracy
LOSS_THRESHOLD = 1e-6
ACC_THRESHOLD = 0.99


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
                seeds: Sequence[int] | None = None) -> list[Config]:
        """The models' configs; ``epochs`` shortens (or lengthens) every model's training; ``tiny`` shrinks
        them to seconds (:func:`tiny_overrides`) keeping the experiment's groups and per-model values; ``seeds``
        keeps only the models of those seeds (a cheaper look: one seed of each setting)."""
        if self.missing():
            raise ConfigError(f"experiment={self.name!r} is invalid here: it needs the training option(s) "
                              + ", ".join("--" + n.replace("_", "-") for n in self.missing())
                              + ", which this grokscope does not have yet")
        dicts = [{**self.base, **m} for m in self.models]
        if tiny:
            dicts = tiny_overrides(dicts)
        if epochs is not None:
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
                raise ConfigError(f"epochs={epochs!r} is invalid: must be an integer >= 1")
            dicts = [{**d, "epochs": epochs} for d in dicts]
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

#: The paper's experiments. Defaults of every field are the mainline's (§3, Appendix A: p 113, 30% of the pairs,
#: AdamW lr 1e-3, weight decay 1, 40,000 epochs, one layer of d_model 128, 4 heads, d_mlp 512).
EXPERIMENTS: dict[str, Spec] = {s.name: s for s in [
    Spec("seeds", "§3, Appendix C.2.1 (Figs 16-19, Tables 3-4)",
         "the mainline with 5 seeds: the other seeds also learn the Fourier algorithm and show the same phases",
         models=_grid(seed=SEEDS5)),
    Spec("frac", "Appendix C.2.2 (Figs 20-21), C.2.3 (Table 5 rows 40-90%)",
         "the mainline on 10%..90% of the pairs, 40k epochs: smaller fractions grok later; >= 60% generalises at "
         "once; 10% and 20% never grok", models=_grid(frac_train=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
         reference="mod_addition_frac_train_sweep.pth"),
    Spec("wd", "Appendix D.1 (Figs 26-27)",
         "weight decay 0, 0.3, 1, 3 x 3 seeds: ~3k epochs to grok at 0.3, 5-10k at 1, ~20k at 3 (the paper's "
         "words); no grokking and no rise of the excluded loss at 0", models=_grid(weight_decay=(0.0, 0.3, 1.0, 3.0),
                                                                                  seed=SEEDS3)),
    Spec("primes", "Appendix C.2.2 (Figs 24-25), C.2.3 (Table 5 rows P=53, P=109)",
         "p = 53 with weight decay 5 (it never generalises at 1) and p = 109, 5 seeds each, groks like the "
         "mainline; p = 401 on 5%, 10%, 20% of the pairs, 3 seeds: 5% and 10% overfit and never generalise, 20% "
         "generalises at once",
         models=_grid(p=(53,), weight_decay=(5.0,), seed=SEEDS5) + _grid(p=(109,), seed=SEEDS5)
         + _grid(p=(401,), frac_train=(0.05, 0.1, 0.2), seed=SEEDS3)),
    Spec("two-layer", "Appendix C.2.2 (Figs 22-23), C.2.3 (Table 5 rows '2 Layer Transformer'), Table 6",
         "the mainline with two layers, 5 seeds: grokking complicated by slingshots; the excluded loss improves "
         "smoothly before grokking", base={"n_layers": 2}, models=_grid(seed=SEEDS5)),
    Spec("dropout", "Appendix D.1 (Fig 28), C.2.3 (Table 5 rows 'Dropout'), Table 6",
         "dropout 0.2, 0.5, 0.8 on the MLP neurons instead of weight decay, 3 seeds: 0.2 and 0.5 grok",
         base={"weight_decay": 0.0}, models=_grid(dropout=(0.2, 0.5, 0.8), seed=SEEDS3)),
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
         "constrained norm (alpha 0.7, wd 0)",
         models=tuple({**m, "seed": s} for m in ({}, {"grokfast": "ema"}, {"grokfast": "ma"},
                                                 {"optimizer": "orthoadamw"},
                                                 {"optimizer": "orthoadamw", "weight_decay": 0.0},
                                                 {"loss": "stablemax"},
                                                 {"norm_constraint": 0.7, "weight_decay": 0.0}) for s in SEEDS3)),
]}


def get_spec(name: str) -> Spec:
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment={name!r} is invalid: must be one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# ---------------------------------------------------------------------- grouping
def _shape_key(c: Config) -> tuple:
    return tuple((k, v) for k, v in c.to_dict().items() if k not in PER_MODEL_FIELDS)


#: How much padding a batched group may carry: a batched run pads every model's train set to the largest one's,
#: so frac 0.1 beside frac 0.9 would cost the small model 9x its own work (the frac sweep: 1.8x in all). Models
#: of one shape whose train sets differ by more than this fraction of the larger train separately.
PAD_TOLERANCE = 0.1


def _n_train(c: Config) -> int:
    return int(c.frac_train * c.p * c.p)


def group_configs(configs: Sequence[Config]) -> list[list[Config]]:
    """The configs split into batchable groups, in order of first appearance, each keeping its models' order:
    equal outside :data:`PER_MODEL_FIELDS`, and with train sets within :data:`PAD_TOLERANCE` of each other."""
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
    """``00``, or ``00_p53``, ``01_p109``...: the index and the fields that differ between groups (the shape
    fields, and ``frac_train`` where it is what splits them, see :data:`PAD_TOLERANCE`)."""
    ds = [g[0].to_dict() for g in groups]
    split_by_frac = all(len({c.frac_train for c in g}) == 1 for g in groups) and \
        any(len({x[0].frac_train for x in groups if _shape_key(x[0]) == _shape_key(g[0])}) > 1 for g in groups)
    differ = [k for k in ds[0] if (k not in PER_MODEL_FIELDS or (k == "frac_train" and split_by_frac))
              and len({json.dumps(d[k]) for d in ds}) > 1]
    return [f"{i:02d}" + "".join(f"_{k.replace('_', '')}{d[k]}" for k in differ) for i, d in enumerate(ds)]


@dataclass
class Group:
    """One unit of work: a batched run of ``configs`` in ``OUT/groups/<name>``."""

    name: str
    configs: list[Config]
    path: Path

    @property
    def epochs(self) -> int:
        return self.configs[0].epochs

    def state(self) -> tuple[str, int]:
        """(``new`` | ``partial`` | ``trained`` | ``done``, last epoch trained): done = trained and summarised."""
        if not (self.path / runs.CONFIG).is_file():
            return "new", 0
        run = Run.load(self.path)
        last = run.checkpoint_epochs[-1] if run.checkpoint_epochs else 0
        if last < self.epochs:
            m = run.metrics
            return "partial", int(m["epoch"].max()) if len(m) else 0
        return ("done" if (self.path / SUMMARY).is_file() else "trained"), last


def plan(name: str, epochs: int | None = None, tiny: bool = False,
         seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The JSON plan of an experiment: its name, the overrides, and every group's name and model configs."""
    spec = get_spec(name)
    seeds = None if seeds is None else sorted(set(seeds))
    groups = group_configs(spec.configs(epochs, tiny, seeds))
    return {"experiment": name, "epochs": epochs, "tiny": tiny, "seeds": seeds, "grokscope_version": __version__,
            "groups": [{"name": n, "models": [c.to_dict() for c in g]} for n, g in zip(_group_names(groups), groups)]}


# ---------------------------------------------------------------------- the experiment directory
class Experiment:
    """An experiment directory: ``Experiment.load(path)``; ``.groups``; ``.summary`` (a DataFrame)."""

    def __init__(self, path: str | Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.name = meta["experiment"]
        self.groups = [Group(g["name"], [Config.from_dict(c) for c in g["models"]], self.path / GROUPS / g["name"])
                       for g in meta["groups"]]

    @classmethod
    def load(cls, path: str | Path) -> "Experiment":
        path = Path(path)
        if not (path / META).is_file():
            raise ConfigError(f"experiment={str(path)!r} is invalid: not a grokscope experiment directory "
                              f"(no {META})")
        return cls(path, json.loads((path / META).read_text()))

    @property
    def spec(self) -> Spec:
        return get_spec(self.name)

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r}, {self.name!r}, groups={len(self.groups)})"

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise ConfigError(f"group={name!r} is invalid: must be one of {', '.join(g.name for g in self.groups)}")

    def status(self) -> pd.DataFrame:
        """One row per group: name, models, epochs, state (new/partial/trained/done), last epoch."""
        rows = []
        for g in self.groups:
            st, last = g.state()
            rows.append({"group": g.name, "models": len(g.configs), "epochs": g.epochs, "state": st, "last_epoch": last})
        return pd.DataFrame(rows)

    def run(self, group: str) -> Run:
        return Run.load(self.group(group).path)

    @property
    def summary(self) -> pd.DataFrame:
        """``summary.parquet``: one row per model of every summarised group (see :func:`summarise_run`); written
        by :func:`run_experiment` (or here, from the groups' summaries, if it is missing)."""
        f = self.path / SUMMARY
        if f.is_file():
            return pd.read_parquet(f)
        return self.write_summary()

    def write_summary(self) -> pd.DataFrame:
        """Concatenate the summarised groups' ``summary.parquet`` into ``OUT/summary.parquet`` (atomically)."""
        parts = [pd.read_parquet(g.path / SUMMARY) for g in self.groups if (g.path / SUMMARY).is_file()]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        atomic_write(self.path / SUMMARY, lambda t: df.to_parquet(t, index=False))
        return df


def _normalised(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A saved plan's groups with every model's config read back through :class:`Config` (so a field added to
    grokscope since the plan was saved takes its default, and the plan of an experiment started by an older
    grokscope still matches when that field is at its default)."""
    return [{**g, "models": [Config.from_dict(m).to_dict() for m in g["models"]]} for g in groups]


def _open(out: Path, name: str, epochs: int | None, tiny: bool, seeds: Sequence[int] | None = None) -> Experiment:
    """Create ``out/experiment.json`` or check that the saved plan is the requested one."""
    want = plan(name, epochs, tiny, seeds)
    if (out / META).is_file():
        have = json.loads((out / META).read_text())
        if have["experiment"] != name:
            raise ConfigError(f"out={str(out)!r} is invalid: it holds the experiment {have['experiment']!r}, not "
                              f"{name!r}")
        if _normalised(have["groups"]) != want["groups"]:
            was = lambda m: " ".join([f"--epochs {m['epochs']}"] * (m.get("epochs") is not None)  # noqa: E731
                                     + ["--tiny"] * bool(m.get("tiny"))
                                     + [f"--seeds {','.join(map(str, m.get('seeds') or []))}"]
                                     * (m.get("seeds") is not None)
                                     ) or "none of --epochs, --tiny, --seeds"
            field = ("epochs" if have.get("epochs") != epochs else
                     "seeds" if have.get("seeds") != want["seeds"] else "tiny")
            value = {"epochs": epochs, "tiny": tiny, "seeds": ",".join(map(str, want["seeds"] or [])) or None}[field]
            raise ConfigError(f"{field}={value} is invalid for {str(out)!r}: it was "
                              f"started with {was(have)}; rerun with the same or use a new --out")
        return Experiment(out, have)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out={str(out)!r} is invalid: it exists and is not an experiment directory")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / META, lambda t: Path(t).write_text(json.dumps(want, indent=1)))
    return Experiment(out, want)


# ---------------------------------------------------------------------- one group: train or resume, summarise
def run_group(out: str | Path, name: str, device: str = "auto", progress: bool = False) -> dict[str, Any]:
    """Train group ``name`` of the experiment in ``out`` (or resume it, or skip it when finished), then write its
    ``summary.parquet``. The unit of work of every executor (a Ray task runs exactly this). Returns
    ``{"group", "before", "seconds"}`` (``before``: its state when it started)."""
    t0 = time.perf_counter()
    exp = Experiment.load(out)
    g = exp.group(name)
    before, _ = g.state()
    if before == "new":
        run = runs.train(g.configs, g.path, device=device, overwrite=True, progress=progress)
    elif before == "partial":
        run = runs.resume(g.path, device=device, progress=progress)
    else:
        run = Run.load(g.path)
    if before != "done":
        df = summarise_run(run, exp.name, g.name)
        atomic_write(g.path / SUMMARY, lambda t: df.to_parquet(t, index=False))
    return {"group": name, "before": before, "seconds": time.perf_counter() - t0}


def _first(epochs: np.ndarray, mask: np.ndarray) -> float:
    return float(epochs[mask][0]) if mask.any() else float("nan")


def summarise_run(run: Run, experiment: str = "", group: str = "") -> pd.DataFrame:
    """One row per model of a finished run: its config; final losses; the grokking epochs (first epoch of train
    and of test loss < 1e-6, Fig 21; test accuracy > 99%, from :meth:`Run.milestones`); key frequencies, Gini of
    W_E and W_L (final checkpoint), logit FVE and the mean [std] FVE of the W_L directions ("MLP FVE", Table 5);
    the skip connection around the MLP mean- and zero-ablated (Table 6; loss and accuracy on all pairs); the
    restricted (test) and excluded (train) losses; the phase ends (§5.2). The analysis columns are NaN for models
    the analysis does not cover (two layers)."""
    ms = run.milestones()
    m = run.metrics
    _, rep = run_progress(run)
    ph = phases_frame(rep).set_index("model")
    w = weight_measures(run.stacked_params(), run.configs[0].n_layers)
    rows = []
    for k, cfg in enumerate(run.configs):
        mk = m[m["model"] == k].sort_values("epoch")
        t = mk.dropna(subset=["test_loss"])
        e, et = mk["epoch"].to_numpy(), t["epoch"].to_numpy()
        r = ms.iloc[k]
        row: dict[str, Any] = {"experiment": experiment, "group": group, "model": k, **cfg.to_dict(),
                               "final_train_loss": r.final_train_loss, "final_test_loss": r.final_test_loss,
                               "final_test_acc": r.final_test_acc, "train_acc_100": r.train_acc_100,
                               "epoch_train_loss_1e6": _first(e, mk["train_loss"].to_numpy() < LOSS_THRESHOLD),
                               "epoch_test_loss_1e6": _first(et, t["test_loss"].to_numpy() < LOSS_THRESHOLD),
                               "epoch_test_acc_99": r.test_acc_99,
                               "keys": [int(x) for x in ph.loc[k, "keys"]], "gini_W_E": float(w["gini_W_E"][k]),
                               "gini_W_L": float(w["gini_W_L"][k])}
        row.update(_analysis_columns(run, k))
        for c in ("memorisation_end", "circuit_formation_end", "cleanup_end"):
            v = ph.loc[k, c]
            row[c] = float("nan") if v is None or v != v else float(v)
        row["generalised"] = bool(ph.loc[k, "generalised"])
        row["claims_holding"], row["claims_decided"] = int(ph.loc[k, "claims_holding"]), int(ph.loc[k, "claims_decided"])
        rows.append(row)
    return pd.DataFrame(rows)


ANALYSIS_COLUMNS = ("logit_fve", "mlp_fve", "mlp_fve_std", "loss_all", "acc_all", "skip_mean_loss", "skip_mean_acc",
                    "skip_zero_loss", "skip_zero_acc", "restricted_loss", "excluded_loss",
                    "excluded_test_loss")


def _analysis_columns(run: Run, k: int) -> dict[str, float]:
    nan = {c: float("nan") for c in ANALYSIS_COLUMNS}
    if run.configs[k].n_layers != 1:
        return nan  # grokscope.interp analyses one-layer models only
    res = analyze(run.model(None, k), run.dataset(k))
    fv = np.array([d.fve for d in res.composition.directions], dtype=float)
    ab = res.ablations.results
    return {"logit_fve": res.composition.logit_fve, "mlp_fve": float(fv.mean()) if len(fv) else float("nan"),
            "mlp_fve_std": float(fv.std()) if len(fv) else float("nan"),
            "loss_all": ab["skip_mlp_mean"].before.loss_all, "acc_all": ab["skip_mlp_mean"].before.acc_all,
            "skip_mean_loss": ab["skip_mlp_mean"].after.loss_all, "skip_mean_acc": ab["skip_mlp_mean"].after.acc_all,
            "skip_zero_loss": ab["skip_mlp_zero"].after.loss_all, "skip_zero_acc": ab["skip_mlp_zero"].after.acc_all,
            "restricted_loss": ab["logits_restricted"].after.loss_test,
            "excluded_loss": ab["logits_excluded"].after.loss_train,
            "excluded_test_loss": ab["logits_excluded"].after.loss_test}  # Table 4's "key frequencies removed"


# ---------------------------------------------------------------------- executors
def run_experiment(name: str, out: str | Path, *, epochs: int | None = None, tiny: bool = False,
                   executor: str = "local", address: str | None = None, device: str = "auto",
                   progress: bool = True, jobs: int = 1, seeds: Sequence[int] | None = None) -> Experiment:
    """Run (or continue) experiment ``name`` into ``out``: every group not done is trained or resumed and
    summarised by ``executor`` (``local`` or ``ray``; ``address``: a Ray cluster, default a local Ray), then
    ``out/summary.parquet`` is written. ``jobs`` (local): groups trained at once, each in its own process with
    ``cpu_count // jobs`` torch threads (it pays when the groups are small beside the machine: many cores, or
    tiny models, whose products do not keep several threads busy). ``seeds``: only the models of these seeds.
    Returns the :class:`Experiment`."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is invalid: must be one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ConfigError("address is invalid with executor 'local': it is the Ray cluster of --executor ray")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={device!r} is invalid: must be one of auto, cpu, cuda")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r} is invalid: must be an integer >= 1")
    if jobs > 1 and executor != "local":
        raise ConfigError("jobs is invalid with executor 'ray': Ray schedules its tasks itself")
    exp = _open(Path(out), name, epochs, tiny, seeds)
    todo = [g.name for g in exp.groups if g.state()[0] != "done"]
    if todo:
        if executor == "ray":
            _run_ray(exp, todo, device, progress, address)
        elif jobs > 1 and len(todo) > 1:
            _run_pool(exp, todo, device, progress, min(jobs, len(todo)))
        else:
            _run_local(exp, todo, device, progress)
    exp.write_summary()
    return exp


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="group", disable=not progress, dynamic_ncols=True, position=0)


def _run_local(exp: Experiment, todo: list[str], device: str, progress: bool) -> None:
    with _bar(len(exp.groups), f"experiment {exp.name}", progress) as bar:
        bar.update(len(exp.groups) - len(todo))
        for name in todo:
            bar.set_postfix_str(f"group {name}", refresh=True)
            run_group(exp.path, name, device, progress)
            bar.update(1)


def _pool_worker(threads: int) -> None:
    """A pool process's set-up, before any torch work: its share of the cores, denormals flushed in every
    worker thread (as ``grokscope train`` does first thing)."""
    torch.set_num_threads(threads)
    configure_denormals(True)


def _run_pool(exp: Experiment, todo: list[str], device: str, progress: bool, jobs: int) -> None:
    """``jobs`` groups at a time, each :func:`run_group` in a fresh (spawned) process; a progress bar over groups.
    A failed group stops the experiment with its error once the running groups have finished (each keeps its
    last checkpoint, so a rerun resumes them)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process whose torch threads may have started
    path = str(exp.path.resolve())
    with _bar(len(exp.groups), f"experiment {exp.name} ({jobs} jobs)", progress) as bar, \
            ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_pool_worker, initargs=(threads,)) as pool:
        bar.update(len(exp.groups) - len(todo))
        futures = {pool.submit(run_group, path, n, device, False): n for n in todo}
        error = None
        try:
            for f in as_completed(futures):
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - kept, re-raised after the others
                    error = error or e
                    continue
                bar.set_postfix_str(f"group {futures[f]} done", refresh=True)
                bar.update(1)
        except KeyboardInterrupt:  # Ctrl-C or `kill`: each running group saves its state (SIGTERM) and stops
            for f in futures:
                f.cancel()
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()  # SIGTERM: runs.train stops between two steps and saves, as for `grokscope train`
            raise
        if error is not None:
            raise error


def _run_ray(exp: Experiment, todo: list[str], device: str, progress: bool, address: str | None) -> None:
    try:
        import ray  # the optional extra grokscope[ray]
    except ImportError:
        raise ConfigError("executor='ray' needs Ray: pip install 'grokscope[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=progress)
        except Exception as e:  # ConnectionError, an authentication error, ...: one line naming the address
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"address={address!r} is invalid: Ray could not "
                              f"{'start' if address is None else 'connect'}: {msg}") from None
    try:
        gpu = device == "cuda" or (device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=2)(run_group)
        path = str(exp.path.resolve())
        pending = {task.remote(path, n, "cuda" if gpu else "cpu", False): n for n in todo}
        with _bar(len(exp.groups), f"experiment {exp.name} (ray)", progress) as bar:
            bar.update(len(exp.groups) - len(todo))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    ray.get(ref)  # re-raises a task's error here
                    bar.set_postfix_str(f"group {pending.pop(ref)} done", refresh=True)
                    bar.update(1)
    finally:
        if started:
            ray.shutdown()


def listing() -> str:
    """The experiments, their sizes and paper sections, one line each (``grokscope experiment list``)."""
    lines = []
    for s in EXPERIMENTS.values():
        n, g, me = s.size()
        need = f"  [needs {', '.join('--' + x.replace('_', '-') for x in s.missing())}]" if s.missing() else ""
        lines.append(f"{s.name:<14} {n:>3} models in {g} group{'s' if g > 1 else ' '}  {me / 1e3:>6.0f}k model-epochs  "
                     f"{s.section}{need}\n{'':<15}{s.doc}")
    return "\n".join(lines)
