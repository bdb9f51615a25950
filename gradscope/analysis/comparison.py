"""Compare weight initializers for one cell: spectra and metrics over seeds."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradscope.core import _checks
from gradscope.core import diagonal
from gradscope.core import programs
from gradscope import initializers
from gradscope.analysis import metrics
from gradscope.core._lapack import lapack_thread_limit
from gradscope.core.lags import select_lags
from gradscope.analysis.spectra import Spectra, spectra_of
from gradscope.display.headline import Headline, Readable, lag_range
from gradscope.core.types import ArrayLike, Cell, DTypeLike, InitializerSpec, Lags, Seeds

__all__ = ["DEFAULT_INITIALIZERS", "Comparison", "SpectraResults", "aggregate_runs", "compare", "draw_over_seeds",
           "identical_labels", "labelled_initializers", "make_inputs", "spectra_over_seeds"]

DEFAULT_INITIALIZERS = ("orthogonal", "glorot_normal", "he_normal", "lecun_normal", "identity", "normal")
"""What :func:`compare` compares when no initializers are given (``normal`` has stddev 1)."""


class SpectraResults(Readable):
    """What every sweep result (:class:`Comparison`, ``GridComparison``) derives from its
    ``spectra`` and ``thresholds`` fields: lags, per-lag metrics and the summary, each
    with the result's leading configuration axes; and its short display."""

    spectra: Spectra
    thresholds: metrics.Thresholds

    @property
    def lags(self) -> np.ndarray:
        """The kept lags."""
        return self.spectra.lags

    def lag_metrics(self) -> metrics.LagMetrics:
        """Per-lag metrics, each ``[configuration axes..., lags]``."""
        return self.spectra.lag_metrics()

    def summary(self) -> metrics.Summary:
        """Rates, horizon and verdict codes, each ``[configuration axes...]``."""
        return self.spectra.summary(self.thresholds)

    def _facts(self, configurations: str) -> tuple:
        thresholds = self.thresholds
        return (f"{configurations}, T = {self.num_steps}, n = {self.spectra.state_size}, {lag_range(self.lags)}",
                f"verdict: vanishing < {thresholds.vanishing:g} < stable < {thresholds.exploding:g} < exploding "
                f"(rate, nats/step); horizon at sigma_max = {thresholds.horizon:g}")


@dataclasses.dataclass(frozen=True, repr=False)
class Comparison(SpectraResults):
    """Spectra and metrics of one cell under several initializers and seeds.

    Attributes:
        labels: one label per initializer (the name, with options in parentheses).
        seeds: the integer seeds; seed s uses ``jax.random.key(s)`` for parameters and
            inputs, the same for every initializer (common random numbers).
        spectra: batched :class:`Spectra`, arrays ``[len(labels), len(seeds), lags, ...]``.
        thresholds: the verdict/horizon thresholds used for the tables.
        cell: the analysed cell.
        num_steps: the horizon T.
    """

    labels: tuple
    seeds: tuple
    spectra: Spectra
    thresholds: metrics.Thresholds
    cell: object
    num_steps: int

    def identical_to(self) -> dict:
        """For each label, the other labels whose spectra are identical to its own, bit for bit.

        Identical means every array of the spectra (every seed, lag and singular value)
        is equal: the configurations drew the same weights, as ``glorot_normal`` and
        ``lecun_normal`` do for a square recurrent kernel (both have variance 1/n and use
        the same key). Their lines coincide in a lag profile.

        Returns:
            ``{label: tuple of the other labels identical to it}`` (empty tuples for unique ones).
        """
        return identical_labels(self.labels, self.spectra)

    def to_dataframe(self, per_seed: bool = False) -> pd.DataFrame:
        """One row per initializer (seed means and spreads), or per (initializer, seed).

        The aggregated table gives the mean and the population standard deviation
        (``ddof=0``, the spread of the seeds actually run) of each rate, the median,
        min and max horizon, the seed count, and the verdict of the mean rate and the
        median horizon (``"non-finite"`` if any seed overflowed; see
        :mod:`gradscope.metrics` for the rule). Both tables end with ``identical_to``:
        the other initializers whose spectra are identical bit for bit (comma-separated,
        empty if none; see :meth:`identical_to`).
        """
        table = self._per_seed_table()
        table = table if per_seed else aggregate_runs(table, self.thresholds)
        same = self.identical_to()
        table["identical_to"] = [", ".join(same[label]) for label in table["init"]]
        return table

    def lag_table(self) -> pd.DataFrame:
        """Long table: one row per (init, seed, lag) with every per-lag metric."""
        lag_metrics = self.lag_metrics()
        inits, seeds, lags = np.meshgrid(np.arange(len(self.labels)), self.seeds, self.lags, indexing="ij")
        columns = {"init": np.asarray(self.labels, dtype=object)[inits].ravel(),
                   "seed": seeds.ravel(), "lag": lags.ravel()}
        for name, values in lag_metrics._asdict().items():
            columns[name] = np.asarray(values, dtype=np.float64).ravel()
        return pd.DataFrame(columns)

    def _headline(self) -> Headline:
        table = self.to_dataframe()
        columns = ["init", "rate", "rate_std", "rms_rate", "horizon", "verdict"]
        columns += ["identical_to"] if table["identical_to"].any() else []
        facts = self._facts(f"{self.cell!r}, {len(self.labels)} initializers x {len(self.seeds)} seeds")
        return Headline("Comparison", facts, table[columns], ("plot_lag_profile", "plot_summary"))

    def _per_seed_table(self) -> pd.DataFrame:
        inits, seeds = np.meshgrid(np.arange(len(self.labels)), self.seeds, indexing="ij")
        return pd.DataFrame({"init": np.asarray(self.labels, dtype=object)[inits].ravel(), "seed": seeds.ravel(),
                             **self.summary().columns()})


