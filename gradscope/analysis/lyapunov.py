r"""Lyapunov spectrum of the forward dynamics by the QR (Benettin) method.

The forward product :math:`F_t = J_t \cdots J_1` (:math:`J_t = \partial h_t/\partial h_{t-1}`)
grows like :math:`e^{\lambda_i t}` along its i-th Oseledets direction. The QR method
(Benettin et al. 1980) carries an orthonormal frame :math:`Q` of k tangent vectors:

.. math::
    J_t Q_{t-1} = Q_t R_t, \qquad
    \lambda_i \approx \frac{1}{T - T_0} \sum_{t > T_0} \log |(R_t)_{ii}|,

where the first :math:`T_0` steps (the *transient*) let the frame align with the
Oseledets directions and the state settle on its attractor. The tangent vectors are
pushed forward as Jacobian-vector products (``jax.linearize`` + ``vmap``, as the
engine's forward sweep does); between re-orthonormalisations (every ``interval``
steps) each vector is only rescaled to unit norm, its log norm accumulated, so
nothing overflows. Over the accumulated steps, :math:`\sum_i \lambda_i` times the step
count equals :math:`\log|\det|` of the product on the frame exactly; for a full frame
this is :math:`\sum_i \log \sigma_i(F)`, the cross-check with
:func:`gradscope.forward_spectra`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core import _checks
from gradscope.core import engine
from gradscope.analysis import spectra as _spectra
from gradscope.core._lapack import lapack_thread_limit
from gradscope.display.headline import Headline, Readable, batch_index_columns, batched_table, long_table
from gradscope.core.types import CellOrStep, Inputs, Params, State

__all__ = ["LyapunovSpectrum", "lyapunov_of", "lyapunov_spectrum", "qr_schedule"]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["exponents", "history", "finite"],
    meta_fields=["checkpoint_steps", "transient", "interval"],
)
@dataclasses.dataclass(frozen=True, repr=False)
class LyapunovSpectrum(Readable):
    """Lyapunov exponents of the forward dynamics and how their estimates converged (a pytree).

    Attributes:
        exponents: ``[..., k]`` exponents in nats per step, in QR order (asymptotically
            descending; finite-T estimates of nearly equal exponents may swap).
        history: ``[..., checkpoints, k]`` running estimates at every
            re-orthonormalisation after the transient.
        finite: ``[...]`` False where the states or tangent vectors became inf/NaN.
        checkpoint_steps: steps accumulated (after the transient) at each checkpoint.
        transient: steps discarded before accumulating.
        interval: steps between re-orthonormalisations.
    """

    exponents: jax.Array
    history: jax.Array
    finite: jax.Array
    checkpoint_steps: tuple
    transient: int
    interval: int

    @property
    def steps(self) -> np.ndarray:
        """:attr:`checkpoint_steps` as an int array (the x axis of :attr:`history`)."""
        return np.asarray(self.checkpoint_steps, dtype=np.int64)

    @property
    def num_exponents(self) -> int:
        """k, the number of exponents computed."""
        return int(self.exponents.shape[-1])

    def to_dataframe(self, history: bool = False):
        """Tidy table of the exponents, or of their running estimates.

        Args:
            history: False (default): one row per (batch entry, exponent). True: one row
                per (batch entry, checkpoint, exponent).

        Returns:
            A pandas DataFrame: ``batch_0, ...`` (the batch axes, absent when unbatched),
            ``step`` (steps accumulated after the transient; with ``history`` only),
            ``index`` (1 = first in QR order) and ``exponent`` (nats per step).
        """
        axes = batch_index_columns(np.shape(self.finite))
        index = range(1, self.num_exponents + 1)
        if history:
            return long_table({**axes, "step": self.steps, "index": index}, {"exponent": self.history})
        return long_table({**axes, "index": index}, {"exponent": self.exponents})

    def _headline(self) -> Headline:
        batch = np.shape(self.finite)
        exponents = np.asarray(self.exponents, np.float64)
        facts = (f"{self.num_exponents} exponents by the QR method, {self.steps[-1]} steps accumulated after a "
                 f"transient of {self.transient}, QR every {self.interval}" + (f", batch {batch}" if batch else ""),)
        columns = {"largest": exponents.max(axis=-1), "smallest": exponents.min(axis=-1),
                   "sum": exponents.sum(axis=-1), "positive": (exponents > 0).sum(axis=-1)}
        figures = () if batch else ("plot_lyapunov_convergence",)
        return Headline("LyapunovSpectrum", facts, batched_table(batch, columns), figures)


def qr_schedule(num_steps: int, transient: int, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Which steps end with a QR, and which of those are checkpoints (after the transient).

    A QR happens every ``interval`` steps, at the end of the transient and at the last
    step. Returns boolean arrays ``(qr, accumulate)`` of length ``num_steps``.
    """
    index = np.arange(1, num_steps + 1)
    qr = (index % interval == 0) | (index == transient) | (index == num_steps)
    return qr, qr & (index > transient)


