"""Host LAPACK threading: gradscope's CPU SVDs and QRs run single-threaded, which is faster.

On CPU, jaxlib runs ``jnp.linalg.svd``, ``qr`` and ``eigh`` through SciPy's LAPACK, an
OpenBLAS build that by default uses every core. Those kernels are dominated by
memory-bound BLAS2 work (the bidiagonalisation of an SVD), where OpenBLAS's threads
cost more than they give: on the 2-core benchmark machine a singular-value call is
1.3-2x faster single-threaded for n = 128..1024 (n = 512: 27 ms -> 17 ms per matrix).
XLA's own matrix products use XLA's thread pool and are not affected.

:func:`lapack_thread_limit` wraps gradscope's compiled analysis calls: while one
runs (until its result is ready), OpenBLAS is held at one thread through
``threadpoolctl``, then restored. On an accelerator, or with a LAPACK that
``threadpoolctl`` does not see, it changes nothing. The environment variable
``GRADSCOPE_LAPACK_THREADS`` overrides the thread count (an int >= 1), or with
``all`` leaves the library's own setting alone (worth measuring on many-core
machines with large n).
"""

from __future__ import annotations

import contextlib
import functools
import os

import jax
from threadpoolctl import ThreadpoolController

THREADS_VARIABLE = "GRADSCOPE_LAPACK_THREADS"


def lapack_threads() -> int | None:
    """Threads for host BLAS/LAPACK during analyses: from ``GRADSCOPE_LAPACK_THREADS``, default 1; None for ``all``."""
    value = os.environ.get(THREADS_VARIABLE, "1").strip().lower()
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be an int >= 1 or 'all', got {value!r}; unset it for the default 1")
    return int(value)


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS whose LAPACK jaxlib calls, so the controller sees it)

    return ThreadpoolController()


def lapack_thread_limit(compiled):
    """Decorate a compiled call: run it with host BLAS/LAPACK limited to :func:`lapack_threads` threads (one
    by default) and wait for its result.

    The wrapped function blocks until its outputs are ready (the limit must hold while
    the computation runs), so it is meant for eager call sites, not inside ``jit``.
    The original stays reachable as ``__wrapped__``.
    """

    @functools.wraps(compiled)
    def run(*args, **kwargs):
        threads = lapack_threads()
        limit = contextlib.nullcontext() if threads is None else _controller().limit(limits=threads, user_api="blas")
        with limit:
            return jax.block_until_ready(compiled(*args, **kwargs))

    return run
