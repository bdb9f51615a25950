"""Report folders: metrics tables, figures, Markdown and a self-contained HTML page.

A report is built from a :class:`gradscope.Comparison` (the tables come from its
``to_dataframe()`` and ``lag_table()``, the figures from :mod:`gradscope.plotting`)
and written as::

    folder/
      metrics.csv        one row per initializer (Comparison.to_dataframe())
      metrics.json       the same rows as a JSON list of records (inf/NaN -> null)
      lag_metrics.csv    one row per (init, seed, lag) (Comparison.lag_table())
      report.md          summary, metrics table and figures (links to figures/)
      report.html        the same, self-contained (figures embedded as base64 PNG)
      figures/NAME.svg, figures/NAME.png   for each figure

Nothing here computes: it lays out the API's results.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import gradscope
from gradscope.analysis.comparison import Comparison
from gradscope.display.reprs import format_number
from gradscope.plotting import spectra as plots
from gradscope.plotting.style import save_figure

__all__ = [
    "METRIC_FIELDS",
    "Report",
    "ReportFigure",
    "ReportFiles",
    "build_report",
    "check_output_folder",
    "markdown_table",
    "metrics_records",
    "render_html",
    "render_markdown",
    "write_report",
]

METRIC_FIELDS = {
    "init": "initializer label (name, options in parentheses)",
    "rate": "seed mean of the fitted growth rate of log sigma_max per step (nats/step)",
    "rate_std": "seed standard deviation of rate",
    "rms_rate": "seed mean of the fitted growth rate of the log RMS singular value (nats/step)",
    "rms_rate_std": "seed standard deviation of rms_rate",
    "horizon": "seed median of the memory horizon: the lag where sigma_max falls below the threshold "
               "(null = never within the analysed lags)",
    "horizon_min": "smallest horizon over seeds (null = never)",
    "horizon_max": "largest horizon over seeds (null = never)",
    "seeds": "number of seeds",
    "verdict": "vanishing, slowly vanishing, stable, exploding or non-finite (from the seed-mean rate, the median "
               "horizon and the thresholds)",
    "identical_to": "the other initializers whose spectra are identical bit for bit (the same draws, such as "
                    "glorot_normal and lecun_normal for a square kernel); empty if none",
}
"""The columns of ``metrics.csv`` / fields of each ``metrics.json`` record, with their meaning."""


@dataclasses.dataclass(frozen=True)
class ReportFigure:
    """One figure of a report.

    Attributes:
        name: file stem (``figures/<name>.png``).
        title: heading shown above the figure.
        caption: what the figure shows, in a sentence or two.
        figure: the matplotlib Figure.
    """

    name: str
    title: str
    caption: str
    figure: object


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything a report folder holds, before it is written.

    Attributes:
        title: page title.
        settings: ``(name, value)`` pairs describing what was analysed and how.
        metrics: one row per initializer (``Comparison.to_dataframe()``).
        lag_table: one row per (init, seed, lag) (``Comparison.lag_table()``).
        figures: the figures, in page order.
        notes: paragraphs printed under the metrics table (definitions, thresholds).
    """

    title: str
    settings: tuple
    metrics: pd.DataFrame
    lag_table: pd.DataFrame
    figures: tuple
    notes: tuple = ()


class ReportFiles(NamedTuple):
    """Paths written by :func:`write_report`.

    Attributes:
        folder: the report folder.
        metrics_csv: ``metrics.csv``.
        metrics_json: ``metrics.json``.
        lag_metrics_csv: ``lag_metrics.csv``.
        markdown: ``report.md``.
        html: ``report.html``.
        figures: every figure file (SVG and PNG), in figure order.
    """

    folder: Path
    metrics_csv: Path
    metrics_json: Path
    lag_metrics_csv: Path
    markdown: Path
    html: Path
    figures: tuple


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

def _density_lags(lags: np.ndarray, count: int = 4) -> list[int]:
    """Up to ``count`` kept lags spread from the first to the last (a selection, not a computation)."""
    picks = np.unique(np.linspace(0, len(lags) - 1, num=min(count, len(lags))).round().astype(int))
    return [int(lags[i]) for i in picks]


def _panel_figure(comparison: Comparison, draw) -> object:
    fig, axes = plots.figure_grid(len(comparison.labels))
    for label, ax in zip(comparison.labels, axes):
        draw(label, ax)
    return fig


