"""Make the figures of docs/gallery.md (PNG files in docs/figures/).

Run from the repository root:

    python docs/scripts/make_gallery.py

It takes about a minute on a laptop CPU. Every figure comes from gradscope's own
plotting functions applied to gradscope's own results, exactly as the gallery
page shows the code. The default comparison is also what ``gradscope compare``
runs, so its ``orthogonal`` row is the example record of docs/cli.md
(stored in ``docs/data/gallery.json`` through ``docnumbers.Numbers``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import gradscope  # noqa: E402
from gradscope import plotting  # noqa: E402
from gradscope.display.report import metrics_records  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docnumbers import Numbers, publish  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "figures"
NUMBERS = Numbers("gallery")


def save(fig, name: str) -> None:
    """Write ``docs/figures/<name>.png`` and close the figure."""
    (path,) = plotting.save_figure(fig, FIGURES / name, formats=("png",))
    plt.close(fig)
    print(f"wrote {path.relative_to(FIGURES.parents[1])}")


def default_comparison() -> gradscope.Comparison:
    """What ``gradscope compare`` runs with no options: a tanh RNN, 64 units, one input, T = 100, 4 seeds."""
    return gradscope.compare(gradscope.VanillaRNN(64), seeds=4, num_steps=100, progress=False)


def record_example(tanh: gradscope.Comparison) -> None:
    """The ``orthogonal`` record of ``metrics.json`` as ``gradscope compare`` writes it (values to 4 digits)."""
    (record,) = [r for r in metrics_records(tanh.to_dataframe()) if r["init"] == "orthogonal"]
    shown = {key: round(value, 4) if isinstance(value, float) else value for key, value in record.items()}
    NUMBERS["cli_record"] = "```json\n" + json.dumps(shown, indent=2) + "\n```"


def tanh_figures() -> None:
    """The default comparison (what `gradscope compare` runs): profile, summary, heatmap, density."""
    tanh = default_comparison()
    record_example(tanh)
    save(plotting.plot_lag_profile(tanh), "lag_profile_tanh")
    save(plotting.plot_summary(tanh), "summary_tanh")
    save(plotting.plot_spectrum_heatmap(tanh, init="orthogonal", seed=0), "heatmap_orthogonal")
    save(plotting.plot_singular_value_density(tanh, [1, 10, 30, 100], init="he_normal"), "density_he_normal")


def relu_figure() -> None:
    """The same comparison for a ReLU RNN, where He initialization is the textbook choice."""
    relu = gradscope.compare(gradscope.VanillaRNN(64, activation="relu"), seeds=4, num_steps=100, progress=False)
    save(plotting.plot_summary(relu), "summary_relu")


def lstm_figure() -> None:
    """An LSTM with the forget-gate bias of Jozefowicz et al. (2015), log-spaced lags."""
    lstm = gradscope.compare(gradscope.LSTM(32, forget_bias=1.0), ["orthogonal", "glorot_uniform", "he_normal"],
                             seeds=4, num_steps=200, lags="log", progress=False)
    save(plotting.plot_lag_profile(lstm, metrics=("log_sigma_max", "log_rms"), xscale="log"), "lag_profile_lstm")


def forward_figure() -> None:
    """Perturbation growth dh_k/dh_0 for orthogonal recurrent weights at three gains."""
    cell = gradscope.VanillaRNN(64)
    xs = jax.random.normal(jax.random.key(1), (4, 100, 1))
    forward = {f"orthogonal, gain {gain}": gradscope.forward_spectra(
        cell, cell.init(jax.random.key(0), recurrent_init=("orthogonal", {"gain": gain})), xs)
        for gain in (1.0, 2.0, 4.0)}
    save(plotting.plot_forward_profile(forward, metrics=("log_sigma_max",)), "forward_profile")


def quick_numbers() -> tuple[str, dict[str, str]]:
    """The example record, recomputed (the default comparison takes seconds)."""
    NUMBERS.clear()
    record_example(default_comparison())
    return "gallery", dict(NUMBERS)


def main() -> None:
    """Write every gallery figure and store the example record."""
    plotting.use_style()  # the documentation's figures use the gradscope look
    FIGURES.mkdir(parents=True, exist_ok=True)
    tanh_figures()
    relu_figure()
    lstm_figure()
    forward_figure()
    publish(NUMBERS)


if __name__ == "__main__":
    main()
