"""``grokscope export``: one model of a run at a checkpoint written as a TransformerLens model file
(:mod:`grokscope.model.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import checks as ck
from ..model import export as export_mod
from ..files import check_output
from .common import EPOCH, MODEL, run_checkpoint, run_with_checkpoints, subcommand


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope export`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "export", examples=[
                       'grokscope export runs/quick                 # -> runs/quick-epochE-model0.pt',
                       'grokscope export runs/seeds --model 2 --epoch 10000 --out seed2.pt',
                   ],
                       help="write a checkpoint as a TransformerLens model file",
                       description="Write one model of a run at a checkpoint as a TransformerLens HookedTransformer "
                                   "state dict and config (torch.save of {'cfg', 'state_dict'}); load it with "
                                   "grokscope.model.export.load_transformer_lens(FILE).")
    p.add_argument("run", help="run directory")
    p.add_argument("--epoch", type=EPOCH, default=None, help="checkpoint epoch (default: the last)")
    p.add_argument("--model", type=MODEL, default=0, help="model index in a batched run (default 0)")
    p.add_argument("--to", default="transformer-lens", help="format: transformer-lens (the default)")
    p.add_argument("--out", default=None, help="output file (default: RUN-epochE-modelK.pt beside the run "
                   "directory)")
    return p


def run(args: argparse.Namespace) -> int:
    ck.choice("to", args.to, ("transformer-lens",))
    run = run_with_checkpoints(args.run)
    epoch = run_checkpoint(run, args.epoch, args.model)
    if args.out is None:
        args.out = str(run.path.parent / f"{run.path.name}-epoch{epoch}-model{args.model}.pt")
    out = check_output("out", Path(args.out))
    export_mod.save(run.model(epoch, args.model), out)
    print(f"wrote {out} (model {args.model} epoch {epoch}, TransformerLens HookedTransformer format)")
    return 0
