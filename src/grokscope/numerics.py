"""Floating-point mode of the training process: flush denormals to zero, in every worker thread; and the
float32 ``exp`` that stays fast where its results underflow (:func:`exp_flushed`).

Once a model has grokked, its train loss is ~1e-7 and many float32 gradient entries (the softmax of the
far-off wrong classes, products of them, Adam's squared moments) fall below float32's smallest normal number,
1.2e-38. Intel cores handle such *denormal* operands in microcode: on a 2-core Xeon the mainline's step takes
2.3x longer after grokking than before. With flush-to-zero (FTZ, results below 1.2e-38 become 0) and
denormals-are-zero (DAZ, such inputs read as 0) the step costs the same in both regimes. Values that small
carry no information the training uses: they are below 1e-30 of the gradient's largest entries, so flushing
them changes no loss or gradient beyond the float32 tolerance the fast path is held to
(``tests/test_training.py``).

The mode is a per-thread CPU register (MXCSR on x86, FPCR on ARM). ``torch.set_flush_denormal`` sets it on
the calling thread only; torch's worker threads (OpenMP) copy the mode of the thread that creates them, once,
when the first parallel operation starts the pool. So :func:`configure_denormals` must run **before** any
parallel torch operation of the process: ``grokscope train`` does it first thing (``--no-flush-denormal``
turns it off), and :class:`grokscope.training.trainer.Trainer` does it at construction (``flush_denormal=``).
:func:`denormals_flushed` checks the mode by its effect, in every worker thread, and the Trainer warns when
the pool had already started with another mode (call ``configure_denormals()`` at the top of the script).
"""

from __future__ import annotations

import warnings

import torch

#: the mode asked for by the last :func:`configure_denormals` call in this process (None: never called)
_requested: bool | None = None
_warned = False


def configure_denormals(flush: bool = True) -> bool:
    """Set flush-to-zero/denormals-are-zero on (``flush=True``) or off for this thread and, if torch's
    thread pool has not started yet, for every worker thread it will start. Returns whether the whole
    process now computes in that mode (:func:`denormals_flushed` == flush); False where the pool started
    earlier in another mode, or where the CPU has no such mode."""
    global _requested
    _requested = bool(flush)
    supported = torch.set_flush_denormal(bool(flush))
    if flush and not supported:
        return False
    return denormals_flushed() == bool(flush)


def requested() -> bool | None:
    """The mode of the last :func:`configure_denormals` call, or None if it was never called."""
    return _requested


def denormals_flushed(mode: str = "all") -> bool | None:
    """Whether denormals are flushed, judged by the result of one parallel multiplication of 2**21
    denormal float32 numbers (torch splits it over all its threads): True if every thread flushed,
    False if none did, None if some did and some did not (the thread pool started in another mode)."""
    n = 1 << 21
    x = torch.full((n,), 0x00100000, dtype=torch.int32).view(torch.float32)  # 1.47e-39, a denormal
    y = (x * 3.0).view(torch.int32)  # integer view: the check itself must not read denormals as floats
    zero = int((y == 0).sum())
    return True if zero == n else False if zero == 0 else None


def ensure_denormals(flush: bool | None) -> None:
    """The Trainer's entry: ``flush=None`` keeps the process's configured mode (the CLI's choice), or
    turns flushing on if it was never configured; True/False set it. Warns when worker threads could not
    be reached (once per process)."""
    if flush is None:
        flush = True if _requested is None else _requested
    if _requested == flush and denormals_flushed() == flush:
        return
    global _warned
    if not configure_denormals(flush) and not _warned:
        _warned = True  # once per process
        state = denormals_flushed()
        warnings.warn(f"could not set flush_denormal={flush} in every thread (now: "
                      f"{'mixed' if state is None else state}); torch's thread pool started before: call "
                      f"grokscope.numerics.configure_denormals({flush}) before any torch work "
                      f"(training still runs, only slower after grokking)", RuntimeWarning, stacklevel=3)


#: ln of float32's smallest normal number, rounded up: the smallest float32 ``x`` whose ``exp`` is a normal number.
#: Below it ``exp`` is a denormal or 0, read as 0 where denormals are flushed (checked over every float32 in
#: -110..-80 by ``tests/test_numerics.py``).
EXP_NORMAL_MIN = -87.33654022216797
#: the next float32 above it: the smallest input of torch's fast vectorised float32 exp on the CPU (measured: at
#: EXP_NORMAL_MIN itself and below, every element costs about 50 times as much)
_EXP_FAST_MIN = -87.33653259277344
_EXP_AT_NORMAL_MIN = float(torch.exp(torch.tensor(EXP_NORMAL_MIN)))


def exp_flushed(x: torch.Tensor, flushed: bool) -> torch.Tensor:
    """``torch.exp(x)`` as a process that flushes denormals reads it (``flushed``: the Trainer's
    :func:`denormals_flushed` at construction), fast where the results underflow. torch's vectorised float32
    ``exp`` on the CPU leaves its fast path for inputs at or below :data:`EXP_NORMAL_MIN` (about 50 times the
    cost per element: 86 ms instead of 2.5 ms for 3.2 million inputs spread over -300..0 on a 2-core Xeon), and a
    trained model's softmax puts most of its wrong classes there: two exps were a third of a training step at
    p = 401. Clamping those inputs keeps the fast path; setting them to 0 after gives what the slow path's
    results are read as (it returns denormal bits, built without arithmetic and so not flushed, which every
    later operation reads as 0: denormals-are-zero), and the threshold itself gets its own, normal, result: 86 ms
    becomes 15-19 ms in that example. Plain ``torch.exp`` where no input is that low, where denormals are kept,
    off the CPU and for other dtypes."""
    if not flushed or x.dtype != torch.float32 or x.device.type != "cpu" or x.numel() == 0:
        return torch.exp(x)
    lo = float(x.amin())
    if lo >= _EXP_FAST_MIN:
        return torch.exp(x)
    e = torch.exp(x.clamp(min=_EXP_FAST_MIN))
    # times 0 below the fast range, 1 from it (NaN stays NaN): arithmetic, several times faster than masked_fill
    e.mul_(torch.sub(x, _EXP_FAST_MIN).sign_().add_(1).clamp_(max=1))
    if not lo > EXP_NORMAL_MIN:  # the threshold itself (or NaN): its normal result, where it occurs
        at = x == EXP_NORMAL_MIN
        if bool(at.view(torch.uint8).amax()):
            e.masked_fill_(at, _EXP_AT_NORMAL_MIN)
    return e
