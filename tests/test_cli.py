"""The ``gradscope`` command: report folders, JSON against the API, exit status 2 with a message for bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import gradscope  # noqa: E402
from gradscope import cli, report  # noqa: E402
from gradscope._interrupts import check_interrupted, remembering_interrupts  # noqa: E402
from gradscope.analysis.comparison import make_inputs  # noqa: E402

# In-process runs use the configuration of tests/test_plotting.py (compiled code is shared in one pytest run).
COMPARE_ARGS = ["--hidden", "8", "--steps", "10", "--seeds", "3", "--init", "orthogonal",
                "--init", "normal:stddev=0.8", "--init", "identity", "--quiet"]
REPORT_FILES = {"metrics.csv", "metrics.json", "lag_metrics.csv", "report.md", "report.html", "figures"}
FIGURES = {f"{name}.{suffix}" for name in ("lag_profile", "summary", "spectra", "density") for suffix in ("svg", "png")}


def _assert_report_folder(folder: Path) -> list[dict]:
    assert {p.name for p in folder.iterdir()} == REPORT_FILES
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    document = json.loads((folder / "metrics.json").read_text())  # strict JSON: no NaN/Infinity tokens
    assert list(document) == ["settings", "rows"]
    records = document["rows"]
    assert isinstance(records, list) and records
    for record in records:
        assert list(record) == list(report.METRIC_FIELDS)
        assert isinstance(record["init"], str) and isinstance(record["seeds"], int)
        assert record["verdict"] in gradscope.metrics.VERDICTS
        for key in ("rate", "rate_std", "horizon", "horizon_min", "horizon_max"):
            assert record[key] is None or isinstance(record[key], float)
    assert "data:image/png;base64," in (folder / "report.html").read_text()
    return records


def _assert_records_equal(records: list[dict], table: pd.DataFrame) -> None:
    assert [r["init"] for r in records] == list(table["init"])
    for record, row in zip(records, table.to_dict("records")):
        for key, value in row.items():
            if isinstance(value, float) and not np.isfinite(value):
                assert record[key] is None, key  # documented: inf/NaN are written as null
            else:
                assert record[key] == value, key


def _console_command() -> list[str]:
    script = Path(sys.executable).with_name("gradscope")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gradscope.cli"]


@pytest.fixture(scope="module", autouse=True)
def console_run(tmp_path_factory):
    """The installed ``gradscope`` command on the tiny configuration, started when this module starts.

    It runs in the background (a second process, so on a second core) while the in-process tests run;
    the last test of the module waits for it and checks its report.
    """
    out = tmp_path_factory.mktemp("console") / "report"
    process = subprocess.Popen([*_console_command(), "compare", "--hidden", "8", "--steps", "10", "--seeds", "2",
                                "--init", "orthogonal", "--init", "he_normal", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "MPLBACKEND": "Agg"})
    yield process, out
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "report"
    status = cli.main(["compare", *COMPARE_ARGS, "--out", str(folder)])
    return status, folder


def test_compare_writes_the_report_with_the_apis_values(compare_run):
    status, folder = compare_run
    assert status == 0
    records = _assert_report_folder(folder)
    expected = gradscope.compare(gradscope.VanillaRNN(8), ["orthogonal", ("normal", {"stddev": 0.8}), "identity"],
                                 seeds=3, num_steps=10).to_dataframe()
    _assert_records_equal(records, expected)
    assert any(r["horizon"] is None for r in records)  # identity never falls below the threshold in 10 steps
    table = pd.read_csv(folder / "metrics.csv", dtype={"identical_to": str}, keep_default_na=False,
                        na_values={c: ["nan"] for c in expected.columns if c != "identical_to"})
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert "gradscope compare --hidden 8" in (folder / "report.md").read_text()


def test_existing_folder_is_refused_without_force(compare_run, capsys):
    status, folder = compare_run
    before = (folder / "metrics.json").stat().st_mtime_ns
    assert cli.main(["compare", *COMPARE_ARGS, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert (folder / "metrics.json").stat().st_mtime_ns == before


@pytest.mark.parametrize("argv, message", [
    (["compare", "--cell", "rnn"], "invalid choice: 'rnn'"),
    (["compare", "--hidden", "0"], "expected a positive integer"),
    (["compare", "--init", "orthogonal:gain"], "key=value"),
    (["compare", "--init", "orthogonl"], "unknown initializer 'orthogonl'; valid names are"),
    (["compare", "--init", "orthogonal:scale=2"], "takes gain"),
    (["compare", "--activation", "tanhh"], "unknown activation 'tanhh'"),
    (["compare", "--cell", "lstm", "--activation", "relu"], "--activation applies to --cell vanilla only"),
    (["compare", "--cell", "vanilla", "--forget-bias", "1"], "--forget-bias applies to --cell lstm only"),
    (["compare", "--steps", "10", "--lags", "5,20"], "lags must lie in [0, T]"),
    (["compare", "--lags", "some"], "expected 'all', 'log' or comma-separated ints"),
    (["compare", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["analyze", "--cell", "lstm"], "the following arguments are required: --params"),
    ([], "choose a command"),
])
def test_bad_arguments_exit_2_with_the_fix(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path / "never")] if argv else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_parse_init_reads_typed_options():
    assert cli.parse_init("he_normal") == "he_normal"
    assert cli.parse_init("orthogonal:gain=1.1") == ("orthogonal", {"gain": 1.1})
    assert cli.parse_init("normal:stddev=2") == ("normal", {"stddev": 2})
    assert cli.parse_init("glorot_normal:gain=0.5,distribution=truncated_normal") == \
        ("glorot_normal", {"gain": 0.5, "distribution": "truncated_normal"})
    assert cli.parse_lags("1,2,5") == (1, 2, 5) and cli.parse_lags("log") == "log"


def _save_params(path: Path, params) -> None:
    np.savez(path, **{name: np.asarray(value) for name, value in params._asdict().items()})


def test_analyze_reports_on_saved_parameters(tmp_path, capsys):
    cell = gradscope.VanillaRNN(8)
    params = cell.init(jax.random.key(5), recurrent_init=("orthogonal", {"gain": 1.2}))
    _save_params(tmp_path / "mine.npz", params)
    out = tmp_path / "report"
    assert cli.main(["analyze", "--cell", "vanilla", "--params", str(tmp_path / "mine.npz"), "--steps", "10",
                     "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    (record,) = _assert_report_folder(out)
    # Independent route: the same two input draws, spectra of the saved parameters, seed statistics by hand.
    xs = make_inputs("gaussian", (0, 1), 10, 1)
    summary = gradscope.jacobian_spectra(cell, params, xs).summary()
    assert record["init"] == "mine" and record["seeds"] == 2
    assert np.isclose(record["rate"], np.mean(np.asarray(summary.rate, np.float64)), rtol=1e-6)
    assert np.isclose(record["rate_std"], np.std(np.asarray(summary.rate, np.float64)), rtol=1e-5, atol=1e-9)
    horizons = np.asarray(summary.horizon, np.float64)
    expected = [None if np.isinf(h) else h for h in (np.median(horizons), horizons.min(), horizons.max())]
    assert [record["horizon"], record["horizon_min"], record["horizon_max"]] == pytest.approx(expected)
    assert "seeds are input sequences" in (out / "report.md").read_text()
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["parameters"]["sha256"] == hashlib.sha256((tmp_path / "mine.npz").read_bytes()).hexdigest()
    assert settings["cell"] == {"type": "VanillaRNN", "hidden_size": 8, "input_size": 1, "activation": "tanh"}


@pytest.mark.parametrize("arrays, message", [
    ({"recurrent_kernel": np.zeros((8, 32)), "input_kernel": np.zeros((1, 32))},
     "lacks array(s) ['bias'] for --cell lstm"),
    ({"recurrent_kernel": np.zeros((8, 32)), "input_kernel": np.zeros((1, 32)), "bias": np.zeros(31)},
     "array 'bias' in"),
    ({"recurrent_kernel": np.zeros((8, 32)), "input_kernel": np.zeros((1, 32)), "bias": np.zeros(31)},
     "expects (32,)"),
    ({"recurrent_kernel": np.zeros(8), "input_kernel": np.zeros((1, 32)), "bias": np.zeros(32)},
     "must be 2-D"),
])
def test_analyze_names_the_missing_or_misshapen_array(arrays, message, tmp_path, capsys):
    np.savez(tmp_path / "p.npz", **arrays)
    status = cli.main(["analyze", "--cell", "lstm", "--params", str(tmp_path / "p.npz"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err


def test_analyze_refuses_pickled_files(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / "p.npy").rename(tmp_path / "p.npz")
    assert cli.main(["analyze", "--cell", "vanilla", "--params", str(tmp_path / "p.npz"),
                     "--out", str(tmp_path / "r")]) == 2
    assert "could not read" in capsys.readouterr().err


def test_analyze_overflow_exits_1_with_the_message(tmp_path, capsys, monkeypatch):
    cell = gradscope.VanillaRNN(8)
    _save_params(tmp_path / "p.npz", cell.init(jax.random.key(0)))

    def overflowing(*args, **kwargs):
        raise gradscope.NumericalOverflowError("the unrolled states became inf/NaN; lower the recurrent gain")

    monkeypatch.setattr(gradscope, "jacobian_spectra", overflowing)
    status = cli.main(["analyze", "--cell", "vanilla", "--params", str(tmp_path / "p.npz"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 1 and "inf/NaN; lower the recurrent gain" in err and "Traceback" not in err


def _compare_from_settings(settings: dict) -> gradscope.Comparison:
    """Run the analysis again from metrics.json's settings block alone, as a program reading it would."""
    cell_options = {key: value for key, value in settings["cell"].items() if key != "type"}
    cell = getattr(gradscope, settings["cell"]["type"])(**cell_options)
    specs = {item["label"]: (item["name"], item["options"]) for item in settings["initializers"]}
    return gradscope.compare(cell, specs, seeds=settings["seeds"], num_steps=settings["num_steps"],
                             inputs=settings["inputs"], input_scale=settings["input_scale"], lags=settings["lags"],
                             num_log_lags=settings["num_log_lags"], input_init=settings["input_init"],
                             bias_init=settings["bias_init"], dtype=settings["dtype"],
                             thresholds=gradscope.Thresholds(**settings["thresholds"]), progress=False)


