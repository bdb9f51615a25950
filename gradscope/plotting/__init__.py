"""Figures from gradscope results. Plot functions take result objects or tables and return a Figure.

They never compute: every number drawn comes from :mod:`gradscope`'s analysis API.
"""

from __future__ import annotations

from gradscope._lazy import attributes, lazy_namespace, submodules

# The look and save_figure load at once (matplotlib only; ``style`` is also this module's
# submodule name, and must stay the function); the plot functions load on first use, so a
# process that only saves figures does not import JAX.
from gradscope.plotting.style import (COLUMN_WIDTH, FULL_WIDTH, PALETTE, STYLE_FILE, apply_look, color, marker,
                                      new_axes, save_figure, style, use_style)

_EXPORTS = attributes("gradscope.plotting.spectra", (
    "METRIC_LABELS", "VERDICT_COLORS", "describe_cell", "figure_grid", "lag_profile_table", "plot_forward_profile",
    "plot_lag_profile", "plot_singular_value_density", "plot_spectrum_heatmap", "plot_summary", "share_colorbar",
    "share_legend"))
_EXPORTS.update(attributes("gradscope.plotting.monitor", ("monitor_table", "plot_monitor")))
_EXPORTS.update(attributes("gradscope.plotting.theory", (
    "plot_calibration", "plot_lyapunov_convergence", "plot_phase_diagram", "plot_rate_vs_theory")))
_EXPORTS.update(attributes("gradscope.plotting.training", (
    "plot_grad_norm_distribution", "plot_hidden_gradients", "plot_horizon_during_training", "plot_horizon_prediction",
    "plot_outcome_grid", "plot_training_curves")))
_EXPORTS.update(submodules("gradscope.plotting", ("monitor", "spectra", "theory", "training")))

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
    "marker",
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


__getattr__, __dir__ = lazy_namespace(__name__, globals(), _EXPORTS)
