"""Time computing every progress measure for every checkpoint of a run (grokscope.measures.progress.compute_progress).

    python benchmarks/progress_speed.py RUN_DIR [--every 1] [--repeats 1] [--threads N] [--workers W] [--rows 8]
                                                [--save]

Target for the mainline (p = 113, 401 checkpoints, one model): <= 30 s on 2 CPU cores. Prints one JSON line
(load / forward / measures split, seconds per checkpoint) and a verdict. ``--threads`` sets torch's intra-op
threads (default: torch's choice). ``--workers W`` computes W chunks side by side in threads with one intra-op
thread each (default: the thread count, i.e. one worker per core); ``--threads 1`` (one worker) is faster while
another job is using the other core. ``--save`` also writes
``progress.parquet`` into the run (off by default: the benchmark does not modify the run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

TARGET_S = 30.0
TARGET_CHECKPOINTS = 401


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run directory")
    ap.add_argument("--every", type=int, default=1, help="every n-th checkpoint (default: all)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--rows", type=int, default=None, help="checkpoints x models per batched forward")
    ap.add_argument("--workers", type=int, default=None,
                    help="chunks computed side by side (default: torch's thread count, after --threads)")
    ap.add_argument("--save", action="store_true", help="write progress.parquet into the run")
    args = ap.parse_args(argv)
    if not (args.run / "config.json").is_file():
        print(f"{args.run} is not a grokscope run directory", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    from grokscope.measures.progress import ROWS_PER_CHUNK, compute_progress
    from grokscope.measures.cache import save_progress
    from grokscope.training.run import Run

    run = Run.load(args.run)
    kw = {"every": args.every, "rows_per_chunk": args.rows or ROWS_PER_CHUNK, "workers": args.workers}
    times, parts = [], []
    df = None
    for _ in range(args.repeats):
        tm: dict = {}
        t0 = time.perf_counter()
        df = compute_progress(run, timings=tm, **kw)
        times.append(time.perf_counter() - t0)
        parts.append(tm)
    if args.save:
        save_progress(run, df)
    n = parts[-1]["checkpoints"]
    best, med = min(times), statistics.median(times)
    per_ckpt = med / max(n, 1)
    projected = per_ckpt * TARGET_CHECKPOINTS * run.K
    workers = torch.get_num_threads() if args.workers is None else args.workers
    threads = workers if workers > 1 else torch.get_num_threads()
    out = {"run": str(args.run), "p": run.configs[0].p, "models": run.K, "checkpoints": n,
           "threads": threads, "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "rows_per_chunk": kw["rows_per_chunk"], "workers": workers,
           "seconds": [round(t, 3) for t in times], "best_s": round(best, 3), "median_s": round(med, 3),
           "split_s": {k: round(v, 3) for k, v in parts[-1].items() if k.endswith("_s")},
           "per_checkpoint_model_ms": round(1000 * per_ckpt / run.K, 2),
           "projected_401_checkpoints_s": round(projected, 2), "target_s": TARGET_S, "cores": os.cpu_count(),
           "keys": df.attrs.get("keys") if df is not None else None, "rows": 0 if df is None else len(df)}
    print(json.dumps(out))
    ok = projected <= TARGET_S
    verdict = f"target <= {TARGET_S:g} s: {'OK' if ok else 'MISSED'}" if run.configs[0].p == 113 else \
        "the target is for p = 113"
    print(f"progress: {med:.2f} s for {n} checkpoints x {run.K} model(s) on {threads} thread(s); "
          f"{1000 * per_ckpt / run.K:.1f} ms per checkpoint-model; projected to 401 checkpoints: {projected:.1f} s "
          f"({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
