"""gradscope.explore, driven headless: set widget values, check what it computed, drew and tabulated.

The explorer must show exactly what the analysis API gives for the controls' values,
redraw on every change, and reuse its compiled programs for a new T in the same bucket.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest
from matplotlib.lines import AxLine

import gradscope
from gradscope.analysis import metrics
from gradscope.core import buckets
from gradscope.display import explore as explore_module
from gradscope.theory import mean_field

pytest.importorskip("ipywidgets")

HIDDEN, MAX_STEPS, NUM_LAGS = 8, 80, 16


@pytest.fixture(scope="module")
def explorer():
    return gradscope.explore(hidden_size=HIDDEN, hidden_sizes=(HIDDEN, 12), num_steps=40, max_steps=MAX_STEPS,
                             num_lags=NUM_LAGS, input_scale=0.5)


def _expected(settings):
    """jacobian_spectra for the settings, built here from the documented recipe of explore_once."""
    cell = settings.make_cell(HIDDEN)
    params = cell.init(jax.random.key(0), recurrent_init=(settings.initializer, {"gain": settings.gain}))
    xs = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(0), 1), (MAX_STEPS, HIDDEN)))
    lags = np.unique(np.rint(np.linspace(1, settings.num_steps, NUM_LAGS)).astype(int))
    return gradscope.jacobian_spectra(cell, params, settings.input_scale * xs[:settings.num_steps], lags=lags,
                                      bucket=False)


def _profile_lines(explorer):
    return {line.get_label(): line for line in explorer.figure.axes[0].get_lines()}


def test_shows_what_jacobian_spectra_gives(explorer):
    result, expected = explorer.result, _expected(explorer.settings)
    np.testing.assert_array_equal(result.spectra.lags, expected.lags)
    assert len(expected.lags) == NUM_LAGS and expected.lags[-1] == 40
    np.testing.assert_allclose(result.spectra.log_singular_values, expected.log_singular_values, atol=1e-5)
    lines, label = _profile_lines(explorer), explorer.settings.label
    profile = expected.lag_metrics()
    for metric in ("log_sigma_max", "log_rms", "log_sigma_min"):  # the plotted data are the API's metrics
        np.testing.assert_array_equal(lines[f"{label} {metric}"].get_xdata(), expected.lags)
        np.testing.assert_allclose(lines[f"{label} {metric}"].get_ydata(), getattr(profile, metric), atol=1e-5)
    summary, table = expected.summary(), result.table().set_index("quantity")["measured"]
    np.testing.assert_allclose(table["rate of sigma_max (nats/step)"], summary.rate, atol=1e-6)
    np.testing.assert_allclose(table["rate of RMS sigma (nats/step)"], summary.rms_rate, atol=1e-6)
    assert table["verdict"] == metrics.verdict_name(summary.verdict)
    assert f"{float(summary.rate):.4g}" in explorer.table.value
    densities = [t.get_text() for t in explorer.figure.axes[-1].get_legend().get_texts()]
    assert densities == [f"k = {k}" for k in (4, 22, 40)]  # the first kept lags from T/10, T/2 and T on
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n" and "computed in" in explorer.status.value


def test_mean_field_line_where_the_theory_applies(explorer):
    theory = mean_field("tanh", 1.0, 0.0, 0.5, initial_variance=0.0)  # orthogonal gain 1, zero state, sigma_x 0.5
    np.testing.assert_allclose(explorer.result.theory.rms_rate, theory.rms_rate, rtol=1e-6)
    slopes = [line.get_slope() for line in explorer.figure.axes[0].get_lines() if isinstance(line, AxLine)]
    np.testing.assert_allclose(slopes, [theory.rms_rate], rtol=1e-6)
    narrow = explore_module.Settings(hidden_size=64)
    assert explore_module.theory_for(narrow, input_size=1)[0] is None  # every unit driven by one number
    assert explore_module.theory_for(explore_module.Settings(input_scale=0.0), input_size=1)[0] is not None
    he = explore_module.theory_for(explore_module.Settings(initializer="he_normal", gain=0.5), 64)[0]
    np.testing.assert_allclose(he.chi1, mean_field("tanh", 0.5 * 2**0.5, 0.0, 1.0, initial_variance=0.0).chi1)


def test_controls_redraw_and_a_new_t_in_the_bucket_does_not_compile(explorer):
    cores = (buckets._bucketed_core.__wrapped__, metrics.lag_metrics, metrics.summarize)
    before_png, before_rate = explorer.image.value, explorer.result.table()["measured"][0]
    explorer.controls["gain"].value = 1.4
    assert explorer.image.value != before_png and explorer.result.table()["measured"][0] != before_rate
    compiled = [core._cache_size() for core in cores]
    explorer.controls["num_steps"].value = 37  # bucket_length(37) == bucket_length(40) == 40
    explorer.controls["input_scale"].value = 1.0
    explorer.controls["initializer"].value = "identity"
    assert [core._cache_size() for core in cores] == compiled  # nothing compiled for any of them
    assert explorer.result.spectra.lags[-1] == 37 and explorer.result.theory is None
    np.testing.assert_allclose(explorer.result.spectra.log_singular_values,
                               _expected(explorer.settings).log_singular_values, atol=1e-5)
    explorer.controls["num_steps"].value = 46  # bucket 48: one new program
    assert [core._cache_size() for core in cores] == [compiled[0] + 1, *compiled[1:]]


def test_gated_cell_disables_the_activation_and_the_theory(explorer):
    explorer.controls["cell"].value = "GRU"
    assert explorer.controls["activation"].disabled and explorer.result.theory is None
    assert explorer.result.spectra.state_size == HIDDEN and "gated" in explorer.status.value
    explorer.controls["cell"].value = "vanilla"
    assert not explorer.controls["activation"].disabled


def test_errors_say_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="hidden_size must be one of"):
        gradscope.explore(hidden_size=50)
    with pytest.raises(ValueError, match="num_steps must lie in"):
        gradscope.explore(num_steps=900)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'gradscope\[notebooks\]'"):
        gradscope.explore(hidden_size=HIDDEN, hidden_sizes=(HIDDEN,), num_steps=40, max_steps=MAX_STEPS)


def test_a_failed_update_says_so_and_keeps_the_last_result(explorer, monkeypatch):
    previous = explorer.result

    def overflow(settings, **options):
        raise gradscope.NumericalOverflowError("the unrolled states became inf/NaN")

    monkeypatch.setattr(explore_module, "explore_once", overflow)
    explorer.controls["gain"].value = 2.9
    assert explorer.result is previous
    assert explorer.status.value.startswith("not redrawn, the figure shows the previous settings: "
                                            "NumericalOverflowError")
