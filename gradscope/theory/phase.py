r"""Phase diagrams: the measured growth rate over a grid of weight, bias and input scales.

Every grid point reuses the same random draws, rescaled (common random numbers): per
seed, unit-scale parameters are drawn once and the point :math:`(\sigma_w, \sigma_b, s)`
uses recurrent kernel :math:`\sigma_w W_1`, biases :math:`b_0 + \sigma_b z` and inputs
:math:`s\, x_1`. The scaling happens inside the step (so untied stacks never
materialise one copy of their T kernels per grid point), and the whole grid is
measured by one ``vmap``-ed, ``lax.map``-ped function compiled once.

For a vanilla cell with the default ``recurrent="orthogonal"`` (or ``"normal"``)
family each recurrent entry has variance :math:`\sigma_w^2/n`, each bias entry
:math:`\sigma_b^2`, and with the default ``lecun_normal`` input kernel each
pre-activation receives input variance :math:`\sigma_x^2 = s^2`: exactly the
parameters of :func:`gradscope.theory.mean_field`, whose prediction and critical line
the result carries, for the cell's own ``input_size`` (with few inputs the input
variance fluctuates from step to step, and the time-varying mean field applies).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradscope.core import _checks
from gradscope.cells import classic as cells
from gradscope.theory import meanfield as theory
from gradscope.core._lapack import lapack_thread_limit
from gradscope.analysis.spectra import spectra_of
from gradscope.display.headline import Headline, Readable, lag_range, long_table

__all__ = [
    "FAMILIES",
    "PhaseDiagram",
    "ScaledParams",
    "ScaledStep",
    "SeedData",
    "draw_seeds",
    "fit_lags",
    "measure_rates",
    "phase_diagram",
    "unit_normals",
]

FAMILIES = {
    "orthogonal": ("orthogonal", {"gain": 1.0}),
    "normal": ("lecun_normal", {"gain": 1.0}),
    "uniform": ("lecun_uniform", {"gain": 1.0}),
}
r"""Recurrent-weight families of :func:`phase_diagram`, each at unit scale (entry variance 1/n)."""


class ScaledParams(NamedTuple):
    """Unit-scale parameters plus the scales applied inside :class:`ScaledStep`.

    Attributes:
        base: the cell's parameters at recurrent scale 1 (biases at their offset, such
            as an LSTM forget bias).
        bias_noise: one unit-normal draw per bias field (empty: biases stay as drawn).
        sigma_w: multiplies the recurrent kernel (a ``[T]`` vector when untied).
        sigma_b: multiplies ``bias_noise`` (a ``[T]`` vector when untied).
    """

    base: object
    bias_noise: tuple
    sigma_w: jax.Array
    sigma_b: jax.Array


@dataclasses.dataclass(frozen=True)
class ScaledStep:
    """``step(ScaledParams, h, x)``: the cell's step with scaled recurrent kernel and biases.

    It holds the cell, not its bound ``step`` method: bound methods compare their
    instance by identity, so equal cells would miss the jit cache and recompile.

    Attributes:
        cell: a cell whose params are a NamedTuple with a ``recurrent_kernel`` field.
        bias_fields: names of the bias fields that ``bias_noise`` perturbs.
    """

    cell: object
    bias_fields: tuple = ()

    def __call__(self, params: ScaledParams, h, x):
        """One step of the cell at the scales carried by ``params``."""
        base = params.base
        updates = {"recurrent_kernel": params.sigma_w * base.recurrent_kernel}
        for name, noise in zip(self.bias_fields, params.bias_noise):
            updates[name] = getattr(base, name) + params.sigma_b * noise
        return self.cell.step(base._replace(**updates), h, x)


def fit_lags(num_steps: int, transient: int, num_lags: int) -> tuple[int, ...]:
    """About ``num_lags`` evenly spaced lags in ``[1, num_steps - transient]``.

    The backward products over these lags only touch the last ``num_steps - transient``
    steps, so the first ``transient`` steps (the state settling on its attractor) never
    enter the fitted rate.
    """
    if not 0 <= transient < num_steps - 1:
        raise ValueError(f"transient must lie in [0, T - 1) = [0, {num_steps - 1}) for T = {num_steps}, "
                         f"got {transient}; at least two lags are needed to fit a rate")
    if num_lags < 2:
        raise ValueError(f"num_lags must be >= 2 to fit a rate, got {num_lags}")
    longest = num_steps - transient
    return tuple(sorted(set(np.rint(np.linspace(1, longest, num_lags)).astype(int).tolist())))


def measure_rates(step, params, xs, h0, lags: tuple, untied: bool = False):
    """``(rate, rms_rate, finite)`` of one configuration; pure and traceable."""
    spectra = spectra_of(step, params, xs, h0, lags, "backward", untied)
    summary = spectra.summary()
    return summary.rate, summary.rms_rate, spectra.finite


def _check_h0(mode: str) -> None:
    if mode not in ("zeros", "random"):
        raise ValueError(f"h0 must be 'zeros' or 'random' (unit-normal entries), got {mode!r}")


def unit_normals(key, shapes, dtype) -> list:
    """Independent unit-normal arrays of the given shapes from one draw (one compilation per total size)."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1].tolist()) if sizes else []
    return [piece.reshape(shape) for piece, shape in zip(pieces, shapes)]


