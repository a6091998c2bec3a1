"""The search for the quick preset: a run of the paper's architecture that shows the paper's story (three distinct
phases, the §5.2 claims decided) within minutes on a 2-core CPU. Trains a grid of (p, frac_train, lr,
weight_decay) as batched runs (one per p and fraction), computes the progress measures and phases of each model
and prints, per model: the epochs of train accuracy 100% and test accuracy > 99%, the three phase ends and how
many claims hold / are decided, and the model-epochs it needs (to the end of cleanup + 10%).

    OMP_NUM_THREADS=1 python benchmarks/quick_search.py --out /tmp/qsearch [--epochs 5000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import pandas as pd

from grokscope.config import Config
from grokscope.measures.cache import run_progress
from grokscope.training import Run, resume, train

GRID = {"p": (113,), "frac_train": (0.3, 0.4), "lr": (1e-3, 3e-3), "weight_decay": (1.0, 3.0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/qsearch")
    ap.add_argument("--epochs", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    for name in GRID:
        ap.add_argument("--" + name.replace("_", "-"), default=None, help="comma list (default: %s)" % (GRID[name],))
    a = ap.parse_args()
    for name in list(GRID):
        v = getattr(a, name)
        if v is not None:
            GRID[name] = tuple((int if name == "p" else float)(x) for x in v.split(","))
    rows = []
    for p, frac in itertools.product(GRID["p"], GRID["frac_train"]):
        models = [Config(p=p, frac_train=frac, lr=lr, weight_decay=wd, seed=a.seed, epochs=a.epochs,
                         checkpoint_every=50)
                  for lr, wd in itertools.product(GRID["lr"], GRID["weight_decay"])]
        path = Path(a.out) / f"p{p}_frac{frac}"
        t0 = time.perf_counter()
        if (path / "config.json").is_file():
            run = resume(path, progress=True)
        else:
            run = train(models, path, progress=True)
        secs = time.perf_counter() - t0
        _, rep = run_progress(run, progress=True)
        ms = run.milestones()
        for k, m in enumerate(rep["models"]):
            e = m["ends"]
            claims = m["claims"]
            decided = [c for c in (claims.values() if isinstance(claims, dict) else claims)
                       if isinstance(c, dict) and c.get("holds") is not None]
            rows.append({"p": p, "frac": frac, "lr": run.configs[k].lr, "wd": run.configs[k].weight_decay,
                         "train100": ms.train_acc_100[k], "test99": ms.test_acc_99[k],
                         "mem_end": e.get("memorisation"), "circuit_end": e.get("circuit_formation"),
                         "cleanup_end": e.get("cleanup"), "claims_held": sum(bool(c["holds"]) for c in decided),
                         "claims_decided": len(decided), "train_s_per_epoch_all_models": secs / a.epochs})
        print(pd.DataFrame(rows).to_string(), flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "search.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
