"""The one training loop: K stacked models of one shape on any task, every optimiser and method, as one computation.

Knows nothing of run directories, Fourier analysis or plots: :class:`Trainer` holds the state (parameters, optimiser
moments, step, the data streams and dropout RNG, metric buffers) and :meth:`Trainer.fit` calls
``on_checkpoint(trainer, epoch)`` on the checkpoint schedule, which is how :mod:`grokscope.training.run` saves them.

Conventions (documented choices):

* *epoch e* means the state after ``e`` optimiser steps (for a finite set split into k fixed batches one pass over
  the data is k steps). Row ``e`` of the metrics holds the train loss of that state on the batch of step ``e + 1``
  (before its update: the full train set, a minibatch, or a fresh batch of infinite data), and the test loss of the
  same state on epochs that are multiples of ``test_every``; checkpoint ``e`` holds the same parameters. The final
  row ``epochs`` evaluates the trained model (on the whole train set, or on the stream's next batch without
  advancing it). (The authors' loop appends the loss before a step and saves the model after it, one step apart.)
* Learning rate of step ``e`` (0-based): ``lr * min(e / warmup, 1)``, as the authors' ``LambdaLR(lambda step:
  min(step/10, 1))``: their first step has learning rate 0 (it only fills Adam's moments), which we keep. Adam's
  bias correction counts steps from 1.
* Loss: the mean cross-entropy over the scored tokens (the answer of a modular task), with float32 *relative*
  accuracy at every loss (:mod:`grokscope.training.losses`), summed in float64; accuracy over the scored tokens too.
  The models of a modular run may have train sets of different sizes (``frac_train`` per model): their batches
  are padded and the padding is never scored. Sampled tasks also log ``train_loss_tok{k}`` / ``test_loss_tok{k}``,
  the loss of the k-th scored token (digit addition: the k-th sum digit; Fig 29 bottom), at the test steps.
* L1 (Appendix D.1): ``l1 * sum(|w|)`` over all parameters, added to the loss (not decoupled).
* Dropout (Appendix D.1): on the MLP neurons of the answer position, with the usual 1/(1-p) scaling.
* Methods beyond the paper (:mod:`grokscope.training.methods`), in the step's order: the loss (``loss``: softmax
  cross-entropy or StableMax), the gradient (plus L1), Grokfast's filter (``grokfast``), ⊥Grad
  (``optimizer="orthoadamw"``), the AdamW update (with ``optimizer="muon"``: Muon on the hidden matrices, AdamW on
  the rest; :mod:`grokscope.training.muon`), then the constrained norm (``norm_constraint``). The metrics'
  losses are always the softmax cross-entropy (comparable between methods), whatever loss is trained. Per-step
  diagnostics beside them: ``softmax_collapse`` / ``softmax_sum1`` and ``w_u_norm``, all of the state of that step.
* The forward is picked from the task's and the model's shape (:mod:`grokscope.fast`): the one-layer table path for
  ``a b =`` tasks, the scored-positions path (with the compiled attention) for the others and for deeper ``a b =``
  models without dropout; ``fast=False`` (and dropout in a deeper ``a b =`` model) runs the plain full-sequence model. Each is tested equal to the plain one in float64.
* The stopping rule (``stop_below``; :mod:`grokscope.training.stopping`): a stopped model is frozen (its parameters
  and moments restored after every later step) but still evaluated; the run ends once every model has stopped, at
  that test epoch, with the final evaluation and checkpoint there.
* Denormals are flushed to zero in every thread by default (:mod:`grokscope.numerics`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call

from ..config import Config, check_batchable
from ..fast.scored import forward_scored, scored_positions
from ..fast.tables import Workspace, forward_deep, forward_fast, forward_plain, segment_plan
from ..model import Transformer, init_params
from ..numerics import denormals_flushed, ensure_denormals
from ..tasks import Examples
from .losses import LOW_PRECISION, cross_entropy_and_collapse, cross_entropy_low_precision
from .methods import (GradFilter, collapse_fractions, orthogonal_grad, renormalise_, softmax_collapse,
                      stablemax_cross_entropy, w_u_norm)
from .muon import Muon
from .optim import ParamLayout, adamw_update
from .stopping import StopRule

#: the per-step metric buffers (metrics.parquet's columns after model and epoch); runs written before the last three
#: existed lack them (:data:`NEW_METRICS`)
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "softmax_collapse", "softmax_sum1", "w_u_norm")
NEW_METRICS = METRICS[4:]


def dropout_keep(generator: torch.Generator, dropout: torch.Tensor, n: int, d_mlp: int, mask: str) -> torch.Tensor:
    """The step's dropout mask ``(K, n, d_mlp)`` for the MLP neurons of K models: a neuron is kept with
    probability ``1 - dropout[k]``. ``mask="example"``: a fresh draw for every example (standard dropout; the draw
    every run before the option made); ``"step"``: one draw per model shared by the step's ``n`` examples."""
    rows = n if mask == "example" else 1
    keep = torch.rand((dropout.shape[0], rows, d_mlp), generator=generator, device=dropout.device) \
        >= dropout[:, None, None]
    return keep if rows == n else keep.expand(-1, n, -1).contiguous()


