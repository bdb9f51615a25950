"""Training experiments: tasks, learning, recorded gradients, clipping, determinism, figures.

One small adding-problem run (vanilla tanh RNN, lag 5, 300 Adam steps) is
trained once per module and shared; everything else reuses its compiled code.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest

import gradscope
from gradscope import clipping, training
from gradscope.plotting import training as training_plots

matplotlib.use("Agg")

CELL = gradscope.VanillaRNN(16, input_size=2)
TASK = training.make_task("adding", 5)
CONFIG = training.TrainConfig(num_steps=300, batch_size=32, learning_rate=1e-2, eval_every=150, eval_batch_size=64)
INITS = ["orthogonal", ("normal", {"stddev": 1.0})]


@pytest.fixture(scope="module")
def run():
    return training.train(CELL, TASK, INITS, config=CONFIG, key=jax.random.key(7), progress=False)


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

def test_adding_problem_follows_the_arjovsky_formulation():
    task = training.AddingProblem(length=12)
    batch = task.sample(jax.random.key(0), 4096)
    values, markers = np.asarray(batch.inputs[..., 0]), np.asarray(batch.inputs[..., 1])
    assert batch.inputs.shape == (4096, 12, 2) and task.lag == 6 and training.make_task("adding", 6) == task
    assert np.all(markers[:, :6].sum(axis=1) == 1) and np.all(markers[:, 6:].sum(axis=1) == 1)
    assert np.all((values >= 0) & (values < 1))
    np.testing.assert_allclose(np.asarray(batch.targets), (values * markers).sum(axis=1), rtol=1e-6)
    # predicting the mean sum (1) scores the variance of a sum of two U[0, 1]: 1/6
    baseline = float(task.loss(jnp.ones((4096, 12, 1)), batch.targets))
    assert abs(baseline - 1 / 6) < 0.01 and task.baseline == pytest.approx(1 / 6)
    # every first-half position is used (uniform placement)
    assert set(np.argmax(markers[:, :6], axis=1)) == set(range(6))


def test_copy_memory_layout_and_baseline():
    task = training.make_task("copy", 14, num_symbols=4, copy_length=3)
    assert (task.delay, task.num_steps, task.lag) == (11, 17, 14)
    batch = task.sample(jax.random.key(1), 64)
    tokens = np.argmax(np.asarray(batch.inputs), axis=-1)
    symbols = tokens[:, :3]
    assert np.all((symbols >= 1) & (symbols <= 4))
    assert np.all(tokens[:, 13] == 5) and np.all(np.delete(tokens[:, 3:], 10, axis=1) == 0)  # delimiter at 13
    targets = np.asarray(batch.targets)
    np.testing.assert_array_equal(targets[:, -3:], symbols)
    assert np.all(targets[:, :-3] == 0)
    # each symbol is written lag steps after it is read
    assert all(np.array_equal(tokens[:, i], targets[:, i + task.lag]) for i in range(3))
    # the memoryless strategy (blank, then uniform over symbols) scores the documented baseline
    logits = np.full((64, 17, 5), -1e9, np.float32)
    logits[:, :-3, 0] = 0.0
    logits[:, -3:, 1:] = 0.0
    loss = float(task.loss(jnp.asarray(logits), batch.targets))
    assert loss == pytest.approx(3 * math.log(4) / 17, rel=1e-5) == pytest.approx(task.baseline, rel=1e-5)


def test_tasks_refuse_bad_sizes():
    with pytest.raises(ValueError, match="lag > 10"):
        training.make_task("copy", 10)
    with pytest.raises(ValueError, match="'adding' or 'copy'"):
        training.make_task("parity", 10)
    with pytest.raises(ValueError, match="input_size=2"):
        training.train(gradscope.VanillaRNN(4, input_size=3), TASK, ["orthogonal"], config=CONFIG)
    with pytest.raises(ValueError, match="must divide"):
        training.TrainConfig(num_steps=100, eval_every=30)


def test_missing_optax_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optax", None)
    with pytest.raises(ImportError, match=r"pip install gradscope\[train\]"):
        CONFIG.make_optimizer()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def test_adding_problem_is_learned_at_a_short_lag(run):
    final = dict(zip(run.labels, run.final_loss[:, 0]))
    assert final["orthogonal"] < 0.25 * TASK.baseline  # well below the 0.167 variance baseline
    assert run.checkpoints.eval_loss[0, 0, 0] > TASK.baseline  # and it started above it
    table = run.to_dataframe()
    assert list(table["init"]) == ["orthogonal", "normal(stddev=1.0)"]
    assert table.loc[1, "verdict_at_init"] == "exploding"  # N(0, 1) weights at n = 16: chaotic
    assert run.record.loss.shape == (2, 1, CONFIG.num_steps) and list(run.steps) == [0, 150, 300]


def _vanilla_step(params, h, x):
    return jnp.tanh(h @ params.cell.recurrent_kernel + x @ params.cell.input_kernel + params.cell.bias)


def _summed_loss_from(params, h_t, t, inputs, targets):
    """Sum over examples of the squared error, continuing each example from its state h_t[b]."""
    h = h_t
    for s in range(t, inputs.shape[1]):
        h = _vanilla_step(params, h, inputs[:, s])
    return jnp.sum(jnp.square((h @ params.kernel + params.bias)[:, 0] - targets))


def test_recorded_hidden_gradients_equal_autodiff_of_the_unrolled_loss(run):
    """Written independently of gradscope's perturbation trick: d loss_b / d h_t by restarting from h_t."""
    eval_batch = TASK.sample(jax.random.fold_in(jax.random.key(7), 2), CONFIG.eval_batch_size)  # documented key
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0, 0]), run.initial_params)
    h, expected = jnp.zeros((CONFIG.eval_batch_size, 16)), []
    for t in range(1, TASK.num_steps + 1):
        h = _vanilla_step(params, h, eval_batch.inputs[:, t - 1])  # h_t
        grad = jax.grad(_summed_loss_from, argnums=1)(params, h, t, eval_batch.inputs, eval_batch.targets)
        expected.append(float(jnp.mean(jnp.linalg.norm(grad, axis=-1))))
    np.testing.assert_allclose(run.checkpoints.hidden_grad_norm[0, 0, 0], expected, rtol=2e-4)


