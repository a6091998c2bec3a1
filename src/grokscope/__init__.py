"""grokscope: train the grokking transformers of Nanda et al. (ICLR 2023) and reverse-engineer them.

The names below are imported on first use (PEP 562), so that ``import grokscope.cli`` does not import torch: the
command line sets up its signal handling first (a Ctrl-C while torch imports is one line, exit 130)."""

from importlib import import_module
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:  # what static tools (type checkers, the API reference) see; at run time: __getattr__ below
    from .config import Config, ConfigError, ModelConfig, preset
    from .model.transformer import Transformer
    from .tasks import TASKS, Dataset, Task, make_dataset
    from .training import Run, Trainer, resume, train

#: each public name and the module that defines it
_EXPORTS = {"Config": ".config", "ConfigError": ".config", "ModelConfig": ".config", "preset": ".config",
            "Transformer": ".model.transformer", "Run": ".training", "Trainer": ".training",
            "resume": ".training", "train": ".training", "TASKS": ".tasks", "Dataset": ".tasks", "Task": ".tasks",
            "make_dataset": ".tasks"}

__all__ = ["Config", "ConfigError", "ModelConfig", "Run", "Trainer", "Transformer", "TASKS", "Task", "Dataset",
           "make_dataset", "preset", "train", "resume", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'grokscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
