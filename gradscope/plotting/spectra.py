"""Figures of Jacobian spectra: lag profiles, heatmaps, densities, verdict summaries.

Every function takes a result (:class:`gradscope.Comparison`, :class:`gradscope.Spectra`,
a mapping ``label -> Spectra`` or the matching pandas table), draws on ``ax`` (a new
column-width axes by default) and returns the :class:`matplotlib.figure.Figure`.
Numbers come from the analysis API (``lag_table()``, ``lag_metrics()``,
``to_dataframe()``); the plots only select columns and aggregate over seeds
(mean, min/max, std) to draw a seed band. Export with
:func:`gradscope.plotting.save_figure`.
"""

from __future__ import annotations

import functools
import textwrap

from collections.abc import Mapping, Sequence

import jax
import matplotlib.ticker as mticker
import matplotlib.transforms as mtransforms
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from gradscope.analysis.comparison import Comparison
from gradscope.analysis.metrics import LagMetrics, Thresholds
from gradscope.analysis.profile import Profile
from gradscope.plotting.style import COLUMN_WIDTH, FULL_WIDTH, color, created_figure, fit_height, look, marker, new_axes
from gradscope.analysis.spectra import Spectra

__all__ = [
    "METRIC_LABELS",
    "VERDICT_COLORS",
    "describe_cell",
    "figure_grid",
    "lag_profile_table",
    "plot_forward_profile",
    "plot_lag_profile",
    "plot_singular_value_density",
    "plot_spectrum_heatmap",
    "plot_summary",
    "share_colorbar",
    "share_legend",
]

METRIC_LABELS = {
    "log_sigma_max": r"$\sigma_{\max}$",
    "log_rms": r"RMS $\sigma$",
    "log_sigma_min": r"$\sigma_{\min}$",
    "log_condition": "condition number",
    "isometry_spread": r"std of $\log\sigma_i$",
}
"""Legend text for each :class:`gradscope.metrics.LagMetrics` field."""

_LINESTYLES = ("-", "--", ":", "-.", (0, (1, 3)))
_MARK_EVERY = 0.1  # a marker every tenth of the line's length (series past the palette, style.marker)
_MARKER_SIZE = 3.5

VERDICT_COLORS = {"vanishing": "#0072B2", "slowly vanishing": "#56B4E9", "stable": "#009E73", "exploding": "#D55E00",
                  "non-finite": "#000000"}
"""Okabe-Ito colour of each verdict in summary figures."""
HEATMAP_LABEL = r"$\log\sigma_i$ (nats)"
"""Colour-bar label of the spectrum heatmaps."""

_LOG_AXIS_LABEL = "log singular value (nats)"
_TABLE_KEYS = ("init", "seed", "lag")


# ---------------------------------------------------------------------------------------------
# Tables the profile plots draw from
# ---------------------------------------------------------------------------------------------

def _spectra_table(spectra: Spectra, label: str) -> pd.DataFrame:
    """Long per-lag table of one (possibly batched) Spectra; batch entries become 'seeds'."""
    lags = spectra.lags
    columns = {name: np.asarray(values, np.float64).reshape(-1, len(lags))
               for name, values in spectra.lag_metrics()._asdict().items()}
    seeds, lag = np.meshgrid(np.arange(next(iter(columns.values())).shape[0]), lags, indexing="ij")
    table = {"init": label, "seed": seeds.ravel(), "lag": lag.ravel()}
    table.update({name: values.ravel() for name, values in columns.items()})
    return pd.DataFrame(table)


