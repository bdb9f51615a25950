"""Every page's Python code blocks run as written, top to bottom, in one namespace per page.

A reader copies the blocks of a page in order; so does this test (in a temporary working
directory, with matplotlib's Agg backend). Blocks that would take long at the page's
sizes run at small ones: an HTML comment right before the block, invisible on the page,
lists textual replacements applied only here::

    <!--doc-test: "seeds=4" -> "seeds=1", "num_steps=200" -> "num_steps=20"-->

and a block that cannot run on its own at all (none today) would be marked
``<!--doc-test: illustrative-->``, and is then only compiled. Every replacement must
match: a page edit that removes its target fails the test.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parents[1] / "docs"
OTHER_OWNERS = {"training.md", "benchmarks.md", "adapters.md"}
"""Pages whose code their own helpers keep runnable (and test) themselves."""

_BLOCK = re.compile(r"(?:<!--doc-test:(?P<marker>.*?)-->\s*\n)?^```python[^\n]*\n(?P<code>.*?)^```\s*$", re.S | re.M)
_REPLACEMENT = re.compile(r'"(?P<old>(?:[^"\\]|\\.)*)"\s*->\s*"(?P<new>(?:[^"\\]|\\.)*)"')


def code_blocks(text: str) -> list[tuple[str, str | None]]:
    """``(code, marker)`` for each ```python block of a page, in order (marker: the doc-test comment, if any)."""
    return [(match["code"], (match["marker"] or "").strip() or None) for match in _BLOCK.finditer(text)]


def prepared(code: str, marker: str | None) -> str | None:
    """The code as the test runs it: with the marker's replacements; None for an illustrative block."""
    if marker is None:
        return code
    if marker == "illustrative":
        return None
    replacements = _REPLACEMENT.findall(marker)
    if not replacements:
        raise ValueError(f"unreadable doc-test marker {marker!r}: expected \"old\" -> \"new\", ... or illustrative")
    for old, new in replacements:
        if old not in code:
            raise ValueError(f"doc-test replacement target {old!r} is not in its block")
        code = code.replace(old, new)
    return code


PAGE_SETUP = {
    "cli.md": ["compare", "--hidden", "8", "--steps", "12", "--seeds", "2", "--quiet", "--no-cache",
               "--out", "gradscope-report"],
}
"""The shell command a page's reader runs before its Python blocks (as its bash blocks show), at small sizes."""


def _pages():
    return [page for page in sorted(DOCS.glob("*.md")) if page.name not in OTHER_OWNERS and code_blocks(page.read_text())]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_page_code_runs_top_to_bottom(page, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    if page.name in PAGE_SETUP:
        from gradscope import cli

        assert cli.main(PAGE_SETUP[page.name]) == 0
    module = types.ModuleType(f"docs_{page.stem}")  # a real module, as a script's: dataclasses look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for number, (code, marker) in enumerate(code_blocks(page.read_text()), 1):
        runnable = prepared(code, marker)
        compiled = compile(runnable if runnable is not None else code, f"{page.name} block {number}", "exec")
        if runnable is not None:
            exec(compiled, namespace)  # noqa: S102 - the page's own code, as a reader runs it
    plt.close("all")


def test_markers_apply_and_fail_loudly():
    text = '<!--doc-test: "seeds=4" -> "seeds=1"-->\n```python\nx = dict(seeds=4)\n```\n```python\ny = 2\n```\n'
    (first, marker), (second, none) = code_blocks(text)
    assert prepared(first, marker) == "x = dict(seeds=1)\n" and none is None and second == "y = 2\n"
    assert prepared("z = 1\n", "illustrative") is None
    with pytest.raises(ValueError, match="not in its block"):
        prepared("x = 1\n", '"seeds=4" -> "seeds=1"')
