"""Initializers: variances against the formulas (within sampling error), supports, orthogonality.

A (fan_in, fan_out) = (1000, 500) matrix has N = 500,000 iid entries; the sample second
moment m2 = mean(x^2) estimates Var(x) (the mean is 0) with standard error
sqrt(Var(x^2) / N), which is estimated from the same sample. Every check allows 5
standard errors: a false failure has probability ~1e-6 per check.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope import initializers

FAN_IN, FAN_OUT = 1000, 500
Z = 5.0  # standard errors allowed


def _truncated_normal_variance(cut=2.0):
    """Variance of N(0, 1) conditioned on |x| < cut: 1 - 2 cut phi(cut) / (Phi(cut) - Phi(-cut))."""
    phi = math.exp(-cut**2 / 2) / math.sqrt(2 * math.pi)
    return 1.0 - 2 * cut * phi / math.erf(cut / math.sqrt(2))


# (name, options, variance, uniform half-width or None)
VARIANCE_CASES = [
    ("glorot_normal", {}, 2 / (FAN_IN + FAN_OUT), None),
    ("glorot_uniform", {}, 2 / (FAN_IN + FAN_OUT), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("he_normal", {}, 2 / FAN_IN, None),  # std sqrt(2/fan_in), not 2/fan_in
    ("he_uniform", {}, 2 / FAN_IN, math.sqrt(6 / FAN_IN)),
    ("lecun_normal", {}, 1 / FAN_IN, None),
    ("lecun_uniform", {}, 1 / FAN_IN, math.sqrt(3 / FAN_IN)),
    ("he_normal", {"gain": 0.5}, 0.25 * 2 / FAN_IN, None),
    ("glorot_uniform", {"gain": 2.0}, 4 * 2 / (FAN_IN + FAN_OUT), 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("lecun_normal", {"gain": 1.5, "distribution": "truncated_normal"}, 2.25 / FAN_IN, None),  # corrected
    ("normal", {"stddev": 0.3}, 0.09, None),
    ("uniform", {"scale": 0.7}, 0.49 / 3, 0.7),
    ("truncated_normal", {"stddev": 0.5}, 0.25 * _truncated_normal_variance(), None),  # not corrected
]


def _sample(name, options, shape=(FAN_IN, FAN_OUT), key=0):
    init = initializers.get(name, **options)
    return np.asarray(init(jax.random.key(key), shape, jnp.float32), np.float64)


@pytest.mark.parametrize("name, options, variance, half_width", VARIANCE_CASES,
                         ids=[f"{c[0]}{c[1] or ''}" for c in VARIANCE_CASES])
def test_variance_matches_formula(name, options, variance, half_width):
    x = _sample(name, options).ravel()
    n = x.size
    second_moment = np.mean(x**2)
    standard_error = np.std(x**2) / math.sqrt(n)
    assert abs(second_moment - variance) <= Z * standard_error, (second_moment, variance, standard_error)
    assert abs(np.mean(x)) <= Z * math.sqrt(variance / n)  # centred
    if half_width is not None:  # U(-a, a): inside the support and filling it, symmetrically
        assert np.max(np.abs(x)) <= half_width * (1 + 1e-6)
        assert np.min(x) < -0.999 * half_width and np.max(x) > 0.999 * half_width


def test_truncated_normal_support():
    x = _sample("truncated_normal", {"stddev": 0.5})
    assert np.max(np.abs(x)) <= 1.0 + 1e-6 and np.max(np.abs(x)) > 0.99


@pytest.mark.parametrize("shape", [(16, 16), (48, 16), (16, 48)])  # shapes shared with the gate tests
@pytest.mark.parametrize("gain", [1.0, 1.3])
def test_orthogonal_to_float_tolerance(shape, gain):
    w = _sample("orthogonal", {"gain": gain}, shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T  # orthonormal columns (tall) or rows (wide)
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(shape)), rtol=0, atol=1e-5 * gain**2)


def test_orthogonal_is_haar_distributed():
    # Haar measure: E[trace Q] = 0 and Var[trace Q] = 1. A QR without the sign correction
    # gives a strongly biased trace.
    traces = np.array([np.trace(_sample("orthogonal", {}, (16, 16), key=k)) for k in range(300)])
    assert abs(np.mean(traces)) < Z / math.sqrt(traces.size)
    assert 0.6 < np.var(traces) < 1.4


def _blocks(kernel, num_blocks):
    return np.split(np.asarray(kernel, np.float64), num_blocks, axis=-1)


@pytest.mark.parametrize("cell, num_blocks", [(gradscope.LSTM(16, 3), 4), (gradscope.GRU(16, 3), 3)])
def test_gate_stacked_recurrent_kernels_are_orthogonal_per_gate(cell, num_blocks):
    kernel = cell.init(jax.random.key(2), recurrent_init="orthogonal", input_init="zeros").recurrent_kernel
    assert kernel.shape == (16, 16 * num_blocks)
    for block in _blocks(kernel, num_blocks):
        np.testing.assert_allclose(block.T @ block, np.eye(16), rtol=0, atol=1e-5)
    # one orthogonal draw of the whole stack has orthonormal *rows*: the blocks share the unit norm,
    # sum_j ||B_j||_F^2 = 16, so each block is far from orthogonal (singular values near 1/sqrt(blocks)).
    stack = initializers.get("orthogonal")(jax.random.key(2), kernel.shape, jnp.float32)
    blocks = _blocks(stack, num_blocks)
    np.testing.assert_allclose(sum(np.sum(b**2) for b in blocks), 16.0, rtol=1e-5)
    for block in blocks:
        assert np.max(np.abs(block.T @ block - np.eye(16))) > 0.3
        assert np.max(np.linalg.svd(block, compute_uv=False)) < 0.99


@pytest.mark.parametrize("alias, name", [("xavier_normal", "glorot_normal"), ("xavier_uniform", "glorot_uniform"),
                                         ("kaiming_normal", "he_normal"), ("kaiming_uniform", "he_uniform")])
def test_aliases_give_identical_arrays(alias, name):
    np.testing.assert_array_equal(_sample(alias, {"gain": 1.2}), _sample(name, {"gain": 1.2}))
    assert alias in initializers.available() and name in initializers.available()


def test_identity_zeros_constant():
    np.testing.assert_array_equal(_sample("identity", {"gain": 0.5}, (5, 5)), 0.5 * np.eye(5))
    np.testing.assert_array_equal(_sample("identity", {}, (3, 5)), np.eye(3, 5))
    np.testing.assert_array_equal(_sample("zeros", {}, (3, 4)), 0.0)
    np.testing.assert_array_equal(_sample("constant", {"value": 0.25}, (6,)), 0.25)
    with pytest.raises(ValueError, match=r"identity initializer expects a 2-D shape \(fan_in, fan_out\), got \(4,\)"):
        initializers.get("identity")(jax.random.key(0), (4,), jnp.float32)


def test_available_names_cover_the_design():
    required = {"glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "orthogonal",
                "identity", "normal", "uniform", "zeros", "xavier_normal", "xavier_uniform", "kaiming_normal",
                "kaiming_uniform"}
    assert required <= set(initializers.available())


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown initializer 'glorot'; valid names are: ") as info:
        initializers.get("glorot")
    for name in initializers.available():
        assert name in str(info.value)


def test_bad_option_and_bad_spec_raise_type_errors():
    with pytest.raises(TypeError, match=r"initializer 'orthogonal' takes gain; got unexpected option\(s\) stddev"):
        initializers.get("orthogonal", stddev=1.0)
    with pytest.raises(TypeError, match=r"initializer 'zeros' takes no options; got unexpected option\(s\) gain"):
        initializers.get("zeros", gain=2.0)
    with pytest.raises(TypeError, match=r"expected an initializer name \(str\), got int: 3"):
        initializers.get(3)
    with pytest.raises(TypeError, match=r"expected an initializer name, a \(name, options\) pair or a callable"):
        initializers.resolve(("orthogonal", 1.1))


def test_resolve_accepts_names_pairs_and_callables():
    key, shape = jax.random.key(4), (FAN_IN, FAN_OUT)
    from_pair = initializers.resolve(("he_normal", {"gain": 0.7}))(key, shape, jnp.float32)
    np.testing.assert_array_equal(from_pair, initializers.get("he_normal", gain=0.7)(key, shape, jnp.float32))
    custom = lambda key, shape, dtype=jnp.float32: jnp.full(shape, 2.0, dtype)  # noqa: E731
    assert initializers.resolve(custom) is custom


def test_per_block_needs_a_divisible_last_axis():
    with pytest.raises(ValueError, match=r"expected a last axis divisible by 4 gate blocks, got shape \(8, 10\)"):
        initializers.per_block(initializers.get("orthogonal"), 4)(jax.random.key(0), (8, 10), jnp.float32)
