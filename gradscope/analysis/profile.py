r"""Fast lag profiles: sigma_max and RMS at every lag, full spectra only where they are needed.

Full spectra at every lag cost one n x n SVD per lag, which dominates everything
else on a CPU. Most figures need less:

* :func:`jacobian_profile` (the *profile mode*): ``log sigma_max`` and the log RMS
  singular value at **every** lag 1..K, plus full spectra (``sigma_min`` included)
  at a few log-spaced lags, all in **one** sweep.
* :func:`norm_profile` (the *norms-only mode*): ``sigma_max`` and RMS per lag, no
  SVD at all.
* :func:`top_singular_values`: the k largest singular values for large n by a
  matrix-free randomized subspace iteration that carries only a block of
  ``k + oversample`` vectors, never the n x n product.

How the profile is computed. The sweep carries ``P_k = exp(s_k) Q_k`` with
``||Q_k||_F = 1`` (see :mod:`gradscope.engine`), so the RMS singular value is exact:
``log rms_k = s_k - log(n)/2``. ``sigma_max(Q_k)`` is tracked by Rayleigh-Ritz on a
small block of vectors, refined by block Krylov iterations on ``Q_k Q_k^T`` (each
extends the block U to ``[U, Q Q^T U]``: a restarted block Lanczos, faster than
plain power iterations when the top values cluster), warm-started from the
previous lag's block. The warm
start lives on the side of ``Q_k`` whose space does not move: for the backward
product ``P_k = dh_T/dh_{T-k}`` that is the *left* side (the h_T space; the right
side is the h_{T-k} space, a different space at every lag), and the top left
singular vectors of ``P_k`` converge as k grows (Oseledets), so the warm block
mostly needs no iteration at all. The forward product is carried transposed and the same
holds for its row space (h_0). Each estimate is a Rayleigh-Ritz value, hence a
lower bound on sigma_max; ``residual`` holds the relative residual ``||A u - theta
u|| / theta`` of its Ritz pair (``A = Q Q^T``, ``theta = sigma^2``), a certificate that
an eigenvalue of A lies within ``residual * theta`` of theta. At the spectrum lags
sigma_max is replaced by the exact value (residual 0).

Accuracy (float32; block 4, residual tolerance 1e-3, the defaults): measured against
the full spectra on tanh RNNs (n = 16..256, orthogonal, scaled-orthogonal and Glorot
weights) and LSTMs (hidden 8..32), the per-lag ``log sigma_max`` is within 7e-4 nats
at every lag, and within 4e-6 (float32 rounding) after the first 16 lags. The worst
lags are the first few of near-isometric products, whose top singular values cluster;
the first 16 lags may take up to 64 iterations for that reason, later ones at most
``max_power_iters`` (default 4) and usually none (the warm start already meets the
tolerance). tests/test_profile.py asserts 2e-3 at every lag.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.core import engine
from gradscope.analysis import metrics
from gradscope.analysis import spectra
from gradscope.core._lapack import lapack_thread_limit
from gradscope.core.lags import select_lags
from gradscope.display.headline import Headline, Readable, batch_index_columns, batched_table, lag_range, long_table
from gradscope.core.types import CellOrStep, Inputs, Lags, Params, State

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Profile",
    "ProfileOutput",
    "TopOutput",
    "TopSpectra",
    "jacobian_profile",
    "norm_profile",
    "profile_of",
    "profile_sweep",
    "top_k_sweep",
    "top_singular_values",
]


# ---------------------------------------------------------------------------------------------
# Result containers
# ---------------------------------------------------------------------------------------------

@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["log_sigma_max", "log_frobenius", "residual", "spectra", "finite"],
    meta_fields=["max_lag", "direction", "state_size"],
)
@dataclasses.dataclass(frozen=True, repr=False)
class Profile(Readable):
    """sigma_max and RMS at every lag, full spectra at a few (a JAX pytree).

    Attributes:
        log_sigma_max: ``[..., K]`` log sigma_max at every lag 1..K: a warm-started
            power estimate (a lower bound), exact at the spectrum lags.
        log_frobenius: ``[..., K]`` exact ``log ||P_k||_F``.
        residual: ``[..., K]`` relative residual of each power estimate (0 at the
            spectrum lags, where the value is exact); see the module docstring.
        spectra: :class:`gradscope.Spectra` at the spectrum lags (all singular values,
            sigma_min included), or ``None`` for a norms-only profile.
        finite: ``[...]`` False where states or products overflowed.
        max_lag: K, the largest profiled lag (``lags`` is 1..K).
        direction: ``"backward"`` (dh_T/dh_{T-k}) or ``"forward"`` (dh_k/dh_0).
        state_size: n, the flattened state size.
    """

    log_sigma_max: jax.Array
    log_frobenius: jax.Array
    residual: jax.Array
    spectra: spectra.Spectra | None
    finite: jax.Array
    max_lag: int
    direction: str = "backward"
    state_size: int = 0

    @property
    def lags(self) -> np.ndarray:
        """Every profiled lag, 1..K, as an int array."""
        return np.arange(1, self.max_lag + 1, dtype=np.int64)

    @property
    def spectrum_lags(self) -> np.ndarray:
        """The lags with full spectra (empty for a norms-only profile)."""
        return np.zeros(0, np.int64) if self.spectra is None else self.spectra.lags

    @property
    def spectrum_mask(self) -> np.ndarray:
        """Boolean ``[K]``: True at the lags where sigma_min (and the whole spectrum) is measured."""
        return np.isin(self.lags, self.spectrum_lags)

    @property
    def log_rms(self) -> jax.Array:
        """``[..., K]`` exact log RMS singular value, ``log(||P_k||_F / sqrt(n))``."""
        return self.log_frobenius - 0.5 * np.log(self.state_size)

    def lag_metrics(self) -> metrics.LagMetrics:
        """Per-lag metrics at every lag 1..K, for the same figures and tables as :class:`Spectra`.

        ``log_sigma_max`` and ``log_rms`` are measured at every lag. ``log_sigma_min``,
        ``log_condition`` and ``isometry_spread`` are measured at the spectrum lags only
        (see :attr:`spectrum_mask`) and interpolated linearly in lag between them (held
        constant outside them), which is what a line through the measured points
        shows; ``spectra.lag_metrics()`` has the measured values alone. A norms-only
        profile has ``None`` in those three fields. No field is ever NaN.
        """
        if self.spectra is None:
            return metrics.LagMetrics(self.log_sigma_max, None, self.log_rms, None, None)
        exact = self.spectra.lag_metrics()
        interpolate = functools.partial(_interpolate, self.lags, self.spectrum_lags)
        log_sigma_min = interpolate(exact.log_sigma_min)
        return metrics.LagMetrics(self.log_sigma_max, log_sigma_min, self.log_rms,
                                  self.log_sigma_max - log_sigma_min, interpolate(exact.isometry_spread))

    def summary(self, thresholds: metrics.Thresholds = metrics.Thresholds()) -> metrics.Summary:
        """Growth rates, memory horizon and verdict from the every-lag sigma_max and RMS."""
        return metrics.summarize(self.lags, self.lag_metrics(), self.finite, thresholds)

    def verdict(self, thresholds: metrics.Thresholds = metrics.Thresholds()):
        """The verdict string (or an array of strings for a batched profile); int codes under ``jit``
        (see :func:`gradscope.metrics.verdict_names`)."""
        return metrics.verdict_names(self.summary(thresholds).verdict)

    def lag_table(self, label: str = "profile") -> pd.DataFrame:
        """Long table (init, seed, lag, metrics, ``spectrum_measured``) that the lag-profile plot draws.

        Batch entries become seeds; fields a norms-only profile lacks are left out.
        """
        fields = {k: v for k, v in self.lag_metrics()._asdict().items() if v is not None}
        columns = {k: np.asarray(v, np.float64).reshape(-1, len(self.lags)) for k, v in fields.items()}
        seeds, lags = np.meshgrid(np.arange(columns["log_rms"].shape[0]), self.lags, indexing="ij")
        table = {"init": label, "seed": seeds.ravel(), "lag": lags.ravel()}
        table.update({k: v.ravel() for k, v in columns.items()})
        table["spectrum_measured"] = np.broadcast_to(self.spectrum_mask, lags.shape).ravel()
        import pandas as pd  # only the table needs it: importing the profile stays light

        return pd.DataFrame(table)

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy table: one row per (batch entry, lag 1..K) with what was measured there.

        Columns: ``batch_0, ...`` (the batch axes, absent when unbatched), ``lag``,
        ``log_sigma_max`` (power estimate; exact at the spectrum lags), ``residual`` (its
        relative Ritz residual, 0 where exact), ``log_frobenius`` and ``log_rms`` (exact),
        ``spectrum_measured`` (a full spectrum was taken at this lag) and
        ``log_sigma_min`` (measured at the spectrum lags only, NaN elsewhere; unlike
        :meth:`lag_metrics` this table does not interpolate), and ``finite``.
        """
        batch = np.shape(self.finite)
        columns = {"log_sigma_max": self.log_sigma_max, "residual": self.residual,
                   "log_frobenius": self.log_frobenius, "log_rms": self.log_rms,
                   "spectrum_measured": np.broadcast_to(self.spectrum_mask, batch + (self.max_lag,)),
                   "log_sigma_min": self._measured_sigma_min(batch),
                   "finite": self.finite}
        return long_table({**batch_index_columns(batch), "lag": self.lags}, columns)

    def _measured_sigma_min(self, batch: tuple) -> np.ndarray:
        values = np.full(batch + (self.max_lag,), np.nan)
        if self.spectra is not None:
            values[..., self.spectrum_lags - 1] = np.asarray(self.spectra.lag_metrics().log_sigma_min, np.float64)
        return values

    def _headline(self) -> Headline:
        batch = np.shape(self.finite)
        spectra = ("norms only (no spectra)" if self.spectra is None
                   else f"full spectra at {len(self.spectrum_lags)} of them")
        facts = (f"{self.direction} products, n = {self.state_size}, every lag 1..{self.max_lag}, {spectra}"
                 + (f", batch {batch}" if batch else ""),)
        columns = {**self.summary().columns(),
                   "max_residual": np.max(np.asarray(self.residual, np.float64), axis=-1)}
        figures = ("plot_lag_profile",) if self.spectra is not None else ()
        return Headline("Profile", facts, batched_table(batch, columns), figures)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["log_singular_values", "log_floor", "finite"],
    meta_fields=["lag_values", "direction", "state_size"],
)
@dataclasses.dataclass(frozen=True, repr=False)
class TopSpectra(Readable):
    """The k largest singular values at each kept lag (a JAX pytree).

    Attributes:
        log_singular_values: ``[..., lags, k]`` natural logs, descending; Rayleigh-Ritz
            estimates, each a lower bound on the true value, clamped at ``log_floor``.
        log_floor: ``[..., lags]`` resolution floor, ``log sigma_max + log(n eps)``.
        finite: ``[...]`` False where states or products overflowed.
        lag_values: the lags as a tuple.
        direction: ``"backward"`` or ``"forward"``.
        state_size: n, the flattened state size.
    """

    log_singular_values: jax.Array
    log_floor: jax.Array
    finite: jax.Array
    lag_values: tuple
    direction: str = "backward"
    state_size: int = 0

    @property
    def lags(self) -> np.ndarray:
        """Kept lags as an int array."""
        return np.asarray(self.lag_values, dtype=np.int64)

    @property
    def log_sigma_max(self) -> jax.Array:
        """``[..., lags]`` log of the largest singular value."""
        return self.log_singular_values[..., 0]

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy table: one row per (batch entry, lag, index) estimate.

        Columns: ``batch_0, ...`` (the batch axes, absent when unbatched), ``lag``,
        ``index`` (1 = largest), ``log_singular_value`` (a lower bound, clamped at the
        floor) and ``resolved`` (above the resolution floor ``log_floor``).
        """
        axes = {**batch_index_columns(np.shape(self.finite)), "lag": self.lags,
                "index": range(1, self.log_singular_values.shape[-1] + 1)}
        resolved = self.log_singular_values > self.log_floor[..., None]
        return long_table(axes, {"log_singular_value": self.log_singular_values, "resolved": resolved})

    def _headline(self) -> Headline:
        batch, k = np.shape(self.finite), self.log_singular_values.shape[-1]
        thresholds = metrics.Thresholds()
        rate = metrics.fit_rate(self.lags, self.log_sigma_max)
        horizon = metrics.memory_horizon(self.lags, self.log_sigma_max, thresholds.horizon)
        verdict = np.vectorize(metrics.verdict_name)(metrics.verdict_code(rate, self.finite, thresholds, horizon))
        facts = (f"top {k} of n = {self.state_size} singular values (matrix-free lower bounds), {self.direction}, "
                 f"{lag_range(self.lags)}" + (f", batch {batch}" if batch else ""),)
        columns = {"log_sigma_max_last_lag": self.log_sigma_max[..., -1], "rate": rate, "horizon": horizon,
                   "verdict": verdict}
        return Headline("TopSpectra", facts, batched_table(batch, columns))


def _interpolate(lags: np.ndarray, known: np.ndarray, values: jax.Array) -> jax.Array:
    """Values ``[..., len(known)]`` at ``known`` lags, linearly interpolated to ``lags``; -inf safe."""
    hi = np.clip(np.searchsorted(known, lags), 0, len(known) - 1)
    lo = np.where(known[hi] > lags, np.maximum(hi - 1, 0), hi)
    span = np.where(known[hi] > known[lo], known[hi] - known[lo], 1)
    frac = np.clip((lags - known[lo]) / span, 0.0, 1.0)
    v_lo, v_hi = values[..., lo], values[..., hi]
    return jnp.where(frac == 0, v_lo, jnp.where(frac == 1, v_hi, (1 - frac) * v_lo + frac * v_hi))


# ---------------------------------------------------------------------------------------------
# Profile sweep (pure, traceable)
# ---------------------------------------------------------------------------------------------

class ProfileOutput(NamedTuple):
    """Raw output of :func:`profile_sweep`.

    Attributes:
        log_sigma_max: ``[K]`` per-lag log sigma_max (power estimate, exact at spectrum lags).
        log_frobenius: ``[K]`` exact ``log ||P_k||_F``.
        residual: ``[K]`` relative Ritz residual of each estimate (0 where exact).
        log_singular_values: ``[m, n]`` full spectra at the m spectrum lags.
        log_floor: ``[m]`` resolution floor at the spectrum lags.
        finite: scalar bool, False if any state or product became inf/NaN.
    """

    log_sigma_max: jax.Array
    log_frobenius: jax.Array
    residual: jax.Array
    log_singular_values: jax.Array
    log_floor: jax.Array
    finite: jax.Array


def _orthonormal_columns(block: jax.Array) -> jax.Array:
    return jnp.linalg.qr(block)[0]


def _orthonormal_rows(rows: jax.Array) -> jax.Array:
    return _orthonormal_columns(rows.T).T


def _ritz(matrix: jax.Array, space: jax.Array, width: int):
    """Rayleigh-Ritz on ``A = M M^T`` over the orthonormal rows of ``space`` (``[m, n]``).

    Returns the top ``width`` Ritz vectors as rows (descending), the top sigma =
    sqrt(theta) and its relative residual ``||A u - theta u|| / theta``. Vectors are
    kept as rows so that every product is ``[m, n] @ [n, n]``, which XLA's CPU dot
    runs about four times faster than the column layout ``[n, n] @ [n, m]``.
    """
    projected = space @ matrix
    theta, vectors = jnp.linalg.eigh(projected @ projected.T)
    top = jnp.maximum(theta[-1], jnp.finfo(matrix.dtype).tiny)
    residual = (vectors[:, -1] @ projected) @ matrix.T - top * (vectors[:, -1] @ space)
    return vectors[:, ::-1][:, :width].T @ space, jnp.sqrt(top), jnp.linalg.norm(residual) / top


def _power_step(matrix: jax.Array, basis: jax.Array, min_iters: int, max_iters, tol: float):
    """Warm-started block Krylov iterations on ``M M^T`` until the Ritz residual is below ``tol``.

    ``basis`` holds the block as orthonormal rows. Each iteration extends the block U
    to ``[U, M M^T U]`` and keeps the top Ritz vectors of that span (a restarted
    block Lanczos: faster than plain power iterations when the top singular values
    cluster). Runs at least ``min_iters`` and at most ``max_iters`` (may be traced)
    iterations; returns ``(basis, sigma_max estimate, relative residual)``.
    """
    width = basis.shape[0]

    def keep_going(carry):
        _, _, residual, count = carry
        return (count < max_iters) & ((count < min_iters) | (residual > tol))

    def iterate(carry):
        basis, _, _, count = carry
        space = _orthonormal_rows(jnp.concatenate([basis, (basis @ matrix) @ matrix.T], axis=0))
        return (*_ritz(matrix, space, width), count + 1)

    basis, sigma, residual, _ = jax.lax.while_loop(keep_going, iterate, (*_ritz(matrix, basis, width), 0))
    return basis, sigma, residual


WARMUP_ITERS = 64
"""Iterations allowed at each of the first :data:`WARMUP_LAGS` lags (lag 1 starts from a random block,
and the top singular vectors move fastest at short lags)."""

WARMUP_LAGS = 16
"""How many leading lags may use up to :data:`WARMUP_ITERS` iterations."""


def _record(buffers, k, values):
    return tuple(buf.at[k - 1].set(v) for buf, v in zip(buffers, values, strict=True))


def profile_sweep(flat_step, params, states, xs, max_lag: int, spectrum_lags: tuple[int, ...],
                  direction: str = "backward", untied: bool = False, block: int = 4,
                  power_iters: tuple[int, int] = (0, 4), tol: float = 1e-3) -> ProfileOutput:
    """Sweep lags 1..``max_lag`` once: per-lag sigma_max (power) and Frobenius norm, SVDs at ``spectrum_lags``.

    ``spectrum_lags`` is a sorted tuple of ints in [1, max_lag], possibly empty (no SVD).
    ``power_iters`` is (min, max) iterations per lag; the first :data:`WARMUP_LAGS` lags
    may take up to :data:`WARMUP_ITERS`.

    Differentiable: the power iterations run on the product with its gradient
    stopped, and the estimate is ``||u Q_k||`` for the top Ritz vector u held fixed,
    whose gradient is that of sigma_max wherever u has converged (the derivative of a
    Rayleigh quotient at its maximum does not depend on how u moves).
    """
    n, dtype = states.shape[1], states.dtype
    advance = engine.product_stepper(flat_step, params, states, xs, direction, untied)

    def body(k, carry):
        rows, log_scale, finite, basis, buffers = carry
        rows, log_scale, finite = advance(k, (rows, log_scale, finite))
        cap = jnp.where(k <= WARMUP_LAGS, max(WARMUP_ITERS, power_iters[1]), power_iters[1])
        basis, _, residual = _power_step(jax.lax.stop_gradient(rows), basis, power_iters[0], cap, tol)
        log_sigma = log_scale + engine.log_norm(basis[0] @ rows)[1]
        buffers = _record(buffers, k, (log_sigma, log_scale, residual))
        return rows, log_scale, finite, basis, buffers

    rows, log_scale = engine.initial_product(n, dtype)
    start = jax.random.normal(jax.random.key(0), (min(block, n), n), dtype)
    buffers = tuple(jnp.zeros(max_lag, dtype) for _ in range(3))
    carry = (rows, log_scale, jnp.all(jnp.isfinite(states)), _orthonormal_rows(start), buffers)
    carry, (log_sv, _, floor) = engine.scan_lags(body, carry, spectrum_lags, num_steps=max_lag)
    (log_sigma_max, log_fro, residual), finite = carry[4], carry[2]
    where = np.asarray(spectrum_lags, np.int32) - 1
    log_sigma_max, residual = log_sigma_max.at[where].set(log_sv[:, 0]), residual.at[where].set(0.0)
    return ProfileOutput(log_sigma_max, log_fro, residual, log_sv, floor,
                         finite & jnp.all(~jnp.isnan(log_sigma_max)) & jnp.all(~jnp.isnan(log_sv)))


# ---------------------------------------------------------------------------------------------
# Matrix-free top-k (pure, traceable)
# ---------------------------------------------------------------------------------------------

class TopOutput(NamedTuple):
    """Raw output of :func:`top_k_sweep`.

    Attributes:
        log_singular_values: ``[lags, k]`` log of the k largest singular values (descending).
        log_floor: ``[lags]`` resolution floor.
        finite: scalar bool.
    """

    log_singular_values: jax.Array
    log_floor: jax.Array
    finite: jax.Array


_OPPOSITE = {"backward": "forward", "forward": "backward"}


def top_k_sweep(flat_step, params, states, xs, lags: tuple[int, ...], k: int, oversample: int = 8,
                power_iters: int = 1, key=None, direction: str = "backward", untied: bool = False) -> TopOutput:
    r"""The k largest singular values of the product at each kept lag, carrying ``b = k + oversample`` vectors.

    Randomized subspace iteration (Halko, Martinsson & Tropp 2011) on each product,
    never forming it. For the backward product ``P_k = J_T ... J_{T-k+1}``, rows
    ``U^T P_k`` are a chain of VJPs from h_T (the fixed end), and ``P_k Z^T`` a chain of
    JVPs from h_{T-k}. One shared VJP sweep from a random block at h_T gives the
    range of ``P_k^T`` for every kept lag (re-orthonormalised each step); each lag then
    runs ``power_iters`` rounds of (JVP chain, VJP chain) over its own k steps and a
    last JVP chain whose singular values are the Rayleigh-Ritz estimates. The forward
    product is the mirror image (JVPs from h_0, VJPs back). Work: one sweep plus
    ``(2 power_iters + 1) * sum(lags)`` block steps of b vectors; memory: ``b * n``
    per kept lag plus the unrolled states.

    Differentiable (forward and reverse mode): the subspace iterations run with
    gradients stopped and only the last chain is differentiated, so the gradient is
    that of the Rayleigh-Ritz values with the subspace held fixed, which equals the
    gradient of the singular values wherever the subspace has converged. The last
    chains are differentiated through one compiled loop per kept lag (compiled only
    when a derivative is taken).
    """
    n, dtype = states.shape[1], states.dtype
    frozen = jax.lax.stop_gradient((params, states, xs))
    bases, finite = _top_k_bases(flat_step, *frozen, lags, min(k + oversample, n), power_iters, key, direction,
                                 untied)
    rows, log_scale = _last_chains(flat_step, params, states, xs, bases, lags, direction, untied)
    log_rel = float(np.log(engine.relative_resolution(n, dtype)))
    log_sv, floor = engine.log_spectrum(jnp.linalg.svd(rows, compute_uv=False), log_scale, log_rel)
    finite = finite & jnp.all(jnp.isfinite(log_scale)) & jnp.all(~jnp.isnan(log_sv))
    return TopOutput(log_sv[:, :k], floor, finite)


def _top_k_bases(flat_step, params, states, xs, lags, width: int, power_iters: int, key, direction: str,
                 untied: bool):
    """The subspace iterations of :func:`top_k_sweep`: each lag's block before its last chain, and ``finite``."""
    dtype, num_steps = states.dtype, states.shape[0]
    there = engine.product_stepper(flat_step, params, states, xs, direction, untied)
    back = engine.product_stepper(flat_step, params, states, xs, _OPPOSITE[direction], untied)

    def orth_step(stepper):
        def step(i, carry):
            rows, finite = carry
            rows, _, finite = stepper(i, (rows, jnp.zeros((), dtype), finite))
            return _orthonormal_rows(rows), finite
        return step

    def segment(carry, gap):
        rows, finite, lag = carry
        rows, finite = jax.lax.fori_loop(lag + 1, lag + gap + 1, orth_step(there), (rows, finite))
        return (rows, finite, lag + gap), rows

    def one_lag(finite, inputs):
        lag, basis = inputs
        for _ in range(power_iters):
            basis, finite = jax.lax.fori_loop(num_steps - lag + 1, num_steps + 1, orth_step(back), (basis, finite))
            basis, finite = jax.lax.fori_loop(1, lag + 1, orth_step(there), (basis, finite))
        return finite, basis

    key = jax.random.key(0) if key is None else key
    start = _orthonormal_rows(jax.random.normal(key, (width, states.shape[1]), dtype))
    (_, finite, _), bases = jax.lax.scan(segment, (start, jnp.all(jnp.isfinite(states)), jnp.int32(0)),
                                         engine.lag_gaps(lags))
    finite, bases = jax.lax.scan(one_lag, finite, (jnp.asarray(lags, jnp.int32), bases))
    return bases, finite


