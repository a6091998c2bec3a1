"""Run directories: create, train, checkpoint atomically, resume, load. The storage layer: it knows nothing of
the analysis, progress measures, phases or figures, which take a :class:`Run` (:mod:`grokscope.report`).

Layout of a run directory::

    config.json                    resolved configs of the K models, versions, device
    metrics.parquet                one row per model x logged epoch (see Run.metrics)
    checkpoints/epoch_000100.safetensors   parameters of all K models, stacked on a leading axis
    state.pt                       what resume needs: params, Adam moments, step, RNG, metric buffers

Every file is written to a temporary name in the same directory and moved into place with
``os.replace`` (:func:`grokscope.files.atomic_write`), so an interrupted run never leaves a half-written file
under a real name; every file is read through :func:`grokscope.files.load`, so a damaged one is one line
``FILE is damaged: WHAT``. While a run trains, SIGINT and SIGTERM only set ``Trainer.interrupted``: the loop
stops between two steps (never inside the optimiser's update) and the state is saved.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .. import checks as ck
from ..model import export
from ..config import Config, ConfigError, check_batchable, memory_needed
from ..files import NoSpace, atomic_write, check_output, clean_stale_tmp, load, pid_alive
from ..model.transformer import Transformer, param_shapes
from ..tasks.modular import Dataset, make_dataset
from .trainer import NEW_METRICS, Trainer, resolve_device
from ..version import __version__

CONFIG = "config.json"
METRICS = "metrics.parquet"
STATE = "state.pt"
CKPT_DIR = "checkpoints"


LOCK = ".lock"
SEQ_KIND = "seqtask"  # config.json's "kind" of a sequence-task run (grokscope.train.seqrun)
#: what a run directory may hold besides its checkpoints: what --overwrite may delete (and nothing else)
RUN_FILES = (CONFIG, METRICS, STATE, LOCK, "progress.parquet", "phases.json", "report.html")
_RUN_FILE_RE = re.compile(r"^(analysis[A-Za-z0-9_]*\.json|\..+\.tmp)$")
_CKPT_RE = re.compile(r"^epoch_(\d+)\.safetensors$")
_METRIC_COLS = ["model", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"]


class NonFiniteLoss(RuntimeWarning):
    """A model's train loss became NaN or infinite (training diverged)."""


def ckpt_name(epoch: int) -> str:
    return f"epoch_{epoch:06d}.safetensors"


def metrics_frame(trainer: Trainer, upto: int) -> pd.DataFrame:
    """Tidy metrics: one row per (model, epoch) logged, epochs 0..upto; rows whose loss is NaN or infinite (a
    diverged run) are kept."""
    m = {k: v[: upto + 1].cpu() for k, v in trainer.metrics.items()}
    frames = []
    for k in range(trainer.K):
        df = pd.DataFrame({"model": k, "epoch": range(upto + 1), **{c: m[c][:, k].numpy() for c in m}})
        frames.append(df[df["train_acc"].notna()])  # logged rows, a non-finite loss included
    out = pd.concat(frames, ignore_index=True)
    out["model"] = out["model"].astype("int32")
    out["epoch"] = out["epoch"].astype("int64")
    return out