def bias_fields(params) -> tuple[str, ...]:
    """Names of the fields of a cell's params that hold biases."""
    return tuple(name for name in params._fields if "bias" in name)


def draw_params(cell, key, recurrent_init, input_init, bias_init, num_steps: int, untied: bool, dtype):
    """One seed's parameters (``num_steps`` independent layers when untied)."""
    init = lambda k: cell.init(k, recurrent_init=recurrent_init, input_init=input_init,  # noqa: E731
                               bias_init=bias_init, dtype=dtype)
    return jax.vmap(init)(jax.random.split(key, num_steps)) if untied else init(key)


class SeedData(NamedTuple):
    """One seed's random draws, at unit scale (stacked over seeds by :func:`draw_seeds`).

    Attributes:
        params: :class:`ScaledParams` with unit scales.
        inputs: ``[T, input_size]`` unit-normal inputs.
        h0: the initial state.
    """

    params: ScaledParams
    inputs: jax.Array
    h0: object


def _draw_one(cell, key, recurrent_init, input_init, bias_init, bias_noise, num_steps, untied, h0_mode, dtype):
    """One seed's draws: parameters from ``key`` (as compare() does), the rest from ``fold_in(key, 1)``."""
    base = draw_params(cell, key, recurrent_init, input_init, bias_init, num_steps, untied, dtype)
    names = bias_fields(base) if bias_noise else ()
    state = cell.initial_state(dtype)
    leaves, tree = jax.tree_util.tree_flatten(state)
    shapes = [getattr(base, name).shape for name in names] + [(num_steps, cell.input_size)]
    shapes += [a.shape for a in leaves] if h0_mode == "random" else []
    draws = unit_normals(jax.random.fold_in(key, 1), shapes, dtype)
    noise, inputs, state_draws = tuple(draws[:len(names)]), draws[len(names)], draws[len(names) + 1:]
    h0 = jax.tree_util.tree_unflatten(tree, state_draws) if h0_mode == "random" else state
    scale = jnp.ones((num_steps,) if untied else (), dtype)
    return SeedData(ScaledParams(base, noise, scale, scale), inputs, h0)


def draw_seeds(cell, seeds, *, recurrent_init, input_init="lecun_normal", bias_init="zeros",
               bias_noise: bool = False, num_steps: int, untied: bool = False, h0: str = "zeros",
               dtype=np.float32) -> SeedData:
    """Draw every seed's unit-scale parameters, inputs and initial state, stacked over seeds.

    Seed s draws its parameters with ``cell.init(jax.random.key(s), ...)``, exactly as
    :func:`gradscope.compare` does; bias noise (with ``bias_noise``, one unit-normal draw
    per bias field for :class:`ScaledStep` to scale), inputs and a random initial state
    come from one draw from ``fold_in(key, 1)``. (Drawn eagerly: jit-compiling random
    draws costs far more than running them.)
    """
    _check_h0(h0)
    draws = [_draw_one(cell, jax.random.key(s), recurrent_init, input_init, bias_init, bias_noise, num_steps,
                       untied, h0, dtype) for s in seeds]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *draws)


