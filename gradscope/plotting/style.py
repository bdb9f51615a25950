"""The look of gradscope's figures: what gradscope decides, what stays yours, and an opt-in style.

gradscope never changes matplotlib's global state (``rcParams``, interactive mode, the
backend). Its plot functions create figures through ``pyplot`` (so Jupyter shows them)
and read every setting they do not decide themselves from your ``rcParams`` at the
time of the call. Precisely:

**gradscope decides** (per figure or artist, whatever your rcParams say):

* the figure size and the constrained layout: legends sit below the axes and each plot
  was designed for :data:`COLUMN_WIDTH` (3.4 in) with 8 pt text. The default size
  grows in proportion to your ``font.size`` (``3.4 * font.size / 8`` in wide: 4.25 in
  at matplotlib's default 10 pt, exactly 3.4 in with the gradscope style), so text
  keeps its room whatever size you choose. Pass ``ax=`` to draw into a figure of
  your own at any size, or ``width=`` to :func:`new_axes` / ``figure_grid``.
* the colours, line styles and markers of data series (the :data:`PALETTE`, one
  colour per initializer and the same in every panel, verdict colours, one line
  style per metric): they carry meaning that the legend and the other panels rely
  on, so your ``axes.prop_cycle`` is not used.
* where legends go (below the axes, so they never cover data) and the grey reference
  lines (thresholds, baselines); heatmaps switch their grid off (a grid over an image
  hides cells).

**Yours** (read from your rcParams when the figure is drawn): fonts (family, size and
every size derived from it: secondary text such as legend titles is set in relative
sizes, ``"small"``, so it follows your ``font.size``), dpi, grid on/off and its look,
spines, line widths, ticks, and every ``savefig.*`` setting except where
:func:`save_figure` says otherwise.

**The gradscope style** (``gradscope.mplstyle``, shipped in this package): the compact
look of the documentation and the report, 8 pt text for a 3.4 in column, a light grid,
no top/right spines, 150 dpi (on screen and saved), tight bounding boxes, text kept
as text in SVG and TrueType fonts in PDF. Opt in with :func:`use_style` (global, like
``plt.style.use``), for a block with ``with style():``, or with
``plt.style.use("gradscope.plotting.gradscope")``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib as mpl

__all__ = [
    "COLUMN_WIDTH",
    "FULL_WIDTH",
    "PALETTE",
    "DESIGN_FONT_SIZE",
    "STYLE_FILE",
    "color",
    "font_scale",
    "new_axes",
    "save_figure",
    "style",
    "use_style",
]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe & Ito (2008) colour-blind-safe colours, in the order series are given them."""

COLUMN_WIDTH = 3.4
"""Width in inches of a single paper column."""

FULL_WIDTH = 7.0
"""Width in inches of a two-column (full page) figure."""

DESIGN_FONT_SIZE = 8.0
"""The font size (points) gradscope's figures are laid out for at :data:`COLUMN_WIDTH`."""

STYLE_FILE = Path(__file__).with_name("gradscope.mplstyle")
"""Path of the gradscope matplotlib style sheet (see the module docstring)."""


def color(index: int) -> str:
    """The palette colour for series number ``index`` (cycling)."""
    return PALETTE[index % len(PALETTE)]


def use_style() -> None:
    """Apply the gradscope style to every later figure (global, as ``plt.style.use`` is).

    This changes your ``rcParams`` because you ask it to; undo it with
    ``plt.rcdefaults()`` or use ``with style():`` for a block of code instead.
    """
    mpl.style.use(STYLE_FILE)


@contextlib.contextmanager
def style():
    """Context manager: the gradscope style for the figures made inside the block.

    Like ``plt.style.context``, every rcParam is restored on exit, with one exception:
    interactive mode keeps the value it has at the end of the block. Jupyter turns
    interactive mode on when its plotting backend loads, which happens with the first
    figure of a session; restoring the value from before that (off) would stop every
    later figure of the notebook from being shown.
    """
    with mpl.style.context(STYLE_FILE):
        try:
            yield
        finally:
            interactive = mpl.is_interactive()
    mpl.interactive(interactive)


def font_scale() -> float:
    """Your ``font.size`` over :data:`DESIGN_FONT_SIZE`: how much default figure sizes grow (1 at 8 pt)."""
    return float(mpl.rcParams["font.size"]) / DESIGN_FONT_SIZE


def new_axes(ax=None, width: float | None = None, aspect: float = 0.75):
    """Return ``(figure, axes)``: the given axes and its figure, or a new pair.

    A new figure is made with ``pyplot`` (Jupyter shows it) in constrained layout;
    nothing global changes.

    Args:
        ax: axes to draw on; returned as they are with their figure.
        width: width of a new figure in inches; default :data:`COLUMN_WIDTH` times
            :func:`font_scale`.
        aspect: height / width of a new figure.
    """
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    width = COLUMN_WIDTH * font_scale() if width is None else width
    fig, ax = plt.subplots(figsize=(width, width * aspect), layout="constrained")
    return fig, ax


def save_figure(fig, path, formats=("png", "svg", "pdf"), *, dpi: float | str | None = None,
                **savefig_options) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``; return the files written.

    Args:
        fig: a matplotlib Figure.
        path: a stem (``"figures/profile"``) or a file name whose suffix (one of
            ``formats``) is replaced; missing folders are created.
        formats: the file formats, one file each.
        dpi: resolution in dots per inch of raster output (PNG, and rasterized parts
            of SVG/PDF); default your ``savefig.dpi`` rcParam (matplotlib's default:
            the figure's own dpi, 150 in the gradscope style; pass 300 or more for print).
        **savefig_options: passed to ``Figure.savefig``. ``bbox_inches`` defaults to
            ``"tight"``: gradscope's legends sit below the axes, and a tight box keeps
            them whole; pass ``bbox_inches=None`` for the figure's exact size.

    Returns:
        The paths written, in the order of ``formats``.
    """
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix.lstrip(".") in formats else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    savefig_options.setdefault("bbox_inches", "tight")
    written = []
    for fmt in formats:
        target = stem.with_suffix(f".{fmt}")
        fig.savefig(target, format=fmt, dpi=dpi, **savefig_options)
        written.append(target)
    return written
