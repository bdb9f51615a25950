"""Theory against measurement: write the figures and numbers of docs/theory.md.

Run from the repository root:

    python docs/scripts/make_theory_figures.py [mean_field quadrature gaussian lyapunov glorot_he calibration
                                                finite_width phase]

(all sections by default). Each section records the numbers the page shows in
``docs/data/theory.json`` (through ``docnumbers.Numbers``), then the page's marked
spans are rewritten from the store; the figures go to ``docs/figures/theory_*.png``.
All sections together take several minutes of CPU time (the phase diagrams are
117 grid points x 2 seeds at n = 128 and T = 100; the Gaussian products go up to
n = 512). Seeds are fixed, so a rerun stores the same numbers.

Every number comes from gradscope: measured rates from ``gradscope.phase`` and
``gradscope.calibrate``, spectra from ``gradscope.jacobian_spectra``, exponents from
``gradscope.lyapunov``, predictions from ``gradscope.theory``; figures from
``gradscope.plotting.theory``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradscope  # noqa: E402
from gradscope import calibrate, lyapunov, phase, theory  # noqa: E402
from gradscope.plotting import save_figure, use_style  # noqa: E402
from gradscope.plotting import theory as theory_plots  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docnumbers import Numbers, publish  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "figures"
NUMBERS = Numbers("theory")
WIDTH = 128
STEPS = 100
SIGMA_W = np.round(np.linspace(0.5, 2.9, 13), 3)
SIGMA_B = np.round(np.linspace(0.0, 1.6, 9), 3)
GAUSSIAN_SIZES = {64: 16, 128: 8, 256: 4, 512: 2}   # matrix size n: number of draws
GAUSSIAN_LAGS = (1, 5, 20, 50, 100, 200)


def save(fig, name: str) -> None:
    """Write one figure as PNG under docs/figures."""
    for path in save_figure(fig, FIGURES / name, formats=("png",)):
        print(f"wrote {path.relative_to(FIGURES.parents[1])}")


def signed(value: float, digits: int = 4) -> str:
    """A signed number with a typographic minus, as the page prints it (``+0.0652``, ``−0.1782``)."""
    text = f"{value:+.{digits}f}"
    return "0" if float(text) == 0 else text.replace("-", "−")


def scientific(value: float) -> str:
    """Two significant digits, as ``8·10⁻¹⁶`` outside [0.01, 1000]."""
    if 0.01 <= abs(value) < 1000:
        return f"{value:.2g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}·10" + str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (the text a block span shows)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def text_block(text: str) -> str:
    """A fenced ``text`` block (the output a page shows under a code example)."""
    return f"```text\n{text}\n```"


# ---------------------------------------------------------------------------------------------
# Mean field and quadrature
# ---------------------------------------------------------------------------------------------

def mean_field_numbers() -> dict[str, str]:
    """The mean-field values of the page: the example, the table, the critical lines (seconds)."""
    values = {}
    field = theory.mean_field("tanh", sigma_w=1.5, sigma_b=0.0, sigma_x=0.0)
    line = np.asarray(theory.critical_sigma_w("tanh", sigma_b=[0.0, 0.3, 1.0]))
    values["example_output"] = text_block(
        f"q_star {float(field.q_star):.4f}, chi1 {float(field.chi1):.4f}, rms_rate {float(field.rms_rate):+.4f}\n"
        f"critical sigma_w at sigma_b = 0, 0.3, 1: {', '.join(f'{v:.4f}' for v in line)}")
    rows = []
    for activation, label, sigma_w, sigma_b in [("tanh", "1.0", 1.0, 0.0), ("tanh", "1.5", 1.5, 0.0),
                                                ("tanh", "1.0", 1.0, 0.3), ("relu", "$\\sqrt2$", math.sqrt(2), 0.0),
                                                ("relu", "1.0", 1.0, 0.0)]:
        f = theory.mean_field(activation, sigma_w, sigma_b)
        q_star = f"{float(f.q_star):.4f}"
        rows.append([activation, label, f"{sigma_b:g}", "0" if float(q_star) == 0 else q_star,
                     f"{float(f.chi1):.4f}", signed(float(f.rms_rate))])
    values["table"] = markdown_table(["activation", "$\\sigma_w$", "$\\sigma_b$", "$q^*$", "$\\chi_1$", "rms rate"],
                                     rows)
    for name, v in zip(("critical_b03", "critical_b1"), line[1:]):
        values[name] = f"{v:.4f}"
    values["sigmoid_critical"] = f"{float(theory.critical_sigma_w('sigmoid')):.1f}"
    return values


def narrow_input_numbers() -> dict[str, str]:
    """Wide against one-input mean field for tanh with unit inputs (the critical line's bisection takes a while)."""
    wide = float(theory.critical_sigma_w("tanh", 0.0, 1.0, input_size=math.inf))
    narrow = float(theory.critical_sigma_w("tanh", 0.0, 1.0, input_size=1))
    g1_wide = float(theory.mean_field("tanh", 1.0, 0.0, 1.0, input_size=math.inf).rms_rate)
    g1_narrow = float(theory.mean_field("tanh", 1.0, 0.0, 1.0, input_size=1).rms_rate)
    return {"critical_wide_input": f"{wide:.4f}", "critical_one_input": f"{narrow:.4f}",
            "g1_wide": signed(g1_wide), "g1_narrow": signed(g1_narrow, 3)}


def quadrature_numbers() -> dict[str, str]:
    """How far Gauss-Hermite is off at large variance and through a kink (seconds)."""
    tanh = theory.activation_spec("tanh")
    exact = float(theory.gaussian_mean(tanh.squared_derivative, 20.0))
    hermite = float(theory.meanfield._hermite_mean(tanh.squared_derivative, jnp.asarray(20.0)))
    relu = theory.activation_spec("relu")
    kink = float(theory.meanfield._hermite_mean(relu.squared_derivative, jnp.asarray(1.0)))
    return {"hermite_tanh_q20": scientific(abs(hermite - exact)),
            "hermite_relu_kink": f"{abs(kink - 0.5):.2f}"}


def mean_field_table() -> None:
    """The mean-field numbers of the page."""
    NUMBERS.update(mean_field_numbers())
    NUMBERS.update(narrow_input_numbers())
    NUMBERS.update(quadrature_numbers())


# ---------------------------------------------------------------------------------------------
# Products of Gaussian matrices: which norm grows how
# ---------------------------------------------------------------------------------------------

def linear_gaussian_metrics(n: int, seed: int, untied: bool):
    """Lag metrics of P_k for a linear cell with N(0, 1/n) recurrent entries: W^k (tied) or k fresh W."""
    cell = gradscope.VanillaRNN(n, activation="linear")
    steps = max(GAUSSIAN_LAGS)
    keys = jax.random.split(jax.random.key(seed), steps)
    init = lambda k: cell.init(k, recurrent_init="lecun_normal")  # noqa: E731
    params = jax.vmap(init)(keys) if untied else init(keys[0])
    spectra = gradscope.jacobian_spectra(cell, params, jnp.zeros((steps, 1)), untied=untied, lags=GAUSSIAN_LAGS)
    radius = None if untied else float(np.max(np.abs(np.linalg.eigvals(np.asarray(params.recurrent_kernel)))))
    return spectra.lag_metrics(), radius


def gaussian_products() -> None:
    """log sigma_max - log RMS of Gaussian products against the Fuss-Catalan edge; ||W^k||_F^2/n of one W."""
    print("\n## products of Gaussian matrices")
    gaps, frobenius, radii = {}, {}, {}
    for n, draws in GAUSSIAN_SIZES.items():
        untied = [linear_gaussian_metrics(n, seed, True)[0] for seed in range(draws)]
        tied = [linear_gaussian_metrics(n, seed, False) for seed in range(draws)]
        gap = np.array([np.asarray(m.log_sigma_max - m.log_rms) for m in untied])
        gaps[n] = (gap.mean(0), gap.std(0, ddof=1) / math.sqrt(draws))
        frobenius[n] = np.mean([2 * np.asarray(m.log_rms) for m, _ in tied], axis=0)
        radii[n] = np.mean([r for _, r in tied])
        print(f"n = {n}: gap {np.round(gaps[n][0], 3)}, 2 log RMS of W^k {np.round(frobenius[n], 3)}, "
              f"spectral radius {radii[n]:.4f}")
    limit = theory.gaussian_product_gap(GAUSSIAN_LAGS)
    rows = [[str(k), f"{limit[i]:.3f}"] + [f"{gaps[n][0][i]:.2f} ± {gaps[n][1][i]:.2f} "
                                            f"({float(theory.gaussian_product_gap(k, n)):.2f})" for n in GAUSSIAN_SIZES]
            for i, k in enumerate(GAUSSIAN_LAGS)]
    NUMBERS["gap_table"] = markdown_table(["$k$", "$\\tfrac12\\log E_k$"] + [f"$n = {n}$" for n in GAUSSIAN_SIZES],
                                          rows)
    rows = [[str(k)] + [f"{frobenius[n][i]:+.2f}".replace("-", "−") for n in GAUSSIAN_SIZES]
            for i, k in enumerate(GAUSSIAN_LAGS)]
    rows.append(["$\\rho(W)$"] + [f"{radii[n]:.3f}" for n in GAUSSIAN_SIZES])
    NUMBERS["power_table"] = markdown_table(["$k$"] + [f"$n = {n}$" for n in GAUSSIAN_SIZES], rows)
    NUMBERS["gaussian_draws"] = ", ".join(f"{d}" for d in GAUSSIAN_SIZES.values())
    deviation = max(np.max(np.abs(gaps[n][0] - theory.gaussian_product_gap(GAUSSIAN_LAGS, n))) for n in GAUSSIAN_SIZES)
    NUMBERS["gap_max_deviation"] = f"{deviation:.2f}"
    NUMBERS.update(gap_slope_numbers())


def gap_slope_numbers() -> dict[str, str]:
    """The upward bias of a sigma_max rate fitted over lags 1..100: the slope of the gap there (instant)."""
    lags = np.arange(1, 101)
    values = {}
    for n in (64, 256):
        values[f"gap_slope_{n}"] = f"{np.polyfit(lags, theory.gaussian_product_gap(lags, n), 1)[0]:.3f}"
    values["gap_k50"] = f"{float(theory.gaussian_product_gap(50)):.2f}"
    values["old_gap_k50"] = f"{math.log(math.e * 51):.2f}"
    return values


# ---------------------------------------------------------------------------------------------
# Phase diagrams, deep stacks, Lyapunov spectra
# ---------------------------------------------------------------------------------------------

def deviation_numbers(diagram, prefix: str) -> None:
    """Median, 90th percentile and max of |measured - mean field| over a diagram's grid."""
    error = np.abs(diagram.mean() - diagram.theory_rms_rate)
    print(f"{prefix}: |measured - theory| median {np.median(error):.4f}, 90th {np.percentile(error, 90):.4f}, "
          f"max {error.max():.4f}")
    NUMBERS[f"{prefix}_median"] = f"{np.median(error):.3g}"
    NUMBERS[f"{prefix}_p90"] = f"{np.percentile(error, 90):.2g}"
    NUMBERS[f"{prefix}_max"] = f"{error.max():.2g}"


def phase_figures() -> None:
    """Tied and untied tanh phase diagrams with the critical line, and measured-vs-theory rates."""
    cell = gradscope.VanillaRNN(WIDTH, activation="tanh")
    NUMBERS["grid_points"] = str(SIGMA_W.size * SIGMA_B.size)
    for untied, name in ((False, "tied"), (True, "untied")):
        diagram = phase.phase_diagram(cell, SIGMA_W, SIGMA_B, 0.0, seeds=2, num_steps=STEPS, num_lags=10,
                                      recurrent="normal" if untied else "orthogonal", untied=untied, chunk_size=32)
        save(theory_plots.plot_phase_diagram(diagram), f"theory_phase_tanh_{name}")
        deviation_numbers(diagram, name)
        if not untied:
            rows = phase.phase_diagram(cell, SIGMA_W, [0.0, 0.5, 1.0], 0.0, seeds=2, num_steps=STEPS, num_lags=10)
            save(theory_plots.plot_rate_vs_theory(rows), "theory_rate_vs_mean_field")
    relu_seed_spread()


def relu_seed_spread() -> None:
    """The seed-to-seed spread of a tied relu cell's rate at He's gain, at two widths."""
    spreads = []
    for n in (128, 256):
        d = phase.phase_diagram(gradscope.VanillaRNN(n, activation="relu"), [math.sqrt(2.0)], 0.0, 0.0, seeds=8,
                                num_steps=STEPS, num_lags=10)
        spreads.append(float(np.std(d.rms_rate[0, 0, 0], ddof=1)))
        print(f"relu n = {n}: rms_rate seed std {spreads[-1]:.4f}")
    NUMBERS["relu_spread_128"], NUMBERS["relu_spread_256"] = (f"{s:.3f}" for s in spreads)


def glorot_vs_he() -> None:
    """Deep feed-forward stacks (untied, depth 100): Glorot (sigma_w = 1) against He (sigma_w = sqrt 2)."""
    rows = []
    for activation in ("tanh", "relu"):
        diagram = phase.phase_diagram(gradscope.VanillaRNN(WIDTH, activation=activation), [1.0, math.sqrt(2.0)],
                                      0.0, 0.0, seeds=2, num_steps=STEPS, num_lags=10, recurrent="normal",
                                      untied=True)
        for i, label in enumerate(("Glorot", "He")):
            measured, predicted = diagram.mean()[0, 0, i], diagram.theory_rms_rate[0, 0, i]
            factor = math.exp(STEPS * measured)
            rows.append([activation, label, signed(measured), signed(predicted), f"×{scientific(factor)}"])
            print(f"{activation} {label}: measured {measured:+.4f}, mean field {predicted:+.4f}, x{factor:.3g}")
    NUMBERS["stacks_table"] = markdown_table(["stack", "init", "measured rms rate", "mean field",
                                              "gradient after 100 layers"], rows)


def lyapunov_figure() -> None:
    """QR exponents of fresh Gaussian matrices converging to Newman's formula."""
    n, steps = 32, 3000
    kernels = np.random.default_rng(0).standard_normal((steps, n, n)) / math.sqrt(n)
    result = lyapunov.lyapunov_spectrum(lambda w, h, x: h @ w, jnp.asarray(kernels, jnp.float32),
                                        jnp.zeros((steps, 1)), jnp.zeros(n), untied=True)
    reference = theory.ginibre_lyapunov(n)
    measured = np.asarray(result.exponents)
    join = lambda values: ", ".join(signed(float(v)) for v in values)  # noqa: E731
    NUMBERS["lyapunov_top_measured"], NUMBERS["lyapunov_top_newman"] = join(measured[:3]), join(reference[:3])
    NUMBERS["lyapunov_bottom_measured"], NUMBERS["lyapunov_bottom_newman"] = join(measured[-3:]), join(reference[-3:])
    print("Lyapunov: measured", NUMBERS["lyapunov_top_measured"], "...", NUMBERS["lyapunov_bottom_measured"])
    save(theory_plots.plot_lyapunov_convergence(result, reference), "theory_lyapunov_newman")


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------

CALIBRATED = {"vanilla tanh": lambda: gradscope.VanillaRNN(64, input_size=64, activation="tanh"),
              "vanilla tanh, one input": lambda: gradscope.VanillaRNN(64, input_size=1, activation="tanh"),
              "vanilla relu": lambda: gradscope.VanillaRNN(64, input_size=64, activation="relu"),
              "LSTM": lambda: gradscope.LSTM(64, input_size=64),
              "LSTM, forget bias 1": lambda: gradscope.LSTM(64, input_size=64, forget_bias=1.0),
              "GRU": lambda: gradscope.GRU(64, input_size=64)}


def calibration_table() -> None:
    """Critical orthogonal gains of vanilla, LSTM and GRU cells (Gaussian unit inputs)."""
    rows, gains = [], {}
    for label, make in CALIBRATED.items():
        cell = make()
        row = [label]
        for which in ("rms_rate", "rate"):
            result = calibrate.calibrate(cell, "orthogonal", which=which, seeds=4, num_steps=200)
            print(f"{label:24s} {which:8s} {result.describe()}")
            row.append(f"{result.gain:.3f} ({result.gain_low:.3f}–{result.gain_high:.3f})" if which == "rms_rate"
                       else f"{result.gain:.3f}")
            gains[label, which] = result
            if label == "LSTM" and which == "rms_rate":
                save(theory_plots.plot_calibration(result), "theory_calibration_lstm")
                calibration_example(result)
        rows.append(row)
    NUMBERS["calibration_table"] = markdown_table(["cell", "`rms_rate`", "`rate`"], rows)
    NUMBERS["lstm_forget_gain"] = f"{gains['LSTM, forget bias 1', 'rms_rate'].gain:.1f}"
    tanh_wide = float(theory.critical_sigma_w("tanh", 0.0, 1.0, input_size=64))
    tanh_one = float(theory.critical_sigma_w("tanh", 0.0, 1.0, input_size=1))
    NUMBERS["mean_field_tanh_64"], NUMBERS["mean_field_tanh_1"] = f"{tanh_wide:.4f}", f"{tanh_one:.4f}"
    excess = [100 * (gains[label, "rms_rate"].gain / reference - 1) for label, reference in
              (("vanilla tanh", tanh_wide), ("vanilla tanh, one input", tanh_one), ("vanilla relu", math.sqrt(2)))]
    NUMBERS["calibration_excess"] = f"{min(excess):.0f}–{max(excess):.0f}%"


def calibration_example(result) -> None:
    """The output under the page's calibrate example, and the LSTM's rate at gain 2.7."""
    NUMBERS["calibrate_output"] = text_block(f"{result.gain:.3f} ({result.gain_low:.3f}, {result.gain_high:.3f})")
    table = result.to_dataframe().sort_values("gain")
    rate = np.interp(math.log(2.7), np.log(table["gain"]), table["rate"])
    NUMBERS["lstm_rate_at_2_7"] = signed(float(rate), 2)


def finite_width() -> None:
    """How the calibrated tanh gain (unit inputs) approaches the mean-field line as n grows."""
    rows = []
    for n in (64, 128, 256):
        row = [str(n)]
        for steps in (60, 200):
            cell = gradscope.VanillaRNN(n, input_size=n, activation="tanh")
            result = calibrate.calibrate(cell, seeds=2, num_steps=steps, num_lags=8, bracket=(1.5, 2.5))
            row.append(f"{result.gain:.3f}")
            print(f"n = {n:3d}, T = {steps:3d}: {result.describe()}")
        rows.append(row)
    NUMBERS["finite_width_table"] = markdown_table(["$n$", "$T = 60$", "$T = 200$"], rows)


SECTIONS = {"mean_field": mean_field_table, "gaussian": gaussian_products, "lyapunov": lyapunov_figure,
            "glorot_he": glorot_vs_he, "calibration": calibration_table, "finite_width": finite_width,
            "phase": phase_figures}


def quick_numbers() -> tuple[str, dict[str, str]]:
    """Values recomputed in seconds: the mean-field example, table and critical lines, quadrature, gaps."""
    # (the narrow-input values are checked against measurement and an independent simulation in test_theory.py)
    return "theory", {**mean_field_numbers(), **quadrature_numbers(), **gap_slope_numbers()}


def main(names) -> None:
    """Store the numbers of docs/theory.md, rewrite its spans and write its figures (all sections, or those named)."""
    use_style()  # the documentation's figures use the gradscope look
    for name in names or SECTIONS:
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name]()
    publish(NUMBERS)


if __name__ == "__main__":
    main(sys.argv[1:])
