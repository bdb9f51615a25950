"""Run one group of benchmark measurements in a fresh process and print the results as JSON.

Invoked by ``run_benchmarks.py`` as ``python worker.py '<json spec>'``. JAX and PyTorch
measurements run in separate processes so that neither library's idle thread pool
competes with the other's work. Each measurement is capped at ``budget`` seconds:
a method that would take longer is timed on part of the lags and its total is
extrapolated linearly per lag (the record says so).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time

import numpy as np
from problems import Problem, arrays, spread_order

TOP = 8  # singular values per lag kept for the cross-check between implementations
REPEATS = 7  # timed repeats after the first call, within half the budget (the fastest is kept)
SERIAL_FLOOR = "reference: SVDs one at a time in a compiled loop (jax, single-threaded LAPACK)"
THREADED_FLOOR = "floor: SVDs on one host thread per core (jax, single-threaded LAPACK)"
FULL = "gradscope: full spectra, every lag"
SVD_PIPELINE = "gradscope: full spectra, every lag, method='svd'"


def _record(method, seconds, lags_done, num_lags, *, first_call=None, log_sv=None, floor=None, note=""):
    """One result row; ``estimated`` is the time for all ``num_lags`` lags (extrapolated if needed)."""
    done = len(lags_done) if isinstance(lags_done, (list, tuple)) else int(lags_done)
    row = {"method": method, "seconds": seconds, "lags_done": done, "num_lags": num_lags,
           "estimated": seconds * num_lags / max(done, 1), "extrapolated": done < num_lags,
           "first_call": first_call, "note": note,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if log_sv is not None:
        row["log_sv"] = {str(k): np.asarray(v, np.float64)[:TOP].tolist() for k, v in log_sv.items()}
    if floor is not None:
        row["log_floor"] = {str(k): float(v) for k, v in floor.items()}
    return row


# ---------------------------------------------------------------------------------------------
# JAX side: gradscope, the naive-JAX peer, the SVD floor
# ---------------------------------------------------------------------------------------------

def _jax_problem(problem: Problem):
    import jax.numpy as jnp

    import gradscope
    from gradscope.cells import LSTMParams, VanillaParams

    data = arrays(problem)
    kind = (gradscope.LSTM, LSTMParams) if problem.cell == "lstm" else (gradscope.VanillaRNN, VanillaParams)
    cell = kind[0](problem.hidden)
    params = kind[1](*(jnp.asarray(data[k]) for k in ("recurrent_kernel", "input_kernel", "bias")))
    return cell, params, jnp.asarray(data["xs"])


def _timed(fn, budget: float = 0.0):
    """``(first call seconds incl. compile, best later call, result)`` of one function (see :func:`_timed_rounds`)."""
    return _timed_rounds({"": fn}, budget)[""]


def _timed_rounds(calls: dict, budget: float) -> dict:
    """``{name: (first call seconds incl. compile, best later call, result)}`` for each of ``calls``.

    After a first call each, the calls are timed in rounds, every call once per round in
    turn, so that a slow moment of this shared machine slows all of them alike and the
    ratios between them are measured under the same load. Rounds repeat (at most
    ``REPEATS``) while they fit in half the budget per call; the fastest time is kept.
    """
    import jax

    def once(fn):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        return time.perf_counter() - start, out

    results = {name: [*once(fn)] for name, fn in calls.items()}
    best = dict.fromkeys(calls, float("inf"))
    spent = 0.0
    for _ in range(REPEATS):
        start = time.perf_counter()
        for name, fn in calls.items():
            best[name] = min(best[name], once(fn)[0])
        elapsed = time.perf_counter() - start
        spent += elapsed
        if spent + elapsed > budget / 2 * len(calls):
            break
    return {name: (first, best[name], out) for name, (first, out) in results.items()}


def _products(cell, params, xs, count: int) -> np.ndarray:
    """The normalised backward products Q_1..Q_count (what every full-spectrum method must decompose)."""
    import jax

    from gradscope import engine

    flat_step, states = engine.unrolled_states(cell.step, params, xs, cell.initial_state())
    advance = engine.product_stepper(flat_step, params, states, xs)

    @jax.jit
    def run():
        def body(carry, k):
            carry = advance(k, carry)
            return carry, carry[0]
        rows, log_scale = engine.initial_product(states.shape[1], states.dtype)
        finite = jax.numpy.asarray(True)
        return jax.lax.scan(body, (rows, log_scale, finite), jax.numpy.arange(1, count + 1))[1]

    return np.asarray(run())


def _floor_calls(cell, params, xs, problem, budget, products_path) -> tuple[int, float, dict]:
    """The SVDs alone, of the actual products: batched (LAPACK threads as installed, and single-threaded),
    on one host thread per core, and one per call in a compiled loop.

    Returns ``(matrices, seconds for one matrix, {row name: (call, note)})``; the calls
    decompose as many products as fit in the budget (all ``problem.steps`` if they do).
    """
    import jax
    import jax.numpy as jnp

    from gradscope.core._lapack import lapack_thread_limit

    svdvals = jax.jit(lambda m: jnp.linalg.svd(m, compute_uv=False))
    one = _products(cell, params, xs, 1)
    per_matrix = _timed(lambda: svdvals(one), budget)[1]
    count = len(_prefix(problem, per_matrix, budget))
    batch = _products(cell, params, xs, count)
    np.save(products_path, batch)
    one_by_one = jax.jit(lambda m: jax.lax.map(lambda a: jnp.linalg.svd(a, compute_uv=False), m))
    calls = {
        "floor: batched SVD (jax)": (
            lambda: svdvals(batch),
            "jnp.linalg.svd(compute_uv=False) of the actual normalised products, one batched call, "
            "LAPACK threads as installed"),
        "floor: batched SVD (jax, single-threaded LAPACK)": (
            lambda: lapack_thread_limit(svdvals)(batch),
            "the same call with OpenBLAS held at one thread (threadpoolctl), as gradscope runs it"),
        THREADED_FLOOR: (
            lambda: lapack_thread_limit(_on_host_threads)(one_by_one, batch),
            f"the products split into {os.cpu_count()} contiguous parts, each decomposed one matrix per call "
            "(lax.map) on its own Python thread, single-threaded LAPACK"),
        SERIAL_FLOOR: (
            lambda: lapack_thread_limit(one_by_one)(batch),
            "one SVD per call inside a compiled loop (lax.map), single-threaded LAPACK: the SVD work of a sweep "
            "that keeps its SVDs inside one compiled program"),
    }
    return count, per_matrix, calls


def _on_host_threads(decompose, batch):
    """``decompose`` of ``batch`` in one contiguous part per core, each on its own thread."""
    import concurrent.futures

    import jax

    parts = [jax.device_put(part) for part in np.array_split(batch, os.cpu_count() or 1)]
    jax.block_until_ready(parts)
    with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(lambda part: jax.block_until_ready(decompose(part)), parts))


def _prefix(problem, per_lag, budget):
    """Lags 1..L with L the most that fit in ``budget`` at ``per_lag`` seconds each (all if they fit)."""
    count = problem.steps if per_lag * problem.steps <= budget else int(max(2, budget // per_lag))
    return tuple(range(1, min(count, problem.steps) + 1))


def _full_spectra_calls(cell, params, xs, lags, one_program: bool) -> dict:
    """``{row name: (call, note)}`` for gradscope's full spectra at ``lags``: the default (pipelined,
    ``method="auto"``), the pipeline with one LAPACK call per product, and one compiled program."""
    import gradscope

    def run(pipelined, method="auto"):
        return lambda: gradscope.jacobian_spectra(cell, params, xs, lags=lags, pipelined=pipelined, method=method)

    calls = {FULL: (run(None), "the default on CPU: the sweep in compiled chunks, the singular values on one host "
                               "thread per core (warm-started Rayleigh-Ritz where it pays: float32, n >= 128, "
                               "50 lags or more, gradscope.core.ritz.worth_it)"),
             SVD_PIPELINE: (run(None, "svd"), "the same pipeline with one LAPACK call per product")}
    if one_program:
        calls[FULL + " (one program, pipelined=False)"] = (run(False), "")
    return calls


def _accuracy_note(default, reference) -> str:
    """How far the default's values are from LAPACK's (the ``method="svd"`` run), over every resolved value."""
    a, b = np.asarray(default.log_singular_values), np.asarray(reference.log_singular_values)
    resolved = (a > np.asarray(default.log_floor)[:, None]) | (b > np.asarray(reference.log_floor)[:, None])
    gap = float(np.max(np.abs(a - b)[resolved])) if resolved.any() else 0.0
    return (f"; accuracy: every value above the resolution floor ({int(resolved.sum()):,} values) within "
            f"{gap:.1e} in log of method='svd' (LAPACK)")


def _full_spectra_record(name, timing, lags, problem, note):
    first, seconds, out = timing
    log_sv = {k: out.log_singular_values[i] for i, k in enumerate(lags)}
    floor = {k: out.log_floor[i] for i, k in enumerate(lags)}
    return _record(name, seconds, lags, problem.steps, first_call=first, log_sv=log_sv, floor=floor, note=note)


def _gradscope_profile(cell, params, xs, problem, budget):
    from gradscope.analysis.profile import jacobian_profile

    first, seconds, out = _timed(lambda: jacobian_profile(cell, params, xs), budget)
    note = f"sigma_max + RMS at all {problem.steps} lags; full spectra at {len(out.spectrum_lags)} log-spaced lags"
    return _record("gradscope: profile mode", seconds, problem.steps, problem.steps, first_call=first, note=note)


def _gradscope_norms(cell, params, xs, problem, budget, per_step):
    from gradscope.analysis.profile import norm_profile

    lags = _prefix(problem, per_step, budget)
    first, seconds, _ = _timed(lambda: norm_profile(cell, params, xs, max_lag=len(lags)), budget)
    return _record("gradscope: norms-only mode", seconds, lags, problem.steps, first_call=first,
                   note="sigma_max + RMS per lag, no SVD")


def _gradscope_topk(cell, params, xs, problem, budget):
    from gradscope.analysis.profile import top_singular_values

    first, seconds, out = _timed(lambda: top_singular_values(cell, params, xs, k=8), budget)
    return _record("gradscope: top-8, matrix-free", seconds, len(out.lags), len(out.lags), first_call=first,
                   note=f"k=8 (+8 oversampling) at {len(out.lags)} log-spaced lags")


def _naive_jax(cell, params, xs, problem, budget):
    from peers.jax_naive import per_lag_jacrev

    from gradscope import engine

    flat_step, states = engine.unrolled_states(cell.step, params, xs, cell.initial_state())
    order = spread_order(range(1, problem.steps + 1))
    seconds, done, log_sv = per_lag_jacrev(flat_step, params, states, xs, order, budget)
    return _record("peer (c): naive JAX, jax.jacrev per lag", seconds, done, problem.steps, log_sv=log_sv,
                   note="jit(jacrev(scan over the last k inputs)): one compile per lag, compile time included")


def jax_group(spec) -> list[dict]:
    """gradscope's modes, peer (c) and the JAX SVD floor for one problem."""
    problem, budget = Problem(**spec["problem"]), spec["budget"]
    cell, params, xs = _jax_problem(problem)
    count, per_matrix, floors = _floor_calls(cell, params, xs, problem, budget, spec["products_path"])
    lags = _prefix(problem, per_matrix, budget)
    full_calls = _full_spectra_calls(cell, params, xs, lags, "one_program" in spec["methods"])
    calls = {**floors, **full_calls}
    timings = _timed_rounds({name: call for name, (call, _) in calls.items()}, budget)
    rows = [_record(name, timings[name][1], count, problem.steps, note=note) for name, (_, note) in floors.items()]
    rows += [_full_spectra_record(name, timings[name], lags, problem, note) for name, (_, note) in full_calls.items()]
    rows[len(floors)]["note"] += _accuracy_note(timings[FULL][2], timings[SVD_PIPELINE][2])
    per_svd = min(row["seconds"] for row in rows[:len(floors)]) / count
    full = rows[len(floors)]
    if "profile" in spec["methods"]:
        rows.append(_gradscope_profile(cell, params, xs, problem, budget))
    per_step = max(full["seconds"] / full["lags_done"] - per_svd, 1e-5)
    rows.append(_gradscope_norms(cell, params, xs, problem, budget, per_step))
    if "topk" in spec["methods"]:
        rows.append(_gradscope_topk(cell, params, xs, problem, budget))
    if "naive_jax" in spec["methods"]:
        rows.append(_naive_jax(cell, params, xs, problem, budget))
    return rows


