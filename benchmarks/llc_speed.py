"""Time the local learning coefficient (``grokscope progress RUN --llc``) of one mainline-size checkpoint (p = 113,
d_model = 128, the paper's split 0.3) and project a 40-checkpoint sweep.

    python benchmarks/llc_speed.py [--epochs 300] [--threads N] [--skip-sweep]

Trains a mainline-shaped model briefly (``--epochs`` full-batch steps: the weights of an early checkpoint; the
cost of a chain does not depend on how trained the weights are, except that a diverging chain stops early),
then times (1) the calibration sweep (:func:`grokscope.measures.llc.calibrate`, :data:`LR_GRID` x
:data:`NBETA_FACTORS`, 2 chains each), once per run, and (2) one checkpoint's estimate
at the chosen settings (:data:`grokscope.measures.llc.DEFAULT`'s 4 chains x (50 burn-in + 150 draws), batch 256;
a chain that diverges stops early, so the default settings alone, ``--skip-sweep``, can time less). Projection:
sweep + 40 x estimate. Target: < 10 minutes on 2 cores. Prints the CPU (``lscpu``) and the load average: on a
machine whose cores are busy with other work the numbers are slower than on an idle one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

TARGET_S = 600.0
CHECKPOINTS = 40


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
        cores = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("CPU(s)")), "?")
        return f"{name} ({cores} CPUs)"
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=300, help="training steps of the timed checkpoint")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--skip-sweep", action="store_true", help="time only one checkpoint's estimate")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from grokscope.config import Config
    from grokscope.measures import llc as lc
    from grokscope.training.run import train

    print(f"CPU: {cpu()}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()}")
    t0 = time.perf_counter()
    lc.devinterp()
    print(f"import devinterp: {time.perf_counter() - t0:.1f} s (once per process)")
    with tempfile.TemporaryDirectory() as d:
        cfg = Config(epochs=args.epochs, checkpoint_every=args.epochs, test_every=args.epochs)
        run = train([cfg], f"{d}/r", device="cpu", progress=False)
        mc = cfg.model_config
        print(f"model: p {cfg.p}, d_model {mc.d_model}, d_mlp {mc.d_mlp}, heads {mc.n_heads}, trained {args.epochs} "
              f"epochs (train loss {float(run.metrics['train_loss'].iloc[-1]):.3g})")
        ex, classes, what = lc.llc_data(run, 0)
        model = run.model(None, 0)
        settings, sweep = lc.DEFAULT, 0.0
        if not args.skip_sweep:
            from tqdm.auto import tqdm
            t0 = time.perf_counter()
            with tqdm(total=len(lc.LR_GRID) * len(lc.NBETA_FACTORS), desc="sweep", file=sys.stderr) as bar:
                cal = lc.calibrate(model, ex, classes, bar=bar)
            sweep = time.perf_counter() - t0
            settings = lc.Settings(**cal["chosen"])
            print(f"calibration sweep: {sweep:.1f} s ({len(cal['rows'])} settings x 2 chains); chosen lr "
                  f"{settings.lr:g}, n_beta {settings.nbeta:.4g} (stable: {cal['stable']})")
            for row in cal["rows"]:
                llc = "nan" if row["llc"] is None else f"{row['llc']:.4g}"
                print(f"  lr {row['lr']:<8g} n_beta {row['nbeta']:<8.4g} llc {llc:<10} {row['status']}")
        s = settings.resolve(len(ex))
        steps = s.num_chains * (s.num_draws + s.num_burnin_steps)
        t0 = time.perf_counter()
        r = lc.estimate(model, ex, classes, settings)
        est = time.perf_counter() - t0
        print(f"one checkpoint: {est:.1f} s ({steps} SGLD steps of batch {s.batch_size} on {what}: "
              f"{1e3 * est / steps:.1f} ms/step); llc {r['llc']:.4g} +- {r['llc_std']:.3g} at lr {s.lr:g}, "
              f"n_beta {s.nbeta:.4g}: {r['status']} {r['reason']}")
        total = sweep + CHECKPOINTS * est
        print(f"projected {CHECKPOINTS}-checkpoint sweep: {total:.0f} s = {total / 60:.1f} min "
              f"(sweep {sweep:.0f} s + {CHECKPOINTS} x {est:.1f} s); target < {TARGET_S / 60:.0f} min: "
              f"{'met' if total < TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
