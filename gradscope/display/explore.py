r"""An interactive explorer for Jupyter: move a control, see how the gradient travels back in time.

:func:`explore` shows controls for the cell (vanilla RNN, LSTM, GRU), the vanilla
activation, the recurrent initializer and its gain, the hidden size, the horizon T and
the input scale. Every change runs :func:`gradscope.jacobian_spectra` for the new
configuration and redraws

* the lag profile (:func:`gradscope.plotting.plot_lag_profile`: log sigma_max, RMS
  and sigma_min of ``dh_T/dh_{T-k}`` against k), with the mean-field prediction for
  the RMS (:func:`gradscope.theory.mean_field`) where its assumptions hold;
* the distribution of the log singular values at three lags
  (:func:`gradscope.plotting.plot_singular_value_density`);
* a table of the fitted rates, the memory horizon and the verdict
  (:meth:`gradscope.Spectra.summary`) beside the mean-field rate.

It stays live by keeping the compiled programs' shapes few: the hidden size comes
from a short menu, the analysis keeps a fixed number of evenly spaced lags (so the
metrics always have one shape), and ``bucket=True`` runs every T of a bucket through
one compiled program (:mod:`gradscope.core.buckets`). The first value in a new bucket
(or a new cell, activation or hidden size) compiles; after that a change costs the
analysis and a redraw. Sliders update when released. The figure belongs to the
explorer (a :class:`matplotlib.figure.Figure`, never registered with pyplot) and is
shown as a PNG image widget, so it neither depends on nor changes the notebook's
matplotlib backend, interactive mode or rcParams.

Everything numerical comes from gradscope's analysis API; this module only arranges
calls and draws their results with gradscope's plotting functions.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import time

import jax
import numpy as np
import pandas as pd

from gradscope.analysis.comparison import make_inputs
from gradscope.analysis.spectra import Spectra, jacobian_spectra
from gradscope.cells import classic
from gradscope.core.buckets import bucket_length
from gradscope.theory.meanfield import MeanField, mean_field
from gradscope.theory.phase import fit_lags

__all__ = ["ACTIVATION_CHOICES", "CELL_CHOICES", "INITIALIZER_CHOICES", "THEORY_COLOR", "Explorer", "ExplorerResult",
           "Settings", "draw", "explore", "explore_once", "figure_png", "theory_for"]

CELL_CHOICES = ("vanilla", "LSTM", "GRU")
"""Cells the explorer offers."""

ACTIVATION_CHOICES = ("tanh", "relu", "sigmoid", "linear", "softplus", "elu", "gelu", "swish", "hard_tanh")
"""Activations of the vanilla cell the explorer offers (names of :data:`gradscope.cells.ACTIVATIONS`)."""

INITIALIZER_CHOICES = ("orthogonal", "identity", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
                       "lecun_normal", "lecun_uniform")
"""Recurrent-kernel initializers the explorer offers; each takes a ``gain``."""

THEORY_COLOR = "#D55E00"
"""Colour of the mean-field line (Okabe-Ito vermillion, apart from the measured lines)."""

_SIGMA_W_PER_GAIN = {"orthogonal": 1.0, "glorot_normal": 1.0, "glorot_uniform": 1.0, "lecun_normal": 1.0,
                     "lecun_uniform": 1.0, "he_normal": 2.0**0.5, "he_uniform": 2.0**0.5}
r"""Mean-field :math:`\sigma_w` per unit gain of a square recurrent kernel (entry variance
:math:`\sigma_w^2/n`, see :mod:`gradscope.initializers`); ``identity`` is not a random
mixing matrix, so the theory does not describe it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """One configuration of the explorer (the values of its controls).

    Attributes:
        cell: one of :data:`CELL_CHOICES`.
        activation: the vanilla cell's activation (ignored for LSTM and GRU).
        initializer: the recurrent kernel's initializer, one of :data:`INITIALIZER_CHOICES`.
        gain: the initializer's gain.
        hidden_size: units per layer (the LSTM's state has 2 * hidden_size entries).
        num_steps: the horizon T.
        input_scale: standard deviation of the Gaussian inputs.
    """

    cell: str = "vanilla"
    activation: str = "tanh"
    initializer: str = "orthogonal"
    gain: float = 1.0
    hidden_size: int = 64
    num_steps: int = 200
    input_scale: float = 1.0

    def make_cell(self, input_size: int):
        """The cell these settings describe, with ``input_size`` inputs."""
        if self.cell == "vanilla":
            return classic.VanillaRNN(self.hidden_size, input_size, self.activation)
        if self.cell == "LSTM":
            return classic.LSTM(self.hidden_size, input_size)
        if self.cell == "GRU":
            return classic.GRU(self.hidden_size, input_size)
        raise ValueError(f"cell must be one of {list(CELL_CHOICES)}, got {self.cell!r}")

    @property
    def label(self) -> str:
        """Legend text: initializer and gain."""
        return f"{self.initializer}(gain={self.gain:g})"


