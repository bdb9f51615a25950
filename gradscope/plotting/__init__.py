"""Figures from gradscope results. Plot functions take result objects or tables and return a Figure.

They never compute: every number drawn comes from :mod:`gradscope`'s analysis API.
"""

from __future__ import annotations

import importlib

# The look and save_figure load at once (matplotlib only; ``style`` is also this module's
# submodule name, and must stay the function); the plot functions load on first use, so a
# process that only saves figures does not import JAX.
from gradscope.plotting.style import (COLUMN_WIDTH, FULL_WIDTH, PALETTE, STYLE_FILE, apply_look, color, new_axes,
                                      save_figure, style, use_style)

_EXPORTS = {name: "gradscope.plotting.spectra" for name in (
    "METRIC_LABELS", "VERDICT_COLORS", "describe_cell", "figure_grid", "lag_profile_table", "plot_forward_profile",
    "plot_lag_profile", "plot_singular_value_density", "plot_spectrum_heatmap", "plot_summary", "share_colorbar",
    "share_legend")}
_EXPORTS.update({name: "gradscope.plotting.monitor" for name in ("monitor_table", "plot_monitor")})
_EXPORTS.update({name: "gradscope.plotting.theory" for name in (
    "plot_calibration", "plot_lyapunov_convergence", "plot_phase_diagram", "plot_rate_vs_theory")})
_EXPORTS.update({name: "gradscope.plotting.training" for name in (
    "plot_grad_norm_distribution", "plot_hidden_gradients", "plot_horizon_during_training", "plot_horizon_prediction",
    "plot_outcome_grid", "plot_training_curves")})

_SUBMODULES = ("monitor", "spectra", "theory", "training")

__all__ = [
    "COLUMN_WIDTH",
    "FULL_WIDTH",
    "METRIC_LABELS",
    "PALETTE",
    "STYLE_FILE",
    "VERDICT_COLORS",
    "apply_look",
    "color",
    "describe_cell",
    "figure_grid",
    "lag_profile_table",
    "monitor_table",
    "new_axes",
    "plot_calibration",
    "plot_forward_profile",
    "plot_grad_norm_distribution",
    "plot_hidden_gradients",
    "plot_horizon_during_training",
    "plot_horizon_prediction",
    "plot_lyapunov_convergence",
    "plot_monitor",
    "plot_outcome_grid",
    "plot_phase_diagram",
    "plot_rate_vs_theory",
    "plot_training_curves",
    "plot_lag_profile",
    "plot_singular_value_density",
    "plot_spectrum_heatmap",
    "plot_summary",
    "save_figure",
    "share_colorbar",
    "share_legend",
    "style",
    "use_style",
]


def __getattr__(name: str):
    """Import a plot function or submodule on first use (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"gradscope.plotting.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gradscope.plotting' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
