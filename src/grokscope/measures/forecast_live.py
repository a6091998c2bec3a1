"""The grok forecast while training (``grokscope train --forecast``): :class:`LiveForecast` runs
:func:`grokscope.measures.forecast.forecast_run` at checkpoints within a time budget and shows it in the progress
bar (:func:`live_text`); :func:`live_forecast` builds it from the command's flags, :func:`print_cost` reports its
cost.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..checks import ConfigError, integer, number
from ..training.run import Run
from .forecast import Forecast, forecast_run
from .forecast_calibration import THRESHOLD, Calibration, load_calibration

__all__ = ["live_text", "LiveForecast", "live_forecast", "print_cost"]


def live_text(forecasts: Sequence[Forecast], epoch: int) -> str:
    """The progress-bar postfix of :class:`LiveForecast`: per model ``~PRED [LOWER-UPPER]`` (with ``p_grok P`` from
    the fitted forecaster), ``grokked at E`` or
    ``no forecast yet`` (models numbered when there are several)."""
    def one(fc: Forecast) -> str:
        if fc.grokked:
            return f"grokked at {fc.predicted:,.0f}"
        if fc.predicted is None:
            return "no forecast yet"
        pg = "" if fc.p_grok is None else f" p_grok {fc.p_grok:.2f}"
        return f"~{fc.predicted:,.0f} [{fc.lower:,.0f}-{fc.upper:,.0f}]{pg}"

    parts = [one(fc) if len(forecasts) == 1 else f"{fc.model}: {one(fc)}" for fc in forecasts]
    return f"grok forecast @{epoch:,}: " + "; ".join(parts)


class LiveForecast:
    """``grokscope train --forecast``: :func:`forecast_run` of the run directory at ``until = epoch``, at epochs
    that have a checkpoint -- the same function as ``grokscope forecast RUN --until epoch``, given the trainer's
    metrics rows ``<= epoch`` (the file on disk lags the trainer by the epoch's own row), so it reads nothing
    after the current epoch.

    When: with ``every``, at every multiple of ``every`` (a checkpoint epoch); else at the checkpoints that keep
    the forecasts' share of the wall time since the first one within ``budget`` (default 5%: a forecast computes
    the progress measures of up to 12 checkpoints, seconds for the paper's model, against ~0.1-1 s an epoch);
    ``budget=None``: every checkpoint. Always at the final epoch. Never at epoch 0 (no trend yet).

    Forecaster: :func:`forecast_run`'s ``"auto"``: the fitted forecaster where it applies (its held-out error is
    printed once, at the end, by :func:`print_cost`), else the trend.

    Calibration: ``calibration`` if given (then the trend forecaster), else the uncalibrated defaults of :func:`forecast_run` (``scale = 1``:
    the raw restricted-loss line; interval: remaining time x/÷ 2; the baseline fitted on the run's other models
    that grokked by then, none before two have), so the bar shows what ``grokscope forecast`` prints.

    Called as ``live(run_dir, epoch, metrics)`` -> the postfix text; keeps ``history`` (epoch -> forecasts),
    ``seconds`` (epoch -> wall seconds of the update) and ``errors`` (epoch -> message: a forecast that fails,
    e.g. on a diverged model, is shown as failed and never stops training)."""

    BUDGET = 0.05

    def __init__(self, every: int | None = None, calibration: Calibration | Mapping[int, Calibration] | None = None,
                 threshold: float = THRESHOLD, workers: int | None = 1, budget: float | None = BUDGET,
                 clock=None):
        import time

        self.every = None if every is None else integer("forecast_every", every, lo=1)
        self.budget = None if budget is None else number("forecast_budget", budget, lo=0, hi=1, lo_open=True)
        self.calibration, self.threshold, self.workers = calibration, threshold, workers
        self.clock = clock or time.perf_counter
        self.history: dict[int, list[Forecast]] = {}
        self.seconds: dict[int, float] = {}
        self.errors: dict[int, str] = {}
        self.text = "grok forecast: none yet"
        self._t0: float | None = None

    def due(self, epoch: int, checkpoint_every: int, final: int) -> bool:
        """Whether to forecast at ``epoch``: one with a checkpoint, >= 1, and the final epoch, or a multiple of
        ``every``, or (no ``every``) within the time ``budget``."""
        if epoch < 1 or (epoch % checkpoint_every != 0 and epoch != final):
            return False
        if epoch == final:
            return True
        if self.every is not None:
            return epoch % self.every == 0
        if self.budget is None or self._t0 is None:
            return True
        return sum(self.seconds.values()) <= self.budget * (self.clock() - self._t0)

    def __call__(self, run_dir: str | Path, epoch: int, metrics: pd.DataFrame | None = None) -> str:
        t0 = self.clock()
        if self._t0 is None:
            self._t0 = t0
        try:
            res = forecast_run(Run.load(run_dir), epoch, self.calibration, threshold=self.threshold,
                               workers=self.workers, metrics=metrics)
        except Exception as e:  # noqa: BLE001 - a display: it must not stop a training run
            self.errors[epoch] = f"{type(e).__name__}: {e}"
            self.text = f"grok forecast @{epoch:,}: failed ({type(e).__name__})"
        else:
            self.history[epoch] = res
            self.text = live_text(res, epoch)
        self.seconds[epoch] = self.clock() - t0
        return self.text


def live_forecast(enabled: bool, every: int | None, calibration_file: str | None,
                  checkpoint_every: int) -> LiveForecast | None:
    """``grokscope train --forecast [--forecast-every N] [--forecast-calibration FILE]``: the live forecaster, or
    None without ``--forecast``; ``every`` must be a multiple of ``checkpoint_every`` (forecasts are made at
    checkpoints)."""
    if not enabled:
        return None
    if every is not None and every % checkpoint_every != 0:
        raise ConfigError(f"forecast_every={every} is invalid: must be a multiple of "
                          f"checkpoint_every={checkpoint_every} (forecasts are made at checkpoints)")
    cal = None if calibration_file is None else load_calibration(calibration_file)
    return LiveForecast(every=every, calibration=cal)


def print_cost(live: LiveForecast | None, wall_s: float) -> None:
    """``--forecast``: one stderr line with the updates' count, median and maximum time and their share of
    ``wall_s`` (the command's wall time so far; also printed when training was interrupted)."""
    if live is None or not live.seconds:
        return
    trust = next((fc.trust for res in live.history.values() for fc in res if fc.trust), "")
    if trust:
        print(f"forecast: {trust}", file=sys.stderr)
    ms = sorted(1e3 * v for v in live.seconds.values())
    share = sum(ms) / 1e3 / max(wall_s, 1e-9)
    print(f"forecast: {len(ms)} updates, median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms "
          f"({share:.1%} of this command's wall time)"
          + (f"; {len(live.errors)} failed (last: {list(live.errors.values())[-1]})" if live.errors else ""),
          file=sys.stderr)
