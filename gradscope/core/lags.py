"""Choosing which lags k (products dh_T/dh_{T-k}) an analysis keeps."""

from __future__ import annotations

import numpy as np

__all__ = ["select_lags"]


def select_lags(lags, num_steps: int, num_log_lags: int = 32) -> tuple[int, ...]:
    """Resolve a lag request into a sorted tuple of distinct ints in ``[0, num_steps]``.

    Args:
        lags: ``"all"`` (every lag 1..T), ``"log"`` (about ``num_log_lags``
            log-spaced lags from 1 to T, always including T), or a sequence of ints.
        num_steps: the horizon T.
        num_log_lags: how many lags ``"log"`` aims for.

    Raises:
        ValueError: an unknown mode, an empty list, or a lag outside ``[0, T]``.
    """
    if isinstance(lags, str):
        if lags == "all":
            return tuple(range(1, num_steps + 1))
        if lags == "log":
            return _log_spaced(num_steps, num_log_lags)
        raise ValueError(f"lags must be 'all', 'log' or a sequence of ints, got {lags!r}")
    values = np.asarray(lags).reshape(-1)
    if values.size == 0:
        raise ValueError("expected at least one lag, got an empty sequence")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise ValueError(f"lags must be whole numbers, got {values.tolist()}")
        values = values.astype(int)
    bad = values[(values < 0) | (values > num_steps)]
    if bad.size:
        raise ValueError(
            f"lags must lie in [0, T] = [0, {num_steps}] for xs with T = {num_steps} steps, "
            f"got {sorted(set(bad.tolist()))}; lengthen xs or drop those lags"
        )
    return tuple(sorted(set(int(v) for v in values)))


def _log_spaced(num_steps: int, count: int) -> tuple[int, ...]:
    if count < 1:
        raise ValueError(f"num_log_lags must be >= 1, got {count}")
    points = np.geomspace(1, num_steps, num=max(count, 1))
    return tuple(sorted(set(np.rint(points).astype(int).tolist()) | {num_steps}))
