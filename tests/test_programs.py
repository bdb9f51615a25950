"""Stored programs: a later process runs gradscope's programs without tracing them, and gets the same numbers."""

from __future__ import annotations

import dataclasses
import functools
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope.analysis import comparison, metrics
from gradscope.cells import classic
from gradscope.core import _checks, cache, programs



@pytest.fixture
def store(tmp_path):
    """The store on, in a folder of this test's own, and off again afterwards."""
    programs.store_in(tmp_path)
    yield tmp_path / programs.FOLDER_NAME
    programs.store_in(None)


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jaxprog")) if folder.exists() else []


def test_stored_inputs_and_spectra_equal_the_direct_ones(store):
    cell = gradscope.VanillaRNN(16, 2)
    keys = jnp.stack([jax.random.key(s) for s in (0, 1, 2)])
    params = comparison.draw_over_seeds(cell, keys, jnp.float32, recurrent_init=("orthogonal", {"gain": 1.2}))
    h0 = cell.initial_state()
    xs = comparison.make_inputs("gaussian", (0, 1, 2), 20, 2, scale=0.5)
    stored = comparison.spectra_over_seeds(cell, params, xs, h0, tuple(range(1, 21)))
    assert len(_entries(store)) == 2  # the inputs and the spectra

    programs.store_in(None)
    np.testing.assert_array_equal(np.asarray(xs), np.asarray(comparison.make_inputs("gaussian", (0, 1, 2), 20, 2,
                                                                                    scale=0.5)))
    direct = comparison.spectra_over_seeds(cell, params, xs, h0, tuple(range(1, 21)))
    assert type(stored) is type(direct)
    for mine, theirs in zip(jax.tree_util.tree_leaves(stored), jax.tree_util.tree_leaves(direct)):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


# A fresh process: compare with the cache on, counting how often the cell's Python code runs
# (tracing runs it; a stored program does not).
_PROBE = textwrap.dedent("""
    import json
    import gradscope
    from gradscope.cells import classic
    calls = {"init": 0, "step": 0}
    def counted(name):
        original = getattr(classic.VanillaRNN, name)
        def run(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)
        setattr(classic.VanillaRNN, name, run)
    counted("init"); counted("step")
    gradscope.enable_compilation_cache()
    result = gradscope.compare(gradscope.VanillaRNN(12, 2), ["orthogonal", ("normal", {"stddev": 0.5})],
                               seeds=2, num_steps=15, progress=False)
    print(json.dumps({"calls": calls, "rates": result.to_dataframe()["rate"].tolist()}))
""")


def test_a_later_process_runs_the_analysis_without_tracing_it(tmp_path, fresh_process):
    first, second = fresh_process(_PROBE, tmp_path), fresh_process(_PROBE, tmp_path)
    assert first["calls"]["step"] > 0
    assert second["calls"]["step"] == 0
    assert second["calls"]["init"] == first["calls"]["init"] > 0  # the weight draws run op by op in both
    assert second["rates"] == first["rates"]
    assert len(_entries(tmp_path / programs.FOLDER_NAME)) == 4  # inputs, spectra, their stack, the summary


def _mine(a):
    return a


@dataclasses.dataclass(frozen=True)
class _MyRNN(classic.VanillaRNN):
    pass


def test_only_what_gradscope_can_name_has_an_identity():
    step = _checks.cell_step(gradscope.VanillaRNN(8, 1))
    assert programs.identity_of(step) == programs.identity_of(_checks.cell_step(gradscope.VanillaRNN(8, 1)))
    assert programs.identity_of(step) != programs.identity_of(_checks.cell_step(gradscope.VanillaRNN(9, 1)))
    assert programs.identity_of(("orthogonal", {"gain": 1.1})) != programs.identity_of(("orthogonal", {"gain": 1.2}))
    assert programs.identity_of(functools.partial(comparison._gaussian_inputs, (0, 1), (3, 1), 1.0,
                                                  np.dtype("float32"))) is not None
    for unnamed in (lambda a: a, _mine, gradscope.VanillaRNN(8, 1, activation=_mine), _MyRNN(8, 1),
                    jnp.ones(3), ("orthogonal", {1: 2})):
        assert programs.identity_of(unnamed) is None, unnamed