@dataclass
class Batch:
    """The examples of K models, padded to a common count: ``tokens (K, N, T)``, the scored tokens' targets
    ``y (K, N, S)`` at positions ``pos (K, N, S)``, ``valid (K, N)`` the real rows, ``n (K,)`` their count.
    ``a``, ``b``: the two operands of an ``a b =`` task (contiguous), ``plan`` the table path's grouping of them."""

    tokens: torch.Tensor
    y: torch.Tensor
    pos: torch.Tensor
    valid: torch.Tensor
    n: torch.Tensor
    a: torch.Tensor | None = None
    b: torch.Tensor | None = None
    plan: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def of(examples: list[Examples], device: torch.device, pair_form: bool = False) -> "Batch":
        K = len(examples)
        N = max(1, max(len(e) for e in examples))
        T = examples[0].tokens.shape[1]
        S = max((int(e.mask[0].sum()) for e in examples if len(e)), default=1)
        tokens = torch.zeros(K, N, T, dtype=torch.long)
        y = torch.zeros(K, N, S, dtype=torch.long)
        pos = torch.full((K, N, S), T - 1, dtype=torch.long)
        valid = torch.zeros(K, N, dtype=torch.bool)
        for k, e in enumerate(examples):
            n = len(e)
            if n:
                p = scored_positions(e.mask)
                tokens[k, :n], pos[k, :n], y[k, :n] = e.tokens, p, e.targets.gather(1, p)
                valid[k, :n] = True
        n = torch.tensor([len(e) for e in examples])
        b = Batch(tokens.to(device), y.to(device), pos.to(device), valid.to(device), n.to(device))
        if pair_form:
            b.a, b.b = b.tokens[..., 0].contiguous(), b.tokens[..., 1].contiguous()
        return b

    def rows(self, lo: int, hi: int) -> "Batch":
        """Rows ``lo:hi`` of every model (a minibatch of a sampled task's fixed set: no padding there)."""
        sl = slice(lo, hi)
        n = torch.full_like(self.n, hi - lo)
        return Batch(self.tokens[:, sl], self.y[:, sl], self.pos[:, sl], self.valid[:, sl], n)


