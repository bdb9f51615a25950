"""Every notebook in notebooks/ runs top to bottom in a live kernel and shows what it draws.

Each notebook is executed with nbclient under Jupyter's inline backend (the backend a
user's kernel loads). Then every code cell is checked against its source: a cell that
makes figures must show them as ``image/png`` outputs (exactly as many as it makes,
where the source says how many), a cell that makes none shows none, and no cell
writes to stderr (no warnings such as tqdm's "IProgress not found", no errors).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

FIGURE_MAKERS = {"figure_grid", "new_axes", "subplots", "figure", "subplot_mosaic"}
"""Calls that make one new figure (besides ``plot_*`` calls without ``ax=``)."""


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _makes_figure(call: ast.Call) -> bool:
    name = _name(call.func)
    has_ax = any(keyword.arg == "ax" for keyword in call.keywords)
    if name.startswith("plot_"):
        return not has_ax
    if name in ("subplots", "figure", "subplot_mosaic"):  # pyplot's; a method such as fig.subplots adds none
        return isinstance(call.func, ast.Attribute) and _name(call.func.value) == "plt"
    return name in FIGURE_MAKERS and not has_ax


def expected_figures(source: str) -> tuple[int, bool]:
    """``(figures, exact)``: how many figures a cell makes, and whether that count is exact.

    A figure is made by a ``plot_*`` call without ``ax=``, ``figure_grid``/``new_axes``,
    or pyplot's ``subplots``/``figure``/``subplot_mosaic``. Inside a loop or a function
    the count is a lower bound.
    """
    tree = ast.parse(source)
    count, exact = 0, True

    def visit(node, repeated: bool):
        nonlocal count, exact
        if isinstance(node, ast.Call) and _makes_figure(node):
            count += 1
            exact = exact and not repeated
        inner = repeated or isinstance(node, (ast.For, ast.While, ast.FunctionDef, ast.Lambda, ast.comprehension))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return count, exact


def test_figure_counting_reads_the_source():
    assert expected_figures("fig = plotting.plot_lag_profile(comparison)") == (1, True)
    assert expected_figures("fig, axes = plotting.figure_grid(2)\nplot_summary(c, ax=axes[0])") == (1, True)
    assert expected_figures("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1])") == (1, True)
    assert expected_figures("for c in cs:\n    plotting.plot_summary(c)") == (1, False)
    assert expected_figures("table = comparison.to_dataframe()\nprint(table)") == (0, True)
    assert expected_figures("sub = fig.subfigures(2)\naxes = sub[0].subplots(2)") == (0, True)


def test_notebooks_are_present():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "initializers_tanh_relu.ipynb",
                                           "lstm_gru.ipynb", "custom_cell.ipynb"}


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.outputs)


def _stderr(cell) -> list[str]:
    return [output.get("text", "") for output in cell.outputs if output.get("name") == "stderr"]


@pytest.fixture(scope="module")
def executed():
    """Run each notebook once (in the inline backend, as a Jupyter kernel would) and keep it."""
    runs = {}

    def run(path):
        if path not in runs:
            notebook = nbformat.read(path, as_version=4)
            assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
                f"{path.name} is stored with outputs; strip them"
            previous = os.environ.get("MPLBACKEND")
            os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
            try:
                NotebookClient(notebook, timeout=300, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}}).execute()
            finally:
                if previous is None:
                    del os.environ["MPLBACKEND"]
                else:
                    os.environ["MPLBACKEND"] = previous
            runs[path] = notebook
        return runs[path]

    return run


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shows_every_figure_it_draws(path, executed):
    notebook = executed(path)
    problems = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        figures, exact = expected_figures(cell.source)
        shown = _images(cell)
        first_line = cell.source.splitlines()[0] if cell.source else ""
        if (exact and shown != figures) or (not exact and shown < max(figures, 1)):
            problems.append(f"cell {number} ({first_line!r}) draws {'' if exact else 'at least '}{figures} "
                            f"figure(s) but shows {shown} image(s)")
        problems += [f"cell {number} ({first_line!r}) wrote to stderr: {text[:300]!r}" for text in _stderr(cell)]
        problems += [f"cell {number} raised {out.ename}: {out.evalue}" for out in cell.outputs
                     if out.output_type == "error"]
    assert not problems, "\n".join(problems)


def test_quickstart_shows_a_users_figure_between_two_gradscope_figures(executed):
    """The regression this suite guards: a gradscope figure must not stop later figures from showing."""
    notebook = executed(ROOT / "notebooks" / "quickstart.ipynb")
    kinds = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and _images(cell):
            kinds.append("user" if "plt.subplots" in cell.source else "gradscope")
    assert "gradscope" in kinds and "user" in kinds
    first_user = kinds.index("user")
    assert "gradscope" in kinds[:first_user] and "gradscope" in kinds[first_user + 1:], kinds