def test_checkpoint_spectra_are_the_cells_spectra_at_init(run):
    eval_batch = TASK.sample(jax.random.fold_in(jax.random.key(7), 2), CONFIG.eval_batch_size)
    k_cell, _ = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 0), 0))  # documented
    params = CELL.init(k_cell, recurrent_init="orthogonal")
    np.testing.assert_array_equal(run.initial_params.cell.recurrent_kernel[0, 0], params.recurrent_kernel)
    direct = gradscope.jacobian_spectra(CELL, params, eval_batch.inputs[0])
    np.testing.assert_allclose(run.spectra.log_singular_values[0, 0, 0], direct.log_singular_values, atol=1e-4)
    assert run.summary(0).horizon.shape == (2, 1)


def test_run_table_at_init_equals_the_first_checkpoint_rows(run):
    at_init = run.to_dataframe()  # summary of checkpoint 0 alone
    first = run.checkpoint_table().query(f"step == {run.steps[0]}")  # summary over all checkpoints, then sliced
    for name in ("rate", "rms_rate", "horizon"):
        np.testing.assert_allclose(at_init[f"{name}_at_init"], first[name], rtol=1e-6)
    assert list(at_init["verdict_at_init"]) == list(first["verdict"])


def test_experiment_is_deterministic_under_a_fixed_key(run):
    again = training.train(CELL, TASK, INITS, config=CONFIG, key=jax.random.key(7), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves((run.record, run.checkpoints)),
                    jax.tree_util.tree_leaves((again.record, again.checkpoints))):
        np.testing.assert_array_equal(a, b)
    other = training.train(CELL, TASK, INITS, config=CONFIG, key=jax.random.key(8), progress=False)
    assert not np.array_equal(other.record.loss, run.record.loss)


def test_horizon_experiment_table_applies_its_rule(run):
    experiment = training.horizon_experiment(CELL, "adding", lags=(5,), initializers=INITS, config=CONFIG,
                                             key=jax.random.key(7), success_ratio=0.25, progress=False)
    np.testing.assert_array_equal(experiment.runs[0].record.loss, run.record.loss)  # same key, same run
    table = experiment.to_dataframe()
    expected_predicted = (table["horizon_at_init"] >= 5) & (table["verdict_at_init"] != "exploding")
    np.testing.assert_array_equal(table["predicted"], expected_predicted)
    np.testing.assert_array_equal(table["learned"], table["final_loss"] <= 0.25 * TASK.baseline)
    assert experiment.agreement() == pytest.approx(np.mean(table["predicted"] == table["learned"]))
    assert list(experiment.outcome_table().columns) == [5]


