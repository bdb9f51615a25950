"""The adapter base: a library's recurrent cell behind gradscope's cell interface.

Each framework has its own module beside this one (:mod:`.flax`, :mod:`.equinox`);
what they share lives here: :class:`AdaptedCell` and the import and carry helpers.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope import initializers

__all__ = ["AdaptedCell"]


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


def _as_jax(x) -> jax.Array:
    """A tensor (PyTorch, any Keras backend) or array as a new JAX array (a copy); float64
    stays float64 when JAX's 64-bit mode is on, every other float becomes float32."""
    if hasattr(x, "detach"):  # a torch.Tensor
        x = x.detach().cpu()
        x = x.double() if str(x.dtype) == "torch.float64" else x.float()
    x = np.asarray(x)
    wide = x.dtype == np.float64 and jax.config.jax_enable_x64
    # a copy: jnp.asarray may share the tensor's memory, which the framework updates in place as it trains
    return jnp.array(x, jnp.float64 if wide else jnp.float32, copy=True)


def _path_names(path) -> list[str]:
    names = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                names.append(str(getattr(entry, attribute)))
                break
    return [name for name in names if name not in ("params", "value")]


def _hashable(value):
    """``value`` itself if hashable, else its pytree structure with each array leaf as its bytes."""
    try:
        hash(value)
        return value
    except TypeError:
        pass
    leaves, treedef = jax.tree_util.tree_flatten(value)
    arrays = [np.asarray(leaf) if isinstance(leaf, (jax.Array, np.ndarray)) else None for leaf in leaves]
    return treedef, tuple(leaf if a is None else (a.shape, a.dtype.str, a.tobytes()) for leaf, a in zip(leaves, arrays))


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

    def _static_key(self) -> tuple:
        """What ``step`` depends on besides ``params``: every field but ``module`` and ``params``."""
        return tuple(_hashable(getattr(self, field.name)) for field in dataclasses.fields(self)
                     if field.name not in ("module", "params"))

    def __eq__(self, other):
        return type(other) is type(self) and self._static_key() == other._static_key()

    def __hash__(self):
        return hash((type(self), self._static_key()))

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
