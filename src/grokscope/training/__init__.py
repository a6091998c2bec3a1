"""Training: one :class:`Trainer` for every task (K stacked models, every optimiser and method), the losses and
optimiser update it uses, the run directory (:class:`Run`, :func:`train`, :func:`resume`) and the metric loggers.
May import the shared ground, tasks, model and fast; nothing here knows of Fourier analysis, measures or figures."""

from .run import NonFiniteLoss, Run, create_run, resume, train
from .trainer import Trainer

__all__ = ["Run", "Trainer", "train", "resume", "create_run", "NonFiniteLoss"]
