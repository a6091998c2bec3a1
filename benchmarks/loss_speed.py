"""What the cross-entropy's two fast paths save per training step, against the plain ones, in one process.

    python benchmarks/loss_speed.py [--steps 20] [--reps 5] [--grokked] [--from RUN ...]

Every training step computes the accurate cross-entropy and logs softmax collapse (the fractions of training
examples whose float32 loss is exactly 0 and whose softmax sums to exactly 1). Two fast paths, both giving the
same numbers (checked here on the logged metrics, and by the tests):

* **fused**: softmax collapse from the cross-entropy's own pass (``cross_entropy_and_collapse``) instead of its
  own max, exp and sum (``softmax_collapse``);
* **fast exp**: ``grokscope.numerics.exp_flushed`` instead of ``torch.exp`` where denormals are flushed: torch's
  float32 exp is about 40x slower per element whose result underflows, which a trained model's wrong classes do.

For the mainline (p = 113, 30% of the pairs) and p = 401 on 5% of the pairs, one model each, from their initial
state; with ``--grokked`` the mainline from train_speed.py's grokked state (the quick preset trained to its end,
cached); and from the saved state of each ``--from RUN`` (a run directory with a state.pt, e.g. a carry under
benchmarks/carry/: a trained model), this prints ms/step of the plain loss (both off), with the fused collapse,
and with both, alternating blocks of ``--steps`` steps (best of ``--reps``), and the ratios to the plain one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from train_speed import cpu_model

from grokscope.config import Config
from grokscope.numerics import configure_denormals
from grokscope.training import Run, rundir
from grokscope.training.trainer import Trainer


class SeparatePass(Trainer):
    """The trainer with softmax collapse computed by its own pass (``softmax_collapse``), as before the fusion."""

    def _loss_acc(self, logits, batch, collapse=False):
        return super()._loss_acc(logits, batch, collapse=False)


def per_step(tr: Trainer, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        tr.step()
    return (time.perf_counter() - t) / steps * 1e3


def variants(cfg: Config, state: Path | dict | None) -> dict[str, Trainer]:
    plain, fused, both = SeparatePass([cfg]), Trainer([cfg]), Trainer([cfg])
    plain.flushed = fused.flushed = False  # torch.exp in the loss
    out = {"plain": plain, "fused": fused, "fused + fast exp": both}
    for tr in out.values():
        if isinstance(state, Path):
            rundir.load_state(state, tr)
        elif state is not None:  # train_speed.py's grokked state: weights, moments, epoch
            for k in ("params", "exp_avg", "exp_avg_sq"):
                getattr(tr, k).copy_(state[k])
            tr.epoch = int(state["epoch"]) - 100  # inside the run: the steps below stay before its last epoch
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--grokked", action="store_true", help="also the mainline from a grokked state")
    ap.add_argument("--from", dest="runs", nargs="*", default=[], help="run directories with a state.pt")
    a = ap.parse_args(argv)
    configure_denormals(True)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); ms/step, best of "
          f"{a.reps} blocks of {a.steps} steps; ratio: plain / variant")
    cases = [("mainline (p 113, 30%), init", Config(test_every=10**6), None),
             ("p 401, 5%, init", Config(p=401, frac_train=0.05, test_every=10**6), None)]
    if a.grokked:
        from train_speed import grokked_state
        cases.append(("mainline, grokked state", Config(test_every=10**6), grokked_state(torch.device("cpu"))))
    for path in map(Path, a.runs):
        run = Run.load(path)
        cases.append((f"{path.name} at {run.checkpoint_epochs[-1]}", run.configs[0].replace(test_every=10**6),
                      path / rundir.STATE))  # training steps only, as for the other cases
    for name, cfg, state in cases:
        trs = variants(cfg, state)
        start = trs["plain"].epoch
        best = {k: float("inf") for k in trs}
        for _ in range(a.reps):
            for k, tr in trs.items():
                best[k] = min(best[k], per_step(tr, a.steps))
        n = min(tr.epoch for tr in trs.values())
        same = all(torch.equal(tr.metrics[m][start:n], trs["plain"].metrics[m][start:n])
                   and torch.equal(tr.params, trs["plain"].params)
                   for tr in trs.values() for m in ("train_loss", "train_acc", "softmax_collapse", "softmax_sum1"))
        print(f"{name:<30} " + "  ".join(f"{k} {v:6.1f}" + (f" ({best['plain'] / v:.2f}x)" if k != "plain" else "")
                                         for k, v in best.items()) + f"  same numbers: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
