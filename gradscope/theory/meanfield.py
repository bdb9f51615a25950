r"""What theory predicts for the Jacobian products: mean field, exact linear results, bounds.

**Mean-field signal propagation** (Poole et al. 2016, Schoenholz et al. 2017; for
recurrent networks Chen, Pennington & Schoenholz 2018). A vanilla cell
:math:`h_t = \phi(a_t)`, :math:`a_t = h_{t-1} W + x_t U + b`, with recurrent entries
of variance :math:`\sigma_w^2/n` (orthogonal with gain :math:`\sigma_w`, or Gaussian),
bias entries of variance :math:`\sigma_b^2` and an input term :math:`x_t U` whose
entries have variance :math:`\sigma_x^2` (for ``lecun_normal`` input kernels and
inputs of standard deviation ``s`` per feature, :math:`\sigma_x = s`). Over the units,
the pre-activations are Gaussian of variance :math:`q_t`, which obeys the
*variance map*

.. math::
    q_{t+1} = V(q_t) = \sigma_w^2\, \mathbb E_z\big[\phi(\sqrt{q_t}\, z)^2\big]
              + \sigma_b^2 + \sigma_x^2, \qquad z \sim N(0, 1),

with stable fixed point :math:`q^*`. A gradient (or a perturbation) crossing one step
is multiplied by :math:`J = \operatorname{diag}(\phi'(a)) W^\top`, so its squared norm
is multiplied on average by

.. math::
    \chi_1 = \sigma_w^2\, \mathbb E_z\big[\phi'(\sqrt{q^*}\, z)^2\big].

Hence :math:`\lVert P_k\rVert_F^2 / n \approx \chi_1^k`: the RMS singular value of
the product changes by :math:`\tfrac12 \log \chi_1` nats per step. :math:`\chi_1 < 1`
is the ordered (vanishing) phase, :math:`\chi_1 > 1` the chaotic (exploding) one, and
:math:`\chi_1 = 1` the order-to-chaos *critical line*. The theory is exact for fresh
weights at every step (untied, a deep feed-forward stack) as :math:`n \to \infty`;
for one tied W it holds to leading order in :math:`1/n` (see the docs page for the
finite-n deviations of a single Gaussian W).

**Wide and narrow inputs.** The variance map above assumes that the input term adds
the same variance :math:`\sigma_x^2` at every step: true when each unit receives its
own input drive, that is when the cell has many inputs (``input_size`` large). With a
few inputs the drive is shared: with ``input_size = 1`` every unit receives the same
scalar :math:`x_t` times its own weight, so over the units the input term has variance
:math:`\sigma_x^2 \xi_t^2`, which changes from step to step (:math:`\xi_t \sim N(0, 1)`;
with ``m`` inputs, :math:`\sigma_x^2\chi^2_m/m`). The pre-activation variance then
never settles: it follows the *time-varying mean field*

.. math::
    q_t = \sigma_w^2\, \mathbb E_z\big[\phi(\sqrt{q_{t-1}}\, z)^2\big] + \sigma_b^2
          + \sigma_x^2 \frac{\chi^2_{m,t}}{m},
    \qquad \chi_{1,t} = \sigma_w^2\, \mathbb E_z\big[\phi'(\sqrt{q_t}\, z)^2\big],

and the squared norm of the product is :math:`\prod_t \chi_{1,t}`, so the RMS rate is
:math:`\tfrac12 \mathbb E[\log\chi_{1,t}]` over the stationary distribution of
:math:`q_t`. ``mean_field(..., input_size=m)`` averages it over a long simulated drive
(32768 steps of one fixed random sequence, Monte-Carlo accuracy about 1e-3 nats per
step); ``input_size=None`` or ``math.inf`` is the wide fixed point. For tanh at
:math:`\sigma_w = 1` with unit inputs the two differ by 0.07 nats per step, so the
narrow form is the one that describes a cell with one input.

Gaussian expectations are computed in JAX: by Gauss-Hermite quadrature (101 nodes)
for smooth activations at :math:`q \le 1`, where it is accurate to better than 1e-9;
above that, and for every activation with a kink, by composite Gauss-Legendre
quadrature on panels split at the kinks and at the scale :math:`1/\sqrt q` of the
activation's features (Gauss-Hermite through a kink is wrong by a large margin: for
the step :math:`\mathrm{relu}'^2` by 0.06; and for tanh at :math:`q = 20` even the
smooth integrand is off by 2e-2). ReLU and the linear activation use closed forms.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from gradscope.core import _checks
from gradscope.cells import classic as cells

__all__ = [
    "ActivationSpec",
    "MeanField",
    "MeanFieldPath",
    "PascanuBound",
    "WIDE_INPUTS_WARNING",
    "activation_spec",
    "critical_sigma_w",
    "derivative_bound",
    "fixed_linear_lyapunov",
    "gaussian_mean",
    "gaussian_product_gap",
    "ginibre_lyapunov",
    "mean_field",
    "mean_field_path",
    "orthogonal_linear_log_singular_values",
    "pascanu_bound",
]

_KINKS = {"relu": (0.0,), "hard_tanh": (-1.0, 1.0), "elu": (0.0,)}
"""Pre-activation values where a built-in activation (or its derivative) is not smooth."""

_CLOSED_FORMS = {"relu": 0.5, "linear": 1.0, "identity": 1.0}
r"""Positively homogeneous activations: :math:`E[\phi(\sqrt q z)^2] = c q`, :math:`E[\phi'^2] = c`."""

_DERIVATIVE_BOUNDS = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0, "identity": 1.0,
                      "softplus": 1.0, "elu": 1.0, "hard_tanh": 1.0}
r"""Exact :math:`\gamma = \sup_a |\phi'(a)|` for the built-in activations that have a simple one."""

_HERMITE_MAX_VARIANCE = 1.0
_NEWTON_STEPS = 40
_BISECTION_STEPS = 40
_CHUNK = 16
_TAIL = 10.0  # |z| beyond which the Gaussian weight (< 1e-22) is dropped
_DRIVE_STEPS = 32768
"""Steps of the simulated input drive that a narrow-input mean field averages over."""
_DRIVE_BURN_IN = 256
_TABLE_LOG_Q = (math.log(1e-12), math.log(1e8), 4096)
"""log q range and size of the tables of log E[phi^2], log E[phi'^2] that the narrow-input
simulation interpolates (linearly in log-log; relative error about 4e-6 for tanh)."""

WIDE_INPUTS_WARNING = (
    "mean-field theory with sigma_x > 0 and no input_size assumes wide inputs: every unit receives its own "
    "input drive, of the same variance sigma_x^2 at every step (input_size -> infinity). A cell with few "
    "inputs shares one drive that fluctuates from step to step (with input_size=1 and tanh at sigma_w = 1 the "
    "wide prediction is off by about 0.07 nats/step). Pass input_size=cell.input_size for the time-varying "
    "mean field of your cell, or input_size=math.inf to state that the inputs are wide.")
"""The warning :func:`mean_field` and :func:`critical_sigma_w` give when an input is set but its width is not."""


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """An activation as the theory needs it (hashable, so it can be a static jit argument).

    Attributes:
        name: the built-in name, or the callable's ``__name__``.
        phi: the elementwise function.
        kinks: pre-activation values where ``phi`` or ``phi'`` is not smooth; the
            Gaussian integrals are split there.
        homogeneous: ``c`` for the closed forms ``E[phi^2] = c q``, ``E[phi'^2] = c``
            (relu: 1/2, linear: 1), else None.
    """

    name: str
    phi: Callable[[jax.Array], jax.Array]
    kinks: tuple[float, ...] = ()
    homogeneous: float | None = None

    def derivative(self, a: jax.Array) -> jax.Array:
        """Elementwise ``phi'(a)`` by automatic differentiation."""
        grad = jax.grad(lambda u: jnp.sum(self.phi(u)))
        return grad(a)

    def squared(self, a: jax.Array) -> jax.Array:
        """``phi(a)^2``, the integrand of the variance map."""
        return self.phi(a) ** 2

    def squared_derivative(self, a: jax.Array) -> jax.Array:
        """``phi'(a)^2``, the integrand of chi1."""
        return self.derivative(a) ** 2


def activation_spec(activation, kinks: Sequence[float] | None = None) -> ActivationSpec:
    """Resolve a name from :data:`gradscope.cells.ACTIVATIONS` or a callable into an :class:`ActivationSpec`.

    Args:
        activation: ``"tanh"``, ``"relu"``, ... or an elementwise callable.
        kinks: for a callable, the pre-activations where it (or its derivative) has a
            kink; a callable is assumed smooth otherwise. Overrides the built-in table.

    Raises:
        ValueError: an unknown activation name.
    """
    if isinstance(activation, ActivationSpec):
        return activation
    phi = cells.get_activation(activation)
    name = activation.lower() if isinstance(activation, str) else getattr(activation, "__name__", "custom")
    known = isinstance(activation, str)
    table_kinks = _KINKS.get(name, ()) if known else ()
    chosen = tuple(float(k) for k in (table_kinks if kinks is None else kinks))
    return ActivationSpec(name, phi, chosen, _CLOSED_FORMS.get(name) if known else None)


@functools.lru_cache(maxsize=None)
def _rule(kind: str, degree: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "hermite":
        nodes, weights = hermegauss(degree)
        return nodes, weights / np.sqrt(2.0 * np.pi)
    return leggauss(degree)


def _hermite_mean(f, variance):
    nodes, weights = _rule("hermite", 101)
    s = jnp.sqrt(variance)[..., None]
    return jnp.sum(f(s * jnp.asarray(nodes, s.dtype)) * jnp.asarray(weights, s.dtype), axis=-1)


def _panel_breaks(s, kinks):
    fixed = np.linspace(-_TAIL, _TAIL, 21)
    offsets = np.array([0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    centres = np.array([0.0, *kinks])
    scaled = np.concatenate([centres[:, None] + offsets, centres[:, None] - offsets[1:]], axis=1).ravel()
    feature = jnp.asarray(scaled, s.dtype) / s[..., None]
    fixed = jnp.broadcast_to(jnp.asarray(fixed, s.dtype), s.shape + fixed.shape)
    return jnp.sort(jnp.clip(jnp.concatenate([fixed, feature], axis=-1), -_TAIL, _TAIL), axis=-1)


def _panel_mean(f, variance, kinks):
    s = jnp.maximum(jnp.sqrt(variance), jnp.finfo(variance.dtype).tiny)
    breaks = _panel_breaks(s, kinks)
    lo, hi = breaks[..., :-1, None], breaks[..., 1:, None]
    x, w = (jnp.asarray(a, s.dtype) for a in _rule("legendre", 16))
    z = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x
    density = jnp.exp(-0.5 * z**2) / jnp.sqrt(2.0 * jnp.pi).astype(s.dtype)
    values = f(s[..., None, None] * z) * density * 0.5 * (hi - lo) * w
    return jnp.sum(values, axis=(-2, -1))


def gaussian_mean(f: Callable[[jax.Array], jax.Array], variance, kinks: Sequence[float] = ()) -> jax.Array:
    r""":math:`\mathbb E_{z \sim N(0,1)}[f(\sqrt{v}\, z)]` for every entry ``v`` of ``variance``.

    Gauss-Hermite (101 nodes) where ``f`` is smooth and ``v <= 1``; composite
    Gauss-Legendre on panels split at ``kinks`` and at the feature scale ``1/sqrt(v)``
    otherwise (accurate to about 1e-9 for tanh-like and step-like integrands).

    Args:
        f: elementwise function of the pre-activation.
        variance: array of variances ``v >= 0`` (any shape; the result has that shape).
        kinks: pre-activation values where ``f`` is not smooth.
    """
    return _gaussian_mean(f, jnp.asarray(variance, dtype=jnp.result_type(float)), tuple(float(k) for k in kinks))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _gaussian_mean(f, variance, kinks):
    panels = _panel_mean(f, variance, kinks)
    if kinks:
        return panels
    return jnp.where(variance <= _HERMITE_MAX_VARIANCE, _hermite_mean(f, variance), panels)


def _second_moment(spec: ActivationSpec, q):
    if spec.homogeneous is not None:
        return spec.homogeneous * q
    return _gaussian_mean(spec.squared, q, spec.kinks)


def _derivative_moment(spec: ActivationSpec, q):
    if spec.homogeneous is not None:
        return jnp.full_like(q, spec.homogeneous)
    return _gaussian_mean(spec.squared_derivative, q, spec.kinks)


class MeanField(NamedTuple):
    r"""Mean-field prediction for a vanilla cell (every field has the broadcast shape of the inputs).

    Attributes:
        q_star: fixed point :math:`q^*` of the variance map (pre-activation variance);
            ``inf`` when the map has no finite stable fixed point (relu with
            :math:`\sigma_w^2 \ge 2`, linear with :math:`\sigma_w \ge 1`, ...).
        chi1: :math:`\chi_1 = \sigma_w^2 E[\phi'(\sqrt{q^*} z)^2]`, the mean factor by which
            one step multiplies a squared gradient norm. Where ``q_star`` is infinite it
            is the large-q limit (exact for relu and linear).
        rms_rate: :math:`\tfrac12 \log \chi_1`, the predicted per-step growth rate (nats)
            of the RMS singular value of the Jacobian product (compare with
            :attr:`gradscope.metrics.Summary.rms_rate`).
        chi_q: :math:`V'(q^*)`, the slope of the variance map at its fixed point; below 1
            the variance converges to :math:`q^*` (geometrically, at that rate).
        timescale: :math:`1/|\text{rms\_rate}|`, the steps over which the RMS singular
            value changes by a factor e (inf on the critical line).
        converged: False where the fixed-point solve did not settle (``q_star`` is
            then inf if the variance was still growing, NaN otherwise).
    """

    q_star: jax.Array
    chi1: jax.Array
    rms_rate: jax.Array
    chi_q: jax.Array
    timescale: jax.Array
    converged: jax.Array


def _variance_map(spec, sw2, c):
    return lambda q: sw2 * _second_moment(spec, q) + c


def _closed_form_q(spec, sw2, c, q_start):
    slope = sw2 * spec.homogeneous
    finite = c / jnp.where(slope < 1, 1.0 - slope, 1.0)
    still = (c == 0) & ((slope == 1) | (q_start == 0))
    return jnp.where(slope < 1, finite, jnp.where(still, q_start, jnp.inf))


def _iterate_q(spec, sw2, c, q_start, cap):
    """The fixed point that the variance map reaches from ``q_start``.

    Fixed-point iteration moves monotonically towards it (V is increasing); each step
    first tries Newton and keeps it when it moves the same way without crossing a root
    (the residual keeps its sign) and lowers the residual. Newton halves q at the
    double root of a critical cell, where fixed-point iteration alone crawls like 1/t.
    """
    vmap_ = _variance_map(spec, sw2, c)

    def step(_, q):
        value, slope = jax.jvp(vmap_, (q,), (jnp.ones_like(q),))
        residual = value - q
        trial = q - residual / jnp.where(slope != 1.0, slope - 1.0, 1.0)
        trial = jnp.clip(trial, 0.0, cap)
        trial_residual = vmap_(trial) - trial
        same_way = (trial - q) * residual > 0
        not_crossed = trial_residual * residual > 0
        better = same_way & not_crossed & (jnp.abs(trial_residual) < jnp.abs(residual))
        return jnp.where(better, trial, jnp.minimum(value, cap))

    return jax.lax.fori_loop(0, _NEWTON_STEPS, step, q_start)


def _solve_q(spec, sw2, c, q_start):
    if spec.homogeneous is not None:
        q = _closed_form_q(spec, sw2, c, q_start)
        return q, jnp.ones(q.shape, bool), jnp.where(jnp.isfinite(q), q, 1.0)
    cap = jnp.asarray(jnp.finfo(c.dtype).max ** 0.25, c.dtype)
    q = _iterate_q(spec, sw2, c, q_start, cap)
    residual = _variance_map(spec, sw2, c)(q) - q
    converged = (jnp.abs(residual) <= 1e-5 * (1.0 + q)) & (q < cap)
    reported = jnp.where(converged, q, jnp.where(residual > 0, jnp.inf, jnp.nan))
    return reported, converged, q


@functools.partial(jax.jit, static_argnums=0)
def _mean_field_core(spec: ActivationSpec, sigma_w, sigma_b, sigma_x, initial_variance) -> MeanField:
    sw2 = sigma_w**2
    c = sigma_b**2 + sigma_x**2
    q_star, converged, q_used = _solve_q(spec, sw2, c, sw2 * initial_variance + c)
    chi1 = sw2 * _derivative_moment(spec, q_used)
    chi_q = jax.jvp(_variance_map(spec, sw2, c), (q_used,), (jnp.ones_like(q_used),))[1]
    rms_rate = 0.5 * jnp.log(chi1)
    timescale = 1.0 / jnp.abs(rms_rate)
    return MeanField(q_star, chi1, rms_rate, chi_q, timescale, converged)


def _interpolate(table, log_q):
    """Linear interpolation (extrapolation past the ends) of a table on the uniform log-q grid; and its slope."""
    low, high, size = _TABLE_LOG_Q
    spacing = (high - low) / (size - 1)
    position = (log_q - low) / spacing
    index = jnp.clip(jnp.floor(position), 0, size - 2).astype(jnp.int32)
    slope = (table[index + 1] - table[index]) / spacing
    return table[index] + (position - index) * spacing * slope, slope


@functools.lru_cache(maxsize=None)
def _moment_tables(spec: ActivationSpec, dtype) -> tuple[jax.Array, jax.Array]:
    """log E[phi(sqrt(q) z)^2] and log E[phi'(sqrt(q) z)^2] on the log-q grid of ``_TABLE_LOG_Q``."""
    with jax.ensure_compile_time_eval():  # computed once, never staged into a caller's trace
        q = jnp.exp(jnp.linspace(*_TABLE_LOG_Q[:2], _TABLE_LOG_Q[2], dtype=dtype))
        tiny = jnp.finfo(dtype).tiny
        return (jnp.log(jnp.maximum(_second_moment(spec, q), tiny)),
                jnp.log(jnp.maximum(_derivative_moment(spec, q), tiny)))


@functools.lru_cache(maxsize=None)
def _input_drive(input_size: int, dtype) -> jax.Array:
    """One fixed sequence of chi^2_m / m draws: the step-to-step input variance of ``m`` shared inputs."""
    draws = np.random.default_rng(0).chisquare(input_size, _DRIVE_STEPS + _DRIVE_BURN_IN) / input_size
    with jax.ensure_compile_time_eval():
        return jnp.asarray(draws, dtype)


def _driven_scan(tables, drive, sigma_w, sigma_b, initial_variance):
    """Per step t: q_t, log chi_{1,t} and the variance map's slope, for input variances ``drive[t]``."""
    log_m, log_d = tables
    sw2, c = sigma_w**2, sigma_b**2
    cap = jnp.asarray(jnp.finfo(sw2.dtype).max ** 0.25, sw2.dtype)

    def step(v, d):
        q = jnp.minimum(sw2 * v + c + d, cap)
        log_q = jnp.log(jnp.maximum(q, jnp.finfo(q.dtype).tiny))
        log_second, slope = _interpolate(log_m, log_q)
        second = jnp.exp(log_second)
        return second, (q, jnp.log(sw2) + _interpolate(log_d, log_q)[0], sw2 * second * slope / q)

    initial = jnp.broadcast_to(initial_variance, jnp.broadcast_shapes(sw2.shape, c.shape, drive.shape[1:]))
    return jax.lax.scan(step, initial, drive)[1], cap


@functools.partial(jax.jit, static_argnums=0)
def _driven_core(spec, narrow, sigma_w, sigma_b, sigma_x, initial_variance) -> MeanField:
    """The time-varying mean field of a cell with shared inputs, averaged over the simulated drive
    (the fixed point where there is no input, so nothing fluctuates)."""
    driven = _driven_average(narrow, sigma_w, sigma_b, sigma_x, initial_variance)
    fixed = _mean_field_core(spec, sigma_w, sigma_b, sigma_x, initial_variance)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(sigma_x > 0, a, b), driven, fixed)


def _driven_average(narrow, sigma_w, sigma_b, sigma_x, initial_variance) -> MeanField:
    tables, drive = narrow
    (q, log_chi, chi_q), cap = _driven_scan(tables, sigma_x**2 * drive[:, None], sigma_w, sigma_b, initial_variance)
    q, log_chi, chi_q = (a[_DRIVE_BURN_IN:] for a in (q, log_chi, chi_q))
    rms_rate = 0.5 * jnp.mean(log_chi, axis=0)
    converged = jnp.all(q < cap, axis=0)
    return MeanField(jnp.where(converged, jnp.mean(q, axis=0), jnp.inf), jnp.exp(2.0 * rms_rate), rms_rate,
                     jnp.mean(chi_q, axis=0), 1.0 / jnp.abs(rms_rate), converged)


def _input_width(input_size, sigma_x, stacklevel: int) -> int | None:
    """``input_size`` as an int, or None for wide inputs (warning when inputs are set but their width is not)."""
    if input_size is None:
        if _checks.is_concrete(sigma_x) and np.any(np.asarray(sigma_x) > 0):
            warnings.warn(WIDE_INPUTS_WARNING, UserWarning, stacklevel=stacklevel + 1)
        return None
    if input_size == math.inf:
        return None
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
        raise ValueError(f"input_size must be a positive int (the cell's number of inputs) or math.inf (wide "
                         f"inputs), got {input_size!r}")
    return int(input_size)


def _narrow(spec: ActivationSpec, input_size, sigma_x, stacklevel: int):
    """The tables and drive of the narrow-input mean field, or None where the wide one applies exactly."""
    width = _input_width(input_size, sigma_x, stacklevel + 1)
    if width is None or spec.homogeneous is not None:  # relu/linear: chi1 does not depend on q
        return None
    dtype = jnp.result_type(float)
    return _moment_tables(spec, dtype), _input_drive(width, dtype)


def _as_variances(**values) -> list[jax.Array]:
    arrays = []
    for name, value in values.items():
        array = jnp.asarray(value, dtype=jnp.result_type(float))
        if not isinstance(array, jax.core.Tracer):
            if not np.all(np.isfinite(np.asarray(array))):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if np.any(np.asarray(array) < 0):
                raise ValueError(f"{name} is a standard deviation and must be >= 0, got {value!r}; "
                                 "pass the scale itself (it is squared inside)")
        arrays.append(array)
    return list(jnp.broadcast_arrays(*arrays))


def mean_field(activation, sigma_w, sigma_b=0.0, sigma_x=0.0, *, input_size: int | float | None = None,
               initial_variance=1.0, kinks: Sequence[float] | None = None) -> MeanField:
    r"""Mean-field fixed point and :math:`\chi_1` of a vanilla cell (see the module docstring).

    The cell is :math:`h_t = \phi(h_{t-1} W + x_t U + b)` with ``Var(W_ij) = sigma_w^2/n``,
    ``Var(b_i) = sigma_b^2`` and ``Var((x_t U)_i) = sigma_x^2``, so the pre-activation
    variance obeys :math:`q = \sigma_w^2 E[\phi(\sqrt q z)^2] + \sigma_b^2 + \sigma_x^2`.
    The same formulas describe a deep feed-forward stack (untied weights, no input).

    **Input width.** That fixed point assumes wide inputs: each unit gets its own input
    drive, of variance :math:`\sigma_x^2` at every step. A cell with ``input_size = m``
    shares its inputs among the units, so the drive's variance over the units is
    :math:`\sigma_x^2 \chi^2_{m,t}/m`, different at every step; pass ``input_size`` and the
    result is the time-varying mean field averaged over Gaussian inputs (``q_star`` the
    mean of :math:`q_t`, ``rms_rate`` :math:`\tfrac12 E[\log\chi_{1,t}]`, ``chi1`` its
    exponential, ``chi_q`` the mean slope of the variance map), to about 1e-3 nats per
    step. With ``sigma_x > 0`` and no ``input_size`` the wide form is used and a warning
    says so; ``input_size=math.inf`` states wide inputs.
    The fixed point is the one the map reaches from the first step's variance
    :math:`q_1 = \sigma_w^2 v_0 + \sigma_b^2 + \sigma_x^2`, where :math:`v_0` is the
    variance of each entry of the initial state (``initial_variance``). This matters
    only where the map has several stable fixed points (for example gelu at
    :math:`\sigma_w = 1.5`: q = 0 from small starts, divergence from large ones) or
    where 0 is an unstable one (tanh with no bias or input above :math:`\sigma_w = 1`:
    a network started at exactly h = 0 stays there).

    Args:
        activation: a name from :data:`gradscope.cells.ACTIVATIONS` or a callable.
        sigma_w: recurrent weight scale (an orthogonal initializer's gain, or the
            ``gain`` of ``lecun_normal``); scalar or array.
        sigma_b: bias standard deviation; broadcasts against ``sigma_w``.
        sigma_x: standard deviation of the input contribution to each pre-activation
            (for a ``lecun_normal`` input kernel, the standard deviation of each input).
        input_size: the cell's number of inputs ``m`` (the drive fluctuates as
            :math:`\chi^2_m/m`); ``math.inf`` for wide inputs; None: wide, with a warning
            when ``sigma_x > 0``.
        initial_variance: variance of each entry of the initial state (of the input
            vector, for a feed-forward stack); broadcasts like the scales.
        kinks: for a callable activation, where it (or its derivative) has kinks.

    Returns:
        :class:`MeanField` with ``q_star``, ``chi1``, ``rms_rate`` (= 1/2 log chi1),
        ``chi_q``, ``timescale`` and ``converged``, shaped like the broadcast inputs.

    Raises:
        ValueError: an unknown activation, a negative or non-finite scale, or an
            ``input_size`` that is not a positive int or ``math.inf``.

    >>> float(mean_field("relu", 2.0 ** 0.5).chi1)  # He initialization is critical
    1.0
    """
    spec = activation_spec(activation, kinks)
    arrays = _as_variances(sigma_w=sigma_w, sigma_b=sigma_b, sigma_x=sigma_x, initial_variance=initial_variance)
    narrow = _narrow(spec, input_size, sigma_x, stacklevel=2)
    core = functools.partial(_mean_field_core, spec) if narrow is None else functools.partial(_driven_core, spec, narrow)
    return _in_chunks(core, *arrays)


class MeanFieldPath(NamedTuple):
    r"""The time-varying mean field along one input sequence (:func:`mean_field_path`).

    Attributes:
        q: ``[T]`` pre-activation variance :math:`q_t` at every step.
        log_chi1: ``[T]`` :math:`\log\chi_{1,t} = \log(\sigma_w^2 E[\phi'(\sqrt{q_t} z)^2])`,
            the log of the factor by which step t multiplies a squared gradient norm.
    """

    q: jax.Array
    log_chi1: jax.Array

    def log_rms(self, lags) -> np.ndarray:
        r"""Predicted log RMS singular value of :math:`P_k = \partial h_T/\partial h_{T-k}` at each lag k.

        :math:`\tfrac12\sum_{t=T-k+1}^{T}\log\chi_{1,t}`, comparable with the ``log_rms``
        of :meth:`gradscope.Spectra.lag_metrics` (lag 0 is 0).
        """
        backward = np.concatenate([[0.0], 0.5 * np.cumsum(np.asarray(self.log_chi1, np.float64)[::-1])])
        return backward[np.asarray(lags, dtype=int)]


def mean_field_path(activation, sigma_w, input_variance, sigma_b=0.0, *, initial_variance=1.0,
                    kinks: Sequence[float] | None = None) -> MeanFieldPath:
    r"""The time-varying mean field of a vanilla cell driven by one given input sequence.

    :math:`q_t = \sigma_w^2 E[\phi(\sqrt{q_{t-1}} z)^2] + \sigma_b^2 + v_t` with
    :math:`v_t` = ``input_variance[t]``, the variance over the units of the input term
    :math:`(x_t U)_i` at step t; for a ``lecun_normal`` input kernel (variance 1/m) and
    inputs ``xs`` of shape ``[T, m]`` it is ``(xs ** 2).mean(-1)``. The first step starts
    from a state whose entries have variance ``initial_variance`` (0 for ``h0 = 0``).
    This is the theory of a cell with few inputs, where the input variance changes from
    step to step (see the module docstring); :func:`mean_field` with ``input_size``
    averages it over Gaussian inputs.

    Args:
        activation: a name from :data:`gradscope.cells.ACTIVATIONS` or a callable.
        sigma_w: recurrent weight scale (scalar).
        input_variance: ``[T]`` input variance per step (>= 0).
        sigma_b: bias standard deviation (scalar).
        initial_variance: variance of the initial state's entries.
        kinks: for a callable activation, where it has kinks.

    Returns:
        :class:`MeanFieldPath` with ``q`` and ``log_chi1`` per step; ``log_rms(lags)``
        gives the predicted log RMS singular value of the backward products.

    Raises:
        ValueError: an unknown activation, negative or non-finite scales, or an
            ``input_variance`` that is not a 1-D sequence of values >= 0.
    """
    spec = activation_spec(activation, kinks)
    sigma_w, sigma_b, initial_variance = _as_variances(sigma_w=sigma_w, sigma_b=sigma_b,
                                                       initial_variance=initial_variance)
    drive = jnp.asarray(input_variance, dtype=sigma_w.dtype)
    if drive.ndim != 1 or (_checks.is_concrete(drive) and not np.all(np.asarray(drive) >= 0)):
        raise ValueError(f"input_variance must be a 1-D sequence [T] of variances >= 0, got shape {drive.shape}")
    if sigma_w.ndim:
        raise ValueError(f"mean_field_path takes scalar scales, got sigma_w of shape {sigma_w.shape}")
    q, log_chi = _path_core(_moment_tables(spec, sigma_w.dtype), drive, sigma_w, sigma_b, initial_variance)
    return MeanFieldPath(q, log_chi)


@jax.jit
def _path_core(tables, drive, sigma_w, sigma_b, initial_variance):
    (q, log_chi, _), _ = _driven_scan(tables, drive, sigma_w, sigma_b, initial_variance)
    return q, log_chi


def _in_chunks(core, *arrays):
    """Apply a jitted elementwise ``core`` in fixed-size 1-D chunks, so it compiles once per
    activation and dtype whatever the input shape (traced inputs go straight through)."""
    if not _checks.is_concrete(arrays):
        return core(*arrays)
    shape = arrays[0].shape
    flat = [a.reshape(-1) for a in arrays]
    size = flat[0].size
    padded = -(-max(size, 1) // _CHUNK) * _CHUNK
    flat = [jnp.pad(a, (0, padded - size), mode="edge") if size else jnp.zeros(padded, a.dtype) for a in flat]
    parts = [core(*(a[i:i + _CHUNK] for a in flat)) for i in range(0, padded, _CHUNK)]
    return jax.tree_util.tree_map(lambda *p: jnp.concatenate(p)[:size].reshape(shape), *parts)


def _chi1(spec, sigma_w, sigma_b, sigma_x, initial_variance, narrow):
    """chi_1 of the wide fixed point, or the time-averaged one of the narrow-input drive (``narrow``)."""
    if narrow is None:
        return _mean_field_core(spec, sigma_w, sigma_b, sigma_x, initial_variance).chi1
    return _driven_core(spec, narrow, sigma_w, sigma_b, sigma_x, initial_variance).chi1


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _critical_root(spec, bracket, sigma_b, sigma_x, initial_variance, narrow):
    """Bisection for chi1(sigma_w) = 1; differentiated implicitly (see :func:`_critical_root_jvp`)."""
    lo = jnp.full_like(sigma_b, np.log(bracket[0]))
    hi = jnp.full_like(sigma_b, np.log(bracket[1]))

    def excess(log_w):
        return _chi1(spec, jnp.exp(log_w), sigma_b, sigma_x, initial_variance, narrow) - 1.0

    bracketed = (excess(lo) < 0) & (excess(hi) > 0)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        chaotic = excess(mid) > 0
        return jnp.where(chaotic, lo, mid), jnp.where(chaotic, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (lo, hi))
    return jnp.where(bracketed, jnp.exp(0.5 * (lo + hi)), jnp.nan)


@_critical_root.defjvp
def _critical_root_jvp(spec, bracket, primals, tangents):
    r"""The derivative of the critical line by the implicit function theorem.

    On the line :math:`\chi_1(\sigma_w^*, \sigma_b, \sigma_x, v_0) = 1`, so
    :math:`d\sigma_w^* = -d\chi_1|_{\sigma_w} / (\partial\chi_1/\partial\sigma_w)`, where the
    numerator is the change of :math:`\chi_1` with the other inputs at fixed :math:`\sigma_w^*`.
    (The bisection itself has zero derivative almost everywhere.)
    """
    root = _critical_root(spec, bracket, *primals)
    chi1 = lambda w, *rest: _chi1(spec, w, *rest)  # noqa: E731
    slope = jax.jvp(lambda w: chi1(w, *primals), (root,), (jnp.ones_like(root),))[1]
    shift = jax.jvp(lambda *rest: chi1(root, *rest), primals, tangents)[1]
    return root, -shift / slope


_critical_core = jax.jit(_critical_root, static_argnums=(0, 1))


def critical_sigma_w(activation, sigma_b=0.0, sigma_x=0.0, *, input_size: int | float | None = None,
                     initial_variance=1.0, bracket: tuple[float, float] = (1e-2, 1e2),
                     kinks: Sequence[float] | None = None) -> jax.Array:
    r"""The order-to-chaos critical line: the :math:`\sigma_w` where :math:`\chi_1 = 1`.

    Found by bisection in :math:`\log \sigma_w` (40 halvings of ``bracket``, relative
    accuracy about 1e-11), vectorised over ``sigma_b`` and ``sigma_x``. Known values:
    tanh with no bias or input 1; relu :math:`\sqrt 2` (for every bias); linear 1.

    Args:
        activation: a name or callable (see :func:`mean_field`).
        sigma_b: bias standard deviation(s).
        sigma_x: input-contribution standard deviation(s); broadcasts with ``sigma_b``.
        input_size: the cell's number of inputs, ``math.inf`` for wide inputs, or None
            (wide, with a warning when ``sigma_x > 0``); see :func:`mean_field`. With
            narrow inputs the line is where the time-averaged :math:`\log\chi_1` is 0.
        initial_variance: variance of the initial state's entries (see :func:`mean_field`).
        bracket: the ``sigma_w`` range searched.
        kinks: for a callable activation, where it has kinks.

    Returns:
        ``sigma_w`` on the critical line, shaped like the broadcast inputs; NaN where
        :math:`\chi_1 - 1` does not change sign inside ``bracket`` (for example a
        sigmoid cell with a large bias, whose :math:`\chi_1` stays below 1).

    Raises:
        ValueError: an unknown activation, negative scales or a malformed bracket.
    """
    if not (len(bracket) == 2 and 0 < bracket[0] < bracket[1]):
        raise ValueError(f"bracket must be (low, high) with 0 < low < high, got {bracket!r}")
    spec = activation_spec(activation, kinks)
    arrays = _as_variances(sigma_b=sigma_b, sigma_x=sigma_x, initial_variance=initial_variance)
    narrow = _narrow(spec, input_size, sigma_x, stacklevel=2)
    bracket = (float(bracket[0]), float(bracket[1]))
    return _in_chunks(lambda *args: _critical_core(spec, bracket, *args, narrow), *arrays)


def derivative_bound(activation) -> float:
    r""":math:`\gamma = \sup_a |\phi'(a)|`, the constant in Pascanu et al.'s condition.

    Exact for the built-ins with a simple bound (tanh, relu, linear, softplus, elu,
    hard_tanh: 1; sigmoid: 1/4); otherwise the maximum of :math:`|\phi'|` on a dense
    grid over [-20, 20] (gelu: 1.129, swish: 1.100).
    """
    spec = activation_spec(activation)
    if spec.name in _DERIVATIVE_BOUNDS:
        return _DERIVATIVE_BOUNDS[spec.name]
    grid = jnp.linspace(-20.0, 20.0, 400_001)
    return float(jnp.max(jnp.abs(spec.derivative(grid))))


class PascanuBound(NamedTuple):
    r"""Pascanu, Mikolov & Bengio (2013) bound, evaluated on actual parameters.

    Since :math:`\lVert J_t \rVert \le \gamma\, \sigma_{\max}(W_{hh})`, the gradient over
    k steps is at most :math:`(\gamma \sigma_{\max})^k`: :math:`\gamma\sigma_{\max} < 1`
    is *sufficient* for vanishing (and :math:`> 1` *necessary* for exploding).

    Attributes:
        gamma: :math:`\sup |\phi'|` (:func:`derivative_bound`).
        log_sigma_max: :math:`\log \sigma_{\max}(W_{hh})` (per step ``[T]`` when untied).
        log_spectral_radius: :math:`\log \rho(W_{hh})` (per step when untied). For a
            tied linear cell this is the exact asymptotic growth rate of sigma_max.
        log_rate_bound: :math:`\log\gamma + \text{mean}_t \log\sigma_{\max}(W_t)`, an
            upper bound on the per-step growth rate of the gradient's sigma_max.
        vanishing_guaranteed: ``log_rate_bound < 0``.
    """

    gamma: float
    log_sigma_max: np.ndarray
    log_spectral_radius: np.ndarray
    log_rate_bound: float
    vanishing_guaranteed: bool


def pascanu_bound(cell, params, *, untied: bool = False) -> PascanuBound:
    r"""Evaluate Pascanu et al.'s sufficient condition for vanishing, :math:`\gamma\,\sigma_{\max}(W_{hh}) < 1`.

    It applies to vanilla cells, where :math:`J_t = \mathrm{diag}(\phi'(a_t)) W_{hh}^\top`:
    :math:`\gamma = 1` for tanh, relu and linear, 1/4 for sigmoid. For relu and linear
    the bound is the same as for tanh (their derivative is at most 1); for a linear cell
    the exact asymptotic rate is :math:`\log\rho(W_{hh})` (``log_spectral_radius``),
    which the bound over-estimates unless W is normal.

    Args:
        cell: a :class:`gradscope.VanillaRNN`.
        params: its parameters (anything with a ``recurrent_kernel``); with
            ``untied=True`` the kernel has a leading time axis.
        untied: one recurrent kernel per step.

    Raises:
        TypeError: the cell is not a vanilla cell.
        ValueError: the kernel is not square (or ``[T, n, n]`` when untied).
    """
    if not isinstance(cell, cells.VanillaRNN):
        raise TypeError(f"the Pascanu bound is for vanilla cells (J = diag(phi') W^T); got "
                        f"{type(cell).__name__}. For gated cells measure the rate with jacobian_spectra")
    kernel = np.asarray(params.recurrent_kernel, dtype=np.float64)
    expected = 3 if untied else 2
    if kernel.ndim != expected or kernel.shape[-1] != kernel.shape[-2]:
        shape = "[T, n, n]" if untied else "[n, n]"
        raise ValueError(f"expected a square recurrent kernel of shape {shape}, got {kernel.shape}")
    gamma = derivative_bound(cell.activation)
    log_sigma = np.log(np.linalg.norm(kernel, ord=2, axis=(-2, -1)))
    log_radius = np.log(np.max(np.abs(np.linalg.eigvals(kernel)), axis=-1))
    bound = float(np.log(gamma) + np.mean(log_sigma))
    return PascanuBound(gamma, log_sigma, log_radius, bound, bound < 0)


def orthogonal_linear_log_singular_values(gain, lags, n: int) -> np.ndarray:
    """Exact log singular values of a linear cell with orthogonal ``W = gain * Q``: all ``k log(gain)``.

    Every product ``P_k = gain^k Q^k`` is gain^k times an orthogonal matrix, tied or untied.

    Returns:
        ``[len(lags), n]`` array, in the layout of :attr:`gradscope.Spectra.log_singular_values`.
    """
    lags = np.asarray(lags, dtype=np.float64).reshape(-1)
    return np.broadcast_to((lags * np.log(gain))[:, None], (lags.size, int(n))).copy()


def ginibre_lyapunov(n: int, sigma: float = 1.0) -> np.ndarray:
    r"""Lyapunov spectrum of products of fresh Gaussian matrices (Newman 1986), descending.

    For independent n x n matrices with i.i.d. :math:`N(0, \sigma^2/n)` entries (a linear
    cell with untied ``lecun_normal(gain=sigma)`` weights),

    .. math::
        \lambda_i = \log\sigma + \tfrac12\Big(\log\frac{2}{n} + \psi\big(\tfrac{n-i+1}{2}\big)\Big),
        \qquad i = 1, \dots, n.

    Derivation: write :math:`A_t = (\sigma/\sqrt n) G_t` with :math:`G_t` standard
    Gaussian. QR-iterating the product, :math:`A_t Q_{t-1} = Q_t R_t`; since
    :math:`G_t Q_{t-1}` is again standard Gaussian and independent of the past
    (rotational invariance), the :math:`R_t` are i.i.d. and distributed as the R of
    one Gaussian matrix, whose diagonal (Bartlett decomposition) has
    :math:`R_{ii}^2 \sim (\sigma^2/n)\,\chi^2_{n-i+1}`, independent. The exponents are
    :math:`\lambda_i = E\log R_{ii}`, and :math:`E \log \chi^2_k = \log 2 + \psi(k/2)`.
    The finite-T estimate of :math:`\lambda_i` from T steps is therefore an average of
    T i.i.d. terms with variance :math:`\psi'((n-i+1)/2)/(4T)`. As :math:`n \to \infty`,
    :math:`\lambda_i \to \log\sigma + \tfrac12\log(1 - i/n)` (Newman's exponential law),
    and :math:`\lambda_1 = \log\sigma - O(1/n)` agrees with mean field,
    :math:`\tfrac12\log\chi_1 = \log\sigma`.

    Args:
        n: matrix size.
        sigma: entry standard deviation times sqrt(n) (the gain).

    Raises:
        ValueError: ``n < 1`` or ``sigma <= 0``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    dof = np.arange(n, 0, -1, dtype=np.float64)
    import scipy.special  # the only use of SciPy here: importing the theory stays light

    return np.log(sigma) + 0.5 * (np.log(2.0 / n) + scipy.special.digamma(dof / 2.0))


def gaussian_product_gap(lags, n: int | None = None) -> np.ndarray:
    r""":math:`\log\sigma_{\max} - \log\text{RMS}` of a product of ``k`` Gaussian matrices, per lag.

    For k independent n x n matrices with i.i.d. :math:`N(0, 1/n)` entries (and, as
    n grows, for the power :math:`W^k` of one such matrix) the squared singular values
    of the product follow, as :math:`n \to \infty`, the Fuss-Catalan law of order k
    (Penson & Zyczkowski 2011; for powers Alexeev, Goetze & Tikhomirov 2010). Its mean
    is 1, so the RMS singular value is 1, and its right edge is
    :math:`E_k = (k+1)^{k+1}/k^k`, so

    .. math::
        \log\sigma_{\max} - \log\text{RMS} \to \tfrac12\log E_k
        = \tfrac12\big[(k+1)\log(k+1) - k\log k\big]
        = \tfrac12\log\big(e(k+1)\big) - O(1/k).

    At finite n the gap can never exceed :math:`\tfrac12\log n` (since
    :math:`\sigma_{\max}^2 \le \sum_i\sigma_i^2 = n\,\text{RMS}^2`), which a long
    product approaches as it tends to rank one. With ``n`` given, the value is
    :math:`\tfrac12\log\big(E_k n/(E_k + n - 1)\big)`, an interpolation between the two
    limits that is exact at k = 0 and at n = 1 (not derived otherwise; the docs page
    checks it against measurement over n = 64..512, k = 1..200).

    This is why a spectral-norm rate (``Summary.rate``) of a random product is biased
    upward against the RMS rate that mean-field theory predicts: the gap grows like
    :math:`\tfrac12\log k`, so its slope over the fitted lags adds to the rate.

    Args:
        lags: the numbers of factors k >= 0 (k = 0 gives 0: the identity).
        n: the matrix size, or None for the infinite-n limit.

    Returns:
        The gap in nats, shaped like ``lags``.

    Raises:
        ValueError: a negative lag or ``n < 1``.
    """
    k = np.asarray(lags, dtype=np.float64)
    if np.any(k < 0):
        raise ValueError(f"lags must be >= 0, got {lags!r}")
    log_edge = (k + 1) * np.log1p(k) - k * np.log(np.where(k > 0, k, 1.0))
    if n is None:
        return 0.5 * log_edge
    if not n >= 1:
        raise ValueError(f"n must be >= 1 (the matrix size), got {n!r}")
    return 0.5 * (log_edge + np.log(n) - np.log(np.expm1(log_edge) + n))


def fixed_linear_lyapunov(recurrent_kernel) -> np.ndarray:
    r"""Exact Lyapunov spectrum of a tied linear cell ``h_t = h_{t-1} W``: ``log|eig(W)|``, descending.

    The product is :math:`W^k`, whose singular values grow like :math:`|\lambda_i|^k`
    (a complex pair gives two equal exponents).
    """
    kernel = np.asarray(recurrent_kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"expected a square matrix (n, n), got shape {kernel.shape}")
    return np.sort(np.log(np.abs(np.linalg.eigvals(kernel))))[::-1]
