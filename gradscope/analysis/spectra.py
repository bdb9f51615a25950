"""All-lag Jacobian spectra of an unrolled recurrent cell: the main analysis entry point."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradscope.core import _checks
from gradscope.core import buckets
from gradscope.core import diagonal as diagonal_path
from gradscope.core import engine
from gradscope.analysis import metrics
from gradscope.core import pipeline, programs, ritz
from gradscope.core._lapack import lapack_thread_limit
from gradscope.core.lags import select_lags
from gradscope.display.headline import Headline, Readable, batch_index_columns, batched_table, lag_range, long_table
from gradscope.core.types import CellOrStep, DTypeLike, Inputs, Lags, Params, State

__all__ = ["PreparedInputs", "Spectra", "block_indices", "forward_spectra", "jacobian_spectra", "prepare_inputs", "spectra_of"]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["log_singular_values", "log_frobenius", "log_floor", "finite"],
    meta_fields=["lag_values", "direction"],
)
@dataclasses.dataclass(frozen=True, repr=False)
class Spectra(Readable):
    """Singular values of the Jacobian products at each kept lag (a JAX pytree).

    Attributes:
        log_singular_values: ``[..., len(lags), n]`` natural-log singular values,
            descending. Values the dtype cannot resolve (below ``log_floor``) are
            clamped to the floor; ``-inf`` only for an exactly zero product.
        log_frobenius: ``[..., len(lags)]`` exact ``log ||P_k||_F``.
        log_floor: ``[..., len(lags)]`` resolution floor, ``log sigma_max + log(n eps)``.
        finite: ``[...]`` False where states or products overflowed to inf/NaN.
        lag_values: the lags as a tuple (``lags`` gives them as an array).
        direction: ``"backward"`` (entry k is dh_T/dh_{T-k}) or ``"forward"``
            (entry k is dh_k/dh_0).

    Leading ``...`` axes appear when the inputs were batched (or under ``vmap``).
    """

    log_singular_values: jax.Array
    log_frobenius: jax.Array
    log_floor: jax.Array
    finite: jax.Array
    lag_values: tuple
    direction: str = "backward"

    @property
    def lags(self) -> np.ndarray:
        """Kept lags as an int array; entry k of the lag axis is the product over ``lags[k]`` steps."""
        return np.asarray(self.lag_values, dtype=np.int64)

    @property
    def state_size(self) -> int:
        """n, the size of the flattened state (2 * hidden for an LSTM)."""
        return int(self.log_singular_values.shape[-1])

    @property
    def resolved(self) -> jax.Array:
        """Boolean ``[..., lags, n]``: True where a singular value is above the resolution floor."""
        return self.log_singular_values > self.log_floor[..., None]

    def lag_metrics(self) -> metrics.LagMetrics:
        """Per-lag sigma_max, sigma_min, RMS, condition number and isometry spread (logs)."""
        return metrics.lag_metrics(self.log_singular_values, self.log_frobenius)

    def summary(self, thresholds: metrics.Thresholds = metrics.Thresholds()) -> metrics.Summary:
        """Growth rates, memory horizon and verdict code (see :mod:`gradscope.metrics`).

        A stored program when the compilation cache is on (:mod:`gradscope.core.programs`).
        """
        return programs.stored_call(functools.partial(_summary_of, thresholds=thresholds), self)

    def verdict(self, thresholds: metrics.Thresholds = metrics.Thresholds()):
        """The verdict string (or an array of strings for batched spectra); int codes under ``jit``
        (see :func:`gradscope.metrics.verdict_names`)."""
        return metrics.verdict_names(self.summary(thresholds).verdict)

    def to_dataframe(self, singular_values: bool = False):
        """Tidy table: one row per (batch entry, lag), or per singular value.

        Args:
            singular_values: False (default): one row per lag with its metrics. True:
                one row per singular value.

        Returns:
            A pandas DataFrame. Leading columns ``batch_0, batch_1, ...`` index the batch
            axes (absent when unbatched), then ``lag``. Per lag: the
            :class:`~gradscope.metrics.LagMetrics` fields (``log_sigma_max``,
            ``log_sigma_min``, ``log_rms``, ``log_condition``, ``isometry_spread``), then
            ``log_frobenius``, ``log_floor`` and ``finite`` (of the batch entry). Per
            singular value: ``index`` (1 = largest), ``log_singular_value`` and
            ``resolved`` (above the resolution floor).
        """
        axes = {**batch_index_columns(np.shape(self.finite)), "lag": self.lags}
        if singular_values:
            axes["index"] = range(1, self.state_size + 1)
            return long_table(axes, {"log_singular_value": self.log_singular_values, "resolved": self.resolved})
        return long_table(axes, {**self.lag_metrics()._asdict(), "log_frobenius": self.log_frobenius,
                                 "log_floor": self.log_floor, "finite": self.finite})

    def _headline(self) -> Headline:
        product = "dh_k/dh_0" if self.direction == "forward" else "dh_T/dh_(T-k)"
        batch = np.shape(self.finite)
        facts = (f"{self.direction} products {product}, n = {self.state_size}, {lag_range(self.lags)}, "
                 f"{np.dtype(self.log_singular_values.dtype).name}" + (f", batch {batch}" if batch else ""),)
        plot = "plot_forward_profile" if self.direction == "forward" else "plot_lag_profile"
        return Headline("Spectra", facts, batched_table(batch, self.summary().columns()), (plot,))


def _summary_of(spectra: Spectra, thresholds: metrics.Thresholds) -> metrics.Summary:
    return metrics.summarize(spectra.lags, spectra.lag_metrics(), spectra.finite, thresholds)


def _cast(tree, dtype):
    def cast(leaf):  # device_put: jnp.asarray compiles a copy program for every new NumPy shape
        leaf = leaf if isinstance(leaf, jax.Array) else jax.device_put(np.asarray(leaf))
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.inexact) else leaf
    return jax.tree_util.tree_map(cast, tree)


def _float_dtype(tree):
    floats = [jnp.asarray(x).dtype for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.result_type(*floats) if floats else jnp.float32


def spectra_of(step, params, xs, h0, lags: tuple[int, ...], direction: str = "backward",
               untied: bool = False, chunk: int | None = None, block: tuple | None = None) -> Spectra:
    """Unroll and sweep one configuration; pure and traceable (no checks: see :func:`jacobian_spectra`).

    ``block`` is ``None`` (the full product) or ``(output_indices, input_indices)``,
    two tuples of flat state indices (see :func:`block_indices`).
    """
    flat_step, states = engine.unrolled_states(step, params, xs, h0, untied)
    rows, columns = _carried_block(block, direction)
    if chunk is None:
        out = engine.sweep(flat_step, params, states, xs, lags, direction, untied, rows, columns)
    else:
        out = engine.sweep_chunked(flat_step, params, states, xs, lags, direction, untied, chunk, rows, columns)
    return Spectra(out.log_singular_values, out.log_frobenius, out.log_floor, out.finite, lags, direction)


def _carried_block(block, direction):
    """Rows to propagate and columns to keep: backward carries P (rows = outputs), forward F^T."""
    if block is None:
        return None, None
    outputs, inputs = (np.asarray(b, dtype=np.int32) for b in block)
    return (outputs, inputs) if direction == "backward" else (inputs, outputs)


def block_indices(h0, select) -> tuple[int, ...]:
    """Flat indices of the part of a state pytree that ``select(state)`` returns.

    >>> block_indices(LSTMState(h, c), lambda s: s.c)   # the cell-state half
    """
    flat, unravel = ravel_pytree(h0)
    positions = unravel(jnp.arange(flat.size, dtype=jnp.float32))
    try:
        picked = select(positions)
    except Exception as err:  # noqa: BLE001 - re-raised with the context a user needs
        raise ValueError(f"block selector failed on the state {jax.tree_util.tree_structure(h0)}: "
                         f"{type(err).__name__}: {err}; pass a function state -> part of the state") from err
    indices = tuple(int(i) for i in np.asarray(ravel_pytree(picked)[0]))
    if not indices:
        raise ValueError("the block selector picked an empty part of the state")
    return indices


@lapack_thread_limit
@functools.partial(jax.jit, static_argnames=("step", "lags", "direction", "untied", "batch_axes", "chunk",
                                             "block"))
def _spectra_core(step, params, xs, h0, lags, direction, untied, batch_axes, chunk=None, block=None):
    one = functools.partial(spectra_of, step, params, h0=h0, lags=lags, direction=direction, untied=untied,
                            chunk=chunk, block=block)
    return engine.over_batch_axes(one, batch_axes)(xs)


def _num_steps(xs, batch_axes: int) -> int:
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves:
        raise ValueError("xs is empty; expected inputs with a leading time axis of length T >= 1")
    steps = {jnp.shape(leaf)[batch_axes] if jnp.ndim(leaf) > batch_axes else None for leaf in leaves}
    if None in steps or len(steps) != 1:
        raise ValueError(f"every leaf of xs needs the same time axis (axis {batch_axes}); "
                         f"got shapes {[jnp.shape(leaf) for leaf in leaves]}")
    (num,) = steps
    if num < 1:
        raise ValueError(f"xs has T = {num} time steps; at least 1 is needed")
    return int(num)


def _check_cell_inputs(xs, input_size) -> int:
    shape = jnp.shape(xs)
    if len(shape) < 2 or shape[-1] != input_size:
        raise ValueError(f"expected xs with shape (..., T, input_size)=(..., T, {input_size}), got {shape}; "
                         "put time on the second-to-last axis and features last")
    return len(shape) - 2


def _check_untied(params, num_steps: int) -> None:
    for leaf in jax.tree_util.tree_leaves(params):
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != num_steps:
            raise ValueError(f"untied=True needs every parameter with a leading time axis of length "
                             f"T={num_steps}; got a leaf of shape {jnp.shape(leaf)}")


class PreparedInputs(NamedTuple):
    """Validated, cast inputs of an analysis (see :func:`prepare_inputs`).

    Attributes:
        step: the step function ``step(params, h, x) -> h_next``.
        params: parameters cast to the analysis dtype.
        xs: inputs cast to the analysis dtype.
        h0: initial state (the cell's zero state by default), cast.
        num_steps: the horizon T.
        batch_axes: leading batch axes of ``xs``.
    """

    step: object
    params: object
    xs: object
    h0: object
    num_steps: int
    batch_axes: int


def prepare_inputs(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None, *, direction: str = "backward", dtype=None,
                   untied: bool = False, batch_axes: int | None = None) -> PreparedInputs:
    """The input checks and casts every analysis entry point shares.

    Resolves the step and default ``h0``, infers batch axes for built-in cells,
    checks shapes, finiteness, the dtype and that ``step`` keeps the state's
    structure; see :func:`jacobian_spectra` for the arguments.

    Raises:
        ValueError / TypeError: what was expected, what arrived, and the fix.
    """
    step, default_h0, input_size = _checks.resolve_step(cell_or_step, params)
    if direction not in ("backward", "forward"):
        raise ValueError(f"direction must be 'backward' (dh_T/dh_(T-k)) or 'forward' (dh_k/dh_0), got {direction!r}")
    if h0 is None:
        if default_h0 is None:
            raise ValueError("a plain step function needs h0 (the initial state pytree); pass h0=...")
        h0 = default_h0()
    if input_size is not None:
        inferred = _check_cell_inputs(xs, input_size)
        batch_axes = inferred if batch_axes is None else batch_axes
    batch_axes = 0 if batch_axes is None else int(batch_axes)
    num_steps = _num_steps(xs, batch_axes)
    if untied:
        _check_untied(params, num_steps)
    dtype = _checks.check_dtype(dtype) or _float_dtype((params, h0))
    params, xs, h0 = _cast(params, dtype), _cast(xs, dtype), _cast(h0, dtype)
    for name, tree in (("params", params), ("xs", xs), ("h0", h0)):
        _checks.check_finite(name, tree)
    one_step = lambda a, axes: jax.ShapeDtypeStruct(jnp.shape(a)[axes:], a.dtype)  # noqa: E731 - shapes, no compile
    x0 = jax.tree_util.tree_map(lambda a: one_step(a, batch_axes + 1), xs)
    p0 = jax.tree_util.tree_map(lambda p: one_step(p, 1), params) if untied else params
    _checks.check_state_structure(step, p0, h0, x0)
    return PreparedInputs(step, params, xs, h0, num_steps, batch_axes)


def jacobian_spectra(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None, *,
                     lags: Lags = "all", num_log_lags: int = 32, direction: str = "backward", dtype: DTypeLike = None,
                     untied: bool = False,
                     batch_axes: int | None = None, chunk: int | None = None, block=None,
                     pipelined: bool | None = None, progress: bool | None = None, method: str = "auto",
                     bucket: bool | None = None, diagonal=None) -> Spectra:
    """Singular values of ``dh_T/dh_{T-k}`` for every requested lag k, in one reverse sweep.

    The cell is unrolled with ``lax.scan`` from ``h0`` over ``xs``; one sweep then
    multiplies the step Jacobians (as batched VJPs, never materialised), keeping
    the product in log domain, and takes the singular values at the kept lags.

    Args:
        cell_or_step: a built-in cell (:class:`gradscope.cells.VanillaRNN`, ``LSTM``,
            ``GRU``, an adapter) or any ``step(params, h, x) -> h_next`` with a pytree
            state ``h``.
        params: the cell's parameters (a pytree). With ``untied=True`` every leaf has
            a leading time axis of length T (a different layer per step).
        xs: inputs with a leading time axis: ``(T, input_size)`` for built-in cells,
            with optional extra leading batch axes; any pytree for a plain step.
        h0: initial state; defaults to the cell's zero state (required for a plain step).
        lags: ``"all"`` (1..T), ``"log"`` (``num_log_lags`` log-spaced lags) or ints in [0, T].
        num_log_lags: how many lags ``lags="log"`` keeps.
        direction: ``"backward"`` for ``dh_T/dh_{T-k}``, ``"forward"`` for ``dh_k/dh_0``.
        dtype: ``"float32"``/``"float64"`` to compute in; default from params and h0.
        untied: per-step parameters (a deep feed-forward stack).
        batch_axes: leading batch axes of ``xs``; inferred for built-in cells, else 0.
        chunk: kept lags whose products are stored together (memory ``chunk * n^2``).
            Pipelined: about this many lags per compiled chunk (default: a quarter of the
            lags, at most as many as fit in 32 MB). Not pipelined: None takes each lag's SVD in the sweep;
            an int takes the chunk's SVDs in one batched call inside the sweep (suits
            accelerators). The results are the same either way.
        block: ``None`` for the full state (the default: the gradient travels through
            all of it), or ``(select_output, select_input)``, two functions of the state
            pytree, for a block of the product. ``(lambda s: s.c, lambda s: s.c)`` on an
            LSTM gives the cell path ``dc_T/dc_{T-k}`` (all routes through h included).
        pipelined: run the sweep in compiled chunks and take their SVDs on one host thread
            per core while the next chunk forms (:mod:`gradscope.pipeline`), or as one
            compiled program (False). Default: pipelined on a CPU, where it spreads the SVDs
            over the cores, when the SVD work is large enough to pay for the dispatch
            (:func:`gradscope.pipeline.worth_pipelining`: n = 128 with 100 lags, n = 64 with
            400); one program elsewhere, and always under ``jit``/``vmap``.
        method: how a pipelined analysis takes the singular values: ``"svd"`` (one LAPACK
            call per product), ``"ritz"`` (warm-started Rayleigh-Ritz over consecutive lags,
            :mod:`gradscope.core.ritz`: the same values above the resolution floor for a
            fraction of the work, since the resolved rank falls with the lag) or ``"auto"``
            (``"ritz"`` where it applies and pays: pipelined float32 analyses of many lags of
            large products, :func:`gradscope.core.ritz.worth_it`; else ``"svd"``).
        progress: pipelined only: a progress bar over the chunks, shown once the call has
            run for 2 s (default: only on a terminal); False hides it.
        bucket: pad T to a bucket length with steps that leave the state unchanged, and pass
            the lags as data, so that every T in a bucket runs one compiled program; the
            results are exactly the unpadded ones, for at most 25% more work
            (:mod:`gradscope.core.buckets`). Default None: on for small analyses, where a
            compilation costs more than the analysis (bucketed lags * n^3 < 1e8, such as
            hidden 64 with T up to 320); True or False to choose. No effect under ``jit``/``vmap``/``grad``.
        diagonal: the fast path for diagonal step Jacobians (:mod:`gradscope.core.diagonal`:
            running sums of ``log|J_t|``, no SVDs; ``chunk`` and ``pipelined`` do not apply).
            None (default): taken for cells that declare a diagonal Jacobian (the LRU, SSMs,
            minGRU, minLSTM) unless a ``block`` is asked for; True: forced (a plain step
            counts as ``"real"``); ``"real"`` or ``"complex"`` (a state ``[Re h, Im h]`` of real
            pairs) for a plain step; False: the general engine. The structure is verified
            along the trajectory; a step that is not diagonal raises ValueError.

    Returns:
        :class:`Spectra` with ``.lags`` and ``.log_singular_values`` ``[..., len(lags), n]``.

    Raises:
        ValueError / TypeError: malformed inputs, with what was expected and the fix.
        gradscope.NumericalOverflowError: states or products became inf/NaN.
    """
    step, params, xs, h0, num_steps, batch_axes = prepare_inputs(
        cell_or_step, params, xs, h0, direction=direction, dtype=dtype, untied=untied, batch_axes=batch_axes)
    kept = select_lags(lags, num_steps, num_log_lags)
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise ValueError(f"chunk must be a positive int (lags per batched SVD) or None, got {chunk!r}")
    kind = diagonal_path.resolve_kind(cell_or_step, diagonal, block)
    block = None if block is None else tuple(block_indices(h0, select) for select in block)
    if method not in ("auto", *pipeline.METHODS):
        raise ValueError(f"method must be 'auto', 'svd' or 'ritz', got {method!r}")
    flat_h0 = ravel_pytree(h0)[0]
    n = flat_h0.size
    if bucket is None and method == "ritz":  # asked for by name: no default bucketing in its way
        bucket = False
    if kind is not None:
        result = Spectra(*diagonal_path.diagonal_sweep(step, params, xs, h0, kept, direction, bool(untied), batch_axes,
                                                       kind), kept, direction)
    elif buckets.use_buckets(bucket, (params, xs, h0), len(kept), n):
        _check_method(method, "with bucketing (bucket=True or a small analysis); pass bucket=False to choose it")
        out = buckets.bucketed_sweep(step, params, xs, h0, kept, num_steps, direction, bool(untied), batch_axes,
                                     chunk, _carried_block(block, direction), progress=progress,
                                     pipelined=_use_pipeline(pipelined, xs, buckets.bucket_length(len(kept)), n))
        result = Spectra(*out, kept, direction)
    elif _use_pipeline(pipelined, (params, xs, h0), len(kept), n):
        method = _pipeline_method(method, _block_shape(block, n, direction), flat_h0.dtype, len(kept))
        result = _pipelined_spectra(step, params, xs, h0, kept, direction, bool(untied), batch_axes, chunk, block,
                                    progress, method)
    else:
        _check_method(method, "here: the analysis is one compiled program (traced, pipelined=False, or not on a CPU)")
        result = _spectra_core(step, params, xs, h0, kept, direction, bool(untied), batch_axes, chunk, block)
    _raise_if_overflowed(result)
    return result


def _block_shape(block, state_size: int, direction: str) -> tuple[int, int]:
    """``(rows, columns)`` of the products a sweep decomposes (the full ``n x n`` or a block)."""
    if block is None:
        return state_size, state_size
    rows, columns = _carried_block(block, direction)
    return len(rows), len(columns)


def _check_method(method: str, where: str) -> None:
    """Only ``method="auto"`` or ``"svd"`` apply outside the unbucketed CPU pipeline."""
    if method not in ("auto", "svd"):
        raise ValueError(f"method={method!r} runs in the CPU pipeline, not {where}; pass method='auto' or 'svd'")


def _pipeline_method(method: str, shape: tuple[int, int], dtype, num_lags: int) -> str:
    """The pipeline's SVD method for ``method="auto"|"svd"|"ritz"`` (see :func:`jacobian_spectra`)."""
    if method == "auto":
        return "ritz" if ritz.worth_it(shape, dtype, num_lags) else "svd"
    if method == "ritz" and not ritz.supports(dtype):
        raise ValueError(f"method='ritz' computes float32 products (one refinement step per lag reaches float32's "
                         f"accuracy, not float64's), got {jnp.dtype(dtype)}; use method='svd' (or 'auto')")
    return method


