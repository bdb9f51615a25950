r"""Train recurrent cells on synthetic long-range tasks and relate the outcome to the Jacobian diagnostics.

Tasks (generated on the fly from a PRNG key, never stored; the numbers are drawn
on the host by NumPy's PCG64 seeded from the key's bits, see :func:`numpy_rng`):

* :class:`AddingProblem` — the formulation of Arjovsky, Shah & Bengio (2016), which
  follows Le, Jaitly & Hinton (2015): two input channels, values
  :math:`U[0, 1]` and a marker channel with exactly two ones, one at a uniform
  position in the first half of the sequence and one in the second half; the
  target is the sum of the two marked values, read out after the last step and
  scored by mean squared error. Predicting the mean (1) scores the variance of the
  sum, ``1/6 ≈ 0.167``: the baseline. (Hochreiter & Schmidhuber's 1997 original
  uses values in [-1, 1] and a scaled target; it is *not* the one used here.)
* :class:`CopyMemory` — the copy task of Arjovsky et al. (2016): ``copy_length``
  symbols from an alphabet of ``num_symbols``, ``delay - 1`` blanks, a delimiter,
  then ``copy_length`` blanks during which the symbols must be reproduced. The loss
  is the cross entropy averaged over every step; the memoryless baseline (blanks,
  then uniform guesses) scores ``copy_length * log(num_symbols) / num_steps``.

Each task has a ``lag``, the number of steps information must survive (the
length of the Jacobian product :math:`\partial h_{t+k}/\partial h_t` that carries
it): exactly ``delay + copy_length`` for the copy task, and at least
``length - length // 2`` (at most ``length - 1``) for the adding problem, whose
first marked value may sit anywhere in the first half. :func:`make_task` builds
a task with a chosen ``lag``.

A model is a gradscope cell (built-in or adapted) followed by a linear read-out
of its ``h``. :func:`train` trains one model per initializer (and seed) in
parallel with Adam, RMSprop or SGD (``optax``), optionally clipping the global
gradient norm, and records

* every step: the training loss, the global gradient norm, the clipped gradient
  norm and the norm of the applied update;
* every ``eval_every`` steps (checkpoints, step 0 included): the loss on a fixed
  evaluation batch, :math:`\|\partial \ell / \partial h_t\|` for every t (mean
  over the evaluation batch of the per-example norm, over the full state), and
  the Jacobian spectra of the cell on one evaluation sequence.

:func:`horizon_experiment` repeats this at several lags and asks whether the
memory horizon measured at initialization predicts which initializers learn.
Everything is deterministic under a fixed key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradscope.core import engine
from gradscope.cells.stacked import output_of
from gradscope import initializers
from gradscope.analysis import metrics
from gradscope.core._lapack import lapack_thread_limit
from gradscope.analysis.comparison import labelled_initializers
from gradscope.core.lags import select_lags
from gradscope.analysis.spectra import Spectra, spectra_of
from gradscope.display.headline import Headline, Readable
from gradscope.training.penalties import Penalty

__all__ = [
    "AddingProblem",
    "Batch",
    "Checkpoint",
    "CopyMemory",
    "EXPERIMENT_INITIALIZERS",
    "HorizonExperiment",
    "ReadoutParams",
    "StepRecord",
    "TrainConfig",
    "TrainingRun",
    "horizon_experiment",
    "make_task",
    "numpy_rng",
    "output_of",
    "train",
    "train_settings",
]


_PENALTY_KEY = 17  # the probes of a penalised step come from fold_in(key(17), step), shared by every run

EXPERIMENT_INITIALIZERS = ("orthogonal", ("orthogonal", {"gain": 0.5}), "glorot_normal", "he_normal", "identity",
                           "normal")
"""What :func:`train` and :func:`horizon_experiment` train by default: vanishing, critical and exploding starts
(``lecun_normal`` is left out: for a square recurrent kernel it equals ``glorot_normal``)."""


def _optax():
    try:
        import optax
    except ImportError as err:
        raise ImportError("training needs the optional dependency 'optax', which is not installed; "
                          "install it with `pip install gradscope[train]`") from err
    return optax


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

class Batch(NamedTuple):
    """A batch of task sequences.

    Attributes:
        inputs: ``[batch, T, input_size]`` float inputs.
        targets: adding problem: ``[batch]`` sums; copy task: ``[batch, T]`` class indices.
    """

    inputs: jax.Array
    targets: jax.Array


def numpy_rng(key) -> np.random.Generator:
    """A NumPy generator (PCG64) seeded from the bits of a JAX PRNG key.

    Task data is drawn on the host with it: deterministic under a fixed key, and
    free of the compilation that JAX's Threefry sampler needs for every new shape
    (seconds per shape on a CPU), which would dominate short experiments.
    """
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def _check_positive(owner: str, **values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


@dataclasses.dataclass(frozen=True)
class AddingProblem:
    """The adding problem (Arjovsky et al. 2016 / Le et al. 2015 formulation; see the module docs).

    Attributes:
        length: the sequence length T (at least 2).
    """

    length: int

    name = "adding"
    input_size = 2
    output_size = 1

    def __post_init__(self):
        _check_positive("AddingProblem", length=self.length)
        if self.length < 2:
            raise ValueError(f"AddingProblem.length must be >= 2 (one marker per half), got {self.length}")

    @property
    def num_steps(self) -> int:
        """Sequence length T."""
        return self.length

    @property
    def lag(self) -> int:
        """Fewest steps the first marked value must be held: ``length - length // 2``."""
        return self.length - self.length // 2

    @property
    def baseline(self) -> float:
        """MSE of always predicting 1: the variance of a sum of two U[0, 1], 1/6."""
        return 1.0 / 6.0

    def sample(self, key, batch_size: int) -> Batch:
        """Draw ``batch_size`` sequences (with NumPy, seeded from ``key``; see :func:`numpy_rng`)."""
        rng, half, length = numpy_rng(key), self.length // 2, self.length
        values = rng.random((batch_size, length), dtype=np.float32)
        first = rng.integers(0, half, batch_size)
        second = rng.integers(half, length, batch_size)
        positions = np.arange(length)
        markers = ((positions == first[:, None]) | (positions == second[:, None])).astype(np.float32)
        return Batch(jnp.asarray(np.stack([values, markers], axis=-1)), jnp.asarray((values * markers).sum(axis=-1)))

    def loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean squared error of the last output ``outputs[:, -1, 0]``."""
        return jnp.mean(jnp.square(outputs[:, -1, 0] - targets))


@dataclasses.dataclass(frozen=True)
class CopyMemory:
    """The copy-memory task of Arjovsky et al. (2016) (see the module docs).

    Inputs are one-hot over ``num_symbols + 2`` classes (0 blank, 1..K symbols,
    K+1 delimiter); outputs are logits over ``num_symbols + 1`` (blank and symbols).

    Attributes:
        delay: Arjovsky's T: the delimiter comes ``delay + copy_length - 1`` steps in.
        num_symbols: alphabet size K.
        copy_length: how many symbols to remember.
    """

    delay: int
    num_symbols: int = 8
    copy_length: int = 10

    name = "copy"

    def __post_init__(self):
        _check_positive("CopyMemory", delay=self.delay, num_symbols=self.num_symbols,
                        copy_length=self.copy_length)
        if self.num_symbols < 2:
            raise ValueError(f"CopyMemory.num_symbols must be >= 2, got {self.num_symbols}")

    @property
    def input_size(self) -> int:
        """One-hot width: blank, symbols, delimiter."""
        return self.num_symbols + 2

    @property
    def output_size(self) -> int:
        """Classes predicted: blank and symbols."""
        return self.num_symbols + 1

    @property
    def num_steps(self) -> int:
        """Sequence length ``delay + 2 * copy_length``."""
        return self.delay + 2 * self.copy_length

    @property
    def lag(self) -> int:
        """Steps between reading a symbol and writing it: ``delay + copy_length``."""
        return self.delay + self.copy_length

    @property
    def baseline(self) -> float:
        """Cross entropy of blanks then uniform guesses: ``copy_length * log(K) / num_steps``."""
        return self.copy_length * math.log(self.num_symbols) / self.num_steps

    def sample(self, key, batch_size: int) -> Batch:
        """Draw ``batch_size`` sequences (with NumPy, seeded from ``key``; see :func:`numpy_rng`)."""
        m, total = self.copy_length, self.num_steps
        symbols = numpy_rng(key).integers(1, self.num_symbols + 1, (batch_size, m))
        tokens = np.zeros((batch_size, total), np.int32)
        tokens[:, :m] = symbols
        tokens[:, self.delay + m - 1] = self.num_symbols + 1
        targets = np.zeros((batch_size, total), np.int32)
        targets[:, total - m:] = symbols
        return Batch(jnp.asarray(np.eye(self.input_size, dtype=np.float32)[tokens]), jnp.asarray(targets))

    def loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Cross entropy averaged over the batch and every step."""
        log_probs = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