def _grid_rates(step, lags, untied, chunk_size, seeds: SeedData, points):
    """Rates at every grid point (rows of ``points``: sigma_w, sigma_b, input scale) and seed."""

    def at_point(point):
        sigma_w, sigma_b, scale = point

        def at_seed(data: SeedData):
            params = data.params._replace(sigma_w=sigma_w * data.params.sigma_w,
                                          sigma_b=sigma_b * data.params.sigma_b)
            return measure_rates(step, params, scale * data.inputs, data.h0, lags, untied)

        return jax.vmap(at_seed)(seeds)

    return jax.lax.map(at_point, points, batch_size=chunk_size)


_grid_rates_jit = lapack_thread_limit(jax.jit(_grid_rates, static_argnums=(0, 1, 2, 3)))


@dataclasses.dataclass(frozen=True, repr=False)
class PhaseDiagram(Readable):
    """Measured growth rates over a (sigma_w, sigma_b, input scale) grid, with mean-field theory.

    Attributes:
        sigma_w: ``[W]`` recurrent scales (entry variance sigma_w^2 / n).
        sigma_b: ``[B]`` bias standard deviations.
        input_scale: ``[S]`` input standard deviations.
        seeds: the integer seeds (common to every grid point).
        rate: ``[S, B, W, seeds]`` fitted growth rate of log sigma_max per step.
        rms_rate: ``[S, B, W, seeds]`` fitted growth rate of the log RMS singular value.
        finite: ``[S, B, W, seeds]`` False where the run overflowed (rates NaN).
        theory_rms_rate: ``[S, B, W]`` mean-field 1/2 log chi1, or None when no theory
            applies (not a vanilla cell, or a non-default input initializer).
        critical_sigma_w: ``[S, B]`` mean-field critical line, or None likewise.
        cell: the analysed cell.
        recurrent: the recurrent family (a key of :data:`FAMILIES`).
        untied: fresh parameters at every step (a deep feed-forward stack).
        num_steps: the horizon T.
        lags: the lags the rates were fitted on (the last ``max(lags)`` steps).
    """

    sigma_w: np.ndarray
    sigma_b: np.ndarray
    input_scale: np.ndarray
    seeds: tuple
    rate: np.ndarray
    rms_rate: np.ndarray
    finite: np.ndarray
    theory_rms_rate: np.ndarray | None
    critical_sigma_w: np.ndarray | None
    cell: object
    recurrent: str
    untied: bool
    num_steps: int
    lags: tuple

    def mean(self, which: str = "rms_rate") -> np.ndarray:
        """Seed mean ``[S, B, W]`` of ``"rms_rate"`` or ``"rate"`` (NaN where every seed overflowed)."""
        return _nan_reduce(np.nanmean, self._measured(which))

    def std(self, which: str = "rms_rate") -> np.ndarray:
        """Seed standard deviation ``[S, B, W]`` of ``"rms_rate"`` or ``"rate"``."""
        return _nan_reduce(np.nanstd, self._measured(which))

    def to_dataframe(self, per_seed: bool = False) -> pd.DataFrame:
        """Long table: one row per grid point (input_scale, sigma_b, sigma_w), or per (grid point, seed).

        Args:
            per_seed: False (default): ``input_scale``, ``sigma_b``, ``sigma_w``, the seed
                mean and std of ``rate`` and ``rms_rate`` (``rate_std``, ``rms_rate_std``)
                and ``theory_rms_rate`` (NaN without theory). True: one row per seed with
                ``seed``, ``rate``, ``rms_rate``, ``finite`` and ``theory_rms_rate``.
        """
        if per_seed:
            axes = {"input_scale": self.input_scale, "sigma_b": self.sigma_b, "sigma_w": self.sigma_w,
                    "seed": self.seeds}
            theory_rate = np.nan if self.theory_rms_rate is None else self.theory_rms_rate
            return long_table(axes, {"rate": self.rate, "rms_rate": self.rms_rate, "finite": self.finite,
                                     "theory_rms_rate": theory_rate})
        s, b, w = np.meshgrid(self.input_scale, self.sigma_b, self.sigma_w, indexing="ij")
        columns = {"input_scale": s.ravel(), "sigma_b": b.ravel(), "sigma_w": w.ravel()}
        for which in ("rate", "rms_rate"):
            columns[which] = self.mean(which).ravel()
            columns[f"{which}_std"] = self.std(which).ravel()
        theory_rate = np.full(s.shape, np.nan) if self.theory_rms_rate is None else self.theory_rms_rate
        columns["theory_rms_rate"] = theory_rate.ravel()
        return pd.DataFrame(columns)

    def _headline(self) -> Headline:
        facts = (f"{self.cell!r}, {self.recurrent} weights{', untied' if self.untied else ''}, T = {self.num_steps}, "
                 f"rates fitted on {lag_range(self.lags)}",
                 f"grid: {self.sigma_w.size} sigma_w ({self.sigma_w.min():g}..{self.sigma_w.max():g}) x "
                 f"{self.sigma_b.size} sigma_b x {self.input_scale.size} input scales, {len(self.seeds)} seeds; "
                 "table: seed-mean rms_rate at some sigma_w")
        return Headline("PhaseDiagram", facts, self._rate_pivot(), ("plot_phase_diagram",))

    def _rate_pivot(self, columns: int = 6) -> dict:
        """Seed-mean rms_rate, rows (input_scale, sigma_b), at up to ``columns`` evenly picked sigma_w."""
        picked = np.unique(np.linspace(0, self.sigma_w.size - 1, min(columns, self.sigma_w.size)).round().astype(int))
        s, b = np.meshgrid(self.input_scale, self.sigma_b, indexing="ij")
        table = {"input_scale": s.ravel(), "sigma_b": b.ravel()}
        mean = self.mean("rms_rate")
        table.update({f"w={self.sigma_w[i]:.3g}": mean[..., i].ravel() for i in picked})
        if self.critical_sigma_w is not None:
            table["critical_sigma_w (theory)"] = np.asarray(self.critical_sigma_w).ravel()
        return table

    def _measured(self, which: str) -> np.ndarray:
        if which not in ("rate", "rms_rate"):
            raise ValueError(f"which must be 'rate' (sigma_max) or 'rms_rate' (RMS singular value), got {which!r}")
        return getattr(self, which)


