r"""Modern recurrences: the LRU, diagonal and selective state-space models, minGRU and minLSTM.

Their recurrences are diagonal: each unit (or complex mode) of the state only feeds
itself, ``h_t = a_t \odot h_{t-1} + b_t``, so the step Jacobian is ``diag(a_t)``.
Each cell says so in :attr:`diagonal_jacobian`, and :func:`gradscope.jacobian_spectra`
then takes its fast path (running sums of ``log|a_t|``, no SVDs; see
:mod:`gradscope.core.diagonal`).

The contract is that of :mod:`gradscope.cells.classic`: frozen dataclasses with
``init(key, recurrent_init=..., input_init=..., ...)``, ``step(params, h, x)`` and
``initial_state(dtype)``. ``recurrent_init`` initializes what sets the decay: the LRU's
eigenvalues (``"ring"``), the SSMs' ``A`` (``"s4d_lin"``, ``"s4d_inv"``, ``"s4d_real"``), the
min cells' gate biases (``"zeros"``, ``("chrono", {"t_max": ...})``). Each cell also has
``readout(params, h, x)`` (its output ``y_t``, for stacking layers) and
``recurrent_parameters(params)`` (what :func:`gradscope.analysis.sensitivity.memory_sensitivity`
differentiates by default).

**Complex states are real pairs.** The LRU and the diagonal SSM carry complex states;
here they are :class:`ComplexState` ``(real, imag)``, so the flat state gradscope
analyses is ``[Re h, Im h]`` (size ``n = 2 x`` the complex size) and every analysis,
adapter-free, sees a real map. A complex eigenvalue ``lambda`` of the recurrence is the
2 x 2 block ``[[Re, -Im], [Im, Re]]`` on the pair (a scaled rotation): both of its
singular values are ``|lambda|``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradscope import initializers
from gradscope.cells.classic import _check_sizes

__all__ = [
    "LRU",
    "ComplexState",
    "DiagonalSSM",
    "DiagonalSSMParams",
    "LRUParams",
    "MinGRU",
    "MinGRUParams",
    "MinLSTM",
    "MinLSTMParams",
    "SelectiveSSM",
    "SelectiveSSMParams",
]


class ComplexState(NamedTuple):
    """A complex state as a real pair; gradscope's flat state is ``[real, imag]``.

    Attributes:
        real: real parts.
        imag: imaginary parts (same shape).
    """

    real: jax.Array
    imag: jax.Array

    def as_complex(self) -> jax.Array:
        """The state as one complex array."""
        return jax.lax.complex(self.real, self.imag)


def _split(z: jax.Array) -> ComplexState:
    return ComplexState(jnp.real(z), jnp.imag(z))


def _zero_pair(shape, dtype) -> ComplexState:
    zeros = jnp.zeros(shape, dtype)
    return ComplexState(zeros, zeros)


def _draw(spec, key, shape, dtype) -> jax.Array:
    return initializers.resolve(spec)(key, shape, dtype)


def _draw_pair(spec, key, shape, dtype) -> tuple[jax.Array, jax.Array]:
    """Real and imaginary parts, each drawn by ``spec`` (independent keys)."""
    k_re, k_im = jax.random.split(key)
    return _draw(spec, k_re, shape, dtype), _draw(spec, k_im, shape, dtype)


def _check_numbers(cell, *names) -> None:
    for name in names:
        value = getattr(cell, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{type(cell).__name__}.{name} must be a number, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Linear Recurrent Unit
# ---------------------------------------------------------------------------------------------

class LRUParams(NamedTuple):
    r"""Parameters of :class:`LRU` (N = hidden_size, H = input_size).

    Attributes:
        nu_log: ``(N,)``; ``|lambda| = exp(-exp(nu_log))``.
        theta_log: ``(N,)``; ``arg lambda = exp(theta_log)``.
        gamma_log: ``(N,)``; input normalization ``log gamma``, initialized to ``log sqrt(1 - |lambda|^2)``.
        input_kernel_real: ``(H, N)``, real part of ``B^T``.
        input_kernel_imag: ``(H, N)``, imaginary part of ``B^T``.
        output_kernel_real: ``(N, H)``, real part of ``C^T``.
        output_kernel_imag: ``(N, H)``, imaginary part of ``C^T``.
        skip: ``(H,)``, the feed-through ``D``.
    """

    nu_log: jax.Array
    theta_log: jax.Array
    gamma_log: jax.Array
    input_kernel_real: jax.Array
    input_kernel_imag: jax.Array
    output_kernel_real: jax.Array
    output_kernel_imag: jax.Array
    skip: jax.Array


@dataclasses.dataclass(frozen=True)
class LRU:
    r"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks").

    .. math::
        \lambda = \exp(-e^{\nu} + i\, e^{\theta}), \qquad
        h_t = \lambda \odot h_{t-1} + \gamma \odot (B x_t), \qquad
        y_t = \mathrm{Re}(C h_t) + D \odot x_t

    with complex ``h``, ``B``, ``C`` and ``gamma = sqrt(1 - |lambda|^2)`` at init (a
    parameter of its own, ``gamma_log``), so a unit-variance white input gives
    ``h`` unit variance whatever ``|lambda|``. The eigenvalues start uniform on the ring
    ``r_min <= |lambda| <= r_max`` (uniform in area), phases in ``(0, max_phase]``.

    The state is :class:`ComplexState` (flat: ``[Re h, Im h]``, n = 2 * hidden_size);
    the step Jacobian is ``diag(lambda)`` as 2 x 2 rotation blocks, so every singular
    value of ``dh_T/dh_{T-k}`` is some ``|lambda_j|^k``.

    Attributes:
        hidden_size: N, complex state size.
        input_size: H, the model width (inputs and outputs).
        r_min: smallest initial ``|lambda|``.
        r_max: largest initial ``|lambda|`` (<= 1).
        max_phase: largest initial phase (<= 2 pi).
    """

    hidden_size: int
    input_size: int = 1
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    diagonal_jacobian: ClassVar[str] = "complex"
    """The step Jacobian is diagonal in complex pairs (see :mod:`gradscope.core.diagonal`)."""
    default_initializers: ClassVar[tuple] = (("ring", {"r_min": 0.9, "r_max": 0.999}),
                                             ("ring", {"r_min": 0.0, "r_max": 1.0}))
    """What :func:`gradscope.compare` compares by default: the long-range ring of the paper and the full disc."""

    def __post_init__(self):
        _check_sizes(self)
        _check_numbers(self, "r_min", "r_max", "max_phase")
        initializers.ring(self.r_min, self.r_max, self.max_phase)  # validates the ring

    def init(self, key, recurrent_init=None, input_init=("lecun_normal", {"gain": math.sqrt(0.5)}),
             output_init="lecun_normal", skip_init="normal", dtype=jnp.float32) -> LRUParams:
        """Draw parameters as the paper does.

        Args:
            key: a PRNG key.
            recurrent_init: an initializer returning the complex eigenvalues ``lambda``
                (``0 < |lambda| < 1``); None draws the cell's ring
                (``("ring", {"r_min": ..., "r_max": ..., "max_phase": ...})``).
            input_init: draws the real and the imaginary part of ``B^T`` ``(H, N)``
                (default: each with variance ``1/(2H)``, as the paper).
            output_init: draws each part of ``C^T`` ``(N, H)`` (default variance ``1/N``).
            skip_init: draws ``D`` ``(H,)`` (default N(0, 1)).
            dtype: float dtype of the parameters.
        """
        k_lam, k_b, k_c, k_d = jax.random.split(key, 4)
        n, m = self.hidden_size, self.input_size
        ring = initializers.ring(self.r_min, self.r_max, self.max_phase) if recurrent_init is None else \
            initializers.resolve(recurrent_init)
        lam = ring(k_lam, (n,), dtype)
        modulus = jnp.abs(lam).astype(dtype)
        phase = jnp.mod(jnp.angle(lam), 2 * math.pi).astype(dtype)
        return LRUParams(jnp.log(-jnp.log(modulus)), jnp.log(phase), jnp.log(jnp.sqrt(1 - modulus**2)),
                         *_draw_pair(input_init, k_b, (m, n), dtype), *_draw_pair(output_init, k_c, (n, m), dtype),
                         _draw(skip_init, k_d, (m,), dtype))

    @staticmethod
    def eigenvalues(params: LRUParams) -> jax.Array:
        """The complex ``lambda`` of each unit, ``(N,)``."""
        return jnp.exp(jax.lax.complex(-jnp.exp(params.nu_log), jnp.exp(params.theta_log)))

    def step(self, params: LRUParams, h: ComplexState, x: jax.Array) -> ComplexState:
        """One step of the recurrence."""
        drive = jax.lax.complex(x @ params.input_kernel_real, x @ params.input_kernel_imag)
        return _split(self.eigenvalues(params) * h.as_complex() + jnp.exp(params.gamma_log) * drive)

    def readout(self, params: LRUParams, h: ComplexState, x: jax.Array) -> jax.Array:
        """The output ``y_t = Re(C h_t) + D x_t``, ``(H,)``."""
        return h.real @ params.output_kernel_real - h.imag @ params.output_kernel_imag + params.skip * x

    def recurrent_parameters(self, params: LRUParams):
        """``(nu_log, theta_log)``: the parametrization of the eigenvalues."""
        return params.nu_log, params.theta_log

    def initial_state(self, dtype=jnp.float32) -> ComplexState:
        """Zero state, two arrays of shape ``(hidden_size,)``."""
        return _zero_pair((self.hidden_size,), dtype)


