"""Modern cells (LRU, S4D, selective SSM, minGRU, minLSTM), their initializers, chrono, and the diagonal fast path.

Independent facts: the step equations written in complex NumPy; the papers' initial
distributions; jax.jacrev of the unrolled map (tests/conftest.py) for every cell, complex
states included; the general engine for the fast path; and the exact LRU result: with
``r_min = r_max = r`` every singular value of dh_T/dh_(T-k) is r^k.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope
from gradscope import initializers
from gradscope.cells import modern
from gradscope.core import diagonal

KEY = jax.random.key(0)
SMALL = {
    "lru": lambda: gradscope.LRU(3, 2, r_min=0.5, r_max=0.95),
    "s4d": lambda: gradscope.DiagonalSSM(2, 2),
    "selective": lambda: gradscope.SelectiveSSM(3, 2),
    "mingru": lambda: gradscope.MinGRU(4, 2),
    "minlstm": lambda: gradscope.MinLSTM(4, 2),
}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def _inputs(cell, steps, seed=1, batch=()):
    return jax.random.normal(jax.random.key(seed), (*batch, steps, cell.input_size))


# ---------------------------------------------------------------- equations (complex NumPy)


def test_lru_step_is_the_papers_complex_recurrence():
    cell = gradscope.LRU(4, 3, r_min=0.4, r_max=0.9, max_phase=1.0)
    p = _np(cell.init(KEY))
    rng = np.random.default_rng(0)
    h = rng.normal(size=4) + 1j * rng.normal(size=4)
    x = rng.normal(size=3)
    lam = np.exp(-np.exp(p.nu_log) + 1j * np.exp(p.theta_log))
    b = (p.input_kernel_real + 1j * p.input_kernel_imag).T
    c = (p.output_kernel_real + 1j * p.output_kernel_imag).T
    expected = lam * h + np.exp(p.gamma_log) * (b @ x)
    out = cell.step(cell.init(KEY), modern.ComplexState(jnp.asarray(h.real, jnp.float32), jnp.asarray(h.imag, jnp.float32)),
                    jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(out.real) + 1j * np.asarray(out.imag), expected, rtol=2e-5, atol=2e-6)
    y = cell.readout(cell.init(KEY), out, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y, (c @ expected).real + p.skip * x, rtol=2e-4, atol=2e-5)


def test_s4d_step_is_zero_order_hold():
    cell = gradscope.DiagonalSSM(3, 2)
    params = cell.init(KEY, recurrent_init="s4d_inv", input_init="normal")
    p = _np(params)
    a = -np.exp(p.log_neg_real) + 1j * p.imag
    delta = np.exp(p.log_step)[:, None]
    b = p.input_kernel_real + 1j * p.input_kernel_imag
    # ZOH by quadrature of  int_0^Delta exp(s A) ds B, independently of the closed form
    s = np.linspace(0.0, 1.0, 2001)[:, None, None] * delta
    integral = np.trapezoid(np.exp(s * a), s, axis=0)
    a_bar, b_bar = cell.discretized(params)
    np.testing.assert_allclose(a_bar, np.exp(delta * a), rtol=1e-5)
    np.testing.assert_allclose(b_bar, integral * b, rtol=1e-4)
    h = modern.ComplexState(jnp.ones((2, 3)), -jnp.ones((2, 3)))
    x = jnp.array([0.5, -2.0])
    out = cell.step(params, h, x)
    expected = np.exp(delta * a) * (1 - 1j) + integral * b * np.asarray(x)[:, None]
    np.testing.assert_allclose(np.asarray(out.real) + 1j * np.asarray(out.imag), expected, rtol=1e-4, atol=1e-6)


def test_selective_ssm_step_and_readout():
    cell = gradscope.SelectiveSSM(3, 4, dt_rank=2)
    params = cell.init(KEY)
    p = _np(params)
    rng = np.random.default_rng(1)
    h, x = rng.normal(size=(4, 3)), rng.normal(size=4)
    delta = np.log1p(np.exp(x @ p.delta_down @ p.delta_up + p.delta_bias))
    a = -np.exp(p.log_neg_a)
    expected = np.exp(delta[:, None] * a) * h + delta[:, None] * (x @ p.input_kernel)[None, :] * x[:, None]
    out = cell.step(params, jnp.asarray(h, jnp.float32), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    y = cell.readout(params, out, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y, expected @ (x @ p.output_kernel) + p.skip * x, rtol=1e-4, atol=1e-5)


def test_min_cells_step_equations():
    rng = np.random.default_rng(2)
    h, x = rng.normal(size=4), rng.normal(size=2)
    gru = gradscope.MinGRU(4, 2)
    p = _np(gru.init(KEY, recurrent_init="normal", bias_init="normal"))
    z = _sigmoid(x @ p.gate_kernel + p.gate_bias)
    expected = (1 - z) * h + z * (x @ p.candidate_kernel + p.candidate_bias)
    out = gru.step(gru.init(KEY, recurrent_init="normal", bias_init="normal"), jnp.asarray(h, jnp.float32),
                   jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    lstm = gradscope.MinLSTM(4, 2)
    params = lstm.init(KEY, recurrent_init="normal", bias_init="normal")
    p = _np(params)
    gates = _sigmoid(x @ p.gate_kernel + p.gate_bias)
    f, i = gates[:4], gates[4:]
    expected = f / (f + i) * h + i / (f + i) * (x @ p.candidate_kernel + p.candidate_bias)
    np.testing.assert_allclose(lstm.step(params, jnp.asarray(h, jnp.float32), jnp.asarray(x, jnp.float32)),
                               expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- initializers


def test_lru_ring_init_matches_the_paper():
    r_min, r_max, max_phase, n, m = 0.4, 0.9, 2.0, 20000, 3
    p = _np(gradscope.LRU(n, m, r_min=r_min, r_max=r_max, max_phase=max_phase).init(KEY))
    modulus, phase = np.exp(-np.exp(p.nu_log)), np.exp(p.theta_log)
    assert r_min <= modulus.min() and modulus.max() <= r_max
    assert 0 < phase.min() and phase.max() <= max_phase
    # |lambda|^2 uniform on [r_min^2, r_max^2] (uniform in area), phase uniform: compare quartiles
    quartiles = np.array([0.25, 0.5, 0.75])
    np.testing.assert_allclose(np.quantile(modulus**2, quartiles), r_min**2 + quartiles * (r_max**2 - r_min**2),
                               atol=0.01)
    np.testing.assert_allclose(np.quantile(phase, quartiles), quartiles * max_phase, atol=0.03)
    np.testing.assert_allclose(np.exp(p.gamma_log), np.sqrt(1 - modulus**2), rtol=1e-5)
    # B: each part N(0, 1/(2H)); C: each part N(0, 1/N); D: N(0, 1)
    np.testing.assert_allclose([p.input_kernel_real.var(), p.input_kernel_imag.var()], 1 / (2 * m), rtol=0.03)
    np.testing.assert_allclose([p.output_kernel_real.var(), p.output_kernel_imag.var()], 1 / n, rtol=0.03)


def test_s4d_and_mamba_initializations():
    k = np.arange(4)
    a = initializers.get("s4d_lin")(KEY, (2, 4), jnp.float32)
    assert a.dtype == jnp.complex64
    np.testing.assert_allclose(a[1], -0.5 + 1j * np.pi * k, rtol=1e-6)
    n = 8  # S4D-Inv counts the conjugate-pair state: 2 x 4 modes
    np.testing.assert_allclose(initializers.get("s4d_inv")(KEY, (4,), jnp.float32),
                               -0.5 + 1j * (n / np.pi) * (n / (2 * k + 1) - 1), rtol=1e-6)
    np.testing.assert_array_equal(initializers.get("s4d_real")(KEY, (3, 4), jnp.float32)[2], -(k + 1.0))
    steps = np.asarray(initializers.get("log_uniform", low=1e-3, high=1e-1)(KEY, (20000,), jnp.float32))
    assert 1e-3 <= steps.min() and steps.max() <= 1e-1
    np.testing.assert_allclose(np.quantile(np.log(steps), [0.25, 0.75]),
                               np.log(1e-3) + np.array([0.25, 0.75]) * np.log(100), atol=0.05)
    s4d = _np(gradscope.DiagonalSSM(4, 3).init(KEY, recurrent_init="s4d_real"))
    np.testing.assert_array_equal(s4d.input_kernel_real, 1.0)  # S4D: B = 1
    np.testing.assert_allclose(-np.exp(s4d.log_neg_real[0]), -(k + 1.0), rtol=1e-6)
    mamba = _np(gradscope.SelectiveSSM(4, 32).init(KEY))
    np.testing.assert_allclose(-np.exp(mamba.log_neg_a), np.broadcast_to(-(k + 1.0), (32, 4)), rtol=1e-6)
    delta = np.log1p(np.exp(mamba.delta_bias))  # softplus of the bias is the initial step size
    assert 1e-3 * (1 - 1e-5) <= delta.min() and delta.max() <= 0.1 * (1 + 1e-5)
    assert np.abs(mamba.delta_up).max() <= 2 ** -0.5 and mamba.delta_up.shape == (2, 32)


def test_chrono_draws_log_uniform_time_constants():
    t_max, n = 50.0, 20000
    keep = np.asarray(initializers.gate_bias(initializers.get("chrono", t_max=t_max), KEY, (3 * n,), jnp.float32,
                                             ("keep", "write", "other")))
    f, i, other = np.split(keep, 3)
    np.testing.assert_array_equal(i, -f)
    assert not other.any() and 0.0 <= f.min() and f.max() <= np.log(t_max - 1) + 1e-6
    # time constants 1/(1 - sigma(b_f)) = 1 + u with u ~ U(1, t_max - 1)
    tau = 1 / (1 - _sigmoid(f))
    np.testing.assert_allclose(np.quantile(tau, [0.25, 0.5, 0.75]), 2 + np.array([0.25, 0.5, 0.75]) * (t_max - 2),
                               rtol=0.02)
    with pytest.raises(ValueError, match="chrono needs t_max > 2"):
        initializers.get("chrono", t_max=2)
    with pytest.raises(TypeError, match="initializer 'chrono' needs option\\(s\\) t_max"):
        initializers.get("chrono")


def test_chrono_goes_into_each_cells_gate_biases_by_role():
    chrono, n = ("chrono", {"t_max": 50.0}), 6
    i, f, g, o = np.split(np.asarray(gradscope.LSTM(n).init(KEY, bias_init=chrono).bias), 4)
    assert (f >= 0).all() and f.any() and not g.any() and not o.any()
    np.testing.assert_array_equal(i, -f)  # Tallec & Ollivier: b_i = -b_f
    gru = gradscope.GRU(n).init(KEY, bias_init=chrono)
    r, z, c = np.split(np.asarray(gru.input_bias), 3)
    assert not r.any() and not c.any() and (z >= 0).all() and z.any()
    assert not np.asarray(gru.recurrent_bias).any()  # the two GRU biases add up: chrono goes in once
    plain = gradscope.GRU(n).init(KEY, bias_init="normal")  # other initializers draw both, as before
    assert np.asarray(plain.recurrent_bias).any() and np.asarray(plain.input_bias).any()
    mingru = np.asarray(gradscope.MinGRU(n).init(KEY, recurrent_init=chrono).gate_bias)
    assert (mingru <= 0).all()  # update (write) gate: b_z = -log u, the unit keeps sigma(log u)
    minlstm = np.asarray(gradscope.MinLSTM(n).init(KEY, recurrent_init=chrono).gate_bias)
    np.testing.assert_array_equal(minlstm[n:], -minlstm[:n])


@pytest.mark.parametrize("kwargs, message", [
    ({"r_min": 0.9, "r_max": 0.5}, r"ring needs 0 <= r_min <= r_max <= 1"),
    ({"max_phase": 7.0}, r"ring needs 0 < max_phase <= 2 pi"),
    ({"hidden_size": 0}, r"LRU.hidden_size must be a positive int"),
])
def test_lru_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gradscope.LRU(**{"hidden_size": 4, **kwargs})


def test_selective_ssm_refuses_complex_a():
    with pytest.raises(TypeError, match="SelectiveSSM's A is real"):
        gradscope.SelectiveSSM(4, 2).init(KEY, recurrent_init="s4d_lin")


# ---------------------------------------------------------------- spectra: reference and fast path


def _assert_same_spectra(fast, general):
    assert fast.log_singular_values.shape == general.log_singular_values.shape
    np.testing.assert_allclose(fast.log_singular_values, general.log_singular_values, atol=3e-5)
    np.testing.assert_allclose(fast.log_frobenius, general.log_frobenius, atol=3e-5)
    np.testing.assert_allclose(fast.log_floor, general.log_floor, atol=3e-5)


@pytest.mark.parametrize("name", list(SMALL))
def test_every_lag_matches_jacrev_in_both_engines(name, reference):
    """All lags 1..T of each cell (the LRU and S4D with complex states as [Re, Im] pairs) against
    jax.jacrev of the unrolled map, through the general engine and the diagonal fast path."""
    cell = SMALL[name]()
    params, xs = cell.init(KEY), _inputs(cell, 16)
    general = gradscope.jacobian_spectra(cell, params, xs, lags="all", diagonal=False)
    fast = gradscope.jacobian_spectra(cell, params, xs, lags="all")
    np.testing.assert_array_equal(general.lags, np.arange(1, 17))
    ref = reference.spectrum(cell.step, params, xs, cell.initial_state(), tuple(range(1, 17)))
    for result in (general, fast):
        reference.assert_match(result.log_singular_values, ref, rtol_max=2e-5, log_tol=1e-3,
                               log_floor=result.log_floor)
    _assert_same_spectra(fast, general)


@pytest.mark.parametrize("name", ["lru", "selective"])
def test_fast_path_forward_batched_and_with_lag_zero(name):
    cell = SMALL[name]()
    params, xs = cell.init(KEY), _inputs(cell, 40, batch=(2,))
    options = {"lags": (0, 1, 9, 40), "direction": "forward"}
    _assert_same_spectra(gradscope.jacobian_spectra(cell, params, xs, **options),
                         gradscope.jacobian_spectra(cell, params, xs, diagonal=False, **options))


@pytest.mark.parametrize("engine", ["fast", "general"])
def test_lru_on_a_circle_has_every_log_singular_value_k_log_r(engine):
    r, steps = 0.9, 120
    cell = gradscope.LRU(4, 2, r_min=r, r_max=r, max_phase=3.0)
    with jax.enable_x64(True):
        params = cell.init(KEY, dtype=jnp.float64)
        xs = _inputs(cell, steps).astype(jnp.float64)
        result = gradscope.jacobian_spectra(cell, params, xs, diagonal=engine == "fast")
        log_sv = np.asarray(result.log_singular_values)
    k = np.arange(1, steps + 1)[:, None]
    np.testing.assert_allclose(log_sv, np.broadcast_to(k * np.log(r), log_sv.shape), rtol=1e-12, atol=1e-12)


def test_fast_path_at_two_thousand_steps_and_its_shapes():
    cell = gradscope.MinGRU(16, 2)
    params, xs = cell.init(KEY, recurrent_init=("chrono", {"t_max": 100.0})), _inputs(cell, 2000)
    every = gradscope.jacobian_spectra(cell, params, xs)
    assert every.log_singular_values.shape == (2000, 16) and every.log_singular_values.dtype == jnp.float32
    logs = gradscope.jacobian_spectra(cell, params, xs, lags="log", num_log_lags=16)
    assert logs.log_singular_values.shape == (len(logs.lags), 16) and logs.lags[-1] == 2000
    np.testing.assert_allclose(logs.log_singular_values, every.log_singular_values[logs.lags - 1], atol=1e-4)
    # the general engine on the last 60 steps (the same products dh_T/dh_(T-k), k <= 60)
    prefix = gradscope.jacobian_spectra(cell, params, xs, lags=tuple(range(1, 61)), diagonal=False)
    np.testing.assert_allclose(every.log_singular_values[:60], prefix.log_singular_values, atol=3e-5)
    # 2000 steps of small per-step errors: the compensated sums agree with float64 to float32 rounding
    with jax.enable_x64(True):
        exact = gradscope.jacobian_spectra(cell, params, xs, dtype="float64")
    resolved = np.asarray(every.resolved)  # float32 clamps below log sigma_max + log(n eps); float64 does not
    assert resolved.sum() > 10000
    np.testing.assert_allclose(np.asarray(every.log_singular_values)[resolved],
                               np.asarray(exact.log_singular_values)[resolved], rtol=2e-6, atol=2e-5)


def test_fast_path_refuses_a_step_that_is_not_diagonal():
    vanilla = gradscope.VanillaRNN(4)
    with pytest.raises(ValueError, match="the step's Jacobian is not real-diagonal.*diagonal=False"):
        gradscope.jacobian_spectra(vanilla, vanilla.init(KEY), jnp.ones((10, 1)), diagonal=True)
    lru = gradscope.LRU(3)
    with pytest.raises(ValueError, match="not real-diagonal.*diagonal='complex'"):  # rotations are not diagonal
        gradscope.jacobian_spectra(lru.step, lru.init(KEY), jnp.ones((10, 1)), h0=lru.initial_state(),
                                   diagonal="real")
    with pytest.raises(ValueError, match="drop block=... or pass diagonal=False"):
        gradscope.jacobian_spectra(lru, lru.init(KEY), jnp.ones((10, 1)), diagonal=True,
                                   block=(lambda s: s.real, lambda s: s.real))
    with pytest.raises(ValueError, match="diagonal must be None, True, False, 'real' or 'complex'"):
        gradscope.jacobian_spectra(lru, lru.init(KEY), jnp.ones((10, 1)), diagonal="yes")
    with pytest.raises(ValueError, match="flat state \\[Re h, Im h\\] of even size"):
        gradscope.jacobian_spectra(lambda p, h, x: p * h, 0.5, jnp.ones((5, 1)), h0=jnp.ones(3), diagonal="complex")


def test_a_plain_diagonal_step_takes_the_fast_path_on_request(reference):
    w = jnp.array([0.9, -1.1, 0.5])

    def step(p, h, x):
        return jnp.tanh(p * h + x)

    xs, h0 = jax.random.normal(KEY, (30, 3)), jnp.zeros(3)
    fast = gradscope.jacobian_spectra(step, w, xs, h0=h0, lags=(1, 10, 30), diagonal=True)
    ref = reference.spectrum(step, w, xs, h0, (1, 10, 30))
    reference.assert_match(fast.log_singular_values, ref, rtol_max=1e-4, log_tol=1e-4, log_floor=fast.log_floor)
    block = gradscope.jacobian_spectra(gradscope.MinGRU(4), gradscope.MinGRU(4).init(KEY), jnp.ones((10, 1)),
                                       block=(lambda s: s[:2], lambda s: s[:2]))  # a block: the general engine
    assert block.log_singular_values.shape == (10, 2)


def test_fast_path_is_differentiable_and_jittable():
    cell = gradscope.LRU(2, 1, r_min=0.6, r_max=0.9)
    lags = (3, 8)

    def loss(params, **options):
        result = gradscope.jacobian_spectra(cell, params, xs, lags=lags, dtype="float64", **options)
        return jnp.sum(result.log_singular_values)

    with jax.enable_x64(True):
        params = cell.init(KEY, dtype=jnp.float64)
        xs = _inputs(cell, 8).astype(jnp.float64)
        grad = jax.grad(loss)(params)
        # the loss is sum_k sum_j 2 k log|lambda_j| = -2 (3 + 8) sum_j exp(nu_j): its gradient is exact
        np.testing.assert_allclose(grad.nu_log, -2 * sum(lags) * np.exp(params.nu_log), rtol=1e-10)
        np.testing.assert_allclose(grad.theta_log, 0.0, atol=1e-12)  # the moduli do not depend on the phases
        assert not np.asarray(grad.input_kernel_real).any()
        minlstm = gradscope.MinLSTM(3)  # a time-varying diagonal: the sums and sorts differentiate too
        m_params, m_xs = minlstm.init(KEY, dtype=jnp.float64), _inputs(minlstm, 8).astype(jnp.float64)
        summed = lambda p, **o: jnp.sum(gradscope.jacobian_spectra(minlstm, p, m_xs, lags=lags, **o)  # noqa: E731
                                        .log_singular_values)
        numeric = (summed(m_params._replace(gate_bias=m_params.gate_bias.at[0].add(1e-6)))
                   - summed(m_params._replace(gate_bias=m_params.gate_bias.at[0].add(-1e-6)))) / 2e-6
        np.testing.assert_allclose(jax.grad(summed)(m_params).gate_bias[0], numeric, rtol=1e-6)
    vanilla = gradscope.VanillaRNN(3)
    traced = jax.jit(lambda p: gradscope.jacobian_spectra(vanilla, p, jnp.ones((5, 1)), diagonal=True)
                     .log_singular_values)(vanilla.init(KEY))
    assert np.isnan(np.asarray(traced)).all()  # under a trace a non-diagonal step gives NaN, never wrong numbers


def test_sort_descending_matches_numpy_and_differentiates():
    values = jax.random.normal(KEY, (50, 33))
    values = values.at[0, :4].set(jnp.array([-jnp.inf, 0.0, -0.0, jnp.inf]))
    np.testing.assert_array_equal(diagonal.sort_descending(values), -np.sort(-np.asarray(values), axis=-1))
    with jax.enable_x64(True):
        doubles = jax.random.normal(KEY, (7, 9), jnp.float64)
        np.testing.assert_array_equal(diagonal.sort_descending(doubles), -np.sort(-np.asarray(doubles), axis=-1))
    tangent = jax.jvp(diagonal.sort_descending, (values[1:],), (jnp.ones_like(values[1:]) * values[1:],))[1]
    np.testing.assert_allclose(tangent, -np.sort(-np.asarray(values[1:]), axis=-1))


# ---------------------------------------------------------------- complex states elsewhere


def test_lru_through_the_pipeline_profiles_and_lyapunov_exponents():
    cell = gradscope.LRU(4, 1, r_min=0.7, r_max=0.95)
    params, xs = cell.init(KEY), _inputs(cell, 300)
    fast = gradscope.jacobian_spectra(cell, params, xs, lags="log", num_log_lags=8)
    pipelined = gradscope.jacobian_spectra(cell, params, xs, lags="log", num_log_lags=8, diagonal=False,
                                           pipelined=True, progress=False)
    np.testing.assert_allclose(pipelined.log_singular_values, fast.log_singular_values, atol=1e-4)
    profile = gradscope.profile.jacobian_profile(cell, params, xs, spectrum_lags=None)
    np.testing.assert_allclose(profile.log_sigma_max[fast.lags - 1], fast.log_singular_values[:, 0], atol=2e-3)
    exponents = gradscope.lyapunov.lyapunov_spectrum(cell, params, xs, transient=150)
    modulus = np.exp(-np.exp(np.asarray(params.nu_log)))
    np.testing.assert_allclose(np.sort(np.asarray(exponents.exponents)), np.sort(np.repeat(np.log(modulus), 2)),
                               atol=2e-3)
