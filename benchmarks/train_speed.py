"""Training speed on the mainline config: a plain implementation vs grokscope's trainer, same process.

    python benchmarks/train_speed.py [--epochs 40] [--plain-epochs 10] [--device cpu] [--k 5]

(a) plain: the paper's model and loop as the authors wrote it -- all three positions through the network
    (grokscope.model.Transformer), torch.optim.AdamW + LambdaLR warm-up, float64 loss, and a test-set forward
    every epoch;
(b) grokscope: Trainer (fast path, batched AdamW, test every `test_every` epochs as configured, 10 by default).
Prints epochs/s of each and their ratio, the projected time of 40,000 epochs, and K models batched vs one.
"""

from __future__ import annotations

import argparse
import time

import torch

from grokscope.config import Config
from grokscope.model import Transformer
from grokscope.tasks import make_dataset
from grokscope.training import Trainer, cross_entropy_float64, resolve_device


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def plain_epochs_per_s(cfg: Config, epochs: int, dev) -> float:
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

    for _ in range(2):
        epoch()
    sync(dev)
    t = time.perf_counter()
    for _ in range(epochs):
        epoch()
    sync(dev)
    return epochs / (time.perf_counter() - t)


def ours_epochs_per_s(configs: list[Config], epochs: int, dev) -> float:
    tr = Trainer(configs, dev)
    for _ in range(10):  # warm-up (and the lr-0 first steps)
        tr.step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(epochs):
        tr.step()
    sync(dev)
    return epochs / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=50, help="timed epochs of grokscope's trainer")
    ap.add_argument("--plain-epochs", type=int, default=10, help="timed epochs of the plain loop")
    ap.add_argument("--k", type=int, default=5, help="models in the batched comparison")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cfg = Config(epochs=100000)
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}; mainline config "
          f"(p={cfg.p}, frac={cfg.frac_train}, d_model={cfg.d_model}, d_mlp={cfg.d_mlp})")
    plain = plain_epochs_per_s(cfg, args.plain_epochs, dev)
    ours = ours_epochs_per_s([cfg], args.epochs, dev)
    print(f"plain loop      : {plain:8.2f} epochs/s  -> 40k epochs in {40000 / plain / 60:7.1f} min")
    print(f"grokscope (K=1) : {ours:8.2f} epochs/s  -> 40k epochs in {40000 / ours / 60:7.1f} min")
    print(f"ratio grokscope/plain: {ours / plain:.1f}x")
    if args.k > 1:
        oursk = ours_epochs_per_s([cfg.replace(seed=s) for s in range(args.k)], max(args.epochs // args.k, 5), dev)
        print(f"grokscope (K={args.k}) : {oursk:8.2f} epochs/s  -> 40k epochs in {40000 / oursk / 60:7.1f} min")
        print(f"K={args.k} batched time / K=1 time: {ours / oursk:.2f}x (target <= {args.k}x)")


if __name__ == "__main__":
    main()