def lag_profile_table(result) -> pd.DataFrame:
    """The long table (init, seed, lag, LagMetrics fields) a profile plot draws.

    Args:
        result: a :class:`~gradscope.Comparison` (its ``lag_table()``), a
            :class:`~gradscope.Spectra` (batch entries become seeds), a
            :class:`~gradscope.profile.Profile` (its ``lag_table()``), a mapping
            ``label -> Spectra``, or such a table itself.

    Returns:
        A pandas DataFrame with one row per (init, seed, lag).

    Raises:
        TypeError: an unsupported result type.
        ValueError: a table without the init, seed and lag columns.
    """
    if isinstance(result, Comparison):
        return result.lag_table()
    if isinstance(result, Spectra):
        return _spectra_table(result, "spectra")
    if isinstance(result, Profile):
        return result.lag_table()
    if isinstance(result, Mapping):
        return pd.concat([_spectra_table(_as_spectra(s, label), str(label)) for label, s in result.items()],
                         ignore_index=True)
    if isinstance(result, pd.DataFrame):
        missing = [c for c in _TABLE_KEYS if c not in result.columns]
        if missing:
            raise ValueError(f"expected a lag table with columns {list(_TABLE_KEYS)} (Comparison.lag_table()); "
                             f"missing {missing}")
        return result
    raise TypeError("expected a Comparison, a Spectra, a Profile, a mapping label -> Spectra or a lag table "
                    f"(DataFrame), got {type(result).__name__}")


def _as_spectra(value, label) -> Spectra:
    if not isinstance(value, Spectra):
        raise TypeError(f"expected a Spectra for {label!r}, got {type(value).__name__}")
    return value


def _seed_band(table: pd.DataFrame, metric: str, band: str | None) -> pd.DataFrame:
    """Per-(init, lag) seed mean with lower/upper band edges (min/max or mean -/+ std)."""
    grouped = table.groupby(["init", "lag"], sort=False)[metric]
    out = pd.DataFrame({"mean": grouped.mean(), "min": grouped.min(), "max": grouped.max(),
                        "std": grouped.std(ddof=0), "count": grouped.size()})
    if band == "std":
        out["lower"], out["upper"] = out["mean"] - out["std"], out["mean"] + out["std"]
    else:
        out["lower"], out["upper"] = out["min"], out["max"]
    return out.reset_index()


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Profiles against lag
# ---------------------------------------------------------------------------------------------

def _natural_units_axis(ax) -> None:
    """Right-hand axis giving the log (nats) scale in powers of ten.

    Its functions and formatter are numpy's and matplotlib's, not lambdas, so the figure
    pickles and unpickles with nothing but matplotlib (the command hands report figures to
    a helper process to save).
    """
    to_decades, to_nats = (functools.partial(np.multiply, factor) for factor in (1 / np.log(10.0), np.log(10.0)))
    secondary = ax.secondary_yaxis("right", functions=(to_decades, to_nats))
    secondary.yaxis.set_major_locator(mticker.MaxNLocator(nbins=5, integer=True))
    secondary.yaxis.set_major_formatter(mticker.StrMethodFormatter("$10^{{{x:g}}}$"))
    secondary.set_ylabel("singular value")


def _chosen_inits(table: pd.DataFrame, metrics: Sequence[str], inits) -> list[str]:
    """The initializer labels to draw (validated), in the order of the table or of ``inits``."""
    unknown = [m for m in metrics if m not in LagMetrics._fields]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(LagMetrics._fields)}")
    present = list(dict.fromkeys(table["init"]))
    labels = present if inits is None else list(inits)
    absent = [label for label in labels if label not in present]
    if absent:
        raise ValueError(f"no initializer called {absent} in the result; it has {present}")
    return labels


def _legend_texts(labels: Sequence[str], identical: Mapping) -> dict:
    """Legend text of each label to draw, in order: a label identical to an earlier one is left out
    (its line would lie exactly under that one), which reads ``"first\n(= second)"``."""
    texts = {}
    for label in labels:
        twins = [other for other in identical.get(label, ()) if other in labels]
        if not any(twin in texts for twin in twins):
            texts[label] = f"{label}\n(= {', '.join(twins)})" if twins else label
    return texts


def _draw_profiles(ax, table: pd.DataFrame, metrics: Sequence[str], band: str | None, inits,
                   identical: Mapping | None = None) -> list[tuple[int, str]]:
    """Seed-mean lines (colour = init, line style = metric) with seed bands.

    Returns ``(colour index, legend text)`` of each init drawn (``identical``: label -> the
    labels with identical results, drawn once; see :func:`_legend_texts`).
    """
    labels = _chosen_inits(table, metrics, inits)
    texts = _legend_texts(labels, identical or {})
    table = table[table["init"].isin(labels)]
    for j, metric in enumerate(metrics):
        stats = _seed_band(table, metric, band)
        for i, label in enumerate(labels):
            if label not in texts:
                continue
            rows = stats[stats["init"] == label]
            ax.plot(rows["lag"].to_numpy(), rows["mean"].to_numpy(), color=color(i), marker=marker(i),
                    markevery=_MARK_EVERY, markersize=_MARKER_SIZE, linestyle=_LINESTYLES[j % len(_LINESTYLES)],
                    label=f"{label} {metric}")
            if band is not None and rows["count"].max() > 1:
                ax.fill_between(rows["lag"].to_numpy(), rows["lower"].to_numpy(), rows["upper"].to_numpy(),
                                color=color(i), alpha=0.18, linewidth=0, label=f"{label} {metric} band")
    return [(i, texts[label]) for i, label in enumerate(labels) if label in texts]