# ---------------------------------------------------------------------------------------------
# PyTorch side: peers (a), (a') and (b), and the torch SVD floor
# ---------------------------------------------------------------------------------------------

def _torch_problem(problem: Problem):
    import torch
    from peers.torch_peers import make_step, unroll_states

    data = arrays(problem)
    step = make_step(problem.cell, data)
    xs = torch.from_numpy(data["xs"])
    return step, unroll_states(step, torch.from_numpy(data["h0"]), xs), xs


def torch_group(spec) -> list[dict]:
    """Peers (a), (a'), (b) and the torch SVD floor for one problem."""
    import torch
    from peers import torch_peers

    torch.set_num_threads(spec["threads"])
    problem, budget = Problem(**spec["problem"]), spec["budget"]
    step, states, xs = _torch_problem(problem)
    batch = np.load(spec["products_path"])
    rows = [_record("floor: batched SVD (torch)", torch_peers.svd_floor(batch), len(batch), problem.steps,
                    note="torch.linalg.svdvals of the same products, one batched call"),
            _record("floor: batched SVD (torch, 1 thread)", torch_peers.svd_floor(batch, threads=1), len(batch),
                    problem.steps, note="the same call with torch.set_num_threads(1)")]
    order = spread_order(range(1, problem.steps + 1))
    torch_peers.per_lag_autograd(step, states, xs, order[:1], budget)  # warm-up
    for vectorize in ([False, True] if "autograd_vectorized" in spec["methods"] else [False]):
        seconds, done, log_sv = torch_peers.per_lag_autograd(step, states, xs, order, budget, vectorize)
        name = "peer (a): torch autograd.functional.jacobian per lag" + (", vectorize=True" if vectorize else "")
        rows.append(_record(name, seconds, done, problem.steps, log_sv=log_sv))
    torch_peers.jacrev_cumulative(step, states, xs, 1, budget)  # warm-up
    seconds, done, log_sv = torch_peers.jacrev_cumulative(step, states, xs, problem.steps, budget)
    rows.append(_record("peer (b): torch.func.jacrev per step + cumulative product", seconds, done, problem.steps,
                        log_sv=log_sv))
    return rows