@dataclasses.dataclass(frozen=True)
class ExplorerResult:
    """What one explorer update computed (all of it from the analysis API).

    Attributes:
        settings: the configuration.
        spectra: :func:`gradscope.jacobian_spectra` of it, at evenly spaced lags.
        theory: the mean-field prediction, or None where it does not apply.
        theory_note: why the theory is or is not shown (one line).
        seconds: wall time of the analysis (parameters, inputs, spectra, summary, theory).
    """

    settings: Settings
    spectra: Spectra
    theory: MeanField | None
    theory_note: str
    seconds: float

    def table(self) -> pd.DataFrame:
        """Rates, horizon and verdict of :meth:`gradscope.Spectra.summary`, with the mean-field RMS rate."""
        measured = self.spectra.summary().columns()
        theory = float(self.theory.rms_rate) if self.theory is not None else np.nan
        return pd.DataFrame({
            "quantity": ["rate of sigma_max (nats/step)", "rate of RMS sigma (nats/step)",
                         "memory horizon (steps)", "verdict"],
            "measured": [measured["rate"][0], measured["rms_rate"][0], measured["horizon"][0], measured["verdict"][0]],
            "mean field": ["", theory, "", ""],
        })


def theory_for(settings: Settings, input_size: int) -> tuple[MeanField | None, str]:
    """The mean-field prediction for ``settings`` where its assumptions hold, and a line saying which.

    :func:`gradscope.theory.mean_field` describes a vanilla cell with a random mixing
    recurrent kernel (orthogonal, or i.i.d. entries of variance sigma_w^2/n), zero biases,
    a zero initial state, and inputs that give each unit its own drive of variance
    ``input_scale**2`` (a ``lecun_normal`` input kernel with at least as many inputs as
    units). It says nothing about gated cells or the identity kernel, and with narrow
    inputs (every unit driven by the same few numbers) the fixed-point theory is off.

    Args:
        settings: the configuration.
        input_size: inputs per step.

    Returns:
        ``(MeanField or None, note)``.
    """
    if settings.cell != "vanilla":
        return None, "mean field: none for gated cells"
    if settings.initializer not in _SIGMA_W_PER_GAIN:
        return None, f"mean field: not for {settings.initializer} (not a random mixing matrix)"
    if settings.input_scale > 0 and input_size < settings.hidden_size:
        return None, (f"mean field: not shown, it assumes each unit gets its own input drive "
                      f"(input_size >= hidden size); here input_size = {input_size}")
    sigma_w = _SIGMA_W_PER_GAIN[settings.initializer] * settings.gain
    field = mean_field(settings.activation, sigma_w, 0.0, settings.input_scale, initial_variance=0.0)
    return field, (f"mean field (n \u2192 \u221e): \u03c3_w = {sigma_w:.3g}, \u03c3_x = {settings.input_scale:g}, "
                   "\u00bd log \u03c7\u2081 per step (red line)")


