"""Rich display of result objects in Jupyter: an HTML summary table with an inline figure.

:class:`gradscope.Spectra` and :class:`gradscope.Comparison` call these from their
``_repr_html_``; nothing here computes, it formats the objects' own tables.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

__all__ = ["comparison_html", "diagnosis_html", "figure_to_base64", "format_number", "spectra_html", "spectra_table"]

_MAX_ROWS = 16


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

    from gradscope.plotting.style import style

    buffer = io.BytesIO()
    with style():
        fig.savefig(buffer, format="png", dpi=dpi)
    if close:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig) -> str:
    return f'<img style="max-width:100%" src="data:image/png;base64,{figure_to_base64(fig)}"/>'


def _table_html(table: pd.DataFrame) -> str:
    return table.to_html(index=False, border=0, formatters={c: format_number for c in table.columns},
                         na_rep="nan", classes="gradscope-table", max_rows=_MAX_ROWS)


def _layout(heading: str, details: str, table: pd.DataFrame, figures) -> str:
    images = "".join(f'<div style="flex:1 1 320px">{_img(fig)}</div>' for fig in figures)
    return (f'<div class="gradscope"><strong>{html.escape(heading)}</strong>'
            f'<div style="font-size:90%;color:#555">{html.escape(details)}</div>'
            f"{_table_html(table)}"
            f'<div style="display:flex;flex-wrap:wrap;gap:8px">{images}</div></div>')


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
    """HTML for a :class:`gradscope.Spectra`: shape and lags, its summary table and its profile figure.

    Args:
        spectra: a :class:`gradscope.Spectra`.

    Returns:
        An HTML fragment (what ``Spectra._repr_html_`` shows).
    """
    from gradscope.plotting.spectra import plot_forward_profile, plot_lag_profile

    lags = spectra.lags
    product = "dh_k/dh_0" if spectra.direction == "forward" else "dh_T/dh_(T-k)"
    details = (f"{spectra.direction} products {product}; n = {spectra.state_size}; {len(lags)} lags "
               f"({lags.min()}..{lags.max()}); batch shape {np.shape(spectra.finite)}")
    plot = plot_forward_profile if spectra.direction == "forward" else plot_lag_profile
    return _layout("gradscope.Spectra", details, spectra_table(spectra), [plot(spectra)])


def comparison_html(comparison) -> str:
    """HTML for a :class:`gradscope.Comparison`: its ``to_dataframe()`` table, lag profile and rate summary.

    Args:
        comparison: a :class:`gradscope.Comparison`.

    Returns:
        An HTML fragment (what ``Comparison._repr_html_`` shows).
    """
    from gradscope.plotting.spectra import plot_lag_profile, plot_summary

    thresholds = comparison.thresholds
    details = (f"{comparison.cell!r}; T = {comparison.num_steps}; seeds {list(comparison.seeds)}; "
               f"thresholds: vanishing < {thresholds.vanishing:g} < stable < {thresholds.exploding:g} "
               f"< exploding (nats/step), horizon at sigma_max = {thresholds.horizon:g}")
    figures = [plot_lag_profile(comparison), plot_summary(comparison)]
    return _layout("gradscope.Comparison", details, comparison.to_dataframe(), figures)


def diagnosis_html(diagnosis) -> str:
    """HTML for a :class:`gradscope.Diagnosis`: its table, its notes and the lag profiles of every layer.

    Args:
        diagnosis: a :class:`gradscope.analysis.diagnose.Diagnosis`.

    Returns:
        An HTML fragment (what ``Diagnosis._repr_html_`` shows).
    """
    from gradscope.plotting.spectra import plot_lag_profile

    layers = diagnosis.layers
    details = (f"{len(layers)} recurrent layer(s) of a {diagnosis.library} model; "
               f"{np.shape(layers[0].inputs)[0]} sequence(s) of {np.shape(layers[0].inputs)[1]} steps. "
               + " ".join(f"Note: {note}" for note in diagnosis.notes))
    figure = plot_lag_profile(diagnosis.spectra, metrics=("log_sigma_max", "log_rms"), title="Each layer and the stack")
    return _layout("gradscope.Diagnosis", details, diagnosis.to_dataframe(), [figure])
