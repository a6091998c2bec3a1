"""A compiled CPU attention for the sequence tasks' training step (:mod:`grokscope.fast.scored`), with a fallback.

The attention-only induction model spends most of its step in attention over 85 positions with heads 12 wide:
``torch.nn.functional.scaled_dot_product_attention``'s CPU kernels are slow at that head size (its forward and
backward were 59% of an induction-finite step on the 2-core AMD EPYC). ``kernel.cpp`` computes the same
function one (example, head) slice at a time, with the keys and values of the slice copied into layouts that the
loops read with unit stride and the softmax recomputed in the backward from each query's log-sum-exp (as flash
attention does). It reads q, k, v in the projections' own ``(n, positions, heads, d_head)`` layout (no transposed
copies) and writes ``z`` in the layout ``W_O`` reads.

* **Build**: at first use, with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and ninja; ~1 min once,
  then cached by torch under ``~/.cache/torch_extensions``, keyed by the source, the flags and this CPU's model
  and flags, so a binary built with ``-march=native`` is never run on another CPU). Anything that goes wrong
  there (no compiler, no ninja, a failed build) leaves :func:`kernel` ``None`` and the trainer on the fused
  PyTorch attention: nothing else changes. ``GROKSCOPE_SEQ_KERNEL=0`` turns the kernel off.
* **Numerics**: float32 and float64; the float32 exponential is a Cody–Waite polynomial (~2 ulp), the other
  arithmetic plain IEEE (no ``-ffast-math``: NaN and infinities propagate as in PyTorch). Each slice's loop order is
  fixed and slices share no output, so the result is the same for any thread count. ``tests/test_seqtasks.py``
  checks it in float64 against the plain full-sequence model (logits, loss, every gradient) and in float32
  against the fused PyTorch attention.
* **Speed** (2-core AMD EPYC, one thread, induction-finite): ``benchmarks/seq_speed.py`` prints the step with
  the kernel against the step without it, in the same process (README "Other tasks").
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernel.cpp")
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
LDFLAGS = ["-fopenmp"]

_ext = None
_tried = False


def _cpu_id() -> str:
    """This CPU's model and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(keep) or platform.processor()
    except OSError:
        return platform.processor() + platform.machine()


def _built(name: str) -> bool:
    """Whether torch's extension cache already holds ``name`` (then loading it takes a moment)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return (Path(_get_build_directory(name, False)) / f"{name}.so").is_file()
    except Exception:  # noqa: BLE001 - a private helper of torch's: if it moved, just say nothing is built
        return False


def enabled() -> bool:
    """Whether the kernel may be used (``GROKSCOPE_SEQ_KERNEL=0`` turns it off)."""
    return os.environ.get("GROKSCOPE_SEQ_KERNEL", "1") != "0"


def kernel():
    """The compiled extension (``attn_fwd``, ``attn_bwd``), built at the first call; None when it cannot be built
    here or is turned off (then the caller uses PyTorch's attention)."""
    global _ext, _tried
    if not enabled():
        return None
    if not _tried:
        _tried = True
        try:
            from torch.utils.cpp_extension import load_inline

            src = SOURCE.read_text()
            key = hashlib.sha256("\0".join([src, *CFLAGS, *LDFLAGS, _cpu_id(), torch.__version__]).encode())
            name = f"grokscope_seqattn_{key.hexdigest()[:16]}"
            if not _built(name):  # a one-minute pause deserves a line (stderr, through logging's last resort)
                log.warning("grokscope: building the compiled attention for this CPU (once, ~1 min; "
                            "GROKSCOPE_SEQ_KERNEL=0 skips it)")
            _ext = load_inline(name, src, functions=["attn_fwd", "attn_bwd"], extra_cflags=CFLAGS,
                               extra_ldflags=LDFLAGS, verbose=False)
        except Exception as e:  # noqa: BLE001 - no compiler, no ninja, a failed build: fall back
            log.info("sequence-attention kernel unavailable (%s); using torch's attention", str(e).splitlines()[0]
                     if str(e) else type(e).__name__)
            _ext = None
    return _ext


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, lim, scale):  # noqa: D102 - see attention()
        z, lse = _ext.attn_fwd(q, k, v, lim, scale)
        ctx.save_for_backward(q, k, v, lim, z, lse)
        ctx.scale = scale
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable  # no second derivatives through it: an error, not zeros
    def backward(ctx, dz):  # noqa: D102
        q, k, v, lim, z, lse = ctx.saved_tensors
        dq, dk, dv = _ext.attn_bwd(q, k, v, lim, z, lse, dz, ctx.scale)
        return dq, dk, dv, None, None


def usable(q: torch.Tensor) -> bool:
    """Whether :func:`attention` can take ``q`` (CPU, float32/float64, heads at most 128 wide) and the kernel
    is built."""
    return (q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64) and q.shape[-1] <= 128
            and kernel() is not None)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lim: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale, masked) v`` per head: ``q (n, S, H, dh)``, ``k``, ``v (n, T, H, dh)`` (views of the
    projections: unit stride along ``dh``, heads adjacent), query ``i`` of example ``b`` seeing keys
    ``0..lim[b, i]`` (``lim (n, S)`` int64). Returns ``z (n, S, H, dh)``, differentiable in q, k, v (not twice).
    Only where :func:`usable`."""
    q, k, v = (x if x.stride(-1) == 1 and x.stride(-2) == x.shape[-1] else x.contiguous() for x in (q, k, v))
    return _Attention.apply(q, k, v, lim, float(scale))
