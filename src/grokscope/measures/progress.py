"""Progress measures over training (paper §5.1, Fig. 7, Appendix C.1.5 Figs. 13-15, C.2 footnote 3).

Entry points::

    from grokscope.measures.progress import compute_progress, wide
    df = compute_progress(Run.load("runs/x"))  # tidy DataFrame: model, epoch, measure, freq, value
    wide(df, model=0)                          # one row per epoch, one column per measure

(``progress.parquet``, the saved table, is :mod:`grokscope.measures.cache`'s: ``load_or_compute_progress(run)``.)

Every measure is computed for every model of the run at every checkpoint (``every=n``: every n-th one, the
last always included), from the checkpoint's parameters, in chunks of checkpoints x models stacked on a
leading axis (``rows_per_chunk``), each chunk by :mod:`grokscope.measures.checkpoint_measures` (how the
measures are computed, and the Gini coefficient). By default as many chunks as torch has threads run side by
side (``workers``), one intra-op thread each. This module: which checkpoints and keys, the chunks, the tidy
table.

Key frequencies
---------------
Per model, from the run's *final* checkpoint (as the paper does): :func:`grokscope.fourier.keys.select_by_gap`
on the per-frequency shares of ``W_L = W_out @ W_U[:, :p]`` with the defaults of
:func:`grokscope.interp.analysis.key_frequencies` (:func:`grokscope.fourier.keys.wl_keys`; equal to ``key_frequencies(...).keys``).
``keys=`` overrides them: one list for every model, or ``{model: list}``. A model with no keys (its final
``W_L`` is not sparse, e.g. without weight decay) gets restricted logits = the constant only and excluded
logits = the full logits; the model-independent excluded loss does not need keys.

Measures (``measure`` column; losses are mean float64 cross-entropies, accuracies fractions)
------------------------------------------------------------------------------------------
``s = (a + b) mod p``. The ``cos/sin(w_k(a+b))`` components of the logits are their projections on the unit
directions of :func:`grokscope.fourier.sum_directions` over the full ``(a, b)`` grid, per output ``c``.

* ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``: the model's own logits (float32 forward as in
  training, cross-entropy in float64), on the model's train / test pairs.
* ``restricted_loss``, ``restricted_acc``: logits restricted to the constant plus the ``cos/sin(w_k(a+b))``
  components of the key frequencies, with the authors' bias correction (the constant is the mean logit over
  all pairs; :func:`grokscope.interp.ablations.restricted_logits`), on the **test** pairs;
  ``restricted_loss_all``, ``restricted_acc_all``: the same on all pairs (the authors' logged ``trig_loss``).
* ``excluded_loss``, ``excluded_acc``: those key components removed from the logits (everything else kept;
  :func:`grokscope.interp.ablations.excluded_logits`), on the **train** pairs.
* ``excluded_loss_k``, ``excluded_acc_k`` (one row per key, its frequency in the ``freq`` column): only that key
  frequency removed (Fig. 15), train pairs.
* ``excluded_loss_max``: the model-independent variant (footnote 3): the largest train excluded loss over
  the ``p // 2`` single-frequency removals ``k = 1 .. p // 2``; ``excluded_loss_max_freq``: that ``k``.
* ``gini_W_E``, ``gini_W_L``: the Gini coefficient (:func:`~grokscope.measures.checkpoint_measures.gini`) of the vector of per-frequency Fourier norms
  ``n_k``, ``k = 1 .. p // 2`` (the constant excluded): for ``W_E`` the transform of ``W_E[:p]`` (the number
  tokens; ``=`` excluded) along the token axis, ``n_k = sqrt(||coef cos k||^2 + ||coef sin k||^2)`` with the
  norms over ``d_model``; for ``W_L = W_out @ W_U[:, :p]`` (``(d_mlp, p)``) the transform along the output
  (logit) axis, norms over the neurons. (:func:`grokscope.fourier.freq_norms` entries ``1..p//2``.)
* ``sum_sq``: the sum of squares of all parameters (biases included, as the authors' ``sum_sq_weights``);
  ``sum_sq.<name>``: per parameter tensor (``W_E``, ``blocks.0.attn.W_Q``, ...).
* ``logit_coef_k`` (per key, ``freq``): the least-squares coefficient ``alpha_k`` of ``cos(w_k(a+b-c))`` in the logits over all
  pairs and outputs (Fig. 14; the regressors of different ``k`` are orthogonal, so it is a projection),
  ``logits ~ sum_k alpha_k cos(w_k(a+b-c))`` -- the same number as
  :func:`grokscope.interp.composition.composition`'s ``logit_alphas``. The authors' Fig. 14 normalises the regressor
  to unit norm; their coefficient is ``alpha_k * sqrt(p**3 / 2)``.

The frame's ``attrs`` (kept in the parquet file) hold ``keys`` (``{"0": [..], ...}``), ``every`` and the
checkpoint epochs used.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..fourier import basis as fr
from ..fourier.keys import check_keys, wl_keys
from ..training.run import Run
from .checkpoint_measures import ProgressData, batch_measures, weight_measures

ROWS_PER_CHUNK = 8  # checkpoints x models per chunk (~25 MB of float32 per row at p = 113)

__all__ = ["resolve_keys", "compute_progress", "wide", "label", "PER_FREQUENCY"]


# ====================================================================== key frequencies
def resolve_keys(run: Run, keys: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
                 epoch: int | None = None) -> dict[int, list[int]]:
    """Keys per model: ``keys`` if given (one list for all, or per model), else :func:`grokscope.fourier.keys.wl_keys`
    of each model's final checkpoint (or ``epoch``)."""
    p = run.configs[0].p
    out: dict[int, list[int]] = {}
    if keys is None:
        stacked = run.stacked_params(epoch)  # one read of the checkpoint for all models
    for k in range(run.K):
        if keys is None:
            ks = wl_keys(fr.wl_from_params({n: v[k] for n, v in stacked.items()}, run.configs[k].n_layers))
        elif isinstance(keys, Mapping):
            ks = keys.get(k, keys.get(str(k), []))
        else:
            ks = keys
        out[k] = check_keys(ks, p, f" for model {k}")
    return out


