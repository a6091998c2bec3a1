"""``grokscope`` command line: parses into config dataclasses and calls the library.

    grokscope train --preset mainline --out runs/mainline
    grokscope train --preset mainline --seeds 0,1,2,3,4 --out runs/seeds
    grokscope train --resume runs/mainline

Bad input exits with code 2 and one line ``grokscope: error: ...`` naming the field; nothing is written: every
value goes through :mod:`grokscope.checks` (config fields in :class:`Config`, options here) and every output path
is checked (:func:`grokscope.files.check_output`) before anything is computed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
import types
import typing
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from .. import checks as ck
from ..model import export as export_mod
from ..measures import forecast as forecast_mod, forecast_calibration, forecast_live
from ..report import experiment as experiment_report, sequence as seqreport
from .. import numerics
from ..training import run as runs, tracking
from . import sequence as seqcli
from ..interp.analysis import analyze, model_and_dataset_from_authors
from ..config import PER_MODEL_FIELDS, PRESETS, Config, ConfigError, field_help
from ..files import DamagedFile, atomic_write, check_output
from ..fourier.keys import check_keys
from ..measures.phases import summary
from ..report import run as report_mod
from ..report.run import report_html, run_progress, write_pngs
from ..training.run import NonFiniteLoss, Run
from ..tasks.sequence import SEQ_PRESETS
from ..training.seqrun import SeqRun, is_seq_run
from ..version import __version__

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
    return ck.parse(name, text, typ) if typ in (int, float) else text


def _opt(name: str, check: Any) -> Any:
    """An argparse ``type`` for option ``name``: ``check(text)`` through :mod:`grokscope.checks`; its one-line
    message is what argparse prints."""
    def conv(text: str) -> Any:
        try:
            return check(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    conv.__name__ = name
    return conv


EPOCH = _opt("epoch", lambda t: ck.integer("epoch", ck.parse("epoch", t, int), lo=0))
MODEL = _opt("model", lambda t: ck.integer("model", ck.parse("model", t, int), lo=0))
UNTIL = _opt("until", lambda t: ck.integer("until", ck.parse("until", t, int), lo=1))
EVERY = _opt("every", lambda t: ck.integer("every", ck.parse("every", t, int), lo=1))
LOSS_THRESHOLD = _opt("threshold", lambda t: ck.number("threshold", ck.parse("threshold", t, float), lo=0,
                                                       lo_open=True))
SEED = _opt("seed", lambda t: ck.seed("seed", ck.parse("seed", t, int)))
FRAC = _opt("frac_train", lambda t: ck.number("frac_train", ck.parse("frac_train", t, float), lo=0, hi=1, lo_open=True))
FORECAST_EVERY = _opt("forecast_every", lambda t: ck.integer("forecast_every", ck.parse("forecast_every", t, int),
                                                           lo=1))
THRESHOLD = _opt("threshold", lambda t: ck.number("threshold", ck.parse("threshold", t, float), lo=0, hi=1,
                                                  lo_open=True))


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train K models (one batched run) into a run directory",
                       description="Train the paper's models. Every config field is a flag; fields that may differ "
                                   "between models of one batched run take comma-separated lists "
                                   f"({', '.join(PER_MODEL_FIELDS)}).")
    p.add_argument("--preset", default="mainline", help="one of: " + ", ".join(PRESETS) + " (default mainline); "
                   "the sequence tasks of Appendix D.3: " + ", ".join(SEQ_PRESETS))
    p.add_argument("--out", help="output run directory (default runs/<preset>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run directory RUN exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory (only a grokscope "
                   "run that no trainer holds; only its run files are deleted)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--seeds", help="comma-separated seeds: one model per seed, trained together")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--until", type=UNTIL, help="stop after this many epochs (the run stays resumable)")
    p.add_argument("--log", default=None, help="also log the metrics to: tensorboard | wandb (offline); needs "
                   "grokscope[tensorboard] or grokscope[wandb]")
    p.add_argument("--log-dir", default=None, help="folder for --log (default: RUN.logs beside the run directory)")
    p.add_argument("--progress-every", type=EVERY, default=None, help="with --log: also log the progress measures of "
                   "every N-th checkpoint (key frequencies: --progress-keys, else those of that checkpoint)")
    p.add_argument("--progress-keys", default=None, help="with --progress-every: comma-separated key frequencies")
    p.add_argument("--no-flush-denormal", action="store_true", help="keep float32 denormals (slower after grokking)")
    p.add_argument("--forecast", action="store_true", help="show each model's forecast grokking epoch in the "
                   "progress bar, recomputed at checkpoints from the epochs so far (what `grokscope forecast RUN "
                   "--until EPOCH` prints; uncalibrated defaults); with --no-progress, one line on stderr each time")
    p.add_argument("--forecast-calibration", default=None, metavar="FILE", help="with --forecast: constants as "
                   "`grokscope forecast --calibration FILE` takes (default: uncalibrated)")
    p.add_argument("--forecast-every", type=FORECAST_EVERY, default=None, help="with --forecast: every N epochs, "
                   "a multiple of checkpoint_every (default: at the checkpoints that keep the forecasts within 5%% "
                   "of the wall time, and at the end)")
    helps = field_help()
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        extra = " (comma list allowed)" if f.name in PER_MODEL_FIELDS else ""
        p.add_argument(flag, dest="cfg_" + f.name, default=None, metavar=f.name.upper(),
                       help=helps[f.name] + extra + f" [default: {f.default}]")
    seqcli.add_flags(p)


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
        lists["seed"] = [ck.seed("seeds", _conv(int, "seeds", t.strip())) for t in args.seeds.split(",")]
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
    t0 = time.perf_counter()
    numerics.configure_denormals(not args.no_flush_denormal)  # before any torch work: reaches every thread
    seq = (args.resume and is_seq_run(args.resume)) or (not args.resume and seqcli.is_seq(args))
    for name in ("forecast_every", "forecast_calibration"):
        if getattr(args, name) is not None and not args.forecast:
            raise ConfigError(f"{name} is invalid without --forecast")
    if args.forecast and seq:
        raise ConfigError("forecast is invalid for a sequence task: it forecasts the modular-arithmetic models")
    if args.resume and is_seq_run(args.resume):
        if args.out or any(getattr(args, "cfg_" + f.name) is not None for f in fields(Config)) or args.seeds \
                or any(getattr(args, "seq_" + n) is not None for n in seqcli.SEQ_ONLY):
            raise ConfigError("resume is invalid with config flags or --out: a resumed run keeps its config")
        return seqcli.cmd_train(args)
    if not args.resume and seqcli.is_seq(args):
        return seqcli.cmd_train(args)
    if args.resume:
        if args.out or any(getattr(args, "cfg_" + f.name) is not None for f in fields(Config)) or args.seeds:
            raise ConfigError("resume is invalid with config flags or --out: a resumed run keeps its config")
        models = runs.Run.load(args.resume).meta["models"]
        live = forecast_live.live_forecast(args.forecast, args.forecast_every, args.forecast_calibration,
                                           Config.from_dict(models[0]).checkpoint_every)
        log = _logger(args, args.resume, models)
        try:
            run = runs.resume(args.resume, device=args.device, progress=not args.no_progress, until=args.until,
                              log=log, forecast=live)
        finally:
            log.close() if log else None
            forecast_live.print_cost(live, time.perf_counter() - t0)
    else:
        configs = configs_from_args(args)
        out = args.out or f"runs/{args.preset}"
        runs.create_run(out, configs, args.overwrite)  # checked before a logger is opened
        live = forecast_live.live_forecast(args.forecast, args.forecast_every, args.forecast_calibration,
                                           configs[0].checkpoint_every)
        log = _logger(args, out, [c.to_dict() for c in configs])
        try:
            run = runs.train(configs, out, device=args.device, overwrite=args.overwrite,
                             progress=not args.no_progress, until=args.until, log=log, forecast=live)
        finally:
            log.close() if log else None
            forecast_live.print_cost(live, time.perf_counter() - t0)
    _summary(run)
    return 0


def _logger(args: argparse.Namespace, run_dir: str, models: list) -> "tracking.MetricsLogger | None":
    if args.log is None:
        for name in ("log_dir", "progress_every", "progress_keys"):
            if getattr(args, name) is not None:
                raise ConfigError(f"{name} is invalid without --log tensorboard|wandb")
        return None
    if args.progress_keys is not None and args.progress_every is None:
        raise ConfigError("progress_keys is invalid without --progress-every")
    keys = _parse_keys(args.progress_keys, models[0]["p"])
    return tracking.MetricsLogger(args.log, args.log_dir or tracking.default_dir(run_dir), Path(run_dir).name,
                                  {"models": models}, run_dir=run_dir, progress_every=args.progress_every, keys=keys)


def _summary(run) -> None:
    if run.metrics.empty:
        return
    print(f"run: {run.path}  models: {run.K}")
    diverged = run.nonfinite()
    for r in run.milestones().itertuples():
        print(f"  model {r.model} (seed {r.seed}): epoch {r.last_epoch}  train loss {r.final_train_loss:.3e}  "
              f"test loss {r.final_test_loss:.3e} acc {r.final_test_acc:.4f}  train acc 100% at "
              f"{_fmt(r.train_acc_100)}  test acc >99% at {_fmt(r.test_acc_99)}"
              + (f"  DIVERGED: train loss non-finite from epoch {diverged[r.model]}" if r.model in diverged else ""))


def _fmt(x) -> str:
    return "-" if x != x else str(int(x))


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", aliases=["analyse"], help="reverse-engineer one checkpoint (paper Section 4)",
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


def _run_with_checkpoints(path: str) -> Run:
    """The run at ``path`` with at least one checkpoint; its config and metrics read (a damaged file is one line
    before anything is computed)."""
    run = Run.load(path)
    if not run.checkpoint_epochs:
        raise ConfigError(f"run={path!r} is invalid: it has no checkpoints yet")
    run.metrics  # noqa: B018 - read to check it
    return run


def _parse_keys(text: str | None, p: int) -> list[int] | None:
    """``--keys`` as distinct frequencies in 1..p // 2 (checked before anything is computed)."""
    if text is None:
        return None
    try:
        keys = [int(k) for k in text.split(",")]
    except ValueError:
        raise ConfigError(f"keys={text!r} is invalid: must be comma-separated integers in 1..{p // 2}") from None
    return check_keys(keys, p)


