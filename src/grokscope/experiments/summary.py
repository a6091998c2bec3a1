"""One finished run summarised into rows (:func:`summarise_run`, one row per model): final losses, grokking
epochs, key frequencies, Gini coefficients, the analysis' FVEs and ablations, the phase ends. It reuses the rest
of grokscope: :meth:`grokscope.training.run.Run.milestones`, the progress cache and phases
(:func:`grokscope.measures.cache.run_progress`, :func:`grokscope.measures.phases.phases_frame`), the Gini
coefficients of the final weights (:func:`grokscope.measures.progress.weight_measures`) and the analysis
(:func:`grokscope.interp.analysis.analyze`: logit FVE, the W_L directions' FVE, the skip-connection ablations)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..interp.analysis import analyze
from ..measures.cache import run_progress
from ..measures.phases import phases_frame
from ..measures.checkpoint_measures import weight_measures
from ..training.run import Run

#: the grokking thresholds of the summary: Fig 21's losses, and the usual test accuracy
LOSS_THRESHOLD = 1e-6
ACC_THRESHOLD = 0.99


def _first(epochs: np.ndarray, mask: np.ndarray) -> float:
    return float(epochs[mask][0]) if mask.any() else float("nan")


def summarise_run(run: Run, experiment: str = "", group: str = "") -> pd.DataFrame:
    """One row per model of a finished run: its config; final losses; the grokking epochs (first epoch of train
    and of test loss < 1e-6, Fig 21, and of test loss < 1e-2, comparable with the authors' curves that stop near
    3e-6; test accuracy > 99%, from :meth:`Run.milestones`; the epoch the stopping rule stopped the model); key
    frequencies, Gini of W_E and W_L (final checkpoint), logit FVE and the mean [std] FVE of the W_L directions ("MLP FVE", Table 5);
    the skip connection around the MLP mean- and zero-ablated (Table 6; loss and accuracy on all pairs); the
    restricted (test) and excluded (train) losses; the phase ends (§5.2). A model of several layers is analysed
    through its final block (its MLP's activations and the skip connection around it, as the paper's two-layer
    rows of Tables 5 and 6)."""
    ms = run.milestones()
    stops = run.stop_epochs()
    m = run.metrics
    _, rep = run_progress(run)
    ph = phases_frame(rep).set_index("model")
    w = weight_measures(run.stacked_params(), run.configs[0].n_layers)
    rows = []
    for k, cfg in enumerate(run.configs):
        mk = m[m["model"] == k].sort_values("epoch")
        t = mk.dropna(subset=["test_loss"])
        e, et = mk["epoch"].to_numpy(), t["epoch"].to_numpy()
        r = ms.iloc[k]
        row: dict[str, Any] = {"experiment": experiment, "group": group, "model": k, **cfg.to_dict(),
                               "final_train_loss": r.final_train_loss, "final_test_loss": r.final_test_loss,
                               "final_test_acc": r.final_test_acc, "train_acc_100": r.train_acc_100,
                               "epoch_train_loss_1e6": _first(e, mk["train_loss"].to_numpy() < LOSS_THRESHOLD),
                               "epoch_test_loss_1e6": _first(et, t["test_loss"].to_numpy() < LOSS_THRESHOLD),
                               "epoch_test_loss_1e2": _first(et, t["test_loss"].to_numpy() < 1e-2),
                               "stopped_at": float("nan") if stops[k] is None else float(stops[k]),
                               "epoch_test_acc_99": r.test_acc_99,
                               "keys": [int(x) for x in ph.loc[k, "keys"]], "gini_W_E": float(w["gini_W_E"][k]),
                               "gini_W_L": float(w["gini_W_L"][k])}
        row.update(_analysis_columns(run, k))
        for c in ("memorisation_end", "circuit_formation_end", "cleanup_end"):
            v = ph.loc[k, c]
            row[c] = float("nan") if v is None or v != v else float(v)
        row["generalised"] = bool(ph.loc[k, "generalised"])
        row["claims_holding"], row["claims_decided"] = int(ph.loc[k, "claims_holding"]), int(ph.loc[k, "claims_decided"])
        rows.append(row)
    return pd.DataFrame(rows)


ANALYSIS_COLUMNS = ("logit_fve", "mlp_fve", "mlp_fve_std", "loss_all", "acc_all", "skip_mean_loss", "skip_mean_acc",
                    "skip_zero_loss", "skip_zero_acc", "restricted_loss", "excluded_loss",
                    "excluded_test_loss")


def _analysis_columns(run: Run, k: int) -> dict[str, float]:
    res = analyze(run.model(None, k), run.dataset(k))
    fv = np.array([d.fve for d in res.composition.directions], dtype=float)
    ab = res.ablations.results
    return {"logit_fve": res.composition.logit_fve, "mlp_fve": float(fv.mean()) if len(fv) else float("nan"),
            "mlp_fve_std": float(fv.std()) if len(fv) else float("nan"),
            "loss_all": ab["skip_mlp_mean"].before.loss_all, "acc_all": ab["skip_mlp_mean"].before.acc_all,
            "skip_mean_loss": ab["skip_mlp_mean"].after.loss_all, "skip_mean_acc": ab["skip_mlp_mean"].after.acc_all,
            "skip_zero_loss": ab["skip_mlp_zero"].after.loss_all, "skip_zero_acc": ab["skip_mlp_zero"].after.acc_all,
            "restricted_loss": ab["logits_restricted"].after.loss_test,
            "excluded_loss": ab["logits_excluded"].after.loss_train,
            "excluded_test_loss": ab["logits_excluded"].after.loss_test}  # Table 4's "key frequencies removed"
