"""What other frameworks do when they initialize recurrent kernels, checked against the frameworks themselves.

docs/claims.md (claims 5 and 6) and gradscope.initializers say what PyTorch, Flax, Keras
and JAX do; each statement is one test here, so the pages cannot drift from the libraries.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope import initializers

torch = pytest.importorskip("torch")

N = 64


def _block_singular_values(kernel: np.ndarray, blocks: int, axis: int) -> np.ndarray:
    return np.stack([np.linalg.svd(b, compute_uv=False) for b in np.split(kernel, blocks, axis=axis)])


def test_torch_lstm_draws_every_weight_from_one_uniform():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, N)
    bound = 1 / math.sqrt(N)
    for name, p in lstm.named_parameters():
        values = p.detach().numpy().ravel()
        assert np.abs(values).max() <= bound, name
        assert abs(values.std() - bound / math.sqrt(3)) < 0.05 * bound, name   # U(-a, a) has std a / sqrt 3


def test_torch_orthogonal_on_weight_hh_makes_the_stack_not_each_gate_orthogonal():
    torch.manual_seed(0)
    weight = torch.empty(4 * N, N)
    torch.nn.init.orthogonal_(weight)
    w = weight.numpy().astype(np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(N), atol=1e-5)          # the (4n, n) stack has orthonormal columns
    blocks = _block_singular_values(w, 4, axis=0)
    assert blocks.max() < 0.95 and blocks.min() < 0.05                  # no gate block is orthogonal
    shares = (blocks**2).mean(axis=1)                                   # the four blocks share one unit budget:
    np.testing.assert_allclose(shares.sum(), 1.0, rtol=1e-5)            # sum_b B_b^T B_b = I
    np.testing.assert_allclose(shares, 0.25, atol=0.03)


def test_torch_xavier_normal_uses_the_stacked_fans():
    torch.manual_seed(0)
    weight = torch.empty(4 * N, N)
    torch.nn.init.xavier_normal_(weight)
    stacked, per_gate = math.sqrt(2 / (N + 4 * N)), math.sqrt(2 / (N + N))
    assert abs(weight.std().item() - stacked) < 0.02 * stacked and abs(stacked / per_gate - math.sqrt(2 / 5)) < 1e-12


def test_truncated_normals_cut_in_different_units():
    factor = 1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(math.sqrt(2))  # N(0,1) cut at +-2: 0.7737
    import inspect
    signature = inspect.signature(torch.nn.init.trunc_normal_)
    assert (signature.parameters["a"].default, signature.parameters["b"].default) == (-2.0, 2.0)
    torch.manual_seed(0)
    for std, ratio in ((0.1, 1.0), (1.0, factor)):   # torch cuts at absolute +-2: 20 std at std 0.1, 2 std at std 1
        sample = torch.nn.init.trunc_normal_(torch.empty(400_000), std=std).numpy()
        assert abs(sample.var() / std**2 - ratio) < 0.01, std
        assert np.abs(sample).max() <= 2.0
    # JAX (gradscope's truncated_normal, and Keras/TF alike) cuts at +-2 standard deviations whatever the std
    for std in (0.1, 1.0):
        sample = np.asarray(initializers.truncated_normal(std)(jax.random.key(0), (400_000,), jnp.float32))
        assert abs(sample.var() / std**2 - factor) < 0.01 and np.abs(sample).max() <= 2 * std * (1 + 1e-6)


def test_flax_lstm_cell_initializes_each_gate_on_its_own():
    nn = pytest.importorskip("flax.linen")
    cell = nn.LSTMCell(N)
    carry = cell.initialize_carry(jax.random.key(0), (3,))
    params = cell.init(jax.random.key(1), carry, jnp.ones(3))["params"]
    for gate in ("hi", "hf", "hg", "ho"):           # one Dense layer per gate, each with the orthogonal default
        kernel = np.asarray(params[gate]["kernel"], np.float64)
        np.testing.assert_allclose(kernel.T @ kernel, np.eye(N), atol=1e-5)


def test_keras_lstm_default_orthogonal_acts_on_the_whole_stack(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    layer = keras.layers.LSTM(N)
    layer.build((None, 5, 3))
    kernel = np.asarray(layer.cell.recurrent_kernel, np.float64)   # (n, 4n), Keras default recurrent init "orthogonal"
    assert kernel.shape == (N, 4 * N)
    np.testing.assert_allclose(kernel @ kernel.T, np.eye(N), atol=1e-5)
    assert _block_singular_values(kernel, 4, axis=1).max() < 0.95
