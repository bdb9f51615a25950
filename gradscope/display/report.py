"""Report folders: metrics tables, run settings, figures, Markdown and a self-contained HTML page.

A report is built from a :class:`gradscope.Comparison` (the tables come from its
``to_dataframe()`` and ``lag_table()``, the figures from :mod:`gradscope.plotting`)
and written as::

    folder/
      metrics.csv        one row per initializer (Comparison.to_dataframe())
      metrics.json       {"settings": how the numbers were made, "rows": the same rows as records}
      lag_metrics.csv    one row per (init, seed, lag) (Comparison.lag_table())
      report.md          summary, metrics table and figures (links to figures/)
      report.html        the same page, self-contained (figures embedded as PNG at twice their
                         display size), linking to the files above
      figures/NAME.svg, figures/NAME.png   for each figure (PNG at 300 dpi)

The files are written into a temporary folder beside ``folder`` and moved into
place only once all of them are complete, so an interrupted or failed run (Ctrl-C
included) leaves no half-written report, and an existing report is replaced only
by a complete new one.

Nothing here computes: it lays out the API's results.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from gradscope.analysis.comparison import Comparison
from gradscope.display.report_html import FOLDER_FILES, EmbeddedFigure, render_html
from gradscope.display.report_settings import json_value, run_settings, settings_rows
from gradscope.display.reprs import format_number
from gradscope.display.staging import staged_folder
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
    "metrics_document",
    "metrics_records",
    "render_html",
    "render_markdown",
    "run_settings",
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
        run_settings: the ``"settings"`` block of ``metrics.json`` (see :func:`run_settings`).
        summary: a sentence under the page title saying what was analysed.
    """

    title: str
    settings: tuple
    metrics: pd.DataFrame
    lag_table: pd.DataFrame
    figures: tuple
    notes: tuple = ()
    run_settings: Mapping = dataclasses.field(default_factory=dict)
    summary: str = ""


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


def _panel_figure(comparison: Comparison, draw, share) -> object:
    """One panel per initializer, drawn by ``draw(label, ax)``; ``share(fig, axes)`` merges their legends or colour bars."""
    fig, axes = plots.figure_grid(len(comparison.labels))
    for label, ax in zip(comparison.labels, axes):
        draw(label, ax)
    share(fig, axes)
    return fig


_KEEP_TOGETHER = "\u00a0"
"""A no-break space: a panel title wrapped to its column never leaves "seed" and its number apart."""


def _figures(comparison: Comparison) -> tuple:
    seed = comparison.seeds[0]
    density_lags = _density_lags(comparison.lags)
    heatmaps = _panel_figure(comparison, lambda label, ax: plots.plot_spectrum_heatmap(
        comparison, init=label, seed=seed, ax=ax, title=f"{label}, seed{_KEEP_TOGETHER}{seed}", colorbar=False),
        plots.share_colorbar)
    densities = _panel_figure(comparison, lambda label, ax: plots.plot_singular_value_density(
        comparison, density_lags, init=label, ax=ax, title=f"{label}, {len(comparison.seeds)}{_KEEP_TOGETHER}seeds"),
        plots.share_legend)
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
                     f"Every log singular value by lag (rows) and index (columns), seed {seed}, on one colour "
                     "scale for all panels; grey cells are below the float resolution floor.", heatmaps),
        ReportFigure("density", "Singular-value densities at chosen lags",
                     f"Histograms of log singular values at lags {density_lags}, seeds pooled.", densities),
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


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _summary(comparison: Comparison) -> str:
    return (f"How the gradient travels back through time in {plots.describe_cell(comparison.cell)}: the singular "
            f"values of the Jacobian products dh_T/dh_(T-k) at every analysed lag k up to T = {comparison.num_steps}, "
            f"for {_count(len(comparison.labels), 'recurrent-kernel initializer')} and "
            f"{_count(len(comparison.seeds), 'seed')} each.")


