"""The float32 exp that stays fast where its results underflow (grokscope.numerics.exp_flushed): the same values
as torch.exp in the trainer's flush-to-zero mode, on every float32 around the threshold and on special values."""

import numpy as np
import pytest
import torch

from grokscope import numerics
from grokscope.numerics import EXP_NORMAL_MIN, exp_flushed

pytestmark = pytest.mark.usefixtures("one_thread")  # the mode is set per thread: one thread, the test's own


def _every_float32(a: float, b: float) -> torch.Tensor:
    """Every float32 between two negative numbers a > b (consecutive bit patterns)."""
    lo, hi = np.array([a, b], np.float32).view(np.int32)
    return torch.from_numpy(np.arange(lo, hi + 1, dtype=np.int32).view(np.float32).copy())


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return torch.equal(x.view(torch.int32), y.view(torch.int32))


def _flushed(x: torch.Tensor) -> torch.Tensor:
    """float32 ``x`` with every denormal replaced by a zero of its sign, on the bits: what every float operation
    reads under denormals-are-zero."""
    b = x.view(torch.int32)
    return torch.where((b & 0x7F800000) == 0, b & -0x80000000, b).view(torch.float32)


def _n_denormal(x: torch.Tensor) -> int:
    b = x.view(torch.int32)
    return int(((b & 0x7F800000) == 0).logical_and((b & 0x7FFFFFFF) != 0).sum())


def test_threshold_is_the_smallest_input_with_a_normal_result():
    tiny = torch.finfo(torch.float32).tiny
    t = torch.tensor(EXP_NORMAL_MIN, dtype=torch.float32)
    assert float(t) == EXP_NORMAL_MIN  # a float32 value
    below = torch.nextafter(t, torch.tensor(-np.inf, dtype=torch.float32))
    assert float(torch.exp(t.double())) >= tiny > float(torch.exp(below.double()))
    assert float(torch.nextafter(t, torch.tensor(0.0))) == numerics._EXP_FAST_MIN  # the clamp: the next one up


def test_same_bits_as_exp_where_denormals_are_flushed():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([_every_float32(-80.0, -110.0),  # around the threshold, every value
                   -torch.rand(200_000, generator=g) * 1e4, -torch.rand(200_000, generator=g) * 100,
                   torch.randn(1000, generator=g),
                   torch.tensor([0.0, -0.0, EXP_NORMAL_MIN, -np.inf, np.inf, np.nan, 88.7, 89.0, -1e-45])])
    torch.set_flush_denormal(True)  # conftest's mode, as grokscope train's
    fast, plain = exp_flushed(x, True), torch.exp(x)
    # torch.exp may return denormal bits below the threshold even in this mode (on the CI's Xeon its slow path
    # builds them without arithmetic); every later operation reads them as 0, which is what the fast path returns
    assert _n_denormal(fast) == 0
    assert _same_bits(fast, _flushed(plain))
    neg = x < 0  # finite sums
    assert float(plain[neg].sum()) == float(fast[neg].sum()) # as read
    assert _same_bits(plain * 1.0, fast)  # an operation reads the denormals as 0 (NaN: the same bits)
    s = x[: len(x) // 40 * 40].view(40, -1)[:, ::3]  # strided
    assert _same_bits(exp_flushed(s, True), _flushed(torch.exp(s)))
    assert _same_bits(exp_flushed(x.double(), True).float(), torch.exp(x.double()).float())  # float64: torch.exp
    for few in (x[x > -50], torch.tensor([np.nan, -1.0]), torch.tensor([EXP_NORMAL_MIN]), torch.zeros(0)):
        assert _same_bits(exp_flushed(few, True), _flushed(torch.exp(few)))  # no low input, NaN, the threshold


def test_kept_denormals_take_plain_exp():
    """Without flushing, exp below the threshold is a denormal, not 0: the fast formula would be wrong there, so
    ``flushed=False`` is torch.exp."""
    x = _every_float32(-87.0, -104.0)
    try:
        torch.set_flush_denormal(False)
        plain = torch.exp(x)
        assert int((plain.view(torch.int32) > 0).sum()) > int((x >= EXP_NORMAL_MIN).sum())  # denormal results
        assert _same_bits(exp_flushed(x, False), plain)
    finally:
        torch.set_flush_denormal(True)
