"""Figures from gradscope results. Plot functions take result objects or tables and return a Figure.

They never compute: every number drawn comes from :mod:`gradscope`'s analysis API. They
never change matplotlib's global state either: fonts, dpi and grid follow your
rcParams; :func:`use_style` opts in to gradscope's compact paper look (see
:mod:`gradscope.plotting.style` for exactly what gradscope decides and what stays yours).
"""

from gradscope.plotting.spectra import (
    METRIC_LABELS,
    VERDICT_COLORS,
    describe_cell,
    figure_grid,
    lag_profile_table,
    plot_forward_profile,
    plot_lag_profile,
    plot_singular_value_density,
    plot_spectrum_heatmap,
    plot_summary,
)
from gradscope.plotting.theory import plot_calibration, plot_lyapunov_convergence, plot_phase_diagram, plot_rate_vs_theory
from gradscope.plotting.training import (
    plot_grad_norm_distribution,
    plot_hidden_gradients,
    plot_horizon_during_training,
    plot_horizon_prediction,
    plot_outcome_grid,
    plot_training_curves,
)
from gradscope.plotting.style import (
    COLUMN_WIDTH,
    DESIGN_FONT_SIZE,
    FULL_WIDTH,
    PALETTE,
    STYLE_FILE,
    color,
    font_scale,
    new_axes,
    save_figure,
    style,
    use_style,
)

__all__ = [
    "COLUMN_WIDTH",
    "DESIGN_FONT_SIZE",
    "FULL_WIDTH",
    "METRIC_LABELS",
    "PALETTE",
    "STYLE_FILE",
    "VERDICT_COLORS",
    "color",
    "describe_cell",
    "figure_grid",
    "font_scale",
    "lag_profile_table",
    "new_axes",
    "plot_calibration",
    "plot_forward_profile",
    "plot_grad_norm_distribution",
    "plot_hidden_gradients",
    "plot_horizon_during_training",
    "plot_horizon_prediction",
    "plot_lyapunov_convergence",
    "plot_outcome_grid",
    "plot_phase_diagram",
    "plot_rate_vs_theory",
    "plot_training_curves",
    "plot_lag_profile",
    "plot_singular_value_density",
    "plot_spectrum_heatmap",
    "plot_summary",
    "save_figure",
    "style",
    "use_style",
]