def _frame(seed: int, num_exponents: int, n: int, dtype) -> jax.Array:
    """k orthonormal rows: a Haar-random k-frame (QR of a Gaussian with the sign fix), drawn on the host."""
    gauss = np.random.default_rng(seed).standard_normal((n, num_exponents))
    q, r = np.linalg.qr(gauss)
    return jnp.asarray((q * np.sign(np.diagonal(r))).T, dtype)


def _normalise_rows(rows):
    norms = jnp.linalg.norm(rows, axis=-1)
    safe = jnp.where(norms > 0, norms, 1.0)
    return rows / safe[:, None], jnp.log(norms)


def _orthonormalise(rows, row_logs):
    """QR of the frame; returns new rows and each vector's log growth since the last QR."""
    q, r = jnp.linalg.qr(rows.T)
    return q.T, jnp.log(jnp.abs(jnp.diagonal(r))) + row_logs


def lyapunov_of(step, params, xs, h0, frame, qr, accumulate, untied: bool = False) -> tuple:
    """Pure, traceable core of :func:`lyapunov_spectrum` (no checks; vmap it freely).

    Args:
        step: ``step(params, h, x) -> h_next``.
        params: as for :func:`lyapunov_spectrum` (already validated and cast).
        xs: as for :func:`lyapunov_spectrum` (already validated and cast).
        h0: as for :func:`lyapunov_spectrum` (already validated and cast).
        frame: ``[k, n]`` orthonormal rows, the initial tangent vectors.
        qr: boolean step schedules from :func:`qr_schedule`.
        accumulate: boolean step schedules from :func:`qr_schedule`.
        untied: per-step parameters.

    Returns:
        ``(totals, finite)``: ``totals[t]`` ``[T, k]`` is the summed log growth of each
        vector up to step t+1 (counting only accumulated QRs); ``finite`` a scalar bool.
    """
    flat_step, states = engine.unrolled_states(step, params, xs, h0, untied)
    per_step = params if untied else ()  # tied parameters are closed over, not scanned

    def body(carry, inputs):
        rows, row_logs, total, finite = carry
        state, x, p, do_qr, keep = inputs
        p = p if untied else params
        rows = engine.apply_step_jacobian(flat_step, p, state, x, rows, "forward")
        rows, logs = _normalise_rows(rows)
        rows, growth = jax.lax.cond(do_qr, _orthonormalise, lambda r, g: (r, g), rows, row_logs + logs)
        total = total + jnp.where(do_qr & keep, growth, 0.0)
        row_logs = jnp.where(do_qr, 0.0, growth)
        finite = finite & jnp.all(jnp.isfinite(rows))
        return (rows, row_logs, total, finite), total

    k = frame.shape[0]
    zeros = jnp.zeros((k,), states.dtype)
    init = (frame.astype(states.dtype), zeros, zeros, jnp.all(jnp.isfinite(states)))
    inputs = (states, xs, per_step, jnp.asarray(qr), jnp.asarray(accumulate))
    (_, _, _, finite), totals = jax.lax.scan(body, init, inputs)
    return totals, finite


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("step", "untied", "batch_axes"))
def _lyapunov_core(step, params, xs, h0, frame, qr, accumulate, untied, batch_axes):
    one = functools.partial(lyapunov_of, step, params, h0=h0, frame=frame, qr=qr, accumulate=accumulate,
                            untied=untied)
    return engine.over_batch_axes(one, batch_axes)(xs)