# ---------------------------------------------------------------------------------------------
# Sweeps (initializers x seeds) and the long horizon
# ---------------------------------------------------------------------------------------------

def sweep_jax_group(spec) -> list[dict]:
    """gradscope.compare and compare_grid over the grid, with the number of traces counted."""
    import gradscope
    from gradscope.analysis.sharding import compare_grid

    calls = [0]

    @dataclasses.dataclass(frozen=True)
    class CountingRNN(gradscope.VanillaRNN):
        def step(self, params, h, x):
            calls[0] += 1
            return super().step(params, h, x)

    problem, inits, seeds = Problem(**spec["problem"]), spec["initializers"], spec["seeds"]
    cell, configs = CountingRNN(problem.hidden), len(spec["initializers"]) * spec["seeds"]
    rows = []
    for name, run in [("gradscope: compare (vmap over seeds)",
                       lambda: gradscope.compare(cell, inits, seeds=seeds, num_steps=problem.steps, progress=False)),
                      ("gradscope: compare_grid (one sharded program)",
                       lambda: compare_grid(cell, inits, seeds=seeds, num_steps=problem.steps))]:
        before = calls[0]
        first, seconds, _ = _timed(lambda run=run: run().spectra.log_singular_values, spec["budget"])
        traces = (calls[0] - before) // 2  # the step is traced twice per program (unroll, sweep)
        rows.append(_record(name, seconds, configs, configs, first_call=first,
                            note=f"{traces} trace(s) for {configs} configurations, full spectra at every lag"))
    return rows


