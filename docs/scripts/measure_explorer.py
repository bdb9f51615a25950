"""Measure the explorer's redraw latency and what T-bucketing saves; numbers for docs/explore.md.

Run from the repository root:

    python docs/scripts/measure_explorer.py           # about a minute of CPU: stores docs/data/explore.json,
                                                       # rewrites the marked numbers on the docs pages
    python docs/scripts/measure_explorer.py --quick   # prints the quick numbers only (what the test recomputes)

What it measures:

* **Redraw latency per control, warm.** ``gradscope.explore()`` at its defaults (vanilla
  tanh, hidden 64, T = 200, 50 lags) is built headless; every value below is visited
  once (so everything is compiled), then each control is set to its values in turn,
  ``ROUNDS`` times, and each change is timed: analysis, redraw and PNG, wall clock and
  process CPU time (all threads). The medians go on the page.
* **Cold and warm calls of jacobian_spectra** at hidden 64: the first call at a new T
  (it compiles), and a call at another T in the same bucket, with and without bucketing.
* **Compilations** for T = 200, 210, 220 (one bucket, 224) with ``bucket=True`` and
  ``bucket=False``, counted from the jit cache with a step function no earlier call has
  used (deterministic; ``quick_numbers`` recomputes them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docnumbers import Numbers, publish  # noqa: E402

import gradscope  # noqa: E402
from gradscope.analysis import spectra as spectra_module  # noqa: E402
from gradscope.core import buckets  # noqa: E402

STORE = "explore"
ROUNDS = 3
SAME_BUCKET = (200, 210, 220)
CHANGES = {  # control -> the values it is moved through (from the defaults, and back)
    "gain": (1.1, 1.2, 0.9, 1.0),
    "input_scale": (0.5, 1.5, 1.0),
    "initializer": ("lecun_normal", "he_normal", "orthogonal"),
    "num_steps": (210, 220, 200),  # one bucket: 224
    "activation": ("relu", "softplus", "tanh"),
    "hidden_size": (32, 64),
    "cell": ("GRU", "vanilla"),
}


def _step_factory():
    """A fresh vanilla tanh step (a new function: nothing compiled for it yet) and its parameters."""
    def step(params, h, x):
        return jnp.tanh(h @ params["w"] + x @ params["u"])

    rng = np.random.default_rng(0)
    params = {"w": (rng.normal(size=(64, 64)) / 8).astype(np.float32),
              "u": (rng.normal(size=(64, 64)) / 8).astype(np.float32)}
    return step, params


def compile_counts() -> dict[str, int]:
    """Compilations for T = 200, 210, 220 with and without bucketing (a fresh step for each)."""
    counts = {}
    for bucket, core in ((True, buckets._bucketed_core.__wrapped__), (False, spectra_module._spectra_core.__wrapped__)):
        step, params = _step_factory()
        before = core._cache_size()
        for num_steps in SAME_BUCKET:
            xs = np.random.default_rng(num_steps).normal(size=(num_steps, 64)).astype(np.float32)
            gradscope.jacobian_spectra(step, params, xs, jnp.zeros(64), bucket=bucket, pipelined=False)
        counts["bucketed" if bucket else "unbucketed"] = core._cache_size() - before
    return counts


def bucket_numbers() -> dict[str, str]:
    """Bucket lengths up to 512, the padding they cost for T in 9..1000, and where ``bucket=None`` stops at n = 64."""
    lengths = sorted({buckets.bucket_length(t) for t in range(9, 513)})
    horizons = np.arange(9, 1001)
    padding = np.array([buckets.bucket_length(int(t)) for t in horizons]) / horizons - 1.0
    automatic = [t for t in range(1, 2000) if buckets.use_buckets(None, np.zeros(1), t, 64)]
    return {"bucket_lengths": ", ".join(str(n) for n in lengths), "max_padding": f"{100 * padding.max():.0f}%",
            "mean_padding": f"{100 * padding.mean():.0f}%", "auto_max_t_64": str(max(automatic))}


def quick_numbers():
    """The deterministic numbers: compile counts and bucket sizes."""
    counts = compile_counts()
    return STORE, {"compiles_bucketed": str(counts["bucketed"]), "compiles_unbucketed": str(counts["unbucketed"]),
                   **bucket_numbers()}


def _timed(action) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def control_latencies(explorer) -> dict[str, tuple[float, float, float]]:
    """Median (wall, CPU, analysis wall) seconds of a warm change of each control."""
    for name, values in CHANGES.items():  # warm-up: every value once
        for value in values:
            explorer.controls[name].value = value
    latencies = {}
    for name, values in CHANGES.items():
        walls, cpus, analyses = [], [], []
        for _ in range(ROUNDS):
            for value in values:
                wall, cpu = _timed(lambda: setattr(explorer.controls[name], "value", value))
                walls.append(wall), cpus.append(cpu), analyses.append(explorer.result.seconds)
        latencies[name] = (statistics.median(walls), statistics.median(cpus), statistics.median(analyses))
    return latencies


def spectra_calls() -> dict[str, float]:
    """Wall seconds of jacobian_spectra at hidden 64 (vanilla tanh, all lags): cold, and a new T in the bucket."""
    cell = gradscope.VanillaRNN(64, 64)
    params = cell.init(jax.random.key(0))
    xs = np.random.default_rng(0).normal(size=(230, 64)).astype(np.float32)
    out = {}
    for bucket in (True, False):
        label = "bucketed" if bucket else "unbucketed"
        run = lambda t: jax.block_until_ready(  # noqa: E731
            gradscope.jacobian_spectra(cell, params, xs[:t], bucket=bucket).log_singular_values)
        out[f"cold_{label}"] = _timed(lambda: run(SAME_BUCKET[0]))[0]
        out[f"new_t_{label}"] = _timed(lambda: run(SAME_BUCKET[1]))[0]
        out[f"same_t_{label}"] = min(_timed(lambda: run(SAME_BUCKET[1]))[0] for _ in range(5))
    return out


def latency_table(latencies) -> str:
    """The Markdown table of :func:`control_latencies`."""
    rows = ["| control moved (values) | redraw, wall (s) | CPU time (s) | the analysis alone, wall (s) |",
            "|---|---|---|---|"]
    for name, (wall, cpu, analysis) in latencies.items():
        values = ", ".join(str(v) for v in CHANGES[name])
        rows.append(f"| `{name}` ({values}) | {wall:.2f} | {cpu:.2f} | {analysis:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="print the quick numbers only")
    args = parser.parse_args()
    store, quick = quick_numbers()
    print(quick)
    if args.quick:
        return
    numbers = Numbers(store)
    for name, text in quick.items():
        numbers[name] = text
    built = []
    wall, cpu = _timed(lambda: built.append(gradscope.explore()))
    explorer = built[0]
    numbers["first_build"], numbers["first_build_cpu"] = f"{wall:.1f}", f"{cpu:.1f}"
    latencies = control_latencies(explorer)
    print(latency_table(latencies))
    numbers["latency_table"] = latency_table(latencies)
    walls, cpus = [wall for wall, _, _ in latencies.values()], [cpu for _, cpu, _ in latencies.values()]
    numbers["median_redraw"] = f"{statistics.median(walls):.2f}"
    numbers["median_redraw_cpu"] = f"{statistics.median(cpus):.2f}"
    numbers["slowest_redraw"], numbers["slowest_redraw_cpu"] = f"{max(walls):.2f}", f"{max(cpus):.2f}"
    for name, seconds in spectra_calls().items():
        print(name, f"{seconds:.3f}")
        numbers[name] = f"{seconds:.2f}"
    numbers["load"] = f"{os.getloadavg()[0]:.1f}"
    publish(numbers)


if __name__ == "__main__":
    main()
