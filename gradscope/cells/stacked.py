r"""Recurrent layers stacked into one cell, whose state is every layer's state.

A stack of L recurrent layers, each feeding its output to the layer above at the
same time step, is itself a recurrence on the stacked state
``H_t = (h^1_t, ..., h^L_t)``:

.. math::

    h^1_t = f_1(\theta_1, h^1_{t-1}, x_t), \qquad
    h^l_t = f_l(\theta_l, h^l_{t-1}, \mathrm{out}_{l-1}(h^{l-1}_t)) \quad (l > 1),

so ``dH_T/dH_{T-k}`` holds every route the gradient can take back through time:
within each layer, and up and down between layers. :class:`Stacked` is that
recurrence as a gradscope cell; :func:`gradscope.diagnose` builds it from the
layers it finds in a model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

__all__ = ["Stacked", "output_of"]


def output_of(cell, state) -> jax.Array:
    """The part of a cell's state a read-out sees: ``cell.output(state)``, ``state.h``, or the state."""
    if hasattr(cell, "output"):
        return cell.output(state)
    if hasattr(state, "h"):
        return state.h
    if isinstance(state, jax.Array) or hasattr(state, "shape"):
        return state
    raise TypeError(f"cannot tell which part of a {type(state).__name__} state to read out; give the cell an "
                    "output(state) method")


@dataclasses.dataclass(frozen=True)
class Stacked:
    """Recurrent layers run in turn at every step, each layer's output the next one's input.

    The state is the tuple of the layers' states and the parameters are the tuple of
    their parameters, so ``jacobian_spectra(stack, (p1, p2), xs)`` gives the
    singular values of ``dH_T/dH_{T-k}`` for the whole stack (see the module
    docstring). Equal stacks compare (and hash) equal, so they share compilations.

    Attributes:
        layers: the cells, bottom first (gradscope cells or adapters; every layer but
            the last needs an output: ``cell.output(state)``, ``state.h`` or an array state).
    """

    layers: tuple

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a stack needs at least one layer, got none")
        for i, cell in enumerate(self.layers):
            if not (hasattr(cell, "step") and hasattr(cell, "initial_state")):
                raise TypeError(f"layer {i} of the stack must be a cell with .step and .initial_state, "
                                f"got {type(cell).__name__}")

    @property
    def input_size(self):
        """The bottom layer's input size (what ``xs`` feeds)."""
        return getattr(self.layers[0], "input_size", None)

    def input_size_for(self, params):
        """The bottom layer's input size given the stack's ``params`` (for cells that read it from them)."""
        size_for = getattr(self.layers[0], "input_size_for", None)
        return self.input_size if size_for is None else size_for(params[0])

    def step(self, params, h, x):
        """One step of every layer in turn; ``params`` and ``h`` are tuples over the layers."""
        new = []
        for cell, layer_params, layer_h in zip(self.layers, params, h, strict=True):
            layer_h = cell.step(layer_params, layer_h, x)
            new.append(layer_h)
            x = output_of(cell, layer_h)
        return tuple(new)

    def initial_state(self, dtype=jnp.float32) -> tuple:
        """Every layer's zero state, as a tuple."""
        return tuple(cell.initial_state(dtype) for cell in self.layers)

    def output(self, state):
        """The top layer's output."""
        return output_of(self.layers[-1], state[-1])

    def layer_inputs(self, params, xs, h0) -> tuple:
        """The inputs each layer sees over the sequence: ``xs`` for the bottom one, ``[T, ...]`` outputs above.

        Pure JAX (one ``lax.scan``); ``xs`` has a leading time axis and no batch axes.
        """
        def body(h, x):
            h = self.step(params, h, x)
            return h, tuple(output_of(cell, layer_h) for cell, layer_h in zip(self.layers[:-1], h))

        _, below = jax.lax.scan(body, tuple(h0), xs)
        return (xs, *below)
