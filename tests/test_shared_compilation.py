"""Adapters of one architecture share one compilation, whatever their weights.

Each test analyses ten weight sets of one architecture, each through a *new* adapter
(as a check every N training steps does), and counts how often JAX traces the analysis
(``_spectra_core``, or ``_bucketed_core`` where T is bucketed) with ``jax.monitoring``: once. The sizes are unusual so that no
earlier test has compiled the same program already.
"""

from __future__ import annotations

import contextlib

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradscope
from gradscope import cells

INPUT, HIDDEN, NUM_STEPS, RUNS = 2, 5, 11, 10
TRACE = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def traces_of(*function_names: str):
    """Count JAX traces of any of ``function_names`` inside the block: yields a list that fills up."""
    seen = []

    def listener(event, duration, **kwargs):
        if event == TRACE and kwargs.get("fun_name") in function_names:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _xs():
    return jnp.asarray(np.random.default_rng(0).normal(size=(NUM_STEPS, INPUT)), jnp.float32)


def _analyse_all(adapters):
    """Spectra of each (adapter, params); the traces of the analysis counted over all of them."""
    with traces_of("_spectra_core", "_bucketed_core") as traces:
        results = [gradscope.jacobian_spectra(a, p, _xs()).log_singular_values for a, p in adapters]
    return traces, results


def _assert_one_trace_distinct_results(adapters):
    traces, results = _analyse_all(adapters)
    assert len(traces) == 1, f"{len(traces)} traces for {len(adapters)} weight sets of one architecture"
    firsts = {float(r[0, 0]) for r in results}
    assert len(firsts) == len(adapters)  # every weight set was analysed with its own weights


def test_torch_modules_of_one_architecture_trace_once():
    torch = pytest.importorskip("torch")
    adapters = []
    for seed in range(RUNS):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            adapted = cells.from_torch(torch.nn.LSTM(INPUT, HIDDEN, num_layers=2))
        adapters.append((adapted, adapted.params))
    assert len({hash(a) for a, _ in adapters}) == 1 and adapters[0][0] == adapters[-1][0]
    _assert_one_trace_distinct_results(adapters)
    relu = cells.from_torch(torch.nn.RNN(INPUT, HIDDEN, nonlinearity="relu"))
    assert relu != cells.from_torch(torch.nn.RNN(INPUT, HIDDEN))  # another activation: another program
    # a trained module's weights, re-read, analyse without a new trace
    module = adapters[0][0].module
    with torch.no_grad():
        module.weight_hh_l1.mul_(1.5)
    traces, (scaled,) = _analyse_all([(adapters[0][0], adapters[0][0].params_of(module))])
    assert not traces and not np.allclose(scaled, _analyse_all(adapters[:1])[1][0])


def test_flax_linen_adapters_of_one_architecture_trace_once():
    cell = nn.GRUCell(features=HIDDEN)
    carry = cell.initialize_carry(jax.random.key(0), (INPUT,))
    adapters = []
    for seed in range(RUNS):
        variables = cell.init(jax.random.key(seed), carry, jnp.zeros(INPUT))
        adapters.append((cells.from_flax(nn.GRUCell(features=HIDDEN), variables), variables))
    _assert_one_trace_distinct_results(adapters)
    assert cells.from_flax(nn.GRUCell(features=HIDDEN, activation_fn=jax.nn.relu),
                           adapters[0][1]) != adapters[0][0]


def test_flax_nnx_adapters_of_one_architecture_trace_once():
    adapters = [cells.from_flax(nnx.LSTMCell(INPUT, HIDDEN, rngs=nnx.Rngs(seed))) for seed in range(RUNS)]
    _assert_one_trace_distinct_results([(a, a.params) for a in adapters])


def test_equinox_adapters_of_one_architecture_trace_once():
    adapters = [cells.from_equinox(eqx.nn.GRUCell(INPUT, HIDDEN, key=jax.random.key(seed))) for seed in range(RUNS)]
    _assert_one_trace_distinct_results([(a, a.params) for a in adapters])
    assert cells.from_equinox(eqx.nn.GRUCell(INPUT, HIDDEN, use_bias=False, key=jax.random.key(0))) != adapters[0]
