"""Write the compact, published form of a finished run or experiment: one small directory per model that
`grokscope.Run.load` opens (config.json, metrics.parquet, the final checkpoint, the model's rows of
progress.parquet and its entry of phases.json) and no optimiser state; every file under 1 MB.

    python benchmarks/compact_result.py RUN_OR_EXPERIMENT OUT [--max-mb 0.95] [--no-checkpoint]

An experiment keeps experiment.json and summary.parquet, and each finished group's models go to
OUT/groups/G/modelK (unfinished groups are left out). The
metrics keep every logged epoch unless that file would exceed --max-mb: then every N-th epoch and the last (N = 2,
4, ..., then multiples of test_every, so every kept row has its test loss), and OUT/.../compact.json records N. A run of K models gives OUT/modelK.
A run measured by `grokscope progress --llc` also keeps its llc_calibration.json and the model's entries of llc.json.
--no-checkpoint leaves the final checkpoint out (a result read from its metrics and measures only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
from safetensors.torch import save_file

from grokscope.training import Run


def _write_metrics(m: pd.DataFrame, out: Path, max_bytes: float, test_every: int) -> int:
    """Every N-th logged epoch (and the last), N = 1, 2, 4, ... and, past test_every, test_every * 2^j (so the
    kept rows keep their test losses): the smallest N whose file fits in ``max_bytes``."""
    last = int(m["epoch"].max())
    every = 1
    while True:
        keep = m[(m["epoch"] % every == 0) | (m["epoch"] == last)]
        keep.to_parquet(out, index=False, compression="zstd")
        if out.stat().st_size <= max_bytes or every > last:
            return every
        every = every * 2 if every * 2 < test_every else (test_every if every < test_every else every * 2)


def compact_run(src: Path, out: Path, max_bytes: float, source: str, checkpoint: bool = True) -> list[Path]:
    run = Run.load(src)
    epoch = run.checkpoint_epochs[-1]
    params = run.stacked_params(epoch)
    metrics = run.metrics
    prog = pd.read_parquet(src / "progress.parquet") if (src / "progress.parquet").is_file() else None
    phases = json.loads((src / "phases.json").read_text()) if (src / "phases.json").is_file() else None
    stops = run.stop_epochs()
    llc = json.loads((src / "llc.json").read_text()) if (src / "llc.json").is_file() else None
    made = []
    for k in range(run.K):
        d = out / f"model{k}" if run.K > 1 else out
        (d / "checkpoints").mkdir(parents=True, exist_ok=True)
        meta = {**{key: v for key, v in run.meta.items() if key not in ("kind", "config", "models")},
                "models": [run.configs[k].to_dict()]}  # the current format, also for a run written by an older one
        (d / "config.json").write_text(json.dumps(meta, indent=2))
        if checkpoint:
            save_file({n: v[k:k + 1].contiguous() for n, v in params.items()},
                      str(d / "checkpoints" / f"epoch_{epoch:06d}.safetensors"))
        if llc is not None:
            mine = [{**c, "model": 0} for c in llc.get("checkpoints", []) if int(c["model"]) == k]
            (d / "llc.json").write_text(json.dumps({**llc, "checkpoints": mine}, indent=1))
            if (src / "llc_calibration.json").is_file():
                shutil.copy2(src / "llc_calibration.json", d / "llc_calibration.json")
        mk = metrics[metrics["model"] == k].assign(model=0)
        every = _write_metrics(mk, d / "metrics.parquet", max_bytes, run.configs[k].test_every)
        if prog is not None:
            prog[prog["model"] == k].assign(model=0).to_parquet(d / "progress.parquet", index=False,
                                                                compression="zstd")
        if phases is not None and isinstance(phases.get("models"), list) and len(phases["models"]) == run.K:
            (d / "phases.json").write_text(json.dumps({**phases, "models": [{**phases["models"][k], "model": 0}]},
                                                      indent=1))
        (d / "compact.json").write_text(json.dumps({
            "source": source, "model": k, "final_epoch": epoch, "metrics_every": every,
            "stopped_at": stops[k], "note": "compact published result: no optimiser state; the final checkpoint "
            "only" + ("" if checkpoint else " (here: none)") + "; metrics.parquet holds every metrics_every-th "
            "epoch and the last"}, indent=1))
        made.append(d)
    return made


def each_run(src: Path, out: Path, keep=lambda g: True):
    """``out`` made empty, then ``(run, its place under out)`` for ``src`` itself (a run) or for each group of
    ``src`` (an experiment, whose experiment.json and summary.parquet are copied) for which ``keep(group)``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not (src / "experiment.json").is_file():
        yield src, out
        return
    for f in ("experiment.json", "summary.parquet"):
        if (src / f).is_file():
            shutil.copy2(src / f, out / f)
    for g in sorted((src / "groups").iterdir()):
        if (g / "config.json").is_file() and keep(g):
            yield g, out / "groups" / g.name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--max-mb", type=float, default=0.95)
    ap.add_argument("--no-checkpoint", action="store_true", help="leave the final checkpoint out")
    a = ap.parse_args(argv)
    src, out, max_bytes = Path(a.src), Path(a.out), a.max_mb * 1e6
    # an unfinished group has no result yet
    for g, dst in each_run(src, out, keep=lambda g: Run.load(g).finished):
        compact_run(g, dst, max_bytes, f"{src.name}/groups/{g.name}" if g != src else src.name, not a.no_checkpoint)
    big = [f for f in out.rglob("*") if f.is_file() and f.stat().st_size > 1e6]
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"{f.stat().st_size / 1e6:7.3f} MB  {f.relative_to(out)}")
    if big:
        print("over 1 MB:", *big, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
