"""Every analysis under every transform: jax.grad, jax.jit, jax.vmap (and jax.hessian where cheap).

Gradients are checked against an independent reference: ``jax.grad`` of the log
singular values of ``jax.jacrev`` of the unrolled map (``reference.log_singular_values``
in conftest, which shares nothing with the engine), in float64 on small cells, and
with ``jax.test_util.check_grads`` (finite differences) where no closed form exists.

Tolerances: the engine and the reference compute the same float64 quantities by
different routes, so gradients agree to rounding: 1e-8 relative to the largest entry
(observed <= 1e-10). A singular value far below sigma_max is known only to about
``eps * sigma_max / sigma_i`` in either computation, and so is its gradient (at
sigma_i = e^-26 sigma_max the two differ by 2e-4), so the weighted sums below only
take values within e^-12 of sigma_max. Power-iteration and Ritz estimates converge to
a tolerance, so their gradients are held to 1e-6.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import gradscope
from gradscope import metrics, theory
from gradscope.analysis.lyapunov import lyapunov_spectrum
from gradscope.analysis.profile import jacobian_profile, norm_profile, top_singular_values

NUM_STEPS = 7
LAGS = (0, 2, 5, 7)
GRAD_RTOL = 1e-8


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _float64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _case(kind):
    if kind == "vanilla":
        cell = gradscope.VanillaRNN(5, input_size=2)
        params = cell.init(jax.random.key(0), recurrent_init=("orthogonal", {"gain": 1.3}), bias_init="normal")
    else:
        cell = gradscope.LSTM(3, input_size=2, forget_bias=1.0)
        params = cell.init(jax.random.key(0), bias_init="normal")
    xs = jax.random.normal(jax.random.key(1), (NUM_STEPS, 2))
    return cell, _float64(params), _float64(xs)


def _assert_trees_close(a, b, rtol=GRAD_RTOL):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert np.all(np.isfinite(x))
        np.testing.assert_allclose(x, y, rtol=0, atol=rtol * max(1.0, np.max(np.abs(y))))


def _weights(reference_log_sv):
    """Random weights on the values within e^-12 of sigma_max (see the module docstring), zero elsewhere."""
    log_sv = np.asarray(reference_log_sv)
    return jnp.asarray(np.random.default_rng(5).normal(size=log_sv.shape) * (log_sv > log_sv[:, :1] - 12))


def test_grad_of_log_singular_values_equals_jacrev_svd_reference(reference):
    cell, params, xs = _case("vanilla")
    h0 = cell.initial_state(jnp.float64)
    w = _weights(reference.log_singular_values(cell.step, params, xs, h0, LAGS))
    ours = jax.grad(lambda p: jnp.sum(w * gradscope.jacobian_spectra(cell, p, xs, lags=LAGS).log_singular_values))
    ref = jax.grad(lambda p: jnp.sum(w * reference.log_singular_values(cell.step, p, xs, h0, LAGS)))
    expected = ref(params)
    _assert_trees_close(ours(params), expected)
    _assert_trees_close(jax.jit(ours)(params), expected)  # jit(grad(...))


def test_grad_forward_direction_block_and_chunked(reference):
    cell, params, xs = _case("lstm")
    h0 = cell.initial_state(jnp.float64)
    w = _weights(reference.log_singular_values(cell.step, params, xs, h0, LAGS, "forward"))
    ref = jax.grad(lambda p: jnp.sum(w * reference.log_singular_values(cell.step, p, xs, h0, LAGS, "forward")))
    ours = jax.grad(lambda p: jnp.sum(w * gradscope.forward_spectra(cell, p, xs, lags=LAGS, chunk=3)
                                      .log_singular_values))
    _assert_trees_close(ours(params), ref(params))
    block = (lambda s: s.c, lambda s: s.c)  # dc_T/dc_{T-k}: rows and columns 3..5 of the full product
    cell_path = lambda p: jnp.log(jnp.linalg.svd(  # noqa: E731
        reference.products_jax(cell.step, p, xs, h0, LAGS)[:, 3:, 3:], compute_uv=False))
    w = _weights(cell_path(params))
    block_ref = jax.grad(lambda p: jnp.sum(w * cell_path(p)))
    block_ours = jax.grad(lambda p: jnp.sum(w * gradscope.jacobian_spectra(
        cell, p, xs, lags=LAGS, block=block).log_singular_values))
    _assert_trees_close(block_ours(params), block_ref(params))


def test_second_derivatives_by_finite_differences():
    cell, params, xs = _case("vanilla")

    def top_two(kernel):
        spec = gradscope.jacobian_spectra(cell, params._replace(recurrent_kernel=kernel), xs, lags=(7,))
        return spec.log_singular_values[:, :2]

    check_grads(top_two, (params.recurrent_kernel,), order=2, modes=["rev"], eps=1e-5)


def test_repeated_singular_values_of_orthogonal_linear_cell():
    """h_t = h_{t-1} W (W orthogonal): every sigma of W^k equals 1, a fully repeated spectrum.
    sum_i log sigma_i(P_k) = k log|det W|, so its gradient is k W^{-T} exactly, and no entry is NaN."""
    cell = gradscope.VanillaRNN(4, input_size=1, activation="linear")
    params = _float64(cell.init(jax.random.key(3)))
    xs = jnp.zeros((6, 1))
    grads = jax.grad(lambda p: jnp.sum(gradscope.jacobian_spectra(cell, p, xs, lags=(2, 6)).log_singular_values))(params)
    np.testing.assert_allclose(grads.recurrent_kernel, 8 * np.linalg.inv(params.recurrent_kernel).T, atol=1e-12)
    assert np.all(np.asarray(grads.input_kernel) == 0) and np.all(np.isfinite(grads.bias))


def test_values_clamped_at_the_floor_move_with_it():
    """A relu cell with units switched off has exactly zero singular values: they are reported at the
    floor (log sigma_max + log(n eps)), so their gradient is that of log sigma_max, finite, never NaN."""
    cell = gradscope.VanillaRNN(6, input_size=1, activation="relu")
    params = _float64(cell.init(jax.random.key(3), bias_init=("normal", {"stddev": 1.0})))
    xs = jnp.ones((6, 1))
    spectra = gradscope.jacobian_spectra(cell, params, xs, lags=(4,))
    clamped = np.flatnonzero(~np.asarray(spectra.resolved[0]))
    assert clamped.size >= 1
    grad_of = lambda i: jax.grad(  # noqa: E731
        lambda p: gradscope.jacobian_spectra(cell, p, xs, lags=(4,)).log_singular_values[0, i])(params)
    _assert_trees_close(grad_of(int(clamped[-1])), grad_of(0))


def test_profile_and_norms_only_gradients(reference):
    cell, params, xs = _case("vanilla")
    h0 = cell.initial_state(jnp.float64)
    lags = tuple(range(1, NUM_STEPS + 1))
    ref_log_sv = lambda p: reference.log_singular_values(cell.step, p, xs, h0, lags)  # noqa: E731
    ref_rms = jax.grad(lambda p: jnp.sum(0.5 * jax.nn.logsumexp(2 * ref_log_sv(p), axis=-1)))(params)
    ours_rms = jax.grad(lambda p: jnp.sum(norm_profile(cell, p, xs, tol=1e-12).log_frobenius))(params)
    _assert_trees_close(ours_rms, ref_rms)
    ref_top = jax.grad(lambda p: jnp.sum(ref_log_sv(p)[:, 0]))(params)
    ours_top = jax.grad(lambda p: jnp.sum(jacobian_profile(cell, p, xs, spectrum_lags=(3,), tol=1e-12,
                                                           max_power_iters=64).log_sigma_max))(params)
    _assert_trees_close(ours_top, ref_top, rtol=1e-6)


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_top_k_gradient(reference, direction):
    cell, params, xs = _case("vanilla")
    h0 = cell.initial_state(jnp.float64)
    ref = jax.grad(lambda p: jnp.sum(reference.log_singular_values(cell.step, p, xs, h0, (3, 7), direction)[:, :2]))
    ours = jax.grad(lambda p: jnp.sum(top_singular_values(cell, p, xs, k=2, lags=(3, 7), oversample=3, power_iters=3,
                                                          direction=direction).log_singular_values))
    _assert_trees_close(ours(params), ref(params), rtol=1e-6)


def test_lyapunov_under_jit_vmap_and_grad():
    cell, params, _ = _case("vanilla")
    xs = _float64(jax.random.normal(jax.random.key(4), (2, 30, 2)))
    run = lambda p, x: lyapunov_spectrum(cell, p, x, transient=5).exponents  # noqa: E731
    eager = np.stack([run(params, x) for x in xs])
    np.testing.assert_allclose(jax.jit(run)(params, xs[0]), eager[0], rtol=1e-12)
    # vmap batches the per-step QRs into one LAPACK call, which rounds in another order than one
    # matrix at a time: 9e-12 relative was seen in float64 (JAX 0.8, AMD EPYC), about 4e4 eps
    np.testing.assert_allclose(jax.vmap(run, in_axes=(None, 0))(params, xs), eager, rtol=1e-10)
    check_grads(lambda k: run(params._replace(recurrent_kernel=k), xs[0]), (params.recurrent_kernel,),
                order=1, modes=["rev"], eps=1e-6)


def test_verdict_and_summary_under_jit():
    cell, params, xs = _case("vanilla")
    codes = jax.jit(lambda p: gradscope.jacobian_spectra(cell, p, xs).verdict())(params)
    eager = gradscope.jacobian_spectra(cell, params, xs)
    assert metrics.verdict_names(codes) == eager.verdict()
    summary = jax.jit(lambda p: gradscope.jacobian_spectra(cell, p, xs).summary())(params)
    np.testing.assert_allclose(np.asarray(summary[:3]), np.asarray(eager.summary()[:3]), rtol=1e-12)
    # vmap over parameter sets (seeds) equals one eager call per set
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.9 * a]), params)
    batched = jax.vmap(lambda p: gradscope.jacobian_spectra(cell, p, xs, lags=LAGS).log_singular_values)(stacked)
    for i, scale in enumerate((1.0, 0.9)):
        one = gradscope.jacobian_spectra(cell, jax.tree_util.tree_map(lambda a: scale * a, params), xs, lags=LAGS)
        relative = lambda log_sv: np.exp(log_sv - log_sv[:, :1])  # noqa: E731  (sigma_i / sigma_max: known to ~eps)
        np.testing.assert_allclose(batched[i][:, 0], one.log_singular_values[:, 0], rtol=1e-12)
        np.testing.assert_allclose(relative(batched[i]), relative(one.log_singular_values), rtol=0, atol=1e-12)


def test_horizon_gradients_and_soft_horizon():
    lags = jnp.arange(1.0, 11.0)
    profile = jnp.linspace(-0.5, -9.5, 10)  # crosses log(1e-2) = -4.61 between lags 5 and 6
    check_grads(lambda p: metrics.memory_horizon(lags, p, 1e-2), (profile,), order=1, modes=["rev", "fwd"])
    flat = jax.grad(lambda p: metrics.memory_horizon(lags, p, 1e-2))(jnp.zeros(10))  # never crosses: inf
    assert np.all(np.asarray(flat) == 0)
    horizon = float(metrics.memory_horizon(lags, profile, 1e-2))
    assert abs(float(metrics.soft_horizon(lags, profile, 1e-2, temperature=1e-3)) - 5.0) < 1e-9
    assert 5 <= horizon <= 6
    check_grads(lambda p: metrics.soft_horizon(lags, p, 1e-2), (profile,), order=2, modes=["rev", "fwd"])
    rate_grad = jax.grad(lambda p: metrics.fit_rate(lags, p))(profile)  # the least-squares weights
    np.testing.assert_allclose(rate_grad, (lags - lags.mean()) / jnp.sum((lags - lags.mean()) ** 2), atol=1e-14)


def test_mean_field_gradients():
    chi1 = lambda w: theory.mean_field("tanh", w, 0.1, 0.3).chi1  # noqa: E731
    check_grads(chi1, (1.2,), order=1, modes=["rev"], eps=1e-6)
    # the critical line (found by bisection, differentiated implicitly) against central differences of
    # the bisection itself (bisection error ~1e-11, so differences over 2e-3 are good to ~1e-6)
    crit = lambda b: theory.critical_sigma_w("tanh", b)  # noqa: E731
    b, eps = 0.3, 1e-3
    np.testing.assert_allclose(jax.grad(crit)(b), (crit(b + eps) - crit(b - eps)) / (2 * eps), rtol=1e-5)
