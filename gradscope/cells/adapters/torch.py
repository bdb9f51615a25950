r"""Use PyTorch recurrent layers in every gradscope analysis: ``nn.RNN``, ``nn.LSTM``, ``nn.GRU``
and ``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``.

The module's weights are copied to JAX arrays (a dict keyed by PyTorch's own parameter
names, ``weight_ih_l0`` etc.), and its step is written here in JAX from PyTorch's
equations, for every layer of the stack at once:

* RNN: :math:`h' = \tanh\text{ or }\mathrm{relu}(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`;
* LSTM: gates ``i, f, g, o`` from :math:`W_{ih} x + b_{ih} + W_{hh} h + b_{hh}`,
  :math:`c' = \sigma(f) c + \sigma(i)\tanh(g)`, :math:`h' = \sigma(o)\tanh(c')`, then
  :math:`h' = W_{hr} h'` with ``proj_size`` (the state ``h`` then has ``proj_size`` entries);
* GRU: gates ``r, z, n``; :math:`n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn}))`
  (reset applied after the matmul, ``b_hn`` inside), :math:`h' = (1 - z) n + z h`.

Layer ``l > 0`` reads layer ``l - 1``'s new ``h`` of the same step (dropout between
layers is a training-time feature and is not applied: the analysis is of the module
in evaluation mode).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp

from gradscope.cells.adapters import _gates
from gradscope.cells.adapters.base import AdaptedCell, _as_jax, _require
from gradscope.cells.classic import LSTMState

__all__ = ["TorchBidirectional", "TorchCell", "from_torch"]

_ACTIVATIONS = {"RNN_TANH": jnp.tanh, "RNN_RELU": jax.nn.relu}
_MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")
_ROLES = {"weight_ih": ("input", True), "weight_hh": ("recurrent", True), "weight_hr": ("recurrent", True),
          "bias_ih": ("bias", False), "bias_hh": ("bias", False)}
_DIRECTIONS = ("forward", "reverse")


@dataclasses.dataclass(frozen=True, eq=False)
class TorchCell(AdaptedCell):
    r"""A PyTorch recurrent module (or one direction of a bidirectional one) as a gradscope cell.

    The state is the whole stack's: ``h`` of shape ``(num_layers, output_size)`` for
    ``nn.RNN``/``nn.GRU``, ``LSTMState(h, c)`` with ``c`` of shape ``(num_layers,
    hidden_size)`` for ``nn.LSTM`` (PyTorch's ``h_n``/``c_n`` of one direction without
    the batch axis); the Cell forms have ``(hidden_size,)`` parts. So ``dh_T/dh_{T-k}``
    covers every layer, the paths from layer to layer included.

    Attributes:
        mode: PyTorch's ``module.mode``: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``.
        num_layers: layers in the stack; 0 for a Cell form (``nn.LSTMCell`` etc.).
        proj_size: the LSTM's ``proj_size`` (0 for none).
        bias: whether the module has the bias vectors ``b_ih`` and ``b_hh``.
        direction: ``"forward"``, or ``"reverse"`` for the reverse direction of a
            bidirectional module (its step ``s`` reads ``x_{T+1-s}``: see :meth:`inputs`).
        bidirectional: whether the module has both directions.
        batch_first: the module's input layout (only :meth:`inputs` uses it).
        features: the module's ``input_size``. ``input_size`` (what the step reads)
            adds, for a bidirectional stack, the other direction's outputs.
    """

    mode: str = "LSTM"
    num_layers: int = 1
    proj_size: int = 0
    bias: bool = True
    direction: str = "forward"
    bidirectional: bool = False
    batch_first: bool = False
    features: int = 0

    library = "torch"

    @property
    def output_size(self) -> int:
        """Size of each layer's ``h``: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def directions(self) -> dict[str, TorchCell]:
        """``{direction: cell}``; for a one-directional module, ``{"forward": self}``."""
        return {self.direction: self}

    def step(self, params, state, x):
        """One step of every layer: layer ``l`` reads layer ``l - 1``'s new ``h``."""
        h, c = (state.h, state.c) if self.mode == "LSTM" else (state, None)
        if not self.num_layers:
            return self._state(*self._layer_step(params, 0, x, h, c))
        others = self._other_direction_parts(x)
        layer_input, new_h, new_c = x[..., :self.features], [], []
        for layer in range(self.num_layers):
            if layer:
                layer_input = self._layer_input(new_h[-1], others[layer - 1] if others else None)
            h_l, c_l = self._layer_step(params, layer, layer_input, h[..., layer, :],
                                        None if c is None else c[..., layer, :])
            new_h.append(h_l)
            new_c.append(c_l)
        return self._state(jnp.stack(new_h, -2), None if c is None else jnp.stack(new_c, -2))

    def initial_state(self, dtype=jnp.float32):
        """Zero state: ``h`` (and ``c``) of every layer, shaped like PyTorch's ``h_n`` of one direction."""
        rows = (self.num_layers,) if self.num_layers else ()
        h = jnp.zeros(rows + (self.output_size,), dtype)
        return self._state(h, jnp.zeros(rows + (self.hidden_size,), dtype) if self.mode == "LSTM" else None)

    def output(self, state) -> jax.Array:
        """The top layer's ``h`` (what the module outputs at each step)."""
        h = state.h if self.mode == "LSTM" else state
        return h[..., -1, :] if self.num_layers else h

    def inputs(self, x, params=None) -> jax.Array:
        """What you feed ``module(x)``, as the ``xs`` this cell's step reads, in its order.

        ``x`` (a tensor or array) is ``(T, input_size)`` or batched, in the module's
        layout (``batch_first`` or not); the result is gradscope's ``(..., T,
        input_size)`` with batch axes first. For the reverse direction the time axis is
        flipped (its step ``s`` reads ``x_{T+1-s}``); for a bidirectional stack the
        other direction's outputs of layers ``0 .. num_layers - 2`` (from zero initial
        states, as ``module(x)``) are appended, since the layers above read them.

        Args:
            x: the module's input (a ``torch.Tensor`` or an array).
            params: the weights to compute the other direction with (default ``self.params``).
        """
        xs = _as_jax(x)
        if self.num_layers and not self.batch_first and xs.ndim == 3:
            xs = jnp.swapaxes(xs, 0, 1)
        if xs.ndim < 2 or xs.shape[-1] != self.features:
            raise ValueError(f"expected the module's input with {self.features} features on the last axis "
                             f"((T, {self.features}) or batched), got shape {tuple(xs.shape)}")
        if self.input_size != self.features:
            xs = jnp.concatenate([xs, _other_direction(self, self.params if params is None else params, xs)], -1)
        return xs[..., ::-1, :] if self.direction == "reverse" else xs

    def params_of(self, module=None) -> dict[str, jax.Array]:
        """The current weights of ``module`` (default: the adapted one) as JAX arrays.

        Cheap (one copy per tensor, nothing compiled); use it to analyse a module as
        it trains: ``jacobian_spectra(adapted, adapted.params_of(), xs)``. Adapters
        compare by architecture, so this never recompiles an analysis.

        Raises:
            ValueError: ``module`` has another architecture than this adapter.
        """
        fresh = from_torch(self.module if module is None else module)
        if fresh.directions.get(self.direction) != self:
            raise ValueError(f"params_of expects a module of this adapter's architecture ({self._describe()}), "
                             f"got {fresh.directions[next(iter(fresh.directions))]._describe()}")
        return fresh.params

    def _describe(self) -> str:
        layers = f"{self.num_layers} layers" if self.num_layers else "cell"
        return (f"{self.mode} {layers}, input {self.features}, hidden {self.hidden_size}, proj {self.proj_size}, "
                f"bias {self.bias}, bidirectional {self.bidirectional}")

    def _state(self, h, c):
        return LSTMState(h, c) if self.mode == "LSTM" else h

    def _name(self, kind: str, layer: int) -> str:
        if not self.num_layers:
            return kind
        return f"{kind}_l{layer}" + ("_reverse" if self.direction == "reverse" else "")

    def _affine(self, params, which: str, layer: int, v):
        out = v @ params[self._name(f"weight_{which}", layer)].T
        return out + params[self._name(f"bias_{which}", layer)] if self.bias else out

    def _layer_step(self, params, layer: int, x, h, c=None):
        """One layer's update in PyTorch's gate order; ``(h, c)`` with ``c`` None unless LSTM."""
        gx, gh = self._affine(params, "ih", layer, x), self._affine(params, "hh", layer, h)
        if self.mode == "LSTM":
            h, c = _gates.lstm(gx + gh, c)
            return (h @ params[self._name("weight_hr", layer)].T if self.proj_size else h), c
        if self.mode == "GRU":
            (x_r, x_z, x_n), (h_r, h_z, h_n) = jnp.split(gx, 3, axis=-1), jnp.split(gh, 3, axis=-1)
            return _gates.gru(x_r, x_z, x_n, h_r, h_z, lambda r: r * h_n, h), None
        return _ACTIVATIONS[self.mode](gx + gh), None

    def _other_direction_parts(self, x) -> list:
        """The other direction's outputs of layers 0 .. L-2 that :meth:`inputs` appended to ``x``."""
        if self.input_size == self.features:
            return []
        return jnp.split(x[..., self.features:], self.num_layers - 1, axis=-1)

    def _layer_input(self, own, other):
        """PyTorch concatenates ``[forward, reverse]`` outputs as the next layer's input."""
        if not self.bidirectional:
            return own
        return jnp.concatenate([own, other] if self.direction == "forward" else [other, own], -1)

    def _run_layer(self, params, layer: int, sequence):
        """One layer of this direction over ``sequence`` (``(..., T, features)``, its order), from zeros."""
        zeros = jnp.zeros(sequence.shape[:-2] + (self.output_size,), sequence.dtype)
        carry = (zeros, jnp.zeros(sequence.shape[:-2] + (self.hidden_size,), sequence.dtype)
                 if self.mode == "LSTM" else None)

        def body(carry, x):
            carry = self._layer_step(params, layer, x, *carry)
            return carry, carry[0]

        return jnp.moveaxis(jax.lax.scan(body, carry, jnp.moveaxis(sequence, -2, 0))[1], 0, -2)

    def _role(self, names):
        match = re.match(r"(weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)", names[-1] if names else "")
        return _ROLES[match.group(1)] if match else ("unknown", False)


