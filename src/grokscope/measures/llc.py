"""The local learning coefficient (LLC, Lau et al. 2023) of every model of a run at its checkpoints, estimated with
devinterp's SGLD sampler (an optional extra: ``pip install 'grokscope[llc]'``), for every task.

    from grokscope.measures.llc import compute_llc
    rows, report, calibration = compute_llc(Run.load("runs/x"), every=4)

What is estimated
-----------------
``llc = n_beta * (E_w[L_n(w)] - L_n(w*))``: the mean minibatch loss of SGLD chains started at the checkpoint's
weights ``w*`` (localised to them with strength ``localization``), minus the reference loss ``L_n(w*)``, times the
inverse temperature ``n_beta``. The loss is the run's training loss (the mean cross-entropy over the scored
tokens; a modular task's answer over its ``p`` classes) on the run's **training set** (``Task.train_set()``; a task
with infinite data: :data:`INFINITE_EXAMPLES` examples drawn from its train stream's seed). Each chain is devinterp's
own ``sample_single_chain`` (its ``SGMCMC.sgld`` update, seeds ``init_seed + chain``, every chain on the same
shuffled minibatches), so an estimate equals devinterp's ``llc()`` on the same model, data and settings (tested).

* the reference loss ``L_n(w*)`` is averaged over ``num_init_loss_batches`` minibatches (default: one pass over
  the training set), as devinterp does, not taken from one noisy step;
* a chain's LLC averages its losses *after* burn-in (``num_burnin_steps``; devinterp's ``compute_llc`` averages
  every step; the two agree when burn-in is 0);
* each chain gets a diagnostic: ``diverged`` (a non-finite loss stopped it, or a loss after burn-in rose more than
  ``log(classes)`` -- a uniform guess's loss -- above the reference), ``below_reference`` (its mean loss is below
  the reference: a negative LLC, the checkpoint is not a local minimum at this temperature), ``not_flat`` (the
  means of the two halves of its draws differ by more than ``max(0.2 * excess, 4 standard errors)``) or
  ``converged``. Diverged and below-reference chains are **excluded** from ``llc`` and ``llc_std`` (the mean and
  the population standard deviation over the chains kept), and named in the checkpoint's ``reason``.

Settings (devinterp's recommendations)
--------------------------------------
:func:`calibrate` sweeps the step size ``lr`` (epsilon, :data:`LR_GRID`) and ``n_beta`` (``{1, 3, 10} x``
``n / log n``) on ONE checkpoint, the final one of model 0, with shorter settings (2 chains), and
chooses the **largest step size whose chains are all converged** (finite, above the reference, flat after burn-in)
at the default ``n_beta`` (else at the next, colder ``n_beta`` that has one; else the smallest step size at the
default, flagged).
The sweep and the choice go to ``llc_calibration.json``; every checkpoint of every model then uses the chosen
settings (one setting per run, so the values are comparable across epochs and models).

Files (``grokscope progress RUN --llc``; :mod:`grokscope.measures.cache` writes them)
------------------------------------------------------------------------------
* ``progress.parquet``: measures ``llc``, ``llc_std``, ``llc_init_loss`` (the reference loss) and ``llc_chains``
  (chains kept), ``freq`` 0; attrs ``llc_every``, ``llc_epochs``;
* ``llc.json``: the settings and data, and per model and checkpoint the status, reason and per-chain results;
* ``llc_calibration.json``: the sweep (each setting's LLC, chains' statuses and mean loss trace) and the choice.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..checks import ConfigError
from ..files import atomic_write, load
from ..fast.scored import forward_scored, scored_positions
from ..tasks import Examples
from ..tasks.base import generator
from ..training.losses import cross_entropy_float64
from ..training.run import Run

LLC_FILE = "llc.json"
CALIBRATION_FILE = "llc_calibration.json"
#: examples of the LLC's data set for a task with infinite data (drawn from the train stream's seed)
INFINITE_EXAMPLES = 2048
#: the calibration sweep's step sizes (epsilon) and multiples of the default n_beta (n / log n)
LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
NBETA_FACTORS = (1.0, 3.0, 10.0)  # the default first (the preferred one), then colder
MEASURES = ("llc", "llc_std", "llc_init_loss", "llc_chains")
INSTALL = "pip install 'grokscope[llc]'"

__all__ = ["Settings", "DEFAULT", "LLC_FILE", "CALIBRATION_FILE", "MEASURES", "llc_data", "estimate", "calibrate",
           "compute_llc", "default_nbeta", "diagnose", "load_llc", "load_calibration", "write_json", "devinterp", "Wrapped", "pack",
           "loss_fn"]


def devinterp():
    """devinterp's sampler module (``devinterp.slt.sampler``), or a one-line ConfigError naming the extra."""
    try:
        from devinterp.slt import sampler  # an optional extra
    except ImportError:
        raise ConfigError(f"the LLC needs devinterp: {INSTALL}") from None
    return sampler


