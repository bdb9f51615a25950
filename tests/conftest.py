"""Shared test helpers: an independent reference for Jacobian-product spectra.

The reference deliberately shares nothing with ``gradscope.engine``: it unrolls
with a Python loop, differentiates the whole unrolled map with ``jax.jacrev``
(so the product of step Jacobians is never formed by hand), and takes the
singular values with NumPy in float64.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

# The command turns JAX's persistent compilation cache on for its process; in-process CLI tests
# must not turn it on for the whole test session (tests/test_cache.py sets its own folders).
os.environ.setdefault("GRADSCOPE_CACHE_DIR", "off")


def _fresh_process(script: str, cache_folder) -> dict:
    """Run ``script`` in a new Python process with gradscope's cache in ``cache_folder``; its last output line, as JSON."""
    env = {**os.environ, "GRADSCOPE_CACHE_DIR": str(cache_folder), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def fresh_process():
    """:func:`_fresh_process`: a script's JSON answer from a new process with the cache in a given folder."""
    return _fresh_process


def _to_float64(tree):
    def cast(leaf):
        leaf = np.asarray(leaf)
        return jnp.asarray(leaf.astype(np.float64)) if np.issubdtype(leaf.dtype, np.floating) else jnp.asarray(leaf)
    return jax.tree_util.tree_map(cast, tree)


def _window_map(step, params, xs, unravel, start, stop):
    """The unrolled map v -> h_stop for a state v placed at time ``start`` (flat in, flat out).

    Written as a scan over all T steps in which only steps start+1..stop act, so that
    every lag shares one compiled graph (start and stop are traced).
    """

    def body(v, inputs):
        t, x = inputs
        v_next = ravel_pytree(step(params, unravel(v), x))[0]
        return jnp.where((t >= start) & (t < stop), v_next, v), None

    num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    return lambda v: jax.lax.scan(body, v, (jnp.arange(num_steps), xs))[0]


def _products(step, params, xs, h0, lags, direction):
    """Pure-JAX Jacobian products ``[lags, n, n]`` by ``jax.jacrev`` of the unrolled map (differentiable)."""
    v0, unravel = ravel_pytree(h0)
    num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]

    def advance(v, x):
        v_next = ravel_pytree(step(params, unravel(v), x))[0]
        return v_next, v_next

    states = jnp.concatenate([v0[None], jax.lax.scan(advance, v0, xs)[1]])  # h_0 .. h_T

    def one(k):
        start, stop = (num_steps - k, num_steps) if direction == "backward" else (0, k)
        return jax.jacrev(_window_map(step, params, xs, unravel, start, stop))(states[start])

    return jax.vmap(one)(jnp.asarray(lags))


def reference_products(step, params, xs, h0, lags, direction="backward"):
    """Float64 Jacobian products by ``jax.jacrev`` of the unrolled map, one per lag.

    ``backward``: P_k = dh_T/dh_{T-k} (unroll from h_{T-k} through steps T-k+1..T).
    ``forward``: F_k = dh_k/dh_0 (unroll from h_0 through steps 1..k).
    Runs under one ``jax.jit`` with a ``vmap`` over lags (for speed only).

    Returns a float64 NumPy array ``[lags, n, n]``.
    """
    with jax.enable_x64(True):
        run = jax.jit(_products, static_argnums=(0, 5))
        out = run(step, _to_float64(params), _to_float64(xs), _to_float64(h0), jnp.asarray(lags), direction)
        return np.asarray(out, dtype=np.float64)


def reference_log_singular_values(step, params, xs, h0, lags, direction="backward"):
    """``[lags, n]`` log singular values (descending) of the jacrev products, in JAX: differentiable.

    ``jnp.linalg.svd`` of ``jax.jacrev`` of the unrolled map, nothing shared with the
    engine; ``jax.grad`` of it is the reference gradient (call it in float64).
    """
    return jnp.log(jnp.linalg.svd(_products(step, params, xs, h0, lags, direction), compute_uv=False))


def reference_singular_values(products):
    """Singular values (descending, float64) of each product; ``[lags, n]``."""
    return np.stack([np.linalg.svd(p, compute_uv=False) for p in products])


def assert_spectra_match(log_sv, ref_sv, rtol_max, log_tol=None, log_floor=None, log_min_rel=0.0):
    """Compare engine log singular values with reference singular values.

    Every value must satisfy ``|sigma_i - ref_i| <= rtol_max * ref_max`` (the
    error a product computed in finite precision can promise). With ``log_tol``,
    values the engine reports as resolved (above ``log_floor``) must also match
    in log terms: ``|log sigma_i - log ref_i| <= log_tol`` (only those with
    ``ref_i >= log_min_rel * ref_max`` when ``log_min_rel`` is given).
    """
    log_sv = np.asarray(log_sv, np.float64)
    assert log_sv.shape == ref_sv.shape
    assert not np.any(np.isnan(log_sv))
    ref_max = ref_sv[:, :1]
    err = np.abs(np.exp(log_sv) - ref_sv)
    assert np.all(err <= rtol_max * ref_max), f"max error / sigma_max = {np.max(err / ref_max):.3g}"
    if log_tol is not None:
        resolved = (log_sv > np.asarray(log_floor, np.float64)[:, None]) & (ref_sv >= log_min_rel * ref_max)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_err = np.abs(log_sv - np.log(ref_sv))[resolved]
        assert np.all(log_err <= log_tol), f"max log error on resolved values = {np.max(log_err):.3g}"


def assert_same_spectra(log_sv_a, log_sv_b, rtol_max=1e-5):
    """Two engine results agree: ``|sigma_a - sigma_b| <= rtol_max * sigma_max`` per lag."""
    a, b = np.asarray(log_sv_a, np.float64), np.asarray(log_sv_b, np.float64)
    assert a.shape == b.shape and not np.any(np.isnan(a)) and not np.any(np.isnan(b))
    top = np.maximum(a[..., :1], b[..., :1])
    err = np.abs(np.exp(a - top) - np.exp(b - top))
    assert np.all(err <= rtol_max), f"max error / sigma_max = {np.max(err):.3g}"


class Reference:
    """Namespace handed to tests by the ``reference`` fixture."""

    products = staticmethod(reference_products)
    products_jax = staticmethod(lambda step, params, xs, h0, lags, direction="backward": _products(
        step, params, xs, h0, lags, direction))
    log_singular_values = staticmethod(reference_log_singular_values)
    singular_values = staticmethod(reference_singular_values)
    assert_match = staticmethod(assert_spectra_match)
    assert_same = staticmethod(assert_same_spectra)
    to_float64 = staticmethod(_to_float64)

    @staticmethod
    def spectrum(step, params, xs, h0, lags, direction="backward"):
        """Reference singular values ``[lags, n]`` (float64)."""
        return reference_singular_values(reference_products(step, params, xs, h0, lags, direction))


@pytest.fixture(scope="session")
def reference():
    """The independent jacrev + NumPy reference (see :class:`Reference`)."""
    return Reference


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test left open (without loading matplotlib where no test did)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test file.

    XLA:CPU maps every compiled program's code into memory pages of its own (a small
    program takes about 10 memory mappings, an all-lag analysis about 80), and a process
    may hold at most ``vm.max_map_count`` mappings (65530 by default on Linux). The whole
    suite compiles tens of thousands of programs in one process; kept alive, they passed
    that limit about 600 tests in, and the next compilation crashed inside XLA
    (SIGSEGV or SIGABRT). Clearing JAX's caches frees the programs and their mappings;
    a later file that needs one compiles it again.
    """
    yield
    jax.clear_caches()
    gc.collect()
