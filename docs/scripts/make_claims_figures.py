"""Check common tutorial claims about initialization; write the figures and numbers of docs/claims.md.

Run from the repository root:

    python docs/scripts/make_claims_figures.py

It records every number the page shows in ``docs/data/claims.json`` (through
``docnumbers.Numbers``; the printed outputs as whole blocks), rewrites the page's
marked spans from that store, and writes ``docs/figures/claims_*.png``. It needs about
a minute of CPU time (hidden size 64, T = 100, 4 seeds), one to three minutes of
wall-clock time on a laptop.

Every measured number comes from gradscope: weight samples are drawn with
``gradscope.initializers``, gradient spectra with ``gradscope.compare`` /
``gradscope.jacobian_spectra``, mean-field predictions with ``gradscope.theory``.
The "claimed" and "correct" values are the formulas being checked, evaluated here.
Figures are drawn with ``gradscope.plotting``; the two hand-made panels (sample
standard deviations, singular values of gate blocks) only draw numbers measured
beforehand.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import gradscope  # noqa: E402
from gradscope import initializers, plotting, theory  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docnumbers import Numbers, publish  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "figures"
NUMBERS = Numbers("claims")
OUTPUTS: dict[str, list[str]] = defaultdict(list)   # output block name -> its printed lines
HIDDEN = 64          # units of the RNNs whose gradients are measured
STEPS = 100          # horizon T
SEEDS = 4
SAMPLE_SHAPE = (128, 512)   # (fan_in, fan_out) of the sampled kernels: fan_in = 128
GLOROT_SHAPE = (64, 256)    # a non-square kernel (the input kernel of an LSTM with 64 inputs and 64 units)
TABLE_COLUMNS = ["init", "rate", "rms_rate", "horizon", "verdict"]

pd.set_option("display.width", 160)
pd.set_option("display.precision", 4)


# ---------------------------------------------------------------------------------------------
# Helpers: sampling, printing, saving
# ---------------------------------------------------------------------------------------------

class FormulaCheck(NamedTuple):
    """One initializer's measured standard deviation against a claimed and the correct formula.

    Attributes:
        label: what was sampled (initializer and kernel shape).
        measured: standard deviation of the sampled kernel entries.
        claimed: the value the tutorial formula gives.
        correct: the value the correct formula gives.
    """

    label: str
    measured: float
    claimed: float
    correct: float


def sample(spec, shape=SAMPLE_SHAPE, seed: int = 0) -> jax.Array:
    """A kernel of ``shape`` drawn by a gradscope initializer spec (name, (name, options) or callable)."""
    return initializers.resolve(spec)(jax.random.key(seed), shape, jnp.float32)


def sample_std(spec, shape=SAMPLE_SHAPE) -> float:
    """Standard deviation of the entries of one sampled kernel."""
    return float(jnp.std(sample(spec, shape)))


def truncated_variance_factor(cut: float = 2.0) -> float:
    """Variance of a standard normal truncated to [-cut, cut]: 1 - 2 cut phi(cut) / (2 Phi(cut) - 1)."""
    density = math.exp(-cut**2 / 2) / math.sqrt(2 * math.pi)
    return 1.0 - 2 * cut * density / math.erf(cut / math.sqrt(2))


def rounded(values, digits: int) -> list[float]:
    """``values`` as a list of Python floats rounded to ``digits`` decimals (for printing)."""
    return np.round(np.asarray(values, np.float64), digits).tolist()


def report(block: str, text: str) -> None:
    """Print one line of an output block of the page, and keep it for the block's stored text."""
    print(f"[{block}] {text}")
    OUTPUTS[block].append(text)


def report_table(block: str, table: pd.DataFrame) -> None:
    """Print a metrics table (seed means; rates in nats per step, horizon in steps) into an output block."""
    report(block, table[TABLE_COLUMNS].to_string(index=False))


def store_outputs() -> None:
    """Every output block as the fenced ``text`` block the page shows."""
    for block, lines in OUTPUTS.items():
        NUMBERS[block] = "```text\n" + "\n".join(lines) + "\n```"


def signed(value: float, digits: int = 4) -> str:
    """A number with a typographic minus sign (the page's style), e.g. ``−0.4030``."""
    return f"{value:.{digits}f}".replace("-", "−")


