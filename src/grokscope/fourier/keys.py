"""The key-frequency rule: which frequencies a model uses, decided once, for the analysis and the progress measures.

Frequencies ``k = 1 .. p // 2`` are ranked by their share of the non-constant squared Fourier norm of
``W_L = W_out @ W_U[:, :p]`` (transform along the logit axis, norm over neurons). The keys are the top ``n``,
where ``n`` is the cut with the largest ratio between consecutive ranked shares (the largest multiplicative
gap), among cuts with ``n <= p // 4`` whose last kept share is at least ``FLOOR_RATIO = 10`` times the median
share. If that largest gap is below ``MIN_GAP = 3``, the spectrum is not sparse and no keys are returned
(an untrained model gives none rather than noise frequencies). The analysis applies the same rule to the
Fourier norms of ``W_E[:p]`` and to the neurons' best-frequency cluster sizes as cross-checks
(:func:`grokscope.interp.periodicity.key_frequencies`); the keys are the ``W_L`` set (as the paper's Appendix C.2).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import Tensor

from . import basis as fr
from ..checks import ConfigError

DTYPE = torch.float64
MIN_GAP = 3.0
FLOOR_RATIO = 10.0

RULE = ("largest multiplicative gap in the ranked per-frequency shares of the non-constant squared Fourier norm "
        "of W_L = W_out @ W_U[:, :p] (along the logit axis), among cuts of at most p//4 frequencies whose last kept "
        "share is >= {floor_ratio:g} x the median share; none if the gap is < {min_gap:g}. Cross-checks: the same "
        "rule on W_E[:p] (along the token axis) and on the neurons' best-frequency cluster sizes (+1).")

__all__ = ["MIN_GAP", "FLOOR_RATIO", "RULE", "default_max_keys", "select_by_gap", "gap", "wl_shares", "wl_keys",
           "check_keys", "key_mask"]


def default_max_keys(p: int) -> int:
    """At most ``p // 4`` keys (at least 1)."""
    return max(1, p // 4)


def select_by_gap(values: Tensor, *, min_gap: float = MIN_GAP, floor_ratio: float = FLOOR_RATIO,
                  max_keys: int | None = None, smooth: float = 0.0) -> list[int]:
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


def gap(values: Tensor, keys: list[int]) -> float:
    """Weakest key value over strongest non-key value (inf if every other value is 0; NaN without keys)."""
    if not keys:
        return float("nan")
    v = values.to(DTYPE).cpu()
    mask = torch.zeros(v.shape[0], dtype=torch.bool)
    mask[torch.tensor(keys) - 1] = True
    rest = v[~mask]
    if rest.numel() == 0 or float(rest.max()) <= 0:
        return float("inf")
    return float(v[mask].min() / rest.max())


def wl_shares(W_L: Tensor) -> Tensor:
    """Share of the non-constant squared Fourier norm of ``W_L (d_mlp, p)`` per frequency ``k = 1 .. p // 2``."""
    return fr.freq_shares(fr.wl_freq_norms(W_L))


def wl_keys(W_L: Tensor, *, min_gap: float = MIN_GAP, floor_ratio: float = FLOOR_RATIO,
            max_keys: int | None = None) -> list[int]:
    """The key frequencies of one model from its ``W_L (d_mlp, p)``: the rule of the module docstring."""
    return select_by_gap(wl_shares(W_L), min_gap=min_gap, floor_ratio=floor_ratio,
                         max_keys=max_keys or default_max_keys(W_L.shape[-1]))


def check_keys(keys: Iterable[int], p: int, what: str = "") -> list[int]:
    """``keys`` as sorted distinct ints, each in ``1 .. p // 2`` (ConfigError, a ValueError, naming the bad ones
    otherwise)."""
    ks = sorted({int(k) for k in keys})
    bad = [k for k in ks if not 1 <= k <= p // 2]
    if bad:
        raise ConfigError(f"keys={bad} are invalid{what}: must be in 1..{p // 2}")
    return ks


def key_mask(p: int, keys: Iterable[int] | Mapping, device=None) -> Tensor:
    """``(p // 2,)`` bool: entry ``k - 1`` is true for the keys."""
    m = torch.zeros(p // 2, dtype=torch.bool, device=device)
    ks = list(keys)
    if ks:
        m[torch.tensor(ks, device=device) - 1] = True
    return m
