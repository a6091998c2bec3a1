"""Does the authors' induction run start from unscaled embeddings? Train the infinite preset for N steps with
W_E and/or W_pos drawn without the 1/sqrt(d_model) scale and print the train loss at landmarks (mean of the 10
steps around each) beside the authors'. Run from this folder:

    OMP_NUM_THREADS=1 python init_probe.py 1000 W_E,W_pos,W_E+W_pos,none

``W_E`` alone is what ``embed_init="unit"`` now does; the patch below also covers ``W_pos``, which has no option."""
import math
import sys
import time

import torch

import grokscope.training.trainer as T
from grokscope.config import preset

N, variants = int(sys.argv[1]), sys.argv[2].split(",")
MARKS = [m for m in (0, 50, 100, 200, 300, 400, 600, 800, 1000, 1500, 2000) if m <= N]
ref = torch.load("../../../shared/reference/induction_head_infinite.pth", weights_only=False,
                 map_location="cpu")["train_losses"]
orig = T.init_params


def landmarks(losses) -> str:
    return " ".join(f"{m}:{sum(w) / len(w):.2f}" for m in MARKS for w in [losses[max(0, m - 5): m + 5]])


print("authors", landmarks(ref), flush=True)
for v in variants:
    def unscaled(cfg, seed, dtype=torch.float32, embed_init="scaled", names=v.split("+")):
        p = orig(cfg, seed, dtype)
        return {k: t * math.sqrt(cfg.d_model) if k in names else t for k, t in p.items()}
    T.init_params = unscaled
    t0 = time.time()
    tr = T.Trainer([preset("repeated-subsequence-infinite", epochs=N)]).fit()
    print(v, landmarks(tr.metrics["train_loss"][:, 0].tolist()), f"{time.time() - t0:.0f}s", flush=True)