def _final_finite(run: Run, command: str, instead: str) -> None:
    """The key frequencies of the progress measures come from each model's final checkpoint: refuse a run whose
    final weights are not finite, saying so."""
    for k in range(run.K):
        try:
            run.require_finite(None, k)
        except DamagedFile:
            raise
        except ConfigError:
            e = run.nonfinite().get(k)
            raise ConfigError(f"run={str(run.path)!r} is invalid for {command}: model {k} diverged"
                              + (f" (train loss non-finite from epoch {e})" if e is not None else "")
                              + f" and its final weights are not finite, so its key frequencies are undefined; "
                              + instead) from None


def _run_checkpoint(run: Run, epoch: int | None, model: int) -> int:
    """The checkpoint epoch to analyse (default: the last), checked to exist and to hold finite weights."""
    run._check_model(model)
    epoch = run._checkpoint_epoch(epoch)
    run.require_finite(epoch, model)
    return epoch


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
    if path.is_file() and path.suffix == ".pth":
        if args.seed is None or args.frac_train is None:
            raise ConfigError("seed and frac_train are required for an authors' checkpoint (its split): "
                              "--seed S --frac-train F")
        ck.choice("split", args.split, ("authors",))
        ck.choice("op", args.op, ("add", "subtract", "multiply", "x2xyy2"))
        out = check_output("out", Path(args.out or f"{path.stem}.analysis.json"))
        model, ds = model_and_dataset_from_authors(path, args.seed, args.frac_train, args.op, args.trust_pickle)
        keys = _parse_keys(args.keys, model.cfg.p)
        if not all(bool(v.isfinite().all()) for v in model.state_dict().values()):
            raise ConfigError(f"path={str(path)!r} is invalid: its weights are not finite")
        label = f"{path.name} (authors' split, seed {args.seed}, frac {args.frac_train})"
    else:
        epoch = args.epoch
        if path.is_file() and path.suffix == ".safetensors":
            m = runs._CKPT_RE.match(path.name)
            if not m or not (path.parent.parent / runs.CONFIG).is_file():
                raise ConfigError(f"path={str(path)!r} is invalid: not a run checkpoint (RUN/checkpoints/epoch_N.safetensors)")
            if epoch is not None and epoch != int(m.group(1)):
                raise ConfigError(f"epoch={epoch} is invalid: the checkpoint file is epoch {int(m.group(1))}")
            epoch = int(m.group(1))
            path = path.parent.parent
        elif not path.is_dir():
            raise ConfigError(f"path={str(path)!r} is invalid: no such run directory, run checkpoint or .pth file")
        run = Run.load(path)
        keys = _parse_keys(args.keys, run.configs[0].p)
        epoch = _run_checkpoint(run, epoch, args.model)
        suffix = ("" if args.epoch is None and not str(args.path).endswith(".safetensors") else f"_epoch_{epoch}") + \
            ("" if args.model == 0 else f"_model_{args.model}")
        out = check_output("out", Path(args.out or run.path / f"analysis{suffix}.json"))
        model, ds = run.model(epoch, args.model), run.dataset(args.model)
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
    p.add_argument("--every", type=EVERY, default=None, help="use every N-th checkpoint (default: all)")
    p.add_argument("--recompute", action="store_true", help="ignore a saved progress.parquet")