def row(table: pd.DataFrame, label: str) -> pd.Series:
    """The summary row of one initializer label."""
    return table.set_index("init").loc[label]


def save(fig, name: str) -> None:
    """Write ``docs/figures/<name>.png`` and close the figure."""
    (path,) = plotting.save_figure(fig, FIGURES / name, formats=("png",))
    plt.close(fig)
    print(f"wrote {path.relative_to(FIGURES.parents[1])}")


def one_init(comparison: gradscope.Comparison, index: int = 0) -> gradscope.Spectra:
    """The seed-batched Spectra of one initializer of a Comparison."""
    return jax.tree_util.tree_map(lambda a: a[index], comparison.spectra)


def relabel(comparison: gradscope.Comparison, label: str) -> pd.DataFrame:
    """The one-initializer summary table of ``comparison`` with its init renamed ``label``."""
    return comparison.to_dataframe().assign(init=label)


def profile_and_summary(result, table, title: str, inits=None, aspect: float = 1.0):
    """Two panels: lag profile (sigma_max and RMS; the ``inits`` labels, default all) and growth-rate summary."""
    fig, (left, right) = plotting.figure_grid(2, columns=2, aspect=aspect)
    plotting.plot_lag_profile(result, metrics=("log_sigma_max", "log_rms"), inits=inits, ax=left, title=title)
    plotting.plot_summary(table, ax=right, title="Growth rate of $\\sigma_{\\max}$ per step")
    return fig


# ---------------------------------------------------------------------------------------------
# Claims 1, 2, 3, 6: the formulas, by sampling
# ---------------------------------------------------------------------------------------------

def he_formula() -> FormulaCheck:
    """Claim 1: He std = 2/n_in (claimed) vs sqrt(2/n_in) (correct)."""
    n_in = SAMPLE_SHAPE[0]
    check = FormulaCheck(f"he_normal {SAMPLE_SHAPE}", sample_std("he_normal"), 2 / n_in, math.sqrt(2 / n_in))
    report("he_formula", f"he_normal {SAMPLE_SHAPE}: sample std {check.measured:.5f} | claimed 2/n_in = "
                         f"{check.claimed:.5f} | correct sqrt(2/n_in) = {check.correct:.5f}")
    NUMBERS["he_too_small"] = f"{check.correct / check.claimed:.0f}"
    return check


def glorot_formula() -> FormulaCheck:
    """Claim 2: Glorot std = sqrt(2/(n_in n_out)) (claimed) vs sqrt(2/(n_in + n_out)) (correct)."""
    n_in, n_out = GLOROT_SHAPE
    check = FormulaCheck(f"glorot_normal {GLOROT_SHAPE}", sample_std("glorot_normal", GLOROT_SHAPE),
                         math.sqrt(2 / (n_in * n_out)), math.sqrt(2 / (n_in + n_out)))
    report("glorot_formula", f"glorot_normal {GLOROT_SHAPE}: sample std {check.measured:.5f} | claimed "
                             f"sqrt(2/(n_in*n_out)) = {check.claimed:.5f} | correct sqrt(2/(n_in+n_out)) = "
                             f"{check.correct:.5f}")
    NUMBERS["glorot_too_small"] = f"{check.correct / check.claimed:.1f}"
    NUMBERS["glorot_square_too_small"] = f"{math.sqrt(HIDDEN / 2):.1f}"
    return check


def glorot_layer_gains() -> None:
    """Claim 2, consequence: variance gain of x @ W (forward) and g @ W.T (backward) for each formula."""
    n_in, n_out = GLOROT_SHAPE
    x = jax.random.normal(jax.random.key(11), (4096, n_in))
    g = jax.random.normal(jax.random.key(12), (4096, n_out))
    wrong = ("normal", {"stddev": math.sqrt(2 / (n_in * n_out))})
    gains = {}
    for label, spec in (("glorot_normal", "glorot_normal"), ("normal(sqrt(2/(n_in*n_out)))", wrong)):
        w = sample(spec, GLOROT_SHAPE)
        gains[label] = float(jnp.var(x @ w)), float(jnp.var(g @ w.T))
        report("glorot_formula", f"{label} {GLOROT_SHAPE}: Var(x W)/Var(x) = {gains[label][0]:.4f}, "
                                 f"Var(g W^T)/Var(g) = {gains[label][1]:.4f}")
    theory_forward, theory_backward = 2 * n_in / (n_in + n_out), 2 * n_out / (n_in + n_out)
    report("glorot_formula", f"correct-formula theory: n_in*Var = {theory_forward:.4f}, n_out*Var = {theory_backward:.4f}")
    (forward, backward), (wrong_forward, wrong_backward) = gains.values()
    NUMBERS.update({"glorot_theory_forward": f"{theory_forward:.1f}", "glorot_theory_backward": f"{theory_backward:.1f}",
                    "glorot_forward": f"{forward:.4f}", "glorot_backward": f"{backward:.4f}",
                    "wrong_forward": f"{wrong_forward:.4f}", "wrong_backward": f"{wrong_backward:.4f}",
                    "wrong_factor": f"{theory_forward / (2 / n_out):.0f}",
                    "wrong_forward_drop": f"{1 / wrong_forward:.0f}", "wrong_backward_drop": f"{1 / wrong_backward:.0f}"})


