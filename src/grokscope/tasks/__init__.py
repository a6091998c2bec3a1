"""Tasks: what a model reads and predicts, and its data. One file per task, one line per task in :data:`TASKS`.

    from grokscope.tasks import TASKS, get_task
    get_task("skip-trigram")            # the class; get_task("skip_trigram") too (underscores are accepted)

Owns the :class:`Task` interface (:mod:`.base`) and its implementations; may import only the shared ground
(``checks``). Nothing outside this package compares a task's name: code asks the task (``pair_form``,
``n_scored``, ``infinite``, ...).
"""

from __future__ import annotations

from ..checks import ConfigError
from .base import Examples, Options, Sampled, Task, generator, option
from .digit_addition import DigitAddition
from .modular import Add, Dataset, Modular, Multiply, Random, Subtract, X2xyy2, make_dataset
from .repeated_subsequence import RepeatedSubsequence
from .skip_trigram import SkipTrigram
from .sparse_parity import SparseParity

#: every task, by name
TASKS: dict[str, type[Task]] = {t.name: t for t in (
    Add, Subtract, Multiply, X2xyy2, Random,
    DigitAddition,
    RepeatedSubsequence,
    SkipTrigram,
    SparseParity,
)}


def canonical(name: str) -> str:
    """The registry's spelling of a task name (underscores accepted for hyphens); ConfigError if unknown."""
    key = str(name).replace("_", "-")
    if key not in TASKS:
        raise ConfigError(f"task={name!r} is invalid: must be one of {', '.join(TASKS)}")
    return key


def get_task(name: str) -> type[Task]:
    return TASKS[canonical(name)]


__all__ = ["TASKS", "Task", "Options", "Sampled", "Examples", "Dataset", "Modular", "canonical", "get_task",
           "generator", "make_dataset", "option"]