@functools.partial(jax.jit, static_argnums=0)
def _other_direction(cell: TorchCell, params, xs):
    """The other direction's outputs of layers 0 .. L-2 over ``xs`` (sequence order), concatenated."""
    forward, reverse = (dataclasses.replace(cell, direction=d) for d in _DIRECTIONS)
    layer_input, kept = xs, []
    for layer in range(cell.num_layers - 1):
        f = forward._run_layer(params, layer, layer_input)
        r = reverse._run_layer(params, layer, layer_input[..., ::-1, :])[..., ::-1, :]
        kept.append(r if cell.direction == "forward" else f)
        layer_input = jnp.concatenate([f, r], -1)
    return jnp.concatenate(kept, -1)


@dataclasses.dataclass(frozen=True)
class TorchBidirectional:
    """Both directions of a bidirectional PyTorch module, each analysed as a cell of its own.

    The two directions are separate recurrences (one runs forward in time, one
    backward), so there is no single ``dh_T/dh_{T-k}`` of the pair. ``forward`` gives
    ``dh_T/dh_{T-k}`` over the forward states of every layer; ``reverse`` reads the
    sequence from its end (``reverse.inputs(x)`` flips it), so its lag ``k`` is
    ``dh_1/dh_{1+k}``: how the reverse states at the start of the sequence depend on
    those ``k`` positions later, i.e. how far back the information from the end reaches.

    Attributes:
        forward: the forward direction (:class:`TorchCell`).
        reverse: the reverse direction (:class:`TorchCell`).
    """

    forward: TorchCell
    reverse: TorchCell

    @property
    def params(self) -> dict[str, jax.Array]:
        """All the module's weights (both directions; each direction's step reads its own)."""
        return self.forward.params

    @property
    def module(self):
        """The wrapped PyTorch module."""
        return self.forward.module

    @property
    def directions(self) -> dict[str, TorchCell]:
        """``{"forward": ..., "reverse": ...}``."""
        return {"forward": self.forward, "reverse": self.reverse}

    def params_of(self, module=None) -> dict[str, jax.Array]:
        """The current weights of ``module`` (default: the adapted one); see :meth:`TorchCell.params_of`."""
        return self.forward.params_of(module)


