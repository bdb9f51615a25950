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

import importlib

_EXPORTS = {name: "gradscope.display.reprs" for name in (
    "comparison_html", "figure_to_base64", "format_number", "headline_html", "headline_text", "spectra_html",
    "spectra_table")}
_EXPORTS.update({name: "gradscope.display.headline" for name in (
    "Headline", "Readable", "batch_index_columns", "batched_table", "lag_range", "long_table")})

_SUBMODULES = ("figure_worker", "headline", "report", "reprs")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import a public name or submodule on first use (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"gradscope.display.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gradscope.display' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