def identical_labels(labels, spectra: Spectra) -> dict:
    """``{label: other labels}`` whose slices ``spectra[i]`` (leading axis = label) are equal in every array."""
    arrays = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(spectra)]

    def same(i: int, j: int) -> bool:
        return all(np.array_equal(a[i], a[j], equal_nan=np.issubdtype(a.dtype, np.inexact)) for a in arrays)

    return {label: tuple(other for j, other in enumerate(labels) if j != i and same(i, j))
            for i, label in enumerate(labels)}


def aggregate_runs(table: pd.DataFrame, thresholds: metrics.Thresholds, by="init", count: str = "seeds") -> pd.DataFrame:
    """One row per group of runs (seeds, sequences): rate statistics and the verdict of the mean rate and median horizon.

    Args:
        table: one row per run with columns ``by``, rate, rms_rate, horizon and verdict.
        thresholds: the verdict thresholds.
        by: the column(s) naming a group (kept in their order of appearance).
        count: name of the column counting each group's runs.

    Returns:
        The mean and population standard deviation (``ddof=0``) of rate and rms_rate,
        the median, min and max horizon, the run count, and the verdict of the mean rate and
        the median horizon (``"non-finite"`` if any run overflowed).
    """
    grouped = table.groupby(by, sort=False)
    out = pd.DataFrame({
        "rate": grouped["rate"].mean(), "rate_std": grouped["rate"].std(ddof=0),
        "rms_rate": grouped["rms_rate"].mean(), "rms_rate_std": grouped["rms_rate"].std(ddof=0),
        "horizon": grouped["horizon"].median(),
        "horizon_min": grouped["horizon"].min(), "horizon_max": grouped["horizon"].max(),
        count: grouped.size(),
    })
    nonfinite = grouped["verdict"].apply(lambda v: (v == "non-finite").any())
    codes = metrics.verdict_code(jnp.asarray(out["rate"].to_numpy()), jnp.asarray(~nonfinite.to_numpy()),
                                 thresholds, jnp.asarray(out["horizon"].to_numpy()))
    out["verdict"] = [metrics.verdict_name(c) for c in np.asarray(codes)]
    return out.reset_index()


def _label(spec) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        options = ", ".join(f"{k}={v}" for k, v in spec[1].items())
        return f"{spec[0]}({options})"
    return getattr(spec, "__name__", repr(spec))


def labelled_initializers(specs) -> tuple[list[str], list]:
    """``(labels, initializer functions)`` from the specs :func:`compare` accepts.

    ``specs`` is one spec, a sequence of specs (names, ``(name, options)`` pairs or
    callables; labelled by name and options) or a dict label -> spec.

    Raises:
        ValueError: no specs, or two specs with the same label.
    """
    if isinstance(specs, dict):
        labels, specs = list(specs), list(specs.values())
    else:
        specs = [specs] if isinstance(specs, str) else list(specs)
        labels = [_label(s) for s in specs]
    if not specs:
        raise ValueError("expected at least one initializer to compare, got none")
    if len(set(labels)) != len(labels):
        raise ValueError(f"initializer labels must be distinct, got {labels}; pass a dict label -> spec")
    return labels, [initializers.resolve(s) for s in specs]


