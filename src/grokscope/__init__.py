"""grokscope: train the grokking transformers of Nanda et al. (ICLR 2023) and reverse-engineer them."""

from .version import __version__
from .config import Config, ConfigError, ModelConfig, preset
from .model.transformer import Transformer
from .train.run import Run, resume, train
from .tasks.modular import Dataset, make_dataset

__all__ = ["Config", "ConfigError", "ModelConfig", "Run", "Transformer", "Dataset", "make_dataset", "preset",
           "train", "resume", "__version__"]
