"""Runs: ``Run.load(path)`` opens any run directory (every task, every format grokscope wrote); :func:`train` and
:func:`resume` create and continue them. The storage layer: it knows nothing of the analysis, progress measures,
phases or figures, which take a :class:`Run`. The directory's format and guarantees are :mod:`.rundir`'s.

While a run trains, SIGINT and SIGTERM only set ``Trainer.interrupted``: the loop stops between two steps (never
inside the optimiser's update) and the state is saved; :func:`resume` continues bit-exactly (same machine, device
and thread count).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from .. import checks as ck
from ..checks import ConfigError
from ..config import Config, check_batchable, memory_needed
from ..files import NoSpace, atomic_write, clean_stale_tmp, load
from ..model import Transformer, param_shapes
from ..model import export
from ..tasks import Dataset, Task
from . import rundir
from .optim import resolve_device
from .rundir import CKPT_DIR, CONFIG, LOCK, METRICS, STATE, ckpt_name, metrics_frame
from .stopping import StopRule
from .trainer import Trainer


class NonFiniteLoss(RuntimeWarning):
    """A model's train loss became NaN or infinite (training diverged)."""


class Run:
    """A run directory. ``Run.load(path)``; ``run.metrics``; ``run.model(epoch=..., model=i)``."""

    def __init__(self, path: str | Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.configs = rundir.configs_of(meta)

    # ------------------------------------------------------------------ opening
    @classmethod
    def load(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise ConfigError(f"run={str(path)!r} is invalid: not a grokscope run directory (no {CONFIG})")
        return cls(path, rundir.read_meta(path))

    @property
    def config(self) -> Config:
        """The first model's config (the only one of a one-model run)."""
        return self.configs[0]

    @property
    def task(self) -> Task:
        """The first model's task (its data seed's)."""
        return self.configs[0].make_task()

    @property
    def K(self) -> int:
        return len(self.configs)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, models={self.K}, checkpoints={len(self.checkpoint_epochs)})"

    # ------------------------------------------------------------------ contents
    @property
    def metrics(self) -> pd.DataFrame:
        """Columns: model, epoch, train_loss, train_acc, test_loss, test_acc (test: NaN between evaluations), then
        softmax_collapse, softmax_sum1, w_u_norm (:data:`grokscope.training.trainer.NEW_METRICS`; NaN for a run written
        before they existed), then for the sampled tasks ``train_loss_tok{k}``, ``test_loss_tok{k}`` (the k-th
        scored token's loss, at the test steps)."""
        return rundir.read_metrics(self.path)

    def milestones(self) -> pd.DataFrame:
        """One row per model: the first epoch at which train accuracy reaches 100% (to 1e-9: accuracies are
        means), test accuracy passes 95%, 99% and 99.9% and test loss falls below 1e-5 (NaN if never), the lowest
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
                "train_acc_100": first(m, m["train_acc"] >= 1.0 - 1e-9),
                "test_acc_95": first(t, t["test_acc"] > 0.95), "test_acc_99": first(t, t["test_acc"] > 0.99),
                "test_acc_999": first(t, t["test_acc"] > 0.999), "test_loss_under_1e5": first(t, t["test_loss"] < 1e-5),
                "min_test_loss": float("nan") if best is None else float(best.test_loss),
                "min_test_loss_epoch": float("nan") if best is None else int(best.epoch),
                "final_train_loss": float("nan") if last is None else float(last.train_loss),
                "final_test_loss": float("nan") if lt is None else float(lt.test_loss),
                "final_test_acc": float("nan") if lt is None else float(lt.test_acc)})
        return pd.DataFrame(rows)

    def stop_epochs(self) -> list[int | None]:
        """The epoch each model stopped at under the run's stopping rule (``stop_below``; None: it did not, or the
        run has no rule), recomputed from the logged test losses (:mod:`grokscope.training.stopping`)."""
        c = self.config
        rule = StopRule(c.stop_below, c.stop_patience, self.K)
        if rule.on:
            t = self.metrics.pivot(index="epoch", columns="model", values="test_loss").sort_index()
            t = t.reindex(columns=range(self.K)).dropna(how="all")
            rule.replay(t.index.to_numpy(), t.to_numpy(dtype=np.float64))
        return [int(s) if s >= 0 else None for s in rule.stopped]

    @property
    def finished(self) -> bool:
        """Trained to its last epoch, or every model stopped and the final checkpoint written there."""
        last = self.checkpoint_epochs[-1] if self.checkpoint_epochs else -1
        if last >= self.config.epochs:
            return True
        stops = self.stop_epochs()
        return bool(stops) and all(s is not None for s in stops) and last == max(stops)

    def config_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"model": i, **c.to_dict()} for i, c in enumerate(self.configs)])

    @property
    def checkpoint_epochs(self) -> list[int]:
        return rundir.checkpoint_epochs(self.path)

    def check_model(self, model: int) -> None:
        if not (0 <= model < self.K):
            raise ConfigError(f"model={model} is invalid: this run has models 0..{self.K - 1}")

    def checkpoint_epoch(self, epoch: int | None) -> int:
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
        self.check_model(model)
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

        f = self.path / CKPT_DIR / ckpt_name(self.checkpoint_epoch(epoch))
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
        e = self.checkpoint_epoch(epoch)
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
        """The p*p table of a modular run's model, with its split."""
        self.check_model(model)
        task = self.configs[model].make_task()
        if not task.pair_form:
            raise ConfigError(f"run={str(self.path)!r} is invalid here: its task {task.name} has no p*p table "
                              "(the modular tasks' analysis needs one)")
        return task.dataset()

    def resume(self, device: str = "auto", progress: bool = True, until: int | None = None, log=None,
               forecast=None) -> "Run":
        """Continue this run (:func:`resume`)."""
        return resume(self.path, device=device, progress=progress, until=until, log=log, forecast=forecast)