def _check_schedule(num_steps: int, transient: int, interval: int) -> None:
    for name, value in (("transient", transient), ("interval", interval)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if interval < 1:
        raise ValueError(f"interval (steps between re-orthonormalisations) must be >= 1, got {interval}")
    if not 0 <= transient < num_steps:
        raise ValueError(f"transient must lie in [0, T) = [0, {num_steps}) for xs with T = {num_steps} steps, "
                         f"got {transient}; lengthen xs or shorten the transient")


def _num_exponents(num_exponents, n: int) -> int:
    k = n if num_exponents is None else num_exponents
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"num_exponents must be an int in [1, n] = [1, {n}] (n = state size), got {num_exponents!r}")
    return int(k)


def lyapunov_spectrum(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None, *,
                      num_exponents: int | None = None,
                      transient: int = 0, interval: int = 1, dtype=None, untied: bool = False,
                      frame_seed: int = 0) -> LyapunovSpectrum:
    """Lyapunov exponents of the forward dynamics ``h_t = f(h_{t-1}, x_t)`` by the QR method.

    The cell is unrolled over ``xs`` from ``h0``; k tangent vectors are pushed through
    every step Jacobian as JVPs and re-orthonormalised by QR every ``interval`` steps.
    The exponents average the log growth over the steps after ``transient``.

    Args:
        cell_or_step: a built-in cell or a plain ``step(params, h, x) -> h_next``.
        params: its parameters; with ``untied=True`` every leaf has a leading time axis.
        xs: inputs with a leading time axis (``(..., T, input_size)`` for built-in cells,
            extra leading axes batch the computation).
        h0: initial state (defaults to the cell's zero state).
        num_exponents: k, how many of the largest exponents (default all n).
        transient: steps to discard before accumulating (burn-in).
        interval: steps between QR re-orthonormalisations. 1 is the most accurate;
            larger values save QRs but lose the small exponents once
            ``exp((lambda_1 - lambda_k) * interval)`` exceeds the dtype's range.
        dtype: ``"float32"`` or ``"float64"`` (the latter needs x64 mode).
        untied: per-step parameters (a deep feed-forward stack).
        frame_seed: seed of the random orthonormal initial k-frame (a NumPy generator).

    Returns:
        :class:`LyapunovSpectrum` with ``exponents [..., k]`` and the convergence
        ``history [..., checkpoints, k]`` at ``steps``.

    Raises:
        ValueError / TypeError: malformed inputs or options.
        gradscope.NumericalOverflowError: the states or tangent vectors became inf/NaN (when
            called eagerly; under ``jit``/``vmap``/``grad`` check the returned ``finite`` instead).

    Works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (the exponents are differentiable
    where the QR factors are, that is wherever the frame keeps full rank).
    """
    step, params, xs, h0, num_steps, batch_axes = _spectra.prepare_inputs(cell_or_step, params, xs, h0, dtype=dtype,
                                                                          untied=untied)
    _check_schedule(num_steps, transient, interval)
    n = int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(h0)))
    k = _num_exponents(num_exponents, n)
    frame = _frame(frame_seed, k, n, jnp.result_type(*jax.tree_util.tree_leaves(h0)))
    qr, accumulate = qr_schedule(num_steps, transient, interval)
    totals, finite = _lyapunov_core(step, params, xs, h0, frame, qr, accumulate, bool(untied), batch_axes)
    result = _assemble(totals, finite, qr, accumulate, transient, interval)
    _checks.raise_if_overflowed(result.finite, "tangent vectors")
    return result


def _assemble(totals, finite, qr, accumulate, transient: int, interval: int) -> LyapunovSpectrum:
    checkpoints = np.flatnonzero(accumulate)
    counts = (checkpoints + 1 - transient).astype(np.float64)
    history = totals[..., checkpoints, :] / jnp.asarray(counts, totals.dtype)[:, None]
    return LyapunovSpectrum(history[..., -1, :], history, finite,
                            tuple(int(c) for c in counts), int(transient), int(interval))
