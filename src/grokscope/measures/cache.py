"""A run's saved progress measures and phases: ``progress.parquet`` (a cache of
:func:`grokscope.measures.progress.compute_progress`, reused while it covers the run's last checkpoint with the
requested keys and spacing) and ``phases.json`` (:func:`grokscope.measures.phases.phases_report`). What
``grokscope progress`` does (:func:`run_progress`), without figures: the report and the experiments' summary both
read a run's measures through here.

    from grokscope.measures.cache import load_or_compute_progress, run_progress
    df = load_or_compute_progress(run)             # tidy: model, epoch, measure, freq, value
    df, phases = run_progress(run)                 # and phases.json
    df = run_llc(run, every=4)                     # the LLC's rows added (llc.json, llc_calibration.json)

The LLC's rows (:data:`grokscope.measures.llc.MEASURES`) live in ``progress.parquet`` beside the others (a
sequence task's table holds only them); recomputing the other measures keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from . import llc as lc
from . import phases as ph
from .progress import compute_progress, resolve_keys
from ..files import atomic_write, clean_stale_tmp, load
from ..training.run import Run

PROGRESS_FILE = "progress.parquet"
PHASES_FILE = "phases.json"

__all__ = ["PROGRESS_FILE", "PHASES_FILE", "save_progress", "load_progress", "load_or_compute_progress",
           "run_progress", "write_phases", "load_phases", "run_llc", "saved_llc"]


def save_progress(run: Run, df: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    """Compute (unless ``df`` is given; ``kw`` go to :func:`compute_progress`) and write ``progress.parquet``
    into the run directory, atomically. Returns the frame."""
    if df is None:
        df = compute_progress(run, **kw)
        old = saved_llc(run)  # the LLC's rows survive a recomputation of the others
        if old is not None and set(old[0]["epoch"]) <= set(run.checkpoint_epochs):
            df = _with_llc(df, *old)
    clean_stale_tmp(run.path)
    atomic_write(run.path / PROGRESS_FILE, lambda tmp: df.to_parquet(tmp, index=False))
    return df


def load_progress(run: Run) -> pd.DataFrame:
    """The saved ``progress.parquet`` of a run (``attrs`` restored); a damaged one is one line (DamagedFile)."""
    cols = {"model", "epoch", "measure", "value"}
    return load(run.path / PROGRESS_FILE, pd.read_parquet,
                lambda df: None if cols <= set(df.columns) else f"columns {list(df.columns)}, expected {sorted(cols)}",
                hint=f"it is a cache: delete it, or `grokscope progress {run.path} --recompute`")


def _up_to_date(df: pd.DataFrame, run, keys, every: int | None) -> bool:
    """Whether a saved table covers the run's checkpoints with the requested keys and spacing (and has the
    ``freq`` column: one saved before it existed is recomputed)."""
    if "freq" not in df.columns or not len(df) or not run.checkpoint_epochs or int(df["epoch"].max()) != run.checkpoint_epochs[-1]:
        return False
    if every is not None and int(df.attrs.get("every", -1)) != int(every):
        return False
    if keys is not None:
        saved = {int(k): [int(x) for x in v] for k, v in df.attrs.get("keys", {}).items()}
        return saved == resolve_keys(run, keys)
    return True


def load_or_compute_progress(run: Run, *, keys: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
                             every: int | None = None, recompute: bool = False, **kw) -> pd.DataFrame:
    """The saved ``progress.parquet`` if it covers the run's last checkpoint (and was made with ``keys`` /
    ``every`` where those are given) and ``recompute`` is false; else :func:`save_progress` (computed with
    ``keys``, ``every`` (default 1) and ``kw``)."""
    if not recompute and (run.path / PROGRESS_FILE).is_file():
        df = load_progress(run)
        if _up_to_date(df, run, keys, every):
            return df
    return save_progress(run, keys=keys, every=1 if every is None else every, **kw)


def run_progress(run: Run, *, keys: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
                 every: int | None = None, recompute: bool = False, **kw) -> tuple[pd.DataFrame, dict[str, Any]]:
    """What ``grokscope progress RUN`` does: ``progress.parquet`` (:func:`load_or_compute_progress`), then the
    phases and claims (:func:`grokscope.measures.phases.phases_report`, written to ``phases.json``). Returns both;
    :func:`grokscope.measures.phases.summary` turns the report into text."""
    df = load_or_compute_progress(run, keys=keys, every=every, recompute=recompute, **kw)
    return df, write_phases(run, ph.phases_report(run, df))


def write_phases(run: Run, report: dict[str, Any]) -> dict[str, Any]:
    """Write a phases report (:func:`grokscope.measures.phases.phases_report`) to ``phases.json``, atomically; returns it."""
    text = json.dumps(report, indent=2)
    atomic_write(run.path / PHASES_FILE, lambda tmp: Path(tmp).write_text(text))
    return report


def load_phases(run: Run) -> dict[str, Any]:
    """The saved ``phases.json`` of a run; a damaged one is one line (DamagedFile)."""
    return load(run.path / PHASES_FILE, lambda f: json.loads(f.read_text()),
                lambda d: None if isinstance(d, dict) and isinstance(d.get("models"), (list, dict)) else
                "not a phases report (no 'models')", hint=f"delete it, or `grokscope progress {run.path}`")


# ---------------------------------------------------------------------- the LLC
def saved_llc(run: Run) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The LLC's rows of the saved ``progress.parquet`` and their attrs (``llc_every``, ``llc_epochs``), or None."""
    if not (run.path / PROGRESS_FILE).is_file():
        return None
    df = load_progress(run)
    rows = df[df["measure"].isin(lc.MEASURES)]
    if not len(rows) or "llc_every" not in df.attrs:
        return None
    return rows, {k: df.attrs[k] for k in ("llc_every", "llc_epochs") if k in df.attrs}


