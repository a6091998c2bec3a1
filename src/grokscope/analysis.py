"""Reverse-engineer a trained modular-addition transformer (paper §4, Appendices A.1, C.1).

Entry points::

    from grokscope.analysis import analyze, analysis_from_run, analysis_from_authors
    res = analyze(model, dataset)          # -> Analysis; res.to_dict() is JSON-serialisable
    res = analysis_from_run("runs/x", epoch=None, model=0)
    res = analysis_from_authors("../shared/reference/low_precision_mod_addition.pth", seed=1, frac_train=0.3)

Each part runs on its own from the activations collected once by :func:`collect`::

    acts = collect(model, dataset)
    kf = key_frequencies(acts)              # which frequencies, by which rule (see below)
    periodicity(acts, kf.keys)              # evidence 1 (§4.1)
    composition(acts, kf.keys)              # evidence 2 (§4.2, Table 1)
    neurons(acts, kf.keys)                  # evidence 3 (§4.3, C.1.2-C.1.3, Table 2)
    ablations(acts, kf.keys)                # evidence 4 (§4.4, A.1)

Design
------
* One forward pass of the model over all ``p * p`` inputs, with :func:`grokscope.hooks.run_with_cache`,
  records what the analysis needs at the ``=`` position (2). Everything after that is float64.
* Interventions on the model are *patches* of hook points at position 2 (``blocks.0.attn.hook_pattern``,
  ``blocks.0.mlp.hook_post``, ``blocks.0.hook_resid_post``). They are evaluated either by running the model
  under the scoped :func:`grokscope.hooks.hooks` (``method="hooks"``: :func:`run_patched`) or, by default, by
  recomputing the one-layer model's output downstream of the patched point in float64 from the cached
  activations (``method="fast"``: :func:`tail_logits`, and for MLP-activation patches closed forms through
  ``W_L`` that use their low rank / few Fourier terms). The two agree to float64 rounding (tested); the fast
  path never re-runs the MLP on positions 0 and 1, whose outputs do not reach the answer.
* Ablations of the logits themselves (restricted / excluded loss, per-frequency ablation, the
  ``cos(w_k(a+b-c))`` fit) act on the ``(p*p, p)`` logit table directly.
* Losses are the mean float64 cross-entropy of ``logits[:, -1, :p]``
  (:func:`grokscope.training.cross_entropy_float64`); "before" in every ablation is the float64 recomputation
  of the unpatched model (equal to the model's own loss to ~1e-6 relative; that one is ``Analysis.model_metrics``).

The key-frequency rule (:func:`select_by_gap`)
----------------------------------------------
Frequencies ``k = 1 .. p // 2`` are ranked by their share of the non-constant squared Fourier norm of
``W_L = W_out @ W_U[:, :p]`` (transform along the logit axis, norm over neurons). The keys are the top ``n``,
where ``n`` is the cut with the largest ratio between consecutive ranked shares (the largest multiplicative
gap), among cuts with ``n <= p // 4`` whose last kept share is at least ``floor_ratio = 10`` times the median
share. If that largest gap is below ``min_gap = 3``, the spectrum is not sparse and no keys are returned
(an untrained model gives none rather than noise frequencies). The same rule is applied to the Fourier norms
of ``W_E[:p]`` (transform along the token axis) and to the cluster sizes of the neurons' best frequencies (counts + 1),
and all three sets are reported; the analysis uses the ``W_L`` set (as the paper's Appendix C.2 does).
On the paper's mainline ``W_E`` carries one extra, unused frequency, so ``W_L``'s set is expected to be a
subset of ``W_E``'s and equal to the neurons'.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import fourier as fr
from .hooks import hooks, run_with_cache
from .training import cross_entropy_float64

if TYPE_CHECKING:
    from jaxtyping import Float, Int  # noqa: F401

    from .model import Transformer
    from .tasks import Dataset

DTYPE = torch.float64
POS = 2  # the '=' position, where the answer is read

HOOK_PATTERN = "blocks.0.attn.hook_pattern"
HOOK_POST = "blocks.0.mlp.hook_post"
HOOK_RESID_POST = "blocks.0.hook_resid_post"
PATCHABLE = (HOOK_PATTERN, HOOK_POST, HOOK_RESID_POST)

__all__ = [
    "Activations", "collect", "tail_logits", "run_patched", "patch_hooks", "Metrics", "metrics", "split_masks",
    "select_by_gap", "NeuronSpectra", "neuron_spectra", "KeyFrequencies", "key_frequencies", "Periodicity",
    "periodicity",
    "DirectionFit", "Composition", "composition", "HeadFit", "Neurons", "neurons", "head_fits", "Ablation",
    "FrequencyAblation", "Ablations", "ablations", "restricted_logits", "excluded_logits", "frequency_ablation",
    "Analysis", "analyze", "analysis_from_run", "analysis_from_authors", "model_and_dataset_from_run",
    "model_and_dataset_from_authors",
]


# ====================================================================== JSON helpers
def _num(x: Any) -> Any:
    """float/int/None (NaN and inf -> None) for JSON."""
    if isinstance(x, Tensor):
        x = x.item()
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(x: Any) -> Any:
    if isinstance(x, Tensor):
        return _jsonable(x.detach().cpu().tolist())
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, (float, int, bool)):
        return _num(x)
    return x


class _Result:
    """``to_dict()`` for the result dataclasses: every field except those in ``_arrays`` (large tensors)."""

    _arrays: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in self._arrays}


# ====================================================================== activations at the '=' position
@dataclass
class Activations:
    """What the analysis needs from one forward pass over all ``p * p`` pairs (a-major), float64.

    ``*2`` tensors are at the ``=`` position. Weights are copied in float64; ``W_Up = W_U[:, :p]``,
    ``W_L = W_out @ W_Up`` (our layouts: ``(d_mlp, p)``).
    """

    p: int
    labels: "Int[Tensor, 'N']"
    train_idx: "Int[Tensor, 'ntr']"
    test_idx: "Int[Tensor, 'nte']"
    a: "Int[Tensor, 'N']"
    b: "Int[Tensor, 'N']"
    resid_pre2: "Float[Tensor, 'N d']"
    v: "Float[Tensor, 'N 3 H e']"
    scores2: "Float[Tensor, 'N H 3']"
    pattern2: "Float[Tensor, 'N H 3']"
    resid_mid2: "Float[Tensor, 'N d']"
    post2: "Float[Tensor, 'N m']"
    model_logits: "Float[Tensor, 'N p']"
    W_E: "Float[Tensor, 'V d']"
    W_O: "Float[Tensor, 'H e d']"
    W_in: "Float[Tensor, 'd m']"
    b_in: "Float[Tensor, 'm']"
    W_out: "Float[Tensor, 'm d']"
    b_out: "Float[Tensor, 'd']"
    W_Up: "Float[Tensor, 'd p']"
    act: str
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def W_L(self) -> "Float[Tensor, 'm p']":
        if "W_L" not in self._cache:
            self._cache["W_L"] = self.W_out @ self.W_Up
        return self._cache["W_L"]

    @property
    def n_heads(self) -> int:
        return self.pattern2.shape[1]

    @property
    def d_mlp(self) -> int:
        return self.post2.shape[1]

    @property
    def s(self) -> "Int[Tensor, 'N']":
        """``(a + b) mod p`` per pair."""
        return (self.a + self.b).remainder(self.p)

    @property
    def resid_logits(self) -> "Float[Tensor, 'N p']":
        """Logits contributed by everything but the MLP neurons: ``(resid_mid + b_out) @ W_U[:, :p]``."""
        if "resid_logits" not in self._cache:
            self._cache["resid_logits"] = (self.resid_mid2 + self.b_out) @ self.W_Up
        return self._cache["resid_logits"]

    @property
    def logits(self) -> "Float[Tensor, 'N p']":
        """The unpatched model's answer logits recomputed in float64 (the 'before' of every ablation)."""
        if "logits" not in self._cache:
            self._cache["logits"] = self.resid_logits + self.post2 @ self.W_L
        return self._cache["logits"]

    def mlp(self, resid_mid2: Tensor) -> Tensor:
        pre = resid_mid2 @ self.W_in + self.b_in
        return F.relu(pre) if self.act == "relu" else F.gelu(pre)


def _check_model(model: "Transformer") -> None:
    if model.cfg.n_layers != 1:
        raise ValueError(f"the analysis is for one-layer models; this one has n_layers={model.cfg.n_layers}")
    if model.cfg.n_ctx != 3:
        raise ValueError(f"the analysis expects inputs 'a b =' (n_ctx=3), got n_ctx={model.cfg.n_ctx}")


