"""QR (Benettin) Lyapunov spectra against exact results for linear cells.

Tolerances:
* fresh Gaussian weights (untied): the estimate of lambda_i from T steps is a mean of T
  i.i.d. log|R_ii| with variance psi'((n-i+1)/2)/(4T) (theory.ginibre_lyapunov), so each
  exponent is checked to 4 standard errors (a false failure has probability < 1e-3 over
  all n exponents).
* one fixed W: the QR iteration converges to log|eig(W)| with error O(1/T) from the
  transient alignment of the frame; after a burn-in of 500 steps and 3000 accumulated
  steps, 5e-3 is several times the observed error.
* orthogonal W: exact at every step (float32 rounding only).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import gradscope as gs
from gradscope import lyapunov, theory


def linear_step(kernel, h, x):
    return h @ kernel


def gaussian(seed, shape, scale=1.0):
    """Host-side Gaussian draws (numpy: no per-shape compilation of jax.random.normal)."""
    return scale * np.random.default_rng(seed).standard_normal(shape)


def test_untied_gaussian_linear_matches_newman():
    n, steps = 32, 1000
    kernels = jnp.asarray(gaussian(1, (steps, n, n), 1.2 / np.sqrt(n)), jnp.float32)
    result = lyapunov.lyapunov_spectrum(linear_step, kernels, jnp.zeros((steps, 1)), jnp.zeros(n), untied=True)
    expected = theory.ginibre_lyapunov(n, sigma=1.2)
    stderr = np.sqrt(scipy.special.polygamma(1, np.arange(n, 0, -1) / 2.0) / (4 * steps))
    assert np.all(np.abs(np.asarray(result.exponents) - expected) < 4 * stderr)
    assert result.history.shape == (steps, n)
    np.testing.assert_array_equal(result.history[-1], result.exponents)


FIXED_STEPS = 3500


def test_fixed_matrix_gives_log_abs_eigenvalues():
    kernel = jnp.asarray(gaussian(4, (8, 8), 1 / np.sqrt(8)), jnp.float32)
    result = lyapunov.lyapunov_spectrum(linear_step, kernel, jnp.zeros((FIXED_STEPS, 1)), jnp.zeros(8),
                                        transient=500)
    expected = theory.fixed_linear_lyapunov(kernel)
    np.testing.assert_allclose(np.sort(np.asarray(result.exponents))[::-1], expected, atol=5e-3)


def test_orthogonal_linear_cell_has_every_exponent_log_gain():
    cell = gs.VanillaRNN(24, input_size=2, activation="linear")
    params = cell.init(jax.random.key(0), recurrent_init=("orthogonal", {"gain": 1.1}))
    xs = jnp.asarray(gaussian(5, (3, 50, 2)), jnp.float32)  # three batched input sequences
    result = lyapunov.lyapunov_spectrum(cell, params, xs, num_exponents=10, interval=3, transient=5)
    np.testing.assert_allclose(result.exponents, np.log(1.1), atol=1e-5)
    assert result.exponents.shape == (3, 10) and result.history.shape == (3, 16, 10)  # QRs at 6, 9, ..., 48 and 50
    assert result.steps[-1] == 45 and result.transient == 5 and result.interval == 3


def test_full_frame_sum_equals_log_det_of_forward_product():
    """sum_i lambda_i * T = log|det F_T| = sum_i log sigma_i(F_T), from jacobian_spectra(direction="forward")."""
    n, steps = 12, 6
    with jax.enable_x64(True):
        kernels = jnp.asarray(gaussian(2, (steps, n, n), 1 / np.sqrt(n)), jnp.float64)
        xs, h0 = jnp.zeros((steps, 1)), jnp.ones(n)
        qr = lyapunov.lyapunov_spectrum(linear_step, kernels, xs, h0, untied=True, dtype="float64")
        blocked = lyapunov.lyapunov_spectrum(linear_step, kernels, xs, h0, untied=True, dtype="float64",
                                             interval=4)
        forward = gs.forward_spectra(linear_step, kernels, xs, h0, untied=True, lags=[steps], dtype="float64")
        exponents, blocked_exponents = np.asarray(qr.exponents), np.asarray(blocked.exponents)
        log_sv = np.asarray(forward.log_singular_values[-1])
    np.testing.assert_allclose(exponents.sum() * steps, log_sv.sum(), atol=1e-9)
    # the first exponents of a QR run are volume growth rates: bounded by the top singular values
    assert exponents[:3].sum() * steps <= log_sv[:3].sum() + 1e-9
    # re-orthonormalising every 4 steps multiplies the same R factors: identical in exact arithmetic
    np.testing.assert_allclose(blocked_exponents, exponents, atol=1e-9)
    assert blocked.steps.tolist() == [4, 6]


def test_diverging_states_raise_and_options_are_checked():
    kernel = 10.0 * jnp.eye(8)  # same shapes as the fixed-matrix test: no new compilation
    with pytest.raises(gs.NumericalOverflowError, match="diverge"):
        lyapunov.lyapunov_spectrum(linear_step, kernel, jnp.zeros((FIXED_STEPS, 1)), jnp.ones(8), transient=500)
    xs, h0 = jnp.zeros((10, 1)), jnp.ones(4)
    with pytest.raises(ValueError, match=r"num_exponents must be an int in \[1, n\] = \[1, 4\]"):
        lyapunov.lyapunov_spectrum(linear_step, jnp.eye(4), xs, h0, num_exponents=5)
    with pytest.raises(ValueError, match="transient must lie in"):
        lyapunov.lyapunov_spectrum(linear_step, jnp.eye(4), xs, h0, transient=10)
    with pytest.raises(ValueError, match="interval"):
        lyapunov.lyapunov_spectrum(linear_step, jnp.eye(4), xs, h0, interval=0)
    with pytest.raises(ValueError, match="h0"):
        lyapunov.lyapunov_spectrum(linear_step, jnp.eye(4), xs)
