"""The run directory's format and guarantees: its file names, ``config.json`` (and the older formats it reads),
``state.pt`` and checkpoints written atomically and read back checked, the lock of one trainer per run, signals
deferred between steps, and what ``--overwrite`` may delete. The reading and training API is :mod:`.run`.

Layout of a run directory::

    config.json                    the task and resolved config of each of the K models, versions, device
    metrics.parquet                one row per model x logged step (see Run.metrics)
    checkpoints/epoch_000100.safetensors   parameters of all K models, stacked on a leading axis
    state.pt                       what resume needs: params, Adam moments, step, RNGs, metric rows

Every file is written to a temporary name in the same directory and moved into place with ``os.replace``
(:func:`grokscope.files.atomic_write`), so an interrupted run never leaves a half-written file under a real name;
every file is read through :func:`grokscope.files.load`, so a damaged one is one line ``FILE is damaged: WHAT``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from ..checks import ConfigError
from ..config import Config, check_batchable
from ..files import atomic_write, check_output, check_path_text, load, pid_alive
from ..version import __version__
from .trainer import METRICS as METRIC_BUFFERS
from .trainer import NEW_METRICS, Trainer

CONFIG = "config.json"
METRICS = "metrics.parquet"
STATE = "state.pt"
CKPT_DIR = "checkpoints"
LOCK = ".lock"
#: config.json's "kind" of a sequence-task run written before one config served every task
LEGACY_SEQ_KIND = "seqtask"
#: what a run directory may hold besides its checkpoints: what --overwrite may delete (and nothing else)
RUN_FILES = (CONFIG, METRICS, STATE, LOCK, "progress.parquet", "phases.json", "llc.json", "llc_calibration.json",
             "report.html")
RUN_FILE_RE = re.compile(r"^(analysis[A-Za-z0-9_]*\.json|\..+\.tmp)$")
CKPT_RE = re.compile(r"^epoch_(\d+)\.safetensors$")
METRIC_COLS = ["model", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"]


def ckpt_name(epoch: int) -> str:
    return f"epoch_{epoch:06d}.safetensors"


def checkpoint_epochs(path: Path) -> list[int]:
    d = path / CKPT_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for f in d.iterdir() if (m := CKPT_RE.match(f.name)))  # any digits


# ---------------------------------------------------------------------- config.json
def code_version() -> dict[str, Any]:
    """The code that trains: grokscope's git commit (None when it is not run from a git checkout) and whether the
    checkout had uncommitted changes, and the versions of the packages the numbers depend on."""
    import subprocess

    here = Path(__file__).resolve().parent
    commit, dirty = None, None
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(here), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=5)
        r = run("rev-parse", "HEAD")
        if r.returncode == 0:
            commit = r.stdout.strip()
            st = run("status", "--porcelain", "--untracked-files=no", "--", str(here.parent))
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git_commit": commit, "git_dirty": dirty, "numpy_version": np.__version__,
            "pandas_version": pd.__version__}


def meta(configs: list[Config], device: torch.device) -> dict[str, Any]:
    return {"grokscope_version": __version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), **code_version(), "device": str(device),
            "models": [c.to_dict() for c in configs]}


def configs_of(meta: dict[str, Any]) -> list[Config]:
    """The model configs of a config.json's contents, in any format grokscope wrote: ``models`` (each with its
    ``task``, or the modular ``op`` of older runs), or an older sequence-task run's one ``config``."""
    if meta.get("kind") == LEGACY_SEQ_KIND:
        return [Config.from_dict({**meta["config"], "_legacy_sequence": True})]
    return [Config.from_dict(m) for m in meta["models"]]