def make_task(name: str, lag: int, **options):
    """The task ``name`` (``"adding"`` or ``"copy"``) whose ``lag`` equals ``lag``.

    ``"adding"`` gives ``AddingProblem(length=2 * lag)``; ``"copy"`` gives
    ``CopyMemory(delay=lag - copy_length, ...)`` (``options`` go to ``CopyMemory``).

    Raises:
        ValueError: an unknown name, or a lag too short for the copy length.
    """
    if name == "adding":
        if options:
            raise TypeError(f"the adding problem takes no options, got {sorted(options)}")
        return AddingProblem(length=2 * int(lag))
    if name == "copy":
        copy_length = options.get("copy_length", CopyMemory.copy_length)
        if lag <= copy_length:
            raise ValueError(f"a copy task with copy_length={copy_length} needs lag > {copy_length}, got {lag}")
        return CopyMemory(delay=int(lag) - copy_length, **options)
    raise ValueError(f"unknown task {name!r}; expected 'adding' or 'copy'")


# ---------------------------------------------------------------------------------------------
# Model: a cell and a linear read-out
# ---------------------------------------------------------------------------------------------

class ReadoutParams(NamedTuple):
    """Parameters of a cell with a linear read-out ``y_t = h_t W + b``.

    Attributes:
        cell: the cell's parameters.
        kernel: read-out kernel ``(hidden, output_size)``.
        bias: read-out bias ``(output_size,)``.
    """

    cell: Any
    kernel: jax.Array
    bias: jax.Array