def explore_once(settings: Settings, *, input_size: int | None = None, seed: int = 0, num_lags: int = 50,
                 max_steps: int = 500) -> ExplorerResult:
    """Run the analysis the explorer shows for ``settings`` (no widgets involved).

    The recurrent kernel is drawn with ``settings.initializer`` at ``settings.gain``
    (input kernel ``lecun_normal``, zero biases) from ``jax.random.key(seed)``; the
    inputs are the first T steps of one Gaussian draw of ``max_steps`` steps (so a new
    T extends the same sequence); the spectra are taken at ``num_lags`` evenly spaced
    lags (all lags when T <= num_lags) with ``bucket=True``.

    Args:
        settings: the configuration.
        input_size: inputs per step; default the hidden size (wide inputs, as the mean
            field assumes).
        seed: seed of the parameters and inputs.
        num_lags: how many evenly spaced lags to keep.
        max_steps: the longest T the inputs are drawn for.

    Returns:
        :class:`ExplorerResult`.

    Raises:
        ValueError: T outside ``[2, max_steps]`` or an unknown cell.
    """
    if not 2 <= settings.num_steps <= max_steps:
        raise ValueError(f"num_steps must lie in [2, max_steps] = [2, {max_steps}], got {settings.num_steps}")
    start = time.perf_counter()
    input_size = settings.hidden_size if input_size is None else input_size
    cell = settings.make_cell(input_size)
    params = cell.init(jax.random.key(seed), recurrent_init=(settings.initializer, {"gain": settings.gain}))
    inputs = np.asarray(make_inputs("gaussian", (seed,), max_steps, input_size, settings.input_scale)[0])
    lags = fit_lags(settings.num_steps, 0, min(num_lags, settings.num_steps))
    spectra = jacobian_spectra(cell, params, inputs[:settings.num_steps], lags=lags, bucket=True)
    spectra.summary()  # the table's numbers, so that the timing covers them
    theory, note = theory_for(settings, input_size)
    return ExplorerResult(settings, spectra, theory, note, time.perf_counter() - start)


def _density_lags(lags: np.ndarray) -> list[int]:
    """Three kept lags to show the distribution at: near T/10, T/2 and T."""
    picks = [lags[np.searchsorted(lags, fraction * lags[-1])] for fraction in (0.1, 0.5, 1.0)]
    return sorted({int(k) for k in picks})


def draw(figure, result: ExplorerResult) -> None:
    """Redraw ``figure`` (cleared) with the lag profile, theory line and density of ``result``.

    Args:
        figure: a :class:`matplotlib.figure.Figure` the caller owns.
        result: what :func:`explore_once` returned.
    """
    from gradscope.plotting.spectra import describe_cell, plot_lag_profile, plot_singular_value_density
    from gradscope.plotting.style import style

    settings, spectra = result.settings, result.spectra
    figure.clear()
    with style():
        profile_ax, density_ax = figure.subplots(1, 2)
        title = f"{describe_cell(settings.make_cell(1))}, T = {settings.num_steps}"
        plot_lag_profile({settings.label: spectra}, ax=profile_ax, title=title)
        if result.theory is not None:
            profile_ax.axline((0.0, 0.0), slope=float(result.theory.rms_rate), color=THEORY_COLOR,
                              linestyle=(0, (6, 3)), linewidth=1.0, label="mean-field RMS")
            profile_ax.text(0.98, 0.98, "mean-field RMS, \u00bd log \u03c7\u2081 per step", color=THEORY_COLOR,
                            transform=profile_ax.transAxes, ha="right", va="top", fontsize=7)
        plot_singular_value_density(spectra, _density_lags(spectra.lags), ax=density_ax,
                                    title="distribution of log \u03c3 at three lags")


