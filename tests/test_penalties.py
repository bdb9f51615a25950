"""Gradient-flow penalties: exact where they claim to be, unbiased where they estimate, differentiable.

The exact gains are checked against the log RMS singular value of ``jax.jacrev`` of the
unrolled map (conftest's ``reference``), their gradients against ``jax.grad`` of that
reference; the probe estimate against its expectation E ||V P||_F^2 = (probes / n) ||P||_F^2
for Haar-random orthonormal rows V; the docs page's examples run as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope import penalties, training

PAGE = Path(__file__).resolve().parents[1] / "docs" / "penalties.md"
LAGS = (1, 4, 9)


def _case(dtype=jnp.float64):
    cell = gradscope.VanillaRNN(6, input_size=2)
    params = cell.init(jax.random.key(0), recurrent_init=("orthogonal", {"gain": 0.8}), bias_init="normal")
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    return cell, params, jax.random.normal(jax.random.key(1), (9, 2), dtype)


def _reference_log_rms(reference, cell, params, xs):
    products = reference.products_jax(cell.step, params, xs, cell.initial_state(jnp.float64), LAGS)
    return jnp.log(jnp.linalg.norm(products, axis=(1, 2)) / jnp.sqrt(6.0))


def test_exact_gains_and_their_gradient_equal_the_jacrev_reference(reference):
    with jax.enable_x64(True):
        cell, params, xs = _case()
        exact = lambda p: penalties.log_rms_gains(cell, p, xs, lags=LAGS, probes=None)  # noqa: E731
        np.testing.assert_allclose(exact(params), _reference_log_rms(reference, cell, params, xs), rtol=1e-12)
        # rate_penalty = mean_k (log rms_k / k - target)^2; its gradient against the reference's
        penalty = lambda p: penalties.rate_penalty(cell, p, xs, lags=LAGS, target=-0.1, probes=None)  # noqa: E731
        ref = lambda p: jnp.mean(jnp.square(_reference_log_rms(reference, cell, p, xs) / jnp.asarray(LAGS) + 0.1))  # noqa: E731
        np.testing.assert_allclose(penalty(params), ref(params), rtol=1e-12)
        ours, expected = jax.jit(jax.grad(penalty))(params), jax.grad(ref)(params)
        for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.max(np.abs(b)))


def test_probe_estimate_is_unbiased_for_the_squared_norm(reference):
    """(n / probes) ||V P_k||_F^2 averages to ||P_k||_F^2 over fresh Haar probes: the mean of
    exp(2 estimate) over 3000 keys is within 4 standard errors of exp(2 exact) at every lag
    (a missing n / probes factor would be off by a factor 3)."""
    with jax.enable_x64(True):
        cell, params, xs = _case()
        exact = np.exp(2 * np.asarray(_reference_log_rms(reference, cell, params, xs)))
        keys = jax.random.split(jax.random.key(2), 3000)
        draws = jax.vmap(lambda k: penalties.log_rms_gains(cell, params, xs, lags=LAGS, probes=2, key=k))(keys)
        squares = np.exp(2 * np.asarray(draws))
        standard_error = squares.std(axis=0) / np.sqrt(len(keys))
        assert np.all(np.abs(squares.mean(axis=0) - exact) < 4 * standard_error)
        assert np.all(standard_error < 0.05 * exact)  # the test can tell a factor of 3
        everything = penalties.log_rms_gains(cell, params, xs, lags=LAGS, probes=6, key=keys[0])  # probes = n: exact
        np.testing.assert_allclose(np.exp(2 * np.asarray(everything)), exact, rtol=1e-12)


def test_batched_inputs_average_the_penalty():
    cell, params, xs = _case(jnp.float32)
    batch = jnp.stack([xs, -2 * xs])
    one = [penalties.gain_penalty(cell, params, x, lags=LAGS, probes=None) for x in batch]
    np.testing.assert_allclose(penalties.gain_penalty(cell, params, batch, lags=LAGS, probes=None), np.mean(one),
                               rtol=1e-5)


def test_penalised_training_records_the_task_loss_and_lengthens_the_gradient():
    """Same parameters and batches: the first recorded loss is the task loss either way; after
    200 steps the penalised cell's log RMS gain at the task lag is higher (less vanishing)."""
    cell, task = gradscope.VanillaRNN(8, input_size=2), training.make_task("adding", 8)
    init = [("orthogonal", {"gain": 0.5})]
    plain = training.TrainConfig(num_steps=200, eval_every=200, lags=(8,))
    penalised = training.TrainConfig(num_steps=200, eval_every=200, lags=(8,),
                                     penalty=penalties.Penalty(lags=(4, 8), weight=1.0))
    runs = [training.train(cell, task, init, config=c, progress=False) for c in (plain, penalised)]
    assert runs[0].record.loss[0, 0, 0] == runs[1].record.loss[0, 0, 0]
    xs = task.sample(jax.random.key(9), 1).inputs[0]
    gains = [penalties.log_rms_gains(cell, jax.tree_util.tree_map(lambda a: a[0, 0], r.final_params.cell), xs,
                                     lags=(8,), probes=None)[0] for r in runs]
    assert gains[1] > gains[0] + 1.0


def test_bad_arguments_say_what_was_expected():
    cell, params, xs = _case(jnp.float32)
    with pytest.raises(ValueError, match=r"lags must be ints in \[1, T\] = \[1, 9\]"):
        penalties.rate_penalty(cell, params, xs, lags=(0, 3))
    with pytest.raises(ValueError, match="lags must be ints"):
        penalties.log_rms_gains(cell, params, xs, lags=(12,))
    with pytest.raises(ValueError, match="probes must be a positive int"):
        penalties.log_rms_gains(cell, params, xs, lags=(3,), probes=0)
    with pytest.raises(ValueError, match="Penalty.kind must be one of"):
        penalties.Penalty(lags=(3,), kind="horizon")
    with pytest.raises(ValueError, match="Penalty.weight must be >= 0"):
        penalties.Penalty(lags=(3,), weight=-1.0)
    with pytest.raises(TypeError, match="TrainConfig.penalty must be a gradscope.penalties.Penalty"):
        training.TrainConfig(penalty=0.1)


def test_docs_page_examples_run_as_written(capsys):
    """docs/penalties.md: every block, in order (the first differentiates jacobian_spectra, the second
    trains a built-in cell with the penalty, the third takes one penalised step of a Flax cell)."""
    pytest.importorskip("flax")
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S):
        exec(compile(block, str(PAGE), "exec"), namespace)
    assert "log rms at lags 10, 20:" in capsys.readouterr().out
    before, after = np.asarray(namespace["before"]), np.asarray(namespace["after"])
    assert np.all(after > before)  # the penalty pulled the vanishing start up at both lags
    assert np.isfinite(float(namespace["loss_value"]))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(namespace["grads"]))