@dataclass(frozen=True)
class Settings:
    """SGLD settings of the LLC (devinterp's names). ``batch_size`` is capped at the data set's size;
    ``nbeta`` None: ``n / log n`` of the data set's ``n`` examples (:func:`default_nbeta`);
    ``num_init_loss_batches`` None: one pass over the data (``n // batch_size`` minibatches)."""

    lr: float = 1e-4
    nbeta: float | None = None  # None: n / log n
    localization: float = 100.0
    num_chains: int = 4
    num_draws: int = 150
    num_burnin_steps: int = 50
    batch_size: int = 256
    init_seed: int = 100
    num_init_loss_batches: int | None = None

    def resolve(self, n: int) -> "Settings":
        """These settings for a data set of ``n`` examples (batch size, n_beta and init-loss batches filled in)."""
        bs = max(1, min(int(self.batch_size), int(n)))
        return replace(self, batch_size=bs, nbeta=float(default_nbeta(n) if self.nbeta is None else self.nbeta),
                       num_init_loss_batches=int(self.num_init_loss_batches or max(1, n // bs)))


#: the settings the sweep starts from (its step size and n_beta are the sweep's)
DEFAULT = Settings()


def default_nbeta(n: int) -> float:
    """The default inverse temperature ``n / log n`` (``beta = 1 / log n``: Watanabe's WBIC temperature, as in Lau
    et al. 2023; ``n`` <= 2: 2). (devinterp's own default, ``batch / log(batch)``, is far too hot for the
    mainline model: at p = 113 every step size down to 1e-5 left the basin in the sweep; docs/results/records/
    llc-speed.md.)"""
    return float(n / math.log(n)) if n > 2 else 2.0


# ---------------------------------------------------------------------- data and loss
class _Packed(torch.utils.data.Dataset):
    """Examples as devinterp's ``{"input_ids": ...}`` rows: tokens, targets and mask concatenated (``3 T``)."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i]}


class Wrapped(torch.nn.Module):
    """A model as devinterp sees it: ``forward(tokens, pos)`` the logits at the scored positions ``pos`` only
    (:func:`grokscope.fast.scored.forward_scored`, training's forward). (devinterp takes any module with a
    ``cfg.n_heads`` for a TransformerLens model, as grokscope's :class:`~grokscope.model.Transformer` would be.)"""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.net = model
        self.mcfg = model.cfg

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return forward_scored(dict(self.net.named_parameters()), tokens, pos, self.mcfg)


def pack(ex: Examples) -> torch.Tensor:
    """``(n, 3 T)`` int64: tokens, targets, mask of each example side by side."""
    return torch.cat([ex.tokens, ex.targets, ex.mask.long()], dim=1)


def loss_fn(classes: int, T: int):
    """devinterp's per-token loss ``(model, input_ids (B, 3T)) -> (B, 3T - 1)`` for a :class:`Wrapped` model: each
    example's mean cross-entropy over its scored tokens (float64 log-softmax over the first ``classes`` logits),
    repeated along the positions (so devinterp's mean over positions is the mean over examples)."""
    def fn(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
        tokens, targets, mask = ids[:, :T], ids[:, T:2 * T], ids[:, 2 * T:].bool()
        pos = scored_positions(mask)
        logits = model(tokens, pos)[..., :classes]
        per = cross_entropy_float64(logits, targets.gather(1, pos)).mean(1).float()
        return per[:, None].expand(-1, 3 * T - 1)
    return fn


def llc_data(run: Run, model: int = 0) -> tuple[Examples, int, str]:
    """The LLC's data of model ``model``: its training set (or, for infinite data, :data:`INFINITE_EXAMPLES`
    examples from the train stream's seed), the classes scored, and a description."""
    cfg = run.configs[model]
    task = cfg.make_task()
    ex = task.train_set()
    if ex is None:
        ex = task.draw(INFINITE_EXAMPLES, generator(task.data_seed, 0))
        what = f"{INFINITE_EXAMPLES} examples drawn from the task (infinite data; train-set seed)"
    else:
        what = f"the training set ({len(ex)} examples)"
    classes = cfg.p if task.pair_form else cfg.model_config.n_out
    return ex, int(classes), what


# ---------------------------------------------------------------------- one model
def _init_loss(model: torch.nn.Module, data: _Packed, fn, s: Settings) -> float:
    """The reference loss at the model's weights: the mean over ``num_init_loss_batches`` minibatches drawn as
    devinterp draws them (its shuffled, cycled loader seeded with ``init_seed``)."""
    g = torch.Generator().manual_seed(s.init_seed)
    loader = torch.utils.data.DataLoader(data, batch_size=s.batch_size, shuffle=True, generator=g, drop_last=True)
    batches, total = list(loader), 0.0
    model.train()
    with torch.no_grad():
        for i in range(s.num_init_loss_batches):
            total += float(fn(model, batches[i % len(batches)]["input_ids"]).double().mean())
    return total / s.num_init_loss_batches


def _chains(model: torch.nn.Module, data: _Packed, fn, s: Settings) -> np.ndarray:
    """``(chains, steps)`` minibatch losses of devinterp's SGLD chains (NaN after a chain that stopped)."""
    sampler = devinterp()
    from devinterp.optim import SGMCMC  # an optional extra

    steps = s.num_draws + s.num_burnin_steps
    out = np.full((s.num_chains, steps), np.nan)
    masks = {name: None for name, _ in model.named_parameters()}

    def micro(loss, input_ids, chain, step, micro_step):
        out[chain, step] = float(loss.double().mean())

    kw = dict(nbeta=s.nbeta, lr=s.lr, localization=s.localization, noise_level=1.0, weight_decay=0.0,
              bounding_box_size=None, save_metrics=False)
    # devinterp's per-chain bar is replaced by ours, and its gc.collect() before and after each chain (0.3 s each
    # with transformers imported; nothing to free on the CPU) skipped: both restored afterwards
    saved = sampler.trange, sampler._gc_and_empty_cache
    sampler.trange, sampler._gc_and_empty_cache = _silent_trange(sampler.trange), lambda: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Chain failed: Loss is NaN or Inf": the trace says so
            for c in range(s.num_chains):
                sampler.sample_single_chain(ref_model=model, dataset=data,
                                            evaluate=lambda m, b: (fn(m, b["input_ids"]), {}),
                                            param_masks=masks, num_draws=s.num_draws,
                                            num_burnin_steps=s.num_burnin_steps, sampling_method=SGMCMC.sgld,
                                            sampling_method_kwargs=kw, chain=c, seed=s.init_seed + c,
                                            dataloader_seed=s.init_seed, device="cpu", micro_callback=micro,
                                            batch_size=s.batch_size)
    finally:
        sampler.trange, sampler._gc_and_empty_cache = saved
    return out


def _silent_trange(trange):
    def silent(*a, **kw):
        return trange(*a, **{**kw, "disable": True})
    return silent


def diagnose(trace: np.ndarray, init_loss: float, burnin: int, classes: int) -> dict[str, Any]:
    """One chain's ``{"llc_excess", "mean_loss", "status", "reason"}`` from its loss trace (see the module)."""
    draws = trace[burnin:]
    if not np.isfinite(trace).all():
        bad = int(np.argmin(np.isfinite(trace)))
        return {"mean_loss": None, "excess": None, "status": "diverged",
                "reason": f"loss non-finite at step {bad} (the chain stopped)"}
    m = float(draws.mean())
    top, limit = float(draws.max()), init_loss + math.log(classes)
    if top > limit:
        return {"mean_loss": m, "excess": m - init_loss, "status": "diverged",
                "reason": f"loss blew up to {top:.4g} > reference {init_loss:.4g} + log({classes})"}
    if m < init_loss:
        return {"mean_loss": m, "excess": m - init_loss, "status": "below_reference",
                "reason": f"mean loss {m:.4g} below the reference {init_loss:.4g}"}
    h = len(draws) // 2
    m1, m2 = float(draws[:h].mean()), float(draws[h:].mean())
    se = float(draws.std()) * math.sqrt(2 / max(h, 1))
    tol = max(0.2 * (m - init_loss), 4 * se)
    if abs(m2 - m1) > tol:
        return {"mean_loss": m, "excess": m - init_loss, "status": "not_flat",
                "reason": f"draws' halves differ by {m2 - m1:.3g} (> {tol:.3g})"}
    return {"mean_loss": m, "excess": m - init_loss, "status": "converged", "reason": ""}


ORDER = ("diverged", "below_reference", "not_flat", "converged")


def estimate(model: torch.nn.Module, ex: Examples, classes: int, settings: Settings | None = None, *,
             trace: bool = False) -> dict[str, Any]:
    """The LLC of ``model`` on ``ex`` with ``settings`` (default :data:`DEFAULT`; see the module): ``{"llc",
    "llc_std", "init_loss", "chains_used", "status", "reason", "chains": [...], "settings"}``
    (``trace``: also the ``(chains, steps)`` loss traces)."""
    s = (DEFAULT if settings is None else settings).resolve(len(ex))
    data, fn = _Packed(pack(ex)), loss_fn(classes, ex.tokens.shape[1])
    model = Wrapped(model.float())
    init = _init_loss(model, data, fn, s)
    traces = _chains(model, data, fn, s)
    chains = []
    for t in traces:
        d = diagnose(t, init, s.num_burnin_steps, classes)
        d["llc"] = None if d["excess"] is None else s.nbeta * d["excess"]
        chains.append(d)
    kept = [c["llc"] for c in chains if c["status"] in ("converged", "not_flat")]
    worst = min((c["status"] for c in chains), key=ORDER.index)
    reasons = [f"chain {i} {c['status'].replace('_', ' ')}: {c['reason']}" for i, c in enumerate(chains)
               if c["status"] != "converged"]
    out = {"llc": float(np.mean(kept)) if kept else float("nan"), "llc_std": float(np.std(kept)) if kept else
           float("nan"), "init_loss": init, "chains_used": len(kept), "status": worst,
           "reason": "; ".join(reasons) + (" (excluded from the mean)" if len(kept) < len(chains) else ""),
           "chains": chains, "settings": asdict(s)}
    if trace:
        out["trace"] = traces
    return out


# ---------------------------------------------------------------------- the calibration sweep
def calibrate(model: torch.nn.Module, ex: Examples, classes: int, base: Settings | None = None, *,
              lrs: Sequence[float] | None = None, nbeta_factors: Sequence[float] | None = None, chains: int = 2,
              bar=None) -> dict[str, Any]:
    """The step-size x n_beta sweep on one model (see the module): ``{"rows": [...], "chosen": Settings dict,
    "stable": bool, "rule"}``; ``base`` (default :data:`DEFAULT`) with ``chains`` chains for each setting of
    ``lrs`` (default :data:`LR_GRID`) x ``nbeta_factors`` (default :data:`NBETA_FACTORS`). ``bar``: a tqdm bar
    advanced once per setting."""
    lrs = LR_GRID if lrs is None else lrs
    nbeta_factors = NBETA_FACTORS if nbeta_factors is None else nbeta_factors
    s0 = (DEFAULT if base is None else base).resolve(len(ex))
    nb0 = s0.nbeta
    rows = []
    for f in nbeta_factors:
        for lr in lrs:
            s = replace(s0, lr=float(lr), nbeta=float(nb0 * f), num_chains=chains)
            r = estimate(model, ex, classes, s, trace=True)
            t = r.pop("trace")
            rows.append({"lr": s.lr, "nbeta": s.nbeta, "nbeta_factor": float(f), "llc": r["llc"],
                         "llc_std": r["llc_std"], "status": r["status"], "reason": r["reason"],
                         "stable": all(c["status"] == "converged" for c in r["chains"]),
                         "init_loss": r["init_loss"], "mean_trace": _thin(_mean_trace(t))})
            if bar is not None:
                bar.update(1)
    chosen, stable = None, False
    for f in nbeta_factors:  # the default n_beta first
        ok = [r for r in rows if r["nbeta_factor"] == float(f) and r["stable"]]
        if ok:
            chosen, stable = max(ok, key=lambda r: r["lr"]), True
            break
    if chosen is None:
        chosen = min((r for r in rows if r["nbeta_factor"] == float(nbeta_factors[0])), key=lambda r: r["lr"])
    pick = replace(s0, lr=chosen["lr"], nbeta=chosen["nbeta"])
    return {"rows": rows, "chosen": asdict(pick), "stable": stable,
            "rule": "the largest step size whose chains all converged (finite, above the reference, flat after "
                    "burn-in), at the default n_beta (n / log n) if any, else at the next (colder) n_beta"
                    + ("" if stable else "; NONE was stable: the smallest step size at the default n_beta")}


def _mean_trace(t: np.ndarray) -> np.ndarray:
    """The mean over the chains at each step (NaN where every chain has stopped)."""
    ok = np.isfinite(t)
    n = ok.sum(0)
    return np.where(n > 0, np.where(ok, t, 0.0).sum(0) / np.maximum(n, 1), np.nan)


def _thin(trace: np.ndarray, n: int = 100) -> list[float | None]:
    """At most ``n`` points of a trace (block means), NaN as None (JSON)."""
    t = np.asarray(trace, dtype=float)
    k = max(1, int(math.ceil(len(t) / n)))
    m = [float(np.mean(t[i:i + k])) for i in range(0, len(t), k)]
    return [v if math.isfinite(v) else None for v in m]


# ---------------------------------------------------------------------- a run
def _select(all_epochs: list[int], every: int) -> list[int]:
    sel = all_epochs[::every]
    if all_epochs and sel[-1] != all_epochs[-1]:
        sel.append(all_epochs[-1])
    return sel


def compute_llc(run: Run, every: int = 1, *, settings: Settings | None = None, calibration: dict | None = None,
                epochs: Iterable[int] | None = None, progress: bool = True
                ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """The LLC of every model of ``run`` at every ``every``-th checkpoint (the last always included; or the
    ``epochs`` given): ``(rows, report, calibration)`` -- the tidy rows (model, epoch, measure, freq, value) of
    :data:`MEASURES`, the ``llc.json`` report and the ``llc_calibration.json`` sweep. ``settings``: use these
    (no sweep, calibration None); else ``calibration`` (a saved sweep) or a new sweep on model 0's final
    checkpoint. A tqdm bar over the sweep's settings and the checkpoints x models (``progress``)."""
    devinterp()  # the extra's one line before anything is computed
    from tqdm.auto import tqdm

    sel = sorted({int(e) for e in epochs}) if epochs is not None else _select(run.checkpoint_epochs, int(every))
    data = [llc_data(run, k) for k in range(run.K)]
    todo = [(e, k) for e in sel for k in range(run.K)]
    sweep = settings is None and calibration is None
    n_sweep = len(LR_GRID) * len(NBETA_FACTORS) if sweep else 0  # (read at call time: tests shrink them)
    with tqdm(total=n_sweep + len(todo), desc="LLC", unit="fit", disable=not progress, dynamic_ncols=True) as bar:
        if settings is None:
            if calibration is None:
                last = run.checkpoint_epochs[-1]
                run.require_finite(last, 0)
                ex, classes, _ = data[0]
                calibration = calibrate(run.model(last, 0), ex, classes, bar=bar)
                calibration.update({"model": 0, "epoch": last})
            settings = Settings(**calibration["chosen"])
        rows: list[dict[str, Any]] = []
        checkpoints = []
        for e, k in todo:
            ex, classes, _ = data[k]
            m = run.model(e, k)
            if not all(bool(torch.isfinite(p).all()) for p in m.parameters()):
                r = {"llc": float("nan"), "llc_std": float("nan"), "init_loss": float("nan"), "chains_used": 0,
                     "status": "diverged", "reason": "the checkpoint's weights are not finite (training diverged)",
                     "chains": []}
            else:
                r = estimate(m, ex, classes, settings)
            checkpoints.append({"model": k, "epoch": e, **{n: r[n] for n in ("llc", "llc_std", "init_loss",
                                                                             "chains_used", "status", "reason",
                                                                             "chains")}})
            for name, key in zip(MEASURES, ("llc", "llc_std", "init_loss", "chains_used")):
                rows.append({"model": k, "epoch": e, "measure": name, "freq": 0, "value": float(r[key])})
            bar.update(1)
    report = {"settings": asdict(settings), "every": int(every), "epochs": sel,
              "data": {str(k): d[2] for k, d in enumerate(data)}, "classes": {str(k): d[1] for k, d in enumerate(data)},
              "calibrated": calibration is not None, "checkpoints": checkpoints}
    return rows, _json_safe(report), None if calibration is None else _json_safe(calibration)


def _json_safe(x: Any) -> Any:
    """NaN and infinities as None (strict JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ---------------------------------------------------------------------- files
def write_json(path: Path, obj: dict[str, Any]) -> None:
    text = json.dumps(obj, indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _reader(what: str, key: str, run: Run):
    return lambda p: load(p, lambda f: json.loads(f.read_text()),
                          lambda d: None if isinstance(d, dict) and key in d else f"not {what} (no {key!r})",
                          hint=f"delete it, or `grokscope progress {run.path} --llc --recompute`")


def load_llc(run: Run) -> dict[str, Any]:
    """The run's ``llc.json`` (one line if damaged)."""
    return _reader("an LLC report", "checkpoints", run)(run.path / LLC_FILE)


def load_calibration(run: Run) -> dict[str, Any]:
    """The run's ``llc_calibration.json`` (one line if damaged)."""
    return _reader("an LLC calibration", "chosen", run)(run.path / CALIBRATION_FILE)