def meta_problem(meta: Any) -> str | None:
    """What is wrong with the contents of a config.json (None if nothing)."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    if meta.get("kind") == LEGACY_SEQ_KIND:
        if not isinstance(meta.get("config"), dict):
            return "a sequence-task run without its \"config\""
    else:
        models = meta.get("models")
        if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
            return "no 'models' list of model configs"
    try:
        check_batchable(configs_of(meta))
    except (ConfigError, TypeError, KeyError) as e:
        return str(e)
    return None


def read_meta(path: Path) -> dict[str, Any]:
    return load(path / CONFIG, lambda f: json.loads(f.read_text()), meta_problem,
                hint="it cannot be read back; train again with --overwrite")


# ---------------------------------------------------------------------- metrics, checkpoints, state
def metrics_frame(trainer: Trainer, upto: int) -> pd.DataFrame:
    """Tidy metrics: one row per (model, step) logged, steps 0..upto: model, epoch, the :data:`METRIC_BUFFERS`, then
    (sampled tasks) ``train_loss_tok{k}``, ``test_loss_tok{k}`` (NaN off the test steps); rows whose loss is NaN or
    infinite (a diverged run) are kept."""
    m = {k: v[: upto + 1].cpu() for k, v in trainer.metrics.items()}
    tok = {k: v[: upto + 1] for k, v in trainer.tok.items()}
    frames = []
    for k in range(trainer.K):
        cols: dict[str, Any] = {"model": k, "epoch": range(upto + 1), **{c: m[c][:, k].numpy() for c in m}}
        for split, t in tok.items():
            cols |= {f"{split}_loss_tok{j}": t[:, k, j].numpy() for j in range(t.shape[2])}
        df = pd.DataFrame(cols)
        frames.append(df[df["train_acc"].notna()])  # logged rows, a non-finite loss included
    out = pd.concat(frames, ignore_index=True)
    out["model"] = out["model"].astype("int32")
    out["epoch"] = out["epoch"].astype("int64")
    return out


def read_metrics(path: Path) -> pd.DataFrame:
    f = path / METRICS
    if not f.is_file():
        return pd.DataFrame(columns=METRIC_COLS + list(NEW_METRICS))
    df = load(f, pd.read_parquet, lambda df: None if set(METRIC_COLS) <= set(df.columns) else
              f"columns {list(df.columns)}, expected {METRIC_COLS}",
              hint=f"`grokscope train --resume {path}` rewrites it from {STATE}")
    for c in NEW_METRICS:  # a run written before these columns existed: NaN
        if c not in df.columns:
            df[c] = np.nan
    return df


def save_checkpoint(path: Path, trainer: Trainer, epoch: int) -> None:
    params = {k: v.detach().cpu().contiguous() for k, v in trainer.named_params().items()}
    size = sum(v.numel() * v.element_size() for v in params.values())
    atomic_write(path / CKPT_DIR / ckpt_name(epoch), lambda t: save_file(params, t), size=size)
    save_state(path, trainer)


def save_state(path: Path, trainer: Trainer) -> None:
    df = metrics_frame(trainer, trainer.epoch)
    atomic_write(path / METRICS, lambda t: df.to_parquet(t, index=False))
    st = trainer.state_dict()
    atomic_write(path / STATE, lambda t: torch.save(st, t), size=sum(v.numel() * v.element_size() for v in st.values()))


def state_problem(st: Any, trainer: Trainer) -> str | None:
    """What is wrong with a loaded ``state.pt`` for ``trainer`` (None: nothing): a dict of tensors with the
    parameters and moments of its shape, an ``epoch`` in 0..epochs, metric rows ``(n, K)`` (``(n,)`` in an older
    one-model state) with n <= epochs + 1, and the RNG states. Older states lack what did not exist yet."""
    if not isinstance(st, dict) or not all(isinstance(v, torch.Tensor) for v in st.values()):
        return "expected a dict of tensors"
    full = trainer.state_dict()
    fixed = {k: (tuple(v.shape), v.dtype) for k, v in full.items()
             if k in ("params", "exp_avg", "exp_avg_sq", "epoch") or k.startswith(("grokfast.", "muon."))}
    need = set(fixed) | ({"stream"} if trainer.streams else set()) | {"metrics." + k for k in METRIC_BUFFERS[:4]}
    need |= {"tok.train", "tok.test"} if trainer.per_token else set()
    missing = sorted(need - set(st))
    if missing:
        return f"missing {', '.join(missing)}"
    wrong = [f"{k} {tuple(st[k].shape)} {st[k].dtype} (expected {s} {d})" for k, (s, d) in fixed.items()
             if (tuple(st[k].shape), st[k].dtype) != (s, d)]
    E, K = trainer.cfg.epochs, trainer.K
    if not wrong and not 0 <= int(st["epoch"]) <= E:
        return f"epoch {int(st['epoch'])} outside 0..{E}"
    n = int(st["epoch"]) + 1  # the rows logged so far (older states hold all E + 1)
    for k in METRIC_BUFFERS:
        v = st.get("metrics." + k)
        if v is not None and not (v.dtype == torch.float64 and n <= v.shape[0] <= E + 1
                                  and tuple(v.shape[1:]) in ((K,), () if K == 1 else (K,))):
            wrong.append(f"metrics.{k} {tuple(v.shape)} {v.dtype} (expected ({n}..{E + 1}, {K}) float64)")
    S = trainer.task.n_scored
    rows = st.get("tok_rows")
    if rows is not None and (rows.dtype != torch.int64 or rows.dim() != 1 or
                             (len(rows) and not 0 <= int(rows.min()) <= int(rows.max()) <= E)):
        wrong.append(f"tok_rows {tuple(rows.shape)} {rows.dtype} (expected int64 rows in 0..{E})")
    for split in ("train", "test") if trainer.per_token else ():
        v = st["tok." + split]
        n = len(rows) if rows is not None else None
        if not (v.dtype == torch.float64 and v.numel() % (K * S) == 0 and v.shape[-1] == S
                and v.shape[0] <= E + 1 and (n is None or v.shape[0] == n)):
            wrong.append(f"tok.{split} {tuple(v.shape)} {v.dtype} (expected (rows, {K}, {S}) float64)")
    if trainer.streams and st["stream"].numel() % K:
        wrong.append(f"stream {tuple(st['stream'].shape)} (expected {K} generator states)")
    return "wrong shapes: " + ", ".join(wrong) if wrong else None


def load_state(path: Path, trainer: Trainer) -> None:
    """Load ``state.pt`` into ``trainer`` (weights only: no pickled code runs), checking every tensor's shape."""
    st = load(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
              lambda st: state_problem(st, trainer),
              hint="delete it and the checkpoints after the last good one, or train again with --overwrite")
    load(path, lambda p: trainer.load_state_dict(st))  # e.g. a generator state of the wrong size


