"""The numbers of docs/concepts.md's "Below the SVD floor" section.

Run from the repository root (about a minute on 2 cores):

    python docs/scripts/make_ritz_numbers.py

For the tanh RNN of the benchmarks (n = 256, T = 200, recurrent weights N(0, 1/n)) it
records how many singular values the float32 products resolve at a few lags, and for a
set of cells how far the warm-started Rayleigh-Ritz values (``method="ritz"``) are from
LAPACK's (``method="svd"``) over every resolved value. Seeds are fixed, so a rerun
stores the same text; ``quick_numbers()`` recomputes the rank counts in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gradscope  # noqa: E402
from docnumbers import Numbers, publish  # noqa: E402
from problems import Problem, arrays  # noqa: E402

STORE = "ritz"
RANK_LAGS = (10, 50, 200)


def benchmark_rnn():
    """The benchmarks' tanh RNN, n = 256, T = 200: ``(cell, params, xs)``."""
    data = arrays(Problem("vanilla", 256, 200))
    cell = gradscope.VanillaRNN(256)
    params = gradscope.cells.VanillaParams(*(jax.numpy.asarray(data[k])
                                            for k in ("recurrent_kernel", "input_kernel", "bias")))
    return cell, params, jax.numpy.asarray(data["xs"])


def resolved_counts() -> dict[str, str]:
    """How many singular values the float32 products resolve at :data:`RANK_LAGS`."""
    cell, params, xs = benchmark_rnn()
    spectra = gradscope.jacobian_spectra(cell, params, xs, method="svd")
    counts = np.asarray(spectra.resolved).sum(axis=-1)
    return {f"rank_{lag}": str(int(counts[lag - 1])) for lag in RANK_LAGS}


def _cases():
    key, xs = jax.random.key(0), jax.random.normal(jax.random.key(1), (200, 1))
    for gain in (0.5, 1.0, 3.0):
        cell = gradscope.VanillaRNN(256)
        yield cell, cell.init(key, recurrent_init=("normal", {"stddev": gain / 16})), xs
    cell = gradscope.VanillaRNN(256)
    yield cell, cell.init(key, recurrent_init="orthogonal"), xs
    for cell in (gradscope.GRU(192), gradscope.LSTM(128, forget_bias=1.0)):
        yield cell, cell.init(key), xs


def largest_difference() -> float:
    """The largest |log sigma| difference between the two methods over every resolved value of every case."""
    worst = 0.0
    for cell, params, xs in _cases():
        svd, ritz = (gradscope.jacobian_spectra(cell, params, xs, method=m, pipelined=True) for m in ("svd", "ritz"))
        a, b = np.asarray(svd.log_singular_values), np.asarray(ritz.log_singular_values)
        resolved = np.asarray(svd.resolved) | np.asarray(ritz.resolved)
        worst = max(worst, float(np.max(np.abs(a - b)[resolved])))
    return worst


def _bound(value: float) -> str:
    """``value`` rounded up to one significant digit, as text (``3e-4``)."""
    exponent = int(np.floor(np.log10(value)))
    return f"{int(np.ceil(value / 10.0 ** exponent))}e{exponent}"


def quick_numbers():
    """The rank counts (seconds); the test compares them with the store."""
    return STORE, resolved_counts()


def main() -> None:
    numbers = Numbers(STORE)
    for name, text in resolved_counts().items():
        numbers[name] = text
    numbers["max_difference"] = _bound(largest_difference())
    numbers["cases"] = str(len(list(_cases())))
    publish(numbers, show=True)


if __name__ == "__main__":
    main()
