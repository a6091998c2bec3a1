"""``grokscope train``: its flags (every config field: the shared ones and every task's), the configs they give,
and the run they train or resume (:mod:`grokscope.training.run`).

    grokscope train --preset mainline --out runs/mainline
    grokscope train --preset mainline --seeds 0,1,2,3,4 --out runs/seeds
    grokscope train --preset skip-trigram-finite --out runs/st-finite
    grokscope train --task digit-addition --n-train inf --batch-size 700 --epochs 6000 --out runs/da
    grokscope train --resume runs/mainline
    grokscope train --resume runs/quick --epochs 3000      # a finished run trained on
    grokscope train --config runs/quick/config.json --out runs/quick-again

A task's own flags (``--p``, ``--frac-train``, ``--n-train``, ``--seq-len``, ...) are errors with a task that does
not have them; fields that may differ between the models of one batched run take comma-separated lists. Bad
input: one line, exit 2 (:mod:`grokscope.cli`).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from .. import checks as ck
from .. import numerics
from ..measures import forecast_live as forecast_mod
from ..training import run as runs
from ..report import tracking
from ..config import (PER_MODEL_FIELDS, PRESETS, SHARED_FIELDS, Config, ConfigError, field_help, field_tasks,
                      preset_key)
from ..tasks import TASKS, canonical
from .common import EVERY, FORECAST_EVERY, UNTIL, parse_keys, subcommand


#: each config field's Python type, from its annotation (``int | None`` for data_seed), the tasks' fields too
FIELD_TYPES = {**{n: t for cls in TASKS.values() for n, t in typing.get_type_hints(cls.Options).items()},
               **{k: v for k, v in typing.get_type_hints(Config).items() if k != "options"}}
#: every config flag: the shared fields, the task, then every task's own fields
FLAG_FIELDS = ("task", *(f.name for f in SHARED_FIELDS), *field_tasks())
#: fields whose None means "no limit": the text ``inf`` gives None too (``--n-train inf``: fresh data every step)
INFINITE = ("n_train",)
PER_MODEL = set(PER_MODEL_FIELDS) | {n for cls in TASKS.values() for n in cls.Options.per_model}


def _conv(typ: Any, name: str, text: str) -> Any:
    """``text`` as a value of the field type ``typ`` (``int``, ``float``, ``str`` or ``X | None``, where the text
    ``none`` is None); one-line ConfigError otherwise."""
    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        if type(None) in args and (text.lower() == "none" or (name in INFINITE and text.lower() == "inf")):
            return None
        typ = next(a for a in args if a is not type(None))
    return ck.parse(name, text, typ) if typ in (int, float) else text


#: ``grokscope train --help``'s groups of config flags (a field not named here is listed under "methods")
FLAG_GROUPS = {
    "model": ("n_layers", "d_model", "n_heads", "d_mlp", "act"),
    "optimiser and training": ("seed", "epochs", "lr", "weight_decay", "beta1", "beta2", "eps", "warmup",
                               "loss_dtype"),
    "stopping (off by default: the paper's runs train every epoch)": ("stop_below", "stop_patience"),
    "evaluation and checkpoints": ("test_every", "checkpoint_every"),
}
EXAMPLES = [
    "grokscope train --preset quick --out runs/quick          # groks in minutes",
    "grokscope train --out runs/mainline                      # the paper's mainline, 40,000 epochs",
    "grokscope train --preset mainline --seeds 0,1,2 --out runs/seeds   # 3 models trained together",
    "grokscope train --preset quick --weight-decay 0.3,1,3 --out runs/wd  # one model per weight decay",
    "grokscope train --preset quick --optimizer orthoadamw --grokfast ema --out runs/methods",
    "grokscope train --preset skip-trigram-finite --out runs/st-finite",
    "grokscope train --task digit-addition --n-train inf --batch-size 700 --epochs 6000 --out runs/da",
    "grokscope train --resume runs/quick                     # continue where it stopped",
    "grokscope train --resume runs/quick --epochs 3000       # train a finished run on",
    "grokscope train --config runs/quick/config.json --out runs/again   # replay a run",
]


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope train`` parser, added to the subcommands ``sub``: the run's own options, then every config
    field as a flag, in groups (the task's data, the model, the optimiser, methods, stopping, evaluation)."""
    p = subcommand(sub, "train", help="train K models (one batched run) into a run directory", examples=EXAMPLES,
                   usage="grokscope train [--preset NAME | --task TASK | --config FILE | --resume RUN] [--out DIR] "
                         "[--FIELD VALUE ...]",
                   description="Train the paper's models on any task. Every config field is a flag; fields that "
                               "may differ between models of one batched run take comma-separated lists "
                               f"({', '.join(sorted(PER_MODEL))}).")
    what = p.add_argument_group("what to train and where")
    what.add_argument("--preset", default=None, help="one of: " + ", ".join(PRESETS) + " (default: mainline, or "
                      "none with --task)")
    what.add_argument("--task", dest="cfg_task", default=None, metavar="TASK",
                      help="one of: " + ", ".join(TASKS) + " [default: add]")
    what.add_argument("--out", help="output run directory (default runs/<preset>)")
    what.add_argument("--seeds", help="comma-separated seeds: one model per seed, trained together")
    what.add_argument("--resume", metavar="RUN", help="continue the run directory RUN exactly where it stopped; "
                      "with --epochs N, train a finished run on to N epochs (as if trained to N from the start)")
    what.add_argument("--config", metavar="FILE", help="train the models of a run's config.json again (a replay; "
                      "config flags given beside it override its values, e.g. --seed 1)")
    what.add_argument("--overwrite", action="store_true", help="replace an existing run directory (only a "
                      "grokscope run that no trainer holds; only its run files are deleted)")
    what.add_argument("--until", type=UNTIL, help="stop after this many epochs (the run stays resumable)")
    what.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    out = p.add_argument_group("progress and logging")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--log", default=None, help="also log the metrics to: tensorboard | wandb; needs "
                     "grokscope[tensorboard] or grokscope[wandb]")
    out.add_argument("--wandb-project", default=None, help="with --log wandb: the W&B project (default grokscope)")
    out.add_argument("--wandb-entity", default=None, help="with --log wandb: the W&B entity (team or user)")
    out.add_argument("--wandb-mode", default=None, help="with --log wandb: online | offline | disabled (default: "
                     "online when WANDB_API_KEY is set, else offline)")
    out.add_argument("--log-dir", default=None, help="folder for --log (default: RUN.logs beside the run directory)")
    out.add_argument("--progress-every", type=EVERY, default=None, help="with --log: also log the progress measures "
                     "of every N-th checkpoint (key frequencies: --progress-keys, else those of that checkpoint)")
    out.add_argument("--progress-keys", default=None, help="with --progress-every: comma-separated key frequencies")
    out.add_argument("--forecast", action="store_true", help="show each model's forecast grokking epoch in the "
                     "progress bar, recomputed at checkpoints from the epochs so far (what `grokscope forecast RUN "
                     "--until EPOCH` prints; uncalibrated defaults); with --no-progress, one line on stderr each time")
    out.add_argument("--forecast-calibration", default=None, metavar="FILE", help="with --forecast: constants as "
                     "`grokscope forecast --calibration FILE` takes (default: uncalibrated)")
    out.add_argument("--forecast-every", type=FORECAST_EVERY, default=None, help="with --forecast: every N epochs, "
                     "a multiple of checkpoint_every (default: at the checkpoints that keep the forecasts within "
                     "5%% of the wall time, and at the end)")
    out.add_argument("--no-flush-denormal", action="store_true", help="keep float32 denormals (slower after "
                     "grokking)")
    helps, owners = field_help(), field_tasks()
    defaults = {f.name: f.default for f in SHARED_FIELDS} | {"task": "add"}
    for cls in TASKS.values():
        for f in fields(cls.Options):
            defaults.setdefault(f.name, f.default)
    named = {n for names in FLAG_GROUPS.values() for n in names}
    groups = {"data (the task's fields; [tasks] that have each)": [*field_tasks(), "data_seed"],
              **{title: list(names) for title, names in FLAG_GROUPS.items()},
              "regularisation and methods beyond the paper": [n for n in FLAG_FIELDS if n not in named
                                                              and n not in field_tasks() and n not in ("task",
                                                                                                      "data_seed")]}
    for title, names in groups.items():
        g = p.add_argument_group(title)
        for name in names:
            extra = " (comma list allowed)" if name in PER_MODEL else ""
            tasks = owners.get(name)
            where = f" [{', '.join(tasks)}]" if tasks and len(tasks) < len(TASKS) else ""
            g.add_argument("--" + name.replace("_", "-"), dest="cfg_" + name, default=None, metavar=name.upper(),
                           help=helps[name] + extra + where + f" [default: {defaults[name]}]")
    return p