@torch.no_grad()
def collect(model: "Transformer", dataset: "Dataset") -> Activations:
    """Run ``model`` once over ``dataset.tokens`` (all ``p * p`` pairs) with ``run_with_cache``."""
    _check_model(model)
    p = dataset.p
    if model.cfg.p != p:
        raise ValueError(f"model has p={model.cfg.p} but the dataset has p={p}")
    if dataset.tokens.shape[0] != p * p:
        raise ValueError("the dataset must hold all p*p pairs (a-major), as grokscope.tasks.make_dataset builds")
    was_training = model.training
    model.eval()
    names = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_v", "blocks.0.attn.hook_attn_scores", HOOK_PATTERN,
             "blocks.0.hook_resid_mid", HOOK_POST]
    dev = next(model.parameters()).device
    try:
        logits, cache = run_with_cache(model, dataset.tokens.to(dev), names)
    finally:
        model.train(was_training)
    d = lambda t: t.detach().to(DTYPE)  # noqa: E731
    blk = model.blocks[0]
    return Activations(
        p=p, labels=dataset.labels.to(dev), train_idx=dataset.train_idx.to(dev), test_idx=dataset.test_idx.to(dev),
        a=dataset.tokens[:, 0].to(dev), b=dataset.tokens[:, 1].to(dev),
        resid_pre2=d(cache["blocks.0.hook_resid_pre"][:, POS]), v=d(cache["blocks.0.attn.hook_v"]),
        scores2=d(cache["blocks.0.attn.hook_attn_scores"][:, :, POS]), pattern2=d(cache[HOOK_PATTERN][:, :, POS]),
        resid_mid2=d(cache["blocks.0.hook_resid_mid"][:, POS]), post2=d(cache[HOOK_POST][:, POS]),
        model_logits=d(logits[:, -1, :p]), W_E=d(model.W_E), W_O=d(blk.attn.W_O), W_in=d(blk.mlp.W_in),
        b_in=d(blk.mlp.b_in), W_out=d(blk.mlp.W_out), b_out=d(blk.mlp.b_out), W_Up=d(model.W_U[:, :p]),
        act=model.cfg.act)


# ====================================================================== patches: fast tail and hooks
def tail_logits(acts: Activations, patches: dict[str, Tensor] | None = None) -> "Float[Tensor, 'N p']":
    """Answer logits with hook points replaced at position 2, recomputed downstream in float64.

    ``patches`` maps a hook name in :data:`PATCHABLE` to its new value at position 2: the pattern row of the
    ``=`` query ``(N, H, 3)``, the MLP activations ``(N, d_mlp)``, or ``resid_post`` ``(N, d_model)``.
    """
    patches = dict(patches or {})
    unknown = set(patches) - set(PATCHABLE)
    if unknown:
        raise KeyError(f"cannot patch {sorted(unknown)}; patchable: {', '.join(PATCHABLE)}")
    if HOOK_RESID_POST in patches:
        return patches[HOOK_RESID_POST].to(DTYPE) @ acts.W_Up
    if HOOK_PATTERN in patches:
        z = torch.einsum("nhk,nkhe->nhe", patches[HOOK_PATTERN].to(DTYPE), acts.v)
        resid_mid = acts.resid_pre2 + torch.einsum("nhe,hed->nd", z, acts.W_O)
        post = patches[HOOK_POST].to(DTYPE) if HOOK_POST in patches else acts.mlp(resid_mid)
        return (resid_mid + acts.b_out) @ acts.W_Up + post @ acts.W_L
    if HOOK_POST in patches:
        return acts.resid_logits + patches[HOOK_POST].to(DTYPE) @ acts.W_L
    return acts.logits


def patch_hooks(patches: dict[str, Tensor], pos: int = POS) -> list[tuple[str, Any]]:
    """Hook functions for :func:`grokscope.hooks.hooks` that write ``patches`` (see :func:`tail_logits`) at ``pos``."""
    out = []
    for name, value in patches.items():
        if name.endswith("hook_pattern"):
            def fn(x, hook, value=value):
                x = x.clone()
                x[:, :, pos, : value.shape[-1]] = value.to(x.dtype)
                return x
        else:
            def fn(x, hook, value=value):
                x = x.clone()
                x[:, pos] = value.to(x.dtype)
                return x
        out.append((name, fn))
    return out


@torch.no_grad()
def run_patched(model: "Transformer", tokens: Tensor, patches: dict[str, Tensor] | None = None) -> Tensor:
    """Answer logits ``(N, p)`` (float64) of ``model`` run on ``tokens`` under :func:`patch_hooks`."""
    with hooks(model, patch_hooks(patches or {})):
        return model(tokens)[:, -1, : model.cfg.p].to(DTYPE)


# ====================================================================== metrics
@dataclass
class Metrics(_Result):
    """Mean float64 cross-entropy and accuracy on the train pairs, the test pairs and all pairs."""

    loss_train: float
    loss_test: float
    loss_all: float
    acc_train: float
    acc_test: float
    acc_all: float

    @classmethod
    def from_per_example(cls, loss: Tensor, correct: Tensor, masks: Tensor) -> "Metrics":
        """``masks (N, 3)``: 0/1 membership of the train pairs, the test pairs and all pairs (:func:`split_masks`)."""
        v = (torch.stack([loss.to(DTYPE), correct.to(DTYPE)]) @ masks) / masks.sum(0)  # (2, 3); 0/0 -> NaN
        (lt, le, la), (at, ae, aa) = v.tolist()
        return cls(lt, le, la, at, ae, aa)


def split_masks(acts: Activations) -> Tensor:
    """``(N, 3)`` float 0/1 masks of the train pairs, the test pairs and all pairs."""
    if "split_masks" not in acts._cache:
        W = torch.zeros(acts.labels.shape[0], 3, dtype=DTYPE, device=acts.labels.device)
        W[acts.train_idx, 0] = 1.0
        W[acts.test_idx, 1] = 1.0
        W[:, 2] = 1.0
        acts._cache["split_masks"] = W
    return acts._cache["split_masks"]


def metrics(logits: Tensor, acts: Activations) -> Metrics:
    """:class:`Metrics` of answer logits ``(N, p)`` for the pairs and split of ``acts``."""
    loss = cross_entropy_float64(logits, acts.labels)
    return Metrics.from_per_example(loss, logits.argmax(-1) == acts.labels, split_masks(acts))


def _metrics_s_table(table: Tensor, acts: Activations) -> Metrics:
    """Metrics of logits that depend on the pair only through ``s = (a + b) mod p``: ``table (p, p)``."""
    logp = torch.log_softmax(table.to(DTYPE), dim=-1)
    loss = -logp[acts.s, acts.labels]
    correct = table.argmax(-1)[acts.s] == acts.labels
    return Metrics.from_per_example(loss, correct, split_masks(acts))