def xavier_variance() -> FormulaCheck:
    """Claim 3: Xavier variance 1 (claimed) vs 2/(fan_in + fan_out) (correct), square kernel."""
    n = SAMPLE_SHAPE[0]
    check = FormulaCheck(f"glorot_normal ({n}, {n})", sample_std("glorot_normal", (n, n)), 1.0, math.sqrt(1 / n))
    report("xavier_formula", f"glorot_normal ({n}, {n}): sample variance {check.measured**2:.6f} | claimed 1 | "
                             f"correct 2/(n_in+n_out) = {check.correct**2:.6f}")
    NUMBERS["xavier_square_variance"] = f"{check.correct**2:.4f}"
    return check


def truncated_formulas() -> list[FormulaCheck]:
    """Claim 6: plain truncated_normal(stddev) has 0.774 stddev^2; variance_scaling's one is corrected."""
    stddev, n_in = 0.1, SAMPLE_SHAPE[0]
    factor = truncated_variance_factor()
    plain = FormulaCheck(f"truncated_normal(stddev={stddev})", sample_std(("truncated_normal", {"stddev": stddev})),
                         stddev, stddev * math.sqrt(factor))
    corrected = FormulaCheck(f"he_normal truncated {SAMPLE_SHAPE}",
                             sample_std(("he_normal", {"distribution": "truncated_normal"})),
                             math.sqrt(2 / n_in), math.sqrt(2 / n_in))
    report("truncated_formula", f"truncated_normal(stddev={stddev}): sample variance / stddev^2 = "
                                f"{plain.measured**2 / stddev**2:.4f} | claimed 1 | truncation factor {factor:.4f}")
    report("truncated_formula", f"he_normal(distribution='truncated_normal') {SAMPLE_SHAPE}: sample variance / "
                                f"(2/n_in) = {corrected.measured**2 / corrected.correct**2:.4f} "
                                "(variance_scaling corrects the truncation)")
    NUMBERS.update({"truncation_factor": f"{factor:.3f}", "truncation_std_factor": f"{math.sqrt(factor):.3f}",
                    "truncated_dot": f"{stddev * math.sqrt(factor):.3f}"})
    return [plain, corrected]


def truncated_rnn() -> None:
    """Claim 6, consequence: a linear RNN (gradient = powers of W) with plain and corrected truncated kernels."""
    std = 1 / math.sqrt(HIDDEN)
    inits = {"normal(std=1/sqrt(n))": ("normal", {"stddev": std}),
             "truncated_normal(std=1/sqrt(n))": ("truncated_normal", {"stddev": std}),
             "lecun_normal truncated": ("lecun_normal", {"distribution": "truncated_normal"})}
    linear = gradscope.compare(gradscope.VanillaRNN(HIDDEN, activation="linear"), inits, seeds=SEEDS,
                               num_steps=STEPS, progress=False)
    table = linear.to_dataframe()
    report_table("truncated_rnn", table)
    half_log = 0.5 * math.log(truncated_variance_factor())
    report("truncated_rnn", f"0.5 * log(truncation factor) = {half_log:.4f}")
    plain, truncated = row(table, "normal(std=1/sqrt(n))"), row(table, "truncated_normal(std=1/sqrt(n))")
    NUMBERS.update({"truncated_rms_plain": signed(plain["rms_rate"]), "truncated_rms_cut": signed(truncated["rms_rate"]),
                    "truncated_rms_drop": f"{plain['rms_rate'] - truncated['rms_rate']:.4f}",
                    "truncated_half_log": signed(half_log)})