def build_report(comparison: Comparison, *, title: str | None = None, settings=(), run: Mapping | None = None
                 ) -> Report:
    """Tables and figures of a comparison, ready for :func:`write_report`.

    Args:
        comparison: the result of :func:`gradscope.compare`.
        title: page title (default names the cell).
        settings: extra ``(name, value)`` pairs to list first in the pages' settings
            table (notes for readers; they are not part of ``metrics.json``).
        run: the arguments given to :func:`gradscope.compare` and anything else to
            record (see :func:`run_settings`); with them ``metrics.json`` holds
            enough to run the analysis again.

    Returns:
        :class:`Report` (it holds open matplotlib figures; :func:`write_report` closes them).
    """
    block = run_settings(comparison, run)
    return Report(
        title=title or f"gradscope report: {plots.describe_cell(comparison.cell)}, T={comparison.num_steps}",
        settings=tuple((str(k), str(v)) for k, v in settings) + settings_rows(block),
        metrics=comparison.to_dataframe(),
        lag_table=comparison.lag_table(),
        figures=_figures(comparison),
        notes=_notes(comparison),
        run_settings=block,
        summary=_summary(comparison),
    )


# ---------------------------------------------------------------------------------------------
# Tables as text
# ---------------------------------------------------------------------------------------------

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
    return [{column: json_value(value) for column, value in zip(table.columns, row)}
            for row in table.itertuples(index=False)]


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``table`` (numbers to 4 significant digits)."""
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(format_number(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def metrics_document(report: Report) -> dict:
    """What ``metrics.json`` holds: ``{"settings": report.run_settings, "rows": metrics_records(report.metrics)}``."""
    return {"settings": dict(report.run_settings), "rows": metrics_records(report.metrics)}


def json_text(value, level: int = 0) -> str:
    """Strict JSON, indented two spaces, with short objects and lists of plain values kept on one line."""
    flat = json.dumps(value, allow_nan=False)
    plain_list = isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value)
    if not isinstance(value, (dict, list)) or not value or plain_list or len(flat) + 2 * level <= 80:
        return flat
    items = ([f"{json.dumps(str(k))}: {json_text(v, level + 1)}" for k, v in value.items()]
             if isinstance(value, dict) else [json_text(v, level + 1) for v in value])
    brackets = "{}" if isinstance(value, dict) else "[]"
    inner = ",\n".join("  " * (level + 1) + item for item in items)
    return f"{brackets[0]}\n{inner}\n{'  ' * level}{brackets[1]}"


def _files_line() -> str:
    return "Files: " + ", ".join(f"[{name}]({name}) ({what})" for name, what in FOLDER_FILES
                                 if name != "report.md") + "."


def render_markdown(report: Report, figure_files: dict) -> str:
    """The text of ``report.md``.

    Args:
        report: the :class:`Report`.
        figure_files: figure name -> ``(png_path, svg_path)`` relative to the report folder.

    Returns:
        Markdown text.
    """
    settings = pd.DataFrame(list(report.settings), columns=["setting", "value"])
    parts = [f"# {report.title}", "", *([report.summary, ""] if report.summary else []), _files_line(), "",
             "## Metrics", "", markdown_table(report.metrics), ""]
    parts += [f"- {note}" for note in report.notes] + ["", "## Figures", ""]
    for figure in report.figures:
        png, svg = figure_files[figure.name]
        parts += [f"### {figure.title}", "", f"![{figure.title}]({png})", "", f"{figure.caption} ([SVG]({svg}))", ""]
    parts += ["## Settings", "", markdown_table(settings), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

_PNG_DPI = 300
"""Resolution of the figure PNGs: twice the 150 pixels per inch at which the page shows them."""

_PAGE_DPI = 150


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


def _report_files(report: Report, folder: Path) -> ReportFiles:
    figures = tuple(path for figure in report.figures for path in _figure_paths(figure, folder))
    return ReportFiles(folder, folder / "metrics.csv", folder / "metrics.json", folder / "lag_metrics.csv",
                       folder / "report.md", folder / "report.html", figures)


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels, from a PNG's header chunk."""
    return struct.unpack(">II", data[16:24])


_FIGURE_FORMATS = ("svg", "png")


def _figure_stem(figure: ReportFigure, folder: Path) -> Path:
    return folder / "figures" / figure.name


def _figure_paths(figure: ReportFigure, folder: Path) -> tuple[Path, Path]:
    """The SVG and PNG of ``figure`` in the report ``folder``."""
    stem = _figure_stem(figure, folder)
    return tuple(stem.with_suffix(f".{suffix}") for suffix in _FIGURE_FORMATS)


