"""The figure helper process: it writes the same files, never outlives the command, and a failure costs only time."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import os  # noqa: E402
import pickle  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import pytest  # noqa: E402

import gradscope  # noqa: E402
from gradscope import report  # noqa: E402
from gradscope.display.figure_worker import FigureWorker  # noqa: E402

# The same configuration as tests/test_report.py, so compiled code is shared within a pytest run.
INITS = ["orthogonal", ("normal", {"stddev": 0.8}), "identity"]
SEEDS, STEPS = 3, 10
_REPO = str(Path(gradscope.__file__).parents[1])


@pytest.fixture(scope="module")
def comparison():
    return gradscope.compare(gradscope.VanillaRNN(8), INITS, seeds=SEEDS, num_steps=STEPS, progress=False)


class RecordingWorker(FigureWorker):
    """A FigureWorker that remembers which figures it took."""

    def submit(self, jobs):
        taken, refused = super().submit(jobs)
        self.taken = [Path(stem).name for _, stem, _ in taken]
        return taken, refused


def _svg_text(path: Path) -> str:
    """An SVG with what differs between any two saves blanked: the date and the random clip-path ids."""
    text = re.sub(r"<dc:date>[^<]*</dc:date>", "", path.read_text())
    return re.sub(r"\b(p|m|image)[0-9a-f]{10}\b", "ID", text)


def test_a_report_saved_half_by_the_helper_has_the_same_files(comparison, tmp_path):
    here = report.write_report(report.build_report(comparison), tmp_path / "here")
    with RecordingWorker() as worker:
        helped = report.write_report(report.build_report(comparison), tmp_path / "helped", worker=worker)
    assert 0 < len(worker.taken) < len(here.figures) / 2  # the helper drew some of the figures, not all
    for mine, theirs in zip(here.figures, helped.figures):
        if mine.suffix == ".png":
            assert mine.read_bytes() == theirs.read_bytes(), mine.name
        else:
            assert _svg_text(mine) == _svg_text(theirs), mine.name
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")  # when each page was made
    assert stamp.sub("", helped.html.read_text()) == stamp.sub("", here.html.read_text())


def test_report_figures_unpickle_with_matplotlib_alone(comparison, tmp_path):
    built = report.build_report(comparison)
    for figure in built.figures:
        (tmp_path / figure.name).write_bytes(pickle.dumps(figure.figure))
        plt.close(figure.figure)
    check = ("import pickle, sys\nfor name in sys.argv[1:]:\n    pickle.load(open(name, 'rb'))\n"
             "print(sorted(m for m in ('jax', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", check, *(str(tmp_path / f.name) for f in built.figures)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": _REPO})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # the helper needs neither JAX nor pandas: it starts in a third of the time


def _figure(formatter=None):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    if formatter is not None:
        ax.xaxis.set_major_formatter(formatter)
    return fig


def test_figures_that_cannot_be_pickled_are_handed_back(tmp_path):
    plain, odd = _figure(), _figure(mticker.FuncFormatter(lambda v, _: f"{v:.1f}"))
    jobs = [(odd, tmp_path / "odd", {"formats": ("png",)}), (plain, tmp_path / "plain", {"formats": ("png",)})]
    with FigureWorker() as worker:
        taken, refused = worker.submit(jobs)
        assert [job[1].name for job in taken] == ["plain"] and [job[1].name for job in refused] == ["odd"]
        assert worker.wait()
    assert (tmp_path / "plain.png").is_file() and not (tmp_path / "odd.png").exists()
    plt.close(plain), plt.close(odd)


def test_when_the_helper_is_gone_this_process_saves_its_figures(comparison, tmp_path, capsys):
    with FigureWorker() as worker:
        worker._process.kill()
        files = report.write_report(report.build_report(comparison), tmp_path / "out", worker=worker)
    assert all(path.is_file() for path in files.figures)
    assert "saving those figures in this process instead" in capsys.readouterr().err


_ORPHAN = """
import os
from gradscope.display.figure_worker import FigureWorker
print(FigureWorker()._process.pid, flush=True)
os._exit(0)  # the command ends without stopping its helper (killed, say)
"""


def test_the_helper_ends_when_the_command_does():
    done = subprocess.run([sys.executable, "-c", _ORPHAN], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": _REPO})
    pid = int(done.stdout)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), "the helper outlived its command"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
