"""Figures of training experiments: outcomes against the horizon at init, curves, gradient norms.

Every function takes a result from :mod:`gradscope.training` (a
:class:`~gradscope.training.TrainingRun` or
:class:`~gradscope.training.HorizonExperiment`) or the table it produces, draws on
``ax`` (a new column-width axes by default) and returns the Figure. The numbers
come from the results' tables; plots only select, average over seeds and (for
noisy per-step curves, on request) take a running mean.
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from gradscope.plotting.style import color, look, new_axes
from gradscope.training.experiments import HorizonExperiment, TrainingRun

__all__ = [
    "plot_grad_norm_distribution",
    "plot_hidden_gradients",
    "plot_horizon_during_training",
    "plot_horizon_prediction",
    "plot_outcome_grid",
    "plot_training_curves",
]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_CURVE_COLUMNS = ("loss", "grad_norm", "clipped_norm", "update_norm")
_CURVE_LABELS = {"loss": "training loss", "grad_norm": "gradient norm (raw)",
                 "clipped_norm": "gradient norm (clipped)", "update_norm": "update norm"}


def _experiment_table(result, success_ratio):
    if isinstance(result, HorizonExperiment):
        return result.to_dataframe(), result.success_ratio
    if isinstance(result, pd.DataFrame):
        needed = ["lag", "init", "horizon_at_init", "loss_ratio", "learned", "predicted"]
        missing = [c for c in needed if c not in result.columns]
        if missing or success_ratio is None:
            raise ValueError(f"expected HorizonExperiment.to_dataframe() (columns {needed}) and success_ratio; "
                             f"missing columns {missing}, success_ratio={success_ratio}")
        return result, success_ratio
    raise TypeError(f"expected a HorizonExperiment or its to_dataframe() table, got {type(result).__name__}")


def plot_horizon_prediction(result, *, success_ratio: float | None = None, ax=None, title: str | None = None):
    """Final loss (relative to the baseline) against the memory horizon at init (relative to the lag).

    One point per run: colour = initializer, marker = lag. A horizon beyond T
    (sigma_max above the threshold at every lag) is drawn at the right edge as a
    triangle. Runs right of the vertical line had a horizon reaching the lag;
    runs below the horizontal line learned. Exploding starts (open markers) are
    predicted not to learn whatever their horizon.

    Args:
        result: a :class:`~gradscope.training.HorizonExperiment` or its table.
        success_ratio: the "learned" line, needed with a table.
        ax: axes to draw on.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    table, success_ratio = _experiment_table(result, success_ratio)
    ratio = table["horizon_at_init"].to_numpy(np.float64) / table["lag"].to_numpy(np.float64)
    finite = ratio[np.isfinite(ratio)]
    edge = 2.0 * max(float(finite.max()) if finite.size else 1.0, 2.0)
    fig, ax = new_axes(ax, aspect=0.85)
    with look(fig):
        inits, lags = list(dict.fromkeys(table["init"])), sorted(set(table["lag"]))
        for row, x in zip(table.itertuples(index=False), np.where(np.isfinite(ratio), ratio, edge)):
            exploding = row.verdict_at_init in ("exploding", "non-finite")
            marker = ">" if x == edge else _MARKERS[lags.index(row.lag) % len(_MARKERS)]
            c = color(inits.index(row.init))
            ax.plot([x], [row.loss_ratio], marker=marker, linestyle="", markersize=5, color=c,
                    markerfacecolor="none" if exploding else c)
        ax.axvline(1.0, color="0.4", linestyle="--", linewidth=0.8)
        ax.axhline(success_ratio, color="0.4", linestyle=":", linewidth=0.8)
        ax.axhline(1.0, color="0.7", linewidth=0.6)
        ax.set(xscale="log", yscale="log", xlabel="memory horizon at init / task lag",
               ylabel="final loss / baseline",
               title=title if title is not None else "Does the horizon at init predict learning?")
        _never_axis(ax.xaxis, edge)
        _prediction_legend(ax, inits, lags)
    return fig


def _never_axis(axis, edge: float) -> None:
    """Log-axis ticks at 0.1, 0.3, 1, 3, ... and "beyond T" at ``edge``."""
    ticks = [t for t in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0) if t < edge / 1.5] + [edge]
    axis.set_major_locator(mticker.FixedLocator(ticks))
    axis.set_major_formatter(mticker.FixedFormatter([f"{t:g}" for t in ticks[:-1]] + ["beyond T"]))
    axis.set_minor_formatter(mticker.NullFormatter())


def _prediction_legend(ax, inits, lags) -> None:
    handles = [Line2D([], [], color=color(i), marker="o", linestyle="", label=str(label))
               for i, label in enumerate(inits)]
    handles += [Line2D([], [], color="0.3", marker=_MARKERS[j % len(_MARKERS)], linestyle="",
                       markerfacecolor="none", label=f"lag {lag}") for j, lag in enumerate(lags)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, frameon=False)


