"""``grokscope analyze`` (alias ``analyse``): reverse-engineer one checkpoint (paper Section 4) of a run, a run's
checkpoint file or an authors' ``.pth`` file, print the tables and write every number to JSON."""

from __future__ import annotations

import argparse
import sys
import json
from pathlib import Path

from .. import checks as ck
from ..training import rundir as runs
from ..interp.analysis import analyze, model_and_dataset_from_authors
from ..config import ConfigError
from ..files import atomic_write, check_output
from ..training.run import Run
from .common import EPOCH, FRAC, MODEL, SEED, THRESHOLD, parse_keys, run_checkpoint, subcommand


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope analyze`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "analyze", examples=[
                       'grokscope analyze runs/quick',
                       'grokscope analyze runs/quick --epoch 600 --out quick-600.json',
                       "grokscope analyze their_mainline.pth --seed 0 --frac-train 0.3   # an authors' checkpoint",
                   ],
                       aliases=["analyse"], help="reverse-engineer one checkpoint (paper Section 4)",
                       description="Analyse a checkpoint: a run directory (its last checkpoint, or --epoch), one "
                                   "checkpoint file of a run (checkpoints/epoch_*.safetensors), or an authors' "
                                   ".pth file (give --seed and --frac-train of its split). Prints the tables and "
                                   "writes every number to JSON.")
    p.add_argument("path", help="run directory, run checkpoint file, or authors' .pth checkpoint")
    p.add_argument("--epoch", type=EPOCH, default=None, help="checkpoint epoch of a run (default: the last)")
    p.add_argument("--model", type=MODEL, default=0, help="model index in a batched run (default 0)")
    p.add_argument("--seed", type=SEED, default=None, help="authors' checkpoint: seed of their split")
    p.add_argument("--frac-train", type=FRAC, default=None, help="authors' checkpoint: train fraction of their split")
    p.add_argument("--split", default="authors", help="authors' checkpoint: split (only 'authors')")
    p.add_argument("--op", default="add", help="authors' checkpoint: operation (default add)")
    p.add_argument("--keys", default=None, help="comma-separated key frequencies (default: found automatically)")
    p.add_argument("--threshold", type=THRESHOLD, default=0.85, help="neuron FVE threshold in (0, 1] (paper: 0.85)")
    p.add_argument("--trust-pickle", action="store_true", help="authors' checkpoint: unpickle it fully (runs code "
                   "from the file: only for a file you trust); default: weights only")
    p.add_argument("--out", default=None, help="JSON output (default: RUN/analysis[_epoch_N][_model_i].json, or "
                                               "./<name>.analysis.json for an authors' file)")
    return p


def _tables(d: dict) -> str:
    """Table 1 (directions of W_L) and the ablation table as text."""
    f = lambda x: "-" if x is None else f"{x:.3g}"  # noqa: E731
    lines = ["", "Table 1: MLP activations projected on the W_L directions u_k (cos) / v_k (sin)",
             f"  {'freq':>4} {'dir':>4} {'top 2-D Fourier terms':<44} {'FVE':>7}"]
    for r in d["composition"]["directions"]:
        terms = ", ".join(f"{t['a']}*{t['b']} {t['value']:+.3g}" for t in r["top_terms"][:2])
        lines.append(f"  {r['freq']:>4} {r['kind']:>4} {terms:<44} {r['fve']:>7.1%}")
    lines += ["", "Ablations (loss / accuracy on all pairs; restricted on test, excluded on train as the paper)",
              f"  {'ablation':<30} {'loss before':>11} {'loss after':>11} {'acc after':>9}"]
    for name, r in d["ablations"]["results"].items():
        b, a = r["before"], r["after"]
        key = "loss_train" if name == "logits_excluded" else "loss_test" if name == "logits_restricted" else "loss_all"
        acc = key.replace("loss", "acc")
        lines.append(f"  {name:<30} {f(b[key]):>11} {f(a[key]):>11} {f(a[acc]):>9}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_file() and path.suffix == ".pth":
        if args.seed is None or args.frac_train is None:
            raise ConfigError("seed and frac_train are required for an authors' checkpoint (its split): "
                              "--seed S --frac-train F")
        ck.choice("split", args.split, ("authors",))
        ck.choice("op", args.op, ("add", "subtract", "multiply", "x2xyy2"))
        out = check_output("out", Path(args.out or f"{path.stem}.analysis.json"), owner="analyze")
        model, ds = model_and_dataset_from_authors(path, args.seed, args.frac_train, args.op, args.trust_pickle)
        keys = parse_keys(args.keys, model.cfg.p)
        if not all(bool(v.isfinite().all()) for v in model.state_dict().values()):
            raise ConfigError(f"path={str(path)!r} is invalid: its weights are not finite")
        label = f"{path.name} (authors' split, seed {args.seed}, frac {args.frac_train})"
    else:
        epoch = args.epoch
        if path.is_file() and path.suffix == ".safetensors":
            m = runs.CKPT_RE.match(path.name)
            if not m or not (path.parent.parent / runs.CONFIG).is_file():
                raise ConfigError(f"path={str(path)!r} is invalid: not a run checkpoint (RUN/checkpoints/epoch_N.safetensors)")
            if epoch is not None and epoch != int(m.group(1)):
                raise ConfigError(f"epoch={epoch} is invalid: the checkpoint file is epoch {int(m.group(1))}")
            epoch = int(m.group(1))
            path = path.parent.parent
        elif not path.is_dir():
            raise ConfigError(f"path={str(path)!r} is invalid: no such run directory, run checkpoint or .pth file")
        run = Run.load(path)
        if not run.config.make_task().pair_form:
            raise ConfigError(f"run={str(path)!r} is invalid for `grokscope analyze`: its task {run.config.task} is "
                              "not a modular task (the Fourier analysis reads the p*p table); `grokscope report RUN` "
                              "draws it")
        keys = parse_keys(args.keys, run.configs[0].p)
        epoch = run_checkpoint(run, epoch, args.model)
        suffix = ("" if args.epoch is None and not str(args.path).endswith(".safetensors") else f"_epoch_{epoch}") + \
            ("" if args.model == 0 else f"_model_{args.model}")
        out = check_output("out", Path(args.out or run.path / f"analysis{suffix}.json"), owner="analyze")
        model, ds = run.model(epoch, args.model), run.dataset(args.model)
        label = f"{run.path} model {args.model} epoch {epoch}"
    print(f"analysing {label}: key frequencies, attention and neuron fits, ablations...", file=sys.stderr,
          flush=True)
    res = analyze(model, ds, keys=keys, threshold=args.threshold)
    print(label)
    print(res.summary())
    print(_tables(res.to_dict()))
    text = json.dumps({"source": label, **res.to_dict()}, indent=1)
    atomic_write(out, lambda t: Path(t).write_text(text))
    print(f"wrote {out} ({res.seconds:.1f} s)")
    return 0
