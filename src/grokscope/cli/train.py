"""``grokscope train``: its flags (every config field; the sequence tasks' fields), the configs they give, and
the run they train or resume (:mod:`grokscope.training.run`; a sequence task: :mod:`grokscope.training.seqrun`).

    grokscope train --preset mainline --out runs/mainline
    grokscope train --preset mainline --seeds 0,1,2,3,4 --out runs/seeds
    grokscope train --resume runs/mainline

The sequence tasks (Appendix D.3):

    grokscope train --preset skip-trigram-finite --out runs/st-finite
    grokscope train --task digit_addition --n-train inf --batch-size 700 --epochs 6000
    grokscope train --resume runs/st-finite

A sequence task is chosen by a preset of :data:`grokscope.tasks.sequence.SEQ_PRESETS` or by ``--task NAME`` (other than
``modular``, the default, which keeps the modular-addition path and its fast path unchanged). The flags shared with
the modular task (``--seed``, ``--lr``, ``--d-model``, ``--epochs``, ...) set the same :class:`SeqConfig` fields;
a flag of the modular task only (``--p``, ``--frac-train``, ...) is an error with a sequence task, and the
sequence-task flags are errors with the modular one. Bad input: one line, exit 2 (:mod:`grokscope.cli`).
"""

from __future__ import annotations

import argparse
import time
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from .. import checks as ck
from .. import numerics
from ..measures import forecast as forecast_mod
from ..training import run as runs, tracking
from ..config import PER_MODEL_FIELDS, PRESETS, Config, ConfigError, field_help
from ..tasks.sequence import SEQ_PRESETS, TASKS, SeqConfig
from ..tasks.sequence import field_help as seq_field_help
from ..training.seqrun import SeqRun, is_seq_run, resume_seq, train_seq
from .common import EVERY, FORECAST_EVERY, UNTIL, parse_keys


#: each config field's Python type, from its annotation (``int | None`` for data_seed)
FIELD_TYPES = typing.get_type_hints(Config)


