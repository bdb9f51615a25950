r"""The diagonal fast path: all-lag spectra of a recurrence whose step Jacobian is diagonal.

When every step Jacobian is diagonal, ``J_t = diag(d_t)``, the products are diagonal
too and their singular values are the moduli of the diagonal:

.. math::
    \log \sigma(P_k) = \mathrm{sort}\Big(\sum_{t=T-k+1}^{T} \log |d_t|\Big), \qquad
    \log \sigma(F_k) = \mathrm{sort}\Big(\sum_{t=1}^{k} \log |d_t|\Big)

so every lag costs a running sum and a sort: ``O(n T)`` plus the sorts, no products,
no SVDs, and no over- or underflow (the sums are logs). Two structures are handled:

* ``"real"``: ``J_t`` diagonal in the flat state (minGRU, minLSTM, the selective SSM);
* ``"complex"``: a complex diagonal stored as real pairs, the flat state being
  ``[Re h, Im h]`` (halves of equal size m = n/2). Unit j's block on
  ``(j, j + m)`` is the scaled rotation ``[[a, -b], [b, a]]`` of ``lambda_j = a + i b``;
  both of its singular values are ``|lambda_j|``, and products of such blocks multiply
  the moduli (LRU, diagonal SSMs).

The diagonal is read off one Jacobian-vector product per step (``J 1`` for real,
``J [1; 0]`` for complex pairs), along the unrolled trajectory. The structure is
*verified* on the same trajectory: a second JVP with a fixed probe vector ``r`` must
equal ``d * r`` (complex: the rotation applied to ``r``) to within
:data:`TOLERANCE_ULPS` float units, relative to ``max |d| max |r|``; otherwise the
step is not diagonal and the analysis refuses (or, under a trace, returns NaN).

The output follows :func:`gradscope.engine.block_output`: values below the resolution
floor ``log sigma_max + log(n eps)`` are clamped to it (the sums themselves are exact
well below it; the clamp keeps the results identical in meaning to the general engine's).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradscope.core import engine

__all__ = ["KINDS", "TOLERANCE_ULPS", "check_diagonal", "diagonal_core", "diagonal_sweep", "resolve_kind",
           "sort_descending", "step_log_moduli"]

KINDS = ("real", "complex")
"""Diagonal structures: ``"real"`` (diagonal in the flat state) or ``"complex"`` (real pairs)."""

TOLERANCE_ULPS = 1000.0
"""How far ``J r`` may stray from ``d * r`` (in units of the dtype's eps, relative to ``max|d| max|r|``)
before a step counts as not diagonal: float32 ``1.2e-4``, float64 ``2.2e-13``."""


def resolve_kind(cell_or_step, diagonal, block) -> str | None:
    """The diagonal structure to use, or None for the general engine.

    Args:
        cell_or_step: the analysed cell or step; a cell declares its structure in
            ``diagonal_jacobian`` (``"real"`` or ``"complex"``).
        diagonal: None (use the cell's declaration, if any, when no block is asked for),
            False (general engine), True (the declared structure, else ``"real"``) or a kind.
        block: the ``block`` argument of the analysis (the fast path needs the full state).

    Raises:
        ValueError: an unknown value, or a forced fast path with a block.
    """
    declared = getattr(cell_or_step, "diagonal_jacobian", None) if hasattr(cell_or_step, "initial_state") else None
    if diagonal is None:
        return declared if block is None else None
    if diagonal is False:
        return None
    kind = (declared or "real") if diagonal is True else diagonal
    if kind not in KINDS:
        raise ValueError(f"diagonal must be None, True, False, 'real' or 'complex', got {diagonal!r}")
    if block is not None:
        raise ValueError("the diagonal fast path analyses the full state; drop block=... or pass diagonal=False")
    return kind


# ---------------------------------------------------------------------------------------------
# Per-step diagonals along the trajectory
# ---------------------------------------------------------------------------------------------

def _tangents(n: int, kind: str, dtype):
    """``(t, r)``: the tangent that reads the diagonal off, and the probe vector."""
    rng = np.random.default_rng(0)
    probe = rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n)
    if kind == "complex":
        m = n // 2
        read = np.concatenate([np.ones(m), np.zeros(n - m)])
    else:
        read = np.ones(n)
    return jnp.asarray(np.stack([read, probe]), dtype)


def _log_modulus_and_residual(columns, probe, kind: str):
    """``log|d|`` (``[n]`` real, ``[n/2]`` complex) and the probe's relative residual."""
    read, applied = columns
    if kind == "complex":
        m = read.shape[-1] // 2
        a, b = read[:m], read[m:]
        expected = jnp.concatenate([a * probe[:m] - b * probe[m:], b * probe[:m] + a * probe[m:]])
        modulus = jnp.hypot(a, b)
    else:
        expected, modulus = read * probe, jnp.abs(read)
    scale = jnp.max(modulus) * jnp.max(jnp.abs(probe))
    error = jnp.max(jnp.abs(applied - expected))
    residual = jnp.where(error == 0, 0.0, error / jnp.where(scale > 0, scale, jnp.finfo(read.dtype).tiny))
    return jnp.log(modulus), residual


def step_log_moduli(flat_step, params, v0, xs, kind: str, untied: bool = False):
    """Unroll and read off every step's diagonal: ``(log|d_t| [T, m], finite, max residual)``.

    ``m`` is n (real) or n/2 (complex). ``finite`` says whether every state stayed
    finite; the residual is the largest relative probe error (see the module notes).
    """
    if kind == "complex" and v0.shape[0] % 2:
        raise ValueError(f"diagonal='complex' needs a flat state [Re h, Im h] of even size, got n = {v0.shape[0]}")
    tangents = _tangents(v0.shape[0], kind, v0.dtype)

    def body(carry, inputs):
        v, finite = carry
        step_params, x = inputs if untied else (params, inputs)
        v_next, linear = jax.linearize(lambda u: flat_step(step_params, u, x), v)
        log_modulus, residual = _log_modulus_and_residual(jax.vmap(linear)(tangents), tangents[1], kind)
        return (v_next, finite & jnp.all(jnp.isfinite(v_next))), (log_modulus, residual)

    inputs = (params, xs) if untied else xs
    (_, finite), (logs, residuals) = jax.lax.scan(body, (v0, jnp.all(jnp.isfinite(v0))), inputs)
    return logs, finite, jnp.max(residuals)


# ---------------------------------------------------------------------------------------------
# Sums per lag, sorted
# ---------------------------------------------------------------------------------------------

def _kahan_add(carry, row):
    """Compensated summation: the running sum of 200,000 float32 logs stays accurate to a few ulps
    (a plain running sum drifts by 1e-3 relative when small equal terms meet a large sum)."""
    total, compensation = carry
    corrected = row - compensation
    new_total = total + corrected
    return new_total, (new_total - total) - corrected


def _lag_sums(logs, lags: tuple[int, ...], backward: bool):
    """Sums of the last (backward) or first (forward) ``k`` rows of ``logs`` (``[T, m]``) for each
    ``k`` in ``lags``: ``[len(lags), m]``.

    One compensated pass over the rows that writes each kept lag's sum into its slot
    (memory ``O(lags m)``; a scan, so reverse-mode differentiable).
    """
    longest, count = int(lags[-1]), len(lags)
    slots = np.full(longest, count, dtype=np.int32)  # slot ``count`` is scratch
    for index, lag in enumerate(lags):
        if lag > 0:
            slots[lag - 1] = index
    rows = np.arange(longest, dtype=np.int32)
    rows = logs.shape[0] - 1 - rows if backward else rows

    def body(carry, inputs):
        total, compensation, out = carry
        row, slot = inputs
        total, compensation = _kahan_add((total, compensation), logs[row])
        return (total, compensation, jax.lax.dynamic_update_index_in_dim(out, total, slot, 0)), None

    zeros = jnp.zeros(logs.shape[-1], logs.dtype)
    start = (zeros, zeros, jnp.zeros((count + 1, logs.shape[-1]), logs.dtype))
    return jax.lax.scan(body, start, (rows, slots))[0][2][:count]


def _sorted_lag_sums(logs, lags: tuple[int, ...], backward: bool):
    """Each kept lag's sums, sorted. When every step has the same diagonal (LRU, S4D) the sum is
    ``k log|d|`` exactly, sorted once; otherwise each lag is summed and sorted."""
    lag_column = jnp.asarray(lags, logs.dtype)[:, None]

    def constant(logs):
        return jnp.where(lag_column == 0, 0.0, lag_column * sort_descending(logs[0])[None, :])

    def varying(logs):
        return sort_descending(_lag_sums(logs, lags, backward))

    return jax.lax.cond(jnp.all(logs == logs[:1]), constant, varying, logs)


def _int_key(values):
    """An integer whose order is the float order (IEEE bits, negatives' magnitude bits flipped)."""
    bits = jnp.iinfo(jnp.int64 if values.dtype == jnp.float64 else jnp.int32)
    ints = jax.lax.bitcast_convert_type(values, bits.dtype)
    return jnp.where(ints < 0, ints ^ bits.dtype.type(bits.max), ints)


def _from_int_key(keys, dtype):
    bits = jnp.iinfo(keys.dtype)
    return jax.lax.bitcast_convert_type(jnp.where(keys < 0, keys ^ keys.dtype.type(bits.max), keys), dtype)


@jax.custom_jvp
def sort_descending(values):
    """Sort the last axis in descending order (NaN-free input).

    Sorts integer keys of the floats, which XLA on a CPU does 3-4x faster than a float
    sort (measured at 200,000 x 256); the derivative is that of ``jnp.sort``.
    """
    return _from_int_key(jnp.sort(_int_key(values), axis=-1), values.dtype)[..., ::-1]


@sort_descending.defjvp
def _sort_descending_jvp(primals, tangents):
    return jax.jvp(lambda a: -jnp.sort(-a, axis=-1), primals, tangents)


def _spectra_from_sorted(log_sv, kind: str, n: int):
    """Clamped log singular values, exact log Frobenius norm and floor, as :func:`engine.block_output`."""
    pairs = 2 if kind == "complex" else 1
    log_fro = 0.5 * (jax.nn.logsumexp(2 * log_sv, axis=-1) + np.log(pairs))
    if pairs == 2:
        log_sv = jnp.repeat(log_sv, 2, axis=-1)
    floor = log_sv[..., 0] + float(np.log(engine.relative_resolution(n, log_sv.dtype)))
    return jnp.maximum(log_sv, floor[..., None]), log_fro, floor


@functools.partial(jax.jit, static_argnames=("step", "lags", "direction", "untied", "batch_axes", "kind"))
def diagonal_core(step, params, xs, h0, lags, direction, untied, batch_axes, kind):
    """The jit-compiled fast path: ``(SweepOutput, residual)``, no checks (see :func:`diagonal_sweep`)."""
    flat_step, v0, _ = engine.flatten_step(step, h0)
    one = lambda x: step_log_moduli(flat_step, params, v0, x, kind, untied)  # noqa: E731
    logs, finite, residual = engine.over_batch_axes(one, batch_axes)(xs)
    sorted_sums = functools.partial(_sorted_lag_sums, lags=lags, backward=direction == "backward")
    sums = engine.over_batch_axes(sorted_sums, batch_axes)(logs)
    log_sv, log_fro, floor = _spectra_from_sorted(sums, kind, v0.shape[0])
    finite = finite & ~jnp.any(jnp.isnan(log_sv), axis=(-2, -1)) & ~jnp.any(log_sv == jnp.inf, axis=(-2, -1))
    return engine.SweepOutput(log_sv, log_fro, floor, finite), residual


def diagonal_sweep(step, params, xs, h0, lags: tuple[int, ...], direction: str = "backward", untied: bool = False,
                   batch_axes: int = 0, kind: str = "real") -> engine.SweepOutput:
    """All kept lags' spectra by the diagonal fast path (see the module notes); the engine's output.

    Args:
        step: ``step(params, h, x) -> h_next`` (hashable: a jit static argument).
        params: the parameters (validated, cast), as for :func:`gradscope.jacobian_spectra`.
        xs: the inputs, time axis after the batch axes.
        h0: the initial state.
        lags: sorted ints in ``[0, T]``.
        direction: ``"backward"`` (``dh_T/dh_{T-k}``) or ``"forward"`` (``dh_k/dh_0``).
        untied: per-step parameters.
        batch_axes: leading batch axes of ``xs``.
        kind: ``"real"`` or ``"complex"`` (see :data:`KINDS`).

    Returns:
        :class:`gradscope.engine.SweepOutput` with ``[..., len(lags), n]`` log singular values.

    Raises:
        ValueError: the step's Jacobian is not diagonal in the declared structure (when the
            inputs are concrete; under a trace the values become NaN instead).
    """
    out, residual = diagonal_core(step, params, xs, h0, lags, direction, untied, batch_axes, kind)
    return check_diagonal(out, residual, ravel_pytree(h0)[0].dtype, kind)


def check_diagonal(out: engine.SweepOutput, residual, dtype, kind: str) -> engine.SweepOutput:
    """``out`` if the probe ``residual`` is within tolerance; raise ValueError otherwise (NaN values if traced)."""
    limit = TOLERANCE_ULPS * float(np.finfo(dtype).eps)
    if isinstance(residual, jax.core.Tracer):
        bad = jnp.asarray(residual > limit)[..., None, None]
        return out._replace(log_singular_values=jnp.where(bad, jnp.nan, out.log_singular_values))
    worst = float(np.max(np.asarray(residual)))
    if worst > limit:
        raise ValueError(f"the step's Jacobian is not {kind}-diagonal: a probe J r differs from the diagonal's "
                         f"action by {worst:.3g} relative to max|d| max|r| (tolerance {limit:.2g}). Pass "
                         "diagonal=False for the general engine" +
                         ("" if kind == "complex" else ", or diagonal='complex' if the state is [Re h, Im h] pairs"))
    return out