def plot_formula_checks(checks: list[FormulaCheck]):
    """Dot plot: measured std (dot), claimed (cross) and correct (open square) per initializer, log axis."""
    fig, ax = plotting.new_axes(width=plotting.FULL_WIDTH * 0.7, aspect=0.42)
    with plotting.style():
        rows = np.arange(len(checks))
        for values, marker, name, colour, size in (
                ([c.correct for c in checks], "s", "correct formula", plotting.color(2), 9),
                ([c.claimed for c in checks], "x", "tutorial claim", plotting.color(5), 7),
                ([c.measured for c in checks], "o", "measured (gradscope sample)", plotting.color(0), 4)):
            ax.plot(values, rows, marker, color=colour, label=name, markersize=size,
                    markerfacecolor="none" if marker == "s" else colour)
        ax.set(xscale="log", xlabel="standard deviation of the kernel entries",
               title="Initializer formulas: what tutorials claim vs what is sampled")
        ax.set_yticks(rows, [c.label for c in checks])
        ax.set_ylim(len(checks) - 0.5, -0.5)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=3, frameon=False, fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------------
# Claims 1-3: what the wrong formulas do to a recurrent network's gradient
# ---------------------------------------------------------------------------------------------

def mean_field_line(block: str, activation: str, entry_std: float, sigma_x: float, label: str):
    """Print the mean-field chi_1 and RMS rate of a Gaussian recurrent kernel with entry std ``entry_std``,
    for the one-input cells of the page (input_size 1: the time-varying mean field)."""
    sigma_w = entry_std * math.sqrt(HIDDEN)
    field = theory.mean_field(activation, sigma_w, sigma_x=sigma_x, input_size=1, initial_variance=0.0)
    report(block, f"mean field {label}: sigma_w = {sigma_w:.4f}, chi_1 = {float(field.chi1):.4f}, "
                  f"predicted rms_rate = {float(field.rms_rate):.4f}")
    return field


def he_rnn():
    """Claim 1, consequence: a ReLU RNN with He weights vs the 'std = 2/n' weights."""
    inits = {"he_normal": "he_normal",
             "normal(std=sqrt(2/n))": ("normal", {"stddev": math.sqrt(2 / HIDDEN)}),
             "normal(std=2/n)": ("normal", {"stddev": 2 / HIDDEN})}
    relu = gradscope.compare(gradscope.VanillaRNN(HIDDEN, activation="relu"), inits, seeds=SEEDS,
                             num_steps=STEPS, progress=False)
    table = relu.to_dataframe()
    report_table("he_rnn", table)
    mean_field_line("he_rnn", "relu", math.sqrt(2 / HIDDEN), 1.0, "he_normal")
    wrong_field = mean_field_line("he_rnn", "relu", 2 / HIDDEN, 1.0, "std=2/n")
    he_untied(relu.cell)
    wrong, he = row(table, "normal(std=2/n)"), row(table, "he_normal")
    NUMBERS.update({"he_wrong_rate": f"{-wrong['rate']:.2f}", "he_wrong_factor": f"{math.exp(-wrong['rate']):.0f}",
                    "he_wrong_horizon": f"{wrong['horizon']:.1f}", "he_wrong_chi1": f"{float(wrong_field.chi1):.4f}",
                    "he_wrong_predicted": signed(float(wrong_field.rms_rate)),
                    "he_wrong_measured": signed(wrong["rms_rate"]), "he_tied_rate": f"+{he['rate']:.4f}"})
    return profile_and_summary(relu, relu, f"ReLU RNN, n={HIDDEN}, T={STEPS}, {SEEDS} seeds")


def he_untied(cell: gradscope.VanillaRNN) -> None:
    """Claim 1, cross-check: He weights drawn afresh at every step (untied, a deep ReLU stack), where the
    mean-field chi_1 = 1 holds exactly in expectation, against the tied RNN above."""
    rates, rms_rates = [], []
    for seed in range(SEEDS):
        keys = jax.random.split(jax.random.key(seed), STEPS)
        params = jax.vmap(lambda k: cell.init(k, recurrent_init="he_normal"))(keys)
        xs = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (STEPS, cell.input_size))
        summary = gradscope.jacobian_spectra(cell, params, xs, untied=True).summary()
        rates.append(float(summary.rate))
        rms_rates.append(float(summary.rms_rate))
    report("he_rnn", f"he_normal untied (fresh W per step): rate {np.mean(rates):.4f} (seeds {rounded(rates, 4)}), "
                     f"rms_rate {np.mean(rms_rates):.4f} (seeds {rounded(rms_rates, 4)})")
    NUMBERS["he_untied_rate"], NUMBERS["he_untied_rms"] = signed(np.mean(rates)), signed(np.mean(rms_rates))


