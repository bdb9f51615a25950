r"""All-lag spectra on a CPU: the sweep in compiled chunks, its SVDs on one host thread per core.

A single compiled sweep (:func:`gradscope.engine.sweep`) takes each kept lag's SVD
inside its loop, and XLA runs a program on one thread, so on a CPU every SVD of the
analysis runs on one core. Independent programs dispatched from one Python thread do
not run concurrently either. :func:`pipelined_sweep` runs the same sweep as a
pipeline instead:

* the calling thread dispatches the sweep one chunk of kept lags at a time (one
  compiled program, reused for every chunk); each call returns the chunk's
  normalised products ``Q_k`` and their log scales;
* each chunk's SVDs are split into tasks, contiguous runs of its products (one per
  worker, finer for the last chunk); a pool of host threads, one per core, takes
  the tasks as it frees up and computes their singular values (a second compiled
  program, one matrix at a time), while the next chunk's products are already forming.

The products, the SVD routine and so the results are those of
:func:`gradscope.engine.sweep`. At most three chunks of products are held at once (the
one forming, the one being decomposed, the one being collected), so memory is
``O(chunk * n^2)`` on top of the unrolled states. Each worker decomposes
one matrix per LAPACK call: jaxlib's batched CPU kernels wait on XLA's thread pool,
which can deadlock when several such calls run at once, and one-matrix calls never
wait.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from gradscope.core import engine, ritz

__all__ = ["METHODS", "auto_chunk", "cpu_workers", "pipelined_sweep", "worth_pipelining"]

METHODS = ("svd", "ritz")
"""How a pipeline takes the singular values: ``"svd"``, one LAPACK call per product; ``"ritz"``,
warm-started Rayleigh-Ritz over runs of consecutive lags (:mod:`gradscope.core.ritz`)."""

CHUNK_BYTES = 32 * 2**20
"""Memory for one chunk of products when the chunk size is chosen automatically."""
MIN_CHUNKS = 4
"""Chunks an automatic chunk size aims for: the first chunk's products and the last chunk's SVDs
do not overlap with anything, so fewer, longer chunks leave more of the work unoverlapped."""
RITZ_CHUNKS = 8
"""Chunks an automatic chunk size aims for with the ``"ritz"`` method, whose per-lag work is
closer to the products' cost: shorter chunks start the workers sooner (2-core measurements
at n = 256, T = 200: 0.23 s with 8 chunks against 0.27 s with 4)."""
TAIL_TASKS_PER_WORKER = 4
"""Tasks the last chunk's SVDs are split into, per worker thread (other chunks: one per
worker). Threads take tasks as they free up, so at the end of an analysis one thread
would otherwise run its last long task alone; each task costs a dispatch, so only the
tail is split finer."""
PROGRESS_DELAY = 2.0
"""Seconds a pipelined analysis runs before its progress bar appears (short calls show none)."""
MIN_WORK = 1e8
"""Pipelining pays on a CPU above about this much SVD work, ``lags * n^3``: below it the
per-chunk dispatch costs more than the threads save (2-core measurements: 1.2-1.3x slower
at n = 32..64 with 100 lags, 0.9x at n = 128 with 100 lags, 0.5x at n = 256 with 200)."""


def cpu_workers() -> int:
    """Host threads for the SVDs: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worth_pipelining(num_lags: int, state_size: int) -> bool:
    """True when the SVD work of ``num_lags`` lags of n x n products is large enough (:data:`MIN_WORK`)."""
    return num_lags * float(state_size) ** 3 >= MIN_WORK


