"""Reverse-engineer a trained modular-addition transformer (paper §4, Appendices A.1, C.1), by line of evidence.

    from grokscope.interp import analyze
    res = analyze(model, dataset)          # -> Analysis; res.to_dict() is JSON-serialisable

Each part runs on its own from the activations collected once by :func:`collect`::

    acts = collect(model, dataset)         # activations.py: one forward pass, float64 from there on
    kf = key_frequencies(acts)              # spectra.py: the rule of grokscope.fourier.keys, with cross-checks
    periodicity(acts, kf.keys)              # periodicity.py: evidence 1 (§4.1)
    composition(acts, kf.keys)              # composition.py: evidence 2 (§4.2, Table 1)
    neurons(acts, kf.keys)                  # neurons.py: evidence 3 (§4.3, C.1.2-C.1.3, Table 2)
    ablations(acts, kf.keys)                # ablations.py: evidence 4 (§4.4, A.1)

Interventions are patches of hook points at ``=``, evaluated by default (``method="fast"``) by recomputing the
one-layer model downstream in float64 from the cached activations (for MLP-activation patches, closed forms
through ``W_L``), or by running the model under scoped hooks (``method="hooks"``); the two agree to float64
rounding (tested). "Before" in every ablation is the float64 recomputation of the unpatched model (equal to the
model's own loss to ~1e-6 relative; that one is ``Analysis.model_metrics``). On the paper's mainline ``W_E``
carries one extra, unused frequency, so ``W_L``'s key set is expected to be a subset of ``W_E``'s and equal to
the neurons'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from .ablations import (Ablation, Ablations, FrequencyAblation, ablations, excluded_logits, frequency_ablation, restricted_logits)
from .activations import (DTYPE, HOOK_PATTERN, HOOK_POST, HOOK_RESID_POST, PATCHABLE, POS, Activations, Metrics, Result, collect, metrics, patch_hooks, run_patched, split_masks, tail_logits)
from .composition import Composition, DirectionFit, composition
from .neurons import HeadFit, Neurons, head_fits, neurons
from .periodicity import Periodicity, periodicity
from .spectra import KeyFrequencies, NeuronSpectra, key_frequencies, neuron_spectra

if TYPE_CHECKING:
    from ..model.transformer import Transformer
    from ..tasks.modular import Dataset

__all__ = [
    "DTYPE", "POS", "HOOK_PATTERN", "HOOK_POST", "HOOK_RESID_POST", "PATCHABLE", "Activations", "collect",
    "tail_logits", "run_patched", "patch_hooks", "Metrics", "metrics", "split_masks", "NeuronSpectra",
    "neuron_spectra", "KeyFrequencies", "key_frequencies", "Periodicity", "periodicity", "DirectionFit",
    "Composition", "composition", "HeadFit", "Neurons", "neurons", "head_fits", "Ablation", "FrequencyAblation",
    "Ablations", "ablations", "restricted_logits", "excluded_logits", "frequency_ablation", "Analysis", "analyze",
]


@dataclass
class Analysis(Result):
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
