"""gradscope: how the gradient travels back through time in a recurrent network.

The flow, one folder a stage:

* :mod:`gradscope.cells`: what is analysed (classic cells, adapters for other libraries);
  :mod:`gradscope.initializers` draws their weights;
* :mod:`gradscope.core`: the engine (unroll, reverse sweep in log domain, CPU pipeline);
* :mod:`gradscope.analysis`: spectra, profiles, Lyapunov spectra, metrics, comparisons;
* :mod:`gradscope.theory` and :mod:`gradscope.training`: what theory predicts, what training shows;
* outputs: :mod:`gradscope.plotting` (figures), :mod:`gradscope.display` (Jupyter, the
  HTML report) and :mod:`gradscope.cli` (the ``gradscope`` command).

This namespace only re-exports, and lazily: ``import gradscope`` loads nothing beyond
what a name you use needs (pandas, SciPy and matplotlib load with the parts that draw
or tabulate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradscope._lazy import lazy_namespace

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_EXPORTS: dict[str, tuple[str, str | None]] = {
    # stages of the flow (subpackages and the modules users reach as gradscope.X)
    "analysis": ("gradscope.analysis", None),
    "cells": ("gradscope.cells", None),
    "cli": ("gradscope.cli", None),
    "core": ("gradscope.core", None),
    "display": ("gradscope.display", None),
    "initializers": ("gradscope.initializers", None),
    "plotting": ("gradscope.plotting", None),
    "theory": ("gradscope.theory", None),
    "training": ("gradscope.training", None),
    "adapters": ("gradscope.cells.adapters", None),
    "calibrate": ("gradscope.theory.calibrate", None),
    "clipping": ("gradscope.training.clipping", None),
    "comparison": ("gradscope.analysis.comparison", None),
    "engine": ("gradscope.core.engine", None),
    "diagonal": ("gradscope.core.diagonal", None),
    "lags": ("gradscope.core.lags", None),
    "lineup": ("gradscope.analysis.lineup", None),
    "lyapunov": ("gradscope.analysis.lyapunov", None),
    "memory": ("gradscope.theory.memory", None),
    "monitor": ("gradscope.training.monitor", None),
    "metrics": ("gradscope.analysis.metrics", None),
    "modern": ("gradscope.cells.modern", None),
    "penalties": ("gradscope.training.penalties", None),
    "phase": ("gradscope.theory.phase", None),
    "pipeline": ("gradscope.core.pipeline", None),
    "profile": ("gradscope.analysis.profile", None),
    "report": ("gradscope.display.report", None),
    "sensitivity": ("gradscope.analysis.sensitivity", None),
    "sharding": ("gradscope.analysis.sharding", None),
    "spectra": ("gradscope.analysis.spectra", None),
    # the names most analyses start from
    "CellComparison": ("gradscope.analysis.lineup", "CellComparison"),
    "Comparison": ("gradscope.analysis.comparison", "Comparison"),
    "Contender": ("gradscope.analysis.lineup", "Contender"),
    "DiagonalSSM": ("gradscope.cells.modern", "DiagonalSSM"),
    "GRU": ("gradscope.cells.classic", "GRU"),
    "LRU": ("gradscope.cells.modern", "LRU"),
    "LSTM": ("gradscope.cells.classic", "LSTM"),
    "LayerNormLSTM": ("gradscope.cells.classic", "LayerNormLSTM"),
    "MinGRU": ("gradscope.cells.modern", "MinGRU"),
    "MinLSTM": ("gradscope.cells.modern", "MinLSTM"),
    "Monitor": ("gradscope.training.monitor", "Monitor"),
    "NumericalOverflowError": ("gradscope.core._checks", "NumericalOverflowError"),
    "SelectiveSSM": ("gradscope.cells.modern", "SelectiveSSM"),
    "Sensitivity": ("gradscope.analysis.sensitivity", "Sensitivity"),
    "Spectra": ("gradscope.analysis.spectra", "Spectra"),
    "Thresholds": ("gradscope.analysis.metrics", "Thresholds"),
    "VanillaRNN": ("gradscope.cells.classic", "VanillaRNN"),
    "compare": ("gradscope.analysis.comparison", "compare"),
    "diagnose": ("gradscope.analysis.diagnose", "diagnose"),
    "Diagnosis": ("gradscope.analysis.diagnose", "Diagnosis"),
    "enable_compilation_cache": ("gradscope.core.cache", "enable_compilation_cache"),
    "explore": ("gradscope.display.explore", "explore"),
    "compare_cells": ("gradscope.analysis.lineup", "compare_cells"),
    "default_lineup": ("gradscope.analysis.lineup", "default_lineup"),
    "forward_spectra": ("gradscope.analysis.spectra", "forward_spectra"),
    "from_equinox": ("gradscope.cells.adapters.equinox", "from_equinox"),
    "from_flax": ("gradscope.cells.adapters.flax", "from_flax"),
    "from_keras": ("gradscope.cells.adapters.keras", "from_keras"),
    "from_torch": ("gradscope.cells.adapters.torch", "from_torch"),
    "jacobian_spectra": ("gradscope.analysis.spectra", "jacobian_spectra"),
    "memory_sensitivity": ("gradscope.analysis.sensitivity", "memory_sensitivity"),
    "select_lags": ("gradscope.core.lags", "select_lags"),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:  # what static tools see; at run time the names above load on use
    from gradscope import analysis, cells, cli, core, display, initializers, plotting, theory, training
    from gradscope.analysis import comparison, lineup, lyapunov, metrics, profile, sensitivity, sharding, spectra
    from gradscope.analysis.comparison import Comparison, compare
    from gradscope.analysis.diagnose import Diagnosis, diagnose
    from gradscope.analysis.lineup import CellComparison, Contender, compare_cells, default_lineup
    from gradscope.analysis.sensitivity import Sensitivity, memory_sensitivity
    from gradscope.analysis.metrics import Thresholds
    from gradscope.analysis.spectra import Spectra, forward_spectra, jacobian_spectra
    from gradscope.cells import adapters
    from gradscope.cells.adapters import from_equinox, from_flax, from_keras, from_torch
    from gradscope.cells.classic import GRU, LSTM, LayerNormLSTM, VanillaRNN
    from gradscope.cells import modern
    from gradscope.cells.modern import LRU, DiagonalSSM, MinGRU, MinLSTM, SelectiveSSM
    from gradscope.core import diagonal, engine, lags, pipeline
    from gradscope.core._checks import NumericalOverflowError
    from gradscope.core.cache import enable_compilation_cache
    from gradscope.display import report
    from gradscope.display.explore import explore
    from gradscope.theory import calibrate, memory, phase
    from gradscope.training import clipping, monitor, penalties
    from gradscope.training.monitor import Monitor
