"""gradscope.diagnose on whole Flax nnx, Flax linen and Equinox models with two stacked recurrent layers.

The stack's spectra are checked against the float64 ``jax.jacrev`` reference of
``conftest.py`` applied to a stacked step written *here* from each library's own call
convention; each layer's spectra against ``jacobian_spectra`` on that cell with the
inputs it sees, computed here by the library's own layers (``nnx.RNN``, ``nn.RNN``,
a scan of the Equinox cell).
"""

from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradscope
from gradscope.cells.adapters.discovery import discover

INPUT, LOWER, UPPER, NUM_STEPS, SEQUENCES = 3, 4, 3, 6, 2
LAGS = list(range(1, NUM_STEPS + 1))
RTOL, LOG_TOL, LOG_MIN_REL = 5e-5, 0.02, 1e-3


def _inputs(shape=(SEQUENCES, NUM_STEPS, INPUT), seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _zeros(*sizes):
    return tuple(jnp.zeros(size) for size in sizes)


def _check_stack(reference, diagnosis, own_step, params, h0, xs):
    """The stack's spectra (of the last sequence) equal jacrev of the library's own stacked step."""
    expected = reference.spectrum(own_step, params, xs[-1], h0, LAGS)
    reference.assert_match(diagnosis.stack.log_singular_values[-1], expected, RTOL, LOG_TOL,
                           diagnosis.stack.log_floor[-1], LOG_MIN_REL)


def _check_layer(reference, layer, own_cell, params, inputs, h0):
    """A layer's spectra equal jacobian_spectra on the cell, with the library's own parameters of that
    cell and the inputs it sees computed here (every sequence).

    The analysis runs on ``layer.cell``, the adapter diagnose made (so the compilation is shared);
    ``own_cell`` is the library's cell, whose adapter must be of the same kind.
    """
    assert type(layer.cell.module) is type(own_cell)
    np.testing.assert_allclose(np.asarray(layer.inputs), np.asarray(inputs), rtol=1e-6, atol=1e-6)
    direct = gradscope.jacobian_spectra(layer.cell, params, inputs, h0)
    reference.assert_same(layer.spectra.log_singular_values, direct.log_singular_values)


# ------------------------------------------------------------------------------------------------
# Flax nnx: two nnx.RNN layers
# ------------------------------------------------------------------------------------------------

class NNXModel(nnx.Module):
    def __init__(self, rngs, between=False):
        self.lower = nnx.RNN(nnx.LSTMCell(INPUT, LOWER, rngs=rngs))
        self.middle = nnx.Linear(LOWER, LOWER, rngs=rngs) if between else None
        self.spare = nnx.GRUCell(LOWER, UPPER, rngs=rngs) if between else None  # never called
        self.upper = nnx.RNN(nnx.GRUCell(LOWER, UPPER, rngs=rngs))
        self.head = nnx.Linear(UPPER, 1, rngs=rngs)

    def __call__(self, xs):
        ys = self.lower(xs)
        return self.head(self.upper(ys if self.middle is None else self.middle(ys)))


def nnx_stacked_step(model):
    """``(step, params)``: the model's two cells in turn (nnx: carry, y = cell(carry, x)) on its Param state."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # rest: the RNN layers' random-key streams

    def step(params, h, x):
        model = nnx.merge(graphdef, params, rest)
        lower, y = model.lower.cell(h[0], x)
        upper, _ = model.upper.cell(h[1], y)
        return lower, upper

    return step, params


@pytest.fixture(scope="module")
def nnx_case():
    model = NNXModel(nnx.Rngs(0))
    xs = _inputs()
    return model, xs, gradscope.diagnose(model, xs)


def test_nnx_model_layers_and_stack(reference, nnx_case):
    model, xs, diagnosis = nnx_case
    assert diagnosis.library == "flax.nnx"
    assert [layer.name for layer in diagnosis.layers] == ["lower.cell", "upper.cell"]
    _check_stack(reference, diagnosis, *nnx_stacked_step(model), (_zeros(LOWER, LOWER), jnp.zeros(UPPER)), xs)
    lower, upper = model.lower.cell, model.upper.cell
    _check_layer(reference, diagnosis.layers[0], lower, nnx.state(lower, nnx.Param), xs, _zeros(LOWER, LOWER))
    _check_layer(reference, diagnosis.layers[1], upper, nnx.state(upper, nnx.Param), model.lower(xs),
                 jnp.zeros(UPPER))
    assert diagnosis.stack.state_size == 2 * LOWER + UPPER


def test_table_has_a_row_per_layer_and_the_stack(nnx_case):
    _, _, diagnosis = nnx_case
    table = diagnosis.to_dataframe()
    assert list(table["layer"]) == ["lower.cell", "upper.cell", "stack"]
    assert list(table["state_size"]) == [2 * LOWER, UPPER, 2 * LOWER + UPPER]
    assert list(table["sequences"]) == [SEQUENCES] * 3 and list(table["steps"]) == [NUM_STEPS] * 3
    assert list(table["cell"][:2]) == ["flax.nnx LSTMCell", "flax.nnx GRUCell"]
    per_sequence = diagnosis.to_dataframe(per_sequence=True)
    summary = diagnosis.stack.summary()
    stack_rows = per_sequence[per_sequence["layer"] == "stack"]
    np.testing.assert_allclose(stack_rows["rate"], np.asarray(summary.rate), rtol=1e-6)
    np.testing.assert_allclose(table["rate"].iloc[2], np.mean(np.asarray(summary.rate)), rtol=1e-6)
    assert set(diagnosis.spectra) == {"lower.cell", "upper.cell", "stack"}
    text = repr(diagnosis)
    assert "2 recurrent layers (flax.nnx), 2 sequences of 6 steps" in text and "stack" in text


def test_a_layer_between_the_recurrences_leaves_the_layers_unstacked(reference):
    model = NNXModel(nnx.Rngs(1), between=True)
    xs = _inputs(seed=2)
    diagnosis = gradscope.diagnose(model, xs)
    assert diagnosis.stack is None
    assert any("upper.cell sees something other than the outputs of lower.cell" in n for n in diagnosis.notes)
    assert any(n.startswith("spare is a recurrent cell of the model that the forward pass") for n in diagnosis.notes)
    upper = model.upper.cell  # its inputs: the Linear layer's outputs, as the model computes them
    _check_layer(reference, diagnosis.layers[1], upper, nnx.state(upper, nnx.Param), model.middle(model.lower(xs)),
                 jnp.zeros(UPPER))
    assert list(diagnosis.to_dataframe()["layer"]) == ["lower.cell", "upper.cell"]


# ------------------------------------------------------------------------------------------------
# Flax linen: two nn.RNN layers, with variables
# ------------------------------------------------------------------------------------------------

class LinenModel(nn.Module):
    def setup(self):
        self.lower = nn.RNN(nn.LSTMCell(LOWER))
        self.upper = nn.RNN(nn.GRUCell(UPPER))

    def __call__(self, xs):
        return self.upper(self.lower(xs))


def linen_stacked_step(variables, h, x):  # linen cells: carry, y = cell.apply(variables, carry, x)
    params = variables["params"]
    lower, y = nn.LSTMCell(LOWER).apply({"params": params["lower"]["cell"]}, h[0], x)
    upper, _ = nn.GRUCell(UPPER).apply({"params": params["upper"]["cell"]}, h[1], y)
    return lower, upper


def test_linen_model_layers_and_stack(reference):
    model, xs = LinenModel(), _inputs(seed=3)
    variables = model.init(jax.random.key(0), xs)
    diagnosis = gradscope.diagnose(model, xs, variables=variables)
    assert diagnosis.library == "flax.linen"
    assert [layer.name for layer in diagnosis.layers] == ["lower/cell", "upper/cell"]
    _check_stack(reference, diagnosis, linen_stacked_step, variables, (_zeros(LOWER, LOWER), jnp.zeros(UPPER)), xs)
    params = variables["params"]
    seen = model.apply(variables, xs, method=lambda m, xs: m.lower(xs))
    _check_layer(reference, diagnosis.layers[0], nn.LSTMCell(LOWER), {"params": params["lower"]["cell"]}, xs,
                 _zeros(LOWER, LOWER))
    _check_layer(reference, diagnosis.layers[1], nn.GRUCell(UPPER), {"params": params["upper"]["cell"]}, seen,
                 jnp.zeros(UPPER))
    # a bound module carries its variables: the same layers, seeing the same inputs
    found, recording = discover(model.bind(variables), xs)
    assert found.names == ("lower/cell", "upper/cell") and found.chained
    np.testing.assert_array_equal(recording.inputs[1], diagnosis.layers[1].inputs)


def test_linen_model_without_variables_is_refused():
    with pytest.raises(ValueError, match="variables=variables"):
        gradscope.diagnose(LinenModel(), _inputs())


# ------------------------------------------------------------------------------------------------
# Equinox: the user's own scan over two cells, one sequence per call (vmapped for a batch)
# ------------------------------------------------------------------------------------------------

class EquinoxModel(eqx.Module):
    cells: list

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.cells = [eqx.nn.LSTMCell(INPUT, LOWER, key=k1), eqx.nn.GRUCell(LOWER, UPPER, key=k2)]

    def __call__(self, xs):  # xs: (T, INPUT)
        for cell in self.cells:
            lstm = isinstance(cell, eqx.nn.LSTMCell)

            def step(h, x, cell=cell, lstm=lstm):
                h = cell(x, h)
                return h, h[0] if lstm else h

            _, xs = jax.lax.scan(step, _zeros(cell.hidden_size, cell.hidden_size) if lstm else
                                 jnp.zeros(cell.hidden_size), xs)
        return xs


def equinox_stacked_step(model, h, x):  # equinox cells: hidden = cell(input, hidden)
    lower = model.cells[0](x, h[0])
    return lower, model.cells[1](lower[0], h[1])


def test_equinox_model_layers_and_stack(reference):
    model, xs = EquinoxModel(jax.random.key(4)), _inputs(seed=5)
    diagnosis = gradscope.diagnose(model, xs, forward=lambda m, xs: jax.vmap(m)(xs))
    assert diagnosis.library == "equinox"
    assert [layer.name for layer in diagnosis.layers] == ["cells[0]", "cells[1]"]
    _check_stack(reference, diagnosis, equinox_stacked_step, model, (_zeros(LOWER, LOWER), jnp.zeros(UPPER)), xs)
    lower, upper = model.cells

    def lower_outputs(xs):
        return jax.lax.scan(lambda h, x: (lower(x, h), lower(x, h)[0]), _zeros(LOWER, LOWER), xs)[1]

    _check_layer(reference, diagnosis.layers[0], lower, lower, xs, _zeros(LOWER, LOWER))
    _check_layer(reference, diagnosis.layers[1], upper, upper, jax.vmap(lower_outputs)(xs),
                 jnp.zeros(UPPER))


def test_a_cell_run_twice_keeps_its_first_run():
    class Twice(eqx.Module):
        cell: eqx.nn.GRUCell

        def __call__(self, xs):
            run = lambda xs: jax.lax.scan(lambda h, x: (self.cell(x, h), h), jnp.zeros(UPPER), xs)[0]  # noqa: E731
            return run(xs) + run(xs[::-1])

    xs = _inputs((NUM_STEPS, INPUT), seed=6)
    diagnosis = gradscope.diagnose(Twice(eqx.nn.GRUCell(INPUT, UPPER, key=jax.random.key(0))), xs)
    assert any("started afresh" in note for note in diagnosis.notes)
    np.testing.assert_array_equal(np.asarray(diagnosis.layers[0].inputs[0]), np.asarray(xs))


# ------------------------------------------------------------------------------------------------
# What is refused, and how
# ------------------------------------------------------------------------------------------------

def test_a_model_without_recurrence_says_what_was_looked_for():
    class FeedForward(nnx.Module):
        def __init__(self):
            self.dense = nnx.Linear(INPUT, 2, rngs=nnx.Rngs(0))

        def __call__(self, xs):
            return self.dense(xs)

    with pytest.raises(ValueError, match=r"nnx\.RNNCellBase.*cell_types.*jacobian_spectra\(step, params, xs, h0\)"):
        gradscope.diagnose(FeedForward(), _inputs())


def test_something_other_than_a_model_is_refused():
    with pytest.raises(TypeError, match="expected a Flax nnx module, a Flax linen module"):
        gradscope.diagnose(lambda xs: xs, _inputs())


def test_the_model_is_left_as_it_was(nnx_case):
    model, xs, _ = nnx_case
    assert type(model.lower.cell) is nnx.LSTMCell and type(model.upper.cell) is nnx.GRUCell
    np.testing.assert_array_equal(np.asarray(model(xs)), np.asarray(NNXModel(nnx.Rngs(0))(xs)))
