r"""Shape buckets: one compiled analysis serves every horizon T in a bucket, with exact results.

A compiled analysis is specialised to the shapes of its inputs and to its kept lags,
so an eager call at a new T compiles again, which at small sizes costs far more than
the analysis (about 0.4 s against 0.02 s at hidden 64, T = 100). Bucketing rounds T
up to a *bucket length* B (:func:`bucket_length`) and the number of kept lags up to a
bucket size, so that every T in a bucket runs the same compiled program:

* **Masked steps.** The inputs get ``B - T`` extra steps that leave the state as it
  is, ``h_t = h_{t-1}``: the states are unrolled with :class:`MaskedStep`, which keeps
  the state where a step is inactive. A backward analysis pads at the *front*: the
  real steps start from ``h0`` as before and end at the last step, so every product
  ``dh_T/dh_{T-k}``, ``k <= T``, is the unpadded one. A forward analysis pads at the
  *back*, which leaves every ``dh_k/dh_0``, ``k <= T``, unchanged.
* **Lags as data.** The kept lags reach the sweep as an int array (not a static
  argument), padded with repeats of the last lag to the bucket size of their count
  (:func:`padded_lags`). The sweep stops at the last requested lag, so it never
  enters a padded step; it differentiates the plain step (:class:`ActiveStep`), and
  the padded entries, copies of the last product, are dropped (:func:`trim`).

So the bucketed result is the unbucketed one: the same states and products, formed by
the same operations, decomposed by the same SVD routine. It is a different compiled
program, though (a loop over the gaps between kept lags, where the unbucketed sweep
scans every lag), and XLA may round a fused operation differently (an LSTM's
``f * c + i * g`` once it feeds a ``jnp.where``, a product's norm): results agree within
float rounding (1e-6 relative in float32), the agreement the pipelined and one-program
paths also have. The tests check both against the unbucketed results and against an
independent reference.

The padded steps repeat the first real input (backward; the last one forward) and,
with ``untied=True``, that step's parameters, so the unroll evaluates the step (whose
value the mask then discards) on values of the right kind. Blocks (``block=``) and
batched inputs pad the same way (the mask gets the batch axes of the inputs), and the
CPU pipeline runs bucketed inputs with the same two steps: its compiled chunk
programs depend only on the bucketed sizes. One program serves every T of a bucket
whose kept-lag count falls in one bucket too: with ``lags="all"`` that is every T of
the bucket; ``"log"`` and explicit lags keep a count that varies little with T.

**Cost.** Bucket sizes grow by a factor of at most :data:`GROWTH` (T itself up to
:data:`EXACT_UP_TO`, then 10, 12, 14, 16, 20, 24, 28, 32, 40, ...: four sizes per
octave), so the unroll covers at most 25% more steps and at most 25% more SVDs are
taken (the repeated lags): an analysis does at most 1.25x the work (about 1.1x on
average over T), and no more sweep steps. Under ``jit``, ``vmap`` or ``grad`` the
inputs are traced, the enclosing transformation decides what compiles, and
bucketing is skipped (it could only add work).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core import _checks, engine, pipeline
from gradscope.core._lapack import lapack_thread_limit

__all__ = ["AUTO_MAX_WORK", "ActiveStep", "EXACT_UP_TO", "GROWTH", "MaskedStep", "bucket_length", "bucketed_sweep",
           "padded_lags", "trim", "use_buckets"]

GROWTH = 1.25
"""Largest ratio of a bucket length to the length it holds (and of consecutive bucket lengths)."""

EXACT_UP_TO = 8
"""Lengths up to this are their own bucket (padding a handful of steps would cost more than it saves)."""

AUTO_MAX_WORK = 1e8
"""With ``bucket=None`` an analysis is bucketed when its SVD work, ``bucketed lags * n^3``, is below this:
there a compilation (0.3-0.6 s) costs more than the analysis, and the at most 25% padding costs
milliseconds. Larger analyses keep their exact shapes (and pass ``bucket=True`` to bucket)."""


def bucket_length(length: int) -> int:
    """The bucket a length falls in: ``length`` itself up to :data:`EXACT_UP_TO`, then the
    smallest ``m * 2**e >= length`` with ``m`` in 5..8 (10, 12, 14, 16, 20, 24, 28, 32, 40, ...):
    ``bucket_length(200) == bucket_length(224) == 224``, ``bucket_length(225) == 256``.
    """
    if length <= EXACT_UP_TO:
        return int(length)
    scale = 2 ** ((int(length) - 1).bit_length() - 3)  # 4 * scale < length <= 8 * scale
    return -(-int(length) // scale) * scale


def use_buckets(bucket, inputs, num_lags: int, state_size: int) -> bool:
    """Whether an analysis is bucketed: ``bucket`` True/False, or None for automatic (:data:`AUTO_MAX_WORK`).

    Never when ``inputs`` are traced (inside ``jit``/``vmap``/``grad``).

    Raises:
        TypeError: ``bucket`` is not None, True or False.
    """
    if bucket is not None and not isinstance(bucket, bool):
        raise TypeError(f"bucket must be True, False or None (automatic), got {bucket!r}")
    if bucket is False or not _checks.is_concrete(inputs):
        return False
    return bucket or bucket_length(num_lags) * float(state_size) ** 3 < AUTO_MAX_WORK


@dataclasses.dataclass(frozen=True)
class MaskedStep:
    """``step(params, h, (x, active))``: the wrapped step where ``active``, else ``h`` unchanged.

    An inactive step leaves the state exactly as it is (its Jacobian is the identity).
    Bucketed analyses unroll with it; equal wrapped steps compare equal, so they share
    compiled programs.

    Attributes:
        step: the step ``step(params, h, x) -> h_next`` being padded.
    """

    step: Callable

    def __call__(self, params, h, inputs):
        """One step, or none where ``inputs[1]`` (a bool) is False."""
        x, active = inputs
        return jax.tree_util.tree_map(lambda new, old: jnp.where(active, new, old), self.step(params, h, x), h)


@dataclasses.dataclass(frozen=True)
class ActiveStep:
    """``step(params, h, (x, active))``: the wrapped step, whatever ``active`` says.

    A bucketed sweep differentiates this one: it only visits active steps (every kept
    lag is at most T), where it equals :class:`MaskedStep`, and its derivatives are then
    formed by exactly the operations of the unpadded sweep (a ``jnp.where`` in the
    differentiated step changes how XLA fuses the forward direction's products, and
    with it their rounding).

    Attributes:
        step: the step ``step(params, h, x) -> h_next`` being padded.
    """

    step: Callable

    def __call__(self, params, h, inputs):
        """One step of the wrapped step on ``inputs[0]``."""
        return self.step(params, h, inputs[0])


def padded_lags(lags: tuple[int, ...]) -> np.ndarray:
    """``lags`` as int32, padded with repeats of the last one to ``bucket_length(len(lags))`` entries."""
    size = bucket_length(len(lags))
    return np.asarray(list(lags) + [lags[-1]] * (size - len(lags)), np.int32)


def _pad_time(tree, axis: int, extra: int, front: bool):
    """Every leaf with ``extra`` copies of its first (``front``) or last slice along ``axis`` added (NumPy:
    padding on the host compiles nothing)."""

    def pad(leaf):
        leaf = np.asarray(leaf)
        edge = np.take(leaf, [0 if front else -1], axis=axis)
        copies = np.repeat(edge, extra, axis=axis)
        return np.concatenate([copies, leaf] if front else [leaf, copies], axis=axis)

    return jax.tree_util.tree_map(pad, tree)


def _padded_inputs(params, xs, num_steps: int, batch_axes: int, direction: str, untied: bool):
    """``(params, (xs, active))`` over ``bucket_length(num_steps)`` steps; see the module docstring."""
    extra = bucket_length(num_steps) - num_steps
    front = direction == "backward"
    active = np.arange(num_steps + extra) >= extra if front else np.arange(num_steps + extra) < num_steps
    batch_shape = np.shape(jax.tree_util.tree_leaves(xs)[0])[:batch_axes]
    active = np.broadcast_to(active, (*batch_shape, active.size))
    if untied:
        params = _pad_time(params, 0, extra, front)
    return params, (_pad_time(xs, batch_axes, extra, front), active)


def trim(out: engine.SweepOutput, num_lags: int) -> engine.SweepOutput:
    """The first ``num_lags`` lag entries of a bucketed sweep's output (sliced on the host and put back with
    ``device_put``: neither compiles anything, where a slice or ``jnp.asarray`` would at every new shape)."""
    first = lambda a: jax.device_put(np.asarray(a)[..., :num_lags])  # noqa: E731
    log_sv = jax.device_put(np.asarray(out.log_singular_values)[..., :num_lags, :])
    return engine.SweepOutput(log_sv, first(out.log_frobenius), first(out.log_floor), out.finite)


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("step", "direction", "untied", "batch_axes", "chunk", "rows",
                                             "columns"))
def _bucketed_core(step, params, xs, h0, lags, direction, untied, batch_axes, chunk, rows, columns):
    """The one-program analysis of padded inputs ``(x, active)``, with the lags as a traced array (what
    lets one program serve a bucket): unrolled with :class:`MaskedStep`, swept with :class:`ActiveStep`."""

    def one(x):
        states = engine.unrolled_states(MaskedStep(step), params, x, h0, untied)[1]
        flat_step = engine.flatten_step(ActiveStep(step), h0)[0]
        if chunk is None:
            return engine.sweep(flat_step, params, states, x, lags, direction, untied, rows, columns)
        return engine.sweep_chunked(flat_step, params, states, x, lags, direction, untied, chunk, rows, columns)

    return engine.over_batch_axes(one, batch_axes)(xs)


def bucketed_sweep(step, params, xs, h0, lags: tuple[int, ...], num_steps: int, direction: str = "backward",
                   untied: bool = False, batch_axes: int = 0, chunk: int | None = None, block=(None, None), *,
                   pipelined: bool = False, progress: bool | None = None) -> engine.SweepOutput:
    """The sweep of ``lags`` on inputs padded to their bucket, trimmed back to ``lags``.

    Args:
        step: the step ``step(params, h, x)`` (hashable, as for :func:`gradscope.core.engine.sweep`).
        params: checked, cast parameters (with a leading time axis of length ``num_steps`` if ``untied``).
        xs: checked, cast inputs with ``batch_axes`` leading batch axes, then time.
        h0: the initial state pytree.
        lags: the requested lags, sorted ints in ``[0, num_steps]``.
        num_steps: the horizon T of ``xs``.
        direction: ``"backward"`` or ``"forward"``.
        untied: per-step parameters.
        batch_axes: leading batch axes of ``xs``.
        chunk: as in :func:`gradscope.jacobian_spectra`.
        block: ``(rows, columns)``: the flat state indices of a block's carried rows and of its
            columns kept in the SVD (None: all), as :func:`gradscope.core.engine.sweep` takes them.
        pipelined: run the CPU pipeline (:func:`gradscope.core.pipeline.pipelined_sweep`)
            rather than one compiled program.
        progress: progress bar of the pipeline.

    Returns:
        :class:`gradscope.core.engine.SweepOutput` at ``lags``, equal to the unbucketed sweep's.
    """
    params, xs = _padded_inputs(params, xs, num_steps, batch_axes, direction, untied)
    padded = padded_lags(lags)
    rows, columns = (None if b is None else tuple(int(i) for i in b) for b in block)
    if pipelined:
        out = pipeline.pipelined_sweep(ActiveStep(step), params, xs, h0, tuple(padded.tolist()), direction, untied,
                                       batch_axes, rows, columns, chunk, progress=progress,
                                       unroll_step=MaskedStep(step))
    else:
        out = _bucketed_core(step, params, xs, h0, padded, direction, untied, batch_axes, chunk, rows, columns)
    return trim(out, len(lags))
