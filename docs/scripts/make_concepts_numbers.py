"""The numbers of docs/concepts.md: log-domain accuracy and the resolution floor.

Run from the repository root (a few seconds):

    python docs/scripts/make_concepts_numbers.py

It stores the values in ``docs/data/concepts.json`` (through ``docnumbers.Numbers``) and
rewrites the page's marked spans. Every value is measured with gradscope or read from
the float types: the log-domain example runs a linear orthogonal cell, whose exact
answer (every singular value of the product is ``gain^k``) is known.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gradscope

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docnumbers import Numbers, publish  # noqa: E402

GAIN, STEPS, WIDTH = 1.05, 3000, 16
FLOOR_WIDTH = 64


def scientific(value: float, digits: int = 1) -> str:
    """``7.6×10⁻⁶``: the page's notation for small numbers."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}×10" + _superscript(int(exponent))


def power_above(value: float) -> str:
    """``10⁻⁴`` for 1.9e-5: the smallest power of ten above ``value``. The log-domain error's
    leading digit depends on the CPU, for which XLA compiles its own code (under 1.5e-5 on an
    Intel Xeon, 1.9e-5 on an AMD EPYC without AVX-512); its bound does not."""
    return "10" + _superscript(math.floor(math.log10(value)) + 1)


def _superscript(exponent: int) -> str:
    return str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def log_domain() -> dict[str, str]:
    """A float32 linear orthogonal cell over ``STEPS`` steps against the exact ``STEPS * log(GAIN)``."""
    cell = gradscope.VanillaRNN(WIDTH, activation="linear")
    params = cell.init(jax.random.key(0), recurrent_init=("orthogonal", {"gain": GAIN}))
    spectra = gradscope.jacobian_spectra(cell, params, jnp.zeros((STEPS, 1)), lags=(STEPS,))
    exact = STEPS * math.log(GAIN)
    error = float(np.max(np.abs(np.asarray(spectra.log_singular_values, np.float64) - exact))) / exact
    return {"float32_log_range": f"{math.log(np.finfo(np.float32).max):.1f}",
            "log_domain_exponent": f"{exact:.1f}", "log_domain_error": power_above(error)}


def resolution() -> dict[str, str]:
    """The relative resolution floor n * eps for a product of width ``FLOOR_WIDTH``, in float32 and float64."""
    return {f"floor_{name}": scientific(FLOOR_WIDTH * float(np.finfo(dtype).eps))
            for name, dtype in (("float32", np.float32), ("float64", np.float64))}


def quick_numbers() -> tuple[str, dict[str, str]]:
    """Every value of the page (seconds)."""
    return "concepts", {**log_domain(), **resolution()}


def main() -> None:
    """Store the numbers and rewrite the page."""
    numbers = Numbers("concepts")
    numbers.update(quick_numbers()[1])
    publish(numbers, show=True)


if __name__ == "__main__":
    main()