class Run:
    """A run directory. ``Run.load(path)``; ``run.metrics``; ``run.model(epoch=..., model=i)``."""

    def __init__(self, path: str | Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.configs = [Config.from_dict(c) for c in meta["models"]]

    # ------------------------------------------------------------------ opening
    @classmethod
    def load(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise ConfigError(f"run={str(path)!r} is invalid: not a grokscope run directory (no {CONFIG})")
        meta = load(path / CONFIG, lambda f: json.loads(f.read_text()), _meta_problem,
                    hint="it cannot be read back; train again with --overwrite")
        if meta.get("kind") == SEQ_KIND:
            raise ConfigError(f"run={str(path)!r} is invalid here: it is a sequence-task run (Appendix D.3; "
                              "open it with grokscope.train.seqrun.SeqRun.load)")
        return cls(path, meta)

    @property
    def K(self) -> int:
        return len(self.configs)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, models={self.K}, checkpoints={len(self.checkpoint_epochs)})"

    # ------------------------------------------------------------------ contents
    @property
    def metrics(self) -> pd.DataFrame:
        """Columns: model, epoch, train_loss, train_acc, test_loss, test_acc (test: NaN between evaluations), then
        softmax_collapse, softmax_sum1, w_u_norm (:data:`grokscope.train.trainer.NEW_METRICS`; NaN for a run written
        before they existed)."""
        f = self.path / METRICS
        if not f.is_file():
            return pd.DataFrame(columns=_METRIC_COLS + list(NEW_METRICS))
        df = load(f, pd.read_parquet, lambda df: None if set(_METRIC_COLS) <= set(df.columns) else
                  f"columns {list(df.columns)}, expected {_METRIC_COLS}",
                  hint=f"`grokscope train --resume {self.path}` rewrites it from {STATE}")
        for c in NEW_METRICS:  # a run written before these columns existed: NaN
            if c not in df.columns:
                df[c] = np.nan
        return df

    def milestones(self) -> pd.DataFrame:
        """One row per model: the first epoch at which train accuracy reaches 100% (to 1e-9: accuracies are
        means), test accuracy passes 99% and 99.9% and test loss falls below 1e-5 (NaN if never), the lowest
        test loss and its epoch, and the last logged epoch's losses and test accuracy."""
        df = self.metrics
        rows = []
        for k in range(self.K):
            m = df[df["model"] == k].sort_values("epoch")
            t = m.dropna(subset=["test_loss"])

            def first(frame: pd.DataFrame, mask: pd.Series) -> float:
                e = frame.loc[mask, "epoch"]
                return float(e.iloc[0]) if len(e) else float("nan")

            last = m.iloc[-1] if len(m) else None
            lt = t.iloc[-1] if len(t) else None
            best = t.loc[t["test_loss"].idxmin()] if len(t) else None
            rows.append({
                "model": k, "seed": self.configs[k].seed, "last_epoch": float("nan") if last is None else int(last.epoch),
                "train_acc_100": first(m, m["train_acc"] >= 1.0 - 1e-9), "test_acc_99": first(t, t["test_acc"] > 0.99),
                "test_acc_999": first(t, t["test_acc"] > 0.999), "test_loss_under_1e5": first(t, t["test_loss"] < 1e-5),
                "min_test_loss": float("nan") if best is None else float(best.test_loss),
                "min_test_loss_epoch": float("nan") if best is None else int(best.epoch),
                "final_train_loss": float("nan") if last is None else float(last.train_loss),
                "final_test_loss": float("nan") if lt is None else float(lt.test_loss),
                "final_test_acc": float("nan") if lt is None else float(lt.test_acc)})
        return pd.DataFrame(rows)

    def config_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"model": i, **c.to_dict()} for i, c in enumerate(self.configs)])

    @property
    def checkpoint_epochs(self) -> list[int]:
        d = self.path / CKPT_DIR
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for f in d.iterdir() if (m := _CKPT_RE.match(f.name)))  # any digits

    def _check_model(self, model: int) -> None:
        if not (0 <= model < self.K):
            raise ConfigError(f"model={model} is invalid: this run has models 0..{self.K - 1}")

    def _checkpoint_epoch(self, epoch: int | None) -> int:
        """``epoch`` (default: the last checkpoint's), checked to have a checkpoint (one-line error if not)."""
        if epoch is not None and (self.path / CKPT_DIR / ckpt_name(epoch)).is_file():
            return epoch  # the common case, without listing the directory
        epochs = self.checkpoint_epochs
        if not epochs:
            raise ConfigError(f"run={str(self.path)!r} has no checkpoints yet")
        if epoch is None:
            return epochs[-1]
        if epoch not in epochs:
            raise ConfigError(f"epoch={epoch} is invalid: checkpoints exist for epochs {epochs[0]}..{epochs[-1]} "
                              f"every {self.configs[0].checkpoint_every} (and the last)")
        return epoch

    def params(self, epoch: int | None = None, model: int = 0) -> dict[str, torch.Tensor]:
        """Parameters of one model at a checkpoint epoch (default: the last)."""
        self._check_model(model)
        return {k: v[model] for k, v in self.stacked_params(epoch).items()}

    def stacked_params(self, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Parameters of every model at a checkpoint epoch (default: the last), stacked ``(K, ...)``."""
        shapes = {n: (self.K, *s) for n, s in param_shapes(self.configs[0].model_config).items()}

        def problem(params: dict[str, torch.Tensor]) -> str | None:
            if set(params) != set(shapes):
                return f"tensors {sorted(params)}, expected {sorted(shapes)}"
            wrong = [f"{n} {tuple(t.shape)} (expected {shapes[n]})" for n, t in params.items()
                     if tuple(t.shape) != shapes[n] or not t.is_floating_point()]
            return "wrong shapes: " + ", ".join(wrong) if wrong else None

        f = self.path / CKPT_DIR / ckpt_name(self._checkpoint_epoch(epoch))
        return load(f, lambda p: load_file(str(p)), problem, hint="use another checkpoint (--epoch)")

    def nonfinite(self) -> dict[int, int]:
        """``{model: first epoch whose train loss is NaN or infinite}`` for the models that diverged."""
        df = self.metrics
        bad = df[~np.isfinite(df["train_loss"].to_numpy(dtype=float))]
        return {int(k): int(g["epoch"].min()) for k, g in bad.groupby("model")}

    def require_finite(self, epoch: int | None = None, model: int = 0) -> None:
        """ConfigError unless model ``model``'s weights at checkpoint ``epoch`` are finite (analysing a diverged
        model would give meaningless numbers); names the last checkpoint before the divergence."""
        params = self.params(epoch, model)
        if all(bool(torch.isfinite(v).all()) for v in params.values()):
            return
        e = self._checkpoint_epoch(epoch)
        first = self.nonfinite().get(model)
        ok = [c for c in self.checkpoint_epochs if first is not None and c < first]
        raise ConfigError(f"epoch={e} is invalid for model {model}: its weights are not finite (training diverged"
                          + (f": the train loss is non-finite from epoch {first}" if first is not None else "")
                          + (f"); analyse an earlier checkpoint, e.g. --epoch {ok[-1]}" if ok else ")"))

    def model(self, epoch: int | None = None, model: int = 0) -> Transformer:
        """A :class:`Transformer` with the weights of ``model`` at ``epoch`` (default: last), in eval mode."""
        params = self.params(epoch, model)
        m = Transformer(self.configs[model].model_config, seed=None)
        m.load_state_dict(params)
        return m.eval()

    def to_transformer_lens(self, epoch: int | None = None, model: int = 0, device: str = "cpu"):
        """Model ``model`` at ``epoch`` as a TransformerLens model (:func:`grokscope.model.export.to_transformer_lens`)."""
        return export.to_transformer_lens(self.model(epoch, model), device=device)

    def dataset(self, model: int = 0) -> Dataset:
        self._check_model(model)
        return make_dataset(self.configs[model])


# ---------------------------------------------------------------------- reading run files
def _meta_problem(meta: Any) -> str | None:
    """What is wrong with the contents of a config.json (None if nothing)."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    if meta.get("kind") == SEQ_KIND:
        return None  # a sequence-task run: Run.load says so
    models = meta.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        return "no 'models' list of model configs"
    try:
        check_batchable([Config.from_dict(m) for m in models])
    except (ConfigError, TypeError) as e:
        return str(e)
    return None