# ====================================================================== a run
def _select_epochs(all_epochs: list[int], every: int, epochs: Iterable[int] | None) -> list[int]:
    if epochs is not None:
        want = sorted({int(e) for e in epochs})
        missing = [e for e in want if e not in set(all_epochs)]
        if missing:
            raise ValueError(f"epochs={missing} have no checkpoint")
        return want
    if every < 1:
        raise ValueError(f"every={every} is invalid: must be >= 1")
    sel = all_epochs[::every]
    if all_epochs and sel[-1] != all_epochs[-1]:
        sel.append(all_epochs[-1])
    return sel


def compute_progress(run: Run, keys: Sequence[int] | Mapping[int, Sequence[int]] | None = None, every: int = 1, *,
                     epochs: Iterable[int] | None = None, rows_per_chunk: int = ROWS_PER_CHUNK,
                     dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                     block: int | None = None, workers: int | None = None, timings: dict | None = None,
                     progress: bool = False) -> pd.DataFrame:
    """The tidy progress table (columns ``model, epoch, measure, freq, value``; ``freq`` is the key frequency of
    the per-frequency measures, 0 for the others) of a :class:`grokscope.training.run.Run`.

    ``keys``: see :func:`resolve_keys` (default: each model's final checkpoint). ``every``: every n-th
    checkpoint (the last always included) or an explicit ``epochs`` list. ``dtype`` of the forward pass
    (float32, as in training; float64 for a reference). ``rows_per_chunk``: checkpoints x models per batched
    computation; ``block``: values of ``s`` per block of the forward pass (default: about 512 pairs).
    ``workers``: chunks computed side by side in that many threads, each with one intra-op thread (torch's
    setting is restored afterwards); default ``torch.get_num_threads()`` (the cores). Much better than
    intra-op threads here (many small ops); use ``workers=1`` when the other cores are busy. ``timings``: if a
    dict, filled with the seconds spent loading and computing (summed over workers) and in total. ``progress``:
    a bar on stderr over the checkpoints.
    """
    t_start = time.perf_counter()
    cfg = run.configs[0].model_config
    p, K = cfg.p, run.K
    dev = torch.device(device)
    sel = _select_epochs(run.checkpoint_epochs, every, epochs)
    if not sel:
        raise ValueError(f"run={str(run.path)!r} has no checkpoints")
    key_map = resolve_keys(run, keys)
    data = ProgressData.build([run.dataset(k) for k in range(K)], key_map, dev)
    per_chunk = max(1, rows_per_chunk // K)
    cols: dict[str, list] = {"model": [], "epoch": [], "measure": [], "freq": [], "value": []}
    t_load = t_comp = 0.0

    def chunk(eps: list[int]) -> tuple[dict[str, Tensor], np.ndarray, np.ndarray, float, float]:
        t0 = time.perf_counter()
        loaded = [run.stacked_params(e) for e in eps]
        params = {n: torch.cat([d[n] for d in loaded]).to(dev, dtype) for n in loaded[0]}
        mk = torch.arange(K, device=dev).repeat(len(eps))
        t1 = time.perf_counter()
        res = batch_measures(params, cfg, mk, data, block)
        res.update(weight_measures(params, cfg.n_layers))
        return res, mk.cpu().numpy(), np.repeat(np.asarray(eps, dtype=np.int64), K), t1 - t0, time.perf_counter() - t1

    chunks = [sel[i:i + per_chunk] for i in range(0, len(sel), per_chunk)]
    workers = max(1, min(int(torch.get_num_threads() if workers is None else workers), len(chunks)))
    if workers == 1:
        results = map(chunk, chunks)
        pool = None
    else:  # torch ops release the GIL: chunks run side by side, one intra-op thread each
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(workers)
        results = pool.map(chunk, chunks)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(sel), desc="progress measures", unit="checkpoint", dynamic_ncols=True)
    try:
        for res, mk_np, ep, tl, tc in results:
            _append(cols, res, mk_np, ep, data)
            t_load += tl
            t_comp += tc
            if bar is not None:
                bar.update(len(ep) // K)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown()
            torch.set_num_threads(n_threads)
    df = pd.DataFrame({"model": np.concatenate(cols["model"]).astype("int32"),
                       "epoch": np.concatenate(cols["epoch"]).astype("int64"),
                       "measure": np.concatenate(cols["measure"]).astype(object),
                       "freq": np.concatenate(cols["freq"]).astype("int32"),
                       "value": np.concatenate(cols["value"]).astype("float64")})
    df = df.sort_values(["model", "epoch"], kind="stable", ignore_index=True)
    df.attrs = {"keys": {str(k): v for k, v in key_map.items()}, "every": int(every), "epochs": [int(e) for e in sel],
                "forward_dtype": str(dtype).replace("torch.", ""), "p": int(p)}
    if timings is not None:
        timings.update({"load_s": t_load, "compute_s": t_comp, "total_s": time.perf_counter() - t_start,
                        "checkpoints": len(sel), "models": K})
    return df


_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "restricted_loss", "restricted_acc",
            "restricted_loss_all", "restricted_acc_all", "excluded_loss", "excluded_acc", "excluded_loss_max",
            "excluded_loss_max_freq", "gini_W_E", "gini_W_L", "sum_sq")