def _gaussian_inputs(seeds, shape, scale, dtype):
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 1) for s in seeds])
    return scale * jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys)


def make_inputs(inputs, seeds, num_steps: int, input_size: int, scale: float = 1.0, dtype=jnp.float32):
    """Inputs per seed, ``[len(seeds), T, input_size]``.

    ``inputs`` is ``"zeros"``, ``"gaussian"`` (N(0, scale^2) drawn from each seed's
    key), or an array ``(T, input_size)`` (shared) or ``(len(seeds), T, input_size)``.
    """
    shape = (len(seeds), num_steps, input_size)
    if isinstance(inputs, str):
        if inputs == "zeros":
            return jnp.zeros(shape, dtype)
        if inputs == "gaussian":  # a stored program when the cache is on (gradscope.core.programs)
            return programs.stored_call(functools.partial(_gaussian_inputs, tuple(seeds), shape[1:], scale,
                                                          np.dtype(dtype)), compiler_options=programs.SMALL_PROGRAM)
        raise ValueError(f"inputs must be 'zeros', 'gaussian' or an array, got {inputs!r}")
    array = jnp.asarray(inputs, dtype)
    if array.shape == shape[1:]:
        return jnp.broadcast_to(array, shape)
    if array.shape != shape:
        raise ValueError(f"expected inputs of shape (T, input_size)={shape[1:]} or "
                         f"(seeds, T, input_size)={shape}, got {array.shape}")
    return array


@lapack_thread_limit
def _spectra_over_seeds(step, params, xs, h0, lags):
    return programs.stored_call(functools.partial(_spectra_program, step, lags=lags), params, xs, h0)


@functools.partial(jax.jit, static_argnames=("step", "lags"))
def _spectra_program(step, params, xs, h0, lags):
    return jax.vmap(lambda p, x: spectra_of(step, p, x, h0, lags))(params, xs)


def _diagonal_over_seeds(step, params, xs, h0, lags, kind) -> Spectra:
    one = lambda p, x: diagonal.diagonal_core(step, p, x, h0, lags, "backward", False, 0, kind)  # noqa: E731
    out, residual = jax.vmap(one)(params, xs)
    return Spectra(*diagonal.check_diagonal(out, residual, xs.dtype, kind), lags)


def spectra_over_seeds(cell, params, xs, h0, lags: tuple[int, ...]) -> Spectra:
    """Spectra of ``cell`` for a batch of seeds: ``params`` and ``xs`` carry a leading seed axis.

    One jit-compiled, vmapped call; cells that declare a diagonal Jacobian take the
    diagonal fast path (:mod:`gradscope.core.diagonal`).
    """
    step, kind = _checks.cell_step(cell), diagonal.resolve_kind(cell, None, None)
    if kind is None:
        return _spectra_over_seeds(step, params, xs, h0, lags)
    return _diagonal_over_seeds(step, params, xs, h0, lags, kind)


def draw_over_seeds(cell, keys, dtype, **init_options):
    """``cell.init(key, dtype=dtype, **init_options)`` for each key, stacked on a leading seed axis.

    Always run op by op, never as one compiled program (not even a stored one,
    :mod:`gradscope.core.programs`): on a CPU with few cores, XLA can deadlock running a
    program whose batched LAPACK calls (an LSTM's four orthogonal gates) start at once,
    and op by op each compiled piece is shared by every draw of the same shapes.
    """
    return jax.vmap(lambda k: cell.init(k, dtype=dtype, **init_options))(keys)