def _chains(flat_step, params, states, xs, bases, lags, direction, untied, static: bool):
    """Each lag's block pushed across that lag's steps to the fixed end (h_T backward, h_0 forward).

    Returns ``(rows [L, b, n], log_scale [L])``. ``static`` runs one loop per lag with a
    trip count known when tracing (reverse-differentiable, one compiled loop per lag);
    otherwise one loop over the lags with traced trip counts (compiled once).
    """
    back = engine.product_stepper(flat_step, params, states, xs, _OPPOSITE[direction], untied)
    num_steps, zero = states.shape[0], jnp.zeros((), states.dtype)

    def chain(lag, basis):
        return jax.lax.fori_loop(num_steps - lag + 1, num_steps + 1, back, (basis, zero, jnp.bool_(True)))[:2]

    if static:
        return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[chain(int(lag), bases[j])
                                                                  for j, lag in enumerate(lags)])
    return jax.lax.map(lambda inputs: chain(*inputs), (jnp.asarray(lags, jnp.int32), bases))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 5, 6, 7))
def _last_chains(flat_step, params, states, xs, bases, lags, direction, untied):
    """:func:`_chains` with traced trip counts, differentiated through the static-trip-count version."""
    return _chains(flat_step, params, states, xs, bases, lags, direction, untied, static=False)


