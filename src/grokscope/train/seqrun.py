"""Training on the Appendix D.3 sequence tasks (:mod:`grokscope.tasks.sequence`): a plain batched trainer and its run
directories.

The model is :class:`grokscope.model.Transformer` (full or attention-only, the paper's hook names), run through
``torch.func.functional_call`` on one flat parameter vector, so that the optimiser is the modular trainer's
:func:`grokscope.train.trainer.adamw_update` and the loss its :func:`grokscope.train.trainer.cross_entropy_accurate`.
One model per run (the modular fast path's K-models batching is not used here).

Speed: the loss goes through :func:`grokscope.fast.scored.forward_scored` (``fast=True``, the default), which runs the
last block at the scored positions only (keys and values from all of them) with a fused attention: the same
function as the plain full-sequence path (``fast=False``, tested equal in float64 on logits, loss and every
gradient). On the 2-core AMD EPYC, one thread: digit addition 3.0-4.2x, induction 2.1-2.9x, skip trigram
(10 tokens) 3.5-4.6x faster per step (README "Other tasks", ``benchmarks/seq_speed.py``). Float32 denormals are flushed as in the modular trainer (:mod:`grokscope.numerics`).

Conventions (as :mod:`grokscope.train.trainer`):

* *epoch e* (the metrics' ``epoch`` column) is the state after ``e`` optimiser steps; for a finite set split into
  k fixed batches (induction: 4 of 128) one pass over the data is k steps. Row ``e`` holds the train loss of the
  batch of step ``e + 1`` (before its update: a minibatch's, or a fresh batch's for infinite data) and, every
  ``test_every`` steps, the test loss of the same state; the last row evaluates the trained model (on the whole
  train set, or on the stream's next batch without advancing it).
* The loss is the mean cross-entropy over the scored tokens (``mask``); accuracy is over the scored tokens too.
  ``train_loss_tok{k}`` / ``test_loss_tok{k}``: the loss of the k-th scored token of each example (digit addition:
  the k-th sum digit, most significant first; Fig 29 bottom), on the test steps only (they would otherwise be
  ``n_scored`` float columns per step: 30 for induction).
* Resume is bit-exact: ``state.pt`` holds the parameters, Adam's moments, the step, the infinite stream's
  generator state and the metric buffers; a finite set's batch of step e is ``e mod k``, so it needs no state.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch.func import functional_call
from tqdm.auto import tqdm

from .. import checks as ck
from . import run as runs
from ..checks import ConfigError
from ..files import NoSpace, atomic_write, clean_stale_tmp, load
from ..model.transformer import Transformer, init_params
from ..numerics import ensure_denormals
from ..fast.scored import forward_scored, scored_positions
from ..tasks.sequence import Examples, SeqConfig, stream_generator, make_test_set, make_train_set
from .trainer import ParamLayout, adamw_update, cross_entropy_accurate, resolve_device
from ..version import __version__

KIND = runs.SEQ_KIND  # config.json's "kind" for these runs
SUMMARY = ("train_loss", "train_acc", "test_loss", "test_acc")


def _to(ex: Examples, dev: torch.device) -> Examples:
    return Examples(ex.tokens.to(dev), ex.targets.to(dev), ex.mask.to(dev))


class SeqTrainer:
    """Trains one model on a sequence task. ``fit`` / ``step`` / ``state_dict`` as :class:`grokscope.train.trainer.Trainer`."""

    interrupted = False  # set by a signal handler (grokscope.train.run): fit stops between two steps

    def __init__(self, cfg: SeqConfig, device: str | torch.device = "cpu", fast: bool = True,
                 flush_denormal: bool | None = None):
        ensure_denormals(flush_denormal)  # before any parallel torch op of this trainer
        self.cfg = cfg.validate()
        self.fast = fast
        self.mcfg = cfg.model_config
        self.task = cfg.task_spec
        self.device = torch.device(device)
        dev = self.device
        self.layout = ParamLayout(self.mcfg)
        self.model = Transformer(self.mcfg, seed=None).to(dev)  # the structure; weights come from self.params
        self.params = self.layout.flatten({k: v[None] for k, v in init_params(self.mcfg, cfg.seed).items()}).to(dev)
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.epoch = 0
        ts = make_train_set(cfg)
        self.train_data = None if ts is None else _to(ts, dev)
        self.test_data = _to(make_test_set(cfg), dev)
        self.stream = stream_generator(cfg)  # CPU: the examples are drawn on the CPU, then moved
        E, S = cfg.epochs, self.task.n_scored
        nan = float("nan")
        self.metrics = {k: torch.full((E + 1,), nan, dtype=torch.float64) for k in SUMMARY}
        self.tok = {k: torch.full((E + 1, S), nan, dtype=torch.float64) for k in ("train", "test")}

    # ------------------------------------------------------------------ model evaluation
    def named_params(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Parameters by name, without the leading model axis."""
        return {k: v[0] for k, v in self.layout.unflatten(self.params if flat is None else flat).items()}

    def logits(self, named: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, named, (tokens,))

    def loss(self, named: dict[str, torch.Tensor], ex: Examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean loss (float64) over the scored tokens, their accuracy, and the loss of each scored token index
        ``(n_scored,)``."""
        if self.fast:
            pos = scored_positions(ex.mask)
            logits = forward_scored(named, ex.tokens, pos, self.mcfg).reshape(-1, self.mcfg.n_out)
        else:
            logits = self.logits(named, ex.tokens)[ex.mask]  # (n * n_scored, n_out), example-major
        ce, correct = cross_entropy_accurate(logits, ex.targets[ex.mask])
        ce64 = ce.to(torch.float64)
        return ce64.mean(), correct.to(torch.float64).mean(), ce64.detach().reshape(len(ex), -1).mean(0)

    @torch.no_grad()
    def evaluate(self, ex: Examples) -> tuple[float, float, torch.Tensor]:
        loss, acc, tok = self.loss(self.named_params(), ex)
        return float(loss), float(acc), tok.cpu()

    def batch(self, e: int, advance: bool = True) -> Examples:
        """The train batch of step ``e`` (0-based): batch ``e mod k`` of a finite set, else the stream's next
        ``batch_size`` examples (``advance=False``: without moving the stream)."""
        c = self.cfg
        if self.train_data is not None:
            B = c.step_batch
            i = e % (c.n_train // B)
            return self.train_data[i * B: (i + 1) * B]
        g = self.stream
        if not advance:
            g = torch.Generator().manual_seed(0)
            g.set_state(self.stream.get_state())
        return _to(self.task.make(c.step_batch, g), self.device)

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        e, c = self.epoch, self.cfg
        if e % c.test_every == 0:
            self._log_test(e)
        ex = self.batch(e)
        flat = self.params.detach().requires_grad_(True)
        loss, acc, tok = self.loss(self.named_params(flat), ex)
        (grad,) = torch.autograd.grad(loss, flat)
        self.metrics["train_loss"][e], self.metrics["train_acc"][e] = float(loss.detach()), float(acc)
        if e % c.test_every == 0:
            self.tok["train"][e] = tok.cpu()
        adamw_update(self.params, self.exp_avg, self.exp_avg_sq, grad, e, c.lr, c.weight_decay, c.beta1, c.beta2,
                     c.eps, c.warmup)
        self.epoch = e + 1

    def _log_test(self, e: int) -> None:
        loss, acc, tok = self.evaluate(self.test_data)
        self.metrics["test_loss"][e], self.metrics["test_acc"][e], self.tok["test"][e] = loss, acc, tok

    def final_evaluate(self) -> None:
        E = self.epoch
        ex = self.train_data if self.train_data is not None else self.batch(E, advance=False)
        self.metrics["train_loss"][E], self.metrics["train_acc"][E], self.tok["train"][E] = self.evaluate(ex)
        self._log_test(E)

    # ------------------------------------------------------------------ loop
    def fit(self, until: int | None = None, on_checkpoint: Callable[["SeqTrainer", int], None] | None = None,
            progress: bool = False, desc: str = "train") -> "SeqTrainer":
        """Train until ``until`` steps (default: the config's); ``on_checkpoint(self, epoch)`` at every multiple of
        ``checkpoint_every`` (0 included) and at the end, after the final evaluation."""
        E = self.cfg.epochs
        until = E if until is None else min(until, E)
        ce = self.cfg.checkpoint_every
        bar = tqdm(total=E, initial=self.epoch, desc=desc, unit="step", dynamic_ncols=True,
                   mininterval=0.2 if sys.stderr.isatty() else 30.0) if progress else None
        try:
            while self.epoch < until:
                if self.interrupted:
                    raise KeyboardInterrupt
                if self.epoch % ce == 0 and on_checkpoint is not None:
                    on_checkpoint(self, self.epoch)
                self.step()
                if bar is not None:
                    bar.update(1)
                    if self.epoch % 50 == 0:
                        bar.set_postfix_str(self.postfix(), refresh=False)
            if self.epoch == E and math.isnan(float(self.metrics["train_loss"][E])):
                self.final_evaluate()
            if on_checkpoint is not None and (self.epoch % ce == 0 or self.epoch == E):
                on_checkpoint(self, self.epoch)
        finally:
            if bar is not None:
                bar.close()
        return self

    def postfix(self) -> str:
        e = max(self.epoch - 1, 0)
        t = self.metrics["test_loss"][: e + 1]
        j = int(torch.nonzero(~torch.isnan(t))[-1]) if bool((~torch.isnan(t)).any()) else 0
        return (f"train {float(self.metrics['train_loss'][e]):.2e} test {float(t[j]):.2e} "
                f"test_acc {float(self.metrics['test_acc'][j]):.3f}")

    # ------------------------------------------------------------------ state for resume
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters, Adam's moments, the step, the stream's state and the metric rows ``0..epoch`` (the rows
        after the current step are all NaN, so they are not saved: induction-finite's buffers for 285,821 steps
        would otherwise make every ``state.pt`` 146 MB from its first step)."""
        n = self.epoch + 1
        st = {"params": self.params, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq,
              "epoch": torch.tensor(self.epoch), "stream": self.stream.get_state()}
        st |= {"metrics." + k: v[:n] for k, v in self.metrics.items()}
        # the per-token rows exist at the test steps only: those rows, and which they are
        rows = torch.nonzero(~torch.stack([v[:n].isnan().all(1) for v in self.tok.values()]).all(0))[:, 0]
        st |= {"tok_rows": rows} | {"tok." + k: v[rows] for k, v in self.tok.items()}
        return {k: v.detach().cpu().clone() for k, v in st.items()}

    def load_state_dict(self, st: dict[str, torch.Tensor]) -> None:
        """The inverse of :meth:`state_dict`; also takes a state written with the full-length metric buffers."""
        for k in ("params", "exp_avg", "exp_avg_sq"):
            getattr(self, k).copy_(st[k].to(self.device))
        self.epoch = int(st["epoch"])
        self.stream.set_state(st["stream"])
        for k, buf in self.metrics.items():
            buf.fill_(float("nan"))
            buf[: len(st["metrics." + k])] = st["metrics." + k]
        for k, buf in self.tok.items():
            buf.fill_(float("nan"))
            if "tok_rows" in st:
                buf[st["tok_rows"]] = st["tok." + k]
            else:  # a state written before tok_rows: the leading rows
                buf[: len(st["tok." + k])] = st["tok." + k]


def metrics_frame(tr: SeqTrainer, upto: int) -> pd.DataFrame:
    """One row per step 0..upto: model (0), epoch, train_loss, train_acc, test_loss, test_acc (NaN between
    evaluations), then train_loss_tok{k}, test_loss_tok{k} (NaN off the test steps)."""
    n = upto + 1
    cols: dict[str, Any] = {"model": np.zeros(n, dtype=np.int32), "epoch": np.arange(n, dtype=np.int64)}
    cols |= {k: tr.metrics[k][:n].numpy() for k in SUMMARY}
    for split in ("train", "test"):
        cols |= {f"{split}_loss_tok{k}": tr.tok[split][:n, k].numpy() for k in range(tr.task.n_scored)}
    df = pd.DataFrame(cols)
    return df[df["train_acc"].notna()].reset_index(drop=True)


# ---------------------------------------------------------------------- run directories
class SeqRun:
    """A sequence-task run directory (same layout as :mod:`grokscope.train.run`; ``config.json`` has ``"kind":
    "seqtask"`` and one ``"config"``). ``SeqRun.load(path)``; ``run.metrics``; ``run.model(epoch)``."""

    def __init__(self, path: str | Path, meta: dict[str, Any]):
        self.path = Path(path)
        self.meta = meta
        self.config = SeqConfig.from_dict(meta["config"])

    @classmethod
    def load(cls, path: str | Path) -> "SeqRun":
        path = Path(path)
        if not (path / runs.CONFIG).is_file():
            raise ConfigError(f"run={str(path)!r} is invalid: not a grokscope run directory (no {runs.CONFIG})")
        return cls(path, load(path / runs.CONFIG, lambda f: json.loads(f.read_text()), _meta_problem,
                              hint="it cannot be read back; train again with --overwrite"))

    @property
    def metrics(self) -> pd.DataFrame:
        f = self.path / runs.METRICS
        if not f.is_file():
            return pd.DataFrame(columns=["model", "epoch", *SUMMARY])
        return load(f, pd.read_parquet, lambda df: None if set(SUMMARY) <= set(df.columns) else
                    f"columns {list(df.columns)}, expected {list(SUMMARY)}",
                    hint=f"`grokscope train --resume {self.path}` rewrites it from {runs.STATE}")

    @property
    def checkpoint_epochs(self) -> list[int]:
        d = self.path / runs.CKPT_DIR
        return sorted(int(m.group(1)) for f in d.iterdir() if (m := runs._CKPT_RE.match(f.name))) if d.is_dir() else []

    def model(self, epoch: int | None = None) -> Transformer:
        """The model of checkpoint ``epoch`` (default: the last)."""
        eps = self.checkpoint_epochs
        if not eps:
            raise ConfigError(f"run={str(self.path)!r} is invalid: it has no checkpoints yet")
        epoch = eps[-1] if epoch is None else epoch
        if epoch not in eps:
            raise ConfigError(f"epoch={epoch} is invalid: must be one of the checkpoints {eps[0]}..{eps[-1]}")
        sd = load(self.path / runs.CKPT_DIR / runs.ckpt_name(epoch), load_file)
        m = Transformer(self.config.model_config, seed=None)
        m.load_state_dict({k: v[0] for k, v in sd.items()})
        return m

    def milestones(self) -> dict[str, float]:
        """First epoch where train accuracy is 100% and where test accuracy passes 95% (NaN if never), and the last
        logged row's losses."""
        df = self.metrics.sort_values("epoch")
        first = lambda mask: float(df["epoch"][mask].iloc[0]) if bool(mask.any()) else float("nan")  # noqa: E731
        test = df[df["test_loss"].notna()]
        return {"train_acc_100": first(df["train_acc"] >= 1 - 1e-9), "test_acc_95": first(df["test_acc"] > 0.95),
                "last_epoch": float(df["epoch"].iloc[-1]) if len(df) else float("nan"),
                "final_train_loss": float(df["train_loss"].iloc[-1]) if len(df) else float("nan"),
                "final_test_loss": float(test["test_loss"].iloc[-1]) if len(test) else float("nan")}


def _meta_problem(meta: Any) -> str | None:
    if not isinstance(meta, dict) or meta.get("kind") != KIND or not isinstance(meta.get("config"), dict):
        return "not a sequence-task run (no \"kind\": \"seqtask\" and \"config\")"
    try:
        SeqConfig.from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        return str(e)
    return None


def is_seq_run(path: str | Path) -> bool:
    """Whether ``path`` holds a sequence-task run (its config.json says ``"kind": "seqtask"``)."""
    f = Path(path) / runs.CONFIG
    try:
        return f.is_file() and json.loads(f.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def _save_state(path: Path, tr: SeqTrainer) -> None:
    df = metrics_frame(tr, tr.epoch)
    atomic_write(path / runs.METRICS, lambda t: df.to_parquet(t, index=False))
    st = tr.state_dict()
    atomic_write(path / runs.STATE, lambda t: torch.save(st, t),
                 size=sum(v.numel() * v.element_size() for v in st.values()))


def _save_checkpoint(path: Path, tr: SeqTrainer, epoch: int) -> None:
    params = {k: v[None].detach().cpu().contiguous() for k, v in tr.named_params().items()}
    atomic_write(path / runs.CKPT_DIR / runs.ckpt_name(epoch), lambda t: save_file(params, t),
                 size=sum(v.numel() * v.element_size() for v in params.values()))
    _save_state(path, tr)


def _load_state(path: Path, tr: SeqTrainer) -> None:
    full = tr.state_dict()
    rows = [k for k in full if k.startswith(("metrics.", "tok"))]  # their length depends on the saved epoch
    want = {k: (tuple(v.shape), v.dtype) for k, v in full.items() if k != "stream" and k not in rows}

    def problem(st: Any) -> str | None:
        bad = runs.state_problem(st, want, tr.cfg.epochs, ("stream", *(k for k in rows if k != "tok_rows")))
        if bad:
            return bad
        n, E = int(st["epoch"]) + 1, tr.cfg.epochs + 1
        r = st.get("tok_rows")
        if r is not None and (r.dtype != torch.int64 or r.dim() != 1 or (len(r) and not 0 <= int(r.min())
                                                                           <= int(r.max()) < n)):
            return f"tok_rows {tuple(r.shape)} {r.dtype}: expected int64 rows in 0..{n - 1}"
        lo = {k: (len(r) if r is not None else n) if k.startswith("tok.") else n for k in rows}
        hi = {k: (len(r) if r is not None else E) if k.startswith("tok.") else E for k in rows}
        wrong = [f"{k} {tuple(st[k].shape)} {st[k].dtype} (expected ({lo[k]}..{hi[k]}, *{tuple(full[k].shape[1:])}) "
                 f"{full[k].dtype})" for k in rows if k != "tok_rows"
                 and not (lo[k] <= st[k].shape[0] <= hi[k] and st[k].shape[1:] == full[k].shape[1:]
                          and st[k].dtype == full[k].dtype)]
        return "wrong shapes: " + ", ".join(wrong) if wrong else None

    st = load(path, lambda p: torch.load(p, map_location="cpu", weights_only=True), problem,
              hint="train again with --overwrite")
    load(path, lambda p: tr.load_state_dict(st))


def _fit_locked(path: Path, tr: SeqTrainer, progress: bool, until: int | None) -> None:
    for d in (path, path / runs.CKPT_DIR):
        clean_stale_tmp(d)
    tr.interrupted = False
    with runs._signals_deferred(tr):
        try:
            tr.fit(until, on_checkpoint=lambda t, e: _save_checkpoint(path, t, e), progress=progress, desc=path.name)
            if tr.epoch % tr.cfg.checkpoint_every != 0 and tr.epoch != tr.cfg.epochs:
                _save_state(path, tr)  # stopped early by `until`
            if tr.interrupted and tr.epoch < tr.cfg.epochs:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            _save_state(path, tr)
            raise
        except NoSpace as e:
            raise NoSpace(f"{e}; free some space, then continue with `grokscope train --resume {path}`") from None


def create_seq_run(path: str | Path, overwrite: bool = False) -> None:
    """Check that ``path`` may be written (a new or empty directory, or with ``overwrite`` a run nobody trains).
    Writes nothing."""
    runs.check_run_dir(path, overwrite)


def train_seq(cfg: SeqConfig, out: str | Path, device: str = "auto", overwrite: bool = False,
              progress: bool = True, until: int | None = None) -> SeqRun:
    """Train a new sequence-task run into ``out`` (everything checked before anything is written)."""
    out = Path(out)
    dev = resolve_device(device)
    until = None if until is None else ck.integer("until", until, lo=1)
    create_seq_run(out, overwrite)
    tr = SeqTrainer(cfg, dev)
    out.mkdir(parents=True, exist_ok=True)
    lock = runs._acquire_lock(out)
    try:
        for e in list(out.iterdir()) if overwrite else []:
            if e.name == runs.CKPT_DIR:
                shutil.rmtree(e)
            elif e.name != runs.LOCK:
                e.unlink()
        meta = {"kind": KIND, "grokscope_version": __version__, "torch_version": torch.__version__,
                "python_version": platform.python_version(), "device": str(dev), "config": cfg.to_dict()}
        atomic_write(out / runs.CONFIG, lambda t: Path(t).write_text(json.dumps(meta, indent=2)))
        _fit_locked(out, tr, progress, until)
    finally:
        runs._release_lock(lock)
    return SeqRun.load(out)


def resume_seq(path: str | Path, device: str = "auto", progress: bool = True, until: int | None = None) -> SeqRun:
    """Continue a sequence-task run from its ``state.pt``, bit-exactly (the stream included)."""
    until = None if until is None else ck.integer("until", until, lo=1)
    run = SeqRun.load(path)
    dev = resolve_device(device)
    tr = SeqTrainer(run.config, dev)
    if (run.path / runs.STATE).is_file():
        _load_state(run.path / runs.STATE, tr)
    elif run.checkpoint_epochs:
        raise ConfigError(f"run={str(run.path)!r} is invalid: it has checkpoints but no {runs.STATE} to resume from")
    lock = runs._acquire_lock(run.path)
    try:
        _fit_locked(run.path, tr, progress, until)
    finally:
        runs._release_lock(lock)
    return SeqRun.load(run.path)