def figure_png(figure) -> bytes:
    """PNG bytes of a figure at its own dpi, drawn once by Agg (no ``bbox_inches="tight"`` second pass).

    The figure keeps its Agg canvas, whose renderer caches text metrics across redraws.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def _widgets():
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError("gradscope.explore needs ipywidgets (and a Jupyter kernel to show it); install it with "
                          "pip install 'gradscope[notebooks]'") from err
    return ipywidgets


class Explorer:
    """The explorer's widgets, its figure and its latest result (see :func:`explore`).

    Attributes:
        controls: the control widgets by name: ``cell``, ``activation``, ``initializer``,
            ``gain``, ``hidden_size``, ``num_steps``, ``input_scale``. Setting a value
            (by hand or in code) recomputes and redraws.
        status: a label with the latest timings, or why the latest change could not be drawn
            (an overflow, say: the figure then still shows the previous settings).
        image: the image widget that shows the figure.
        table: an HTML widget with the rates table.
        figure: the :class:`matplotlib.figure.Figure` the explorer draws into.
        result: the latest :class:`ExplorerResult`.
        widget: the whole layout (what a notebook shows).
    """

    def __init__(self, settings: Settings, *, hidden_sizes=(16, 32, 64, 128), max_steps: int = 500,
                 num_lags: int = 50, input_size: int | None = None, seed: int = 0):
        from matplotlib.figure import Figure

        from gradscope.plotting.style import FULL_WIDTH, style

        widgets = _widgets()
        self._options = dict(input_size=input_size, seed=seed, num_lags=num_lags, max_steps=max_steps)
        self._compiled: set = set()
        self.controls = _make_controls(widgets, settings, tuple(hidden_sizes), max_steps, num_lags)
        self.status = widgets.Label()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.table = widgets.HTML()
        with style():
            self.figure = Figure(figsize=(FULL_WIDTH, 3.2), dpi=100, layout="constrained")
        self.result: ExplorerResult | None = None
        self.widget = _layout(widgets, self.controls, self.status, self.image, self.table)
        self.update()
        for control in self.controls.values():
            control.observe(lambda _change: self.update(), names="value")

    @property
    def settings(self) -> Settings:
        """The settings the controls show."""
        return Settings(**{name: control.value for name, control in self.controls.items()})

    def update(self) -> None:
        """Recompute for the current controls and redraw (the controls call this on every change)."""
        settings = self.settings
        self.controls["activation"].disabled = settings.cell != "vanilla"
        try:
            result = explore_once(settings, **self._options)
        except Exception as err:  # noqa: BLE001 - shown in the status line, so the explorer stays usable
            self.status.value = f"not redrawn, the figure shows the previous settings: {type(err).__name__}: {err}"
            return
        start = time.perf_counter()
        draw(self.figure, result)
        self.image.value = figure_png(self.figure)
        self.table.value = _table_html(result)
        self.result = result
        self.status.value = self._status_text(result, time.perf_counter() - start)

    def _status_text(self, result: ExplorerResult, drawing: float) -> str:
        settings = result.settings
        activation = settings.activation if settings.cell == "vanilla" else None
        shape = (settings.cell, activation, settings.hidden_size, bucket_length(settings.num_steps))
        first = "" if shape in self._compiled else " (first run at this shape: includes compilation)"
        self._compiled.add(shape)
        return (f"computed in {result.seconds:.2f} s, drawn in {drawing:.2f} s{first}; "
                f"{len(result.spectra.lags)} lags, n = {result.spectra.state_size}; {result.theory_note}")

    def __repr__(self) -> str:
        settings = self.settings
        return (f"<gradscope explorer: {settings.cell} hidden {settings.hidden_size}, {settings.label}, "
                f"T = {settings.num_steps}, input scale {settings.input_scale:g}>")

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, with a PNG of the current figure for front ends that cannot run widgets."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs))
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        return bundle


def _make_controls(widgets, settings: Settings, hidden_sizes: tuple, max_steps: int, num_lags: int) -> dict:
    slider = dict(continuous_update=False, style={"description_width": "initial"})
    return {
        "cell": widgets.Dropdown(options=CELL_CHOICES, value=settings.cell, description="cell"),
        "activation": widgets.Dropdown(options=ACTIVATION_CHOICES, value=settings.activation,
                                       description="activation"),
        "initializer": widgets.Dropdown(options=INITIALIZER_CHOICES, value=settings.initializer,
                                        description="initializer"),
        "gain": widgets.FloatSlider(value=settings.gain, min=0.1, max=3.0, step=0.05, description="gain", **slider),
        "hidden_size": widgets.Dropdown(options=hidden_sizes, value=settings.hidden_size, description="hidden"),
        "num_steps": widgets.IntSlider(value=settings.num_steps, min=min(num_lags, settings.num_steps),
                                       max=max_steps, step=10, description="T", **slider),
        "input_scale": widgets.FloatSlider(value=settings.input_scale, min=0.0, max=3.0, step=0.1,
                                           description="input scale", **slider),
    }


def _layout(widgets, controls: dict, status, image, table):
    rows = [widgets.HBox([controls[n] for n in names])
            for names in (("cell", "activation", "initializer", "gain"), ("hidden_size", "num_steps", "input_scale"))]
    return widgets.VBox([*rows, status, image, table])


def _table_html(result: ExplorerResult) -> str:
    from gradscope.display.reprs import format_number

    table = result.table()
    return table.to_html(index=False, border=0, formatters={c: format_number for c in table.columns})


def explore(cell: str = "vanilla", activation: str = "tanh", initializer: str = "orthogonal", gain: float = 1.0,
            hidden_size: int = 64, num_steps: int = 200, input_scale: float = 1.0, *,
            hidden_sizes=(16, 32, 64, 128), max_steps: int = 500, num_lags: int = 50,
            input_size: int | None = None, seed: int = 0) -> Explorer:
    """Interactive explorer of gradient flow through time (Jupyter, ipywidgets).

    Shows controls for the cell, the vanilla activation, the recurrent initializer and
    its gain, the hidden size, T and the input scale; each change recomputes
    :func:`gradscope.jacobian_spectra` and redraws the lag profile (with the mean-field
    RMS rate where it applies: vanilla cells, random recurrent kernels, inputs at least
    as wide as the hidden layer), the singular-value distribution and the rates table.
    After the first run at a shape a change redraws in a fraction of a second at
    hidden 64, T = 200 (the docs page "Exploring in Jupyter" gives measured latencies).

    Args:
        cell: ``"vanilla"``, ``"LSTM"`` or ``"GRU"`` to start with.
        activation: the vanilla cell's activation to start with (:data:`ACTIVATION_CHOICES`).
        initializer: the recurrent initializer to start with (:data:`INITIALIZER_CHOICES`).
        gain: the initializer's gain to start with (the slider spans 0.1 to 3).
        hidden_size: the hidden size to start with; must be one of ``hidden_sizes``.
        num_steps: the horizon T to start with.
        input_scale: the standard deviation of the Gaussian inputs to start with.
        hidden_sizes: the hidden sizes the menu offers.
        max_steps: the largest T the slider offers.
        num_lags: evenly spaced lags kept per analysis (the slider starts at this T).
        input_size: inputs per step; default the hidden size.
        seed: seed of the parameters and inputs.

    Returns:
        An :class:`Explorer`; a notebook shows it when it is the cell's value.

    Raises:
        ImportError: ipywidgets is not installed (``pip install 'gradscope[notebooks]'``).
        ValueError: a starting value that no control offers.
    """
    settings = Settings(cell, activation, initializer, float(gain), int(hidden_size), int(num_steps),
                        float(input_scale))
    _check_settings(settings, hidden_sizes, max_steps, num_lags)
    return Explorer(settings, hidden_sizes=hidden_sizes, max_steps=max_steps, num_lags=num_lags,
                    input_size=input_size, seed=seed)


def _check_settings(settings: Settings, hidden_sizes, max_steps: int, num_lags: int) -> None:
    choices = {"cell": CELL_CHOICES, "activation": ACTIVATION_CHOICES, "initializer": INITIALIZER_CHOICES,
               "hidden_size": tuple(hidden_sizes)}
    for name, options in choices.items():
        if getattr(settings, name) not in options:
            raise ValueError(f"{name} must be one of {list(options)}, got {getattr(settings, name)!r}")
    if num_lags < 2:
        raise ValueError(f"num_lags must be >= 2 (a rate needs two lags), got {num_lags}")
    if not 2 <= settings.num_steps <= max_steps:
        raise ValueError(f"num_steps must lie in [2, max_steps] = [2, {max_steps}], got {settings.num_steps}")