def _append(cols: dict[str, list], res: dict[str, Tensor], mk: np.ndarray, ep: np.ndarray, data: ProgressData) -> None:
    """Move one chunk's results into the tidy column lists (one block per measure)."""
    M = len(mk)

    def put(name: str, values: np.ndarray, rows: np.ndarray | None = None, freq: int = 0) -> None:
        r = np.arange(M) if rows is None else rows
        cols["model"].append(mk[r])
        cols["epoch"].append(ep[r])
        cols["measure"].append(np.full(len(r), name, dtype=object))
        cols["freq"].append(np.full(len(r), freq, dtype=np.int32))
        cols["value"].append(values[r])

    for name in _SCALARS:
        put(name, res[name].cpu().numpy())
    for name in sorted(n for n in res if n.startswith("sum_sq.")):
        put(name, res[name].cpu().numpy())
    pkl, pka = res["per_key_loss"].cpu().numpy(), res["per_key_acc"].cpu().numpy()
    coef = res["logit_coef"].cpu().numpy()
    for k in sorted(set(mk.tolist())):
        rows = np.nonzero(mk == k)[0]
        for j, f in enumerate(data.keys.get(k, [])):
            put("excluded_loss_k", pkl[:, j], rows, f)
            put("excluded_acc_k", pka[:, j], rows, f)
        for f in data.keys.get(k, []):
            put("logit_coef_k", coef[:, f - 1], rows, f)


# ====================================================================== the table
PER_FREQUENCY = ("excluded_loss_k", "excluded_acc_k", "logit_coef_k")


def label(measure: str, freq: int) -> str:
    """Column name of a measure in :func:`wide`: the measure, with its frequency appended when it has one
    (``excluded_loss_k`` of ``freq`` 3 -> ``excluded_loss_k3``)."""
    return f"{measure}{int(freq)}" if freq else measure


def wide(df: pd.DataFrame, model: int | None = None) -> pd.DataFrame:
    """Pivot the tidy table: index ``epoch`` (one model) or ``(model, epoch)``; one column per measure and
    frequency (:func:`label`), in the order they first appear. (Tables saved before the ``freq`` column
    existed had the frequency in the measure name already.)"""
    if model is not None:
        df = df[df["model"] == model]
    if "freq" in df.columns:
        df = df.assign(measure=[label(m, f) for m, f in zip(df["measure"], df["freq"])])
    order = list(dict.fromkeys(df["measure"]))
    index = "epoch" if model is not None else ["model", "epoch"]
    out = df.pivot(index=index, columns="measure", values="value").sort_index()
    out = out.reindex(columns=order)
    out.columns.name = None
    return out
