"""The paper's experiments as one command each (Appendices C.2, D.1, D.2), locally or on Ray.

    grokscope experiment list
    grokscope experiment frac --out exp/frac [--epochs 2000] [--executor local|ray] [--address ray://head:10001]

    from grokscope.experiments import Experiment, run_experiment
    run_experiment("wd", "exp/wd")               # trains (resuming), summarises; returns an Experiment
    Experiment.load("exp/wd").summary            # DataFrame, one row per model (summary.parquet)

An experiment (:data:`EXPERIMENTS`) expands to model configs (:meth:`Spec.configs`). Models whose configs differ
only in the per-model fields (:data:`grokscope.config.PER_MODEL_FIELDS`: seed, frac_train, weight_decay, ...)
share one batched run (the trainer's model axis) when their train sets are about the same size
(:data:`PAD_TOLERANCE`); the others (p, n_layers, d_model, ..., very different fractions) are separate runs. Each
such *group* is one unit of work: one run directory under ``OUT/groups/``, trained (or resumed) by the runs layer
(:func:`grokscope.training.run.train` / :func:`grokscope.training.run.resume`), then summarised into the group's
``summary.parquet``. ``OUT/experiment.json`` records the plan; a rerun checks it is the same plan, skips finished
groups, resumes unfinished ones from their last checkpoint (a killed experiment loses at most the epochs since
each group's last checkpoint) and concatenates the groups' summaries into ``OUT/summary.parquet``.

Executors: ``local`` (default) runs the groups in turn in this process; ``ray`` submits each group as one Ray
task (one CPU, or one GPU with ``device="cuda"``) to a local Ray (``ray.init()``) or a cluster (``address``).
On a cluster, ``OUT`` must be a path every node sees (a shared filesystem) and grokscope installed on every node.

The summary (:func:`summarise_run`) reuses the rest of grokscope: :meth:`grokscope.training.run.Run.milestones`, the
progress cache and phases (:func:`grokscope.measures.cache.run_progress`,
:func:`grokscope.measures.phases.phases_frame`), the Gini coefficients of the final weights
(:func:`grokscope.measures.progress.weight_measures`) and the analysis
(:func:`grokscope.interp.analysis.analyze`: logit FVE, the W_L directions' FVE, the skip-connection ablations).

The package owns the experiments and nothing else: :mod:`.registry` (the specs, :data:`EXPERIMENTS`, grouping, the
plan), :mod:`.directory` (:class:`Experiment`: the experiment directory, its groups and summary file),
:mod:`.summary` (:func:`summarise_run`: a finished run into rows) and :mod:`.executors` (:func:`run_experiment`,
:func:`run_group`: local processes and Ray). It may import every layer below it (config, tasks, model, train,
fourier, interp, measures); never :mod:`grokscope.report` or :mod:`grokscope.cli`, which import it (the
experiment's report, ``grokscope experiment``).
"""

from .directory import GROUPS, META, SUMMARY, Experiment, Group, open_experiment
from .executors import EXECUTORS, run_experiment, run_group
from .registry import EXPERIMENTS, PAD_TOLERANCE, Spec, get_spec, group_configs, listing, plan, tiny_overrides
from .summary import ACC_THRESHOLD, ANALYSIS_COLUMNS, LOSS_THRESHOLD, summarise_run

__all__ = ["ACC_THRESHOLD", "ANALYSIS_COLUMNS", "EXECUTORS", "EXPERIMENTS", "Experiment", "GROUPS", "Group",
           "LOSS_THRESHOLD", "META", "PAD_TOLERANCE", "SUMMARY", "Spec", "get_spec", "group_configs", "listing",
           "open_experiment", "plan", "run_experiment", "run_group", "summarise_run", "tiny_overrides"]