def _profile_legend(ax, drawn, metrics, band, table, unit, extra=()) -> None:
    handles = [Line2D([], [], color=color(i), marker=marker(i), markersize=_MARKER_SIZE, label=text)
               for i, text in drawn]
    if len(metrics) > 1:
        handles += [Line2D([], [], color="0.35", linestyle=_LINESTYLES[j % len(_LINESTYLES)],
                           label=METRIC_LABELS.get(m, m)) for j, m in enumerate(metrics)]
    handles += list(extra)
    spread = {"minmax": "min-max", "std": "mean ± std"}.get(band)
    count = int(table.groupby("init")["seed"].nunique().max())
    title = f"line: mean of {count} {unit}; band: {spread}" if spread and count > 1 else None
    _legend_below(ax, handles, title)


def _legend_below(ax, handles, title=None, max_columns: int = 3) -> None:
    """Legend under the axes (a fixed distance below the x label), as many columns as the labels allow.

    Outside the axes it can never cover data, however the data fall.
    """
    longest = max(len(line) for handle in handles for line in handle.get_label().splitlines())
    columns = min(len(handles), max_columns if longest <= 13 else (2 if longest <= 22 else 1))
    below = mtransforms.offset_copy(ax.transAxes, fig=ax.figure, y=-30, units="points")
    ax.legend(handles=handles, title=title, loc="upper center", bbox_to_anchor=(0.5, 0.0),
              bbox_transform=below, ncols=columns, frameon=False, title_fontsize="small")


def describe_cell(cell) -> str:
    """Short text naming a cell for titles, e.g. ``"VanillaRNN hidden 64 tanh"`` (a ``describe()`` method wins)."""
    if callable(getattr(cell, "describe", None)):
        return cell.describe()
    parts = [type(cell).__name__]
    if hasattr(cell, "hidden_size"):
        parts.append(f"hidden {cell.hidden_size}")
    activation = getattr(cell, "activation", None)
    if isinstance(activation, str):
        parts.append(activation)
    return " ".join(parts)


def _default_profile_title(result) -> str:
    if isinstance(result, Comparison):
        return (f"Gradient $\\partial h_T/\\partial h_{{T-k}}$ vs lag k\n"
                f"{describe_cell(result.cell)}, T={result.num_steps}, {len(result.seeds)} seeds")
    return "Gradient $\\partial h_T/\\partial h_{T-k}$ vs lag k"


