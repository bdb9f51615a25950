r"""The pure-JAX core: unroll a step function, sweep its Jacobian products in log domain.

Notation (as on the concepts page of the docs): ``h_t = f(theta, h_{t-1}, x_t)``, ``J_t = dh_t/dh_{t-1}``.

* backward (gradient) product for lag k: ``P_k = dh_T/dh_{T-k} = J_T ... J_{T-k+1}``,
  grown one factor per step as ``P_k = P_{k-1} J_{T-k+1}``. Each row of ``P J`` is a
  vector-Jacobian product, so a ``vmap`` of one ``jax.vjp`` per step forms it
  without materialising ``J``.
* forward (perturbation) product ``F_k = dh_k/dh_0 = J_k ... J_1``; we carry
  ``F_k^T = F_{k-1}^T J_k^T`` whose rows are Jacobian-vector products.

Both are kept as ``exp(s_k) Q_k`` with ``||Q_k||_F = 1`` renormalised every step,
so ``s_k = log ||P_k||_F`` exactly and no float32 product over- or underflows.
Singular values are taken (``svd(Q_k)``) only at the kept lags, inside the
sweep, so memory is O(n^2 + lags * n) plus the O(T * n) unrolled states.

Everything here is traceable: jit it, vmap it over seeds, batches, initializers, and
differentiate it (forward or reverse mode). The sweep (:func:`scan_lags`) is one
``lax.scan`` over the lags 1..K with a trip count known when tracing; the kept lags are
a static schedule (:func:`step_plan`), and the singular values are taken under
``lax.cond`` at the kept lags only. The gradient of a singular value is
``u_i^T dP v_i``, well defined where sigma_i is simple; for a repeated value only
symmetric functions of the cluster (their sum, say) have a derivative, and the
gradient returned is that of one choice of singular vectors (finite, never NaN).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["StepPlan", "SweepOutput", "apply_step_jacobian", "block_output", "flatten_step", "initial_carry",
           "initial_product", "lag_gaps", "log_norm", "log_spectrum", "over_batch_axes", "product_stepper",
           "relative_resolution", "scan_lags", "step_plan", "sweep", "sweep_chunked", "sweep_log_norms",
           "sweep_products", "unroll", "unrolled_states"]

FlatStep = Callable[[object, jax.Array, object], jax.Array]


class SweepOutput(NamedTuple):
    """Raw per-lag output of :func:`sweep`.

    Attributes:
        log_singular_values: ``[lags, n]`` natural logs, descending; entries below the
            resolution floor are clamped to it.
        log_frobenius: ``[lags]`` exact ``log ||P_k||_F``.
        log_floor: ``[lags]`` log of the smallest singular value the dtype resolves
            at that lag (``log sigma_max + log relative_resolution``).
        finite: scalar bool, False if any state or product became inf/NaN.
    """

    log_singular_values: jax.Array
    log_frobenius: jax.Array
    log_floor: jax.Array
    finite: jax.Array


def flatten_step(step, h0) -> tuple[FlatStep, jax.Array, Callable]:
    """Wrap ``step(params, h, x)`` on a pytree state into one on a flat vector."""
    flat_h0, unravel = ravel_pytree(h0)

    def flat_step(params, v, x):
        return ravel_pytree(step(params, unravel(v), x))[0]

    return flat_step, flat_h0, unravel


def _params_at(params, i, untied: bool):
    return jax.tree_util.tree_map(lambda p: p[i], params) if untied else params


def unrolled_states(step, params, xs, h0, untied: bool = False) -> tuple[FlatStep, jax.Array]:
    """``(flat_step, states)``: the step on flat vectors and the unrolled states h_0..h_{T-1} from ``h0``."""
    flat_step, v0, _ = flatten_step(step, h0)
    return flat_step, unroll(flat_step, params, v0, xs, untied)[0]


def over_batch_axes(fn: Callable, batch_axes: int) -> Callable:
    """``fn`` vmapped over ``batch_axes`` leading axes of every argument (``fn`` itself for 0)."""
    for _ in range(batch_axes):
        fn = jax.vmap(fn)
    return fn


def unroll(flat_step: FlatStep, params, v0: jax.Array, xs, untied: bool = False):
    """Run the recurrence; return ``(states, h_T)`` with ``states[t] = h_t`` for t = 0..T-1."""

    def body(v, inputs):
        step_params, x = inputs if untied else (params, inputs)
        return flat_step(step_params, v, x), v

    inputs = (params, xs) if untied else xs
    v_last, states = jax.lax.scan(body, v0, inputs)
    return states, v_last


def apply_step_jacobian(flat_step, step_params, h, x, rows, direction):
    """Rows of ``Q J`` (backward, VJPs) or of ``Q J^T`` (forward, JVPs) at one step.

    ``J`` is the Jacobian of ``flat_step(step_params, ., x)`` at the flat state ``h``;
    ``rows`` is ``[m, n]`` (any number of rows); ``direction`` is ``"backward"`` or
    ``"forward"``. J itself is never formed.
    """
    f = lambda v: flat_step(step_params, v, x)  # noqa: E731
    if direction == "backward":
        _, pullback = jax.vjp(f, h)
        return jax.vmap(lambda r: pullback(r)[0])(rows)
    _, pushforward = jax.linearize(f, h)
    return jax.vmap(pushforward)(rows)


def log_norm(a: jax.Array, axis=None) -> tuple[jax.Array, jax.Array]:
    """``(norm, log norm)`` of ``a`` over ``axis`` (all axes by default), differentiable everywhere.

    A zero ``a`` has log norm ``-inf`` and norm 1 (so dividing by it is safe), with
    zero gradients instead of the NaN that differentiating ``sqrt`` and ``log`` at 0 gives.
    """
    squares = jnp.sum(jnp.square(a), axis=axis)
    nonzero = squares > 0
    safe = jnp.where(nonzero, squares, 1.0)
    return jnp.sqrt(safe), jnp.where(nonzero, 0.5 * jnp.log(safe), -jnp.inf)


def relative_resolution(n: int, dtype) -> float:
    """Smallest ``sigma_i / sigma_max`` that an n x n float product resolves: ``n * eps``.

    Rounding leaves an absolute error of order ``eps * sigma_max`` on every singular
    value of the accumulated product, so ``sigma_i`` is only known relative to that.
    Checked against float64 for tanh RNN, GRU and LSTM cells (n = 32..64, up to 200
    steps, contracting and chaotic weights): float32 values above this floor agree
    to better than 0.015 in log; 2-3 nats below it errors reach 0.05-0.4, so the
    floor keeps a safety factor of about e^2.
    """
    return float(n * np.finfo(dtype).eps)


def lag_gaps(lags) -> np.ndarray | jax.Array:
    """Steps between consecutive kept lags (the first counted from lag 0): what a sweep scans over.

    ``lags`` is a sequence of ints (the gaps come back as a NumPy array) or a JAX int
    array, which may be traced: one compiled sweep then serves every lag set of that
    length (see :mod:`gradscope.core.buckets`).
    """
    if isinstance(lags, jax.Array):
        return jnp.diff(lags.astype(jnp.int32), prepend=0)
    return np.diff(np.concatenate([[0], np.asarray(lags, dtype=np.int32)])).astype(np.int32)


def block_output(rows, log_scale, columns=None):
    """Clamped log singular values, exact log Frobenius norm and floor of the kept block of ``Q``.

    ``rows`` is ``Q`` (``[..., m, n]``, leading axes batch), ``log_scale`` its ``[...]`` log
    scale, ``columns`` the flat state indices kept in the SVD (None: all). The resolution
    floor follows from the block's shape (:func:`relative_resolution` of its larger side).
    """
    block = rows if columns is None else rows[..., np.asarray(columns)]
    log_rel = float(np.log(relative_resolution(max(block.shape[-2:]), block.dtype)))
    log_sv, floor = log_spectrum(jnp.linalg.svd(block, compute_uv=False), log_scale, log_rel)
    return log_sv, log_scale + log_norm(block, axis=(-2, -1))[1], floor


def initial_carry(states, start_rows: np.ndarray | None = None):
    """The sweep's starting carry ``(Q_0, s_0, finite, k=0)``; ``finite`` says whether the states are."""
    rows, log_scale = initial_product(states.shape[1], states.dtype, start_rows)
    return rows, log_scale, jnp.all(jnp.isfinite(states)), jnp.int32(0)


