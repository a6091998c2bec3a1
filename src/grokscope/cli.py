"""``grokscope`` command line: parses into config dataclasses and calls the library.

    grokscope train --preset mainline --out runs/mainline
    grokscope train --preset mainline --seeds 0,1,2,3,4 --out runs/seeds
    grokscope train --resume runs/mainline

Bad input exits with code 2 and one line ``grokscope: error: ...`` naming the field; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from . import experiment_report, runs
from .analysis import analyze, model_and_dataset_from_authors
from .config import PER_MODEL_FIELDS, PRESETS, Config, ConfigError, field_help
from .phases import summary
from .report import report_html, run_progress, write_pngs
from .runs import Run, atomic_write
from .version import __version__

#: each config field's Python type, from its annotation (``int | None`` for data_seed)
FIELD_TYPES = typing.get_type_hints(Config)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        self.exit(2, f"grokscope: error: {message}\n")


def _conv(typ: Any, name: str, text: str) -> Any:
    """``text`` as a value of the field type ``typ`` (``int``, ``float``, ``str`` or ``X | None``, where the text
    ``none`` is None); one-line ConfigError otherwise."""
    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        if type(None) in args and text.lower() == "none":
            return None
        typ = next(a for a in args if a is not type(None))
    try:
        return typ(text) if typ in (int, float) else text
    except ValueError:
        raise ConfigError(f"{name}={text!r} is invalid: must be {'an integer' if typ is int else 'a number'}") from None


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train K models (one batched run) into a run directory",
                       description="Train the paper's models. Every config field is a flag; fields that may differ "
                                   "between models of one batched run take comma-separated lists "
                                   f"({', '.join(PER_MODEL_FIELDS)}).")
    p.add_argument("--preset", default="mainline", help="one of: " + ", ".join(PRESETS) + " (default mainline)")
    p.add_argument("--out", help="output run directory (default runs/<preset>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run directory RUN exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--seeds", help="comma-separated seeds: one model per seed, trained together")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--until", type=int, help="stop after this many epochs (the run stays resumable)")
    helps = field_help()
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        extra = " (comma list allowed)" if f.name in PER_MODEL_FIELDS else ""
        p.add_argument(flag, dest="cfg_" + f.name, default=None, metavar=f.name.upper(),
                       help=helps[f.name] + extra + f" [default: {f.default}]")


def configs_from_args(args: argparse.Namespace) -> list[Config]:
    if args.preset not in PRESETS:
        raise ConfigError(f"preset={args.preset!r} is invalid: must be one of {', '.join(PRESETS)}")
    base: dict[str, Any] = dict(PRESETS[args.preset])
    lists: dict[str, list[Any]] = {}
    for f in fields(Config):
        text = getattr(args, "cfg_" + f.name)
        if text is None:
            continue
        parts = text.split(",") if f.name in PER_MODEL_FIELDS else [text]
        vals = [_conv(FIELD_TYPES[f.name], f.name, t.strip()) for t in parts]
        if len(vals) == 1:
            base[f.name] = vals[0]
        else:
            lists[f.name] = vals
    if args.seeds is not None:
        if args.cfg_seed is not None:
            raise ConfigError("seed is given twice: use either --seed or --seeds")
        lists["seed"] = [_conv(int, "seeds", t.strip()) for t in args.seeds.split(",")]
    K = max([len(v) for v in lists.values()], default=1)
    for name, v in lists.items():
        if len(v) not in (1, K):
            raise ConfigError(f"{name} has {len(v)} values but other lists have {K}: give 1 or {K}")
    configs = []
    for i in range(K):
        kw = dict(base)
        for name, v in lists.items():
            kw[name] = v[i] if len(v) == K else v[0]
        configs.append(Config(**kw))
    return configs


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.out or any(getattr(args, "cfg_" + f.name) is not None for f in fields(Config)) or args.seeds:
            raise ConfigError("resume is invalid with config flags or --out: a resumed run keeps its config")
        run = runs.resume(args.resume, device=args.device, progress=not args.no_progress, until=args.until)
    else:
        configs = configs_from_args(args)
        out = args.out or f"runs/{args.preset}"
        run = runs.train(configs, out, device=args.device, overwrite=args.overwrite,
                         progress=not args.no_progress, until=args.until)
    _summary(run)
    return 0


def _summary(run) -> None:
    if run.metrics.empty:
        return
    print(f"run: {run.path}  models: {run.K}")
    for r in run.milestones().itertuples():
        print(f"  model {r.model} (seed {r.seed}): epoch {r.last_epoch}  train loss {r.final_train_loss:.3e}  "
              f"test loss {r.final_test_loss:.3e} acc {r.final_test_acc:.4f}  train acc 100% at "
              f"{_fmt(r.train_acc_100)}  test acc >99% at {_fmt(r.test_acc_99)}")


def _fmt(x) -> str:
    return "-" if x != x else str(int(x))


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", aliases=["analyse"], help="reverse-engineer one checkpoint (paper Section 4)",
                       description="Analyse a checkpoint: a run directory (its last checkpoint, or --epoch), one "
                                   "checkpoint file of a run (checkpoints/epoch_*.safetensors), or an authors' "
                                   ".pth file (give --seed and --frac-train of its split). Prints the tables and "
                                   "writes every number to JSON.")
    p.add_argument("path", help="run directory, run checkpoint file, or authors' .pth checkpoint")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch of a run (default: the last)")
    p.add_argument("--model", type=int, default=0, help="model index in a batched run (default 0)")
    p.add_argument("--seed", type=int, default=None, help="authors' checkpoint: seed of their split")
    p.add_argument("--frac-train", type=float, default=None, help="authors' checkpoint: train fraction of their split")
    p.add_argument("--split", default="authors", help="authors' checkpoint: split (only 'authors')")
    p.add_argument("--op", default="add", help="authors' checkpoint: operation (default add)")
    p.add_argument("--keys", default=None, help="comma-separated key frequencies (default: found automatically)")
    p.add_argument("--threshold", type=float, default=0.85, help="neuron FVE threshold (paper: 0.85)")
    p.add_argument("--out", default=None, help="JSON output (default: RUN/analysis[_epoch_N][_model_i].json, or "
                                               "./<name>.analysis.json for an authors' file)")


def _run_with_checkpoints(path: str) -> Run:
    run = Run.load(path)
    if not run.checkpoint_epochs:
        raise ConfigError(f"run={path!r} is invalid: it has no checkpoints yet")
    return run


def _parse_keys(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise ConfigError(f"keys={text!r} is invalid: must be comma-separated integers") from None


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


def cmd_analyze(args: argparse.Namespace) -> int:
    path = Path(args.path)
    keys = _parse_keys(args.keys)
    if path.is_file() and path.suffix == ".pth":
        if args.seed is None or args.frac_train is None:
            raise ConfigError("seed and frac_train are required for an authors' checkpoint (its split): "
                              "--seed S --frac-train F")
        if args.split != "authors":
            raise ConfigError(f"split={args.split!r} is invalid: an authors' checkpoint uses split 'authors'")
        try:
            model, ds = model_and_dataset_from_authors(path, args.seed, args.frac_train, args.op)
        except ValueError as e:
            raise ConfigError(f"path={str(path)!r} is invalid: {e}") from None
        out = Path(args.out or f"{path.stem}.analysis.json")
        label = f"{path.name} (authors' split, seed {args.seed}, frac {args.frac_train})"
    else:
        epoch = args.epoch
        if path.is_file() and path.suffix == ".safetensors":
            if not path.name.startswith("epoch_"):
                raise ConfigError(f"path={str(path)!r} is invalid: not a run checkpoint (checkpoints/epoch_N.safetensors)")
            epoch = int(path.stem[6:])
            path = path.parent.parent
        elif not path.exists():
            raise ConfigError(f"path={str(path)!r} is invalid: no such run directory or checkpoint file")
        run = Run.load(path)
        model, ds = run.model(epoch, args.model), run.dataset(args.model)
        epoch = run.checkpoint_epochs[-1] if epoch is None else epoch
        suffix = ("" if args.epoch is None and not str(args.path).endswith(".safetensors") else f"_epoch_{epoch}") + \
            ("" if args.model == 0 else f"_model_{args.model}")
        out = Path(args.out or run.path / f"analysis{suffix}.json")
        label = f"{run.path} model {args.model} epoch {epoch}"
    res = analyze(model, ds, keys=keys, threshold=args.threshold)
    print(label)
    print(res.summary())
    print(_tables(res.to_dict()))
    text = json.dumps({"source": label, **res.to_dict()}, indent=1)
    atomic_write(out, lambda t: Path(t).write_text(text))
    print(f"wrote {out} ({res.seconds:.1f} s)")
    return 0


def _add_progress(sub) -> None:
    p = sub.add_parser("progress", help="progress measures over every checkpoint, phases and the §5.2 claims",
                       description="Compute the progress measures (paper Section 5) for every checkpoint of every "
                                   "model of a run into RUN/progress.parquet, detect the three phases and check "
                                   "the paper's claims into RUN/phases.json, and print the phase table.")
    p.add_argument("run", help="run directory")
    p.add_argument("--keys", default=None, help="comma-separated key frequencies for every model "
                                                "(default: found on each model's final checkpoint)")
    p.add_argument("--every", type=int, default=None, help="use every N-th checkpoint (default: all)")
    p.add_argument("--recompute", action="store_true", help="ignore a saved progress.parquet")


def cmd_progress(args: argparse.Namespace) -> int:
    keys = _parse_keys(args.keys)
    if args.every is not None and args.every < 1:
        raise ConfigError(f"every={args.every} is invalid: must be an integer >= 1")
    run = _run_with_checkpoints(args.run)
    df, rep = run_progress(run, keys=keys, every=args.every, recompute=args.recompute)
    print(summary(rep))
    print(f"wrote {run.path / 'progress.parquet'} ({len(df)} rows) and {run.path / 'phases.json'}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="the paper's figures for a run, in one self-contained HTML file",
                       description="Draw the paper's figures (loss curves with phases, Fourier norms, attention and "
                                   "neuron maps, frequency ablations, progress measures, ...) and Tables 1, 2 and the "
                                   "claims table into one HTML file that opens offline. Computes progress.parquet "
                                   "and phases.json first if the run has none.")
    p.add_argument("run", help="run directory")
    p.add_argument("-o", "--out", default=None, help="HTML file (default RUN/report.html)")
    p.add_argument("--png", default=None, metavar="DIR", help="write the figures as PNG images into DIR instead "
                                                              "(needs `pip install kaleido` and a local Chromium)")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint analysed for the per-model figures (default: last)")
    p.add_argument("--model", type=int, default=0, help="model analysed for the per-model figures (default 0)")


def cmd_report(args: argparse.Namespace) -> int:
    run = _run_with_checkpoints(args.run)
    run._check_model(args.model)
    try:
        import plotly  # noqa: F401  (an optional extra)
    except ImportError:
        raise ConfigError("report needs plotly: pip install 'grokscope[plots]'") from None
    if args.png:
        try:
            paths = write_pngs(run, args.png, epoch=args.epoch, model=args.model)
        except ImportError as e:
            raise ConfigError(f"png={args.png!r} is invalid here: {e}") from None
        print(f"wrote {len(paths)} PNG files into {args.png}")
        return 0
    out = Path(args.out) if args.out else run.path / "report.html"
    path = report_html(run, out, epoch=args.epoch, model=args.model)
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="grokscope", description="Train and reverse-engineer grokking transformers "
                                                   "(Nanda et al., ICLR 2023).")
    parser.add_argument("--version", action="version", version=f"grokscope {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_train(sub)
    _add_analyze(sub)
    _add_progress(sub)
    _add_report(sub)
    experiment_report.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2

    def _terminate(signum, frame):  # `kill PID` saves the run's state just as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return {"train": cmd_train, "analyze": cmd_analyze, "analyse": cmd_analyze,
                "progress": cmd_progress, "report": cmd_report, "experiment": experiment_report.command}[args.command](args)
    except ConfigError as e:
        print(f"grokscope: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "train":
            where = args.resume or args.out or f"runs/{args.preset}"
            print("grokscope: interrupted; the run directory holds everything so far: resume with "
                  f"`grokscope train --resume {where}`", file=sys.stderr)
        elif args.command == "experiment":
            print("grokscope: interrupted; every group keeps its last checkpoint: rerun the same command to resume",
                  file=sys.stderr)
        else:  # analyze/progress/report write their files atomically: nothing half-written is left
            print(f"grokscope: interrupted; {args.command} wrote nothing further", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