def create_run(path: str | Path, configs: list[Config], overwrite: bool = False) -> None:
    """Check that the configs can share one batched run and that ``path`` may be written: a new or empty
    directory, or with ``overwrite`` a grokscope run directory that no live trainer holds and that holds nothing
    but a run's files. Writes nothing."""
    check_batchable(configs)
    rundir.check_run_dir(path, overwrite)


def check_memory(configs: list[Config], device: torch.device) -> None:
    """ConfigError unless the machine has the memory ``configs`` need (:func:`grokscope.config.memory_needed`)."""
    host, dev = memory_needed(configs)
    c = configs[0]
    table = c.make_task().pair_form
    shape = f"p={c.p}" if table else f"task={c.task}"
    what = (f"config ({shape}, d_model={c.d_model}, d_mlp={c.d_mlp}, epochs={c.epochs}, "
            f"{len(configs)} model{'s' if len(configs) > 1 else ''})")
    own = [f for f in ("n_train", "n_test", "batch_size", "seq_len", "vocab") if f in c.options.names()]
    shrink = "p, d_model, d_mlp, epochs" if table else ", ".join(own + ["d_model", "epochs"])
    if c.grokfast == "ma":  # its window of gradients alone too large: name it, not the model's shape
        h0, d0 = memory_needed(configs, grokfast_state=False)
        have = ck.available_memory("cpu" if device.type == "cpu" else str(device))
        if have is not None and (h0 + d0 if device.type == "cpu" else d0) <= have:
            what, shrink = f"grokfast_window={c.grokfast_window}", "grokfast_window"
    if device.type == "cpu":
        ck.memory_fits(host + dev, what, "cpu", shrink=shrink)
    else:
        ck.memory_fits(host, what, "cpu", shrink=shrink)
        ck.memory_fits(dev, what, str(device), shrink=shrink)


def train(configs: list[Config], out: str | Path, device: str = "auto", overwrite: bool = False,
          progress: bool = True, until: int | None = None, log=None, forecast=None) -> Run:
    """Train a new run of ``len(configs)`` models into ``out``. ``until`` stops early (resumable). ``log``: called
    with the metrics frame and the epoch at each checkpoint, and with the frame at the end (:class:`grokscope.report.tracking.MetricsLogger`).
    ``forecast``: a :class:`grokscope.measures.forecast.LiveForecast`, shown in the progress bar. Everything is
    checked before anything is written; ``overwrite`` deletes only a run's files (:data:`RUN_FILES`,
    checkpoints), and only in a run directory (:func:`create_run`)."""
    out = Path(out)
    dev = resolve_device(device)
    until = _check_until(until)
    create_run(out, configs, overwrite)  # validates; nothing written if it raises
    check_memory(configs, dev)
    trainer = Trainer(configs, dev)
    out.mkdir(parents=True, exist_ok=True)
    lock = rundir.acquire_lock(out)
    try:
        if overwrite:  # checked again under the lock
            rundir.check_overwritable(out) if (out / CONFIG).exists() else None
            for e in list(out.iterdir()):
                if e.name == CKPT_DIR:
                    shutil.rmtree(e)
                elif e.name != LOCK:
                    e.unlink()
        elif [e for e in out.iterdir() if e.name != LOCK]:
            raise ConfigError(f"out={str(out)!r} is invalid: another process wrote into it meanwhile")
        meta = rundir.meta(trainer.configs, dev)
        atomic_write(out / CONFIG, lambda t: Path(t).write_text(json.dumps(meta, indent=2)))
        _fit_locked(out, trainer, progress, until, log, forecast)
    finally:
        rundir.release_lock(lock)
    return Run.load(out)