def cmd_progress(args: argparse.Namespace) -> int:
    run = _run_with_checkpoints(args.run)
    keys = _parse_keys(args.keys, run.configs[0].p)
    for name in (report_mod.PROGRESS_FILE, report_mod.PHASES_FILE):
        check_output("run", run.path / name)
    if keys is None:
        _final_finite(run, "progress", "give the key frequencies with --keys")
    df, rep = run_progress(run, keys=keys, every=args.every, recompute=args.recompute)
    for k, e in run.nonfinite().items():
        print(f"grokscope: warning: model {k} diverged (train loss non-finite from epoch {e}): its progress "
              "measures from then on are NaN", file=sys.stderr)
    print(summary(rep))
    print(f"wrote {run.path / 'progress.parquet'} ({len(df)} rows) and {run.path / 'phases.json'}")
    return 0


def _add_forecast(sub) -> None:
    p = sub.add_parser("forecast", help="forecast each model's grokking epoch from the checkpoints up to --until",
                       description="Forecast, per model, the epoch at which test accuracy passes 99%, from the "
                                   "checkpoints and metrics at epochs <= --until only (key frequencies chosen at "
                                   "the last allowed checkpoint): the restricted loss's log-linear trend "
                                   "extrapolated to a threshold, beside the spectral baseline of Notsawo et al. "
                                   "2023. Writes RUN/forecast.json.")
    p.add_argument("run", help="run directory")
    p.add_argument("--until", type=UNTIL, required=True, help="use only checkpoints and metrics at epochs <= EPOCH")
    p.add_argument("--threshold", type=LOSS_THRESHOLD, default=forecast_calibration.THRESHOLD,
                   help=f"restricted loss taken as grokked (default {forecast_calibration.THRESHOLD:g})")
    p.add_argument("--out", default=None, help="JSON output (default: RUN/forecast.json)")
    p.add_argument("--calibration", default=None, metavar="FILE", help="constants fitted on other models: the "
                   "JSON of benchmarks/forecast_eval.py (its 'calibration') or a bare Calibration object "
                   "(default: uncalibrated, scale 1, interval x/÷ 2; the baseline fitted on the run's other models "
                   "that grokked by --until)")


