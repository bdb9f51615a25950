"""Flax (linen, nnx) and Equinox cells through gradscope, and the layer-normalized LSTM.

Every spectrum is checked against the float64 ``jax.jacrev`` reference of
``conftest.py`` applied to a step built *here* from the library's own call
convention (``cell.apply`` / ``nnx.merge`` / ``module(x, h)``), so the adapters'
carry handling is tested, not assumed.
"""

from __future__ import annotations

import functools
import sys

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradscope
from gradscope import cells

HIDDEN, INPUT, NUM_STEPS = 4, 3, 7
LAGS = list(range(1, NUM_STEPS + 1))
RTOL, LOG_TOL, LOG_MIN_REL = 5e-5, 0.02, 1e-3  # logs compared where sigma_i >= 1e-3 sigma_max


def _random_like(tree, seed, scale=0.5):
    """Every leaf (array or ShapeDtypeStruct) replaced by N(0, scale^2) float32 values drawn with NumPy.

    Parameters built from the libraries' abstract shapes this way exercise biases
    and gains too, and need no compiled random-number code (fast tests).
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    values = [jnp.asarray(scale * rng.normal(size=np.shape(leaf)), jnp.float32) for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, values)


def _inputs(seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(NUM_STEPS, INPUT)), jnp.float32)


def _random_carry(template, seed=2):
    return _random_like(template, seed)


def _linen_case(cls):
    cell = cls(features=HIDDEN)
    carry = jax.eval_shape(lambda k: cell.initialize_carry(k, (INPUT,)), jax.random.key(0))
    variables = _random_like(jax.eval_shape(cell.init, jax.random.key(1), carry, jnp.zeros(INPUT)), seed=3)
    own_step = lambda v, c, x: cell.apply(v, c, x)[0]  # noqa: E731 - flax: carry, y = cell(carry, x)
    return cells.from_flax(cell, variables), variables, own_step, carry


def _nnx_case(cls):
    # dtype=None: nnx.SimpleCell would otherwise compute in float32 even for the float64 reference
    abstract = nnx.eval_shape(lambda: cls(INPUT, HIDDEN, dtype=None, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    state = _random_like(state, seed=3)
    cell = nnx.merge(graphdef, state)
    own_step = lambda s, c, x: nnx.merge(graphdef, s)(c, x)[0]  # noqa: E731
    carry = jax.eval_shape(lambda: cell.initialize_carry((INPUT,), rngs=nnx.Rngs(0)))
    return cells.from_flax(cell), state, own_step, carry


def _equinox_case(cls):
    module = _random_like(eqx.filter_eval_shape(cls, INPUT, HIDDEN, key=jax.random.key(0)), seed=3)
    own_step = lambda m, c, x: m(x, c)  # noqa: E731 - equinox: hidden = cell(input, hidden)
    carry = (jnp.zeros(HIDDEN), jnp.zeros(HIDDEN)) if cls is eqx.nn.LSTMCell else jnp.zeros(HIDDEN)
    return cells.from_equinox(module), module, own_step, carry


_BUILDERS = {
    "linen.LSTMCell": lambda: _linen_case(nn.LSTMCell),
    "linen.OptimizedLSTMCell": lambda: _linen_case(nn.OptimizedLSTMCell),
    "linen.GRUCell": lambda: _linen_case(nn.GRUCell),
    "linen.SimpleCell": lambda: _linen_case(nn.SimpleCell),
    "linen.MGUCell": lambda: _linen_case(nn.MGUCell),
    "nnx.LSTMCell": lambda: _nnx_case(nnx.LSTMCell),
    "nnx.OptimizedLSTMCell": lambda: _nnx_case(nnx.OptimizedLSTMCell),
    "nnx.GRUCell": lambda: _nnx_case(nnx.GRUCell),
    "nnx.SimpleCell": lambda: _nnx_case(nnx.SimpleCell),
    "equinox.GRUCell": lambda: _equinox_case(eqx.nn.GRUCell),
    "equinox.LSTMCell": lambda: _equinox_case(eqx.nn.LSTMCell),
}
CASES = {name: functools.cache(build) for name, build in _BUILDERS.items()}  # each case is built once


@pytest.mark.parametrize("name", list(CASES))
def test_adapted_spectra_equal_jacrev_of_the_library_cell(reference, name):
    adapted, own_params, own_step, carry = CASES[name]()
    xs, h0 = _inputs(), _random_carry(carry)
    result = gradscope.jacobian_spectra(adapted, adapted.params, xs, h0)
    expected = reference.spectrum(own_step, own_params, xs, h0, LAGS)
    np.testing.assert_array_equal(result.lags, LAGS)
    reference.assert_match(result.log_singular_values, expected, RTOL, LOG_TOL, result.log_floor, LOG_MIN_REL)
    # the adapter's zero state has the library's own carry structure (c, h) / (h, c) / h
    assert jax.tree_util.tree_structure(adapted.initial_state()) == jax.tree_util.tree_structure(carry)
    assert [np.shape(a) for a in jax.tree_util.tree_leaves(adapted.initial_state())] == \
        [np.shape(a) for a in jax.tree_util.tree_leaves(carry)]
    assert adapted.input_size == INPUT and adapted.hidden_size == HIDDEN


def test_carry_names_follow_each_library():
    assert CASES["linen.LSTMCell"]()[0].carry_names == ("c", "h")
    assert CASES["nnx.OptimizedLSTMCell"]()[0].carry_names == ("c", "h")
    assert CASES["equinox.LSTMCell"]()[0].carry_names == ("h", "c")
    adapted = CASES["linen.GRUCell"]()[0]
    assert adapted.carry_names == ("h",)
    state = (jnp.arange(4.0), jnp.arange(4.0) + 10)
    assert float(CASES["linen.LSTMCell"]()[0].output(state)[0]) == 10.0  # linen: (c, h)
    assert float(CASES["equinox.LSTMCell"]()[0].output(state)[0]) == 0.0  # equinox: (h, c)


def test_linen_bare_params_and_equinox_module_as_params_step_the_same():
    x = _inputs()[0]
    adapted, variables, own_step, carry = CASES["linen.LSTMCell"]()
    h = _random_carry(carry)
    for params in (variables, variables["params"]):
        for a, b in zip(adapted.step(params, h, x), own_step(variables, h, x)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    adapted, module, own_step, carry = CASES["equinox.GRUCell"]()
    h = _random_carry(carry)
    for params in (adapted.params, module):
        np.testing.assert_array_equal(np.asarray(adapted.step(params, h, x)), np.asarray(own_step(module, h, x)))


def test_linen_without_variables_takes_them_at_analysis_time(reference):
    adapted, variables, own_step, carry = CASES["linen.GRUCell"]()
    deferred = cells.from_flax(nn.GRUCell(features=HIDDEN))  # no variables, no input size
    assert deferred.params is None and deferred.input_size is None and deferred.carry_names == ("h",)
    xs = _inputs()
    for params in (variables, variables["params"]):  # the input size comes from the variables' input kernel
        result = gradscope.jacobian_spectra(deferred, params, jnp.stack([xs, xs]))  # batch axis inferred
        expected = reference.spectrum(own_step, variables, xs, deferred.initial_state(), LAGS)
        reference.assert_match(result.log_singular_values[1], expected, RTOL, LOG_TOL, result.log_floor[1],
                               LOG_MIN_REL)
    with pytest.raises(ValueError, match="made without variables, and params=None"):
        gradscope.jacobian_spectra(deferred, deferred.params, xs)
    with pytest.raises(ValueError, match=r"expected xs with shape \(\.\.\., T, input_size\)=\(\.\.\., T, 3\)"):
        gradscope.jacobian_spectra(deferred, variables, xs[:, :2])
    with pytest.raises(ValueError, match="needs the cell's input size"):
        gradscope.compare(deferred, "orthogonal")
    with pytest.raises(ValueError, match="cannot know its parameter shapes"):
        deferred.init(jax.random.key(0))


def test_linen_with_an_input_size_initializes_its_variables():
    adapted = cells.from_flax(nn.GRUCell(features=HIDDEN), input_size=INPUT, key=jax.random.key(5))
    assert adapted.params["params"]["ir"]["kernel"].shape == (INPUT, HIDDEN)
    with pytest.raises(ValueError, match="disagrees"):
        cells.from_flax(nn.GRUCell(features=HIDDEN), adapted.params, input_size=INPUT + 1)


def test_an_nnx_module_is_accepted_as_params():
    adapted, state, _, carry = CASES["nnx.LSTMCell"]()
    xs, h0 = _inputs(), _random_carry(carry)
    module = nnx.merge(nnx.graphdef(adapted.module), state)
    by_state = gradscope.jacobian_spectra(adapted, state, xs, h0)
    by_module = gradscope.jacobian_spectra(adapted, module, xs, h0)
    np.testing.assert_array_equal(np.asarray(by_module.log_singular_values), np.asarray(by_state.log_singular_values))
    assert jax.tree_util.tree_structure(cells.from_flax(adapted.module, params=module).params) == \
        jax.tree_util.tree_structure(state)


def _is_orthogonal(block, atol=1e-5):
    return np.allclose(np.asarray(block).T @ np.asarray(block), np.eye(block.shape[1]), atol=atol)


def test_init_redraws_recurrent_kernels_per_gate_block():
    nnx_lstm = CASES["nnx.OptimizedLSTMCell"]()[0]  # one stacked (hidden, 4 * hidden) kernel
    params = nnx_lstm.init(jax.random.key(0), recurrent_init="orthogonal", bias_init="zeros")
    kernel = np.asarray(params["dense_h"]["kernel"])
    assert kernel.shape == (HIDDEN, 4 * HIDDEN)
    assert all(_is_orthogonal(kernel[:, j * HIDDEN:(j + 1) * HIDDEN]) for j in range(4))
    assert not _is_orthogonal(kernel[:, :HIDDEN] + kernel[:, HIDDEN:2 * HIDDEN])
    assert np.all(np.asarray(params["dense_h"]["bias"]) == 0)
    eqx_lstm = CASES["equinox.LSTMCell"]()[0]  # equinox stores W as (4 * hidden, hidden): x -> W x
    weight = np.asarray(eqx_lstm.init(jax.random.key(0), recurrent_init="orthogonal").weight_hh)
    assert weight.shape == (4 * HIDDEN, HIDDEN)
    assert all(_is_orthogonal(weight[j * HIDDEN:(j + 1) * HIDDEN].T) for j in range(4))
    identity = eqx_lstm.init(jax.random.key(0), recurrent_init="identity", input_init="zeros").weight_hh
    np.testing.assert_array_equal(np.asarray(identity[HIDDEN:2 * HIDDEN]), np.eye(HIDDEN))


def test_init_keeps_the_mgu_forget_bias():
    mgu = CASES["linen.MGUCell"]()[0]
    params = mgu.init(jax.random.key(0), bias_init=("constant", {"value": 0.25}))["params"]
    np.testing.assert_array_equal(np.asarray(params["if"]["bias"]), np.asarray(mgu.params["params"]["if"]["bias"]))
    np.testing.assert_array_equal(np.asarray(params["in"]["bias"]), np.full(HIDDEN, 0.25, np.float32))


def test_compare_runs_on_an_adapter():
    """compare re-initializes the library's module with gradscope initializers and analyses each."""
    adapted = CASES["equinox.GRUCell"]()[0]
    inits = ["identity", ("constant", {"value": 0.1})]
    comparison = gradscope.compare(adapted, inits, seeds=1, num_steps=5, input_init=("constant", {"value": 0.2}),
                                   progress=False)
    assert list(comparison.to_dataframe()["init"]) == ["identity", "constant(value=0.1)"]
    assert np.all(np.isfinite(np.asarray(comparison.spectra.log_singular_values)))


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax", None)
    with pytest.raises(ImportError, match=r"pip install gradscope\[flax\]"):
        cells.from_flax(object())
    monkeypatch.setitem(sys.modules, "equinox", None)
    with pytest.raises(ImportError, match=r"pip install gradscope\[equinox\]"):
        cells.from_equinox(object())