def _outputs(cell, params: ReadoutParams, xs, perturbation):
    """Read-outs ``[T, out]`` of one sequence; ``perturbation[t]`` is added to h_{t+1} (for dL/dh)."""
    flat_step, v0, unravel = engine.flatten_step(cell.step, cell.initial_state(xs.dtype))

    def body(v, inputs):
        x, e = inputs
        v = flat_step(params.cell, v, x) + e
        return v, output_of(cell, unravel(v))

    _, features = jax.lax.scan(body, v0, (xs, perturbation))
    return features @ params.kernel + params.bias


def _state_size(cell) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(cell.initial_state())))


def _batch_loss(cell, task, params, batch: Batch, perturbation):
    outputs = jax.vmap(lambda x, e: _outputs(cell, params, x, e))(batch.inputs, perturbation)
    return task.loss(outputs, batch.targets)


def _zero_perturbation(cell, batch: Batch):
    return jnp.zeros(batch.inputs.shape[:2] + (_state_size(cell),), batch.inputs.dtype)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (hashable: it is a static argument of the compiled loop).

    Attributes:
        num_steps: optimizer steps.
        batch_size: sequences per step (fresh ones every step).
        learning_rate: step size of the optimizer.
        optimizer: ``"adam"``, ``"rmsprop"`` or ``"sgd"`` (optax defaults otherwise).
        clip_norm: ``optax.clip_by_global_norm`` threshold; ``None`` for no clipping.
        eval_every: steps between checkpoints (must divide ``num_steps``).
        eval_batch_size: size of the fixed evaluation batch.
        lags: lags of the checkpoint spectra: ``"all"``, ``"log"`` or a tuple of ints.
        num_log_lags: lag count for ``lags="log"``.
        penalty: a :class:`gradscope.penalties.Penalty` added to every step's loss,
            evaluated on the first sequence of the batch with fresh probes each step;
            ``None`` for none.
    """

    num_steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 3e-3
    optimizer: str = "adam"
    clip_norm: float | None = None
    eval_every: int = 100
    eval_batch_size: int = 256
    lags: Any = "all"
    num_log_lags: int = 32
    penalty: Any = None

    def __post_init__(self):
        if isinstance(self.lags, list):  # the config is a static (hashed) argument of the compiled loop
            object.__setattr__(self, "lags", tuple(self.lags))
        _check_positive("TrainConfig", num_steps=self.num_steps, batch_size=self.batch_size,
                        eval_every=self.eval_every, eval_batch_size=self.eval_batch_size)
        if self.num_steps % self.eval_every:
            raise ValueError(f"TrainConfig.eval_every={self.eval_every} must divide num_steps={self.num_steps}")
        if self.optimizer not in ("adam", "rmsprop", "sgd"):
            raise ValueError(f"TrainConfig.optimizer must be 'adam', 'rmsprop' or 'sgd', got {self.optimizer!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"TrainConfig.clip_norm must be > 0 or None, got {self.clip_norm!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.penalty is not None and not isinstance(self.penalty, Penalty):
            raise TypeError(f"TrainConfig.penalty must be a gradscope.penalties.Penalty or None, "
                            f"got {type(self.penalty).__name__}")

    def make_optimizer(self):
        """The optax optimizer (without clipping, which :func:`train` applies first)."""
        optax = _optax()
        return {"adam": optax.adam, "rmsprop": optax.rmsprop, "sgd": optax.sgd}[self.optimizer](self.learning_rate)


class StepRecord(NamedTuple):
    """What one optimizer step records (each a scalar, stacked over steps).

    Attributes:
        loss: training-batch loss before the update.
        grad_norm: global norm of the raw gradient.
        clipped_norm: global norm of the gradient after clipping (equal when not clipped).
        update_norm: global norm of the parameter update actually applied.
    """

    loss: jax.Array
    grad_norm: jax.Array
    clipped_norm: jax.Array
    update_norm: jax.Array


def _global_norm(tree) -> jax.Array:
    """sqrt of the sum of squares of every leaf (what ``optax.clip_by_global_norm`` bounds)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def _penalised_loss(cell, task, config, params, batch: Batch, step):
    """The task loss (what is recorded) and the loss differentiated (plus the penalty, if any)."""
    loss = _batch_loss(cell, task, params, batch, _zero_perturbation(cell, batch))
    if config.penalty is None:
        return loss, loss
    key = jax.random.fold_in(jax.random.key(_PENALTY_KEY), step)
    return loss + config.penalty(cell, params.cell, batch.inputs[0], key=key), loss