def test_what_gradscope_cannot_name_runs_as_usual(store):
    cell = gradscope.VanillaRNN(8, 1, activation=_mine)
    keys = jnp.stack([jax.random.key(s) for s in (0, 1)])
    params = comparison.draw_over_seeds(cell, keys, jnp.float32, recurrent_init=("normal", {"stddev": 0.3}))
    xs = jnp.ones((2, 6, 1))
    spectra = comparison.spectra_over_seeds(cell, params, xs, cell.initial_state(), (1, 2, 3))
    products = [np.linalg.matrix_power(np.asarray(params.recurrent_kernel[s]).T, k) for s in (0, 1) for k in (1, 2, 3)]
    expected = np.log([np.linalg.svd(p, compute_uv=False) for p in products]).reshape(2, 3, 8)
    np.testing.assert_allclose(np.asarray(spectra.log_singular_values), expected, atol=1e-4)
    assert _entries(store) == []


def test_a_program_that_cannot_be_exported_runs_as_usual(store):
    def doubled(x):
        return jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    out = programs.stored_call(doubled, jnp.arange(3.0), identity="test: doubled by a host callback")
    np.testing.assert_array_equal(np.asarray(out), [0.0, 2.0, 4.0])
    assert _entries(store) == []


def test_a_damaged_entry_is_written_again(store):
    fn = functools.partial(comparison._gaussian_inputs, (0, 1), (5, 2), 2.0, np.dtype("float32"))
    expected = np.asarray(fn())
    programs.stored_call(fn)
    (entry,) = _entries(store)
    entry.write_bytes(b"not a program")
    programs.store_in(store.parent)  # a new process: nothing loaded yet
    np.testing.assert_array_equal(np.asarray(programs.stored_call(fn)), expected)
    assert entry.read_bytes().startswith(b"gradscope stored program")
    assert _entries(store) == [entry]


def test_the_key_follows_shapes_options_and_jax_configuration(store):
    def entries_after(*args, **options):
        out = programs.stored_call(metrics.fit_rate, *args, **options)
        np.testing.assert_allclose(np.asarray(out), np.asarray(metrics.fit_rate(*args)), rtol=1e-6)
        return len(_entries(store))

    lags, values = jnp.arange(1.0, 4.0), jnp.array([0.0, -1.0, -2.5])
    assert entries_after(lags, values) == 1
    assert entries_after(lags, values + 1.0) == 1  # same shapes: the same program
    assert entries_after(jnp.arange(1.0, 5.0), jnp.zeros(4)) == 2
    assert entries_after(lags, values, compiler_options=programs.SMALL_PROGRAM) == 3
    before = jax.config.jax_default_matmul_precision
    try:
        jax.config.update("jax_default_matmul_precision", "highest")
        assert entries_after(lags, values) == 4
    finally:
        jax.config.update("jax_default_matmul_precision", before)
    assert entries_after(lags, values) == 4


def test_a_function_of_yours_in_gradscopes_tables_turns_the_store_off(store, monkeypatch):
    monkeypatch.setitem(classic.ACTIVATIONS, "mine", _mine)
    fn = functools.partial(comparison._gaussian_inputs, (0,), (4, 1), 1.0, np.dtype("float32"))
    np.testing.assert_array_equal(np.asarray(programs.stored_call(fn)), np.asarray(fn()))
    assert _entries(store) == []
    monkeypatch.delitem(classic.ACTIVATIONS, "mine")
    programs.stored_call(fn)
    assert len(_entries(store)) == 1


def test_the_cache_switch_turns_the_store_on(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))  # as if set by you: kept, and the store joins it
    try:
        assert cache.enable_compilation_cache() == tmp_path
        assert programs.store_folder() == tmp_path / programs.FOLDER_NAME
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        programs.store_in(None)
    assert programs.store_folder() is None