def test_wrong_objects_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="from_equinox"):
        cells.from_flax(eqx.nn.GRUCell(INPUT, HIDDEN, key=jax.random.key(0)))
    with pytest.raises(TypeError, match="eqx.nn.GRUCell"):
        cells.from_equinox(nn.GRUCell(features=HIDDEN))
    with pytest.raises(TypeError, match="carry="):
        cells.from_equinox(_CustomCell())
    custom = cells.from_equinox(_CustomCell(), carry=("h",))
    assert custom.initial_state().shape == (HIDDEN,)


class _CustomCell(eqx.Module):
    """An Equinox cell of unknown carry structure: from_equinox must ask for carry=."""

    input_size: int = INPUT
    hidden_size: int = HIDDEN

    def __call__(self, x, h):
        return jnp.tanh(h + jnp.sum(x))


# ---------------------------------------------------------------------------------------------
# Layer-normalized LSTM
# ---------------------------------------------------------------------------------------------

def _numpy_layer_norm_lstm(params, h, c, x, hidden, eps):
    """Ba et al. (2016) equations, per-gate normalization of the summed pre-activation, in NumPy float64."""
    p = [np.asarray(a, np.float64) for a in params]
    z = np.asarray(h, np.float64) @ p[0] + np.asarray(x, np.float64) @ p[1]
    gates = []
    for j in range(4):
        block = z[j * hidden:(j + 1) * hidden]
        norm = (block - block.mean()) / np.sqrt(block.var() + eps)
        gates.append(p[2][j * hidden:(j + 1) * hidden] * norm + p[3][j * hidden:(j + 1) * hidden])
    i, f, g, o = gates
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    c_new = sig(f) * np.asarray(c, np.float64) + sig(i) * np.tanh(g)
    c_hat = p[4] * (c_new - c_new.mean()) / np.sqrt(c_new.var() + eps) + p[5]
    return sig(o) * np.tanh(c_hat), c_new


