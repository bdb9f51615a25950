"""Figures of a training monitor: growth rates, memory horizon and sigma_max over training.

The functions take a :class:`gradscope.Monitor` or its ``table`` (a DataFrame with
columns step, layer, lag, log_sigma_max, rate, rms_rate, horizon) and draw one line
per layer (and the stack); they compute nothing beyond selecting rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradscope.plotting.spectra import figure_grid
from gradscope.plotting.style import color, look

__all__ = ["monitor_table", "plot_monitor"]

STACK = "stack"
"""The stack's layer name (drawn in black, thinner, so that the layers under it stay visible)."""

_NEEDED = ("step", "layer", "lag", "log_sigma_max", "rate", "rms_rate", "horizon")


def monitor_table(result) -> tuple[pd.DataFrame, int]:
    """``(table, max_lag)`` of a :class:`gradscope.Monitor` or of its table.

    For a table, ``max_lag`` is its largest lag (the monitor's default lags include it).

    Raises:
        TypeError: neither a Monitor nor a DataFrame.
        ValueError: a table without the monitor's columns, or with no rows.
    """
    if hasattr(result, "table") and hasattr(result, "max_lag"):
        table, max_lag = result.table, int(result.max_lag)
    elif isinstance(result, pd.DataFrame):
        table, max_lag = result, int(result["lag"].max()) if "lag" in result and len(result) else 0
    else:
        raise TypeError(f"expected a gradscope.Monitor or its table (a DataFrame), got {type(result).__name__}")
    missing = [c for c in _NEEDED if c not in table.columns]
    if missing:
        raise ValueError(f"expected a monitor table with columns {list(_NEEDED)}; missing {missing}")
    if table.empty:
        raise ValueError("the monitor has no checks yet: call monitor.update(step, model) in the training loop")
    return table, max_lag


def plot_monitor(result, *, lag: int | None = None, title: str | None = None):
    """Growth rates, memory horizon and ``log sigma_max`` at one lag, against the training step.

    Three panels, one colour per layer (the stack in black):

    * growth rate per step of ``sigma_max`` (solid) and of the RMS singular value (dashed);
    * memory horizon, the lag where sigma_max falls below the threshold; a horizon beyond
      the lags measured is drawn at ``max_lag`` as a triangle;
    * ``log sigma_max`` of ``dh_T/dh_{T-k}`` at lag k = ``lag``.

    Args:
        result: a :class:`gradscope.Monitor` or its ``table``.
        lag: the lag of the third panel (one of the table's lags; default the largest).
        title: figure title.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: ``lag`` is not one of the table's lags, or the table is empty.
    """
    table, max_lag = monitor_table(result)
    lags = sorted(set(table["lag"]))
    lag = lags[-1] if lag is None else lag
    if lag not in lags:
        raise ValueError(f"lag must be one of the monitored lags {lags}, got {lag}")
    per_check = table.groupby(["layer", "step"], sort=False).first().reset_index()
    at_lag = table[table["lag"] == lag]
    fig, (rates, horizons, sigmas) = figure_grid(3, columns=3, aspect=0.9)
    with look(fig):
        for i, layer in enumerate(dict.fromkeys(table["layer"])):
            rows = per_check[per_check["layer"] == layer]
            line = {"color": "#000000", "linewidth": 0.9} if layer == STACK else {"color": color(i)}
            rates.plot(rows["step"], rows["rate"], label=layer, **line)
            rates.plot(rows["step"], rows["rms_rate"], linestyle="--", **line)
            _draw_horizon(horizons, rows, max_lag, line)
            sel = at_lag[at_lag["layer"] == layer]
            sigmas.plot(sel["step"], sel["log_sigma_max"], marker="o", markersize=2.5, **line)
        rates.axhline(0.0, color="0.4", linewidth=0.8)
        rates.set(xlabel="training step", ylabel="growth rate (nats/step)", title="Rates (— σmax, -- RMS)")
        horizons.set(xlabel="training step", ylabel="horizon (steps; ▸ beyond the lags)", ylim=(0, max_lag * 1.08),
                     title="Memory horizon")
        sigmas.set(xlabel="training step", ylabel=f"log σmax at lag {lag}", title=f"log σmax of dh_T/dh_(T-{lag})")
        fig.legend(*rates.get_legend_handles_labels(), loc="outside lower center", ncols=4, frameon=False)
        if title:
            fig.suptitle(title)
    return fig


def _draw_horizon(ax, rows: pd.DataFrame, max_lag: int, line: dict) -> None:
    horizon = rows["horizon"].to_numpy(np.float64)
    never = np.isposinf(horizon)
    capped = np.where(never, max_lag, horizon)
    ax.plot(rows["step"].to_numpy(), capped, **line)
    ax.plot(rows["step"].to_numpy()[never], capped[never], ">", color=line["color"], markersize=4)