def auto_chunk(num_lags: int, state_size: int, itemsize: int, workers: int, chunks: int = MIN_CHUNKS) -> int:
    """Lags per chunk: a ``chunks``-th of the lags, at most as many products as fit in
    :data:`CHUNK_BYTES`, and at least one per worker."""
    fitting = CHUNK_BYTES // max(1, state_size * state_size * itemsize)
    return max(workers, min(fitting, -(-num_lags // chunks)))


def _chunk_plan(num_lags: int, chunk: int) -> tuple[int, list[int]]:
    """``(size, kept)``: lags per chunk program, and how many lags each chunk keeps.

    The lags are split into the fewest near-equal chunks of at most ``chunk`` lags. A
    chunk keeping fewer than ``size`` is padded with gaps of 0 (a copy of the last
    product, never decomposed), so every chunk runs the same compiled program.
    """
    kept = [len(part) for part in np.array_split(np.arange(num_lags), -(-num_lags // max(1, chunk)))]
    return kept[0], kept


def _chunk_gaps(lags: tuple[int, ...], size: int, kept: list[int]) -> list[np.ndarray]:
    """Each chunk's steps between kept lags (:func:`gradscope.engine.lag_gaps`), padded with 0 to ``size``."""
    bounds = np.cumsum([0] + kept)
    gaps = engine.lag_gaps(lags)
    return [np.pad(gaps[start:stop], (0, size - (stop - start))) for start, stop in zip(bounds[:-1], bounds[1:])]


def _tasks(entries: int, size: int, real: int, num_tasks: int) -> list[np.ndarray]:
    """Flat product indices of one chunk (``entries`` batch entries of ``size`` lags, the first
    ``real`` of them kept), split into ``num_tasks`` contiguous tasks (fewer if there are fewer products)."""
    kept = (np.arange(entries)[:, None] * size + np.arange(real)).ravel().astype(np.int32)
    return np.array_split(kept, min(kept.size, num_tasks))


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="gradscope-svd")


@functools.partial(jax.jit, static_argnames=("step", "untied", "batch_axes", "start_rows"))
def _start(step, params, xs, h0, untied, batch_axes, start_rows):
    """Unrolled states and the sweep's initial carry, per batch entry."""

    def one(x):
        states = engine.unrolled_states(step, params, x, h0, untied)[1]
        return states, engine.initial_carry(states, start_rows)

    return engine.over_batch_axes(one, batch_axes)(xs)


@functools.partial(jax.jit, static_argnames=("step", "direction", "untied", "batch_axes"))
def _sweep_chunk(step, params, xs, h0, states, carry, gaps, direction, untied, batch_axes):
    """Advance every batch entry through ``gaps``; return the carry and the chunk's ``(Q, log_scale)``,
    flattened entry-major to ``[entries * len(gaps), m, n]`` and ``[entries * len(gaps)]``."""

    def one(x, s, c):
        flat_step, _, _ = engine.flatten_step(step, h0)
        advance = engine.product_stepper(flat_step, params, s, x, direction, untied)
        return engine.sweep_products(advance, c, gaps)

    carry, (products, log_scales) = engine.over_batch_axes(one, batch_axes)(xs, states, carry)
    return carry, (products.reshape(-1, *products.shape[-2:]), log_scales.reshape(-1))


@functools.partial(jax.jit, static_argnames=("columns",))
def _task_spectra(products, log_scales, indices, count, columns):
    """:func:`gradscope.engine.block_output` of the products at ``indices[:count]``, one matrix per LAPACK call.

    ``indices`` has one length for every task of an analysis (the rest is padding), so
    this compiles once however the tasks are cut; rows from ``count`` on are left zero.
    """
    one = lambda i: engine.block_output(products[indices[i]], log_scales[indices[i]], columns)  # noqa: E731
    out = jax.tree_util.tree_map(lambda a: jnp.zeros((len(indices), *a.shape), a.dtype), jax.eval_shape(one, 0))

    def body(i, out):
        return jax.tree_util.tree_map(lambda rows, value: rows.at[i].set(value), out, one(i))

    return jax.lax.fori_loop(0, count, body, out)


def _decompose(products, log_scales, indices, length: int, columns, x64: bool):
    """Worker task: wait for the chunk's products, then take the spectra at ``indices`` here, on this thread.

    ``indices`` is padded to ``length`` (see :func:`_task_spectra`). ``x64`` is the caller's
    64-bit setting: ``jax.enable_x64`` is thread-local, and without it a worker would
    compute float64 products in float32.
    """
    jax.block_until_ready((products, log_scales))
    padded = np.pad(indices, (0, length - len(indices)))
    with jax.enable_x64(x64):
        out = jax.device_get(_task_spectra(products, log_scales, padded, len(indices), columns))
    return tuple(field[:len(indices)] for field in out)


def _decompose_ritz(products, log_scales, indices, size: int, first_lag: int, starts, columns):
    """Worker task of the ``"ritz"`` method: the spectra at ``indices`` (one run of consecutive lags
    per batch entry) by :func:`gradscope.core.ritz.block_spectra`, on this thread.

    Position ``i`` of the chunk holds batch entry ``i // size`` at kept lag ``first_lag + i % size``.
    """
    host, scales = np.asarray(jax.block_until_ready(products)), np.asarray(log_scales)
    width = host.shape[-1] if columns is None else len(columns)
    log_rel = float(np.log(engine.relative_resolution(max(host.shape[-2], width), host.dtype)))
    return ritz.block_spectra(host, scales, indices, lambda i: first_lag + i % size, lambda i: i // size,
                              starts, columns, log_rel)


def pipelined_sweep(step, params, xs, h0, lags: tuple[int, ...], direction: str = "backward",
                    untied: bool = False, batch_axes: int = 0, start_rows: tuple | None = None,
                    columns: tuple | None = None, chunk: int | None = None,
                    workers: int | None = None, progress: bool | None = None,
                    method: str = "svd", unroll_step=None) -> engine.SweepOutput:
    """The all-lag sweep of :func:`gradscope.engine.sweep`, as a pipeline of chunks (see the module doc).

    Args:
        step: the (hashable) step function ``step(params, h, x)`` on the state pytree.
        params: checked and cast parameters (see :func:`gradscope.spectra.prepare_inputs`).
        xs: checked and cast inputs, with ``batch_axes`` leading batch axes.
        h0: the initial state pytree.
        lags: sorted kept lags in [0, T] (a bucketed analysis repeats the last one, see :mod:`gradscope.core.buckets`).
        direction: ``"backward"`` or ``"forward"``, as in :func:`gradscope.engine.sweep`.
        untied: per-step parameters, as in :func:`gradscope.engine.sweep`.
        batch_axes: leading batch axes of ``xs`` (each entry is swept; params and h0 are shared).
        start_rows: flat state indices of the block's carried rows (a tuple), or None for all.
        columns: flat state indices of the block's columns kept in the SVD (a tuple), or None.
        chunk: at most this many kept lags per chunk (the lags are split into near-equal
            chunks); None picks :func:`auto_chunk`.
        workers: host threads for the SVDs; default :func:`cpu_workers`.
        progress: show a progress bar over the chunks once the call has run for
            :data:`PROGRESS_DELAY` seconds (default: only on a terminal); False hides it.
        method: ``"svd"`` (one LAPACK call per product) or ``"ritz"`` (warm-started
            Rayleigh-Ritz, :mod:`gradscope.core.ritz`: the same values above the resolution
            floor, for a fraction of the work where the resolved rank falls with the lag).
        unroll_step: the step the states are unrolled with, where it differs from the one
            the sweep differentiates (:mod:`gradscope.core.buckets`); default ``step``.

    Returns:
        :class:`gradscope.engine.SweepOutput` with the batch axes leading.
    """
    workers = workers or cpu_workers()
    flat_h0 = ravel_pytree(h0)[0]
    chunk = chunk or auto_chunk(len(lags), flat_h0.size, flat_h0.dtype.itemsize, workers,
                                RITZ_CHUNKS if method == "ritz" else MIN_CHUNKS)
    size, kept = _chunk_plan(len(lags), chunk)
    states, carry = _start(unroll_step or step, params, xs, h0, untied, batch_axes, start_rows)
    batch_shape = jnp.shape(carry[1])
    entries = int(np.prod(batch_shape, dtype=np.int64))
    x64 = bool(jax.config.jax_enable_x64)
    length = -(-entries * size // workers)  # the longest task: a chunk's products over the workers
    pending, outputs = [], []
    decompose = _task_submitter(method, workers, size, length, columns, x64)
    with tqdm(total=len(kept), desc=f"spectra at {len(set(lags))} lags", unit="chunk", delay=PROGRESS_DELAY,
              disable=None if progress is None else not progress) as bar:
        for index, (real, chunk_gaps) in enumerate(zip(kept, _chunk_gaps(lags, size, kept))):
            carry, (products, log_scales) = _sweep_chunk(step, params, xs, h0, states, carry, chunk_gaps,
                                                         direction, untied, batch_axes)
            num_tasks = workers * (TAIL_TASKS_PER_WORKER if index == len(kept) - 1 else 1)
            pending.append((real, [decompose(products, log_scales, task, sum(kept[:index]))
                                   for task in _tasks(entries, size, real, num_tasks)]))
            if len(pending) > 2:  # hold at most three chunks of products
                outputs.append(_collect(*pending.pop(0), entries, bar))
        outputs += [_collect(*chunk_tasks, entries, bar) for chunk_tasks in pending]
    return _assemble(outputs, carry[2], batch_shape)


def _task_submitter(method: str, workers: int, size: int, length: int, columns, x64: bool):
    """``submit(products, log_scales, indices, first_lag) -> future`` for one SVD task of ``method``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    pool, starts = _pool(workers), ritz.WarmStarts()

    def submit(products, log_scales, indices, first_lag):
        if method == "ritz":
            return pool.submit(_decompose_ritz, products, log_scales, indices, size, first_lag, starts, columns)
        return pool.submit(_decompose, products, log_scales, indices, length, columns, x64)

    return submit


def _collect(real: int, futures, entries: int, bar) -> tuple:
    """Wait for one chunk's tasks; return its ``(log_sv, log_fro, floor)`` as ``[entries, real, ...]``."""
    results = [future.result() for future in futures]
    bar.update(1)
    return tuple(np.concatenate([r[field] for r in results]).reshape(entries, real, *results[0][field].shape[1:])
                 for field in range(3))


def _assemble(outputs, finite, batch_shape: tuple) -> engine.SweepOutput:
    """Join the chunks' ``(log_sv, log_fro, floor)`` into ``[*batch, lags, ...]`` arrays."""

    def join(field):
        joined = np.concatenate([chunk[field] for chunk in outputs], axis=1)
        return jnp.asarray(joined.reshape(*batch_shape, *joined.shape[1:]))

    log_sv, log_fro, floor = join(0), join(1), join(2)
    finite = finite & ~jnp.isnan(log_sv).any(axis=(-2, -1))
    return engine.SweepOutput(log_sv, log_fro, floor, finite)