def _with_llc(df: pd.DataFrame, rows: pd.DataFrame, attrs: Mapping[str, Any]) -> pd.DataFrame:
    """``df`` without its LLC rows, plus ``rows`` (sorted by model and epoch), attrs merged."""
    keep = df[~df["measure"].isin(lc.MEASURES)] if len(df) else df
    out = pd.concat([keep, rows], ignore_index=True) if len(keep) else rows.reset_index(drop=True)
    out = out.astype({"model": "int32", "epoch": "int64", "freq": "int32", "value": "float64"})
    out = out.sort_values(["model", "epoch"], kind="stable", ignore_index=True)
    out.attrs = {**df.attrs, **attrs}
    return out


def run_llc(run: Run, df: pd.DataFrame | None = None, *, every: int = 1, recompute: bool = False,
            progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any], bool]:
    """What ``grokscope progress RUN --llc`` adds: the LLC of every model at every ``every``-th checkpoint
    (:func:`grokscope.measures.llc.compute_llc`) merged into ``df`` (the other measures; None: those saved, if
    any) and written to ``progress.parquet``, with ``llc.json`` and ``llc_calibration.json``. Reused when the
    saved rows cover the run's last checkpoint with the same ``every`` (unless ``recompute``); a saved
    calibration is reused unless ``recompute``. Returns ``(table, llc report, computed?)``."""
    old = saved_llc(run)
    if df is None:
        df = load_progress(run) if old is not None else pd.DataFrame(
            {"model": pd.Series(dtype="int32"), "epoch": pd.Series(dtype="int64"), "measure": pd.Series(dtype=object),
             "freq": pd.Series(dtype="int32"), "value": pd.Series(dtype="float64")})
    last = run.checkpoint_epochs[-1]
    fresh = (not recompute and old is not None and int(old[1].get("llc_every", -1)) == int(every)
             and int(old[0]["epoch"].max()) == last and (run.path / lc.LLC_FILE).is_file())
    if fresh:
        out = _with_llc(df, *old)
        if not df.equals(out):
            save_progress(run, out)
        return out, lc.load_llc(run), False
    cal = None if recompute or not (run.path / lc.CALIBRATION_FILE).is_file() else lc.load_calibration(run)
    if cal is not None and cal.get("epoch") != last:
        cal = None  # calibrated on another final checkpoint (the run trained on since)
    rows, report, cal = lc.compute_llc(run, every, calibration=cal, progress=progress)
    out = _with_llc(df, pd.DataFrame(rows), {"llc_every": int(every), "llc_epochs": report["epochs"]})
    if cal is not None:
        lc.write_json(run.path / lc.CALIBRATION_FILE, cal)
    lc.write_json(run.path / lc.LLC_FILE, report)
    save_progress(run, out)
    return out, report, True