def cmd_forecast(args: argparse.Namespace) -> int:
    run = _run_with_checkpoints(args.run)
    out = check_output("out", args.out or run.path / forecast_mod.FORECAST_FILE)
    cal = None if args.calibration is None else forecast_calibration.load_calibration(args.calibration)
    res = forecast_mod.forecast_run(run, args.until, cal, threshold=args.threshold)
    print(forecast_mod.format_table(res))
    forecast_mod.write_forecast(out, res, run=str(run.path), until=args.until, threshold=args.threshold,
                                calibration=args.calibration)
    print(f"wrote {out}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="the paper's figures for a run, in one self-contained HTML file",
                       description="Draw the paper's figures (loss curves with phases, Fourier norms, attention and "
                                   "neuron maps, frequency ablations, progress measures, ...) and Tables 1, 2 and the "
                                   "claims table into one HTML file that opens offline. Computes progress.parquet "
                                   "and phases.json first if the run has none. On a sequence-task run (Appendix D.3): its loss "
                                   "curves over the authors', per-token losses (digit addition) or attention "
                                   "patterns and head scores (induction, skip trigram).")
    p.add_argument("run", help="run directory")
    p.add_argument("-o", "--out", default=None, help="HTML file (default RUN/report.html)")
    p.add_argument("--png", default=None, metavar="DIR", help="write the figures as PNG images into DIR instead "
                                                              "(needs `pip install kaleido` and a local Chromium)")
    p.add_argument("--epoch", type=EPOCH, default=None, help="checkpoint analysed for the per-model figures (default: last)")
    p.add_argument("--model", type=MODEL, default=0, help="model analysed for the per-model figures (default 0)")