@_last_chains.defjvp
def _last_chains_jvp(flat_step, lags, direction, untied, primals, tangents):
    static = lambda *args: _chains(flat_step, *args, lags, direction, untied, static=True)  # noqa: E731
    return jax.jvp(static, primals, tangents)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def _positive_int(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _iterations(minimum, maximum) -> tuple[int, int]:
    low, high = _positive_int("power_iters", minimum, 0), _positive_int("max_power_iters", maximum)
    if high < low:
        raise ValueError(f"max_power_iters must be >= power_iters, got {high} < {low}")
    return low, high


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("step", "max_lag", "spectrum_lags", "direction", "untied",
                                             "batch_axes", "block", "power_iters", "tol"))
def _profile_core(step, params, xs, h0, max_lag, spectrum_lags, direction, untied, batch_axes, block,
                  power_iters, tol):
    one = functools.partial(profile_of, step, params, h0=h0, max_lag=max_lag, spectrum_lags=spectrum_lags,
                            direction=direction, untied=untied, block=block, power_iters=power_iters, tol=tol)
    return engine.over_batch_axes(one, batch_axes)(xs)


def profile_of(step, params, xs, h0, max_lag: int, spectrum_lags: tuple[int, ...] | None,
               direction: str = "backward", untied: bool = False, block: int = 4,
               power_iters: tuple[int, int] = (0, 4), tol: float = 1e-3) -> Profile:
    """Unroll and profile one sequence; pure and traceable (no checks: see :func:`jacobian_profile`).

    ``spectrum_lags`` is a sorted tuple of lags in [1, max_lag] with full spectra, or
    ``None`` for norms only.
    """
    flat_step, states = engine.unrolled_states(step, params, xs, h0, untied)
    out = profile_sweep(flat_step, params, states, xs, max_lag, spectrum_lags or (), direction, untied,
                        block, power_iters, tol)
    spec = None if spectrum_lags is None else spectra.Spectra(
        out.log_singular_values, out.log_frobenius[np.asarray(spectrum_lags) - 1], out.log_floor, out.finite,
        spectrum_lags, direction)
    return Profile(out.log_sigma_max, out.log_frobenius, out.residual, spec, out.finite,
                   max_lag, direction, states.shape[1])


