"""Run directories written by grokscope 0.1.0 at 8d0fdce (before the one-design refactor), kept as test data:
today's code must load them, resume them bit-exactly and report them (tests/test_old_runs.py).

Made with the old tree on the path, one thread:
    OMP_NUM_THREADS=1 PYTHONPATH=<8d0fdce>/src python tests/data/v0_runs/make.py tests/data/v0_runs

Each run was stopped at step 40 of 60 (resumable: state.pt) and, beside it, ``*_full.parquet`` holds the metrics
of the same config trained to 60 without a stop, by the same old code.
"""

import shutil
import sys
from pathlib import Path

import pandas as pd

from grokscope.training import run as runs, seqrun as seqtrain
from grokscope.config import Config
from grokscope.tasks.sequence import SeqConfig

out = Path(sys.argv[1])
tiny = dict(p=11, d_model=16, n_heads=2, d_mlp=32, frac_train=0.5, epochs=60, checkpoint_every=20, test_every=5)
modular = [Config(seed=s, grokfast="ema", **tiny) for s in (0, 1)]
seqs = {
    "skip_trigram": SeqConfig(task="skip_trigram", seq_len=8, d_model=16, n_heads=2, n_train=32, n_test=32,
                              epochs=60, checkpoint_every=20, test_every=5),
    "digit_addition_infinite": SeqConfig(task="digit_addition", n_digits=2, d_model=16, n_heads=2, d_mlp=32,
                                         n_train=None, batch_size=16, n_test=32, epochs=60, checkpoint_every=20,
                                         test_every=5),
}
tmp = out / "_full"
shutil.rmtree(tmp, ignore_errors=True)
runs.train(modular, out / "modular", progress=False, until=40, overwrite=True)
runs.train(modular, tmp / "modular", progress=False)
pd.read_parquet(tmp / "modular" / runs.METRICS).to_parquet(out / "modular_full.parquet", index=False)
for name, cfg in seqs.items():
    seqtrain.train_seq(cfg, out / name, progress=False, until=40, overwrite=True)
    seqtrain.train_seq(cfg, tmp / name, progress=False)
    pd.read_parquet(tmp / name / runs.METRICS).to_parquet(out / f"{name}_full.parquet", index=False)
shutil.rmtree(tmp)
