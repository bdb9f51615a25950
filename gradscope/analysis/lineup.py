"""Classic and modern cells side by side, each under its own initialization, at matched state sizes.

:func:`gradscope.compare` varies the initializer of one cell. :func:`compare_cells` puts
different cells in one table: each :class:`Contender` is a cell with its own
initialization (vanilla and LSTM/GRU under orthogonal kernels, forget-gate bias or
chrono; the LRU under its ring, S4D under S4D-Lin/Inv/Real, ...), and every contender
goes through the same diagnostics on the same seeds: growth rate, memory horizon and
the curse-of-memory sensitivity ``E ||dh_T/dtheta||^2`` to its recurrent parameters
(:mod:`gradscope.analysis.sensitivity`). The state sizes must match (the flat state n:
an LSTM of hidden n/2 carries (h, c), an LRU of n/2 complex units carries n reals), so
the spectra stack into one :class:`CellComparison`, which reports and plots as any
:class:`gradscope.Comparison`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from gradscope.analysis import metrics
from gradscope.analysis.comparison import (Comparison, _warn_nonfinite, draw_over_seeds, make_inputs,
                                           spectra_over_seeds)
from gradscope.analysis.sensitivity import Sensitivity, log_mean_exp, sensitivity_over_seeds
from gradscope.cells import classic, modern
from gradscope.core import _checks
from gradscope.core.lags import select_lags

__all__ = ["LINEUP_FIELDS", "CellComparison", "Contender", "Lineup", "compare_cells", "default_lineup", "state_size"]

LINEUP_FIELDS = {
    "cell": "the cell and its sizes",
    "state_size": "n, the size of the flat state the Jacobian acts on",
    "recurrent_params": "how many parameters the sensitivity differentiates (the cell's recurrent parameters)",
    "sensitivity": "seed mean of ||dh_T/dtheta||_F^2, theta the recurrent parameters (the curse of memory)",
    "relative_sensitivity": "sensitivity divided by the seed mean of ||h_T||^2",
}
"""Columns :meth:`CellComparison.to_dataframe` adds to those of :data:`gradscope.report.METRIC_FIELDS`."""


@dataclasses.dataclass(frozen=True)
class Contender:
    """One cell under one initialization.

    Attributes:
        label: the row name.
        cell: a cell (``init``, ``step``, ``initial_state``, ``input_size``).
        init_options: keyword arguments of ``cell.init`` (``recurrent_init``, ``bias_init``, ...);
            what is not given takes the cell's default.
    """

    label: str
    cell: object
    init_options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Lineup:
    """The contenders of a :class:`CellComparison` (its ``cell``).

    Attributes:
        contenders: the :class:`Contender` tuple, in row order.
    """

    contenders: tuple

    def __repr__(self) -> str:
        labels = "; ".join(c.label for c in self.contenders)
        return f"Lineup({len(self.contenders)} contenders: {labels})"

    def describe(self) -> str:
        """Short text for titles."""
        return f"{len(self.contenders)} cells at state size {state_size(self.contenders[0].cell)}"


def state_size(cell) -> int:
    """n, the size of the cell's flat state."""
    return int(ravel_pytree(cell.initial_state())[0].size)


def _describe(cell) -> str:
    fields = [f"{f.name}={getattr(cell, f.name)}" for f in dataclasses.fields(cell)
              if f.name in ("hidden_size", "input_size")]
    return f"{type(cell).__name__}({', '.join(fields)})"