def cmd_report(args: argparse.Namespace) -> int:
    """Everything is checked first (run, model, epoch, finite weights, output paths); nothing is written before."""
    if is_seq_run(args.run):
        return _cmd_seq_report(args)
    run = _run_with_checkpoints(args.run)
    _run_checkpoint(run, args.epoch, args.model)
    _final_finite(run, "report", "analyse an earlier checkpoint with `grokscope analyze RUN --epoch E`")
    try:
        import plotly  # noqa: F401  (an optional extra)
    except ImportError:
        raise ConfigError("report needs plotly: pip install 'grokscope[plots]'") from None
    for name in (report_mod.PROGRESS_FILE, report_mod.PHASES_FILE):
        check_output("run", run.path / name)
    if args.png:
        check_output("png", args.png, kind="dir")
        try:
            paths = write_pngs(run, args.png, epoch=args.epoch, model=args.model)
        except ImportError as e:
            raise ConfigError(f"png={args.png!r} is invalid here: {e}") from None
        print(f"wrote {len(paths)} PNG files into {args.png}")
        return 0
    out = check_output("out", Path(args.out) if args.out else run.path / "report.html")
    path = report_html(run, out, epoch=args.epoch, model=args.model)
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_seq_report(args: argparse.Namespace) -> int:
    """``grokscope report`` on a sequence-task run (:mod:`grokscope.report.sequence`)."""
    run = SeqRun.load(args.run)
    if args.model != 0:
        raise ConfigError(f"model={args.model} is invalid: a sequence-task run has one model (0)")
    run.metrics  # noqa: B018 - read to check it
    try:
        import plotly  # noqa: F401  (an optional extra)
    except ImportError:
        raise ConfigError("report needs plotly: pip install 'grokscope[plots]'") from None
    epoch = seqreport.check_epoch(run, args.epoch)
    if args.png:
        check_output("png", args.png, kind="dir")
        try:
            paths = seqreport.write_seq_pngs(run, args.png, epoch=epoch)
        except ImportError as e:
            raise ConfigError(f"png={args.png!r} is invalid here: {e}") from None
        print(f"wrote {len(paths)} PNG files into {args.png}")
        return 0
    out = check_output("out", Path(args.out) if args.out else run.path / "report.html")
    path = seqreport.seq_report_html(run, out, epoch=epoch)
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint as a TransformerLens model file",
                       description="Write one model of a run at a checkpoint as a TransformerLens HookedTransformer "
                                   "state dict and config (torch.save of {'cfg', 'state_dict'}); load it with "
                                   "grokscope.model.export.load_transformer_lens(FILE).")
    p.add_argument("run", help="run directory")
    p.add_argument("--epoch", type=EPOCH, default=None, help="checkpoint epoch (default: the last)")
    p.add_argument("--model", type=MODEL, default=0, help="model index in a batched run (default 0)")
    p.add_argument("--to", required=True, help="format: transformer-lens")
    p.add_argument("--out", required=True, help="output file (e.g. model.pt)")