# ---------------------------------------------------------------------------------------------
# Diagonal state-space model (S4D)
# ---------------------------------------------------------------------------------------------

class DiagonalSSMParams(NamedTuple):
    """Parameters of :class:`DiagonalSSM` (H = input_size channels, N = hidden_size modes each).

    Attributes:
        log_neg_real: ``(H, N)``; ``Re A = -exp(log_neg_real)`` (< 0).
        imag: ``(H, N)``; ``Im A``.
        log_step: ``(H,)``; the step size ``Delta = exp(log_step)`` of each channel.
        input_kernel_real: ``(H, N)``, real part of ``B``.
        input_kernel_imag: ``(H, N)``, imaginary part of ``B``.
        output_kernel_real: ``(H, N)``, real part of ``C``.
        output_kernel_imag: ``(H, N)``, imaginary part of ``C``.
        skip: ``(H,)``, the feed-through ``D``.
    """

    log_neg_real: jax.Array
    imag: jax.Array
    log_step: jax.Array
    input_kernel_real: jax.Array
    input_kernel_imag: jax.Array
    output_kernel_real: jax.Array
    output_kernel_imag: jax.Array
    skip: jax.Array


@dataclasses.dataclass(frozen=True)
class DiagonalSSM:
    r"""Diagonal state-space model in recurrent mode (S4D, Gu et al. 2022), zero-order hold.

    Each of the H input channels drives its own N complex modes:

    .. math::
        \bar A = e^{\Delta A}, \quad \bar B = \frac{\bar A - 1}{A} B, \qquad
        h_t = \bar A \odot h_{t-1} + \bar B\, x_t, \qquad
        y_t = 2\,\mathrm{Re} \textstyle\sum_n C_n h_{t,n} + D x_t

    (the factor 2 counts the conjugate modes S4D leaves implicit). ``A`` starts from
    S4D-Lin (``-1/2 + i pi n``), S4D-Inv or S4D-Real (``-(n+1)``), ``Delta`` log-uniform in
    ``[1e-3, 1e-1]``, ``B = 1`` and ``C`` complex standard normal. The state is
    :class:`ComplexState` of shape ``(H, N)`` (flat n = 2 H N); the step Jacobian is
    ``diag(A_bar)``, constant in time.

    Attributes:
        hidden_size: N, complex modes per channel.
        input_size: H, channels.
    """

    hidden_size: int
    input_size: int = 1

    diagonal_jacobian: ClassVar[str] = "complex"
    """The step Jacobian is diagonal in complex pairs (see :mod:`gradscope.core.diagonal`)."""
    default_initializers: ClassVar[tuple] = ("s4d_lin", "s4d_inv", "s4d_real")
    """What :func:`gradscope.compare` compares by default."""

    def __post_init__(self):
        _check_sizes(self)

    def init(self, key, recurrent_init="s4d_lin", step_init="log_uniform", input_init=("constant", {"value": 1.0}),
             output_init=("normal", {"stddev": math.sqrt(0.5)}), skip_init="normal",
             dtype=jnp.float32) -> DiagonalSSMParams:
        """Draw parameters.

        Args:
            key: a PRNG key.
            recurrent_init: ``A`` ``(H, N)``: ``"s4d_lin"``, ``"s4d_inv"``, ``"s4d_real"`` or any
                initializer returning values with negative real part (real or complex).
            step_init: ``Delta`` ``(H,)`` (default log-uniform in [1e-3, 1e-1]).
            input_init: ``B`` ``(H, N)``; a real initializer gives a real start (S4D: ``B = 1``).
            output_init: draws each part of ``C`` ``(H, N)`` (default: complex standard normal).
            skip_init: ``D`` ``(H,)``.
            dtype: float dtype of the parameters.
        """
        k_a, k_dt, k_b, k_c, k_d = jax.random.split(key, 5)
        shape = (self.input_size, self.hidden_size)
        a = _draw(recurrent_init, k_a, shape, dtype)
        b = _draw(input_init, k_b, shape, dtype)
        return DiagonalSSMParams(jnp.log(-jnp.real(a)).astype(dtype), jnp.imag(a).astype(dtype),
                                 jnp.log(_draw(step_init, k_dt, shape[:1], dtype)),
                                 jnp.real(b).astype(dtype), jnp.imag(b).astype(dtype),
                                 *_draw_pair(output_init, k_c, shape, dtype), _draw(skip_init, k_d, shape[:1], dtype))

    @staticmethod
    def discretized(params: DiagonalSSMParams) -> tuple[jax.Array, jax.Array]:
        """``(A_bar, B_bar)``, complex ``(H, N)``, by zero-order hold."""
        a = jax.lax.complex(-jnp.exp(params.log_neg_real), params.imag)
        step_a = jnp.exp(params.log_step)[:, None] * a
        a_bar = jnp.exp(step_a)
        return a_bar, (a_bar - 1) / a * jax.lax.complex(params.input_kernel_real, params.input_kernel_imag)

    def step(self, params: DiagonalSSMParams, h: ComplexState, x: jax.Array) -> ComplexState:
        """One step of the recurrence."""
        a_bar, b_bar = self.discretized(params)
        return _split(a_bar * h.as_complex() + b_bar * x[..., :, None])

    def readout(self, params: DiagonalSSMParams, h: ComplexState, x: jax.Array) -> jax.Array:
        """The output ``y_t = 2 Re(sum_n C_n h_n) + D x_t``, ``(H,)``."""
        c_h = h.real * params.output_kernel_real - h.imag * params.output_kernel_imag
        return 2 * jnp.sum(c_h, axis=-1) + params.skip * x

    def recurrent_parameters(self, params: DiagonalSSMParams):
        """``(log_neg_real, imag, log_step)``: what ``A_bar = exp(Delta A)`` is made of."""
        return params.log_neg_real, params.imag, params.log_step

    def initial_state(self, dtype=jnp.float32) -> ComplexState:
        """Zero state, two arrays of shape ``(input_size, hidden_size)``."""
        return _zero_pair((self.input_size, self.hidden_size), dtype)


