"""Shared look of every gradscope figure: palette, sizes, axes helpers and export.

Figures are sized for a paper column (3.4 in wide) or a full page width (7 in),
use the Okabe-Ito colour-blind-safe palette, and label log axes in natural units.

gradscope never changes matplotlib's global settings (``rcParams``, interactive mode):
each figure it creates is styled on its own (:func:`apply_look`), and only where you
kept matplotlib's defaults, so your font sizes, grid and resolution win. To use the
look for your own figures, opt in with :func:`use_style` (global) or :func:`style`
(a ``with`` block), or load :data:`STYLE_FILE` as any matplotlib style sheet.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt

__all__ = ["COLUMN_WIDTH", "FULL_WIDTH", "MARKERS", "MIN_AXES_HEIGHT", "PALETTE", "STYLE_FILE", "apply_look", "color",
           "created_figure", "fit_height", "look", "marker", "new_axes", "save_figure", "style", "use_style"]

STYLE_FILE = Path(__file__).with_name("gradscope.mplstyle")
"""The look as a matplotlib style sheet: ``plt.style.use(gradscope.plotting.STYLE_FILE)``."""

_LOOK = dict(mpl.rc_params_from_file(STYLE_FILE, use_default_template=False))
"""gradscope's look as matplotlib settings, read from :data:`STYLE_FILE`."""

PALETTE = tuple(_LOOK["axes.prop_cycle"].by_key()["color"])
"""Okabe & Ito (2008) colour-blind-safe colours, in the order series are given them (from :data:`STYLE_FILE`)."""

COLUMN_WIDTH = 3.4
"""Width in inches of a single paper column."""

FULL_WIDTH = 7.0
"""Width in inches of a two-column (full page) figure."""

_FONT_KEYS = ("font.size", "axes.titlesize", "axes.labelsize", "legend.fontsize", "xtick.labelsize",
              "ytick.labelsize", "legend.title_fontsize", "figure.titlesize")
_RELATIVE = {"xx-small": 0.579, "x-small": 0.694, "small": 0.833, "medium": 1.0, "large": 1.2, "x-large": 1.44,
             "xx-large": 1.728, "larger": 1.2, "smaller": 0.833}


MARKERS = ("o", "s", "^", "D", "v")
"""Markers that tell apart series of one colour once :data:`PALETTE` has run out: series
``len(PALETTE)`` to ``2 len(PALETTE) - 1`` get the first, and so on (see :func:`marker`)."""

MIN_AXES_HEIGHT = 1.1
"""Inches of plot height a figure gradscope makes keeps when a long legend under it needs room
(:func:`fit_height`). A lag profile of six initializers (ten legend entries) keeps its
:data:`COLUMN_WIDTH` square; one of the fifteen cells of ``gradscope compare --cells`` grows taller
(tests/test_plotting.py checks both)."""


def color(index: int) -> str:
    """The palette colour for series number ``index`` (cycling)."""
    return PALETTE[index % len(PALETTE)]


def marker(index: int) -> str | None:
    """The marker for series number ``index``: None while :data:`PALETTE` lasts, then one of
    :data:`MARKERS` per turn of the palette, so that two series never look alike."""
    turn = index // len(PALETTE)
    return None if turn == 0 else MARKERS[(turn - 1) % len(MARKERS)]


def fit_height(fig, ax, min_height: float = MIN_AXES_HEIGHT) -> None:
    """Make a figure gradscope created taller where what surrounds ``ax`` (title, labels, a legend
    under it) would leave the axes less than ``min_height`` inches.

    Constrained layout cannot make room a figure does not have: it shrinks the axes to
    nothing and warns. Call after :func:`apply_look` (the fonts are final then).
    """
    renderer = fig.canvas.get_renderer()
    around = (ax.get_tightbbox(renderer).height - ax.get_window_extent(renderer).height) / fig.dpi
    engine = fig.get_layout_engine()
    pad = engine.get().get("h_pad", 0.0) if engine is not None else 0.0
    needed = min_height + around + 4 * pad
    if needed > fig.get_figheight():
        fig.set_figheight(needed)