def test_the_settings_block_alone_reproduces_the_rows(tmp_path):
    out = tmp_path / "report"
    # The shapes of COMPARE_ARGS (compiled code is shared); options that change the numbers but not the shapes.
    assert cli.main(["compare", "--hidden", "8", "--steps", "10", "--seeds", "3", "--init", "orthogonal:gain=1.1",
                     "--init", "he_normal", "--init", "normal:stddev=0.8", "--input-scale", "0.5", "--out", str(out),
                     "--quiet"]) == 0
    document = json.loads((out / "metrics.json").read_text())
    settings = document["settings"]
    assert settings["cell"] == {"type": "VanillaRNN", "hidden_size": 8, "input_size": 1, "activation": "tanh"}
    assert settings["initializers"][0] == {"label": "orthogonal(gain=1.1)", "name": "orthogonal",
                                           "options": {"gain": 1.1}}
    assert settings["input_scale"] == 0.5 and settings["seeds"] == [0, 1, 2] and settings["dtype"] == "float32"
    assert settings["versions"]["gradscope"] == gradscope.__version__ and settings["versions"]["jax"] == jax.__version__
    again = _compare_from_settings(settings)
    assert report.metrics_records(again.to_dataframe()) == document["rows"]  # exactly the same numbers
    assert settings["analysed_lags"] == [int(k) for k in again.lags] == list(range(1, 11))
    default_scale = _compare_from_settings({**settings, "input_scale": 1.0}).to_dataframe()
    assert report.metrics_records(default_scale) != document["rows"]  # the recorded scale mattered


