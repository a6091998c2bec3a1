"""Full-batch AdamW training of K stacked models as one computation.

Knows nothing of run directories, Fourier analysis or plots: :class:`Trainer` holds the state
(parameters, optimiser moments, step, dropout RNG, metric buffers) and :meth:`Trainer.fit` calls
``on_checkpoint(trainer, epoch)`` on the checkpoint schedule, which is how :mod:`grokscope.train.run`
saves checkpoints.

Conventions (documented choices):

* *epoch e* means the state after ``e`` optimiser steps. Row ``e`` of the metrics holds the train loss
  of that state (computed in the forward of step ``e + 1``), and the test loss of the same state on
  epochs that are multiples of ``test_every``; checkpoint ``e`` holds the same parameters. The final
  row ``epochs`` evaluates the trained model. (The authors' loop appends the loss before a step and saves
  the model after it, one step apart.)
* Learning rate of step ``e`` (0-based): ``lr * min(e / warmup, 1)``, as the authors'
  ``LambdaLR(lambda step: min(step/10, 1))``: their first step has learning rate 0 (it only fills Adam's
  moments), which we keep. Adam's bias correction counts steps from 1.
* Loss: cross-entropy of the last position over the p number tokens, with float32 *relative* accuracy at
  every loss (:func:`cross_entropy_accurate`: ``log1p`` of the wrong classes' summed ``exp(L_j - L_c)``,
  exact differences), per-example losses summed in float64. It replaces the float64 log-softmax
  (:func:`cross_entropy_float64`, kept for analysis), which is only accurate to ~1e-16 absolute: the
  guarantee kept is the tiny losses' accuracy, not the dtype. (The authors' helper says float64 but casts
  to float32, which rounds losses below ~1e-7 to 0.)
* L1 (Appendix D.1): ``l1 * sum(|w|)`` over all parameters, added to the loss (not decoupled).
* Dropout (Appendix D.1): on the MLP neurons of the answer position, with the usual 1/(1-p) scaling.
* Methods beyond the paper (:mod:`grokscope.train.methods`), in the step's order: the loss (``loss``: softmax
  cross-entropy or StableMax), the gradient (plus L1), Grokfast's filter (``grokfast``), ⊥Grad
  (``optimizer="orthoadamw"``), the AdamW update, then the constrained norm (``norm_constraint``). The metrics'
  losses are always the softmax cross-entropy (comparable between methods), whatever loss is trained. Per-epoch
  diagnostics beside them: ``softmax_collapse`` / ``softmax_sum1`` (:func:`grokscope.train.methods.softmax_collapse`
  of the train logits) and ``w_u_norm``, all of the state of that epoch.
* Denormals are flushed to zero in every thread by default (:mod:`grokscope.numerics`; ``flush_denormal=False``
  or ``grokscope train --no-flush-denormal`` turns it off): after grokking, float32 denormals otherwise make
  each step ~2x slower on Intel CPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import Config, ConfigError, ModelConfig, check_batchable
from ..fast.tables import Workspace, forward_fast, forward_plain, segment_plan
from .methods import GradFilter, orthogonal_grad, renormalise_, softmax_collapse, stablemax_cross_entropy, w_u_norm
from ..model.transformer import init_params, param_shapes
from ..numerics import ensure_denormals
from ..tasks.modular import make_dataset


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
    def forward(ctx, logits, labels):
        L = logits
        M = L.amax(-1, keepdim=True)
        s = L - M
        bb = s - L
        err = torch.sub(L, s - bb)
        err.add_(torch.sub(-M, bb, out=bb))  # TwoSum: s + err == L - M exactly
        e = torch.exp(s)
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
        ctx.mark_non_differentiable(top, unsure)
        return loss, top, unsure

    @staticmethod
    def backward(ctx, g, _g_top, _g_unsure):
        (prob,) = ctx.saved_tensors
        return prob * g[..., None].to(prob.dtype), None


def cross_entropy_accurate(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example cross-entropy (in the logits' dtype, relative accuracy of that dtype at every loss; see
    :class:`_CrossEntropy`) and whether each example is classified correctly (``argmax == label``, ties
    and NaN rows decided by argmax itself)."""
    loss, top, unsure = _CrossEntropy.apply(logits, labels)
    correct = (logits.detach().argmax(-1) == labels) if bool(unsure.any()) else top
    return loss, correct


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
#: the per-epoch metric buffers (metrics.parquet's columns after model and epoch); runs written before the last
#: three existed lack them (:data:`NEW_METRICS`)
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "softmax_collapse", "softmax_sum1", "w_u_norm")
NEW_METRICS = METRICS[4:]


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"device={device!r} is invalid: must be one of auto, cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} is invalid: CUDA is not available on this machine (use auto or cpu)")
    return torch.device(device)