@dataclasses.dataclass(frozen=True)
class CellComparison(Comparison):
    """A :class:`gradscope.Comparison` whose rows are different cells (``cell`` is a :class:`Lineup`).

    Attributes:
        sensitivity: :class:`~gradscope.analysis.sensitivity.Sensitivity` with arrays
            ``[len(labels), len(seeds), lags]``, or None if not computed.
    """

    sensitivity: Sensitivity | None = None

    def to_dataframe(self, per_seed: bool = False) -> pd.DataFrame:
        """:meth:`Comparison.to_dataframe` plus the columns of :data:`LINEUP_FIELDS` (the last three
        only when the sensitivity was measured)."""
        table = super().to_dataframe(per_seed)
        repeat = len(self.seeds) if per_seed else 1
        extra = {"cell": [_describe(c.cell) for c in self.cell.contenders for _ in range(repeat)],
                 "state_size": self.spectra.state_size}
        if self.sensitivity is not None:
            extra["recurrent_params"] = np.repeat(self.sensitivity.num_parameters, repeat)
            extra.update(self._sensitivity_columns(per_seed))
        return table.assign(**extra)

    def _sensitivity_columns(self, per_seed: bool) -> dict:
        total = np.asarray(self.sensitivity.log_total, np.float64)
        state = np.asarray(self.sensitivity.log_state_norm, np.float64)
        if per_seed:
            return {"sensitivity": np.exp(total).ravel(), "relative_sensitivity": np.exp(total - state).ravel()}
        mean_total, mean_state = log_mean_exp(total, -1), log_mean_exp(state, -1)
        return {"sensitivity": np.exp(mean_total), "relative_sensitivity": np.exp(mean_total - mean_state)}


def _check_contenders(contenders) -> tuple:
    contenders = tuple(contenders)
    if not contenders:
        raise ValueError("expected at least one Contender, got none")
    labels = [c.label for c in contenders]
    if len(set(labels)) != len(labels):
        raise ValueError(f"contender labels must be distinct, got {labels}")
    for c in contenders:
        for attribute in ("init", "step", "initial_state", "input_size"):
            if not hasattr(c.cell, attribute):
                raise TypeError(f"contender {c.label!r}: expected a cell with .{attribute}, got {type(c.cell).__name__}")
    sizes = {c.label: state_size(c.cell) for c in contenders}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"compare_cells needs matched state sizes, got {sizes}; size the cells so their flat "
                         "states match (default_lineup does: LSTM and LRU at n/2)")
    return contenders


def compare_cells(contenders, *, seeds=4, num_steps: int = 100, inputs="gaussian", input_scale: float = 1.0,
                  lags="all", num_log_lags: int = 32, dtype=None, sensitivity: bool = True,
                  thresholds: metrics.Thresholds = metrics.Thresholds(),
                  progress: bool | None = None) -> CellComparison:
    """Spectra, metrics and the curse-of-memory sensitivity of several cells, each under its own init.

    Every contender gets the same seeds: seed s draws its parameters from
    ``jax.random.key(s)`` and its inputs as :func:`gradscope.compare` does (input sizes may
    differ between cells; the sequences then differ too). Diagonal cells take the fast path.

    Args:
        contenders: :class:`Contender` objects (see :func:`default_lineup`) with matched state sizes.
        seeds: a count (seeds 0..count-1) or explicit ints.
        num_steps: the horizon T.
        inputs: ``"gaussian"`` or ``"zeros"``.
        input_scale: std of the Gaussian inputs.
        lags: ``"all"``, ``"log"`` or ints (see :func:`gradscope.select_lags`).
        num_log_lags: lag count for ``lags="log"``.
        dtype: ``"float32"`` (default) or ``"float64"`` (needs x64 mode).
        sensitivity: also measure ``||dh_T/dtheta||^2`` (at 16 log-spaced lags and T).
        thresholds: verdict and horizon thresholds for the tables.
        progress: show a progress bar (default: only on a terminal).

    Returns:
        :class:`CellComparison`, one row per contender.

    Raises:
        ValueError / TypeError: no contenders, repeated labels, unmatched state sizes.
    """
    contenders = _check_contenders(contenders)
    seeds, dtype = _checks.run_settings(seeds, num_steps, dtype)
    kept = select_lags(lags, num_steps, num_log_lags)
    sensitivity_lags = tuple(sorted(set(select_lags("log", num_steps, 16)) | {num_steps}))
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    spectra, sensitivities = [], []
    for c in tqdm(contenders, desc="cells", disable=(None if progress is None else not progress)):
        xs = make_inputs(inputs, seeds, num_steps, c.cell.input_size, input_scale, dtype)
        params = draw_over_seeds(c.cell, keys, dtype, **c.init_options)
        h0 = jax.tree_util.tree_map(lambda a: a.astype(dtype), c.cell.initial_state())
        spectra.append(spectra_over_seeds(c.cell, params, xs, h0, kept))
        if sensitivity:
            sensitivities.append(sensitivity_over_seeds(c.cell, params, xs, h0, sensitivity_lags))
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *spectra)
    labels = tuple(c.label for c in contenders)
    _warn_nonfinite(stacked, labels, seeds)
    return CellComparison(labels, seeds, stacked, thresholds, Lineup(contenders), num_steps,
                          _stack_sensitivities(sensitivities) if sensitivity else None)


