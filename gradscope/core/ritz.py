r"""Singular values of consecutive Jacobian products, warm-started: below the cost of an SVD each.

The products of one sweep are not unrelated matrices: ``P_{k+1} = P_k J``, and the left
singular vectors of ``P_k`` converge as k grows (to the backward Lyapunov vectors).
Only the singular values above the resolution floor (``sigma_max * n * eps``, see
:func:`gradscope.core.engine.relative_resolution`) are reported as such; the rest are
clamped to the floor. For contracting and chaotic cells alike that resolved part has a
low rank after a few lags (a tanh RNN at n = 256 resolves about 160 values at lag 10, 50
at lag 50 and 10 at lag 200), so most of the work of a full SVD is spent on values the
analysis then clamps.

:func:`block_spectra` exploits both facts. For each product ``Q`` (the normalised
``P_k``) of a run of consecutive kept lags it carries an orthonormal basis ``W`` of the
leading left singular subspace from the previous lag and refines it by one step of
subspace iteration, which also gives the Rayleigh-Ritz values:

.. math::
    V = \operatorname{orth}(Q^\top W), \qquad Q V = W' R \ \text{(QR)}, \qquad
    \sigma(R) = \sigma(Q V) \ \text{(the Ritz values)}.

With ``m`` basis vectors this costs ``4 n^2 m`` flops of matrix products plus
factorizations of ``n x m`` and ``m x m`` matrices, against the ``O(n^3)`` memory-bound
bidiagonalisation of a full SVD. Ritz values never exceed the singular values of the
same rank. The basis is kept wide enough to reach :data:`GAP` nats below the resolution
floor (plus :data:`EXTRA` vectors), so that the values above the floor converge fast;
a basis that does not reach that far is replaced by a full SVD of that product. Where
the basis would need more than :data:`FULL_FRACTION` of the space (the first lags, an
orthogonal linear cell) a plain singular-value call is cheaper and is used. Measured
against LAPACK's own values (float32, n = 128..512, T = 200, contracting, critical and
chaotic vanilla cells, GRU and LSTM): every value above the floor agrees to 4e-4 in log,
far inside the 0.015 that float32 promises there; tests/test_ritz.py checks it.

Runs of lags are decomposed on several threads at once (see :mod:`gradscope.core.pipeline`):
a run starts from the newest basis any thread has published for an earlier lag of the
same batch entry (:class:`WarmStarts`), refined by :data:`WARM_STEPS` steps, or from a
full SVD where there is none yet.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["EXTRA", "FULL_FRACTION", "GAP", "MIN_LAGS", "MIN_STATE", "MIN_WORK", "THROUGH_JAX", "WARM_STEPS",
           "WarmStarts", "block_spectra", "refine", "supports", "worth_it"]

GAP = 2.0
"""Nats below the resolution floor the basis must reach: the Ritz values above the floor then
converge at least ``e^(2 GAP)`` times faster per step than the basis drifts."""
EXTRA = 4
"""Basis vectors beyond those that reach :data:`GAP` below the floor."""
FULL_FRACTION = 0.4
"""A product whose basis would need more than this fraction of ``min(rows, columns)`` vectors
gets a plain singular-value call. One refinement step costs as much as that call at about 0.65 of
the space for n = 128, 0.45 for n = 256 and 0.4 for n = 512 (single-threaded LAPACK); replayed
on the benchmarks' products, 0.4 was the fastest of 0.3..0.75 for tanh n = 128 and 256 and the
LSTM with hidden 256."""
THROUGH_JAX = 64
"""Products with ``min(rows, columns)`` at least this large get their plain SVDs through JAX
(``jnp.linalg.svd``: the same LAPACK ``gesdd``), whose call lets go of Python's GIL while it
runs, so the pipeline's threads decompose in parallel. SciPy's ``gesdd`` wrapper holds the GIL:
on the 2-core benchmark machine 16 values-only calls at n = 256 took 0.052 s on one thread and
on two alike (its ``geqrf`` lets go: 0.016 s against 0.010 s), and routing the products through
JAX made the default 11-14% faster (tanh n = 256, T = 100 and 200; a PyTorch GRU with hidden
256, T = 100). A product has one shape per analysis, so this compiles once; the Ritz triangles,
of many sizes, stay with SciPy."""
SLACK = 8
"""Surplus basis vectors tolerated before the basis is cut back to its leading Ritz vectors."""
WARM_STEPS = 2
"""Subspace-iteration steps at the start of a run, from a basis published for an earlier lag."""
MIN_STATE = 128
"""Smallest ``min(rows, columns)`` for which :func:`worth_it` recommends the method: below it the
per-call overhead of the small factorizations outweighs the saved flops."""
MIN_LAGS = 50
"""Fewest lags for which :func:`worth_it` recommends the method, whatever the size: the first lags
(high rank, plain SVDs) and the start of every run cost the same either way, and the resolved rank
falls with the lag, not with the size, so the method pays only over many lags. Pipelined tanh
analyses on the 2-core benchmark machine, median time against one LAPACK call per product
(2026-11-29, products' SVDs through JAX, :data:`THROUGH_JAX`): n = 256 T = 32 1.23x,
n = 384 T = 25 1.11x, n = 512 T = 32 1.10x, but n = 256 T = 50 0.92x, n = 512 T = 50 0.93x,
n = 256 T = 64 0.88x, n = 512 T = 64 0.85x."""
MIN_WORK = 3_000_000
"""Smallest ``lags * min(rows, columns)**2`` for which :func:`worth_it` recommends the method: at
n = 128 each refinement saves little against a cheap SVD, so it needs about 180 lags. Same
measurements as :data:`MIN_LAGS`: n = 128 T = 64 1.32x, T = 100 1.06x, T = 150 1.02x, but
T = 200 0.90x, T = 250 0.89x; n = 192 T = 100 0.90x; n = 384 T = 50 0.91x."""


def supports(dtype) -> bool:
    """True for float32 products: one refinement step per lag reaches float32's accuracy, not float64's."""
    return np.dtype(dtype) == np.float32


def worth_it(shape: tuple[int, ...], dtype, num_lags: int) -> bool:
    """True when the method applies to ``num_lags`` products of ``shape`` (``[..., rows, columns]``)
    and ``dtype`` and pays (:data:`MIN_STATE`, :data:`MIN_LAGS`, :data:`MIN_WORK`)."""
    size = min(shape[-2:])
    return supports(dtype) and size >= MIN_STATE and num_lags >= MIN_LAGS and num_lags * size**2 >= MIN_WORK


class WarmStarts:
    """The newest left basis published per batch entry, shared by the threads of one analysis."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latest: dict[int, tuple[int, np.ndarray, int]] = {}

    def publish(self, entry: int, lag_index: int, basis: np.ndarray, reach: int) -> None:
        """Offer the basis of kept lag number ``lag_index`` (kept if newer than the one held)."""
        with self._lock:
            held = self._latest.get(entry)
            if held is None or held[0] < lag_index:
                self._latest[entry] = (lag_index, basis, reach)

    def before(self, entry: int, lag_index: int) -> tuple[np.ndarray, int] | None:
        """``(basis, reach)`` published for an earlier lag of ``entry``, or None."""
        with self._lock:
            held = self._latest.get(entry)
        return None if held is None or held[0] >= lag_index else held[1:]


def _lapack(name: str, array: np.ndarray):
    """The LAPACK routine ``name`` for ``array``'s dtype (SciPy is imported on first use)."""
    from scipy.linalg import lapack

    return lapack.get_lapack_funcs(name, (array,))


def _qr(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thin QR ``(Q, R)`` of a tall matrix, through LAPACK directly (numpy's wrapper costs 4x more here)."""
    q, factors = _q_and_factors(matrix)
    return q, np.triu(factors[:matrix.shape[1]])


def _q_and_factors(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The thin QR's ``Q`` and ``geqrf``'s packed factors (``R`` is their upper triangle, formed only where needed)."""
    factors, tau, _, _ = _lapack("geqrf", matrix)(matrix)
    return _lapack("orgqr", factors)(factors, tau)[0], factors


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """All singular values, descending (LAPACK ``gesdd`` without vectors, as ``jnp.linalg.svd`` calls it)."""
    return _lapack("gesdd", matrix)(matrix, compute_uv=0)[1]


def _product_values(product: np.ndarray) -> np.ndarray:
    """:func:`singular_values` of a product, through JAX from :data:`THROUGH_JAX` on (a product
    has one shape per analysis: one compilation)."""
    if min(product.shape) >= THROUGH_JAX:
        return np.asarray(_jax_values(product))
    return singular_values(product)


@jax.jit
def _jax_values(matrix):
    return jnp.linalg.svd(matrix, compute_uv=False)


@jax.jit
def _jax_values_and_left(matrix):
    return jnp.linalg.svd(matrix, compute_uv=False), jnp.linalg.svd(matrix, full_matrices=False)[0]


def _svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(left vectors, values)``, thin, by LAPACK ``gesvd``: with vectors, ``gesdd``'s divide and
    conquer loses up to 1e-2 in log on values near the floor, QR iteration does not."""
    left, values, _, _ = _lapack("gesvd", matrix)(matrix, full_matrices=0)
    return left, values


def _values_and_basis(matrix: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(all singular values, the leading width left singular vectors)`` of a square product.

    The values come from the values-only call (:func:`_product_values`: exactly what a plain
    SVD reports). The vectors come from divide and conquer (``gesdd``): its values near the
    floor are the part it gets wrong, and those are not used; its vectors only start the
    refinement of the next lags. The two calls together cost half of one ``gesvd`` with
    vectors (n = 256, single-threaded: 8 ms against 17 ms).
    """
    if min(matrix.shape) >= THROUGH_JAX:
        values, left = _jax_values_and_left(matrix)  # the width is not static: one program per shape
        return np.asarray(values), np.asarray(left)[:, :width]
    left = _lapack("gesdd", matrix)(matrix, compute_uv=1, full_matrices=0)[0]
    return singular_values(matrix), left[:, :width]


def refine(product: np.ndarray, basis: np.ndarray, steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` steps of subspace iteration of ``basis`` on ``product``; returns ``(basis, R)``.

    Args:
        product: the matrix ``Q`` (``a x b``).
        basis: ``a x m`` orthonormal columns.
        steps: refinement steps; each costs ``4 a b m`` flops and two thin QRs.

    Returns:
        The refined ``a x m`` orthonormal basis ``W'`` and the ``m x m`` triangle ``R`` with
        ``Q V = W' R``; the singular values of ``R`` are the Ritz values of ``Q`` on the basis.
    """
    for _ in range(steps):
        right = _q_and_factors(product.T @ basis)[0]
        basis, triangle = _qr(product @ right)
    return basis, triangle


def _reach(values: np.ndarray, log_rel: float) -> int:
    """How many of the descending ``values`` lie above ``GAP`` nats below the resolution floor."""
    if not values[0] > 0:
        return 0
    return int(np.count_nonzero(values > values[0] * np.exp(log_rel - GAP)))


class _Chain:
    """The warm-start state of one run of consecutive lags of one batch entry."""

    def __init__(self, entry: int, starts: WarmStarts, log_rel: float):
        self.entry, self.starts, self.log_rel = entry, starts, log_rel
        self.basis: np.ndarray | None = None
        self.reach: int | None = None
        self.steps = 1

    def values(self, product: np.ndarray, lag_index: int) -> np.ndarray:
        """The singular values of ``product`` (Ritz values where those are enough), descending."""
        if self.reach is None:
            self._start(lag_index)
        size = min(product.shape)
        width = min(size, (size if self.reach is None else self.reach) + EXTRA)
        if width > FULL_FRACTION * size:
            self.basis, values = None, _product_values(product)
        elif self.basis is None or self.basis.shape[1] < width:
            values = self._full(product, width)
        else:
            values = self._ritz(product, width)
        self.reach, self.steps = _reach(values, self.log_rel), 1
        if self.basis is not None:
            self.starts.publish(self.entry, lag_index, self.basis, self.reach)
        return values

    def _start(self, lag_index: int) -> None:
        warm = self.starts.before(self.entry, lag_index)
        if warm is not None:
            (self.basis, self.reach), self.steps = warm, WARM_STEPS

    def _full(self, product: np.ndarray, width: int) -> np.ndarray:
        values, self.basis = _values_and_basis(product, width)
        return values

    def _ritz(self, product: np.ndarray, width: int) -> np.ndarray:
        basis, triangle = refine(product, self.basis, self.steps)
        if basis.shape[1] > width + SLACK:  # cut back to the leading Ritz vectors
            vectors, values = _svd(triangle)
            self.basis = (basis @ vectors)[:, :width]
        else:
            self.basis, values = basis, singular_values(triangle)
        if _reach(values, self.log_rel) >= len(values):  # the basis does not reach GAP below the floor
            values = self._full(product, min(min(product.shape), _reach(values, self.log_rel) + EXTRA))
        return values


def block_spectra(products, log_scales, indices, lag_of, entry_of, starts: WarmStarts, columns, log_rel: float):
    """``(log_sv, log_fro, floor)`` of the products at ``indices``, as
    :func:`gradscope.core.engine.block_output` computes them.

    Args:
        products: ``[count, a, c]`` normalised products (NumPy, real).
        log_scales: ``[count]`` their log scales.
        indices: positions in ``products`` to decompose, in lag order within each entry.
        lag_of: ``lag_of(i)``, the kept-lag number of position ``i`` (orders the warm starts).
        entry_of: ``entry_of(i)``, the batch entry of position ``i``.
        starts: the analysis' shared :class:`WarmStarts`.
        columns: state indices kept in the block (None: all).
        log_rel: log of the relative resolution of the block's shape.

    Returns:
        Three arrays ``[len(indices), min(a, b)]``, ``[len(indices)]``, ``[len(indices)]``.
    """
    chains: dict[int, _Chain] = {}
    rows = []
    for i in indices:
        block = products[i] if columns is None else products[i][:, np.asarray(columns)]
        chain = chains.setdefault(entry_of(i), _Chain(entry_of(i), starts, log_rel))
        rows.append(_log_output(block, float(log_scales[i]), chain, lag_of(i), log_rel))
    return tuple(np.stack(field) for field in zip(*rows))


def _log_output(block: np.ndarray, log_scale: float, chain: _Chain, lag_index: int, log_rel: float):
    """One product's clamped log singular values, log Frobenius norm and floor (NaN where not finite)."""
    size, dtype = min(block.shape), block.dtype
    with np.errstate(all="ignore"):
        log_fro = log_scale + np.log(np.linalg.norm(block))
    if not np.isfinite(log_fro):
        return np.full(size, np.nan, dtype), np.asarray(log_fro, dtype), np.asarray(np.nan, dtype)
    values = chain.values(block, lag_index)
    log_sv = np.full(size, -np.inf, dtype)
    with np.errstate(divide="ignore"):
        log_sv[:len(values)] = log_scale + np.log(values)
    floor = log_sv[0] + log_rel
    return np.maximum(log_sv, floor), np.asarray(log_fro, dtype), np.asarray(floor, dtype)
