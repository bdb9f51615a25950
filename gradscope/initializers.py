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
from typing import Callable

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]

__all__ = [
    "Initializer",
    "available",
    "constant",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "orthogonal",
    "per_block",
    "resolve",
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
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise TypeError(f"initializer {name!r} takes {takes}; got unexpected option(s) {', '.join(unknown)}")
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
