"""grokscope: train the grokking transformers of Nanda et al. (ICLR 2023) and reverse-engineer them."""

from .version import __version__
from .config import Config, ConfigError, ModelConfig, preset
from .model.transformer import Transformer
from .training import Run, Trainer, resume, train
from .tasks import TASKS, Dataset, Task, make_dataset

__all__ = ["Config", "ConfigError", "ModelConfig", "Run", "Trainer", "Transformer", "TASKS", "Task", "Dataset",
           "make_dataset", "preset", "train", "resume", "__version__"]
