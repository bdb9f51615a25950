"""gradscope's figures never change the user's matplotlib state, and respect the user's settings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ast  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import gradscope  # noqa: E402
from gradscope import plotting  # noqa: E402

PACKAGE = Path(gradscope.__file__).resolve().parent


@pytest.fixture(scope="module")
def comparison():
    return gradscope.compare(gradscope.VanillaRNN(8), ["orthogonal", "identity"], seeds=2, num_steps=12,
                             progress=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _drawings(comparison):
    spectra = jax.tree_util.tree_map(lambda a: a[0, 0], comparison.spectra)
    return {
        "lag profile": lambda: plotting.plot_lag_profile(comparison),
        "forward profile": lambda: plotting.plot_forward_profile(
            gradscope.forward_spectra(gradscope.VanillaRNN(4), gradscope.VanillaRNN(4).init(jax.random.key(0)),
                                      jax.numpy.ones((6, 1)))),
        "heatmap": lambda: plotting.plot_spectrum_heatmap(comparison),
        "density": lambda: plotting.plot_singular_value_density(spectra, lags=(1, 6, 12)),
        "summary": lambda: plotting.plot_summary(comparison),
        "grid": lambda: plotting.figure_grid(4)[0],
        "spectra html": lambda: spectra._repr_html_(),
        "comparison html": lambda: comparison._repr_html_(),
    }


@pytest.mark.parametrize("interactive", [False, True], ids=["ioff", "ion"])
def test_drawing_leaves_rcparams_and_interactive_mode_alone(comparison, interactive):
    for name, draw in _drawings(comparison).items():
        with plt.rc_context({"interactive": interactive}):
            before = dict(matplotlib.rcParams)
            draw()
            assert matplotlib.is_interactive() == interactive, name
            assert dict(matplotlib.rcParams) == before, name


def _global_setting_calls(tree) -> list[str]:
    """Calls and assignments in ``tree`` that change matplotlib's global state."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = ast.unparse(node.func)
            if node.func.attr in {"rc_context", "ion", "ioff", "interactive", "rc"} or name.endswith(
                    ("style.use", "style.context", "rcParams.update")):
                found.append(f"{node.lineno}: {name}")
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{node.lineno}: {ast.unparse(target)}" for target in targets
                      if isinstance(target, ast.Subscript) and "rcParams" in ast.unparse(target)]
    return found


def test_no_module_touches_global_matplotlib_settings():
    """Only the opt-in helpers (use_style, style) and save_figure's font embedding, in plotting/style.py, may."""
    found = {str(path.relative_to(PACKAGE)): _global_setting_calls(ast.parse(path.read_text()))
             for path in PACKAGE.rglob("*.py")}
    assert {name: calls for name, calls in found.items() if calls and name != "plotting/style.py"} == {}
    assert [call.split(": ")[1] for call in found["plotting/style.py"]] == [
        "plt.style.use", "plt.style.context", "mpl.rc_context"]


def test_the_look_applies_where_you_kept_defaults_and_yields_where_you_did_not(comparison):
    ax = plotting.plot_lag_profile(comparison).axes[0]
    assert ax.xaxis.label.get_fontsize() == 8 and ax.title.get_fontsize() == 9
    assert not ax.spines["top"].get_visible() and ax.figure.dpi == 150
    assert ax.get_xgridlines()[0].get_alpha() == 0.3
    user = {"font.size": 14, "axes.grid": True, "grid.alpha": 0.8, "figure.dpi": 80, "axes.spines.right": False}
    with plt.rc_context(user):
        ax = plotting.plot_lag_profile(comparison).axes[0]
        assert ax.xaxis.label.get_fontsize() == 14 and ax.title.get_fontsize() == pytest.approx(14 * 1.2)
        assert ax.spines["top"].get_visible() and not ax.spines["right"].get_visible() and ax.figure.dpi == 80
        assert ax.get_xgridlines()[0].get_alpha() == 0.8


@pytest.mark.parametrize("name", ["summary", "heatmap", "grid"])
def test_figures_grow_with_your_larger_fonts_and_keep_room_for_their_axes(comparison, name):
    """Sizes are chosen for the look's 8-point text; your 16-point text gets a figure twice as large."""
    draw = _drawings(comparison)[name]
    look_size = draw().get_size_inches()
    with plt.rc_context({"font.size": 16}):
        fig = draw()
        np.testing.assert_allclose(fig.get_size_inches(), 2 * look_size)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "constrained_layout not applied because axes sizes collapsed"
            fig.canvas.draw()
    with plt.rc_context({"font.size": 6}):  # smaller text than the look's: the look's size
        np.testing.assert_allclose(draw().get_size_inches(), look_size)


def test_a_figure_legend_gets_the_legend_size_of_the_look():
    table = pd.DataFrame({"step": [0, 10, 0, 10], "layer": ["a", "a", "stack", "stack"], "lag": 5,
                          "log_sigma_max": [-1.0, -0.5, -1.2, -0.6], "rate": [-0.2, -0.1, -0.3, -0.2],
                          "rms_rate": [-0.3, -0.2, -0.4, -0.3], "horizon": [4.0, np.inf, 3.0, 4.0]})
    fig = plotting.plot_monitor(table)
    (legend,) = fig.legends
    assert {text.get_fontsize() for text in legend.get_texts()} == {7.0}  # the look's legend.fontsize
    assert fig.axes[0].xaxis.label.get_fontsize() == 8


def test_figures_you_pass_in_keep_your_look(comparison):
    fig, ax = plt.subplots()
    plotting.plot_lag_profile(comparison, ax=ax)
    assert ax.spines["top"].get_visible() and ax.xaxis.label.get_fontsize() == 10


def test_use_style_is_the_opt_in(comparison):
    with plt.style.context("default"):
        plotting.use_style()
        assert matplotlib.rcParams["font.size"] == 8 and matplotlib.rcParams["axes.grid"]
    with plotting.style():
        assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(plotting.PALETTE)
    assert matplotlib.rcParams["font.size"] == matplotlib.rcParamsDefault["font.size"]


def test_save_figure_takes_dpi(comparison, tmp_path):
    fig = plotting.plot_summary(comparison)
    low, = plotting.save_figure(fig, tmp_path / "low", formats=("png",), dpi=50)
    high, = plotting.save_figure(fig, tmp_path / "high", formats=("png",), dpi=100)
    width_low, width_high = (matplotlib.image.imread(p).shape[1] for p in (low, high))
    assert abs(width_high - 2 * width_low) <= 2


def test_plotting_is_reachable_after_a_plain_import():
    code = ("import sys, gradscope; assert 'matplotlib' not in sys.modules; "
            "print(gradscope.plotting.plot_lag_profile.__name__, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert out.stdout.split() == ["plot_lag_profile", "True"]