def _snapshot(folder: Path) -> dict:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
def test_ctrl_c_during_the_analysis_prints_one_line_and_exits_130(existing, tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    if existing:
        out.mkdir()
        (out / "report.html").write_text("the previous report")
    before = _snapshot(out) if existing else None

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradscope, "compare", interrupted)
    assert cli.main(["compare", *COMPARE_ARGS, "--force", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("gradscope compare: interrupted; no report written")
    assert ("is unchanged" if existing else "was not created") in err
    assert (_snapshot(out) == before) if existing else not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["report"] if existing else [])  # no temporary folder left


def test_ctrl_c_while_writing_leaves_the_previous_report_whole(compare_run, tmp_path, capsys, monkeypatch):
    _, previous = compare_run
    before = _snapshot(previous)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "render_html", interrupted)  # the last file written: all the others exist by then
    assert cli.main(["compare", *COMPARE_ARGS, "--force", "--out", str(previous)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is unchanged" in err and "Traceback" not in err
    assert _snapshot(previous) == before
    assert [p.name for p in previous.parent.iterdir()] == [previous.name]


def test_a_ctrl_c_that_a_library_swallowed_still_stops_the_command(compare_run, tmp_path, capsys, monkeypatch):
    real_compare = gradscope.compare

    def swallowing(*args, **kwargs):
        try:  # Ctrl-C lands in library code that drops the exception (as JAX's garbage-collection callback does)
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return real_compare(*args, **kwargs)

    monkeypatch.setattr(gradscope, "compare", swallowing)
    out = tmp_path / "report"
    assert cli.main(["compare", *COMPARE_ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no report written" in err and not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_dropped_in_a_gc_callback_is_kept_quiet_and_raised_again(monkeypatch):
    unraisable, raised = [], []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)  # where Python reports what it drops

    def callback(phase, info):  # how JAX loses Ctrl-C: its callback runs on every garbage collection
        if phase == "start" and len(raised) < 2:
            raised.append(True)
            signal.raise_signal(signal.SIGINT) if len(raised) == 1 else int("not a number")

    gc.callbacks.append(callback)
    try:
        with remembering_interrupts():
            gc.collect()  # Python drops the KeyboardInterrupt raised in the callback
            gc.collect()  # ... and then a ValueError, which is still reported
            with pytest.raises(KeyboardInterrupt):
                check_interrupted()
    finally:
        gc.callbacks.remove(callback)
    assert [type(u.exc_value) for u in unraisable] == [ValueError]  # no "Exception ignored ..." for Ctrl-C
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and sys.unraisablehook == unraisable.append
    with remembering_interrupts():
        check_interrupted()  # nothing pending in the next command: a new block forgets earlier presses


_FAKE_CLI = """
import importlib.abc, importlib.util, signal, sys
import gradscope.__main__ as entry

class FakeCli(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "gradscope.cli" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):  # stands in for importing gradscope.cli (and JAX): Ctrl-C arrives meanwhile
        ACTION
        module.main = lambda: 0

sys.meta_path.insert(0, FakeCli())
entry.console_main()
"""


@pytest.mark.parametrize("action, status, err", [
    ("pass", 0, ""),
    ("raise KeyboardInterrupt", 130, "gradscope: interrupted\n"),
    ("try:\n            signal.raise_signal(signal.SIGINT)\n        except KeyboardInterrupt:\n            pass", 130,
     "gradscope: interrupted\n"),  # swallowed by the code being imported
], ids=["no-interrupt", "interrupt", "swallowed-interrupt"])
def test_console_command_exits_130_after_one_line_when_interrupted_while_importing(action, status, err):
    done = subprocess.run([sys.executable, "-c", _FAKE_CLI.replace("ACTION", action)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(gradscope.__file__).parents[1])})
    assert (done.returncode, done.stderr) == (status, err)


_GC_CLI = """
import atexit, gc, importlib.abc, importlib.util, sys
import gradscope.__main__ as entry

running = []

class FakeCli(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "gradscope.cli" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):  # stands in for importing gradscope.cli, JAX, matplotlib
        module.long_lived = [[] for _ in range(1000)]
        print("importing:", gc.isenabled())
        module.main = main

def main():
    running.append(gc.get_freeze_count())
    print("running:", gc.isenabled(), running[0] >= 1000)
    running.append([[] for _ in range(100)])  # made by the run, alive at exit
    return 0

sys.meta_path.insert(0, FakeCli())
atexit.register(lambda: print("torn down"))
entry.console_main()
"""


def _run_fake_cli(source: str):
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(gradscope.__file__).parents[1])})


def test_console_command_spares_its_process_the_collectors_full_traversals():
    done = _run_fake_cli(_GC_CLI)
    assert done.returncode == 0, done.stderr
    # imports run without the collector; what they made is frozen, and collection is back on for the run
    assert done.stdout.splitlines()[:2] == ["importing: False", "running: True True"]


@pytest.mark.parametrize("status", [0, 1, 2])
def test_console_command_ends_with_its_output_flushed_and_no_teardown(status):
    # the output is still in Python's buffers when main returns (stdout is a pipe); the atexit
    # handler stands in for the teardown (JAX's backend shutdown) the command skips
    done = _run_fake_cli(_GC_CLI.replace("    return 0", f"    print('partial line', end='')\n    return {status}"))
    assert done.returncode == status, done.stderr
    assert done.stdout.splitlines() == ["importing: False", "running: True True", "partial line"]


def test_console_script_runs_the_tiny_comparison(console_run):
    process, out = console_run
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    records = _assert_report_folder(out)
    assert [r["init"] for r in records] == ["orthogonal", "he_normal"] and records[0]["seeds"] == 2
    assert "report written to" in stdout and "orthogonal" in stdout
    again = subprocess.run([*_console_command(), "compare", "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
