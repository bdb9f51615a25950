"""Modern recurrences and the curse of memory: every number of docs/modern.md.

Run from the repository root:

    python docs/scripts/make_modern_numbers.py [circle fast_path horizons chrono memory lineup lru_split]

(all sections by default, several minutes of CPU time; the lineup is the longest). Each
section stores its values in ``docs/data/modern.json`` and the page spans are rewritten
from it. Seeds are fixed. ``quick_numbers()`` recomputes the exact and closed-form values
and the small Monte Carlo check in seconds (``tests/test_docs_numbers.py`` runs it).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gradscope  # noqa: E402
from docnumbers import Numbers, publish  # noqa: E402
from gradscope.theory.memory import linear_memory, lru_memory  # noqa: E402

STORE = "modern"
KEY = jax.random.key(0)
LAMBDAS = (0.9, 0.99, 0.999)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _g(value, digits=4) -> str:
    """Short text of a number: 4 significant digits, exponents as e5 / e-3."""
    return f"{float(value):.{digits}g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _below(error: float, bound: float = 1e-12) -> str:
    """``< bound`` (stable across machines) unless the error is larger."""
    return f"< {bound:.0e}" if error < bound else f"{error:.1e}"


# ----------------------------------------------------------------------------- exact results


def circle() -> dict:
    """LRU with r_min = r_max = r: every log singular value at lag k is k log r (both engines)."""
    r, steps = 0.9, 200
    cell = gradscope.LRU(8, 2, r_min=r, r_max=r)
    with jax.enable_x64(True):
        params = cell.init(KEY, dtype=jnp.float64)
        xs = jax.random.normal(jax.random.key(1), (steps, 2), jnp.float64)
        k = np.arange(1, steps + 1)[:, None]
        errors = [np.abs(np.asarray(gradscope.jacobian_spectra(cell, params, xs, diagonal=d).log_singular_values)
                         - k * np.log(r)).max() for d in (True, False)]
    return {"circle_fast_error": _below(errors[0]), "circle_general_error": _below(errors[1])}


def closed_forms() -> dict:
    """The stationary closed forms of the scalar recurrence at several lambda."""
    out = {}
    for lam in LAMBDAS + (0.9999,):
        name = str(lam).replace("0.", "")
        plain = linear_memory(lam)
        normalized = linear_memory(lam, normalized=True)
        both = linear_memory(lam, normalized=True, parametrization="exponential")
        out[f"cf_state_{name}"] = _g(plain.state_variance)
        out[f"cf_plain_{name}"] = _g(plain.sensitivity)
        out[f"cf_norm_{name}"] = _g(normalized.sensitivity)
        out[f"cf_both_{name}"] = _g(both.sensitivity)
    return out


def _monte_carlo(lam, steps, samples, normalized, parametrization, seed=0):
    """Sample mean and standard error of (dh_T/dp)^2 and h_T^2 by gradscope.memory_sensitivity."""
    gamma = float(np.sqrt(1 - lam**2)) if normalized else 1.0
    if parametrization == "direct":
        params, step = {"p": lam}, lambda p, h, x: p["p"] * h + gamma * x[0]
    else:
        params = {"p": float(np.log(-np.log(lam)))}
        step = lambda p, h, x: jnp.exp(-jnp.exp(p["p"])) * h + gamma * x[0]  # noqa: E731
    with jax.enable_x64(True):
        xs = jax.random.normal(jax.random.key(seed), (samples, steps, 1), jnp.float64)
        result = gradscope.memory_sensitivity(step, jax.tree_util.tree_map(jnp.float64, params), xs,
                                              h0=jnp.float64(0.0), select=lambda p: p["p"], batch_axes=1,
                                              lags=(steps,))
    draws, states = np.exp(np.asarray(result.log_total)), np.exp(np.asarray(result.log_state_norm))
    return draws.mean(), draws.std() / np.sqrt(samples), states.mean(), states.std() / np.sqrt(samples)


def quick_monte_carlo() -> dict:
    """lambda = 0.9, T = 120, 3000 sequences: the Monte Carlo check of (1 + l^2)/(1 - l^2)^3."""
    mean, error, state, state_error = _monte_carlo(0.9, 120, 3000, False, "direct")
    theory = linear_memory(0.9, 120)
    return {"mc09_mean": f"{mean:.1f}", "mc09_se": f"{error:.1f}", "mc09_theory": f"{float(theory.sensitivity):.1f}",
            "mc09_limit": f"{float(linear_memory(0.9).sensitivity):.1f}", "mc09_state": f"{state:.3f}",
            "mc09_state_theory": f"{float(theory.state_variance):.3f}"}


def quick_numbers():
    """The values recomputed by tests/test_docs_numbers.py (seconds)."""
    return STORE, {**circle(), **closed_forms(), **quick_monte_carlo()}


# ----------------------------------------------------------------------------- measurements


def fast_path() -> dict:
    """Every lag of T = 200,000 at hidden 256 (minGRU: n = 256; LRU: 256 complex units, n = 512)."""
    out = {}
    for name, cell, options in [("mingru", gradscope.MinGRU(256), {"recurrent_init": ("chrono", {"t_max": 100.0})}),
                                ("lru", gradscope.LRU(256, r_min=0.9, r_max=0.999), {})]:
        params, xs = cell.init(KEY, **options), jax.random.normal(jax.random.key(1), (200_000, 1))
        gradscope.jacobian_spectra(cell, params, xs[:1000]).log_singular_values.block_until_ready()
        cpu, wall = _cpu(), time.perf_counter()
        result = gradscope.jacobian_spectra(cell, params, xs)  # compiles for T = 200,000, then runs
        values = np.asarray(result.log_singular_values)
        first_cpu, first_wall = _cpu() - cpu, time.perf_counter() - wall
        cpu, wall = _cpu(), time.perf_counter()
        np.asarray(gradscope.jacobian_spectra(cell, params, xs).log_singular_values)
        out[f"{name}_cpu"], out[f"{name}_wall"] = f"{_cpu() - cpu:.1f}", f"{time.perf_counter() - wall:.1f}"
        out[f"{name}_first_wall"] = f"{first_wall:.1f}"
        out[f"{name}_shape"] = f"{values.shape[0]:,} x {values.shape[1]}"
        assert np.isfinite(values).all()
        print(name, values.shape, "first", first_cpu, first_wall, "warm", out[f"{name}_cpu"], out[f"{name}_wall"])
    small = gradscope.MinGRU(32)
    params, xs = small.init(KEY, recurrent_init=("chrono", {"t_max": 100.0})), jax.random.normal(KEY, (500, 1))
    fast = gradscope.jacobian_spectra(small, params, xs)
    general = gradscope.jacobian_spectra(small, params, xs, diagonal=False)
    out["fast_vs_general"] = f"{np.abs(np.asarray(fast.log_singular_values - general.log_singular_values)).max():.0e}"
    return out


def _horizon_row(cell, spec, steps, seeds=4, **options):
    comparison = gradscope.compare(cell, [spec], seeds=seeds, num_steps=steps, progress=False, **options)
    return comparison.to_dataframe(per_seed=True)["horizon"].to_numpy()


def horizons() -> dict:
    """The LRU's horizon against log(threshold) / log(r_max) (threshold 1e-2), r_min = 0.5, 32 units, 4 seeds."""
    out, rows = {}, []
    for r_max in LAMBDAS:
        cell, spec = gradscope.LRU(32, r_min=0.5, r_max=r_max), ("ring", {"r_min": 0.5, "r_max": r_max})
        measured = _horizon_row(cell, spec, 20_000)
        largest = [float(np.abs(cell.eigenvalues(cell.init(jax.random.key(s), recurrent_init=spec))).max())
                   for s in range(4)]
        exact = np.log(1e-2) / np.log(largest)
        rows.append(f"| {r_max} | {np.log(1e-2) / np.log(r_max):.1f} | {np.median(exact):.1f} "
                    f"| {np.median(measured):.1f} | {np.abs(measured - exact).max():.1e} |")
    out["lru_horizons"] = "\n".join(["| r_max | log(0.01)/log(r_max) | log(0.01)/log(max abs(lambda)), median "
                                     "| measured horizon, median | largest difference, measured vs max abs(lambda) |",
                                     "|---|---|---|---|---|", *rows])
    return out