def cmd_export(args: argparse.Namespace) -> int:
    ck.choice("to", args.to, ("transformer-lens",))
    run = _run_with_checkpoints(args.run)
    epoch = _run_checkpoint(run, args.epoch, args.model)
    out = check_output("out", Path(args.out))
    export_mod.save(run.model(epoch, args.model), out)
    print(f"wrote {out} (model {args.model} epoch {epoch}, TransformerLens HookedTransformer format)")
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
    _add_forecast(sub)
    _add_export(sub)
    experiment_report.add_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings (a diverging run) as one line; others as Python shows them."""
    if issubclass(category, NonFiniteLoss):
        print(f"grokscope: warning: {message}", file=sys.stderr)
    else:
        _PY_SHOWWARNING(message, category, filename, lineno, file, line)


_PY_SHOWWARNING = warnings.showwarning


def _interrupted(args: argparse.Namespace) -> None:
    if args.command == "train":
        where = Path(args.resume or args.out or f"runs/{args.preset}")
        if (where / runs.CONFIG).is_file():
            print("grokscope: interrupted; the run directory holds everything so far: resume with "
                  f"`grokscope train --resume {where}`", file=sys.stderr)
        else:
            print("grokscope: interrupted before training started; nothing was written", file=sys.stderr)
    elif args.command == "experiment":
        print("grokscope: interrupted; every group keeps its last checkpoint: rerun the same command to resume",
              file=sys.stderr)
    else:  # analyze/progress/report write their files atomically: nothing half-written is left
        print(f"grokscope: interrupted; {args.command} wrote nothing further", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (one line printed, code 2), or --help / --version (0)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2

    def _terminate(signum, frame):  # `kill PID` stops like Ctrl-C (training: between steps, state saved)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return {"train": cmd_train, "analyze": cmd_analyze, "analyse": cmd_analyze,
                    "progress": cmd_progress, "report": cmd_report, "forecast": cmd_forecast, "export": cmd_export,
                    "experiment": experiment_report.command}[args.command](args)
        except ConfigError as e:
            print(f"grokscope: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            _interrupted(args)
            return 130
        except BrokenPipeError:  # `grokscope ... | head`: the reader left; stop quietly, as a SIGPIPE'd tool does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 141
        except OSError as e:  # the file system refused (permissions, a vanished directory, ...)
            print(f"grokscope: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
            return 2
        except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback on request
            if os.environ.get("GROKSCOPE_TRACEBACK") == "1":
                traceback.print_exc()
            print(f"grokscope: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                  "(please report it; GROKSCOPE_TRACEBACK=1 shows the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