def plot_lag_profile(result, *, metrics: Sequence[str] = ("log_sigma_max", "log_rms", "log_sigma_min"),
                     band: str | None = "minmax", inits: Sequence[str] | None = None, xscale: str = "linear",
                     ax=None, title: str | None = None):
    """Log singular values of the backward products ``dh_T/dh_{T-k}`` against lag k.

    One colour per initializer, one line style per metric; each line is the seed
    mean and the shaded band the seed spread. The left axis is in nats (natural
    log), the right axis labels the same scale as powers of ten. For a
    :class:`~gradscope.Comparison` the memory-horizon threshold is drawn too, and
    initializers with identical spectra (:meth:`~gradscope.Comparison.identical_to`, such
    as ``glorot_normal`` and ``lecun_normal`` for a square kernel) are drawn once, with
    a legend entry such as ``"glorot_normal (= lecun_normal)"`` (on two lines).

    Args:
        result: a Comparison, a (batched) Spectra, a Profile, a mapping ``label -> Spectra``,
            or a lag table (see :func:`lag_profile_table`).
        metrics: :class:`~gradscope.metrics.LagMetrics` fields to draw.
        band: ``"minmax"`` (seed min to max), ``"std"`` (mean -/+ one std) or None.
        inits: the initializer labels to draw (default all, in result order).
        xscale: ``"linear"`` or ``"log"`` for the lag axis.
        ax: axes to draw on; default a new column-width figure.
        title: figure title; default describes the cell and horizon.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: an unknown metric, band, xscale or initializer label.
    """
    _check_choice("band", band, ("minmax", "std", None))
    _check_choice("xscale", xscale, ("linear", "log"))
    table = lag_profile_table(result)
    identical = result.identical_to() if isinstance(result, Comparison) else {}
    ours = ax is None
    fig, ax = new_axes(ax, aspect=1.0)
    with look(fig):
        labels = _draw_profiles(ax, table, metrics, band, inits, identical)
        extra = []
        if isinstance(result, Comparison):
            extra.append(ax.axhline(np.log(result.thresholds.horizon), color="0.5", linewidth=0.8,
                                    linestyle=(0, (4, 2)), label=f"horizon {result.thresholds.horizon:g}"))
        ax.set(xlabel="lag k (steps back from T)", ylabel=_LOG_AXIS_LABEL, xscale=xscale,
               title=title if title is not None else _default_profile_title(result))
        _natural_units_axis(ax)
        unit = "runs" if isinstance(result, (Spectra, Profile, Mapping)) else "seeds"
        _profile_legend(ax, labels, metrics, band, table, unit, extra)
    if ours:
        fit_height(fig, ax)
    return fig


def plot_forward_profile(spectra, *, metrics: Sequence[str] = ("log_sigma_max", "log_rms", "log_sigma_min"),
                         band: str | None = "minmax", xscale: str = "linear", ax=None, title: str | None = None):
    """Growth of a perturbation: log singular values of ``dh_k/dh_0`` against steps k.

    The slope of the top line is the largest Lyapunov exponent of the forward map.

    Args:
        spectra: a forward :class:`~gradscope.Spectra` (from
            :func:`gradscope.forward_spectra`; batch entries give the band) or a
            mapping ``label -> forward Spectra`` (one colour each).
        metrics: as in :func:`plot_lag_profile`.
        band: as in :func:`plot_lag_profile`.
        xscale: as in :func:`plot_lag_profile`.
        ax: as in :func:`plot_lag_profile`.
        title: as in :func:`plot_lag_profile`.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: a backward Spectra (use :func:`plot_lag_profile`), or bad options.
    """
    named = spectra if isinstance(spectra, Mapping) else {"forward": spectra}
    for label, value in named.items():
        if _as_spectra(value, label).direction != "forward":
            raise ValueError(f"expected forward spectra (gradscope.forward_spectra) for {label!r}, got "
                             f"direction={value.direction!r}; plot backward spectra with plot_lag_profile")
    _check_choice("band", band, ("minmax", "std", None))
    _check_choice("xscale", xscale, ("linear", "log"))
    table = lag_profile_table(dict(named))
    ours = ax is None
    fig, ax = new_axes(ax, aspect=1.0)
    with look(fig):
        labels = _draw_profiles(ax, table, metrics, band, None)
        ax.set(xlabel="steps k after the perturbation at h_0", ylabel=_LOG_AXIS_LABEL, xscale=xscale,
               title=title if title is not None else
               "Perturbation growth $\\partial h_k/\\partial h_0$\n(slope of $\\sigma_{\\max}$ = top Lyapunov exponent)")
        _natural_units_axis(ax)
        _profile_legend(ax, labels, metrics, band, table, "runs")
    if ours:
        fit_height(fig, ax)
    return fig


# ---------------------------------------------------------------------------------------------
# One spectrum: heatmap and density
# ---------------------------------------------------------------------------------------------

def _on_host(tree, index=()):
    """``tree``'s arrays as NumPy arrays, each indexed by ``index``.

    Plots index and compare on the host: the same operations on JAX arrays would compile
    one small XLA program per shape, a pause at the first figure of every new shape.
    """
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[index], tree)


