"""The curse of memory: memory_sensitivity against jax.jacrev, and the closed forms against Monte Carlo.

For ``h_t = lambda h_{t-1} + gamma x_t`` driven by unit white noise,
``E (dh_T/dlambda)^2 = gamma^2 sum_{j=1}^{T-1} j^2 lambda^(2(j-1))`` (stationary:
``(1 + lambda^2)/(1 - lambda^2)^3``); sample means over independent sequences must agree
within their own standard errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradscope
from gradscope.analysis.sensitivity import default_selector, log_mean_exp, memory_sensitivity
from gradscope.theory.memory import linear_memory, lru_memory, sensitivity_series

KEY = jax.random.key(0)


def _jacrev_sensitivity(cell, params, xs, select, lags):
    """||d h_T / d theta||_F^2 with theta acting in the last k steps only, by jax.jacrev of the unrolled map."""
    flat, unravel = ravel_pytree(params)
    positions = ravel_pytree(select(unravel(jnp.arange(flat.size, dtype=flat.dtype))))[0].astype(int)
    steps = xs.shape[0]

    def final_state(theta, k):
        late = unravel(flat.at[positions].set(theta))

        def body(h, inputs):
            t, x = inputs
            p = jax.tree_util.tree_map(lambda a, b: jnp.where(t >= steps - k, a, b), late, params)
            return cell.step(p, h, x), None

        return ravel_pytree(jax.lax.scan(body, cell.initial_state(flat.dtype), (jnp.arange(steps), xs))[0])[0]

    squared = jax.jit(jax.vmap(lambda k: jnp.sum(jax.jacrev(final_state)(flat[positions], k) ** 2)))
    return np.asarray(squared(jnp.asarray(lags)))


@pytest.mark.parametrize("cell", [gradscope.LRU(3, 2, r_min=0.5, r_max=0.95), gradscope.LSTM(3, 2),
                                  gradscope.SelectiveSSM(3, 2)], ids=lambda c: type(c).__name__)
def test_sensitivity_by_lag_equals_jacrev_of_the_unrolled_map(cell):
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(KEY))
        xs = jax.random.normal(jax.random.key(1), (12, cell.input_size), jnp.float64)
        result = memory_sensitivity(cell, params, xs, lags=(1, 3, 10))
        expected = _jacrev_sensitivity(cell, params, xs, default_selector(cell), (1, 3, 10, 12))
        final = ravel_pytree(jax.lax.scan(lambda h, x: (cell.step(params, h, x), None),
                                          cell.initial_state(jnp.float64), xs)[0])[0]
        state_norm = float(jnp.sum(final**2))
    assert result.lag_values == (1, 3, 10, 12)  # T is always kept: the total
    np.testing.assert_allclose(np.exp(result.log_sensitivity), expected, rtol=1e-9)
    np.testing.assert_allclose(np.exp(result.log_state_norm), state_norm, rtol=1e-9)


def test_series_closed_forms():
    for q in (0.0, 0.5, 0.81, 0.98):
        for k in (1, 7, 200):
            j = np.arange(1, k + 1)
            direct = np.sum(j**2 * q ** (j - 1.0))
            # the partial-sum closed form derived on the docs page
            closed = (1 + q - (k + 1) ** 2 * q**k + (2 * k * k + 2 * k - 1) * q ** (k + 1) - k * k * q ** (k + 2)) \
                / (1 - q) ** 3
            assert np.isclose(closed, direct, rtol=1e-8)
            assert np.isclose(float(sensitivity_series(q, k)), direct, rtol=1e-6)
    assert np.isclose(float(sensitivity_series(0.81)), 1.81 / 0.19**3, rtol=1e-6)
    assert float(sensitivity_series(1.0, 10)) == 385.0  # sum of squares


def test_normalization_and_the_exponential_parametrization_tame_the_limit():
    lam = np.array([0.99, 0.999, 0.9999])
    plain = linear_memory(lam).sensitivity
    normalized = linear_memory(lam, normalized=True).sensitivity
    both = linear_memory(lam, normalized=True, parametrization="exponential").sensitivity
    np.testing.assert_allclose(plain * (1 - lam) ** 3, 0.25, rtol=3e-2)  # (1+l^2)/(1-l^2)^3 ~ 1/(4 (1-l)^3)
    np.testing.assert_allclose(normalized * (1 - lam) ** 2, 0.5, rtol=3e-2)  # still divergent
    np.testing.assert_allclose(both, 0.5, rtol=1e-2)  # bounded: the paper's point
    np.testing.assert_allclose(linear_memory(lam, normalized=True).state_variance, 1.0)
    with pytest.raises(ValueError, match="parametrization must be 'direct' or 'exponential'"):
        linear_memory(0.5, parametrization="polar")


@pytest.mark.parametrize("normalized, parametrization", [(False, "direct"), (True, "exponential")])
def test_monte_carlo_matches_the_closed_form(normalized, parametrization):
    lam, steps, samples = 0.9, 120, 3000
    gamma = float(np.sqrt(1 - lam**2)) if normalized else 1.0
    if parametrization == "direct":
        params, step = {"p": lam}, lambda p, h, x: p["p"] * h + gamma * x[0]
    else:
        params, step = {"p": np.log(-np.log(lam))}, lambda p, h, x: jnp.exp(-jnp.exp(p["p"])) * h + gamma * x[0]
    with jax.enable_x64(True):
        xs = jax.random.normal(KEY, (samples, steps, 1), jnp.float64)
        result = memory_sensitivity(step, jax.tree_util.tree_map(jnp.float64, params), xs, h0=jnp.float64(0.0),
                                    select=lambda p: p["p"], batch_axes=1, lags=(steps,))
    draws = np.exp(np.asarray(result.log_total))
    theory = linear_memory(lam, steps, normalized=normalized, parametrization=parametrization)
    standard_error = draws.std() / np.sqrt(samples)
    assert abs(draws.mean() - float(theory.sensitivity)) < 4 * standard_error
    assert np.isclose(float(np.exp(result.log_expected()[-1])), draws.mean(), rtol=1e-10)
    states = np.exp(np.asarray(result.log_state_norm))
    assert abs(states.mean() - float(theory.state_variance)) < 4 * states.std() / np.sqrt(samples)


def test_lru_monte_carlo_matches_its_closed_form():
    cell = gradscope.LRU(6, 2, r_min=0.95, r_max=0.95, max_phase=0.5)
    samples, steps = 1500, 100
    with jax.enable_x64(True):
        params = cell.init(KEY, dtype=jnp.float64)
        xs = jax.random.normal(jax.random.key(2), (samples, steps, 2), jnp.float64)
        result = memory_sensitivity(cell, params, xs, lags=(steps,))
        theory = lru_memory(params, steps)
    draws = np.exp(np.asarray(result.log_total))
    assert abs(draws.mean() - float(theory.sensitivity)) < 4 * draws.std() / np.sqrt(samples)
    assert result.num_parameters == 12  # nu_log and theta_log


def test_selector_errors_name_the_fix():
    def step(p, h, x):
        return p["w"] * h + x

    with pytest.raises(ValueError, match="pass select=lambda params"):
        memory_sensitivity(step, {"w": 0.5}, jnp.ones((4, 1)), h0=jnp.zeros(1))
    with pytest.raises(ValueError, match="block selector failed"):
        memory_sensitivity(step, {"w": 0.5}, jnp.ones((4, 1)), h0=jnp.zeros(1), select=lambda p: p["v"])


def test_log_mean_exp_averages_in_log_domain_without_overflow():
    values = np.array([[0.0, np.log(3.0), -np.inf], [800.0, 800.0 + np.log(2.0), 800.0 + np.log(3.0)]])
    np.testing.assert_allclose(log_mean_exp(values, -1), [np.log(4.0 / 3.0), 800.0 + np.log(2.0)], rtol=1e-12)
    np.testing.assert_allclose(log_mean_exp(values, (0, 1)), np.log(np.mean(np.exp(values - 800.0))) + 800.0)
    assert log_mean_exp(np.full(3, -np.inf), 0) == -np.inf  # all zeros: log 0, no NaN