def _use_pipeline(pipelined: bool | None, inputs, num_lags: int, state_size: int) -> bool:
    if pipelined is None:
        return (jax.default_backend() == "cpu" and _checks.is_concrete(inputs)
                and pipeline.worth_pipelining(num_lags, state_size))
    if pipelined and not _checks.is_concrete(inputs):
        raise ValueError("pipelined=True runs eagerly and cannot be traced (jit/vmap/grad); "
                         "pass pipelined=False (or None) inside a transformation")
    return bool(pipelined)


@lapack_thread_limit
def _pipelined_spectra(step, params, xs, h0, lags, direction, untied, batch_axes, chunk, block, progress,
                       method) -> Spectra:
    rows, columns = (None if b is None else tuple(int(i) for i in b) for b in _carried_block(block, direction))
    out = pipeline.pipelined_sweep(step, params, xs, h0, lags, direction, untied, batch_axes, rows, columns, chunk,
                                   progress=progress, method=method)
    return Spectra(out.log_singular_values, out.log_frobenius, out.log_floor, out.finite, lags, direction)


def forward_spectra(cell_or_step: CellOrStep, params: Params, xs: Inputs, h0: State | None = None,
                    **options) -> Spectra:
    """Singular values of the forward (perturbation) product ``dh_k/dh_0``; see :func:`jacobian_spectra`."""
    return jacobian_spectra(cell_or_step, params, xs, h0, direction="forward", **options)


def _raise_if_overflowed(result) -> None:
    _checks.raise_if_overflowed(result.finite, "Jacobian products")
