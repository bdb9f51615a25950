"""The classic recurrent cells: vanilla RNN, LSTM (with and without layer norm) and GRU.

Every cell is a frozen dataclass with

* ``init(key, recurrent_init=..., input_init=..., bias_init=...) -> params``
  (a NamedTuple of arrays; kernels are ``(fan_in, fan_out)``, gates stacked on
  the last axis and initialized per gate block),
* ``step(params, h, x) -> h_next`` (the scan contract that gradscope unrolls),
* ``initial_state(dtype) -> h0`` (zeros, with the cell's state structure).

Any plain function ``step(params, h, x) -> h_next`` with a pytree state works
everywhere a built-in cell does; the cells here only add parameter layouts and
initialization.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

from gradscope import initializers

__all__ = [
    "ACTIVATIONS",
    "GRU",
    "GRU_GATES",
    "GRUParams",
    "LSTM",
    "LSTM_GATES",
    "LSTMParams",
    "LSTMState",
    "LayerNormLSTM",
    "LayerNormLSTMParams",
    "VanillaParams",
    "VanillaRNN",
    "get_activation",
    "layer_norm",
]

Activation = Union[str, Callable[[jax.Array], jax.Array]]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda a: a,
    "identity": lambda a: a,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
    "hard_tanh": jax.nn.hard_tanh,
}


def get_activation(activation: Activation) -> Callable[[jax.Array], jax.Array]:
    """Return the elementwise function for a name in :data:`ACTIVATIONS` or a callable."""
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return ACTIVATIONS[activation.lower()]
    raise ValueError(
        f"unknown activation {activation!r}; expected a callable or one of: {', '.join(sorted(ACTIVATIONS))}"
    )


LSTM_GATES = ("write", "keep", "other", "other")
"""Roles (:data:`gradscope.initializers.GATE_ROLES`) of the LSTM's stacked gate biases i, f, g, o."""
GRU_GATES = ("other", "keep", "other")
"""Roles of the GRU's input-bias gate blocks r, z, n (z keeps the state: ``h_t = (1-z) h~ + z h_{t-1}``)."""


def _check_sizes(cell) -> None:
    for field in ("hidden_size", "input_size"):
        value = getattr(cell, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(cell).__name__}.{field} must be a positive int, got {value!r}")


class VanillaParams(NamedTuple):
    """Parameters of :class:`VanillaRNN`.

    Attributes:
        recurrent_kernel: ``W_hh``, shape ``(hidden, hidden)``.
        input_kernel: ``W_xh``, shape ``(input, hidden)``.
        bias: ``b``, shape ``(hidden,)``.
    """

    recurrent_kernel: jax.Array
    input_kernel: jax.Array
    bias: jax.Array


