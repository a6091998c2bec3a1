"""Progress measures, phases and claims, and the grok forecast: checkpoints in, tidy tables out.

* :mod:`.progress` the progress table of a run (batched over checkpoints; :mod:`.checkpoint_measures` computes
  the measures of a chunk of stacked checkpoints, :mod:`.tables` the logits by blocks), :mod:`.phases` the
  three phases and the §5.2 claims; :mod:`.llc` the local learning coefficient at the checkpoints (devinterp's
  SGLD, an optional extra; every task), its calibration sweep and diagnostics, and :mod:`.llc_phases` its
  turning points against the phases;
* the forecast of the grokking epoch: :mod:`.forecast_features` (what it sees), :mod:`.forecast_calibration`
  (constants fitted on other models), :mod:`.forecast` (the forecasts and their output), :mod:`.forecast_live`
  (while training); the fitted forecaster and the delay law :mod:`.forecast_model` (its constants in
  ``forecast_model.json``), on what :mod:`.forecast_series` reads of a run or of the forecast corpus.

May import tasks, model, fast, train, fourier and interp (and the shared ground: config, checks, files, ...);
never report, experiments or cli.
"""