def state_problem(st: Any, want: dict[str, tuple[tuple[int, ...], torch.dtype]], epochs: int,
                  extra: tuple[str, ...] = (), optional: set[str] | frozenset[str] = frozenset()) -> str | None:
    """What is wrong with a loaded ``state.pt`` ``st`` (None: nothing): it must be a dict of tensors holding every
    key of ``want`` (``optional`` ones may be absent) with its (shape, dtype), the ``extra`` keys (shape free: a
    generator or data-stream state) and an ``epoch`` in 0..``epochs``. Shared by both trainers' resume."""
    if not isinstance(st, dict) or not all(isinstance(v, torch.Tensor) for v in st.values()):
        return "expected a dict of tensors"
    missing = sorted((set(want) | set(extra)) - set(optional) - set(st))
    if missing:
        return f"missing {', '.join(missing)}"
    wrong = [f"{k} {tuple(st[k].shape)} {st[k].dtype} (expected {s} {d})" for k, (s, d) in want.items()
             if k in st and (tuple(st[k].shape), st[k].dtype) != (s, d)]
    if wrong:
        return "wrong shapes: " + ", ".join(wrong)
    if not 0 <= int(st["epoch"]) <= epochs:
        return f"epoch {int(st['epoch'])} outside 0..{epochs}"
    return None


