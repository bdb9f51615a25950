"""PyTorch layers through gradscope, checked against PyTorch itself.

* Outputs: stepping the adapter over a sequence gives ``module(x)``'s outputs and its
  final ``h_n`` (``c_n``), for every configuration (float32 within 1e-5, float64 within
  1e-12).
* Spectra: gradscope's singular values of ``dh_T/dh_{T-k}`` at every lag equal those of
  ``torch.autograd.functional.jacobian`` of PyTorch's own unrolled map: the module run
  from a given state over the last k inputs (``module(x[T-k:], (h, c))``), so the
  reference shares nothing with the adapter's JAX equations.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope import cells

torch = pytest.importorskip("torch")
nn = torch.nn

INPUT, HIDDEN, PROJ, NUM_STEPS, BATCH = 3, 4, 2, 9, 2

CONFIGS = {
    "rnn_tanh": (nn.RNN, dict()),
    "rnn_relu_2layers_nobias": (nn.RNN, dict(nonlinearity="relu", num_layers=2, bias=False)),
    "rnn_bidirectional_2layers_batch_first": (nn.RNN, dict(num_layers=2, bidirectional=True, batch_first=True)),
    "lstm": (nn.LSTM, dict()),
    "lstm_2layers_batch_first": (nn.LSTM, dict(num_layers=2, batch_first=True)),
    "lstm_proj_2layers_nobias": (nn.LSTM, dict(num_layers=2, proj_size=PROJ, bias=False)),
    "lstm_proj_bidirectional_2layers": (nn.LSTM, dict(num_layers=2, proj_size=PROJ, bidirectional=True)),
    "lstm_bidirectional_3layers_batch_first": (nn.LSTM, dict(num_layers=3, bidirectional=True, batch_first=True)),
    "gru_2layers": (nn.GRU, dict(num_layers=2)),
    "gru_nobias_batch_first": (nn.GRU, dict(bias=False, batch_first=True)),
    "gru_bidirectional_3layers": (nn.GRU, dict(num_layers=3, bidirectional=True)),
    "rnncell_tanh": (nn.RNNCell, dict()),
    "rnncell_relu_nobias": (nn.RNNCell, dict(nonlinearity="relu", bias=False)),
    "lstmcell": (nn.LSTMCell, dict()),
    "grucell_nobias": (nn.GRUCell, dict(bias=False)),
}
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def _module(name, dtype=torch.float64, seed=0, scale=0.6):
    """The configuration's module with weights N(0, scale^2): far from PyTorch's small init."""
    cls, options = CONFIGS[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = cls(INPUT, HIDDEN, **options).to(dtype)
        with torch.no_grad():
            for weight in module.parameters():
                weight.normal_(0.0, scale)
    return module


def _sequence(dtype, seed=1, batch=BATCH):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, NUM_STEPS, INPUT, generator=generator, dtype=dtype)  # (B, T, F)


def _is_cell(module):
    return isinstance(module, nn.RNNCellBase)


def _torch_run(module, x):
    """PyTorch's own outputs ``(B, T, D * H_out)`` and final state per direction ``{d: (h, c)}``,
    ``h``/``c`` stacked over layers, ``(B, L, .)``."""
    if _is_cell(module):
        state, outputs = None, []
        for t in range(x.shape[1]):
            state = module(x[:, t], state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        h, c = state if isinstance(state, tuple) else (state, None)
        return torch.stack(outputs, 1), {"forward": (h, c)}
    out, final = module(x if module.batch_first else x.transpose(0, 1))
    out = out if module.batch_first else out.transpose(0, 1)
    h_n, c_n = final if isinstance(final, tuple) else (final, None)
    directions = 2 if module.bidirectional else 1
    pick = lambda s, d: None if s is None else s[d::directions].transpose(0, 1)  # noqa: E731 - (D*L, B, .) -> (B, L, .)
    return out, {name: (pick(h_n, d), pick(c_n, d)) for d, name in enumerate(["forward", "reverse"][:directions])}


def _gradscope_run(cell, params, xs):
    """Step the adapter over ``xs`` (its order) in a plain loop: top-layer outputs and the final state."""
    state = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, xs.shape[:1] + a.shape),
                                   cell.initial_state(xs.dtype))
    outputs = []
    for t in range(xs.shape[1]):
        state = cell.step(params, state, xs[:, t])
        outputs.append(cell.output(state))
    return jnp.stack(outputs, 1), state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_stepping_the_adapter_gives_the_module_forward_pass(name, dtype):
    with jax.enable_x64(dtype == torch.float64):
        module = _module(name, dtype)
        x = _sequence(dtype)
        expected, finals = _torch_run(module, x)
        adapted = cells.from_torch(module)
        x_module = x if _is_cell(module) or module.batch_first else x.transpose(0, 1)
        for direction, cell in adapted.directions.items():
            outputs, state = _gradscope_run(cell, adapted.params, cell.inputs(x_module))
            assert outputs.dtype == (jnp.float64 if dtype == torch.float64 else jnp.float32)
            size = cell.output_size
            own = expected[..., :size] if direction == "forward" else expected[..., size:].flip(1)
            np.testing.assert_allclose(np.asarray(outputs), own.detach().numpy(), rtol=0, atol=TOLERANCE[dtype])
            h, c = (state.h, state.c) if cell.mode == "LSTM" else (state, None)
            for ours, theirs in zip((h, c), finals[direction]):
                if theirs is not None:
                    np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=0,
                                               atol=TOLERANCE[dtype])


def _trained_lstm():
    """A 2-layer nn.LSTM after a few Adam steps on a regression task: weights away from init."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        module = nn.LSTM(INPUT, HIDDEN, num_layers=2).double()
        readout = nn.Linear(HIDDEN, 1).double()
        optimizer = torch.optim.Adam([*module.parameters(), *readout.parameters()], lr=0.05)
        x, y = torch.randn(NUM_STEPS, 16, INPUT, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
        initial = [p.detach().clone() for p in module.parameters()]
        for _ in range(20):
            optimizer.zero_grad()
            loss = ((readout(module(x)[0][-1]) - y) ** 2).mean()
            loss.backward()
            optimizer.step()
    moved = max(float((p - q).abs().max()) for p, q in zip(module.parameters(), initial))
    assert moved > 0.3  # far from init, gate biases included
    return module


def _flat(*parts):
    return torch.cat([p.reshape(-1) for p in parts if p is not None])


def _jacobian_singular_values(map_, state):
    """Singular values of the Jacobian of ``map_`` (a tuple of tensors -> one flat tensor) at ``state``."""
    blocks = torch.autograd.functional.jacobian(map_, state)
    matrix = torch.cat([b.reshape(b.shape[0], -1) for b in blocks], 1)
    return np.linalg.svd(matrix.numpy(), compute_uv=False)


def _module_reference(module, x, k):
    """Singular values of dh_T/dh_{T-k} by PyTorch: its own forward from the state at T-k over x[T-k:]."""
    x = x[:, None]  # (T, 1, F): batch of one, time first
    T = x.shape[0]
    if _is_cell(module):
        state = None
        for t in range(T - k):
            state = module(x[t, 0], state)
        lstm = isinstance(module, nn.LSTMCell)
        zero = torch.zeros(module.hidden_size, dtype=x.dtype)
        state = (zero, zero) if state is None and lstm else (zero if state is None else state)
        state = state if lstm else (state,)

        def unrolled(*s):
            s = s if lstm else s[0]
            for t in range(T - k, T):
                s = module(x[t, 0], s)
            return _flat(*(s if lstm else (s,)))

        return _jacobian_singular_values(unrolled, state)
    _, start = module(x[:T - k]) if k < T else (None, None)
    lstm = isinstance(module, nn.LSTM)
    if start is None:
        start = module(x[:1])[1]  # only for the shapes
        start = tuple(torch.zeros_like(s) for s in start) if lstm else torch.zeros_like(start)
    start = start if lstm else (start,)

    def unrolled(*s):
        return _flat(*module(x[T - k:], s if lstm else s[0])[1] if lstm else (module(x[T - k:], s[0])[1],))

    return _jacobian_singular_values(unrolled, start)


def _assert_spectra_match(result, reference_sv, rtol=1e-9):
    ours = np.exp(np.asarray(result.log_singular_values, np.float64))
    top = reference_sv[:, :1]
    assert ours.shape == reference_sv.shape
    error = np.max(np.abs(ours - reference_sv) / top)
    assert error < rtol, f"max |sigma - sigma_torch| / sigma_max = {error:.3g}"


@pytest.mark.parametrize("name", ["lstm_trained_2layers", "gru_2layers", "rnn_relu_2layers_nobias",
                                  "lstm_proj_2layers_nobias", "lstmcell"])
def test_spectra_equal_torch_autograd_of_the_whole_stack(name):
    with jax.enable_x64(True):
        module = _trained_lstm() if name == "lstm_trained_2layers" else _module(name, scale=0.8)
        x = _sequence(torch.float64, seed=4, batch=1)[0]  # (T, F)
        adapted = cells.from_torch(module)
        result = gradscope.jacobian_spectra(adapted, adapted.params, adapted.inputs(x))
        reference = np.stack([_module_reference(module, x, k) for k in range(1, NUM_STEPS + 1)])
        np.testing.assert_array_equal(result.lags, np.arange(1, NUM_STEPS + 1))
        _assert_spectra_match(result, reference)
        layers = max(getattr(module, "num_layers", 1), 1)
        width = getattr(module, "proj_size", 0) or HIDDEN
        assert result.state_size == layers * (width + (HIDDEN if "lstm" in name else 0))


def _single_layer(module, layer, suffix):
    """Layer ``layer`` of one direction of ``module`` as its own one-layer PyTorch module."""
    size = module.input_size if layer == 0 else 2 * (module.proj_size or module.hidden_size)
    kwargs = dict(bias=module.bias, **({"proj_size": module.proj_size} if module.proj_size else {}))
    single = type(module)(size, module.hidden_size, **kwargs).double()
    with torch.no_grad():
        for name, weight in single.named_parameters():
            weight.copy_(getattr(module, f"{name[:-3]}_l{layer}{suffix}"))
    return single


def _final_state(layer, seq):
    """PyTorch's final (h, c) of the nn.LSTM ``layer`` over ``seq`` (T, 1, F); zeros for an empty sequence."""
    if len(seq):
        return layer(seq)[1]
    size = layer.proj_size or layer.hidden_size
    return torch.zeros(1, 1, size, dtype=seq.dtype), torch.zeros(1, 1, layer.hidden_size, dtype=seq.dtype)


def _bidirectional_reference(module, x, direction, k):
    """dh_T/dh_{T-k} of one direction of a 2-layer bidirectional nn.LSTM, by PyTorch layer by layer.

    The direction's stack reads the sequence in its own order; its layer 1 also reads the
    other direction's layer-0 outputs over the whole sequence, which do not depend on this
    direction's states (computed once by PyTorch, then held as inputs).
    """
    forward = direction == "forward"
    order = (lambda s: s) if forward else (lambda s: s.flip(0))  # noqa: E731 - sequence order <-> this direction's
    layer0, layer1 = (_single_layer(module, layer, "" if forward else "_reverse") for layer in (0, 1))
    other_layer0 = _single_layer(module, 0, "_reverse" if forward else "")
    # the other direction reads the sequence the other way round; flipped into this direction's order
    other0 = other_layer0(x.flip(0)[:, None] if forward else x[:, None])[0].flip(0)
    seq = order(x)[:, None]  # (T, 1, F) in this direction's order
    concat = lambda mine, theirs: torch.cat([mine, theirs] if forward else [theirs, mine], -1)  # noqa: E731
    T = x.shape[0]
    start = (*_final_state(layer0, seq[:T - k]), *_final_state(layer1, concat(layer0(seq)[0], other0)[:T - k]))

    def unrolled(h0, c0, h1, c1):
        out, (h0, c0) = layer0(seq[T - k:], (h0, c0))
        _, (h1, c1) = layer1(concat(out, other0[T - k:]), (h1, c1))
        return _flat(h0, c0, h1, c1)

    return _jacobian_singular_values(unrolled, start)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_each_direction_of_a_bidirectional_stack_equals_torch_autograd(direction):
    with jax.enable_x64(True):
        module = _module("lstm_proj_bidirectional_2layers", scale=0.8)
        x = _sequence(torch.float64, seed=5, batch=1)[0]
        adapted = cells.from_torch(module)
        cell = adapted.directions[direction]
        assert cell.direction == direction and isinstance(adapted, cells.adapters.TorchBidirectional)
        result = gradscope.jacobian_spectra(cell, adapted.params, cell.inputs(x))
        reference = np.stack([_bidirectional_reference(module, x, direction, k) for k in range(1, NUM_STEPS + 1)])
        _assert_spectra_match(result, reference)


def test_params_are_a_snapshot_and_params_of_rereads_the_module():
    module = _module("lstm_2layers_batch_first", torch.float32)
    adapted = cells.from_torch(module)
    before = np.array(adapted.params["weight_hh_l1"])
    with torch.no_grad():
        module.weight_hh_l1.mul_(2.0)  # in place, as an optimizer step does
    np.testing.assert_array_equal(np.asarray(adapted.params["weight_hh_l1"]), before)
    np.testing.assert_array_equal(np.asarray(adapted.params_of()["weight_hh_l1"]), 2.0 * before)
    other = _module("lstm_2layers_batch_first", torch.float32, seed=7)
    np.testing.assert_array_equal(np.asarray(adapted.params_of(other)["weight_ih_l0"]),
                                  other.weight_ih_l0.detach().numpy())
    with pytest.raises(ValueError, match="architecture"):
        adapted.params_of(_module("gru_2layers", torch.float32))
    assert sorted(adapted.params) == sorted(name for name, _ in module.named_parameters())


def test_init_redraws_each_gate_block_in_pytorch_layout():
    adapted = cells.from_torch(_module("lstm_proj_bidirectional_2layers", torch.float32))
    params = adapted.forward.init(jax.random.key(0), recurrent_init="orthogonal", bias_init="zeros")
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in adapted.params.items()}
    weight = np.asarray(params["weight_hh_l1_reverse"])  # (4 H, P): PyTorch computes W h
    for j in range(4):
        block = weight[j * HIDDEN:(j + 1) * HIDDEN]  # (H, P) with H > P: orthonormal columns
        np.testing.assert_allclose(block.T @ block, np.eye(PROJ), atol=1e-5)
    assert np.all(np.asarray(params["bias_ih_l0"]) == 0)
    comparison = gradscope.compare(cells.from_torch(_module("gru_2layers", torch.float32)), ["orthogonal"],
                                   seeds=1, num_steps=6, progress=False)
    assert np.all(np.isfinite(np.asarray(comparison.spectra.log_singular_values)))


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.GRU(INPUT, HIDDEN)
        self.head = nn.Linear(HIDDEN, 1)


