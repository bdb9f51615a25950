"""A training monitor: how the gradient travels back through time, measured every N steps of your own loop.

:class:`Monitor` goes into any training loop (optax, Flax, Equinox, PyTorch)::

    monitor = gradscope.Monitor(model, probe_xs, every=100)
    for step in range(num_steps):
        ...                              # your training step
        monitor.update(step, model)      # measures when step % every == 0
    monitor.table                        # tidy rows: step, layer, lag, log sigma_max, ..., verdict
    gradscope.plotting.plot_monitor(monitor)

What a check measures. For each recurrent layer (and, for a model whose layers feed
each other step by step, the stack as one recurrence: see :func:`gradscope.diagnose`)
it runs one profile sweep over the probe sequence(s): ``log sigma_max`` and the log
RMS singular value of ``dh_T/dh_{T-k}`` at every lag 1..``max_lag``
(:func:`gradscope.profile.norm_profile`, no SVD, in ``mode="norms"``; with
``mode="profile"``, :func:`gradscope.profile.jacobian_profile` adds exact full spectra,
``sigma_min`` included, at the table's lags). From these come the growth rates,
memory horizon and verdict (:mod:`gradscope.metrics`); the table keeps the per-lag
values at a few chosen lags.

Cost. The analysed architecture is fixed when the monitor is made, and every check
calls one compiled function with the current weights as traced arguments: the first
check compiles it, later checks never retrace. A model whose layers do not feed each
other step by step (a projection between them) is run once more per check to record
what each layer sees.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradscope.analysis import metrics
from gradscope.analysis import spectra
from gradscope.analysis.profile import profile_of
from gradscope.cells.adapters.base import _require
from gradscope.cells.stacked import Stacked
from gradscope.core._lapack import lapack_thread_limit
from gradscope.core.lags import select_lags

__all__ = ["MODES", "Monitor"]

MODES = ("norms", "profile")
"""``"norms"``: sigma_max and RMS at every lag, no SVD; ``"profile"``: also full spectra at the table's lags."""

STACK = "stack"
"""The layer name of the whole stack's rows."""

_FRAMEWORK_ADAPTERS = {"torch": "from_torch", "keras": "from_keras"}


# ---------------------------------------------------------------------------------------------
# What is analysed: the cells as one Stacked, their parameters in a given state, their inputs
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class _Source:
    """The monitored architecture: layer names, the stack of cells, and how to read a state.

    Attributes:
        names: the layers' names.
        stack: the cells as a :class:`~gradscope.cells.Stacked` (its layers are analysed one
            by one; the whole stack too when ``chained`` and there are several).
        chained: each layer takes the outputs of the layer below step by step.
        params_of: ``state -> tuple`` of each layer's parameters.
        record: ``state -> Recording`` (what each layer sees), for unchained models.
        state: the object given to the monitor.
        xs: the first layer's inputs ``[S, T, input]``.
        h0: each layer's initial carry, leaves ``[S, ...]``.
        in_place: training changes ``state`` in place (nnx, PyTorch, Keras), so a check may
            read it without being handed the current one.
    """

    names: tuple
    stack: Stacked
    chained: bool
    params_of: Any
    record: Any
    state: Any
    xs: Any
    h0: tuple
    in_place: bool = False


class _PlainStep(NamedTuple):
    """A plain ``step(params, h, x)`` as a cell (it has no default initial state)."""

    fn: Any

    def step(self, params, h, x):
        """The wrapped step."""
        return self.fn(params, h, x)

    def initial_state(self, dtype=jnp.float32):
        """A plain step has none: the monitor needs ``h0``."""
        raise ValueError("a plain step function has no initial state: pass h0=... to the Monitor")


def _framework(model) -> str | None:
    if "torch" in sys.modules and isinstance(model, importlib.import_module("torch").nn.Module):
        return "torch"
    if "keras" in sys.modules and isinstance(model, importlib.import_module("keras").layers.Layer):
        return "keras"
    return None


def _framework_adapter(framework: str):
    """``gradscope.cells.from_torch`` / ``from_keras``, with a clear error while it is missing."""
    name = _FRAMEWORK_ADAPTERS[framework]
    adapter = getattr(importlib.import_module("gradscope.cells"), name, None)
    if adapter is None:
        raise NotImplementedError(f"monitoring a {framework} module needs gradscope.cells.{name}, which this "
                                  f"version of gradscope does not have; wrap the cell yourself and pass "
                                  f"Monitor(cell, xs, params=...)")
    return adapter