class Trainer:
    """Trains ``len(configs)`` models of one shape on one task together. ``fast=False`` uses the plain forward.
    ``flush_denormal``: flush float32 denormals to zero in every thread (:mod:`grokscope.numerics`); None keeps the
    mode the process was configured with (``grokscope train``'s), or turns it on if it never was."""

    interrupted = False  # set by a signal handler (grokscope.training.run): fit stops between two steps, never inside one

    def __init__(self, configs: list[Config], device: str | torch.device = "cpu", fast: bool | None = None,
                 flush_denormal: bool | None = None):
        ensure_denormals(flush_denormal)  # before any parallel torch op of this trainer
        self.flushed = denormals_flushed() is True  # every thread: the loss's exp may take the fast path
        configs = [c.validate() for c in configs]
        check_batchable(configs)
        self.configs = configs
        self.cfg = configs[0]
        self.mcfg = self.cfg.model_config
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.K = len(configs)
        self.postfix_extra = ""  # appended to the progress bar's postfix (grokscope train --forecast)
        self.tasks = [c.make_task() for c in configs]
        self.task = self.tasks[0]
        self.pair_form = self.task.pair_form
        self.fast = True if fast is None else fast
        self.layout = ParamLayout(self.mcfg)
        self.ws = Workspace()  # the table path's large outputs, reused across steps
        self.model = None if self.pair_form else Transformer(self.mcfg, seed=None).to(self.device)  # plain path
        dev = self.device

        train_sets = [t.train_set() for t in self.tasks]
        self.train = None if train_sets[0] is None else Batch.of(train_sets, dev, self.pair_form)
        self.test = Batch.of([t.test_set() for t in self.tasks], dev, self.pair_form)
        self.streams = [t.stream() for t in self.tasks] if self.task.infinite else []  # CPU: drawn, then moved
        self.step_batch = self.task.batch_size  # None: the whole train set

        def col(name: str, dtype=torch.float32) -> torch.Tensor:
            return torch.tensor([getattr(c, name) for c in configs], dtype=dtype, device=dev)[:, None]

        self.lr, self.wd = col("lr"), col("weight_decay")
        # the step's lr and weight decay: per-model float32 columns (the modular trainer's convention), or for the
        # other tasks, when every model shares them, Python floats (the sequence trainer's before one trainer
        # served every task): each convention's runs resume, and its presets train, bit for bit as before
        shared = len({(c.lr, c.weight_decay) for c in configs}) == 1
        self.step_lr, self.step_wd = ((float(self.cfg.lr), float(self.cfg.weight_decay))
                                      if shared and not self.task.pair_form else (self.lr, self.wd))
        self.l1 = col("l1", torch.float64)[:, 0]
        self.dropout = col("dropout")[:, 0]
        self.use_dropout = bool((self.dropout > 0).any())
        self.use_l1 = bool((self.l1 > 0).any())

        init = [init_params(self.mcfg, c.seed, embed_init=c.embed_init) for c in configs]
        self.params = torch.stack([self.layout.flatten({k: v[None] for k, v in p.items()})[0] for p in init]).to(dev)
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
        self.muon = Muon(self.layout, configs, dev) if self.cfg.optimizer == "muon" else None
        self.epoch = 0  # optimiser steps taken
        self.stop = StopRule(self.cfg.stop_below, self.cfg.stop_patience, self.K)
        self.generator = torch.Generator(device=dev).manual_seed((int(self.cfg.seed) * 1_000_003 + 17) % 2**64)
        E, S = self.cfg.epochs, self.task.n_scored
        nan = float("nan")
        self.metrics = {k: torch.full((E + 1, self.K), nan, dtype=torch.float64, device=dev) for k in METRICS}
        #: per-token losses of the sampled tasks, at the test steps: ``{"train"|"test": (E + 1, K, S)}``
        self.per_token = not self.pair_form
        self.tok = {k: torch.full((E + 1, self.K, S), nan, dtype=torch.float64) for k in ("train", "test")} \
            if self.per_token else {}

    # ------------------------------------------------------------------ model evaluation
    def named_params(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Parameters by name, stacked ``(K, ...)``."""
        return self.layout.unflatten(self.params if flat is None else flat)

    def logits(self, params: dict[str, torch.Tensor], batch: Batch, keep=None, ws: Workspace | None = None
               ) -> torch.Tensor:
        """Logits at the scored positions ``(K, N, S, classes)``; ``ws``: reuse the trainer's buffers (the result is
        then overwritten by the next step)."""
        if self.pair_form:
            drop = self.dropout if keep is not None else None
            if not self.fast or (self.mcfg.n_layers > 1 and keep is not None):  # dropout: the plain path's masks
                return forward_plain(params, batch.a, batch.b, self.mcfg, keep, drop)[:, :, None]
            if self.mcfg.n_layers > 1:
                return forward_deep(params, batch.a, batch.b, self.mcfg)[:, :, None]
            if batch.plan is None:  # the examples grouped by token, computed once per batch
                batch.plan = (segment_plan(batch.a, self.mcfg.p), segment_plan(batch.b, self.mcfg.p))
            return forward_fast(params, batch.a, batch.b, self.mcfg, keep, drop, plan=batch.plan, ws=ws)[:, :, None]
        out = []
        for k in range(self.K):
            named = {n: v[k] for n, v in params.items()}
            if self.fast:
                out.append(forward_scored(named, batch.tokens[k], batch.pos[k], self.mcfg))
            else:
                full = functional_call(self.model, named, (batch.tokens[k],))  # (N, T, classes)
                out.append(full.gather(1, batch.pos[k][..., None].expand(-1, -1, full.shape[-1])))
        return torch.stack(out)

    def loss_acc(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per model: the mean loss over the scored tokens (float64), their accuracy, and the mean loss of each
        scored token ``(K, S)``."""
        return self._loss_acc(logits, batch)[:3]

    def _loss_acc(self, logits: torch.Tensor, batch: Batch, collapse: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """:meth:`loss_acc`, and with ``collapse`` on the fast path softmax collapse's two fractions per model
        from the same pass (:func:`cross_entropy_and_collapse`; None where that does not apply: the plain path,
        a low-precision loss, half-precision logits)."""
        K, N, S = logits.shape[:3]
        n = batch.n.to(torch.float64)
        valid = batch.valid[..., None]
        fractions = None
        if self.cfg.loss_dtype in LOW_PRECISION:  # Appendix D.2: the mean too in float32, as the authors' run
            ce, correct = cross_entropy_low_precision(logits, batch.y, LOW_PRECISION[self.cfg.loss_dtype])
            loss = ((ce * valid).flatten(1).sum(1) / (n * S).to(torch.float32)).to(torch.float64)
            ce64 = ce.to(torch.float64)
        else:
            fused = collapse and self.fast and logits.dtype in (torch.float32, torch.float64)
            ce, correct, loss0, sum1 = cross_entropy_and_collapse(logits, batch.y, fused, self.fast and self.flushed)
            if fused:
                rows = valid.expand(K, N, S).reshape(K, N * S)
                fractions = collapse_fractions(loss0.reshape(K, N * S), sum1.reshape(K, N * S), rows)
            ce64 = ce.to(torch.float64) * valid
            loss = ce64.flatten(1).sum(1) / (n * S)
        acc = (correct & valid).flatten(1).sum(1).to(torch.float64) / (n * S)
        return loss, acc, ce64.detach().sum(1) / n[:, None], fractions

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy per model (no dropout); NaN for a model with no rows."""
        return self._evaluate(batch)[:2]

    @torch.no_grad()
    def _evaluate(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, acc, tok = self.loss_acc(self.logits(self.named_params(), batch, ws=self.ws), batch)
        empty = batch.n == 0
        return loss.masked_fill(empty, float("nan")), acc.masked_fill(empty, float("nan")), tok

    def batch(self, e: int, advance: bool = True) -> Batch:
        """The train batch of step ``e`` (0-based): the train set, its batch ``e mod k``, or the streams' next
        examples (``advance=False``: without moving the streams)."""
        if self.train is not None:
            B = self.step_batch
            if B is None:
                return self.train
            i = e % (int(self.train.n[0]) // B)
            return self.train.rows(i * B, (i + 1) * B)
        gens = self.streams
        if not advance:
            gens = [torch.Generator().manual_seed(0) for _ in self.streams]
            for g, s in zip(gens, self.streams):
                g.set_state(s.get_state())
        return Batch.of([t.draw(self.step_batch, g) for t, g in zip(self.tasks, gens)], self.device)

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        e = self.epoch
        if e % self.cfg.test_every == 0:
            self._log_test(e)
            if self.stop.all_stopped:
                return  # the run ends here, before the step (fit's final evaluation fills the row)
        batch = self.batch(e)
        flat = self.params.detach().requires_grad_(True)
        keep = None
        if self.use_dropout:
            keep = dropout_keep(self.generator, self.dropout, batch.a.shape[1], self.mcfg.d_mlp,
                                self.cfg.dropout_mask)
        named = self.layout.unflatten(flat)
        logits = self.logits(named, batch, keep, ws=self.ws)
        if self.cfg.loss == "stablemax":
            ce = stablemax_cross_entropy(logits, batch.y) * batch.valid[..., None]
            total = (ce.flatten(1).sum(1) / (batch.n * logits.shape[2]).to(torch.float64)).sum()
            with torch.no_grad():
                loss, acc, tok, collapse = self._loss_acc(logits, batch, collapse=True)
        else:
            loss, acc, tok, collapse = self._loss_acc(logits, batch, collapse=True)
            total = loss.sum()
        if self.use_l1:
            total = total + (self.l1 * flat.abs().sum(1).to(torch.float64)).sum()
        self._diagnostics(e, logits, batch, named["W_U"], collapse)
        (grad,) = torch.autograd.grad(total, flat)
        self.metrics["train_loss"][e] = loss.detach()
        self.metrics["train_acc"][e] = acc.detach()
        if self.per_token and e % self.cfg.test_every == 0:
            self.tok["train"][e] = tok.cpu()
        if self.filter is not None:
            grad = self.filter.apply(grad)
        if self.cfg.optimizer == "orthoadamw":
            grad = orthogonal_grad(self.params, grad, self.layout.sizes)
        c = self.cfg
        frozen = torch.from_numpy(self.stop.stopped >= 0).to(self.device)[:, None] if self.stop.on else None
        state = (self.params, self.exp_avg, self.exp_avg_sq) + ((self.muon.buf,) if self.muon is not None else ())
        if frozen is not None and bool(frozen.any()):
            kept = [t.clone() for t in state]
        else:
            frozen = None
        spans = [slice(None)]
        if self.muon is not None:  # Muon on the hidden matrices, AdamW on the other columns
            self.muon.step(self.params, grad, e, c.warmup)
            spans = self.muon.adam
        for s in spans:
            adamw_update(self.params[:, s], self.exp_avg[:, s], self.exp_avg_sq[:, s], grad[:, s], e, self.step_lr,
                         self.step_wd, c.beta1, c.beta2, c.eps, c.warmup)
        if self.use_norm:
            renormalise_(self.params, self.norm_target, self.norm_on)
        if frozen is not None:  # stopped models keep their weights and moments
            for t, old in zip(state, kept):
                t.copy_(torch.where(frozen, old, t))
        self.epoch = e + 1

    def _log_test(self, e: int) -> None:
        loss, acc, tok = self._evaluate(self.test)
        self.metrics["test_loss"][e], self.metrics["test_acc"][e] = loss, acc
        if self.per_token:
            self.tok["test"][e] = tok.cpu()
        if self.stop.on and not bool((self.stop.stopped >= 0).all()):
            self.stop.update(e, loss.cpu().numpy())

    def reopen(self) -> None:
        """Clear the final evaluation's row (the state's step): training on past it logs that row as any step
        does, so an extended run equals one trained to its new length from the start."""
        e = self.epoch
        for buf in self.metrics.values():
            buf[e] = float("nan")
        for buf in self.tok.values():
            buf[e] = float("nan")

    @property
    def finished(self) -> bool:
        """Trained every epoch, or every model stopped (:mod:`grokscope.training.stopping`)."""
        return self.epoch >= self.cfg.epochs or self.stop.all_stopped

    @torch.no_grad()
    def _diagnostics(self, e: int, logits: torch.Tensor, batch: Batch, W_U: torch.Tensor,
                     collapse: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Step ``e``'s diagnostics: softmax collapse (``collapse``: already computed with the loss) and the
        unembedding's norm."""
        if collapse is None:
            K, N, S, V = logits.shape
            valid = batch.valid[..., None].expand(K, N, S).reshape(K, N * S)
            collapse = softmax_collapse(logits.reshape(K, N * S, V), batch.y.reshape(K, N * S), valid)
        self.metrics["softmax_collapse"][e], self.metrics["softmax_sum1"][e] = collapse
        self.metrics["w_u_norm"][e] = w_u_norm(W_U)

    def final_evaluate(self) -> None:
        E = self.epoch
        batch = self.train if self.train is not None else self.batch(E, advance=False)
        loss, acc, tok = self._evaluate(batch)
        self.metrics["train_loss"][E], self.metrics["train_acc"][E] = loss, acc
        if self.per_token:
            self.tok["train"][E] = tok.cpu()
        with torch.no_grad():
            named = self.named_params()
            self._diagnostics(E, self.logits(named, batch, ws=self.ws), batch, named["W_U"])
        self._log_test(E)

    # ------------------------------------------------------------------ loop
    def fit(self, until: int | None = None, on_checkpoint: Callable[["Trainer", int], None] | None = None,
            progress: bool = False, desc: str = "train",
            after_step: Callable[["Trainer"], bool] | None = None) -> "Trainer":
        """Train until ``until`` steps (default: the config's). Calls ``on_checkpoint(self, epoch)`` at every
        multiple of ``checkpoint_every`` (epoch 0 included) and at the end, after the final evaluation;
        ``after_step(self)`` after every step (the step's metrics row is then filled): when it returns True the
        progress bar's postfix is refreshed at once (:attr:`postfix_extra` changed)."""
        E = self.cfg.epochs
        until = E if until is None else min(until, E)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            tty = sys.stderr.isatty()
            bar = tqdm(total=E, initial=self.epoch, desc=desc, unit="epoch" if self.pair_form else "step",
                       dynamic_ncols=True, mininterval=0.2 if tty else 30.0)  # a log file gets a line every 30 s
        ce = self.cfg.checkpoint_every
        try:
            while self.epoch < until and not self.stop.all_stopped:
                if self.interrupted:
                    raise KeyboardInterrupt
                if self.epoch % ce == 0 and on_checkpoint is not None:
                    on_checkpoint(self, self.epoch)
                before = self.epoch
                self.step()
                if self.epoch == before:
                    break  # every model has stopped (the stopping rule)
                changed = after_step(self) if after_step is not None else False
                if bar is not None:
                    bar.update(1)
                    if self.epoch % 50 == 0 or self.epoch == until or changed:
                        bar.set_postfix_str(self.postfix(), refresh=False)
            if self.finished and torch.isnan(self.metrics["train_loss"][self.epoch]).all():
                self.final_evaluate()
            if on_checkpoint is not None and (self.epoch % ce == 0 or self.finished):
                on_checkpoint(self, self.epoch)
        finally:
            if bar is not None:
                bar.set_postfix_str(self.postfix(), refresh=False)
                bar.close()
        return self

    def postfix(self) -> str:
        e = max(self.epoch - 1, 0)
        m = {k: v[: e + 1] for k, v in self.metrics.items()}
        tl = m["train_loss"][e]
        last_test = torch.nonzero(~torch.isnan(m["test_loss"][:, 0]))
        j = int(last_test[-1]) if len(last_test) else 0
        f = lambda t: float(t.mean()) if self.K == 1 else float(t.median())  # noqa: E731
        label = "" if self.K == 1 else " (median of %d)" % self.K
        extra = f" | {self.postfix_extra}" if self.postfix_extra else ""
        return (f"train {f(tl):.2e} test {f(m['test_loss'][j]):.2e} test_acc {f(m['test_acc'][j]):.3f}{label}"
                + extra)

    # ------------------------------------------------------------------ state for resume
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters, Adam's moments (and Muon's momentum), the step, the RNGs (dropout; the infinite streams), the
        filter's state, and the metric rows ``0..epoch`` (the rows after the current step are all NaN: not saved);
        the per-token rows at the test steps only, with their row numbers."""
        n = self.epoch + 1
        st = {"params": self.params, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq,
              "epoch": torch.tensor(self.epoch), "generator": self.generator.get_state()}
        if self.streams:
            st["stream"] = torch.stack([g.get_state() for g in self.streams])
        if self.filter is not None:
            st.update(self.filter.state_dict())
        if self.muon is not None:
            st.update(self.muon.state_dict())
        st |= {"metrics." + k: v[:n] for k, v in self.metrics.items()}
        if self.per_token:
            logged = ~torch.stack([v[:n].isnan().flatten(1).all(1) for v in self.tok.values()]).all(0)
            rows = torch.nonzero(logged)[:, 0]
            st |= {"tok_rows": rows} | {"tok." + k: v[rows] for k, v in self.tok.items()}
        return {k: v.detach().cpu().clone() for k, v in st.items()}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        """The inverse of :meth:`state_dict`. Also reads the states written before one trainer served every task:
        the modular trainer's full-length metric buffers, the sequence trainer's one-model rows ``(n,)`` and
        ``(n, S)`` and its single ``stream``."""
        dev = self.device
        for k in ("params", "exp_avg", "exp_avg_sq"):
            getattr(self, k).copy_(st[k].to(dev))
        self.epoch = int(st["epoch"])
        if "generator" in st:
            self.generator.set_state(st["generator"])
        if self.streams:
            states = st["stream"].reshape(len(self.streams), -1)
            for g, s in zip(self.streams, states):
                g.set_state(s.contiguous())
        if self.filter is not None:
            self.filter.load_state_dict(st)
        if self.muon is not None:
            self.muon.load_state_dict(st)
        for k, buf in self.metrics.items():
            buf.fill_(float("nan"))
            if "metrics." + k in st:  # a state.pt written before NEW_METRICS existed: those rows stay NaN
                rows = st["metrics." + k].to(dev)
                buf[: len(rows)] = rows.reshape(len(rows), self.K)
        if self.stop.on:  # where each model stopped, from the logged test rows (the rule is a function of them)
            self.stop = StopRule(self.cfg.stop_below, self.cfg.stop_patience, self.K)
            t = self.metrics["test_loss"][: self.epoch + 1].cpu().numpy()
            rows = np.nonzero(~np.isnan(t).all(1))[0]
            self.stop.replay(rows, t[rows])
        for k, buf in self.tok.items():
            buf.fill_(float("nan"))
            rows = st["tok." + k].reshape(-1, self.K, buf.shape[2])
            if "tok_rows" in st:
                buf[st["tok_rows"]] = rows
            else:  # a state written before tok_rows: the leading rows
                buf[: len(rows)] = rows

