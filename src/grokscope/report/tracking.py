"""Training curves to TensorBoard or Weights & Biases (optional extras: ``grokscope[tensorboard]``,
``grokscope[wandb]``), for ``grokscope train --log tensorboard|wandb``.

The run directory's own files are untouched: the logs go to ``--log-dir`` (default: ``RUN.logs`` beside the run
directory). Every epoch's metrics are logged (``train/loss``, ``train/acc`` every epoch, ``test/loss``,
``test/acc`` every ``test_every``), with the epoch as the step; they reach the log at each checkpoint (when the
run directory's ``metrics.parquet`` is written) and when training stops. TensorBoard: one event-file folder per
model (``model_0``, ``model_1``, ...), so a batched run's curves overlay. W&B: one run in ``project`` (default
``grokscope``) and ``entity``, online when ``WANDB_API_KEY`` is set and offline otherwise (``wandb sync`` it later),
or the ``mode`` given (online | offline | disabled), with the keys ``model_K/train/loss`` etc. With ``progress_every=N`` the progress measures
(:func:`grokscope.measures.progress.compute_progress`) of every N-th checkpoint are logged too, as ``progress/MEASURE``
(per-frequency ones as ``progress/excluded_loss_k3``), with the key frequencies ``keys`` or, by default, those of
that checkpoint (the key frequencies settle during circuit formation: early values use early keys). A resumed run continues from the last epoch logged in this
process, so rows between the last checkpoint and an interruption may be logged twice (TensorBoard and W&B show
the later value).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..checks import ConfigError, choice
from ..files import check_output
from ..measures.progress import compute_progress, label, resolve_keys
from ..training.run import Run

KINDS = ("tensorboard", "wandb")
WANDB_MODES = ("online", "offline", "disabled")


def wandb_mode(mode: str | None) -> str:
    """The W&B mode: the one given, else online when an API key is in the environment, else offline."""
    import os

    if mode is not None:
        return choice("wandb_mode", mode, WANDB_MODES)
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"
_TAGS = {"train_loss": "train/loss", "train_acc": "train/acc", "test_loss": "test/loss", "test_acc": "test/acc"}


def default_dir(run_dir: str | Path) -> Path:
    """``RUN.logs`` beside the run directory (``--out .``: the current folder's name, one level up)."""
    p = Path(os.path.abspath(run_dir))
    if not p.name:
        raise ConfigError(f"log_dir is required with out={str(run_dir)!r}: the default, RUN.logs beside the run "
                          "directory, has no place there")
    return p.with_name(p.name + ".logs")


def check_log_dir(log_dir: str | Path, run_dir: str | Path | None) -> Path:
    """``log_dir`` if the logs may go there: a writable folder, not the run directory nor inside it (the run's
    folder holds only the run's files; ``--overwrite`` would delete the logs). Creates nothing."""
    d = check_output("log_dir", Path(log_dir), kind="dir")
    if run_dir is not None:
        a, r = Path(os.path.realpath(os.path.abspath(d))), Path(os.path.realpath(os.path.abspath(run_dir)))
        if a == r or r in a.parents:
            raise ConfigError(f"log_dir={str(log_dir)!r} is invalid: it is {'' if a == r else 'inside '}the run "
                              f"directory {str(run_dir)!r}; give a folder outside it (default: "
                              f"{default_dir(run_dir)})")
    return d


class MetricsLogger:
    """``logger(metrics_frame, checkpoint_epoch=None)`` logs the rows of epochs not logged yet (and, every
    ``progress_every``-th checkpoint of the run at ``run_dir``, its progress measures); ``close()`` flushes."""

    def __init__(self, kind: str, log_dir: str | Path, name: str, config: dict[str, Any] | None = None,
                 run_dir: str | Path | None = None, progress_every: int | None = None, keys: list[int] | None = None,
                 wandb_project: str = "grokscope", wandb_entity: str | None = None, wandb_mode: str | None = None):
        self.kind = choice("log", kind, KINDS)
        mode = globals()["wandb_mode"](wandb_mode)
        self.dir = check_log_dir(log_dir, run_dir)
        self.last = -1
        self.run_dir, self.progress_every, self.keys, self.n_checkpoints = run_dir, progress_every, keys, 0
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            except ImportError:
                raise ConfigError("log='tensorboard' needs TensorBoard: pip install 'grokscope[tensorboard]'") from None
            self._writer_cls, self.writers = SummaryWriter, {}
        else:
            try:
                import wandb
            except ImportError:
                raise ConfigError("log='wandb' needs wandb: pip install 'grokscope[wandb]'") from None
            self._wandb, self._wb = wandb, None
            self._wb_args = dict(project=wandb_project, entity=wandb_entity, name=name, mode=mode, config=config or {})
        # nothing is created until the first rows are logged: a run refused after this (memory, device, a lock,
        # a damaged state.pt) leaves no log folder behind

    @property
    def wb(self):
        """The W&B run, started at the first log call (its folder created then)."""
        if self._wb is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._wb = self._wandb.init(dir=str(self.dir), reinit="create_new", **self._wb_args)
        return self._wb

    def _writer(self, k: int):
        w = self.writers.get(k)
        if w is None:
            w = self.writers[k] = self._writer_cls(log_dir=str(self.dir / f"model_{k}"))
        return w

    def __call__(self, df: pd.DataFrame, checkpoint_epoch: int | None = None) -> None:
        self._metrics(df)
        if checkpoint_epoch is not None and self.progress_every:
            if self.n_checkpoints % self.progress_every == 0:
                self._progress(checkpoint_epoch)
            self.n_checkpoints += 1

    def _progress(self, epoch: int) -> None:
        run = Run.load(self.run_dir)
        keys = self.keys if self.keys is not None else resolve_keys(run, epoch=epoch)  # this checkpoint's
        tab = compute_progress(run, keys=keys, epochs=[epoch], workers=1)
        tab = tab.assign(tag=["progress/" + label(m, f) for m, f in zip(tab["measure"], tab["freq"])])
        if self.kind == "tensorboard":
            for k, g in tab.groupby("model"):
                w = self._writer(int(k))
                for r in g.itertuples():
                    w.add_scalar(r.tag, float(r.value), epoch)
                w.flush()
        else:
            self.wb.log({f"model_{int(r.model)}/{r.tag}": float(r.value) for r in tab.itertuples()}, step=epoch)

    def _metrics(self, df: pd.DataFrame) -> None:
        new = df[df["epoch"] > self.last].sort_values(["epoch", "model"])
        if new.empty:
            return
        if self.kind == "tensorboard":
            for k, g in new.groupby("model"):
                w = self._writer(k)
                for row in g.itertuples():
                    for col, tag in _TAGS.items():
                        v = getattr(row, col)
                        if v == v:  # test metrics are NaN between evaluations
                            w.add_scalar(tag, float(v), int(row.epoch))
                w.flush()
        else:
            for e, g in new.groupby("epoch"):
                self.wb.log({f"model_{int(r.model)}/{tag}": float(getattr(r, col)) for r in g.itertuples()
                             for col, tag in _TAGS.items() if getattr(r, col) == getattr(r, col)}, step=int(e))
        self.last = int(new["epoch"].max())

    def close(self) -> None:
        if self.kind == "tensorboard":
            for w in self.writers.values():
                w.close()
        elif self._wb is not None:
            self._wb.finish()
