"""The engine: unroll a step function and sweep its Jacobian products in log domain.

* :mod:`gradscope.core.engine`: the traceable unroll and reverse/forward sweep.
* :mod:`gradscope.core.pipeline`: the CPU pipeline (compiled chunks, SVDs on host threads).
* :mod:`gradscope.core.diagonal`: the fast path for diagonal step Jacobians (no SVDs).
* :mod:`gradscope.core.lags`: which lags an analysis keeps.

Everything here is pure JAX up to the raw sweep output; the analyses in
:mod:`gradscope.analysis` wrap it in documented result containers.
"""
