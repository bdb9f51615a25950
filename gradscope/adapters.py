"""Use Flax (linen and nnx) and Equinox recurrent cells in every gradscope analysis.

:func:`from_flax` and :func:`from_equinox` wrap *your* cell, with *your* parameters,
behind gradscope's cell interface: ``step(params, h, x) -> h_next``,
``initial_state(dtype)``, ``input_size``, and ``init(key, recurrent_init=...)`` for
:func:`gradscope.compare`. The state ``h`` is the library's own carry, unchanged:

============================  ======================  =====================================
library, cell                 carry (state ``h``)     what you pass as ``params``
============================  ======================  =====================================
linen ``LSTMCell``,           ``(c, h)``              the variables of ``cell.apply``
``OptimizedLSTMCell``                                 (``{"params": ...}``; a bare params
                                                      tree works too)
linen ``GRUCell``,            ``h``                   same
``SimpleCell``, ``MGUCell``
nnx ``LSTMCell``,             ``(c, h)``              ``adapted.params`` =
``OptimizedLSTMCell``                                 ``nnx.state(cell, nnx.Param)``
nnx ``GRUCell``,              ``h``                   same
``SimpleCell``
equinox ``LSTMCell``          ``(h, c)``              ``adapted.params`` (the module's
                                                      arrays) or the module itself
equinox ``GRUCell``           ``h``                   same
============================  ======================  =====================================

The full-state Jacobian covers every part of the carry (n = 2 * hidden for an
LSTM); singular values do not depend on the order of the parts.

Flax and Equinox are optional: install them with ``pip install gradscope[flax]``
or ``pip install gradscope[equinox]``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradscope import initializers

__all__ = ["AdaptedCell", "EquinoxCell", "LinenCell", "NNXCell", "from_equinox", "from_flax"]


def _require(module: str, extra: str, who: str):
    """Import ``module`` or raise an ImportError naming the gradscope extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{who} needs the optional dependency {module!r}, which is not installed; "
                          f"install it with `pip install gradscope[{extra}]`") from err


def _like(new, old):
    """Cast the new carry to the old carry's dtypes (some cells fix a compute dtype, e.g. nnx.SimpleCell)."""
    return jax.tree_util.tree_map(lambda a, b: a.astype(jnp.result_type(b)), new, old)


def _path_names(path) -> list[str]:
    names = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                names.append(str(getattr(entry, attribute)))
                break
    return [name for name in names if name not in ("params", "value")]