@dataclasses.dataclass(frozen=True)
class VanillaRNN:
    r"""Elman RNN: :math:`h_t = \phi(h_{t-1} W_{hh} + x_t W_{xh} + b)`.

    Its step Jacobian is :math:`J_t = \mathrm{diag}(\phi'(a_t))\, W_{hh}^\top`.

    Attributes:
        hidden_size: number of units ``n``.
        input_size: size of each input ``x_t``.
        activation: ``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"linear"``, another
            name from :data:`ACTIVATIONS`, or any elementwise callable.
    """

    hidden_size: int
    input_size: int = 1
    activation: Activation = "tanh"

    def __post_init__(self):
        _check_sizes(self)
        get_activation(self.activation)

    def init(self, key, recurrent_init="orthogonal", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32) -> VanillaParams:
        """Draw parameters; each ``*_init`` is a name, ``(name, options)`` or callable."""
        k_rec, k_in, k_b = jax.random.split(key, 3)
        n, m = self.hidden_size, self.input_size
        return VanillaParams(
            initializers.resolve(recurrent_init)(k_rec, (n, n), dtype),
            initializers.resolve(input_init)(k_in, (m, n), dtype),
            _init_bias(bias_init, k_b, (n,), dtype),
        )

    def step(self, params: VanillaParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the recurrence."""
        phi = get_activation(self.activation)
        return phi(h @ params.recurrent_kernel + x @ params.input_kernel + params.bias)

    def initial_state(self, dtype=jnp.float32) -> jax.Array:
        """Zero state of shape ``(hidden_size,)``."""
        return jnp.zeros((self.hidden_size,), dtype)


class LSTMParams(NamedTuple):
    """Parameters of :class:`LSTM`; gates stacked on the last axis in the order i, f, g, o.

    Attributes:
        recurrent_kernel: shape ``(hidden, 4 * hidden)``.
        input_kernel: shape ``(input, 4 * hidden)``.
        bias: shape ``(4 * hidden,)`` (one bias vector, unlike PyTorch's two).
    """

    recurrent_kernel: jax.Array
    input_kernel: jax.Array
    bias: jax.Array


class LSTMState(NamedTuple):
    """LSTM state; gradscope's full-state Jacobian covers both parts (n = 2 * hidden).

    Attributes:
        h: hidden (output) state, shape ``(hidden,)``.
        c: cell state, shape ``(hidden,)``.
    """

    h: jax.Array
    c: jax.Array


@dataclasses.dataclass(frozen=True)
class LSTM:
    r"""Long short-term memory cell (Hochreiter & Schmidhuber 1997, with forget gate).

    .. math::
        [i, f, g, o] = h_{t-1} W_{hh} + x_t W_{xh} + b \\
        c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        h_t = \sigma(o) \odot \tanh(c_t)

    The state is ``LSTMState(h, c)``; the Jacobian is taken over both.

    Attributes:
        hidden_size: number of units per gate.
        input_size: size of each input ``x_t``.
        forget_bias: added to the forget-gate bias at init (Jozefowicz et al. 2015
            recommend 1.0).
    """

    hidden_size: int
    input_size: int = 1
    forget_bias: float = 0.0

    def __post_init__(self):
        _check_sizes(self)

    def init(self, key, recurrent_init="orthogonal", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32) -> LSTMParams:
        """Draw parameters, each gate block separately; then add ``forget_bias``.

        A gate-aware ``bias_init`` such as ``("chrono", {"t_max": 100})`` gets the gate
        roles (:data:`LSTM_GATES`): chrono sets ``b_f = log u``, ``b_i = -log u``.
        """
        k_rec, k_in, k_b = jax.random.split(key, 3)
        n, m = self.hidden_size, self.input_size
        bias = _init_bias(bias_init, k_b, (4 * n,), dtype, gates=LSTM_GATES)
        bias = bias.at[n:2 * n].add(self.forget_bias)
        return LSTMParams(
            initializers.per_block(initializers.resolve(recurrent_init), 4)(k_rec, (n, 4 * n), dtype),
            initializers.per_block(initializers.resolve(input_init), 4)(k_in, (m, 4 * n), dtype),
            bias,
        )

    def step(self, params: LSTMParams, state: LSTMState, x: jax.Array) -> LSTMState:
        """One step of the recurrence."""
        z = state.h @ params.recurrent_kernel + x @ params.input_kernel + params.bias
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return LSTMState(jax.nn.sigmoid(o) * jnp.tanh(c), c)

    def initial_state(self, dtype=jnp.float32) -> LSTMState:
        """Zero ``(h, c)``."""
        zeros = jnp.zeros((self.hidden_size,), dtype)
        return LSTMState(zeros, zeros)


class LayerNormLSTMParams(NamedTuple):
    """Parameters of :class:`LayerNormLSTM`; gates stacked on the last axis in the order i, f, g, o.

    Attributes:
        recurrent_kernel: shape ``(hidden, 4 * hidden)``.
        input_kernel: shape ``(input, 4 * hidden)``.
        gate_gain: layer-norm gain of each gate's pre-activation, shape ``(4 * hidden,)`` (init 1).
        gate_bias: layer-norm bias of each gate, shape ``(4 * hidden,)``; it is the gate bias
            (``bias_init`` plus ``forget_bias`` on the forget block).
        cell_gain: layer-norm gain of the cell state, shape ``(hidden,)`` (init 1).
        cell_bias: layer-norm bias of the cell state, shape ``(hidden,)`` (init 0).
    """

    recurrent_kernel: jax.Array
    input_kernel: jax.Array
    gate_gain: jax.Array
    gate_bias: jax.Array
    cell_gain: jax.Array
    cell_bias: jax.Array


def layer_norm(a: jax.Array, gain: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
    r"""Layer normalization over the last axis: :math:`g \odot (a - \mu) / \sqrt{\sigma^2 + \epsilon} + b`."""
    mean = jnp.mean(a, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)
    return gain * (a - mean) * jax.lax.rsqrt(var + epsilon) + bias


@dataclasses.dataclass(frozen=True)
class LayerNormLSTM:
    r"""LSTM with layer normalization (Ba, Kiros & Hinton 2016).

    .. math::
        z = h_{t-1} W_{hh} + x_t W_{xh}, \quad
        [i, f, g, o]_j = \mathrm{LN}(z_j;\, \gamma_j, \beta_j) \text{ for each gate block } j \\
        c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        h_t = \sigma(o) \odot \tanh(\mathrm{LN}(c_t;\, \gamma_c, \beta_c))

    with :math:`\mathrm{LN}(a; \gamma, \beta) = \gamma \odot (a - \mu_a)/\sqrt{\sigma_a^2 + \epsilon} + \beta`
    over the ``hidden`` units of one block. Each gate's summed pre-activation is
    normalized on its own (as TensorFlow's ``LayerNormBasicLSTMCell`` does), so the
    recurrent and input terms share one normalization; normalizing ``x_t W_{xh}``
    separately would erase the input's magnitude for a scalar input. As in Ba et al.
    the carried cell state ``c_t`` is *not* normalized; only its read-out is. The
    learnable gains start at 1 and the LN biases play the role of the gate biases.

    Layer normalization divides by the spread of the pre-activation, so a state and
    input that make a gate's pre-activation constant across units (for example
    ``h = 0`` with zero inputs) give a step Jacobian of order ``1/sqrt(epsilon)``.

    The state is :class:`LSTMState` ``(h, c)``; the Jacobian is taken over both.

    Attributes:
        hidden_size: number of units per gate.
        input_size: size of each input ``x_t``.
        forget_bias: added to the forget-gate bias at init.
        epsilon: the variance floor inside the normalization.
    """

    hidden_size: int
    input_size: int = 1
    forget_bias: float = 0.0
    epsilon: float = 1e-5

    def __post_init__(self):
        _check_sizes(self)
        if not self.epsilon > 0:
            raise ValueError(f"LayerNormLSTM.epsilon must be > 0, got {self.epsilon!r}")

    def init(self, key, recurrent_init="orthogonal", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32) -> LayerNormLSTMParams:
        """Draw the kernels per gate block (as :class:`LSTM`); gains 1, cell bias 0."""
        base = LSTM(self.hidden_size, self.input_size, self.forget_bias).init(
            key, recurrent_init, input_init, bias_init, dtype)
        n = self.hidden_size
        return LayerNormLSTMParams(base.recurrent_kernel, base.input_kernel, jnp.ones((4 * n,), dtype), base.bias,
                                   jnp.ones((n,), dtype), jnp.zeros((n,), dtype))

    def step(self, params: LayerNormLSTMParams, state: LSTMState, x: jax.Array) -> LSTMState:
        """One step of the recurrence."""
        n = self.hidden_size
        z = state.h @ params.recurrent_kernel + x @ params.input_kernel
        blocks = z.reshape(z.shape[:-1] + (4, n))
        shape = (4, n)
        gates = layer_norm(blocks, params.gate_gain.reshape(shape), params.gate_bias.reshape(shape), self.epsilon)
        i, f, g, o = (gates[..., j, :] for j in range(4))
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        c_hat = layer_norm(c, params.cell_gain, params.cell_bias, self.epsilon)
        return LSTMState(jax.nn.sigmoid(o) * jnp.tanh(c_hat), c)

    def initial_state(self, dtype=jnp.float32) -> LSTMState:
        """Zero ``(h, c)``."""
        zeros = jnp.zeros((self.hidden_size,), dtype)
        return LSTMState(zeros, zeros)

class GRUParams(NamedTuple):
    """Parameters of :class:`GRU`; gates stacked on the last axis in the order r, z, n.

    Attributes:
        recurrent_kernel: shape ``(hidden, 3 * hidden)``.
        input_kernel: shape ``(input, 3 * hidden)``.
        input_bias: shape ``(3 * hidden,)``.
        recurrent_bias: shape ``(3 * hidden,)``; with ``reset="after"`` its candidate
            block sits inside the reset gate, as in cuDNN/PyTorch.
    """

    recurrent_kernel: jax.Array
    input_kernel: jax.Array
    input_bias: jax.Array
    recurrent_bias: jax.Array


@dataclasses.dataclass(frozen=True)
class GRU:
    r"""Gated recurrent unit in either convention for the reset gate.

    .. math::
        r = \sigma(x W_{xr} + b_{xr} + h W_{hr} + b_{hr}), \quad
        z = \sigma(x W_{xz} + b_{xz} + h W_{hz} + b_{hz}) \\
        \text{reset="after"} \text{ (cuDNN, PyTorch, Flax)}:\;
        \tilde h = \tanh(x W_{xn} + b_{xn} + r \odot (h W_{hn} + b_{hn})) \\
        \text{reset="before"} \text{ (Cho et al. 2014)}:\;
        \tilde h = \tanh(x W_{xn} + b_{xn} + (r \odot h) W_{hn} + b_{hn}) \\
        h_t = (1 - z) \odot \tilde h + z \odot h_{t-1}

    Attributes:
        hidden_size: number of units.
        input_size: size of each input ``x_t``.
        reset: ``"after"`` (default) or ``"before"`` the recurrent matmul.
    """

    hidden_size: int
    input_size: int = 1
    reset: str = "after"

    def __post_init__(self):
        _check_sizes(self)
        if self.reset not in ("after", "before"):
            raise ValueError(f"GRU reset must be 'after' (cuDNN/PyTorch/Flax) or 'before' (Cho et al. 2014), "
                             f"got {self.reset!r}")

    def init(self, key, recurrent_init="orthogonal", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32) -> GRUParams:
        """Draw parameters, each gate block separately.

        ``bias_init`` draws both bias vectors, but a gate-aware one such as
        ``("chrono", {"t_max": 100})`` goes into ``input_bias`` only (roles
        :data:`GRU_GATES`, ``b_z = log u``) and leaves ``recurrent_bias`` at 0, since the
        two add up.
        """
        k_rec, k_in, k_bi, k_bh = jax.random.split(key, 4)
        n, m = self.hidden_size, self.input_size
        return GRUParams(
            initializers.per_block(initializers.resolve(recurrent_init), 3)(k_rec, (n, 3 * n), dtype),
            initializers.per_block(initializers.resolve(input_init), 3)(k_in, (m, 3 * n), dtype),
            _init_bias(bias_init, k_bi, (3 * n,), dtype, gates=GRU_GATES),
            _init_bias(bias_init, k_bh, (3 * n,), dtype, gates=("other",) * 3),  # chrono once: the biases add up
        )

    def step(self, params: GRUParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the recurrence."""
        n = self.hidden_size
        xr, xz, xn = jnp.split(x @ params.input_kernel + params.input_bias, 3, axis=-1)
        w_rz, w_n = params.recurrent_kernel[:, :2 * n], params.recurrent_kernel[:, 2 * n:]
        hr, hz = jnp.split(h @ w_rz + params.recurrent_bias[:2 * n], 2, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        b_n = params.recurrent_bias[2 * n:]
        if self.reset == "after":
            candidate = jnp.tanh(xn + r * (h @ w_n + b_n))
        else:
            candidate = jnp.tanh(xn + (r * h) @ w_n + b_n)
        return (1.0 - z) * candidate + z * h

    def initial_state(self, dtype=jnp.float32) -> jax.Array:
        """Zero state of shape ``(hidden_size,)``."""
        return jnp.zeros((self.hidden_size,), dtype)


def _init_bias(spec, key, shape, dtype, gates=("other",)):
    init = initializers.resolve(spec)
    try:
        return initializers.gate_bias(init, key, shape, dtype, gates)
    except ValueError:  # a matrix-only initializer (identity) asked for a vector
        raise ValueError(f"bias initializer {spec!r} cannot make a vector of shape {shape}; "
                         "use zeros, constant, normal or uniform") from None

