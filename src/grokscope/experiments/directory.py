"""An experiment directory: ``OUT/experiment.json`` (the plan, created or checked by :func:`open_experiment`),
its groups (:class:`Group`: one batched run each under ``OUT/groups/``, and their state) and the concatenated
``OUT/summary.parquet`` (:class:`Experiment`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..training import run as runs
from ..config import Config, ConfigError
from ..files import DamagedFile, atomic_write, check_output, load
from ..training.run import Run
from ..version import __version__
from .registry import PLAN_OPTIONS, Spec, get_spec, plan

META = "experiment.json"
SUMMARY = "summary.parquet"
GROUPS = "groups"
#: the columns every group's summary.parquet has (more follow: config fields, the analysis)
SUMMARY_KEYS = ("group", "model", "final_train_loss", "final_test_loss", "final_test_acc")
_PLAN_HINT = "restore it, or start the experiment again in a new --out"


def plan_problem(meta: Any) -> str | None:
    """What is wrong with the contents of an experiment.json (None if nothing): its shape, its group names (plain
    folder names, distinct) and every model config (read back through :class:`Config`)."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    name = meta.get("experiment")
    if not isinstance(name, str) or not name:
        return f"no experiment name (found {name!r})"
    groups = meta.get("groups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        return "no 'groups' list"
    names = []
    for g in groups:
        n = g.get("name")
        if not isinstance(n, str) or not n or n in (".", "..") or "/" in n or "\\" in n or "\0" in n \
                or n != n.strip() or not n.isprintable():
            return f"group name {n!r} is not a plain folder name"
        names.append(n)
        models = g.get("models")
        if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
            return f"group {n!r} has no 'models' list of model configs"
        for m in models:
            try:
                Config.from_dict(m)
            except (ConfigError, TypeError, KeyError, ValueError) as e:
                return f"group {n!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    if len(set(names)) != len(names):
        return "two groups share a name"
    return None


def read_plan(path: Path) -> dict[str, Any]:
    """``path/experiment.json`` read through the damaged-file loader: :class:`DamagedFile` naming it otherwise."""
    return load(path / META, lambda f: json.loads(f.read_text()), plan_problem, hint=_PLAN_HINT)


def _summary_problem(df: Any) -> str | None:
    if not isinstance(df, pd.DataFrame):
        return f"expected a table, found {type(df).__name__}"
    missing = [c for c in SUMMARY_KEYS if c not in df.columns]
    return f"no column {', '.join(missing)}" if missing and len(df.columns) else None


def read_summary(f: Path, hint: str) -> pd.DataFrame:
    """A summary.parquet through the damaged-file loader (an empty table, of a summary without models, passes)."""
    return load(f, pd.read_parquet, _summary_problem, hint=hint)


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
        try:
            run = Run.load(self.path)
        except DamagedFile as e:  # the run's own hint (train --overwrite) is not how an experiment's group is redone
            raise DamagedFile(e.path, e.what, f"move {self.path} away and rerun the same command: group {self.name} "
                              "is trained again") from None
        last = run.checkpoint_epochs[-1] if run.checkpoint_epochs else 0
        if not run.finished:
            m = run.metrics
            return "partial", int(m["epoch"].max()) if len(m) else 0
        return ("done" if (self.path / SUMMARY).is_file() else "trained"), last


# ---------------------------------------------------------------------- the experiment directory
class Experiment:
    """An experiment directory: ``Experiment.load(path)``; ``.groups``; ``.summary`` (a DataFrame)."""

    def __init__(self, path: str | Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.name = meta["experiment"]
        self.groups = [Group(g["name"], [Config.from_dict(c) for c in g["models"]], self.path / GROUPS / g["name"])
                       for g in meta["groups"]]
        #: the groups appended by :func:`open_experiment` because the experiment has grown since the directory was
        #: started (written to experiment.json by :meth:`save_plan`)
        self.added: list[str] = []

    @classmethod
    def load(cls, path: str | Path) -> "Experiment":
        path = Path(path)
        if not (path / META).is_file():
            raise ConfigError(f"experiment={str(path)!r} is invalid: not a grokscope experiment directory "
                              f"(no {META})")
        return cls(path, read_plan(path))

    def save_plan(self) -> None:
        """Write ``experiment.json`` (the plan) unless it is there (:func:`open_experiment` checked it matches)
        and no group was :attr:`added`."""
        if self.added or not (self.path / META).is_file():
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path / META, lambda t: Path(t).write_text(json.dumps(self.meta, indent=1)))

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
            return read_summary(f, "it is rewritten from the groups' summaries: delete it and rerun the command")
        return self.write_summary()

    def write_summary(self) -> pd.DataFrame:
        """Concatenate the summarised groups' ``summary.parquet`` into ``OUT/summary.parquet`` (atomically)."""
        parts = [read_summary(g.path / SUMMARY, f"delete it and rerun the experiment: group {g.name} is summarised "
                              "again from its run") for g in self.groups if (g.path / SUMMARY).is_file()]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        atomic_write(self.path / SUMMARY, lambda t: df.to_parquet(t, index=False))
        return df


def _normalised(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A saved plan's groups with every model's config read back through :class:`Config` (so a field added to
    grokscope since the plan was saved takes its default, and the plan of an experiment started by an older
    grokscope still matches when that field is at its default)."""
    return [{**g, "models": [Config.from_dict(m).to_dict() for m in g["models"]]} for g in groups]


def _options(meta: dict[str, Any]) -> dict[str, Any]:
    """A plan's options (:data:`PLAN_OPTIONS`; absent: None, ``tiny`` a bool), lists shown as ``0,1``."""
    def shown(k: str, v: Any) -> Any:
        return bool(v) if k == "tiny" else ",".join(map(str, v)) if isinstance(v, list) else v
    return {k: shown(k, meta.get(k)) for k in PLAN_OPTIONS}


def _flags(options: dict[str, Any]) -> str:
    """The command-line options of :func:`_options` (those that are set), e.g. ``--epochs 100 --tiny``."""
    flag = lambda k, v: "--" + k.replace("_", "-") + ("" if v is True else f" {v}")  # noqa: E731
    return " ".join(flag(k, v) for k, v in options.items() if v not in (None, False)) \
        or "none of " + ", ".join("--" + k.replace("_", "-") for k in PLAN_OPTIONS)


def open_experiment(out: Path, name: str, epochs: int | None, tiny: bool,
                    seeds: Sequence[int] | None = None, write: bool = True, *,
                    test_every: int | None = None) -> Experiment:
    """Create ``out/experiment.json`` or check that the saved plan is the requested one (or its first groups,
    unchanged, names included: the experiment has grown since, and the new groups are appended, see
    :attr:`Experiment.added`). ``write=False``: only check (``out`` may be used and the plan is sound), write
    nothing; :meth:`Experiment.save_plan` writes it."""
    out = Path(out)
    want = plan(name, epochs, tiny, seeds, test_every)
    if (out / META).is_file():
        have = read_plan(out)
        if have["experiment"] != name:
            raise ConfigError(f"out={str(out)!r} is invalid: it holds the experiment {have['experiment']!r}, not "
                              f"{name!r}")
        saved, planned = _normalised(have["groups"]), want["groups"]
        if saved != planned:
            recorded, asked = _options(have), _options(want)
            differ = [k for k in PLAN_OPTIONS if recorded[k] != asked[k]]
            if not differ and saved == planned[:len(saved)]:
                # the experiment has grown since this directory was started (groups appended, its own unchanged,
                # names included): the new ones are appended to its plan and run too
                exp = Experiment(out, {**have, "groups": have["groups"] + planned[len(saved):],
                                       "extended_by": __version__})
                exp.added = [g["name"] for g in planned[len(saved):]]
                if write:
                    exp.save_plan()
                return exp
            if not differ:  # the same options, another plan: it was edited
                raise DamagedFile(out / META, "its groups are not the plan of the options it records "
                                  f"({_flags(recorded)}): edited, or written by grokscope "
                                  f"{have.get('grokscope_version', '?')}", _PLAN_HINT)
            raise ConfigError(f"{differ[0]}={asked[differ[0]]} is invalid for {str(out)!r}: it was "
                              f"started with {_flags(recorded)}; rerun with the same or use a new --out")
        return Experiment(out, have)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"out={str(out)!r} is invalid: it exists and is not an experiment directory")
    check_output("out", out, kind="dir")
    exp = Experiment(out, want)
    if write:
        exp.save_plan()
    return exp
