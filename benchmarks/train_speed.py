"""Training speed on the mainline config, before and after grokking, against a plain loop in the same process.

    python benchmarks/train_speed.py [--epochs 50] [--plain-epochs 5] [--k 5] [--device cpu] [--no-flush-denormal]

Prints, in one process (the machine may be shared and noisy: compare the ratios, not the absolute numbers):

* ms/epoch of grokscope's Trainer (K = 1) and of a plain implementation of the authors' loop (all three
  positions through grokscope.model.Transformer, torch.optim.AdamW + LambdaLR warm-up, float64 loss, a
  test-set forward every epoch), each from the **initial** state and from a **grokked** state: the quick
  preset (same architecture and p, 50% of the pairs) trained to epoch 1,500, test accuracy 100%, its weights
  and Adam moments loaded into the mainline's trainer. That state is trained here the first time (about a
  minute or two) and cached in ``$TMPDIR/grokscope_bench/``;
* the machine's own float32 matmul throughput on the step's large products (preallocated outputs), and the
  fraction of it the step achieves (the FLOPs of those products per epoch / the epoch's time);
* K = 5 models batched vs one;
* the estimated wall time of the mainline's 40,000 epochs: a quarter at the initial-state speed, three
  quarters at the grokked-state speed (the mainline groks at ~10k).

Both loops run in the process's denormal mode (flushed by default, as ``grokscope train``; the flag keeps
denormals, which is what the plain loop would see on its own).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from grokscope.numerics import configure_denormals, denormals_flushed


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
                flags = next((ln for ln in out.splitlines() if ln.startswith("Flags:")), "")
                isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
                return f"{name}{', ' + isa if isa else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, dev, reps: int = 3) -> float:
    """Best of ``reps`` blocks of ``n`` calls, in ms per call."""
    best = float("inf")
    for _ in range(reps):
        sync(dev)
        t = time.perf_counter()
        for _ in range(n):
            fn()
        sync(dev)
        best = min(best, (time.perf_counter() - t) / n * 1000)
    return best


def grokked_state(dev) -> dict[str, torch.Tensor]:
    """The quick preset (seed 0) trained to its end: params and Adam moments, cached."""
    from grokscope.config import preset
    from grokscope.training.trainer import Trainer
    cfg = preset("quick", seed=0)
    import grokscope
    key = hashlib.sha1(f"{grokscope.__version__} {torch.__version__} {cfg}".encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / "grokscope_bench" / f"quick_seed0_{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    print(f"training the quick preset to epoch {cfg.epochs} for the grokked state (cached in {path}) ...", flush=True)
    tr = Trainer([cfg], dev)
    t = time.perf_counter()
    tr.fit()
    print(f"  done in {time.perf_counter() - t:.0f} s: {tr.postfix()}", flush=True)
    st = {k: v for k, v in tr.state_dict().items() if k in ("params", "exp_avg", "exp_avg_sq", "epoch")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(st, tmp)
    os.replace(tmp, path)
    return st


def plain_loop(cfg, dev, state=None):
    """One epoch of the authors'-style loop, as a closure; ``state`` loads weights and Adam moments."""
    from grokscope.model.transformer import Transformer
    from grokscope.tasks.modular import make_dataset
    from grokscope.training.optim import ParamLayout
    from grokscope.training.losses import cross_entropy_float64
    ds = make_dataset(cfg)
    model = Transformer(cfg.model_config, seed=cfg.seed).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / 10, 1))
    tr_x, tr_y = ds.tokens[ds.train_idx].to(dev), ds.labels[ds.train_idx].to(dev)
    te_x, te_y = ds.tokens[ds.test_idx].to(dev), ds.labels[ds.test_idx].to(dev)

    def epoch():
        loss = cross_entropy_float64(model(tr_x)[:, -1, : cfg.p], tr_y).mean()
        test_loss = cross_entropy_float64(model(te_x)[:, -1, : cfg.p], te_y).mean()  # noqa: F841 (the authors' loop)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()

    for _ in range(11):  # past the warm-up; Adam's state exists
        epoch()
    if state is not None:
        layout = ParamLayout(cfg.model_config)
        named = {k: layout.unflatten(state[k].to(dev))
                 for k in ("params", "exp_avg", "exp_avg_sq")}
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(named["params"][n][0])
                st = opt.state[p]
                st["exp_avg"].copy_(named["exp_avg"][n][0])
                st["exp_avg_sq"].copy_(named["exp_avg_sq"][n][0])
                st["step"].fill_(float(state["epoch"]))
    return epoch


def trainer_step(configs, dev, state=None):
    from grokscope.training.trainer import Trainer
    tr = Trainer(configs, dev)
    if state is not None:
        for k in ("params", "exp_avg", "exp_avg_sq"):
            getattr(tr, k).copy_(state[k].to(dev).expand_as(getattr(tr, k)))
        tr.epoch = int(state["epoch"])
    for _ in range(12):  # warm-up (and the lr-0 first step): the buffers exist
        tr.step()

    def step():
        if tr.epoch >= tr.cfg.epochs:
            tr.epoch = 12
        tr.step()
    return step, tr