def _train_step(cell, task, config, state, batch, step, clip_norm):
    optax = _optax()
    params, opt_state = state
    (_, loss), grads = jax.value_and_grad(lambda p: _penalised_loss(cell, task, config, p, batch, step),
                                          has_aux=True)(params)
    clipped, _ = optax.clip_by_global_norm(clip_norm).update(grads, optax.EmptyState())
    updates, opt_state = config.make_optimizer().update(clipped, opt_state, params)
    record = StepRecord(loss, _global_norm(grads), _global_norm(clipped), _global_norm(updates))
    return (optax.apply_updates(params, updates), opt_state), record


def _draw_batches(task, batch_size: int, num_batches: int, keys) -> Batch:
    """``num_batches`` batches per seed key, ``[seeds, num_batches, batch, ...]``, one draw per key."""
    def one(key):
        batch = task.sample(key, num_batches * batch_size)
        return jax.tree_util.tree_map(lambda a: a.reshape((num_batches, batch_size) + a.shape[1:]), batch)
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[one(k) for k in keys])


@functools.partial(jax.jit, static_argnames=("cell", "task", "config"))
def _train_segment(cell, task, config, state, clip_norms, batches: Batch, start):
    """Train every (setting, seed) through the segment's batches ``[seeds, steps, ...]``, from step ``start``."""
    steps = start + jnp.arange(config.eval_every)

    def one(clip_norm, state, batches):
        return jax.lax.scan(lambda st, inputs: _train_step(cell, task, config, st, *inputs, clip_norm),
                            state, (batches, steps))

    def per_setting(clip_norm, state):
        return jax.vmap(one, in_axes=(None, 0, 0))(clip_norm, state, batches)

    return jax.vmap(per_setting)(clip_norms, state)


class Checkpoint(NamedTuple):
    """Diagnostics of every (setting, seed) at one checkpoint.

    Attributes:
        eval_loss: loss on the fixed evaluation batch.
        hidden_grad_norm: ``[T]``, mean over the batch of ``||dl/dh_t||``, t = 1..T.
        spectra: Jacobian spectra of the cell on the probe sequence (the first
            evaluation sequence).
    """

    eval_loss: jax.Array
    hidden_grad_norm: jax.Array
    spectra: Spectra


def _diagnose(cell, task, params, batch: Batch, lags) -> Checkpoint:
    perturbation = _zero_perturbation(cell, batch)
    loss, grad = jax.value_and_grad(lambda e: _batch_loss(cell, task, params, batch, e))(perturbation)
    per_example = jnp.linalg.norm(grad, axis=-1) * batch.inputs.shape[0]
    h0 = cell.initial_state(batch.inputs.dtype)
    spectra = spectra_of(cell.step, params.cell, batch.inputs[0], h0, lags)
    return Checkpoint(loss, jnp.mean(per_example, axis=0), spectra)


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("cell", "task", "lags"))
def _checkpoint(cell, task, params, batch: Batch, lags) -> Checkpoint:
    one = lambda p: _diagnose(cell, task, p, batch, lags)  # noqa: E731
    return jax.vmap(jax.vmap(one))(params)