def _names(mode: str, num_layers: int, bias: bool, proj_size: int, bidirectional: bool) -> list[str]:
    """PyTorch's parameter names, layer by layer (``_reverse`` after each forward layer)."""
    kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    kinds += ["weight_hr"] if proj_size and mode == "LSTM" else []
    if not num_layers:
        return kinds
    suffixes = ["", "_reverse"] if bidirectional else [""]
    return [f"{kind}_l{layer}{suffix}" for layer in range(num_layers) for suffix in suffixes for kind in kinds]


def _from_cell(module, nn) -> TorchCell:
    if isinstance(module, nn.RNNCell):
        mode = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}[module.nonlinearity]
    else:
        mode = "LSTM" if isinstance(module, nn.LSTMCell) else "GRU"
    names = _names(mode, 0, module.bias, 0, False)
    params = {name: _as_jax(getattr(module, name)) for name in names}
    return TorchCell(module, params, int(module.input_size), int(module.hidden_size),
                     ("h", "c") if mode == "LSTM" else ("h",), mode=mode, num_layers=0, bias=bool(module.bias),
                     features=int(module.input_size))


def _from_module(module) -> TorchCell | TorchBidirectional:
    if module.mode not in _MODES:
        raise TypeError(f"from_torch supports the modes {_MODES} of torch.nn.RNNBase, got {module.mode!r}")
    proj_size = int(getattr(module, "proj_size", 0))
    num_layers, bidirectional = int(module.num_layers), bool(module.bidirectional)
    names = _names(module.mode, num_layers, module.bias, proj_size, bidirectional)
    params = {name: _as_jax(getattr(module, name)) for name in names}
    extra = (num_layers - 1) * (proj_size or module.hidden_size) if bidirectional else 0
    cells = [TorchCell(module, params, int(module.input_size) + extra, int(module.hidden_size),
                       ("h", "c") if module.mode == "LSTM" else ("h",), mode=module.mode, num_layers=num_layers,
                       proj_size=proj_size, bias=bool(module.bias), direction=direction,
                       bidirectional=bidirectional, batch_first=bool(module.batch_first),
                       features=int(module.input_size))
             for direction in (_DIRECTIONS if bidirectional else _DIRECTIONS[:1])]
    return TorchBidirectional(*cells) if bidirectional else cells[0]