def use_style() -> None:
    """Make gradscope's look matplotlib's default for every figure from now on (yours too).

    This changes ``matplotlib.rcParams`` for the session, which gradscope itself never does:
    call it only if you want the look everywhere. ``plt.style.use("default")`` undoes it.
    """
    plt.style.use(STYLE_FILE)


def style():
    """Context manager: gradscope's look for the figures you make inside the block.

    ``with gradscope.plotting.style(): fig, ax = plt.subplots()`` is
    ``plt.style.context(STYLE_FILE)``; matplotlib restores your settings when the block
    ends. gradscope's own plotting functions do not use it: they style the figures they
    create one by one (:func:`apply_look`) and never touch ``rcParams``.
    """
    return plt.style.context(STYLE_FILE)


def _user_set(*keys: str) -> bool:
    """True when any of ``keys`` differs from matplotlib's default (you, a style or Jupyter set it)."""
    return any(mpl.rcParams[key] != mpl.rcParamsDefault[key] for key in keys)


def _points(size, base: float) -> float:
    """A font size (points or a relative name like ``"medium"``) in points, relative to ``base``."""
    return float(size) if not isinstance(size, str) else _RELATIVE[size] * base


def _default_points(key: str) -> float:
    """The size matplotlib gives a text of kind ``key`` with the current settings."""
    return _points(mpl.rcParams[key], mpl.rcParams["font.size"])


def _resize(texts, key: str, points: float) -> None:
    """Set the texts that still have matplotlib's default size for ``key`` to ``points``."""
    default = _default_points(key)
    for text in texts:
        if text is not None and abs(text.get_fontsize() - default) < 1e-6:
            text.set_fontsize(points)


def _axes_fonts(ax) -> None:
    _resize([ax.title, ax._left_title, ax._right_title], "axes.titlesize", _LOOK["axes.titlesize"])
    _resize([ax.xaxis.label, ax.yaxis.label], "axes.labelsize", _LOOK["axes.labelsize"])
    _resize(ax.texts, "font.size", _LOOK["font.size"])
    ax.tick_params(axis="x", which="both", labelsize=_LOOK["xtick.labelsize"])
    ax.tick_params(axis="y", which="both", labelsize=_LOOK["ytick.labelsize"])
    legend = ax.get_legend()
    if legend is not None:
        _legend_fonts(legend)


def _legend_fonts(legend) -> None:
    _resize(legend.get_texts(), "legend.fontsize", _LOOK["legend.fontsize"])
    title = legend.get_title()
    title_key = "legend.title_fontsize" if mpl.rcParams["legend.title_fontsize"] is not None else "legend.fontsize"
    _resize([title], title_key, _LOOK["legend.fontsize"])


def _axes_frame(ax) -> None:
    """Spines and grid for line and bar plots; colour bars, images and heatmaps keep their frame and no grid."""
    from matplotlib.collections import QuadMesh

    if hasattr(ax, "_colorbar") or ax.images or any(isinstance(c, QuadMesh) for c in ax.collections) \
            or ax.collections and ax.get_label() == "<colorbar>":
        return
    if not _user_set("axes.spines.top", "axes.spines.right"):
        ax.spines[["top", "right"]].set_visible(False)
    if not _user_set("axes.grid", "grid.alpha"):
        ax.grid(True, alpha=_LOOK["grid.alpha"])


def _line_widths(ax) -> None:
    if _user_set("lines.linewidth"):
        return
    for line in ax.lines:
        if line.get_linewidth() == mpl.rcParams["lines.linewidth"]:
            line.set_linewidth(_LOOK["lines.linewidth"])


def apply_look(fig):
    """gradscope's look on one figure it created: sizes, spines, grid, resolution.

    Only what you have left at matplotlib's defaults is changed: if you set a font size,
    the grid, the spines or the resolution in ``rcParams`` (or a style), your setting is
    kept. Nothing global changes. Figures you pass in (``ax=``) are left as they are.

    Args:
        fig: a matplotlib Figure made by :func:`new_axes` or :func:`gradscope.plotting.figure_grid`.

    Returns:
        The same figure.
    """
    if not getattr(fig, "_gradscope_look", False):
        return fig
    fonts = not _user_set(*_FONT_KEYS)
    for ax in fig.axes:
        if fonts:
            for axes in (ax, *ax.child_axes):
                _axes_fonts(axes)
        if ax.get_label() != "<colorbar>":
            _axes_frame(ax)
            _line_widths(ax)
    if fonts:
        _resize([fig._suptitle], "figure.titlesize", _points("large", _LOOK["font.size"]))
        for legend in fig.legends:
            _legend_fonts(legend)
    return fig


