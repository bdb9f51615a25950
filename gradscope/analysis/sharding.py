"""Sharded sweeps: initializers x gains x seeds on every available device, one program, one compile.

:func:`compare_grid` flattens the configuration grid into one leading "config" axis,
shards it over a 1-D :class:`jax.sharding.Mesh` of the devices with a
:class:`jax.sharding.NamedSharding`, and runs one jit-compiled, vmapped spectra
program on it. The same call runs unchanged on one CPU, several GPUs, or a TPU
slice; the grid is padded to a multiple of the device count and the padding dropped.

Multi-host (several machines, each with its own devices): start every process with
``jax.distributed.initialize(coordinator_address, num_processes, process_id)`` (on
Cloud TPU and SLURM the arguments are found automatically), then run the *same*
``compare_grid`` call in every process. ``jax.devices()`` then lists the devices of
all hosts, each process builds the (deterministic, seed-derived) parameters and feeds
only its own shards (``jax.make_array_from_callback``), and the results are gathered
so that every process returns the full :class:`GridComparison`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradscope.core import _checks
from gradscope.analysis import metrics
from gradscope.core._lapack import lapack_thread_limit
from gradscope.analysis.comparison import (
    DEFAULT_INITIALIZERS,
    SpectraResults,
    aggregate_runs,
    labelled_initializers,
    make_inputs,
)
from gradscope.core.lags import select_lags
from gradscope.analysis.spectra import Spectra, spectra_of
from gradscope.display.headline import Headline

__all__ = ["CONFIG_AXIS", "GridComparison", "compare_grid", "config_mesh"]

CONFIG_AXIS = "config"
"""Name of the mesh axis that the flattened (initializer, gain, seed) grid is sharded over."""


@dataclasses.dataclass(frozen=True, repr=False)
class GridComparison(SpectraResults):
    """Spectra of one cell over initializers x gains x seeds.

    Attributes:
        labels: one label per initializer.
        gains: the multipliers applied to each initializer's recurrent kernel.
        seeds: the integer seeds (parameters from ``jax.random.key(seed)``, inputs as in
            :func:`gradscope.compare`; the same for every initializer and gain).
        spectra: :class:`gradscope.Spectra` with arrays ``[inits, gains, seeds, lags, ...]``
            (NumPy, gathered to the host).
        thresholds: verdict/horizon thresholds for the tables.
        num_devices: how many devices the grid was sharded over.
        num_steps: the horizon T.
    """

    labels: tuple
    gains: tuple
    seeds: tuple
    spectra: Spectra
    thresholds: metrics.Thresholds
    num_devices: int
    num_steps: int

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (init, gain, seed): rate, rms_rate, horizon, verdict."""
        inits, gains, seeds = np.meshgrid(np.arange(len(self.labels)), self.gains, self.seeds, indexing="ij")
        return pd.DataFrame({"init": np.asarray(self.labels, dtype=object)[inits].ravel(), "gain": gains.ravel(),
                             "seed": seeds.ravel(), **self.summary().columns()})

    def _headline(self) -> Headline:
        table = aggregate_runs(self.to_dataframe(), self.thresholds, by=["init", "gain"])
        facts = self._facts(f"{len(self.labels)} initializers x {len(self.gains)} gains x {len(self.seeds)} seeds "
                            f"on {self.num_devices} device(s)")
        return Headline("GridComparison", facts, table[["init", "gain", "rate", "rate_std", "horizon", "verdict"]])


def config_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis :data:`CONFIG_AXIS` over ``devices`` (default: all, every host)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("expected at least one device to shard the grid over, got none")
    return Mesh(np.asarray(devices), (CONFIG_AXIS,))


def _scaled(init, gain: float):
    return lambda key, shape, dtype=jnp.float32: jnp.asarray(gain, dtype) * init(key, shape, dtype)


def _grid_params(cell, inits, gains, seeds, input_init, bias_init, dtype):
    """Host parameters for every (init, gain, seed), stacked on one leading axis in that order.

    A plain loop of eager ``cell.init`` calls: every configuration has the same
    shapes, so each operation compiles once and is reused, for any grid size.
    """
    params = [cell.init(jax.random.key(seed), recurrent_init=_scaled(init, gain), input_init=input_init,
                        bias_init=bias_init, dtype=dtype)
              for init in inits for gain in gains for seed in seeds]
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *params)


def _pad(tree, size: int):
    """Pad the leading axis to ``size`` by repeating the last entry (dropped after the run)."""
    def pad(a):
        extra = size - a.shape[0]
        return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a
    return jax.tree_util.tree_map(lambda a: pad(np.asarray(a)), tree)


