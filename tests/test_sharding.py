"""Sharded grid sweeps: one compile per grid shape, same answers on 1 or 4 devices, gains exact."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope.analysis.comparison import make_inputs
from gradscope.initializers import get
from gradscope.analysis.sharding import compare_grid

# One grid shape shared by several tests (6 configurations: compiled once for the module).
CELL = gradscope.VanillaRNN(4)
GRID = dict(initializers=["orthogonal", "glorot_normal", "he_normal"], seeds=1, gains=(0.9, 1.1), num_steps=8)
STEP_CALLS = [0]


@dataclasses.dataclass(frozen=True)
class CountingRNN(gradscope.VanillaRNN):
    """A vanilla RNN whose step counts its Python calls (which happen only while tracing)."""

    def step(self, params, h, x):
        STEP_CALLS[0] += 1
        return super().step(params, h, x)


def test_grid_compiles_once_per_shape():
    cell = CountingRNN(4)
    compare_grid(cell, ["orthogonal"], seeds=1, num_steps=7)
    per_trace = STEP_CALLS[0]
    assert per_trace > 0
    grid = compare_grid(cell, ["orthogonal", "glorot_normal"], seeds=3, num_steps=7)
    assert STEP_CALLS[0] == 2 * per_trace, "a 2 x 3 grid must be traced once, not once per configuration"
    compare_grid(cell, ["he_normal", "identity"], seeds=(7, 8, 9), num_steps=7)
    assert STEP_CALLS[0] == 2 * per_trace, "a second grid of the same shape must reuse the compiled program"
    assert grid.spectra.log_singular_values.shape == (2, 1, 3, 7, 4)


def test_grid_entries_equal_jacobian_spectra_of_the_documented_parameters(reference):
    """Entry (init, gain, seed) is cell.init(key(seed), recurrent_init=gain * init) on make_inputs' inputs."""
    grid = compare_grid(CELL, **GRID)
    xs = make_inputs("gaussian", (0,), GRID["num_steps"], 1)[0]
    for i, j, init in [(0, 1, "orthogonal"), (2, 0, "he_normal")]:
        gain = GRID["gains"][j]
        scaled = lambda k, s, d=jnp.float32, gain=gain, init=init: gain * get(init)(k, s, d)  # noqa: E731
        params = CELL.init(jax.random.key(0), recurrent_init=scaled)
        single = gradscope.jacobian_spectra(CELL, params, xs)
        reference.assert_same(grid.spectra.log_singular_values[i, j, 0], single.log_singular_values)
    table = grid.to_dataframe()
    assert list(table.columns[:3]) == ["init", "gain", "seed"] and len(table) == 6
    assert list(table["gain"]) == [0.9, 1.1] * 3


def test_gain_axis_scales_linear_orthogonal_cell_exactly():
    """Linear cell with W = g * orthogonal: every singular value of P_k is g^k, so rate = log g."""
    gains = (0.8, 1.0, 1.25)
    grid = compare_grid(gradscope.VanillaRNN(4, activation="linear"), ["orthogonal"], seeds=2, gains=gains,
                        num_steps=8, inputs="zeros")
    rate = np.asarray(grid.summary().rate)
    np.testing.assert_allclose(rate, np.broadcast_to(np.log(gains)[None, :, None], rate.shape), atol=1e-5)


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np, gradscope
    from gradscope.analysis.sharding import compare_grid
    grid = compare_grid(gradscope.VanillaRNN(4), **json.loads(sys.argv[1]))
    print(json.dumps({"devices": jax.device_count(), "used": grid.num_devices,
                      "log_sv": np.asarray(grid.spectra.log_singular_values).tolist()}))
""")


def test_sharded_over_four_devices_equals_single_device(reference):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, json.dumps(GRID)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["used"] == 4
    single = compare_grid(CELL, **GRID)  # this process has one CPU device
    assert single.num_devices == 1
    many = np.asarray(out["log_sv"])
    assert many.shape == (3, 2, 1, 8, 4)  # 6 configurations, padded to 8 = 2 per device
    reference.assert_same(many, single.spectra.log_singular_values, rtol_max=1e-6)


def test_grid_refuses_empty_gains_and_seeds():
    with pytest.raises(ValueError, match="at least one gain, got none"):
        compare_grid(CELL, ["orthogonal"], gains=(), num_steps=4)
    with pytest.raises(ValueError, match="at least one seed, got none"):
        compare_grid(CELL, ["orthogonal"], seeds=0, num_steps=4)