def preset_name(args: argparse.Namespace) -> str | None:
    """The preset of ``grokscope train ARGS`` (its canonical spelling): the one given, else mainline unless a task
    is given."""
    if args.preset is None:
        return None if args.cfg_task is not None else "mainline"
    return preset_key(args.preset)


def replay_configs(path: str) -> list[dict[str, Any]]:
    """The model configs of a run's config.json (any format grokscope wrote), or of a file holding one config."""
    from ..files import load
    from ..training import rundir

    f = Path(path)
    if f.is_dir():
        f = f / rundir.CONFIG
    if not f.is_file():
        raise ConfigError(f"config={path!r} is invalid: no such file (a run's config.json, or a JSON config)")

    def problem(d: Any) -> str | None:
        return rundir.meta_problem(d if isinstance(d, dict) and ("models" in d or "kind" in d) else {"models": [d]})

    meta = load(f, lambda x: __import__("json").loads(x.read_text()), problem)
    meta = meta if "models" in meta or "kind" in meta else {"models": [meta]}
    return [c.to_dict() for c in rundir.configs_of(meta)]


def configs_from_args(args: argparse.Namespace) -> list[Config]:
    if getattr(args, "config", None) is not None:
        if args.preset is not None or args.seeds is not None:
            raise ConfigError("config is invalid with --preset or --seeds: the file gives the models")
        models = replay_configs(args.config)
        over = {n: _conv(FIELD_TYPES[n], n, getattr(args, "cfg_" + n).strip()) for n in FLAG_FIELDS
                if n != "task" and getattr(args, "cfg_" + n) is not None}
        if args.cfg_task is not None:
            over["task"] = canonical(args.cfg_task)
        return [Config(**{**m, **over}) for m in models]
    name = preset_name(args)
    base: dict[str, Any] = dict(PRESETS[name]) if name else {}
    if args.cfg_task is not None:
        task = canonical(args.cfg_task)
        if name and canonical(base.get("task", "add")) != task:
            raise ConfigError(f"task={args.cfg_task!r} is invalid with preset={name!r}: the preset trains "
                              f"{base.get('task', 'add')}")
        base["task"] = task
    lists: dict[str, list[Any]] = {}
    for fname in FLAG_FIELDS:
        text = getattr(args, "cfg_" + fname)
        if text is None or fname == "task":
            continue
        parts = text.split(",") if fname in PER_MODEL else [text]
        vals = [_conv(FIELD_TYPES[fname], fname, t.strip()) for t in parts]
        if len(vals) == 1:
            base[fname] = vals[0]
        else:
            lists[fname] = vals
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
    for name in ("forecast_every", "forecast_calibration"):
        if getattr(args, name) is not None and not args.forecast:
            raise ConfigError(f"{name} is invalid without --forecast")
    if args.resume:
        if args.out or args.preset or args.config or args.seeds or \
                any(getattr(args, "cfg_" + n) is not None for n in FLAG_FIELDS if n != "epochs"):
            raise ConfigError("resume is invalid with config flags, --preset, --config or --out: a resumed run keeps "
                              "its config (only --epochs N, to train it on to N epochs)")
        epochs = None if args.cfg_epochs is None else _conv(int, "epochs", args.cfg_epochs)
        configs = runs.Run.load(args.resume).configs
        _check_forecast(args, configs)
        live = forecast_mod.live_forecast(args.forecast, args.forecast_every, args.forecast_calibration,
                                          configs[0].checkpoint_every)
        log = _logger(args, args.resume, configs)
        try:
            run = runs.resume(args.resume, device=args.device, progress=not args.no_progress, until=args.until,
                              log=log, forecast=live, epochs=epochs)
        finally:
            log.close() if log else None
            forecast_mod.print_cost(live, time.perf_counter() - t0)
    else:
        if args.config is not None and args.out is None:
            raise ConfigError("out is required with --config: give the directory of the replayed run")
        if args.out is None and args.preset is None:  # a bare `grokscope train` would start 40,000 epochs
            if args.cfg_task is None:
                raise ConfigError("out is required without --preset: `grokscope train` alone would train the paper's "
                                  "mainline (40,000 epochs, ~30 min on 2 cores); give --out runs/mainline for that, "
                                  "or --preset quick --out runs/quick for a run that groks in ~1-3 minutes")
            raise ConfigError(f"out is required without --preset: give the run directory of the {args.cfg_task} run "
                              f"(e.g. --out runs/{args.cfg_task})")
        configs = configs_from_args(args)
        _check_forecast(args, configs)
        out = args.out or f"runs/{preset_name(args) or configs[0].task}"
        runs.create_run(out, configs, args.overwrite)  # checked before a logger is opened
        live = forecast_mod.live_forecast(args.forecast, args.forecast_every, args.forecast_calibration,
                                          configs[0].checkpoint_every)
        log = _logger(args, out, configs)
        try:
            run = runs.train(configs, out, device=args.device, overwrite=args.overwrite,
                             progress=not args.no_progress, until=args.until, log=log, forecast=live)
        finally:
            log.close() if log else None
            forecast_mod.print_cost(live, time.perf_counter() - t0)
    try:
        _summary(run)
    except KeyboardInterrupt:  # the run is trained and saved: a Ctrl-C now only cuts the summary short
        print("\n(summary interrupted; the run is complete)", file=sys.stderr)
    return 0


