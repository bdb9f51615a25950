"""PyTorch peers: what a user would write with autograd to get every lag's Jacobian spectrum.

* :func:`per_lag_autograd` (peer a): for every lag k, ``torch.autograd.functional.jacobian``
  of the unrolled map h_{T-k} -> h_T, then ``torch.linalg.svdvals``. O(T^2) steps.
* :func:`jacrev_cumulative` (peer b): ``torch.func.jacrev`` of one step at every t,
  a reverse cumulative product ``P_k = P_{k-1} J_{T-k+1}`` (renormalised by its
  Frobenius norm, as gradscope does, so float32 never under/overflows), then
  ``svdvals`` per lag. O(T) steps, one SVD per lag.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def make_step(cell: str, weights: dict[str, np.ndarray]):
    """``step(v, x) -> v_next`` on the flat state (``[h, c]`` for the LSTM), in torch."""
    w = {k: torch.from_numpy(weights[k]) for k in ("recurrent_kernel", "input_kernel", "bias")}
    if cell == "vanilla":
        return lambda v, x: torch.tanh(v @ w["recurrent_kernel"] + x @ w["input_kernel"] + w["bias"])
    hidden = w["recurrent_kernel"].shape[0]

    def lstm(v, x):
        h, c = v[:hidden], v[hidden:]
        i, f, g, o = (h @ w["recurrent_kernel"] + x @ w["input_kernel"] + w["bias"]).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c])

    return lstm


def unroll_states(step, h0: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """States h_0..h_{T-1} (``[T, n]``), no gradients."""
    states, v = [], h0
    with torch.no_grad():
        for x in xs:
            states.append(v)
            v = step(v, x)
    return torch.stack(states)


def per_lag_autograd(step, states, xs, lags, budget: float, vectorize: bool = False):
    """Peer (a): autograd Jacobian of the unrolled map for each lag, then svdvals.

    Lags are processed in the given order until ``budget`` seconds have passed.

    Returns:
        ``(seconds, lags done, {lag: log singular values})``.
    """
    num_steps, out, start = len(xs), {}, time.perf_counter()
    for k in lags:
        window = xs[num_steps - k:]

        def unrolled(v, window=window):
            for x in window:
                v = step(v, x)
            return v

        jac = torch.autograd.functional.jacobian(unrolled, states[num_steps - k], vectorize=vectorize)
        out[k] = torch.log(torch.linalg.svdvals(jac)).numpy()
        if time.perf_counter() - start > budget:
            break
    return time.perf_counter() - start, list(out), out


def jacrev_cumulative(step, states, xs, max_lag: int, budget: float):
    """Peer (b): per-step ``torch.func.jacrev``, reverse cumulative product, svdvals at every lag.

    Runs lags 1..max_lag in order until ``budget`` seconds have passed.

    Returns:
        ``(seconds, lags done, {lag: log singular values})``.
    """
    jac_step = torch.func.jacrev(step, argnums=0)
    num_steps, n = states.shape
    product, log_scale, out = torch.eye(n), 0.0, {}
    start = time.perf_counter()
    for k in range(1, max_lag + 1):
        product = product @ jac_step(states[num_steps - k], xs[num_steps - k])
        norm = torch.linalg.norm(product)
        product, log_scale = product / norm, log_scale + float(torch.log(norm))
        out[k] = (log_scale + torch.log(torch.linalg.svdvals(product))).numpy()
        if time.perf_counter() - start > budget:
            break
    return time.perf_counter() - start, list(out), out


def svd_floor(products: np.ndarray, threads: int | None = None) -> float:
    """Seconds for ``torch.linalg.svdvals`` of a batch of matrices (one batched call), best of two.

    ``threads`` sets ``torch.set_num_threads`` for the call (restored after).
    """
    batch, before = torch.from_numpy(products), torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        torch.linalg.svdvals(batch[:1])
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            torch.linalg.svdvals(batch)
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        torch.set_num_threads(before)
