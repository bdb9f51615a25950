"""Use Equinox recurrent cells (``eqx.nn.GRUCell``, ``eqx.nn.LSTMCell``) in every gradscope analysis."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from gradscope.cells.adapters.base import AdaptedCell, _like, _require

__all__ = ["EquinoxCell", "from_equinox"]

_EQUINOX_ROLES = {"weight_hh": ("recurrent", True), "weight_ih": ("input", True),
                  "bias": ("bias", False), "bias_n": ("bias", False)}


@dataclasses.dataclass(frozen=True, eq=False)
class EquinoxCell(AdaptedCell):
    """An Equinox recurrent cell ``hidden = cell(input, hidden)``.

    ``params`` holds the module's arrays (``eqx.partition(cell, eqx.is_array)[0]``);
    the module itself is accepted as ``params`` too.

    Attributes:
        static: the module's non-array part from ``eqx.partition``.
    """

    static: Any = None

    library = "equinox"

    def step(self, params, h, x):
        """``eqx.combine(params, static)(x, h)`` (Equinox takes the input first)."""
        eqx = importlib.import_module("equinox")
        return _like(eqx.combine(params, self.static)(x, h), h)

    def _role(self, names):
        return _EQUINOX_ROLES.get(names[-1] if names else None, ("unknown", False))


def from_equinox(cell, *, carry=None) -> EquinoxCell:
    """Wrap an Equinox recurrent cell (``eqx.nn.GRUCell``, ``eqx.nn.LSTMCell``) for gradscope.

    >>> cell = eqx.nn.LSTMCell(3, 32, key=key)
    >>> adapted = gradscope.cells.from_equinox(cell)
    >>> gradscope.jacobian_spectra(adapted, adapted.params, xs)   # or params=cell

    Args:
        cell: an Equinox module called as ``hidden = cell(input, hidden)`` with
            ``input_size`` and ``hidden_size`` attributes.
        carry: for a module other than ``GRUCell``/``LSTMCell``, the names of its carry
            parts, ``("h",)`` for an array or ``("h", "c")``-style for a tuple.

    Returns:
        :class:`EquinoxCell`; pass ``adapted.params`` (or the module itself) as ``params``.

    Raises:
        ImportError: Equinox is not installed (``pip install gradscope[equinox]``).
        TypeError: ``cell`` is not an Equinox recurrent cell.
    """
    eqx = _require("equinox", "equinox", "from_equinox")
    if not isinstance(cell, eqx.Module) or not all(hasattr(cell, a) for a in ("input_size", "hidden_size")):
        raise TypeError(f"from_equinox expects an Equinox recurrent cell such as eqx.nn.GRUCell or "
                        f"eqx.nn.LSTMCell, got {type(cell).__name__}")
    if carry is None:
        known = {eqx.nn.LSTMCell: ("h", "c"), eqx.nn.GRUCell: ("h",)}
        if type(cell) not in known:
            raise TypeError(f"cannot tell the carry of {type(cell).__name__}; pass carry=('h',) for an array "
                            "carry or the names of its parts in order, e.g. carry=('h', 'c')")
        carry = known[type(cell)]
    params, static = eqx.partition(cell, eqx.is_array)
    return EquinoxCell(cell, params, int(cell.input_size), int(cell.hidden_size), tuple(carry), static=static)