def _init_params(cell, task, recurrent_init, seeds, key, input_init, bias_init) -> ReadoutParams:
    """Parameters for every seed, ``[seeds, ...]``; the read-out depends on the seed only."""
    hidden = int(np.size(output_of(cell, cell.initial_state())))
    readout_init = initializers.resolve("lecun_normal")

    def draw(seed):
        k_cell, k_readout = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 0), seed))
        cell_params = cell.init(k_cell, recurrent_init=recurrent_init, input_init=input_init, bias_init=bias_init)
        kernel = readout_init(k_readout, (hidden, task.output_size), jnp.float32)
        return ReadoutParams(cell_params, kernel, jnp.zeros((task.output_size,), jnp.float32))

    return jax.vmap(draw)(jnp.asarray(seeds))


def _check_cell(cell, task) -> None:
    for attribute in ("init", "step", "initial_state", "input_size"):
        if not hasattr(cell, attribute):
            raise TypeError(f"training needs a cell with .{attribute} (a gradscope cell or an adapter from "
                            f"gradscope.cells.from_flax / from_equinox), got {type(cell).__name__}")
    if cell.input_size != task.input_size:
        raise ValueError(f"the {task.name} task feeds inputs of size {task.input_size}, but the cell has "
                         f"input_size={cell.input_size}; build the cell with input_size={task.input_size}")


def _as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def train_settings(cell, task, labels, recurrent_inits, clip_norms, *, seeds=1, config: TrainConfig = TrainConfig(),
                   key=None, input_init="lecun_normal", bias_init="zeros",
                   thresholds: metrics.Thresholds = metrics.Thresholds(), progress: bool | None = None) -> TrainingRun:
    """Train one model per (setting, seed), all in one vmapped, compiled loop.

    A setting is a recurrent initializer and a clipping threshold; :func:`train`
    (initializers) and :func:`gradscope.clipping.clipping_study` (thresholds) are
    the usual entry points. Seed ``s`` draws its parameters from
    ``fold_in(fold_in(key, 0), s)`` and its batches from ``fold_in(fold_in(key, 1), s)``
    (one draw per segment of ``eval_every`` steps), the same for every setting
    (common random numbers); the evaluation batch comes from ``fold_in(key, 2)``.

    Args:
        cell: a cell with ``init``, ``step``, ``initial_state`` and ``input_size`` equal
            to the task's.
        task: :class:`AddingProblem`, :class:`CopyMemory` or any object with the same fields.
        labels: one label per setting.
        recurrent_inits: one initializer spec per setting.
        clip_norms: one threshold (or ``None``) per setting.
        seeds: a count or explicit ints.
        config: the :class:`TrainConfig` (its ``clip_norm`` is ignored here).
        key: the PRNG key of the whole experiment (default ``jax.random.key(0)``).
        input_init: fixed initializers of the input kernel and biases.
        bias_init: fixed initializers of the input kernel and biases.
        thresholds: thresholds of the spectra summaries.
        progress: show a progress bar (default: only on a terminal).

    Returns:
        :class:`TrainingRun`.
    """
    _check_cell(cell, task)
    key = jax.random.key(0) if key is None else key
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds or len(labels) != len(recurrent_inits) or len(labels) != len(clip_norms):
        raise ValueError(f"expected at least one seed and one label, initializer and clip norm per setting; got "
                         f"{len(seeds)} seeds, {len(labels)} labels, {len(recurrent_inits)} initializers, "
                         f"{len(clip_norms)} clip norms")
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[
        _init_params(cell, task, init, seeds, key, input_init, bias_init) for init in recurrent_inits])
    clips = jnp.asarray([jnp.inf if c is None else c for c in clip_norms], jnp.float32)
    data_keys = [jax.random.fold_in(jax.random.fold_in(key, 1), s) for s in seeds]
    eval_batch = task.sample(jax.random.fold_in(key, 2), config.eval_batch_size)
    lags = select_lags(config.lags, task.num_steps, config.num_log_lags)
    state = (params, jax.vmap(jax.vmap(config.make_optimizer().init))(params))
    checkpoints, records = [_as_numpy(_checkpoint(cell, task, params, eval_batch, lags))], []
    for start in tqdm(range(0, config.num_steps, config.eval_every), desc=f"training {task.name} T={task.num_steps}",
                      disable=(None if progress is None else not progress)):
        segment_keys = [jax.random.fold_in(k, start) for k in data_keys]
        batches = _draw_batches(task, config.batch_size, config.eval_every, segment_keys)
        state, record = _train_segment(cell, task, config, state, clips, batches, start)
        records.append(_as_numpy(record))
        checkpoints.append(_as_numpy(_checkpoint(cell, task, state[0], eval_batch, lags)))
    run = TrainingRun(tuple(labels), seeds, tuple(clip_norms), task, cell, config, thresholds,
                      np.arange(0, config.num_steps + 1, config.eval_every),
                      jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=2), *records),
                      jax.tree_util.tree_map(lambda *a: np.stack(a, axis=2), *checkpoints),
                      _as_numpy(params), _as_numpy(state[0]))
    _warn_diverged(run)
    return run


