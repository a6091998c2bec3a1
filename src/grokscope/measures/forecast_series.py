"""What the fitted grok forecaster (:mod:`grokscope.measures.forecast_model`) knows of a model at ``until``: a
:class:`Series` (its config's lr, weight decay, data fraction and budget, its metrics rows and its *causal* progress
measures: at checkpoint ``e`` the restricted and excluded losses use the keys chosen at ``e``), read from a run
(:func:`series_from_run`, computing only the checkpoints the features read) or from the forecast corpus
(:func:`load_corpus`, ``benchmarks/forecast_corpus.py``'s compact output).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .forecast_features import keys_at
from .progress import compute_progress

ACC = 0.99
N_WINDOW = 12
MEASURES = ("restricted_loss", "restricted_acc", "excluded_loss", "excluded_loss_max", "gini_W_E", "gini_W_L",
            "sum_sq")

__all__ = ["Series", "causal_progress", "wide_progress", "window", "mem_epoch", "observed", "needed_epochs",
           "series_from_run", "load_corpus", "MEASURES"]


# ====================================================================== what is known of a model
@dataclass
class Series:
    """One model's config and curves: ``metrics`` (columns epoch, train_loss, train_acc, test_loss, test_acc; test
    columns NaN between test epochs) and ``progress`` (index epoch = checkpoint, columns :data:`MEASURES` and
    ``n_keys``; causal measures). ``name``/``config``/``part`` label it in a corpus."""

    lr: float
    weight_decay: float
    frac: float
    budget: int
    metrics: pd.DataFrame
    progress: pd.DataFrame
    name: str = ""
    config: str = ""
    part: str = ""
    method: str = "adamw"
    extra: dict = field(default_factory=dict)

    def upto(self, until: int) -> "Series":
        """The same model as known at ``until`` (rows after it dropped)."""
        return Series(self.lr, self.weight_decay, self.frac, self.budget,
                      self.metrics[self.metrics["epoch"] <= until], self.progress[self.progress.index <= until],
                      self.name, self.config, self.part, self.method, self.extra)


def causal_progress(run, epochs: Iterable[int]) -> pd.DataFrame:
    """Tidy ``model, epoch, measure, value``: :data:`MEASURES` at each checkpoint epoch with the keys chosen at that
    checkpoint (:func:`grokscope.measures.forecast_features.keys_at`), and ``n_keys`` (the gap rule's count, 0 if
    it finds none)."""
    rows = []
    for e in sorted(set(int(e) for e in epochs)):
        if e == 0:
            continue
        keys, rule = keys_at(run, e)
        df = compute_progress(run, keys, epochs=[e])
        rows.append(df[df["measure"].isin(MEASURES) & (df["freq"] == 0)][["model", "epoch", "measure", "value"]])
        rows.append(pd.DataFrame({"model": list(keys), "epoch": e, "measure": "n_keys",
                                  "value": [float(len(keys[k])) if rule[k] == "gap" else 0.0 for k in keys]}))
    out = pd.concat(rows, ignore_index=True)
    return out.astype({"model": "int16", "epoch": "int32", "value": "float32"})


def wide_progress(tidy: pd.DataFrame, model: int) -> pd.DataFrame:
    d = tidy[tidy["model"] == model]
    w = d.pivot_table(index="epoch", columns="measure", values="value", aggfunc="first").sort_index()
    w.columns.name = None
    return w.astype(float)


def window(epochs: Sequence[int], until: int, n: int = N_WINDOW) -> list[int]:
    """The trend window: the checkpoint epochs in ``[until / 2, until]``, at most ``n`` evenly spaced, the last
    always included."""
    eps = sorted(e for e in epochs if until / 2 <= e <= until and e > 0)
    if len(eps) <= n:
        return eps
    idx = np.unique(np.round(np.linspace(0, len(eps) - 1, n)).astype(int))
    return [eps[i] for i in idx]


def mem_epoch(metrics: pd.DataFrame) -> int | None:
    """First epoch of train accuracy 100% (``None`` if none in ``metrics``)."""
    hit = metrics.loc[metrics["train_acc"] >= 1.0, "epoch"]
    return int(hit.iloc[0]) if len(hit) else None


def observed(s: Series) -> tuple[float, int | None]:
    """``(G, T_mem)`` over the rows present: ``G`` the first epoch of test accuracy > 99% (inf if none)."""
    t = s.metrics.dropna(subset=["test_acc"])
    hit = t.loc[t["test_acc"] > ACC, "epoch"]
    return (float(hit.iloc[0]) if len(hit) else math.inf), mem_epoch(s.metrics)


def needed_epochs(ckpts: Sequence[int], until: int, t_mem: int | None) -> list[int]:
    """The checkpoints :func:`features` reads at ``until``: the window and the first one at or after ``T_mem``."""
    eps = set(window(ckpts, until))
    if t_mem is not None:
        after = [e for e in ckpts if t_mem <= e <= until]
        if after:
            eps.add(after[0])
    last = [e for e in ckpts if e <= until]
    if last:
        eps.add(last[-1])
    return sorted(eps)


def series_from_run(run, model: int, until: int, metrics: pd.DataFrame | None = None,
                    progress: pd.DataFrame | None = None) -> Series:
    """What :func:`features` needs of ``run``'s ``model`` at ``until``: its metrics ``<= until`` and the causal
    progress at the checkpoints it reads (``progress``: a :func:`causal_progress` frame of the run to reuse)."""
    met = run.metrics if metrics is None else metrics
    met = met[(met["model"] == model) & (met["epoch"] <= until)].sort_values("epoch")
    ckpts = [e for e in run.checkpoint_epochs if e <= until]
    if progress is None:
        progress = causal_progress(run, needed_epochs(ckpts, until, mem_epoch(met)))
    c = run.configs[model]
    return Series(float(c.lr), float(c.weight_decay), float(getattr(c, "frac_train", 0.5) or 0.5), int(c.epochs),
                  met.reset_index(drop=True), wide_progress(progress, model),
                  extra={"checkpoints": [int(e) for e in ckpts]}).upto(until)


def load_corpus(path: str | Path) -> list[Series]:
    """Every model of the corpus directory ``path`` (``benchmarks/forecast_corpus.py``'s output: one directory per
    finished batch, with ``meta.json``), as :class:`Series` with its ``config`` and ``part`` (dev / heldout, from
    ``meta.json``, which took it from ``split.json``)."""
    out = []
    for d in sorted(Path(path).iterdir()):
        if not (d / "meta.json").is_file():
            continue
        meta = json.loads((d / "meta.json").read_text())
        met = pd.read_parquet(d / "metrics.parquet")
        prog = pd.read_parquet(d / "progress.parquet")
        for m in meta["models"]:
            k = m["model"]
            mk = met[met["model"] == k].sort_values("epoch").reset_index(drop=True).astype(
                {c: float for c in ("train_loss", "train_acc", "test_loss", "test_acc")})
            out.append(Series(float(m["lr"]), float(m["weight_decay"]), float(meta["frac"]), int(meta["budget"]),
                              mk, wide_progress(prog, k), name=f"{meta['name']}/model{k}", config=m["config"],
                              part=m["part"], method=meta["method"]))
    return out
