import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grokscope.numerics import configure_denormals

configure_denormals(True)  # as `grokscope train` does, before any torch work: tests run in the trainer's mode

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors: OpenMP hand-off then dominates the arithmetic (10-30x
    when the other core is busy). Results do not depend on it; the thread count is restored afterwards.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