def sweep_torch_group(spec) -> list[dict]:
    """Peer (b) looped over the configurations (timed on as many as fit in the budget)."""
    import torch
    from peers import torch_peers

    torch.set_num_threads(spec["threads"])
    problem, budget = Problem(**spec["problem"]), spec["budget"]
    configs = len(spec["initializers"]) * spec["seeds"]
    step, states, xs = _torch_problem(problem)
    torch_peers.jacrev_cumulative(step, states, xs, 1, budget)
    start, done = time.perf_counter(), 0
    while done < configs and time.perf_counter() - start < budget:
        torch_peers.jacrev_cumulative(step, states, xs, problem.steps, float("inf"))
        done += 1
    return [_record("peer (b) in a Python loop over configurations", time.perf_counter() - start, done, configs,
                    note="one problem repeated (the cost does not depend on the initializer)")]


def long_group(spec) -> list[dict]:
    """Full spectra at log-spaced lags over a long horizon: time (first call) and peak memory."""
    import gradscope

    problem = Problem(**spec["problem"])
    cell, params, xs = _jax_problem(problem)
    start = time.perf_counter()
    out = gradscope.jacobian_spectra(cell, params, xs, lags="log")
    out.log_singular_values.block_until_ready()
    seconds = time.perf_counter() - start
    return [_record("gradscope: full spectra at log-spaced lags", seconds, problem.steps, problem.steps,
                    first_call=seconds, note=f"{len(out.lags)} log-spaced lags; time includes compilation")]


