import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grokscope.numerics import configure_denormals  # noqa: E402

configure_denormals(True)  # as `grokscope train` does, before any torch work: tests run in the trainer's mode
