r"""The curse of memory: how sensitive the state is to the recurrent parameters as memory grows.

Jacobian products say whether a *signal* survives back through time. Zucchet & Orvieto
(2024, "Recurrent neural networks: vanishing and exploding gradients are not the end of
the story") point at a second failure: the longer a recurrence remembers, the more its
state moves when its *recurrent parameters* move. For ``h_t = lambda h_{t-1} + x_t``
driven by unit white noise, ``E h^2 = 1/(1 - lambda^2)`` but
``E (dh/d lambda)^2 = (1 + lambda^2)/(1 - lambda^2)^3``: as ``lambda -> 1`` the
sensitivity outgrows the state by a factor ``1/(1-lambda)^2``, and learning rates that
suit short memories blow long ones up (closed forms in :mod:`gradscope.theory.memory`).

:func:`memory_sensitivity` measures ``||dh_T/dtheta||_F^2`` for a chosen part
``theta`` of the parameters (by default the cell's recurrent parameters: the LRU's
eigenvalue parametrization, an SSM's ``A``, a classic cell's recurrent kernel), and how
it builds up with the lag: entry k is the sensitivity to ``theta``'s action in the last k
steps only,

.. math::
    S_k = \Big\| \sum_{t=T-k+1}^{T} \frac{\partial h_T}{\partial h_t}
          \frac{\partial f}{\partial \theta}(h_{t-1}, x_t) \Big\|_F^2,

so ``S_T`` is the full ``||dh_T/dtheta||_F^2`` and the curve shows which lags it comes
from. Averaged over input sequences (a batch axis), ``S_T`` estimates
``E ||dh_T/dtheta||^2``.

One reverse sweep computes every ``S_k``: it carries the product ``dh_T/dh_t`` (in log
domain, as :mod:`gradscope.engine` does) and the running sum, one vector-Jacobian
product per state coordinate and step (memory ``n x (n + |theta|)``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradscope.analysis import spectra
from gradscope.core import _checks
from gradscope.core import engine
from gradscope.core.lags import select_lags

__all__ = ["Sensitivity", "default_selector", "log_mean_exp", "memory_sensitivity", "sensitivity_over_seeds",
           "sensitivity_sweep"]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["log_sensitivity", "log_state_norm", "finite"],
    meta_fields=["lag_values", "num_parameters"],
)
@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """Sensitivity of the final state to the recurrent parameters, by lag (a JAX pytree).

    Attributes:
        log_sensitivity: ``[..., len(lags)]``; entry k is ``log S_k``, the log squared
            Frobenius norm of ``dh_T/dtheta`` through the last k steps (``-inf`` if zero).
        log_state_norm: ``[...]``, ``log ||h_T||^2``.
        finite: ``[...]``, False where states or products overflowed.
        lag_values: the lags as a tuple; the last is T, so the last entry is the total.
        num_parameters: how many parameters ``theta`` holds (a tuple, one count per row,
            in a :class:`gradscope.analysis.lineup.CellComparison`).

    Leading ``...`` axes are the batch axes of the inputs (input sequences, seeds).
    """

    log_sensitivity: jax.Array
    log_state_norm: jax.Array
    finite: jax.Array
    lag_values: tuple
    num_parameters: int

    @property
    def lags(self) -> np.ndarray:
        """The kept lags as an int array."""
        return np.asarray(self.lag_values, dtype=np.int64)

    @property
    def log_total(self) -> jax.Array:
        """``log ||dh_T/dtheta||_F^2`` (the lag-T entry), ``[...]``."""
        return self.log_sensitivity[..., -1]

    def log_expected(self, axes=None) -> np.ndarray:
        """``log E S_k`` per lag: the mean of ``S_k`` over the batch ``axes`` (default all leading axes), NumPy."""
        values = np.asarray(self.log_sensitivity)
        return log_mean_exp(values, tuple(range(values.ndim - 1)) if axes is None else axes)

    def log_expected_state_norm(self, axes=None) -> np.ndarray:
        """``log E ||h_T||^2`` over the batch ``axes`` (default all), NumPy."""
        values = np.asarray(self.log_state_norm)
        return log_mean_exp(values, tuple(range(values.ndim)) if axes is None else axes)


def log_mean_exp(values: np.ndarray, axes) -> np.ndarray:
    """``log mean(exp(values))`` over ``axes`` (an int or a tuple), without overflow (``-inf`` entries are zeros).

    How mean squared norms kept as logs (sensitivities, state norms) are averaged over seeds
    or input sequences.
    """
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if not axes:
        return values
    top = np.max(values, axis=axes, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.mean(np.exp(values - top), axis=axes, keepdims=True)) + top, axis=axes)


def default_selector(cell_or_step):
    """The part of the parameters :func:`memory_sensitivity` differentiates by default.

    A cell's ``recurrent_parameters`` method (the modern cells), else the
    ``recurrent_kernel`` field of the parameters (the classic cells).

    Raises:
        ValueError: neither exists (pass ``select=``).
    """
    method = getattr(cell_or_step, "recurrent_parameters", None)
    if callable(method):
        return method

    def recurrent_kernel(params):
        if not hasattr(params, "recurrent_kernel"):
            raise ValueError("parameters without a recurrent_kernel field; pass select=lambda params: ... "
                             "returning the part of the parameters to differentiate")
        return params.recurrent_kernel

    return recurrent_kernel


def _merge(total, log_total, term, log_term):
    """``exp(log_total) total + exp(log_term) term`` as ``(unit-norm matrix, log scale)``."""
    top = jnp.maximum(log_total, log_term)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    summed = jnp.exp(log_total - top) * total + jnp.exp(log_term - top) * term
    norm = jnp.linalg.norm(summed)
    return summed / jnp.where(norm > 0, norm, 1.0), top + jnp.log(norm)


def sensitivity_sweep(flat_step, perturbed, states, xs, lags: tuple[int, ...], num_parameters: int):
    """``(log S_k at the kept lags, finite)`` by one reverse sweep (pure and traceable).

    ``perturbed(delta, v, x)`` is the flat step with ``delta`` added to the selected
    parameters; ``states`` are h_0..h_{T-1}.
    """
    num_steps, n = states.shape
    rows, log_rows = engine.initial_product(n, states.dtype)
    delta = jnp.zeros(num_parameters, states.dtype)

    def advance(k, carry):
        rows, log_rows, total, log_total, finite = carry
        x = jax.tree_util.tree_map(lambda a: a[num_steps - k], xs)
        _, pullback = jax.vjp(lambda d, v: perturbed(d, v, x), delta, states[num_steps - k])
        d_delta, d_state = jax.vmap(pullback)(rows)
        total, log_total = _merge(total, log_total, d_delta, log_rows)
        norm = jnp.linalg.norm(d_state)
        rows, log_rows = d_state / jnp.where(norm > 0, norm, 1.0), log_rows + jnp.log(norm)
        finite = finite & jnp.isfinite(norm) & ~jnp.isnan(log_total) & (log_total < jnp.inf)
        return rows, log_rows, total, log_total, finite

    def segment(carry, bounds):
        carry = jax.lax.fori_loop(bounds[0] + 1, bounds[1] + 1, advance, carry)
        return carry, 2 * carry[3]

    lags_array = np.asarray(lags, dtype=np.int32)
    bounds = np.stack([np.concatenate([[0], lags_array[:-1]]), lags_array], axis=1)
    start = (rows, log_rows, jnp.zeros((n, num_parameters), states.dtype), jnp.asarray(-jnp.inf, states.dtype),
             jnp.all(jnp.isfinite(states)))
    carry, log_s = jax.lax.scan(segment, start, bounds)
    return log_s, carry[4]


def _perturbed_step(flat_step, params, indices: np.ndarray):
    flat_params, unravel = ravel_pytree(params)

    def perturbed(delta, v, x):
        return flat_step(unravel(flat_params.at[indices].add(delta)), v, x)

    return perturbed


@functools.partial(jax.jit, static_argnames=("step", "lags", "indices", "batch_axes"))
def _sensitivity_core(step, params, xs, h0, lags, indices, batch_axes):
    def one(x):
        flat_step, v0, _ = engine.flatten_step(step, h0)
        states, last = engine.unroll(flat_step, params, v0, x)
        perturbed = _perturbed_step(flat_step, params, np.asarray(indices))
        log_s, finite = sensitivity_sweep(flat_step, perturbed, states, x, lags, len(indices))
        return log_s, 2 * jnp.log(jnp.linalg.norm(last)), finite & jnp.all(jnp.isfinite(last))

    return engine.over_batch_axes(one, batch_axes)(xs)


def memory_sensitivity(cell_or_step, params, xs, h0=None, *, select=None, lags="log", num_log_lags: int = 32,
                       dtype=None, batch_axes: int | None = None) -> Sensitivity:
    """``||dh_T/dtheta||_F^2`` through the last k steps, for every kept lag k (the curse of memory).

    Args:
        cell_or_step: as for :func:`gradscope.jacobian_spectra`.
        params: the parameters (a pytree).
        xs: inputs with a leading time axis (extra leading batch axes: input sequences, seeds).
        h0: initial state (default: the cell's zero state; required for a plain step).
        select: ``params -> part of params`` to differentiate (any subtree: an array, a tuple
            of arrays). Default: :func:`default_selector` (the cell's recurrent parameters).
        lags: ``"log"`` (default), ``"all"`` or ints in [1, T]; T is always kept (the total).
        num_log_lags: how many lags ``"log"`` keeps.
        dtype: ``"float32"``/``"float64"`` to compute in.
        batch_axes: leading batch axes of ``xs`` (inferred for built-in cells).

    Returns:
        :class:`Sensitivity`; ``log_expected()`` averages over the batch (``E S_k``).

    Raises:
        ValueError / TypeError: malformed inputs or selector, with the fix.
        gradscope.NumericalOverflowError: states or products became inf/NaN.
    """
    prep = spectra.prepare_inputs(cell_or_step, params, xs, h0, dtype=dtype, batch_axes=batch_axes)
    kept = tuple(sorted(set(select_lags(lags, prep.num_steps, num_log_lags)) | {prep.num_steps}))
    kept = tuple(k for k in kept if k > 0)
    indices = spectra.block_indices(prep.params, select or default_selector(cell_or_step))
    log_s, log_h, finite = _sensitivity_core(prep.step, prep.params, prep.xs, prep.h0, kept, indices, prep.batch_axes)
    result = Sensitivity(log_s, log_h, finite, kept, len(indices))
    spectra._raise_if_overflowed(result)
    return result


def sensitivity_over_seeds(cell, params, xs, h0, lags: tuple[int, ...], select=None) -> Sensitivity:
    """:func:`memory_sensitivity` of a cell for a batch of seeds (``params`` and ``xs`` with a leading seed axis).

    No input checks (the caller validated); ``lags`` must end with T.
    """
    first = jax.tree_util.tree_map(lambda a: a[0], params)
    indices = spectra.block_indices(first, select or default_selector(cell))
    step = _checks.cell_step(cell)
    out = jax.vmap(lambda p, x: _sensitivity_core(step, p, x, h0, lags, indices, 0))(params, xs)
    return Sensitivity(*out, lags, len(indices))