def _check_forecast(args: argparse.Namespace, configs: list[Config]) -> None:
    if args.forecast and not configs[0].make_task().pair_form:
        raise ConfigError(f"forecast is invalid for task {configs[0].task}: it reads the Fourier progress measures "
                          "of the modular tasks")


def _logger(args: argparse.Namespace, run_dir: str, configs: list[Config]) -> "tracking.MetricsLogger | None":
    wb = ("wandb_project", "wandb_entity", "wandb_mode")
    if args.log != "wandb":
        for name in wb:
            if getattr(args, name) is not None:
                raise ConfigError(f"{name} is invalid without --log wandb")
    if args.log is None:
        for name in ("log_dir", "progress_every", "progress_keys"):
            if getattr(args, name) is not None:
                raise ConfigError(f"{name} is invalid without --log tensorboard|wandb")
        return None
    if args.progress_keys is not None and args.progress_every is None:
        raise ConfigError("progress_keys is invalid without --progress-every")
    if args.progress_every is not None and not configs[0].make_task().pair_form:
        raise ConfigError(f"progress_every is invalid for task {configs[0].task}: the progress measures are the "
                          "modular tasks' Fourier measures")
    keys = parse_keys(args.progress_keys, configs[0].p) if args.progress_keys is not None else None
    models = [c.to_dict() for c in configs]
    return tracking.MetricsLogger(args.log, args.log_dir or tracking.default_dir(run_dir),
                                  Path(run_dir).absolute().name, {"models": models}, run_dir=run_dir,
                                  progress_every=args.progress_every, keys=keys,
                                  wandb_project=args.wandb_project or "grokscope", wandb_entity=args.wandb_entity,
                                  wandb_mode=args.wandb_mode)


