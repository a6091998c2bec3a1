"""Time one training step of each Appendix D.3 preset on the plain path (``fast=False``), the fast path
(:mod:`grokscope.fast.scored`) with torch's fused attention, and the fast path with the compiled attention
(:mod:`grokscope.fast.kernel`), interleaved in one process so that all three see the same load.

    OMP_NUM_THREADS=1 python benchmarks/seq_speed.py [--steps 10] [--rounds 3] [--presets induction-finite,...]

Each step includes what training does per step (the test evaluation every ``test_every`` steps). Prints, per
preset, the CPU, the best of ``--rounds`` rounds of ``--steps`` steps for each path and the ratios. Where the
kernel cannot be built, its column says so and the other two are still timed.
"""

from __future__ import annotations

import argparse
import time

import torch

from grokscope.fast import scored as seqfast, kernel as seqkernel
from grokscope.config import PRESETS, preset
from grokscope.training import Trainer
from train_speed import cpu_model  # the benchmarks' one CPU description (lscpu: model and ISA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--presets", default=",".join(n for n in PRESETS if not preset(n).make_task().pair_form))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    have_kernel = seqkernel.kernel() is not None
    print(f"CPU: {cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, compiled attention: "
          f"{'built' if have_kernel else 'not available here'}", flush=True)
    paths = {"plain": (False, False), "fast": (True, False)} | ({"kernel": (True, True)} if have_kernel else {})
    for name in args.presets.split(","):
        trs = {p: Trainer([preset(name)], fast=fast) for p, (fast, _) in paths.items()}
        best: dict[str, float] = {}
        for r in range(args.rounds + 1):  # round 0: warm-up
            for p, tr in trs.items():
                seqfast.USE_KERNEL = paths[p][1]
                t = time.perf_counter()
                for _ in range(args.steps):
                    tr.step()
                if r:
                    best[p] = min(best.get(p, float("inf")), (time.perf_counter() - t) / args.steps * 1000)
        seqfast.USE_KERNEL = True
        line = f"{name}: plain {best['plain']:.0f} ms/step, fast (torch attention) {best['fast']:.0f} ms/step " \
               f"x{best['plain'] / best['fast']:.2f}"
        if "kernel" in best:
            line += f", fast (compiled attention) {best['kernel']:.0f} ms/step x{best['plain'] / best['kernel']:.2f} " \
                    f"(x{best['fast'] / best['kernel']:.2f} the torch attention)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
