"""Time ``grokscope.interp.analysis.analyze`` end to end on the authors' mainline-size checkpoint (p = 113).

    python benchmarks/analysis_speed.py [--path FILE] [--repeats 3] [--threads N]

Target: <= 5 s per analysis on 2 CPU cores. Prints the load time, every repeat, the best and the median.
``--threads`` sets torch's intra-op threads (default: torch's own choice). On a machine whose other cores are
busy, ``--threads 1`` can be much faster than 2: OpenMP hand-offs to a descheduled thread stall every op.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "reference" / "low_precision_mod_addition.pth"
TARGET_S = 5.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", type=Path, default=DEFAULT, help="authors' checkpoint (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="split seed of the checkpoint (low_precision: 1)")
    ap.add_argument("--frac-train", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if not args.path.is_file():
        print(f"no checkpoint at {args.path}; pass --path", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    from grokscope.interp.analysis import analyze, model_and_dataset_from_authors

    t0 = time.perf_counter()
    model, ds = model_and_dataset_from_authors(args.path, args.seed, args.frac_train)
    load_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = analyze(model, ds)
        times.append(time.perf_counter() - t0)
    best, med = min(times), statistics.median(times)
    out = {"checkpoint": args.path.name, "p": res.p, "d_mlp": res.d_mlp, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "load_s": round(load_s, 3),
           "analyze_s": [round(t, 3) for t in times], "best_s": round(best, 3), "median_s": round(med, 3),
           "target_s": TARGET_S, "within_target": med <= TARGET_S, "keys": res.keys}
    print(json.dumps(out))
    print(f"analyze: best {best:.2f} s, median {med:.2f} s over {args.repeats} runs on {torch.get_num_threads()} "
          f"thread(s) (target <= {TARGET_S:g} s: {'OK' if med <= TARGET_S else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
