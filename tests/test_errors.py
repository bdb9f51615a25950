"""Bad inputs raise ValueError/TypeError saying what was expected and what arrived; overflow is reported.

Most checks fire before anything is compiled, so these tests are cheap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope

CELL = gradscope.VanillaRNN(4, 3)
PARAMS = gradscope.cells.VanillaParams(0.5 * jnp.eye(4), jnp.ones((3, 4)), jnp.zeros(4))
XS = jnp.ones((5, 3))


def _spectra(**overrides):
    args = dict(cell_or_step=CELL, params=PARAMS, xs=XS)
    args.update(overrides)
    return gradscope.jacobian_spectra(args.pop("cell_or_step"), args.pop("params"), args.pop("xs"), **args)


def _plain_step(params, h, x):
    return jnp.tanh(h @ params + x)


# ---------------------------------------------------------------- shapes and sizes


@pytest.mark.parametrize("shape", [(5, 2), (5,), (3, 5, 1)])
def test_wrong_xs_shape_or_rank(shape):
    with pytest.raises(ValueError, match=rf"expected xs with shape \(\.\.\., T, input_size\)=\(\.\.\., T, 3\), "
                                         rf"got \({', '.join(map(str, shape))},?\)"):
        _spectra(xs=jnp.ones(shape))


def test_zero_time_steps():
    with pytest.raises(ValueError, match=r"xs has T = 0 time steps; at least 1 is needed"):
        _spectra(xs=jnp.ones((0, 3)))


def test_plain_step_xs_leaves_disagree_on_time_axis():
    with pytest.raises(ValueError, match=r"every leaf of xs needs the same time axis \(axis 0\); "
                                         r"got shapes \[\(5, 4\), \(6, 4\)\]"):
        gradscope.jacobian_spectra(lambda p, h, x: h, None, (jnp.ones((5, 4)), jnp.ones((6, 4))), jnp.zeros(4))


@pytest.mark.parametrize("make, message", [
    (lambda: gradscope.VanillaRNN(4, activation="tanhh"), r"unknown activation 'tanhh'; expected a callable or one "
                                                          r"of: .*relu, sigmoid, softplus, swish, tanh"),
    (lambda: gradscope.VanillaRNN(0), r"VanillaRNN.hidden_size must be a positive int, got 0"),
    (lambda: gradscope.LSTM(4, input_size=2.5), r"LSTM.input_size must be a positive int, got 2.5"),
    (lambda: gradscope.GRU(4, reset="middle"), r"GRU reset must be 'after' \(cuDNN/PyTorch/Flax\) or 'before' "
                                               r"\(Cho et al. 2014\), got 'middle'"),
])
def test_bad_cell_configuration(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_initializer_in_cell_init():
    with pytest.raises(ValueError, match=r"unknown initializer 'glorot'; valid names are: .*glorot_normal"):
        CELL.init(jax.random.key(0), recurrent_init="glorot")
    with pytest.raises(ValueError, match=r"bias initializer 'identity' cannot make a vector of shape \(4,\)"):
        CELL.init(jax.random.key(0), recurrent_init="zeros", input_init="zeros", bias_init="identity")


# ---------------------------------------------------------------- values and dtypes


def test_non_finite_params():
    bad = PARAMS._replace(bias=PARAMS.bias.at[1].set(jnp.nan))
    with pytest.raises(ValueError, match=r"params must be finite, but params.bias has 1 of 4 entries inf/NaN"):
        _spectra(params=bad)


def test_non_finite_inputs():
    with pytest.raises(ValueError, match=r"xs must be finite, but xs has 2 of 15 entries inf/NaN"):
        _spectra(xs=XS.at[0, 0].set(jnp.inf).at[4, 2].set(jnp.nan))
    with pytest.raises(ValueError, match=r"h0 must be finite, but h0\[1\] has 1 of 2 entries"):
        gradscope.jacobian_spectra(lambda p, h, x: h, None, jnp.ones((3, 1)), (jnp.zeros(2), jnp.array([0.0, np.inf])))


def test_float64_without_x64_mode():
    assert not jax.config.jax_enable_x64  # the suite never flips x64 globally
    with pytest.raises(TypeError, match=r"dtype float64 needs JAX's 64-bit mode, which is off; call "
                                        r"jax.config.update\('jax_enable_x64', True\)"):
        _spectra(dtype="float64")


@pytest.mark.parametrize("dtype, shown", [("int32", "int32"), ("float16", "float16"), ("banana", "'banana'")])
def test_unsupported_dtype(dtype, shown):
    with pytest.raises(TypeError, match=rf"expected dtype 'float32' or 'float64', got {shown}"):
        _spectra(dtype=dtype)


# ---------------------------------------------------------------- plain steps


def test_plain_step_needs_h0():
    with pytest.raises(ValueError, match=r"a plain step function needs h0 \(the initial state pytree\); pass h0="):
        gradscope.jacobian_spectra(_plain_step, jnp.eye(4), jnp.ones((5, 4)))


def test_not_a_cell_nor_a_callable():
    with pytest.raises(TypeError, match=r"expected a gradscope cell \(with .step and .initial_state\) or a callable "
                                        r"step\(params, h, x\) -> h_next, got int"):
        gradscope.jacobian_spectra(3, None, jnp.ones((5, 4)), jnp.zeros(4))


def test_step_returning_the_wrong_structure():
    def splits(params, h, x):
        return h, h

    with pytest.raises(ValueError, match=r"step must return a state shaped like h0 \(PyTreeDef\(\*\)\), "
                                         r"got PyTreeDef\(\(\*, \*\)\)"):
        gradscope.jacobian_spectra(splits, None, jnp.ones((5, 4)), jnp.zeros(4))


def test_step_returning_the_wrong_shape():
    with pytest.raises(ValueError, match=r"step must keep the state's shapes: h0 leaf \(4,\) came back as \(2,\)"):
        gradscope.jacobian_spectra(lambda p, h, x: h[:2], None, jnp.ones((5, 4)), jnp.zeros(4))


def test_step_that_fails_on_the_inputs():
    with pytest.raises(ValueError, match=r"calling step\(params, h0, xs\[0\]\) failed: TypeError: .*dot_general"):
        gradscope.jacobian_spectra(_plain_step, jnp.eye(3), jnp.ones((5, 4)), jnp.zeros(4))


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("lags, message", [
    ([1, 6, 9], r"lags must lie in \[0, T\] = \[0, 5\] for xs with T = 5 steps, got \[6, 9\]"),
    ([-1, 2], r"lags must lie in \[0, T\] = \[0, 5\] .* got \[-1\]"),
    ([], r"expected at least one lag, got an empty sequence"),
    ([2, 1.5], r"lags must be whole numbers, got \[2.0, 1.5\]"),
    ("every", r"lags must be 'all', 'log' or a sequence of ints, got 'every'"),
])
def test_bad_lags(lags, message):
    with pytest.raises(ValueError, match=message):
        _spectra(lags=lags)


def test_bad_num_log_lags():
    with pytest.raises(ValueError, match=r"num_log_lags must be >= 1, got 0"):
        _spectra(lags="log", num_log_lags=0)


def test_bad_direction():
    with pytest.raises(ValueError, match=r"direction must be 'backward' \(dh_T/dh_\(T-k\)\) or 'forward' "
                                         r"\(dh_k/dh_0\), got 'sideways'"):
        _spectra(direction="sideways")


def test_untied_params_need_a_time_axis():
    with pytest.raises(ValueError, match=r"untied=True needs every parameter with a leading time axis of length "
                                         r"T=5; got a leaf of shape \(4, 4\)"):
        _spectra(untied=True)


# ---------------------------------------------------------------- overflow


def _exploding_relu(num_steps=30):
    """h_t = relu(100 h_{t-1} + 1 + ...) from positive inputs: the states pass 3e38 near t = 19."""
    cell = gradscope.VanillaRNN(4, 1, "relu")
    params = cell.init(jax.random.key(0), recurrent_init=("identity", {"gain": 100.0}),
                       input_init=("constant", {"value": 1.0}))
    return cell, params, jnp.ones((num_steps, 1))


def test_overflow_raises_instead_of_returning_inf():
    cell, params, xs = _exploding_relu()
    with pytest.raises(gradscope.NumericalOverflowError, match=r"became inf/NaN, even in log domain"):
        gradscope.jacobian_spectra(cell, params, xs)
    # the same cell over fewer steps is fine: log-domain products never overflow by themselves
    result = gradscope.jacobian_spectra(cell, params, xs[:10])
    np.testing.assert_allclose(result.log_singular_values[:, 0], result.lags * np.log(100.0), rtol=1e-4)


def test_compare_reports_overflow_as_non_finite():
    cell = gradscope.VanillaRNN(4, 1, "relu")
    with pytest.warns(RuntimeWarning, match=r"overflowed to inf/NaN for 2 configuration\(s\) \(identity\(gain=100.0\) "
                                            r"seed 0, identity\(gain=100.0\) seed 1\); their verdict is 'non-finite'"):
        comparison = gradscope.compare(cell, [("identity", {"gain": 100.0}), ("identity", {"gain": 0.5})], seeds=2,
                                       num_steps=30, inputs=np.ones((30, 1)), input_init=("constant", {"value": 1.0}))
    table = comparison.to_dataframe()
    assert table["verdict"].tolist() == ["non-finite", "vanishing"]
    assert comparison.to_dataframe(per_seed=True)["verdict"].tolist() == ["non-finite"] * 2 + ["vanishing"] * 2


# ---------------------------------------------------------------- compare arguments


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(initializers=[]), ValueError, r"expected at least one initializer to compare, got none"),
    (dict(initializers=["orthogonal", "orthogonal"]), ValueError, r"initializer labels must be distinct, "
                                                                  r"got \['orthogonal', 'orthogonal'\]"),
    (dict(seeds=0), ValueError, r"expected at least one seed, got none"),
    (dict(num_steps=0), ValueError, r"num_steps must be a positive int, got 0"),
    (dict(inputs="uniform"), ValueError, r"inputs must be 'zeros', 'gaussian' or an array, got 'uniform'"),
    (dict(inputs=np.ones((7, 3))), ValueError, r"expected inputs of shape \(T, input_size\)=\(5, 3\) or "
                                               r"\(seeds, T, input_size\)=\(2, 5, 3\), got \(7, 3\)"),
    (dict(inputs=np.full((5, 3), np.nan)), ValueError, r"inputs must be finite"),
    (dict(dtype="float64"), TypeError, r"jax_enable_x64"),
])
def test_bad_compare_arguments(kwargs, error, message):
    options = dict(initializers=["orthogonal"], seeds=2, num_steps=5)
    options.update(kwargs)
    with pytest.raises(error, match=message):
        gradscope.compare(CELL, **options)


def test_compare_needs_a_cell():
    with pytest.raises(TypeError, match=r"compare needs a cell with .init \(such as gradscope.VanillaRNN\); "
                                        r"got function. For a plain step function use jacobian_spectra"):
        gradscope.compare(_plain_step)
