"""What gradscope.Monitor costs in a real training loop: Flax NNX models on the adding problem, optax Adam.

Usage (from the repository root)::

    python benchmarks/monitor_overhead.py            # the documented sizes (a few minutes on 2 cores)
    python benchmarks/monitor_overhead.py --quick    # tiny sizes, to check that it runs (numbers not stored)

For each model it trains the same number of steps from the same initial weights on
the same batches, alternately without and with a monitor that checks every ``every``
steps (runs interleaved, so that a busy moment of the machine slows both alike), and
reports the median over the pairs of (time with monitor) / (time without), in CPU time
of the process (all its threads; least disturbed by other jobs on a shared machine)
and in wall time. A third estimate divides the time of one check, measured on its
own, by the time of ``every`` training steps. The
monitor is made, and its check compiled, before the timed runs: what is timed is the
steady state of a long training run. The one-off costs (making the monitor, which
runs the model once to find its layers, and compiling the check) are reported
beside it, as is the time of one check measured on its own.

The full run stores its numbers in ``docs/data/monitor_overhead.json`` (see
``docs/scripts/docnumbers.py``) and rewrites the pages that show them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import gradscope

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "scripts"))
from docnumbers import Numbers, write_pages  # noqa: E402


class Model(nnx.Module):
    """Stacked recurrent layers (``nnx.RNN``) and a linear read-out of the last step."""

    def __init__(self, cell: str, hidden: int, layers: int, rngs: nnx.Rngs):
        make = {"lstm": nnx.LSTMCell, "gru": nnx.GRUCell}[cell]
        sizes = [2] + [hidden] * layers
        self.layers = nnx.List([nnx.RNN(make(a, b, rngs=rngs)) for a, b in zip(sizes, sizes[1:])])
        self.head = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, xs):
        for layer in self.layers:
            xs = layer(xs)
        return self.head(xs[:, -1])[:, 0]


def _train_step():
    @nnx.jit
    def step(model, optimizer, xs, ys):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(xs) - ys) ** 2))(model)
        optimizer.update(model, grads)
        return loss
    return step


def _run(model, optimizer, batches, train_step, monitor) -> tuple[float, float]:
    """Train over ``batches``; with a monitor, call ``monitor.update`` every step. Returns (CPU, wall) seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    for step, (xs, ys) in enumerate(batches):
        loss = train_step(model, optimizer, xs, ys)
        if monitor is not None:
            monitor.update(step)
    jax.block_until_ready(loss)
    return time.process_time() - cpu, time.perf_counter() - wall


def _ratio(monitored, plain, index):
    ratios = [m[index] / p[index] for m, p in zip(monitored, plain)]
    return statistics.median(ratios), min(ratios), max(ratios)


def measure(cell: str, hidden: int, layers: int, lag: int, batch: int, steps: int, every: int, repeats: int,
            mode: str) -> dict:
    """Interleaved training runs without and with a monitor; medians and one-off costs."""
    task = gradscope.training.make_task("adding", lag)
    model = Model(cell, hidden, layers, nnx.Rngs(0))
    initial = nnx.state(model)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    initial_opt = nnx.state(optimizer)
    drawn = [task.sample(jax.random.key(i), batch) for i in range(steps)]
    batches = [(b.inputs, b.targets) for b in drawn]
    probe = task.sample(jax.random.key(10_000), 1).inputs
    train_step = _train_step()
    jax.block_until_ready(train_step(model, optimizer, *batches[0]))  # compile the training step

    start = time.perf_counter()
    monitor = gradscope.Monitor(model, probe, every=every, mode=mode)
    made = time.perf_counter() - start
    start = time.perf_counter()
    monitor.check(-1)
    first_check = time.perf_counter() - start
    check_times = []
    for _ in range(5):
        start = time.perf_counter()
        monitor.check(-1)
        check_times.append(time.perf_counter() - start)

    plain, monitored = [], []
    for _ in range(repeats):
        for times, with_monitor in ((plain, None), (monitored, monitor)):
            nnx.update(model, initial)
            nnx.update(optimizer, initial_opt)
            times.append(_run(model, optimizer, batches, train_step, with_monitor))
    step_s = statistics.median(wall for _, wall in plain) / steps
    check_s = statistics.median(check_times)
    return {"cell": cell, "hidden": hidden, "layers": layers, "T": task.num_steps, "batch": batch, "steps": steps,
            "every": every, "mode": mode, "units": ", ".join(monitor.names),
            "state_sizes": _state_sizes(monitor), "repeats": repeats,
            "train_step_ms": 1e3 * step_s, "check_ms": 1e3 * check_s, "check_share": check_s / (every * step_s),
            "cpu": _ratio(monitored, plain, 0), "wall": _ratio(monitored, plain, 1),
            "made_s": made, "first_check_s": first_check}


