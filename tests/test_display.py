"""How results and figures show themselves: short reprs, tidy tables, Jupyter HTML, and no leaked state.

Every result type is built once, small. Its ``repr`` must be a few lines holding its
own headline numbers, its ``to_dataframe()`` must hold exactly its own arrays (one
row per observation), and its ``_repr_html_`` the table and the figures it names.
Every plotting function and every ``_repr_html_`` must leave matplotlib's rcParams
and interactive mode as they were, and gradscope figures must follow the user's
rcParams (font size, grid, dpi).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import gradscope as gs  # noqa: E402
from gradscope import calibrate, lyapunov, phase, plotting, profile, sharding, training  # noqa: E402
from gradscope.display.headline import Readable  # noqa: E402
from gradscope.display.reprs import format_number  # noqa: E402
from gradscope.plotting import theory as theory_plots  # noqa: E402
from gradscope.plotting import training as training_plots  # noqa: E402

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def results():
    """One small instance of every result type."""
    cell = gs.VanillaRNN(4, input_size=2)
    params = cell.init(KEY)
    xs = np.asarray(jax.random.normal(jax.random.key(1), (2, 12, 2)), np.float32)
    config = training.TrainConfig(num_steps=2, eval_every=1, batch_size=4, eval_batch_size=4)
    experiment = training.horizon_experiment(cell, "adding", lags=(3,), initializers=["orthogonal", "normal"],
                                             config=config, key=KEY, seeds=2)
    return {
        "spectra": gs.jacobian_spectra(cell, params, xs),
        "forward": gs.forward_spectra(cell, params, xs[0]),
        "comparison": gs.compare(gs.VanillaRNN(6), ["glorot_normal", "lecun_normal", "identity"], seeds=2,
                                 num_steps=40, progress=False),
        "grid": sharding.compare_grid(gs.VanillaRNN(6), ["orthogonal", "identity"], gains=(0.5, 1.0), seeds=2,
                                      num_steps=10),
        "profile": profile.jacobian_profile(cell, params, xs, num_log_lags=4),
        "top": profile.top_singular_values(cell, params, xs, k=2, num_log_lags=4),
        "lyapunov": lyapunov.lyapunov_spectrum(cell, params, xs[0], transient=4),
        "calibration": calibrate.calibrate(gs.VanillaRNN(6, activation="linear"), seeds=2, num_steps=12,
                                           num_lags=3),
        "phase": phase.phase_diagram(gs.VanillaRNN(6, input_size=2), [0.5, 1.5], [0.0, 0.5], 1.0, seeds=2,
                                     num_steps=12, num_lags=3),
        "run": experiment.runs[0],
        "experiment": experiment,
    }


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _grid(axes: dict) -> list[np.ndarray]:
    values = [np.asarray(list(v)) for v in axes.values()]
    return [g.ravel() for g in np.meshgrid(*values, indexing="ij")] if values else []


def assert_long(table, axes: dict, columns: dict):
    """``table`` has the axis columns (first axis slowest), then ``columns``, each equal to its array."""
    assert list(table.columns) == list(axes) + list(columns)
    shape = tuple(len(list(v)) for v in axes.values())
    assert len(table) == int(np.prod(shape))
    for name, expected in zip(axes, _grid(axes)):
        np.testing.assert_array_equal(table[name].to_numpy(), expected)
    for name, expected in columns.items():
        expected = np.broadcast_to(np.asarray(expected), shape)
        np.testing.assert_array_equal(table[name].to_numpy().reshape(shape), expected, err_msg=name)


def _short(result, *numbers, max_lines: int = 12):
    text = repr(result)
    assert len(text) < 1500 and len(text.splitlines()) <= max_lines, text
    for number in numbers:
        assert format_number(number) in text, (format_number(number), text)
    return text


# ---------------------------------------------------------------------------------------------
# Short reprs, tidy tables, HTML
# ---------------------------------------------------------------------------------------------

def test_every_result_uses_the_shared_repr(results):
    for name, result in results.items():
        assert isinstance(result, Readable), name
        assert type(result).__repr__ is Readable.__repr__, f"{name}: pass repr=False to its dataclass"


def test_spectra_repr_and_tables(results):
    spectra = results["spectra"]
    summary = spectra.summary()
    text = _short(spectra, *np.asarray(summary.rate, np.float64), *np.asarray(summary.horizon, np.float64))
    assert text.startswith("Spectra: backward") and "n = 4" in text and "12 lags (1..12)" in text
    assert "batch (2,)" in text and text.count("vanishing") + text.count("stable") + text.count("exploding") == 2
    values = np.asarray(spectra.log_singular_values)
    derived = spectra.lag_metrics()
    assert_long(spectra.to_dataframe(), {"batch_0": range(2), "lag": spectra.lags}, {
        "log_sigma_max": values[..., 0], "log_sigma_min": values[..., -1], "log_rms": derived.log_rms,
        "log_condition": derived.log_condition, "isometry_spread": derived.isometry_spread,
        "log_frobenius": spectra.log_frobenius, "log_floor": spectra.log_floor,
        "finite": np.asarray(spectra.finite)[:, None]})
    assert_long(spectra.to_dataframe(singular_values=True),
                {"batch_0": range(2), "lag": spectra.lags, "index": range(1, 5)},
                {"log_singular_value": values, "resolved": values > np.asarray(spectra.log_floor)[..., None]})
    one = jax.tree_util.tree_map(lambda a: a[0], spectra)
    assert "batch_0" not in one.to_dataframe() and len(one.to_dataframe()) == 12


def test_spectra_repr_without_values_shows_shapes(results):
    cell = gs.VanillaRNN(4, input_size=2)
    params, xs = cell.init(KEY), np.zeros((3, 6, 2), np.float32)
    shown = []

    def run(x):
        spectra = gs.jacobian_spectra(cell, params, x, pipelined=False)
        shown.extend([repr(spectra), spectra._repr_html_()])
        return spectra.log_frobenius

    jax.jit(run)(xs[0])
    jax.vmap(run)(xs)
    abstract = jax.eval_shape(lambda x: gs.jacobian_spectra(cell, params, x, pipelined=False), xs)
    shown.append(repr(abstract))
    assert len(shown) == 5
    for text in shown:
        assert "Spectra (no values: traced or abstract)" in text and "log_singular_values: float32[" in text
    assert "log_singular_values: float32[3, 6, 4]" in shown[-1] and "finite: bool[3]" in shown[-1]


def test_comparison_repr_names_every_initializer_and_identical_draws(results):
    comparison = results["comparison"]
    table = comparison.to_dataframe()
    text = _short(comparison, *table["rate"], *table["horizon"])
    assert text.startswith("Comparison: VanillaRNN(hidden_size=6") and "3 initializers x 2 seeds" in text
    assert "identical_to" in text and re.search(r"glorot_normal .*lecun_normal\n", text)
    grid = results["grid"]
    per_seed = grid.to_dataframe()
    means = per_seed.groupby(["init", "gain"], sort=False)["rate"].mean()
    _short(grid, *means)
    assert "2 initializers x 2 gains x 2 seeds" in repr(grid)


def test_profile_and_top_spectra_tables(results):
    prof = results["profile"]
    _short(prof, *np.asarray(prof.summary().rate, np.float64), *np.asarray(prof.residual).max(axis=-1))
    measured = np.full((2, 12), np.nan)
    measured[:, prof.spectrum_lags - 1] = np.asarray(prof.spectra.log_singular_values)[..., -1]
    assert_long(prof.to_dataframe(), {"batch_0": range(2), "lag": range(1, 13)}, {
        "log_sigma_max": prof.log_sigma_max, "residual": prof.residual, "log_frobenius": prof.log_frobenius,
        "log_rms": prof.log_rms, "spectrum_measured": np.isin(np.arange(1, 13), prof.spectrum_lags)[None],
        "log_sigma_min": measured, "finite": np.asarray(prof.finite)[:, None]})
    top = results["top"]
    _short(top, *np.asarray(top.log_sigma_max)[:, -1])
    values = np.asarray(top.log_singular_values)
    assert_long(top.to_dataframe(), {"batch_0": range(2), "lag": top.lags, "index": range(1, 3)},
                {"log_singular_value": values, "resolved": values > np.asarray(top.log_floor)[..., None]})


def test_lyapunov_repr_and_tables(results):
    spectrum = results["lyapunov"]
    exponents = np.asarray(spectrum.exponents, np.float64)
    text = _short(spectrum, exponents.max(), exponents.min(), exponents.sum())
    assert "4 exponents by the QR method, 8 steps accumulated after a transient of 4" in text
    assert_long(spectrum.to_dataframe(), {"index": range(1, 5)}, {"exponent": spectrum.exponents})
    assert_long(spectrum.to_dataframe(history=True), {"step": spectrum.steps, "index": range(1, 5)},
                {"exponent": spectrum.history})


def test_calibration_and_phase_diagram_tables(results):
    result = results["calibration"]
    text = _short(result, *result.seed_gains)
    assert result.describe() in text
    assert_long(result.to_dataframe(per_seed=True), {"evaluation": range(len(result.gains)), "seed": result.seeds},
                {"gain": np.asarray(result.gains)[:, None], "rate": result.rates})
    diagram = results["phase"]
    text = _short(diagram, *diagram.mean("rms_rate").ravel(), *np.asarray(diagram.critical_sigma_w).ravel())
    assert "w=0.5" in text and "w=1.5" in text and "critical_sigma_w (theory)" in text
    assert_long(diagram.to_dataframe(per_seed=True),
                {"input_scale": diagram.input_scale, "sigma_b": diagram.sigma_b, "sigma_w": diagram.sigma_w,
                 "seed": diagram.seeds},
                {"rate": diagram.rate, "rms_rate": diagram.rms_rate, "finite": diagram.finite,
                 "theory_rms_rate": diagram.theory_rms_rate[..., None]})


def test_training_results_repr(results):
    run = results["run"]
    table = run.to_dataframe()
    medians = table.groupby("init", sort=False)["final_loss"].median()
    text = _short(run, *medians)
    assert "adding task (lag 3, T = 6" in text and "2 adam steps" in text and "clip_norm" not in text
    clipped = dataclasses.replace(run, clip_norms=(None, 0.5))
    assert re.search(r"orthogonal +nan ", repr(clipped), re.I) and re.search(r"normal +0\.5 ", repr(clipped))
    experiment = results["experiment"]
    text = _short(experiment)
    assert f"({experiment.agreement():.0%})" in text and "lag 3" in text
    for row in experiment.outcome_table().itertuples():
        assert row[0] in text and row[1] in text
    # the outcome grid writes a horizon beyond the analysed lags as "h>T" (T = 6 here), never "never"
    cells = [t.get_text() for t in training_plots.plot_outcome_grid(experiment).axes[0].texts]
    assert len(cells) == 2 and all(re.fullmatch(r"\d+/2\nh(=\d+|>6)", cell) for cell in cells), cells


@pytest.mark.parametrize("name, figures", [("spectra", 1), ("forward", 1), ("comparison", 2), ("grid", 0),
                                           ("profile", 1), ("top", 0), ("lyapunov", 1), ("calibration", 1),
                                           ("phase", 1), ("run", 1), ("experiment", 1)])
def test_html_repr_shows_the_table_and_figures(results, name, figures):
    result = results[name]
    page = result._repr_html_()
    kind = repr(result).split(":")[0]
    assert f"<strong>gradscope.{kind}</strong>" in page and 'class="dataframe gradscope-table"' in page
    assert page.count("<img") == figures and page.count("data:image/png;base64,") == figures
    assert plt.get_fignums() == []  # every figure drawn for the page is closed
    table = result._headline().table
    first_row = [format_number(np.ravel(np.asarray(values))[0]) for values in dict(table).values()]
    assert all(f"<td>{cell}</td>" in page for cell in first_row), first_row


# ---------------------------------------------------------------------------------------------
# No global state changes; the user's rcParams are honoured
# ---------------------------------------------------------------------------------------------

def _plots(results, tmp_path):
    comparison, run, experiment = results["comparison"], results["run"], results["experiment"]
    return {
        "plot_lag_profile": lambda: plotting.plot_lag_profile(comparison),
        "plot_forward_profile": lambda: plotting.plot_forward_profile(results["forward"]),
        "plot_singular_value_density": lambda: plotting.plot_singular_value_density(comparison, [1, 10]),
        "plot_spectrum_heatmap": lambda: plotting.plot_spectrum_heatmap(comparison),
        "plot_summary": lambda: plotting.plot_summary(comparison),
        "plot_phase_diagram": lambda: theory_plots.plot_phase_diagram(results["phase"]),
        "plot_rate_vs_theory": lambda: theory_plots.plot_rate_vs_theory(results["phase"]),
        "plot_lyapunov_convergence": lambda: theory_plots.plot_lyapunov_convergence(results["lyapunov"]),
        "plot_calibration": lambda: theory_plots.plot_calibration(results["calibration"]),
        "plot_training_curves": lambda: training_plots.plot_training_curves(run),
        "plot_grad_norm_distribution": lambda: training_plots.plot_grad_norm_distribution(run),
        "plot_hidden_gradients": lambda: training_plots.plot_hidden_gradients(run),
        "plot_horizon_during_training": lambda: training_plots.plot_horizon_during_training(run),
        "plot_horizon_prediction": lambda: training_plots.plot_horizon_prediction(experiment),
        "plot_outcome_grid": lambda: training_plots.plot_outcome_grid(experiment),
        "plot_monitor": lambda: plotting.plot_monitor(pd.DataFrame({
            "step": [0, 10], "layer": ["layer_0", "layer_0"], "lag": [5, 5], "log_sigma_max": [-1.0, -0.5],
            "rate": [-0.2, -0.1], "rms_rate": [-0.3, -0.2], "horizon": [4.0, np.inf]})),
        "figure_grid": lambda: plotting.figure_grid(4),
        "new_axes": lambda: plotting.new_axes(),
        "save_figure": lambda: plotting.save_figure(plotting.plot_summary(comparison), tmp_path / "summary"),
        **{f"{name}._repr_html_": result._repr_html_ for name, result in results.items()},
    }


def _state():
    """rcParams (but the backend, which loads on first use, and interactive mode) and interactive mode."""
    params = {k: v for k, v in matplotlib.rcParams.items() if k not in ("backend", "interactive")}
    return params, matplotlib.is_interactive()


@pytest.mark.parametrize("interactive", [False, True], ids=["script", "jupyter"])
def test_no_plot_or_display_changes_matplotlib_state(results, tmp_path, interactive):
    plots = _plots(results, tmp_path)
    public = {name for name in plotting.__all__ if name.startswith("plot_")}
    assert public <= set(plots), f"add {sorted(public - set(plots))} to this test"
    was = matplotlib.is_interactive()
    matplotlib.interactive(interactive)
    try:
        for name, draw in plots.items():
            before = _state()
            draw()
            plt.close("all")
            after = _state()
            changed = [k for k in before[0] if before[0][k] != after[0][k]]
            assert not changed and before[1] == after[1] == interactive, (name, changed)
    finally:
        matplotlib.interactive(was)


def test_save_figure_writes_each_format_at_the_dpi_asked(results, tmp_path):
    fig = plotting.plot_summary(results["comparison"])
    paths = plotting.save_figure(fig, tmp_path / "deep" / "summary.png", formats=("png", "svg"), dpi=50,
                                 bbox_inches=None)
    assert [p.name for p in paths] == ["summary.png", "summary.svg"] and all(p.is_file() for p in paths)
    width = int.from_bytes(paths[0].read_bytes()[16:20], "big")
    assert width == round(fig.get_figwidth() * 50)
    with matplotlib.rc_context({"savefig.dpi": 40}):
        (default,) = plotting.save_figure(fig, tmp_path / "default", formats=("png",), bbox_inches=None)
    assert int.from_bytes(default.read_bytes()[16:20], "big") == round(fig.get_figwidth() * 40)


def test_namespaces_load_lazily():
    code = ("import sys, gradscope\n"
            "import gradscope.analysis.spectra, gradscope.analysis.profile, gradscope.theory.phase\n"
            "assert 'matplotlib' not in sys.modules and 'gradscope.display.reprs' not in sys.modules\n"
            "assert callable(gradscope.plotting.use_style) and callable(gradscope.plotting.plot_lag_profile)\n"
            "assert callable(gradscope.display.headline_html)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
