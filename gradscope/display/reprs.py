"""Renderers of the headline protocol: the short ``repr`` and the Jupyter HTML of every result.

Results implement ``_headline()`` (see :mod:`gradscope.display.headline`) and call
:func:`headline_text` from ``__repr__`` and :func:`headline_html` from
``_repr_html_``. Nothing here computes: it formats the results' own headline tables
and draws the figures they name. Neither renderer changes matplotlib's global state:
figures are drawn, encoded as PNG and closed.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import struct

import numpy as np
import pandas as pd

from gradscope.display.headline import MAX_TEXT_ROWS

__all__ = ["comparison_html", "diagnosis_html", "figure_to_base64", "format_number", "headline_html", "headline_text",
           "spectra_html", "spectra_table"]

_MAX_ROWS = 16
_SCREEN_DPI = 96
_RETINA = 2


def format_number(value) -> str:
    """Compact text for a table cell: 4 significant digits, ``inf``/``nan`` spelled out."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}" if np.isfinite(value) else str(float(value))
    return str(value)


def figure_to_base64(fig, *, dpi: int = 110, close: bool = True) -> str:
    """PNG bytes of ``fig``, base64-encoded (for an ``<img src="data:image/png;base64,...">``).

    Args:
        fig: a matplotlib Figure.
        dpi: resolution of the PNG.
        close: close the figure afterwards (so Jupyter does not show it a second time).

    Returns:
        The base64 text of the PNG.
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Is there anything to show? (tracers and shape placeholders have no values)
# ---------------------------------------------------------------------------------------------

def _has_values(result) -> bool:
    """True when every pytree leaf of ``result`` is a concrete array or number (not a tracer or placeholder)."""
    import jax

    def concrete(leaf) -> bool:
        if isinstance(leaf, jax.core.Tracer):
            return False
        return leaf is result or isinstance(leaf, (np.ndarray, np.generic, jax.Array, int, float, bool, complex))

    return all(concrete(leaf) for leaf in jax.tree_util.tree_leaves(result))


def _field_text(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{np.dtype(value.dtype).name}{list(value.shape)}"
    if isinstance(value, tuple) and len(value) > 6:
        return f"({len(value)} values: {value[0]!r} .. {value[-1]!r})"
    text = type(value).__name__ if dataclasses.is_dataclass(value) else repr(value)
    return text if len(text) <= 60 else type(value).__name__


def _structure_text(result) -> str:
    """``Kind (no values: traced or abstract)`` and each field's shape and dtype."""
    fields = [f"  {f.name}: {_field_text(getattr(result, f.name))}" for f in dataclasses.fields(result)]
    return "\n".join([f"{type(result).__name__} (no values: traced or abstract)"] + fields)


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

def _frame(table: dict) -> pd.DataFrame:
    return pd.DataFrame({name: np.ravel(np.asarray(values)) for name, values in table.items()})


def _text_table(table: pd.DataFrame) -> list[str]:
    shown = table.head(MAX_TEXT_ROWS)
    text = shown.to_string(index=False, formatters={c: format_number for c in shown.columns})
    lines = ["  " + line for line in text.splitlines()]
    if len(table) > len(shown):
        lines.append(f"  ... {len(table)} rows in all (to_dataframe() has them)")
    return lines


def headline_text(result) -> str:
    """The short ``repr`` of a result: kind and facts, then its headline table (at most 8 rows).

    Args:
        result: an object implementing ``_headline()`` (see :mod:`gradscope.display.headline`).

    Returns:
        A few lines of text. A result holding tracers or shape placeholders gets its
        fields' shapes and dtypes instead.
    """
    if not _has_values(result):
        return _structure_text(result)
    head = result._headline()
    facts = list(head.facts)
    lines = [f"{head.kind}: {facts[0]}" if facts else head.kind] + [f"  {fact}" for fact in facts[1:]]
    if head.table is not None:
        lines += _text_table(_frame(head.table))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

def _png_width(data: bytes) -> int:
    """Pixel width from a PNG's IHDR chunk."""
    return struct.unpack(">I", data[16:20])[0]