class _OwnForward(nn.LSTM):
    def forward(self, x, state=None):
        return super().forward(2 * x, state)


def test_wrong_objects_are_refused_with_the_fix(monkeypatch):
    with pytest.raises(TypeError, match=r"contains encoder \(GRU\).*from_torch\(model.encoder\)"):
        cells.from_torch(_Model())
    with pytest.raises(TypeError, match="overrides forward"):
        cells.from_torch(_OwnForward(INPUT, HIDDEN))
    with pytest.raises(TypeError, match="nn.RNN, LSTM, GRU"):
        cells.from_torch(nn.Linear(2, 2))
    adapted = cells.from_torch(_module("lstm", torch.float32))
    with pytest.raises(ValueError, match=r"3 features on the last axis"):
        adapted.inputs(torch.zeros(NUM_STEPS, INPUT + 1))
    bidirectional = cells.from_torch(_module("lstm_proj_bidirectional_2layers", torch.float32))
    with pytest.raises(ValueError, match=r"expected xs with shape \(\.\.\., T, input_size\)=\(\.\.\., T, 5\)"):
        gradscope.jacobian_spectra(bidirectional.forward, bidirectional.params,
                                   jnp.zeros((NUM_STEPS, INPUT)))  # forgot .inputs(x)
    with pytest.raises(TypeError, match=r"analyse each direction on its own"):
        gradscope.jacobian_spectra(bidirectional, bidirectional.params, jnp.zeros((NUM_STEPS, INPUT)))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install gradscope\[torch\]"):
        cells.from_torch(object())


