"""compare(): result shapes and tables, per-seed agreement with jacobian_spectra, aggregation, one trace."""

from __future__ import annotations

import dataclasses
import importlib

import jax
import numpy as np
import pytest

import gradscope

# ``gradscope.compare`` is the function; the module is reached explicitly.
compare_module = importlib.import_module("gradscope.analysis.comparison")

SPECS = ["orthogonal", ("normal", {"stddev": 0.5}), ("identity", {"gain": 0.9})]
LABELS = ("orthogonal", "normal(stddev=0.5)", "identity(gain=0.9)")
SEEDS = (3, 7)
NUM_STEPS = 10
STEP_CALLS = []  # one entry per Python call of CountingRNN.step, i.e. per trace of a step


@dataclasses.dataclass(frozen=True)
class CountingRNN(gradscope.VanillaRNN):
    """A vanilla RNN whose step records every Python call (jit calls it only while tracing)."""

    def step(self, params, h, x):
        STEP_CALLS.append(self.hidden_size)
        return super().step(params, h, x)


@pytest.fixture(scope="module")
def comparison():
    cell = CountingRNN(5, 2, "tanh")
    before = compare_module._spectra_program._cache_size()
    result = gradscope.compare(cell, SPECS, seeds=SEEDS, num_steps=NUM_STEPS, progress=False)
    new_compilations = compare_module._spectra_program._cache_size() - before
    return result, new_compilations, STEP_CALLS.count(5)


def test_result_shapes_and_labels(comparison):
    result, _, _ = comparison
    assert result.labels == LABELS and result.seeds == SEEDS and result.num_steps == NUM_STEPS
    np.testing.assert_array_equal(result.lags, np.arange(1, NUM_STEPS + 1))
    assert result.spectra.log_singular_values.shape == (3, 2, NUM_STEPS, 5)
    assert result.spectra.finite.shape == (3, 2) and bool(np.all(result.spectra.finite))
    assert all(np.shape(m) == (3, 2, NUM_STEPS) for m in result.lag_metrics())
    assert all(np.shape(s) == (3, 2) for s in result.summary())


def test_tables_have_the_documented_columns(comparison):
    result, _, _ = comparison
    table = result.to_dataframe()
    assert list(table.columns) == ["init", "rate", "rate_std", "rms_rate", "rms_rate_std", "horizon", "horizon_min",
                                   "horizon_max", "seeds", "verdict", "identical_to"]
    assert table["init"].tolist() == list(LABELS) and table["seeds"].tolist() == [2, 2, 2]
    per_seed = result.to_dataframe(per_seed=True)
    assert list(per_seed.columns) == ["init", "seed", "rate", "rms_rate", "horizon", "verdict", "identical_to"]
    assert table["identical_to"].tolist() == ["", "", ""]
    assert len(per_seed) == 6 and per_seed["seed"].tolist() == [3, 7] * 3
    lag_table = result.lag_table()
    assert list(lag_table.columns) == ["init", "seed", "lag", "log_sigma_max", "log_sigma_min", "log_rms",
                                       "log_condition", "isometry_spread"]
    assert len(lag_table) == 3 * 2 * NUM_STEPS
    assert not lag_table.drop(columns="init").isna().any().any()


