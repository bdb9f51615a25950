"""Report folders and Jupyter display: files, JSON rules, and that the pages carry the API's numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import gradscope  # noqa: E402
from gradscope import report  # noqa: E402
from gradscope.display import staging  # noqa: E402
from gradscope.display.report_settings import _cell_settings  # noqa: E402
from gradscope.plotting import VERDICT_COLORS  # noqa: E402

# The same configuration as tests/test_plotting.py, so compiled code is shared within a pytest run.
INITS = ["orthogonal", ("normal", {"stddev": 0.8}), "identity"]
SEEDS, STEPS = 3, 10


@pytest.fixture(scope="module")
def comparison():
    return gradscope.compare(gradscope.VanillaRNN(8), INITS, seeds=SEEDS, num_steps=STEPS, progress=False)


def test_metrics_records_are_strict_json_with_null_for_non_finite():
    table = pd.DataFrame({"init": ["a", "b"], "rate": [np.float32(-0.5), np.nan],
                          "horizon": [np.inf, 3.25], "seeds": np.array([4, 4], np.int64),
                          "verdict": ["vanishing", "non-finite"]})
    records = report.metrics_records(table)
    assert records == [{"init": "a", "rate": -0.5, "horizon": None, "seeds": 4, "verdict": "vanishing"},
                       {"init": "b", "rate": None, "horizon": 3.25, "seeds": 4, "verdict": "non-finite"}]
    assert type(records[0]["seeds"]) is int and type(records[0]["rate"]) is float
    json.dumps(records, allow_nan=False)  # raises on any inf/NaN left


def test_markdown_table_layout():
    table = pd.DataFrame({"init": ["x"], "rate": [0.123456], "horizon": [np.inf]})
    assert report.markdown_table(table).splitlines() == ["| init | rate | horizon |", "|---|---|---|",
                                                         "| x | 0.1235 | inf |"]


def test_build_report_holds_the_comparisons_tables_and_four_figures(comparison):
    built = report.build_report(comparison, settings=[("command", "test")])
    pd.testing.assert_frame_equal(built.metrics, comparison.to_dataframe())
    pd.testing.assert_frame_equal(built.lag_table, comparison.lag_table())
    assert [f.name for f in built.figures] == ["lag_profile", "summary", "spectra", "density"]
    assert len(built.figures[2].figure.axes) == len(INITS) + 1  # one heatmap per initializer, one shared colour bar
    settings = dict(built.settings)
    assert settings["command"] == "test" and settings["cell"] == repr(comparison.cell)
    assert settings["seeds"] == "0, 1, 2" and settings["steps T"] == str(STEPS)
    assert built.title == f"gradscope report: VanillaRNN hidden 8 tanh, T={STEPS}"
    paths = {f.name: (f"figures/{f.name}.png", f"figures/{f.name}.svg") for f in built.figures}
    markdown = report.render_markdown(built, paths)
    assert report.markdown_table(comparison.to_dataframe()) in markdown
    assert all(f"![{f.title}](figures/{f.name}.png)" in markdown for f in built.figures)


def _tiny_report(**changes) -> report.Report:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    table = pd.DataFrame({"init": ["x", "y"], "rate": [0.5, np.nan], "horizon": [np.inf, 2.0]})
    built = report.Report("tiny", (("a", "b"),), table, table, (report.ReportFigure("f", "F", "c", fig),),
                          run_settings={"seeds": [0, 1]})
    return dataclasses.replace(built, **changes)


def test_write_report_writes_every_file(tmp_path):
    files = report.write_report(_tiny_report(), tmp_path / "rep")
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "figures", "lag_metrics.csv", "metrics.csv", "metrics.json", "report.html", "report.md"]
    assert [p.name for p in files.figures] == ["f.svg", "f.png"]
    assert json.loads(files.metrics_json.read_text()) == {
        "settings": {"seeds": [0, 1]},
        "rows": [{"init": "x", "rate": 0.5, "horizon": None}, {"init": "y", "rate": None, "horizon": 2.0}]}
    assert files.metrics_csv.read_text().splitlines() == ["init,rate,horizon", "x,0.5,inf", "y,nan,2.0"]
    assert "![F](figures/f.png)" in files.markdown.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # the temporary folder is gone


def test_report_html_is_self_contained_with_sharp_figures_and_links_to_its_files(tmp_path):
    files = report.write_report(_tiny_report(), tmp_path / "rep")
    page = files.html.read_text()
    png = files.figures[1].read_bytes()
    (image,) = re.findall(r"<img [^>]*>", page)
    assert re.findall(r'src="([^"]+)"', page) == ["data:image/png;base64," + base64.b64encode(png).decode("ascii")]
    width, height = (int(re.search(f'{side}="([0-9]+)"', image).group(1)) for side in ("width", "height"))
    with Image.open(files.figures[1]) as pixels:
        # drawn at twice the size it is shown (to the pixel): sharp on high-resolution screens
        assert abs(pixels.size[0] - 2 * width) <= 1 and abs(pixels.size[1] - 2 * height) <= 1
        assert pixels.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    assert width == pytest.approx(2 * 150, abs=40)  # a 2-inch figure shown at 150 px per inch (bbox trimmed)
    links = re.findall(r'href="([^"]+)"', page)
    assert {"metrics.csv", "metrics.json", "lag_metrics.csv", "report.md", "figures/f.svg", "figures/f.png"} <= set(links)
    for link in links:  # in-page anchors or files of the report folder, nothing outside it
        assert (link.startswith("#") and f'id="{link[1:]}"' in page) or (files.folder / link).exists(), link
    assert "<link" not in page and "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert "<td class=\"num\">inf</td>" in page and "<td class=\"num\">nan</td>" in page


def test_pages_render_every_column_the_table_has(tmp_path):
    table = pd.DataFrame({"init": ["a", "b"], "rate": [-0.5, 0.2], "verdict": ["vanishing", "exploding"],
                          "same_draws_as": ["b", "a"], "new_number": [1.25, 2.5]})
    files = report.write_report(_tiny_report(metrics=table), tmp_path / "rep")
    page, markdown = files.html.read_text(), files.markdown.read_text()
    for column in table.columns:
        assert f">{column}</th>" in page and f" {column} |" in markdown
    assert '<td class="num">1.25</td>' in page and "| a | -0.5 | vanishing | b | 1.25 |" in markdown
    assert f'background:{VERDICT_COLORS["exploding"]}"></span>exploding</td>' in page
    assert json.loads(files.metrics_json.read_text())["rows"][1] == {
        "init": "b", "rate": 0.2, "verdict": "exploding", "same_draws_as": "a", "new_number": 2.5}


def test_existing_folder_is_refused_without_force(tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        report.write_report(_tiny_report(), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    files = report.write_report(_tiny_report(), folder, force=True)
    assert (folder / "keep.txt").read_text() == "mine" and files.html.is_file()
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        report.check_output_folder(tmp_path / "file", force=True)


def _snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_a_write_stopped_half_way_leaves_the_previous_report_untouched(error, tmp_path, monkeypatch):
    folder = tmp_path / "rep"
    report.write_report(_tiny_report(title="previous"), folder)
    before = _snapshot(folder)

    def stop(*args, **kwargs):
        raise error("stopped")

    monkeypatch.setattr(report, "render_html", stop)  # after every other file has been written
    with pytest.raises(error):
        report.write_report(_tiny_report(title="new"), folder, force=True)
    assert _snapshot(folder) == before and "previous" in (folder / "report.html").read_text()
    with pytest.raises(error):
        report.write_report(_tiny_report(), tmp_path / "fresh")
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no half-written folder, no temporary folder


def test_ctrl_c_during_the_final_moves_is_delivered_after_them(tmp_path, monkeypatch):
    report.write_report(_tiny_report(title="previous"), tmp_path / "existing")
    move = staging._move_into_place

    def interrupted_move(source, target):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C arrives just as the files are being moved
        move(source, target)

    monkeypatch.setattr(staging, "_move_into_place", interrupted_move)
    for folder in (tmp_path / "new", tmp_path / "existing"):
        with pytest.raises(KeyboardInterrupt):
            report.write_report(_tiny_report(title="complete"), folder, force=True)
        assert sorted(_snapshot(folder)) == ["figures/f.png", "figures/f.svg", "lag_metrics.csv", "metrics.csv",
                                             "metrics.json", "report.html", "report.md"]
        assert "complete" in (folder / "report.html").read_text()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_settings_rebuild_every_builtin_cell():
    for cell in (gradscope.VanillaRNN(3, 2, activation="relu"), gradscope.LSTM(3, forget_bias=1.0),
                 gradscope.GRU(3, reset="before"), gradscope.LayerNormLSTM(3, epsilon=1e-3)):
        settings = json.loads(json.dumps(_cell_settings(cell)))
        options = {key: value for key, value in settings.items() if key != "type"}
        assert getattr(gradscope, settings["type"])(**options) == cell


def test_comparison_repr_html_has_table_and_inline_figures(comparison):
    page = comparison._repr_html_()
    assert page.count("data:image/png;base64,") == 2 and "<table" in page
    for row in comparison.to_dataframe().itertuples():
        assert row.init in page and row.verdict in page
        assert f"{row.rate:.4g}" in page
    assert not plt.get_fignums()  # the figures were closed: Jupyter will not show them twice


def test_spectra_repr_html_lists_each_batch_entry():
    cell = gradscope.VanillaRNN(8)
    xs = jax.random.normal(jax.random.key(1), (2, STEPS, 1))
    spectra = gradscope.jacobian_spectra(cell, cell.init(jax.random.key(0)), xs)
    page = spectra._repr_html_()
    summary = spectra.summary()
    assert page.count("data:image/png;base64,") == 1 and "backward products" in page
    for entry in range(2):
        assert f"{float(summary.rate[entry]):.4g}" in page and f"<td>{entry}</td>" in page
