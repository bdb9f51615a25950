"""Metrics on hand-made profiles with known answers, and the exactly-zero (-inf) product."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope import metrics


def test_fit_rate_recovers_an_exact_line_and_ignores_lag_zero():
    lags = np.array([0, 1, 2, 5, 9, 20])
    slopes = np.array([-0.03, 0.0, 0.25])
    profiles = 0.7 + slopes[:, None] * lags  # lag 0 would be 0 for a real P_0 = I; the fit must skip it
    profiles[:, 0] = 99.0
    np.testing.assert_allclose(metrics.fit_rate(lags, jnp.asarray(profiles)), slopes, atol=1e-6)


def test_fit_rate_is_the_least_squares_slope():
    rng = np.random.default_rng(0)
    lags = np.arange(1, 40)
    profile = -0.1 * lags + rng.normal(size=lags.size)
    expected = np.polyfit(lags, profile, 1)[0]
    np.testing.assert_allclose(float(metrics.fit_rate(lags, jnp.asarray(profile))), expected, rtol=1e-5)


def test_fit_rate_with_a_single_positive_lag_goes_through_the_identity():
    # P_0 = I has log sigma = 0, so one lag k determines the rate profile[k] / k
    np.testing.assert_allclose(metrics.fit_rate(np.array([0, 4]), jnp.array([[0.0, -2.0], [0.0, 1.0]])),
                               [-0.5, 0.25], rtol=1e-6)
    assert np.isnan(float(metrics.fit_rate(np.array([0]), jnp.array([0.0]))))


def test_fit_rate_of_a_profile_reaching_minus_infinity():
    profile = jnp.array([-1.0, -2.0, -jnp.inf, -jnp.inf])
    assert float(metrics.fit_rate(np.arange(1, 5), profile)) == -np.inf


def _interpolated_crossing(lags, log_sigma_max, threshold):
    """First crossing of log(threshold), by linear interpolation between the bracketing lags."""
    level = np.log(threshold)
    i = int(np.argmax(log_sigma_max < level))
    (k0, k1), (y0, y1) = lags[i - 1:i + 1], log_sigma_max[i - 1:i + 1]
    return k0 + (y0 - level) / (y0 - y1) * (k1 - k0)


@pytest.mark.parametrize("profile", [[0.0, -2.0, -4.0, -8.0, -9.0], [0.5, -5.0, -1.0, -6.0, -7.0]])
def test_memory_horizon_interpolates_the_first_crossing(profile):
    lags, profile = np.array([1, 2, 4, 8, 16]), np.array(profile)
    expected = _interpolated_crossing(lags, profile, 1e-2)
    horizon = float(metrics.memory_horizon(lags, jnp.asarray(profile), 1e-2))
    np.testing.assert_allclose(horizon, expected, rtol=1e-6)
    assert lags[0] < horizon < lags[-1]


def test_memory_horizon_never_reached_or_reached_at_once():
    lags = np.array([1, 2, 3])
    assert float(metrics.memory_horizon(lags, jnp.array([0.0, -1.0, -2.0]), 1e-2)) == np.inf
    assert float(metrics.memory_horizon(lags, jnp.array([-10.0, -11.0, -12.0]), 1e-2)) == 1.0
    batched = metrics.memory_horizon(lags, jnp.array([[0.0, -1.0, -2.0], [-10.0, -11.0, -12.0]]), 1e-2)
    np.testing.assert_array_equal(batched, [np.inf, 1.0])


def test_lag_metrics_from_known_singular_values():
    sv = np.array([[3.0, 2.0, 0.5], [1.0, 1.0, 1.0]])
    log_sv = np.log(sv)
    log_fro = np.log(np.sqrt(np.sum(sv**2, axis=-1)))
    out = metrics.lag_metrics(jnp.asarray(log_sv), jnp.asarray(log_fro))
    np.testing.assert_allclose(out.log_sigma_max, np.log([3.0, 1.0]), atol=1e-6)
    np.testing.assert_allclose(out.log_sigma_min, np.log([0.5, 1.0]), atol=1e-6)
    np.testing.assert_allclose(out.log_rms, np.log(np.sqrt(np.mean(sv**2, axis=-1))), atol=1e-6)
    np.testing.assert_allclose(out.log_condition, np.log([6.0, 1.0]), atol=1e-6)
    np.testing.assert_allclose(out.isometry_spread, np.std(log_sv, axis=-1), atol=1e-6)


def test_exactly_zero_jacobian_gives_minus_infinity_without_nan():
    # relu'(0) = 0: with zero inputs, zero bias and zero state every step Jacobian is 0.
    cell = gradscope.VanillaRNN(4, 1, "relu")
    rng = np.random.default_rng(0)
    params = gradscope.cells.VanillaParams(*(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(4, 4), (1, 4)]),
                                           jnp.zeros(4))
    result = gradscope.jacobian_spectra(cell, params, jnp.zeros((6, 1)))
    assert np.all(np.asarray(result.log_singular_values) == -np.inf)
    assert np.all(np.asarray(result.log_frobenius) == -np.inf)
    assert bool(result.finite)  # an exactly zero product is not an overflow
    lag_metrics, summary = result.lag_metrics(), result.summary()
    for values in (*lag_metrics, *summary):
        assert not np.any(np.isnan(np.asarray(values)))
    assert float(summary.rate) == -np.inf and float(summary.horizon) == 1.0
    assert result.verdict() == "vanishing"


def test_thresholds_decide_the_verdict():
    lags, finite = np.arange(1, 11), jnp.array(True)
    profile = jnp.asarray(0.005 * lags, jnp.float32)[None]
    zero = jnp.zeros_like(profile)
    lag_metrics = metrics.LagMetrics(profile[0], profile[0], profile[0], zero[0], zero[0])
    assert metrics.verdict_name(metrics.summarize(lags, lag_metrics, finite).verdict) == "stable"
    strict = gradscope.Thresholds(vanishing=-0.001, exploding=0.001)
    assert metrics.verdict_name(metrics.summarize(lags, lag_metrics, finite, strict).verdict) == "exploding"
    falling = lag_metrics._replace(log_sigma_max=-profile[0])  # never below log(0.01) within 10 lags
    assert metrics.verdict_name(metrics.summarize(lags, falling, finite, strict).verdict) == "slowly vanishing"
    assert metrics.verdict_name(metrics.summarize(lags, lag_metrics, jnp.array(False)).verdict) == "non-finite"
    assert metrics.VERDICTS == ("vanishing", "stable", "exploding", "non-finite", "slowly vanishing")


@pytest.mark.parametrize("slope, horizon, verdict", [
    (-0.05, np.log(0.01) / -0.05, "vanishing"),   # sigma_max = exp(-0.05 k) crosses 0.01 at k = 92.1
    (-0.02, np.inf, "slowly vanishing"),          # exp(-0.02 * 100) = 0.135 > 0.01 at every lag
    (-0.005, np.inf, "stable"),
    (0.02, np.inf, "exploding"),
])
def test_verdict_and_horizon_tell_one_story(slope, horizon, verdict):
    lags = np.arange(0, 101)
    line = jnp.asarray(slope * lags, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    zero = jnp.zeros_like(line)
    summary = metrics.summarize(lags, metrics.LagMetrics(line, line, line, zero, zero), jnp.array(True))
    np.testing.assert_allclose(float(summary.rate), slope, rtol=1e-4)
    np.testing.assert_allclose(float(summary.horizon), horizon, rtol=1e-4)
    assert metrics.verdict_name(summary.verdict) == verdict
    # without a horizon the rate alone decides (the earlier rule)
    code = metrics.verdict_code(summary.rate, jnp.array(True), metrics.Thresholds())
    assert metrics.verdict_name(code) == verdict.replace("slowly vanishing", "vanishing")


@pytest.mark.parametrize("options, message", [
    (dict(vanishing=0.1, exploding=-0.1), r"expected vanishing <= exploding thresholds, got 0.1 > -0.1"),
    (dict(horizon=0.0), r"horizon threshold is a singular value and must be > 0, got 0.0"),
    (dict(horizon=-1e-2), r"must be > 0, got -0.01"),
])
def test_thresholds_validation(options, message):
    with pytest.raises(ValueError, match=message):
        gradscope.Thresholds(**options)