def sweep_products(advance: Callable, carry, gaps):
    """Advance ``carry`` (see :func:`initial_carry`) through ``gaps`` and return the products it passes.

    ``advance`` is a :func:`product_stepper`; ``gaps[i]`` steps lead to the i-th kept
    lag (a gap of 0 repeats the last product). Returns ``(carry, (Q [len(gaps), m, n],
    log_scale [len(gaps)]))``: the normalised product and its log scale at each kept lag.

    ``gaps`` may be traced, so one compiled program serves every chunk of the CPU
    pipeline (:mod:`gradscope.pipeline`, which runs eagerly); the loop's trip count is
    then dynamic, which reverse-mode differentiation does not support. Traced analyses
    use :func:`scan_lags`.
    """

    def segment(carry, gap):
        carry = _advance_by(advance, carry, gap)
        return carry, carry[:2]

    return jax.lax.scan(segment, carry, gaps)


def _advance_by(advance, carry, gap):
    """The carry ``gap`` lags further on."""
    rows, log_scale, finite, k = carry
    rows, log_scale, finite = jax.lax.fori_loop(k + 1, k + gap + 1, advance, (rows, log_scale, finite))
    return rows, log_scale, finite, k + gap


class StepPlan(NamedTuple):
    """Per-step schedule of :func:`scan_lags` (NumPy arrays over steps k = 1..K; see :func:`step_plan`).

    Attributes:
        lag: the lag k each step reaches.
        slot: the chunk-buffer slot the step writes its product to.
        flush: True where the step completes a chunk (its singular values are taken).
        offset: the kept-lag index of the first lag of the step's chunk.
        num_kept: how many positive lags are kept.
        lag_zero: whether lag 0 (the identity) is kept too.
    """

    lag: np.ndarray
    slot: np.ndarray
    flush: np.ndarray
    offset: np.ndarray
    num_kept: int
    lag_zero: bool