def _outcome_stats(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, lag): median loss ratio and horizon, learned count, runs, majority prediction."""
    grouped = table.groupby(["init", "lag"], sort=False)
    steps = grouped["num_steps"].max() if "num_steps" in table else np.nan
    return pd.DataFrame({"ratio": grouped["loss_ratio"].median(), "learned": grouped["learned"].sum(),
                         "runs": grouped.size(), "horizon": grouped["horizon_at_init"].median(),
                         "predicted": grouped["predicted"].mean() >= 0.5, "num_steps": steps}).reset_index()


def _horizon_label(horizon: float, num_steps: float) -> str:
    """``h=12``, or ``h>T`` (``h>40`` when T is known) for a horizon beyond the analysed lags."""
    if np.isposinf(horizon):
        return f"h>{num_steps:.0f}" if np.isfinite(num_steps) else "h>T"
    return f"h={horizon:.0f}"


def plot_outcome_grid(result, *, success_ratio: float | None = None, ax=None, title: str | None = None):
    """Heatmap initializer x lag of the seed-median final loss / baseline, annotated.

    Each cell shows the median loss ratio (colour, log scale), how many seeds
    learned, and the median horizon at init ("h>T" when sigma_max stayed above
    the threshold at every analysed lag). A frame marks the cells predicted to learn.

    Args:
        result: a :class:`~gradscope.training.HorizonExperiment` or its table.
        success_ratio: the "learned" criterion, needed with a table.
        ax: axes to draw on.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    table, success_ratio = _experiment_table(result, success_ratio)
    stats = _outcome_stats(table)
    inits, lags = list(dict.fromkeys(table["init"])), sorted(set(table["lag"]))
    grid = stats.pivot(index="init", columns="lag", values="ratio").loc[inits, lags].to_numpy(np.float64)
    fig, ax = new_axes(ax, aspect=0.3 + 0.12 * len(inits))
    with look(fig):
        norm = mcolors.LogNorm(vmin=min(success_ratio / 4, np.nanmin(grid)), vmax=max(1.5, np.nanmax(grid)))
        image = ax.imshow(grid, cmap="viridis_r", norm=norm, aspect="auto")
        for row in stats.itertuples(index=False):
            i, j = inits.index(row.init), lags.index(row.lag)
            label = f"{row.learned}/{row.runs}\n{_horizon_label(row.horizon, row.num_steps)}"
            ax.text(j, i, label, ha="center", va="center", fontsize=6,
                    color="white" if row.ratio < np.sqrt(norm.vmin * norm.vmax) else "black")
            if row.predicted:
                ax.add_patch(plt.Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, edgecolor="#D55E00",
                                           linewidth=1.2))
        ax.set_xticks(range(len(lags)), [str(lag) for lag in lags])
        ax.set_yticks(range(len(inits)), inits)
        ax.set(xlabel="task lag (steps)", title=title if title is not None else
               "Learned / runs, horizon at init h\n(frame: predicted to learn)")
        ax.grid(False)
        fig.colorbar(image, ax=ax, label="final loss / baseline (median)")
    return fig


def _legend_below(ax) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)


def _check_run(run) -> TrainingRun:
    if not isinstance(run, TrainingRun):
        raise TypeError(f"expected a TrainingRun (from gradscope.training.train or clipping_study), "
                        f"got {type(run).__name__}")
    return run


