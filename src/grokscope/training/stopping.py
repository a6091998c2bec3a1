"""The stopping rule (``stop_below``, ``stop_patience``): a model stops training once its test loss has stayed
below ``stop_below`` at every test evaluation for ``stop_patience`` epochs; a run ends when all its models have
stopped. Off by default (the paper's runs train their full budget).

The rule is a pure function of the logged test losses, so nothing new is stored: :meth:`StopRule.replay` recomputes
where every model stopped from the metric rows, which is how :mod:`grokscope.training.run` resumes a run and how
:class:`grokscope.training.run.Run` tells a stopped run from an unfinished one. A stopped model is frozen (its
parameters and Adam's moments no longer change) but is still evaluated, so its metric rows stay filled (flat) until
the run ends. A NaN test loss (a diverged model) is never "below"."""

from __future__ import annotations

import numpy as np


class StopRule:
    """The rule's state for K models: ``since[k]`` the first test epoch of the current stretch below the threshold
    (-1: none), ``stopped[k]`` the epoch model k stopped at (-1: training)."""

    def __init__(self, below: float | None, patience: int, K: int):
        self.below, self.patience = below, patience
        self.since = np.full(K, -1, dtype=np.int64)
        self.stopped = np.full(K, -1, dtype=np.int64)

    @property
    def on(self) -> bool:
        return self.below is not None

    @property
    def all_stopped(self) -> bool:
        return self.on and bool((self.stopped >= 0).all())

    def update(self, epoch: int, test_loss: np.ndarray) -> np.ndarray:
        """Take the test losses ``(K,)`` of ``epoch``; returns the models that stop at this epoch (a bool mask)."""
        if not self.on:
            return np.zeros(len(self.stopped), dtype=bool)
        active = self.stopped < 0
        below = np.asarray(test_loss, dtype=np.float64) < self.below  # NaN: False
        self.since = np.where(below, np.where(self.since < 0, epoch, self.since), -1)
        stop = active & below & (epoch - self.since >= self.patience)
        self.stopped[stop] = epoch
        return stop

    def replay(self, epochs: np.ndarray, test_loss: np.ndarray) -> "StopRule":
        """Apply :meth:`update` to the logged test rows in order: ``epochs (n,)`` and their losses ``(n, K)``."""
        if self.on:
            for e, row in zip(epochs.tolist(), test_loss):
                self.update(int(e), row)
        return self