def jacobian_profile(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None, *,
                     spectrum_lags: Lags = "log", num_log_lags: int = 32,
                     max_lag: int | None = None, block: int = 4, power_iters: int = 0,
                     max_power_iters: int = 4, tol: float = 1e-3, direction: str = "backward", dtype=None,
                     untied: bool = False, batch_axes: int | None = None) -> Profile:
    """sigma_max and the RMS singular value at every lag, and full spectra at a few, in one sweep.

    The cheap path for lag-profile figures: per lag it pays one product update (as
    :func:`gradscope.jacobian_spectra` does) plus a few block matrix-vector products,
    and an n x n SVD only at the spectrum lags. See the module docstring for how
    sigma_max is tracked and how accurate it is.

    Args:
        cell_or_step: as for :func:`gradscope.jacobian_spectra`.
        params: as for :func:`gradscope.jacobian_spectra`.
        xs: as for :func:`gradscope.jacobian_spectra`.
        h0: as for :func:`gradscope.jacobian_spectra`.
        spectrum_lags: lags (in 1..max_lag) with full spectra: ``"log"`` (``num_log_lags``
            log-spaced lags including 1 and max_lag), ``"all"``, ints, or ``None`` for
            norms only (no SVD at all; :func:`norm_profile`).
        num_log_lags: how many lags ``spectrum_lags="log"`` keeps.
        max_lag: profile lags 1..max_lag (default T).
        block: vectors in the warm-started power iteration (more helps near-degenerate tops).
        power_iters: iterations at least, per lag (0: only when the warm-started Ritz
            residual exceeds ``tol``).
        max_power_iters: power iterations at most per lag beyond the first 16 lags (which
            may take up to 64: lag 1 starts cold and short lags move fastest).
        tol: iterate until the relative Ritz residual (``residual``) is below this.
        direction: as for :func:`gradscope.jacobian_spectra`.
        dtype: as for :func:`gradscope.jacobian_spectra`.
        untied: as for :func:`gradscope.jacobian_spectra`.
        batch_axes: as for :func:`gradscope.jacobian_spectra`.

    Returns:
        :class:`Profile`; ``.lag_metrics()`` and ``.lag_table()`` feed the lag-profile plots.

    Raises:
        ValueError / TypeError: malformed inputs, with what was expected and the fix.
        gradscope.NumericalOverflowError: states or products became inf/NaN.
    """
    prep = spectra.prepare_inputs(cell_or_step, params, xs, h0, direction=direction, dtype=dtype,
                                  untied=untied, batch_axes=batch_axes)
    max_lag = prep.num_steps if max_lag is None else _positive_int("max_lag", max_lag)
    if max_lag > prep.num_steps:
        raise ValueError(f"max_lag must be <= T = {prep.num_steps} (the length of xs), got {max_lag}")
    kept = None if spectrum_lags is None else select_lags(spectrum_lags, max_lag, num_log_lags)
    if kept is not None and kept[0] == 0:
        raise ValueError(f"spectrum_lags must lie in [1, max_lag] = [1, {max_lag}]; lag 0 is the identity")
    result = _profile_core(prep.step, prep.params, prep.xs, prep.h0, max_lag, kept, direction, bool(untied),
                           prep.batch_axes, _positive_int("block", block), _iterations(power_iters, max_power_iters),
                           _positive_float("tol", tol))
    spectra._raise_if_overflowed(result)
    return result