def test_pytorch_facts_the_docs_state():
    """Two bias vectors that add (a forget bias of 1 in each acts as 2), and the default
    initialization U(-1/sqrt(hidden), 1/sqrt(hidden)) of every weight and bias."""
    cell = nn.LSTMCell(INPUT, HIDDEN).double()
    bound = 1 / np.sqrt(HIDDEN)
    assert all(float(p.abs().max()) <= bound for p in cell.parameters())
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.bias_ih[HIDDEN:2 * HIDDEN] = 1.0  # gate order i, f, g, o: the forget block
        cell.bias_hh[HIDDEN:2 * HIDDEN] = 1.0
    ones = torch.ones(1, HIDDEN, dtype=torch.float64)
    _, c = cell(torch.zeros(1, INPUT, dtype=torch.float64), (ones, ones))
    np.testing.assert_allclose(c.detach().numpy(), 1 / (1 + np.exp(-2.0)), rtol=1e-12)
    with jax.enable_x64(True):
        adapted = cells.from_torch(cell)
        state = adapted.step(adapted.params, adapted.initial_state(jnp.float64)._replace(c=jnp.ones(HIDDEN)),
                             jnp.zeros(INPUT))
        np.testing.assert_allclose(np.asarray(state.c), c.detach().numpy()[0], rtol=1e-12)
