"""What gradscope analyses: recurrent cells and adapters for other libraries' cells.

* :mod:`gradscope.cells.classic`: vanilla RNN, LSTM, layer-norm LSTM, GRU.
* :mod:`gradscope.cells.modern`: LRU, diagonal SSM (S4D), selective SSM (Mamba), minGRU, minLSTM.
* :mod:`gradscope.cells.adapters`: Flax, Equinox, PyTorch and Keras layers behind the same interface.
* :mod:`gradscope.cells.stacked`: recurrent layers stacked into one cell (:class:`Stacked`).

Every cell follows one contract: ``init(key, ...) -> params``,
``step(params, h, x) -> h_next`` and ``initial_state(dtype) -> h0``. Any plain
function ``step(params, h, x) -> h_next`` with a pytree state works everywhere a
cell does. This namespace only re-exports.
"""

from gradscope.cells import adapters
from gradscope.cells.adapters import from_equinox, from_flax, from_keras, from_torch
from gradscope.cells.classic import (ACTIVATIONS, GRU, LSTM, GRUParams, LayerNormLSTM, LayerNormLSTMParams, LSTMParams,
                                     LSTMState, VanillaParams, VanillaRNN, get_activation, layer_norm)
from gradscope.cells.modern import (LRU, ComplexState, DiagonalSSM, DiagonalSSMParams, LRUParams, MinGRU, MinGRUParams,
                                    MinLSTM, MinLSTMParams, SelectiveSSM, SelectiveSSMParams)
from gradscope.cells.stacked import Stacked

__all__ = [
    "ACTIVATIONS",
    "ComplexState",
    "DiagonalSSM",
    "DiagonalSSMParams",
    "GRU",
    "GRUParams",
    "LSTM",
    "LSTMParams",
    "LRU",
    "LRUParams",
    "LSTMState",
    "LayerNormLSTM",
    "LayerNormLSTMParams",
    "MinGRU",
    "MinGRUParams",
    "MinLSTM",
    "MinLSTMParams",
    "SelectiveSSM",
    "SelectiveSSMParams",
    "Stacked",
    "VanillaParams",
    "VanillaRNN",
    "adapters",
    "from_equinox",
    "from_flax",
    "from_keras",
    "from_torch",
    "get_activation",
    "layer_norm",
]
