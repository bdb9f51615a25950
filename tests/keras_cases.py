"""Keras layers through gradscope, checked against Keras itself under one backend.

Keras fixes its backend when first imported, so ``tests/test_keras_adapter.py`` runs
this file once per backend in a fresh interpreter (``KERAS_BACKEND=jax`` and ``torch``);
it is not collected by the main test run (its name does not start with ``test_``).

* Outputs: stepping the adapter gives the layer's own outputs and final state.
* Spectra (jax backend): gradscope's singular values of ``dh_T/dh_{T-k}`` equal those of
  ``jax.jacrev`` of the Keras layer's own call from a given state over the last k inputs.
* Activations: every activation the adapter knows equals Keras's function of that name.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

BACKEND = os.environ.get("KERAS_BACKEND")
if BACKEND not in ("jax", "torch"):
    pytest.skip("run by test_keras_adapter.py with KERAS_BACKEND=jax or torch", allow_module_level=True)
keras = pytest.importorskip("keras")

import gradscope  # noqa: E402 - after the backend check
from gradscope.cells import from_keras  # noqa: E402
from gradscope.cells.adapters.keras import ACTIVATIONS  # noqa: E402

INPUT, UNITS, NUM_STEPS, BATCH = 3, 4, 8, 2

CASES = {
    "simplernn": (keras.layers.SimpleRNN, dict()),
    "simplernn_relu_nobias": (keras.layers.SimpleRNN, dict(activation="relu", use_bias=False)),
    "lstm": (keras.layers.LSTM, dict()),
    "lstm_hard_sigmoid_backwards": (keras.layers.LSTM, dict(recurrent_activation="hard_sigmoid", go_backwards=True)),
    "gru_reset_after": (keras.layers.GRU, dict()),
    "gru_reset_before_relu": (keras.layers.GRU, dict(reset_after=False, activation="relu")),
    "gru_nobias_softsign": (keras.layers.GRU, dict(use_bias=False, activation="softsign")),
}
# Layers that Keras itself computes in float64 when their dtype is float64 (under the torch backend it
# hands these to PyTorch's fused LSTM/GRU). The others go through keras.ops.matmul, whose type promotion
# turns float64 into float32 on every backend but TensorFlow (see test_keras_matmul_of_float64_is_float32).
FUSED = ("lstm", "gru_reset_after")


def _layer(name, dtype="float32", seed=0, scale=0.6):
    """The case's built layer (states returned), weights moved to N(0, scale^2)."""
    cls, options = CASES[name]
    layer = cls(UNITS, return_sequences=True, return_state=True, dtype=dtype, **options)
    layer.build((None, None, INPUT))
    rng = np.random.default_rng(seed)
    layer.set_weights([scale * rng.normal(size=w.shape) for w in layer.get_weights()])
    return layer


def _sequence(dtype="float32", seed=1, batch=BATCH):
    return np.random.default_rng(seed).normal(size=(batch, NUM_STEPS, INPUT)).astype(dtype)


def _numpy(tensors):
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in tensors]


def _step_through(adapted, xs):
    """Top outputs and final state of the adapter over ``xs`` (``(B, T, F)``, its order), in a plain loop."""
    state = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, xs.shape[:1] + a.shape),
                                   adapted.initial_state(xs.dtype))
    outputs = []
    for t in range(xs.shape[1]):
        state = adapted.step(adapted.params, state, xs[:, t])
        outputs.append(adapted.output(state))
    return np.asarray(jnp.stack(outputs, 1)), [np.asarray(a) for a in jax.tree_util.tree_leaves(state)]


DTYPES = ["float32"] + (["float64"] if BACKEND == "torch" else [])  # float64 Keras RNNs fail under jax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_stepping_the_adapter_gives_the_layer_forward_pass(name, dtype):
    with jax.enable_x64(dtype == "float64"):
        layer, x = _layer(name, dtype), _sequence(dtype)
        sequence, *final = _numpy(layer(x))
        adapted = from_keras(layer)
        outputs, state = _step_through(adapted, adapted.inputs(x))
        assert outputs.dtype == np.dtype(dtype) and adapted.params["kernel"].dtype == np.dtype(dtype)
        tolerance = 1e-5 if dtype == "float32" else (1e-12 if name in FUSED else 2e-6)
        np.testing.assert_allclose(outputs, sequence, rtol=0, atol=tolerance)
        for ours, theirs in zip(state, final):  # Keras returns [h] or [h, c], the adapter's order
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance)


def test_a_cell_adapts_like_its_layer():
    cell = keras.layers.GRUCell(UNITS, reset_after=False)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = _sequence()
    sequence = _numpy([layer(x)])[0]
    outputs, _ = _step_through(from_keras(cell), x)
    np.testing.assert_allclose(outputs, sequence, rtol=0, atol=1e-5)


def test_every_known_activation_is_keras_own():
    grid = np.concatenate([np.linspace(-8, 8, 161), [-3.0, 3.0, 0.0, -1e-3, 1e-3]]).astype(np.float32)
    for name, ours in ACTIVATIONS.items():
        theirs = _numpy([keras.activations.get(name)(keras.ops.convert_to_tensor(grid))])[0]
        np.testing.assert_allclose(np.asarray(ours(jnp.asarray(grid))), theirs, rtol=2e-6, atol=1e-6, err_msg=name)


