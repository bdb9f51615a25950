"""jacobian_spectra against an independent reference: jax.jacrev of the unrolled map + NumPy SVD.

Every lag k of the engine's one-sweep, log-domain product must have the singular
values of dh_T/dh_{T-k} (or dh_k/dh_0 forward) computed directly, for built-in
cells, a custom pytree-state step, batched inputs, vmapped parameters, float32
and float64. (Each distinct configuration costs an XLA compile, so tests reuse
configurations where they can.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope

NUM_STEPS = 8
ALL_LAGS = list(range(1, NUM_STEPS + 1))
# float32: |sigma_i - ref_i| <= F32_RTOL * sigma_max (observed <= 1e-6), and values above the
# engine's resolution floor within F32_LOG_TOL in log, the floor's promise of a few percent
# (observed <= 0.01, for LSTM values just above the floor).
F32_RTOL, F32_LOG_TOL = 1e-5, 0.03
# float64: 1e-13 of sigma_max for every value (observed <= 2e-15), 1e-9 relative for values
# >= 1e-6 sigma_max (observed <= 5e-11).
F64_RTOL, F64_LOG_TOL, F64_LOG_MIN_REL = 1e-13, 1e-9, 1e-6


def _custom_step(params, h, x):
    """A pytree-state cell: state {"a": (3,), "b": (2, 2)}, inputs {"u": (1,), "v": (2,)}."""
    a, b = h["a"], h["b"]
    z = jnp.concatenate([a, b.ravel()])
    a_next = jnp.tanh(z @ params["w"] + x["u"] * params["u"] + params["bias"])
    mix = jnp.sin(a[:2, None] + a[None, 1:] + x["v"][None, :])
    b_next = jax.nn.sigmoid(b @ params["m"]) * mix + 0.5 * b
    return {"a": a_next, "b": b_next}


def _custom_case(rng, num_steps):
    params = {"w": 0.8 * rng.normal(size=(7, 3)), "u": rng.normal(size=3),
              "bias": 0.1 * rng.normal(size=3), "m": rng.normal(size=(2, 2))}
    xs = {"u": rng.normal(size=(num_steps, 1)), "v": rng.normal(size=(num_steps, 2))}
    h0 = {"a": np.full(3, 0.3), "b": np.eye(2)}
    return _to_float32((_custom_step, _custom_step, params, xs, h0))


# cell, recurrent kernel scale (times 1/sqrt(fan_in)), bias (std, mean)
CELLS = {
    "vanilla_tanh": (gradscope.VanillaRNN(6, 2, "tanh"), 1.3, (0.3, 0.0)),
    "vanilla_relu": (gradscope.VanillaRNN(6, 2, "relu"), 1.0, (0.0, 1.0)),  # 1-3 of 6 units off per step
    "lstm": (gradscope.LSTM(4, 2, forget_bias=1.0), 1.0, (0.3, 0.0)),
    "gru_after": (gradscope.GRU(5, 2, reset="after"), 1.5, (0.5, 0.0)),
    "gru_before": (gradscope.GRU(5, 2, reset="before"), 1.5, (0.5, 0.0)),
}
CASE_NAMES = [*CELLS, "custom_pytree"]


def _to_float32(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32) if isinstance(a, np.ndarray) else a, tree)


def _random_params(cell, scale, bias, rng):
    """Random parameters in the layout ``cell.init`` returns (NumPy RNG: no XLA compiles)."""
    shapes = jax.eval_shape(cell.init, jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    values = [rng.normal(size=leaf.shape) * (scale / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else bias[0])
              + (0.0 if len(leaf.shape) == 2 else bias[1]) for leaf in leaves]
    params = jax.tree_util.tree_unflatten(treedef, values)
    if isinstance(cell, gradscope.LSTM):  # forget-gate block of the bias (gate order i, f, g, o)
        params.bias[cell.hidden_size:2 * cell.hidden_size] += cell.forget_bias
    return params


def make_case(name, num_steps=NUM_STEPS, seed=0):
    """``(target for jacobian_spectra, step, params, xs, h0)`` for a named case, float32."""
    rng = np.random.default_rng(seed)
    if name == "custom_pytree":
        return _custom_case(rng, num_steps)
    cell, scale, bias = CELLS[name]
    params = _random_params(cell, scale, bias, rng)
    xs = rng.normal(size=(num_steps, cell.input_size))
    h0 = jax.tree_util.tree_map(lambda z: 0.5 * rng.normal(size=z.shape), cell.initial_state())
    return _to_float32((cell, cell.step, params, xs, h0))


@pytest.fixture(scope="module")
def case_reference(reference):
    """``(name, direction) -> float64 products [T + 1, n, n]`` for lags 0..T, computed once per case."""

    @functools.cache
    def products(name, direction="backward"):
        _, step, params, xs, h0 = make_case(name)
        return reference.products(step, params, xs, h0, list(range(NUM_STEPS + 1)), direction)

    return products


def _check(reference, result, products, rtol, log_tol, log_min_rel=0.0):
    """Singular values and log Frobenius norms of ``result`` against reference products at its lags."""
    products = products[result.lags]
    reference.assert_match(result.log_singular_values, reference.singular_values(products),
                           rtol, log_tol, result.log_floor, log_min_rel)
    ref_fro = np.log(np.linalg.norm(products, axis=(-2, -1)))
    np.testing.assert_allclose(np.asarray(result.log_frobenius, np.float64), ref_fro, rtol=0, atol=10 * rtol)


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "one-program"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_lag_matches_jacrev(reference, case_reference, name, pipelined):
    target, _, params, xs, h0 = make_case(name)
    result32 = gradscope.jacobian_spectra(target, params, xs, h0, pipelined=pipelined)
    assert result32.log_singular_values.dtype == jnp.float32
    np.testing.assert_array_equal(result32.lags, ALL_LAGS)
    _check(reference, result32, case_reference(name), F32_RTOL, F32_LOG_TOL)
    with jax.enable_x64(True):  # the same parameter values, computed in float64
        params, xs, h0 = reference.to_float64((params, xs, h0))
        result64 = gradscope.jacobian_spectra(target, params, xs, h0, dtype="float64", pipelined=pipelined)
        assert result64.log_singular_values.dtype == jnp.float64
        _check(reference, result64, case_reference(name), F64_RTOL, F64_LOG_TOL, F64_LOG_MIN_REL)


def test_descending_and_full_state_size():
    target, _, params, xs, h0 = make_case("lstm")
    result = gradscope.jacobian_spectra(target, params, xs, h0)
    assert result.state_size == 8  # the LSTM Jacobian covers (h, c): n = 2 * hidden
    assert np.all(np.diff(np.asarray(result.log_singular_values), axis=-1) <= 0)


def test_log_spaced_lags(reference, case_reference):
    target, _, params, xs, h0 = make_case("custom_pytree")
    result = gradscope.jacobian_spectra(target, params, xs, h0, lags="log", num_log_lags=4)
    lags = result.lags
    assert lags[0] == 1 and lags[-1] == NUM_STEPS and np.all(np.diff(lags) > 0) and 3 <= len(lags) <= 4
    _check(reference, result, case_reference("custom_pytree"), F32_RTOL, F32_LOG_TOL)


def test_explicit_lags_including_zero(reference, case_reference):
    target, _, params, xs, h0 = make_case("gru_after")
    result = gradscope.jacobian_spectra(target, params, xs, h0, lags=[7, 0, 3, 3])
    np.testing.assert_array_equal(result.lags, [0, 3, 7])
    # P_0 = I: every singular value is 1 (log 0) and ||P_0||_F = sqrt(n).
    np.testing.assert_allclose(result.log_singular_values[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(result.log_frobenius[0], 0.5 * np.log(5), atol=1e-6)
    _check(reference, result, case_reference("gru_after"), F32_RTOL, F32_LOG_TOL)


@pytest.mark.parametrize("name", ["custom_pytree"])
def test_forward_direction_matches_jacrev(reference, case_reference, name):
    target, _, params, xs, h0 = make_case(name)
    result = gradscope.forward_spectra(target, params, xs, h0, lags=[0, 1, 2, 5, 8])
    assert result.direction == "forward"
    np.testing.assert_allclose(result.log_singular_values[0], 0.0, atol=1e-6)
    _check(reference, result, case_reference(name, "forward"), F32_RTOL, F32_LOG_TOL)
    # forward and backward products coincide only at the full horizon: both are dh_T/dh_0
    backward = case_reference(name, "backward")
    np.testing.assert_allclose(case_reference(name, "forward")[-1], backward[-1], rtol=0, atol=1e-12)
    assert not np.allclose(case_reference(name, "forward")[2], backward[2], atol=1e-3)


def test_untied_parameters_match_jacrev(reference):
    cell = gradscope.VanillaRNN(5, 2, "tanh")
    rng = np.random.default_rng(3)
    layers = [_random_params(cell, 1.5, (0.3, 0.0), rng) for _ in range(NUM_STEPS)]
    stacked = _to_float32(jax.tree_util.tree_map(lambda *p: np.stack(p), *layers))
    xs = _to_float32(rng.normal(size=(NUM_STEPS, 2)))
    result = gradscope.jacobian_spectra(cell, stacked, xs, untied=True)

    def step_at(all_params, h, inputs):  # the reference picks layer t itself
        x, t = inputs
        return cell.step(jax.tree_util.tree_map(lambda p: p[t], all_params), h, x)

    products = reference.products(step_at, stacked, (xs, np.arange(NUM_STEPS)), cell.initial_state(),
                                  [0, *ALL_LAGS])
    _check(reference, result, products, F32_RTOL, F32_LOG_TOL)


def test_batched_inputs_equal_per_example_calls(reference):
    target, _, params, _, h0 = make_case("lstm")
    batch = _to_float32(np.random.default_rng(9).normal(size=(2, 3, NUM_STEPS, 2)))
    result = gradscope.jacobian_spectra(target, params, batch, h0)
    assert result.log_singular_values.shape == (2, 3, NUM_STEPS, 8)
    assert result.log_frobenius.shape == (2, 3, NUM_STEPS) and result.finite.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            one = gradscope.jacobian_spectra(target, params, batch[i, j], h0)
            reference.assert_same(result.log_singular_values[i, j], one.log_singular_values)
            np.testing.assert_allclose(result.log_frobenius[i, j], one.log_frobenius, atol=1e-5)


def test_batched_pytree_inputs_of_plain_step(reference):
    _, step, params, xs, h0 = make_case("custom_pytree")
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a, -a]), xs)
    result = gradscope.jacobian_spectra(step, params, batch, h0, batch_axes=1)
    assert result.log_singular_values.shape == (3, NUM_STEPS, 7)
    for i in range(3):
        one = gradscope.jacobian_spectra(step, params, jax.tree_util.tree_map(lambda a: a[i], batch), h0)
        reference.assert_same(result.log_singular_values[i], one.log_singular_values)


def test_vmap_over_parameter_seeds_equals_separate_calls(reference):
    cases = [make_case("gru_before", seed=s) for s in range(3)]
    target, _, _, xs, h0 = cases[0]
    stacked = jax.tree_util.tree_map(lambda *p: jnp.stack(p), *[c[2] for c in cases])
    batched = jax.vmap(lambda p: gradscope.jacobian_spectra(target, p, xs, h0))(stacked)
    assert batched.log_singular_values.shape == (3, NUM_STEPS, 5)
    np.testing.assert_array_equal(batched.lags, ALL_LAGS)
    for s, case in enumerate(cases):
        one = gradscope.jacobian_spectra(target, case[2], xs, h0)
        reference.assert_same(batched.log_singular_values[s], one.log_singular_values)
        np.testing.assert_allclose(batched.log_frobenius[s], one.log_frobenius, atol=1e-5)