def _select_spectra(result, init, seed) -> tuple[Spectra, str]:
    """One unbatched Spectra (and a label) out of a Comparison or a Spectra, as NumPy arrays."""
    if isinstance(result, Comparison):
        i = _index_of("init", init if init is not None else result.labels[0], result.labels)
        j = _index_of("seed", seed if seed is not None else result.seeds[0], result.seeds)
        picked = _on_host(result.spectra, (i, j))
        return picked, f"{result.labels[i]}, seed {result.seeds[j]}"
    if isinstance(result, Spectra):
        batch = np.shape(result.finite)
        if batch and seed is None:
            raise ValueError(f"these spectra are batched with shape {batch}; pass seed=<index tuple or int> "
                             "to choose one entry")
        index = () if not batch else (seed if isinstance(seed, tuple) else (seed,))
        return _on_host(result, index), ("spectra" if not batch else f"entry {index}")
    raise TypeError(f"expected a Comparison or a Spectra, got {type(result).__name__}")


def _index_of(what: str, value, options) -> int:
    if value not in options:
        raise ValueError(f"no {what} {value!r} in the result; it has {list(options)}")
    return list(options).index(value)


def plot_spectrum_heatmap(result, *, init: str | None = None, seed=None, cmap: str = "viridis",
                          vmin: float | None = None, vmax: float | None = None, ax=None,
                          title: str | None = None, colorbar: bool = True):
    """Heatmap of every log singular value: lag k (rows) by singular-value index i (columns).

    Entries below the dtype's resolution floor (``~Spectra.resolved``) are masked
    and drawn light grey: their value only says "smaller than the floor".

    Args:
        result: a :class:`~gradscope.Comparison` (choose ``init`` label and ``seed``;
            default the first of each) or a :class:`~gradscope.Spectra` (``seed`` is
            the batch index when it is batched).
        init: initializer label, for a Comparison.
        seed: seed value (Comparison) or batch index (batched Spectra).
        cmap: matplotlib colour map name.
        vmin: lower colour limit (nats); default from the data.
        vmax: upper colour limit (nats); default from the data.
        ax: axes to draw on; default a new column-width figure.
        title: figure title; default names the product and configuration.
        colorbar: draw the colour bar beside the axes; False leaves it to the caller (panels
            on one scale: :func:`share_colorbar`).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: an unknown init or seed, or a batched Spectra without ``seed``.
    """
    spectra, label = _select_spectra(result, init, seed)
    values = np.ma.masked_array(np.asarray(spectra.log_singular_values, np.float64),
                                mask=~np.asarray(spectra.resolved))
    fig, ax = new_axes(ax, aspect=0.85)
    with look(fig):
        colormap = _masked_colormap(cmap)
        index = np.arange(1, values.shape[-1] + 1)
        mesh = ax.pcolormesh(index, spectra.lags, values, shading="nearest", cmap=colormap,
                             vmin=vmin, vmax=vmax, rasterized=True)
        if colorbar:
            fig.colorbar(mesh, ax=ax, label=HEATMAP_LABEL)
        what = "$\\partial h_k/\\partial h_0$" if spectra.direction == "forward" else "$\\partial h_T/\\partial h_{T-k}$"
        ax.set(xlabel="singular value index i (1 = largest)", ylabel="lag k", title=title if title is not None
               else f"Singular values of {what}\n{label}; grey: below float resolution")
        ax.grid(False)
    return fig


def _masked_colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="0.85")


