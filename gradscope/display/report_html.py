"""The HTML page of a report folder: ``report.html``.

One self-contained file that reads well on a phone and on a high-resolution
screen: figures are embedded as PNGs drawn at twice their display size (with
``width``/``height`` attributes, so they are sharp and take their space before
they load), wide tables scroll inside their own box instead of widening the
page, figures sit two to a row where the screen allows, and the page links to the
CSV/JSON files beside it in the report folder. It renders whatever columns the
metrics table has; a ``verdict`` column gets the verdict colours of the figures.

Nothing here computes: it lays out a :class:`gradscope.display.report.Report`.
"""

from __future__ import annotations

import html
import numbers
from typing import NamedTuple

import pandas as pd

from gradscope.display.reprs import format_number
from gradscope.plotting.spectra import VERDICT_COLORS

__all__ = ["EmbeddedFigure", "FOLDER_FILES", "html_table", "render_html"]

FOLDER_FILES = (
    ("metrics.csv", "the metrics table"),
    ("metrics.json", "the same rows with the run settings"),
    ("lag_metrics.csv", "every metric at every lag and seed"),
    ("report.md", "this page in Markdown"),
    ("figures/", "SVG and PNG of each figure"),
)
"""Files of a report folder the page links to, with what each holds."""

_WIDE = 600
"""Figures wider than this (CSS pixels) span the whole page; narrower ones sit two to a row."""

_CSS = """
:root{color-scheme:light;--ink:#1d2126;--muted:#5b6470;--rule:#d8dde3;--tint:#f4f6f8}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
 max-width:66rem;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.6rem;line-height:1.25;margin:.25rem 0 .5rem}
h2{font-size:1.25rem;margin:2.5rem 0 .75rem;padding-bottom:.25rem;border-bottom:1px solid var(--rule)}
h3{font-size:1rem;margin:0 0 .5rem}
a{color:#0b5f9e}
.lead{color:var(--muted);margin:0 0 1rem;max-width:48rem}
nav{font-size:.9rem;padding:.6rem .8rem;background:var(--tint);border-radius:6px}
nav ul{display:flex;flex-wrap:wrap;gap:.2rem 1.2rem;list-style:none;margin:.2rem 0 0;padding:0}
.scroll{overflow-x:auto;margin:.75rem 0}
table{border-collapse:collapse;font-size:.875rem;font-variant-numeric:tabular-nums}
th,td{padding:.3rem .65rem;border-bottom:1px solid var(--rule);text-align:left;vertical-align:top;
 white-space:nowrap}
th{background:var(--tint)}
td:first-child,th:first-child{position:sticky;left:0;background:#fff;box-shadow:1px 0 0 var(--rule)}
th:first-child{background:var(--tint)}
td.num,th.num{text-align:right}
.dot{display:inline-block;width:.62em;height:.62em;border-radius:50%;margin-right:.4em}
.settings td:last-child{white-space:normal;overflow-wrap:anywhere;min-width:12rem}
.notes{color:var(--muted);font-size:.9rem;padding-left:1.2rem;max-width:52rem}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,24rem),1fr));gap:2rem 2.5rem;
 align-items:start}
figure{margin:0;min-width:0}
figure.wide{grid-column:1/-1}
img{display:block;max-width:100%;height:auto}
.muted{color:var(--muted)}
figcaption{color:var(--muted);font-size:.875rem;margin-top:.4rem}
footer{margin-top:3rem;color:var(--muted);font-size:.8rem}
""".strip()


class EmbeddedFigure(NamedTuple):
    """A figure as the page embeds it.

    Attributes:
        png_base64: base64 text of the PNG (drawn at twice the display size).
        width: display width in CSS pixels (half the PNG's pixel width).
        height: display height in CSS pixels.
        png: path of the PNG file relative to the report folder.
        svg: path of the SVG file relative to the report folder.
    """

    png_base64: str
    width: int
    height: int
    png: str
    svg: str


