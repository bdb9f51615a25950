"""Type aliases for the public arguments of gradscope's analyses, defined once.

They document what each argument accepts; the checks in :mod:`gradscope.core._checks`
enforce it at run time with messages that say what arrived and how to fix it. Importing
this module costs nothing beyond :mod:`typing` (no JAX, NumPy or pandas).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, Union, runtime_checkable

__all__ = ["ArrayLike", "Cell", "CellOrStep", "DTypeLike", "InitializerSpec", "Inputs", "Lags", "Params", "PyTree",
           "Seeds", "State", "Step"]

PyTree = Any
"""A JAX pytree: an array, or nested tuples, lists, dicts and NamedTuples of arrays."""

ArrayLike = Any
"""Anything ``jax.numpy.asarray`` accepts: a JAX or NumPy array, a Python scalar or nested sequence."""

Params = PyTree
"""A cell's parameters (with ``untied=True``, every leaf has a leading time axis)."""

State = PyTree
"""A recurrent state h (for an LSTM, the pair ``(h, c)``)."""

Inputs = PyTree
"""Inputs with a leading time axis: ``(T, input_size)`` for built-in cells (plus optional leading batch axes)."""

Step = Callable[[Params, State, PyTree], State]
"""``step(params, h, x) -> h_next``: one step of a recurrence, with the state's pytree structure kept."""


@runtime_checkable
class Cell(Protocol):
    """What a gradscope cell provides (:class:`gradscope.VanillaRNN`, ``LSTM``, ``GRU``, the adapters)."""

    input_size: int

    def step(self, params: Params, h: State, x: ArrayLike) -> State:
        """One step of the recurrence."""

    def initial_state(self, dtype: DTypeLike = None) -> State:
        """The zero state."""


CellOrStep = Union[Cell, Step]
"""A built-in or adapted cell, or a plain step function."""

Lags = Union[str, int, Sequence[int]]
"""``"all"``, ``"log"``, or the lags k themselves."""

DTypeLike = Union[str, type, Any, None]
"""``"float32"``, ``"float64"``, a NumPy dtype, or None for the default."""

InitializerSpec = Union[str, tuple, Callable[..., Any]]
"""An initializer name, ``(name, options)``, or a jax-style ``init(key, shape, dtype)``."""

Seeds = Union[int, Sequence[int]]
"""A count (seeds 0..count-1) or the integer seeds themselves."""
