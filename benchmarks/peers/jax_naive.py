"""Peer (c), naive JAX: ``jax.jacrev`` of the unrolled map for each lag, then an SVD.

What a JAX user writes first: one jitted ``jacrev`` of a ``lax.scan`` over the last
k inputs. Every lag has a different input length, so every lag recompiles, and
each Jacobian costs k steps of reverse mode: O(T^2) work plus T compilations.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def per_lag_jacrev(flat_step, params, states, xs, lags, budget: float):
    """Jacobian of h_{T-k} -> h_T by ``jax.jit(jax.jacrev(unrolled))`` per lag, then singular values.

    Returns:
        ``(seconds, lags done, {lag: log singular values})``.
    """

    def unrolled(v, window):
        return jax.lax.scan(lambda h, x: (flat_step(params, h, x), None), v, window)[0]

    jacobian = jax.jit(jax.jacrev(unrolled))
    svdvals = jax.jit(lambda m: jnp.linalg.svd(m, compute_uv=False))
    num_steps, out, start = len(xs), {}, time.perf_counter()
    for k in lags:
        jac = jacobian(states[num_steps - k], xs[num_steps - k:])
        out[k] = np.log(np.asarray(svdvals(jac)))
        if time.perf_counter() - start > budget:
            break
    return time.perf_counter() - start, list(out), out
