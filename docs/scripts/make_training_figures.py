"""Make the figures and tables of docs/training.md (PNG files in docs/figures/).

Run from the repository root:

    python docs/scripts/make_training_figures.py            # the documented sizes (a few minutes on 2 CPU cores)
    python docs/scripts/make_training_figures.py --quick    # tiny sizes, to check that it runs

Every figure comes from gradscope's own plotting functions applied to gradscope's
own results; the tables it prints are the ones quoted on the docs page.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import gradscope  # noqa: E402
from gradscope import clipping, plotting, training  # noqa: E402
from gradscope.cells import LayerNormLSTM  # noqa: E402
from gradscope.plotting import training as training_plots  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "figures"
KEY = jax.random.key(0)

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)


def save(fig, out: Path, name: str) -> None:
    """Write ``<out>/<name>.png`` and close the figure."""
    (path,) = plotting.save_figure(fig, out / name, formats=("png",))
    plt.close(fig)
    print(f"wrote {path}")


def horizon_figures(out: Path, quick: bool) -> None:
    """Adding problem at three lags, six initializers: does the horizon at init predict learning?"""
    cell = gradscope.VanillaRNN(8 if quick else 32, input_size=2)
    config = training.TrainConfig(num_steps=40 if quick else 1500, eval_every=20 if quick else 100,
                                  learning_rate=3e-3, batch_size=32, eval_batch_size=64 if quick else 256)
    experiment = training.horizon_experiment(cell, "adding", lags=(5, 10) if quick else (5, 10, 20),
                                             seeds=1 if quick else 2, config=config, key=KEY)
    columns = ["lag", "init", "seed", "rate_at_init", "horizon_at_init", "verdict_at_init", "loss_ratio",
               "predicted", "learned"]
    print(experiment.to_dataframe()[columns].round(3).to_string(index=False))
    print(experiment.outcome_table().to_string())
    print(f"prediction agreement: {experiment.agreement():.2f}")
    save(training_plots.plot_outcome_grid(experiment), out, "training_outcome_grid")
    save(training_plots.plot_horizon_prediction(experiment), out, "training_horizon_prediction")
    if not quick:  # the longest lag again, with other parameters and batches: how noisy is a cell of the grid?
        again = training.horizon_experiment(cell, "adding", lags=(20,), seeds=2, config=config,
                                            key=jax.random.key(1))
        print("lag 20 with key 1:")
        print(again.to_dataframe()[columns].round(3).to_string(index=False))
    longest = experiment.runs[-1]
    save(training_plots.plot_training_curves(longest, window=20), out, "training_curves")
    save(training_plots.plot_horizon_during_training(longest), out, "training_horizon_during_training")
    save(training_plots.plot_hidden_gradients(longest, init="orthogonal(gain=0.5)"), out,
         "training_hidden_gradients")


def clipping_figures(out: Path, quick: bool) -> None:
    """SGD from an exploding start (orthogonal, gain 1.5) at four clipping thresholds."""
    cell = gradscope.VanillaRNN(8 if quick else 32, input_size=2)
    config = training.TrainConfig(num_steps=40 if quick else 1000, eval_every=20 if quick else 100,
                                  learning_rate=0.1, optimizer="sgd", eval_batch_size=64 if quick else 256)
    study = clipping.clipping_study(cell, training.make_task("adding", 10), (None, 10.0, 1.0, 0.1),
                                    recurrent_init=("orthogonal", {"gain": 1.5}), seeds=1 if quick else 2,
                                    config=config, key=KEY)
    print(study.to_dataframe()[["init", "seed", "final_loss", "loss_ratio", "clipped_fraction", "diverged"]]
          .round(3).to_string(index=False))
    save(training_plots.plot_grad_norm_distribution(study, limits=(1e-2, 1e4)), out, "clipping_grad_norms")
    save(training_plots.plot_training_curves(study, window=20), out, "clipping_curves")


def layer_norm_figures(out: Path, quick: bool) -> None:
    """LSTM against layer-normalized LSTM: gradient spectra at init, then training on the adding problem."""
    hidden, steps = (8, 30) if quick else (32, 100)
    cells = {"LSTM": gradscope.LSTM(hidden, input_size=2), "LSTM, forget bias 1": gradscope.LSTM(
        hidden, input_size=2, forget_bias=1.0), "LayerNormLSTM": LayerNormLSTM(hidden, input_size=2),
        "LayerNormLSTM, forget bias 1": LayerNormLSTM(hidden, input_size=2, forget_bias=1.0)}
    comparisons = {name: gradscope.compare(cell, ["orthogonal", "glorot_normal"], seeds=2 if quick else 4,
                                           num_steps=steps, progress=False) for name, cell in cells.items()}
    tables = [c.to_dataframe().assign(cell=name) for name, c in comparisons.items()]
    print(pd.concat(tables)[["cell", "init", "rate", "rms_rate", "horizon", "verdict"]].round(3).to_string(index=False))
    lag_table = pd.concat([c.lag_table().query("init == 'orthogonal'").assign(init=name)
                           for name, c in comparisons.items()], ignore_index=True)
    save(plotting.plot_lag_profile(lag_table, metrics=("log_sigma_max", "log_rms"),
                                   title=f"LSTM vs LayerNormLSTM, orthogonal init, T={steps}"), out,
         "layer_norm_lag_profile")
    config = training.TrainConfig(num_steps=40 if quick else 1000, eval_every=20 if quick else 100,
                                  learning_rate=3e-3, eval_batch_size=64 if quick else 256)
    task = training.make_task("adding", 10 if quick else 20)
    runs = {name: training.train(cells[name], task, ["orthogonal"], seeds=1 if quick else 2, config=config, key=KEY)
            for name in ("LSTM", "LayerNormLSTM")}
    for name, run in runs.items():
        print(name, run.to_dataframe()[["init", "seed", "horizon_at_init", "final_loss", "loss_ratio"]]
              .round(3).to_string(index=False))
    fig, ax = plotting.new_axes()
    for i, (name, run) in enumerate(runs.items()):
        curve = run.checkpoint_table().groupby("step")["eval_loss"].mean()
        ax.plot(curve.index, curve.to_numpy(), color=plotting.color(i), marker="o", markersize=3, label=name)
    ax.axhline(task.baseline, color="0.4", linestyle="--", linewidth=0.8, label="baseline")
    ax.set(yscale="log", xlabel="optimizer step", ylabel="evaluation loss",
           title=f"Adding problem, lag {task.lag} (T={task.num_steps}), orthogonal init")
    ax.legend(frameon=False)
    save(fig, out, "layer_norm_training")


def main() -> None:
    """Parse the options and make every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the PNG files")
    args = parser.parse_args()
    plotting.use_style()  # the documentation's figures use the gradscope look
    for make in (horizon_figures, clipping_figures, layer_norm_figures):
        start = time.perf_counter()
        make(args.out, args.quick)
        print(f"{make.__name__}: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