def _batched(xs, h0):
    """Inputs ``[S, T, input_size]`` from ``(T, input_size)`` or batched ones, and ``h0`` repeated ``[S, ...]``."""
    xs = jnp.asarray(xs)
    xs = xs[None] if xs.ndim == 2 else xs
    if xs.ndim != 3:
        raise ValueError(f"expected probe inputs of shape (T, input_size) or (sequences, T, input_size), "
                         f"got {xs.shape}")
    return xs, jax.tree_util.tree_map(lambda a: jnp.broadcast_to(jnp.asarray(a), (len(xs), *jnp.shape(a))), h0)


def _cell_source(cell, params, xs, h0, state) -> _Source:
    cell = cell if hasattr(cell, "step") and hasattr(cell, "initial_state") else _PlainStep(cell)
    if h0 is None:
        h0 = cell.initial_state()
    xs, h0 = _batched(xs, h0)
    name = type(getattr(cell, "module", cell)).__name__ if not isinstance(cell, _PlainStep) else "step"
    return _Source((name,), Stacked((cell,)), True, lambda state: (state,), None, state, xs, (h0,))


def _framework_source(model, framework, xs, h0) -> _Source:
    adapt = _framework_adapter(framework)
    cell = adapt(model)
    source = _cell_source(cell, cell.params, xs, h0, model)
    return dataclasses.replace(source, names=(type(model).__name__,), params_of=lambda state: (adapt(state).params,),
                               in_place=True)


def _model_source(model, xs, variables, forward, cell_types) -> _Source:
    from gradscope.cells.adapters.discovery import discover

    found, recording = discover(model, xs, variables=variables, forward=forward, cell_types=cell_types)
    state = variables if found.library == "flax.linen" else model
    if state is None:  # a bound linen module
        state = model.unbind()[1]
    return _Source(found.names, found.stack(), found.chained, found.params,
                   lambda state: found.record(state, xs), state, jnp.asarray(recording.inputs[0]),
                   tuple(jax.tree_util.tree_map(jnp.asarray, recording.initial)), found.library == "flax.nnx")


def _source(model, xs, params, h0, variables, forward, cell_types) -> _Source:
    framework = _framework(model)
    if framework is not None:
        return _framework_source(model, framework, xs, h0)
    if params is not None or (hasattr(model, "step") and hasattr(model, "initial_state")):
        if params is None:
            raise ValueError(f"monitoring a cell needs its parameters: Monitor(cell, xs, params=...), and "
                             f"monitor.update(step, params) with the current ones (got a {type(model).__name__})")
        return _cell_source(model, params, xs, h0, params)
    return _model_source(model, xs, variables, forward, cell_types)


# ---------------------------------------------------------------------------------------------
# One check: a compiled function of (parameters, inputs)
# ---------------------------------------------------------------------------------------------

class _Config(NamedTuple):
    """What a check measures (hashable: a static argument of the compiled check)."""

    max_lag: int
    lags: tuple
    spectrum_lags: tuple | None
    thresholds: metrics.Thresholds
    with_stack: bool


class _Measured(NamedTuple):
    """One analysed unit (a layer or the stack): values at the table's lags, and its summary.

    Averaged over the probe sequences: means of the logs and rates, the median horizon,
    the verdict of the mean rate (``"non-finite"`` if any sequence overflowed).
    """

    log_sigma_max: jax.Array
    log_rms: jax.Array
    log_sigma_min: jax.Array | None
    rate: jax.Array
    rms_rate: jax.Array
    horizon: jax.Array
    verdict: jax.Array


