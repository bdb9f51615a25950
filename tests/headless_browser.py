"""Render a report page in headless Chromium: layout checks for tests, screenshots for people.

Used by ``tests/test_report_browser.py``; also a script for looking at a report::

    python tests/headless_browser.py gradscope-report/report.html --width 600 --png narrow.png
    python tests/headless_browser.py gradscope-report/report.html --width 1280   # print the checks

Needs Debian's ``chromium`` package (``apt-get install chromium``) or any Chromium or
Chrome on the PATH; no Python package beyond the standard library.

The checks run inside the page: a copy of it gets a small script that, once
everything has loaded, writes a JSON summary into a ``<pre>`` element, and
``chromium --dump-dom`` prints the resulting DOM.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")

_CHECK_ID = "gradscope-browser-check"

_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var root = document.documentElement, width = window.innerWidth;
  function box(element) { var r = element.getBoundingClientRect(); return [r.left, r.right, r.width, r.height]; }
  function name(element) {
    var classes = typeof element.className === "string" && element.className ? "." + element.className : "";
    return element.tagName.toLowerCase() + (element.id ? "#" + element.id : "") + classes;
  }
  function clipped(element) {  // inside a box that scrolls or hides its overflow
    for (var up = element.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") { return true; }
    }
    return false;
  }
  var overflowing = Array.from(document.body.querySelectorAll("*")).filter(function (element) {
    return element.getBoundingClientRect().right > width + 0.5 && !clipped(element);
  }).map(name);
  var result = {
    innerWidth: width, scrollWidth: root.scrollWidth, overflowing: overflowing.slice(0, 20),
    images: Array.from(document.images).map(function (image) {
      return {alt: image.alt, complete: image.complete, naturalWidth: image.naturalWidth,
              naturalHeight: image.naturalHeight, widthAttribute: Number(image.getAttribute("width")),
              box: box(image)};
    }),
    svgs: Array.from(document.querySelectorAll("svg")).map(box),
    links: Array.from(document.querySelectorAll("a[href]")).map(function (a) { return a.getAttribute("href"); }),
  };
  var out = document.createElement("pre");
  out.id = "%s";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>""" % _CHECK_ID


def find_browser() -> str | None:
    """Path of a Chromium-family browser on the PATH, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _run_browser(arguments: list[str], profile: str, timeout: float) -> str:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BROWSERS)}); install Debian's chromium")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
               *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, "LANG": "C"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def page_checks(page: Path, width: int, height: int = 900, timeout: float = 60) -> dict:
    """Load ``page`` at ``width`` x ``height`` CSS pixels and return what the check script measured.

    A copy of the page, with the check script added, is loaded from a temporary
    folder (the report folder is not touched; embedded figures need nothing else). Keys: ``innerWidth``, ``scrollWidth``, ``overflowing`` (up to
    20 elements reaching past the right edge, outside a sideways-scrolling box),
    ``images`` (``alt``, ``complete``, ``naturalWidth``, ``naturalHeight``,
    ``widthAttribute``, ``box`` = [left, right, width, height]), ``svgs`` (boxes) and
    ``links`` (every ``href``).
    """
    page = Path(page).resolve()
    text = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "page.html"
        probe.write_text(text.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
        dom = _run_browser([f"--window-size={width},{height}", "--virtual-time-budget=10000", "--dump-dom",
                            probe.as_uri()], str(Path(scratch) / "profile"), timeout)
    found = re.search(f'<pre id="{_CHECK_ID}">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"the check script left no result in the page; the DOM began: {dom[:500]!r}")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, width: int, height: int = 2400, timeout: float = 60) -> Path:
    """Save a PNG of the first ``height`` pixels of ``page`` at a window ``width`` CSS pixels wide."""
    png = Path(png).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        _run_browser([f"--window-size={width},{height}", "--virtual-time-budget=10000", f"--screenshot={png}",
                      Path(page).resolve().as_uri()], str(Path(scratch) / "profile"), timeout)
    return png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Look at a report page in headless Chromium.")
    parser.add_argument("page", type=Path, help="report.html")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels (default 1280)")
    parser.add_argument("--height", type=int, default=2400, help="screenshot height (default 2400)")
    parser.add_argument("--png", type=Path, default=None, help="write a screenshot here instead of printing checks")
    args = parser.parse_args(argv)
    if args.png is not None:
        print(screenshot(args.page, args.png, args.width, args.height))
    else:
        print(json.dumps(page_checks(args.page, args.width), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
