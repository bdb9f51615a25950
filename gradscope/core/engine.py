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

Everything here is traceable: jit it, vmap it over seeds, batches, initializers.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["SweepOutput", "apply_step_jacobian", "block_output", "flatten_step", "initial_carry", "initial_product",
           "lag_gaps", "log_spectrum", "over_batch_axes", "product_stepper", "relative_resolution", "sweep",
           "sweep_chunked", "sweep_products", "unroll", "unrolled_states"]

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


def _renormalise(rows, log_scale, norm):
    safe = jnp.where(norm > 0, norm, 1.0)
    return rows / safe, log_scale + jnp.log(norm)


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
    return log_sv, log_scale + jnp.log(jnp.linalg.norm(block, axis=(-2, -1))), floor


def initial_carry(states, start_rows: np.ndarray | None = None):
    """The sweep's starting carry ``(Q_0, s_0, finite, k=0)``; ``finite`` says whether the states are."""
    rows, log_scale = initial_product(states.shape[1], states.dtype, start_rows)
    return rows, log_scale, jnp.all(jnp.isfinite(states)), jnp.int32(0)


def sweep_products(advance: Callable, carry, gaps):
    """Advance ``carry`` (see :func:`initial_carry`) through ``gaps`` and return the products it passes.

    ``advance`` is a :func:`product_stepper`; ``gaps[i]`` steps lead to the i-th kept
    lag (a gap of 0 repeats the last product). Returns ``(carry, (Q [len(gaps), m, n],
    log_scale [len(gaps)]))``: the normalised product and its log scale at each kept lag.
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


def sweep(flat_step: FlatStep, params, states, xs, lags: tuple[int, ...],
          direction: str = "backward", untied: bool = False,
          start_rows: np.ndarray | None = None, columns: np.ndarray | None = None) -> SweepOutput:
    """Form the products for every lag in ``lags`` (sorted ints in [0, T]) in one sweep.

    ``lags`` may also be a (traced) JAX int array of them, repeats allowed (see :func:`lag_gaps`).

    The sweep walks k = 1..max(lags); between kept lags it only multiplies and
    renormalises, at a kept lag it also takes the singular values.

    ``start_rows`` and ``columns`` (flat state indices) restrict the analysis to a
    block of the product: the carried matrix starts as those rows of the identity
    (so only they are propagated), and only ``columns`` enter the SVD. Backward,
    rows index ``h_T`` and columns ``h_{T-k}``; forward (which carries ``F_k^T``),
    rows index ``h_0`` and columns ``h_k``.
    """
    advance = product_stepper(flat_step, params, states, xs, direction, untied)

    def segment(carry, gap):
        carry = _advance_by(advance, carry, gap)
        return carry, block_output(carry[0], carry[1], columns)

    (_, _, finite, _), (log_sv, log_fro, floor) = jax.lax.scan(segment, initial_carry(states, start_rows),
                                                               lag_gaps(lags))
    return SweepOutput(log_sv, log_fro, floor, finite & jnp.all(~jnp.isnan(log_sv)))


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
        norm = jnp.linalg.norm(rows)
        rows, log_scale = _renormalise(rows, log_scale, norm)
        return rows, log_scale, finite & jnp.isfinite(norm)  # a finite norm means every entry is finite

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
    against the leading axes.
    """
    log_sv = log_scale[..., None] + jnp.log(singular_values)
    floor = log_sv[..., 0] + log_rel
    return jnp.maximum(log_sv, floor[..., None]), floor


def sweep_chunked(flat_step: FlatStep, params, states, xs, lags: tuple[int, ...],
                  direction: str = "backward", untied: bool = False, chunk: int = 32,
                  start_rows: np.ndarray | None = None, columns: np.ndarray | None = None) -> SweepOutput:
    """Like :func:`sweep`, but with one batched SVD per ``chunk`` consecutive kept lags.

    The products ``Q_k`` of ``chunk`` kept lags are stored (``chunk * n^2`` floats)
    and their singular values taken by one batched ``svd``; useful where all lags
    are kept and a batched SVD is cheaper than many small calls (accelerators).
    The results equal :func:`sweep`'s (same products, same SVD routine).
    """
    gaps = lag_gaps(lags)
    num_chunks = -(-len(gaps) // chunk)
    gaps = jnp.pad(gaps, (0, num_chunks * chunk - len(gaps))).reshape(num_chunks, chunk)
    advance = product_stepper(flat_step, params, states, xs, direction, untied)

    def one_chunk(carry, chunk_gaps):
        carry, (products, log_scales) = sweep_products(advance, carry, chunk_gaps)
        return carry, block_output(products, log_scales, columns)

    (_, _, finite, _), (log_sv, log_fro, floor) = jax.lax.scan(one_chunk, initial_carry(states, start_rows), gaps)
    flat = lambda a: a.reshape(num_chunks * chunk, *a.shape[2:])[: len(lags)]  # noqa: E731
    log_sv, log_fro, floor = flat(log_sv), flat(log_fro), flat(floor)
    return SweepOutput(log_sv, log_fro, floor, finite & jnp.all(~jnp.isnan(log_sv)))