# ---------------------------------------------------------------------------------------------
# Clipping
# ---------------------------------------------------------------------------------------------

def _norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(leaf, np.float64))) for leaf in jax.tree_util.tree_leaves(tree))))


def test_optax_clipping_bounds_the_gradient_and_the_sgd_update():
    grads = {"a": jnp.full((3, 3), 4.0), "b": jnp.arange(5.0)}
    for threshold in (0.01, 1.0, 100.0):
        clipped, _ = optax.clip_by_global_norm(threshold).update(grads, optax.EmptyState())
        norm = _norm(clipped)
        assert norm <= threshold * (1 + 1e-6)
        assert norm == pytest.approx(min(threshold, _norm(grads)), rel=1e-6)
        sgd = optax.chain(optax.clip_by_global_norm(threshold), optax.sgd(0.3))
        updates, _ = sgd.update(grads, sgd.init(grads))
        assert _norm(updates) <= 0.3 * threshold * (1 + 1e-6)


def test_clipping_study_bounds_every_applied_update():
    config = dataclasses.replace(CONFIG, num_steps=150, learning_rate=0.05, optimizer="sgd")  # shares compiled code
    study = clipping.clipping_study(CELL, TASK, (None, 0.05), recurrent_init=("orthogonal", {"gain": 1.5}),
                                    config=config, key=jax.random.key(3), progress=False)
    assert study.labels == ("no clipping", "clip 0.05")
    record = study.record
    np.testing.assert_array_equal(record.clipped_norm[0], record.grad_norm[0])  # no clipping: untouched
    assert np.all(record.clipped_norm[1] <= 0.05 * (1 + 1e-5))
    assert np.all(record.update_norm[1] <= 0.05 * 0.05 * (1 + 1e-5))  # SGD: ||update|| <= lr * threshold
    np.testing.assert_allclose(record.update_norm[0], 0.05 * record.grad_norm[0], rtol=1e-5)
    np.testing.assert_allclose(study.clipped_fraction()[1], np.mean(record.grad_norm[1] > 0.05))
    assert study.clipped_fraction()[1, 0] > 0.5 and study.clipped_fraction()[0, 0] == 0
    with pytest.raises(ValueError, match="> 0"):
        clipping.clipping_study(CELL, TASK, (0.0,))


# ---------------------------------------------------------------------------------------------
# Figures (asserting on the data drawn)
# ---------------------------------------------------------------------------------------------

def test_training_curves_draw_the_seed_mean_and_the_baseline(run):
    fig = training_plots.plot_training_curves(run)
    ax = fig.axes[0]
    lines = ax.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), run.record.loss[0, 0], rtol=1e-6)
    np.testing.assert_allclose(lines[1].get_ydata(), run.checkpoints.eval_loss[0, 0], rtol=1e-6)
    assert lines[-1].get_ydata()[0] == pytest.approx(TASK.baseline)


def test_hidden_gradient_and_horizon_figures(run):
    fig = training_plots.plot_hidden_gradients(run, init="orthogonal")
    first = fig.axes[0].get_lines()[0]
    np.testing.assert_array_equal(first.get_xdata(), np.arange(1, TASK.num_steps + 1))
    np.testing.assert_allclose(first.get_ydata(), run.checkpoints.hidden_grad_norm[0, 0, 0], rtol=1e-6)
    fig = training_plots.plot_horizon_during_training(run)
    horizon = np.asarray(run.checkpoint_table().query("init == 'orthogonal'")["horizon"])
    drawn = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_allclose(drawn, np.where(np.isinf(horizon), TASK.num_steps, horizon))


def test_experiment_figures_place_every_run(run):
    experiment = training.HorizonExperiment((5,), (run,), 0.25)
    fig = training_plots.plot_horizon_prediction(experiment)
    points = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 1 and line.get_marker() != "None"]
    np.testing.assert_allclose(sorted(float(p.get_ydata()[0]) for p in points[:2]),
                               sorted(experiment.to_dataframe()["loss_ratio"]), rtol=1e-6)
    fig = training_plots.plot_outcome_grid(experiment)
    image = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.ravel(image), experiment.to_dataframe()["loss_ratio"], rtol=1e-6)
    fig = training_plots.plot_grad_norm_distribution(run)
    assert len(fig.axes[0].patches) == len(run.labels)