def plot_singular_value_density(result, lags: Sequence[int], *, init: str | None = None, seed=None,
                                bins: int = 24, ax=None, title: str | None = None):
    """Histogram (density) of the log singular values at chosen lags, one colour per lag.

    Values below the resolution floor are left out (they are not measurements).
    The legend sits under the axes, where it cannot hide a histogram.

    Args:
        result: a :class:`~gradscope.Comparison` (one ``init``, default the first;
            ``seed`` None pools every seed) or a :class:`~gradscope.Spectra` (every
            batch entry pooled unless ``seed`` picks one).
        lags: lags to show; each must be one of ``result.lags``.
        init: initializer label, for a Comparison.
        seed: one seed (Comparison) or batch index (Spectra); None pools them.
        bins: histogram bins per lag.
        ax: axes to draw on; default a new column-width figure.
        title: figure title; default names the product and configuration.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: a lag that was not kept, or an unknown init or seed.
    """
    spectra, label = _density_source(result, init, seed)
    kept = list(spectra.lags)
    missing = [k for k in lags if k not in kept]
    if missing:
        raise ValueError(f"lags {missing} were not analysed; choose from the kept lags {kept}")
    values = np.asarray(spectra.log_singular_values, np.float64)
    resolved = np.asarray(spectra.resolved)
    fig, ax = new_axes(ax)
    with look(fig):
        for j, lag in enumerate(lags):
            column = kept.index(lag)
            sample = values[..., column, :][resolved[..., column, :]]
            ax.hist(sample, bins=bins, density=True, histtype="step", color=color(j), linewidth=1.4,
                    label=f"k = {lag}")
        ax.set(xlabel=_LOG_AXIS_LABEL, ylabel="density", title=title if title is not None
               else f"Distribution of $\\log\\sigma_i$ at chosen lags\n{label}")
        handles = [Line2D([], [], color=color(j), linewidth=1.4, label=f"k = {lag}") for j, lag in enumerate(lags)]
        _legend_below(ax, handles, title="lag", max_columns=2)  # fits a third of a page
    return fig


def _density_source(result, init, seed) -> tuple[Spectra, str]:
    if isinstance(result, Comparison):
        i = _index_of("init", init if init is not None else result.labels[0], result.labels)
        if seed is None:
            return _on_host(result.spectra, i), f"{result.labels[i]}, {len(result.seeds)} seeds pooled"
    elif isinstance(result, Spectra) and seed is None:
        pooled = "" if not np.shape(result.finite) else f", {np.size(result.finite)} entries pooled"
        return _on_host(result), f"spectra{pooled}"
    return _select_spectra(result, init, seed)


# ---------------------------------------------------------------------------------------------
# Verdicts across initializers
# ---------------------------------------------------------------------------------------------

def _horizon_text(value: float, longest: int | None) -> str:
    """A horizon in steps; ``inf`` (never crossed within the analysed lags) reads "> longest lag"."""
    if np.isposinf(value):
        return f"> {longest}" if longest is not None else "> T"
    return "n/a" if np.isnan(value) else f"{value:.0f}"


def plot_summary(result, *, metric: str = "rate", thresholds: Thresholds | None = None, ax=None,
                 title: str | None = None):
    """Growth rate per initializer with its seed spread, coloured by verdict, horizon annotated.

    Each row is one initializer: a dot at the seed-mean rate with a bar of -/+ one
    seed std, the individual seeds as small open circles, the colour of the
    verdict, and the median memory horizon (in steps; "> K" if sigma_max stays
    above the threshold at every analysed lag, K the longest) as the right-hand tick label.
    Dashed lines mark the verdict thresholds.

    Args:
        result: a :class:`~gradscope.Comparison`, or its ``to_dataframe()`` table
            (then seeds are not drawn individually).
        metric: ``"rate"`` (of sigma_max) or ``"rms_rate"`` (of the RMS singular value).
        thresholds: verdict thresholds to mark; default the Comparison's own.
        ax: axes to draw on; default a new column-width figure.
        title: figure title.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: an unknown metric, or a table without the needed columns.
    """
    _check_choice("metric", metric, ("rate", "rms_rate"))
    table, per_seed, thresholds = _summary_inputs(result, thresholds)
    fig, ax = new_axes(ax, aspect=max(0.6, 0.25 + 0.11 * len(table)))
    with look(fig):
        for i, row in enumerate(table.itertuples(index=False)):
            verdict_color = VERDICT_COLORS.get(row.verdict, "0.5")
            ax.errorbar(np.array([getattr(row, metric)], np.float64), np.array([i], np.float64),
                        xerr=np.array([getattr(row, f"{metric}_std")], np.float64), fmt="o",
                        color=verdict_color, markersize=5, capsize=2, label=row.init)
            if per_seed is not None:
                seeds = per_seed.loc[per_seed["init"] == row.init, metric].to_numpy(np.float64)
                ax.plot(seeds, np.full(len(seeds), i), "o", markersize=3, markerfacecolor="none",
                        color=verdict_color, alpha=0.6, label=f"{row.init} seeds")
            _mark_unplottable(ax, getattr(row, metric), i, verdict_color)
        longest = int(result.lags.max()) if isinstance(result, Comparison) else None
        _summary_decorations(ax, table, metric, thresholds, title, longest)
    return fig


