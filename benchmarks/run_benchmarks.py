"""Benchmark gradscope against its peers and the SVD floor, and write docs/benchmarks.md.

Usage::

    python benchmarks/run_benchmarks.py            # full run, about 20-30 minutes on 2 cores
    python benchmarks/run_benchmarks.py --quick    # a few small configurations, 1-2 minutes
    python benchmarks/run_benchmarks.py --json raw.json            # also keep the raw rows
    python benchmarks/run_benchmarks.py --from-json raw.json       # rewrite the page from them

Needs PyTorch (the ``bench`` extra: ``pip install -e ".[bench]"``). Every group of
measurements runs in its own process (JAX and PyTorch never share one), with
PyTorch and JAX both using all cores. Each measurement is capped (``--budget``
seconds): a method that would take longer is timed on part of the lags and its
time for all lags extrapolated linearly per lag; the table marks those rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from problems import Problem  # noqa: E402
from worker import SVD_PIPELINE  # noqa: E402

sys.path.insert(0, str(HERE.parent / "docs" / "scripts"))
from docnumbers import render  # noqa: E402  (the page's generated-number spans, filled from their stores)

SWEEP_INITIALIZERS = ["orthogonal", "glorot_normal", "he_normal", "lecun_normal", "identity", "normal"]
ALL_METHODS = ("one_program", "profile", "topk", "naive_jax", "autograd_vectorized")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures.

    Attributes:
        problems: (problem, methods) pairs for the per-configuration tables.
        sweep: the problem of the initializer x seed sweep and its seed count.
        long: the long-horizon problem (memory measurement).
        budget: seconds each measurement may take before it is extrapolated.
        latency: problems whose first-call latency is measured in fresh processes.
        cli_rounds: how many rounds of the default ``gradscope compare``, each with a fresh
            cache folder: one cold run, then :data:`WARM_RUNS` warm ones; 0 skips it.
    """

    problems: tuple
    sweep: tuple
    long: Problem
    budget: float
    latency: tuple = ()
    cli_rounds: int = 0


def full_plan(budget: float) -> Plan:
    """The configurations of the issue: tanh n in {64, 256, 1024} x T in {100, 1000}, LSTM, sweep, long."""
    everything, big = ALL_METHODS, ("topk",)
    problems = [(Problem("vanilla", 64, 100), everything), (Problem("vanilla", 64, 1000), everything),
                (Problem("vanilla", 128, 100), everything), (Problem("vanilla", 256, 100), everything),
                (Problem("vanilla", 256, 200), everything),
                (Problem("vanilla", 256, 1000), ("one_program", "profile", "topk", "naive_jax")),
                (Problem("lstm", 256, 200), ("one_program", "profile", "topk", "naive_jax")),
                (Problem("vanilla", 1024, 100), big), (Problem("vanilla", 1024, 1000), big)]
    latency = (Problem("vanilla", 64, 100), Problem("vanilla", 256, 200), Problem("lstm", 128, 100))
    return Plan(tuple(problems), (Problem("vanilla", 64, 100), 8), Problem("vanilla", 512, 10_000), budget,
                latency, cli_rounds=3)


def quick_plan(budget: float) -> Plan:
    """A few small configurations to validate the script (1-2 minutes)."""
    problems = [(Problem("vanilla", 32, 50), ALL_METHODS), (Problem("vanilla", 128, 100), ALL_METHODS),
                (Problem("lstm", 16, 50), ("profile", "topk"))]
    return Plan(tuple(problems), (Problem("vanilla", 16, 30), 8), Problem("vanilla", 128, 2_000), budget,
                (Problem("vanilla", 32, 50),), cli_rounds=1)


# ---------------------------------------------------------------------------------------------
# Running the workers
# ---------------------------------------------------------------------------------------------

