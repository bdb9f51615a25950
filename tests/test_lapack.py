"""Host LAPACK threading: the limit holds during a wrapped call, is restored after, and is configurable."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from threadpoolctl import threadpool_info

from gradscope.core import _lapack


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_limit_holds_during_the_call_and_is_restored(monkeypatch):
    monkeypatch.delenv(_lapack.THREADS_VARIABLE, raising=False)
    _lapack._controller()  # loads SciPy's OpenBLAS so that threadpoolctl lists it
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library visible to threadpoolctl")
    seen = _lapack.lapack_thread_limit(lambda: (_blas_threads(), jnp.zeros(()))[0])()
    assert seen == [1] * len(before)
    assert _blas_threads() == before


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(_lapack.THREADS_VARIABLE, "3")
    assert _lapack.lapack_threads() == 3
    monkeypatch.setenv(_lapack.THREADS_VARIABLE, "all")
    assert _lapack.lapack_threads() is None
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(_lapack.THREADS_VARIABLE, bad)
        with pytest.raises(ValueError, match="GRADSCOPE_LAPACK_THREADS"):
            _lapack.lapack_threads()
