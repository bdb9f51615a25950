"""Critical-gain calibration against exact and mean-field answers.

Tolerances:
* linear orthogonal: the RMS rate is exactly log(gain), so Brent's xtol (1e-3 in log
  gain) is the only error.
* relu (no input, unit-variance initial state): chi1 = g^2/2 for every state variance,
  so the measured root sits at sqrt(2) up to the O(n^-1/2) jitter of the active
  fraction around 1/2; 0.02 (1.4%) is about 3x the observed error at n = 64.
* tanh with unit-variance input (sigma_x = 1) and 64 inputs: the mean-field critical
  gain for input_size 64 (1.854; the input variance seen by each step fluctuates by
  sqrt(2/64) = 18% around sigma_x^2, which the time-varying mean field includes); the
  finite-n cell sits slightly off the infinite-width line; 3% covers the observed 1.1%.
"""

import numpy as np
import pytest

import gradscope as gs
from gradscope import calibrate, theory
from gradscope.plotting import theory as theory_plots


LINEAR = dict(seeds=2, num_steps=40, num_lags=4)


def test_linear_orthogonal_cell_calibrates_to_one():
    result = calibrate.calibrate(gs.VanillaRNN(16, activation="linear"), "orthogonal", bracket=(0.5, 4.0), **LINEAR)
    assert abs(np.log(result.gain)) < 2e-3
    np.testing.assert_allclose(result.slope, 1.0, rtol=1e-3)  # rate = log(gain) exactly
    assert result.gain_low <= result.gain <= result.gain_high
    assert result.rates.shape == (len(result.gains), 2)
    fig = theory_plots.plot_calibration(result)
    assert fig.axes[0].lines[-2].get_xdata()[0] == result.gain


def test_relu_calibrates_to_he_gain():
    result = calibrate.calibrate(gs.VanillaRNN(64, activation="relu"), seeds=2, num_steps=60, num_lags=4,
                                 inputs="zeros", h0="random")
    np.testing.assert_allclose(result.gain, np.sqrt(2.0), rtol=0.02)


def test_tanh_with_input_calibrates_to_mean_field_critical_line():
    cell = gs.VanillaRNN(64, input_size=64, activation="tanh")
    result = calibrate.calibrate(cell, seeds=2, num_steps=60, num_lags=4, input_scale=1.0)
    expected = float(theory.critical_sigma_w("tanh", sigma_b=0.0, sigma_x=1.0, input_size=cell.input_size))
    np.testing.assert_allclose(result.gain, expected, rtol=0.03)
    assert np.all(np.isfinite(result.seed_gains))


def test_lstm_measures_zero_rate_at_its_calibrated_gain():
    cell = gs.LSTM(8, input_size=4)
    result = calibrate.calibrate(cell, "orthogonal", seeds=2, num_steps=40, num_lags=4)
    assert 0.25 < result.gain < 8.0
    # independent check: initialize with that gain the ordinary way and measure with compare()
    table = gs.compare(cell, [("orthogonal", {"gain": result.gain})], seeds=result.seeds, num_steps=40,
                       lags=result.lags).to_dataframe()
    assert abs(float(table["rms_rate"].iloc[0])) < 1e-3 * max(1.0, abs(result.slope))


def test_gru_calibrates_with_a_glorot_family():
    result = calibrate.calibrate(gs.GRU(8, input_size=4), "glorot_uniform", seeds=2, num_steps=40, num_lags=4)
    assert 0.25 < result.gain < 8.0 and result.slope > 0
    assert result.initializer == "glorot_uniform"
    rates = result.to_dataframe().sort_values("gain")["rate"].to_numpy()
    assert rates[0] < 0 < rates[-1]


def test_calibrate_rejects_bad_requests():
    cell = gs.VanillaRNN(16, activation="linear")
    with pytest.raises(ValueError, match="change sign inside the bracket"):
        calibrate.calibrate(cell, bracket=(1.5, 2.0), **LINEAR)
    with pytest.raises(ValueError, match="no gain to calibrate"):
        calibrate.calibrate(cell, "normal")
    with pytest.raises(ValueError, match="which must be"):
        calibrate.calibrate(cell, which="sigma_min")
    with pytest.raises(ValueError, match="leave it out"):
        calibrate.calibrate(cell, ("orthogonal", {"gain": 2.0}))