def _not_supported(module, nn) -> TypeError:
    found = []
    if isinstance(module, nn.Module):
        found = [f"{name} ({type(sub).__name__})" for name, sub in module.named_modules()
                 if name and isinstance(sub, (nn.RNNBase, nn.RNNCellBase))]
    hint = (f"; {type(module).__name__} contains {', '.join(found)}: pass that layer, e.g. "
            f"from_torch(model.{found[0].split(' ')[0]})") if found else ""
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        hint = ("; its class overrides forward, so what it computes is not PyTorch's recurrence: write its step "
                "in JAX and pass it to jacobian_spectra as a plain function")
    return TypeError(f"from_torch expects torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell, "
                     f"got {type(module).__name__}{hint}")


def from_torch(module) -> TorchCell | TorchBidirectional:
    """Wrap a PyTorch recurrent layer for gradscope, with its current weights.

    >>> lstm = torch.nn.LSTM(input_size=3, hidden_size=32, num_layers=2)
    >>> adapted = gradscope.cells.from_torch(lstm)
    >>> xs = adapted.inputs(torch.randn(100, 3))      # what you feed lstm(x)
    >>> gradscope.jacobian_spectra(adapted, adapted.params, xs)

    Works with ``nn.RNN`` (tanh and relu), ``nn.LSTM`` (with or without
    ``proj_size``), ``nn.GRU`` (any ``num_layers``, ``bias``, ``batch_first``,
    ``bidirectional``) and ``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``. Float64
    modules give float64 weights when JAX's 64-bit mode is on (float32 otherwise).

    Args:
        module: the PyTorch layer (not a whole model: pass the layer, e.g. ``model.lstm``).

    Returns:
        :class:`TorchCell`, whose state is every layer's ``h`` (and ``c``); for a
        bidirectional module, :class:`TorchBidirectional` with one cell per direction.
        ``adapted.params`` are the weights as JAX arrays, keyed by PyTorch's names;
        ``adapted.params_of(module)`` reads them again (e.g. during training).

    Raises:
        ImportError: PyTorch is not installed (``pip install gradscope[torch]``).
        TypeError: ``module`` is not one of the layers above.
    """
    torch = _require("torch", "torch", "from_torch")
    nn = torch.nn
    for base in (nn.RNNCell, nn.LSTMCell, nn.GRUCell, nn.RNN, nn.LSTM, nn.GRU):
        # a subclass is fine unless it computes something else than PyTorch's forward
        if isinstance(module, base) and type(module).forward is base.forward:
            return _from_cell(module, nn) if base in (nn.RNNCell, nn.LSTMCell, nn.GRUCell) else _from_module(module)
    raise _not_supported(module, nn)

