"""Showing results to people: Jupyter displays and the HTML/Markdown report.

* :mod:`gradscope.display.headline`: the protocol every result implements
  (``_headline()``) for its short ``repr`` and Jupyter display, and tidy-table helpers.
* :mod:`gradscope.display.reprs`: the renderers of that protocol (text and HTML).
* :mod:`gradscope.display.report`: the report folder ``gradscope compare`` writes.
* :mod:`gradscope.display.figure_worker`: the helper process that saves half of a
  report's figures for the command.

Nothing here computes: it formats the result objects' own tables and figures. Names
load lazily, so a result module that imports :mod:`gradscope.display.headline` loads
no renderer.
"""

from __future__ import annotations

from gradscope._lazy import attributes, lazy_namespace, submodules

_EXPORTS = attributes("gradscope.display.reprs", (
    "comparison_html", "figure_to_base64", "format_number", "headline_html", "headline_text", "spectra_html",
    "spectra_table"))
_EXPORTS.update(attributes("gradscope.display.headline", (
    "Headline", "Readable", "batch_index_columns", "batched_table", "lag_range", "long_table")))

__all__ = sorted(_EXPORTS)

_EXPORTS.update(submodules("gradscope.display", ("explore", "figure_worker", "headline", "report", "reprs")))

__getattr__, __dir__ = lazy_namespace(__name__, globals(), _EXPORTS)
