"""Input validation with messages that say what was expected, what arrived, and the fix."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CellStep",
    "NumericalOverflowError",
    "cell_step",
    "check_dtype",
    "check_finite",
    "check_state_structure",
    "is_concrete",
    "raise_if_overflowed",
    "resolve_step",
    "seed_tuple",
]


class NumericalOverflowError(FloatingPointError):
    """The unrolled states or the Jacobian products became inf/NaN even in log domain."""


def is_concrete(tree) -> bool:
    """True when no leaf is a tracer (so values can be inspected)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def raise_if_overflowed(finite, what: str) -> None:
    """Raise :class:`NumericalOverflowError` where the eager flag ``finite`` is False.

    ``what`` names what overflowed besides the states. A traced flag (under ``jit``,
    ``vmap`` or ``grad``) cannot be read: it is left in the result for the caller.
    """
    if not is_concrete(finite):
        return
    finite = np.asarray(finite)
    if not finite.all():
        where = "" if finite.ndim == 0 else f" at batch indices {np.argwhere(~finite).tolist()[:5]}"
        raise NumericalOverflowError(
            f"the unrolled states or {what} became inf/NaN{where}, even in log domain: the forward dynamics "
            "diverge. Lower the recurrent gain, shorten xs, or use dtype='float64'")


def check_finite(name: str, tree) -> None:
    """Raise ValueError naming the first leaf of ``tree`` that holds inf or NaN."""
    if not is_concrete(tree):
        return
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name} must be finite, but {name}{jax.tree_util.keystr(path)} has {bad} of "
                             f"{arr.size} entries inf/NaN; clean or re-initialize {name} before the analysis")


def seed_tuple(seeds) -> tuple[int, ...]:
    """Seeds as a tuple of ints from a count (seeds 0..count-1) or explicit ints; at least one."""
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("expected at least one seed, got none")
    return seeds


def run_settings(seeds, num_steps, dtype) -> tuple[tuple[int, ...], np.dtype]:
    """The seeds, horizon and dtype of a comparison, checked: ``(seed tuple, dtype)`` (float32 by default)."""
    seeds = seed_tuple(seeds)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    return seeds, check_dtype(dtype) or np.dtype(np.float32)


def check_dtype(dtype):
    """Resolve a requested float dtype, refusing float64 when JAX has x64 disabled."""
    if dtype is None:
        return None
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"expected dtype 'float32' or 'float64', got {dtype!r}") from None
    if resolved not in (np.float32, np.float64):
        raise TypeError(f"expected dtype 'float32' or 'float64', got {resolved.name}")
    if resolved == np.float64 and not jax.config.jax_enable_x64:
        raise TypeError("dtype float64 needs JAX's 64-bit mode, which is off; call "
                        "jax.config.update('jax_enable_x64', True) at start-up (or set JAX_ENABLE_X64=1)")
    return resolved


@dataclasses.dataclass(frozen=True)
class CellStep:
    """``step(params, h, x)`` of a cell, as a jit static argument that equal cells share.

    A bound method ``cell.step`` compares its instance by identity, so two equal but
    distinct cells would each compile the analysis again; this wrapper compares (and
    hashes) the cell itself.

    Attributes:
        cell: a hashable cell with a ``step`` method.
    """

    cell: object

    def __call__(self, params, h, x):
        """One step of the cell."""
        return self.cell.step(params, h, x)


def cell_step(cell):
    """The cell's step as a :class:`CellStep`, or the bound method if the cell is not hashable."""
    try:
        hash(cell)
    except TypeError:
        return cell.step
    return CellStep(cell)


def resolve_step(cell_or_step, params=None):
    """Return ``(step, default_h0_or_None, input_size_or_None)`` for a cell or a plain step.

    A cell whose input size depends on its parameters (a linen adapter made without
    variables) reports it through ``cell.input_size_for(params)``.
    """
    if hasattr(cell_or_step, "step") and hasattr(cell_or_step, "initial_state"):
        size_for = getattr(cell_or_step, "input_size_for", None)
        input_size = size_for(params) if size_for is not None else getattr(cell_or_step, "input_size", None)
        return cell_step(cell_or_step), cell_or_step.initial_state, input_size
    if callable(cell_or_step):
        return cell_or_step, None, None
    hint = ("; it has .directions: analyse each direction on its own, e.g. "
            "jacobian_spectra(adapted.forward, adapted.params, adapted.forward.inputs(x))"
            if hasattr(cell_or_step, "directions") else "")
    raise TypeError("expected a gradscope cell (with .step and .initial_state) or a callable "
                    f"step(params, h, x) -> h_next, got {type(cell_or_step).__name__}{hint}")


def check_state_structure(step, params, h0, x0) -> None:
    """The step must return a state with the same structure, shapes and dtypes as ``h0``."""
    try:
        out = jax.eval_shape(step, params, h0, x0)
    except Exception as err:  # noqa: BLE001 - re-raised with the context a user needs
        raise ValueError(f"calling step(params, h0, xs[0]) failed: {type(err).__name__}: {err}; "
                         "check that params, h0 and one time slice of xs fit the step") from err
    expected = jax.tree_util.tree_structure(h0)
    if jax.tree_util.tree_structure(out) != expected:
        raise ValueError(f"step must return a state shaped like h0 ({expected}), "
                         f"got {jax.tree_util.tree_structure(out)}")
    for a, b in zip(jax.tree_util.tree_leaves(h0), jax.tree_util.tree_leaves(out)):
        if jnp.shape(a) != b.shape:
            raise ValueError(f"step must keep the state's shapes: h0 leaf {jnp.shape(a)} came back as {b.shape}")
