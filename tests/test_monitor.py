"""gradscope.Monitor: what a check measures, that checks never retrace, and the exports.

Values are checked against exact answers (a linear recurrence with an orthogonal
kernel, whose products have every singular value equal to gain^k) and against
gradscope's own profile functions applied to each layer with the inputs the model's
own layers produce.
"""

from __future__ import annotations

import dataclasses
import struct

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

import gradscope
from gradscope import profile
from gradscope.training import monitor as monitor_module

INPUT, LOWER, UPPER, NUM_STEPS = 2, 4, 3, 8
LINEAR_SIZE = 5


def _inputs(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _compiled_checks() -> int:
    return monitor_module._measure.__wrapped__._cache_size()


# ------------------------------------------------------------------------------------------------
# A linear recurrence with a scaled orthogonal kernel: every singular value of P_k is gain^k
# ------------------------------------------------------------------------------------------------

TRACES = []


def linear_step(params, h, x):
    TRACES.append(1)  # counts the traces of this step
    return params["w"] @ h + x


def _linear_params(gain, seed=1):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(LINEAR_SIZE, LINEAR_SIZE)))
    return {"w": jnp.asarray(gain * q, jnp.float32)}


def test_checks_measure_exact_rates_and_never_retrace():
    xs = _inputs((NUM_STEPS, LINEAR_SIZE))
    monitor = gradscope.Monitor(linear_step, xs, params=_linear_params(1.0), h0=jnp.zeros(LINEAR_SIZE), every=10,
                                lags=(1, 4, NUM_STEPS))
    gains = np.linspace(0.7, 1.1, 10)
    assert monitor.update(0, _linear_params(gains[0]))
    traces, compiled = len(TRACES), _compiled_checks()
    for i, gain in enumerate(gains[1:], start=1):
        assert not monitor.update(10 * i - 3, _linear_params(2.0))  # not a multiple of every: nothing measured
        assert monitor.update(10 * i, _linear_params(gain, seed=i))
    assert len(TRACES) == traces and _compiled_checks() == compiled  # ten checks, one trace, one compilation
    table = monitor.table
    assert list(table.columns) == ["step", "layer", "lag", "log_sigma_max", "log_rms", "rate", "rms_rate",
                                   "horizon", "verdict", "sequences"]
    assert sorted(set(table["step"])) == list(range(0, 100, 10)) and set(table["layer"]) == {"step"}
    gain_of_row = gains[table["step"].to_numpy() // 10]
    expected = table["lag"].to_numpy() * np.log(gain_of_row)
    np.testing.assert_allclose(table["log_sigma_max"], expected, atol=2e-4)
    np.testing.assert_allclose(table["log_rms"], expected, atol=2e-4)
    np.testing.assert_allclose(table["rate"], np.log(gain_of_row), atol=2e-4)
    horizon = np.where(np.log(gain_of_row) * NUM_STEPS < np.log(1e-2), np.log(1e-2) / np.log(gain_of_row), np.inf)
    finite = np.isfinite(horizon)
    assert np.array_equal(np.isfinite(table["horizon"]), finite)
    np.testing.assert_allclose(table["horizon"][finite], horizon[finite], rtol=1e-3)
    verdicts = np.where(np.log(gain_of_row) < -0.01, "vanishing", np.where(np.log(gain_of_row) > 0.01,
                                                                           "exploding", "stable"))
    assert list(table["verdict"]) == list(verdicts)


# ------------------------------------------------------------------------------------------------
# A two-layer nnx model changing in place: the upper layer and the stack, against their profiles
# ------------------------------------------------------------------------------------------------

class NNXModel(nnx.Module):
    def __init__(self, rngs):
        self.lower = nnx.RNN(nnx.LSTMCell(INPUT, LOWER, rngs=rngs))
        self.upper = nnx.RNN(nnx.GRUCell(LOWER, UPPER, rngs=rngs))
        self.head = nnx.Linear(UPPER, 1, rngs=rngs)

    def __call__(self, xs):
        return self.head(self.upper(self.lower(xs))[:, -1])[:, 0]


def _train(model, steps, monitor):
    """Stand-in training steps: every parameter moves (in place, as nnx optimizers move them)."""
    for step in range(steps):
        monitor.update(step)  # an nnx model is updated in place: the monitor reads it as it is now
        moved = jax.tree_util.tree_map(lambda p: p * 1.15 + 0.05, nnx.state(model, nnx.Param))
        nnx.update(model, moved)
    monitor.check(steps)  # and once more after the last update


def _profile_rows(result, lags):
    """(log sigma_max at lags, log RMS at lags, rate, horizon) of a one-sequence profile."""
    summary = result.summary()
    at = np.asarray(lags) - 1
    return (np.asarray(result.log_sigma_max)[..., at], np.asarray(result.log_rms)[..., at],
            float(np.asarray(summary.rate).ravel()[0]), float(np.asarray(summary.horizon).ravel()[0]))


def test_nnx_model_changing_in_place_layers_and_stack_equal_their_profiles():
    model, probe = NNXModel(nnx.Rngs(0)), _inputs((1, NUM_STEPS, INPUT), seed=4)
    lags = (1, 3, NUM_STEPS)
    monitor = gradscope.Monitor(model, probe, every=2, lags=lags)
    _train(model, 5, monitor)
    assert monitor.names == ("lower.cell", "upper.cell", "stack")
    table = monitor.table
    assert sorted(set(table["step"])) == [0, 2, 4, 5]
    last = table[table["step"] == 5]
    lower, upper = model.lower.cell, model.upper.cell
    stack = gradscope.cells.Stacked((gradscope.cells.from_flax(lower), gradscope.cells.from_flax(upper)))
    state = (nnx.state(lower, nnx.Param), nnx.state(upper, nnx.Param))
    zeros = ((jnp.zeros(LOWER), jnp.zeros(LOWER)), jnp.zeros(UPPER))
    direct = {"upper.cell": profile.norm_profile(stack.layers[1], state[1], model.lower(probe)[0], zeros[1]),
              "stack": profile.norm_profile(stack, state, probe[0], zeros)}
    for name, result in direct.items():
        rows = last[last["layer"] == name]
        log_max, log_rms, rate, horizon = _profile_rows(result, lags)
        np.testing.assert_allclose(rows["log_sigma_max"], log_max, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rows["log_rms"], log_rms, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rows["rate"], rate, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows["horizon"].iloc[0], horizon, rtol=1e-5)
    first = table[table["step"] == 0]
    assert not np.allclose(first["log_sigma_max"], last["log_sigma_max"])  # the weights moved
    compiled = _compiled_checks()
    _train(model, 2, monitor)  # new weights, same architecture: no new compilation
    assert _compiled_checks() == compiled


def test_profile_mode_has_exact_spectra_at_the_table_lags():
    xs = _inputs((2, NUM_STEPS, INPUT), seed=5)
    cell = gradscope.cells.from_equinox(eqx.nn.GRUCell(INPUT, UPPER, key=jax.random.key(0)))
    lags = (1, 2, 5)
    monitor = gradscope.Monitor(cell, xs, params=cell.params, mode="profile", lags=lags, every=1)
    rows = monitor.check(0, cell.params)
    exact = gradscope.jacobian_spectra(cell, cell.params, xs, lags=lags).lag_metrics()
    # two sequences: the table holds their means
    np.testing.assert_allclose(rows["log_sigma_max"], np.mean(np.asarray(exact.log_sigma_max), axis=0), atol=1e-5)
    np.testing.assert_allclose(rows["log_sigma_min"], np.mean(np.asarray(exact.log_sigma_min), axis=0), atol=1e-4)
    assert list(rows["sequences"]) == [2] * len(lags)


# ------------------------------------------------------------------------------------------------
# Equinox and linen models: the new state of each update is what is measured
# ------------------------------------------------------------------------------------------------

class EquinoxModel(eqx.Module):
    cell: eqx.nn.GRUCell

    def __call__(self, xs):
        return jax.lax.scan(lambda h, x: (self.cell(x, h), None), jnp.zeros(UPPER), xs)[0]


def test_equinox_model_is_read_from_each_update():
    model, xs = EquinoxModel(eqx.nn.GRUCell(INPUT, UPPER, key=jax.random.key(1))), _inputs((NUM_STEPS, INPUT), 6)
    monitor = gradscope.Monitor(model, xs, every=1, lags=(NUM_STEPS,))
    scaled = eqx.tree_at(lambda m: m.cell.weight_hh, model, 3.0 * model.cell.weight_hh)
    monitor.update(0, model)
    monitor.update(1, scaled)
    cell = gradscope.cells.from_equinox(scaled.cell)
    expected = _profile_rows(profile.norm_profile(cell, scaled.cell, xs), (NUM_STEPS,))[0]
    np.testing.assert_allclose(monitor.table["log_sigma_max"].iloc[1], expected[0], atol=1e-5)
    assert monitor.table["log_sigma_max"].iloc[1] != monitor.table["log_sigma_max"].iloc[0]
    with pytest.raises(ValueError, match="pass the current one"):
        monitor.update(2)
    with pytest.raises(TypeError, match=r"single recurrent cell.*from_equinox\(cell\)"):
        gradscope.Monitor(eqx.nn.GRUCell(INPUT, UPPER, key=jax.random.key(1)), xs)


def test_linen_model_takes_its_variables():
    class Linen(nn.Module):
        @nn.compact
        def __call__(self, xs):
            return nn.RNN(nn.GRUCell(UPPER))(xs)

    model, xs = Linen(), _inputs((1, NUM_STEPS, INPUT), seed=7)
    variables = model.init(jax.random.key(0), xs)
    monitor = gradscope.Monitor(model, xs, variables=variables, every=1, lags=(NUM_STEPS,))
    monitor.update(0, variables)
    doubled = jax.tree_util.tree_map(lambda a: 2.0 * a, variables)
    monitor.update(1, doubled)
    cell = gradscope.cells.from_flax(nn.GRUCell(UPPER))
    own = {"params": doubled["params"]["GRUCell_0"]}  # the cell was made in the model's compact scope
    expected = _profile_rows(profile.norm_profile(cell, own, xs[0]), (NUM_STEPS,))[0]
    np.testing.assert_allclose(monitor.table["log_sigma_max"].iloc[1], expected[0], atol=1e-5)
    assert monitor.names == ("GRUCell_0",)


# ------------------------------------------------------------------------------------------------
# PyTorch: through gradscope.cells.from_torch
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class _TorchRNNStandIn:
    """What from_torch is planned to return for a one-layer tanh torch.nn.RNN: its weights as JAX arrays."""

    params: dict
    input_size: int
    hidden_size: int

    def step(self, p, h, x):
        return jnp.tanh(p["weight_ih_l0"] @ x + p["bias_ih_l0"] + p["weight_hh_l0"] @ h + p["bias_hh_l0"])

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros(self.hidden_size, dtype)


def _stand_in_from_torch(module):
    params = {name: jnp.asarray(value.detach().numpy()) for name, value in module.named_parameters()}
    return _TorchRNNStandIn(params, module.input_size, module.hidden_size)


def test_a_torch_module_is_read_through_from_torch_at_each_check(monkeypatch):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module, xs = torch.nn.RNN(INPUT, UPPER), _inputs((NUM_STEPS, INPUT), seed=8)
    monkeypatch.delattr(gradscope.cells, "from_torch", raising=False)
    with pytest.raises(NotImplementedError, match="gradscope.cells.from_torch"):
        gradscope.Monitor(module, xs)
    monkeypatch.setattr(gradscope.cells, "from_torch", _stand_in_from_torch, raising=False)
    monitor = gradscope.Monitor(module, xs, every=1, lags=(NUM_STEPS,))
    monitor.update(0)
    with torch.no_grad():  # a training step changes the module in place
        module.weight_hh_l0.mul_(2.0)
    monitor.update(1)
    adapted = _stand_in_from_torch(module)
    expected = _profile_rows(profile.norm_profile(adapted, adapted.params, xs), (NUM_STEPS,))[0]
    np.testing.assert_allclose(monitor.table["log_sigma_max"].iloc[1], expected[0], atol=1e-5)
    assert monitor.names == ("RNN",)


# ------------------------------------------------------------------------------------------------
# Exports and figure
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def filled():
    monitor = gradscope.Monitor(linear_step, _inputs((NUM_STEPS, LINEAR_SIZE)), params=_linear_params(1.0),
                                h0=jnp.zeros(LINEAR_SIZE), every=5, lags=(1, 4, NUM_STEPS))
    for step, gain in zip(range(0, 20, 5), (0.5, 0.8, 0.9, 1.0)):
        monitor.update(step, _linear_params(gain))
    return monitor


def test_csv_and_parquet_round_trip(filled, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="the parquet extra (gradscope[parquet]) is not installed")
    table = filled.table
    pd.testing.assert_frame_equal(pd.read_csv(filled.to_csv(tmp_path / "m.csv")), table, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(filled.to_parquet(tmp_path / "m.parquet")), table)
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(ImportError, match=r"pip install gradscope\[parquet\]"):
        filled.to_parquet(tmp_path / "again.parquet")


def _scalars(logdir) -> dict:
    """``{(tag, step): value}`` from the TensorBoard event files in ``logdir`` (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    found = {}
    for path in logdir.glob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                found[value.tag, event.step] = value.simple_value
    return found


def test_tensorboard_scalars_are_the_table(filled, tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra (gradscope[tensorboard]) is not installed")
    filled.to_tensorboard(tmp_path)
    scalars, table = _scalars(tmp_path), filled.table
    for row in table.itertuples():
        assert scalars[f"gradscope/step/log_sigma_max/lag_{row.lag}", row.step] == pytest.approx(row.log_sigma_max)
        assert scalars["gradscope/step/rate", row.step] == pytest.approx(row.rate)
        if np.isfinite(row.horizon):
            assert scalars["gradscope/step/horizon", row.step] == pytest.approx(row.horizon)
        else:
            assert ("gradscope/step/horizon", row.step) not in scalars


def test_live_tensorboard_writes_each_check(tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra (gradscope[tensorboard]) is not installed")
    monitor = gradscope.Monitor(linear_step, _inputs((NUM_STEPS, LINEAR_SIZE)), params=_linear_params(0.9),
                                h0=jnp.zeros(LINEAR_SIZE), every=1, lags=(NUM_STEPS,), tensorboard=tmp_path)
    monitor.update(0, _linear_params(0.9))
    monitor.close()
    assert _scalars(tmp_path)["gradscope/step/rate", 0] == pytest.approx(np.log(0.9), abs=2e-4)


def test_plot_draws_the_table(filled):
    fig = gradscope.plotting.plot_monitor(filled, lag=4)
    rates, horizons, sigmas = fig.axes[:3]
    table = filled.table
    per_check = table[table["lag"] == 1]
    np.testing.assert_allclose(rates.lines[0].get_ydata(), per_check["rate"])
    np.testing.assert_allclose(rates.lines[1].get_ydata(), per_check["rms_rate"])
    horizon = per_check["horizon"].to_numpy()
    np.testing.assert_allclose(horizons.lines[0].get_ydata(), np.where(np.isinf(horizon), NUM_STEPS, horizon))
    np.testing.assert_allclose(sigmas.lines[0].get_ydata(), table[table["lag"] == 4]["log_sigma_max"])
    with pytest.raises(ValueError, match="one of the monitored lags"):
        gradscope.plotting.plot_monitor(filled, lag=3)


def test_bad_settings_are_refused():
    xs, params, h0 = _inputs((NUM_STEPS, LINEAR_SIZE)), _linear_params(1.0), jnp.zeros(LINEAR_SIZE)
    with pytest.raises(ValueError, match="every must be a positive int"):
        gradscope.Monitor(linear_step, xs, params=params, h0=h0, every=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        gradscope.Monitor(linear_step, xs, params=params, h0=h0, mode="full")
    with pytest.raises(ValueError, match=r"max_lag must lie in \[1, T\] = \[1, 8\]"):
        gradscope.Monitor(linear_step, xs, params=params, h0=h0, max_lag=9)
    with pytest.raises(ValueError, match="pass h0"):
        gradscope.Monitor(linear_step, xs, params=params)
    with pytest.raises(ValueError, match="no checks yet"):
        gradscope.plotting.plot_monitor(gradscope.Monitor(linear_step, xs, params=params, h0=h0))
