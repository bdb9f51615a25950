"""Phase diagrams: measured RMS growth rates against mean-field 1/2 log chi1, compiled once.

Tolerances for the measured RMS rate against 1/2 log chi1 (nats per step):
* tanh, orthogonal tied W, n = 256: 0.012. Haar-orthogonal W has no finite-n spectral
  outliers; what remains is the O(n^-1/2) fluctuation of the per-step factor
  sigma_w^2 mean_i phi'(a_i)^2 averaged over the fitted steps and the residual
  relaxation of q_t; observed deviations are below 0.01.
* relu, orthogonal tied W, n = 128: the mean over 4 seeds within 0.03. ReLU activity is
  nonnegative, so h W carries a per-unit offset mean(h) * (column sums of W) that is
  frozen in time with tied weights: each weight draw has its own active-set statistics
  and its own rate, a seed-specific shift (std about 0.03 at n = 128 and 256 alike: it
  does not shrink with n; the same at every sigma_w) that averages to the mean-field
  value over draws (and vanishes with untied weights, which redraw the offset at every
  step).
* Gaussian tied W, n = 256: 0.08. For large n the powers of one Gaussian W keep
  ||W^k||_F^2/n near sigma^2k (the Fuss-Catalan mean is 1), but at finite n its spectral
  radius exceeds sigma by a few percent (1.056 sigma on average at n = 256; docs/theory.md
  measures it), so once k passes about sqrt(n) the RMS rate drifts upward by up to
  log(rho/sigma) per step; observed deviations reach 0.06.
* untied Gaussian (deep feed-forward stack), n = 128: 0.02, about twice the fluctuation
  of an average over 45 independent layers (observed below 0.01 away from the critical point;
  exactly at sigma_w = 1, sigma_b = 0 the variance decays like 1/(2t) and the finite-depth
  rate sits about 0.02 below its infinite-depth value, so that point is not tested).
"""

import numpy as np
import pytest

import gradscope as gs
from gradscope import phase, theory
from gradscope.plotting import theory as theory_plots

WIDE = {"tanh": dict(n=256, sigma_w=[0.8, 1.5], seeds=1, tolerance=0.012),
        "relu": dict(n=128, sigma_w=[1.2, 1.6], seeds=4, tolerance=0.03)}


@pytest.fixture(scope="module", params=sorted(WIDE))
def wide_orthogonal(request):
    """Wide tied orthogonal cells: ordered and chaotic, with and without input."""
    options = WIDE[request.param]
    cell = gs.VanillaRNN(options["n"], input_size=options["n"], activation=request.param)
    diagram = phase.phase_diagram(cell, options["sigma_w"], 0.0, [0.0, 1.0], seeds=options["seeds"],
                                  num_steps=70, transient=20, num_lags=4)
    return diagram, options["tolerance"]


def test_orthogonal_rms_rate_matches_mean_field(wide_orthogonal):
    d, tolerance = wide_orthogonal
    assert np.all(d.finite)
    expected = theory.mean_field(d.cell.activation, d.sigma_w[None, None, :], d.sigma_b[None, :, None],
                                 d.input_scale[:, None, None], input_size=d.cell.input_size,
                                 initial_variance=1.0).rms_rate
    np.testing.assert_allclose(d.theory_rms_rate, expected, rtol=1e-6)
    # the grid spans both phases
    assert d.theory_rms_rate.min() < -0.05 and d.theory_rms_rate.max() > 0.05
    np.testing.assert_allclose(d.mean("rms_rate"), d.theory_rms_rate, atol=tolerance)


def test_single_gaussian_matrix_deviates_within_finite_n_bound():
    cell = gs.VanillaRNN(256, input_size=256, activation="tanh")
    d = phase.phase_diagram(cell, [0.8, 1.5], [0.0, 0.3], 1.0, seeds=1, num_steps=70, transient=20,
                            num_lags=4, recurrent="normal")
    np.testing.assert_allclose(d.mean("rms_rate"), d.theory_rms_rate, atol=0.08)


def test_untied_stack_follows_mean_field():
    cell = gs.VanillaRNN(128, activation="tanh")
    d = phase.phase_diagram(cell, [0.7, 1.3, 1.6], [0.0, 0.5], 0.0, seeds=1, num_steps=60, transient=15,
                            num_lags=4, recurrent="normal", untied=True)
    assert d.untied and d.critical_sigma_w.shape == (1, 2)
    np.testing.assert_allclose(d.critical_sigma_w[0], theory.critical_sigma_w("tanh", [0.0, 0.5]), rtol=1e-6)  # no input
    np.testing.assert_allclose(d.mean("rms_rate"), d.theory_rms_rate, atol=0.02)


class CountingRNN(gs.VanillaRNN):
    """A vanilla cell that counts how often JAX traces its step."""

    calls = []

    def step(self, params, h, x):
        CountingRNN.calls.append(1)
        return super().step(params, h, x)


def test_grid_is_compiled_once_whatever_its_size():
    options = dict(seeds=2, num_steps=12, transient=4, num_lags=3)
    CountingRNN.calls.clear()
    diagram = phase.phase_diagram(CountingRNN(8, activation="tanh"), [0.5, 1.0, 2.0], [0.0, 0.5], [0.0, 1.0],
                                  **options)
    # one trace calls the step twice (the unroll's scan body, the sweep's VJP); tracing per grid
    # point or per seed would call it at least 2 x 12 x 2 times
    assert len(CountingRNN.calls) == 2
    assert diagram.rms_rate.shape == (2, 2, 3, 2)
    CountingRNN.calls.clear()
    phase.phase_diagram(CountingRNN(8, activation="tanh"), [0.6, 1.1, 2.2], [0.1, 0.4], [0.0, 2.0], **options)
    assert CountingRNN.calls == []  # an equal cell, same shapes, new values: the compiled function is reused
    table = diagram.to_dataframe()
    assert list(table.columns) == ["input_scale", "sigma_b", "sigma_w", "rate", "rate_std", "rms_rate",
                                   "rms_rate_std", "theory_rms_rate"]
    np.testing.assert_allclose(table["rms_rate"], diagram.rms_rate.mean(axis=-1).ravel(), rtol=1e-6)
    np.testing.assert_allclose(table["theory_rms_rate"], diagram.theory_rms_rate.ravel())


def test_phase_plots_draw_the_result(wide_orthogonal):
    d, _ = wide_orthogonal
    fig = theory_plots.plot_phase_diagram(d, input_index=1)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(d.sigma_b.size, d.sigma_w.size),
                               d.mean()[1])
    (line,) = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(line.get_xdata(), d.critical_sigma_w[1])
    fig = theory_plots.plot_rate_vs_theory(d, input_index=0)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), d.theory_rms_rate[0, 0])


@pytest.mark.parametrize("bad, match", [(dict(sigma_w=[-1.0]), "sigma_w values must be finite and > 0"),
                                        (dict(recurrent="he_normal"), "recurrent must be one of"),
                                        (dict(h0="ones"), "h0 must be 'zeros' or 'random'"),
                                        (dict(transient=11), "transient must lie in")])
def test_phase_diagram_rejects_bad_options(bad, match):
    arguments = dict(sigma_w=[1.0], num_steps=12) | bad
    with pytest.raises(ValueError, match=match):
        phase.phase_diagram(gs.VanillaRNN(4), **arguments)
