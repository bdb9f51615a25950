"""Keras layers through gradscope under the jax and the torch backend.

Keras fixes its backend at first import, so each backend's checks
(``tests/keras_cases.py``) run in a fresh interpreter; this file starts them and
reports their output. Plus the checks that need no backend.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

from gradscope import cells

CASES = pathlib.Path(__file__).with_name("keras_cases.py")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_layers_match_keras_under_each_backend(backend):
    for module in ("keras", backend):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(
        [str(CASES.parents[1]), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"KERAS_BACKEND={backend}:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and not re.search(r"\d+ (failed|error)", summary), summary


def test_missing_keras_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(ImportError, match=r"pip install gradscope\[keras\]"):
        cells.from_keras(object())
