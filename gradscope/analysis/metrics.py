"""Vanishing/exploding diagnostics computed from per-lag log singular values.

All functions are pure JAX on arrays whose last axes are ``[lags, n]`` (spectra)
or ``[lags]`` (profiles); extra leading axes (seeds, initializers) broadcast.

Definitions (natural logs throughout):

* ``log_sigma_max``, ``log_sigma_min``: largest/smallest singular value of P_k.
* ``log_rms``: log of the RMS singular value, ``log(||P_k||_F / sqrt(n))``; the
  quantity whose per-step rate mean-field theory predicts (``1/2 log chi_1``).
* ``log_condition``: ``log sigma_max - log sigma_min``.
* ``isometry_spread``: standard deviation over i of ``log sigma_i`` (0 = isometry).
* ``rate``: least-squares slope of ``log sigma_max`` against lag (per step), the
  empirical top Lyapunov exponent of the backward map; ``rms_rate`` likewise for
  ``log_rms``.
* ``horizon``: the lag where ``sigma_max`` first falls below
  ``Thresholds.horizon`` (linear interpolation of the log between kept lags);
  ``inf`` if it never does within the lags analysed.
* ``verdict``, one story with the horizon:

  - ``"vanishing"``: ``rate < Thresholds.vanishing`` and sigma_max falls below
    ``Thresholds.horizon`` within the analysed lags (a finite ``horizon``);
  - ``"slowly vanishing"``: ``rate < Thresholds.vanishing`` but sigma_max stays above
    ``Thresholds.horizon`` at every analysed lag (``horizon`` is ``inf``): the gradient
    decays, yet not enough to cross the threshold within T. At the fitted rate it would
    cross near lag ``log(Thresholds.horizon) / rate``;
  - ``"exploding"``: ``rate > Thresholds.exploding``;
  - ``"stable"``: otherwise;
  - ``"non-finite"``: the states or products overflowed (no rate).

Every function here works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``. The rates
are linear in the profile, so their gradients are exact. The horizon is differentiable
where it is finite, through the interpolation between the two lags around the
crossing, but jumps when the crossing passes a kept lag and has no gradient where it is
``inf``; :func:`soft_horizon` is a smooth version to put in a loss. The verdict is an
integer code (no gradient).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core import _checks

__all__ = [
    "VERDICTS",
    "LagMetrics",
    "Summary",
    "Thresholds",
    "fit_rate",
    "lag_metrics",
    "memory_horizon",
    "soft_horizon",
    "summarize",
    "verdict_code",
    "verdict_name",
    "verdict_names",
]

VERDICTS = ("vanishing", "stable", "exploding", "non-finite", "slowly vanishing")
"""Verdict names, indexed by the integer codes of :func:`verdict_code` (codes 0-3 predate 4)."""


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where the verdicts and the horizon draw their lines (all overridable).

    Attributes:
        vanishing: a growth rate (nats per step) below this is ``"vanishing"``, or
            ``"slowly vanishing"`` when sigma_max never falls below ``horizon`` within
            the analysed lags. The default -0.01 means sigma_max shrinks by e within 100 steps.
        exploding: a rate above this is ``"exploding"``.
        horizon: the memory horizon is the lag where sigma_max falls below this.
    """

    vanishing: float = -0.01
    exploding: float = 0.01
    horizon: float = 1e-2

    def __post_init__(self):
        if not self.vanishing <= self.exploding:
            raise ValueError(f"expected vanishing <= exploding thresholds, got {self.vanishing} > {self.exploding}")
        if not self.horizon > 0:
            raise ValueError(f"the horizon threshold is a singular value and must be > 0, got {self.horizon}")


class LagMetrics(NamedTuple):
    """Per-lag metrics, each ``[..., lags]``.

    Attributes:
        log_sigma_max: log of the largest singular value.
        log_sigma_min: log of the smallest (clamped at the dtype's resolution floor).
        log_rms: log of the RMS singular value, ``log(||P_k||_F / sqrt(n))``.
        log_condition: log of the condition number.
        isometry_spread: std of the log singular values.
    """

    log_sigma_max: jax.Array
    log_sigma_min: jax.Array
    log_rms: jax.Array
    log_condition: jax.Array
    isometry_spread: jax.Array


