"""The ``gradscope`` command: report folders, JSON against the API, exit status 2 with a message for bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import gradscope  # noqa: E402
from gradscope import cli, report  # noqa: E402
from gradscope.analysis.comparison import make_inputs  # noqa: E402

# In-process runs use the configuration of tests/test_plotting.py (compiled code is shared in one pytest run).
COMPARE_ARGS = ["--hidden", "8", "--steps", "10", "--seeds", "3", "--init", "orthogonal",
                "--init", "normal:stddev=0.8", "--init", "identity", "--quiet"]
REPORT_FILES = {"metrics.csv", "metrics.json", "lag_metrics.csv", "report.md", "report.html", "figures"}
FIGURES = {f"{name}.{suffix}" for name in ("lag_profile", "summary", "spectra", "density") for suffix in ("svg", "png")}


def _assert_report_folder(folder: Path) -> list[dict]:
    assert {p.name for p in folder.iterdir()} == REPORT_FILES
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    records = json.loads((folder / "metrics.json").read_text())  # strict JSON: no NaN/Infinity tokens
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
    assert "seeds = input sequences" in (out / "report.md").read_text()


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