def test_layer_norm_lstm_step_follows_its_equations():
    cell = cells.LayerNormLSTM(HIDDEN, INPUT, forget_bias=1.0)
    params = cell.init(jax.random.key(0), recurrent_init="identity", input_init="zeros")
    np.testing.assert_array_equal(np.asarray(params.gate_gain), np.ones(4 * HIDDEN))
    np.testing.assert_array_equal(np.asarray(params.gate_bias), np.repeat([0.0, 1.0, 0.0, 0.0], HIDDEN))
    np.testing.assert_array_equal(np.asarray(params.recurrent_kernel), np.tile(np.eye(HIDDEN), 4))
    params = _random_like(params, seed=4)
    state = _random_carry(cell.initial_state())
    x = _inputs()[0]
    h, c = cell.step(params, state, x)
    h_ref, c_ref = _numpy_layer_norm_lstm(params, state.h, state.c, x, HIDDEN, cell.epsilon)
    np.testing.assert_allclose(np.asarray(h), h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), c_ref, rtol=1e-5, atol=1e-6)


def test_layer_norm_lstm_spectra_equal_jacrev(reference):
    cell = cells.LayerNormLSTM(HIDDEN, INPUT)
    params = _random_like(jax.eval_shape(cell.init, jax.random.key(0)), seed=5)
    xs, h0 = _inputs(), _random_carry(cell.initial_state())
    result = gradscope.jacobian_spectra(cell, params, xs, h0)
    assert result.state_size == 2 * HIDDEN
    expected = reference.spectrum(cell.step, params, xs, h0, LAGS)
    reference.assert_match(result.log_singular_values, expected, RTOL, LOG_TOL, result.log_floor, LOG_MIN_REL)
