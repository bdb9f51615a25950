"""report.html in a real browser (headless Chromium): every figure loads, nothing overflows the page width.

Skipped where no Chromium is installed (``.ci/run`` installs Debian's ``chromium``).
Set ``GRADSCOPE_SCREENSHOTS=DIR`` to also save what the browser showed at each width.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import dataclasses  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import gradscope  # noqa: E402
from gradscope import report  # noqa: E402
from headless_browser import find_browser, page_checks, screenshot  # noqa: E402

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="no Chromium to render report.html in (install Debian's 'chromium' package; .ci/run does)")

# The configuration of tests/test_report.py and tests/test_plotting.py (compiled code is shared in one run).
INITS = ["orthogonal", ("normal", {"stddev": 0.8}), "identity"]
WIDTHS = {"desktop": 1280, "narrow": 600}  # headless Chromium windows are at least 500 px wide


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> report.ReportFiles:
    """A real report, its metrics table widened by two more columns as later versions may add."""
    comparison = gradscope.compare(gradscope.VanillaRNN(8), INITS, seeds=3, num_steps=10, progress=False)
    built = report.build_report(comparison, run={"command": "gradscope compare --hidden 8 --steps 10 --seeds 3 "
                                                            "--init orthogonal --init normal:stddev=0.8 --init identity "
                                                            "--out /a/rather/long/path/to/a/report/folder/name"})
    wider = built.metrics.assign(same_draws_as=["none", "none", "none"],
                                 comment=["a long free-text column that must not widen the page"] * 3)
    return report.write_report(dataclasses.replace(built, metrics=wider), tmp_path_factory.mktemp("browser") / "rep")


@pytest.mark.parametrize("width", WIDTHS.values(), ids=WIDTHS.keys())
def test_every_figure_loads_and_nothing_overflows_the_page(page, width):
    checks = page_checks(page.html, width)
    assert checks["innerWidth"] == width
    assert checks["scrollWidth"] <= width, f"the page is wider than the window; too wide: {checks['overflowing']}"
    assert checks["overflowing"] == []
    assert len(checks["images"]) == len(page.figures) // 2  # one embedded PNG per figure
    for image in checks["images"]:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image["alt"]
        assert abs(image["naturalWidth"] - 2 * image["widthAttribute"]) <= 1, image["alt"]  # 2x pixels
        left, right, shown_width, shown_height = image["box"]
        assert 0 <= left and right <= width and shown_width > 0.4 * min(width, image["widthAttribute"])
        assert shown_height / shown_width == pytest.approx(image["naturalHeight"] / image["naturalWidth"], rel=0.02)
    for link in checks["links"]:
        assert link.startswith("#") or (page.folder / link).exists(), link
    if os.environ.get("GRADSCOPE_SCREENSHOTS"):
        folder = Path(os.environ["GRADSCOPE_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        screenshot(page.html, folder / f"report-{width}px.png", width, height=4000)


def test_the_check_sees_an_overflowing_page_and_a_broken_image(tmp_path):
    wide = tmp_path / "wide.html"
    wide.write_text('<!DOCTYPE html><html><body><div id="banner" style="width:900px">wide</div>'
                    '<div style="overflow-x:auto"><table><tr><td style="width:1200px">scrolls</td></tr></table></div>'
                    '<img alt="broken" src="data:image/png;base64,AAAA"></body></html>')
    checks = page_checks(wide, 600)
    assert checks["scrollWidth"] > 600 and checks["overflowing"] == ["div#banner"]  # the scrolling box is not
    assert checks["images"][0]["naturalWidth"] == 0


def test_screenshot_helper_shows_the_page_at_the_asked_size(page, tmp_path):
    shot = screenshot(page.html, tmp_path / "shot.png", 600, height=900)
    with Image.open(shot) as image:
        assert image.size == (600, 900)
        darkest, lightest = image.convert("L").getextrema()
        assert lightest - darkest > 200  # text and figures, not a blank page
