"""Figures and HTML pages: figures from tidy tables (:mod:`.plots`), the report of a run (:mod:`.run`), of an
experiment (:mod:`.experiment`) and of a sequence-task run (:mod:`.sequence`), PNG export. May import everything
below it (train, fourier, interp, measures); nothing below imports it."""

from .run import figure, report_html, run_progress, write_pngs

__all__ = ["figure", "report_html", "run_progress", "write_pngs"]