def plot_training_curves(run, *, metric: str = "loss", window: int = 1, evaluation: bool = True,
                         max_loss: float | None = 10.0, ax=None, title: str | None = None):
    """Per-step training curves, one colour per setting (seed mean), with the evaluation loss.

    Args:
        run: a :class:`~gradscope.training.TrainingRun`.
        metric: a :class:`~gradscope.training.StepRecord` field: ``"loss"``,
            ``"grad_norm"``, ``"clipped_norm"`` or ``"update_norm"``.
        window: running-mean window over steps for the per-step curve (1: raw).
        evaluation: with ``metric="loss"``, also draw the checkpoint evaluation loss (dots).
        max_loss: with ``metric="loss"``, the top of the axis in units of the task baseline
            (a diverging run leaves through the top); ``None`` to show everything.
        ax: axes to draw on.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    run = _check_run(run)
    if metric not in _CURVE_COLUMNS:
        raise ValueError(f"metric must be one of {list(_CURVE_COLUMNS)}, got {metric!r}")
    curves = run.curves_table().groupby(["init", "step"], sort=False)[metric].mean().reset_index()
    points = run.checkpoint_table().groupby(["init", "step"], sort=False)["eval_loss"].mean().reset_index()
    fig, ax = new_axes(ax)
    with look(fig):
        for i, label in enumerate(run.labels):
            curve = curves[curves["init"] == label]
            values = curve[metric].rolling(window, min_periods=1).mean()
            ax.plot(curve["step"].to_numpy() + 1, values.to_numpy(), color=color(i), linewidth=1.0, label=label)
            if evaluation and metric == "loss":
                point = points[points["init"] == label]
                ax.plot(point["step"].to_numpy(), point["eval_loss"].to_numpy(), "o", color=color(i), markersize=3)
        if metric == "loss":
            ax.axhline(run.task.baseline, color="0.4", linestyle="--", linewidth=0.8, label="baseline")
        ax.set(xlabel="optimizer step", ylabel=_CURVE_LABELS[metric], yscale="log",
               title=title if title is not None else f"{run.task.name} task, T={run.task.num_steps}")
        if metric == "loss" and max_loss is not None:
            ax.set_ylim(top=max_loss * run.task.baseline)
        _legend_below(ax)
    return fig


def plot_grad_norm_distribution(run, *, bins: int = 40, limits: tuple[float, float] | None = None, ax=None,
                                title: str | None = None):
    """Histograms of the raw global gradient norm over all steps, one per setting, thresholds marked.

    Steps whose norm is inf/NaN (after a divergence) are not drawn.

    Args:
        run: a :class:`~gradscope.training.TrainingRun` (typically from ``clipping_study``).
        bins: number of log-spaced bins.
        limits: ``(low, high)`` of the bins; norms outside are counted in the first or
            last bin, so every finite step is drawn. Default: the range of the norms.
        ax: axes to draw on.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    run = _check_run(run)
    table = run.curves_table()
    values = table["grad_norm"].to_numpy(np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    low, high = limits if limits is not None else ((values.min(), values.max()) if values.size else (1e-3, 1.0))
    edges = np.geomspace(low, high, bins + 1)
    fig, ax = new_axes(ax)
    with look(fig):
        for i, label in enumerate(run.labels):
            norms = table.loc[table["init"] == label, "grad_norm"].to_numpy(np.float64)
            norms = np.clip(norms[np.isfinite(norms)], edges[0], edges[-1])
            ax.hist(norms, bins=edges, histtype="step", color=color(i), label=label)
            if run.clip_norms[i] is not None:
                ax.axvline(run.clip_norms[i], color=color(i), linestyle="--", linewidth=0.8)
        ax.set(xscale="log", xlabel="global gradient norm before clipping", ylabel="steps",
               title=title if title is not None else "Gradient-norm distribution\n(dashed: clipping threshold)")
        ax.legend(loc="best", frameon=False)
    return fig


def plot_hidden_gradients(run, *, init: str | None = None, seed=None, ax=None, title: str | None = None):
    """``||dl/dh_t||`` against t at every checkpoint of one setting (colour: training step).

    Args:
        run: a :class:`~gradscope.training.TrainingRun`.
        init: the setting's label (default the first).
        seed: the seed (default the first).
        ax: axes to draw on.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    run = _check_run(run)
    init = run.labels[0] if init is None else init
    seed = run.seeds[0] if seed is None else seed
    if init not in run.labels or seed not in run.seeds:
        raise ValueError(f"init must be one of {list(run.labels)} and seed one of {list(run.seeds)}; "
                         f"got {init!r}, {seed!r}")
    table = run.hidden_grad_table()
    table = table[(table["init"] == init) & (table["seed"] == seed)]
    cmap = plt.get_cmap("viridis")
    fig, ax = new_axes(ax)
    with look(fig):
        steps = list(run.steps)
        for k, step in enumerate(steps):
            rows = table[table["step"] == step]
            ax.plot(rows["t"].to_numpy(), rows["grad_norm"].to_numpy(), color=cmap(k / max(len(steps) - 1, 1)),
                    linewidth=1.0, label=f"step {step}" if k in (0, len(steps) - 1) else None)
        ax.set(yscale="log", xlabel="time step t", ylabel=r"$\|\partial \ell / \partial h_t\|$",
               title=title if title is not None else f"Loss gradient reaching each step\n{init}, seed {seed}")
        ax.legend(loc="best", frameon=False)
    return fig


def plot_horizon_during_training(run, *, ax=None, title: str | None = None):
    """Memory horizon of the cell at each checkpoint (seed median), one colour per setting.

    A horizon beyond ``T`` (the longest lag analysed) is drawn at ``T`` as a triangle.

    Args:
        run: a :class:`~gradscope.training.TrainingRun`.
        ax: axes to draw on.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    run = _check_run(run)
    table = run.checkpoint_table().groupby(["init", "step"], sort=False)["horizon"].median().reset_index()
    top = run.task.num_steps
    fig, ax = new_axes(ax)
    with look(fig):
        for i, label in enumerate(run.labels):
            rows = table[table["init"] == label]
            horizon = rows["horizon"].to_numpy(np.float64)
            capped = np.where(np.isposinf(horizon), top, horizon)
            ax.plot(rows["step"].to_numpy(), capped, color=color(i), label=label)
            never = np.isposinf(horizon)
            ax.plot(rows["step"].to_numpy()[never], capped[never], ">", color=color(i), markersize=4)
        ax.axhline(run.task.lag, color="0.4", linestyle="--", linewidth=0.8, label="task lag")
        ax.set(xlabel="optimizer step", ylabel="memory horizon (steps; ▸ beyond T)", ylim=(0, top * 1.05),
               title=title if title is not None else "Memory horizon during training (seed median)")
        _legend_below(ax)
    return fig
