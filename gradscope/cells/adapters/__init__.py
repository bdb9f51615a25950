"""Use PyTorch, Keras, Flax (linen and nnx) and Equinox recurrent layers in every gradscope analysis.

:func:`from_torch` and :func:`from_keras` wrap a PyTorch or Keras layer with its current
weights, copied to JAX: see :mod:`gradscope.cells.adapters.torch` and
:mod:`gradscope.cells.adapters.keras` for their equations, states and parameters.
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

Adapters compare by architecture, not by weights: analyses of one architecture share one
compilation, whatever adapter object they go through.

The libraries are optional: install them with ``pip install gradscope[torch]``,
``gradscope[keras]``, ``gradscope[flax]`` or ``gradscope[equinox]``.
"""

from gradscope.cells.adapters.base import AdaptedCell
from gradscope.cells.adapters.equinox import EquinoxCell, from_equinox
from gradscope.cells.adapters.flax import LinenCell, NNXCell, from_flax
from gradscope.cells.adapters.keras import KerasCell, from_keras
from gradscope.cells.adapters.torch import TorchBidirectional, TorchCell, from_torch

__all__ = ["AdaptedCell", "EquinoxCell", "KerasCell", "LinenCell", "NNXCell", "TorchBidirectional", "TorchCell",
           "from_equinox", "from_flax", "from_keras", "from_torch"]