def glorot_rnn():
    """Claims 2 and 3, consequence: a tanh RNN with Glorot weights vs the two wrong Glorot formulas."""
    inits = {"glorot_normal": "glorot_normal",
             "std=sqrt(2/(n*n))": ("normal", {"stddev": math.sqrt(2 / HIDDEN**2)}),
             "variance 1": ("normal", {"stddev": 1.0})}
    tanh = gradscope.compare(gradscope.VanillaRNN(HIDDEN), inits, seeds=SEEDS, num_steps=STEPS, progress=False)
    table = tanh.to_dataframe()
    report_table("glorot_rnn", table)
    fields = [mean_field_line("glorot_rnn", "tanh", std, 1.0, label) for std, label in
              ((math.sqrt(1 / HIDDEN), "glorot_normal"), (math.sqrt(2 / HIDDEN**2), "std=sqrt(2/(n*n))"),
               (1.0, "variance 1"))]
    glorot, wrong, unit = (row(table, label) for label in inits)
    NUMBERS.update({"glorot_rate": signed(glorot["rate"]), "glorot_wrong_rate": signed(wrong["rate"]),
                    "glorot_wrong_horizon": f"{wrong['horizon']:.1f}",
                    "glorot_wrong_predicted": signed(float(fields[1].rms_rate)),
                    "glorot_predicted": signed(float(fields[0].rms_rate)),
                    "unit_sigma_w": f"{math.sqrt(HIDDEN):g}", "unit_chi1": f"{float(fields[2].chi1):.2f}",
                    "unit_rate": f"+{unit['rate']:.4f}", "unit_predicted": f"+{float(fields[2].rms_rate):.4f}"})
    return profile_and_summary(tanh, tanh, f"tanh RNN, n={HIDDEN}, T={STEPS}, {SEEDS} seeds")


# ---------------------------------------------------------------------------------------------
# Claim 4: orthogonal initialization of a tanh RNN
# ---------------------------------------------------------------------------------------------

def orthogonal_run(activation: str, scale: float, gain: float, label: str):
    """One orthogonal-gain configuration: print its lag-T values and mean-field rate; return (Spectra, table, field)."""
    result = gradscope.compare(gradscope.VanillaRNN(HIDDEN, activation=activation), [("orthogonal", {"gain": gain})],
                               seeds=SEEDS, num_steps=STEPS, input_scale=scale, progress=False)
    last = result.lag_table().query(f"lag == {STEPS}")
    report("orthogonal", f"{label}: log sigma_max(k={STEPS}) = {last['log_sigma_max'].mean():.3f}, "
                         f"log RMS(k={STEPS}) = {last['log_rms'].mean():.3f}, "
                         f"log sigma_min(k={STEPS}) = {last['log_sigma_min'].mean():.3f}")
    field = None
    if activation == "tanh":
        field = theory.mean_field("tanh", gain, sigma_x=scale, input_size=1, initial_variance=0.0)
        report("orthogonal", f"{label}: mean-field chi_1 = {float(field.chi1):.4f}, predicted rms_rate = "
                             f"{float(field.rms_rate):.4f}")
    return one_init(result), relabel(result, label), field


