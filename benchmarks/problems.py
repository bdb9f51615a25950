"""The benchmark problems, defined once in NumPy so every implementation runs the same work.

A problem is a recurrent cell (vanilla tanh RNN or LSTM), its weights and a
Gaussian input sequence, all drawn from a fixed seed. gradscope, the PyTorch
peers and the naive-JAX peer build their own objects from :func:`arrays`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Problem:
    """One benchmark configuration.

    Attributes:
        cell: ``"vanilla"`` (tanh) or ``"lstm"`` (full state (h, c): n = 2 * hidden).
        hidden: hidden units.
        steps: horizon T.
        seed: seed of weights and inputs.
    """

    cell: str
    hidden: int
    steps: int
    seed: int = 0

    @property
    def state_size(self) -> int:
        """n, the size of the flattened state (the Jacobians are n x n)."""
        return 2 * self.hidden if self.cell == "lstm" else self.hidden

    @property
    def label(self) -> str:
        """Short human-readable name."""
        kind = "LSTM" if self.cell == "lstm" else "tanh RNN"
        return f"{kind} hidden={self.hidden} (n={self.state_size}), T={self.steps}"


def arrays(problem: Problem) -> dict[str, np.ndarray]:
    """Float32 weights (``x @ W`` layout, gates i, f, g, o), inputs ``xs`` (T, 1) and ``h0``.

    Recurrent weights are N(0, 1/hidden) (Glorot-like, near the edge of chaos for
    tanh); input weights N(0, 1); biases zero except an LSTM forget bias of 1.
    """
    rng = np.random.default_rng(problem.seed)
    width = 4 * problem.hidden if problem.cell == "lstm" else problem.hidden
    recurrent = rng.standard_normal((problem.hidden, width)) / np.sqrt(problem.hidden)
    bias = np.zeros(width)
    if problem.cell == "lstm":
        bias[problem.hidden:2 * problem.hidden] = 1.0
    return {
        "recurrent_kernel": recurrent.astype(np.float32),
        "input_kernel": rng.standard_normal((1, width)).astype(np.float32),
        "bias": bias.astype(np.float32),
        "xs": rng.standard_normal((problem.steps, 1)).astype(np.float32),
        "h0": np.zeros(problem.state_size, np.float32),
    }


def spread_order(lags) -> list[int]:
    """The lags reordered so that every prefix is spread evenly over the range (golden-ratio order).

    Peers whose cost per lag grows with the lag are timed on a prefix of this order,
    so the mean cost per lag of the prefix estimates the mean over all lags.
    """
    lags = list(lags)
    golden = (np.sqrt(5) - 1) / 2
    keys = [(i * golden) % 1.0 for i in range(len(lags))]
    return [lags[i] for i in np.argsort(keys, kind="stable")]
