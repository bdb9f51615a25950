"""Figures for theory against measurement: phase diagrams, rate comparisons, Lyapunov convergence, calibration.

Every function takes a result object (:class:`gradscope.phase.PhaseDiagram`,
:class:`gradscope.lyapunov.LyapunovSpectrum`, :class:`gradscope.calibrate.Calibration`)
and returns a matplotlib Figure; all numbers drawn come from the result.
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.ticker as mticker
import numpy as np

from gradscope.plotting.style import color, look, new_axes

__all__ = ["plot_calibration", "plot_lyapunov_convergence", "plot_phase_diagram", "plot_rate_vs_theory"]

_RATE_LABELS = {"rms_rate": "RMS singular value growth rate (nats/step)",
                "rate": r"$\sigma_{\max}$ growth rate (nats/step)"}


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for a pcolormesh whose cells are centred on ``centres``."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5]) if centres[0] else np.array([-0.5, 0.5])
    mids = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mids[0]], mids, [2 * centres[-1] - mids[-1]]])


def _diverging_norm(values: np.ndarray):
    """Centred on zero, each side saturating at its own extreme (so both phases show their full range)."""
    finite = values[np.isfinite(values)]
    low = min(float(finite.min()), -1e-3) if finite.size else -1.0
    high = max(float(finite.max()), 1e-3) if finite.size else 1.0
    return mcolors.TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high)


def _input_width(diagram, input_index: int) -> str:
    """The theory's input assumption, for a legend: the cell's input size when inputs drive it."""
    if not diagram.input_scale[input_index]:
        return ""
    size = diagram.cell.input_size
    return f", {size} input" + ("s" if size > 1 else "")


def plot_phase_diagram(diagram, which: str = "rms_rate", input_index: int = 0, ax=None, theory: bool = True):
    """Heatmap of the seed-mean growth rate over (sigma_w, sigma_b), with the mean-field critical line.

    Blue is vanishing, red exploding (a diverging map centred on zero, each side
    scaled to its own extreme). The measured
    zero contour is drawn solid, the mean-field critical line (``chi1 = 1``) dashed
    when the diagram carries theory; with inputs, the legend names the input size the
    theory assumed (the cell's: see :func:`gradscope.theory.mean_field`).

    Args:
        diagram: a :class:`gradscope.phase.PhaseDiagram`.
        which: ``"rms_rate"`` or ``"rate"``.
        input_index: which input scale to show.
        ax: axes to draw on (default: a new figure).
        theory: draw the mean-field critical line if available.

    Returns:
        The matplotlib Figure.
    """
    values = diagram.mean(which)[input_index]
    fig, ax = new_axes(ax)
    with look(fig):
        mesh = ax.pcolormesh(_edges(diagram.sigma_w), _edges(diagram.sigma_b), values,
                             cmap="RdBu_r", norm=_diverging_norm(values), shading="flat")
        fig.colorbar(mesh, ax=ax, label=_RATE_LABELS[which])
        if values.shape[0] > 1 and values.shape[1] > 1 and np.nanmin(values) < 0 < np.nanmax(values):
            ax.contour(diagram.sigma_w, diagram.sigma_b, values, levels=[0.0], colors=[color(7)], linewidths=1.0)
        if theory and diagram.critical_sigma_w is not None:
            ax.plot(diagram.critical_sigma_w[input_index], diagram.sigma_b, "--", color=color(1),
                    label=r"mean field $\chi_1 = 1$" + _input_width(diagram, input_index))
            ax.legend(loc="upper left")
        ax.set_xlim(_edges(diagram.sigma_w)[[0, -1]])
        ax.set_xlabel(r"$\sigma_w$ (recurrent scale)")
        ax.set_ylabel(r"$\sigma_b$ (bias scale)")
        ax.set_title(f"input scale {diagram.input_scale[input_index]:g}" + (", untied" if diagram.untied else ""))
        ax.grid(False)
    return fig


def plot_rate_vs_theory(diagram, input_index: int = 0, ax=None):
    """Measured RMS growth rate (seed mean +- std) against sigma_w, with the mean-field 1/2 log chi1.

    One colour per sigma_b: markers with error bars are measured, lines are theory.

    Args:
        diagram: a :class:`gradscope.phase.PhaseDiagram` that carries theory
            (a vanilla cell with the default input initializer).
        input_index: which input scale to show.
        ax: axes to draw on.

    Raises:
        ValueError: the diagram has no theory to compare with.
    """
    if diagram.theory_rms_rate is None:
        raise ValueError("this phase diagram carries no mean-field theory (it needs a VanillaRNN with the "
                         "default lecun_normal input kernel)")
    mean, std = diagram.mean("rms_rate")[input_index], diagram.std("rms_rate")[input_index]
    fig, ax = new_axes(ax)
    with look(fig):
        for i, sigma_b in enumerate(diagram.sigma_b):
            ax.plot(diagram.sigma_w, diagram.theory_rms_rate[input_index, i], "-", color=color(i))
            ax.errorbar(diagram.sigma_w, mean[i], yerr=std[i], fmt="o", ms=3, color=color(i),
                        label=rf"$\sigma_b = {sigma_b:g}$")
        ax.axhline(0.0, color=color(7), lw=0.6)
        ax.set_xlabel(r"$\sigma_w$")
        ax.set_ylabel(_RATE_LABELS["rms_rate"])
        ax.set_title(r"measured (markers) vs $\frac{1}{2}\log\chi_1$ (lines)" + _input_width(diagram, input_index))
        ax.legend()
    return fig


def plot_lyapunov_convergence(spectrum, reference=None, num_shown: int = 6, ax=None, batch_index=()):
    """Running Lyapunov estimates against accumulated steps, optionally with reference values.

    Args:
        spectrum: a :class:`gradscope.lyapunov.LyapunovSpectrum`.
        reference: exact exponents to draw as dashed lines (for example
            :func:`gradscope.theory.ginibre_lyapunov` or
            :func:`gradscope.theory.fixed_linear_lyapunov`), aligned with the exponents.
        num_shown: how many exponents to draw, spread evenly from the largest to the smallest.
        ax: axes to draw on.
        batch_index: index into leading batch axes, if the spectrum has any.
    """
    history = np.asarray(spectrum.history)[batch_index]
    shown = np.unique(np.linspace(0, history.shape[-1] - 1, min(num_shown, history.shape[-1])).astype(int))
    fig, ax = new_axes(ax)
    with look(fig):
        for j, i in enumerate(shown):
            ax.plot(spectrum.steps, history[:, i], color=color(j), label=rf"$\lambda_{{{i + 1}}}$")
            if reference is not None:
                ax.axhline(float(np.asarray(reference)[i]), color=color(j), ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("steps accumulated (after the transient)")
        ax.set_ylabel("Lyapunov exponent estimate (nats/step)")
        ax.legend(ncol=2)
    return fig


def plot_calibration(calibration, ax=None):
    """Measured rate against gain at every evaluation, with the calibrated gain and its +-1 s.e. band.

    Args:
        calibration: a :class:`gradscope.calibrate.Calibration`.
        ax: axes to draw on.
    """
    order = np.argsort(calibration.gains)
    gains, rates = calibration.gains[order], calibration.rates[order]
    fig, ax = new_axes(ax)
    with look(fig):
        ax.errorbar(gains, rates.mean(axis=-1), yerr=rates.std(axis=-1), fmt="o-", ms=3, color=color(0),
                    label=f"measured {calibration.which} (seed mean ± std)")
        ax.axvspan(calibration.gain_low, calibration.gain_high, color=color(1), alpha=0.3, lw=0)
        ax.axvline(calibration.gain, color=color(1), label=f"critical gain {calibration.gain:.3g}")
        ax.axhline(0.0, color=color(7), lw=0.6)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xlabel(f"{calibration.initializer} gain")
        ax.set_ylabel("growth rate (nats/step)")
        ax.legend()
    return fig
