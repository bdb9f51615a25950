"""Block views (e.g. the LSTM cell path dc_T/dc_{T-k}) equal the same block of jacrev's full product."""

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradscope as gs
from gradscope.analysis.spectra import block_indices

T = 8
LAGS = (1, 4, 8)
SELECTORS = {
    "c->c": (lambda s: s.c, lambda s: s.c),
    "h->c": (lambda s: s.h, lambda s: s.c),
}


@pytest.fixture(scope="module")
def lstm_run():
    cell = gs.LSTM(4, 2, forget_bias=1.0)
    params = cell.init(jax.random.key(0))
    xs = np.random.default_rng(0).normal(size=(T, 2)).astype(np.float32)
    states = [cell.initial_state()]
    for t in range(T):
        states.append(cell.step(params, states[-1], xs[t]))
    return cell, params, xs, states


def _reference_block(cell, params, xs, states, start, stop, rows, columns):
    flat, unravel = ravel_pytree(states[start])

    def unrolled(v):
        h = unravel(v)
        for t in range(start, stop):
            h = cell.step(params, h, xs[t])
        return ravel_pytree(h)[0]

    jacobian = np.asarray(jax.jacrev(unrolled)(flat), np.float64)
    return jacobian[np.ix_(rows, columns)]


@pytest.mark.parametrize("direction", ["backward", "forward"])
@pytest.mark.parametrize("name", list(SELECTORS))
def test_block_spectra_match_jacrev_block(lstm_run, direction, name):
    cell, params, xs, states = lstm_run
    select_out, select_in = SELECTORS[name]
    rows, columns = block_indices(states[0], select_out), block_indices(states[0], select_in)
    result = gs.jacobian_spectra(cell, params, xs, block=SELECTORS[name], direction=direction, lags=LAGS)
    assert result.state_size == len(columns)
    for i, k in enumerate(LAGS):
        start, stop = (T - k, T) if direction == "backward" else (0, k)
        block = _reference_block(cell, params, xs, states, start, stop, rows, columns)
        reference = np.linalg.svd(block, compute_uv=False)
        ours = np.exp(np.asarray(result.log_singular_values[i], np.float64))
        np.testing.assert_allclose(ours, reference, atol=1e-5 * reference[0])
        np.testing.assert_allclose(float(result.log_frobenius[i]), np.log(np.linalg.norm(block)), atol=1e-5)


def test_block_indices_of_lstm_state_halves():
    state = gs.LSTM(3).initial_state()
    assert block_indices(state, lambda s: s.h) == (0, 1, 2)
    assert block_indices(state, lambda s: s.c) == (3, 4, 5)


def test_bad_block_selector_is_explained():
    cell = gs.VanillaRNN(3)
    params = cell.init(jax.random.key(0))
    with pytest.raises(ValueError, match="block selector failed"):
        gs.jacobian_spectra(cell, params, np.zeros((4, 1), np.float32), block=(lambda s: s.c, lambda s: s.c))
