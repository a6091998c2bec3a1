"""The front door of the analysis: :mod:`grokscope.interp` (by line of evidence) and the inputs it is run on.

    from grokscope.interp.analysis import analyze, analysis_from_run, analysis_from_authors
    res = analyze(model, dataset)          # -> Analysis; res.to_dict() is JSON-serialisable
    res = analysis_from_run("runs/x", epoch=None, model=0)
    res = analysis_from_authors("../shared/reference/low_precision_mod_addition.pth", seed=1, frac_train=0.3)

Everything of :mod:`grokscope.interp` is re-exported here (``collect``, ``key_frequencies``, ``periodicity``,
``composition``, ``neurons``, ``ablations``, ...); the key-frequency rule is :mod:`grokscope.fourier.keys`.
"""

from __future__ import annotations

from pathlib import Path

from ..model.authors import authors_task_config, load_authors_model
from . import *
from . import Analysis, analyze
from . import __all__ as _interp_all
from ..fourier.keys import select_by_gap
from ..training.run import Run
from ..tasks.modular import make_dataset

__all__ = list(_interp_all) + ["select_by_gap", "analysis_from_run", "analysis_from_authors",
                               "model_and_dataset_from_run", "model_and_dataset_from_authors"]


def model_and_dataset_from_run(run_path: str | Path, epoch: int | None = None, model: int = 0):
    """``(Transformer, Dataset)`` of model ``model`` of a grokscope run at checkpoint ``epoch`` (default: last)."""
    run = Run.load(run_path)
    return run.model(epoch, model), run.dataset(model)


def model_and_dataset_from_authors(path: str | Path, seed: int, frac_train: float, op: str = "add",
                                   trust_pickle: bool = False):
    """``(Transformer, Dataset)`` of an authors' checkpoint with their split for ``seed`` and ``frac_train``
    (``trust_pickle``: see :mod:`grokscope.model.authors`)."""
    m, _ = load_authors_model(path, trust_pickle=trust_pickle)
    return m.eval(), make_dataset(authors_task_config(m, seed, frac_train, op))


def analysis_from_run(run_path: str | Path, epoch: int | None = None, model: int = 0, **kw) -> Analysis:
    """:func:`analyze` a checkpoint of a grokscope run."""
    m, ds = model_and_dataset_from_run(run_path, epoch, model)
    return analyze(m, ds, **kw)


def analysis_from_authors(path: str | Path, seed: int, frac_train: float, op: str = "add", **kw) -> Analysis:
    """:func:`analyze` an authors' checkpoint (e.g. ``low_precision_mod_addition.pth``: seed 1, frac 0.3)."""
    m, ds = model_and_dataset_from_authors(path, seed, frac_train, op)
    return analyze(m, ds, **kw)
