"""Shared look of every gradscope figure: palette, sizes, axes helpers and export.

Figures are sized for a paper column (3.4 in wide) or a full page width (7 in),
use the Okabe-Ito colour-blind-safe palette, and label log axes in natural units.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt

__all__ = ["COLUMN_WIDTH", "FULL_WIDTH", "PALETTE", "color", "new_axes", "save_figure", "style"]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe & Ito (2008) colour-blind-safe colours, in the order series are given them."""

COLUMN_WIDTH = 3.4
"""Width in inches of a single paper column."""

FULL_WIDTH = 7.0
"""Width in inches of a two-column (full page) figure."""

_RC = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.4,
    "figure.dpi": 150,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
}


def color(index: int) -> str:
    """The palette colour for series number ``index`` (cycling)."""
    return PALETTE[index % len(PALETTE)]


@contextlib.contextmanager
def style():
    """Context manager applying gradscope's rc settings to the figures made inside it.

    pyplot's backend is loaded first, outside the context: a backend that changes
    rcParams as it loads (Jupyter's inline backend turns interactive mode on) would
    otherwise lose that change when the context restores them, and the notebook would
    stop showing figures.
    """
    getattr(plt, "_get_backend_mod", lambda: None)()
    with mpl.rc_context(_RC):
        yield


def new_axes(ax=None, width: float = COLUMN_WIDTH, aspect: float = 0.75):
    """Return ``(figure, axes)``: the given axes and its figure, or a fresh styled pair."""
    if ax is not None:
        return ax.figure, ax
    with style():
        fig, ax = plt.subplots(figsize=(width, width * aspect), layout="constrained")
    return fig, ax


def save_figure(fig, path, formats=("png", "svg", "pdf")) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``; return the files written.

    ``path`` is a stem (``"figures/profile"``) or a file name whose suffix is replaced.
    """
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix.lstrip(".") in formats else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        with style():
            fig.savefig(target, format=fmt)
        written.append(target)
    return written