def test_each_seed_equals_a_separate_jacobian_spectra_call(comparison, reference):
    result, _, _ = comparison
    cell = gradscope.VanillaRNN(5, 2, "tanh")
    inputs = compare_module.make_inputs("gaussian", SEEDS, NUM_STEPS, cell.input_size)
    per_seed = result.to_dataframe(per_seed=True).set_index(["init", "seed"])
    for i, (spec, label) in enumerate(zip(SPECS, LABELS)):
        for j, seed in enumerate(SEEDS):
            params = cell.init(jax.random.key(seed), recurrent_init=spec)
            one = gradscope.jacobian_spectra(cell, params, inputs[j])
            reference.assert_same(result.spectra.log_singular_values[i, j], one.log_singular_values)
            summary = one.summary()
            row = per_seed.loc[(label, seed)]
            np.testing.assert_allclose(row["rate"], float(summary.rate), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(row["rms_rate"], float(summary.rms_rate), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(row["horizon"], float(summary.horizon), rtol=1e-4)
            assert row["verdict"] == one.verdict()


def test_seed_aggregation_equals_pandas(comparison):
    result, _, _ = comparison
    per_seed = result.to_dataframe(per_seed=True)
    grouped = per_seed.groupby("init", sort=False)
    table = result.to_dataframe().set_index("init")
    np.testing.assert_allclose(table["rate"], grouped["rate"].mean())
    np.testing.assert_allclose(table["rate_std"], grouped["rate"].std(ddof=0))  # spread of the seeds run
    np.testing.assert_allclose(table["rms_rate"], grouped["rms_rate"].mean())
    np.testing.assert_allclose(table["rms_rate_std"], grouped["rms_rate"].std(ddof=0))
    np.testing.assert_allclose(table["horizon"], grouped["horizon"].median())
    np.testing.assert_allclose(table["horizon_min"], grouped["horizon"].min())
    np.testing.assert_allclose(table["horizon_max"], grouped["horizon"].max())
    thresholds = result.thresholds

    def verdict(rate, horizon):
        if rate < thresholds.vanishing:
            return "slowly vanishing" if np.isinf(horizon) else "vanishing"
        return "exploding" if rate > thresholds.exploding else "stable"

    expected = [verdict(r, h) for r, h in zip(grouped["rate"].mean(), grouped["horizon"].median())]
    assert table["verdict"].tolist() == expected


def test_traced_once_for_all_initializers_dict_labels_and_zero_inputs(comparison):
    _, new_compilations, calls_for_three = comparison
    assert new_compilations == 1  # one compiled sweep served all three initializers
    specs = {"orth": "orthogonal", "scaled": ("orthogonal", {"gain": 0.5})}
    result = gradscope.compare(CountingRNN(4, 2, "tanh"), specs, seeds=SEEDS, num_steps=NUM_STEPS, inputs="zeros",
                               progress=False)
    # two initializers trace the step exactly as often as three did: tracing does not scale with them
    calls_for_two = STEP_CALLS.count(4)
    assert calls_for_two > 0 and calls_for_three == calls_for_two
    assert result.labels == ("orth", "scaled")
    # zero inputs and zero state: the tanh cell stays at 0, so J = W^T and P_k = (W^T)^k exactly:
    # every singular value is gain^k
    log_sv = np.asarray(result.spectra.log_singular_values)
    exact = result.lags[None, None, :, None] * np.log([1.0, 0.5])[:, None, None, None]
    np.testing.assert_allclose(log_sv, np.broadcast_to(exact, log_sv.shape), atol=1e-4)
    assert result.to_dataframe()["verdict"].tolist() == ["stable", "vanishing"]


def test_equal_cells_share_one_compilation():
    # a bound method compares its instance by identity; equal cells must still hit the jit cache
    spectra_module = importlib.import_module("gradscope.analysis.spectra")
    core = spectra_module._spectra_core.__wrapped__
    params = gradscope.VanillaRNN(6).init(jax.random.key(0))
    xs = np.zeros((5, 1), np.float32)
    first = gradscope.jacobian_spectra(gradscope.VanillaRNN(6), params, xs, bucket=False)
    before = core._cache_size()
    second = gradscope.jacobian_spectra(gradscope.VanillaRNN(6), params, xs, bucket=False)
    assert core._cache_size() == before
    np.testing.assert_array_equal(first.log_singular_values, second.log_singular_values)


def test_make_inputs_options():
    zeros = compare_module.make_inputs("zeros", (0, 1, 2), 4, 3)
    assert zeros.shape == (3, 4, 3) and not np.any(np.asarray(zeros))
    gaussian = np.asarray(compare_module.make_inputs("gaussian", (0, 1), 4000, 1, scale=2.0))
    assert abs(np.std(gaussian) - 2.0) < 5 * 2.0 / np.sqrt(2 * 4000)  # N(0, scale^2), sampling error of the std
    assert not np.allclose(gaussian[0], gaussian[1])  # each seed its own draw
    np.testing.assert_array_equal(compare_module.make_inputs("gaussian", (5,), 6, 2)[0],
                                  compare_module.make_inputs("gaussian", (1, 5), 6, 2)[1])  # a seed's draw is fixed
    shared = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(compare_module.make_inputs(shared, (0, 1), 4, 2), np.stack([shared, shared]))
    own = np.arange(16.0).reshape(2, 4, 2)
    np.testing.assert_array_equal(compare_module.make_inputs(own, (0, 1), 4, 2), own)


def test_identical_draws_are_named_in_the_table_and_drawn_once():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from gradscope import plotting

    # independently: for a square kernel glorot_normal (2 / (n + n)) and lecun_normal (1 / n) have the same
    # variance and draw the same numbers from the same key; he_normal (2 / n) does not
    key, shape = jax.random.key(3), (8, 8)
    draw = {name: np.asarray(gradscope.initializers.get(name)(key, shape))
            for name in ("glorot_normal", "lecun_normal", "he_normal")}
    np.testing.assert_array_equal(draw["glorot_normal"], draw["lecun_normal"])
    assert not np.allclose(draw["he_normal"], draw["lecun_normal"])
    inits = ["glorot_normal", "he_normal", "lecun_normal", ("orthogonal", {"gain": 0.5}), "orthogonal"]
    result = gradscope.compare(gradscope.VanillaRNN(8), inits, seeds=2, num_steps=12, progress=False)
    assert result.identical_to() == {"glorot_normal": ("lecun_normal",), "he_normal": (),
                                     "lecun_normal": ("glorot_normal",), "orthogonal(gain=0.5)": (),
                                     "orthogonal": ()}
    assert result.to_dataframe()["identical_to"].tolist() == ["lecun_normal", "", "glorot_normal", "", ""]
    assert result.to_dataframe(per_seed=True)["identical_to"].tolist()[:6] == ["lecun_normal"] * 2 + [""] * 2 + \
        ["glorot_normal"] * 2
    ax = plotting.plot_lag_profile(result).axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[:4] == ["glorot_normal\n(= lecun_normal)", "he_normal", "orthogonal(gain=0.5)", "orthogonal"]
    labels = {line.get_label(): line for line in ax.get_lines()}
    assert "glorot_normal log_sigma_max" in labels and "lecun_normal log_sigma_max" not in labels
    # the others keep the colour of their position, as in every other panel
    assert to_hex(labels["he_normal log_rms"].get_color()) == to_hex(plotting.PALETTE[1])
    assert to_hex(labels["orthogonal log_rms"].get_color()) == to_hex(plotting.PALETTE[4])
    plt.close("all")


def test_identity_in_the_default_report_is_slowly_vanishing_with_a_horizon_beyond_t():
    # the default `gradscope compare`: VanillaRNN(64) tanh, T = 100, 4 seeds; identity's rate is below the
    # vanishing threshold, but sigma_max stays above the horizon threshold at every lag
    result = gradscope.compare(gradscope.VanillaRNN(64), ["identity"], seeds=4, num_steps=100, progress=False)
    row = result.to_dataframe().iloc[0]
    lowest = result.lag_table().groupby("seed")["log_sigma_max"].min()
    assert row["rate"] < result.thresholds.vanishing
    assert np.median(lowest) > np.log(result.thresholds.horizon) and np.isinf(row["horizon"])
    assert row["verdict"] == "slowly vanishing"