def _run_worker(spec: dict, threads: int) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run([sys.executable, str(HERE / "worker.py"), json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {spec['group']} {spec.get('problem')}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(plan: Plan, threads: int, log) -> dict:
    """Run every group of the plan; returns ``{"problems": [...], "sweep": [...], "long": [...]}``."""
    results = {"problems": [], "sweep": [], "long": []}
    with tempfile.TemporaryDirectory() as tmp:
        for problem, methods in plan.problems:
            log(f"  {problem.label}")
            common = {"problem": dataclasses.asdict(problem), "budget": plan.budget, "threads": threads,
                      "methods": list(methods), "products_path": str(Path(tmp) / "products.npy")}
            rows = _run_worker({**common, "group": "jax"}, threads)
            rows += _run_worker({**common, "group": "torch"}, threads)
            results["problems"].append((problem, rows))
        problem, seeds = plan.sweep
        log(f"  sweep {len(SWEEP_INITIALIZERS)} initializers x {seeds} seeds, {problem.label}")
        common = {"problem": dataclasses.asdict(problem), "budget": plan.budget, "threads": threads,
                  "initializers": SWEEP_INITIALIZERS, "seeds": seeds}
        results["sweep"] = (problem, _run_worker({**common, "group": "sweep_jax"}, threads)
                            + _run_worker({**common, "group": "sweep_torch"}, threads))
        log(f"  long horizon: {plan.long.label}")
        results["long"] = (plan.long, _run_worker({"group": "long", "problem": dataclasses.asdict(plan.long)},
                                                  threads))
        results["latency"] = [measure_latency(problem, threads, Path(tmp), log) for problem in plan.latency]
        results["cli"] = measure_cli(plan.cli_rounds, Path(tmp), log)
        results["cli_phases"] = measure_cli_phases(plan.cli_rounds, Path(tmp), threads, log)
    results["measured"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return results


def measure_latency(problem: Problem, threads: int, tmp: Path, log) -> dict:
    """First-call latency of one shape in fresh processes: without the compilation cache, then twice
    with a fresh cache folder (the second process finds the programs the first compiled)."""
    log(f"  first-call latency: {problem.label}")
    spec = {"group": "latency", "problem": dataclasses.asdict(problem)}
    folder = tmp / f"cache-{problem.cell}-{problem.hidden}-{problem.steps}"
    no_cache = _run_worker(spec, threads)
    _run_worker({**spec, "cache": str(folder)}, threads)
    cached = _run_worker({**spec, "cache": str(folder)}, threads)
    return {"problem": dataclasses.asdict(problem), "first": no_cache[0]["seconds"],
            "first_cached": cached[0]["seconds"], "warm": no_cache[1]["seconds"]}


WARM_RUNS = 2
"""Warm runs after each cold one in :func:`measure_cli`."""


def measure_cli(rounds: int, tmp: Path, log) -> list[dict]:
    """Wall time of the README's ``gradscope compare`` (default configuration) in fresh processes.

    Each round starts a new cache folder: one cold run (it compiles and fills the folder),
    then :data:`WARM_RUNS` warm ones (they load the programs). Cold and warm runs alternate
    over the rounds, so both meet the same machine; one run with ``--no-cache`` ends it.
    """
    if rounds < 1:
        return []
    log(f"  gradscope compare: {rounds} rounds of a cold run and {WARM_RUNS} warm runs, then one without cache")
    timings = []
    for round_ in range(1, rounds + 1):
        for run in ("cold", *["warm"] * WARM_RUNS):
            timings.append({"run": run, "round": round_, "seconds": _time_compare(tmp / f"cli-cache-{round_}", tmp)})
    timings.append({"run": "no cache", "round": None, "seconds": _time_compare(tmp / "cli-cache-1", tmp, "--no-cache")})
    return timings


def _time_compare(cache: Path, tmp: Path, *extra: str) -> float:
    env = dict(os.environ, GRADSCOPE_CACHE_DIR=str(cache))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gradscope", "compare", "--quiet", "--force", "--out",
                    str(tmp / "cli-report"), *extra], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure_cli_phases(rounds: int, tmp: Path, threads: int, log) -> list[dict]:
    """Where one run's time goes: the default ``gradscope compare`` timed by phase inside its process,
    cold (a fresh cache folder) and then warm (the same folder), once when ``rounds`` >= 1."""
    if rounds < 1:
        return []
    log("  gradscope compare by phase: cold, then warm")
    spec = {"group": "cli_phases", "cache": str(tmp / "cli-phases-cache"), "out": str(tmp / "cli-phases-report")}
    return [{"run": run, **_run_worker(spec, threads)[0]} for run in ("cold", "warm")]


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

def machine_description(threads: int) -> list[str]:
    """Platform, CPU (lscpu), memory, core count and library versions."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")),
                     platform.processor() or "unknown")
    except OSError:
        model = platform.processor() or "unknown"
    try:
        mem_kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        memory = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    versions = ", ".join(f"{name} {_version(name)}" for name in ("jax", "jaxlib", "torch", "numpy"))
    return [f"- CPU: {model}, {os.cpu_count()} logical cores (nproc), {memory} memory",
            f"- OS: {platform.platform()}; Python {platform.python_version()}",
            f"- Libraries: {versions}",
            f"- Threads: JAX (XLA CPU) and PyTorch (`torch.set_num_threads({threads})`) both use all {threads} cores;"
            " each runs in its own process",
            "- GPU: none. No accelerator was lent to the task that produced this page, so there are no GPU rows."]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


PEER_A = "peer (a): torch autograd.functional.jacobian per lag"


def _find(rows, prefix, exact=False):
    return next((r for r in rows if (r["method"] == prefix if exact else r["method"].startswith(prefix))), None)


def _floor(rows):
    floors = [r for r in rows if r["method"].startswith("floor")]
    return min(floors, key=lambda r: r["estimated"]) if floors else None


def _check(row, ours) -> str:
    """Largest |log sigma_i - ours| over the top 8 at the lags both measured (resolved values only)."""
    if "log_sv" not in row or ours is None or row is ours:
        return ""
    errors, count = [], 0
    for lag, values in row["log_sv"].items():
        if lag not in ours["log_sv"]:
            continue
        mine, theirs = np.asarray(ours["log_sv"][lag]), np.asarray(values)
        keep = (mine > ours["log_floor"][lag] + 1.0) & np.isfinite(theirs)
        if keep.any():
            errors.append(np.max(np.abs(mine[keep] - theirs[keep])))
            count += 1
    return f"{max(errors):.1e} ({count} lags)" if errors else ""


def _seconds(value) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def _measured_on(row) -> str:
    if not row["extrapolated"]:
        return f"all {row['num_lags']}"
    return f"{row['lags_done']} of {row['num_lags']}, **extrapolated** x{row['num_lags'] / row['lags_done']:.1f}"


def problem_table(problem, rows) -> list[str]:
    """Markdown table of one configuration: time, coverage, ratios to gradscope full and to the floor."""
    ours, floor = _find(rows, "gradscope: full spectra, every lag"), _floor(rows)
    lines = [f"### {problem.label}", "",
             "| method | time (s) | lags measured | / gradscope full | / SVD floor | first call (s) | "
             "max abs log-sigma diff vs gradscope (top 8) |",
             "|---|---:|---|---:|---:|---:|---|"]
    for row in rows:
        time = row["estimated"]
        lines.append(f"| {row['method']} | {_seconds(time)} | {_measured_on(row)} | "
                     f"{time / ours['estimated']:.2f} | {time / floor['estimated']:.2f} | "
                     f"{_seconds(row['first_call']) if row['first_call'] else ''} | {_check(row, ours)} |")
    notes = [f"- {r['method']}: {r['note']}" for r in rows if r["note"]]
    return lines + [""] + notes + [""]


def sweep_section(problem, rows) -> list[str]:
    """The initializer x seed sweep."""
    lines = [f"### Sweep: {len(SWEEP_INITIALIZERS)} initializers x 8 seeds, {problem.label}", "",
             "| method | time (s) | configurations measured | first call (s) | note |", "|---|---:|---|---:|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | {_seconds(row['estimated'])} | "
                     f"{_measured_on(row).replace('lags', 'configs')} | "
                     f"{_seconds(row['first_call']) if row['first_call'] else ''} | {row['note']} |")
    return lines + [""]


def long_section(problem, rows) -> list[str]:
    """Long horizon: time and peak resident memory of the whole process."""
    row = rows[0]
    return [f"### Long horizon: {problem.label}", "",
            f"- {row['method']}: {_seconds(row['seconds'])} s ({row['note']})",
            f"- Peak resident memory of the whole process (`getrusage` ru_maxrss, Python + JAX included): "
            f"**{row['peak_rss_mb']:,.0f} MB**. The unrolled states take T x n x 4 bytes = "
            f"{problem.steps * problem.state_size * 4 / 2**20:.0f} MB; the carried product n^2 x 4 bytes = "
            f"{problem.state_size ** 2 * 4 / 2**20:.1f} MB; the output lags x n floats.", ""]


def _result(results, cell, hidden, steps):
    return next((rows for p, rows in results["problems"] if (p.cell, p.hidden, p.steps) == (cell, hidden, steps)),
                None)


def targets_section(results) -> list[str]:
    """Each target of the issue, with where this run stands."""
    lines = ["## Targets", "", "| target | measured here | status |", "|---|---|---|"]

    def ratio_line(label, rows, slow_name, fast_prefix, need):
        slow = None if rows is None else _find(rows, slow_name, exact=slow_name == PEER_A)
        fast = None if rows is None else _find(rows, fast_prefix)
        if slow is None or fast is None:
            return f"| {label} | not in this run (configuration not measured) | n/a |"
        value = slow["estimated"] / fast["estimated"]
        return f"| {label} | {value:.1f}x | {'met' if value >= need else '**not met**'} |"

    rows_128 = _result(results, "vanilla", 128, 100)
    lines.append(ratio_line("full spectra >= 100x faster than peer (a), tanh n=128 T=100", rows_128, PEER_A,
                            "gradscope: full", 100))
    lines.append(ratio_line("full spectra no slower than peer (b), tanh n=128 T=100", rows_128,
                            "peer (b)", "gradscope: full", 1.0))
    lines.append(_floor_target_line(_result(results, "vanilla", 256, 200), "tanh n=256 T=200", 0.8))
    for cell, hidden, steps in (("lstm", 256, 200), ("vanilla", 1024, 100), ("vanilla", 1024, 1000)):
        lines.append(_floor_target_line(_result(results, cell, hidden, steps),
                                        f"{'LSTM hidden' if cell == 'lstm' else 'tanh n'}={hidden} T={steps}", None))
    lines.append(ratio_line("profile mode >= 10x faster than peer (b), tanh n=256 T=1000",
                            _result(results, "vanilla", 256, 1000), "peer (b)", "gradscope: profile", 10))
    sweep = results["sweep"][1][0]
    traces = sweep["note"].split(" ")[0]
    lines.append(f"| a 6 x 8 sweep compiles once and runs batched | {sweep['note']} | "
                 f"{'met' if traces == '1' else '**not met**'} |")
    long_problem, long_rows = results["long"]
    rss = long_rows[0]["peak_rss_mb"]
    lines.append(f"| T={long_problem.steps:,}, n={long_problem.state_size} with log-spaced lags in a few GB | "
                 f"{rss:,.0f} MB peak RSS | {'met' if rss < 4096 else '**not met**'} |")
    lines.append(_cli_target_line(results.get("cli", [])))
    return lines + [""] + _floor_breakdown(_result(results, "vanilla", 256, 200))


def _floor_breakdown(rows) -> list[str]:
    """What separates full spectra from the SVD floor at tanh n=256, T=200, and what the default does about it."""
    if rows is None:
        return []
    floor = _floor(rows)["estimated"]
    ours, svd, norms = (_find(rows, name)["estimated"] / floor for name in (
        "gradscope: full", SVD_PIPELINE, "gradscope: norms-only"))
    return [f"**Full spectra and the floor, tanh n=256 T=200.** The products alone (every lag's n x n matrix "
            f"product, no SVD: norms-only mode) took {norms:.2f}x the floor in this run, before any singular value. "
            f"With one LAPACK call per product the whole analysis took {svd:.2f}x the floor; with the default, "
            f"warm-started Rayleigh-Ritz ([how it works](concepts.md#below-the-svd-floor)), {ours:.2f}x. The default "
            "makes plain singular-value calls only where many values are resolved (the first lags), refines a basis "
            "carried from the previous lag by one step of subspace iteration elsewhere, and starts a basis from "
            "divide and conquer with a values-only call for the values. Those plain calls go through JAX, which lets "
            "go of Python's GIL while LAPACK runs (SciPy's wrapper of the same routine keeps it, and the pipeline's "
            "threads took turns: that cost the default 11-14%). Tried and not kept, because they changed "
            "nothing beyond this machine's noise: more or fewer pipeline chunks, and a narrower basis (fewer vectors "
            "below the resolution floor).", ""]


def _floor_target_line(rows, label: str, need: float | None) -> str:
    """Full spectra against the best SVD floor of the same run (a target when ``need`` is given)."""
    prefix = f"| full spectra {'at most ' + format(need, 'g') + 'x' if need else 'against'} the best SVD floor, {label} |"
    if rows is None:
        return f"{prefix} not in this run | n/a |"
    ours, floor = _find(rows, "gradscope: full"), _floor(rows)
    value = ours["estimated"] / floor["estimated"]
    svd = _find(rows, SVD_PIPELINE)
    versus = "" if svd is None else f" (one LAPACK call per product: {svd['estimated'] / floor['estimated']:.2f}x)"
    status = "reported" if need is None else ("met" if value <= need else "**not met**")
    return f"{prefix} {value:.2f}x ({_seconds(ours['estimated'])} s against {_seconds(floor['estimated'])} s){versus} | {status} |"


def _cli_target_line(runs: list) -> str:
    """A second identical ``gradscope compare`` against the first (target: at most half), medians over the rounds."""
    cold = [r["seconds"] for r in runs if r["run"] == "cold"]
    warm = [r["seconds"] for r in runs if r["run"] == "warm"]
    if not cold or not warm:
        return "| a second identical `gradscope compare` at most 0.5x the first | not in this run | n/a |"
    value = statistics.median(warm) / statistics.median(cold)
    return (f"| a second identical `gradscope compare` at most 0.5x the first | {value:.2f}x (medians: "
            f"{_seconds(statistics.median(warm))} s warm, {len(warm)} runs, against {_seconds(statistics.median(cold))} "
            f"s cold, {len(cold)} runs) | {'met' if value <= 0.5 else '**not met**'} |")


def latency_section(results) -> list[str]:
    """First-call latency per shape and the CLI's cold and warm runs."""
    lines = ["## First calls and the compilation cache", "",
             "Each first call runs in a fresh process (the time includes tracing and compilation). With the "
             "persistent compilation cache (`gradscope.enable_compilation_cache()`, on by default for the "
             "command), a later process loads the compiled programs: its first call is the *cached* column.", "",
             "| configuration | first call (s) | first call, cache warm (s) | warm call (s) |", "|---|---:|---:|---:|"]
    for row in results.get("latency", []):
        label = Problem(**row["problem"]).label
        lines.append(f"| {label} | {_seconds(row['first'])} | {_seconds(row['first_cached'])} | "
                     f"{_seconds(row['warm'])} |")
    runs = results.get("cli", [])
    if runs:
        lines += ["", "`gradscope compare` with its defaults (the README's main job), whole process "
                  "(interpreter start, imports, analysis, report with figures). Each round starts a new cache "
                  f"folder: a cold run fills it, then {WARM_RUNS} warm runs load from it:", "",
                  "| round | run | wall time (s) |", "|---:|---|---:|"]
        lines += [f"| {r.get('round') or ''} | {r['run']} | {_seconds(r['seconds'])} |" for r in runs]
    return lines + [""] + _cli_phase_lines(results.get("cli_phases", []))


def _cli_phase_lines(phases: list) -> list[str]:
    """Where the time of a cold and a warm run goes (measured inside the process)."""
    if not phases:
        return []
    lines = ["Where the time goes: the same command run inside one process each (without interpreter start and "
             "exit), cold with a fresh cache folder, then warm. *Compiling* is XLA's compiler in the cold run "
             "and loading the compiled programs from the cache in the warm one. JAX's cache is keyed by the "
             "lowered program, so JAX traces and lowers every program in the cold run; the warm run reads "
             "gradscope's stored programs (the inputs, the spectra and their summary) already lowered and traces "
             "only the rest (JAX's times fall within the analysis and the report's tables). The helper process "
             "saves about half of the figures meanwhile (see [the command](cli.md)).", "",
             "| run | total (s) | imports (s) | analysis (s) | report: tables, figures, files (s) | "
             "JAX compiling (s) | JAX tracing and lowering (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in phases:
        lines.append(f"| {row['run']} | {_seconds(row['total'])} | {_seconds(row['imports'])} | "
                     f"{_seconds(row['analysis'])} | {_seconds(row['report'])} | {_seconds(row['compile'])} | "
                     f"{_seconds(row['trace'] + row['lower'])} |")
    return lines + [""]


def monitor_section() -> list[str]:
    """The training monitor's overhead, as benchmarks/monitor_overhead.py (run on its own) stored it."""
    return ["## Training monitor overhead", "",
            "`benchmarks/monitor_overhead.py` (run on its own) trains Flax NNX models on the adding problem "
            "with optax, alternately without and with a `gradscope.Monitor` checking every 100 steps; see "
            "[Whole models and training runs](monitor.md#what-it-costs). Measured with "
            "<!--gen:monitor_overhead.overhead_setup-->(run benchmarks/monitor_overhead.py)<!--/gen-->.", "",
            "<!--gen:monitor_overhead.overhead_table-->", "(run benchmarks/monitor_overhead.py)", "<!--/gen-->", ""]


SCALING_NOTES = [
    "## Scaling out", "",
    "- **Several devices**: `gradscope.sharding.compare_grid(cell, initializers, seeds=..., gains=...)` "
    "flattens initializers x gains x seeds into one axis, shards it over every device with "
    "`NamedSharding(Mesh(devices, ('config',)), PartitionSpec('config'))` and runs one compiled program; "
    "the same call runs on one CPU, several GPUs or a TPU slice (tested on CPU with "
    "`XLA_FLAGS=--xla_force_host_platform_device_count=4`: results equal the single-device run).",
    "- **Several hosts**: call `jax.distributed.initialize()` in every process first (coordinator "
    "address, process count and id; found automatically on Cloud TPU and SLURM), then run the same "
    "`compare_grid` call everywhere: `jax.devices()` lists every host's devices, each process feeds its "
    "own shards and every process gets the full result.",
    "- **Large n**: `gradscope.profile.top_singular_values` carries k + oversample vectors instead of the "
    "n x n product (memory O(k n) per kept lag); `norm_profile` gives sigma_max and the RMS singular value "
    "per lag without any SVD.",
    "- **All lags on a CPU**: `jacobian_spectra` runs the sweep in compiled chunks and takes each chunk's "
    "SVDs on one host thread per core while the next chunk forms (`gradscope.pipeline`); `chunk=` sets the "
    "lags per chunk (memory: three chunks of n x n products).",
    "- **All lags on an accelerator**: `jacobian_spectra(..., pipelined=False, chunk=64)` stores the products "
    "of 64 consecutive lags and decomposes them in one batched SVD inside the sweep (same results as one SVD "
    "per lag).", ""]


def write_report(results, path: Path, quick: bool, threads: int, budget: float) -> None:
    """Assemble docs/benchmarks.md."""
    header = ["# Benchmarks", ""]
    if quick:
        header += ["!!! warning \"Quick validation run\"",
                   "    These numbers come from `run_benchmarks.py --quick`: small configurations, short",
                   "    per-measurement caps, and a machine shared with other jobs. They validate the script;",
                   "    they are not the benchmark. Run `python benchmarks/run_benchmarks.py` for the full table.",
                   ""]
    command = f"python benchmarks/run_benchmarks.py{' --quick' if quick else ''}"
    header += [f"Generated by `{command}`, measured on {results['measured']}.", "",
               "## Machine", "", *machine_description(threads), "", "## What is measured", "",
               "- **Work**: every singular value of every backward product dh_T/dh_(T-k), k = 1..T, float32, "
               "unless a row says otherwise. gradscope and floor rows are the steady-state time of a compiled "
               "call, the fastest of up to 7 repeats that fit in half the cap (the first call, with "
               "compilation, is its own column); peers run as written. The JAX floor rows and gradscope's "
               "full-spectra rows are timed in rounds, each once per round in turn, so that a busy moment of "
               "the machine slows them alike and their ratio compares like with like.",
               "- **Peers**: (a) `torch.autograd.functional.jacobian` of the unrolled map per lag, then "
               "`torch.linalg.svdvals` (the default `vectorize=False`, and `vectorize=True` where listed); "
               "(b) `torch.func.jacrev` of one step at every t, a reverse cumulative product (renormalised, as "
               "gradscope does) and `svdvals` per lag; (c) naive JAX, `jax.jit(jax.jacrev(...))` of the unrolled "
               "map per lag (one compilation per lag, included).",
               "- **SVD floor**: the singular values alone of the same number of the *actual* (normalised) "
               "product matrices, taken four ways: one batched call in JAX and in PyTorch, each with its "
               "library's threads as installed and single-threaded, and in JAX on one host thread per core "
               "(one matrix per call). The fastest of the five rows is the floor any all-lag full-spectrum "
               "method must pay. On CPU, jaxlib's LAPACK kernels (which gradscope's `jnp.linalg.svd` runs) call "
               "SciPy's LAPACK, an OpenBLAS build, while the PyTorch CPU wheel calls Intel MKL. gradscope holds "
               "OpenBLAS at one thread while it runs (`gradscope/_lapack.py`): the SVD's bidiagonalisation is "
               "memory-bound and OpenBLAS's threads slow it down. jaxlib 0.10 spreads one batched call over "
               "XLA's thread pool only when the call starts outside that pool, which some calls do and others "
               "do not, so the batched floors vary more between runs than the rest. The *reference* row takes "
               "the same SVDs one per call inside one compiled loop (`lax.map`), on one core: what a sweep that "
               "keeps its SVDs inside one compiled program (`pipelined=False`) pays.",
               f"- **Caps**: each measurement gets about {budget:g} s. A method that would take longer is timed "
               "on a subset of the lags and its total extrapolated linearly per lag, marked **extrapolated** "
               "in the table. Cumulative methods (gradscope, peer b) are timed on lags 1..L; per-lag methods "
               "(peers a and c, whose cost grows with the lag) on a golden-ratio subset spread over 1..T, so "
               "the mean per lag is unbiased.",
               "- **Check**: the largest difference in log singular value between each method and gradscope's "
               "full spectra, over the top 8 values at the lags both computed (values gradscope resolves only). "
               "Differences up to about 1/n come from rounding near the resolution floor. A large difference "
               "is the peer losing the product to float32's range: peers (a) and (c) form the raw product, "
               "whose entries at long lags fall below float32's smallest normal number (about e^-87, "
               "reached near lag 200 for the tanh RNNs here). XLA on CPU flushes such subnormal numbers to "
               "zero, so peer (c)'s largest singular values drift and then vanish (log = -inf); PyTorch "
               "keeps them, which carries peer (a) to about e^-103 but not to T = 1000. gradscope keeps "
               "each product as exp(s) Q with ||Q|| = 1, and peer (b) renormalises in the same way.",
               "- **Profile / norms-only / top-k** rows do less work than full spectra (see their notes); their "
               "ratios show what that buys.", ""]
    body = ["## Results", ""]
    for problem, rows in results["problems"]:
        body += problem_table(problem, rows)
    body += sweep_section(*results["sweep"]) + long_section(*results["long"]) + latency_section(results)
    body += monitor_section() + SCALING_NOTES
    path.write_text(render("\n".join(header + targets_section(results) + body))[0])


def main(argv=None) -> None:
    """Parse arguments, run the plan, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few small configurations (1-2 minutes)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per measurement before extrapolating (default 25, quick 2)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=None, help="also save the raw rows here")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="write the report from raw rows saved by --json instead of measuring")
    args = parser.parse_args(argv)
    budget = args.budget or (2.0 if args.quick else 25.0)
    threads = os.cpu_count() or 1
    if args.from_json:
        results = load_results(args.from_json)
    else:
        plan = quick_plan(budget) if args.quick else full_plan(budget)
        print(f"gradscope benchmarks ({'quick' if args.quick else 'full'}), {threads} threads, budget {budget:g} s")
        results = measure(plan, threads, print)
    if args.json:
        args.json.write_text(json.dumps(raw_results(results), indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(results, args.out, args.quick, threads, budget)
    print(f"wrote {args.out}")


def raw_results(results: dict) -> dict:
    """:func:`measure`'s results as plain JSON data (problems as dicts)."""
    return {"problems": [(dataclasses.asdict(problem), rows) for problem, rows in results["problems"]],
            **{key: (dataclasses.asdict(results[key][0]), results[key][1]) for key in ("sweep", "long")},
            "latency": results.get("latency", []), "cli": results.get("cli", []),
            "cli_phases": results.get("cli_phases", []), "measured": results["measured"]}


def load_results(path: Path) -> dict:
    """The results :func:`measure` returned, from the raw rows ``--json`` saved (:func:`raw_results`)."""
    raw = json.loads(path.read_text())
    return {"problems": [(Problem(**problem), rows) for problem, rows in raw["problems"]],
            **{key: (Problem(**raw[key][0]), raw[key][1]) for key in ("sweep", "long")},
            "latency": raw.get("latency", []), "cli": raw.get("cli", []), "cli_phases": raw.get("cli_phases", []),
            "measured": raw.get("measured", "an unrecorded time")}


if __name__ == "__main__":
    main()
