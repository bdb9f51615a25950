"""Weight initializers for recurrent cells, by name.

Every initializer is a jax-style function ``init(key, shape, dtype) -> array``.
Kernels follow the Flax convention ``shape = (fan_in, fan_out)``: a layer computes
``x @ W``. The named initializers are thin wrappers over
:func:`jax.nn.initializers.variance_scaling` and friends; gradscope writes only
what JAX lacks (a symmetric uniform, the identity, and per-gate block stacking).

Variances (the formulas tutorials often get wrong):

==================  =========================================  ==========================
name                distribution                               variance
==================  =========================================  ==========================
glorot_normal       N(0, s^2)                                  gain^2 * 2/(fan_in+fan_out)
glorot_uniform      U(-a, a), a = gain*sqrt(6/(fan_in+fan_out)) gain^2 * 2/(fan_in+fan_out)
he_normal           N(0, s^2)                                  gain^2 * 2/fan_in
he_uniform          U(-a, a), a = gain*sqrt(6/fan_in)           gain^2 * 2/fan_in
lecun_normal        N(0, s^2)                                  gain^2 * 1/fan_in
lecun_uniform       U(-a, a), a = gain*sqrt(3/fan_in)           gain^2 * 1/fan_in
orthogonal          gain * Q, Q from QR of a Gaussian           every singular value = gain
identity            gain * I                                   (deterministic)
normal              N(0, stddev^2)                             stddev^2
uniform             U(-scale, scale)                           scale^2 / 3
truncated_normal    N(0, stddev^2) cut at +-2 stddev           0.774 * stddev^2 (uncorrected)
zeros / constant    value                                      0
==================  =========================================  ==========================

``xavier_*`` and ``kaiming_*`` are aliases of ``glorot_*`` and ``he_*``.

Initializers of diagonal recurrences and gate biases (the modern cells of
:mod:`gradscope.cells.modern`, and chrono for LSTM/GRU):

==================  ===========================================================================
name                values (n = 0, 1, ... along the last axis)
==================  ===========================================================================
ring                complex lambda, ``|lambda|^2 ~ U(r_min^2, r_max^2)``, phase ``~ U(0, max_phase]``
                    (LRU, Orvieto et al. 2023)
s4d_lin             complex ``A_n = -1/2 + i pi n`` (S4D-Lin, Gu et al. 2022)
s4d_inv             complex ``A_n = -1/2 + i (N/pi) (N/(2n+1) - 1)``, ``N = 2 * size`` (S4D-Inv)
s4d_real            real ``A_n = -(n + 1)`` (S4D-Real; Mamba's A)
log_uniform         ``exp(U(log low, log high))`` (SSM step sizes Delta)
chrono              gate biases ``log U(1, t_max - 1)`` (Tallec & Ollivier 2018): see :func:`chrono`
==================  ===========================================================================

``ring``, ``s4d_lin`` and ``s4d_inv`` return complex arrays (``complex64`` for a
``float32`` request); the cells store them in their own parametrization.

The ``*_normal`` names draw from an untruncated normal by default, as the papers
and PyTorch's ``kaiming_normal_``/``xavier_normal_`` do; pass
``distribution="truncated_normal"`` for JAX's default, whose variance is corrected for
the truncation.

**Truncation.** ``truncated_normal`` cuts at +-2 *standard deviations*, as JAX and
Keras/TensorFlow do, which leaves 0.774 of the nominal variance. PyTorch's
``torch.nn.init.trunc_normal_(std=s)`` cuts at the *absolute* values ``a=-2, b=2`` by
default: for a small ``s`` (0.1: twenty standard deviations) it is practically
untruncated, with the full variance; only at ``s = 1`` does it match JAX's cut.

**Gate-stacked kernels.** gradscope's cells initialize LSTM/GRU kernels one gate
block at a time (:func:`per_block`), as Flax does (its ``LSTMCell`` gives every gate
its own ``Dense`` layer). PyTorch and Keras do not: ``torch.nn.LSTM``/``GRU`` draw
every weight from ``U(-1/sqrt(hidden), 1/sqrt(hidden))``; ``torch.nn.init.orthogonal_``
on ``weight_hh`` (``4n x n``) makes the whole stack orthogonal, not each gate, and
``xavier_*_`` there use the stacked fans; Keras's default
``recurrent_initializer="orthogonal"`` also acts on the whole ``(n, 4n)`` kernel. Each
gate block of a whole-stack orthogonal kernel has singular values spread between
about 0 and 0.87 (mean square 1/4), not all 1.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]

__all__ = [
    "Initializer",
    "available",
    "GATE_ROLES",
    "chrono",
    "constant",
    "gate_bias",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "lecun_normal",
    "lecun_uniform",
    "log_uniform",
    "normal",
    "orthogonal",
    "per_block",
    "resolve",
    "ring",
    "s4d_inv",
    "s4d_lin",
    "s4d_real",
    "truncated_normal",
    "uniform",
    "zeros",
]


def _scaled(mode: str, variance: float, gain: float, distribution: str) -> Initializer:
    return jinit.variance_scaling(gain**2 * variance, mode, distribution)


def glorot_normal(gain: float = 1.0, distribution: str = "normal") -> Initializer:
    """Glorot/Xavier normal: Var = gain^2 * 2 / (fan_in + fan_out)."""
    return _scaled("fan_avg", 1.0, gain, distribution)


def glorot_uniform(gain: float = 1.0) -> Initializer:
    """Glorot/Xavier uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    return _scaled("fan_avg", 1.0, gain, "uniform")