def _conv(typ: Any, name: str, text: str) -> Any:
    """``text`` as a value of the field type ``typ`` (``int``, ``float``, ``str`` or ``X | None``, where the text
    ``none`` is None); one-line ConfigError otherwise."""
    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        if type(None) in args and text.lower() == "none":
            return None
        typ = next(a for a in args if a is not type(None))
    return ck.parse(name, text, typ) if typ in (int, float) else text


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope train`` parser, added to the subcommands ``sub``."""
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
    add_seq_flags(p)
    return p


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


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    numerics.configure_denormals(not args.no_flush_denormal)  # before any torch work: reaches every thread
    seq = (args.resume and is_seq_run(args.resume)) or (not args.resume and is_seq(args))
    for name in ("forecast_every", "forecast_calibration"):
        if getattr(args, name) is not None and not args.forecast:
            raise ConfigError(f"{name} is invalid without --forecast")
    if args.forecast and seq:
        raise ConfigError("forecast is invalid for a sequence task: it forecasts the modular-arithmetic models")
    if args.resume and is_seq_run(args.resume):
        if args.out or any(getattr(args, "cfg_" + f.name) is not None for f in fields(Config)) or args.seeds \
                or any(getattr(args, "seq_" + n) is not None for n in SEQ_ONLY):
            raise ConfigError("resume is invalid with config flags or --out: a resumed run keeps its config")
        return run_seq(args)
    if not args.resume and is_seq(args):
        return run_seq(args)
    if args.resume:
        if args.out or any(getattr(args, "cfg_" + f.name) is not None for f in fields(Config)) or args.seeds:
            raise ConfigError("resume is invalid with config flags or --out: a resumed run keeps its config")
        models = runs.Run.load(args.resume).meta["models"]
        live = forecast_mod.live_forecast(args.forecast, args.forecast_every, args.forecast_calibration,
                                          Config.from_dict(models[0]).checkpoint_every)
        log = _logger(args, args.resume, models)
        try:
            run = runs.resume(args.resume, device=args.device, progress=not args.no_progress, until=args.until,
                              log=log, forecast=live)
        finally:
            log.close() if log else None
            forecast_mod.print_cost(live, time.perf_counter() - t0)
    else:
        configs = configs_from_args(args)
        out = args.out or f"runs/{args.preset}"
        runs.create_run(out, configs, args.overwrite)  # checked before a logger is opened
        live = forecast_mod.live_forecast(args.forecast, args.forecast_every, args.forecast_calibration,
                                          configs[0].checkpoint_every)
        log = _logger(args, out, [c.to_dict() for c in configs])
        try:
            run = runs.train(configs, out, device=args.device, overwrite=args.overwrite,
                             progress=not args.no_progress, until=args.until, log=log, forecast=live)
        finally:
            log.close() if log else None
            forecast_mod.print_cost(live, time.perf_counter() - t0)
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
    keys = parse_keys(args.progress_keys, models[0]["p"])
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


# ---------------------------------------------------------------------- the sequence tasks (Appendix D.3)
SEQ_TYPES = typing.get_type_hints(SeqConfig)
CONFIG_FIELDS = {f.name for f in fields(Config)}
#: SeqConfig fields that are not modular Config fields: the flags this module adds (dest ``seq_<name>``)
SEQ_ONLY = [f.name for f in fields(SeqConfig) if f.name not in CONFIG_FIELDS]


def add_seq_flags(p: argparse.ArgumentParser) -> None:
    """The sequence-task flags of ``grokscope train``."""
    helps = seq_field_help()
    p.add_argument("--task", dest="seq_task", default=None, metavar="TASK",
                   help="modular (default: the paper's a + b mod p) | " + " | ".join(TASKS) + " (Appendix D.3)")
    for name in SEQ_ONLY:
        if name == "task":
            continue
        default = next(f.default for f in fields(SeqConfig) if f.name == name)
        p.add_argument("--" + name.replace("_", "-"), dest="seq_" + name, default=None, metavar=name.upper(),
                       help=f"sequence tasks: {helps[name]} [default: {default}]")


def is_seq(args: argparse.Namespace) -> bool:
    """Whether ``grokscope train ARGS`` trains a sequence task (checked: a sequence-task flag with the modular
    task is a ConfigError)."""
    task = args.seq_task
    if task is not None:
        ck.choice("task", task, ("modular", *TASKS))
    seq = args.preset in SEQ_PRESETS or (task is not None and task != "modular")
    if not seq:
        given = [n for n in SEQ_ONLY if n != "task" and getattr(args, "seq_" + n) is not None]
        if given:
            raise ConfigError(f"{given[0]} is invalid with task=modular: it is a sequence-task field (give --task "
                              f"{' | '.join(TASKS)} or a preset {', '.join(SEQ_PRESETS)})")
    return seq


def _seq_value(name: str, text: str) -> Any:
    typ = SEQ_TYPES[name]
    args = typing.get_args(typ)
    if type(None) in args:
        if text.strip().lower() in ("none", "inf"):
            return None
        typ = next(a for a in args if a is not type(None))
    return ck.parse(name, text, typ) if typ in (int, float) else text.strip()


def seq_config_from_args(args: argparse.Namespace) -> SeqConfig:
    """The :class:`SeqConfig` of ``grokscope train ARGS`` (a preset of SEQ_PRESETS, then the flags)."""
    if args.preset in SEQ_PRESETS:
        base: dict[str, Any] = dict(SEQ_PRESETS[args.preset])
    elif args.preset == "mainline":  # the default preset: nothing from it
        base = {}
    else:
        raise ConfigError(f"preset={args.preset!r} is invalid with task={args.seq_task}: must be one of "
                          f"{', '.join(SEQ_PRESETS)} (or none)")
    for f in fields(Config):
        if f.name not in SEQ_TYPES and getattr(args, "cfg_" + f.name) is not None:
            raise ConfigError(f"{f.name} is invalid with a sequence task: it is a modular-addition field")
    if args.seeds is not None or args.log is not None:
        raise ConfigError(f"{'seeds' if args.seeds is not None else 'log'} is invalid with a sequence task: one "
                          "model per run, metrics in metrics.parquet")
    for name in SEQ_TYPES:
        text = getattr(args, ("cfg_" if name in CONFIG_FIELDS else "seq_") + name)
        if text is not None and not (name == "task" and text == "modular"):
            base[name] = _seq_value(name, text)
    return SeqConfig(**base)


def run_seq(args: argparse.Namespace, summary: Callable[[SeqRun], None] | None = None) -> int:
    """``grokscope train`` on a sequence task, new or resumed."""
    if args.resume:
        run = resume_seq(args.resume, device=args.device, progress=not args.no_progress, until=args.until)
    else:
        cfg = seq_config_from_args(args)
        out = args.out or f"runs/{args.preset if args.preset in SEQ_PRESETS else cfg.task}"
        run = train_seq(cfg, out, device=args.device, overwrite=args.overwrite, progress=not args.no_progress,
                        until=args.until)
    print_seq_summary(run)
    return 0


def print_seq_summary(run: SeqRun) -> None:
    m = run.milestones()
    f = lambda x: "-" if x != x else str(int(x))  # noqa: E731
    print(f"run: {run.path}  task: {run.config.task}  n_train: {run.config.n_train or 'inf'}")
    print(f"  epoch {f(m['last_epoch'])}  train loss {m['final_train_loss']:.3e}  test loss "
          f"{m['final_test_loss']:.3e}  train acc 100% at {f(m['train_acc_100'])}  test acc >95% at "
          f"{f(m['test_acc_95'])}")
