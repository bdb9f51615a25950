"""The LSTM and GRU updates that the PyTorch and Keras adapters share, in one gate layout.

Each framework stacks its gates in its own order and transposes its kernels its own
way; the adapters compute the pre-activations in their framework's layout and hand
them here, so the update itself is written once.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


def lstm(z: jax.Array, c: jax.Array, activation: Activation = jnp.tanh,
         recurrent_activation: Activation = jax.nn.sigmoid) -> tuple[jax.Array, jax.Array]:
    r"""One LSTM update from the pre-activations ``z`` stacked ``i, f, g, o`` on the last axis.

    .. math::
        c_t = \rho(f) \odot c_{t-1} + \rho(i) \odot \phi(g), \quad h_t = \rho(o) \odot \phi(c_t)

    with :math:`\phi` = ``activation`` and :math:`\rho` = ``recurrent_activation``.

    Returns:
        ``(h_t, c_t)``.
    """
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
    return recurrent_activation(o) * activation(c), c


def gru(x_r: jax.Array, x_z: jax.Array, x_n: jax.Array, h_r: jax.Array, h_z: jax.Array,
        candidate_recurrent: Callable[[jax.Array], jax.Array], h: jax.Array,
        activation: Activation = jnp.tanh, recurrent_activation: Activation = jax.nn.sigmoid) -> jax.Array:
    r"""One GRU update from the input parts ``x_*`` and recurrent parts ``h_*`` of the gates.

    .. math::
        r = \rho(x_r + h_r), \quad z = \rho(x_z + h_z), \quad
        n = \phi(x_n + \text{candidate\_recurrent}(r)), \quad h_t = z \odot h_{t-1} + (1 - z) \odot n

    ``candidate_recurrent(r)`` is where the conventions differ: ``r * (h W_n + b_n)``
    with the reset gate applied after the matmul (PyTorch, Keras ``reset_after=True``)
    or ``(r * h) W_n`` before it (Keras ``reset_after=False``).
    """
    r = recurrent_activation(x_r + h_r)
    z = recurrent_activation(x_z + h_z)
    n = activation(x_n + candidate_recurrent(r))
    return z * h + (1.0 - z) * n