def _mark_unplottable(ax, value: float, row: int, colour) -> None:
    """Say in words where a rate cannot be drawn: -inf (an exactly zero product), +inf, or NaN."""
    if np.isfinite(value):
        return
    if np.isnan(value):
        text, x, align = "no rate (overflow, or < 2 lags)", 0.5, "center"
    elif value < 0:
        text, x, align = "\u2190 rate -inf (zero product)", 0.02, "left"
    else:
        text, x, align = "rate +inf \u2192", 0.98, "right"
    ax.annotate(text, (x, row), xycoords=("axes fraction", "data"), ha=align, va="center", fontsize="small",
                color=colour)


def _summary_inputs(result, thresholds):
    if isinstance(result, Comparison):
        return result.to_dataframe(), result.to_dataframe(per_seed=True), thresholds or result.thresholds
    if isinstance(result, pd.DataFrame):
        needed = ["init", "rate", "rate_std", "rms_rate", "rms_rate_std", "horizon", "verdict"]
        missing = [c for c in needed if c not in result.columns]
        if missing:
            raise ValueError(f"expected a Comparison.to_dataframe() table with columns {needed}; missing {missing}")
        return result, None, thresholds
    raise TypeError(f"expected a Comparison or its to_dataframe() table, got {type(result).__name__}")


def _summary_decorations(ax, table, metric, thresholds, title, longest=None) -> None:
    ax.set_yticks(range(len(table)), list(table["init"]))
    ax.set_ylim(len(table) - 0.5, -0.5)
    # np.positive is the identity here, spelled so the figure pickles (matplotlib's default is a lambda)
    horizons = ax.secondary_yaxis("right", functions=(np.positive, np.positive))
    horizons.set_yticks(range(len(table)), [_horizon_text(h, longest) for h in table["horizon"]])
    horizons.set_ylabel("memory horizon (steps)")
    if thresholds is not None:
        for value in sorted({thresholds.vanishing, thresholds.exploding}):
            ax.axvline(value, color="0.5", linewidth=0.8, linestyle="--", label=f"threshold {value:g}")
    ax.axvline(0.0, color="0.2", linewidth=0.6)
    quantity = r"$\sigma_{\max}$" if metric == "rate" else r"RMS $\sigma$"
    ax.set_xlabel(f"growth rate of {quantity} (nats per step)")
    ax.grid(False, axis="y")  # rows are categories; the x grid follows your rcParams
    verdicts = [v for v in VERDICT_COLORS if v in set(table["verdict"])]
    handles = [Line2D([], [], marker="o", linestyle="", color=VERDICT_COLORS[v], label=v) for v in verdicts]
    _legend_below(ax, handles, title="verdict")
    ax.set_title(title if title is not None else
                 "Growth rate per initializer\n(dot: seed mean, bar: ± std, circles: seeds)")