def _nan_reduce(reduce, values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every seed overflowed: NaN, as documented
        return reduce(values, axis=-1)


def _axis(name: str, values, allow_zero: bool = True) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a scalar or a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or (not allow_zero and np.any(array == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} values must be finite and {bound}, got {array.tolist()}")
    return array


def _theory(cell, input_init, h0, sigma_w, sigma_b, input_scale):
    if not isinstance(cell, cells.VanillaRNN) or input_init != "lecun_normal":
        return None, None
    s, b, w = np.meshgrid(input_scale, sigma_b, sigma_w, indexing="ij")
    v0 = 1.0 if h0 == "random" else 0.0
    predicted = theory.mean_field(cell.activation, w, b, s, input_size=cell.input_size, initial_variance=v0)
    critical = theory.critical_sigma_w(cell.activation, b[..., 0], s[..., 0], input_size=cell.input_size,
                                       initial_variance=v0)
    return np.asarray(predicted.rms_rate, np.float64), np.asarray(critical, np.float64)


def _warn_nonfinite(finite: np.ndarray) -> None:
    if not finite.all():
        warnings.warn(f"{int((~finite).sum())} of {finite.size} runs overflowed to inf/NaN; their rates are NaN. "
                      "Lower the largest scales, shorten num_steps or use dtype='float64'", RuntimeWarning, stacklevel=3)


def _check_cell(cell) -> None:
    for attribute in ("init", "step", "initial_state", "input_size"):
        if not hasattr(cell, attribute):
            raise TypeError(f"expected a gradscope cell (with .{attribute}, such as gradscope.VanillaRNN), "
                            f"got {type(cell).__name__}")


def _check_family(recurrent: str) -> None:
    if recurrent not in FAMILIES:
        raise ValueError(f"recurrent must be one of {sorted(FAMILIES)} (the unit-scale family that sigma_w "
                         f"multiplies), got {recurrent!r}")


def phase_diagram(cell, sigma_w, sigma_b=0.0, input_scale=0.0, *, seeds=2, num_steps: int = 100,
                  transient: int | None = None, num_lags: int = 16, recurrent: str = "orthogonal",
                  input_init="lecun_normal", h0: str = "random", untied: bool = False, dtype=None,
                  chunk_size: int | None = None) -> PhaseDiagram:
    r"""Measure the growth rates over a grid of recurrent, bias and input scales.

    For every point and seed the cell is unrolled for ``num_steps`` steps and the
    backward spectra are taken at ``num_lags`` lags spanning the last
    ``num_steps - transient`` steps; ``rate`` and ``rms_rate`` are the least-squares
    slopes of log sigma_max and of the log RMS singular value (as in
    :meth:`gradscope.Spectra.summary`). All points run in one compiled call.

    Args:
        cell: a gradscope cell (vanilla, LSTM, GRU, or one with the same protocol whose
            params have a ``recurrent_kernel`` field).
        sigma_w: recurrent scales; each recurrent entry has variance sigma_w^2/n
            (per gate block for gated cells).
        sigma_b: bias standard deviations (added to every bias field; an LSTM keeps
            its forget bias as the offset).
        input_scale: standard deviations of the Gaussian inputs.
        seeds: a count or explicit ints; each seed draws its own parameters, inputs and
            initial state, shared by every grid point.
        num_steps: the horizon T.
        transient: steps excluded from the fit (default ``num_steps // 2``).
        num_lags: evenly spaced lags to fit on.
        recurrent: ``"orthogonal"``, ``"normal"`` or ``"uniform"`` (:data:`FAMILIES`).
        input_init: the input-kernel initializer (``lecun_normal`` makes sigma_x = input_scale).
        h0: ``"random"`` (unit-normal entries; needed to leave the trivial fixed point
            h = 0 of a bias-free, input-free cell) or ``"zeros"``.
        untied: fresh parameters at every step (a deep feed-forward stack of depth T).
        dtype: ``"float32"`` (default) or ``"float64"``.
        chunk_size: grid points measured together (bounds memory; default all).

    Returns:
        :class:`PhaseDiagram`; for vanilla cells with the default input initializer it
        also holds the mean-field ``theory_rms_rate`` and ``critical_sigma_w``.

    Raises:
        ValueError / TypeError: a malformed grid, family, cell or option.
    """
    _check_cell(cell)
    grid = [_axis("sigma_w", sigma_w, allow_zero=False), _axis("sigma_b", sigma_b), _axis("input_scale", input_scale)]
    seeds = _checks.seed_tuple(seeds)
    transient = num_steps // 2 if transient is None else int(transient)
    lags = fit_lags(num_steps, transient, num_lags)
    dtype = _checks.check_dtype(dtype) or np.dtype(np.float32)
    _check_family(recurrent)
    stacked = draw_seeds(cell, seeds, recurrent_init=FAMILIES[recurrent], input_init=input_init, bias_noise=True,
                         num_steps=num_steps, untied=untied, h0=h0, dtype=dtype)
    step = ScaledStep(cell, bias_fields(stacked.params.base))
    s, b, w = np.meshgrid(grid[2], grid[1], grid[0], indexing="ij")
    points = jnp.asarray(np.stack([w.ravel(), b.ravel(), s.ravel()], axis=-1), dtype)
    rate, rms_rate, finite = _grid_rates_jit(step, lags, bool(untied), chunk_size, stacked, points)
    shape = s.shape + (len(seeds),)
    theory_rate, critical = _theory(cell, input_init, h0, *grid)
    as_grid = lambda a, t=np.float64: np.asarray(a, t).reshape(shape)  # noqa: E731
    _warn_nonfinite(as_grid(finite, bool))
    return PhaseDiagram(grid[0], grid[1], grid[2], seeds, as_grid(rate), as_grid(rms_rate), as_grid(finite, bool),
                        theory_rate, critical, cell, recurrent, bool(untied), int(num_steps), lags)
