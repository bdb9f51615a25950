"""Classic and modern cells side by side: compare_cells against separate analyses, and the CLI modes for modern cells.

Every row of a lineup must be what a separate ``jacobian_spectra`` / ``memory_sensitivity``
call on that cell gives for the same seed, parameters and inputs.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gradscope  # noqa: E402
from gradscope import cli  # noqa: E402
from gradscope.analysis.comparison import make_inputs  # noqa: E402
from gradscope.analysis.lineup import Contender, state_size  # noqa: E402

SEEDS, STEPS = (0, 3), 12
CONTENDERS = [Contender("LSTM chrono", gradscope.LSTM(4), {"bias_init": ("chrono", {"t_max": 20.0})}),
              Contender("LRU", gradscope.LRU(4, r_min=0.5, r_max=0.9))]


@pytest.fixture(scope="module")
def lineup():
    return gradscope.compare_cells(CONTENDERS, seeds=SEEDS, num_steps=STEPS, progress=False)


def test_each_row_equals_separate_analyses_of_that_cell(lineup, reference):
    per_seed = lineup.to_dataframe(per_seed=True).set_index(["init", "seed"])
    for i, contender in enumerate(CONTENDERS):
        inputs = make_inputs("gaussian", SEEDS, STEPS, contender.cell.input_size)
        for j, seed in enumerate(SEEDS):
            params = contender.cell.init(jax.random.key(seed), **contender.init_options)
            one = gradscope.jacobian_spectra(contender.cell, params, inputs[j])
            reference.assert_same(lineup.spectra.log_singular_values[i, j], one.log_singular_values)
            memory = gradscope.memory_sensitivity(contender.cell, params, inputs[j], lags=(STEPS,))
            row = per_seed.loc[(contender.label, seed)]
            np.testing.assert_allclose(row["sensitivity"], np.exp(float(memory.log_total)), rtol=1e-4)
            np.testing.assert_allclose(row["relative_sensitivity"],
                                       np.exp(float(memory.log_total - memory.log_state_norm)), rtol=1e-4)
            assert row["state_size"] == 8 and row["horizon"] == pytest.approx(float(one.summary().horizon), rel=1e-4)
    table = lineup.to_dataframe()
    assert table["recurrent_params"].tolist() == [64, 8]  # LSTM W_hh 4 x 16; LRU nu, theta
    np.testing.assert_allclose(table["sensitivity"], per_seed.groupby("init", sort=False)["sensitivity"].mean(),
                               rtol=1e-6)


def test_default_lineup_matches_state_sizes_and_validates():
    for n in (4, 12):
        contenders = gradscope.default_lineup(n, t_max=30.0)
        assert {state_size(c.cell) for c in contenders} == {n}
        assert len({c.label for c in contenders}) == len(contenders) == 15
    with pytest.raises(ValueError, match="state_size must be an even int"):
        gradscope.default_lineup(7)
    with pytest.raises(ValueError, match="matched state sizes"):
        gradscope.compare_cells([Contender("a", gradscope.GRU(4)), Contender("b", gradscope.GRU(6))], num_steps=4)
    with pytest.raises(ValueError, match="labels must be distinct"):
        gradscope.compare_cells([Contender("a", gradscope.GRU(4)), Contender("a", gradscope.MinGRU(4))], num_steps=4)
    assert repr(gradscope.analysis.lineup.Lineup(tuple(CONTENDERS[:2]))) == "Lineup(2 contenders: LSTM chrono; LRU)"


def test_cli_compares_a_modern_cell_under_its_own_initializers(tmp_path):
    out = tmp_path / "lru"
    assert cli.main(["compare", "--cell", "lru", "--hidden", "3", "--steps", "8", "--seeds", "2", "--quiet",
                     "--out", str(out)]) == 0
    records = json.loads((out / "metrics.json").read_text())["rows"]
    assert [r["init"] for r in records] == ["ring(r_min=0.9, r_max=0.999)", "ring(r_min=0.0, r_max=1.0)"]
    (row,) = gradscope.compare(gradscope.LRU(3), [("ring", {"r_min": 0.9, "r_max": 0.999})], seeds=2, num_steps=8,
                               progress=False).to_dataframe().to_dict("records")
    assert records[0]["rate"] == pytest.approx(row["rate"], rel=1e-5)


def test_cli_lineup_and_its_usage_errors(tmp_path, capsys):
    out = tmp_path / "cells"
    assert cli.main(["compare", "--cells", "mingru", "--state-size", "4", "--t-max", "20", "--steps", "8",
                     "--seeds", "1", "--quiet", "--out", str(out)]) == 0
    records = json.loads((out / "metrics.json").read_text())["rows"]
    assert [r["init"] for r in records] == ["minGRU, zero gate bias", "minGRU, chrono(t_max=20)"]
    assert all(r["state_size"] == 4 and r["sensitivity"] > 0 for r in records)
    assert "Lineup(2 contenders" in (out / "report.md").read_text()
    assert cli.main(["compare", "--cells", "--hidden", "8", "--out", str(tmp_path / "bad")]) == 2
    assert "--hidden selects or sizes one cell" in capsys.readouterr().err


def test_cli_analyze_reads_modern_parameter_files(tmp_path):
    cell = gradscope.SelectiveSSM(3, 4, dt_rank=2)
    params = cell.init(jax.random.key(1))
    np.savez(tmp_path / "ssm.npz", **{name: np.asarray(v) for name, v in params._asdict().items()})
    loaded_cell, loaded, ignored = cli.load_params(tmp_path / "ssm.npz", "selective")
    assert loaded_cell == cell and ignored == []
    for name, value in params._asdict().items():
        np.testing.assert_array_equal(getattr(loaded, name), value)
