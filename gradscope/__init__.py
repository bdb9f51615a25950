"""gradscope: how the gradient travels back through time in a recurrent network.

The package namespace only re-exports; see the modules for the pieces.
"""

from gradscope import cells, engine, initializers, metrics
from gradscope._checks import NumericalOverflowError
from gradscope.cells import GRU, LSTM, VanillaRNN
from gradscope.compare import Comparison, compare
from gradscope.lags import select_lags
from gradscope.metrics import Thresholds
from gradscope.spectra import Spectra, forward_spectra, jacobian_spectra

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "Comparison",
    "LSTM",
    "NumericalOverflowError",
    "Spectra",
    "Thresholds",
    "VanillaRNN",
    "cells",
    "compare",
    "engine",
    "forward_spectra",
    "initializers",
    "jacobian_spectra",
    "metrics",
    "select_lags",
]