def norm_profile(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None,
                 **options) -> Profile:
    """sigma_max and RMS singular value at every lag, with no SVD at all (the norms-only mode).

    Same as :func:`jacobian_profile` with ``spectrum_lags=None``; far cheaper than full
    spectra since the only per-lag work besides the product update is a few block
    matrix-vector products. ``sigma_max`` is the warm-started power estimate at every lag.
    """
    return jacobian_profile(cell_or_step, params, xs, h0, spectrum_lags=None, **options)


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("step", "lags", "k", "oversample", "power_iters", "direction",
                                             "untied", "batch_axes"))
def _top_core(step, params, xs, h0, key, lags, k, oversample, power_iters, direction, untied, batch_axes):
    def one(x):
        flat_step, states = engine.unrolled_states(step, params, x, h0, untied)
        out = top_k_sweep(flat_step, params, states, x, lags, k, oversample, power_iters, key, direction, untied)
        return TopSpectra(out.log_singular_values, out.log_floor, out.finite, lags, direction, states.shape[1])
    return engine.over_batch_axes(one, batch_axes)(xs)


def top_singular_values(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None, *,
                        k: int = 8, lags: Lags = "log", num_log_lags: int = 32,
                        oversample: int = 8, power_iters: int = 1, seed: int = 0, direction: str = "backward",
                        dtype=None, untied: bool = False, batch_axes: int | None = None) -> TopSpectra:
    """The k largest singular values of each kept product, matrix-free (for large n).

    Carries blocks of ``k + oversample`` vectors through VJP/JVP chains instead of the
    n x n product (see :func:`top_k_sweep`), so memory is O((k + oversample) n) per
    kept lag. The work grows with the sum of the kept lags, so prefer ``lags="log"``.
    Estimates are lower bounds that tighten with ``oversample`` and ``power_iters``;
    accuracy improves with the lag as the singular values of the product separate.

    Args:
        cell_or_step: as for :func:`gradscope.jacobian_spectra`.
        params: as for :func:`gradscope.jacobian_spectra`.
        xs: as for :func:`gradscope.jacobian_spectra`.
        h0: as for :func:`gradscope.jacobian_spectra`.
        k: how many singular values (<= n).
        lags: ``"log"``, ``"all"`` or ints in [0, T] (see :func:`gradscope.select_lags`).
        num_log_lags: lag count for ``lags="log"``.
        oversample: extra vectors carried beyond k.
        power_iters: subspace (power) iterations per lag.
        seed: seed of the random start block.
        direction: as for :func:`gradscope.jacobian_spectra`.
        dtype: as for :func:`gradscope.jacobian_spectra`.
        untied: as for :func:`gradscope.jacobian_spectra`.
        batch_axes: as for :func:`gradscope.jacobian_spectra`.

    Returns:
        :class:`TopSpectra` with ``log_singular_values`` ``[..., len(lags), k]``.

    Raises:
        ValueError: k outside [1, n] or malformed inputs.
        gradscope.NumericalOverflowError: states or products became inf/NaN.
    """
    prep = spectra.prepare_inputs(cell_or_step, params, xs, h0, direction=direction, dtype=dtype,
                                  untied=untied, batch_axes=batch_axes)
    n = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(prep.h0))
    k = _positive_int("k", k)
    if k > n:
        raise ValueError(f"k must be at most the state size n = {n}, got k = {k}; use jacobian_spectra for all")
    kept = select_lags(lags, prep.num_steps, num_log_lags)
    result = _top_core(prep.step, prep.params, prep.xs, prep.h0, jax.random.key(seed), kept, k,
                       _positive_int("oversample", oversample, 0), _positive_int("power_iters", power_iters, 0),
                       direction, bool(untied), prep.batch_axes)
    spectra._raise_if_overflowed(result)
    return result
