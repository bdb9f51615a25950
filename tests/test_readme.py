"""The README's Python quick-start runs as written, and prints what it claims."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert len(_python_blocks()) >= 1


def test_readme_quick_start_runs(capsys):
    namespace = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "[1 2 3] (100, 64)" in out
    spectra = namespace["spectra"]
    assert spectra.log_singular_values.shape == (100, 64)
    table = namespace["comparison"].to_dataframe()
    assert list(table["init"]) == ["orthogonal", "glorot_normal", "he_normal"]
    assert set(table["verdict"]) <= {"vanishing", "stable", "exploding"}