@pytest.mark.skipif(BACKEND != "torch", reason="a fact about Keras's torch backend")
def test_keras_matmul_of_float64_is_float32():
    """The Keras type promotion the docs mention: float64 matmuls come back float32 under the torch backend."""
    with jax.enable_x64(True):
        a = keras.ops.convert_to_tensor(np.ones((2, 2)), dtype="float64")
        assert keras.backend.standardize_dtype(a.dtype) == "float64"
        assert keras.backend.standardize_dtype(keras.ops.matmul(a, a).dtype) == "float32"


def _keras_products(cell, xs, num_states):
    """dh_T/dh_{T-k} for k = 1..T by ``jax.jacrev`` of the Keras cell's own call, unrolled.

    ``xs`` is ``(T, F)`` in the order the layer reads it; the state starts at zero. For
    lag k the map runs the cell from the state at T-k over the last k inputs (a scan over
    all T steps in which only those act, so one compiled program serves every lag).
    """

    def step(state, x):
        return cell(x[None], [s[None] for s in state])[1]  # Keras: output, new_states = cell(x, states)

    def flat(state):
        return jnp.concatenate([jnp.ravel(s) for s in state])

    def unflat(v):
        return [s for s in jnp.split(v, num_states)]

    def products(xs):
        v0 = jnp.zeros(num_states * UNITS, xs.dtype)
        advance = lambda v, x: (flat(step(unflat(v), x)),) * 2  # noqa: E731
        states = jnp.concatenate([v0[None], jax.lax.scan(advance, v0, xs)[1]])

        def one(k):
            def window(v):
                body = lambda v, tx: (jnp.where(tx[0] >= NUM_STEPS - k, advance(v, tx[1])[0], v), None)  # noqa: E731
                return jax.lax.scan(body, v, (jnp.arange(NUM_STEPS), xs))[0]
            return jax.jacrev(window)(states[NUM_STEPS - k])

        return jax.vmap(one)(jnp.arange(1, NUM_STEPS + 1))

    return np.asarray(jax.jit(products)(xs), np.float64)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jacrev differentiates the Keras layer under the jax backend")
@pytest.mark.parametrize("name", ["simplernn", "lstm_hard_sigmoid_backwards", "gru_reset_after",
                                  "gru_reset_before_relu"])
def test_spectra_equal_jacrev_of_the_keras_cell(name):
    layer, x = _layer(name, scale=0.8), _sequence(seed=4, batch=1)
    adapted = from_keras(layer)
    ordered = adapted.inputs(x)[0]  # (T, F) in the order the layer reads it
    result = gradscope.jacobian_spectra(adapted, adapted.params, ordered)
    products = _keras_products(layer.cell, ordered, 2 if adapted.kind == "LSTM" else 1)
    reference = np.stack([np.linalg.svd(p, compute_uv=False) for p in products])
    ours = np.exp(np.asarray(result.log_singular_values, np.float64))
    error = np.max(np.abs(ours - reference) / reference[:, :1])
    assert error < 5e-5, f"max |sigma - sigma_keras| / sigma_max = {error:.3g}"


def test_params_of_rereads_and_init_redraws_per_gate_block():
    layer = _layer("lstm")
    adapted = from_keras(layer)
    layer.set_weights([2.0 * w for w in layer.get_weights()])
    np.testing.assert_allclose(np.asarray(adapted.params_of()["kernel"]), 2.0 * np.asarray(adapted.params["kernel"]))
    with pytest.raises(ValueError, match="architecture"):
        adapted.params_of(_layer("gru_reset_after"))
    assert from_keras(_layer("lstm", seed=3)) == adapted  # one architecture: one compiled analysis
    params = adapted.init(jax.random.key(0), recurrent_init="orthogonal")
    kernel = np.asarray(params["recurrent_kernel"])  # (units, 4 units), Keras's x @ K layout
    for j in range(4):
        block = kernel[:, j * UNITS:(j + 1) * UNITS]
        np.testing.assert_allclose(block.T @ block, np.eye(UNITS), atol=1e-5)


def test_wrong_layers_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="not built"):
        from_keras(keras.layers.GRU(UNITS))
    with pytest.raises(TypeError, match="forward_layer"):
        from_keras(keras.layers.Bidirectional(keras.layers.LSTM(UNITS)))
    model = keras.Sequential([keras.layers.Input((None, INPUT)), keras.layers.LSTM(UNITS, name="encoder"),
                              keras.layers.Dense(1)])
    with pytest.raises(TypeError, match="contains encoder"):
        from_keras(model)
    layer = keras.layers.SimpleRNN(UNITS, activation=lambda a: a * 2)
    layer.build((None, None, INPUT))
    with pytest.raises(ValueError, match="not one of the Keras activations"):
        from_keras(layer)
    with pytest.raises(ValueError, match="3 features on the last axis"):
        from_keras(_layer("lstm")).inputs(np.zeros((NUM_STEPS, INPUT + 1)))


def test_keras_facts_the_docs_state():
    """recurrent_activation defaults to sigmoid; a reset_after GRU has a (2, 3 units) bias."""
    assert keras.layers.LSTM(UNITS).cell.recurrent_activation is keras.activations.sigmoid
    assert keras.layers.GRU(UNITS).cell.recurrent_activation is keras.activations.sigmoid
    assert tuple(_layer("gru_reset_after").cell.bias.shape) == (2, 3 * UNITS)
    assert tuple(_layer("gru_reset_before_relu").cell.bias.shape) == (3 * UNITS,)
