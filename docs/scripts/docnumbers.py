"""Numbers on the docs pages come from scripts: the page markers, the store, the check.

A page marks each generated number, phrase or table with an HTML comment pair that
Markdown does not show::

    log sigma_max - log RMS measures <!--gen:theory.bias_512_50-->2.33<!--/gen--> at n = 512

or, around a block (a table), on lines of their own::

    <!--gen:benchmarks.targets-->
    | target | measured |
    ...
    <!--/gen-->

The key is ``<store>.<name>``: the value lives in ``docs/data/<store>.json`` as the exact
text the page shows. A script in ``docs/scripts`` computes it and records it::

    from docnumbers import Numbers
    numbers = Numbers("theory")
    numbers["bias_512_50"] = f"{bias:.2f}"
    numbers.save()          # docs/data/theory.json (merged with the values already there)
    write_pages()           # every page's marked spans now show the stored text

``tests/test_docs_numbers.py`` fails when a page shows anything other than the stored
text, names a key no script stored, or when a script's quick recomputation disagrees
with the stored values: a script that can recompute some of its values in seconds
defines ``quick_numbers() -> (store, {name: text})`` and the test compares those texts
with the store (so the page cannot drift from the code either).

Run ``python docs/scripts/docnumbers.py`` to rewrite the pages from the stores, or
``--check`` to list the mismatches.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
DATA = DOCS / "data"
SPAN = re.compile(r"<!--gen:(?P<key>[\w.-]+)-->(?P<text>.*?)<!--/gen-->", re.S)

__all__ = ["DATA", "DOCS", "Numbers", "check_pages", "load_store", "publish", "render", "write_pages"]


def load_store(store: str) -> dict[str, str]:
    """The stored texts of one store (``docs/data/<store>.json``); empty if there is none yet."""
    path = DATA / f"{store}.json"
    return json.loads(path.read_text()) if path.exists() else {}


class Numbers(dict):
    """The values one script records, saved to ``docs/data/<store>.json``.

    Values are the exact text a page shows (format them as the page should read);
    a block value (a table) is multi-line text and is placed between newlines.
    """

    def __init__(self, store: str):
        super().__init__()
        if not re.fullmatch(r"[\w-]+", store):
            raise ValueError(f"store names are letters, digits, '_' and '-', got {store!r}")
        self.store = store

    def __setitem__(self, name: str, text) -> None:
        if not re.fullmatch(r"[\w-]+", name):
            raise ValueError(f"value names are letters, digits, '_' and '-', got {name!r}")
        if not isinstance(text, str):
            raise TypeError(f"record the text the page shows (a str, formatted), got {type(text).__name__} for {name}")
        super().__setitem__(name, text)

    def save(self) -> Path:
        """Merge these values into the store file (other names in it are kept) and return its path."""
        merged = {**load_store(self.store), **self}
        DATA.mkdir(parents=True, exist_ok=True)
        path = DATA / f"{self.store}.json"
        path.write_text(json.dumps(dict(sorted(merged.items())), indent=1, ensure_ascii=False) + "\n")
        return path


def _stored(key: str, cache: dict) -> str | None:
    store, _, name = key.partition(".")
    if store not in cache:
        cache[store] = load_store(store)
    return cache[store].get(name)


def _shown(stored: str, old: str) -> str:
    """A block value keeps the newlines around it that a block span has on the page."""
    return f"\n{stored}\n" if old.startswith("\n") else stored


def render(text: str, cache: dict | None = None) -> tuple[str, list[str]]:
    """``text`` with every marked span showing its stored value, and the keys nothing stored."""
    cache = {} if cache is None else cache
    missing = []

    def replace(match):
        stored = _stored(match["key"], cache)
        if stored is None:
            missing.append(match["key"])
            return match.group(0)
        return f"<!--gen:{match['key']}-->{_shown(stored, match['text'])}<!--/gen-->"

    return SPAN.sub(replace, text), missing


def pages() -> list[Path]:
    """Every Markdown page of the docs."""
    return sorted(DOCS.rglob("*.md"))


def check_pages() -> list[str]:
    """What is wrong on the pages: keys no script stored, spans whose text differs from the store."""
    problems, cache = [], {}
    for page in pages():
        text = page.read_text()
        rendered, missing = render(text, cache)
        name = page.relative_to(DOCS)
        problems += [f"{name}: no stored value for {key}" for key in missing]
        for old, new in zip(SPAN.finditer(text), SPAN.finditer(rendered)):
            if old.group(0) != new.group(0):
                problems.append(f"{name}: {old['key']} shows {old['text'].strip()[:60]!r}, "
                                f"its script stored {new['text'].strip()[:60]!r}")
    return problems


def write_pages() -> list[Path]:
    """Rewrite every page's marked spans from the stores; return the pages that changed."""
    changed, cache = [], {}
    for page in pages():
        text = page.read_text()
        rendered, _ = render(text, cache)
        if rendered != text:
            page.write_text(rendered)
            changed.append(page)
    return changed


def publish(*stores: Numbers, show: bool = False) -> None:
    """Save each store (printing its values with ``show``), rewrite every page's spans and name the pages changed.

    The last step of every docs script: with no store, only the pages are rewritten.
    """
    for numbers in stores:
        if show:
            for name, text in numbers.items():
                print(f"{name}:\n{text}\n" if "\n" in text else f"{name}: {text}")
        print(f"stored {numbers.save().relative_to(DOCS.parent)}")
    for path in write_pages():
        print(f"rewrote {path.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        found = check_pages()
        print("\n".join(found) or "every marked number matches its store")
        sys.exit(1 if found else 0)
    publish()