def _measure_one(cell, params, xs, h0, config: _Config) -> _Measured:
    """Profile every sequence (leading axis of ``xs`` and ``h0``) and average over them."""
    def one(x, h):
        profile = profile_of(cell.step, params, x, h, config.max_lag, config.spectrum_lags)
        return profile.lag_metrics(), profile.summary(config.thresholds), profile.finite

    lag_metrics, summary, finite = jax.vmap(one)(xs, h0)
    at = np.asarray(config.lags) - 1
    low = None if lag_metrics.log_sigma_min is None else jnp.mean(lag_metrics.log_sigma_min[:, at], axis=0)
    rate = jnp.mean(summary.rate)
    return _Measured(jnp.mean(lag_metrics.log_sigma_max[:, at], axis=0), jnp.mean(lag_metrics.log_rms[:, at], axis=0),
                     low, rate, jnp.mean(summary.rms_rate), jnp.median(summary.horizon),
                     metrics.verdict_code(rate, jnp.all(finite), config.thresholds))


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("stack", "config"))
def _measure(stack: Stacked, params, inputs, h0, config: _Config) -> tuple:
    """Every layer (and the stack); ``inputs`` is the first layer's (chained) or each layer's, ``[S, T, ...]``."""
    if not isinstance(inputs, tuple):  # chained: each layer's inputs come from the stack's own unroll
        inputs = jax.vmap(lambda x, h: stack.layer_inputs(params, x, h))(inputs, h0)
    found = [_measure_one(cell, p, x, h, config) for cell, p, x, h in zip(stack.layers, params, inputs, h0)]
    return (*found, _measure_one(stack, params, inputs[0], h0, config)) if config.with_stack else tuple(found)


def _rows(step: int, names, measured, config: _Config, sequences: int) -> pd.DataFrame:
    """Tidy rows, one per unit and lag: see :attr:`Monitor.table`."""
    measured = jax.device_get(measured)
    count, lags = len(names), len(config.lags)

    def per_unit(field):  # one value per unit, repeated over its lags
        return np.repeat(np.asarray([getattr(m, field) for m in measured], np.float64), lags)

    def per_lag(field):
        return np.concatenate([np.asarray(getattr(m, field), np.float64) for m in measured])

    columns = {"step": np.full(count * lags, step), "layer": np.repeat(names, lags),
               "lag": np.tile(config.lags, count),
               **{name: per_lag(name) for name in ("log_sigma_max", "log_rms", "log_sigma_min")
                  if getattr(measured[0], name) is not None},
               "rate": per_unit("rate"), "rms_rate": per_unit("rms_rate"), "horizon": per_unit("horizon"),
               "verdict": [metrics.verdict_name(m.verdict) for m in measured for _ in range(lags)],
               "sequences": np.full(count * lags, sequences)}
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------------------------
# The monitor
# ---------------------------------------------------------------------------------------------