def _stack_sensitivities(results: list[Sensitivity]) -> Sensitivity:
    stacked = [jnp.stack([getattr(r, name) for r in results]) for name in ("log_sensitivity", "log_state_norm",
                                                                           "finite")]
    return Sensitivity(*stacked, results[0].lag_values, tuple(r.num_parameters for r in results))


def _mamba_shape(n: int) -> tuple[int, int]:
    """(channels D, state N) with D N = n and N the largest divisor of n up to 16 (Mamba's d_state)."""
    size = max(d for d in range(1, min(16, n) + 1) if n % d == 0)
    return n // size, size


def default_lineup(state_size: int = 64, t_max: float = 100.0) -> list[Contender]:
    """The standard cross-cell comparison at flat state size ``state_size`` (even).

    Classic cells under classic initializations (orthogonal recurrent kernels; LSTM
    with forget-gate bias 1 or chrono, GRU with or without chrono), modern cells under
    theirs (LRU rings, S4D-Lin/Inv/Real, Mamba's S4D-Real, minGRU/minLSTM with zero or
    chrono gate biases). ``t_max`` sets every chrono initialization.

    Raises:
        ValueError: an odd or non-positive state size, or ``t_max <= 2``.
    """
    if not isinstance(state_size, int) or state_size < 2 or state_size % 2:
        raise ValueError(f"state_size must be an even int >= 2 (LSTM and LRU carry pairs), got {state_size!r}")
    n, half = state_size, state_size // 2
    chrono = ("chrono", {"t_max": t_max})
    label = f"chrono(t_max={t_max:g})"
    channels, per_channel = _mamba_shape(n)
    classic_cells = [
        Contender("vanilla tanh, orthogonal", classic.VanillaRNN(n)),
        Contender("LSTM, forget bias 1", classic.LSTM(half, forget_bias=1.0)),
        Contender(f"LSTM, {label}", classic.LSTM(half), {"bias_init": chrono}),
        Contender("GRU, orthogonal", classic.GRU(n)),
        Contender(f"GRU, {label}", classic.GRU(n), {"bias_init": chrono}),
    ]
    return classic_cells + [
        Contender("LRU, ring [0.9, 0.999]", modern.LRU(half, r_min=0.9, r_max=0.999)),
        Contender("LRU, ring [0, 1]", modern.LRU(half, r_min=0.0, r_max=1.0)),
        Contender("S4D-Lin", modern.DiagonalSSM(half), {"recurrent_init": "s4d_lin"}),
        Contender("S4D-Inv", modern.DiagonalSSM(half), {"recurrent_init": "s4d_inv"}),
        Contender("S4D-Real", modern.DiagonalSSM(half), {"recurrent_init": "s4d_real"}),
        Contender("selective SSM, S4D-Real", modern.SelectiveSSM(per_channel, channels)),
        Contender("minGRU, zero gate bias", modern.MinGRU(n)),
        Contender(f"minGRU, {label}", modern.MinGRU(n), {"recurrent_init": chrono}),
        Contender("minLSTM, zero gate bias", modern.MinLSTM(n)),
        Contender(f"minLSTM, {label}", modern.MinLSTM(n), {"recurrent_init": chrono}),
    ]

