"""Does the authors' induction run start from unscaled embeddings? Train the infinite preset for N steps with
W_E and/or W_pos multiplied by sqrt(d_model) at init; print the train loss at landmarks beside the authors'."""
import sys, math, time, torch
import grokscope.training.trainer as T
from grokscope.config import preset
orig = T.init_params
N = int(sys.argv[1]); variants = sys.argv[2].split(",")
ref = torch.load("../../../shared/reference/induction_head_infinite.pth", weights_only=False, map_location="cpu")["train_losses"]
marks = [0, 50, 100, 200, 300, 400, 600, 800, 1000, 1500, 2000]
marks = [m for m in marks if m <= N]
print("authors", " ".join(f"{m}:{sum(ref[max(0,m-5):m+5])/len(ref[max(0,m-5):m+5]):.2f}" for m in marks), flush=True)
for v in variants:
    def patched(cfg, seed, dtype=torch.float32, v=v):
        p = orig(cfg, seed, dtype)
        s = math.sqrt(cfg.d_model)
        for k in v.split("+"):
            if k in p: p[k] = p[k] * s
        return p
    T.init_params = patched
    cfg = preset("repeated-subsequence-infinite", epochs=N)
    t = time.time(); tr = T.Trainer([cfg]); tr.fit()
    L = tr.metrics["train_loss"][:, 0].tolist()
    print(v, " ".join(f"{m}:{sum(L[max(0,m-5):m+5])/len(L[max(0,m-5):m+5]):.2f}" for m in marks), f"{time.time()-t:.0f}s", flush=True)
