"""grokscope: train the grokking transformers of Nanda et al. (ICLR 2023) and reverse-engineer them."""

from .version import __version__  # noqa: E402
from .config import Config, ConfigError, ModelConfig, preset  # noqa: E402
from .model import Transformer  # noqa: E402
from .runs import Run, resume, train  # noqa: E402
from .tasks import Dataset, make_dataset  # noqa: E402

__all__ = ["Config", "ConfigError", "ModelConfig", "Run", "Transformer", "Dataset", "make_dataset", "preset",
           "train", "resume", "__version__"]
