"""Built-in cells: equations against NumPy, parameter layout, and the exact linear-cell spectra.

The linear cell h_t = h_{t-1} (g Q) with Q orthogonal has step Jacobian (g Q)^T, so every
singular value of P_k is exactly g^k: log sigma_i(P_k) = k log g for every i and k.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope

LINEAR_STEPS = 3000


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _random(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- equations


@pytest.mark.parametrize("activation, phi", [
    ("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0.0)), ("sigmoid", _sigmoid), ("linear", lambda a: a),
    (jnp.sin, np.sin),
])
def test_vanilla_step_equation(activation, phi):
    rng = np.random.default_rng(0)
    cell = gradscope.VanillaRNN(5, 3, activation)
    params = gradscope.cells.VanillaParams(_random(rng, 5, 5), _random(rng, 3, 5), _random(rng, 5))
    h, x = _random(rng, 5), _random(rng, 3)
    expected = phi(h @ params.recurrent_kernel + x @ params.input_kernel + params.bias)
    np.testing.assert_allclose(cell.step(params, h, x), expected, rtol=1e-5, atol=1e-6)


def test_lstm_step_equation_gate_order_i_f_g_o():
    rng = np.random.default_rng(1)
    n, m = 4, 3
    cell = gradscope.LSTM(n, m)
    params = gradscope.cells.LSTMParams(_random(rng, n, 4 * n), _random(rng, m, 4 * n), _random(rng, 4 * n))
    state = gradscope.cells.LSTMState(_random(rng, n), _random(rng, n))
    x = _random(rng, m)
    z = state.h @ params.recurrent_kernel + x @ params.input_kernel + params.bias
    i, f, g, o = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
    c = _sigmoid(f) * state.c + _sigmoid(i) * np.tanh(g)
    out = cell.step(params, state, x)
    assert isinstance(out, gradscope.cells.LSTMState)
    np.testing.assert_allclose(out.c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.h, _sigmoid(o) * np.tanh(c), rtol=1e-5, atol=1e-6)


def _gru_reference(params, h, x, n, reset):
    xi = x @ params.input_kernel + params.input_bias
    w, b = params.recurrent_kernel, params.recurrent_bias
    r = _sigmoid(xi[:n] + h @ w[:, :n] + b[:n])
    z = _sigmoid(xi[n:2 * n] + h @ w[:, n:2 * n] + b[n:2 * n])
    if reset == "after":  # cuDNN / PyTorch / Flax
        candidate = np.tanh(xi[2 * n:] + r * (h @ w[:, 2 * n:] + b[2 * n:]))
    else:  # Cho et al. 2014
        candidate = np.tanh(xi[2 * n:] + (r * h) @ w[:, 2 * n:] + b[2 * n:])
    return (1 - z) * candidate + z * h


@pytest.mark.parametrize("reset", ["after", "before"])
def test_gru_step_equation_both_conventions(reset):
    rng = np.random.default_rng(2)
    n, m = 4, 3
    params = gradscope.cells.GRUParams(_random(rng, n, 3 * n), _random(rng, m, 3 * n),
                                       _random(rng, 3 * n), _random(rng, 3 * n))
    h, x = _random(rng, n), _random(rng, m)
    out = gradscope.GRU(n, m, reset=reset).step(params, h, x)
    np.testing.assert_allclose(out, _gru_reference(params, h, x, n, reset), rtol=1e-5, atol=1e-6)
    other = "before" if reset == "after" else "after"
    assert np.max(np.abs(out - _gru_reference(params, h, x, n, other))) > 1e-3  # the conventions differ


# ---------------------------------------------------------------- parameters


def test_init_layouts_and_separate_initializers():
    key = jax.random.key(0)
    lstm = gradscope.LSTM(3, 2, forget_bias=1.0)
    params = lstm.init(key, recurrent_init="identity", input_init="zeros", bias_init=("constant", {"value": 0.5}))
    assert params.recurrent_kernel.shape == (3, 12) and params.input_kernel.shape == (2, 12)
    np.testing.assert_array_equal(params.recurrent_kernel, np.tile(np.eye(3), 4))  # identity per gate block
    np.testing.assert_array_equal(params.input_kernel, 0.0)
    # forget bias added to the f block only (gate order i, f, g, o): 0.5 + 1.0 there
    np.testing.assert_array_equal(params.bias, np.repeat([0.5, 1.5, 0.5, 0.5], 3))
    fixed = dict(recurrent_init="identity", input_init="zeros")  # no random draws: nothing to compile
    gru = gradscope.GRU(3, 2).init(key, **fixed)
    assert [p.shape for p in gru] == [(3, 9), (2, 9), (9,), (9,)]
    vanilla = gradscope.VanillaRNN(3, 2).init(key, **fixed)
    assert [p.shape for p in vanilla] == [(3, 3), (2, 3), (3,)] and vanilla.bias.dtype == jnp.float32


def test_initial_states():
    assert gradscope.VanillaRNN(4).initial_state().shape == (4,)
    state = gradscope.LSTM(4).initial_state()
    assert isinstance(state, gradscope.cells.LSTMState) and state.h.shape == state.c.shape == (4,)
    assert not np.any(np.asarray(state.c)) and gradscope.GRU(4).initial_state().shape == (4,)


# ---------------------------------------------------------------- the linear cell, exactly


@pytest.fixture(scope="module")
def linear_runs():
    """Spectra of an 8-unit linear cell with W = g Q over 3000 steps, for g in (1.05, 1, 0.95).

    Inputs are zero so the states stay at 0 (with inputs, g = 1.05 would overflow the
    *forward* states in float32; the Jacobians do not depend on them for a linear cell).
    All three share one compilation.
    """
    cell = gradscope.VanillaRNN(8, 1, "linear")
    xs = jnp.zeros((LINEAR_STEPS, 1))
    runs = {}
    for gain in (1.05, 1.0, 0.95):
        params = cell.init(jax.random.key(7), recurrent_init=("orthogonal", {"gain": gain}))
        runs[gain] = gradscope.jacobian_spectra(cell, params, xs)
    return runs


@pytest.mark.parametrize("gain", [1.05, 0.95])
def test_linear_orthogonal_cell_all_singular_values_are_gain_to_the_k(linear_runs, gain):
    result = linear_runs[gain]
    log_sv = np.asarray(result.log_singular_values, np.float64)
    assert log_sv.shape == (LINEAR_STEPS, 8) and np.all(np.isfinite(log_sv))
    exact = result.lags[:, None] * np.log(gain)  # reaches +-146 / -154 nats: far outside float32 range
    assert np.max(np.abs(log_sv - exact) / np.abs(exact)) < 1e-3
    assert np.max(np.abs(np.asarray(result.log_frobenius) - (exact[:, 0] + 0.5 * np.log(8)))
                  / np.abs(exact[:, 0])) < 1e-3


def test_linear_cell_at_gain_one_is_an_isometry(linear_runs):
    log_sv = np.asarray(linear_runs[1.0].log_singular_values)
    # a float32 orthogonal matrix is orthogonal to ~1e-7, so 3000 products drift by ~3000 * 1e-7
    assert np.max(np.abs(log_sv)) < 1e-3
    cell = gradscope.VanillaRNN(8, 1, "linear")
    exact = cell.init(jax.random.key(0), recurrent_init="identity")  # W = I exactly: P_k = I
    result = gradscope.jacobian_spectra(cell, exact, jnp.zeros((LINEAR_STEPS, 1)))
    assert np.max(np.abs(np.asarray(result.log_singular_values))) < 1e-6


def test_linear_cell_verdicts_rates_and_horizon(linear_runs):
    verdicts = {gain: linear_runs[gain].verdict() for gain in linear_runs}
    assert verdicts == {1.05: "exploding", 1.0: "stable", 0.95: "vanishing"}
    for gain, result in linear_runs.items():
        summary = result.summary()
        np.testing.assert_allclose(float(summary.rate), np.log(gain), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(float(summary.rms_rate), np.log(gain), rtol=1e-3, atol=1e-6)
    assert np.isinf(float(linear_runs[1.05].summary().horizon))
    # sigma_max(P_k) = 0.95^k crosses the threshold at k = log(threshold) / log(0.95)
    for threshold in (1e-2, 0.5):
        horizon = float(linear_runs[0.95].summary(gradscope.Thresholds(horizon=threshold)).horizon)
        np.testing.assert_allclose(horizon, np.log(threshold) / np.log(0.95), rtol=1e-4)