def _shard(tree, mesh: Mesh):
    """Place host arrays on the mesh, leading axis split over :data:`CONFIG_AXIS` (multi-host safe)."""
    def put(a):
        sharding = NamedSharding(mesh, PartitionSpec(CONFIG_AXIS, *([None] * (a.ndim - 1))))
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
    return jax.tree_util.tree_map(put, tree)


def _gather(tree):
    """Bring a (possibly multi-host) sharded result to every host as NumPy arrays."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree_util.tree_map(np.asarray, tree)


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("step", "lags", "chunk"))
def _grid_core(step, params, xs, h0, lags, chunk):
    return jax.vmap(lambda p, x: spectra_of(step, p, x, h0, lags, chunk=chunk))(params, xs)


def compare_grid(cell, initializers=DEFAULT_INITIALIZERS, *, seeds=4, gains=(1.0,), num_steps: int = 100,
                 inputs="gaussian", input_scale: float = 1.0, lags="all", num_log_lags: int = 32,
                 input_init="lecun_normal", bias_init="zeros", dtype=None,
                 thresholds: metrics.Thresholds = metrics.Thresholds(), devices=None,
                 chunk: int | None = None) -> GridComparison:
    """Spectra over initializers x gains x seeds, sharded over every device in one compiled program.

    Each configuration's recurrent kernel is ``gain * init(key, shape)`` (for the scaled
    initializers that is exactly ``get(name, gain=gain)``); the other parameters use
    ``input_init`` and ``bias_init``. The grid is flattened to one axis, padded to a
    multiple of the device count, sharded with ``NamedSharding(mesh, P("config"))``
    and run by one ``jit(vmap(spectra))``: one compile for the whole grid, and for any
    later grid of the same size and shapes. The call is the same on one device or
    many; see the module docstring for multi-host use with ``jax.distributed``.

    Args:
        cell: a cell with ``init``, ``step``, ``initial_state`` and ``input_size``.
        initializers: names, ``(name, options)`` pairs, callables, or a dict label -> spec.
        seeds: a count (0..count-1) or explicit ints.
        gains: multipliers of the recurrent kernel.
        num_steps: as for :func:`gradscope.compare`.
        inputs: as for :func:`gradscope.compare`.
        input_scale: as for :func:`gradscope.compare`.
        lags: as for :func:`gradscope.compare`.
        num_log_lags: as for :func:`gradscope.compare`.
        input_init: as for :func:`gradscope.compare`.
        bias_init: as for :func:`gradscope.compare`.
        dtype: as for :func:`gradscope.compare`.
        thresholds: as for :func:`gradscope.compare`.
        devices: devices to shard over (default ``jax.devices()``: all, on every host).
        chunk: lags per batched SVD (see :func:`gradscope.jacobian_spectra`); None = one SVD per lag.

    Returns:
        :class:`GridComparison` with spectra ``[inits, gains, seeds, lags, n]``.

    Raises:
        TypeError / ValueError: an unusable cell, no seeds or gains, a bad horizon.
    """
    for attribute in ("init", "step", "initial_state", "input_size"):
        if not hasattr(cell, attribute):
            raise TypeError(f"compare_grid needs a cell with .{attribute} (such as gradscope.VanillaRNN); "
                            f"got {type(cell).__name__}")
    gains = tuple(float(g) for g in np.atleast_1d(gains))
    if not gains:
        raise ValueError("expected at least one gain, got none")
    seeds, dtype = _checks.run_settings(seeds, num_steps, dtype)
    labels, inits = labelled_initializers(initializers)
    kept = select_lags(lags, num_steps, num_log_lags)
    mesh = config_mesh(devices)
    params = _grid_params(cell, inits, gains, seeds, input_init, bias_init, dtype)
    xs = make_inputs(inputs, seeds, num_steps, cell.input_size, input_scale, dtype)
    _checks.check_finite("inputs", xs)
    xs = jnp.tile(xs, (len(inits) * len(gains), 1, 1))
    count = len(inits) * len(gains) * len(seeds)
    padded = -(-count // mesh.size) * mesh.size
    h0 = jax.tree_util.tree_map(lambda a: a.astype(dtype), cell.initial_state())
    result = _grid_core(_checks.cell_step(cell), _shard(_pad(params, padded), mesh), _shard(_pad(xs, padded), mesh), h0,
                        kept, chunk)
    shape = (len(inits), len(gains), len(seeds))
    spectra = jax.tree_util.tree_map(lambda a: a[:count].reshape(*shape, *a.shape[1:]), _gather(result))
    return GridComparison(tuple(labels), gains, seeds, spectra, thresholds, mesh.size, num_steps)
