"""Every number a docs page marks as generated shows exactly what its script stored.

The markers and stores are described in ``docs/scripts/docnumbers.py``. A script
that can recompute some of its values quickly defines ``quick_numbers()``; the
test reruns it and compares with the stored texts, so the page cannot drift from
the code either.
"""

from __future__ import annotations

import importlib.util
import re
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


# --- no hand-written numbers: a lint of the pages' prose ------------------------------------------
#
# What counts as a hand-written result: a decimal number (0.42, 1.6), a ratio or share (125-fold, 1.65x,
# 8 times, 4%), in prose, in tables and in inline math (a value with two or more decimals there), and any
# fenced output block that holds digits. Plain integers pass: on these pages they are sizes, counts, seeds,
# claim numbers and years, inputs rather than results (an integer result is put in a span all the same).
# Inputs written with a decimal point (a gain of 1.02, the 0.01 threshold) are listed per page in ALLOWED.

OTHER_OWNERS = {"training.md", "benchmarks.md", "adapters.md"}
"""Pages written by their own scripts or helpers (benchmarks.md by benchmarks/run_benchmarks.py), not linted here."""

CODE_FENCES = {"python", "bash", "sh", "console", "toml", "yaml"}
"""Fenced blocks that are code (inputs the reader runs); any other fenced block is output and must be generated."""

ALLOWED = {
    # Inputs, not results: settings a script or example is run with and option defaults, written with a
    # decimal point. Each entry is an exact phrase of its page.
    "claims.md": ["deviation 1", "below 0.01", "above 0.01", "$-0.01$", "$+0.01$", "±0.01", "scales 0, 0.1, 0.5, 1 and 2",
                  "scales 0.1, 0.5, 1 and 2", "the claimed 0.1", "say 0.1", "gains 1, 1.02 and 0.98",
                  "gains 0.98, 1 and 1.02", "scale 0.01", "At 1.02", "At 0.98", "$\\log 1.02$", "stddev=0.1"],
    "concepts.md": ["$-0.01$", "$+0.01$", "gain 1.05"],
    "cli.md": ["(rate < -0.01 and a finite horizon)", "(rate < -0.01 but sigma_max", "(rate < -0.01)", "(rate > 0.01)", "threshold (0.01)", "base64", "(seed 0)"],
    "explore.md": ["0.1 to 3"],
    "gallery.md": ["(3.4 in)", "sigma_max = 0.01", "(-0.01 and 0.01", "stddev 1"],
    "modern.md": ["ring [0.9, 0.999]", "$r_{\\max} = 0.999$", "$[0.9, 0.999]$", "$\\lambda = 0.999$", "| 0.9 |",
                  "| 0.99 |", "| 0.999 |", "| 0.9999 |", "$r = 0.95$", "phases up to 0.5"],
    "monitor.md": ["below 0.01"],
    "penalties.md": ["with gain 0.5"],
    "theory.md": ["gain 2.7", "gain 3.9", "0.25 to 8", "$\\sigma_w = 1.5$", "(say 0.1"],
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_RESULT = re.compile(r"\d*\.\d+|\d+(?:\s*%|-fold|×|x\b|\s+times\b)")
_RESULT_IN_MATH = re.compile(r"\d+\.\d{2,}")
_DIGIT = re.compile(r"\d")


def _blank(match: re.Match) -> str:
    """Keep the line count (so reported line numbers stay right), drop the text."""
    return "\n" * match.group(0).count("\n") or " "


def _line(text: str, match: re.Match) -> int:
    return text[:match.start()].count("\n") + 1


def stray_numbers(name: str, text: str) -> list[str]:
    """Hand-written results on a page: outside generated spans, code, the page's allow-list."""
    problems = []
    text = docnumbers.SPAN.sub(_blank, text)
    text = _COMMENT.sub(_blank, text)
    for phrase in ALLOWED.get(name, []):
        text = text.replace(phrase, " ")

    def fence(match):
        if match["lang"] not in CODE_FENCES and _DIGIT.search(match["body"]):
            problems.append(f"{name}:{_line(text, match)}: a ```{match['lang'] or '(plain)'} output block with "
                            "numbers outside a generated span (wrap it in <!--gen:store.name--> ... <!--/gen--> "
                            "and store it from a script)")
        return _blank(match)

    text = _FENCE.sub(fence, text)
    for pattern in (_DISPLAY_MATH, _INLINE_MATH):
        for match in pattern.finditer(text):
            if _RESULT_IN_MATH.search(match.group(0)):
                problems.append(f"{name}:{_line(text, match)}: a computed value in math, {match.group(0)[:60]!r}: "
                                "move it out of the math into a generated span")
        text = pattern.sub(_blank, text)
    text = _INLINE_CODE.sub(" ", text)
    text = _LINK_TARGET.sub("]", text)
    for number, line in enumerate(text.splitlines(), 1):
        if _RESULT.search(line):
            problems.append(f"{name}:{number}: hand-written number in {line.strip()[:90]!r}")
    return sorted(problems, key=lambda problem: int(problem.split(":")[1]))


def _linted_pages():
    return [page for page in docnumbers.pages() if page.name not in OTHER_OWNERS]


@pytest.mark.parametrize("page", _linted_pages(), ids=lambda p: p.name)
def test_pages_state_no_hand_written_numbers(page):
    problems = stray_numbers(page.name, page.read_text())
    assert not problems, ("numbers on a docs page must come from a script (docs/scripts/docnumbers.py); inputs "
                          "written with a decimal point go in ALLOWED of this test:\n" + "\n".join(problems))


def test_the_lint_catches_what_it_should():
    page = ("The rate is 0.42 per step, with 64 units.\n<!--gen:x.y-->0.5<!--/gen--> and `n = 3.5`, $\\sigma = 2$.\n"
            "```python\nx = 5.5\n```\n```text\nrate 3\n```\n$\\chi_1 = 0.774$\nLe et al. (2015), 125-fold, 4%.\n"
            "## 4. A claim\n")
    problems = stray_numbers("demo.md", page)
    assert [p.split(":")[1] for p in problems] == ["1", "6", "9", "10"], problems
    assert stray_numbers("demo.md", "fine <!--gen:x.y-->\n```text\n1 2 3\n```\n<!--/gen--> text\n") == []


_INLINE_SPAN_AT_LINE_START = re.compile(r"^[ \t]*<!--gen:[\w.-]+-->(?![ \t]*$)", re.M)


@pytest.mark.parametrize("page", _linted_pages(), ids=lambda p: p.name)
def test_inline_spans_do_not_start_a_line(page):
    # Markdown reads a line that starts with "<!--" as the start of an HTML block: inside a paragraph
    # it would break the paragraph there. Inline spans go after some text; block spans sit on their own lines.
    lines = [page.read_text()[:m.start()].count("\n") + 1 for m in _INLINE_SPAN_AT_LINE_START.finditer(page.read_text())]
    assert not lines, f"{page.name}: inline generated spans at the start of lines {lines}"
