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
from ..files import atomic_write
from ..training.run import Run
from .registry import Spec, get_spec, plan

META = "experiment.json"
SUMMARY = "summary.parquet"
GROUPS = "groups"


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


def open_experiment(out: Path, name: str, epochs: int | None, tiny: bool,
                    seeds: Sequence[int] | None = None) -> Experiment:
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