@dataclasses.dataclass(frozen=True, eq=False)
class AdaptedCell:
    """A library's recurrent cell behind gradscope's cell interface (base class).

    Instances hash by identity, so each adapter compiles its own analyses once.

    Attributes:
        module: the wrapped cell, exactly as you built it.
        params: the parameters to pass to ``jacobian_spectra(adapted, params, xs)``
            (see the table in :mod:`gradscope.adapters` for each library).
        input_size: size of each input ``x_t``.
        hidden_size: number of units (each carry part has this size).
        carry_names: the carry's parts in order: ``("c", "h")`` for Flax LSTMs,
            ``("h", "c")`` for Equinox's, ``("h",)`` for a single-array carry.
    """

    module: Any
    params: Any
    input_size: int
    hidden_size: int
    carry_names: tuple

    library = "?"

    def step(self, params, h, x):
        """One step of the wrapped cell: the new carry (its output ``y`` is dropped)."""
        raise NotImplementedError

    def initial_state(self, dtype=jnp.float32):
        """Zero carry with the library's structure (a tuple for LSTMs, else an array)."""
        zeros = jnp.zeros((self.hidden_size,), dtype)
        return zeros if self.carry_names == ("h",) else tuple(zeros for _ in self.carry_names)

    def output(self, state) -> jax.Array:
        """The ``h`` part of a carry (what a read-out layer sees)."""
        return state if self.carry_names == ("h",) else state[self.carry_names.index("h")]

    def init(self, key, recurrent_init="orthogonal", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32):
        """Fresh parameters with the structure of ``self.params``, drawn by gradscope initializers.

        Recurrent and input kernels are drawn one gate block at a time (as
        :mod:`gradscope.cells` does), biases with ``bias_init``; parameters with a
        fixed meaning (the forget bias of linen's ``MGUCell``) keep their value.
        This is what :func:`gradscope.compare` calls.

        Args:
            key: a JAX PRNG key.
            recurrent_init: names, ``(name, options)`` or callables.
            input_init: names, ``(name, options)`` or callables.
            bias_init: names, ``(name, options)`` or callables.
            dtype: float dtype of the new parameters.

        Returns:
            A parameter tree of the same structure as ``self.params``.

        Raises:
            NotImplementedError: a parameter whose role (kernel or bias) cannot be told.
        """
        inits = {"recurrent": initializers.resolve(recurrent_init), "input": initializers.resolve(input_init),
                 "bias": initializers.resolve(bias_init)}
        leaves, treedef = jax.tree_util.tree_flatten_with_path(self.params)
        keys = jax.random.split(key, max(len(leaves), 1))
        drawn = [self._draw(_path_names(path), leaf, k, inits, dtype) for (path, leaf), k in zip(leaves, keys)]
        return jax.tree_util.tree_unflatten(treedef, drawn)

    def _draw(self, names, leaf, key, inits, dtype):
        role, transposed = self._role(names)
        if role == "unknown":
            raise self._unknown(names)
        shape = jnp.shape(leaf)
        if role == "keep":
            return jnp.asarray(leaf, dtype)
        if role == "bias":
            return inits["bias"](key, shape, dtype)
        fan_in, fan_out = (shape[1], shape[0]) if transposed else shape
        blocks = max(fan_out // self.hidden_size, 1)
        kernel = initializers.per_block(inits[role], blocks)(key, (fan_in, fan_out), dtype)
        return kernel.T if transposed else kernel

    def _role(self, names) -> tuple[str, bool]:
        """``(role, transposed)`` of the parameter at ``names``; role is recurrent/input/bias/keep or unknown."""
        raise NotImplementedError

    def _unknown(self, names):
        return NotImplementedError(
            f"{self.library} parameter {'/'.join(names)!r} of {type(self.module).__name__} is not a recurrent "
            "kernel, input kernel or bias gradscope recognises, so init() cannot redraw it; initialize the "
            "module yourself and pass its parameters to jacobian_spectra instead of using compare")


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
    """A ``flax.linen`` recurrent cell; ``params`` are the variables ``cell.apply`` takes."""

    library = "flax.linen"

    def step(self, params, h, x):
        """``carry, _ = cell.apply(params, carry, x)``; a bare params tree is wrapped as ``{"params": ...}``."""
        variables = params if isinstance(params, Mapping) and "params" in params else {"params": params}
        carry, _ = self.module.apply(variables, h, x)
        return _like(carry, h)


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
        """``carry, _ = nnx.merge(graphdef, params, rest)(carry, x)``."""
        nnx = importlib.import_module("flax.nnx")
        carry, _ = nnx.merge(self.graphdef, params, self.rest)(h, x)
        return _like(carry, h)


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
    if variables is None:
        if input_size is None:
            raise ValueError("a linen cell does not know its input size: pass its variables "
                             "(from cell.init) or input_size=... to initialize them here")
        carry = cell.initialize_carry(jax.random.key(0), (int(input_size),))
        variables = cell.init(key, carry, jnp.zeros((int(input_size),), jnp.float32))
    input_size = _linen_input_size(variables, input_size)
    template = jax.eval_shape(lambda k: cell.initialize_carry(k, (input_size,)), jax.random.key(0))
    return LinenCell(cell, variables, input_size, int(cell.features), _carry_names(template))


def _from_nnx(cell, params):
    nnx = importlib.import_module("flax.nnx")
    for attribute in ("in_features", "hidden_features", "initialize_carry"):
        if not hasattr(cell, attribute):
            raise TypeError(f"expected a flax.nnx recurrent cell (such as nnx.LSTMCell) with .{attribute}, "
                            f"got {type(cell).__name__}")
    graphdef, own_params, rest = nnx.split(cell, nnx.Param, ...)
    template = jax.eval_shape(lambda: cell.initialize_carry((cell.in_features,), rngs=nnx.Rngs(0)))
    return NNXCell(cell, own_params if params is None else params, int(cell.in_features),
                   int(cell.hidden_features), _carry_names(template), graphdef=graphdef, rest=rest)


def from_flax(cell, params=None, *, input_size: int | None = None, key=None) -> AdaptedCell:
    """Wrap a Flax recurrent cell (linen or nnx) for gradscope.

    Works with linen ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``,
    ``SimpleCell``, ``MGUCell`` and nnx ``LSTMCell``, ``OptimizedLSTMCell``,
    ``GRUCell``, ``SimpleCell`` (any cell with Flax's ``carry, y = cell(carry, x)``
    convention and a carry of ``h`` or ``(c, h)``):

    >>> cell = nn.LSTMCell(features=32)
    >>> variables = cell.init(key, cell.initialize_carry(key, (3,)), jnp.zeros(3))
    >>> adapted = gradscope.cells.from_flax(cell, variables)
    >>> gradscope.jacobian_spectra(adapted, adapted.params, xs)   # xs: (T, 3)

    Args:
        cell: a ``flax.linen`` cell module (unbound) or a ``flax.nnx`` cell.
        params: linen: the variables from ``cell.init`` (or a bare params tree);
            ``None`` initializes them with the cell's own initializers from ``key``
            (then ``input_size`` is needed). nnx: ``None`` takes the cell's own
            ``nnx.Param`` state; pass another state of the same structure to override.
        input_size: size of each input; inferred from the parameters when omitted.
        key: PRNG key for initializing a linen cell without ``params`` (default key 0).

    Returns:
        :class:`LinenCell` or :class:`NNXCell`; pass ``adapted.params`` (or your own
        variables/state) as ``params`` to :func:`gradscope.jacobian_spectra`.

    Raises:
        ImportError: Flax is not installed (``pip install gradscope[flax]``).
        TypeError: ``cell`` is not a Flax recurrent cell.
        ValueError: the input size can be neither inferred nor was given.
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