def matmul_peak(cfg, n_train: int, n_test: int, dev) -> tuple[float, float, float]:
    """GFLOP/s of this machine on the step's large products (outputs preallocated), and the products'
    FLOPs per epoch (train forward + backward, a test forward every ``test_every`` epochs)."""
    N, D, M, V = n_train, cfg.d_model, cfg.d_mlp, cfg.p
    g = torch.Generator(device=dev).manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device=dev)  # noqa: E731
    x_nd, x_nm, x_nv = r(N, D), r(N, M), r(N, V)
    W_dm, W_md, W_dv = r(D, M), r(M, D), r(D, V)
    prods = [  # (a, b): forward pre, out, unembed; backward g_resid, gW_U, gW_out, g_pre, gW_in, g_resid_mid
        (x_nd, W_dm), (x_nm, W_md), (x_nd, W_dv),
        (x_nv, W_dv.t()), (x_nd.t(), x_nv), (x_nm.t(), x_nd), (x_nd, W_md.t()), (x_nd.t(), x_nm), (x_nm, W_dm.t())]
    outs = [torch.empty(a.shape[0], b.shape[1], device=dev) for a, b in prods]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in prods)

    def run():
        for (a, b), o in zip(prods, outs):
            torch.mm(a, b, out=o)
    ms = timed(run, 10, dev, reps=5)
    test_fwd = 2 * n_test * (2 * D * M + D * V)
    return flops / ms / 1e6, flops + test_fwd / cfg.test_every, ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=50, help="timed epochs of grokscope's trainer, per block")
    ap.add_argument("--plain-epochs", type=int, default=5, help="timed epochs of the plain loop, per block")
    ap.add_argument("--k", type=int, default=5, help="models in the batched comparison")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-flush-denormal", action="store_true")
    args = ap.parse_args()
    configure_denormals(not args.no_flush_denormal)  # first, before torch's thread pool starts

    from grokscope.config import Config
    from grokscope.tasks.modular import make_dataset
    from grokscope.training.optim import resolve_device
    dev = resolve_device(args.device)
    cfg = Config(epochs=100000)
    ds = make_dataset(cfg)
    n_train, n_test = len(ds.train_idx), len(ds.test_idx)
    print(f"CPU {cpu_model()}; device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"denormals flushed: {denormals_flushed()}; load average {os.getloadavg()[0]:.1f} (other work shares the cores "
          f"when it is above 0)")
    print(f"mainline config: p={cfg.p}, {n_train} train / {n_test} test pairs, d_model={cfg.d_model}, "
          f"d_mlp={cfg.d_mlp}, test every {cfg.test_every} epochs")
    state = grokked_state(dev)

    res = {}
    for regime, st in (("initial", None), ("grokked", state)):
        step, _ = trainer_step([cfg], dev, st)
        res["ours", regime] = timed(step, args.epochs, dev)
        res["plain", regime] = timed(plain_loop(cfg, dev, st), args.plain_epochs, dev)
    gflops, flops_epoch, _ = matmul_peak(cfg, n_train, n_test, dev)
    stepk, _ = trainer_step([cfg.replace(seed=s) for s in range(args.k)], dev)
    res["oursK", "initial"] = timed(stepk, max(args.epochs // args.k, 5), dev)
    step1, _ = trainer_step([cfg], dev)  # K = 1 again, next to K = 5 in time
    res["ours1b", "initial"] = timed(step1, args.epochs, dev)

    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print(f"{'ms / epoch':38s} {'initial state':>14s} {'grokked state':>14s}")
    print(f"{'plain authors-style loop':38s} {res['plain', 'initial']:14.1f} {res['plain', 'grokked']:14.1f}")
    print(f"{'grokscope Trainer, K = 1':38s} {res['ours', 'initial']:14.1f} {res['ours', 'grokked']:14.1f}")
    r_i = res["plain", "initial"] / res["ours", "initial"]
    r_g = res["plain", "grokked"] / res["ours", "grokked"]
    print(f"{'grokscope / plain speed-up':38s} {r_i:13.1f}x {r_g:13.1f}x   (target >= 25x: "
          f"{'met' if min(r_i, r_g) >= 25 else 'NOT met'})")
    for who in ("ours", "plain"):
        ach = flops_epoch / res[who, "initial"] / 1e6 if who == "ours" else None
        if ach is not None:
            print(f"matmul: this machine {gflops:.0f} GFLOP/s on the step's 9 large products (preallocated); "
                  f"the K = 1 step does their {flops_epoch / 1e9:.2f} GFLOP/epoch at {ach:.0f} GFLOP/s = "
                  f"{ach / gflops:.0%} of it (target >= 50%: {'met' if ach / gflops >= 0.5 else 'NOT met'})")
    k1 = min(res["ours", "initial"], res["ours1b", "initial"])
    rk = res["oursK", "initial"] / k1
    print(f"K = {args.k} batched: {res['oursK', 'initial']:.1f} ms/epoch = {rk:.2f}x one model's "
          f"(target <= 4x: {'met' if rk <= 4 else 'NOT met'})")
    for who, name in (("ours", "grokscope"), ("plain", "plain loop")):
        wall = (10_000 * res[who, "initial"] + 30_000 * res[who, "grokked"]) / 1000
        extra = f" (target <= 8 min: {'met' if wall <= 480 else 'NOT met'})" if who == "ours" else ""
        print(f"estimated mainline, 40,000 epochs (10k initial-state + 30k grokked-state speed), {name}: "
              f"{wall / 60:.1f} min{extra}")


if __name__ == "__main__":
    main()