class Monitor:
    """Measures how the gradient travels back through time every ``every`` steps of a training loop.

    Give it what you train and a small probe batch, and call :meth:`update` once per
    step; it measures when ``step % every == 0`` and appends tidy rows to :attr:`table`
    (see the module docstring for what a check computes and what it costs).

    What it accepts, and what :meth:`update` then takes:

    =====================================  ===========================================
    ``Monitor(model, xs, ...)``            ``monitor.update(step, state)``
    =====================================  ===========================================
    a Flax nnx model                       the model (updated in place: may be omitted)
    a Flax linen model, ``variables=v``    the current variables
    an Equinox model                       the current model
    a gradscope cell, adapter or plain     the current parameters
    ``step(params, h, x)``, ``params=p``
    a PyTorch module (``nn.LSTM``, ...)    the module (updated in place: may be omitted)
    =====================================  ===========================================

    Models are searched for recurrent layers as :func:`gradscope.diagnose` does (the
    probe ``xs`` are what the model takes). A PyTorch module goes through
    ``gradscope.cells.from_torch`` (its whole stack is one cell); ``xs`` are then in
    gradscope's layout, ``(T, input_size)`` or ``(sequences, T, input_size)``.

    Args:
        model: what is trained (see the table).
        xs: the probe inputs. A few sequences at most: each one is analysed, and the
            table averages them (means of logs and rates, median horizon).
        every: check every this many steps.
        mode: ``"norms"`` (no SVD; cheapest) or ``"profile"`` (exact spectra at ``lags``,
            with ``log_sigma_min`` in the table).
        lags: the lags the table keeps: ints in 1..max_lag, or ``"log"`` (``num_lags``
            log-spaced lags, 1 and max_lag included).
        num_lags: how many lags ``lags="log"`` keeps.
        max_lag: the longest lag measured (default T, the probe length); rates and horizon
            use every lag 1..max_lag.
        params: a cell's parameters (for a cell or step function).
        h0: a cell's initial state (default its zero state; needed for a plain step).
        variables: a linen model's variables.
        forward: how to run the model, as for :func:`gradscope.diagnose`.
        cell_types: your own cell classes, as for :func:`gradscope.diagnose`.
        stack: also analyse the stack as one recurrence when its layers feed each other.
        thresholds: verdict and horizon thresholds.
        tensorboard: a log directory or a ``tensorboardX.SummaryWriter``: each check also
            writes its scalars there (``pip install gradscope[tensorboard]``); call
            :meth:`close` at the end for a log directory.
        dtype: compute dtype (default: the parameters').

    Raises:
        ValueError / TypeError: what the model or inputs lack, with the fix.
        NotImplementedError: a PyTorch or Keras module while ``from_torch``/``from_keras`` is missing.
    """

    def __init__(self, model, xs, *, every: int = 100, mode: str = "norms", lags="log", num_lags: int = 6,
                 max_lag: int | None = None, params=None, h0=None, variables=None, forward=None, cell_types=(),
                 stack: bool = True, thresholds: metrics.Thresholds = metrics.Thresholds(), tensorboard=None,
                 dtype=None):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be a positive int (steps between checks), got {every!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.every, self.mode, self.thresholds = every, mode, thresholds
        self._source = _source(model, xs, params, h0, variables, forward, tuple(cell_types))
        params = self._source.params_of(self._source.state)
        self._dtype, self._xs, self._h0 = self._prepare(params, dtype)
        self._config = self._configure(lags, num_lags, max_lag, stack)
        self._writer = None if tensorboard is None else _writer(tensorboard)
        self._owns_writer = self._writer is not None and self._writer is not tensorboard
        self._frames: list[pd.DataFrame] = []

    def _prepare(self, params, dtype):
        source = self._source
        first_h0 = jax.tree_util.tree_map(lambda a: a[0], source.h0)
        prep = spectra.prepare_inputs(source.stack, params, source.xs, first_h0, dtype=dtype, batch_axes=1)
        dtype = jax.tree_util.tree_leaves(prep.xs)[0].dtype  # the analysis dtype prepare_inputs chose
        return dtype, prep.xs, spectra._cast(source.h0, dtype)

    def _configure(self, lags, num_lags, max_lag, stack) -> _Config:
        steps = int(self._xs.shape[1])
        max_lag = steps if max_lag is None else int(max_lag)
        if not 1 <= max_lag <= steps:
            raise ValueError(f"max_lag must lie in [1, T] = [1, {steps}] (the probe's length), got {max_lag}")
        kept = select_lags(lags, max_lag, num_lags)
        if kept[0] == 0:
            raise ValueError(f"lags must lie in [1, max_lag] = [1, {max_lag}]; lag 0 is the identity")
        with_stack = bool(stack) and self._source.chained and len(self._source.names) > 1
        return _Config(max_lag, kept, kept if self.mode == "profile" else None, self.thresholds, with_stack)

    @property
    def names(self) -> tuple:
        """The analysed units: every layer's name, and ``"stack"`` when the stack is analysed."""
        return self._source.names + ((STACK,) if self._config.with_stack else ())

    @property
    def lags(self) -> tuple:
        """The lags the table keeps."""
        return self._config.lags

    @property
    def max_lag(self) -> int:
        """The longest lag measured."""
        return self._config.max_lag

    def update(self, step: int, state=None) -> bool:
        """Check when ``step % every == 0``; return whether it did.

        Args:
            step: the training step (any int; checks at multiples of ``every``).
            state: the current model, variables or parameters (see the class docstring);
                may be left out for what training changes in place (nnx and PyTorch modules).
        """
        if int(step) % self.every:
            return False
        self.check(step, state)
        return True

    def check(self, step: int, state=None) -> pd.DataFrame:
        """Measure now; append and return the new rows (see :attr:`table`).

        Raises:
            ValueError: no ``state`` for something training replaces (see :meth:`update`).
        """
        source = self._source
        if state is None and not source.in_place:
            raise ValueError("this monitor watches something training replaces rather than changes in place (an "
                             "Equinox model, linen variables, a cell's parameters): pass the current one, "
                             "monitor.update(step, model_or_params)")
        state = source.state if state is None else state
        params = spectra._cast(source.params_of(state), self._dtype)
        inputs, h0 = self._inputs(state)
        measured = _measure(source.stack, params, inputs, h0, self._config)
        rows = _rows(int(step), self.names, measured, self._config, len(self._xs))
        self._frames.append(rows)
        if self._writer is not None:
            _write_scalars(self._writer, rows)
        return rows

    def _inputs(self, state):
        """The first layer's inputs (chained), or what each layer sees in a new forward pass."""
        if self._source.chained:
            return self._xs, self._h0
        recording = self._source.record(state)
        return (tuple(spectra._cast(jnp.asarray(x), self._dtype) for x in recording.inputs),
                tuple(spectra._cast(jax.tree_util.tree_map(jnp.asarray, h), self._dtype)
                      for h in recording.initial))

    @property
    def table(self) -> pd.DataFrame:
        """Every check's rows: step, layer, lag, log_sigma_max, log_rms (and log_sigma_min in
        profile mode), rate, rms_rate, horizon, verdict, sequences.

        One row per (step, layer, lag); rate, rms_rate, horizon and verdict describe the
        whole profile (lags 1..max_lag) and repeat over its lags. Logs are natural logs of
        the singular values of ``dh_T/dh_{T-k}`` at lag k = ``lag``, averaged over the probe
        sequences (as are the rates; the horizon is their median). In norms mode
        ``log_sigma_max`` is the profile's power estimate (a lower bound, within 2e-3
        nats: see :mod:`gradscope.profile`).
        """
        if not self._frames:
            columns = ["step", "layer", "lag", "log_sigma_max", "log_rms", "rate", "rms_rate", "horizon", "verdict"]
            return pd.DataFrame(columns=columns + ["sequences"])
        return pd.concat(self._frames, ignore_index=True)

    def to_dataframe(self) -> pd.DataFrame:
        """The :attr:`table`."""
        return self.table

    def to_csv(self, path) -> Path:
        """Write the table as CSV; return the path."""
        path = Path(path)
        self.table.to_csv(path, index=False)
        return path

    def to_parquet(self, path) -> Path:
        """Write the table as Parquet (needs ``pyarrow``: ``pip install gradscope[parquet]``); return the path."""
        _require("pyarrow", "parquet", "Monitor.to_parquet")
        path = Path(path)
        self.table.to_parquet(path, index=False)
        return path

    def to_tensorboard(self, logdir_or_writer) -> None:
        """Write every row so far to TensorBoard: to a log directory (written and closed here) or a
        ``SummaryWriter`` you own. Tags: see :func:`_write_scalars`."""
        writer = _writer(logdir_or_writer)
        _write_scalars(writer, self.table)
        writer.flush() if writer is logdir_or_writer else writer.close()

    def close(self) -> None:
        """Close the TensorBoard writer the monitor opened for ``tensorboard=logdir`` (its last
        events reach the disk then); a writer you passed is yours to close."""
        if self._writer is not None and self._owns_writer:
            self._writer.close()

    def plot(self, **options):
        """:func:`gradscope.plotting.plot_monitor` of this monitor."""
        from gradscope.plotting.monitor import plot_monitor

        return plot_monitor(self, **options)

    def __repr__(self) -> str:
        steps = sorted(set(self.table["step"])) if self._frames else []
        return (f"Monitor({', '.join(self.names)}; every {self.every} steps, {self.mode} mode, lags "
                f"{list(self.lags)} of 1..{self.max_lag}; {len(steps)} check{'s' * (len(steps) != 1)} so far)")


def _writer(logdir_or_writer):
    if hasattr(logdir_or_writer, "add_scalar"):
        return logdir_or_writer
    tensorboardx = _require("tensorboardX", "tensorboard", "writing to TensorBoard")
    return tensorboardx.SummaryWriter(str(logdir_or_writer))


def _write_scalars(writer, rows: pd.DataFrame) -> None:
    """Scalars per check: ``gradscope/<layer>/rate``, ``rms_rate``, ``horizon`` (when finite) and
    ``gradscope/<layer>/log_sigma_max/lag_<k>`` (and ``log_rms``, ``log_sigma_min``) at each kept lag."""
    for (step, layer), group in rows.groupby(["step", "layer"], sort=False):
        first = group.iloc[0]
        for name in ("rate", "rms_rate", "horizon"):
            if np.isfinite(first[name]):
                writer.add_scalar(f"gradscope/{layer}/{name}", float(first[name]), int(step))
        for name in [c for c in ("log_sigma_max", "log_rms", "log_sigma_min") if c in group]:
            for lag, value in zip(group["lag"], group[name]):
                if np.isfinite(value):
                    writer.add_scalar(f"gradscope/{layer}/{name}/lag_{lag}", float(value), int(step))