def chrono() -> dict:
    """Horizons of chrono-initialized LSTM / GRU / minGRU / minLSTM against t_max (n = 64, T = 10 t_max, 4 seeds)."""
    rows = []
    for t_max in (10.0, 100.0, 1000.0):
        chrono_spec = ("chrono", {"t_max": t_max})
        steps = int(10 * t_max)
        cells = [("LSTM (32 units, state 64)", gradscope.LSTM(32), "orthogonal", {"bias_init": chrono_spec}),
                 ("GRU (64)", gradscope.GRU(64), "orthogonal", {"bias_init": chrono_spec}),
                 ("minGRU (64)", gradscope.MinGRU(64), chrono_spec, {}),
                 ("minLSTM (64)", gradscope.MinLSTM(64), chrono_spec, {})]
        values = []
        for label, cell, spec, options in cells:
            horizon = np.median(_horizon_row(cell, spec, steps, lags="log", num_log_lags=64, **options))
            values.append(f"{horizon:.0f} ({horizon / t_max:.2f})")
            print("chrono", t_max, label, horizon)
        rows.append(f"| {t_max:g} | " + " | ".join(values) + " |")
    header = "| t_max | " + " | ".join(label for label, *_ in cells) + " |"
    return {"chrono_horizons": "\n".join([header, "|---" * (len(cells) + 1) + "|", *rows])}