def he_normal(gain: float = 1.0, distribution: str = "normal") -> Initializer:
    """He/Kaiming normal: Var = gain^2 * 2 / fan_in (std = sqrt(2/fan_in), not 2/fan_in)."""
    return _scaled("fan_in", 2.0, gain, distribution)


def he_uniform(gain: float = 1.0) -> Initializer:
    """He/Kaiming uniform: U(-a, a) with a = gain * sqrt(6 / fan_in)."""
    return _scaled("fan_in", 2.0, gain, "uniform")


def lecun_normal(gain: float = 1.0, distribution: str = "normal") -> Initializer:
    """LeCun normal: Var = gain^2 / fan_in."""
    return _scaled("fan_in", 1.0, gain, distribution)


def lecun_uniform(gain: float = 1.0) -> Initializer:
    """LeCun uniform: U(-a, a) with a = gain * sqrt(3 / fan_in)."""
    return _scaled("fan_in", 1.0, gain, "uniform")


def orthogonal(gain: float = 1.0) -> Initializer:
    """Orthogonal: gain * Q with Q from the sign-corrected QR of a Gaussian (Haar measure)."""
    return jinit.orthogonal(scale=gain)


def identity(gain: float = 1.0) -> Initializer:
    """Identity (IRNN, Le et al. 2015): gain * I; rectangular shapes get gain * eye(fan_in, fan_out)."""

    def init(key, shape, dtype=jnp.float32):
        del key
        _require_matrix("identity", shape)
        return gain * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def normal(stddev: float = 1.0) -> Initializer:
    """Plain normal N(0, stddev^2), no fan scaling."""
    return jinit.normal(stddev)