def latency_group(spec) -> list[dict]:
    """First call (tracing and compilation included) and a warm call of one analysis, in this fresh process.

    With ``spec["cache"]`` the persistent compilation cache is on in that folder: run twice, the
    second process measures a first call that loads its programs instead of compiling them.
    """
    import gradscope

    if spec.get("cache"):
        gradscope.enable_compilation_cache(spec["cache"])
    problem = Problem(**spec["problem"])
    cell, params, xs = _jax_problem(problem)
    first, warm, _ = _timed(lambda: gradscope.jacobian_spectra(cell, params, xs), 2.0)
    return [_record("first call", first, problem.steps, problem.steps, first_call=first),
            _record("warm call", warm, problem.steps, problem.steps)]


_JAX_EVENTS = {"compile": "/jax/core/compile/backend_compile_duration",  # loading, when the cache has the program
               "lower": "/jax/core/compile/jaxpr_to_mlir_module_duration",
               "trace": "/jax/core/compile/jaxpr_trace_duration"}


def cli_phases_group(spec) -> list[dict]:
    """One default ``gradscope compare`` run in this fresh process, its time split by phase.

    Imports as the console command does (collector off, then frozen); then times
    ``gradscope.compare`` (the analysis), ``build_report`` and ``write_report`` (the report),
    and sums JAX's own compile, lowering and tracing durations. ``spec["cache"]``: the
    compilation cache folder (a fresh one: cold; used before: warm).
    """
    start = time.perf_counter()
    from gradscope.__main__ import _long_lived_imports

    with _long_lived_imports():
        import gradscope.cli as cli
    imported = time.perf_counter()
    import jax.monitoring

    import gradscope
    from gradscope.display import report

    durations = {name: 0.0 for name in ("compare", "build_report", "write_report", *_JAX_EVENTS)}
    events = {event: name for name, event in _JAX_EVENTS.items()}

    def on_event(event, seconds, **_):
        if event in events:
            durations[events[event]] += seconds

    def timed(module, name):
        original = getattr(module, name)

        def run(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                durations[name] += time.perf_counter() - begin
        setattr(module, name, run)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    for module, name in ((gradscope, "compare"), (report, "build_report"), (report, "write_report")):
        timed(module, name)
    os.environ["GRADSCOPE_CACHE_DIR"] = spec["cache"]
    status = cli.main(["compare", "--quiet", "--force", "--out", spec["out"]])
    if status != 0:
        raise RuntimeError(f"gradscope compare exited with status {status}")
    return [{"imports": imported - start, "analysis": durations["compare"],
             "report": durations["build_report"] + durations["write_report"],
             "total": time.perf_counter() - start, **{name: durations[name] for name in _JAX_EVENTS}}]


GROUPS = {"latency": latency_group, "cli_phases": cli_phases_group, "jax": jax_group, "torch": torch_group, "sweep_jax": sweep_jax_group, "sweep_torch": sweep_torch_group,
          "long": long_group}


def main() -> None:
    """Run the group named in the JSON spec (argv[1]) and print its rows as JSON."""
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(json.dumps(GROUPS[spec["group"]](spec)))


if __name__ == "__main__":
    main()
