"""Figures and HTML pages.

* figures from tidy tables and analyses: :mod:`.plot_curves` (training curves, Figs 2, 7, 13-15, 18, 19, and the
  slingshots), :mod:`.plot_fourier` (the Fourier structure and the mechanism, Figs 3-6, 8-12, 16, 17),
  :mod:`.plot_llc` (the local learning coefficient over training and its calibration sweep), on
  :mod:`.plot_common` (plotly, colours, the report's figure style: one width, 1e-4 on log axes);
* the pages: the report of a run (:mod:`.run`: the progress cache, :data:`~.run.FIGURES` the figures by name, the
  HTML file, PNG export), of an experiment (:mod:`.experiment`) and of a sequence-task run (:mod:`.sequence`),
  laid out by :mod:`.html` (key-number cards, contents, captions, tables with human column names) with the
  captions of :mod:`.captions`.

May import everything below it (tasks, model, fast, train, fourier, interp, measures); nothing below imports it.
"""

from .run import figure, report_html, run_progress, write_pngs

__all__ = ["figure", "report_html", "run_progress", "write_pngs"]
