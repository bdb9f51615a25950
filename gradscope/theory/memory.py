r"""Closed forms for the curse of memory (Zucchet & Orvieto 2024) in linear diagonal recurrences.

The scalar recurrence :math:`h_t = \lambda h_{t-1} + \gamma x_t`, :math:`h_0 = 0`, driven
by unit white noise (:math:`\mathbb E x_s x_t = \delta_{st}`), has
:math:`h_T = \gamma \sum_{j=0}^{T-1} \lambda^j x_{T-j}`, so

.. math::
    \mathbb E h_T^2 = \gamma^2 \sum_{j=0}^{T-1} \lambda^{2j}
        = \gamma^2 \frac{1 - \lambda^{2T}}{1 - \lambda^2}, \qquad
    \frac{\partial h_T}{\partial \lambda} = \gamma \sum_{j=1}^{T-1} j \lambda^{j-1} x_{T-j}, \qquad
    \mathbb E \Big(\frac{\partial h_T}{\partial \lambda}\Big)^2
        = \gamma^2 \sum_{j=1}^{T-1} j^2 \lambda^{2(j-1)} = \gamma^2 S_{T-1}(\lambda^2),

with (differentiate the geometric series twice)

.. math::
    S_K(q) = \sum_{j=1}^{K} j^2 q^{j-1}
        = \frac{1 + q - (K+1)^2 q^K + (2K^2 + 2K - 1) q^{K+1} - K^2 q^{K+2}}{(1-q)^3}
        \;\xrightarrow{K\to\infty}\; \frac{1 + q}{(1 - q)^3}.

As :math:`\lambda \to 1` the state variance grows like :math:`1/(1-\lambda)` but the
sensitivity like :math:`1/(1-\lambda)^3`: the *curse of memory*. The LRU's two
remedies change this as follows (``gamma`` is a parameter of its own, held fixed when
differentiating by ``lambda``):

* input normalization :math:`\gamma = \sqrt{1-\lambda^2}` makes :math:`\mathbb E h^2 = 1`
  and the sensitivity :math:`(1+\lambda^2)/(1-\lambda^2)^2`, still divergent;
* the exponential parametrization :math:`\lambda = \exp(-e^{\nu})` multiplies it by
  :math:`(\partial\lambda/\partial\nu)^2 = (\lambda \log \lambda)^2 \approx (1-\lambda)^2`;
  together with the normalization the limit is finite, :math:`1/2`.

For a complex eigenvalue :math:`\lambda = r e^{i\phi}` (the LRU:
:math:`r = \exp(-e^{\nu})`, :math:`\phi = e^{\theta}`) the same sums hold with
:math:`|\lambda|^2 = r^2` (the state is holomorphic in :math:`\lambda`, the noise real),
and :math:`\partial\lambda/\partial\nu = \lambda \log r`,
:math:`\partial\lambda/\partial\theta = i\phi\lambda`: the sensitivity to the modulus
stays bounded, that to the phase grows like :math:`\phi^2 / (2(1-r)^2)`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["LinearMemory", "linear_memory", "lru_memory", "sensitivity_series"]


def sensitivity_series(q, num_terms=None):
    """``S_K(q) = sum_{j=1}^K j^2 q^(j-1)`` (``num_terms=None``: ``K = inf``, ``(1 + q)/(1 - q)^3``).

    A finite K is summed term by term: the partial-sum closed form above cancels
    catastrophically near ``q = 1`` (a factor ``1/(1-q)^3``; float32 loses every digit
    at ``q = 0.98``), the sum of positive terms does not.

    Args:
        q: ratio(s) in [0, 1) (``lambda^2``); ``q = 1`` is allowed for finite K.
        num_terms: K, or None for the infinite sum.
    """
    q = np.asarray(q, dtype=np.float64)
    if num_terms is None:
        return (1 + q) / (1 - q) ** 3
    j = np.arange(1, int(num_terms) + 1, dtype=q.dtype)
    return np.sum(j**2 * q[..., None] ** (j - 1), axis=-1)


def _sums(q, num_steps):
    """``(sum_{j<T} q^j, S_{T-1}(q))``: the state's and the sensitivity's series (T = None: stationary)."""
    if num_steps is None:
        return 1 / (1 - q), sensitivity_series(q)
    return (1 - q**num_steps) / (1 - q), sensitivity_series(q, num_steps - 1)


class LinearMemory(NamedTuple):
    """What theory predicts for a linear diagonal recurrence driven by unit white noise.

    Attributes:
        state_variance: ``E ||h_T||^2``.
        sensitivity: ``E ||dh_T/dtheta||^2`` for the chosen parameters ``theta``.

    Both are NumPy float64 (scalars or arrays shaped like ``lambda``), whatever JAX's
    precision setting.
    """

    state_variance: object
    sensitivity: object


def linear_memory(lam, num_steps=None, *, normalized: bool = False,
                  parametrization: str = "direct") -> LinearMemory:
    """``E h_T^2`` and ``E (dh_T/dp)^2`` for ``h_t = lambda h_{t-1} + gamma x_t`` (closed forms above).

    Args:
        lam: ``lambda`` in (0, 1) (scalar or array).
        num_steps: T, steps from ``h_0 = 0``; None for the stationary limit ``T -> inf``.
        normalized: ``gamma = sqrt(1 - lambda^2)`` (the LRU's input normalization) instead of 1.
        parametrization: ``"direct"`` (``p = lambda``) or ``"exponential"``
            (``lambda = exp(-exp(nu))``, ``p = nu``, as the LRU).

    Raises:
        ValueError: an unknown parametrization.
    """
    if parametrization not in ("direct", "exponential"):
        raise ValueError(f"parametrization must be 'direct' or 'exponential', got {parametrization!r}")
    lam = np.asarray(lam, dtype=np.float64)
    q = lam**2
    gain = 1 - q if normalized else np.ones_like(q)
    chain = (lam * np.log(lam)) ** 2 if parametrization == "exponential" else np.ones_like(q)
    variance, series = _sums(q, num_steps)
    return LinearMemory(gain * variance, gain * series * chain)


def lru_memory(params, num_steps=None) -> LinearMemory:
    """``E ||h_T||^2`` and ``E ||dh_T/d(nu_log, theta_log)||^2`` of an LRU driven by unit white noise.

    Each input channel is independent unit white noise; unit j contributes
    ``gamma_j^2 ||b_j||^2`` times the scalar sums at ``r_j^2 = |lambda_j|^2``, and the
    sensitivity carries ``|d lambda/d nu|^2 + |d lambda/d theta|^2 = r^2 ((log r)^2 + phi^2)``.

    Args:
        params: :class:`gradscope.cells.LRUParams`.
        num_steps: T (None: stationary).
    """
    modulus = np.exp(-np.exp(np.asarray(params.nu_log, np.float64)))
    phase = np.exp(np.asarray(params.theta_log, np.float64))
    real, imag = (np.asarray(b, np.float64) for b in (params.input_kernel_real, params.input_kernel_imag))
    drive = np.exp(2 * np.asarray(params.gamma_log, np.float64)) * np.sum(real**2 + imag**2, axis=0)
    q = modulus**2
    variance, series = _sums(q, num_steps)
    chain = q * (np.log(modulus) ** 2 + phase**2)
    return LinearMemory(np.sum(drive * variance), np.sum(drive * series * chain))

