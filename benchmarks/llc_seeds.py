"""The LLC's turning points against the three phases, per model, over one or more runs (the docs' five-seed table).

    grokscope experiment seeds --epochs 14000 --out runs/seeds          # the mainline, five seeds
    grokscope progress runs/seeds/groups/00_mainline --llc-every 4      # phases + the LLC of every 4th checkpoint
    python benchmarks/llc_seeds.py runs/seeds/groups/00_mainline [...] [--json out.json]

Prints one markdown row per model: its seed, the phase ends, the first epoch of test accuracy > 99%, the LLC's
peak (value, epoch, phase), its steepest fall (epoch, phase, rate per 1,000 epochs), the same from the end of
memorisation on, the first epoch the LLC is down to a tenth of its level there, the final LLC and the rank
correlation of the LLC with the test loss (:func:`grokscope.measures.llc_phases.llc_turning_points`). Every run
must have been through ``grokscope progress RUN --llc``.
"""

from __future__ import annotations

import argparse
import json
import math

from grokscope.measures.llc_phases import llc_turning_points
from grokscope.training.run import Run


def rows(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        run = Run.load(p)
        ms = run.milestones().set_index("model")
        for r in llc_turning_points(run).to_dict("records"):
            k = int(r["model"])
            out.append({"run": str(p), "seed": int(run.configs[k].seed), "test_acc_99": ms.loc[k, "test_acc_99"],
                        **r})
    return out


def fmt(v, spec=",.0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def table(rs: list[dict]) -> str:
    head = ("| seed | phase ends (mem. / circuit / cleanup) | test acc > 99% | LLC peak (epoch, phase) | steepest fall "
            "(epoch, phase; per 1k epochs) | steepest fall after memorisation | LLC at a tenth | final LLC "
            "| rank corr. with test loss |")
    lines = [head, "| " + " | ".join(["---"] * 9) + " |"]
    for r in sorted(rs, key=lambda r: r["seed"]):
        lines.append(
            f"| {r['seed']} | {fmt(r['memorisation_end'])} / {fmt(r['circuit_formation_end'])} / "
            f"{fmt(r['cleanup_end'])} | {fmt(r['test_acc_99'])} | {fmt(r['llc_max'], '.0f')} "
            f"({fmt(r['llc_max_epoch'])}, {r['llc_max_phase'].replace('_', ' ')}) | {fmt(r['llc_fall_epoch'])}, "
            f"{r['llc_fall_phase'].replace('_', ' ')}; {fmt(r['llc_fall_rate'], '.0f')} | {fmt(r['llc_late_fall_epoch'])}, "
            f"{r['llc_late_fall_phase'].replace('_', ' ')}; {fmt(r['llc_late_fall_rate'], '.0f')} "
            f"| {fmt(r['llc_tenth_epoch'])} | {fmt(r['llc_final'], '.1f')} "
            f"| {fmt(r['spearman_test_loss'], '.2f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories that have been through `grokscope progress RUN --llc`")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    rs = rows(a.runs)
    print(table(rs))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rs, f, indent=1, default=lambda x: None if x != x else float(x))


if __name__ == "__main__":
    main()