# ---------------------------------------------------------------------- what may be written where
def foreign_entries(path: Path) -> list[str]:
    """Entries of ``path`` that are not a run's (:data:`RUN_FILES`, analysis*.json, temporary files, and
    checkpoints/ holding only epoch_N.safetensors and temporary files)."""
    out = []
    for e in sorted(path.iterdir()):
        if e.name == CKPT_DIR and e.is_dir() and not e.is_symlink():
            out += [f"{CKPT_DIR}/{c.name}" for c in sorted(e.iterdir())
                    if not (c.is_file() and (CKPT_RE.match(c.name) or RUN_FILE_RE.match(c.name)))]
        elif not ((e.name in RUN_FILES or RUN_FILE_RE.match(e.name)) and e.is_file() and not e.is_symlink()):
            out.append(e.name + ("/" if e.is_dir() else ""))
    return out


def check_overwritable(path: Path) -> None:
    """``--overwrite`` replaces only a grokscope run directory that nobody is training."""
    if not (path / CONFIG).is_file():
        raise ConfigError(f"out={str(path)!r} is invalid for --overwrite: it is not a grokscope run directory "
                          f"(no {CONFIG}); --overwrite only replaces a run")
    foreign = foreign_entries(path)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ConfigError(f"out={str(path)!r} is invalid for --overwrite: it holds files that are not a run's "
                          f"({', '.join(foreign[:5])}{more}); move them away first")
    pid = lock_holder(path / LOCK)
    if pid:
        raise ConfigError(f"out={str(path)!r} is invalid for --overwrite: it is being trained by process {pid}")


def check_run_dir(path: str | Path, overwrite: bool = False) -> None:
    """Check that ``path`` may become a run directory: new or empty, or with ``overwrite`` a run directory that no
    live trainer holds. Writes nothing."""
    check_path_text("out", path)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out={str(path)!r} is invalid: it is a file, not a run directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError(f"out={str(path)!r} is invalid: it already exists; continue it with "
                              f"`grokscope train --resume {path}` or replace it with --overwrite")
        check_overwritable(path)
    check_output("out", path, kind="dir", owner="train")


# ---------------------------------------------------------------------- one trainer per run; signals
def lock_holder(lock: Path) -> int:
    """The pid of the live process holding ``lock`` (0 if none: no lock, or its process is gone)."""
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid and pid != os.getpid() and pid_alive(pid) else 0


def acquire_lock(path: Path) -> Path:
    """One trainer per run directory: a second trainer of a run in progress is refused."""
    lock = path / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = lock_holder(lock)
            if pid:
                raise ConfigError(f"run={str(path)!r} is invalid: it is being trained by process {pid} "
                                  f"(remove {lock} if that is wrong)") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ConfigError(f"run={str(path)!r} is invalid: could not take its lock {lock}")


def release_lock(lock: Path) -> None:
    """Remove ``lock`` if this process still holds it (never another trainer's)."""
    try:
        if lock.read_text().strip() == str(os.getpid()):
            lock.unlink()
    except (OSError, ValueError):
        pass


@contextmanager
def signals_deferred(trainer: Trainer):
    """While training: SIGINT and SIGTERM set ``trainer.interrupted``; the loop checks it between steps, so a
    signal never lands inside a step or a file write (the main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        trainer.interrupted = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