def _figures(comparison: Comparison) -> tuple:
    seed = comparison.seeds[0]
    density_lags = _density_lags(comparison.lags)
    heatmaps = _panel_figure(comparison, lambda label, ax: plots.plot_spectrum_heatmap(
        comparison, init=label, seed=seed, ax=ax, title=f"{label}, seed {seed}"))
    densities = _panel_figure(comparison, lambda label, ax: plots.plot_singular_value_density(
        comparison, density_lags, init=label, ax=ax, title=f"{label}, {len(comparison.seeds)} seeds"))
    return (
        ReportFigure("lag_profile", "Singular values against lag",
                     "Log sigma_max, RMS and sigma_min of dh_T/dh_(T-k) against the lag k; line: seed mean, "
                     "band: seed min-max. The dashed grey line is the memory-horizon threshold.",
                     plots.plot_lag_profile(comparison)),
        ReportFigure("summary", "Growth rate and verdict per initializer",
                     "Fitted growth rate of log sigma_max per step (dot: seed mean, bar: +-1 std, circles: seeds), "
                     "coloured by verdict; right axis: median memory horizon.",
                     plots.plot_summary(comparison)),
        ReportFigure("spectra", "Full spectra (heatmaps)",
                     f"Every log singular value by lag (rows) and index (columns), seed {seed}; grey cells are "
                     "below the float resolution floor.", heatmaps),
        ReportFigure("density", "Singular-value densities at chosen lags",
                     f"Histograms of log singular values at lags {density_lags}, seeds pooled.", densities),
    )


def _default_settings(comparison: Comparison) -> tuple:
    thresholds = comparison.thresholds
    lags = comparison.lags
    return (
        ("cell", repr(comparison.cell)),
        ("state size n", str(comparison.spectra.state_size)),
        ("steps T", str(comparison.num_steps)),
        ("initializers", ", ".join(comparison.labels)),
        ("seeds", ", ".join(str(s) for s in comparison.seeds)),
        ("lags", f"{len(lags)} lags from {lags.min()} to {lags.max()}"),
        ("dtype", str(np.asarray(comparison.spectra.log_singular_values).dtype)),
        ("thresholds", f"vanishing rate < {thresholds.vanishing:g}, exploding rate > {thresholds.exploding:g} "
                       f"nats/step; horizon at sigma_max = {thresholds.horizon:g}"),
        ("gradscope", gradscope.__version__),
        ("created", datetime.datetime.now().isoformat(timespec="seconds")),
    )


def _notes(comparison: Comparison) -> tuple:
    thresholds = comparison.thresholds
    return (
        "rate: least-squares slope of log sigma_max of dh_T/dh_(T-k) against k (nats per step); "
        "rms_rate: the same for the RMS singular value. Columns ending in _std are spreads over seeds.",
        f"verdict: vanishing if rate < {thresholds.vanishing:g} and sigma_max falls below {thresholds.horizon:g} "
        f"within the analysed lags, slowly vanishing if rate < {thresholds.vanishing:g} but it does not (horizon "
        f"beyond T), exploding if rate > {thresholds.exploding:g}, otherwise stable; non-finite if the states or "
        "products overflowed.",
        f"horizon: the lag at which sigma_max first falls below {thresholds.horizon:g} (median over seeds; "
        "horizon_min/horizon_max give the seed range; inf = never within the analysed lags).",
    )


def build_report(comparison: Comparison, *, title: str | None = None, settings=()) -> Report:
    """Tables and figures of a comparison, ready for :func:`write_report`.

    Args:
        comparison: the result of :func:`gradscope.compare`.
        title: page title (default names the cell).
        settings: extra ``(name, value)`` pairs to list first (for example the command line).

    Returns:
        :class:`Report` (it holds open matplotlib figures; :func:`write_report` closes them).
    """
    return Report(
        title=title or f"gradscope report: {plots.describe_cell(comparison.cell)}, T={comparison.num_steps}",
        settings=tuple((str(k), str(v)) for k, v in settings) + _default_settings(comparison),
        metrics=comparison.to_dataframe(),
        lag_table=comparison.lag_table(),
        figures=_figures(comparison),
        notes=_notes(comparison),
    )


# ---------------------------------------------------------------------------------------------
# Tables as text
# ---------------------------------------------------------------------------------------------

