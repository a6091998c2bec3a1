"""``grokscope train`` for the Appendix D.3 sequence tasks: its extra flags and the path a sequence task takes.

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
import typing
from dataclasses import fields
from typing import Any, Callable

from .. import checks as ck
from ..checks import ConfigError
from ..config import Config
from ..tasks.sequence import SEQ_PRESETS, TASKS, SeqConfig, field_help
from ..training.seqrun import SeqRun, resume_seq, train_seq

SEQ_TYPES = typing.get_type_hints(SeqConfig)
CONFIG_FIELDS = {f.name for f in fields(Config)}
#: SeqConfig fields that are not modular Config fields: the flags this module adds (dest ``seq_<name>``)
SEQ_ONLY = [f.name for f in fields(SeqConfig) if f.name not in CONFIG_FIELDS]


def add_flags(p: argparse.ArgumentParser) -> None:
    """The sequence-task flags of ``grokscope train``."""
    helps = field_help()
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


def _value(name: str, text: str) -> Any:
    typ = SEQ_TYPES[name]
    args = typing.get_args(typ)
    if type(None) in args:
        if text.strip().lower() in ("none", "inf"):
            return None
        typ = next(a for a in args if a is not type(None))
    return ck.parse(name, text, typ) if typ in (int, float) else text.strip()


def config_from_args(args: argparse.Namespace) -> SeqConfig:
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
            base[name] = _value(name, text)
    return SeqConfig(**base)


def cmd_train(args: argparse.Namespace, summary: Callable[[SeqRun], None] | None = None) -> int:
    """``grokscope train`` on a sequence task, new or resumed."""
    if args.resume:
        run = resume_seq(args.resume, device=args.device, progress=not args.no_progress, until=args.until)
    else:
        cfg = config_from_args(args)
        out = args.out or f"runs/{args.preset if args.preset in SEQ_PRESETS else cfg.task}"
        run = train_seq(cfg, out, device=args.device, overwrite=args.overwrite, progress=not args.no_progress,
                        until=args.until)
    print_summary(run)
    return 0


def print_summary(run: SeqRun) -> None:
    m = run.milestones()
    f = lambda x: "-" if x != x else str(int(x))  # noqa: E731
    print(f"run: {run.path}  task: {run.config.task}  n_train: {run.config.n_train or 'inf'}")
    print(f"  epoch {f(m['last_epoch'])}  train loss {m['final_train_loss']:.3e}  test loss "
          f"{m['final_test_loss']:.3e}  train acc 100% at {f(m['train_acc_100'])}  test acc >95% at "
          f"{f(m['test_acc_95'])}")
