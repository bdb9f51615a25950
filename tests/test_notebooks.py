"""Every notebook in notebooks/ runs top to bottom, and shows what it draws.

A notebook is executed in a real kernel with Jupyter's inline backend, as a user runs
it. Each code cell that creates figures (a ``gradscope.plotting`` function without
``ax=``, ``figure_grid``, ``plt.subplots`` or ``plt.figure``) must show at least as many
PNG images; no cell may fail or print a progress-bar warning.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
_NEW_FIGURE = {"figure_grid", "subplots", "figure"}


def expected_figures(source: str) -> int:
    """Figures a cell's code creates, counted from its calls (one per call site)."""
    count = 0
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        draws_new = name.startswith("plot_") and not any(k.arg == "ax" for k in node.keywords)
        count += draws_new or name in _NEW_FIGURE
    return count


def _images(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


def _executed(path: Path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        f"{path.name} is stored with outputs; strip them"
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def test_notebooks_are_present():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "initializers_tanh_relu.ipynb",
                                           "lstm_gru.ipynb", "custom_cell.ipynb"}


def test_expected_figures_counts_call_sites():
    assert expected_figures("fig = plotting.plot_lag_profile(c)\nfig2, ax = plt.subplots()") == 2
    assert expected_figures("fig, axes = plotting.figure_grid(2)\nplot_summary(c, ax=axes[0])") == 1
    assert expected_figures("print(comparison.to_dataframe())") == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_shows_every_figure(path, monkeypatch):
    notebook = _executed(path, monkeypatch)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [out for cell in cells for out in cell.outputs if out.output_type == "error"]
    assert not errors
    missing = [(i, expected_figures(cell.source), _images(cell)) for i, cell in enumerate(cells)
               if _images(cell) < expected_figures(cell.source)]
    assert missing == [], "cells (index, figures drawn, images shown) that hide figures"
    warnings = [out.text for cell in cells for out in cell.outputs
                if out.output_type == "stream" and "IProgress not found" in out.text]
    assert warnings == []


def test_your_own_figure_after_a_gradscope_figure_is_shown(monkeypatch):
    """quickstart draws a gradscope figure, then one of its own with pyplot, then another gradscope figure."""
    notebook = _executed(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("quickstart.ipynb")], monkeypatch)
    sequence = [("plt." in cell.source, _images(cell)) for cell in notebook.cells
                if cell.cell_type == "code" and expected_figures(cell.source)]
    own = [index for index, (is_own, _) in enumerate(sequence) if is_own]
    assert own and 0 < own[0] < len(sequence) - 1
    assert all(images == 1 for _, images in sequence[own[0] - 1: own[0] + 2])
