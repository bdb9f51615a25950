"""The warm-started Rayleigh-Ritz method gives LAPACK's singular values above the resolution floor.

Every comparison is against the same analysis with ``method="svd"`` (one LAPACK call per
product: the accuracy contract of gradscope's spectra) and, on a small case, against the
independent jacrev reference of ``tests/conftest.py``.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope.core import pipeline, ritz

LOG_TOL = 0.015  # what float32 promises above the floor (gradscope.core.engine.relative_resolution)


def _inputs(steps, size=1, seed=1, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), (steps, size))


def _both(cell, params, xs, **options):
    svd = gradscope.jacobian_spectra(cell, params, xs, method="svd", pipelined=True, **options)
    fast = gradscope.jacobian_spectra(cell, params, xs, method="ritz", pipelined=True, **options)
    return svd, fast


def _assert_agree(svd, fast, tol=LOG_TOL):
    """Equal floors and norms; equal values wherever either method resolves them."""
    a, b = np.asarray(svd.log_singular_values), np.asarray(fast.log_singular_values)
    np.testing.assert_allclose(np.asarray(fast.log_frobenius), np.asarray(svd.log_frobenius), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fast.log_floor), np.asarray(svd.log_floor), rtol=0, atol=tol)
    resolved = np.asarray(svd.resolved) | np.asarray(fast.resolved)
    assert resolved.any()
    assert np.max(np.abs(a - b)[resolved]) <= tol


@pytest.fixture
def paths(monkeypatch):
    """How often the method refined a basis and took a full decomposition with vectors: a
    comparison covers the Ritz values only where both ran (not plain SVDs at every lag)."""
    counts = collections.Counter()
    for name in ("refine", "_values_and_basis"):
        real = getattr(ritz, name)
        monkeypatch.setattr(ritz, name, lambda *a, _real=real, _name=name, **k: counts.update([_name]) or _real(*a, **k))
    return counts


def _assert_both_paths_ran(paths):
    assert paths["refine"] > 0 and paths["_values_and_basis"] > 0, dict(paths)


def _gaussian(hidden, gain, activation="tanh"):
    cell = gradscope.VanillaRNN(hidden, 1, activation)
    return cell, cell.init(jax.random.key(0), recurrent_init=("normal", {"stddev": gain / np.sqrt(hidden)}))


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0], ids=["contracting", "critical", "chaotic"])
def test_vanilla_matches_lapack(gain, paths):
    cell, params = _gaussian(128, gain)
    svd, fast = _both(cell, params, _inputs(120))
    _assert_agree(svd, fast)
    _assert_both_paths_ran(paths)


@pytest.mark.parametrize("make", [
    lambda: (gradscope.GRU(64, 1), "orthogonal"),
    lambda: (gradscope.LSTM(64, 1, forget_bias=1.0), "orthogonal"),
    lambda: (gradscope.LSTM(64, 1), ("normal", {"stddev": 3 / 8})),
], ids=["gru", "lstm", "lstm_chaotic"])
def test_gated_cells_match_lapack(make, paths):
    cell, init = make()
    params = cell.init(jax.random.key(0), recurrent_init=init)
    svd, fast = _both(cell, params, _inputs(100, scale=2.0))
    _assert_agree(svd, fast)
    _assert_both_paths_ran(paths)


def test_forward_direction_blocks_and_batches(paths):
    cell = gradscope.LSTM(64, 1, forget_bias=1.0)
    params = cell.init(jax.random.key(3))
    xs = jnp.stack([_inputs(80, seed=s) for s in (4, 5)])
    _assert_agree(*_both(cell, params, xs, direction="forward"))
    _assert_agree(*_both(cell, params, xs[0], block=(lambda s: s.c, lambda s: s.c)))
    _assert_agree(*_both(cell, params, xs, lags="log", num_log_lags=20))
    _assert_both_paths_ran(paths)


def test_the_jacrev_reference(reference):
    cell, params = _gaussian(48, 1.5)
    xs = _inputs(60)
    fast = gradscope.jacobian_spectra(cell, params, xs, method="ritz", pipelined=True)
    ref = reference.spectrum(cell.step, params, xs, cell.initial_state(), tuple(range(1, 61)))
    reference.assert_match(fast.log_singular_values, ref, rtol_max=2e-5, log_tol=LOG_TOL, log_floor=fast.log_floor)


def test_float64_is_left_to_lapack():
    """Ritz values reach float32's accuracy in one step per lag, not float64's: auto picks 'svd' there."""
    assert ritz.supports(np.float32) and not ritz.supports(np.float64)
    cell, params = _gaussian(16, 1.0)
    with jax.enable_x64(True), pytest.raises(ValueError, match="float32"):
        gradscope.jacobian_spectra(cell, params, _inputs(10), method="ritz", pipelined=True, dtype="float64")


def test_orthogonal_linear_cell_keeps_every_value():
    """Full rank at every lag (all sigma = 1): the method falls back to plain SVDs and stays exact."""
    cell = gradscope.VanillaRNN(128, 1, "linear")
    params = cell.init(jax.random.key(0), recurrent_init=("orthogonal", {"gain": 1.0}))
    fast = gradscope.jacobian_spectra(cell, params, _inputs(30), method="ritz", pipelined=True)
    np.testing.assert_allclose(np.asarray(fast.log_singular_values), 0.0, atol=2e-5)


def test_ritz_values_bound_and_converge_to_the_singular_values():
    rng = np.random.default_rng(0)
    left, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    right, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    values = np.exp(-np.linspace(0, 12, 200))
    matrix = (left * values) @ right.T
    basis, _ = np.linalg.qr(rng.standard_normal((200, 40)))
    for steps in (1, 3, 12):
        _, triangle = ritz.refine(matrix, basis, steps)
        found = np.linalg.svd(triangle, compute_uv=False)
        assert np.all(found <= values[:40] * (1 + 1e-12))
    np.testing.assert_allclose(found[:20], values[:20], rtol=1e-10)


def test_warm_starts_hand_out_only_earlier_lags():
    starts = ritz.WarmStarts()
    basis = np.eye(4)[:, :2]
    assert starts.before(0, 5) is None
    starts.publish(0, 5, basis, 2)
    starts.publish(0, 3, basis[:, :1], 1)  # older: ignored
    assert starts.before(0, 5) is None and starts.before(1, 9) is None
    found, reach = starts.before(0, 6)
    assert found.shape == (4, 2) and reach == 2


def test_auto_chooses_ritz_only_where_it_applies(monkeypatch):
    methods = []
    real = pipeline.pipelined_sweep
    monkeypatch.setattr(pipeline, "pipelined_sweep", lambda *a, **k: methods.append(k["method"]) or real(*a, **k))
    steps = -(-ritz.MIN_WORK // ritz.MIN_STATE**2)  # the fewest lags at the smallest size
    assert steps >= ritz.MIN_LAGS
    for hidden, num_steps in ((64, 4 * steps), (ritz.MIN_STATE, steps - 1), (ritz.MIN_STATE, steps)):
        cell, params = _gaussian(hidden, 1.0)
        gradscope.jacobian_spectra(cell, params, _inputs(num_steps), pipelined=True)
    assert methods == ["svd", "svd", "ritz"]


def test_few_lags_of_large_products_stay_with_lapack():
    # far above MIN_WORK, but the high-rank first lags would be most of the work
    assert not ritz.worth_it((1024, 1024), np.float32, ritz.MIN_LAGS - 1)
    assert ritz.worth_it((1024, 1024), np.float32, ritz.MIN_LAGS)
    assert not ritz.worth_it((1024, 1024), np.float64, 10 * ritz.MIN_LAGS)
    assert not ritz.worth_it((1024, 64), np.float32, 10 * ritz.MIN_LAGS)  # the smaller side counts


def test_non_finite_products_are_reported():
    cell, params = _gaussian(128, 1.0, activation="linear")
    params = params._replace(recurrent_kernel=params.recurrent_kernel * 1e30)
    with pytest.raises(gradscope.NumericalOverflowError):
        gradscope.jacobian_spectra(cell, params, _inputs(40), method="ritz", pipelined=True)


def test_method_errors_say_what_to_do():
    cell, params = _gaussian(16, 1.0)
    with pytest.raises(ValueError, match="'auto', 'svd' or 'ritz'"):
        gradscope.jacobian_spectra(cell, params, _inputs(10), method="lanczos", pipelined=True)
    with pytest.raises(ValueError, match="runs in the CPU pipeline"):
        gradscope.jacobian_spectra(cell, params, _inputs(10), method="ritz", pipelined=False)


def test_products_decomposed_through_jax_match_lapack():
    rng = np.random.default_rng(3)
    size = ritz.THROUGH_JAX
    product = (rng.standard_normal((size, size)) * np.exp(-np.linspace(0, 9, size))).astype(np.float32)
    values, basis = ritz._values_and_basis(product, 5)
    exact = np.linalg.svd(product.astype(np.float64))
    np.testing.assert_allclose(values, exact.S, rtol=1e-5, atol=1e-6 * exact.S[0])
    np.testing.assert_allclose(ritz._product_values(product), values)
    # the leading left singular vectors, up to sign
    np.testing.assert_allclose(np.abs(np.sum(basis * exact.U[:, :5], axis=0)), 1.0, atol=1e-4)