def figure_grid(count: int, *, columns: int = 3, width: float | None = None, aspect: float = 0.8):
    """A figure with ``count`` axes in a grid (extra cells hidden), for panels of the plots above.

    Args:
        count: number of panels.
        columns: panels per row.
        width: figure width in inches; default one column width per panel, at most the full page width.
        aspect: height/width of each panel.

    Returns:
        ``(figure, list of count axes)``.
    """
    rows = -(-count // columns)
    columns = min(columns, count)
    width = min(FULL_WIDTH, COLUMN_WIDTH * columns) if width is None else width
    fig = created_figure(figsize=(width, width / columns * aspect * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for extra in axes.ravel()[count:]:
        extra.set_visible(False)
    return fig, list(axes.ravel()[:count])


_TITLE_SHARE = 0.75
"""A panel title wraps at this share of its column's width (the rest goes to tick labels and gaps)."""


def _label_outer_panels(axes, *, share_x: bool = True) -> None:
    """One axis label for the whole grid where every panel has the same, panel titles wrapped.

    Repeated on every panel of a large grid (a lineup of 15 cells), the labels and long
    titles left constrained layout no room for the panels: it gave up, and the labels of
    neighbouring panels overlapped. A label the panels share goes once under (or beside)
    the grid; panels whose labels differ keep them at the grid's bottom and left edge
    only. Tick labels stay on every panel (their ranges can differ). ``share_x=False`` keeps
    x labels on the bottom panels (a legend below the figure takes the place of one label).
    """
    fig = axes[0].figure
    places = [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in axes]
    for axis, shared_label, inner in (
            ("xaxis", fig.supxlabel, lambda row, column: any(c == column and r > row for r, c in places)),
            ("yaxis", fig.supylabel, lambda row, column: column > 0)):
        labels = {getattr(ax, axis).label.get_text() for ax in axes}
        if len(labels) == 1 and len(axes) > 1 and (share_x or axis == "yaxis"):
            size = getattr(axes[0], axis).label.get_fontsize()
            for ax in axes:
                getattr(ax, axis).label.set_text("")
            shared_label(labels.pop(), fontsize=size)
            continue
        for ax, (row, column) in zip(axes, places):
            if inner(row, column):
                getattr(ax, axis).label.set_text("")
    _wrap_titles(axes, columns=len({column for _, column in places}))


def _wrap_titles(axes, columns: int) -> None:
    """Wrap each panel title to :data:`_TITLE_SHARE` of its column; shrink one whose longest word is wider still."""
    column_points = axes[0].figure.get_figwidth() * 72 / columns
    for ax in axes:  # a character is about 0.55 of the font size wide
        size = ax.title.get_fontsize()
        characters = max(12, int(_TITLE_SHARE * column_points / (0.55 * size)))
        title = textwrap.fill(ax.get_title(), characters)
        longest = max((len(line) for line in title.splitlines()), default=0)  # a word longer than the width
        ax.set_title(title, fontsize=size * min(1.0, characters / max(longest, 1)))


def share_colorbar(fig, axes) -> None:
    """Put the heatmaps of ``axes`` on one colour scale, with one colour bar beside the grid.

    For panels of :func:`plot_spectrum_heatmap` drawn with ``colorbar=False`` on a
    :func:`figure_grid`: the colour limits become the lowest and highest value drawn in
    any panel, so equal colours mean equal values across panels. An axis label every
    panel shares is written once for the grid, and long titles wrap (:func:`_label_outer_panels`).

    Args:
        fig: the figure (laid out by ``layout="constrained"``, as :func:`figure_grid` makes it).
        axes: the panels; each must hold one heatmap (and no colour bar of its own).

    Raises:
        ValueError: a panel holds no heatmap.
    """
    from matplotlib.collections import QuadMesh

    meshes = [next((c for c in ax.collections if isinstance(c, QuadMesh)), None) for ax in axes]
    if any(mesh is None for mesh in meshes):
        raise ValueError("share_colorbar needs a heatmap in every panel: draw each with "
                         "plot_spectrum_heatmap(..., ax=ax, colorbar=False) first")
    low = min(mesh.norm.vmin for mesh in meshes)
    high = max(mesh.norm.vmax for mesh in meshes)
    for mesh in meshes:
        mesh.set_clim(low, high)
    _label_outer_panels(axes)
    with look(fig):
        fig.colorbar(meshes[0], ax=axes, label=HEATMAP_LABEL, aspect=40)


def share_legend(fig, axes) -> None:
    """Put one legend under the whole figure in place of the identical legends of ``axes``.

    For panels of one plot type (such as :func:`plot_singular_value_density` at
    the same lags) drawn on a :func:`figure_grid`: the legend of the first panel
    is kept, once, below every panel, and the panels' own legends are removed; a y label
    every panel shares is written once, x labels stay on the bottom panels, and long
    titles wrap (:func:`_label_outer_panels`).

    Args:
        fig: the figure (laid out by ``layout="constrained"``, as :func:`figure_grid` makes it).
        axes: the panels; each must have a legend.
    """
    first = axes[0].get_legend()
    handles, labels = first.legend_handles, [text.get_text() for text in first.get_texts()]
    title = first.get_title().get_text() or None
    for ax in axes:
        ax.get_legend().remove()
    _label_outer_panels(axes, share_x=False)
    fig.legend(handles, labels, title=title, loc="outside lower center", ncols=len(handles), frameon=False,
               title_fontsize=7, fontsize=7)