def _save_job(figure: ReportFigure, folder: Path) -> tuple:
    """``(matplotlib figure, path stem, save_figure options)`` for the report's SVG and PNG of ``figure``."""
    return figure.figure, _figure_stem(figure, folder.resolve()), {"formats": _FIGURE_FORMATS, "dpi": _PNG_DPI}


def _save(job: tuple) -> None:
    fig, stem, options = job
    save_figure(fig, stem, **options)


def _embedded(figure: ReportFigure, folder: Path) -> EmbeddedFigure:
    svg, png = _figure_paths(figure, folder)
    data = png.read_bytes()
    width, height = (round(side * _PAGE_DPI / _PNG_DPI) for side in _png_size(data))
    return EmbeddedFigure(base64.b64encode(data).decode("ascii"), width, height,
                          png.relative_to(folder).as_posix(), svg.relative_to(folder).as_posix())


def _split_for_helper(jobs: list) -> tuple[list, list]:
    """``(jobs for this process, jobs for a helper process)``, so that both finish at about the same time.

    Greedy longest-first split, with a figure's number of axes as its cost: a report's
    figures take time in proportion to their panels. (Counting every artist with
    ``findobj`` took a tenth of a second, longer than the imbalance it avoided.)
    """
    costs = [len(job[0].axes) for job in jobs]
    loads, parts = [0, 0], ([], [])
    for i in sorted(range(len(jobs)), key=lambda i: -costs[i]):
        lighter = int(loads[1] < loads[0])
        loads[lighter] += costs[i]
        parts[lighter].append(jobs[i])
    return parts


def _save_figures(figures, folder: Path, worker) -> None:
    """Save every figure's SVG and PNG, about half of them in ``worker``'s process if one is given."""
    jobs = [_save_job(figure, folder) for figure in figures]
    if worker is None:
        for job in jobs:
            _save(job)
        return
    mine, theirs = _split_for_helper(jobs)
    try:
        taken, refused = worker.submit(theirs)
        for job in mine + refused:
            _save(job)
        if not worker.wait():
            for job in taken:
                _save(job)
    except BaseException:
        worker.stop()  # before the staging folder goes: the helper may still be writing into it
        raise


def _write_files(report: Report, folder: Path, worker=None) -> None:
    files = _report_files(report, folder)
    _save_figures(report.figures, folder, worker)
    images = {figure.name: _embedded(figure, folder) for figure in report.figures}
    report.metrics.to_csv(files.metrics_csv, index=False, na_rep="nan")
    files.metrics_json.write_text(json_text(metrics_document(report)) + "\n")
    report.lag_table.to_csv(files.lag_metrics_csv, index=False, na_rep="nan")
    relative = {name: (image.png, image.svg) for name, image in images.items()}
    files.markdown.write_text(render_markdown(report, relative), encoding="utf-8")
    files.html.write_text(render_html(report, images), encoding="utf-8")


def write_report(report: Report, folder, *, force: bool = False, worker=None) -> ReportFiles:
    """Write ``report`` into ``folder`` (created if needed) and close its figures.

    Every file is first written into a temporary folder beside ``folder``
    (``.NAME.partial-...``) and moved into place once all are complete (with Ctrl-C
    held back during the move). An error or interrupt before then removes the
    temporary folder and leaves ``folder`` as it was. With ``force`` an existing
    folder is reused: the report's own files are replaced, any other file in it is
    left alone.

    Args:
        report: from :func:`build_report`.
        folder: the report folder.
        force: allow an existing folder.
        worker: a :class:`~gradscope.display.figure_worker.FigureWorker` to save about half
            of the figures in its process while this one saves the rest (what the command
            does on a machine with two cores or more); the files are the same either way.
            Figures that cannot be pickled, and all of them if the helper fails, are saved
            here.

    Returns:
        :class:`ReportFiles` with every path written.

    Raises:
        FileExistsError: the folder exists and ``force`` is False.
    """
    import matplotlib.pyplot as plt

    folder = check_output_folder(folder, force)
    try:
        with staged_folder(folder) as staging:
            _write_files(report, staging, worker)
    finally:
        for figure in report.figures:
            plt.close(figure.figure)
    return _report_files(report, folder)
