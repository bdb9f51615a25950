"""Diagnose a whole model: every recurrent layer on its own, and the stack as one recurrence.

:func:`diagnose` takes the model as you wrote it (Flax nnx, Flax linen with its
variables, Equinox), finds its recurrent layers by running it once on your inputs
(:mod:`gradscope.cells.adapters.discovery`), and analyses

* each layer with the inputs it actually sees in the forward pass (the model's
  inputs for the first layer, the outputs of the layer below, or whatever the
  model feeds it, for the others) from its actual initial carry, and
* when each layer takes the outputs of the layer below step by step, the stack as
  one recurrence whose state is every layer's carry
  (:class:`gradscope.cells.Stacked`): ``dH_T/dH_{T-k}`` covers the paths between
  layers too, which no single layer's spectrum shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradscope.analysis import metrics
from gradscope.analysis.comparison import aggregate_runs
from gradscope.analysis.spectra import Spectra, jacobian_spectra

__all__ = ["Diagnosis", "LayerDiagnosis", "diagnose"]

STACK = "stack"
"""The name of the whole stack's row in :meth:`Diagnosis.to_dataframe`."""

_COLUMNS = ("layer", "cell", "state_size", "steps", "rate", "rms_rate", "horizon", "verdict", "rate_std",
            "rms_rate_std", "horizon_min", "horizon_max", "sequences")