def orthogonal_tanh():
    """Claim 4: orthogonal gain 1 in a tanh RNN at several input scales, the linear reference, and the
    critical gain that mean-field theory gives for one unit-scale input."""
    critical = float(theory.critical_sigma_w("tanh", sigma_x=1.0, input_size=1, initial_variance=0.0))
    wide = float(theory.critical_sigma_w("tanh", sigma_x=1.0, input_size=math.inf, initial_variance=0.0))
    report("orthogonal", f"critical orthogonal gain for tanh with one unit-scale input "
                         f"(theory.critical_sigma_w, input_size=1): {critical:.4f}")
    scales = (0.1, 0.5, 1.0, 2.0)
    runs = [("tanh", scale, 1.0, f"tanh, input {scale:g}") for scale in (0.0, *scales)]
    runs += [("tanh", 1.0, critical, f"tanh, input 1, g={critical:.2f}"), ("linear", 1.0, 1.0, "linear, input 1")]
    spectra, tables, fields = {}, [], {}
    for activation, scale, gain, label in runs:
        spectra[label], table, fields[label] = orthogonal_run(activation, scale, gain, label)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    report("orthogonal", "")
    report_table("orthogonal", table)
    labels = [f"tanh, input {scale:g}" for scale in scales]
    measured = [row(table, label) for label in labels]
    critical_row = row(table, f"tanh, input 1, g={critical:.2f}")
    NUMBERS.update({"critical_one_input": f"{critical:.4f}", "critical_wide_input": f"{wide:.4f}",
                    "orth_rms_rates": join(signed(r["rms_rate"]) for r in measured),
                    "orth_predicted": join(signed(float(fields[label].rms_rate)) for label in labels),
                    "orth_horizons": join(f"{r['horizon']:.0f}" for r in measured),
                    "orth_rate_1": signed(row(table, "tanh, input 1")["rate"]),
                    "critical_rms_rate": signed(critical_row["rms_rate"]),
                    "critical_rate": signed(critical_row["rate"]), "critical_verdict": critical_row["verdict"],
                    "orth_rms_1": signed(row(table, "tanh, input 1")["rms_rate"])})
    along = {scale: path_prediction(1.0, scale) for scale in scales}
    wider = gradscope.compare(gradscope.VanillaRNN(4 * HIDDEN), ["orthogonal"], seeds=SEEDS, num_steps=STEPS,
                              input_scale=scales[-1], progress=False).to_dataframe().iloc[0]
    print(f"[orthogonal] mean field along the seeds' inputs {along}; n = {4 * HIDDEN}, input {scales[-1]:g}: "
          f"rms_rate {wider['rms_rate']:.4f}")
    NUMBERS.update({"orth_path_predicted": join(signed(v) for v in along.values()),
                    "critical_path_predicted": signed(path_prediction(critical, 1.0)),
                    "wider_n": str(4 * HIDDEN), "wider_rms": signed(wider["rms_rate"]),
                    "wider_path": signed(along[scales[-1]])})
    drawn = [label for label in spectra if label != "tanh, input 0"]  # it coincides with the linear cell
    return profile_and_summary(spectra, table, f"Orthogonal RNN, gain 1 unless g given,\nn={HIDDEN}, {SEEDS} seeds",
                               inits=drawn, aspect=1.15)


def path_prediction(gain: float, scale: float) -> float:
    """Seed mean of the RMS rate that the time-varying mean field predicts along each seed's own inputs
    (``theory.mean_field_path``), fitted over the same lags as the measurement."""
    xs = np.asarray(gradscope.comparison.make_inputs("gaussian", tuple(range(SEEDS)), STEPS, 1, scale, np.float32))
    lags = np.arange(1, STEPS + 1)
    slopes = [np.polyfit(lags, theory.mean_field_path("tanh", gain, (x**2).mean(-1), initial_variance=0.0)
                         .log_rms(lags), 1)[0] for x in xs]
    return float(np.mean(slopes))


def join(texts) -> str:
    """``a, b, c and d``."""
    texts = list(texts)
    return ", ".join(texts[:-1]) + " and " + texts[-1] if len(texts) > 1 else "".join(texts)


# ---------------------------------------------------------------------------------------------
# Claim 5: orthogonal init of a gate-stacked LSTM kernel
# ---------------------------------------------------------------------------------------------

def block_singular_values(kernel: jax.Array, blocks: int = 4) -> np.ndarray:
    """Singular values (descending) of each ``(n, n)`` gate block of an ``(n, blocks * n)`` kernel."""
    return np.stack([np.asarray(jnp.linalg.svd(b, compute_uv=False)) for b in jnp.split(kernel, blocks, axis=1)])


LSTM_SCHEMES = {"per gate block (gradscope, Flax)": "per_block", "whole stack (torch orthogonal_, Keras)": "stack",
                "PyTorch default U(±1/√hidden)": "torch_default"}
"""The recurrent-kernel schemes compared in claim 5, by label."""


