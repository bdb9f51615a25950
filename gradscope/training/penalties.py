r"""Gradient-flow penalties: differentiable terms that keep the gradient alive through time.

gradscope measures how the gradient travels back through an unrolled cell; these
functions turn the measurement into a term a user adds to a training loss. They
penalise the log RMS singular value of the backward product
:math:`P_k = \partial h_T/\partial h_{T-k}`,

.. math::
    \log \mathrm{rms}_k = \log\big(\lVert P_k\rVert_F / \sqrt n\big),

the quantity whose per-step rate mean-field theory predicts (:math:`\tfrac12\log\chi_1`):

* :func:`rate_penalty`: :math:`\operatorname{mean}_k (\log\mathrm{rms}_k / k - r)^2`,
  the average growth rate over each lag held near a target rate r (0: neither
  vanishing nor exploding), on the scale of nats per step whatever the lag;
* :func:`gain_penalty`: :math:`\operatorname{mean}_k (\log\mathrm{rms}_k - g)^2`, the log
  gain itself held near g at the sampled lags.

They are matrix-free and cheap: :func:`log_rms_gains` carries ``probes`` random
orthonormal rows :math:`V` (scaled so that :math:`E\lVert V P_k\rVert_F^2 = \lVert
P_k\rVert_F^2`, exactly for ``probes = n``) back from :math:`h_T` as vector-Jacobian
products, renormalised every step (log domain: nothing under- or overflows), and
reads :math:`\log\lVert V P_k\rVert_F` at the sampled lags. The cost is ``probes``
VJPs per step over the largest lag, on one sequence, and its derivative (a second-order
reverse pass); the docs page on penalties gives its measured cost relative to a
training step. Fresh
probes at every step (a new ``key``) make :math:`\lVert V P_k\rVert_F^2` an unbiased
estimate of :math:`\lVert P_k\rVert_F^2`; its log is biased low, by at most about
``1 / (2 probes)`` nats (when one direction dominates :math:`P_k`; 0 for an isometry).

:class:`Penalty` packs one of them with a weight, hashably, for
``gradscope.training.TrainConfig(penalty=...)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradscope.analysis.spectra import prepare_inputs
from gradscope.core import engine

__all__ = ["Penalty", "gain_penalty", "log_rms_gains", "rate_penalty"]

KINDS = ("rate", "gain")


def _check_lags(lags, num_steps: int) -> tuple[int, ...]:
    values = tuple(int(k) for k in np.atleast_1d(np.asarray(lags)))
    if not values or min(values) < 1 or max(values) > num_steps:
        raise ValueError(f"lags must be ints in [1, T] = [1, {num_steps}] (the lags k of dh_T/dh_(T-k) to "
                         f"penalise), got {lags!r}")
    return values


def _check_probes(probes) -> int | None:
    if probes is None:
        return None
    if isinstance(probes, bool) or not isinstance(probes, (int, np.integer)) or probes < 1:
        raise ValueError(f"probes must be a positive int (random vectors per estimate) or None (exact), "
                         f"got {probes!r}")
    return int(probes)


def _probe_rows(key, probes: int | None, n: int, dtype):
    """``probes`` random orthonormal rows (Haar), or None (all n: the identity, exact)."""
    if probes is None or probes >= n:
        return None
    return jnp.linalg.qr(jax.random.normal(key, (n, probes), dtype))[0].T


def _one_sequence(step, params, xs, h0, lags, rows):
    flat_step, states = engine.unrolled_states(step, params, xs, h0)
    n, dtype = states.shape[1], states.dtype
    advance = engine.product_stepper(flat_step, params, states, xs)
    start = (jnp.eye(n, dtype=dtype) if rows is None else rows) / jnp.sqrt(jnp.asarray(
        n if rows is None else rows.shape[0], dtype))
    carry = (start, jnp.asarray(0.5 * np.log(n), dtype), jnp.bool_(True))
    return engine.sweep_log_norms(advance, carry, lags)[1] - 0.5 * np.log(n)


def log_rms_gains(cell_or_step, params, xs, h0=None, *, lags, probes: int | None = 8, key=None,
                  dtype=None, batch_axes: int | None = None) -> jax.Array:
    r"""Estimates of :math:`\log(\lVert\partial h_T/\partial h_{T-k}\rVert_F / \sqrt n)` at each of ``lags``.

    Differentiable (``jax.grad``, ``jax.jit``, ``jax.vmap``): the building block of the
    penalties. With ``probes=None`` (or ``probes >= n``) the value is exact, the log RMS
    singular value that :func:`gradscope.jacobian_spectra` reports
    (``lag_metrics().log_rms``); otherwise a matrix-free estimate from ``probes``
    random orthonormal directions at ``h_T`` (see the module docstring).

    Args:
        cell_or_step: a built-in cell, an adapter, or ``step(params, h, x) -> h_next``.
        params: its parameters.
        xs: inputs ``(T, input_size)`` (or a pytree with a leading time axis), with
            optional leading batch axes (each sequence is estimated on its own).
        h0: initial state (default: the cell's zero state).
        lags: the lags k (ints in [1, T]).
        probes: random directions per estimate; None for the exact value.
        key: PRNG key of the probes (default key 0: the same probes every call; pass a
            fresh key per training step for an unbiased estimate).
        dtype: ``"float32"`` or ``"float64"`` (default from params and h0).
        batch_axes: leading batch axes of ``xs`` (inferred for built-in cells).

    Returns:
        ``[..., len(lags)]`` log RMS gains (leading batch axes of ``xs``).

    Raises:
        ValueError: lags outside [1, T], a bad ``probes``, or malformed inputs.
    """
    step, params, xs, h0, num_steps, batch_axes = prepare_inputs(cell_or_step, params, xs, h0, dtype=dtype,
                                                                 batch_axes=batch_axes)
    lags, probes = _check_lags(lags, num_steps), _check_probes(probes)
    flat_h0 = ravel_pytree(h0)[0]
    rows = _probe_rows(jax.random.key(0) if key is None else key, probes, flat_h0.size, flat_h0.dtype)
    one = lambda x: _one_sequence(step, params, x, h0, lags, rows)  # noqa: E731
    return engine.over_batch_axes(one, batch_axes)(xs)


def rate_penalty(cell_or_step, params, xs, h0=None, *, lags, target: float = 0.0, probes: int | None = 8,
                 key=None, dtype=None, batch_axes: int | None = None) -> jax.Array:
    r""":math:`\operatorname{mean}_k (\log\mathrm{rms}_k / k - \text{target})^2`: the per-step rate near ``target``.

    ``log rms_k / k`` is the average growth rate (nats per step) of the gradient over
    lag k; the penalty is 0 when every sampled lag grows at ``target`` (0: norm kept,
    neither vanishing nor exploding). Averaged over the batch axes of ``xs``. Arguments
    as for :func:`log_rms_gains`.

    >>> loss = task_loss + 0.1 * gradscope.penalties.rate_penalty(cell, params, xs, lags=(5, 10, 20), key=key)
    """
    gains = log_rms_gains(cell_or_step, params, xs, h0, lags=lags, probes=probes, key=key, dtype=dtype,
                          batch_axes=batch_axes)
    return jnp.mean(jnp.square(gains / jnp.asarray(lags, gains.dtype) - target))


def gain_penalty(cell_or_step, params, xs, h0=None, *, lags, target: float = 0.0, probes: int | None = 8,
                 key=None, dtype=None, batch_axes: int | None = None) -> jax.Array:
    r""":math:`\operatorname{mean}_k (\log\mathrm{rms}_k - \text{target})^2`: the log gain at the lags near ``target``.

    Unlike :func:`rate_penalty` it grows with the lag (a rate r costs ``(r k)^2`` at lag
    k), so it weighs the long lags most. Averaged over the batch axes of ``xs``.
    Arguments as for :func:`log_rms_gains`.
    """
    gains = log_rms_gains(cell_or_step, params, xs, h0, lags=lags, probes=probes, key=key, dtype=dtype,
                          batch_axes=batch_axes)
    return jnp.mean(jnp.square(gains - target))


@dataclasses.dataclass(frozen=True)
class Penalty:
    """A weighted gradient-flow penalty, hashable (a field of :class:`gradscope.training.TrainConfig`).

    Attributes:
        lags: the lags k of ``dh_T/dh_(T-k)`` penalised (ints >= 1).
        kind: ``"rate"`` (:func:`rate_penalty`) or ``"gain"`` (:func:`gain_penalty`).
        target: the target rate (nats per step) or log gain.
        weight: the factor the penalty enters the loss with.
        probes: random directions per estimate (None: exact).
    """

    lags: tuple
    kind: str = "rate"
    target: float = 0.0
    weight: float = 1.0
    probes: int | None = 8

    def __post_init__(self):
        lags = tuple(int(k) for k in np.atleast_1d(np.asarray(self.lags)))
        if not lags or min(lags) < 1:
            raise ValueError(f"Penalty.lags must be ints >= 1, got {self.lags!r}")
        object.__setattr__(self, "lags", lags)
        if self.kind not in KINDS:
            raise ValueError(f"Penalty.kind must be one of {KINDS}, got {self.kind!r}")
        if not self.weight >= 0:
            raise ValueError(f"Penalty.weight must be >= 0, got {self.weight!r}")
        _check_probes(self.probes)

    def __call__(self, cell_or_step, params, xs, h0=None, key=None) -> jax.Array:
        """``weight *`` the penalty of ``params`` on the inputs ``xs``."""
        penalty = rate_penalty if self.kind == "rate" else gain_penalty
        return self.weight * penalty(cell_or_step, params, xs, h0, lags=self.lags, target=self.target,
                                     probes=self.probes, key=key)
