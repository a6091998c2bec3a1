"""The page layout shared by every HTML report (a run, an experiment, a sequence-task run): the style sheet, the
header's key numbers as cards, the table of contents, figures with their captions, and tables with human column
names (wide ones scroll inside their own box, so nothing runs off the page at 1,400 px).

    from grokscope.report.html import Section, card, page, table_section
    doc = page("title", "subtitle", cards=[card("grokking epoch", 1200)], sections=[table_section(...), ...])

A page is ONE self-contained file: plotly's JS is embedded once (by the first figure), nothing is fetched.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .plot_common import FIG_WIDTH, style

__all__ = ["CSS", "COLUMN_NAMES", "column_name", "cell", "html_table", "card", "Section", "figure_section",
           "table_section", "text_section", "page", "verdict"]

#: the style sheet of every page; the main column holds one figure width (:data:`FIG_WIDTH`) plus its padding
CSS = f"""
*{{box-sizing:border-box}}
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#eef1f5;
color:#1d2330;line-height:1.45}}
main{{max-width:{FIG_WIDTH + 60}px;margin:0 auto;padding:22px 30px 60px;background:#fff;min-height:100vh}}
h1{{font-size:25px;margin:0 0 2px}} h2{{font-size:19px;margin:0 0 8px;padding-bottom:4px;border-bottom:1px solid #e3e7ee}}
.sub{{color:#5a6270;margin:0 0 6px;overflow-wrap:anywhere}}
p{{max-width:{FIG_WIDTH}px}}
.cards{{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin:16px 0 18px}}
.card{{border:1px solid #d9dfe8;border-left:4px solid #4c6ef5;border-radius:6px;padding:8px 12px;background:#fafbfd;
min-width:0}}
.card .label{{font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;color:#5a6270}}
.card .value{{font-size:21px;font-weight:600;margin-top:1px;overflow-wrap:anywhere}}
.card .note{{font-size:12px;color:#5a6270;overflow-wrap:anywhere}}
.card.good{{border-left-color:#2f9e44}} .card.bad{{border-left-color:#e03131}} .card.none{{border-left-color:#adb5bd}}
nav.toc{{background:#f6f8fb;border:1px solid #e3e7ee;border-radius:6px;padding:8px 16px;margin:0 0 10px}}
nav.toc ol{{columns:2;column-gap:36px;margin:4px 0;padding-left:22px;font-size:14px}}
nav.toc li{{break-inside:avoid;margin:1px 0}} nav.toc a{{color:#1c4fc4;text-decoration:none}}
nav.toc a:hover{{text-decoration:underline}}
section{{margin:30px 0 0;max-width:100%}}
figure{{margin:0;max-width:100%}}
.plot{{width:{FIG_WIDTH}px;max-width:100%;overflow-x:auto}}
figcaption{{font-size:14px;color:#39404d;max-width:{FIG_WIDTH}px;margin-top:6px;padding-left:10px;
border-left:3px solid #d9dfe8}}
figcaption b{{color:#1d2330}}
.table-wrap{{max-width:100%;overflow-x:auto;margin:4px 0}}
table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #d5dbe3;padding:4px 8px;vertical-align:top;text-align:left;max-width:36em;
overflow-wrap:break-word}}
th{{background:#f0f3f7;font-weight:600}} td:first-child{{white-space:nowrap}} td.num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
tr:nth-child(even) td{{background:#fafbfc}}
.verdict{{font-weight:600;white-space:nowrap}} .verdict.holds{{color:#2b8a3e}} .verdict.fails{{color:#c92a2a}}
.verdict.undecided{{color:#868e96}}
.note{{font-size:13px;color:#5a6270}}
pre{{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fb;padding:8px;font-size:12px}}
""".replace("\n", "")

#: human names of the columns the report's tables take from the package's frames (snake_case in the data)
COLUMN_NAMES = {
    "model": "model", "seed": "seed", "last_epoch": "last epoch", "train_acc_100": "train acc 100% at",
    "test_acc_95": "test acc > 95% at", "test_acc_99": "test acc > 99% at (grokked)",
    "test_acc_999": "test acc > 99.9% at", "test_loss_under_1e5": "test loss < 1e-5 at",
    "min_test_loss": "lowest test loss", "min_test_loss_epoch": "lowest test loss at", "final_train_loss":
    "final train loss", "final_test_loss": "final test loss", "final_test_acc": "final test acc",
    "epoch_train_loss_1e6": "train loss < 1e-6 at", "epoch_test_loss_1e6": "test loss < 1e-6 at",
    "epoch_test_acc_99": "test acc > 99% at", "memorisation_end": "memorisation ends",
    "circuit_formation_end": "circuit formation ends", "cleanup_end": "cleanup ends",
    "restricted_loss": "restricted loss", "excluded_loss": "excluded loss", "group": "group", "state": "state",
    "n_models": "models", "train_loss_1e-2": "train loss < 1e-2 at", "max_test_over_train": "max test / train loss",
    "prev_token": "previous-token score", "induction": "induction score", "to_big_token": "attention to token >= 10",
    "layer": "layer", "head": "head", "weight_decay": "weight decay", "frac_train": "training fraction",
    "loss_all": "loss (all pairs)", "acc_all": "accuracy (all pairs)",
}
_SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")
_NUM = re.compile(r"^-?\d[\d.]*(e[-+]?\d+)?%?$")


def column_name(c: str) -> str:
    """A column's human name: :data:`COLUMN_NAMES`, else snake_case with spaces (``W_L``-style names kept)."""
    c = str(c)
    if c in COLUMN_NAMES:
        return COLUMN_NAMES[c]
    return c.replace("_", " ") if _SNAKE.match(c) else c


def cell(v: Any) -> str:
    """A table cell as text: floats to 4 significant digits (scientific below 1e-3), NaN and None empty, lists
    comma-separated, dicts as ``name = value`` pairs."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e7:
            return str(int(v))
        return f"{v:.3e}" if v != 0 and abs(v) < 1e-3 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(cell(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{column_name(k)} = {cell(x)}" for k, x in v.items())
    return str(v)


def _td(v: Any) -> str:
    text = cell(v)
    if isinstance(v, Markup):
        return f"<td>{v}</td>"
    num = isinstance(v, (int, float)) and not isinstance(v, bool) or bool(_NUM.match(text))
    return f"<td class=\"num\">{html.escape(text)}</td>" if num else f"<td>{html.escape(text)}</td>"


class Markup(str):
    """A cell already in HTML (not escaped): e.g. :func:`verdict`."""


def verdict(holds: bool | None) -> Markup:
    """A claim's verdict cell: holds / does not hold / undecided, coloured."""
    cls, word = {True: ("holds", "holds"), False: ("fails", "does not hold")}.get(holds, ("undecided", "undecided"))
    return Markup(f'<span class="verdict {cls}">{word}</span>')


def html_table(rows: Sequence[Mapping[str, Any]], caption: str, cls: str) -> str:
    """An HTML ``<table class=cls>`` of ``rows`` (dicts with the same keys: the columns, shown by
    :func:`column_name`) under ``caption``, in a box that scrolls sideways when the table is wider than the page."""
    if not rows:
        body = "<tr><td>(none)</td></tr>"
    else:
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(column_name(c))}</th>" for c in cols)
        body = f"<tr>{head}</tr>" + "".join("<tr>" + "".join(_td(r.get(c)) for c in cols) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="table-wrap"><table class="{cls}">{cap}{body}</table></div>'


def card(label: str, value: Any, note: str = "", kind: str = "") -> str:
    """One key number of the header: ``label`` above ``value`` (text), a ``note`` below; ``kind`` good / bad /
    none colours its edge."""
    v = cell(value) if not isinstance(value, str) else value
    return (f'<div class="card {kind}"><div class="label">{html.escape(label)}</div>'
            f'<div class="value">{html.escape(v or "—")}</div>'
            + (f'<div class="note">{html.escape(note)}</div>' if note else "") + "</div>")


@dataclass
class Section:
    """One entry of the page and of its table of contents: ``id`` (the anchor), ``title`` and its HTML."""
    id: str
    title: str
    body: str


def _caption(caption: str) -> str:
    return f"<figcaption>{caption}</figcaption>" if caption else ""


def figure_section(fig, name: str, title: str, caption: str = "", *, first: bool = False) -> Section:
    """A figure (styled by :func:`grokscope.report.plot_common.style`: one width, white, log axes in 1e-4 form)
    with its caption (HTML: what to look for) under it; ``first``: embed plotly's JS here (once per page)."""
    import plotly.io as pio  # an optional extra

    style(fig)
    div = pio.to_html(fig, full_html=False, include_plotlyjs=bool(first), div_id=f"plot-{name}",
                      config={"displaylogo": False, "responsive": False})
    body = f'<figure><div class="plot">{div}</div>{_caption(caption)}</figure>'
    return Section(f"fig-{name}", title, body)


def table_section(id: str, title: str, rows: Sequence[Mapping[str, Any]], cls: str, note: str = "") -> Section:
    """A table under a heading, with a note (HTML) under it."""
    return Section(id, title, html_table(rows, "", cls) + (f'<p class="note">{note}</p>' if note else ""))


def text_section(id: str, title: str, body: str) -> Section:
    return Section(id, title, body)


def _toc(sections: Iterable[Section]) -> str:
    items = "".join(f'<li><a href="#{html.escape(s.id)}">{html.escape(s.title)}</a></li>' for s in sections)
    return f'<nav class="toc"><b>Contents</b><ol>{items}</ol></nav>'


def page(title: str, subtitle: str, *, cards: Sequence[str] = (), intro: str = "",
         sections: Sequence[Section] = (), stamp: str | None = None) -> str:
    """The whole HTML document: the title, a subtitle (what it is of), the key-number cards, an intro (HTML),
    the table of contents and the sections, each under its heading. ``stamp``: a ``grokscope-inputs`` meta tag
    (the fingerprint ``grokscope report`` compares to skip an unchanged run)."""
    meta = "" if stamp is None else f"<meta name='grokscope-inputs' content='{html.escape(stamp)}'>"
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>{meta}"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>")
    body = (f"<body><main><h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>"
            + (f"<div class='cards'>{''.join(cards)}</div>" if cards else "") + intro + _toc(sections)
            + "".join(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
                      for s in sections)
            + "</main></body></html>")
    return head + body


def config_table(cfg: Mapping[str, Any]) -> str:
    """A config dict as a compact two-column table (field, value), four pairs a row."""
    items = [(k, json.dumps(v) if isinstance(v, (dict, list)) else cell(v)) for k, v in cfg.items()]
    rows = []
    for i in range(0, len(items), 4):
        rows.append("<tr>" + "".join(f"<th>{html.escape(k)}</th><td>{html.escape(v)}</td>"
                                     for k, v in items[i:i + 4]) + "</tr>")
    return f'<div class="table-wrap"><table class="config">{"".join(rows)}</table></div>'