class Summary(NamedTuple):
    """Per-configuration metrics, each ``[...]``.

    Attributes:
        rate: fitted slope of log sigma_max per step.
        rms_rate: fitted slope of the log RMS singular value per step.
        horizon: lag at which sigma_max falls below the threshold (inf if never).
        verdict: integer code into :data:`VERDICTS`.
    """

    rate: jax.Array
    rms_rate: jax.Array
    horizon: jax.Array
    verdict: jax.Array

    def columns(self) -> dict:
        """Table columns, flattened over the configuration axes: rate, rms_rate, horizon (float64) and
        verdict (names)."""
        return {"rate": np.asarray(self.rate, np.float64).ravel(),
                "rms_rate": np.asarray(self.rms_rate, np.float64).ravel(),
                "horizon": np.asarray(self.horizon, np.float64).ravel(),
                "verdict": [verdict_name(c) for c in np.asarray(self.verdict).ravel()]}


@jax.jit
def lag_metrics(log_singular_values: jax.Array, log_frobenius: jax.Array) -> LagMetrics:
    """Per-lag metrics from ``[..., lags, n]`` log singular values and exact log norms.

    An exactly zero product (``log_sigma_max = -inf``) has condition number and
    spread reported as 0 (all its singular values are equal), never NaN.
    """
    n = log_singular_values.shape[-1]
    top, bottom = log_singular_values[..., 0], log_singular_values[..., -1]
    nonzero = jnp.isfinite(top)
    spread = jnp.where(nonzero, jnp.std(jnp.where(nonzero[..., None], log_singular_values, 0.0), axis=-1), 0.0)
    condition = jnp.where(nonzero, top - jnp.where(nonzero, bottom, 0.0), 0.0)
    return LagMetrics(top, bottom, log_frobenius - 0.5 * jnp.log(n), condition, spread)


@jax.jit
def fit_rate(lags: jax.Array, profile: jax.Array) -> jax.Array:
    """Least-squares slope of ``profile[..., lags]`` against ``lags`` (lag 0 excluded).

    A profile that reaches ``-inf`` (an exactly zero product) has rate ``-inf``.
    With a single positive lag k the rate is ``profile / k``, the line through
    ``P_0 = I`` (whose log singular values are 0); with none it is NaN.
    """
    lags = jnp.asarray(lags, profile.dtype)
    use = lags > 0
    count = jnp.sum(use)
    finite_profile = jnp.where(use & jnp.isfinite(profile), profile, 0.0)
    mean_k = jnp.sum(jnp.where(use, lags, 0.0)) / count
    mean_p = jnp.sum(finite_profile, axis=-1, keepdims=True) / count
    dk = jnp.where(use, lags - mean_k, 0.0)
    slope = jnp.sum(dk * (finite_profile - mean_p), axis=-1) / jnp.sum(dk**2)
    through_origin = jnp.sum(finite_profile / jnp.where(use, lags, 1.0), axis=-1)  # one term when count == 1
    slope = jnp.where(count >= 2, slope, jnp.where(count == 1, through_origin, jnp.nan))
    hit_zero = jnp.any(use & (profile == -jnp.inf), axis=-1)
    return jnp.where(hit_zero, -jnp.inf, slope)


@jax.jit
def memory_horizon(lags: jax.Array, log_sigma_max: jax.Array, threshold: float) -> jax.Array:
    """First lag where ``log_sigma_max`` drops below ``log(threshold)``, interpolated; inf if never."""
    lags = jnp.asarray(lags, log_sigma_max.dtype)
    level = jnp.log(threshold)
    below = log_sigma_max < level
    first = jnp.argmax(below, axis=-1)
    prev = jnp.maximum(first - 1, 0)
    take = lambda a, i: jnp.take_along_axis(a, i[..., None], axis=-1)[..., 0]  # noqa: E731
    y0, y1 = take(log_sigma_max, prev), take(log_sigma_max, first)
    k0, k1 = lags[prev], lags[first]
    sloped = jnp.isfinite(y1) & (y0 > y1)  # both sides of the where stay finite, so gradients do too
    frac = jnp.where(sloped, jnp.where(sloped, y0 - level, 1.0) / jnp.where(sloped, y0 - y1, 1.0), 1.0)
    crossing = jnp.where(first > 0, k0 + jnp.clip(frac, 0.0, 1.0) * (k1 - k0), k1)
    return jnp.where(jnp.any(below, axis=-1), crossing, jnp.inf)