def _cell(column: str, value) -> str:
    text = html.escape(format_number(value))
    if column == "verdict" and isinstance(value, str):
        colour = VERDICT_COLORS.get(value)
        dot = f'<span class="dot" style="background:{colour}"></span>' if colour else ""
        return f'<td class="verdict">{dot}{text}</td>'
    numeric = isinstance(value, numbers.Number) and not isinstance(value, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def html_table(table: pd.DataFrame, css_class: str = "") -> str:
    """An HTML table of every column of ``table``, wrapped in a box that scrolls sideways when too wide.

    Numbers are right-aligned to 4 significant digits (``inf``/``nan`` spelled out);
    a ``verdict`` column gets a dot in the verdict's figure colour.
    """
    head = "".join(f'<th class="num">{html.escape(str(c))}</th>' if pd.api.types.is_numeric_dtype(table[c])
                   else f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(_cell(str(c), v) for c, v in zip(table.columns, row)) + "</tr>"
                   for row in table.itertuples(index=False))
    attribute = f' class="{css_class}"' if css_class else ""
    return f'<div class="scroll"><table{attribute}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _figure(figure, image: EmbeddedFigure) -> str:
    wide = ' class="wide"' if image.width > _WIDE else ""
    title = html.escape(figure.title)
    return (f'<figure id="figure-{html.escape(figure.name)}"{wide}><h3>{title}</h3>'
            f'<img alt="{title}" width="{image.width}" height="{image.height}" '
            f'src="data:image/png;base64,{image.png_base64}">'
            f'<figcaption>{html.escape(figure.caption)} Files: <a href="{html.escape(image.svg)}">SVG</a>, '
            f'<a href="{html.escape(image.png)}">PNG</a>.</figcaption></figure>')


def _navigation(report) -> str:
    sections = [("metrics", "Metrics"), *((f"figure-{f.name}", f.title) for f in report.figures),
                ("settings", "Settings")]
    pages = "".join(f'<li><a href="#{html.escape(anchor)}">{html.escape(text)}</a></li>' for anchor, text in sections)
    files = "".join(f'<li><a href="{name}">{name}</a> <span class="muted">({html.escape(what)})</span></li>'
                    for name, what in FOLDER_FILES)
    return (f"<nav><strong>On this page</strong><ul>{pages}</ul>"
            f"<strong>Files beside this page</strong><ul>{files}</ul></nav>")


def _footer(report) -> str:
    settings = report.run_settings
    made = ", ".join(f"{name} {version}" for name, version in settings.get("versions", {}).items())
    when = f" on {settings['created']}" if "created" in settings else ""
    text = f"Made with {made}{when}. " if made else ""
    return f'<footer>{html.escape(text)}The run settings are in metrics.json under "settings".</footer>'


def render_html(report, images: dict) -> str:
    """The text of the self-contained ``report.html``.

    Args:
        report: the :class:`~gradscope.display.report.Report`.
        images: figure name -> :class:`EmbeddedFigure`.

    Returns:
        HTML text. Figures are embedded; the only links are to the page's own
        sections and to the files beside it in the report folder.
    """
    title = html.escape(report.title)
    lead = f'<p class="lead">{html.escape(report.summary)}</p>' if report.summary else ""
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
    figures = "".join(_figure(f, images[f.name]) for f in report.figures)
    settings = pd.DataFrame(list(report.settings), columns=["setting", "value"])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{title}</h1>{lead}{_navigation(report)}</header>"
            f'<section id="metrics"><h2>Metrics</h2>{html_table(report.metrics)}<ul class="notes">{notes}</ul>'
            f'</section><section id="figures"><h2>Figures</h2><div class="figures">{figures}</div></section>'
            f'<section id="settings"><h2>Settings</h2>{html_table(settings, "settings")}</section>'
            f"{_footer(report)}</body></html>\n")