def memory() -> dict:
    """Monte Carlo against the closed forms: three parametrizations at three lambda, and an LRU."""
    rows = []
    for lam in LAMBDAS:
        steps = 4000 if lam > 0.99 else 1000
        for label, normalized, parametrization in [("plain, d/d lambda", False, "direct"),
                                                   ("gamma-normalized, d/d lambda", True, "direct"),
                                                   ("gamma-normalized, d/d nu (lambda = exp(-exp nu))", True,
                                                    "exponential")]:
            mean, error, state, _ = _monte_carlo(lam, steps, 1000, normalized, parametrization, seed=1)
            theory = linear_memory(lam, steps, normalized=normalized, parametrization=parametrization)
            rows.append(f"| {lam} | {label} | {_g(theory.state_variance)} | {_g(state)} | {_g(theory.sensitivity)} "
                        f"| {_g(mean)} ± {_g(error, 2)} |")
            print("memory", lam, label, float(theory.sensitivity), mean, error)
    table = ["| lambda | parametrization | E h_T^2, theory | E h_T^2, Monte Carlo | E (dh_T/dp)^2, theory "
             "| E (dh_T/dp)^2, Monte Carlo ± s.e. |", "|---|---|---|---|---|---|", *rows]
    cell = gradscope.LRU(6, 2, r_min=0.95, r_max=0.95, max_phase=0.5)
    with jax.enable_x64(True):
        params = cell.init(KEY, dtype=jnp.float64)
        xs = jax.random.normal(jax.random.key(2), (2000, 200, 2), jnp.float64)
        result = gradscope.memory_sensitivity(cell, params, xs, lags=(200,))
    draws = np.exp(np.asarray(result.log_total))
    theory = lru_memory(params, 200)
    return {"memory_table": "\n".join(table), "lru_mc_mean": _g(draws.mean()),
            "lru_mc_se": _g(draws.std() / np.sqrt(draws.size), 2), "lru_theory": _g(theory.sensitivity)}


def lineup() -> dict:
    """gradscope.default_lineup at state size 64, T = 1000, 4 seeds."""
    comparison = gradscope.compare_cells(gradscope.default_lineup(64, 100.0), seeds=4, num_steps=1000, lags="log",
                                         progress=False)
    table = comparison.to_dataframe()
    rows = ["| cell, initialization | rate (nats/step) | horizon | verdict | E ‖∂h_T/∂θ‖² | relative to E ‖h_T‖² |",
            "|---|---|---|---|---|---|"]
    for row in table.itertuples():
        horizon = "beyond T" if not np.isfinite(row.horizon) else f"{row.horizon:.0f}"
        rows.append(f"| {row.init} | {row.rate:+.4f} | {horizon} | {row.verdict} | {_g(row.sensitivity, 3)} "
                    f"| {_g(row.relative_sensitivity, 3)} |")
    return {"lineup": "\n".join(rows), **_lru_split()}


def _lru_split() -> dict:
    """The lineup's LRU (32 units, ring [0.9, 0.999], T = 1000): sensitivity to nu alone and to theta alone."""
    cell, out = gradscope.LRU(32, r_min=0.9, r_max=0.999), {}
    xs = jax.random.normal(jax.random.key(1), (16, 1000, 1))
    for name, select in [("nu", lambda p: p.nu_log), ("theta", lambda p: p.theta_log)]:
        values = [np.exp(gradscope.memory_sensitivity(cell, cell.init(jax.random.key(s)), xs, select=select,
                                                      lags=(1000,)).log_expected()[-1]) for s in range(4)]
        out[f"lru_split_{name}"] = _g(np.mean(values), 3)
    return out


SECTIONS = {"circle": lambda: {**circle(), **closed_forms(), **quick_monte_carlo()}, "fast_path": fast_path,
            "horizons": horizons, "chrono": chrono, "memory": memory, "lineup": lineup, "lru_split": _lru_split}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown sections {unknown}; choose among {list(SECTIONS)}")
    for section in chosen:
        numbers = Numbers(STORE)
        start = time.perf_counter()
        for name, text in SECTIONS[section]().items():
            numbers[name] = text
        print(f"{section}: {len(numbers)} values in {time.perf_counter() - start:.0f} s")
        publish(numbers)