# ====================================================================== key-frequency rule
def select_by_gap(values: Tensor, *, min_gap: float = 3.0, floor_ratio: float = 10.0, max_keys: int | None = None,
                  smooth: float = 0.0) -> list[int]:
    """Frequencies (1-based: entry ``i`` is frequency ``i + 1``) kept by the largest-gap rule.

    Rank ``values`` (>= 0) in decreasing order, ``v_1 >= v_2 >= ...``; for each cut ``n`` (``1 <= n <= max_keys``,
    default ``len // 2``, and ``v_n >= floor_ratio * median``) take ``r_n = (v_n + smooth) / (v_{n+1} + smooth)``
    (denominators clamped at ``1e-12 * v_1``); keep the top ``n`` at the largest ``r_n``, or nothing if that is
    below ``min_gap``. Returned sorted ascending.
    """
    v = values.detach().to(DTYPE).cpu()
    K = v.shape[0]
    if K == 0 or float(v.max()) <= 0:
        return []
    if K == 1:
        return [1]
    order = torch.argsort(v, descending=True, stable=True)
    vs = v[order] + smooth
    n_max = min(max_keys or max(1, K // 2), K - 1)
    med = float(v.median())
    ratios = vs[:-1] / vs[1:].clamp_min(1e-12 * float(vs[0]))
    ns = torch.arange(1, K)
    ok = (ns <= n_max) & (v[order][:-1] >= floor_ratio * med) & (v[order][:-1] > 0)
    if not bool(ok.any()):
        return []
    ratios = torch.where(ok, ratios, torch.full_like(ratios, -1.0))
    n = int(torch.argmax(ratios)) + 1
    if float(ratios[n - 1]) < min_gap:
        return []
    return sorted(int(i) + 1 for i in order[:n])


def _gap(values: Tensor, keys: Sequence[int]) -> float:
    """Weakest key value over strongest non-key value (inf if every other value is 0)."""
    if not keys:
        return float("nan")
    v = values.to(DTYPE).cpu()
    mask = torch.zeros(v.shape[0], dtype=torch.bool)
    mask[torch.tensor(keys) - 1] = True
    rest = v[~mask]
    if rest.numel() == 0 or float(rest.max()) <= 0:
        return float("inf")
    return float(v[mask].min() / rest.max())


# ====================================================================== neuron spectra (shared by several parts)
@dataclass
class NeuronSpectra:
    """2-D Fourier structure of the centred MLP activations at ``=`` over the ``(a, b)`` grid.

    ``blocks[k-1, :, :, n]``: the 3x3 block of frequency ``k`` of neuron ``n`` (rows const/cos k/sin k of ``a``,
    columns of ``b``; the const x const entry is 0 since the activations are centred); ``energy[n]`` the total
    centred sum of squares; ``fve[k-1, n]`` the block's share of it -- the FVE of the best degree-2
    polynomial in ``cos/sin w_k a``, ``cos/sin w_k b`` (terms 1, the 4 linear ones and the 4 products).
    """

    mean: "Float[Tensor, 'm']"
    energy: "Float[Tensor, 'm']"
    blocks: "Float[Tensor, 'K 3 3 m']"
    fve: "Float[Tensor, 'K m']"
    best_freq: "Int[Tensor, 'm']"
    best_fve: "Float[Tensor, 'm']"
    alive: "Tensor"  # bool (m,): neurons whose activation varies over the inputs


def _blocks_from_acts(X: Tensor, p: int) -> Tensor:
    """All 3x3 frequency blocks of the 2-D transform of ``X (p*p, m)`` without the cross-frequency terms:
    one transform over ``a`` (a ``(p, p) @ (p, p*m)`` matmul), then only the needed columns over ``b``."""
    m = X.shape[1]
    B = fr.fourier_basis(p, X.device)
    K = p // 2
    T = (B @ X.reshape(p, p * m)).reshape(p, p, m)  # (i over a, b, m)
    # row 0 (const over a): every column j
    row0 = B @ T[0]  # (j, m)
    # rows i >= 1: columns const, cos g(i), sin g(i) where g(i) is the frequency of row i
    Bp = torch.cat([B, torch.zeros(1, p, dtype=DTYPE, device=X.device)])
    g = (torch.arange(1, p, device=X.device) + 1) // 2  # frequency of rows 1..p-1
    cols = torch.stack([torch.zeros_like(g), 2 * g - 1, 2 * g], 1)  # (p-1, 3); 2g == p -> pad row
    part = torch.bmm(Bp[cols], T[1:])  # (p-1, 3, p_b) @ (p-1, p_b, m) -> (p-1, 3, m)
    blocks = torch.zeros(K, 3, 3, m, dtype=DTYPE, device=X.device)
    k = torch.arange(1, K + 1, device=X.device)
    blocks[:, 0, 0] = row0[0]
    blocks[:, 0, 1] = row0[2 * k - 1]
    has_sin = 2 * k < p
    blocks[has_sin, 0, 2] = row0[2 * k[has_sin]]
    blocks[:, 1] = part[2 * k - 2]  # row cos k = 2k-1 -> part index 2k-2
    blocks[has_sin, 2] = part[2 * k[has_sin] - 1]
    return blocks


def neuron_spectra(acts: Activations) -> NeuronSpectra:
    """:class:`NeuronSpectra` of ``blocks.0.mlp.hook_post`` at ``=`` (cached on ``acts``)."""
    if "neuron_spectra" in acts._cache:
        return acts._cache["neuron_spectra"]
    X = acts.post2
    mean = X.mean(0)
    Xc = X - mean
    energy = Xc.pow(2).sum(0)
    blocks = _blocks_from_acts(Xc, acts.p)
    alive = energy > 1e-20 * max(float(energy.max()), 1e-300)
    fve_ = blocks.pow(2).sum((1, 2)) / energy.clamp_min(1e-300)
    fve_ = torch.where(alive[None], fve_, torch.zeros_like(fve_))
    best_fve, best = fve_.max(0)
    res = NeuronSpectra(mean, energy, blocks, fve_, best + 1, best_fve, alive)
    acts._cache["neuron_spectra"] = res
    return res


# ====================================================================== key frequencies
@dataclass
class KeyFrequencies(_Result):
    """The key frequencies (from ``W_L``) and the two cross-checks, with the rule that chose them."""

    keys: list[int]
    rule: str
    wl_keys: list[int]
    we_keys: list[int]
    neuron_keys: list[int]
    wl_shares: "Float[Tensor, 'K']"  # share of non-constant ||W_L||^2 per frequency k = 1..K
    we_shares: "Float[Tensor, 'K']"
    neuron_counts: "Int[Tensor, 'K']"  # number of (live) neurons whose best frequency is k
    wl_gap: float  # weakest key share / strongest non-key share in W_L
    we_gap: float
    consistent: bool  # wl_keys == neuron_keys and wl_keys is a subset of we_keys

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["neuron_counts"] = {int(k) + 1: int(c) for k, c in enumerate(self.neuron_counts.tolist()) if c}
        return d


RULE = ("largest multiplicative gap in the ranked per-frequency shares of the non-constant squared Fourier norm "
        "of W_L = W_out @ W_U[:, :p] (along the logit axis), among cuts of at most p//4 frequencies whose last kept "
        "share is >= {floor_ratio:g} x the median share; none if the gap is < {min_gap:g}. Cross-checks: the same "
        "rule on W_E[:p] (along the token axis) and on the neurons' best-frequency cluster sizes (+1).")


def key_frequencies(acts: Activations, *, min_gap: float = 3.0, floor_ratio: float = 10.0,
                    max_keys: int | None = None) -> KeyFrequencies:
    """Key frequencies by :func:`select_by_gap` on ``W_L`` (see the module docstring), with cross-checks."""
    p = acts.p
    max_keys = max_keys or max(1, p // 4)
    kw = dict(min_gap=min_gap, floor_ratio=floor_ratio, max_keys=max_keys)
    wl_shares = fr.freq_shares(fr.freq_norms(fr.fft1d(acts.W_L, dim=1), dim=1))
    we_shares = fr.freq_shares(fr.freq_norms(fr.fft1d(acts.W_E[:p], dim=0), dim=0))
    ns = neuron_spectra(acts)
    counts = torch.bincount(ns.best_freq[ns.alive].cpu() - 1, minlength=p // 2)
    wl = select_by_gap(wl_shares, **kw)
    we = select_by_gap(we_shares, **kw)
    nk = select_by_gap(counts.to(DTYPE), smooth=1.0, **kw)
    return KeyFrequencies(
        keys=wl, rule=RULE.format(floor_ratio=floor_ratio, min_gap=min_gap), wl_keys=wl, we_keys=we, neuron_keys=nk,
        wl_shares=wl_shares, we_shares=we_shares, neuron_counts=counts, wl_gap=_gap(wl_shares, wl),
        we_gap=_gap(we_shares, we), consistent=bool(wl) and wl == nk and set(wl) <= set(we))


def _keys(acts: Activations, keys: Sequence[int] | None) -> list[int]:
    if keys is None:
        keys = key_frequencies(acts).keys
    keys = sorted(int(k) for k in keys)
    bad = [k for k in keys if not 1 <= k <= acts.p // 2]
    if bad:
        raise ValueError(f"key frequencies {bad} are invalid: must be in 1..{acts.p // 2}")
    return keys


def _key_mask(p: int, keys: Sequence[int], device=None) -> Tensor:
    m = torch.zeros(p // 2, dtype=torch.bool, device=device)
    if keys:
        m[torch.tensor(list(keys), device=device) - 1] = True
    return m


# ====================================================================== evidence 1: periodicity
def _top_components(spec: Tensor, names: list[str], n: int) -> list[dict[str, Any]]:
    """Largest-magnitude entries of a 2-D ``(p, p)`` map, as ``{"a": name, "b": name, "value": v}`` (signed)."""
    p = spec.shape[0]
    flat = spec.reshape(-1)
    _, idx = flat.abs().topk(min(n, spec.numel()))
    return [{"a": names[int(i) // p], "b": names[int(i) % p], "value": _num(flat[i])} for i in idx]


def _key_block_share(blocks: Tensor, keys: Sequence[int], total: Tensor) -> Tensor:
    """Share of ``total`` energy in the 3x3 blocks of ``keys`` (``blocks (K, 3, 3, ...)``), per trailing index."""
    if not keys:
        return torch.zeros_like(total)
    kb = blocks[torch.tensor(list(keys), device=blocks.device) - 1].pow(2)
    kb[:, 0, 0] = 0  # the constant is not a key term
    return kb.sum((0, 1, 2)) / total.clamp_min(1e-300)


@dataclass
class Periodicity(_Result):
    """Evidence 1 (§4.1): Fourier structure of the embeddings, attention, neurons and logits.

    Norm vectors of length ``p // 2 + 1`` have the constant at index 0 and frequency ``k`` at index ``k``.
    ``attn_to_a[h]``: the attention from ``=`` to ``a`` over the ``(a, b)`` grid; ``attn_spectrum`` its 2-D
    coefficient magnitudes; ``logit_spectrum[i, j]``: the norm over the output ``c`` of the 2-D coefficients of
    the logits (centred over ``c``); ``*_top``: the largest components; ``*_key_share``: the share of the
    non-constant energy in key-frequency terms (the 3x3 blocks for attention and neurons, the
    ``{cos,sin} w_k a x {cos,sin} w_k b`` 2x2 blocks for the logits -- the paper's "20 components").

    Appendix C.1.3 (Figs 10, 11): ``attn_C_fourier[h]`` are the Fourier coefficients (along ``a``, basis as
    :func:`grokscope.fourier.basis_names`) of ``C_h[a]``, head ``h``'s attention score from ``=`` to the token
    ``a`` at position 0 (so the pattern ``= -> a`` is ``sigmoid(C_h[a] - C_h[b])`` when ``= -> =`` is
    negligible); ``ov_fourier_norms[h]``: the norm over ``d_model`` of each Fourier component (along ``a``) of
    the OV output ``W_O^h W_V^h x^(0)`` of position 0.
    """

    _arrays = ("attn_to_a", "attn_spectrum", "neuron_acts", "logit_spectrum", "attn_C_fourier", "ov_fourier_norms")

    keys: list[int]
    we_freq_norms: "Float[Tensor, 'K1']"
    wl_freq_norms: "Float[Tensor, 'K1']"
    attn_to_a: "Float[Tensor, 'H p p']"
    attn_spectrum: "Float[Tensor, 'H p p']"
    attn_top: list[list[dict[str, Any]]]
    attn_key_share: list[float]
    attn_best_freq: list[int]  # the frequency whose 3x3 block holds most of each head's variance
    neuron_acts: "Float[Tensor, 'p p m']"  # blocks.0.mlp.hook_post at '=' over the (a, b) grid
    neuron_key_share: float  # share of all centred neuron variance in key-frequency 3x3 blocks
    logit_spectrum: "Float[Tensor, 'p p']"
    logit_top: list[dict[str, Any]]
    logit_key_share: float
    attn_C_fourier: "Float[Tensor, 'H p']"
    ov_fourier_norms: "Float[Tensor, 'H p']"


def periodicity(acts: Activations, keys: Sequence[int] | None = None, n_top: int = 8) -> Periodicity:
    """Evidence 1: ``W_E``/``W_L`` frequency norms, attention ``= -> a`` per head and its 2-D spectrum, neuron
    activations' key-frequency share, 2-D Fourier norms of the logits."""
    keys = _keys(acts, keys)
    p, names = acts.p, fr.basis_names(acts.p)
    we = fr.freq_norms(fr.fft1d(acts.W_E[:p], dim=0), dim=0)
    wl = fr.freq_norms(fr.fft1d(acts.W_L, dim=1), dim=1)
    A = acts.pattern2[:, :, 0]  # (N, H)
    attn_spec = fr.fft2d(A, p)  # (p, p, H)
    Ac = A - A.mean(0)
    a_blocks = fr.freq_blocks(fr.fft2d(Ac, p))  # (K, 3, 3, H)
    a_energy = Ac.pow(2).sum(0)
    a_fve = a_blocks.pow(2).sum((1, 2)) / a_energy.clamp_min(1e-300)  # (K, H)
    attn_share = _key_block_share(a_blocks, keys, a_energy)
    ns = neuron_spectra(acts)
    neuron_share = float(_key_block_share(ns.blocks, keys, ns.energy).mul(ns.energy).sum()
                         / ns.energy.sum().clamp_min(1e-300))
    L = acts.logits
    Lc = L - L.mean(-1, keepdim=True)
    Lspec = fr.fft2d(Lc, p)  # (p, p, c)
    lnorm = Lspec.norm(dim=-1)
    non_const = lnorm.pow(2).sum() - lnorm[0, 0].pow(2)
    if keys:
        ci = torch.tensor([fr.cos_index(k) for k in keys])
        si = torch.tensor([fr.sin_index(k, p) if fr.sin_index(k, p) is not None else fr.cos_index(k) for k in keys])
        rows = torch.stack([ci, si], 1)  # (r, 2)
        sub = lnorm[rows[:, :, None], rows[:, None, :]].pow(2)  # (r, 2, 2)
        has_sin = torch.tensor([fr.sin_index(k, p) is not None for k in keys])
        sub = torch.where(has_sin[:, None, None], sub, sub * torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=DTYPE))
        logit_share = float(sub.sum() / non_const.clamp_min(1e-300))
    else:
        logit_share = 0.0
    H = A.shape[1]
    # C_h[a]: the score '=' -> position 0 depends on a only (the query at '=' is one vector): read it at b = 0
    C = fr.as_grid(acts.scores2[:, :, 0], p)[:, 0, :]  # (p a, H)
    ov = torch.einsum("ahe,hed->ahd", fr.as_grid(acts.v[:, 0], p)[:, 0], acts.W_O)  # (p a, H, d)
    ov_norms = fr.fft1d(ov, dim=0).norm(dim=-1)  # (p, H)
    return Periodicity(
        keys=keys, we_freq_norms=we, wl_freq_norms=wl, attn_to_a=A.T.reshape(H, p, p),
        attn_spectrum=attn_spec.abs().permute(2, 0, 1),
        attn_top=[_top_components(attn_spec[:, :, h], names, n_top) for h in range(H)],
        attn_key_share=[_num(x) for x in attn_share], attn_best_freq=[int(k) + 1 for k in a_fve.argmax(0)],
        neuron_acts=acts.post2.reshape(p, p, -1), neuron_key_share=neuron_share, logit_spectrum=lnorm,
        logit_top=_top_components(lnorm, names, n_top),
        logit_key_share=logit_share, attn_C_fourier=fr.fft1d(C, dim=0).T.contiguous(),
        ov_fourier_norms=ov_norms.T.contiguous())


# ====================================================================== evidence 2: composing weights
@dataclass
class DirectionFit(_Result):
    """One row of Table 1: the MLP activations projected on ``u_k`` (``kind='cos'``) or ``v_k`` (``'sin'``)."""

    freq: int
    kind: str
    norm: float  # ||u_k|| (the W_L coefficient vector of the unit basis wave cos k / sin k)
    mean: float  # the projection's mean over the pairs
    top_terms: list[dict[str, Any]]  # its two largest non-constant 2-D Fourier coefficients (unit 2-D basis)
    sum_coef: float  # its coefficient on the unit direction cos(w_k(a+b)) (kind 'cos') / sin(w_k(a+b))
    fve: float  # FVE of the projection by that single term


@dataclass
class Composition(_Result):
    """Evidence 2 (§4.2): ``W_L ~ sum_k cos_k u_k^T + sin_k v_k^T``; the MLP computes ``cos/sin(w_k(a+b))``
    along ``u_k, v_k``; the logits are ``~ sum_k alpha_k cos(w_k(a+b-c))``.

    ``cos_k``/``sin_k`` are the unit-norm basis waves over the output ``c``, so ``u_k = W_L @ cos_k``.
    ``wl_residual_share`` is ``||W_L - approx||_F / ||W_L||_F`` (paper: 0.55%); ``..._centered`` the same for
    ``W_L`` centred over ``c`` (the constant, which softmax ignores, removed from both). ``logit_fve`` is the
    FVE of the logits centred over ``c`` (per pair: the part softmax ignores) by the least-squares
    ``sum_k alpha_k cos(w_k(a+b-c))`` (paper: 95%); ``logit_fve_interaction`` the same for the logits also
    centred over the pairs (per ``c``: the class-bias term removed too); ``logit_fit_metrics`` the loss/accuracy of
    that approximation used as the logits.
    """

    keys: list[int]
    wl_residual_share: float
    wl_residual_share_centered: float
    directions: list[DirectionFit]
    logit_alphas: dict[int, float]
    logit_fve: float
    logit_fve_interaction: float
    logit_fit_metrics: Metrics


def composition(acts: Activations, keys: Sequence[int] | None = None) -> Composition:
    """Evidence 2 (Table 1 and the logit fit)."""
    keys = _keys(acts, keys)
    p, names = acts.p, fr.basis_names(acts.p)
    WL = acts.W_L
    C = fr.fft1d(WL, dim=1)  # (m, p): W_L = C @ B
    B = fr.fourier_basis(p, WL.device)
    idx = [fr.cos_index(k) for k in keys] + [i for k in keys if (i := fr.sin_index(k, p)) is not None]
    approx = C[:, idx] @ B[idx] if idx else torch.zeros_like(WL)
    wl_res = float((WL - approx).norm() / WL.norm().clamp_min(1e-300))
    WLc = WL - WL.mean(1, keepdim=True)
    wl_res_c = float((WLc - approx).norm() / WLc.norm().clamp_min(1e-300))
    # Table 1: projections of the activations on u_k, v_k
    dirs: list[DirectionFit] = []
    if keys:
        cols, kinds = [], []
        for k in keys:
            for kind in ("cos", "sin"):
                i = fr.cos_index(k) if kind == "cos" else fr.sin_index(k, p)
                if i is not None:
                    cols.append(i)
                    kinds.append((k, kind))
        U = C[:, cols]  # (m, n_dir)
        proj = acts.post2 @ U  # (N, n_dir)
        spec = fr.fft2d(proj, p)  # (p, p, n_dir)
        T = fr.sum_direction_table(p, [k for k, _ in kinds], WL.device)  # (n_dir, 2, p_s)
        sel = torch.tensor([0 if kind == "cos" else 1 for _, kind in kinds], device=WL.device)
        Dk = T[torch.arange(len(kinds)), sel][:, acts.s]  # (n_dir, N)
        coef = (Dk * proj.T).sum(1)
        projc = proj - proj.mean(0)
        fv = coef.pow(2) / projc.pow(2).sum(0).clamp_min(1e-300)
        spec[0, 0] = 0  # the mean, not a term of interest
        for j, (k, kind) in enumerate(kinds):
            dirs.append(DirectionFit(k, kind, float(U[:, j].norm()), float(proj[:, j].mean()),
                                     _top_components(spec[:, :, j], names, 2), float(coef[j]), float(fv[j])))
    # logits ~ sum_k alpha_k cos(w_k (a + b - c)), least squares (the regressors are orthogonal)
    L = acts.logits
    Lc = L - L.mean(-1, keepdim=True)
    alphas: dict[int, float] = {}
    table = torch.zeros(p, p, dtype=DTYPE, device=L.device)  # (s, c)
    if keys:
        W = fr.sum_waves(p, keys, L.device)  # (r, 2, p): cos/sin(w_k x)
        s = acts.s
        # <Lc, cos(w(s - c))> = sum_n cos(w s_n) (Lc_n . cos(wc)) + sin(w s_n) (Lc_n . sin(wc))
        num = (W[:, 0, s] * (Lc @ W[:, 0].T).T).sum(1) + (W[:, 1, s] * (Lc @ W[:, 1].T).T).sum(1)
        cs = torch.arange(p, device=L.device)
        basis = torch.cos(2 * math.pi * torch.tensor(keys, dtype=DTYPE, device=L.device)[:, None, None]
                          * (cs[:, None] - cs[None, :]).to(DTYPE) / p)  # (r, s, c)
        den = basis.pow(2).sum((1, 2)) * p  # each s appears p times over the grid
        al = num / den
        alphas = {k: float(x) for k, x in zip(keys, al)}
        table = (al[:, None, None] * basis).sum(0)
        explained = (al.pow(2) * den).sum()
        logit_fve = float(explained / Lc.pow(2).sum().clamp_min(1e-300))
        logit_fve_i = float(explained / (Lc - Lc.mean(0)).pow(2).sum().clamp_min(1e-300))
    else:
        logit_fve = logit_fve_i = 0.0
    return Composition(keys, wl_res, wl_res_c, dirs, alphas, logit_fve, logit_fve_i, _metrics_s_table(table, acts))


# ====================================================================== evidence 3: neurons and heads
@dataclass
class HeadFit(_Result):
    """Table 2: attention ``= -> a`` of one head ~ ``0.5 + alpha (cos w_k a - cos w_k b) + beta (sin w_k a -
    sin w_k b)`` (raw, unnormalised waves), best ``k`` by FVE; ``self_attention`` the mean attention ``= -> =``.
    A head whose pattern does not vary has ``freq = 0`` and ``fve = NaN``."""

    head: int
    freq: int
    alpha: float
    beta: float
    fve: float
    self_attention: float


def head_fits(acts: Activations) -> list[HeadFit]:
    """Table 2 for every head; all frequencies are tried at once and the best FVE is kept."""
    p = acts.p
    A = acts.pattern2[:, :, 0]  # (N, H)
    W = fr.sum_waves(p, range(1, p // 2 + 1), A.device)  # (K, 2, p): cos/sin(w_k x)
    y = A - 0.5
    # regressors x_kj(a, b) = W[k, j, a] - W[k, j, b]; on the full grid the two are orthogonal, so least squares
    # is per regressor and ss_res = ||y||^2 - sum_j coef_j^2 ||x_j||^2. Sums over the grid via sums over a and b.
    ya = torch.zeros(p, y.shape[1], dtype=DTYPE, device=A.device).index_add_(0, acts.a, y)
    yb = torch.zeros(p, y.shape[1], dtype=DTYPE, device=A.device).index_add_(0, acts.b, y)
    xy = torch.einsum("kjx,xh->kjh", W, ya - yb)  # (K, 2, H)
    xx = 2 * p * W.pow(2).sum(-1) - 2 * W.sum(-1).pow(2)  # (K, 2)
    coef = xy / xx.clamp_min(1e-300)[..., None]
    coef = torch.where(xx[..., None] > 1e-9, coef, torch.zeros_like(coef))
    ss_res = y.pow(2).sum(0)[None] - (coef.pow(2) * xx[..., None]).sum(1)  # (K, H)
    ss_tot = (A - A.mean(0)).pow(2).sum(0)
    fv = 1 - ss_res / ss_tot.clamp_min(1e-300)
    best = fv.argmax(0)
    out = []
    for h in range(A.shape[1]):
        k = int(best[h])
        if float(ss_tot[h]) > 1e-24 * A.shape[0]:
            out.append(HeadFit(h, k + 1, float(coef[k, 0, h]), float(coef[k, 1, h]), float(fv[k, h]),
                               float(acts.pattern2[:, h, 2].mean())))
        else:  # a constant pattern: nothing to explain
            out.append(HeadFit(h, 0, 0.0, 0.0, float("nan"), float(acts.pattern2[:, h, 2].mean())))
    return out


@dataclass
class Neurons(_Result):
    """Evidence 3 (§4.3): each neuron's best single frequency and the FVE of its degree-2 polynomial there.

    ``n_well_fit``/``frac_well_fit``: neurons with FVE > ``threshold`` (paper: 433/512 = 84.6% > 85%);
    ``clusters``: well-fit neurons per best frequency; ``clusters_all``: all live neurons per best frequency;
    ``cluster_wl_share[k]``: share of the cluster's ``||W_L rows||^2`` (over ``c``) in frequency ``k``'s
    ``cos/sin`` (paper Fig. 5 right: the map to the logits is localised by frequency); ``heads``: Table 2;
    ``wl_fourier``: the rows of ``W_L`` (one per neuron) in the Fourier basis along the output ``c``.
    """

    _arrays = ("best_freq", "fve", "wl_fourier")

    keys: list[int]
    threshold: float
    best_freq: "Int[Tensor, 'm']"
    fve: "Float[Tensor, 'm']"
    n_neurons: int
    n_dead: int
    n_well_fit: int
    frac_well_fit: float
    n_well_fit_key: int  # well-fit neurons whose best frequency is a key frequency
    clusters: dict[int, int]
    clusters_all: dict[int, int]
    cluster_wl_share: dict[int, float]
    heads: list[HeadFit]
    wl_fourier: "Float[Tensor, 'm p']"


def neurons(acts: Activations, keys: Sequence[int] | None = None, threshold: float = 0.85) -> Neurons:
    """Evidence 3: neuron frequencies and polynomial FVEs, clusters, and the per-head attention fits."""
    keys = _keys(acts, keys)
    p = acts.p
    ns = neuron_spectra(acts)
    well = ns.alive & (ns.best_fve > threshold)
    keymask = _key_mask(p, keys, ns.best_freq.device)

    def count(mask):
        c = torch.bincount(ns.best_freq[mask].cpu() - 1, minlength=p // 2)
        return {int(k) + 1: int(v) for k, v in enumerate(c.tolist()) if v}

    clusters = count(well)
    C = fr.fft1d(acts.W_L, dim=1)  # (m, p)
    share: dict[int, float] = {}
    for k in clusters:
        rows = C[well & (ns.best_freq == k)]
        tot = rows.pow(2).sum()
        cols = [fr.cos_index(k)] + ([fr.sin_index(k, p)] if fr.sin_index(k, p) is not None else [])
        share[k] = float(rows[:, cols].pow(2).sum() / tot.clamp_min(1e-300))
    n = acts.d_mlp
    return Neurons(
        keys=keys, threshold=threshold, best_freq=ns.best_freq, fve=ns.best_fve, n_neurons=n,
        n_dead=int((~ns.alive).sum()), n_well_fit=int(well.sum()), frac_well_fit=float(well.sum()) / n,
        n_well_fit_key=int((well & keymask[ns.best_freq - 1]).sum()), clusters=clusters,
        clusters_all=count(ns.alive), cluster_wl_share=share, heads=head_fits(acts), wl_fourier=C)


# ====================================================================== evidence 4: ablations
@dataclass
class Ablation(_Result):
    name: str
    description: str
    before: Metrics
    after: Metrics


@dataclass
class FrequencyAblation(_Result):
    """Fig. 6: the logits with one frequency's ``cos(w_k(a+b))``, ``sin(w_k(a+b))`` components (over the
    ``(a, b)`` grid) removed, for every ``k = 1 .. p // 2`` (entry ``k - 1``)."""

    freqs: list[int]
    loss_train: "Float[Tensor, 'K']"
    loss_test: "Float[Tensor, 'K']"
    loss_all: "Float[Tensor, 'K']"
    acc_train: "Float[Tensor, 'K']"
    acc_test: "Float[Tensor, 'K']"
    acc_all: "Float[Tensor, 'K']"

    def metrics(self, k: int) -> Metrics:
        i = k - 1
        return Metrics(*(float(getattr(self, f)[i]) for f in
                         ("loss_train", "loss_test", "loss_all", "acc_train", "acc_test", "acc_all")))


@dataclass
class Ablations(_Result):
    """Evidence 4 (§4.4, A.1): every ablation as loss and accuracy before/after on train, test and all pairs.

    ``results`` names (descriptions in each entry): ``neurons_poly``, ``neurons_sum_terms``,
    ``neurons_sum_terms_all``, ``logits_restricted``, ``logits_excluded``, ``mlp_proj_wl_directions``,
    ``mlp_proj_wl_nullspace`` (and ``..._raw`` variants that project the mean too), ``skip_mlp_zero``,
    ``skip_mlp_mean``, ``attn_no_self_renorm`` and/or ``attn_no_self_zero`` (see :func:`ablations`),
    ``attn_linear_sigmoid``, and ``logits_ablate_freq_<k>`` for each key ``k``.
    ``per_frequency`` holds the same single-frequency ablation for every frequency. ``linear_sigmoid`` gives
    each head's slope ``E`` (pattern ``0.5 + E (s_a - s_b)``) and the FVE of ``sigmoid`` by that line.
    """

    keys: list[int]
    method: str
    baseline: Metrics
    results: dict[str, Ablation]
    per_frequency: FrequencyAblation
    linear_sigmoid: list[dict[str, float]]

    def loss(self, name: str, split: str = "all") -> float:
        return getattr(self.results[name].after, f"loss_{split}")


def restricted_logits(acts: Activations, keys: Sequence[int], logits: Tensor | None = None) -> Tensor:
    """The authors' restricted logits (``calculate_trig_loss`` with bias correction): the projection of the
    logit table on the key directions ``cos/sin(w_k(a+b))`` over the grid, plus the mean logits over all pairs
    (the constant component). Returned as an ``(p, p)`` table over ``(s = a+b mod p, c)``."""
    L = acts.logits if logits is None else logits
    p = acts.p
    table = L.mean(0).expand(p, p).clone()
    if keys:
        T = fr.sum_direction_table(p, keys, L.device).reshape(-1, p)  # (2r, p_s)
        coef = T[:, acts.s] @ L  # (2r, c)
        table = table + T.T @ coef
    return table


def excluded_logits(acts: Activations, keys: Sequence[int], logits: Tensor | None = None) -> Tensor:
    """The authors' excluded logits: the logit table minus its projection on the key ``cos/sin(w_k(a+b))``
    directions (everything else, constant included, kept). ``(N, p)``."""
    L = acts.logits if logits is None else logits
    if not keys:
        return L.clone()
    D = fr.sum_direction_table(acts.p, keys, L.device).reshape(-1, acts.p)[:, acts.s]  # (2r, N)
    return L - D.T @ (D @ L)


def frequency_ablation(acts: Activations, logits: Tensor | None = None) -> FrequencyAblation:
    """Loss/accuracy with each frequency's ``cos/sin(w_k(a+b))`` logit components removed, all ``k`` at once.

    Removing frequency ``k`` subtracts ``Delta_k[n, c] = d_k(s_n) . coef_k[c]``, which depends on the pair only
    through ``s = a + b mod p``. So ``sum_c exp(L - Delta_k) = sum_c exp(L - max L) * G_k[s, c]`` with the small
    table ``G_k = exp(-Delta_k)``: one batched matmul over the ``p`` groups of equal ``s`` instead of ``p // 2``
    passes over the ``(p*p, p)`` table. Accuracy is exact: a pair is certified correct when its margin exceeds
    twice the largest ``|Delta_k|`` of its row, and only uncertified pairs are re-checked explicitly.
    """
    L = acts.logits if logits is None else logits
    p, K, dev = acts.p, acts.p // 2, L.device
    N = p * p
    freqs = list(range(1, K + 1))
    dS = fr.sum_direction_table(p, freqs, dev)  # (K, 2, p_s)
    # coefficients: sum_n d(s_n) L[n, c] = sum_s d(s) (sum of the L rows with that s)
    Ls = torch.zeros(p, p, dtype=DTYPE, device=dev).index_add_(0, acts.s, L)  # (s, c)
    coef = torch.einsum("kds,sc->kdc", dS, Ls)  # (K, 2, c)
    delta = torch.einsum("kds,kdc->ksc", dS, coef)  # (K, s, c)
    mL = L.max(-1, keepdim=True).values
    P = torch.exp(L - mL)  # (N, c)
    # group the pairs by s: for s, the pairs (a, (s - a) mod p)
    a_ = torch.arange(p, device=dev)
    grp = a_[None, :] * p + (torch.arange(p, device=dev)[:, None] - a_[None, :]).remainder(p)  # (s, a) -> n
    gmax = (-delta).amax(-1, keepdim=True)  # (K, s, 1): keeps G <= 1, so nothing overflows
    G = torch.exp(-delta - gmax).permute(1, 2, 0)  # (s, c, K)
    S = torch.bmm(P[grp], G)  # (s, a, K)
    y = acts.labels
    s = acts.s
    lse = torch.empty(K, N, dtype=DTYPE, device=dev)
    lse[:, grp.reshape(-1)] = S.reshape(N, K).T.log()
    lse += gmax[:, :, 0][:, s]
    loss = lse + mL[:, 0][None] - (L[torch.arange(N, device=dev), y][None] - delta[:, s, y])  # (K, N)
    # accuracy
    Ly = L.gather(1, y[:, None])[:, 0]
    other = L.scatter(1, y[:, None], float("-inf")).max(-1).values
    margin = Ly - other  # (N,)
    bound = delta.abs().amax(-1)[:, s]  # (K, N): max_c |Delta_k| of each pair's row
    correct = (margin[None] > 2 * bound)
    todo = (~correct) & (margin[None] > -2 * bound)  # undecided pairs
    wrong_for_sure = margin[None] <= -2 * bound
    correct = correct & ~wrong_for_sure
    kk, nn = torch.nonzero(todo, as_tuple=True)
    if kk.numel():
        for start in range(0, kk.numel(), 65536):
            ks, ns_ = kk[start:start + 65536], nn[start:start + 65536]
            rows = L[ns_] - delta[ks, s[ns_]]
            correct[ks, ns_] = rows.argmax(-1) == y[ns_]
    Wt = split_masks(acts)
    ml, mc = (loss @ Wt) / Wt.sum(0), (correct.to(DTYPE) @ Wt) / Wt.sum(0)  # (K, 3)
    return FrequencyAblation(freqs, ml[:, 0], ml[:, 1], ml[:, 2], mc[:, 0], mc[:, 1], mc[:, 2])


def _padded_basis(p: int, device) -> Tensor:
    return torch.cat([fr.fourier_basis(p, device), torch.zeros(1, p, dtype=DTYPE, device=device)])


def _neuron_poly(acts: Activations, ns: NeuronSpectra, which: Tensor) -> Tensor:
    """Activations with the ``which`` neurons replaced by mean + their best frequency's 3x3 block polynomial."""
    p = acts.p
    sel = which.nonzero()[:, 0]
    Bn = _padded_basis(p, acts.post2.device)[fr.block_index(p, acts.post2.device)[ns.best_freq[sel] - 1]]  # (w,3,p)
    blk = ns.blocks[ns.best_freq[sel] - 1, :, :, sel].clone()  # (w, 3, 3)
    blk[:, 0, 0] = 0
    grid = torch.einsum("wij,wia,wjb->abw", blk, Bn, Bn).reshape(p * p, -1) + ns.mean[sel]
    out = acts.post2.clone()
    out[:, sel] = grid
    return out


def _neuron_poly_logits(acts: Activations, ns: NeuronSpectra, which: Tensor, rest: Tensor) -> Tensor:
    """Fast logits of :func:`_neuron_poly`: the replaced neurons' polynomials are pushed through ``W_L`` per
    frequency as 3x3 blocks (``M_k = sum_n block_n W_L[n]``), then expanded over the grid once per frequency."""
    p, dev = acts.p, acts.post2.device
    sel = which.nonzero()[:, 0]
    if sel.numel() == 0:
        return rest + acts.resid_logits
    k = ns.best_freq[sel] - 1
    blk = ns.blocks[k, :, :, sel].clone()
    blk[:, 0, 0] = 0
    WLs = acts.W_L[sel]
    M = torch.zeros(p // 2, 3, 3, p, dtype=DTYPE, device=dev).index_add_(0, k, torch.einsum("wij,wc->wijc", blk, WLs))
    present = torch.unique(k)
    Bk = _padded_basis(p, dev)[fr.block_index(p, dev)[present]]  # (f, 3, p)
    Y = torch.einsum("fia,fijc->ajcf", Bk, M[present]).reshape(p, p * 3 * present.numel())  # (a, (j c f))
    Y = Y.reshape(p, 3, p, -1).permute(0, 2, 3, 1).reshape(p * p, -1)  # (a c, (f j))
    Z = (Y @ Bk.reshape(-1, p)).reshape(p, p, p).permute(0, 2, 1).reshape(p * p, p)  # (a, b, c)
    return acts.resid_logits + rest + ns.mean[sel] @ WLs + Z


def _neuron_sum_terms(acts: Activations, ns: NeuronSpectra, which: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean + best-frequency ``cos/sin(w(a+b))`` terms of the ``which`` neurons: ``(sel, coefs (w, 2),
    tables (w, 2, p_s))`` -- the replacement of neuron ``sel[i]`` is ``mean + coefs[i] . tables[i][:, s]``."""
    sel = which.nonzero()[:, 0]
    k = ns.best_freq[sel]
    blk = ns.blocks[k - 1, :, :, sel]  # (w, 3, 3)
    c_cos = (blk[:, 1, 1] - blk[:, 2, 2]) / math.sqrt(2)
    c_sin = (blk[:, 2, 1] + blk[:, 1, 2]) / math.sqrt(2)
    return sel, torch.stack([c_cos, c_sin], 1), fr.sum_direction_table(acts.p, k, acts.post2.device)


def _linear_sigmoid(acts: Activations) -> tuple[Tensor, list[dict[str, float]]]:
    """Pattern rows of ``=`` with the 2-way softmax replaced by its least-squares line through 0.5."""
    d = acts.scores2[:, :, 0] - acts.scores2[:, :, 1]  # (N, H)
    sig = torch.sigmoid(d)
    E = ((sig - 0.5) * d).sum(0) / d.pow(2).sum(0).clamp_min(1e-300)
    lin = 0.5 + E * d
    fv = fr.fve(sig, lin, dim=0)
    pat = torch.stack([lin, 1 - lin, torch.zeros_like(lin)], -1)  # (N, H, 3)
    info = [{"head": h, "slope": float(E[h]), "fve": _num(fv[h])} for h in range(d.shape[1])]
    return pat, info


def ablations(acts: Activations, keys: Sequence[int] | None = None, *, threshold: float = 0.85,
              method: str = "fast", model: "Transformer | None" = None, self_attention: str = "renorm") -> Ablations:
    """Evidence 4 (see :class:`Ablations` for the list).

    ``self_attention``: how the attention from ``=`` to itself is removed -- ``"renorm"`` (the attention to ``a``
    and ``b`` rescaled to sum to 1: the paper's "softmax over 2 elements"), ``"zero"`` (just set to 0), or
    ``"both"``. Each costs one recomputation of the MLP at ``=``.

    ``method='hooks'`` builds every model-level ablation as a patch of a hook point at ``=`` and runs ``model``
    under :func:`grokscope.hooks.hooks` (:func:`run_patched`). ``method='fast'`` (default) gets the same logits
    without re-running the model: MLP-activation patches go through ``W_L`` exploiting their structure (low
    rank, or a few Fourier terms per frequency), the skip ablations subtract ``resid_mid @ W_U``, and attention
    patches recompute the MLP at ``=`` only (:func:`tail_logits`). The two agree to float64 rounding (tested).
    """
    keys = _keys(acts, keys)
    p, dev = acts.p, acts.post2.device
    if method == "hooks":
        if model is None:
            raise ValueError("method='hooks' needs the model")
        tokens = torch.stack([acts.a, acts.b, torch.full_like(acts.a, p)], 1)
    elif method != "fast":
        raise ValueError(f"method={method!r} is invalid: must be 'fast' or 'hooks'")
    base = metrics(acts.logits, acts)
    results: dict[str, Ablation] = {}

    def add(name: str, desc: str, patches=None, fast=None, logits=None) -> None:
        if logits is None:
            logits = run_patched(model, tokens, patches()) if method == "hooks" else fast()
        after = logits if isinstance(logits, Metrics) else metrics(logits, acts)
        results[name] = Ablation(name, desc, base, after)

    X, WL = acts.post2, acts.W_L
    mu = X.mean(0)
    s = acts.s
    ns = neuron_spectra(acts)
    well = ns.alive & (ns.best_fve > threshold)
    rest = None if method == "hooks" else X[:, ~well] @ WL[~well]  # logits of the untouched neurons
    add("neurons_poly", f"neurons with FVE > {threshold} replaced by their mean + best-frequency degree-2 polynomial "
        "(3x3 block); other neurons untouched", lambda: {HOOK_POST: _neuron_poly(acts, ns, well)},
        lambda: _neuron_poly_logits(acts, ns, well, rest))
    sel, cf, tab = _neuron_sum_terms(acts, ns, well)

    def sum_terms_patch():
        out = X.clone()
        out[:, sel] = torch.einsum("wd,wds->sw", cf, tab)[s] + mu[sel]
        return {HOOK_POST: out}

    def sum_terms_fast():
        table = torch.einsum("wd,wds,wc->sc", cf, tab, WL[sel])  # (s, c)
        return acts.resid_logits + rest + mu[sel] @ WL[sel] + table[s]

    add("neurons_sum_terms", f"neurons with FVE > {threshold} replaced by their mean + the cos/sin(w_k(a+b)) terms of "
        "their best frequency k; other neurons untouched", sum_terms_patch, sum_terms_fast)
    T = fr.sum_direction_table(p, keys, dev).reshape(-1, p)  # (2r, p_s): key directions as functions of s
    Xs = torch.zeros(p, X.shape[1], dtype=DTYPE, device=dev).index_add_(0, s, X)  # (s, m): sums over pairs with s
    DX = T @ (Xs - p * mu)  # (2r, m): coefficients of the centred activations on the key directions
    add("neurons_sum_terms_all", "every neuron replaced by its mean + its cos/sin(w_k(a+b)) terms over all key "
        "frequencies", lambda: {HOOK_POST: mu + T[:, s].T @ DX},
        lambda: acts.resid_logits + mu @ WL + (T.T @ (DX @ WL))[s])
    add("logits_restricted", "logits restricted to the constant + cos/sin(w_k(a+b)) components of the key "
        "frequencies (the authors' trig loss with bias correction; the paper reports all pairs)",
        logits=_metrics_s_table(restricted_logits(acts, keys), acts))
    add("logits_excluded", "cos/sin(w_k(a+b)) components of the key frequencies removed from the logits "
        "(the paper's excluded loss is the train split)", logits=excluded_logits(acts, keys))
    fa = frequency_ablation(acts)
    for k in keys:
        add(f"logits_ablate_freq_{k}", f"cos/sin(w_{k}(a+b)) components of the logits removed", logits=fa.metrics(k))
    # projections of the MLP activations on the W_L directions u_k, v_k
    C = fr.fft1d(WL, dim=1)
    cols = [fr.cos_index(k) for k in keys] + [i for k in keys if (i := fr.sin_index(k, p)) is not None]
    Q = torch.linalg.qr(C[:, cols])[0] if cols else torch.zeros(X.shape[1], 0, dtype=DTYPE, device=dev)
    QWL = Q.T @ WL  # (r, p)
    Xc = X - mu
    XcQ, XQ = Xc @ Q, X @ Q
    n = len(cols)
    add("mlp_proj_wl_directions", f"MLP activations: mean kept, variation projected on the {n} W_L directions "
        "u_k, v_k of the key frequencies", lambda: {HOOK_POST: mu + XcQ @ Q.T},
        lambda: acts.resid_logits + mu @ WL + XcQ @ QWL)
    add("mlp_proj_wl_nullspace", f"MLP activations: mean kept, variation projected on the orthogonal complement "
        f"of those {n} directions", lambda: {HOOK_POST: X - XcQ @ Q.T}, lambda: acts.logits - XcQ @ QWL)
    add("mlp_proj_wl_directions_raw", f"MLP activations (mean included) projected on the {n} W_L directions",
        lambda: {HOOK_POST: XQ @ Q.T}, lambda: acts.resid_logits + XQ @ QWL)
    add("mlp_proj_wl_nullspace_raw", "MLP activations (mean included) projected on the orthogonal complement",
        lambda: {HOOK_POST: X - XQ @ Q.T}, lambda: acts.logits - XQ @ QWL)
    # skip connection around the MLP
    skip = acts.resid_mid2 @ acts.W_Up
    mean_mid = acts.resid_mid2.mean(0)
    mlp_out = lambda: X @ acts.W_out + acts.b_out  # noqa: E731
    add("skip_mlp_zero", "skip connection around the MLP zero-ablated (resid_post = mlp_out)",
        lambda: {HOOK_RESID_POST: mlp_out()}, lambda: acts.logits - skip)
    add("skip_mlp_mean", "skip connection around the MLP mean-ablated (resid_post = mean(resid_mid) + mlp_out)",
        lambda: {HOOK_RESID_POST: mlp_out() + mean_mid}, lambda: acts.logits - skip + mean_mid @ acts.W_Up)
    # attention from '=' to itself; the attention sigmoid by its linear fit
    pat = acts.pattern2.clone()
    pat[:, :, 2] = 0
    pat_r = pat / pat.sum(-1, keepdim=True).clamp_min(1e-300)
    pat_lin, info = _linear_sigmoid(acts)
    if self_attention not in ("renorm", "zero", "both"):
        raise ValueError(f"self_attention={self_attention!r} is invalid: must be 'renorm', 'zero' or 'both'")
    todo = []
    if self_attention in ("zero", "both"):
        todo.append(("attn_no_self_zero", "attention from '=' to itself set to 0 (rows not renormalised)", pat))
    if self_attention in ("renorm", "both"):
        todo.append(("attn_no_self_renorm", "attention from '=' to itself removed, attention to a and b "
                     "renormalised to sum to 1", pat_r))
    todo.append(("attn_linear_sigmoid", "'=' self-attention removed and sigmoid(s_a - s_b) replaced by its "
                 "least-squares line 0.5 + E (s_a - s_b) per head", pat_lin))
    for name, desc, pt in todo:
        add(name, desc, lambda pt=pt: {HOOK_PATTERN: pt}, lambda pt=pt: tail_logits(acts, {HOOK_PATTERN: pt}))
    return Ablations(keys, method, base, results, fa, info)


# ====================================================================== everything
@dataclass
class Analysis(_Result):
    """All four lines of evidence for one model (``to_dict()``: JSON-serialisable numbers)."""

    p: int
    d_mlp: int
    n_heads: int
    n_train: int
    n_test: int
    model_metrics: Metrics  # the model's own float logits
    key_frequencies: KeyFrequencies
    periodicity: Periodicity
    composition: Composition
    neurons: Neurons
    ablations: Ablations
    seconds: float

    @property
    def keys(self) -> list[int]:
        return self.key_frequencies.keys

    def summary(self) -> str:
        kf, co, ne, ab = self.key_frequencies, self.composition, self.neurons, self.ablations
        r = ab.results
        lines = [
            f"p={self.p}  key frequencies {kf.keys} (W_E {kf.we_keys}, neurons {kf.neuron_keys}; "
            f"consistent={kf.consistent})",
            f"loss train/test {self.model_metrics.loss_train:.3g}/{self.model_metrics.loss_test:.3g}",
            f"W_L residual share {co.wl_residual_share:.3%} (centred {co.wl_residual_share_centered:.3%}); "
            f"logit FVE {co.logit_fve:.1%}; direction FVEs "
            + ", ".join(f"{d.kind} {d.freq}: {d.fve:.1%}" for d in co.directions),
            f"neurons FVE > {ne.threshold:g}: {ne.n_well_fit}/{ne.n_neurons} ({ne.frac_well_fit:.1%}); "
            f"clusters {ne.clusters}",
            "heads: " + "; ".join(f"{h.head}: k={h.freq} alpha={h.alpha:+.3f} beta={h.beta:+.3f} FVE={h.fve:.1%}"
                                  for h in ne.heads),
            f"restricted loss {r['logits_restricted'].after.loss_all:.3g} (all), excluded loss "
            f"{r['logits_excluded'].after.loss_train:.3g} (train), baseline {ab.baseline.loss_all:.3g} (all)",
        ]
        return "\n".join(lines)


def analyze(model: "Transformer", dataset: "Dataset", *, keys: Sequence[int] | None = None, threshold: float = 0.85,
            method: str = "fast", self_attention: str = "renorm") -> Analysis:
    """Run every part on ``model`` over all pairs of ``dataset``; ``keys`` overrides the automatic choice;
    ``threshold`` is the neuron-FVE cut (paper: 0.85); ``method`` and ``self_attention`` go to :func:`ablations`."""
    t0 = time.perf_counter()
    with torch.no_grad():
        acts = collect(model, dataset)
        kf = key_frequencies(acts)
        if keys is not None:
            kf.keys = sorted(int(k) for k in keys)
        ks = kf.keys
        res = Analysis(
            p=acts.p, d_mlp=acts.d_mlp, n_heads=acts.n_heads, n_train=int(acts.train_idx.numel()),
            n_test=int(acts.test_idx.numel()), model_metrics=metrics(acts.model_logits, acts), key_frequencies=kf,
            periodicity=periodicity(acts, ks), composition=composition(acts, ks),
            neurons=neurons(acts, ks, threshold),
            ablations=ablations(acts, ks, threshold=threshold, method=method, model=model,
                                self_attention=self_attention),
            seconds=0.0)
    res.seconds = time.perf_counter() - t0
    return res


# ====================================================================== inputs
def model_and_dataset_from_run(run_path: str | Path, epoch: int | None = None, model: int = 0):
    """``(Transformer, Dataset)`` of model ``model`` of a grokscope run at checkpoint ``epoch`` (default: last)."""
    from .runs import Run

    run = Run.load(run_path)
    return run.model(epoch, model), run.dataset(model)


def model_and_dataset_from_authors(path: str | Path, seed: int, frac_train: float, op: str = "add"):
    """``(Transformer, Dataset)`` of an authors' checkpoint with their split for ``seed`` and ``frac_train``."""
    from .authors import authors_task_config, load_authors_model
    from .tasks import make_dataset

    m, _ = load_authors_model(path)
    return m.eval(), make_dataset(authors_task_config(m, seed, frac_train, op))


def analysis_from_run(run_path: str | Path, epoch: int | None = None, model: int = 0, **kw) -> Analysis:
    """:func:`analyze` a checkpoint of a grokscope run."""
    m, ds = model_and_dataset_from_run(run_path, epoch, model)
    return analyze(m, ds, **kw)


def analysis_from_authors(path: str | Path, seed: int, frac_train: float, op: str = "add", **kw) -> Analysis:
    """:func:`analyze` an authors' checkpoint (e.g. ``low_precision_mod_addition.pth``: seed 1, frac 0.3)."""
    m, ds = model_and_dataset_from_authors(path, seed, frac_train, op)
    return analyze(m, ds, **kw)