def train(cell, task, initializers=EXPERIMENT_INITIALIZERS, *, seeds=1, config: TrainConfig = TrainConfig(),
          key=None, input_init="lecun_normal", bias_init="zeros",
          thresholds: metrics.Thresholds = metrics.Thresholds(), progress: bool | None = None) -> TrainingRun:
    """Train ``cell`` + a linear read-out on ``task`` once per recurrent initializer (and seed).

    Args:
        cell: a gradscope cell or adapter with ``input_size == task.input_size``.
        task: :class:`AddingProblem` or :class:`CopyMemory` (see :func:`make_task`).
        initializers: names, ``(name, options)`` pairs, callables, or a dict label -> spec.
        seeds: a count or explicit ints.
        config: optimizer, steps, batch sizes, clipping (:class:`TrainConfig`).
        key: the experiment's PRNG key (default ``jax.random.key(0)``); same key, same result.
        input_init: fixed initializers of the input kernel and biases.
        bias_init: fixed initializers of the input kernel and biases.
        thresholds: thresholds of the spectra summaries (horizon, verdict).
        progress: show a progress bar (default: only on a terminal).

    Returns:
        :class:`TrainingRun` with arrays ``[initializers, seeds, ...]``.
    """
    labels, inits = labelled_initializers(initializers)
    return train_settings(cell, task, labels, inits, [config.clip_norm] * len(labels), seeds=seeds, config=config,
                          key=key, input_init=input_init, bias_init=bias_init, thresholds=thresholds,
                          progress=progress)


def _warn_diverged(run: TrainingRun) -> None:
    bad = np.argwhere(~np.isfinite(run.record.loss).all(axis=-1))
    if bad.size:
        cases = ", ".join(f"{run.labels[i]} seed {run.seeds[j]}" for i, j in bad[:8])
        warnings.warn(f"training diverged (loss became inf/NaN) for {len(bad)} run(s) ({cases}); their final "
                      "loss is NaN. Lower the learning rate or clip the gradient norm", RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, repr=False)