def compare(cell: Cell, initializers: Sequence[InitializerSpec] | Mapping[str, InitializerSpec] | None = None,
            *, seeds: Seeds = 4, num_steps: int = 100, inputs: str | ArrayLike = "gaussian", input_scale: float = 1.0,
            lags: Lags = "all", num_log_lags: int = 32, input_init: InitializerSpec | None = None,
            bias_init: InitializerSpec | None = None, dtype: DTypeLike = None,
            thresholds: metrics.Thresholds = metrics.Thresholds(), progress: bool | None = None) -> Comparison:
    """Compare recurrent-kernel initializers for ``cell`` over several seeds.

    For each initializer, parameters for all seeds are drawn with
    ``cell.init(key, recurrent_init=..., input_init=..., bias_init=...)`` and the
    spectra of every seed are computed in one vmapped, jit-compiled call (compiled
    once for the whole comparison, since every initializer has the same shapes).
    Cells that declare a diagonal Jacobian (the modern cells) take the diagonal fast
    path (:mod:`gradscope.core.diagonal`).

    Args:
        cell: a cell with ``init``, ``step``, ``initial_state`` and ``input_size``.
        initializers: names, ``(name, options)`` pairs, callables, or a dict
            label -> any of those. The recurrent kernel is what varies (for the modern
            cells, what sets the decay: the LRU's ring, an SSM's A, the min cells' gate
            biases). None: the cell's ``default_initializers`` if it has them, else
            :data:`DEFAULT_INITIALIZERS`.
        seeds: a count (seeds 0..count-1) or explicit ints.
        num_steps: the horizon T.
        inputs: ``"gaussian"``, ``"zeros"``, or your own array (see :func:`make_inputs`).
        input_scale: std of the Gaussian inputs.
        lags: ``"all"``, ``"log"`` or ints (see :func:`gradscope.select_lags`).
        num_log_lags: lag count for ``lags="log"``.
        input_init: fixed initializer of the input kernel (None: the cell's default,
            ``lecun_normal`` for the classic cells).
        bias_init: fixed initializer of the biases (None: the cell's default, ``zeros`` for
            the classic cells; ``("chrono", {"t_max": 100})`` for chrono LSTM/GRU gates).
        dtype: ``"float32"`` (default) or ``"float64"`` (needs x64 mode).
        thresholds: verdict and horizon thresholds for the tables.
        progress: show a progress bar (default: only on a terminal).

    Returns:
        :class:`Comparison`. Configurations whose states overflow are kept,
        verdict ``"non-finite"``, with a warning naming them.
    """
    for attribute in ("init", "step", "initial_state", "input_size"):
        if not hasattr(cell, attribute):
            raise TypeError(f"compare needs a cell with .{attribute} (such as gradscope.VanillaRNN); "
                            f"got {type(cell).__name__}. For a plain step function use jacobian_spectra")
    if cell.input_size is None:
        raise ValueError(f"compare draws inputs and parameters, so it needs the cell's input size, but this "
                         f"{type(cell).__name__} does not know it (a linen cell wrapped without variables); "
                         "wrap it with from_flax(cell, variables) or from_flax(cell, input_size=...)")
    seeds, dtype = _checks.run_settings(seeds, num_steps, dtype)
    labels, inits = labelled_initializers(getattr(cell, "default_initializers", DEFAULT_INITIALIZERS)
                                          if initializers is None else initializers)
    kept = select_lags(lags, num_steps, num_log_lags)
    xs = make_inputs(inputs, seeds, num_steps, cell.input_size, input_scale, dtype)
    _checks.check_finite("inputs", xs)
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    h0 = jax.tree_util.tree_map(lambda a: a.astype(dtype), cell.initial_state())
    fixed = {name: spec for name, spec in (("input_init", input_init), ("bias_init", bias_init)) if spec is not None}
    results = []
    for init in tqdm(inits, desc="initializers", disable=(None if progress is None else not progress)):
        params = draw_over_seeds(cell, keys, dtype, recurrent_init=init, **fixed)
        results.append(spectra_over_seeds(cell, params, xs, h0, kept))
    spectra = programs.stored_call(_stacked, results)
    _warn_nonfinite(spectra, labels, seeds)
    return Comparison(tuple(labels), seeds, spectra, thresholds, cell, num_steps)


def _stacked(results: list) -> Spectra:
    """The spectra of each initializer stacked on a leading axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *results)


def _warn_nonfinite(spectra: Spectra, labels, seeds) -> None:
    bad = np.argwhere(~np.asarray(spectra.finite))
    if bad.size:
        cases = ", ".join(f"{labels[i]} seed {seeds[j]}" for i, j in bad[:8])
        warnings.warn(f"states or products overflowed to inf/NaN for {len(bad)} configuration(s) ({cases}); "
                      "their verdict is 'non-finite'. Lower the gain or shorten the horizon",
                      RuntimeWarning, stacklevel=3)
