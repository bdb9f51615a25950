"""Theory against measurement: write the figures and numbers of docs/theory.md.

Run from the repository root:

    python docs/scripts/make_theory_figures.py [mean_field lyapunov glorot_he calibration finite_width phase]

(all sections by default). It prints every number quoted on the page and writes ``docs/figures/theory_*.png``.
It needs a few minutes of CPU time (the phase diagrams are 117 grid points x 2 seeds
at n = 128 and T = 100). Seeds are fixed, so a rerun prints the same numbers.

Every number comes from gradscope: measured rates from ``gradscope.phase`` and
``gradscope.calibrate``, exponents from ``gradscope.lyapunov``, predictions from
``gradscope.theory``; figures from ``gradscope.plotting.theory``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import gradscope  # noqa: E402
from gradscope import calibrate, lyapunov, phase, theory  # noqa: E402
from gradscope.plotting import save_figure, use_style  # noqa: E402
from gradscope.plotting import theory as theory_plots  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "figures"
WIDTH = 128
STEPS = 100
SIGMA_W = np.round(np.linspace(0.5, 2.9, 13), 3)
SIGMA_B = np.round(np.linspace(0.0, 1.6, 9), 3)

pd.set_option("display.width", 160)
pd.set_option("display.precision", 4)


def save(fig, name: str) -> None:
    """Write one figure as PNG under docs/figures."""
    for path in save_figure(fig, FIGURES / name, formats=("png",)):
        print(f"wrote {path.relative_to(FIGURES.parents[1])}")


def mean_field_table() -> None:
    """The mean-field numbers quoted on the page."""
    print("\n## mean field")
    for activation, sigma_w, sigma_b in [("tanh", 1.0, 0.0), ("tanh", 1.5, 0.0), ("tanh", 1.0, 0.3),
                                         ("relu", math.sqrt(2.0), 0.0), ("relu", 1.0, 0.0)]:
        field = theory.mean_field(activation, sigma_w, sigma_b)
        print(f"{activation:5s} sigma_w={sigma_w:.4f} sigma_b={sigma_b:.1f}: q*={float(field.q_star):.4f} "
              f"chi1={float(field.chi1):.4f} rms_rate={float(field.rms_rate):+.4f}")
    line = theory.critical_sigma_w("tanh", [0.0, 0.3, 1.0])
    print("tanh critical sigma_w at sigma_b = 0, 0.3, 1.0:", np.round(np.asarray(line), 4))
    print("tanh critical sigma_w with unit input (sigma_x = 1):", round(float(theory.critical_sigma_w("tanh", 0.0, 1.0)), 4))
    print("sigmoid critical sigma_w (no bias, no input):", round(float(theory.critical_sigma_w("sigmoid")), 3))


def phase_figures() -> None:
    """Tied and untied tanh phase diagrams with the critical line, and measured-vs-theory rates."""
    cell = gradscope.VanillaRNN(WIDTH, activation="tanh")
    for untied, name in ((False, "tied"), (True, "untied")):
        diagram = phase.phase_diagram(cell, SIGMA_W, SIGMA_B, 0.0, seeds=2, num_steps=STEPS, num_lags=10,
                                      recurrent="normal" if untied else "orthogonal", untied=untied, chunk_size=32)
        save(theory_plots.plot_phase_diagram(diagram), f"theory_phase_tanh_{name}")
        error = np.abs(diagram.mean() - diagram.theory_rms_rate)
        print(f"\n## phase diagram, tanh, {name}: |measured - theory| median {np.median(error):.4f}, "
              f"90th percentile {np.percentile(error, 90):.4f}, max {error.max():.4f}")
        if not untied:
            rows = phase.phase_diagram(cell, SIGMA_W, [0.0, 0.5, 1.0], 0.0, seeds=2, num_steps=STEPS, num_lags=10)
            save(theory_plots.plot_rate_vs_theory(rows), "theory_rate_vs_mean_field")


def glorot_vs_he() -> None:
    """Deep feed-forward stacks (untied, depth 100): Glorot (sigma_w = 1) against He (sigma_w = sqrt 2)."""
    print("\n## Glorot vs He in deep stacks (untied, n = 128, depth 100, 2 seeds)")
    for activation in ("tanh", "relu"):
        diagram = phase.phase_diagram(gradscope.VanillaRNN(WIDTH, activation=activation), [1.0, math.sqrt(2.0)],
                                      0.0, 0.0, seeds=2, num_steps=STEPS, num_lags=10, recurrent="normal",
                                      untied=True)
        for i, label in enumerate(("glorot (sigma_w = 1)", "he (sigma_w = sqrt 2)")):
            measured, predicted = diagram.mean()[0, 0, i], diagram.theory_rms_rate[0, 0, i]
            print(f"{activation:5s} {label:22s} measured rms_rate {measured:+.4f}  mean field {predicted:+.4f}  "
                  f"gradient after 100 layers x{math.exp(100 * measured):.3g}")


def lyapunov_figure() -> None:
    """QR exponents of fresh Gaussian matrices converging to Newman's formula."""
    n, steps = 32, 3000
    kernels = np.random.default_rng(0).standard_normal((steps, n, n)) / math.sqrt(n)
    result = lyapunov.lyapunov_spectrum(lambda w, h, x: h @ w, jnp.asarray(kernels, jnp.float32),
                                        jnp.zeros((steps, 1)), jnp.zeros(n), untied=True)
    reference = theory.ginibre_lyapunov(n)
    print("\n## Lyapunov spectrum of Ginibre products (n = 32, 3000 steps)")
    print("largest exponents  measured", np.round(np.asarray(result.exponents[:3]), 4), "Newman", np.round(reference[:3], 4))
    print("smallest exponents measured", np.round(np.asarray(result.exponents[-3:]), 4), "Newman", np.round(reference[-3:], 4))
    save(theory_plots.plot_lyapunov_convergence(result, reference), "theory_lyapunov_newman")