def _load_state(path: Path, trainer: Trainer) -> None:
    """Load ``state.pt`` into ``trainer`` (weights only: no pickled code runs), checking every tensor's shape."""
    want = {k: (tuple(v.shape), v.dtype) for k, v in trainer.state_dict().items() if k != "generator"}
    optional = {"metrics." + k for k in NEW_METRICS}  # absent from a state.pt written before they existed

    def problem(st: Any) -> str | None:
        return state_problem(st, want, trainer.cfg.epochs, ("generator",), optional)

    st = load(path, lambda p: torch.load(p, map_location="cpu", weights_only=True), problem,
              hint="delete it and the checkpoints after the last good one, or train again with --overwrite")
    load(path, lambda p: trainer.load_state_dict(st))  # e.g. a generator state of the wrong size


# ---------------------------------------------------------------------- training a run
def _save_checkpoint(path: Path, trainer: Trainer, epoch: int) -> None:
    params = {k: v.detach().cpu().contiguous() for k, v in trainer.named_params().items()}
    size = sum(v.numel() * v.element_size() for v in params.values())
    atomic_write(path / CKPT_DIR / ckpt_name(epoch), lambda t: save_file(params, t), size=size)
    _save_state(path, trainer)


def _save_state(path: Path, trainer: Trainer) -> None:
    df = metrics_frame(trainer, trainer.epoch)
    atomic_write(path / METRICS, lambda t: df.to_parquet(t, index=False))
    st = trainer.state_dict()
    atomic_write(path / STATE, lambda t: torch.save(st, t), size=sum(v.numel() * v.element_size() for v in st.values()))


def _meta(configs: list[Config], device: torch.device) -> dict[str, Any]:
    return {"grokscope_version": __version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "device": str(device),
            "models": [c.to_dict() for c in configs]}


def _foreign_entries(path: Path) -> list[str]:
    """Entries of ``path`` that are not a run's (:data:`RUN_FILES`, analysis*.json, temporary files, and
    checkpoints/ holding only epoch_N.safetensors and temporary files)."""
    out = []
    for e in sorted(path.iterdir()):
        if e.name == CKPT_DIR and e.is_dir() and not e.is_symlink():
            out += [f"{CKPT_DIR}/{c.name}" for c in sorted(e.iterdir())
                    if not (c.is_file() and (_CKPT_RE.match(c.name) or _RUN_FILE_RE.match(c.name)))]
        elif not ((e.name in RUN_FILES or _RUN_FILE_RE.match(e.name)) and e.is_file() and not e.is_symlink()):
            out.append(e.name + ("/" if e.is_dir() else ""))
    return out


def _check_overwritable(path: Path) -> None:
    """``--overwrite`` replaces only a grokscope run directory that nobody is training."""
    if not (path / CONFIG).is_file():
        raise ConfigError(f"out={str(path)!r} is invalid for --overwrite: it is not a grokscope run directory "
                          f"(no {CONFIG}); --overwrite only replaces a run")
    foreign = _foreign_entries(path)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ConfigError(f"out={str(path)!r} is invalid for --overwrite: it holds files that are not a run's "
                          f"({', '.join(foreign[:5])}{more}); move them away first")
    pid = _lock_holder(path / LOCK)
    if pid:
        raise ConfigError(f"out={str(path)!r} is invalid for --overwrite: it is being trained by process {pid}")


def create_run(path: str | Path, configs: list[Config], overwrite: bool = False) -> None:
    """Check that the configs can share one batched run and that ``path`` may be written: a new or empty
    directory, or with ``overwrite`` a grokscope run directory that no live trainer holds and that holds nothing
    but a run's files. Writes nothing."""
    check_batchable(configs)
    check_run_dir(path, overwrite)