# ---------------------------------------------------------------------------------------------
# Selective state-space model (Mamba's recurrence)
# ---------------------------------------------------------------------------------------------

class SelectiveSSMParams(NamedTuple):
    """Parameters of :class:`SelectiveSSM` (D = input_size channels, N = hidden_size, R = dt_rank).

    Attributes:
        log_neg_a: ``(D, N)``; ``A = -exp(log_neg_a)`` (Mamba's ``A_log``).
        delta_down: ``(D, R)``, the Delta part of Mamba's ``x_proj``.
        delta_up: ``(R, D)``, Mamba's ``dt_proj`` weight.
        delta_bias: ``(D,)``, ``dt_proj`` bias: ``softplus^-1`` of the initial Delta.
        input_kernel: ``(D, N)``; ``B_t = x_t W_B``.
        output_kernel: ``(D, N)``; ``C_t = x_t W_C``.
        skip: ``(D,)``, the feed-through ``D``.
    """

    log_neg_a: jax.Array
    delta_down: jax.Array
    delta_up: jax.Array
    delta_bias: jax.Array
    input_kernel: jax.Array
    output_kernel: jax.Array
    skip: jax.Array


@dataclasses.dataclass(frozen=True)
class SelectiveSSM:
    r"""Selective state-space model in recurrent mode (the SSM of a Mamba block, Gu & Dao 2023).

    Step size, input and output matrices depend on the input (selection):

    .. math::
        \Delta_t = \mathrm{softplus}(x_t W_\downarrow W_\uparrow + b_\Delta), \quad
        B_t = x_t W_B, \quad C_t = x_t W_C \\
        h_t = e^{\Delta_t A} \odot h_{t-1} + (\Delta_t \otimes B_t) \odot x_t, \qquad
        y_t = h_t C_t + D \odot x_t

    with real ``A = -exp(A_log)`` ``(D, N)``, started from S4D-Real (``A_n = -(n+1)``),
    and ``softplus(b_Delta)`` log-uniform in ``[1e-3, 1e-1]`` (floored at 1e-4), as Mamba.
    ``x_t`` is the SSM's input inside a Mamba block (after the input projection and
    convolution). The state ``h`` is ``(D, N)`` (flat n = D N); the step Jacobian is
    ``diag(exp(Delta_t A))``, varying with the input.

    Attributes:
        hidden_size: N, state size per channel (Mamba's ``d_state``).
        input_size: D, channels (Mamba's ``d_inner``).
        dt_rank: R, rank of the Delta projection (default ``ceil(D / 16)``).
    """

    hidden_size: int
    input_size: int = 1
    dt_rank: int | None = None

    diagonal_jacobian: ClassVar[str] = "real"
    """The step Jacobian is diagonal (see :mod:`gradscope.core.diagonal`)."""
    default_initializers: ClassVar[tuple] = ("s4d_real",)
    """What :func:`gradscope.compare` compares by default (Mamba's A)."""

    def __post_init__(self):
        _check_sizes(self)
        if self.dt_rank is not None and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise ValueError(f"SelectiveSSM.dt_rank must be a positive int or None, got {self.dt_rank!r}")

    @property
    def rank(self) -> int:
        """R, the rank of the Delta projection."""
        return self.dt_rank or math.ceil(self.input_size / 16)

    def init(self, key, recurrent_init="s4d_real", step_init="log_uniform", input_init="lecun_normal",
             delta_init=None, skip_init=("constant", {"value": 1.0}), dtype=jnp.float32) -> SelectiveSSMParams:
        """Draw parameters as Mamba does.

        Args:
            key: a PRNG key.
            recurrent_init: ``A`` ``(D, N)``, real and negative (default S4D-Real).
            step_init: the initial ``Delta`` ``(D,)`` (default log-uniform in [1e-3, 1e-1]).
            input_init: ``W_down``, ``W_B``, ``W_C``.
            delta_init: ``W_up`` ``(R, D)``; None: ``U(-R^-1/2, R^-1/2)`` as Mamba.
            skip_init: ``D`` (default ones).
            dtype: float dtype of the parameters.
        """
        k_a, k_dt, k_down, k_up, k_b, k_c, k_d = jax.random.split(key, 7)
        d, n, r = self.input_size, self.hidden_size, self.rank
        a = _draw(recurrent_init, k_a, (d, n), dtype)
        if jnp.iscomplexobj(a):
            raise TypeError(f"SelectiveSSM's A is real; recurrent_init {recurrent_init!r} returned complex values. "
                            "Use s4d_real or another real initializer")
        delta = jnp.maximum(_draw(step_init, k_dt, (d,), dtype), 1e-4)
        up = delta_init if delta_init is not None else ("uniform", {"scale": r ** -0.5})
        return SelectiveSSMParams(jnp.log(-a), _draw(input_init, k_down, (d, r), dtype), _draw(up, k_up, (r, d), dtype),
                                  delta + jnp.log(-jnp.expm1(-delta)), _draw(input_init, k_b, (d, n), dtype),
                                  _draw(input_init, k_c, (d, n), dtype), _draw(skip_init, k_d, (d,), dtype))

    @staticmethod
    def step_size(params: SelectiveSSMParams, x: jax.Array) -> jax.Array:
        """``Delta_t`` for the input ``x_t``, ``(D,)``."""
        return jax.nn.softplus(x @ params.delta_down @ params.delta_up + params.delta_bias)

    def step(self, params: SelectiveSSMParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the recurrence."""
        delta = self.step_size(params, x)[..., :, None]
        decay = jnp.exp(-delta * jnp.exp(params.log_neg_a))
        return decay * h + delta * (x @ params.input_kernel)[..., None, :] * x[..., :, None]

    def readout(self, params: SelectiveSSMParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """The output ``y_t = h_t C_t + D x_t``, ``(D,)``."""
        return jnp.sum(h * (x @ params.output_kernel)[..., None, :], axis=-1) + params.skip * x

    def recurrent_parameters(self, params: SelectiveSSMParams):
        """``(log_neg_a, delta_bias)``: ``A`` and the level of the step size."""
        return params.log_neg_a, params.delta_bias

    def initial_state(self, dtype=jnp.float32) -> jax.Array:
        """Zero state of shape ``(input_size, hidden_size)``."""
        return jnp.zeros((self.input_size, self.hidden_size), dtype)


# ---------------------------------------------------------------------------------------------
# minGRU and minLSTM
# ---------------------------------------------------------------------------------------------

class _MinCell:
    """What minGRU and minLSTM share: a real diagonal Jacobian, gate biases that set the decay,
    the state as output."""

    diagonal_jacobian: ClassVar[str] = "real"
    """The step Jacobian is diagonal (see :mod:`gradscope.core.diagonal`)."""
    default_initializers: ClassVar[tuple] = ("zeros", ("chrono", {"t_max": 100.0}))
    """What :func:`gradscope.compare` compares by default (gate biases)."""

    def __post_init__(self):
        _check_sizes(self)

    def readout(self, params, h: jax.Array, x: jax.Array) -> jax.Array:
        """The output is the state."""
        return h

    def recurrent_parameters(self, params):
        """``(gate_kernel, gate_bias)``: the gates set the decay."""
        return params.gate_kernel, params.gate_bias

    def initial_state(self, dtype=jnp.float32) -> jax.Array:
        """Zero state of shape ``(hidden_size,)``."""
        return jnp.zeros((self.hidden_size,), dtype)


class MinGRUParams(NamedTuple):
    """Parameters of :class:`MinGRU`.

    Attributes:
        gate_kernel: ``(input, hidden)``, the update gate's kernel.
        gate_bias: ``(hidden,)``, the update gate's bias.
        candidate_kernel: ``(input, hidden)``.
        candidate_bias: ``(hidden,)``.
    """

    gate_kernel: jax.Array
    gate_bias: jax.Array
    candidate_kernel: jax.Array
    candidate_bias: jax.Array


@dataclasses.dataclass(frozen=True)
class MinGRU(_MinCell):
    r"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"), sequential mode.

    .. math::
        z_t = \sigma(x_t W_z + b_z), \quad \tilde h_t = x_t W_h + b_h, \qquad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    The gate sees only the input, so the step Jacobian is ``diag(1 - z_t)``.
    ``recurrent_init`` draws ``b_z``, which sets the decay; with chrono
    (``("chrono", {"t_max": T})``, role ``write``) ``b_z = -log u`` and the unit keeps
    ``u / (1 + u)`` of its state per step.

    Attributes:
        hidden_size: number of units.
        input_size: size of each input ``x_t``.
    """

    hidden_size: int
    input_size: int = 1

    def init(self, key, recurrent_init="zeros", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32) -> MinGRUParams:
        """Draw parameters: ``recurrent_init`` the gate bias, ``input_init`` both kernels, ``bias_init`` ``b_h``."""
        k_wz, k_bz, k_wh, k_bh = jax.random.split(key, 4)
        n, m = self.hidden_size, self.input_size
        gate_bias = initializers.gate_bias(initializers.resolve(recurrent_init), k_bz, (n,), dtype, ("write",))
        return MinGRUParams(_draw(input_init, k_wz, (m, n), dtype), gate_bias,
                            _draw(input_init, k_wh, (m, n), dtype), _draw(bias_init, k_bh, (n,), dtype))

    def step(self, params: MinGRUParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the recurrence."""
        z = jax.nn.sigmoid(x @ params.gate_kernel + params.gate_bias)
        return (1 - z) * h + z * (x @ params.candidate_kernel + params.candidate_bias)



class MinLSTMParams(NamedTuple):
    """Parameters of :class:`MinLSTM`; gates stacked on the last axis in the order f, i.

    Attributes:
        gate_kernel: ``(input, 2 * hidden)``.
        gate_bias: ``(2 * hidden,)``.
        candidate_kernel: ``(input, hidden)``.
        candidate_bias: ``(hidden,)``.
    """

    gate_kernel: jax.Array
    gate_bias: jax.Array
    candidate_kernel: jax.Array
    candidate_bias: jax.Array


@dataclasses.dataclass(frozen=True)
class MinLSTM(_MinCell):
    r"""minLSTM (Feng et al. 2024), sequential mode.

    .. math::
        f_t = \sigma(x_t W_f + b_f), \quad i_t = \sigma(x_t W_i + b_i), \quad
        \tilde h_t = x_t W_h + b_h \\
        h_t = \frac{f_t}{f_t + i_t} \odot h_{t-1} + \frac{i_t}{f_t + i_t} \odot \tilde h_t

    The step Jacobian is ``diag(f_t / (f_t + i_t))``. ``recurrent_init`` draws the gate
    biases (roles ``keep``, ``write``): chrono sets ``b_f = log u = -b_i``, so the unit
    keeps ``sigma(log u) = u / (1 + u)`` of its state at zero input.

    Attributes:
        hidden_size: number of units.
        input_size: size of each input ``x_t``.
    """

    hidden_size: int
    input_size: int = 1

    def init(self, key, recurrent_init="zeros", input_init="lecun_normal", bias_init="zeros",
             dtype=jnp.float32) -> MinLSTMParams:
        """Draw parameters: ``recurrent_init`` the gate biases, ``input_init`` the kernels (per gate), ``bias_init`` ``b_h``."""
        k_wg, k_bg, k_wh, k_bh = jax.random.split(key, 4)
        n, m = self.hidden_size, self.input_size
        gate_bias = initializers.gate_bias(initializers.resolve(recurrent_init), k_bg, (2 * n,), dtype,
                                           ("keep", "write"))
        return MinLSTMParams(initializers.per_block(initializers.resolve(input_init), 2)(k_wg, (m, 2 * n), dtype),
                             gate_bias, _draw(input_init, k_wh, (m, n), dtype), _draw(bias_init, k_bh, (n,), dtype))

    def step(self, params: MinLSTMParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the recurrence."""
        f, i = jnp.split(jax.nn.sigmoid(x @ params.gate_kernel + params.gate_bias), 2, axis=-1)
        candidate = x @ params.candidate_kernel + params.candidate_bias
        return (f * h + i * candidate) / (f + i)

