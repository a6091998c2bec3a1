"""Training speed of deeper ``a b =`` models: the scored-position path (``forward_deep``, the default for
``n_layers > 1`` without dropout) against the plain full-sequence path, in the same process.

    python benchmarks/deep_speed.py [--layers 2] [--epochs 20] [--k 1]

Prints ms/epoch of ``Trainer`` (the mainline config with ``n_layers`` blocks, K models) on each path, after a
warm-up of 3 epochs, alternating the two twice, and their ratio. The machine may be shared: compare the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from grokscope.config import Config
from grokscope.training.trainer import Trainer
from train_speed import cpu_model


def ms_per_epoch(fast: bool, cfg: Config, k: int, epochs: int) -> float:
    tr = Trainer([cfg.replace(seed=s) for s in range(k)], fast=fast)
    tr.fit(3, progress=False)
    t = time.perf_counter()
    tr.fit(3 + epochs, progress=False)
    return (time.perf_counter() - t) / epochs * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--k", type=int, default=1)
    a = ap.parse_args()
    cfg = Config(n_layers=a.layers, epochs=a.epochs + 3)
    print(f"CPU: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; mainline, "
          f"{a.layers} layers, K = {a.k}, {a.epochs} epochs per measurement")
    res = {True: [], False: []}
    for _ in range(2):
        for fast in (False, True):
            res[fast].append(ms_per_epoch(fast, cfg, a.k, a.epochs))
    plain, deep = min(res[False]), min(res[True])
    print(f"plain (forward_plain): {plain:.0f} ms/epoch; scored (forward_deep): {deep:.0f} ms/epoch; "
          f"speed-up {plain / deep:.2f}x")


if __name__ == "__main__":
    main()