def uniform(scale: float = 1.0) -> Initializer:
    """Symmetric uniform U(-scale, scale) (``jax.nn.initializers.uniform`` is U[0, scale))."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)

    return init


def truncated_normal(stddev: float = 1.0) -> Initializer:
    """N(0, stddev^2) truncated at +-2 stddev, *not* variance-corrected (Var = 0.774 stddev^2).

    The cut is in standard deviations, as in JAX and Keras/TensorFlow; PyTorch's
    ``trunc_normal_`` cuts at absolute +-2 instead (see the module docstring).
    """
    return jinit.truncated_normal(stddev)


def zeros() -> Initializer:
    """All zeros."""
    return jinit.zeros


def constant(value: float = 0.0) -> Initializer:
    """Every entry equal to ``value``."""
    return jinit.constant(value)


def per_block(init: Initializer, num_blocks: int) -> Initializer:
    """Initialize a gate-stacked kernel ``(fan_in, num_blocks * n)`` one ``(fan_in, n)`` block at a time.

    Each block gets its own key and its own fans, as Flax does for LSTM/GRU gates
    (PyTorch's ``init.orthogonal_``/``xavier_*_`` on ``weight_hh`` and Keras's default
    orthogonal recurrent initializer act on the whole stack instead). An orthogonal
    initializer therefore makes *each gate's* block orthogonal, which initializing the
    whole stack at once does not.
    """

    def init_stacked(key, shape, dtype=jnp.float32):
        _require_matrix("per_block", shape)
        if shape[-1] % num_blocks:
            raise ValueError(
                f"expected a last axis divisible by {num_blocks} gate blocks, got shape {tuple(shape)}"
            )
        block = (shape[0], shape[-1] // num_blocks)
        keys = jax.random.split(key, num_blocks)
        return jnp.concatenate([init(k, block, dtype) for k in keys], axis=-1)

    return init_stacked


# ---------------------------------------------------------------------------------------------
# Diagonal recurrences and gate biases
# ---------------------------------------------------------------------------------------------

def _complex(dtype):
    return jnp.result_type(dtype, jnp.complex64)


def _real(dtype):
    return jnp.finfo(dtype).dtype


def ring(r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 2 * math.pi) -> Initializer:
    """Complex eigenvalues uniform on the ring ``r_min <= |lambda| <= r_max`` (LRU, Orvieto et al. 2023).

    Uniform in area: ``|lambda|^2 ~ U(r_min^2, r_max^2)``, phase ``~ U(0, max_phase]``.
    Returns a complex array (``complex64`` for a ``float32`` request).
    """
    _check_ring(r_min, r_max, max_phase)

    def init(key, shape, dtype=jnp.float32):
        k_mod, k_phase = jax.random.split(key)
        real = _real(dtype)
        u1, u2 = jax.random.uniform(k_mod, shape, real), jax.random.uniform(k_phase, shape, real)
        modulus = jnp.sqrt(u1 * (r_max**2 - r_min**2) + r_min**2)
        phase = max_phase * (1.0 - u2)  # in (0, max_phase]: the LRU takes its log
        return (modulus * jnp.exp(1j * phase)).astype(_complex(dtype))

    return init


def _check_ring(r_min, r_max, max_phase) -> None:
    if not 0.0 <= r_min <= r_max <= 1.0:
        raise ValueError(f"ring needs 0 <= r_min <= r_max <= 1, got r_min={r_min}, r_max={r_max}")
    if not 0.0 < max_phase <= 2 * math.pi:
        raise ValueError(f"ring needs 0 < max_phase <= 2 pi, got max_phase={max_phase}")


def _mode_index(shape, dtype):
    if len(shape) < 1:
        raise ValueError(f"expected a shape whose last axis counts the modes, got {tuple(shape)}")
    return jnp.broadcast_to(jnp.arange(shape[-1], dtype=_real(dtype)), shape)


def s4d_lin() -> Initializer:
    """S4D-Lin (Gu et al. 2022): ``A_n = -1/2 + i pi n`` along the last axis (complex)."""

    def init(key, shape, dtype=jnp.float32):
        del key
        n = _mode_index(shape, dtype)
        return (-0.5 + 1j * math.pi * n).astype(_complex(dtype))

    return init


def s4d_inv() -> Initializer:
    """S4D-Inv (Gu et al. 2022): ``A_n = -1/2 + i (N/pi) (N/(2n+1) - 1)``, N = 2 * (last axis) (complex).

    N counts the real state of the conjugate-pair form of S4D, whose ``N/2`` modes
    are the ones kept here.
    """

    def init(key, shape, dtype=jnp.float32):
        del key
        n = _mode_index(shape, dtype)
        size = 2.0 * shape[-1]
        return (-0.5 + 1j * (size / math.pi) * (size / (2 * n + 1) - 1)).astype(_complex(dtype))

    return init


def s4d_real() -> Initializer:
    """S4D-Real (Gu et al. 2022, and Mamba's A): ``A_n = -(n + 1)`` along the last axis (real)."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return -(_mode_index(shape, dtype) + 1).astype(dtype)

    return init


def log_uniform(low: float = 1e-3, high: float = 1e-1) -> Initializer:
    """``exp(U(log low, log high))``: step sizes Delta of state-space models (default 1e-3 to 1e-1)."""
    if not 0 < low <= high:
        raise ValueError(f"log_uniform needs 0 < low <= high, got low={low}, high={high}")

    def init(key, shape, dtype=jnp.float32):
        return jnp.exp(jax.random.uniform(key, shape, dtype, math.log(low), math.log(high)))

    return init


GATE_ROLES = ("keep", "write", "other")
"""Roles of gate blocks that gate-aware bias initializers (:func:`chrono`) receive:
``keep`` gates multiply the previous state (LSTM forget, GRU ``z``), ``write`` gates the
new content (LSTM input gate, minGRU's update gate), ``other`` anything else."""


def chrono(t_max: float) -> Initializer:
    """Chrono initialization of gate biases (Tallec & Ollivier 2018).

    With ``u ~ U(1, t_max - 1)`` per unit, a ``keep`` gate gets bias ``log u`` (so it
    keeps about ``u/(1+u)`` of the state each step: time constants from 1 to about
    ``t_max``), a ``write`` gate ``-log u`` (the LSTM input gate ``b_i = -b_f``), any other
    gate 0. The cells pass the roles of their stacked gate biases (:data:`GATE_ROLES`);
    called without them, every entry is a ``keep`` bias.

    Args:
        t_max: the longest time dependency expected (> 2).
    """
    if not t_max > 2:
        raise ValueError(f"chrono needs t_max > 2 (u ~ U(1, t_max - 1)), got t_max={t_max}")

    def init(key, shape, dtype=jnp.float32, gates=("keep",)):
        blocks = _gate_blocks(shape, gates)
        log_u = jnp.log(jax.random.uniform(key, blocks[1:], dtype, 1.0, t_max - 1.0))
        sign = {"keep": 1.0, "write": -1.0, "other": 0.0}
        return jnp.concatenate([sign[role] * log_u for role in gates], axis=-1)

    return init


def _gate_blocks(shape, gates) -> tuple:
    unknown = sorted(set(gates) - set(GATE_ROLES))
    if unknown:
        raise ValueError(f"gate roles must be among {GATE_ROLES}, got {unknown}")
    if len(shape) < 1 or shape[-1] % len(gates):
        raise ValueError(f"expected a bias whose last axis splits into {len(gates)} gate blocks {tuple(gates)}, "
                         f"got shape {tuple(shape)}")
    return (len(gates), *shape[:-1], shape[-1] // len(gates))


def gate_bias(init: Initializer, key, shape, dtype, gates: tuple[str, ...]) -> jax.Array:
    """Draw a gate-stacked bias: gate-aware initializers (those taking ``gates``) get the roles.

    Args:
        init: an initializer; if its signature has a ``gates`` keyword it receives ``gates``.
        key: the PRNG key, as for any initializer.
        shape: the bias shape; its last axis splits into ``len(gates)`` blocks.
        dtype: the dtype, as for any initializer.
        gates: the role of each stacked gate block, from :data:`GATE_ROLES`.
    """
    try:
        takes_gates = "gates" in inspect.signature(init).parameters
    except (TypeError, ValueError):  # a callable without a signature
        takes_gates = False
    return init(key, shape, dtype, gates=tuple(gates)) if takes_gates else init(key, shape, dtype)


def _require_matrix(name: str, shape) -> None:
    if len(shape) != 2:
        raise ValueError(f"{name} initializer expects a 2-D shape (fan_in, fan_out), got {tuple(shape)}")


_FACTORIES: dict[str, Callable[..., Initializer]] = {
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
    "identity": identity,
    "normal": normal,
    "uniform": uniform,
    "truncated_normal": truncated_normal,
    "zeros": zeros,
    "constant": constant,
    "ring": ring,
    "s4d_lin": s4d_lin,
    "s4d_inv": s4d_inv,
    "s4d_real": s4d_real,
    "log_uniform": log_uniform,
    "chrono": chrono,
}

_ALIASES = {
    "xavier_normal": "glorot_normal",
    "xavier_uniform": "glorot_uniform",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
}


def available() -> list[str]:
    """All initializer names accepted by :func:`get`, aliases included, sorted."""
    return sorted([*_FACTORIES, *_ALIASES])


def get(name: str, **options) -> Initializer:
    """Return the initializer called ``name``, configured with ``options``.

    >>> init = get("orthogonal", gain=1.2)
    >>> W = init(jax.random.key(0), (64, 64), jnp.float32)

    Raises:
        ValueError: ``name`` is not one of :func:`available`.
        TypeError: an option the initializer does not take.
    """
    if not isinstance(name, str):
        raise TypeError(f"expected an initializer name (str), got {type(name).__name__}: {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _FACTORIES:
        raise ValueError(
            f"unknown initializer {name!r}; valid names are: {', '.join(available())}"
        )
    factory = _FACTORIES[key]
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        takes = ", ".join(parameters) if parameters else "no options"
        raise TypeError(f"initializer {name!r} takes {takes}; got unexpected option(s) {', '.join(unknown)}")
    missing = [p for p, spec in parameters.items() if spec.default is inspect.Parameter.empty and p not in options]
    if missing:
        raise TypeError(f"initializer {name!r} needs option(s) {', '.join(missing)}, "
                        f"e.g. ({name!r}, {{{missing[0]!r}: ...}}) or on the command line {name}:{missing[0]}=...")
    return factory(**options)


def resolve(spec) -> Initializer:
    """Turn an initializer spec into an initializer.

    A spec is a name (``"orthogonal"``), a ``(name, options)`` pair
    (``("orthogonal", {"gain": 1.1})``) or an ``init(key, shape, dtype)`` callable.
    """
    if callable(spec):
        return spec
    if isinstance(spec, str):
        return get(spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        return get(spec[0], **spec[1])
    raise TypeError(
        "expected an initializer name, a (name, options) pair or a callable init(key, shape, dtype), "
        f"got {spec!r}"
    )
