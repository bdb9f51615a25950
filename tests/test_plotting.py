"""Plot helpers: the drawn data must be the API's numbers (asserted on the artists, not pixels)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses  # noqa: E402

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

import gradscope  # noqa: E402
from gradscope import plotting  # noqa: E402
from gradscope.plotting import PALETTE, VERDICT_COLORS  # noqa: E402

INITS = ["orthogonal", ("normal", {"stddev": 0.8}), "identity"]
SEEDS = 3
STEPS = 10


@pytest.fixture(scope="module")
def comparison():
    return gradscope.compare(gradscope.VanillaRNN(8), INITS, seeds=SEEDS, num_steps=STEPS, progress=False)


def _mean_lines(ax):
    """Lines drawn by a profile plot (the legend uses proxy artists that are not on the axes)."""
    return [line for line in ax.get_lines() if line.get_label().startswith(tuple(_labels_seen(ax)))]


def _labels_seen(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def _line(ax, label):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def _band(ax, label):
    (band,) = [c for c in ax.collections if c.get_label() == label]
    return band.get_paths()[0].vertices


def test_lag_profile_lines_are_seed_means_of_the_lag_metrics(comparison):
    fig = plotting.plot_lag_profile(comparison)
    ax = fig.axes[0]
    metrics = comparison.lag_metrics()
    for label in comparison.labels:
        i = comparison.labels.index(label)
        for field in ("log_sigma_max", "log_rms", "log_sigma_min"):
            line = _line(ax, f"{label} {field}")
            expected = np.asarray(getattr(metrics, field), np.float64)[i].mean(axis=0)
            np.testing.assert_array_equal(line.get_xdata(), comparison.lags)
            np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12, atol=1e-12)
            assert to_hex(line.get_color()) == to_hex(PALETTE[i])
    profile_lines = [line for line in ax.get_lines() if line.get_label().endswith(("max", "rms", "min"))]
    assert len(profile_lines) == 3 * len(INITS)


def test_lag_profile_band_spans_seed_min_to_max(comparison):
    ax = plotting.plot_lag_profile(comparison).axes[0]
    values = np.asarray(comparison.lag_metrics().log_sigma_max, np.float64)
    for i, label in enumerate(comparison.labels):
        vertices = _band(ax, f"{label} log_sigma_max band")
        for j, lag in enumerate(comparison.lags):
            ys = vertices[np.isclose(vertices[:, 0], lag), 1]
            assert np.isclose(ys.min(), values[i, :, j].min())
            assert np.isclose(ys.max(), values[i, :, j].max())


def test_lag_profile_std_band_is_mean_plus_minus_std(comparison):
    ax = plotting.plot_lag_profile(comparison, metrics=("log_rms",), band="std").axes[0]
    values = np.asarray(comparison.lag_metrics().log_rms, np.float64)[0]
    vertices = _band(ax, f"{comparison.labels[0]} log_rms band")
    lag = comparison.lags[-1]
    ys = vertices[np.isclose(vertices[:, 0], lag), 1]
    column = values[:, -1]
    assert np.isclose(ys.min(), column.mean() - column.std())
    assert np.isclose(ys.max(), column.mean() + column.std())
    assert not np.isclose(column.mean() - column.std(), column.min())  # 3 seeds: std band != min-max band


def test_lag_profile_legend_axes_and_title(comparison):
    fig = plotting.plot_lag_profile(comparison)
    ax = fig.axes[0]
    texts = _labels_seen(ax)
    assert texts[:len(INITS)] == ["orthogonal", "normal(stddev=0.8)", "identity"]
    assert texts[len(INITS):len(INITS) + 3] == [plotting.METRIC_LABELS[m] for m in
                                                  ("log_sigma_max", "log_rms", "log_sigma_min")]
    assert "horizon 0.01" in texts
    assert f"mean of {SEEDS} seeds" in ax.get_legend().get_title().get_text()
    assert "nats" in ax.get_ylabel() and "lag" in ax.get_xlabel()
    assert f"T={STEPS}" in ax.get_title() and "VanillaRNN hidden 8 tanh" in ax.get_title()
    threshold = _line(ax, "horizon 0.01")
    assert np.allclose(threshold.get_ydata(), np.log(0.01))
    secondary = [child for child in ax.child_axes if child.get_ylabel() == "singular value"]
    assert len(secondary) == 1


def test_lag_profile_subset_ax_and_errors(comparison):
    fig, ax = plt.subplots()
    returned = plotting.plot_lag_profile(comparison, metrics=("log_sigma_max",), inits=["identity"], ax=ax)
    assert returned is fig
    assert [line.get_label() for line in ax.get_lines()] == ["identity log_sigma_max", "horizon 0.01"]
    with pytest.raises(ValueError, match="unknown metric"):
        plotting.plot_lag_profile(comparison, metrics=("log_sigma",))
    with pytest.raises(ValueError, match="no initializer called"):
        plotting.plot_lag_profile(comparison, inits=["he_normal"])
    with pytest.raises(ValueError, match="band must be one of"):
        plotting.plot_lag_profile(comparison, band="iqr")


def test_lag_profile_accepts_the_lag_table_and_a_batched_spectra(comparison):
    from_table = plotting.plot_lag_profile(comparison.lag_table()).axes[0]
    from_result = plotting.plot_lag_profile(comparison).axes[0]
    for label in comparison.labels:
        np.testing.assert_array_equal(_line(from_table, f"{label} log_rms").get_ydata(),
                                      _line(from_result, f"{label} log_rms").get_ydata())
    cell = gradscope.VanillaRNN(8)
    params = cell.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (2, STEPS, 1))
    spectra = gradscope.jacobian_spectra(cell, params, xs)
    ax = plotting.plot_lag_profile({"mine": spectra}, metrics=("log_sigma_max",)).axes[0]
    expected = np.asarray(spectra.lag_metrics().log_sigma_max, np.float64).mean(axis=0)
    np.testing.assert_allclose(_line(ax, "mine log_sigma_max").get_ydata(), expected, rtol=1e-12)
    assert "mean of 2 runs" in ax.get_legend().get_title().get_text()


def test_forward_profile_plots_forward_spectra_and_refuses_backward(comparison):
    cell = gradscope.VanillaRNN(8)
    xs = jax.random.normal(jax.random.key(1), (2, STEPS, 1))
    backward = gradscope.jacobian_spectra(cell, cell.init(jax.random.key(0)), xs)
    with pytest.raises(ValueError, match="plot_lag_profile"):
        plotting.plot_forward_profile(backward)
    # The plot only reads the metrics of what it is given; relabelled spectra avoid compiling a forward sweep.
    forward = dataclasses.replace(backward, direction="forward")
    ax = plotting.plot_forward_profile({"gain 1.5": forward}).axes[0]
    expected = np.asarray(forward.lag_metrics().log_sigma_max, np.float64).mean(axis=0)
    np.testing.assert_allclose(_line(ax, "gain 1.5 log_sigma_max").get_ydata(), expected, rtol=1e-12)
    np.testing.assert_array_equal(_line(ax, "gain 1.5 log_sigma_max").get_xdata(), forward.lags)
    assert "Lyapunov" in ax.get_title() and "perturbation" in ax.get_xlabel()


def test_heatmap_shows_every_singular_value_and_masks_the_unresolved(comparison):
    fig = plotting.plot_spectrum_heatmap(comparison, init="identity", seed=2)
    ax = fig.axes[0]
    (mesh,) = ax.collections
    i, j = comparison.labels.index("identity"), comparison.seeds.index(2)
    values = np.asarray(comparison.spectra.log_singular_values, np.float64)[i, j]
    resolved = np.asarray(comparison.spectra.resolved)[i, j]
    data = mesh.get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(data).reshape(values.shape), ~resolved)
    np.testing.assert_allclose(data.filled(np.nan).reshape(values.shape)[resolved], values[resolved])
    assert "identity, seed 2" in ax.get_title()
    assert "index" in ax.get_xlabel() and "lag" in ax.get_ylabel()
    assert any("nats" in other.get_ylabel() for other in fig.axes[1:])  # the colour bar
    with pytest.raises(ValueError, match="no seed 7"):
        plotting.plot_spectrum_heatmap(comparison, seed=7)


def test_shared_colorbar_puts_every_heatmap_panel_on_the_range_of_all_resolved_values(comparison):
    fig, axes = plotting.figure_grid(len(comparison.labels))
    for label, ax in zip(comparison.labels, axes):
        plotting.plot_spectrum_heatmap(comparison, init=label, seed=0, ax=ax, colorbar=False)
    assert len(fig.axes) == len(axes)  # no colour bar yet
    plotting.share_colorbar(fig, axes)
    j = comparison.seeds.index(0)
    values = np.asarray(comparison.spectra.log_singular_values, np.float64)[:, j]
    resolved = np.asarray(comparison.spectra.resolved)[:, j]
    expected = (values[resolved].min(), values[resolved].max())
    for ax in axes:
        assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())  # no grid over cells
        np.testing.assert_allclose(ax.collections[0].get_clim(), expected, rtol=1e-6)
    (bar,) = fig.axes[len(axes):]
    assert "nats" in bar.get_ylabel()
    with pytest.raises(ValueError, match="heatmap in every panel"):
        plotting.share_colorbar(fig, [*axes, plotting.figure_grid(1)[1][0]])


def test_a_lineup_sized_heatmap_grid_keeps_its_labels_apart(comparison):
    """15 panels with long titles (the lineup report): constrained layout must not give up, so
    no panel's title or axis labels run into a neighbour's."""
    import warnings

    count, long_title = 15, "selective SSM, S4D-Real, seed 0"
    fig, axes = plotting.figure_grid(count)
    for ax in axes:
        plotting.plot_spectrum_heatmap(comparison, init=comparison.labels[0], seed=0, ax=ax, colorbar=False,
                                       title=long_title)
    plotting.share_colorbar(fig, axes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" is what the overlap came with
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i, box in enumerate(boxes):
        assert not any(_overlaps(box, other) for other in boxes[i + 1:]), texts[i].get_text()
    assert not any(ax.get_xlabel() or ax.get_ylabel() for ax in axes)  # the panels share them, once
    assert "index" in fig.get_supxlabel() and "lag" in fig.get_supylabel()
    assert all(ax.get_window_extent().width > 0.15 * fig.bbox.width for ax in axes)


def test_heatmaps_and_densities_compile_no_xla_program(comparison):
    compiled = []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(kwargs.get("fun_name"))

    batched = jax.tree_util.tree_map(lambda a: a[0], comparison.spectra)  # a Spectra batched over seeds
    jax.clear_caches()  # any JAX operation on the arrays would now compile (a pause at every new shape)
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        for fig in (plotting.plot_spectrum_heatmap(comparison), plotting.plot_singular_value_density(comparison, [1]),
                    plotting.plot_spectrum_heatmap(batched, seed=1), plotting.plot_singular_value_density(batched, [1])):
            plt.close(fig)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert compiled == []


def test_heatmap_of_a_batched_spectra_needs_an_entry():
    cell = gradscope.VanillaRNN(8)
    xs = jax.random.normal(jax.random.key(1), (2, STEPS, 1))
    spectra = gradscope.jacobian_spectra(cell, cell.init(jax.random.key(0)), xs)
    with pytest.raises(ValueError, match="pass seed="):
        plotting.plot_spectrum_heatmap(spectra)
    mesh = plotting.plot_spectrum_heatmap(spectra, seed=1).axes[0].collections[0]
    np.testing.assert_allclose(mesh.get_array().filled(np.nan).ravel()[0],
                               np.asarray(spectra.log_singular_values)[1, 0, 0], rtol=1e-6)


def test_density_has_one_histogram_per_lag_over_the_resolved_values(comparison):
    lags = [1, 5, STEPS]
    ax = plotting.plot_singular_value_density(comparison, lags, init="orthogonal").axes[0]
    assert len(ax.patches) == len(lags)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"k = {k}" for k in lags]
    values = np.asarray(comparison.spectra.log_singular_values, np.float64)[0]
    resolved = np.asarray(comparison.spectra.resolved)[0]
    for patch, lag in zip(ax.patches, lags):
        column = list(comparison.lags).index(lag)
        sample = values[:, column][resolved[:, column]]  # every seed pooled
        xs = patch.get_path().vertices[:, 0]
        assert np.isclose(xs.min(), sample.min()) and np.isclose(xs.max(), sample.max())
    with pytest.raises(ValueError, match="were not analysed"):
        plotting.plot_singular_value_density(comparison, [STEPS + 1])


def test_summary_dots_bars_seeds_colours_and_horizons(comparison):
    fig = plotting.plot_summary(comparison)
    ax = fig.axes[0]
    table = comparison.to_dataframe()
    per_seed = comparison.to_dataframe(per_seed=True)
    assert len(ax.containers) == len(INITS)
    for i, (container, row) in enumerate(zip(ax.containers, table.itertuples())):
        assert container.get_label() == row.init
        np.testing.assert_allclose(container.lines[0].get_xdata(), [row.rate])
        np.testing.assert_allclose(container.lines[0].get_ydata(), [i])
        segment = container.lines[2][0].get_segments()[0]
        np.testing.assert_allclose(sorted(segment[:, 0]), [row.rate - row.rate_std, row.rate + row.rate_std])
        assert to_hex(container.lines[0].get_color()) == to_hex(VERDICT_COLORS[row.verdict])
        seeds = _line(ax, f"{row.init} seeds")
        np.testing.assert_allclose(seeds.get_xdata(), per_seed.loc[per_seed["init"] == row.init, "rate"])
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table["init"])
    horizons = [child for child in ax.child_axes if "horizon" in child.get_ylabel()]
    expected = [f"> {comparison.lags.max()}" if np.isinf(h) else f"{h:.0f}" for h in table["horizon"]]
    assert [t.get_text() for t in horizons[0].get_yticklabels()] == expected
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [v for v in VERDICT_COLORS if v in set(table["verdict"])]
    thresholds = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_label().startswith("threshold"))
    assert thresholds == [comparison.thresholds.vanishing, comparison.thresholds.exploding]


def test_summary_from_a_table_and_rms_rate(comparison):
    table = comparison.to_dataframe()
    ax = plotting.plot_summary(table, metric="rms_rate").axes[0]
    np.testing.assert_allclose([c.lines[0].get_xdata()[0] for c in ax.containers], table["rms_rate"])
    assert not [line for line in ax.get_lines() if line.get_label().endswith(" seeds")]
    assert "RMS" in ax.get_xlabel()
    with pytest.raises(ValueError, match="metric must be one of"):
        plotting.plot_summary(comparison, metric="horizon")
    with pytest.raises(ValueError, match="missing"):
        plotting.plot_summary(table.drop(columns="rate_std"))


def test_save_figure_writes_every_format_in_one_call(comparison, tmp_path):
    fig = plotting.plot_summary(comparison)
    written = plotting.save_figure(fig, tmp_path / "summary")
    assert [p.suffix for p in written] == [".png", ".svg", ".pdf"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in written[1].read_bytes()[:500]
    assert written[2].read_bytes().startswith(b"%PDF")


def test_save_figure_lays_out_once_and_draws_once_per_file(comparison, tmp_path, monkeypatch):
    fig = plotting.plot_summary(comparison)
    engine = fig.get_layout_engine()
    draws = []
    original = type(fig).draw
    monkeypatch.setattr(type(fig), "draw", lambda self, renderer: draws.append(1) or original(self, renderer))
    plotting.save_figure(fig, tmp_path / "summary", formats=("png", "svg", "pdf"))
    assert len(draws) == 1 + 3  # one layout pass, then one drawing per file
    assert fig.get_layout_engine() is engine  # the figure's constrained layout is back


def test_summary_says_where_a_rate_cannot_be_drawn(comparison):
    table = comparison.to_dataframe().head(2).copy()
    table.loc[0, ["rate", "verdict"]] = [-np.inf, "vanishing"]
    table.loc[1, ["rate", "verdict"]] = [np.nan, "non-finite"]
    ax = plotting.plot_summary(table).axes[0]
    notes = {text.get_text(): text.xy[1] for text in ax.texts}
    assert notes == {"\u2190 rate -inf (zero product)": 0, "no rate (overflow, or < 2 lags)": 1}


def _overlaps(box, other) -> bool:
    return box.x0 < other.x1 and other.x0 < box.x1 and box.y0 < other.y1 and other.y0 < box.y1


@pytest.mark.parametrize("draw", [
    lambda c: plotting.plot_singular_value_density(c, [1, 5, STEPS], init="identity"),
    lambda c: plotting.plot_lag_profile(c),
    lambda c: plotting.plot_summary(c),
], ids=["density", "lag_profile", "summary"])
def test_legends_never_cover_the_plotted_data(comparison, draw):
    fig = draw(comparison)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert not _overlaps(legend, ax.get_window_extent())  # data are clipped to the axes box
    for artist in [*ax.patches, *ax.lines, *ax.collections]:
        for path in artist.get_paths() if hasattr(artist, "get_paths") else [artist.get_path()]:
            drawn = path.transformed(artist.get_transform())
            assert not drawn.intersects_bbox(legend, filled=False), artist.get_label()


def test_density_panels_in_a_grid_keep_their_legends_clear_of_every_panel(comparison):
    fig, axes = plotting.figure_grid(len(comparison.labels))  # as in the report: a third of a page per panel
    for label, ax in zip(comparison.labels, axes):
        plotting.plot_singular_value_density(comparison, [1, 4, 7, STEPS], init=label, ax=ax)
    fig.canvas.draw()
    boxes = [ax.get_window_extent() for ax in axes]
    legends = [ax.get_legend().get_window_extent() for ax in axes]
    for i, legend in enumerate(legends):
        assert not any(_overlaps(legend, box) for box in boxes + legends[:i] + legends[i + 1:])
        assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)
    assert all(box.width > 0.2 * fig.bbox.width for box in boxes)  # the layout did not squeeze the axes away


def test_share_legend_puts_one_legend_under_all_panels(comparison):
    lags = [1, 4, 7, STEPS]
    fig, axes = plotting.figure_grid(len(comparison.labels))
    for label, ax in zip(comparison.labels, axes):
        plotting.plot_singular_value_density(comparison, lags, init=label, ax=ax)
    plotting.share_legend(fig, axes)
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in axes) and len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [f"k = {k}" for k in lags]
    assert [to_hex(h.get_color()) for h in legend.legend_handles] == [to_hex(PALETTE[j]) for j in range(len(lags))]
    box = legend.get_window_extent()
    assert not any(_overlaps(box, ax.get_window_extent()) for ax in axes)
    assert box.y1 <= min(ax.get_window_extent().y0 for ax in axes)  # under every panel
    labelled = [ax for ax in axes if ax.get_xlabel()]  # x labels on the bottom panels, clear of the legend
    assert labelled and not any(_overlaps(box, ax.xaxis.label.get_window_extent()) for ax in labelled)
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)


def test_a_lineup_sized_lag_profile_grows_to_hold_its_legend_and_tells_repeated_colours_apart(comparison):
    """15 series (the lineup report): the figure grows so that its plot keeps MIN_AXES_HEIGHT under
    the title and above the 19-entry legend (constrained layout would otherwise give up and warn),
    and series 8-14, which reuse the palette's colours, carry a marker on the plot and in the legend."""
    import warnings

    from gradscope.plotting.style import MARKERS, MIN_AXES_HEIGHT

    spectra = jax.tree_util.tree_map(lambda a: a[0], comparison.spectra)  # one initializer, batched over seeds
    named = {f"cell {i}": spectra for i in range(15)}
    fig = plotting.plot_lag_profile(named)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" when the legend has no room
        fig.canvas.draw()
    ax = fig.axes[0]
    assert fig.get_figheight() > plotting.COLUMN_WIDTH
    assert ax.get_window_extent().height / fig.dpi >= MIN_AXES_HEIGHT - 0.05
    for i in range(15):
        line = _line(ax, f"cell {i} log_sigma_max")
        assert line.get_color() == PALETTE[i % len(PALETTE)]
        assert line.get_marker() == ("None" if i < len(PALETTE) else MARKERS[0])
    legend_markers = [handle.get_marker() for handle in ax.get_legend().legend_handles[:15]]
    assert legend_markers == ["None"] * len(PALETTE) + [MARKERS[0]] * (15 - len(PALETTE))


def test_a_short_legend_leaves_the_lag_profile_its_column_size(comparison):
    fig = plotting.plot_lag_profile(comparison)
    np.testing.assert_allclose(fig.get_size_inches(), [plotting.COLUMN_WIDTH] * 2)
    assert all(line.get_marker() == "None" for line in fig.axes[0].get_lines())
