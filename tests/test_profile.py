"""Profile, norms-only and top-k modes, and the chunked sweep, against full spectra and exact answers.

Tolerances (stated, and what they rest on):

* RMS: exact in the profile (same carried Frobenius norm as the full sweep): 1e-6.
* sigma_max from warm-started block Krylov iterations: a Rayleigh-Ritz value, so a
  lower bound (up to float32 rounding, 1e-5), within ``SIGMA_MAX_TOL`` = 2e-3 nats of
  the full spectra at every lag (measured worst case ~7e-4, at lag 1 of a
  near-isometric product), and exact at the spectrum lags.
* top-k (float64, n = 16, k = 4, oversample 4, two power iterations): within
  ``TOP_K_TOL`` = 1e-2 nats of the full spectra for the top 4 (the worst case is the
  4th value at lag 1, where the single Jacobian's spectrum has not separated), and
  1e-6 once it has (lag >= 8).
* chunked sweep: the same products and SVD routine as the per-lag sweep; batched
  reductions may round differently, so logs agree to ``CHUNK_TOL`` = 1e-6 (float32 eps
  is 1.2e-7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope.analysis.profile import _interpolate, jacobian_profile, norm_profile, top_singular_values

NUM_STEPS = 40
SIGMA_MAX_TOL = 2e-3
TOP_K_TOL = 1e-2
CHUNK_TOL = 1e-6


def _vanilla(hidden=16, init="glorot_normal", activation="tanh", steps=NUM_STEPS, seed=0):
    cell = gradscope.VanillaRNN(hidden, activation=activation)
    params = cell.init(jax.random.key(seed), recurrent_init=init)
    return cell, params, jax.random.normal(jax.random.key(seed + 1), (steps, 1))


CASES = {
    "tanh-glorot": lambda: _vanilla(),
    "tanh-orthogonal": lambda: _vanilla(init="orthogonal"),
    "lstm": lambda: (gradscope.LSTM(8), gradscope.LSTM(8).init(jax.random.key(2)),
                     jax.random.normal(jax.random.key(3), (NUM_STEPS, 1))),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    cell, params, xs = CASES[request.param]()
    return cell, params, xs, gradscope.jacobian_spectra(cell, params, xs)


def test_norm_profile_matches_full_spectra(case):
    cell, params, xs, full = case
    prof = norm_profile(cell, params, xs)
    np.testing.assert_array_equal(prof.lags, np.arange(1, NUM_STEPS + 1))
    # two compiled programs: equal to float32 rounding (a few ulps; 1 ulp is 1.9e-6 at |log rms| = 16)
    np.testing.assert_allclose(prof.log_rms, full.lag_metrics().log_rms, rtol=1e-6, atol=1e-6)
    gap = np.asarray(full.log_singular_values[:, 0]) - np.asarray(prof.log_sigma_max)
    assert gap.min() > -1e-5, "a Ritz value cannot exceed sigma_max"
    assert gap.max() < SIGMA_MAX_TOL
    assert prof.spectra is None and prof.lag_metrics().log_sigma_min is None


@pytest.fixture(scope="module")
def glorot_case():
    cell, params, xs = CASES["tanh-glorot"]()
    return cell, params, xs, gradscope.jacobian_spectra(cell, params, xs)


def test_profile_spectra_are_exact_at_spectrum_lags(glorot_case):
    cell, params, xs, full = glorot_case
    prof = jacobian_profile(cell, params, xs, spectrum_lags=(1, 5, 17, 40))
    where = prof.spectrum_lags - 1
    np.testing.assert_array_equal(prof.spectrum_lags, [1, 5, 17, 40])
    np.testing.assert_allclose(prof.spectra.log_singular_values, full.log_singular_values[where], atol=1e-5)
    np.testing.assert_allclose(np.asarray(prof.log_sigma_max)[where], full.log_singular_values[where, 0], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(prof.residual)[where], 0.0)


def test_profile_lag_metrics_interpolate_sigma_min_between_spectrum_lags():
    cell, params, xs = CASES["tanh-glorot"]()
    prof = jacobian_profile(cell, params, xs, spectrum_lags=(1, 5, 17, 40))  # same program as above
    lag_metrics = prof.lag_metrics()
    measured = np.asarray(prof.spectra.log_singular_values[:, -1])
    sigma_min = np.asarray(lag_metrics.log_sigma_min)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in lag_metrics)
    np.testing.assert_allclose(sigma_min[[0, 4, 16, 39]], measured, atol=1e-6)
    np.testing.assert_allclose(sigma_min[9], measured[1] + (10 - 5) / (17 - 5) * (measured[2] - measured[1]), atol=1e-5)
    np.testing.assert_array_equal(prof.spectrum_mask, np.isin(np.arange(1, 41), [1, 5, 17, 40]))
    table = prof.lag_table("tanh")
    assert len(table) == NUM_STEPS and table["spectrum_measured"].sum() == 4
    assert {"init", "seed", "lag", "log_sigma_max", "log_rms", "log_sigma_min"} <= set(table.columns)


def test_interpolation_holds_ends_and_keeps_minus_infinity():
    values = jnp.array([[1.0, 3.0], [-jnp.inf, -jnp.inf]])
    out = np.asarray(_interpolate(np.arange(1, 8), np.array([3, 5]), values))
    np.testing.assert_allclose(out[0], [1, 1, 1, 2, 3, 3, 3])
    assert np.all(out[1] == -np.inf)


def test_profile_of_linear_orthogonal_cell_is_exact():
    """Linear cell, W = g * orthogonal: every singular value of P_k is g^k."""
    gain = 0.9
    cell, params, xs = _vanilla(init=("orthogonal", {"gain": gain}), activation="linear")
    prof = jacobian_profile(cell, params, xs, num_log_lags=6)
    expected = np.arange(1, NUM_STEPS + 1) * np.log(gain)
    np.testing.assert_allclose(prof.log_sigma_max, expected, atol=1e-4)
    np.testing.assert_allclose(prof.log_rms, expected, atol=1e-4)
    np.testing.assert_allclose(prof.lag_metrics().log_sigma_min, expected, atol=1e-3)
    assert prof.summary().rate == pytest.approx(np.log(gain), abs=1e-5)


def test_profile_sigma_max_against_jacrev_reference(reference):
    cell, params, xs = _vanilla(hidden=8, steps=12)
    ref = reference.spectrum(cell.step, params, xs, cell.initial_state(), list(range(1, 13)))
    prof = norm_profile(cell, params, xs)
    np.testing.assert_allclose(prof.log_sigma_max, np.log(ref[:, 0]), atol=SIGMA_MAX_TOL)
    np.testing.assert_allclose(prof.log_rms, np.log(np.linalg.norm(ref, axis=1) / np.sqrt(8)), atol=1e-5)


def test_profile_forward_and_batched():
    cell, params, xs = _vanilla(hidden=8, steps=20)
    batch = jnp.stack([xs, -xs])
    prof = jacobian_profile(cell, params, batch, direction="forward", num_log_lags=5)
    full = gradscope.forward_spectra(cell, params, batch)
    assert prof.log_sigma_max.shape == (2, 20) and prof.spectra.log_singular_values.shape[0] == 2
    # two compiled programs: equal to float32 rounding (a few ulps; 1 ulp is 1.9e-6 at |log rms| = 16)
    np.testing.assert_allclose(prof.log_rms, full.lag_metrics().log_rms, rtol=1e-6, atol=1e-6)
    gap = np.asarray(full.log_singular_values[..., 0]) - np.asarray(prof.log_sigma_max)
    assert -1e-5 < gap.min() and gap.max() < SIGMA_MAX_TOL


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_top_k_matches_reference_spectra(direction):
    cell, params, xs = _vanilla(hidden=16, steps=30)
    with jax.enable_x64(True):
        params, xs = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, xs))
        full = gradscope.jacobian_spectra(cell, params, xs, direction=direction)
        top = top_singular_values(cell, params, xs, k=4, oversample=4, power_iters=2, lags="all",
                                  direction=direction)
        assert top.log_singular_values.shape == (30, 4) and top.log_singular_values.dtype == jnp.float64
        gap = np.asarray(full.log_singular_values[:, :4]) - np.asarray(top.log_singular_values)
    assert gap.min() > -1e-9, "Ritz values are lower bounds"
    assert gap.max() < TOP_K_TOL
    assert gap[7:].max() < 1e-6


def test_top_k_float32_log_lags(glorot_case):
    cell, params, xs, full = glorot_case
    top = top_singular_values(cell, params, xs, k=1, lags="log", num_log_lags=8)
    np.testing.assert_array_equal(top.lags, [1, 2, 3, 5, 8, 14, 24, 40])
    np.testing.assert_allclose(top.log_sigma_max, full.log_singular_values[top.lags - 1, 0], atol=TOP_K_TOL)


def test_chunked_sweep_equals_per_lag_sweep(glorot_case):
    cell, params, xs, _ = glorot_case
    per_lag = gradscope.jacobian_spectra(cell, params, xs, pipelined=False)
    for chunk in (7, 64):  # 40 lags: a ragged last chunk, and one chunk larger than all lags
        chunked = gradscope.jacobian_spectra(cell, params, xs, chunk=chunk, pipelined=False)
        for name in ("log_singular_values", "log_frobenius", "log_floor"):
            np.testing.assert_allclose(getattr(chunked, name), getattr(per_lag, name), rtol=0, atol=CHUNK_TOL)


def test_bad_options_are_refused():
    cell, params, xs = _vanilla(hidden=4, steps=6)
    with pytest.raises(ValueError, match="k must be at most the state size n = 4"):
        top_singular_values(cell, params, xs, k=5)
    with pytest.raises(ValueError, match=r"spectrum_lags must lie in \[1, max_lag\]"):
        jacobian_profile(cell, params, xs, spectrum_lags=(0, 3))
    with pytest.raises(ValueError, match="max_lag must be <= T = 6"):
        jacobian_profile(cell, params, xs, max_lag=7)
    with pytest.raises(ValueError, match="max_power_iters must be >= power_iters"):
        norm_profile(cell, params, xs, power_iters=5, max_power_iters=2)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        gradscope.jacobian_spectra(cell, params, xs, chunk=0)