@jax.jit
def soft_horizon(lags: jax.Array, log_sigma_max: jax.Array, threshold: float = 1e-2,
                 temperature: float = 0.5) -> jax.Array:
    r"""A smooth memory horizon: how many of the analysed lags keep ``sigma_max`` above ``threshold``.

    .. math::
        H_\tau = \sum_i (k_i - k_{i-1})\,
        \operatorname{sigmoid}\big((\log\sigma_{\max}(k_i) - \log \text{threshold}) / \tau\big),
        \qquad k_{-1} = 0,

    each kept lag standing for the lags since the previous one. As the temperature
    :math:`\tau` (nats) goes to 0 this counts the lags above the threshold, which for a
    ``sigma_max`` falling with the lag is :func:`memory_horizon` up to the spacing of the
    lags, capped at the last lag where :func:`memory_horizon` is ``inf``. Unlike the
    horizon it is differentiable everywhere, with gradient from the lags whose
    ``sigma_max`` lies within a few :math:`\tau` of the threshold: the quantity to put
    in a loss.

    Args:
        lags: ``[lags]`` the kept lags, ascending.
        log_sigma_max: ``[..., lags]`` log sigma_max (or any log gain, such as the log RMS).
        threshold: the level (a singular value, > 0).
        temperature: the width of the logistic step, in nats of ``log sigma_max``.
    """
    lags = jnp.asarray(lags, log_sigma_max.dtype)
    spacing = jnp.diff(lags, prepend=0.0)
    above = jax.nn.sigmoid((log_sigma_max - jnp.log(threshold)) / temperature)
    return jnp.sum(spacing * above, axis=-1)


@functools.partial(jax.jit, static_argnames="thresholds")
def verdict_code(rate: jax.Array, finite: jax.Array, thresholds: Thresholds, horizon: jax.Array | None = None
                 ) -> jax.Array:
    """Integer verdict (index into :data:`VERDICTS`) from a growth rate and the memory horizon.

    Args:
        rate: fitted growth rate of log sigma_max per step.
        finite: False where the run overflowed (verdict ``"non-finite"``).
        thresholds: the rate thresholds.
        horizon: the memory horizon; where it is ``inf`` a vanishing rate becomes
            ``"slowly vanishing"`` (see the module docstring). None: rates alone decide.
    """
    code = jnp.where(rate < thresholds.vanishing, 0, jnp.where(rate > thresholds.exploding, 2, 1))
    if horizon is not None:
        code = jnp.where((code == 0) & jnp.isposinf(horizon), 4, code)
    return jnp.where(finite & ~jnp.isnan(rate), code, 3)


def verdict_name(code) -> str:
    """The verdict string for an integer code."""
    return VERDICTS[int(code)]


def verdict_names(codes):
    """Verdict strings for integer codes: one string for a scalar, an array of strings otherwise.

    Traced codes (under ``jit``, ``vmap`` or ``grad``, where no string can be returned) come
    back unchanged, as int codes into :data:`VERDICTS`; name them after the transformation
    with this function.
    """
    if not _checks.is_concrete(codes):
        return codes
    codes = np.asarray(codes)
    return np.vectorize(verdict_name)(codes) if codes.ndim else verdict_name(codes)


@functools.partial(jax.jit, static_argnames="thresholds")
def summarize(lags, metrics: LagMetrics, finite: jax.Array, thresholds: Thresholds = Thresholds()) -> Summary:
    """Fitted rates, memory horizon and verdict (from the rate and the horizon) from per-lag metrics."""
    rate = fit_rate(lags, metrics.log_sigma_max)
    horizon = memory_horizon(lags, metrics.log_sigma_max, thresholds.horizon)
    measured = lambda value: jnp.where(finite, value, jnp.nan)  # noqa: E731 - overflowed runs have no metrics
    return Summary(
        measured(rate),
        measured(fit_rate(lags, metrics.log_rms)),
        measured(horizon),
        verdict_code(rate, finite, thresholds, horizon),
    )