def check_run_dir(path: str | Path, overwrite: bool = False) -> None:
    """Check that ``path`` may become a run directory (of either trainer): new or empty, or with ``overwrite``
    a run directory that no live trainer holds. Writes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out={str(path)!r} is invalid: it is a file, not a run directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError(f"out={str(path)!r} is invalid: it already exists; continue it with "
                              f"`grokscope train --resume {path}` or replace it with --overwrite")
        _check_overwritable(path)
    check_output("out", path, kind="dir")


def check_memory(configs: list[Config], device: torch.device) -> None:
    """ConfigError unless the machine has the memory ``configs`` need (:func:`grokscope.config.memory_needed`)."""
    host, dev = memory_needed(configs)
    c = configs[0]
    what = (f"config (p={c.p}, d_model={c.d_model}, d_mlp={c.d_mlp}, epochs={c.epochs}, "
            f"{len(configs)} model{'s' if len(configs) > 1 else ''})")
    if device.type == "cpu":
        ck.memory_fits(host + dev, what, "cpu")
    else:
        ck.memory_fits(host, what, "cpu")
        ck.memory_fits(dev, what, str(device))


def train(configs: list[Config], out: str | Path, device: str = "auto", overwrite: bool = False,
          progress: bool = True, until: int | None = None, log=None, forecast=None) -> Run:
    """Train a new run of ``len(configs)`` models into ``out``. ``until`` stops early (resumable). ``log``: called
    with the metrics frame and the epoch at each checkpoint, and with the frame at the end (:class:`grokscope.train.tracking.MetricsLogger`).
    ``forecast``: a :class:`grokscope.measures.forecast_live.LiveForecast`, shown in the progress bar. Everything is
    checked before anything is written; ``overwrite`` deletes only a run's files (:data:`RUN_FILES`,
    checkpoints), and only in a run directory (:func:`create_run`)."""
    out = Path(out)
    dev = resolve_device(device)
    until = _check_until(until)
    create_run(out, configs, overwrite)  # validates; nothing written if it raises
    check_memory(configs, dev)
    trainer = Trainer(configs, dev)
    out.mkdir(parents=True, exist_ok=True)
    lock = _acquire_lock(out)
    try:
        if overwrite:  # checked again under the lock
            _check_overwritable(out) if (out / CONFIG).exists() else None
            for e in list(out.iterdir()):
                if e.name == CKPT_DIR:
                    shutil.rmtree(e)
                elif e.name != LOCK:
                    e.unlink()
        elif [e for e in out.iterdir() if e.name != LOCK]:
            raise ConfigError(f"out={str(out)!r} is invalid: another process wrote into it meanwhile")
        meta = _meta(trainer.configs, dev)
        atomic_write(out / CONFIG, lambda t: Path(t).write_text(json.dumps(meta, indent=2)))
        _fit_locked(out, trainer, progress, until, log, forecast)
    finally:
        _release_lock(lock)
    return Run.load(out)


def _check_until(until: int | None) -> int | None:
    return None if until is None else ck.integer("until", until, lo=1)


def resume(path: str | Path, device: str = "auto", progress: bool = True, until: int | None = None,
           log=None, forecast=None) -> Run:
    """Continue a run from its ``state.pt``, bit-exactly on the same machine and device. A run that stopped before
    its first checkpoint (e.g. the disk was full) starts again from its config."""
    until = _check_until(until)
    run = Run.load(path)
    dev = resolve_device(device)
    has_state = (run.path / STATE).is_file()
    if not has_state and run.checkpoint_epochs:
        raise ConfigError(f"run={str(run.path)!r} is invalid: it has checkpoints but no {STATE} to resume from")
    check_memory(run.configs, dev)
    trainer = Trainer(run.configs, dev)
    if has_state:
        _load_state(run.path / STATE, trainer)  # a damaged state.pt: one line, before anything is written
    lock = _acquire_lock(run.path)
    try:
        _fit_locked(run.path, trainer, progress, until, log, forecast)
    finally:
        _release_lock(lock)
    return Run.load(run.path)


def _lock_holder(lock: Path) -> int:
    """The pid of the live process holding ``lock`` (0 if none: no lock, or its process is gone)."""
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid and pid != os.getpid() and pid_alive(pid) else 0


def _acquire_lock(path: Path) -> Path:
    """One trainer per run directory: a second trainer of a run in progress is refused."""
    lock = path / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _lock_holder(lock)
            if pid:
                raise ConfigError(f"run={str(path)!r} is invalid: it is being trained by process {pid} "
                                  f"(remove {lock} if that is wrong)") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ConfigError(f"run={str(path)!r} is invalid: could not take its lock {lock}")


def _release_lock(lock: Path) -> None:
    """Remove ``lock`` if this process still holds it (never another trainer's)."""
    try:
        if lock.read_text().strip() == str(os.getpid()):
            lock.unlink()
    except (OSError, ValueError):
        pass


@contextmanager
def _signals_deferred(trainer: Trainer):
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


def _warn_nonfinite(trainer: Trainer, warned: set[int]) -> None:
    """Warn once per model when its train loss has become NaN or infinite."""
    e = trainer.epoch
    loss = trainer.metrics["train_loss"][:e]
    bad = ~torch.isfinite(loss) & ~torch.isnan(trainer.metrics["train_acc"][:e])
    for k in bad.any(0).nonzero().flatten().tolist():
        if k not in warned:
            warned.add(k)
            first = int(bad[:, k].nonzero()[0])
            warnings.warn(f"model {k}: the train loss became {float(loss[first, k])} at epoch {first} "
                          f"(training diverged; lr={trainer.configs[k].lr}); every row is kept in {METRICS}",
                          NonFiniteLoss, stacklevel=2)


def _fit_locked(path: Path, trainer: Trainer, progress: bool, until: int | None, log=None, forecast=None) -> None:
    for d in (path, path / CKPT_DIR):
        clean_stale_tmp(d)
    warned: set[int] = set()
    trainer.interrupted = False
    ce, final = trainer.cfg.checkpoint_every, trainer.cfg.epochs

    def show(tr: Trainer, e: int) -> bool:
        """``forecast`` (:class:`grokscope.measures.forecast_live.LiveForecast`) at checkpoint epoch ``e`` once its
        metrics row is filled: into the progress bar's postfix, or a log line on stderr without a bar."""
        if forecast is None or not forecast.due(e, ce, final):
            return False
        tr.postfix_extra = forecast(path, e, metrics_frame(tr, e))
        if not progress:
            secs = forecast.seconds.get(e)  # LiveForecast records each update's time
            print(f"{path.name} epoch {e}: {tr.postfix_extra}" + ("" if secs is None else f" ({secs:.2f} s)"),
                  file=sys.stderr, flush=True)
        return True

    def on_checkpoint(tr: Trainer, e: int) -> None:
        _save_checkpoint(path, tr, e)
        _warn_nonfinite(tr, warned)
        if log is not None:
            log(metrics_frame(tr, e), e)
        if e == final:  # after the final evaluation: its row is filled (other epochs: after their step)
            show(tr, e)

    with _signals_deferred(trainer):
        try:
            trainer.fit(until, on_checkpoint=on_checkpoint, progress=progress, desc=path.name,
                        after_step=lambda tr: show(tr, tr.epoch - 1))
            if trainer.epoch % trainer.cfg.checkpoint_every != 0 and trainer.epoch != trainer.cfg.epochs:
                _save_state(path, trainer)  # stopped early by `until`: keep what resume needs
            _warn_nonfinite(trainer, warned)
            if trainer.interrupted and trainer.epoch < trainer.cfg.epochs:
                raise KeyboardInterrupt  # a signal during the last save: the state is saved below
        except KeyboardInterrupt:
            _save_state(path, trainer)
            raise
        except NoSpace as e:
            raise NoSpace(f"{e}; free some space, then continue with `grokscope train --resume {path}`") from None
        finally:
            if log is not None:
                log(metrics_frame(trainer, trainer.epoch))
