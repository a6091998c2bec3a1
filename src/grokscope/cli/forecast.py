"""``grokscope forecast``: each model's grokking epoch forecast from the checkpoints up to ``--until``
(:mod:`grokscope.measures.forecast`), printed and written to ``forecast.json``."""

from __future__ import annotations

import argparse

from ..checks import ConfigError
from ..measures import forecast as forecast_mod
from ..measures.forecast_calibration import load_calibration
from ..files import check_output
from .common import LOSS_THRESHOLD, UNTIL, run_with_checkpoints, subcommand


def add(sub) -> argparse.ArgumentParser:
    """The ``grokscope forecast`` parser, added to the subcommands ``sub``."""
    p = subcommand(sub, "forecast", examples=[
                       'grokscope forecast runs/quick --until 600',
                       'grokscope forecast runs/mainline --until 4000 --calibration calibration.json',
                   ],
                       help="forecast each model's grokking epoch from the checkpoints up to --until",
                       description="Forecast, per model, the epoch at which test accuracy passes 99%, from the "
                                   "checkpoints and metrics at epochs <= --until only (key frequencies chosen at "
                                   "the last allowed checkpoint): the fitted forecaster (log-time regression on "
                                   "the progress measures, with an 80% interval, the probability of grokking "
                                   "within the budget and its held-out error) where it applies, else the "
                                   "restricted loss's log-linear trend extrapolated to a threshold; beside them "
                                   "the spectral baseline of Notsawo et al. 2023. Writes RUN/forecast.json.")
    p.add_argument("run", help="run directory")
    p.add_argument("--until", type=UNTIL, required=True, help="use only checkpoints and metrics at epochs <= EPOCH")
    p.add_argument("--threshold", type=LOSS_THRESHOLD, default=forecast_mod.THRESHOLD,
                   help=f"restricted loss taken as grokked (default {forecast_mod.THRESHOLD:g})")
    p.add_argument("--out", default=None, help="JSON output (default: RUN/forecast.json)")
    p.add_argument("--calibration", default=None, metavar="FILE", help="constants fitted on other models: the "
                   "JSON of benchmarks/forecast_eval.py (its 'calibration') or a bare Calibration object "
                   "(default: uncalibrated, scale 1, interval x/÷ 2; the baseline fitted on the run's other models "
                   "that grokked by --until)")
    p.add_argument("--forecaster", choices=("auto", "fitted", "trend"), default="auto",
                   help="auto (default): the fitted forecaster where it applies (one-layer modular addition, "
                        "AdamW, no --calibration), else the restricted-loss trend")
    return p


def run(args: argparse.Namespace) -> int:
    run = run_with_checkpoints(args.run, modular_for="forecast")
    last = run.checkpoint_epochs[-1]
    if args.until > last:  # a forecast from data the run does not have would be a guess presented as a forecast
        raise ConfigError(f"until={args.until} is invalid: the run's last checkpoint is epoch {last}; forecast from "
                          f"at most {last} (the forecast reads the checkpoints up to --until)")
    out = check_output("out", args.out or run.path / forecast_mod.FORECAST_FILE, owner="forecast")
    cal = None if args.calibration is None else load_calibration(args.calibration)
    if args.forecaster == "fitted" and cal is not None:
        raise ConfigError("forecaster='fitted' is invalid with --calibration (a calibration is the trend's)")
    res = forecast_mod.forecast_run(run, args.until, cal, threshold=args.threshold, forecaster=args.forecaster)
    print(forecast_mod.format_table(res))
    forecast_mod.write_forecast(out, res, run=str(run.path), until=args.until, threshold=args.threshold,
                                calibration=args.calibration, forecaster=args.forecaster)
    print(f"wrote {out}")
    return 0
