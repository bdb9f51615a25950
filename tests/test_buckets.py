"""Shape buckets: one compiled analysis per bucket of T, with the unbucketed results.

Bucketed and unbucketed runs of the same configuration are compared entry by entry
(vanilla and GRU cells agree to the bit, LSTMs to float rounding), and against the
independent jax.jacrev reference. Compile counts come from the jit caches and from a
step that counts its traces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope.core import buckets, pipeline

SAME_BUCKET = (17, 18, 20)  # bucket_length 20 for each
FIELDS = ("log_singular_values", "log_frobenius", "log_floor", "finite")


def _params(cell, rng, gain=1.2):
    """Gaussian parameters in the layout ``cell.init`` returns (NumPy draws: nothing to compile)."""
    shapes = jax.eval_shape(cell.init, jax.random.key(0))
    return jax.tree_util.tree_map(lambda leaf: (gain / np.sqrt(leaf.shape[0]) if len(leaf.shape) == 2 else 0.3)
                                  * rng.normal(size=leaf.shape).astype(np.float32), shapes)


def _case(cell, num_steps, seed=0, batch=()):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(*batch, num_steps, cell.input_size)).astype(np.float32)
    h0 = jax.tree_util.tree_map(lambda z: (0.5 * rng.normal(size=z.shape)).astype(np.float32), cell.initial_state())
    return _params(cell, rng), xs, h0


def _assert_equal_results(a, b, same=None):
    """Same lags and fields: to the last bits (1e-6 relative, one compiled loop against another), or
    (given ``same``, the reference fixture's ``assert_same``) to float32 rounding: singular values within
    1e-5 of sigma_max (as the pipelined and one-program paths agree), log norms and floors within 1e-5."""
    assert a.lag_values == b.lag_values and a.direction == b.direction
    for field in FIELDS:
        x, y = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
        assert x.shape == y.shape, field
        if field == "finite":
            np.testing.assert_array_equal(x, y, err_msg=field)
        elif same is None:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=field)
        elif field == "log_singular_values":
            same(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-5, err_msg=field)


def test_bucket_lengths_grow_by_at_most_a_quarter():
    lengths = np.array([buckets.bucket_length(t) for t in range(1, 5000)])
    assert np.all(lengths[:8] == np.arange(1, 9))  # small T is its own bucket
    assert np.all(lengths >= np.arange(1, 5000)) and np.all(np.diff(lengths) >= 0)
    assert np.max(lengths / np.arange(1, 5000)) <= buckets.GROWTH
    sizes = np.unique(lengths)
    assert np.max(sizes[8:] / sizes[7:-1]) <= buckets.GROWTH  # from 8 on
    assert list(sizes[7:20]) == [8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64]
    assert [buckets.bucket_length(t) for t in (100, 200, 224, 225)] == [112, 224, 224, 256]
    np.testing.assert_array_equal(buckets.padded_lags((1, 4, 9, 11, 15, 16, 17, 18, 19)), [1, 4, 9, 11, 15, 16, 17, 18,
                                                                                           19, 19])


def test_masked_step_is_exactly_the_identity_where_inactive():
    cell = gradscope.LSTM(3, 2)
    params, xs, h0 = _case(cell, 1)
    masked = buckets.MaskedStep(cell.step)
    inactive = jax.jit(jax.jacfwd(lambda h: masked(params, h, (xs[0], False))))(h0)
    np.testing.assert_array_equal(inactive.h.h, np.eye(3))
    np.testing.assert_array_equal(inactive.c.c, np.eye(3))
    np.testing.assert_array_equal(inactive.h.c, 0.0)
    np.testing.assert_array_equal(masked(params, h0, (xs[0], True)).c, cell.step(params, h0, xs[0]).c)


@pytest.mark.parametrize("direction, lags", [("backward", "all"), ("forward", "explicit"), ("backward", "log")])
def test_bucketed_equals_unbucketed_and_compiles_once_per_bucket(direction, lags):
    cell = gradscope.VanillaRNN(6, 2)
    core = buckets._bucketed_core.__wrapped__
    before = core._cache_size()
    for num_steps in SAME_BUCKET:
        params, xs, h0 = _case(cell, num_steps, seed=num_steps)
        kept = (0, 2, 5, num_steps) if lags == "explicit" else lags
        options = dict(lags=kept, num_log_lags=6, direction=direction)
        bucketed = gradscope.jacobian_spectra(cell, params, xs, h0, bucket=True, **options)
        if lags == "all" or num_steps == SAME_BUCKET[-1]:  # each unbucketed run compiles: compare where it counts
            _assert_equal_results(bucketed, gradscope.jacobian_spectra(cell, params, xs, h0, bucket=False, **options))
    assert core._cache_size() - before == 1  # one program for the three T (and "log" keeps 6 lags at each)


@pytest.mark.parametrize("name", ["lstm", "custom"])
def test_bucketed_matches_jacrev_reference(reference, name):
    num_steps = 11  # bucket 12: one masked step
    if name == "custom":  # a plain step on a pytree state, with pytree inputs
        def step(params, h, x):
            return {"a": jnp.tanh(params["w"] @ h["a"] + x["u"] * h["b"]), "b": 0.9 * h["b"] + jnp.sin(x["v"])}
        rng = np.random.default_rng(1)
        params = {"w": rng.normal(size=(3, 3)).astype(np.float32)}
        xs = {"u": rng.normal(size=(num_steps, 3)).astype(np.float32),
              "v": rng.normal(size=(num_steps, 3)).astype(np.float32)}
        target, h0 = step, {"a": np.full(3, 0.2, np.float32), "b": np.ones(3, np.float32)}
    else:
        target = gradscope.LSTM(3, 2)
        params, xs, h0 = _case(target, num_steps)
        step = target.step
    result = gradscope.jacobian_spectra(target, params, xs, h0, bucket=True)
    products = reference.products(step, params, xs, h0, list(result.lags))
    reference.assert_match(result.log_singular_values, reference.singular_values(products), 1e-5)
    _assert_equal_results(result, gradscope.jacobian_spectra(target, params, xs, h0, bucket=False),
                          reference.assert_same if name == "lstm" else None)


def test_batched_block_and_untied_analyses(reference):
    cell = gradscope.LSTM(3, 2)
    params, xs, h0 = _case(cell, 13, batch=(2,))  # bucket 14
    options = dict(block=(lambda s: s.c, lambda s: s.c))
    _assert_equal_results(gradscope.jacobian_spectra(cell, params, xs, h0, bucket=True, **options),
                          gradscope.jacobian_spectra(cell, params, xs, h0, bucket=False, **options),
                          reference.assert_same)
    vanilla = gradscope.VanillaRNN(4, 2)
    drawn = [_params(vanilla, np.random.default_rng(t)) for t in range(13)]
    layers = jax.tree_util.tree_map(lambda *p: np.stack(p), *drawn)
    for direction in ("backward", "forward"):  # padded at the front / at the back, parameters too
        options = dict(untied=True, direction=direction)
        _assert_equal_results(gradscope.jacobian_spectra(vanilla, layers, xs[0], bucket=True, **options),
                              gradscope.jacobian_spectra(vanilla, layers, xs[0], bucket=False, **options))


def test_pipeline_runs_one_program_of_each_kind_per_bucket():
    cell = gradscope.GRU(4, 2)
    programs = (pipeline._start, pipeline._sweep_chunk, pipeline._task_spectra)
    for num_steps in SAME_BUCKET:
        params, xs, h0 = _case(cell, num_steps, seed=num_steps)
        bucketed = gradscope.jacobian_spectra(cell, params, xs, h0, bucket=True, pipelined=True, chunk=6)
        if num_steps == SAME_BUCKET[0]:
            before = [program._cache_size() for program in programs]
    assert [program._cache_size() for program in programs] == before
    _assert_equal_results(bucketed, gradscope.jacobian_spectra(cell, params, xs, h0, bucket=False, chunk=6))


def test_automatic_choice_and_traced_inputs():
    small = np.zeros((3, 2), np.float32)
    assert buckets.use_buckets(None, small, num_lags=100, state_size=64)  # 112 * 64^3 < 1e8: bucketed
    assert not buckets.use_buckets(None, small, num_lags=400, state_size=64)  # large: exact shapes
    assert buckets.use_buckets(True, small, num_lags=400, state_size=64)
    assert not buckets.use_buckets(False, small, num_lags=3, state_size=4)
    with pytest.raises(TypeError, match="bucket must be True, False or None"):
        buckets.use_buckets("yes", small, 3, 4)
    cell = gradscope.VanillaRNN(6, 2)
    params, xs, h0 = _case(cell, SAME_BUCKET[0])
    core = buckets._bucketed_core.__wrapped__
    before = core._cache_size()
    under_jit = jax.jit(lambda p: gradscope.jacobian_spectra(cell, p, xs, h0, bucket=True).log_frobenius)(params)
    assert core._cache_size() == before  # traced inputs are never padded
    np.testing.assert_allclose(under_jit, gradscope.jacobian_spectra(cell, params, xs, h0).log_frobenius, atol=1e-6)
