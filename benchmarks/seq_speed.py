"""Time one training step of each Appendix D.3 preset on the plain path (``fast=False``) and the fast path
(:mod:`grokscope.seqfast`), interleaved in one process so that both see the same load.

    OMP_NUM_THREADS=1 python benchmarks/seq_speed.py [--steps 10] [--presets digit-addition-finite,...]

Each step includes what training does per step (the test evaluation every ``test_every`` steps). Prints, per
preset, the best of 2 rounds of ``--steps`` steps for each path and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from grokscope.seqtasks import SEQ_PRESETS, seq_preset
from grokscope.seqtrain import SeqTrainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--presets", default=",".join(SEQ_PRESETS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.presets.split(","):
        trs = {fast: SeqTrainer(seq_preset(name), fast=fast) for fast in (False, True)}
        for tr in trs.values():
            tr.step()  # warm-up
        best = {}
        for _ in range(2):
            for fast, tr in trs.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    tr.step()
                best[fast] = min(best.get(fast, float("inf")), (time.perf_counter() - t) / args.steps * 1000)
        print(f"{name}: plain {best[False]:.0f} ms/step, fast {best[True]:.0f} ms/step, x{best[False] / best[True]:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
