"""Analyses built on the engine, each returning a documented result container.

* :mod:`gradscope.analysis.spectra`: all-lag singular values (:func:`jacobian_spectra`).
* :mod:`gradscope.analysis.profile`: matrix-free top-k, norms-only and profile modes.
* :mod:`gradscope.analysis.lyapunov`: Lyapunov spectra by the QR method.
* :mod:`gradscope.analysis.metrics`: rates, horizons and verdicts from spectra.
* :mod:`gradscope.analysis.comparison`: initializers x seeds for one cell (:func:`compare`).
* :mod:`gradscope.analysis.sharding`: grids of configurations over devices.
* :mod:`gradscope.analysis.sensitivity`: the curse of memory, ``||dh_T/dtheta||^2`` by lag.
* :mod:`gradscope.analysis.lineup`: classic and modern cells side by side (:func:`compare_cells`).
"""