def calibration_table() -> None:
    """Critical orthogonal gains of vanilla, LSTM and GRU cells (Gaussian unit inputs)."""
    print("\n## calibrated critical gains (orthogonal, hidden 64, T = 200, 4 seeds, unit Gaussian inputs)")
    cells = {"tanh": gradscope.VanillaRNN(64, input_size=64, activation="tanh"),
             "relu": gradscope.VanillaRNN(64, input_size=64, activation="relu"),
             "lstm": gradscope.LSTM(64, input_size=64),
             "lstm (forget bias 1)": gradscope.LSTM(64, input_size=64, forget_bias=1.0),
             "gru": gradscope.GRU(64, input_size=64)}
    for label, cell in cells.items():
        for which in ("rms_rate", "rate"):
            result = calibrate.calibrate(cell, "orthogonal", which=which, seeds=4, num_steps=200)
            print(f"{label:22s} {which:8s} gain {result.gain:.3f}  (+-1 s.e. {result.gain_low:.3f}-"
                  f"{result.gain_high:.3f}, slope {result.slope:.3f})")
            if label == "lstm" and which == "rms_rate":
                save(theory_plots.plot_calibration(result), "theory_calibration_lstm")
    print("mean field, tanh with unit input:", round(float(theory.critical_sigma_w("tanh", 0.0, 1.0)), 4))


def finite_width() -> None:
    """How the calibrated tanh gain (unit inputs) approaches the mean-field line as n grows."""
    print("\n## calibrated tanh gain with unit inputs against width (2 seeds)")
    for n in (64, 128, 256):
        for steps in (60, 200):
            cell = gradscope.VanillaRNN(n, input_size=n, activation="tanh")
            result = calibrate.calibrate(cell, seeds=2, num_steps=steps, num_lags=8, bracket=(1.5, 2.5))
            print(f"n = {n:3d}, T = {steps:3d}: gain {result.gain:.3f} (+-1 s.e. {result.gain_low:.3f}-"
                  f"{result.gain_high:.3f})")


SECTIONS = {"mean_field": mean_field_table, "lyapunov": lyapunov_figure, "glorot_he": glorot_vs_he,
            "calibration": calibration_table, "finite_width": finite_width, "phase": phase_figures}


def main(names) -> None:
    """Print the numbers of docs/theory.md and write its figures (all sections, or those named)."""
    use_style()  # the documentation's figures use the gradscope look
    for name in names or SECTIONS:
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