def _summary(run) -> None:
    if run.metrics.empty:
        return
    task = run.config.make_task()
    data = f"  n_train: {run.config.n_train or 'inf'}" if not task.pair_form else ""
    print(f"run: {run.path}  task: {run.config.task}{data}  models: {run.K}")
    diverged = run.nonfinite()
    unit = "epoch" if task.pair_form else "step"
    if not run.finished:  # rows 0..n-1 are logged after n steps
        n = int(run.metrics["epoch"].max()) + 1
        print(f"  stopped at {unit} {n} of {run.config.epochs}: continue with `grokscope train --resume {run.path}`")
    stops = run.stop_epochs()
    for r in run.milestones().itertuples():
        stop = f"  stopped by the rule at {unit} {stops[r.model]}" if stops[r.model] is not None else ""
        print(f"  model {r.model} (seed {r.seed}){stop}: at {unit} {_fmt(r.last_epoch)} train loss {r.final_train_loss:.3e}  "
              f"test loss {r.final_test_loss:.3e} acc {r.final_test_acc:.4f}  train acc 100% at "
              f"{_fmt(r.train_acc_100)}  test acc >99% at {_fmt(r.test_acc_99)}"
              + (f"  DIVERGED: train loss non-finite from {unit} {diverged[r.model]}" if r.model in diverged else ""))


def _fmt(x) -> str:
    return "-" if x != x else str(int(x))
