r"""Use Keras 3 recurrent layers (``SimpleRNN``, ``LSTM``, ``GRU`` and their cells) in every
gradscope analysis, whatever Keras backend built them.

The weights are read as NumPy arrays and copied to JAX (``{"kernel", "recurrent_kernel",
"bias"}``, Keras's own names and ``(fan_in, fan_out)`` layout); the step is written here
in JAX from Keras's equations, with the layer's ``activation`` and
``recurrent_activation``:

* SimpleRNN: :math:`h' = \phi(x K + b + h U)`;
* LSTM: gates ``i, f, c, o`` from :math:`x K + h U + b`,
  :math:`c' = \rho(f) c + \rho(i)\phi(\tilde c)`, :math:`h' = \rho(o)\phi(c')`;
* GRU: gates ``z, r, h``; ``reset_after=True`` (the default):
  :math:`\tilde h = \phi(x K_h + b^{in}_h + r \odot (h U_h + b^{rec}_h))` with the bias
  of shape ``(2, 3 units)``; ``reset_after=False``:
  :math:`\tilde h = \phi(x K_h + b_h + (r \odot h) U_h)`; then :math:`h' = z h + (1 - z)\tilde h`.

Dropout and recurrent dropout are training-time features and are not applied.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from gradscope.cells.adapters import _gates
from gradscope.cells.adapters.base import AdaptedCell, _as_jax, _require
from gradscope.cells.classic import LSTMState

__all__ = ["KerasCell", "from_keras"]

# Keras's built-in activations by name, with Keras's defaults (leaky_relu slope 0.2, exact gelu)
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "relu": jax.nn.relu,
    "linear": lambda a: a,
    "softsign": jax.nn.soft_sign,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "celu": jax.nn.celu,
    "silu": jax.nn.silu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "exponential": jnp.exp,
    "relu6": jax.nn.relu6,
    "hard_silu": jax.nn.hard_silu,
    "hard_tanh": jax.nn.hard_tanh,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.2),
    "log_sigmoid": jax.nn.log_sigmoid,
    "mish": jax.nn.mish,
}
_ROLES = {"kernel": ("input", False), "recurrent_kernel": ("recurrent", False), "bias": ("bias", False)}


@dataclasses.dataclass(frozen=True, eq=False)
class KerasCell(AdaptedCell):
    """A Keras recurrent layer as a gradscope cell.

    The state is ``h`` of shape ``(units,)``, or ``LSTMState(h, c)`` for an LSTM
    (Keras's own ``[h, c]`` order).

    Attributes:
        kind: ``"SimpleRNN"``, ``"LSTM"`` or ``"GRU"``.
        activation: name of the layer's ``activation`` (a key of :data:`ACTIVATIONS`).
        recurrent_activation: name of its ``recurrent_activation`` (gates; unused by SimpleRNN).
        use_bias: whether the layer has a bias.
        reset_after: GRU only: the reset gate applied after the recurrent matmul.
        go_backwards: the layer reads the sequence from its end (:meth:`inputs` flips it).
    """

    kind: str = "LSTM"
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    reset_after: bool = True
    go_backwards: bool = False

    library = "keras"

    def step(self, params, state, x):
        """One step of the layer, in Keras's gate order."""
        act, gate = ACTIVATIONS[self.activation], ACTIVATIONS[self.recurrent_activation]
        kernel, recurrent = params["kernel"], params["recurrent_kernel"]
        bias = params["bias"] if self.use_bias else jnp.zeros((2, kernel.shape[-1]) if self._two_biases else (),
                                                              kernel.dtype)
        if self.kind == "SimpleRNN":
            return act(x @ kernel + bias + state @ recurrent)
        if self.kind == "LSTM":
            return LSTMState(*_gates.lstm(x @ kernel + state.h @ recurrent + bias, state.c, act, gate))
        return self._gru(params, state, x, bias, act, gate)

    def _gru(self, params, h, x, bias, act, gate):
        units = self.hidden_size
        recurrent = params["recurrent_kernel"]
        input_bias = bias[0] if self._two_biases else bias
        x_z, x_r, x_h = jnp.split(x @ params["kernel"] + input_bias, 3, axis=-1)
        if self.reset_after:
            h_z, h_r, h_h = jnp.split(h @ recurrent + bias[1], 3, axis=-1)
            candidate = lambda r: r * h_h  # noqa: E731
        else:
            h_z, h_r = jnp.split(h @ recurrent[:, :2 * units], 2, axis=-1)
            candidate = lambda r: (r * h) @ recurrent[:, 2 * units:]  # noqa: E731
        return _gates.gru(x_r, x_z, x_h, h_r, h_z, candidate, h, act, gate)

    @property
    def _two_biases(self) -> bool:
        return self.kind == "GRU" and self.reset_after

    def initial_state(self, dtype=jnp.float32):
        """Zero ``h`` (``(units,)``), or ``LSTMState(h, c)`` for an LSTM."""
        zeros = jnp.zeros((self.hidden_size,), dtype)
        return LSTMState(zeros, zeros) if self.kind == "LSTM" else zeros

    def inputs(self, x) -> jax.Array:
        """What you feed the layer (``(batch, T, features)`` or ``(T, features)``) as ``xs``, in
        the order the layer reads it: flipped in time for ``go_backwards=True``."""
        xs = _as_jax(x)
        if xs.ndim < 2 or xs.shape[-1] != self.input_size:
            raise ValueError(f"expected the layer's input with {self.input_size} features on the last axis "
                             f"((batch, T, {self.input_size}) or (T, {self.input_size})), got {tuple(xs.shape)}")
        return xs[..., ::-1, :] if self.go_backwards else xs

    @property
    def directions(self) -> dict[str, KerasCell]:
        """``{"reverse": self}`` for ``go_backwards=True``, else ``{"forward": self}``."""
        return {"reverse" if self.go_backwards else "forward": self}

    def params_of(self, layer=None) -> dict[str, jax.Array]:
        """The current weights of ``layer`` (default: the adapted one) as JAX arrays.

        Raises:
            ValueError: ``layer`` has another architecture than this adapter.
        """
        fresh = from_keras(self.module if layer is None else layer)
        if fresh != self:
            raise ValueError(f"params_of expects a layer of this adapter's architecture ({self._static_key()}), "
                             f"got {fresh._static_key()}")
        return fresh.params

    def _role(self, names):
        return _ROLES.get(names[-1] if names else "", ("unknown", False))


def _activation_name(keras, function, what: str, layer) -> str:
    name = getattr(function, "__name__", None)
    if name in ACTIVATIONS and keras.activations.get(name) is function:
        return name
    raise ValueError(f"{type(layer).__name__}'s {what} {function!r} is not one of the Keras activations gradscope "
                     f"knows ({', '.join(ACTIVATIONS)}); write the cell's step in JAX and pass it to "
                     "jacobian_spectra as a plain function")


def _cell_kind(keras, cell) -> str | None:
    for base, kind in ((keras.layers.SimpleRNNCell, "SimpleRNN"), (keras.layers.LSTMCell, "LSTM"),
                       (keras.layers.GRUCell, "GRU")):
        if isinstance(cell, base) and type(cell).call is base.call:
            return kind
    return None


def _not_supported(keras, layer) -> TypeError:
    if isinstance(layer, keras.layers.Bidirectional):
        hint = ("; analyse each direction: from_keras(layer.forward_layer) and from_keras(layer.backward_layer) "
                "(the backward one reads the sequence from its end)")
    else:
        found = [sub.name for sub in getattr(layer, "layers", []) if isinstance(sub, keras.layers.RNN)]
        hint = f"; it contains {', '.join(found)}: pass one of those layers" if found else ""
    return TypeError(f"from_keras expects a keras.layers.SimpleRNN, LSTM or GRU layer (or its cell), "
                     f"got {type(layer).__name__}{hint}")


def _read(keras, variable) -> jax.Array:
    return _as_jax(keras.ops.convert_to_numpy(variable))


def from_keras(layer) -> KerasCell:
    """Wrap a built Keras 3 recurrent layer for gradscope, with its current weights.

    >>> layer = keras.layers.LSTM(32)
    >>> layer.build((None, None, 3))                # or call it once on data
    >>> adapted = gradscope.cells.from_keras(layer)
    >>> gradscope.jacobian_spectra(adapted, adapted.params, adapted.inputs(x))   # x: (T, 3)

    Works with ``keras.layers.SimpleRNN``, ``LSTM`` and ``GRU`` (both ``reset_after``
    settings) and their cells, built under any Keras backend, with the layer's
    ``activation`` and ``recurrent_activation`` (any of :data:`ACTIVATIONS`).
    Float64 layers give float64 weights when JAX's 64-bit mode is on.

    Args:
        layer: the built layer (or a ``keras.layers.*Cell``).

    Returns:
        :class:`KerasCell`; ``adapted.params`` are the weights as JAX arrays and
        ``adapted.params_of(layer)`` reads them again (e.g. during training).

    Raises:
        ImportError: Keras is not installed (``pip install gradscope[keras]``).
        TypeError: ``layer`` is not one of the layers above.
        ValueError: the layer is not built yet, or has an activation gradscope does not know.
    """
    keras = _require("keras", "keras", "from_keras")
    cell = getattr(layer, "cell", layer)
    kind = _cell_kind(keras, cell)
    if kind is None:
        raise _not_supported(keras, layer)
    if not cell.built:
        raise ValueError(f"{type(layer).__name__} is not built yet, so it has no weights; call it once on an "
                         "input or build it: layer.build((None, None, input_size))")
    params = {"kernel": _read(keras, cell.kernel), "recurrent_kernel": _read(keras, cell.recurrent_kernel)}
    if cell.use_bias:
        params["bias"] = _read(keras, cell.bias)
    gate = getattr(cell, "recurrent_activation", None)
    return KerasCell(layer, params, int(params["kernel"].shape[0]), int(cell.units),
                     ("h", "c") if kind == "LSTM" else ("h",), kind=kind,
                     activation=_activation_name(keras, cell.activation, "activation", layer),
                     recurrent_activation="sigmoid" if gate is None else _activation_name(
                         keras, gate, "recurrent_activation", layer),
                     use_bias=bool(cell.use_bias), reset_after=bool(getattr(cell, "reset_after", False)),
                     go_backwards=bool(getattr(layer, "go_backwards", False)))