class TrainingRun(Readable):
    """Everything recorded while training one model per (setting, seed).

    Attributes:
        labels: one label per setting (initializer name, or clipping threshold).
        seeds: the integer seeds.
        clip_norms: the clipping threshold of each setting (``None``: no clipping).
        task: the task trained on.
        cell: the cell trained.
        config: the :class:`TrainConfig`.
        thresholds: thresholds of the spectra summaries.
        steps: ``[K]`` checkpoint steps ``0, eval_every, ..., num_steps``.
        record: :class:`StepRecord` of NumPy arrays ``[settings, seeds, num_steps]``.
        checkpoints: :class:`Checkpoint` of arrays ``[settings, seeds, K, ...]``:
            ``eval_loss [.., K]``, ``hidden_grad_norm [.., K, T]`` (entry t-1 is
            ``||dl/dh_t||``) and ``spectra`` (lags ``[.., K, lags, n]``).
        initial_params: :class:`ReadoutParams`, every leaf ``[settings, seeds, ...]``, before training.
        final_params: the same after training.
    """

    labels: tuple
    seeds: tuple
    clip_norms: tuple
    task: Any
    cell: Any
    config: TrainConfig
    thresholds: metrics.Thresholds
    steps: np.ndarray
    record: StepRecord
    checkpoints: Checkpoint
    initial_params: ReadoutParams
    final_params: ReadoutParams

    @property
    def spectra(self) -> Spectra:
        """Spectra at every checkpoint, ``[settings, seeds, K, lags, n]``."""
        return self.checkpoints.spectra

    @property
    def final_loss(self) -> np.ndarray:
        """Evaluation loss after training, ``[settings, seeds]`` (NaN if diverged)."""
        return np.asarray(self.checkpoints.eval_loss[..., -1], np.float64)

    def summary(self, checkpoint: int = 0) -> metrics.Summary:
        """Rates, horizon and verdict of the cell at checkpoint index ``checkpoint`` (0: at init)."""
        spectra = jax.tree_util.tree_map(lambda a: a[:, :, checkpoint], self.spectra)
        return spectra.summary(self.thresholds)

    def clipped_fraction(self) -> np.ndarray:
        """Fraction of steps whose raw gradient norm exceeded the threshold, ``[settings, seeds]``."""
        clip = np.asarray([np.inf if c is None else c for c in self.clip_norms])[:, None, None]
        return np.mean(np.asarray(self.record.grad_norm) > clip, axis=-1)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (setting, seed): diagnostics at init, outcome of training.

        Columns: ``init`` (the setting's label), ``seed``, ``clip_norm``, ``rate_at_init``,
        ``rms_rate_at_init``, ``horizon_at_init``, ``verdict_at_init`` (:meth:`gradscope.metrics.Summary.columns`
        at init), ``final_loss``, ``loss_ratio`` (final loss / task baseline), ``clipped_fraction``, ``diverged``.
        """
        summary = self.summary(0)
        grid = np.meshgrid(np.arange(len(self.labels)), self.seeds, indexing="ij")
        flat = lambda a: np.asarray(a, np.float64).ravel()  # noqa: E731
        return pd.DataFrame({
            "init": np.asarray(self.labels, dtype=object)[grid[0]].ravel(),
            "seed": grid[1].ravel(),
            "clip_norm": np.asarray([np.nan if c is None else c for c in self.clip_norms])[grid[0]].ravel(),
            **{f"{name}_at_init": values for name, values in summary.columns().items()},
            "final_loss": flat(self.final_loss),
            "loss_ratio": flat(self.final_loss) / self.task.baseline,
            "clipped_fraction": flat(self.clipped_fraction()),
            "diverged": ~np.isfinite(np.asarray(self.record.loss)).all(axis=-1).ravel(),
        })

    def _headline(self) -> Headline:
        config, task = self.config, self.task
        facts = (f"{task.name} task (lag {task.lag}, T = {task.num_steps}, baseline loss {task.baseline:.4g}), "
                 f"{self.cell!r}",
                 f"{config.num_steps} {config.optimizer} steps at learning rate {config.learning_rate:g}, batch "
                 f"{config.batch_size}, {len(self.labels)} settings x {len(self.seeds)} seeds; table: seed medians")
        grouped = self.to_dataframe().groupby("init", sort=False)
        table = grouped.agg(horizon_at_init=("horizon_at_init", "median"), final_loss=("final_loss", "median"),
                            loss_ratio=("loss_ratio", "median"), diverged=("diverged", "sum")).reset_index()
        table.insert(2, "verdict_at_init", list(grouped["verdict_at_init"].agg(lambda v: "/".join(dict.fromkeys(v)))))
        if any(c is not None for c in self.clip_norms):
            table.insert(1, "clip_norm", [np.nan if c is None else c for c in self.clip_norms])
        return Headline("TrainingRun", facts, table, ("plot_training_curves",))

    def curves_table(self) -> pd.DataFrame:
        """Long table, one row per (setting, seed, step): the :class:`StepRecord` fields."""
        shape = np.shape(self.record.loss)
        grid = np.meshgrid(np.arange(shape[0]), self.seeds, np.arange(shape[2]), indexing="ij")
        columns = {"init": np.asarray(self.labels, dtype=object)[grid[0]].ravel(), "seed": grid[1].ravel(),
                   "step": grid[2].ravel()}
        columns.update({name: np.asarray(v, np.float64).ravel() for name, v in self.record._asdict().items()})
        return pd.DataFrame(columns)

    def checkpoint_table(self) -> pd.DataFrame:
        """Long table, one row per (setting, seed, checkpoint): eval loss and the spectra summary
        (:meth:`gradscope.metrics.Summary.columns`: rate, rms_rate, horizon, verdict)."""
        summary = self.spectra.summary(self.thresholds)
        grid = np.meshgrid(np.arange(len(self.labels)), self.seeds, self.steps, indexing="ij")
        return pd.DataFrame({
            "init": np.asarray(self.labels, dtype=object)[grid[0]].ravel(), "seed": grid[1].ravel(),
            "step": grid[2].ravel(),
            "eval_loss": np.asarray(self.checkpoints.eval_loss, np.float64).ravel(),
            **summary.columns(),
        })

    def hidden_grad_table(self) -> pd.DataFrame:
        """Long table, one row per (setting, seed, checkpoint, t): ``grad_norm`` = ``||dl/dh_t||``."""
        values = np.asarray(self.checkpoints.hidden_grad_norm, np.float64)
        grid = np.meshgrid(np.arange(values.shape[0]), self.seeds, self.steps, np.arange(1, values.shape[-1] + 1),
                           indexing="ij")
        return pd.DataFrame({"init": np.asarray(self.labels, dtype=object)[grid[0]].ravel(),
                             "seed": grid[1].ravel(), "step": grid[2].ravel(), "t": grid[3].ravel(),
                             "grad_norm": values.ravel()})


# ---------------------------------------------------------------------------------------------
# Does the horizon at initialization predict learning?
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, repr=False)
class HorizonExperiment(Readable):
    """Training runs at several lags, and whether the horizon at init predicted their outcome.

    A run is *predicted* to learn when, at initialization, its memory horizon
    reaches the task's lag (``horizon_at_init >= lag``: the gradient from the
    read-out still has ``sigma_max`` above ``thresholds.horizon`` that far back) and
    its verdict is not ``"exploding"`` (nor ``"non-finite"``); it *learned* when its
    final evaluation loss is at most ``success_ratio`` times the task's baseline.

    Attributes:
        lags: the task lags.
        runs: one :class:`TrainingRun` per lag.
        success_ratio: the "learned" criterion.
    """

    lags: tuple
    runs: tuple
    success_ratio: float

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (lag, init, seed): :meth:`TrainingRun.to_dataframe` columns plus ``lag``,
        ``num_steps``, ``predicted``, ``learned`` and ``agree``."""
        tables = []
        for lag, run in zip(self.lags, self.runs):
            table = run.to_dataframe()
            table.insert(0, "num_steps", run.task.num_steps)
            table.insert(0, "lag", lag)
            table["predicted"] = (table["horizon_at_init"] >= lag) & table["verdict_at_init"].isin(
                ["vanishing", "slowly vanishing", "stable"])
            table["learned"] = table["loss_ratio"] <= self.success_ratio
            table["agree"] = table["predicted"] == table["learned"]
            tables.append(table)
        return pd.concat(tables, ignore_index=True)

    def outcome_table(self) -> pd.DataFrame:
        """Headline pivot: rows initializers, columns lags, entries 'learned/predicted' counts over seeds."""
        counts = self.to_dataframe().groupby(["init", "lag"], sort=False).agg(
            learned=("learned", "sum"), predicted=("predicted", "sum"), runs=("learned", "size"))
        text = counts.apply(lambda r: f"{r.learned}/{r.runs} learned, {r.predicted}/{r.runs} predicted", axis=1)
        return text.unstack("lag")

    def agreement(self) -> float:
        """Fraction of runs where the prediction matched the outcome."""
        return float(self.to_dataframe()["agree"].mean())

    def _headline(self) -> Headline:
        table = self.to_dataframe()
        facts = (f"{self.runs[0].task.name} task at lags {list(self.lags)}, {self.runs[0].cell!r}; learned: final "
                 f"loss <= {self.success_ratio:g} x baseline",
                 f"the horizon at init predicted the outcome of {int(table['agree'].sum())} of {len(table)} runs "
                 f"({self.agreement():.0%})")
        outcome = self.outcome_table()
        outcome.columns = [f"lag {lag}" for lag in outcome.columns]
        return Headline("HorizonExperiment", facts, outcome.reset_index(), ("plot_outcome_grid",))


