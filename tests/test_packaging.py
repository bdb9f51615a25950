"""Packaging: the license, the typed marker, the version in one place, the import cost and the console entry."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import gradscope

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "scipy", "matplotlib")


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout


def test_license_file_is_the_declared_apache_license():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190   # the full text, not a stub


def test_version_is_written_once_and_the_command_reports_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "gradscope.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", gradscope.__version__)
    console = shutil.which("gradscope")          # the installed command, where the package is installed
    for command in [[sys.executable, "-m", "gradscope", "--version"]] + ([[console, "--version"]] if console else []):
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0 and result.stdout.strip() == f"gradscope {gradscope.__version__}"


def test_typed_marker_ships_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (ROOT / "gradscope" / "py.typed").exists()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["gradscope"]
    assert "Typing :: Typed" in project["project"]["classifiers"]


def test_import_and_first_analysis_names_load_no_tables_or_plots():
    loaded = _python("import sys, gradscope; a = set(sys.modules)\n"
                     "gradscope.jacobian_spectra, gradscope.VanillaRNN, gradscope.LSTM, gradscope.initializers.get\n"
                     "gradscope.theory.mean_field, gradscope.lyapunov.lyapunov_spectrum, gradscope.profile\n"
                     f"print([m for m in {HEAVY!r} if m in a], [m for m in {HEAVY!r} if m in sys.modules])")
    assert loaded.strip() == "[] []", loaded


def test_import_costs_a_quarter_of_jax_at_most():
    # in one fresh process: import jax, then gradscope and the names an analysis starts from; best of three runs
    code = ("import time; t0 = time.perf_counter(); import jax; t1 = time.perf_counter(); import gradscope\n"
            "gradscope.jacobian_spectra, gradscope.VanillaRNN, gradscope.theory.mean_field\n"
            "print(t1 - t0, time.perf_counter() - t1)")
    runs = [tuple(map(float, _python(code).split())) for _ in range(3)]
    jax_time, extra = min(runs, key=lambda run: run[1] / run[0])
    assert extra < 0.25 * jax_time, runs


def test_repository_cites_no_notes_outside_it():
    # the project stands on its own: no pointer to team notes that are not part of it
    outside = ("DESIGN" + ".md", "../" + "shared/", "design " + "notes")
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    if not tracked:   # not a git checkout (an sdist): check the package and the docs
        tracked = [str(p.relative_to(ROOT)) for d in ("gradscope", "docs") for p in (ROOT / d).rglob("*.*")]
    found = [f"{name}: {word}" for name in tracked if name.endswith((".py", ".md", ".toml", ".yml", ".ipynb"))
             for word in outside if word in (ROOT / name).read_text(errors="ignore")]
    assert not found, found
