"""Run directories: create, train, checkpoint atomically, resume, load. The storage layer: it knows nothing of
the analysis, progress measures, phases or figures, which take a :class:`Run` (:mod:`grokscope.report`).

Layout of a run directory::

    config.json                    resolved configs of the K models, versions, device
    metrics.parquet                one row per model x logged epoch (see Run.metrics)
    checkpoints/epoch_000100.safetensors   parameters of all K models, stacked on a leading axis
    state.pt                       what resume needs: params, Adam moments, step, RNG, metric buffers

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file under a real name.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .config import Config, ConfigError, check_batchable
from .model import Transformer
from .tasks import Dataset, make_dataset
from .training import Trainer, resolve_device
from .version import __version__

CONFIG = "config.json"
METRICS = "metrics.parquet"
STATE = "state.pt"
CKPT_DIR = "checkpoints"


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ckpt_name(epoch: int) -> str:
    return f"epoch_{epoch:06d}.safetensors"


def metrics_frame(trainer: Trainer, upto: int) -> pd.DataFrame:
    """Tidy metrics: one row per (model, epoch) with a train loss, epochs 0..upto."""
    m = {k: v[: upto + 1].cpu() for k, v in trainer.metrics.items()}
    frames = []
    for k in range(trainer.K):
        df = pd.DataFrame({"model": k, "epoch": range(upto + 1), **{c: m[c][:, k].numpy() for c in m}})
        frames.append(df[df["train_loss"].notna()])
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
        return cls(path, json.loads((path / CONFIG).read_text()))

    @property
    def K(self) -> int:
        return len(self.configs)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, models={self.K}, checkpoints={len(self.checkpoint_epochs)})"

    # ------------------------------------------------------------------ contents
    @property
    def metrics(self) -> pd.DataFrame:
        """Columns: model, epoch, train_loss, train_acc, test_loss, test_acc (test: NaN between evaluations)."""
        f = self.path / METRICS
        if not f.is_file():
            return pd.DataFrame(columns=["model", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"])
        return pd.read_parquet(f)

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
        return sorted(int(f.name[6:12]) for f in d.glob("epoch_*.safetensors"))

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
        return load_file(str(self.path / CKPT_DIR / ckpt_name(self._checkpoint_epoch(epoch))))

    def model(self, epoch: int | None = None, model: int = 0) -> Transformer:
        """A :class:`Transformer` with the weights of ``model`` at ``epoch`` (default: last), in eval mode."""
        params = self.params(epoch, model)
        m = Transformer(self.configs[model].model_config, seed=None)
        m.load_state_dict(params)
        return m.eval()

    def dataset(self, model: int = 0) -> Dataset:
        self._check_model(model)
        return make_dataset(self.configs[model])


# ---------------------------------------------------------------------- training a run
def _save_checkpoint(path: Path, trainer: Trainer, epoch: int) -> None:
    params = {k: v.detach().cpu().contiguous() for k, v in trainer.named_params().items()}
    atomic_write(path / CKPT_DIR / ckpt_name(epoch), lambda t: save_file(params, t))
    _save_state(path, trainer)


def _save_state(path: Path, trainer: Trainer) -> None:
    df = metrics_frame(trainer, trainer.epoch)
    atomic_write(path / METRICS, lambda t: df.to_parquet(t, index=False))
    st = trainer.state_dict()
    atomic_write(path / STATE, lambda t: torch.save(st, t))


def _meta(configs: list[Config], device: torch.device) -> dict[str, Any]:
    return {"grokscope_version": __version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "device": str(device),
            "models": [c.to_dict() for c in configs]}


def create_run(path: str | Path, configs: list[Config], overwrite: bool = False) -> None:
    """Check that the configs can share one batched run and that ``path`` may be written (an existing directory
    only with ``overwrite``); writes nothing."""
    path = Path(path)
    check_batchable(configs)
    exists = path.exists() and (not path.is_dir() or any(path.iterdir()))
    if exists and not overwrite:
        raise ConfigError(f"out={str(path)!r} is invalid: it already exists; pass --resume to continue it "
                              f"or --overwrite to replace it")


def train(configs: list[Config], out: str | Path, device: str = "auto", overwrite: bool = False,
          progress: bool = True, until: int | None = None) -> Run:
    """Train a new run of ``len(configs)`` models into ``out``. ``until`` stops early (resumable)."""
    out = Path(out)
    dev = resolve_device(device)
    create_run(out, configs, overwrite)  # validates; nothing written if it raises
    trainer = Trainer(configs, dev)
    if out.exists() and overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(trainer.configs, dev)
    atomic_write(out / CONFIG, lambda t: Path(t).write_text(json.dumps(meta, indent=2)))
    _fit(out, trainer, progress, until)
    return Run.load(out)


def resume(path: str | Path, device: str = "auto", progress: bool = True, until: int | None = None) -> Run:
    """Continue a run from its ``state.pt``, bit-exactly on the same machine and device."""
    run = Run.load(path)
    if not (run.path / STATE).is_file():
        raise ConfigError(f"run={str(run.path)!r} is invalid: it has no {STATE} to resume from")
    trainer = Trainer(run.configs, resolve_device(device))
    trainer.load_state_dict(torch.load(run.path / STATE, map_location="cpu", weights_only=True))
    _fit(run.path, trainer, progress, until)
    return Run.load(run.path)


LOCK = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(path: Path) -> Path:
    """One trainer per run directory: a second ``train --resume`` of a run in progress is refused."""
    lock = path / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise ConfigError(f"run={str(path)!r} is invalid: it is being trained by process {pid} "
                                  f"(remove {lock} if that is wrong)") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ConfigError(f"run={str(path)!r} is invalid: could not take its lock {lock}")


def _fit(path: Path, trainer: Trainer, progress: bool, until: int | None) -> None:
    lock = _acquire_lock(path)
    try:
        _fit_locked(path, trainer, progress, until)
    finally:
        lock.unlink(missing_ok=True)


def _fit_locked(path: Path, trainer: Trainer, progress: bool, until: int | None) -> None:
    try:
        trainer.fit(until, on_checkpoint=lambda tr, e: _save_checkpoint(path, tr, e), progress=progress,
                    desc=path.name)
        if trainer.epoch % trainer.cfg.checkpoint_every != 0 and trainer.epoch != trainer.cfg.epochs:
            _save_state(path, trainer)  # stopped early by `until`: keep what resume needs
    except KeyboardInterrupt:
        _save_state(path, trainer)
        raise