@dataclasses.dataclass(frozen=True)
class LayerDiagnosis:
    """One recurrent layer of a diagnosed model.

    Attributes:
        name: where the layer lives in the model (see :class:`gradscope.cells.adapters.discovery.Layer`).
        cell: the layer's cell behind gradscope's cell interface (an adapter).
        params: the layer's parameters (what ``jacobian_spectra(cell, params, ...)`` takes).
        spectra: :class:`gradscope.Spectra` of ``dh_T/dh_{T-k}``, ``[sequences, lags, n]``.
        inputs: ``[sequences, T, input_size]``, the inputs the layer saw in the forward pass.
        initial: the layer's initial carry in the forward pass, each leaf ``[sequences, ...]``.
    """

    name: str
    cell: Any
    params: Any
    spectra: Spectra
    inputs: Any
    initial: Any


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The recurrent layers of a model, each analysed, and the stack as a whole.

    Attributes:
        library: ``"flax.nnx"``, ``"flax.linen"`` or ``"equinox"``.
        layers: one :class:`LayerDiagnosis` per recurrent layer, in the order the model runs them.
        stack: spectra of the stacked recurrence (state: every layer's carry), ``[sequences,
            lags, n_total]``; ``None`` for one layer, or when the layers do not feed each other
            step by step (:attr:`notes` says why).
        thresholds: the verdict and horizon thresholds of the tables.
        notes: what the discovery found worth saying (why there is no stack analysis, ...).
    """

    library: str
    layers: tuple
    stack: Spectra | None
    thresholds: metrics.Thresholds
    notes: tuple

    @property
    def spectra(self) -> dict:
        """``name -> Spectra`` for every layer, and ``"stack"`` for the stack (if analysed).

        A mapping :func:`gradscope.plotting.plot_lag_profile` draws directly.
        """
        found = {layer.name: layer.spectra for layer in self.layers}
        return found if self.stack is None else {**found, STACK: self.stack}

    def to_dataframe(self, per_sequence: bool = False) -> pd.DataFrame:
        """One row per layer (and one for the stack), or per (layer, sequence).

        Columns: layer, cell (library and class), state_size (n), steps (T), rate,
        rms_rate, horizon, verdict; aggregated over sequences as
        :meth:`gradscope.Comparison.to_dataframe` aggregates seeds (means and
        population spreads of the rates, median and range of the horizon, the verdict of
        the mean rate), with a ``sequences`` count.
        """
        table = pd.concat([self._rows(name, spectra) for name, spectra in self.spectra.items()], ignore_index=True)
        if per_sequence:
            return table
        info = table.groupby("layer", sort=False)[["cell", "state_size", "steps"]].first()
        summary = aggregate_runs(table, self.thresholds, by="layer", count="sequences").set_index("layer")
        return info.join(summary).reset_index()[list(_COLUMNS)]

    def _rows(self, name: str, spectra: Spectra) -> pd.DataFrame:
        columns = spectra.summary(self.thresholds).columns()
        cell = self._describe(name)
        return pd.DataFrame({"layer": name, "sequence": np.arange(len(columns["rate"])), "cell": cell,
                             "state_size": spectra.state_size, "steps": self._steps(name), **columns})

    def _describe(self, name: str) -> str:
        if name == STACK:
            return f"{len(self.layers)} layers stacked"
        cell = next(layer.cell for layer in self.layers if layer.name == name)
        module = getattr(cell, "module", cell)
        return f"{getattr(cell, 'library', '')} {type(module).__name__}".strip()

    def _steps(self, name: str) -> int:
        layer = self.layers[0] if name == STACK else next(layer for layer in self.layers if layer.name == name)
        return int(np.shape(layer.inputs)[1])

    def __repr__(self) -> str:
        table = self.to_dataframe()[["layer", "cell", "state_size", "rate", "rms_rate", "horizon", "verdict"]]
        sequences = int(np.shape(self.layers[0].inputs)[0])
        head = (f"Diagnosis of {len(self.layers)} recurrent layer{'s' * (len(self.layers) != 1)} ({self.library}), "
                f"{sequences} sequence{'s' * (sequences != 1)} of {self._steps(self.layers[0].name)} steps")
        notes = "".join(f"\nnote: {note}" for note in self.notes)
        return f"{head}\n{table.to_string(index=False, float_format=lambda v: f'{v:.4g}')}{notes}"

    def _repr_html_(self) -> str:
        """Jupyter display: the table, the notes and the lag profiles (see :mod:`gradscope.display`)."""
        from gradscope.display.reprs import diagnosis_html

        return diagnosis_html(self)


def diagnose(model, xs, *, variables=None, forward: Callable | None = None, lags="all", num_log_lags: int = 32,
             dtype=None, thresholds: metrics.Thresholds = metrics.Thresholds(), cell_types=(),
             progress: bool | None = None) -> Diagnosis:
    """Find the recurrent layers of a model and analyse each one, and the stack as a whole.

    The model runs once on ``xs`` with its recurrent cells instrumented, which shows
    each layer's inputs and initial carry (see
    :mod:`gradscope.cells.adapters.discovery` for what counts as a recurrent cell).
    Each layer is then analysed by :func:`gradscope.jacobian_spectra` on those inputs;
    when every layer takes the outputs of the layer below step by step, the stack is
    analysed as one recurrence on the concatenated carries, from the first layer's
    inputs. Every sequence of a batch is analysed.

    >>> model = MyModel(rngs=nnx.Rngs(0))            # e.g. two nnx.RNN(nnx.LSTMCell(...)) layers
    >>> gradscope.diagnose(model, xs).to_dataframe()  # xs: what model(xs) takes

    Args:
        model: a Flax nnx module, a Flax linen module (with ``variables``, or bound) or an
            Equinox module. Put layers such as dropout in their evaluation mode first.
        xs: the model's inputs, as ``model(xs)`` takes them (a batch is fine; a few
            sequences keep it quick).
        variables: a linen model's variables (from ``model.init``).
        forward: how to run the model when not as ``model(xs)`` (nnx, Equinox) or
            ``model.apply(variables, xs)`` (linen): ``forward(model, xs)``, or
            ``forward(variables, xs)`` for linen, e.g. ``lambda m, xs: m(xs, train=False)``.
        lags: lags to analyse (``"all"``, ``"log"`` or ints; see :func:`gradscope.select_lags`).
        num_log_lags: lag count for ``lags="log"``.
        dtype: ``"float32"``/``"float64"`` to compute in (default: the parameters' dtype).
        thresholds: verdict and horizon thresholds for the tables.
        cell_types: further classes to treat as recurrent cells (your own cell classes).
        progress: progress bars for long sweeps (see :func:`gradscope.jacobian_spectra`).

    Returns:
        :class:`Diagnosis`; ``.to_dataframe()`` is the table, ``.spectra`` the spectra.

    Raises:
        TypeError: ``model`` is not a Flax or Equinox module, or a layer cannot be wrapped.
        ValueError: no recurrent layer found (the message says what was looked for and
            how to analyse a step function instead), or malformed inputs.
        gradscope.NumericalOverflowError: a layer's states or products overflowed.
    """
    from gradscope.cells.adapters.discovery import discover

    found, recording = discover(model, xs, variables=variables, forward=forward, cell_types=cell_types)
    params = found.params(_linen_variables(model, variables) if found.library == "flax.linen" else model)
    options = {"lags": lags, "num_log_lags": num_log_lags, "dtype": dtype, "progress": progress}
    layers = tuple(
        LayerDiagnosis(layer.name, layer.cell, p, _sequence_spectra(layer.cell, p, x, h0, options), x, h0)
        for layer, p, x, h0 in zip(found.layers, params, recording.inputs, recording.initial))
    stack = None
    if found.chained and len(layers) > 1:
        stack = _sequence_spectra(found.stack(), params, recording.inputs[0], tuple(recording.initial), options)
    return Diagnosis(found.library, layers, stack, thresholds, found.notes)


def _linen_variables(model, variables):
    """The variables given, or a bound linen module's own."""
    return model.unbind()[1] if variables is None else variables


def _sequence_spectra(cell, params, inputs, initial, options) -> Spectra:
    """Spectra ``[S, lags, n]`` of every sequence, each from its own initial carry."""
    leaves = jax.tree_util.tree_leaves(initial)
    if all(np.array_equal(leaf, leaf[:1].repeat(len(leaf), axis=0)) for leaf in leaves):  # one shared start
        h0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), initial)
        return jacobian_spectra(cell, params, jnp.asarray(inputs), h0, batch_axes=1, **options)
    each = [jacobian_spectra(cell, params, jnp.asarray(inputs[s]), jax.tree_util.tree_map(lambda a: a[s], initial),
                             batch_axes=0, **options) for s in range(len(inputs))]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *each)