def recurrent_kernel(scheme: str, key, shape):
    """An ``(n, 4n)`` recurrent kernel drawn the way ``scheme`` does."""
    if scheme == "per_block":
        return initializers.per_block(initializers.orthogonal(), 4)(key, shape)
    if scheme == "stack":
        return initializers.orthogonal()(key, shape)
    return initializers.uniform(1 / math.sqrt(shape[0]))(key, shape)


def lstm_block_spectra(hidden: int) -> dict[str, np.ndarray]:
    """Block singular values of a (hidden, 4 hidden) kernel under each scheme."""
    shape = (hidden, 4 * hidden)
    values = {label: block_singular_values(recurrent_kernel(scheme, jax.random.key(0), shape))
              for label, scheme in LSTM_SCHEMES.items()}
    for label, sv in values.items():
        rms = np.sqrt(np.mean(sv**2, axis=1))
        report("lstm_blocks", f"{label}: per-block sigma_max {rounded(sv[:, 0], 3)}, "
                              f"sigma_min {rounded(sv[:, -1], 4)}, RMS sigma {rounded(rms, 3)}")
    stack = values["whole stack (torch orthogonal_, Keras)"]
    NUMBERS.update({"stack_sigma_max": f"{stack[:, 0].max():.2f}", "stack_rms": f"{np.sqrt(np.mean(stack**2)):.1f}",
                    "stack_sigma_min_low": f"{stack[:, -1].min():.3f}", "stack_sigma_min_high": f"{stack[:, -1].max():.2f}"})
    return values


def lstm_params(cell: gradscope.LSTM, seed: int, scheme: str):
    """LSTM parameters with the recurrent kernel drawn by ``scheme`` (input kernel and bias as gradscope draws them)."""
    key = jax.random.key(seed)
    params = cell.init(key)
    if scheme == "per_block":
        return params
    return params._replace(recurrent_kernel=recurrent_kernel(scheme, jax.random.fold_in(key, 7),
                                                             params.recurrent_kernel.shape))


def lstm_gradients(cell: gradscope.LSTM) -> dict[str, gradscope.Spectra]:
    """Seed-batched gradient spectra of the LSTM under each scheme (same inputs, input kernel, bias)."""
    out, rows = {}, []
    for label, scheme in LSTM_SCHEMES.items():
        runs = [gradscope.jacobian_spectra(cell, lstm_params(cell, seed, scheme),
                                           jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (STEPS, 1)))
                for seed in range(SEEDS)]
        out[label] = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *runs)
        summary = out[label].summary()
        horizon = np.asarray(summary.horizon)
        rows.append([label, signed(float(jnp.mean(summary.rate))), signed(float(jnp.mean(summary.rms_rate))),
                     f"{horizon.min():.0f}–{horizon.max():.0f}", ", ".join(sorted(set(out[label].verdict().tolist())))])
        print(f"[lstm] {label}: {rows[-1]}")
    header = ["recurrent kernel", "rate", "rms_rate", "horizon (steps, over seeds)", "verdict"]
    NUMBERS["lstm_table"] = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                                      + ["| " + " | ".join(r) + " |" for r in rows])
    rates = {label: float(jnp.mean(s.summary().rate)) for label, s in out.items()}
    per_gate, stack = rates["per gate block (gradscope, Flax)"], rates["whole stack (torch orthogonal_, Keras)"]
    NUMBERS["lstm_faster"] = f"{stack / per_gate:.1f}"
    return out


def plot_block_singular_values(values: dict[str, np.ndarray], ax):
    """Sorted singular values of the four gate blocks, one colour per initialization scheme."""
    with plotting.style():
        n = next(iter(values.values())).shape[1]
        for i, (label, sv) in enumerate(values.items()):
            for b, block in enumerate(sv):
                ax.plot(np.arange(1, block.size + 1), block, color=plotting.color(i), linewidth=1.0,
                        linestyle=("-", "--", ":", "-.")[b], label=f"{label}" if b == 0 else None)
        ax.set(xlabel="singular value index (1 = largest)", ylabel="singular value of the gate block",
               title=f"Gate blocks of an (n, 4n) recurrent kernel, n={n}\n"
                     "gates i, f, g, o: solid, dashed, dotted, dash-dot", ylim=(0, 1.25))
        ax.legend(frameon=False, fontsize=6, loc="lower left")