def _state_sizes(monitor) -> str:
    sizes = [sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(h)) // len(monitor._xs)
             for h in monitor._h0]
    return " / ".join(str(s) for s in sizes + ([sum(sizes)] if len(sizes) > 1 else []))


CONFIGS = [  # (cell, hidden, layers, mode)
    ("lstm", 64, 1, "norms"),
    ("lstm", 64, 1, "profile"),
    ("gru", 128, 1, "norms"),
    ("gru", 64, 2, "norms"),
]


def _percent(ratio) -> str:
    median, low, high = ratio
    return f"{100 * (median - 1):+.1f}% ({100 * (low - 1):+.1f}% to {100 * (high - 1):+.1f}%)"


def table(rows) -> str:
    """The Markdown table of the docs page."""
    every = rows[0]["every"]
    lines = [f"| model | state n (layers / stack) | mode | training step | one check | one check / {every} steps | "
             "overhead, CPU time (median, range) | overhead, wall time (median, range) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        model = f"{r['layers']} x {r['cell'].upper()} {r['hidden']}, T = {r['T']}, batch {r['batch']}"
        lines.append(f"| {model} | {r['state_sizes']} | {r['mode']} | {r['train_step_ms']:.1f} ms | "
                     f"{r['check_ms']:.0f} ms | {100 * r['check_share']:.1f}% | {_percent(r['cpu'])} | "
                     f"{_percent(r['wall'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; nothing is stored")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pairs of runs per model")
    parser.add_argument("--lag", type=int, default=25, help="adding problem with T = 2 * lag")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    configs = [("gru", 8, 2, "norms")] if args.quick else CONFIGS
    steps, repeats, lag = (20, 2, 5) if args.quick else (args.steps, args.repeats, args.lag)
    every = 10 if args.quick else args.every
    rows, loads = [], [os.getloadavg()[0]]
    for cell, hidden, layers, mode in configs:
        row = measure(cell, hidden, layers, lag, args.batch, steps, every, repeats, mode)
        rows.append(row)
        loads.append(os.getloadavg()[0])
        print(f"{layers} x {cell} {hidden} ({mode}): step {row['train_step_ms']:.1f} ms, check {row['check_ms']:.0f} "
              f"ms ({100 * row['check_share']:.1f}% of {every} steps), overhead CPU {_percent(row['cpu'])}, wall "
              f"{_percent(row['wall'])}, monitor made in {row['made_s']:.2f} s, first check "
              f"{row['first_check_s']:.2f} s", flush=True)
    print(table(rows))
    if args.quick:
        return
    numbers = Numbers("monitor_overhead")
    numbers["overhead_table"] = table(rows)
    numbers["overhead_setup"] = (f"{steps} training steps, a check every {every} steps, {repeats} interleaved pairs "
                                 f"of runs per model, on {platform.machine()} with {os.cpu_count()} cores, whose "
                                 f"1-minute load average (other jobs included) was {min(loads):.1f} to "
                                 f"{max(loads):.1f} during the run ({datetime.date.today().isoformat()})")
    numbers["overhead_max"] = f"{100 * (max(r['cpu'][0] for r in rows) - 1):.1f}%"
    numbers["check_share_max"] = f"{100 * max(r['check_share'] for r in rows):.1f}%"
    numbers["first_check_max"] = f"{max(r['first_check_s'] for r in rows):.1f} s"
    numbers["made_max"] = f"{max(r['made_s'] for r in rows):.1f} s"
    numbers.save()
    for path in write_pages():
        print(f"rewrote {path}")


if __name__ == "__main__":
    main()
