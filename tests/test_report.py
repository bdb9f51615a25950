"""Report folders and Jupyter display: files, JSON rules, and that the pages carry the API's numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import gradscope  # noqa: E402
from gradscope import report  # noqa: E402

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
    assert len(built.figures[2].figure.axes) == 2 * len(INITS)  # one heatmap and its colour bar per initializer
    settings = dict(built.settings)
    assert settings["command"] == "test" and settings["cell"] == repr(comparison.cell)
    assert settings["seeds"] == "0, 1, 2" and settings["steps T"] == str(STEPS)
    assert built.title == f"gradscope report: VanillaRNN hidden 8 tanh, T={STEPS}"
    paths = {f.name: (f"figures/{f.name}.png", f"figures/{f.name}.svg") for f in built.figures}
    markdown = report.render_markdown(built, paths)
    assert report.markdown_table(comparison.to_dataframe()) in markdown
    assert all(f"![{f.title}](figures/{f.name}.png)" in markdown for f in built.figures)


def _tiny_report() -> report.Report:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    table = pd.DataFrame({"init": ["x", "y"], "rate": [0.5, np.nan], "horizon": [np.inf, 2.0]})
    return report.Report("tiny", (("a", "b"),), table, table, (report.ReportFigure("f", "F", "c", fig),))


def test_write_report_writes_every_file(tmp_path):
    files = report.write_report(_tiny_report(), tmp_path / "rep")
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "figures", "lag_metrics.csv", "metrics.csv", "metrics.json", "report.html", "report.md"]
    assert [p.name for p in files.figures] == ["f.svg", "f.png"]
    assert json.loads(files.metrics_json.read_text()) == [{"init": "x", "rate": 0.5, "horizon": None},
                                                          {"init": "y", "rate": None, "horizon": 2.0}]
    assert files.metrics_csv.read_text().splitlines() == ["init,rate,horizon", "x,0.5,inf", "y,nan,2.0"]
    assert "![F](figures/f.png)" in files.markdown.read_text()


def test_report_html_is_self_contained(tmp_path):
    files = report.write_report(_tiny_report(), tmp_path / "rep")
    page = files.html.read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources == ["data:image/png;base64," + base64.b64encode(files.figures[1].read_bytes()).decode("ascii")]
    assert "href=" not in page and "<link" not in page and "<script" not in page
    assert "<td>inf</td>" in page and "<td>nan</td>" in page


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
        assert f"{float(summary.rate[entry]):.4g}" in page and f"({entry},)" in page