def horizon_experiment(cell, task: str = "adding", lags=(5, 10, 20), initializers=EXPERIMENT_INITIALIZERS, *,
                       seeds=1, config: TrainConfig = TrainConfig(), key=None, success_ratio: float = 0.2,
                       task_options: dict | None = None, input_init="lecun_normal", bias_init="zeros",
                       thresholds: metrics.Thresholds = metrics.Thresholds(),
                       progress: bool | None = None) -> HorizonExperiment:
    """Train every initializer at every lag; compare the horizon at init with what was learned.

    Args:
        cell: a cell with ``input_size`` equal to the task's (2 for adding, K + 2 for copy).
        task: ``"adding"`` or ``"copy"``; built by :func:`make_task` at each lag.
        lags: the task lags (see :func:`make_task`).
        initializers: as for :func:`train`.
        seeds: a count or explicit ints.
        config: :class:`TrainConfig`.
        key: the experiment's PRNG key; each lag uses the same key (the same
            initial parameters for every lag).
        success_ratio: a run learned when final loss <= success_ratio * baseline.
        task_options: options for :class:`CopyMemory`.
        input_init: as for :func:`train`.
        bias_init: as for :func:`train`.
        thresholds: as for :func:`train`.
        progress: as for :func:`train`.

    Returns:
        :class:`HorizonExperiment`.
    """
    runs = []
    for lag in tqdm(tuple(lags), desc="lags", disable=(None if progress is None else not progress)):
        runs.append(train(cell, make_task(task, lag, **(task_options or {})), initializers, seeds=seeds,
                          config=config, key=key, input_init=input_init, bias_init=bias_init,
                          thresholds=thresholds, progress=progress))
    return HorizonExperiment(tuple(int(lag) for lag in lags), tuple(runs), float(success_ratio))
