"""Every number a docs page marks as generated shows exactly what its script stored.

The markers and stores are described in ``docs/scripts/docnumbers.py``. A script
that can recompute some of its values quickly defines ``quick_numbers()``; the
test reruns it and compares with the stored texts, so the page cannot drift from
the code either.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "docs" / "scripts"
sys.path.insert(0, str(SCRIPTS))
import docnumbers  # noqa: E402


def _scripts_with_quick_numbers():
    found = []
    for path in sorted(SCRIPTS.glob("*.py")):
        if "def quick_numbers(" in path.read_text():
            found.append(path)
    return found


def test_every_marked_span_shows_its_stored_value():
    assert docnumbers.check_pages() == []


def test_span_rendering_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(docnumbers, "DATA", tmp_path)
    numbers = docnumbers.Numbers("demo")
    numbers["rate"] = "-0.379"
    numbers["table"] = "| a |\n|---|\n| 1 |"
    numbers.save()
    page = "rate <!--gen:demo.rate-->0.0<!--/gen--> and\n<!--gen:demo.table-->\nold\n<!--/gen-->\n<!--gen:demo.gone-->x<!--/gen-->"
    rendered, missing = docnumbers.render(page)
    assert "rate <!--gen:demo.rate-->-0.379<!--/gen--> and" in rendered
    assert "<!--gen:demo.table-->\n| a |\n|---|\n| 1 |\n<!--/gen-->" in rendered
    assert missing == ["demo.gone"]


@pytest.mark.parametrize("path", _scripts_with_quick_numbers(), ids=lambda p: p.stem)
def test_quick_recomputation_matches_the_store(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store, values = module.quick_numbers()
    stored = docnumbers.load_store(store)
    assert {name: stored.get(name) for name in values} == values
