"""The forecast evaluation corpus (issue #34): small modular-addition runs that vary what changes the grokking time
(weight decay, lr, data fraction, seed, method), some of which never grok within the budget; their compact results
(metrics and the progress measures the forecasters read, no checkpoints) go to
``benchmarks/results/forecast_corpus/``, one directory per batched run, every file < 1 MB.

    OMP_NUM_THREADS=1 python benchmarks/forecast_corpus.py [--out benchmarks/results/forecast_corpus]
                                                        [--work /tmp/fc_corpus] [--only NAME ...] [--list]

Design
------
* Architecture (all runs): the paper's one-layer transformer shrunk to fit a 2-core CPU: ``p = 59``,
  ``d_model = 64``, 4 heads, ``d_mlp = 256``, full-batch AdamW (beta2 0.98), 10 warm-up steps, ``2,000`` epochs
  (the *budget*), a checkpoint every 20 epochs, test metrics every 10. On the probe (seed 0, frac 0.5) the models
  grok between epoch ~190 (lr 3e-3, wd 3) and ~1,600 (lr 1e-3, wd 1); wd 0.3 does not within 2,000; wd >= 6 with
  lr 1e-3 does not even memorise.
* One batch = one batched run of K = 8 models: ``lr in {1e-3, 3e-3} x weight_decay in {0.3, 1, 2, 4}`` at one
  (data fraction, seed, method). Batches: frac 0.4 / 0.5 / 0.6 x seeds 0-2 with AdamW, frac 0.3 (seed 0; mostly
  no grokking), Grokfast-EMA and OrthoAdamW at frac 0.5 (seed 0): 12 batches, 96 models.
* A *config* is ``(frac, lr, weight_decay, method)``; its seeds are one config. The development / held-out split
  is by config, fixed once (``split.json``): the configs sorted by the SHA-256 of their key, the first third
  held out (16 of 48). No design decision is to look at the held-out part.
* Resumable: a batch whose ``meta.json`` exists is skipped; a batch interrupted while training is resumed from
  its ``state.pt`` in ``--work`` (the checkpoints stay there, outside the repository).
* Each batch directory holds ``meta.json`` (configs, seconds, CPU), ``metrics.parquet`` (per model and epoch:
  train/test loss and accuracy; test columns every 10 epochs), ``progress.parquet`` (per model and checkpoint:
  restricted loss/accuracy, excluded loss, model-independent excluded loss, the Gini coefficients of W_E's and
  W_L's Fourier norms, the sum of squared weights, and ``n_keys``: the number of key frequencies the W_L gap rule
  finds *at that checkpoint*, 0 if none). The restricted and excluded losses at checkpoint ``e`` use the keys
  chosen at ``e`` (the gap rule, else W_L's five largest frequencies): *causal* measures, so a forecast from
  ``until`` that reads the rows ``<= until`` sees nothing after ``until``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


from grokscope.config import preset
from grokscope.measures.forecast_series import causal_progress
from grokscope.training import resume, train

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "forecast_corpus"
ARCH = {"p": 59, "d_model": 64, "n_heads": 4, "d_mlp": 256, "epochs": 2000, "checkpoint_every": 20,
        "test_every": 10}
LRS = (1e-3, 3e-3)
WDS = (0.3, 1.0, 2.0, 4.0)
METHODS = {"adamw": {}, "grokfast_ema": {"grokfast": "ema"}, "orthoadamw": {"optimizer": "orthoadamw"}}
#: (frac, seed, method), in the order they are generated (diverse first, so a partial corpus is still varied)
BATCHES = [(0.5, 0, "adamw"), (0.4, 0, "adamw"), (0.6, 0, "adamw"), (0.3, 0, "adamw"), (0.5, 1, "adamw"),
           (0.5, 0, "grokfast_ema"), (0.4, 1, "adamw"), (0.6, 1, "adamw"), (0.5, 2, "adamw"), (0.4, 2, "adamw"),
           (0.6, 2, "adamw"), (0.5, 0, "orthoadamw")]
METRIC_COLS = ("model", "epoch", "train_loss", "train_acc", "test_loss", "test_acc")


def batch_name(frac: float, seed: int, method: str) -> str:
    return f"f{frac:g}_s{seed}_{method}"


def config_key(frac: float, lr: float, wd: float, method: str) -> str:
    """The split unit: a config without its seed."""
    return f"frac={frac:g},lr={lr:g},wd={wd:g},method={method}"


def split() -> dict[str, str]:
    """Config key -> ``"dev"`` or ``"heldout"``: the configs sorted by the SHA-256 of their key, the first third
    held out."""
    keys = sorted({config_key(f, lr, wd, m) for f, _, m in BATCHES for lr in LRS for wd in WDS},
                  key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    return {k: "heldout" if i < len(keys) // 3 else "dev" for i, k in enumerate(keys)}


def part_of(key: str) -> str:
    return split()[key]


def configs(frac: float, seed: int, method: str):
    return [preset("tiny", **ARCH, frac_train=frac, lr=lr, weight_decay=wd, seed=seed, **METHODS[method])
            for lr in LRS for wd in WDS]


def cpu() -> str:
    try:
        txt = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in txt.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or "unknown"


def make_batch(frac: float, seed: int, method: str, out: Path, work: Path) -> dict:
    name = batch_name(frac, seed, method)
    d, w = out / name, work / name
    t0 = time.perf_counter()
    if (w / "state.pt").is_file():
        run = resume(w, progress=False)
    else:
        run = train(configs(frac, seed, method), w, progress=False, overwrite=True)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    prog = causal_progress(run, run.checkpoint_epochs)
    t_prog = time.perf_counter() - t1
    d.mkdir(parents=True, exist_ok=True)
    m = run.metrics[list(METRIC_COLS)].copy()
    m["model"] = m["model"].astype("int16")
    m["epoch"] = m["epoch"].astype("int32")
    for c in METRIC_COLS[2:]:
        m[c] = m[c].astype("float32")
    m.to_parquet(d / "metrics.parquet", index=False, compression="zstd")
    prog.to_parquet(d / "progress.parquet", index=False, compression="zstd")
    meta = {"name": name, "frac": frac, "seed": seed, "method": method, "budget": ARCH["epochs"],
            "models": [{"model": k, "lr": c.lr, "weight_decay": c.weight_decay,
                        "config": config_key(frac, c.lr, c.weight_decay, method),
                        "part": part_of(config_key(frac, c.lr, c.weight_decay, method))}
                       for k, c in enumerate(run.configs)],
            "config": run.configs[0].to_dict(), "train_seconds": round(t_train, 1),
            "progress_seconds": round(t_prog, 1), "cpu": cpu(), "threads": 1}
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")  # last: its presence marks the batch done
    for f in d.iterdir():
        assert f.stat().st_size < 1_000_000, f
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--work", default="/tmp/fc_corpus", help="where the runs train (checkpoints; not kept)")
    ap.add_argument("--only", nargs="*", default=None, help="batch names to make (default: all, in order)")
    ap.add_argument("--list", action="store_true", help="print the batches and whether each is done")
    a = ap.parse_args(argv)
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    sp = split()
    (out / "split.json").write_text(json.dumps(
        {"rule": "configs sorted by sha256(config key), the first third held out; a config is (frac, lr, wd, "
                 "method), its seeds together", "configs": sp,
         "counts": {p: sum(v == p for v in sp.values()) for p in ("dev", "heldout")}}, indent=1) + "\n")
    for frac, seed, method in BATCHES:
        name = batch_name(frac, seed, method)
        done = (out / name / "meta.json").is_file()
        if a.list:
            print(f"{name:<24} {'done' if done else 'to do'}")
            continue
        if done or (a.only is not None and name not in a.only):
            continue
        t = time.perf_counter()
        meta = make_batch(frac, seed, method, out, work)
        print(f"{name}: {time.perf_counter() - t:.0f} s (train {meta['train_seconds']} s, progress "
              f"{meta['progress_seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
