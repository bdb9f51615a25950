r"""Calibration: the recurrent gain at which the measured growth rate is zero.

For a cell and an initializer family with a ``gain`` (orthogonal, glorot, he, lecun,
identity), :func:`calibrate` finds the gain :math:`g^*` where the seed-averaged
measured rate :math:`\bar r(g)` crosses zero, the edge between vanishing and
exploding gradients. It needs no theory, so it works for LSTM and GRU cells, where no
closed form exists; for vanilla cells it reproduces the mean-field critical line
(tanh with no bias or input: 1; relu: :math:`\sqrt 2`; with inputs, the line for the
cell's input size, :func:`gradscope.theory.critical_sigma_w` with
``input_size=cell.input_size``: a cell with one input shares a drive that fluctuates
from step to step and is critical at a lower gain than a wide one).

Every initializer family is linear in its gain (``init(gain=g) = g * init(gain=1)``
for the same key), so one unit-gain draw per seed is rescaled inside the step
(:class:`gradscope.phase.ScaledStep`): the rate is a smooth, deterministic function of
g (common random numbers), and one compiled function serves every evaluation. The
root is found by Brent's method in :math:`\log g`.

**Uncertainty.** The slope :math:`\bar r'` of the mean rate at the root is a central
difference over :math:`\log g^* \pm 0.1` (wide enough to average out the jitter of
chaotic runs), and each seed's root is linearised with it,
:math:`\log g_s = \log g^* - r_s(g^*)/\bar r'`. Their spread is what a single seed
would scatter; the standard error of the calibrated gain is that spread over
:math:`\sqrt{S}`, reported as ``gain_low``/``gain_high`` (one standard error in log
gain). It measures seed-to-seed variation only, not the finite-horizon bias.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.optimize

from gradscope.core import _checks
from gradscope import initializers
from gradscope.core._lapack import lapack_thread_limit
from gradscope.analysis.comparison import make_inputs
from gradscope.display.headline import Headline, Readable, lag_range, long_table
from gradscope.theory.phase import ScaledStep, draw_seeds, fit_lags, measure_rates

__all__ = ["Calibration", "calibrate"]

RATES = ("rms_rate", "rate")
"""Which measured rate :func:`calibrate` zeroes: the RMS singular value's (default) or sigma_max's."""

_SLOPE_STEP = 0.1
"""Half-width, in log gain, of the central difference that estimates the slope at the root."""

_OVERFLOW_RATE = 10.0
"""Stand-in rate (nats/step) for a run whose states overflowed: it is exploding."""


@dataclasses.dataclass(frozen=True, repr=False)
class Calibration(Readable):
    """The critical gain of a cell and initializer family, with its uncertainty.

    Attributes:
        gain: the gain where the seed-averaged rate is zero.
        gain_low: ``gain`` times ``exp(-log_gain_stderr)``.
        gain_high: ``gain`` times ``exp(+log_gain_stderr)``.
        log_gain_stderr: standard error of ``log(gain)`` from the seed spread (NaN for one seed).
        seed_gains: ``[seeds]`` each seed's own root, linearised at ``gain``.
        slope: d(mean rate) / d(log gain) at ``gain`` (central difference over +-0.1).
        which: the calibrated rate, ``"rms_rate"`` or ``"rate"``.
        initializer: the family's name.
        gains: every gain evaluated, in order (bracket ends, Brent steps, slope probes).
        rates: ``[len(gains), seeds]`` the measured rate at each evaluation.
        seeds: the integer seeds.
        num_steps: the horizon T.
        lags: the lags each rate was fitted on.
    """

    gain: float
    gain_low: float
    gain_high: float
    log_gain_stderr: float
    seed_gains: np.ndarray
    slope: float
    which: str
    initializer: str
    gains: np.ndarray
    rates: np.ndarray
    seeds: tuple
    num_steps: int
    lags: tuple

    def describe(self) -> str:
        """One line, e.g. ``orthogonal: critical gain 1.004 (1.001-1.007, ±1 s.e.) for rms_rate``."""
        return (f"{self.initializer}: critical gain {self.gain:.4g} ({self.gain_low:.4g}-{self.gain_high:.4g}, "
                f"±1 s.e. over {len(self.seeds)} seeds) for {self.which}")

    def to_dataframe(self, per_seed: bool = False) -> pd.DataFrame:
        """Every evaluation, in the order made: its gain and the rate over seeds.

        Args:
            per_seed: False (default): one row per evaluation with ``gain``, ``rate`` (seed
                mean) and ``rate_std`` (population std over seeds). True: one row per
                (evaluation, seed) with ``evaluation`` (its index), ``seed``, ``gain`` and
                ``rate`` (NaN where the run overflowed).
        """
        if per_seed:
            return long_table({"evaluation": range(len(self.gains)), "seed": self.seeds},
                              {"gain": self.gains, "rate": self.rates})
        return pd.DataFrame({"gain": self.gains, "rate": self.rates.mean(axis=-1),
                             "rate_std": self.rates.std(axis=-1)})

    def _headline(self) -> Headline:
        facts = (self.describe(),
                 f"T = {self.num_steps}, rate fitted on {lag_range(self.lags)}, {len(self.gains)} evaluations, "
                 f"slope {self.slope:.4g} per unit log gain")
        return Headline("Calibration", facts, {"seed": self.seeds, "seed_gain": self.seed_gains},
                        ("plot_calibration",))


@lapack_thread_limit
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _seed_rates(step, lags, untied, which, params, xs, h0, gain):
    def one(p, x, h):
        scaled = p._replace(sigma_w=gain * p.sigma_w)
        rate, rms_rate, finite = measure_rates(step, scaled, x, h, lags, untied)
        value = rms_rate if which == "rms_rate" else rate
        return jnp.where(finite, value, jnp.nan)

    return jax.vmap(one)(params, xs, h0)


def _family(initializer):
    """The family at unit gain, as a ``(name, options)`` spec, and its name."""
    name, options = (initializer, {}) if isinstance(initializer, str) else initializer
    if not isinstance(name, str) or not isinstance(options, dict):
        raise TypeError(f"initializer must be a family name or (name, options), got {initializer!r}")
    if "gain" in options:
        raise ValueError("the gain is what calibrate searches; leave it out of the initializer options")
    try:
        initializers.get(name, gain=1.0, **options)
    except TypeError:
        raise ValueError(f"initializer {name!r} has no gain to calibrate; use one of orthogonal, identity, "
                         "glorot_*, he_*, lecun_* (or their aliases)") from None
    return (name, {**options, "gain": 1.0}), name


class _Problem:
    """Seed data and the compiled rate function, with every evaluation recorded."""

    def __init__(self, step, lags, untied, which, params, xs, h0):
        self._call = functools.partial(_seed_rates, step, lags, untied, which, params, xs, h0)
        self._dtype = xs.dtype
        self.gains, self.rates = [], []

    def seed_rates(self, gain: float) -> np.ndarray:
        """Per-seed rates at ``gain`` (NaN where a run overflowed); recorded."""
        rates = np.asarray(self._call(jnp.asarray(gain, self._dtype)), np.float64)
        self.gains.append(float(gain))
        self.rates.append(rates)
        return rates

    def mean_rate(self, log_gain: float) -> float:
        """Seed-mean rate at ``exp(log_gain)``, an overflow counting as a large positive rate."""
        rates = self.seed_rates(float(np.exp(log_gain)))
        return float(np.mean(np.nan_to_num(rates, nan=_OVERFLOW_RATE, posinf=_OVERFLOW_RATE,
                                           neginf=-_OVERFLOW_RATE)))


def _bracketed(problem: _Problem, bracket) -> tuple[float, float]:
    if not (len(bracket) == 2 and 0 < bracket[0] < bracket[1]):
        raise ValueError(f"bracket must be (low, high) gains with 0 < low < high, got {bracket!r}")
    lo, hi = np.log(bracket[0]), np.log(bracket[1])
    r_lo, r_hi = problem.mean_rate(lo), problem.mean_rate(hi)
    if not r_lo < 0 < r_hi:
        raise ValueError(f"the measured rate must change sign inside the bracket, but it is {r_lo:+.4f} at gain "
                         f"{bracket[0]} and {r_hi:+.4f} at gain {bracket[1]}; widen the bracket "
                         "(a rate that never turns positive means the cell cannot explode at these gains)")
    return lo, hi


def _uncertainty(problem: _Problem, log_root: float, delta: float):
    """Common slope by a central difference of the mean rate; seed roots linearised with it."""
    at_root = problem.seed_rates(float(np.exp(log_root)))
    above = problem.mean_rate(log_root + delta)
    below = problem.mean_rate(log_root - delta)
    slope = (above - below) / (2 * delta)
    if not slope > 0:
        warnings.warn(f"the measured rate is not increasing around the calibrated gain (slope {slope:+.3g} per "
                      "unit log gain): the uncertainty is undefined. Use more seeds or a longer num_steps",
                      RuntimeWarning, stacklevel=3)
        return slope, np.full(at_root.shape, np.nan), np.nan
    log_seed = log_root - at_root / slope
    spread = float(np.std(log_seed, ddof=1)) if log_seed.size > 1 else np.nan
    return slope, np.exp(log_seed), spread / np.sqrt(log_seed.size)


def _seed_data(cell, family, seeds, num_steps, inputs, input_scale, input_init, bias_init, h0, untied, dtype):
    data = draw_seeds(cell, seeds, recurrent_init=family, input_init=input_init, bias_init=bias_init,
                      num_steps=num_steps, untied=untied, h0=h0, dtype=dtype)
    xs = make_inputs(inputs, seeds, num_steps, cell.input_size, input_scale, dtype)
    return data.params, xs, data.h0


def calibrate(cell, initializer="orthogonal", *, bracket: tuple[float, float] = (0.25, 8.0),
              which: str = "rms_rate", seeds=4, num_steps: int = 200, transient: int | None = None,
              num_lags: int = 16, inputs="gaussian", input_scale: float = 1.0, input_init="lecun_normal",
              bias_init="zeros", h0: str = "zeros", untied: bool = False, xtol: float = 1e-3,
              dtype=None) -> Calibration:
    r"""Find the gain of ``initializer`` at which the cell's measured growth rate is zero.

    The rate at gain g is measured as in :func:`gradscope.phase.phase_diagram` (backward
    spectra over the last ``num_steps - transient`` steps, ``num_lags`` lags), averaged
    over seeds, and its root is found by Brent's method in log g inside ``bracket``.

    **Which rate.** ``which="rms_rate"`` (default) zeroes the growth of the RMS
    singular value, :math:`\log(\lVert P_k\rVert_F/\sqrt n)`: the quantity mean-field
    theory predicts (so vanilla cells recover the critical line), exact in log domain,
    with little finite-horizon bias. ``which="rate"`` zeroes the growth of
    sigma_max, the verdict's rate: the worst-case gradient direction. Its finite-lag
    estimate is biased upward: for a product of k Gaussian matrices
    :math:`\log\sigma_{\max} - \log\text{RMS}` grows like
    :math:`\tfrac12\log\big(e(k+1)\big)` (at most :math:`\tfrac12\log n`; see
    :func:`gradscope.theory.gaussian_product_gap`), and the slope of that gap over the
    fitted lags adds to the rate, so its critical gain is a little lower and drifts with
    ``num_steps``.

    Args:
        cell: a gradscope cell (vanilla, LSTM, GRU); the gain scales its recurrent kernel
            (every gate block).
        initializer: a family with a ``gain`` option: a name (``"orthogonal"``,
            ``"glorot_normal"``, ``"he_normal"``, ``"lecun_normal"``, ``"identity"``, ...)
            or ``(name, options)`` without ``gain``.
        bracket: ``(low, high)`` gains; the rate must be negative at ``low`` and
            positive at ``high``. Runs whose states overflow count as exploding.
        which: ``"rms_rate"`` or ``"rate"`` (see above).
        seeds: a count (seeds 0..count-1) or explicit ints.
        num_steps: the horizon T.
        transient: steps excluded from the fit (default ``num_steps // 2``).
        num_lags: evenly spaced lags the rate is fitted on.
        inputs: ``"gaussian"``, ``"zeros"`` or an array (see :func:`gradscope.analysis.comparison.make_inputs`).
        input_scale: standard deviation of Gaussian inputs.
        input_init: initializers of the other parameters (fixed).
        bias_init: initializers of the other parameters (fixed).
        h0: ``"zeros"`` or ``"random"`` (unit-normal initial state; needed to leave
            the fixed point h = 0 of an input-free, bias-free cell).
        untied: fresh parameters at every step (a deep feed-forward stack).
        xtol: tolerance on log(gain) for Brent's method.
        dtype: ``"float32"`` (default) or ``"float64"``.

    Returns:
        :class:`Calibration` with ``gain``, its one-standard-error interval and every
        evaluation made.

    Raises:
        ValueError: the rate does not change sign over ``bracket``, an unknown ``which``,
            or an initializer without a gain.
    """
    if which not in RATES:
        raise ValueError(f"which must be 'rms_rate' (RMS singular value, default) or 'rate' (sigma_max), got {which!r}")
    family, name = _family(initializer)
    seeds = _checks.seed_tuple(seeds)
    transient = num_steps // 2 if transient is None else int(transient)
    lags = fit_lags(num_steps, transient, num_lags)
    dtype = _checks.check_dtype(dtype) or np.dtype(np.float32)
    data = _seed_data(cell, family, seeds, num_steps, inputs, input_scale, input_init, bias_init, h0, untied, dtype)
    problem = _Problem(ScaledStep(cell), lags, bool(untied), which, *data)
    lo, hi = _bracketed(problem, bracket)
    log_root = scipy.optimize.brentq(problem.mean_rate, lo, hi, xtol=xtol)
    slope, seed_gains, stderr = _uncertainty(problem, log_root, _SLOPE_STEP)
    gain = float(np.exp(log_root))
    return Calibration(gain, gain * float(np.exp(-stderr)), gain * float(np.exp(stderr)), float(stderr),
                       seed_gains, slope, which, name, np.asarray(problem.gains), np.stack(problem.rates),
                       seeds, int(num_steps), lags)
