"""Carry an unfinished experiment (or run) from one session to the next inside the repository, small:

    python benchmarks/carry.py EXP_OR_RUN DEST [--every 1000]     # before the session ends (after SIGTERM)
    cp -r DEST /work/runs/NAME && grokscope experiment NAME --out /work/runs/NAME ...   # the next session resumes

A finished group keeps what makes it finished and summarised (config, metrics, the final checkpoint, progress,
phases, summary: no optimiser state); an unfinished one keeps config, state.pt and the checkpoints at
multiples of --every plus the last, so it resumes bit-exactly, with its progress measures coarser before the
carry. Its metrics.parquet is left out: state.pt holds every logged row, and the resume writes the file again from
it (the file would add about half of state.pt's size again). Delete the carry once the run is done and its
compact result is published (benchmarks/compact_result.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from compact_result import each_run
from grokscope.training import Run

KEEP = ("config.json", "metrics.parquet", "progress.parquet", "phases.json", "summary.parquet")


def carry_run(src: Path, dst: Path, every: int) -> str:
    run = Run.load(src)
    done = run.finished and (src / "summary.parquet").is_file() if (src.parent.name == "groups") else run.finished
    (dst / "checkpoints").mkdir(parents=True, exist_ok=True)
    resumable = not done and (src / "state.pt").is_file()
    for f in KEEP:
        if (src / f).is_file() and not (resumable and f == "metrics.parquet"):
            shutil.copy2(src / f, dst / f)
    epochs = run.checkpoint_epochs
    keep = [epochs[-1]] if done else [e for e in epochs if e % every == 0] + [epochs[-1]]
    for e in sorted(set(keep)):
        name = f"epoch_{e:06d}.safetensors"
        shutil.copy2(src / "checkpoints" / name, dst / "checkpoints" / name)
    if resumable:
        shutil.copy2(src / "state.pt", dst / "state.pt")
    return f"{src.name}: {'done' if done else 'unfinished'}, checkpoints {sorted(set(keep))[:3]}..{epochs[-1]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--every", type=int, default=1000)
    a = ap.parse_args(argv)
    src, dst = Path(a.src), Path(a.dst)
    for run, place in each_run(src, dst):
        print(carry_run(run, place, a.every))
    total = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"{total / 1e6:.1f} MB in {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
