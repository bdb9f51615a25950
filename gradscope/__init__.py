"""gradscope: how the gradient travels back through time in a recurrent network.

The package namespace only re-exports; see the modules for the pieces.
"""

from gradscope import (adapters, calibrate, cells, clipping, engine, initializers, lyapunov, metrics, phase,
                       profile, sharding, theory, training)
from gradscope._checks import NumericalOverflowError
from gradscope.cells import GRU, LSTM, LayerNormLSTM, VanillaRNN, from_equinox, from_flax
from gradscope.compare import Comparison, compare
from gradscope.lags import select_lags
from gradscope.metrics import Thresholds
from gradscope.spectra import Spectra, forward_spectra, jacobian_spectra

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "Comparison",
    "LSTM",
    "LayerNormLSTM",
    "NumericalOverflowError",
    "Spectra",
    "Thresholds",
    "VanillaRNN",
    "adapters",
    "calibrate",
    "cells",
    "clipping",
    "compare",
    "engine",
    "forward_spectra",
    "from_equinox",
    "from_flax",
    "initializers",
    "lyapunov",
    "jacobian_spectra",
    "metrics",
    "phase",
    "profile",
    "select_lags",
    "sharding",
    "theory",
    "training",
]