def step_plan(lags: tuple[int, ...], chunk: int = 1, num_steps: int = 0) -> StepPlan:
    """The static schedule of a sweep over k = 1..K that keeps the positive ``lags`` in chunks of ``chunk``.

    K is the largest lag (or ``num_steps`` if larger). Every step knows the buffer slot
    its product goes to (the slot of the next kept lag, so a step between kept lags
    writes a slot that the kept lag overwrites), whether the step completes a chunk
    (the chunk's singular values are then taken) and where that chunk's rows go.
    """
    positive = np.asarray([lag for lag in lags if lag > 0], np.int64)
    steps = np.arange(1, max(int(positive[-1]) if positive.size else 0, int(num_steps)) + 1)
    index = np.searchsorted(positive, steps)  # the next kept lag at or after each step
    slot = index % chunk
    flush = np.isin(steps, positive) & ((slot == chunk - 1) | (index == positive.size - 1))
    return StepPlan(steps.astype(np.int32), slot.astype(np.int32), flush, (index - slot).astype(np.int32),
                    int(positive.size), bool(len(lags) and lags[0] == 0))


def scan_lags(advance: Callable, carry, lags: tuple[int, ...], chunk: int = 1, columns=None, num_steps: int = 0):
    """Run ``advance`` through every lag k = 1..K; return the final carry and :func:`block_output` at ``lags``.

    ``advance(k, carry) -> carry`` grows the product by lag k; ``carry[0]`` and
    ``carry[1]`` are the normalised product ``Q_k`` and its log scale (more entries ride
    along). The loop is one ``lax.scan`` with a static trip count (K = the largest lag,
    or ``num_steps`` if larger), so it is reverse-differentiable. Each step copies its
    product into a buffer of ``chunk`` slots; when a chunk of kept lags is complete its
    singular values are taken in one batched call (under ``lax.cond``, so steps between
    kept lags cost only the product update). Lag 0 (if kept) is the starting carry.
    Under reverse-mode differentiation the singular-value decomposition's residuals
    are stored at every step (zeros where none is taken): about ``2 chunk n^2`` floats
    per step besides the product's own ``n^2``.

    Returns:
        ``(carry, (log_sv [L, ...], log_frobenius [L], floor [L]))`` for the L kept lags.
    """
    plan = step_plan(lags, chunk, num_steps)
    rows, log_scale = carry[0], carry[1]
    buffer = (jnp.zeros((chunk, *rows.shape), rows.dtype), jnp.zeros((chunk, *log_scale.shape), log_scale.dtype))
    kept = jax.tree_util.tree_map(lambda a: jnp.zeros((-(-plan.num_kept // chunk) * chunk, *a.shape[1:]), a.dtype),
                                  jax.eval_shape(lambda b: block_output(*b, columns), buffer))

    def body(state, step):
        carry, buffer, kept = state
        k, slot, flush, offset = step
        carry = advance(k, carry)
        buffer = (buffer[0].at[slot].set(carry[0]), buffer[1].at[slot].set(carry[1]))
        write = lambda out: jax.tree_util.tree_map(  # noqa: E731
            lambda a, v: jax.lax.dynamic_update_slice_in_dim(a, v, offset, 0), out, block_output(*buffer, columns))
        if plan.num_kept:  # (no SVD at all when no lag is kept, as in a norms-only profile)
            kept = jax.lax.cond(flush, write, lambda out: out, kept)
        return (carry, buffer, kept), None

    (carry, _, kept), _ = jax.lax.scan(body, (carry, buffer, kept), (plan.lag, plan.slot, plan.flush, plan.offset))
    kept = tuple(a[:plan.num_kept] for a in kept)
    if plan.lag_zero:
        kept = tuple(jnp.concatenate([first[None], a]) for first, a in zip(block_output(rows, log_scale, columns), kept))
    return carry, kept


def sweep_log_norms(advance: Callable, carry, lags: tuple[int, ...]):
    """Run ``advance`` through lags 1..max(lags); return the final carry and the log scales at ``lags``.

    The norms-only sweep: no singular values, only ``s_k = log ||P_k||_F`` (exact, the
    carry being renormalised every step), as one ``lax.scan`` with a static trip count.
    ``carry`` is as for :func:`scan_lags`; lag 0 gives the starting log scale.
    """

    def body(carry, k):
        carry = advance(k, carry)
        return carry, carry[1]

    final, scales = jax.lax.scan(body, carry, np.arange(1, max(lags) + 1, dtype=np.int32))
    return final, jnp.concatenate([carry[1][None], scales])[np.asarray(lags)]


def sweep(flat_step: FlatStep, params, states, xs, lags: tuple[int, ...],
          direction: str = "backward", untied: bool = False,
          start_rows: np.ndarray | None = None, columns: np.ndarray | None = None) -> SweepOutput:
    """Form the products for every lag in ``lags`` (sorted ints in [0, T]) in one sweep.

    ``lags`` may also be a (traced) JAX int array of them, repeats allowed (see :func:`lag_gaps`):
    one compiled program then serves every lag set of that length, but the loop over the
    gaps is not reverse-differentiable (bucketed analyses use it eagerly).

    The sweep walks k = 1..max(lags); between kept lags it only multiplies and
    renormalises, at a kept lag it also takes the singular values (:func:`scan_lags`:
    one scan with a static trip count, so ``jax.grad`` goes through it).

    ``start_rows`` and ``columns`` (flat state indices) restrict the analysis to a
    block of the product: the carried matrix starts as those rows of the identity
    (so only they are propagated), and only ``columns`` enter the SVD. Backward,
    rows index ``h_T`` and columns ``h_{T-k}``; forward (which carries ``F_k^T``),
    rows index ``h_0`` and columns ``h_k``.
    """
    return sweep_chunked(flat_step, params, states, xs, lags, direction, untied, 1, start_rows, columns)


def product_stepper(flat_step: FlatStep, params, states, xs, direction: str = "backward",
                    untied: bool = False) -> Callable:
    """Return ``advance(k, (rows, log_scale, finite))`` that grows the carried product by one lag.

    ``rows`` holds ``Q_{k-1}`` (``P_{k-1} = exp(log_scale) Q_{k-1}``, ``||Q||_F = 1``);
    ``advance`` multiplies in the step Jacobian of lag k (``Q J_{T-k+1}`` backward,
    ``Q J_k^T`` forward), renormalises, and tracks whether everything stayed finite.
    ``rows`` may have any number of rows (n for the full product, a block for top-k).
    It is the body every sweep runs, for use in ``lax.fori_loop``.
    """
    num_steps = states.shape[0]

    def advance(k, carry):
        rows, log_scale, finite = carry
        i = num_steps - k if direction == "backward" else k - 1
        x = jax.tree_util.tree_map(lambda a: a[i], xs)
        rows = apply_step_jacobian(flat_step, _params_at(params, i, untied), states[i], x, rows, direction)
        norm, log_of_norm = log_norm(rows)
        return rows / norm, log_scale + log_of_norm, finite & jnp.isfinite(norm)  # finite norm: finite entries

    return advance


def initial_product(n: int, dtype, start_rows: np.ndarray | None = None) -> tuple[jax.Array, jax.Array]:
    """``(Q_0, s_0)`` for the lag-0 product ``P_0 = I = exp(s_0) Q_0`` with ``||Q_0||_F = 1``.

    With ``start_rows``, only those rows of the identity (a block of ``P_0``).
    """
    eye = jnp.eye(n, dtype=dtype)
    rows = eye if start_rows is None else eye[np.asarray(start_rows)]
    m = rows.shape[0]
    return rows / jnp.sqrt(m).astype(dtype), 0.5 * jnp.log(jnp.asarray(m, dtype))


def log_spectrum(singular_values: jax.Array, log_scale: jax.Array, log_rel: float):
    """``(log sigma clamped at the floor, floor)`` from the singular values of ``Q`` (``[..., n]``).

    ``log_rel`` is ``log relative_resolution(n, dtype)``; ``log_scale`` broadcasts
    against the leading axes. Only values above the floor enter a log, so gradients
    stay finite for values at or below it (a clamped value moves with the floor, that
    is with sigma_max) and for an exactly zero ``Q`` (all ``-inf``, zero gradient).
    """
    top = singular_values[..., :1]
    kept = (top > 0) & (singular_values > top * np.exp(log_rel))
    log_sv = log_scale[..., None] + jnp.log(jnp.where(kept, singular_values, 1.0))  # the log of kept values only
    zero_or_nan = jnp.where(jnp.isnan(top[..., 0]), jnp.nan, -jnp.inf)  # a NaN product must stay detectable
    floor = jnp.where(top[..., 0] > 0, log_sv[..., 0], zero_or_nan) + log_rel
    return jnp.maximum(jnp.where(kept, log_sv, floor[..., None]), floor[..., None]), floor


def sweep_chunked(flat_step: FlatStep, params, states, xs, lags: tuple[int, ...],
                  direction: str = "backward", untied: bool = False, chunk: int = 32,
                  start_rows: np.ndarray | None = None, columns: np.ndarray | None = None) -> SweepOutput:
    """Like :func:`sweep`, but with one batched SVD per ``chunk`` consecutive kept lags.

    The products ``Q_k`` of ``chunk`` kept lags are stored (``chunk * n^2`` floats)
    and their singular values taken by one batched ``svd``; useful where all lags
    are kept and a batched SVD is cheaper than many small calls (accelerators).
    The results equal :func:`sweep`'s (same products, same SVD routine).
    """
    advance = product_stepper(flat_step, params, states, xs, direction, untied)
    if isinstance(lags, jax.Array):
        return _sweep_gaps(advance, initial_carry(states, start_rows), lags, chunk, columns)
    rows, log_scale, finite, _ = initial_carry(states, start_rows)
    (_, _, finite), (log_sv, log_fro, floor) = scan_lags(advance, (rows, log_scale, finite), lags, chunk, columns)
    return SweepOutput(log_sv, log_fro, floor, finite & jnp.all(~jnp.isnan(log_sv)))


def _sweep_gaps(advance: Callable, carry, lags: jax.Array, chunk: int, columns) -> SweepOutput:
    """The sweep for lags given as data (a JAX int array: :mod:`gradscope.core.buckets`).

    It loops over the gaps between kept lags (:func:`sweep_products`), so one compiled
    program serves every lag set of that length; the trip counts being data, it is not
    reverse-differentiable (bucketed analyses run eagerly, never under a transformation).
    """
    gaps = lag_gaps(lags)
    num_chunks = -(-len(gaps) // chunk)
    gaps = jnp.pad(gaps, (0, num_chunks * chunk - len(gaps))).reshape(num_chunks, chunk)

    def one_chunk(carry, chunk_gaps):
        carry, (products, log_scales) = sweep_products(advance, carry, chunk_gaps)
        return carry, block_output(products, log_scales, columns)

    (_, _, finite, _), outputs = jax.lax.scan(one_chunk, carry, gaps)
    log_sv, log_fro, floor = (a.reshape(num_chunks * chunk, *a.shape[2:])[: len(lags)] for a in outputs)
    return SweepOutput(log_sv, log_fro, floor, finite & jnp.all(~jnp.isnan(log_sv)))