def lstm_orthogonal():
    """Claim 5: block spectra, and the LSTM gradient under each scheme."""
    values = lstm_block_spectra(HIDDEN)
    cell = gradscope.LSTM(HIDDEN // 2, forget_bias=1.0)
    spectra = lstm_gradients(cell)
    fig, (left, right) = plotting.figure_grid(2, columns=2, aspect=1.0)
    plot_block_singular_values(values, left)
    plotting.plot_lag_profile(spectra, metrics=("log_sigma_max", "log_rms"), ax=right,
                              title=f"LSTM hidden {cell.hidden_size} (state n={2 * cell.hidden_size}), "
                                    f"forget bias 1\ngradient vs lag, T={STEPS}")
    return fig


# ---------------------------------------------------------------------------------------------
# Claim 7: identity initialization of a ReLU RNN (IRNN)
# ---------------------------------------------------------------------------------------------

def irnn():
    """Claim 7: identity-initialized ReLU RNNs: gains around 1, input scales, input sizes."""
    inits = {"identity": "identity", "identity gain 1.02": ("identity", {"gain": 1.02}),
             "identity gain 0.98": ("identity", {"gain": 0.98})}
    wide = gradscope.VanillaRNN(HIDDEN, input_size=HIDDEN, activation="relu")
    result = gradscope.compare(wide, inits, seeds=SEEDS, num_steps=STEPS, progress=False)
    table = result.to_dataframe()
    report_table("irnn", table.assign(init=lambda t: t["init"] + f" (input_size {HIDDEN})"))
    variants = [(wide, 0.01, "gaussian", f"input_size {HIDDEN}, input scale 0.01"),
                (wide, 1.0, "zeros", f"input_size {HIDDEN}, zero inputs"),
                (gradscope.VanillaRNN(HIDDEN, activation="relu"), 1.0, "gaussian", "input_size 1, input scale 1")]
    for cell, scale, inputs, label in variants:
        variant = gradscope.compare(cell, ["identity"], seeds=SEEDS, num_steps=STEPS, inputs=inputs,
                                    input_scale=scale, progress=False).to_dataframe().iloc[0]
        report("irnn", f"identity, {label}: rate {variant['rate']:.4g}, rms_rate {variant['rms_rate']:.4g}, "
                       f"horizon {variant['horizon']:g}, verdict {variant['verdict']}")
    one, up = row(table, "identity"), row(table, "identity gain 1.02")
    mantissa, exponent = f"{one['rate']:.0e}".split("e")
    NUMBERS.update({"irnn_rate": f"{mantissa}×10" + str(int(exponent)).translate(str.maketrans("-0123456789",
                                                                                             "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")),
                    "irnn_rms": signed(one["rms_rate"]), "irnn_log_gain": f"{math.log(1.02):.4f}",
                    "irnn_up_rate": f"{up['rate']:.4f}"})
    title = f"ReLU RNN, identity init, n={HIDDEN},\ninput_size {HIDDEN}, {SEEDS} seeds"
    return profile_and_summary(result, result, title)


def quick_numbers() -> tuple[str, dict[str, str]]:
    """Values recomputed in seconds: the sampled formulas of claims 1, 2, 3 and 6 and the gate-block spectra."""
    OUTPUTS.clear()
    NUMBERS.clear()
    he_formula(), glorot_formula(), xavier_variance(), truncated_formulas()
    glorot_layer_gains()
    lstm_block_spectra(HIDDEN)
    store_outputs()
    return "claims", dict(NUMBERS)


def main() -> None:
    """Store every number of docs/claims.md, rewrite its spans and write its figures."""
    plotting.use_style()  # the documentation's figures use the gradscope look
    FIGURES.mkdir(parents=True, exist_ok=True)
    checks = [he_formula(), glorot_formula(), xavier_variance(), *truncated_formulas()]
    glorot_layer_gains()
    save(plot_formula_checks(checks), "claims_formulas")
    truncated_rnn()
    save(he_rnn(), "claims_he")
    save(glorot_rnn(), "claims_glorot")
    save(orthogonal_tanh(), "claims_orthogonal_tanh")
    save(lstm_orthogonal(), "claims_lstm_blocks")
    save(irnn(), "claims_irnn")
    store_outputs()
    publish(NUMBERS)


if __name__ == "__main__":
    main()