def _check_until(until: int | None) -> int | None:
    return None if until is None else ck.integer("until", until, lo=1)


def resume(path: str | Path, device: str = "auto", progress: bool = True, until: int | None = None,
           log=None, forecast=None, epochs: int | None = None) -> Run:
    """Continue a run from its ``state.pt``, bit-exactly on the same machine and device. A run that stopped before
    its first checkpoint (e.g. the disk was full) starts again from its config. ``epochs``: train on to this
    many epochs, extending a finished run (the result equals a run trained to ``epochs`` from the start, and
    config.json then says ``epochs``)."""
    until = _check_until(until)
    run = Run.load(path)
    dev = resolve_device(device)
    has_state = (run.path / STATE).is_file()
    if not has_state and run.checkpoint_epochs:
        raise ConfigError(f"run={str(run.path)!r} is invalid: it has checkpoints but no {STATE} to resume from")
    configs = run.configs
    extend = epochs is not None and epochs != run.config.epochs
    if epochs is not None:
        ck.integer("epochs", epochs, lo=1)
        if epochs < run.config.epochs:
            raise ConfigError(f"epochs={epochs} is invalid: the run {str(run.path)!r} trains {run.config.epochs} "
                              f"epochs; to stop it earlier give --until {epochs}")
        if extend and run.config.stop_below is not None and run.finished and run.checkpoint_epochs[-1] < \
                run.config.epochs:
            raise ConfigError(f"epochs={epochs} is invalid: every model of {str(run.path)!r} was stopped by its "
                              f"stopping rule (stop_below={run.config.stop_below}); train a new run instead")
        configs = [c.replace(epochs=epochs) for c in configs]
    check_memory(configs, dev)
    trainer = Trainer(configs, dev)
    if has_state:
        rundir.load_state(run.path / STATE, trainer)  # a damaged state.pt: one line, before anything is written
        if extend and trainer.epoch == run.config.epochs:
            trainer.reopen()
    lock = rundir.acquire_lock(run.path)
    try:
        if extend:
            meta = {**run.meta, "models": [c.to_dict() for c in configs],
                    "extended": [*run.meta.get("extended", []),
                                 {"from_epochs": run.config.epochs, "to_epochs": epochs, **rundir.code_version()}]}
            atomic_write(run.path / CONFIG, lambda t: Path(t).write_text(json.dumps(meta, indent=2)))
        _fit_locked(run.path, trainer, progress, until, log, forecast)
    finally:
        rundir.release_lock(lock)
    return Run.load(run.path)


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
        """``forecast`` (:class:`grokscope.measures.forecast.LiveForecast`) at checkpoint epoch ``e`` once its metrics row
        is filled: into the progress bar's postfix, or a log line on stderr without a bar."""
        if forecast is None or not forecast.due(e, ce, final):
            return False
        tr.postfix_extra = forecast(path, e, metrics_frame(tr, e))
        if not progress:
            secs = forecast.seconds.get(e)  # LiveForecast records each update's time
            print(f"{path.name} epoch {e}: {tr.postfix_extra}" + ("" if secs is None else f" ({secs:.2f} s)"),
                  file=sys.stderr, flush=True)
        return True

    def on_checkpoint(tr: Trainer, e: int) -> None:
        rundir.save_checkpoint(path, tr, e)
        _warn_nonfinite(tr, warned)
        if log is not None:
            log(metrics_frame(tr, e), e)
        if tr.finished:  # after the final evaluation: its row is filled (other epochs: after their step)
            show(tr, e)

    with rundir.signals_deferred(trainer):
        try:
            trainer.fit(until, on_checkpoint=on_checkpoint, progress=progress, desc=path.name,
                        after_step=lambda tr: show(tr, tr.epoch - 1))
            if trainer.epoch % trainer.cfg.checkpoint_every != 0 and not trainer.finished:
                rundir.save_state(path, trainer)  # stopped early by `until`: keep what resume needs
            _warn_nonfinite(trainer, warned)
            if trainer.interrupted and not trainer.finished:
                raise KeyboardInterrupt  # a signal during the last save: the state is saved below
        except KeyboardInterrupt:
            rundir.save_state(path, trainer)
            raise
        except NoSpace as e:
            raise NoSpace(f"{e}; free some space, then continue with `grokscope train --resume {path}`") from None
        finally:
            if log is not None:
                log(metrics_frame(trainer, trainer.epoch))
