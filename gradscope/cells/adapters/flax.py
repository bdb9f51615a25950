"""Use Flax recurrent cells (``flax.linen`` and ``flax.nnx``) in every gradscope analysis.

See :mod:`gradscope.cells.adapters` for what each library's carry and parameters look like.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradscope.cells.adapters.base import AdaptedCell, _like, _path_names, _require

__all__ = ["LinenCell", "NNXCell", "from_flax"]


def _flax_role(names, cell_name: str) -> tuple[str, bool]:
    """Flax cells name each dense layer ``h*``/``i*`` (linen, nnx) or ``dense_h``/``dense_i`` (nnx)."""
    if len(names) < 2 or names[-1] not in ("kernel", "bias"):
        return "unknown", False
    layer = names[-2].removeprefix("dense_")
    if names[-1] == "bias":
        keep = cell_name == "MGUCell" and layer == "if"  # its forget bias, like LSTM's forget_bias
        return ("keep" if keep else "bias"), False
    return {"h": "recurrent", "i": "input"}.get(layer[:1], "unknown"), False


class _FlaxCell(AdaptedCell):
    """Flax cells (linen and nnx) name their parameters alike; see :func:`_flax_role`."""

    def _role(self, names):
        return _flax_role(names, type(self.module).__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class LinenCell(_FlaxCell):
    """A ``flax.linen`` recurrent cell; ``params`` are the variables ``cell.apply`` takes.

    A linen module holds no parameters, so the adapter may be made without them
    (``from_flax(cell)``): then ``params`` and ``input_size`` are ``None`` and every
    analysis takes the variables as its ``params`` argument and reads the input size
    from their input kernel (:meth:`input_size_for`).
    """

    library = "flax.linen"

    def _static_key(self) -> tuple:
        """Linen modules are dataclasses that compare by their fields: the module is the architecture."""
        return (self.module, *super()._static_key())

    def step(self, params, h, x):
        """``carry, _ = cell.apply(params, carry, x)``; a bare params tree is wrapped as ``{"params": ...}``."""
        variables = params if isinstance(params, Mapping) and "params" in params else {"params": params}
        carry, _ = self.module.apply(variables, h, x)
        return _like(carry, h)

    def input_size_for(self, params) -> int:
        """The input size the analysis of ``params`` needs: read from their input kernel.

        Raises:
            ValueError: ``params`` is ``None`` (no variables anywhere), has no input kernel
                while the adapter's input size is unknown, or disagrees with it.
        """
        if params is None:
            raise ValueError(f"this {type(self.module).__name__} adapter was made without variables, and "
                             "params=None was passed: pass the cell's variables (from cell.init) as params, "
                             "e.g. jacobian_spectra(adapted, variables, xs)")
        return _linen_input_size(params, self.input_size)

    def init(self, key, *args, **kwargs):
        """Fresh parameters (see :meth:`AdaptedCell.init`); needs the variables' shapes.

        Raises:
            ValueError: the adapter was made without variables or an input size.
        """
        if self.params is None:
            raise ValueError(f"this {type(self.module).__name__} adapter was made without variables, so "
                             "gradscope cannot know its parameter shapes to draw new ones (compare needs "
                             "them): wrap it with from_flax(cell, variables) or from_flax(cell, input_size=...)")
        return super().init(key, *args, **kwargs)


@dataclasses.dataclass(frozen=True, eq=False)
class NNXCell(_FlaxCell):
    """A ``flax.nnx`` recurrent cell; ``params`` is its ``nnx.Param`` state.

    Attributes:
        graphdef: the module's structure from ``nnx.split``.
        rest: its non-parameter state (kept fixed).
    """

    graphdef: Any = None
    rest: Any = None

    library = "flax.nnx"

    def step(self, params, h, x):
        """``carry, _ = nnx.merge(graphdef, params, rest)(carry, x)``; ``params`` may be the module itself."""
        nnx = importlib.import_module("flax.nnx")
        carry, _ = nnx.merge(self.graphdef, _param_state(nnx, params), self.rest)(h, x)
        return _like(carry, h)


def _param_state(nnx, params):
    """An nnx module given as ``params`` stands for its ``nnx.Param`` state."""
    return nnx.state(params, nnx.Param) if isinstance(params, nnx.Module) else params


def _carry_names(template) -> tuple:
    if isinstance(template, (tuple, list)) and len(template) == 2:
        return ("c", "h")
    if hasattr(template, "shape"):
        return ("h",)
    raise TypeError(f"expected a Flax cell whose carry is an array or a (c, h) pair, got carry {template!r}")


def _linen_input_size(variables, input_size):
    kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]
               if _flax_role(_path_names(path), "")[0] == "input"]
    inferred = int(jnp.shape(kernels[0])[0]) if kernels else None
    if inferred is None and input_size is None:
        raise ValueError("could not find the input kernel in the variables to read the input size from; "
                         "pass input_size=...")
    if inferred is not None and input_size is not None and inferred != input_size:
        raise ValueError(f"input_size={input_size} disagrees with the variables, whose input kernel has "
                         f"fan_in {inferred}")
    return inferred if inferred is not None else int(input_size)


def _from_linen(cell, variables, input_size, key):
    if not hasattr(cell, "features") or not hasattr(cell, "initialize_carry"):
        raise TypeError(f"expected a flax.linen recurrent cell (an nn.RNNCellBase such as nn.LSTMCell), "
                        f"got {type(cell).__name__}")
    if variables is None and input_size is not None:
        carry = cell.initialize_carry(jax.random.key(0), (int(input_size),))
        variables = cell.init(key, carry, jnp.zeros((int(input_size),), jnp.float32))
    if variables is not None:
        input_size = _linen_input_size(variables, input_size)
    # the carry's structure does not depend on the input size (1 stands in for an unknown one)
    template = jax.eval_shape(lambda k: cell.initialize_carry(k, (input_size or 1,)), jax.random.key(0))
    return LinenCell(cell, variables, input_size, int(cell.features), _carry_names(template))


def _from_nnx(cell, params):
    nnx = importlib.import_module("flax.nnx")
    for attribute in ("in_features", "hidden_features", "initialize_carry"):
        if not hasattr(cell, attribute):
            raise TypeError(f"expected a flax.nnx recurrent cell (such as nnx.LSTMCell) with .{attribute}, "
                            f"got {type(cell).__name__}")
    graphdef, own_params, rest = nnx.split(cell, nnx.Param, ...)
    template = jax.eval_shape(lambda: cell.initialize_carry((cell.in_features,), rngs=nnx.Rngs(0)))
    return NNXCell(cell, own_params if params is None else _param_state(nnx, params), int(cell.in_features),
                   int(cell.hidden_features), _carry_names(template), graphdef=graphdef, rest=rest)


def from_flax(cell, params=None, *, input_size: int | None = None, key=None) -> AdaptedCell:
    """Wrap a Flax recurrent cell (linen or nnx) for gradscope.

    Works with linen ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``,
    ``SimpleCell``, ``MGUCell`` and nnx ``LSTMCell``, ``OptimizedLSTMCell``,
    ``GRUCell``, ``SimpleCell`` (any cell with Flax's ``carry, y = cell(carry, x)``
    convention and a carry of ``h`` or ``(c, h)``). A linen module holds no
    parameters, so its variables may come with the analysis instead:

    >>> adapted = gradscope.cells.from_flax(nn.LSTMCell(features=32))
    >>> gradscope.jacobian_spectra(adapted, variables, xs)   # variables from cell.init; xs: (T, 3)

    An nnx module holds its parameters; the module itself is accepted as ``params``:

    >>> cell = nnx.GRUCell(3, 32, rngs=nnx.Rngs(0))
    >>> gradscope.jacobian_spectra(gradscope.cells.from_flax(cell), cell, xs)

    Args:
        cell: a ``flax.linen`` cell module (unbound) or a ``flax.nnx`` cell.
        params: linen: the variables from ``cell.init`` (or a bare params tree), or
            ``None``: then ``adapted.params`` is ``None`` and each analysis takes the
            variables as its ``params`` (with ``input_size``, variables are initialized
            here with the cell's own initializers from ``key``). nnx: ``None`` takes the
            cell's own ``nnx.Param`` state; pass another state, or another module of the
            same structure, to override.
        input_size: size of each input; inferred from the parameters when omitted
            (for a linen cell without variables: at analysis time, from the variables
            passed then).
        key: PRNG key for initializing a linen cell from ``input_size`` (default key 0).

    Returns:
        :class:`LinenCell` or :class:`NNXCell`; pass ``adapted.params`` (or your own
        variables/state/module) as ``params`` to :func:`gradscope.jacobian_spectra`.
        :func:`gradscope.compare` needs parameter shapes: a linen cell for it needs
        ``params`` or ``input_size``.

    Raises:
        ImportError: Flax is not installed (``pip install gradscope[flax]``).
        TypeError: ``cell`` is not a Flax recurrent cell.
        ValueError: ``input_size`` disagrees with the parameters.
    """
    _require("flax", "flax", "from_flax")
    linen, nnx = importlib.import_module("flax.linen"), importlib.import_module("flax.nnx")
    if isinstance(cell, linen.Module):
        return _from_linen(cell, params, input_size, jax.random.key(0) if key is None else key)
    if isinstance(cell, nnx.Module):
        adapted = _from_nnx(cell, params)
        if input_size is not None and input_size != adapted.input_size:
            raise ValueError(f"input_size={input_size} disagrees with the cell's in_features={adapted.input_size}")
        return adapted
    raise TypeError(f"from_flax expects a flax.linen or flax.nnx recurrent cell, got {type(cell).__name__}; "
                    "for Equinox cells use from_equinox")