@torch.no_grad()
def adamw_update(p: torch.Tensor, m: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, step: int,
                 lr: torch.Tensor | float, wd: torch.Tensor | float, beta1: float, beta2: float, eps: float,
                 warmup: int) -> None:
    """torch.optim.AdamW's update of ``p`` in place (moments ``m``, ``v`` too) for optimiser step ``step``
    (0-based), after the linear warm-up ``lr * min(step / warmup, 1)``. ``lr`` and ``wd`` may be ``(K, 1)`` columns:
    one value per model (row of a flat ``(K, P)`` parameter tensor). Used by :class:`Trainer` and by
    :mod:`grokscope.train.seqrun`."""
    factor = min(step / warmup, 1.0) if warmup > 0 else 1.0
    lr = lr * factor
    t = step + 1
    p.mul_(1 - lr * wd)
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bc1 = 1 - beta1 ** t
    bc2_sqrt = math.sqrt(1 - beta2 ** t)
    denom = (v.sqrt() / bc2_sqrt).add_(eps)
    p.addcdiv_(m * (-lr / bc1), denom)


class ParamLayout:
    """Maps the K models' parameters onto one flat ``(K, P)`` tensor and back."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.shapes = param_shapes(cfg)
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.size = sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        K = flat.shape[0]
        parts = torch.split(flat, self.sizes, dim=1)
        return {n: t.reshape(K, *s) for (n, s), t in zip(self.shapes.items(), parts)}

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        K = next(iter(params.values())).shape[0]
        return torch.cat([params[n].reshape(K, -1) for n in self.shapes], dim=1)


@dataclass
class Batch:
    """Per-model inputs padded to a common length; ``valid`` marks the real rows."""

    a: torch.Tensor  # (K, N) int64
    b: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor  # (K, N) bool
    n: torch.Tensor  # (K,) int64
    plan: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def from_indices(idx_list: list[torch.Tensor], tokens_list, labels_list, device) -> "Batch":
        K = len(idx_list)
        N = max(1, max(len(i) for i in idx_list))
        a = torch.zeros(K, N, dtype=torch.long)
        b = torch.zeros_like(a)
        y = torch.zeros_like(a)
        w = torch.zeros(K, N, dtype=torch.bool)
        for k, (idx, tok, lab) in enumerate(zip(idx_list, tokens_list, labels_list)):
            n = len(idx)
            a[k, :n], b[k, :n], y[k, :n] = tok[idx, 0], tok[idx, 1], lab[idx]
            w[k, :n] = True
        n = torch.tensor([len(i) for i in idx_list])
        return Batch(a.to(device), b.to(device), y.to(device), w.to(device), n.to(device))


class Trainer:
    """Trains ``len(configs)`` models of one shape together. ``fast=False`` uses the plain forward.
    ``flush_denormal``: flush float32 denormals to zero in every thread (:mod:`grokscope.numerics`); None
    keeps the mode the process was configured with (``grokscope train``'s), or turns it on if it never was."""

    interrupted = False  # set by a signal handler (grokscope.train.run): fit stops between two steps, never inside one

    def __init__(self, configs: list[Config], device: str | torch.device = "cpu", fast: bool | None = None,
                 flush_denormal: bool | None = None):
        ensure_denormals(flush_denormal)  # before any parallel torch op of this trainer
        configs = [c.validate() for c in configs]
        check_batchable(configs)
        self.configs = configs
        self.cfg = configs[0]
        self.mcfg = self.cfg.model_config
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.K = len(configs)
        self.postfix_extra = ""  # appended to the progress bar's postfix (grokscope train --forecast)
        self.fast = (self.mcfg.n_layers == 1) if fast is None else fast
        self.layout = ParamLayout(self.mcfg)
        self.ws = Workspace()  # the fast path's large outputs, reused across steps
        dev = self.device

        self.datasets = [make_dataset(c) for c in configs]
        toks = [d.tokens for d in self.datasets]
        labs = [d.labels for d in self.datasets]
        self.train = Batch.from_indices([d.train_idx for d in self.datasets], toks, labs, dev)
        self.test = Batch.from_indices([d.test_idx for d in self.datasets], toks, labs, dev)

        def col(name: str, dtype=torch.float32) -> torch.Tensor:
            return torch.tensor([getattr(c, name) for c in configs], dtype=dtype, device=dev)[:, None]

        self.lr, self.wd = col("lr"), col("weight_decay")
        self.l1 = col("l1", torch.float64)[:, 0]
        self.dropout = col("dropout")[:, 0]
        self.use_dropout = bool((self.dropout > 0).any())
        self.use_l1 = bool((self.l1 > 0).any())

        self.params = torch.stack([self.layout.flatten({k: v[None] for k, v in init_params(self.mcfg, c.seed).items()})[0]
                                   for c in configs]).to(dev)
        # Omnigrok's constrained norm (per model): initial weights x alpha, the norm then held at its initial value
        alpha = torch.tensor([1.0 if c.norm_constraint is None else c.norm_constraint for c in configs],
                             dtype=torch.float32, device=dev)[:, None]
        self.norm_on = torch.tensor([c.norm_constraint is not None for c in configs], device=dev)[:, None]
        self.use_norm = bool(self.norm_on.any())
        if self.use_norm:
            self.params.copy_(torch.where(self.norm_on, self.params * alpha, self.params))
        self.norm_target = self.params.norm(dim=1, keepdim=True)
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.filter = None if self.cfg.grokfast == "none" else GradFilter(
            self.cfg.grokfast, tuple(self.params.shape), col("grokfast_alpha"), col("grokfast_lambda"),
            self.cfg.grokfast_window, dev)
        self.epoch = 0  # optimiser steps taken
        self.generator = torch.Generator(device=dev).manual_seed((int(self.cfg.seed) * 1_000_003 + 17) % 2**64)
        E = self.cfg.epochs
        nan = float("nan")
        self.metrics = {k: torch.full((E + 1, self.K), nan, dtype=torch.float64, device=dev) for k in METRICS}

    # ------------------------------------------------------------------ model evaluation
    def named_params(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.layout.unflatten(self.params if flat is None else flat)

    def logits(self, params: dict[str, torch.Tensor], batch: Batch, keep=None, ws: Workspace | None = None) -> torch.Tensor:
        """Answer logits ``(K, N, p)``; ``ws``: reuse the trainer's buffers (the result is then overwritten by
        the next step)."""
        drop = self.dropout if keep is not None else None
        if not self.fast:
            return forward_plain(params, batch.a, batch.b, self.mcfg, keep, drop)
        if batch.plan is None:  # the examples grouped by token, computed once per batch
            batch.plan = (segment_plan(batch.a, self.cfg.p), segment_plan(batch.b, self.cfg.p))
        return forward_fast(params, batch.a, batch.b, self.mcfg, keep, drop, plan=batch.plan, ws=ws)

    def _loss_acc(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        n = batch.n.to(torch.float64)
        if self.cfg.loss_dtype in LOW_PRECISION:  # Appendix D.2: the mean too in float32, as the authors' run
            ce, correct = cross_entropy_low_precision(logits, batch.y, LOW_PRECISION[self.cfg.loss_dtype])
            loss = ((ce * batch.valid).sum(1) / n.to(torch.float32)).to(torch.float64)
            return loss, (correct & batch.valid).sum(1).to(torch.float64) / n
        ce, correct = cross_entropy_accurate(logits, batch.y)  # (K, N)
        loss = (ce.to(torch.float64) * batch.valid).sum(1) / n
        acc = (correct & batch.valid).sum(1).to(torch.float64) / n
        return loss, acc

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy per model (no dropout); NaN for a model with no rows."""
        loss, acc = self._loss_acc(self.logits(self.named_params(), batch, ws=self.ws), batch)
        empty = batch.n == 0
        return loss.masked_fill(empty, float("nan")), acc.masked_fill(empty, float("nan"))

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        e = self.epoch
        if e % self.cfg.test_every == 0:
            self.metrics["test_loss"][e], self.metrics["test_acc"][e] = self.evaluate(self.test)
        flat = self.params.detach().requires_grad_(True)
        keep = None
        if self.use_dropout:
            keep = torch.rand((self.K, self.train.a.shape[1], self.mcfg.d_mlp), generator=self.generator,
                              device=self.device) >= self.dropout[:, None, None]
        named = self.layout.unflatten(flat)
        logits = self.logits(named, self.train, keep, ws=self.ws)
        if self.cfg.loss == "stablemax":
            objective = self._stablemax(logits, self.train)
            with torch.no_grad():
                loss, acc = self._loss_acc(logits, self.train)
            total = objective.sum()
        else:
            loss, acc = self._loss_acc(logits, self.train)
            total = loss.sum()
        if self.use_l1:
            total = total + (self.l1 * flat.abs().sum(1).to(torch.float64)).sum()
        self._diagnostics(e, logits, self.train, named["W_U"])
        (grad,) = torch.autograd.grad(total, flat)
        self.metrics["train_loss"][e] = loss.detach()
        self.metrics["train_acc"][e] = acc.detach()
        if self.filter is not None:
            grad = self.filter.apply(grad)
        if self.cfg.optimizer == "orthoadamw":
            grad = orthogonal_grad(self.params, grad, self.layout.sizes)
        self._adamw(grad)
        if self.use_norm:
            renormalise_(self.params, self.norm_target, self.norm_on)
        self.epoch = e + 1

    @staticmethod
    def _stablemax(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-model mean StableMax cross-entropy (float64) over the real rows."""
        ce = stablemax_cross_entropy(logits, batch.y)
        return (ce * batch.valid).sum(1) / batch.n.to(torch.float64)

    @torch.no_grad()
    def _diagnostics(self, e: int, logits: torch.Tensor, batch: Batch, W_U: torch.Tensor) -> None:
        self.metrics["softmax_collapse"][e], self.metrics["softmax_sum1"][e] = softmax_collapse(
            logits, batch.y, batch.valid)
        self.metrics["w_u_norm"][e] = w_u_norm(W_U)

    @torch.no_grad()
    def _adamw(self, grad: torch.Tensor) -> None:
        """torch.optim.AdamW's update, with a learning rate and weight decay per model (row)."""
        c = self.cfg
        adamw_update(self.params, self.exp_avg, self.exp_avg_sq, grad, self.epoch, self.lr, self.wd, c.beta1,
                     c.beta2, c.eps, c.warmup)

    # ------------------------------------------------------------------ loop
    def fit(self, until: int | None = None, on_checkpoint: Callable[["Trainer", int], None] | None = None,
            progress: bool = False, desc: str = "train",
            after_step: Callable[["Trainer"], bool] | None = None) -> "Trainer":
        """Train until ``until`` epochs (default: the config's). Calls ``on_checkpoint(self, epoch)`` at
        every multiple of ``checkpoint_every`` (epoch 0 included) and at the end, after the final
        evaluation; ``after_step(self)`` after every step (the epoch's metrics row is then filled): when it
        returns True the progress bar's postfix is refreshed at once (:attr:`postfix_extra` changed)."""
        E = self.cfg.epochs
        until = E if until is None else min(until, E)
        bar = None
        if progress:
            import sys

            from tqdm.auto import tqdm
            tty = sys.stderr.isatty()
            bar = tqdm(total=E, initial=self.epoch, desc=desc, unit="epoch", dynamic_ncols=True,
                       mininterval=0.2 if tty else 30.0)  # a log file gets a line every 30 s
        ce = self.cfg.checkpoint_every
        try:
            while self.epoch < until:
                if self.interrupted:
                    raise KeyboardInterrupt
                if self.epoch % ce == 0 and on_checkpoint is not None:
                    on_checkpoint(self, self.epoch)
                self.step()
                changed = after_step(self) if after_step is not None else False
                if bar is not None:
                    bar.update(1)
                    if self.epoch % 50 == 0 or self.epoch == until or changed:
                        bar.set_postfix_str(self.postfix(), refresh=False)
            if self.epoch == E and torch.isnan(self.metrics["train_loss"][E]).all():
                self.final_evaluate()
            if on_checkpoint is not None and (self.epoch % ce == 0 or self.epoch == E):
                on_checkpoint(self, self.epoch)
        finally:
            if bar is not None:
                bar.set_postfix_str(self.postfix(), refresh=False)
                bar.close()
        return self

    def final_evaluate(self) -> None:
        E = self.epoch
        self.metrics["train_loss"][E], self.metrics["train_acc"][E] = self.evaluate(self.train)
        with torch.no_grad():
            named = self.named_params()
            self._diagnostics(E, self.logits(named, self.train, ws=self.ws), self.train, named["W_U"])
        self.metrics["test_loss"][E], self.metrics["test_acc"][E] = self.evaluate(self.test)

    def postfix(self) -> str:
        e = max(self.epoch - 1, 0)
        m = {k: v[: e + 1] for k, v in self.metrics.items()}
        tl = m["train_loss"][e]
        last_test = torch.nonzero(~torch.isnan(m["test_loss"][:, 0]))
        j = int(last_test[-1]) if len(last_test) else 0
        f = lambda t: float(t.mean()) if self.K == 1 else float(t.median())
        label = "" if self.K == 1 else " (median of %d)" % self.K
        extra = f" | {self.postfix_extra}" if self.postfix_extra else ""
        return (f"train {f(tl):.2e} test {f(m['test_loss'][j]):.2e} test_acc {f(m['test_acc'][j]):.3f}{label}"
                + extra)

    # ------------------------------------------------------------------ state for resume
    def state_dict(self) -> dict[str, torch.Tensor]:
        e = self.epoch
        st = {"params": self.params, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq,
              "epoch": torch.tensor(e), "generator": self.generator.get_state()}
        if self.filter is not None:
            st.update(self.filter.state_dict())
        for k, v in self.metrics.items():
            st["metrics." + k] = v
        return {k: v.detach().cpu().clone() for k, v in st.items()}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        dev = self.device
        for k in ("params", "exp_avg", "exp_avg_sq"):
            getattr(self, k).copy_(st[k].to(dev))
        self.epoch = int(st["epoch"])
        self.generator.set_state(st["generator"])
        if self.filter is not None:
            self.filter.load_state_dict(st)
        for k in self.metrics:
            if "metrics." + k in st:  # a state.pt written before NEW_METRICS existed: those rows stay NaN
                self.metrics[k].copy_(st["metrics." + k].to(dev))