@contextlib.contextmanager
def look(fig):
    """Context manager for a plotting function: draw inside, :func:`apply_look` when the block ends."""
    yield fig
    apply_look(fig)


def _text_scale() -> float:
    """How many times larger than the look's your text is: 1 where the look's font sizes apply."""
    if not _user_set(*_FONT_KEYS):
        return 1.0
    return max(1.0, mpl.rcParams["font.size"] / _LOOK["font.size"])


def created_figure(**options):
    """A new pyplot figure (so Jupyter shows it) marked for :func:`apply_look`.

    ``options`` go to ``plt.figure`` (``figsize``, ``layout``, ...); the resolution is
    gradscope's 150 dpi unless you set ``figure.dpi``. The sizes gradscope chooses fit its
    look's fonts; where you set larger fonts (which are kept), ``figsize`` grows with them,
    so that the axes keep the room the text leaves them.
    """
    if not _user_set("figure.dpi"):
        options.setdefault("dpi", _LOOK["figure.dpi"])
    if "figsize" in options:
        options["figsize"] = tuple(side * _text_scale() for side in options["figsize"])
    fig = plt.figure(**options)
    fig._gradscope_look = True
    return fig


def new_axes(ax=None, width: float = COLUMN_WIDTH, aspect: float = 0.75):
    """Return ``(figure, axes)``: the given axes and its figure, or a fresh pair gradscope will style."""
    if ax is not None:
        return ax.figure, ax
    fig = created_figure(figsize=(width, width * aspect), layout="constrained")
    return fig, fig.add_subplot()


def save_figure(fig, path, formats=("png", "svg", "pdf"), dpi: float | None = None,
                bbox_inches: str | None = "tight") -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``; return the files written.

    Files are cropped to the drawn content (unless ``bbox_inches=None``); SVG keeps its text
    as text and PDF embeds TrueType fonts, so both stay editable.

    Args:
        fig: a matplotlib Figure.
        path: a stem (``"figures/profile"``) or a file name whose suffix is replaced.
        formats: the file formats to write.
        dpi: resolution of raster formats; default your ``savefig.dpi`` setting (matplotlib's
            default ``"figure"``: the figure's own dpi, 150 for gradscope's figures).
        bbox_inches: ``"tight"`` crops to the drawn content; ``None`` keeps the figure size.

    Returns:
        The paths written, one per format.
    """
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix.lstrip(".") in formats else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with _laid_out_once(fig, bbox_inches) as crop:
        for fmt in formats:
            target = stem.with_suffix(f".{fmt}")
            with mpl.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):  # read while writing, then restored
                fig.savefig(target, format=fmt, dpi=dpi, bbox_inches=crop)
            written.append(target)
    return written


@contextlib.contextmanager
def _laid_out_once(fig, bbox_inches):
    """Lay ``fig`` out and find its tight crop once for all the files written inside the block.

    Left to ``savefig``, a layout engine (constrained layout) runs again at every draw and a
    tight crop costs one more draw per file: three formats would draw six times. Here the
    figure is laid out once, its layout engine paused (the positions kept) while the files
    are written, and restored after. Yields what to pass as ``bbox_inches``.
    """
    pad = mpl.rcParams["savefig.pad_inches"]
    if bbox_inches != "tight" or not isinstance(pad, (int, float)):
        yield bbox_inches
        return
    fig.draw_without_rendering()
    crop = fig.get_tightbbox().padded(pad)
    engine = fig.get_layout_engine()
    # No engine at all, so savefig skips its layout pass ("none" keeps a placeholder that costs one
    # pass per file); None means no engine only while rcParams ask for no automatic layout.
    automatic = mpl.rcParams["figure.autolayout"] or mpl.rcParams["figure.constrained_layout.use"]
    fig.set_layout_engine("none" if automatic else None)
    try:
        yield crop
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)
