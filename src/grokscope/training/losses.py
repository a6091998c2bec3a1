"""The training losses: the float64-accurate cross-entropy the paper's runs use, the plain low-precision one of
Appendix D.2, and the float64 reference the analysis uses. One implementation each.

* :func:`cross_entropy_accurate`: float32 *relative* accuracy at every loss (``log1p`` of the wrong classes' summed
  ``exp(L_j - L_c)``, exact differences). It replaces a float64 log-softmax (:func:`cross_entropy_float64`, kept for
  analysis), which is only accurate to ~1e-16 absolute: the guarantee kept is the tiny losses' accuracy, not the
  dtype. (The authors' helper says float64 but casts to float32, which rounds losses below ~1e-7 to 0.)
* :func:`cross_entropy_and_collapse`: the same pass also giving softmax collapse's per-example booleans.
* :func:`cross_entropy_low_precision`: a plain ``log_softmax`` in float32 or bfloat16 (``Config.loss_dtype``).
"""

from __future__ import annotations

import torch

from ..numerics import exp_flushed


def cross_entropy_float64(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy, computed in float64 whatever the logits' dtype."""
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return -torch.gather(logp, -1, labels[..., None]).squeeze(-1)


class _CrossEntropy(torch.autograd.Function):
    """Per-example cross-entropy in float32 with float32 *relative* accuracy at every loss, tiny ones included.

    With ``M`` the row's largest logit, ``s_j = L_j - M`` is computed with its rounding error (TwoSum), so
    ``e_j = exp(s_j)`` is accurate to a few ulp; with ``S = sum_{j != c} e_j`` over the wrong classes,
    the loss is ``log1p(expm1(s_c) + S) - s_c``, i.e. ``log1p(S)`` when the correct class ``c`` has the largest
    logit: no ``1 - softmax_c`` cancellation, which is what makes a float32 log-softmax lose losses below
    ~1e-7. The gradient is ``e_j / (e_c + S)`` for ``j != c`` and ``-S / (e_c + S)`` for ``c``. Tested
    against :func:`cross_entropy_float64` (loss and gradient within 1e-6 relative, losses 1e-14 to 10)."""

    @staticmethod
    def forward(ctx, logits, labels, want_sum1=False, flushed=False):
        L = logits
        M = L.amax(-1, keepdim=True)
        s = L - M
        bb = s - L
        err = torch.sub(L, s - bb)
        err.add_(torch.sub(-M, bb, out=bb))  # TwoSum: s + err == L - M exactly
        e = exp_flushed(s, flushed)
        # softmax collapse's sum (grokscope.training.methods.softmax_collapse: the same operations on the same
        # tensors, so the same sum) while e is still the plain exp
        sum1 = e.sum(-1) == 1 if want_sum1 else None
        e.addcmul_(e, err)  # exp(s + err) to first order (|err| <= ulp(s) / 2)
        y = labels[..., None]
        sc = s.gather(-1, y)  # 0 when c holds the maximum
        ec = e.gather(-1, y)
        e.scatter_(-1, y, 0.0)
        S = e.sum(-1, keepdim=True)  # wrong classes only
        loss = torch.log1p(torch.expm1(sc).add_(S)).sub_(sc)[..., 0]
        Z = S + ec
        prob = e.div_(Z).scatter_(-1, y, -S / Z)  # d loss / d logits
        ctx.save_for_backward(prob)
        wrong_max = s.scatter_(-1, y, float("-inf")).amax(-1)  # largest wrong logit minus M
        sc = sc[..., 0]
        top = (sc == 0) & (wrong_max < 0)  # c holds the one largest logit
        unsure = ((sc == 0) & (wrong_max == 0)) | torch.isnan(M[..., 0])  # a tie, or NaN logits
        if sum1 is None:
            sum1 = torch.zeros_like(top)
        ctx.mark_non_differentiable(top, unsure, sum1)
        return loss, top, unsure, sum1

    @staticmethod
    def backward(ctx, g, _g_top, _g_unsure, _g_sum1):
        (prob,) = ctx.saved_tensors
        return prob * g[..., None].to(prob.dtype), None, None, None


def cross_entropy_accurate(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example cross-entropy (in the logits' dtype, relative accuracy of that dtype at every loss; see
    :class:`_CrossEntropy`) and whether each example is classified correctly (``argmax == label``, ties
    and NaN rows decided by argmax itself)."""
    loss, correct, _, _ = cross_entropy_and_collapse(logits, labels, collapse=False)
    return loss, correct


def cross_entropy_and_collapse(logits: torch.Tensor, labels: torch.Tensor, collapse: bool = True,
                               flushed: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`cross_entropy_accurate`'s loss and correctness, and per example softmax collapse's two booleans
    (:func:`grokscope.training.methods.softmax_collapse`: the loss rounds to 0 in float32, the softmax's sum is
    exactly 1) from the same pass: the trainer's fast path for that diagnostic, which otherwise repeats the
    pass's max, exp and sum (15% of a step at p = 401). Equal to the plain one bit for bit (tested).
    ``collapse=False``: the two booleans are all False and cost nothing. ``flushed``: the process flushes
    denormals (the same values, faster on a trained model's logits: :func:`grokscope.numerics.exp_flushed`)."""
    loss, top, unsure, sum1 = _CrossEntropy.apply(logits, labels, collapse, flushed)
    correct = (logits.detach().argmax(-1) == labels) if bool(unsure.any()) else top
    # the loss rounds to 0 iff the label holds the maximum and the sum is 1; a sum of exactly 1 leaves no wrong
    # class at the maximum (it would add exp(0) = 1), so that is top & sum1
    return loss, correct, sum1 & top, sum1


def cross_entropy_low_precision(logits: torch.Tensor, labels: torch.Tensor,
                                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example cross-entropy as a plain ``log_softmax`` in ``dtype`` (float32 or bfloat16), returned in
    float32, and whether each example is classified correctly. This is the loss of the low-precision experiment
    (Appendix D.2; ``Config.loss_dtype``): in float32 a loss below ~6e-8 rounds to exactly 0 (``1 - softmax_c``
    cancels) and so does the correct class's gradient, while the wrong classes keep theirs (the gradient no longer
    sums to zero over the classes); the training loss stalls and spikes ("slingshots")."""
    logp = torch.log_softmax(logits.to(dtype), dim=-1)
    ce = -torch.gather(logp, -1, labels[..., None]).squeeze(-1)
    return ce.to(torch.float32), logits.detach().argmax(-1) == labels


#: Config.loss_dtype -> the dtype of the plain log-softmax (float64: the accurate loss instead)
LOW_PRECISION = {"float32": torch.float32, "bfloat16": torch.bfloat16}