def _img(fig) -> str:
    """The figure as a 2x PNG shown at screen size (sharp on high-resolution screens); closes it."""
    encoded = figure_to_base64(fig, dpi=_SCREEN_DPI * _RETINA)
    width = _png_width(base64.b64decode(encoded[:40])) // _RETINA
    return f'<img style="max-width:100%" width="{width}" src="data:image/png;base64,{encoded}"/>'


def _table_html(table: pd.DataFrame) -> str:
    return table.to_html(index=False, border=0, formatters={c: format_number for c in table.columns},
                         na_rep="nan", classes="gradscope-table", max_rows=_MAX_ROWS)


def _layout(heading: str, facts, table: pd.DataFrame | None, images) -> str:
    details = "<br>".join(html.escape(fact) for fact in facts)
    cells = "".join(f'<div style="flex:0 1 auto">{image}</div>' for image in images)
    return (f'<div class="gradscope"><strong>{html.escape(heading)}</strong>'
            f'<div style="font-size:90%;color:#555">{details}</div>'
            f"{'' if table is None else _table_html(table)}"
            f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cells}</div></div>')


def _drawn(result, names) -> list[str]:
    """Each named :mod:`gradscope.plotting` figure of ``result`` as an ``<img>``; every figure closed."""
    import matplotlib.pyplot as plt

    from gradscope import plotting

    figures = []
    try:
        for name in names:
            figures.append(getattr(plotting, name)(result))
        return [_img(fig) for fig in figures]
    finally:
        for fig in figures:
            plt.close(fig)


def headline_html(result) -> str:
    """Jupyter HTML of a result: kind, facts, headline table, and the figures its headline names.

    Args:
        result: an object implementing ``_headline()`` (see :mod:`gradscope.display.headline`).

    Returns:
        An HTML fragment. A result holding tracers shows its text repr.
    """
    if not _has_values(result):
        return f"<pre>{html.escape(_structure_text(result))}</pre>"
    head = result._headline()
    table = None if head.table is None else _frame(head.table)
    return _layout(f"gradscope.{head.kind}", head.facts, table, _drawn(result, head.figures))


# ---------------------------------------------------------------------------------------------
# Earlier names, kept
# ---------------------------------------------------------------------------------------------

def spectra_table(spectra) -> pd.DataFrame:
    """Summary metrics of a (possibly batched) Spectra, one row per batch entry.

    Args:
        spectra: a :class:`gradscope.Spectra`.

    Returns:
        DataFrame with columns entry (batch index, empty when unbatched), rate,
        rms_rate, horizon and verdict, from ``spectra.summary()`` and ``spectra.verdict()``.
    """
    summary = spectra.summary()
    batch = np.shape(summary.rate)
    return pd.DataFrame({"entry": [str(index) if batch else "" for index in np.ndindex(*batch)],
                         **summary.columns()})


def spectra_html(spectra) -> str:
    """HTML for a :class:`gradscope.Spectra` (its ``_repr_html_``; see :func:`headline_html`)."""
    return headline_html(spectra)


def comparison_html(comparison) -> str:
    """HTML for a :class:`gradscope.Comparison` (its ``_repr_html_``; see :func:`headline_html`)."""
    return headline_html(comparison)


def diagnosis_html(diagnosis) -> str:
    """HTML for a :class:`gradscope.Diagnosis`: its table, its notes and the lag profiles of every layer.

    Args:
        diagnosis: a :class:`gradscope.analysis.diagnose.Diagnosis`.

    Returns:
        An HTML fragment (what ``Diagnosis._repr_html_`` shows).
    """
    from gradscope.plotting.spectra import plot_lag_profile

    layers = diagnosis.layers
    facts = (f"{len(layers)} recurrent layer(s) of a {diagnosis.library} model; "
             f"{np.shape(layers[0].inputs)[0]} sequence(s) of {np.shape(layers[0].inputs)[1]} steps",
             *(f"Note: {note}" for note in diagnosis.notes))
    figure = plot_lag_profile(diagnosis.spectra, metrics=("log_sigma_max", "log_rms"), title="Each layer and the stack")
    return _layout("gradscope.Diagnosis", facts, diagnosis.to_dataframe(), [_img(figure)])