def _json_value(value):
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def metrics_records(table: pd.DataFrame) -> list[dict]:
    """The rows of a metrics table as JSON-ready records.

    Numbers become Python ints/floats; non-finite floats (inf, -inf, NaN) become
    ``None`` (JSON ``null``): a ``null`` horizon means sigma_max never fell below the
    threshold, a ``null`` rate means the configuration overflowed (verdict
    ``"non-finite"``).

    Args:
        table: a DataFrame such as ``Comparison.to_dataframe()``.

    Returns:
        One dict per row, keyed by column name.
    """
    return [{column: _json_value(value) for column, value in zip(table.columns, row)}
            for row in table.itertuples(index=False)]


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``table`` (numbers to 4 significant digits)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(format_number(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _settings_table(settings) -> pd.DataFrame:
    return pd.DataFrame(list(settings), columns=["setting", "value"])


def render_markdown(report: Report, figure_files: dict) -> str:
    """The text of ``report.md``.

    Args:
        report: the :class:`Report`.
        figure_files: figure name -> ``(png_path, svg_path)`` relative to the report folder.

    Returns:
        Markdown text.
    """
    parts = [f"# {report.title}", "", markdown_table(_settings_table(report.settings)), "",
             "## Metrics", "", markdown_table(report.metrics), ""]
    parts += [f"- {note}" for note in report.notes] + ["", "## Figures", ""]
    for figure in report.figures:
        png, svg = figure_files[figure.name]
        parts += [f"### {figure.title}", "", f"![{figure.title}]({png})", "", f"{figure.caption} ([SVG]({svg}))", ""]
    parts += ["Files: `metrics.csv`, `metrics.json` (inf/NaN written as null), `lag_metrics.csv`, `figures/`.", ""]
    return "\n".join(parts)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0;font-size:90%}"
        "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}th{background:#f3f3f3}"
        "figure{margin:1.5rem 0}img{max-width:100%}figcaption{color:#555;font-size:90%}")


def _html_table(table: pd.DataFrame) -> str:
    return table.to_html(index=False, border=0, formatters={c: format_number for c in table.columns}, na_rep="nan")


def render_html(report: Report, png_base64: dict) -> str:
    """The text of the self-contained ``report.html``.

    Args:
        report: the :class:`Report`.
        png_base64: figure name -> base64 text of its PNG (embedded as a data URI).

    Returns:
        HTML text with no external references.
    """
    title = html.escape(report.title)
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
    figures = "".join(
        f'<figure><h3>{html.escape(f.title)}</h3><img alt="{html.escape(f.title)}" '
        f'src="data:image/png;base64,{png_base64[f.name]}"/><figcaption>{html.escape(f.caption)}</figcaption></figure>'
        for f in report.figures)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body><h1>{title}</h1>{_html_table(_settings_table(report.settings))}"
            f"<h2>Metrics</h2>{_html_table(report.metrics)}<ul>{notes}</ul><h2>Figures</h2>{figures}"
            "</body></html>\n")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def check_output_folder(folder, force: bool = False) -> Path:
    """Refuse to reuse an existing report folder unless ``force``; return the folder as a Path.

    Raises:
        FileExistsError: ``folder`` exists and ``force`` is False.
        NotADirectoryError: ``folder`` exists and is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"the report folder {str(folder)!r} exists and is a file; choose another --out")
    if folder.exists() and not force:
        raise FileExistsError(f"the report folder {str(folder)!r} already exists; pass --force to overwrite "
                              "its report files, or choose another folder with --out")
    return folder


def _write_figures(report: Report, folder: Path) -> tuple[dict, dict, list]:
    import matplotlib.pyplot as plt

    relative, embedded, written = {}, {}, []
    for figure in report.figures:
        svg, png = save_figure(figure.figure, folder / "figures" / figure.name, formats=("svg", "png"))
        plt.close(figure.figure)
        relative[figure.name] = (png.relative_to(folder).as_posix(), svg.relative_to(folder).as_posix())
        embedded[figure.name] = base64.b64encode(png.read_bytes()).decode("ascii")
        written += [svg, png]
    return relative, embedded, written


def write_report(report: Report, folder, *, force: bool = False) -> ReportFiles:
    """Write ``report`` into ``folder`` (created if needed) and close its figures.

    With ``force`` an existing folder is reused: the report's own files are
    overwritten, any other file in it is left alone.

    Args:
        report: from :func:`build_report`.
        folder: the report folder.
        force: allow an existing folder.

    Returns:
        :class:`ReportFiles` with every path written.

    Raises:
        FileExistsError: the folder exists and ``force`` is False.
    """
    folder = check_output_folder(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    relative, embedded, figure_paths = _write_figures(report, folder)
    files = ReportFiles(folder, folder / "metrics.csv", folder / "metrics.json", folder / "lag_metrics.csv",
                        folder / "report.md", folder / "report.html", tuple(figure_paths))
    report.metrics.to_csv(files.metrics_csv, index=False, na_rep="nan")
    files.metrics_json.write_text(json.dumps(metrics_records(report.metrics), indent=2, allow_nan=False) + "\n")
    report.lag_table.to_csv(files.lag_metrics_csv, index=False, na_rep="nan")
    files.markdown.write_text(render_markdown(report, relative), encoding="utf-8")
    files.html.write_text(render_html(report, embedded), encoding="utf-8")
    return files
