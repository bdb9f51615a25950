"""`gradscope calibrate`: the critical gain of a linear orthogonal cell is exactly 1."""

import pandas as pd

from gradscope.cli import main


def test_calibrate_finds_gain_one_for_linear_orthogonal(tmp_path, capsys):
    csv = tmp_path / "evaluations.csv"
    status = main(["calibrate", "--activation", "linear", "--hidden", "8", "--steps", "30", "--seeds", "2",
                   "--inputs", "zeros", "--csv", str(csv)])
    assert status == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    gain = float(line.split("critical gain ")[1].split()[0])
    assert abs(gain - 1.0) < 1e-3
    table = pd.read_csv(csv)
    assert set(table.columns) >= {"gain", "rate", "init"} and (table["init"] == "orthogonal").all()


def test_calibrate_rejects_a_reversed_bracket(capsys):
    assert main(["calibrate", "--bracket", "3,1"]) == 2
    assert "expected 0 < LOW < HIGH" in capsys.readouterr().err


def test_calibrate_rejects_flags_of_another_cell(capsys):
    assert main(["calibrate", "--cell", "gru", "--forget-bias", "1"]) == 2
    assert "applies to --cell lstm only" in capsys.readouterr().err
