"""The CPU pipeline (sweep in compiled chunks, SVDs on host threads) equals the one-program sweep.

Both take the same products with the same LAPACK routine, one matrix per call, so the
results agree to float32 rounding of reductions (``TOL`` = 1e-6; float32 eps is 1.2e-7).
The one-program sweep is itself checked against ``jax.jacrev`` in test_spectra.py, and
the pipeline is checked there too (``pipelined=True``).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import gradscope
from gradscope import pipeline

TOL = 1e-6
FIELDS = ("log_singular_values", "log_frobenius", "log_floor", "finite")


def _assert_same(a, b):
    np.testing.assert_array_equal(a.lags, b.lags)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=TOL, err_msg=name)


def _both(cell, params, xs, **options):
    one_program = gradscope.jacobian_spectra(cell, params, xs, pipelined=False, **options)
    return one_program, gradscope.jacobian_spectra(cell, params, xs, pipelined=True, **options)


@pytest.fixture(scope="module")
def vanilla():
    cell = gradscope.VanillaRNN(12)
    return cell, cell.init(jax.random.key(0), recurrent_init="glorot_normal"), \
        jax.random.normal(jax.random.key(1), (23, 1))


@pytest.mark.parametrize("chunk", [None, 1, 5, 64])
def test_every_lag_equals_one_program(vanilla, chunk):
    # 23 lags: one chunk, chunks of one lag per worker, ragged (padded) chunks
    _assert_same(*_both(*vanilla, chunk=chunk))


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_count_does_not_change_results(vanilla, workers):
    cell, params, xs = vanilla
    expected = gradscope.jacobian_spectra(cell, params, xs, pipelined=False)
    step, h0 = gradscope.core._checks.cell_step(cell), cell.initial_state()
    out = pipeline.pipelined_sweep(step, params, xs, h0, expected.lag_values, chunk=4, workers=workers)
    np.testing.assert_allclose(out.log_singular_values, expected.log_singular_values, rtol=0, atol=TOL)
    np.testing.assert_allclose(out.log_frobenius, expected.log_frobenius, rtol=0, atol=TOL)


def test_float64_stays_float64(vanilla):
    cell, params, xs = vanilla
    with jax.enable_x64(True):  # thread-local: the SVD threads must compute in float64 too
        one_program, pipelined = _both(cell, params, xs, dtype="float64", chunk=4)
        assert pipelined.log_singular_values.dtype == np.float64
        np.testing.assert_allclose(pipelined.log_singular_values, one_program.log_singular_values, rtol=0,
                                   atol=1e-12)


def test_sparse_lags_with_lag_zero(vanilla):
    _assert_same(*_both(*vanilla, lags=[0, 1, 2, 9, 23], chunk=2))


def test_batched_inputs(vanilla):
    cell, params, _ = vanilla
    xs = jax.random.normal(jax.random.key(2), (2, 3, 9, 1))
    one_program, pipelined = _both(cell, params, xs, chunk=4, lags="log", num_log_lags=5)
    assert pipelined.log_singular_values.shape == (2, 3, len(pipelined.lags), 12)
    assert pipelined.finite.shape == (2, 3)
    _assert_same(one_program, pipelined)


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_lstm_block_both_directions(direction):
    cell = gradscope.LSTM(6, 2, forget_bias=1.0)
    params, xs = cell.init(jax.random.key(3)), jax.random.normal(jax.random.key(4), (11, 2))
    block = (lambda s: s.c, lambda s: s.h)
    one_program, pipelined = _both(cell, params, xs, direction=direction, block=block, chunk=3)
    assert pipelined.log_singular_values.shape == (11, 6)
    _assert_same(one_program, pipelined)


def test_untied_layers():
    cell = gradscope.VanillaRNN(5, 2)
    keys = jax.random.split(jax.random.key(5), 7)
    stacked = jax.vmap(lambda k: cell.init(k, recurrent_init="orthogonal"))(keys)
    xs = jax.random.normal(jax.random.key(6), (7, 2))
    _assert_same(*_both(cell, stacked, xs, untied=True, chunk=2))


def test_overflow_is_reported():
    cell = gradscope.VanillaRNN(4, activation="relu")
    params = cell.init(jax.random.key(0), recurrent_init=("identity", {"gain": 1e30}))
    with pytest.raises(gradscope.NumericalOverflowError):
        gradscope.jacobian_spectra(cell, params, np.ones((12, 1), np.float32), pipelined=True)


def test_pipelined_refuses_tracing(vanilla):
    cell, params, xs = vanilla
    with pytest.raises(ValueError, match="pipelined=True runs eagerly"):
        jax.jit(lambda x: gradscope.jacobian_spectra(cell, params, x, pipelined=True).log_frobenius)(xs)


@pytest.mark.parametrize("num_lags, chunk", [(200, 64), (200, 50), (1000, 64), (23, 5), (3, 64), (7, 1), (130, 32)])
def test_chunk_plan_uses_fewest_near_equal_chunks(num_lags, chunk):
    size, kept = pipeline._chunk_plan(num_lags, chunk)
    assert sum(kept) == num_lags and len(kept) == -(-num_lags // chunk)  # every lag, fewest chunks of <= chunk
    assert size == max(kept) <= chunk and max(kept) - min(kept) <= 1


@pytest.mark.parametrize("entries, size, real, num_tasks", [(1, 50, 50, 2), (1, 50, 13, 8), (3, 10, 7, 2), (2, 4, 1, 8)])
def test_tasks_cover_each_kept_product_once(entries, size, real, num_tasks):
    tasks = pipeline._tasks(entries, size, real, num_tasks)
    flat = np.concatenate(tasks)
    expected = [e * size + lag for e in range(entries) for lag in range(real)]  # padded lags are never decomposed
    np.testing.assert_array_equal(flat, expected)  # in order, so joining the tasks' outputs keeps lag order
    assert len(tasks) == min(num_tasks, entries * real) and max(map(len, tasks)) - min(map(len, tasks)) <= 1


def test_auto_chunk_bounds_memory():
    assert pipeline.auto_chunk(200, 256, 4, 2) == 50  # a quarter of the lags
    assert pipeline.auto_chunk(10_000, 1024, 4, 2) == pipeline.CHUNK_BYTES // (1024 * 1024 * 4)  # 8 x 4 MB
    assert pipeline.auto_chunk(10_000, 8192, 8, 2) == 2  # at least one product per worker


def test_small_problems_run_as_one_program(vanilla, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "pipelined_sweep", lambda *a, **k: calls.append(a) or None)
    cell, params, xs = vanilla  # n = 12, 23 lags: far below MIN_WORK
    assert not pipeline.worth_pipelining(23, 12) and pipeline.worth_pipelining(200, 256)
    gradscope.jacobian_spectra(cell, params, xs)
    assert calls == []


def test_progress_bar_counts_every_chunk(vanilla, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "PROGRESS_DELAY", 0.0)
    cell, params, xs = vanilla
    gradscope.jacobian_spectra(cell, params, xs, pipelined=True, chunk=6, progress=True)
    num_chunks = len(pipeline._chunk_plan(23, 6)[1])
    err = capsys.readouterr().err
    assert "spectra at 23 lags: 100%" in err and f"{num_chunks}/{num_chunks}" in err
    gradscope.jacobian_spectra(cell, params, xs, pipelined=True, chunk=6, progress=False)
    assert capsys.readouterr().err == ""
