"""The penalty arm and the trainability predictor of docs/training.md, and the penalty's cost on docs/penalties.md.

Run from the repository root (about ten minutes on 2 CPU cores):

    python docs/scripts/make_penalty_experiments.py
    python docs/scripts/make_penalty_experiments.py --from-csv   # only the texts, from docs/data/penalty_runs.csv

1. **Plain runs**: a 32-unit tanh RNN on the adding problem, eight recurrent initializers,
   lags 5, 10, 15, 20 and 30, four seeds, 1500 Adam steps at 3e-3, batch 32.
   Every run's candidate predictors are measured at initialization, on the task's first
   evaluation sequence (before any training step).
2. **Penalty arm**: the same runs (same initial parameters and batches) at lags 20 and 30
   with ``Penalty(lags=(lag // 2, lag), kind="rate", weight=1.0)`` added to every step
   (and weights 0.1 and 10 at lag 20), and the copy task at lags 15 and 25 (six initializers, three seeds) with and without it.
3. **Predictor**: each candidate is a band rule "learns iff lo <= value <= hi" (alone, or
   together with a band on the task lag) fitted (the band with the highest accuracy) on
   seeds 0 and 1 at lags 5, 10 and 20; the rule with the best fitted accuracy is evaluated
   on the held-out runs (seeds 2 and 3 at every lag, and every seed at the held-out lags
   15 and 30), with a Wilson 95 % interval.

The per-run table is written to ``docs/data/penalty_runs.csv``; ``quick_numbers()`` refits
the predictor from it in well under a second, so the page cannot drift from the analysis.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docnumbers import DATA, Numbers, publish  # noqa: E402

RUNS_CSV = DATA / "penalty_runs.csv"
STORE = "penalty"
SUCCESS_RATIO = 0.2
TRAIN_SEEDS, TRAIN_LAGS = (0, 1), (5, 10, 20)
WEIGHTS = (0.1, 10.0)  # the other penalty weights tried at adding lag 20 (the main arm uses 1.0)
INITIALIZERS = {
    "orthogonal": "orthogonal",
    "orthogonal, gain 0.5": ("orthogonal", {"gain": 0.5}),
    "orthogonal, gain 0.8": ("orthogonal", {"gain": 0.8}),
    "orthogonal, gain 1.25": ("orthogonal", {"gain": 1.25}),
    "glorot_normal": "glorot_normal",
    "he_normal": "he_normal",
    "identity": "identity",
    "normal (stddev 1)": "normal",
}
CANDIDATES = {  # column -> what the page calls it
    "lag": "the task lag alone",
    "log_rms_at_lag": "log RMS singular value at k = lag",
    "log_sigma_max_at_lag": "log σ_max at k = lag",
    "rms_horizon_over_lag": "horizon of the RMS / lag",
    "horizon_over_lag": "horizon of σ_max / lag",
    "rms_rate": "rate of the RMS (per step)",
    "rate": "rate of σ_max (per step)",
    "spread_at_lag": "spread of the log singular values at k = lag",
    "meanfield_rate": "mean-field ½ log χ₁ (per step)",
    "meanfield_gain_at_lag": "mean-field ½ log χ₁ × lag",
}


# ---------------------------------------------------------------------------------------------
# Experiments (JAX; imported only when run)
# ---------------------------------------------------------------------------------------------

def _candidates(run, lag: int) -> pd.DataFrame:
    """Every run's candidate predictors at initialization (checkpoint 0), one row per (init, seed)."""
    import jax
    import jax.numpy as jnp

    from gradscope import metrics, theory

    spectra = jax.tree_util.tree_map(lambda a: a[:, :, 0], run.spectra)  # at init: [inits, seeds, lags, n]
    lags = np.asarray(spectra.lags)
    at_init = spectra.lag_metrics()
    where = int(np.flatnonzero(lags == lag)[0])
    summary = run.summary(0)
    rms_horizon = metrics.memory_horizon(jnp.asarray(lags), at_init.log_rms, run.thresholds.horizon)
    cell_params, n = run.initial_params.cell, run.cell.hidden_size
    sigma_w = np.sqrt(n) * np.std(np.asarray(cell_params.recurrent_kernel), axis=(-2, -1))
    sigma_b = np.std(np.asarray(cell_params.bias), axis=-1)
    inputs = np.asarray(run.task.sample(jax.random.key(12), 64).inputs)
    sigma_x = np.std(np.einsum("btj,isjk->isbtk", inputs, np.asarray(cell_params.input_kernel)), axis=(2, 3, 4))
    chi_rate = np.asarray(theory.mean_field("tanh", sigma_w, sigma_b, sigma_x).rms_rate)
    cap = lambda h: np.minimum(np.asarray(h, np.float64) / lag, 2 * run.task.num_steps / lag)  # noqa: E731
    columns = {
        "lag": np.full(sigma_w.shape, lag),
        "log_rms_at_lag": np.asarray(at_init.log_rms)[..., where],
        "log_sigma_max_at_lag": np.asarray(at_init.log_sigma_max)[..., where],
        "rms_horizon_over_lag": cap(rms_horizon), "horizon_over_lag": cap(summary.horizon),
        "rms_rate": np.asarray(summary.rms_rate), "rate": np.asarray(summary.rate),
        "spread_at_lag": np.asarray(at_init.isometry_spread)[..., where],
        "meanfield_rate": chi_rate, "meanfield_gain_at_lag": chi_rate * lag,
    }
    return pd.DataFrame({name: np.asarray(v, np.float64).ravel() for name, v in columns.items()})


def _table(run, lag: int, task: str, arm: str, with_candidates: bool) -> pd.DataFrame:
    table = run.to_dataframe()[["init", "seed", "horizon_at_init", "verdict_at_init", "loss_ratio"]]
    table.insert(0, "arm", arm)
    table.insert(0, "lag", lag)
    table.insert(0, "task", task)
    table["learned"] = table["loss_ratio"] <= SUCCESS_RATIO
    if with_candidates:
        table = pd.concat([table.reset_index(drop=True), _candidates(run, lag).drop(columns="lag")], axis=1)
    return table


def train_arm(task_name: str, lag: int, inits, seeds: int, penalised: bool, with_candidates: bool,
              weight: float = 1.0, quick: bool = False) -> pd.DataFrame:
    """Train one arm (a task, a lag, with or without the penalty); its rows of the per-run table."""
    import jax

    import gradscope
    from gradscope import penalties, training

    task = training.make_task(task_name, lag)
    cell = gradscope.VanillaRNN(32, input_size=task.input_size)
    penalty = penalties.Penalty(lags=(lag // 2, lag), kind="rate", weight=weight) if penalised else None
    config = training.TrainConfig(num_steps=20 if quick else 1500, eval_every=20 if quick else 1500,
                                  learning_rate=3e-3, batch_size=32, penalty=penalty)
    start = time.time()
    run = training.train(cell, task, {k: INITIALIZERS[k] for k in inits}, seeds=seeds, config=config,
                         key=jax.random.key(0), progress=False)
    label = "plain" if not penalised else "penalty" if weight == 1.0 else f"penalty {weight:g}"
    print(f"{task_name} lag {lag} {label}: {time.time() - start:.0f} s", flush=True)
    return _table(run, lag, task_name, label, with_candidates)


def run_experiments(quick: bool = False) -> pd.DataFrame:
    """Every run of the page: plain and penalised, adding and copy; one row per run."""
    everything, six = list(INITIALIZERS), ["orthogonal", "orthogonal, gain 0.5", "glorot_normal", "he_normal",
                                            "identity", "normal (stddev 1)"]
    arms = [("adding", lag, everything, 4, False, True, 1.0) for lag in (5, 10, 15, 20, 30)]
    arms += [("adding", lag, everything, 4, True, False, 1.0) for lag in (20, 30)]
    arms += [("adding", 20, everything, 4, True, False, weight) for weight in WEIGHTS]
    arms += [("copy", lag, six, 3, penalised, False, 1.0) for lag in (15, 25) for penalised in (False, True)]
    return pd.concat([train_arm(*arm, quick=quick) for arm in arms], ignore_index=True)


def penalty_cost() -> float:
    """CPU time of a penalised training step over a plain one, minus 1 (interleaved, after compiling)."""
    import jax

    import gradscope
    from gradscope import penalties, training

    task, cell = training.make_task("adding", 20), gradscope.VanillaRNN(32, input_size=2)
    configs = [training.TrainConfig(num_steps=400, eval_every=400, lags=(20,), penalty=p)
               for p in (None, penalties.Penalty(lags=(10, 20), weight=1.0))]
    times = [[], []]
    for repeat in range(4):
        for i, config in enumerate(configs):
            start = time.process_time()
            training.train(cell, task, ["orthogonal"], config=config, key=jax.random.key(repeat), progress=False)
            times[i].append(time.process_time() - start)
    return float(np.median(times[1][1:]) / np.median(times[0][1:]) - 1)  # the first repeat compiles


# ---------------------------------------------------------------------------------------------
# Analysis (NumPy on the per-run table)
# ---------------------------------------------------------------------------------------------

def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def fit_band(values: np.ndarray, learned: np.ndarray, within=None) -> tuple[float, float, float]:
    """``(lo, hi, accuracy)`` of the best rule "learned iff within and lo <= value <= hi".

    ``within`` (boolean, default all True) is a condition the rule also requires. Cuts lie
    midway between consecutive distinct values (and at +-inf); ties in accuracy go to the
    first band (lowest lo, then lowest hi).
    """
    within = np.ones(len(values), bool) if within is None else within
    distinct = np.unique(values[np.isfinite(values)])
    cuts = np.concatenate([[-np.inf], 0.5 * (distinct[1:] + distinct[:-1]), [np.inf]])
    inside = (values >= cuts[:, None, None]) & (values <= cuts[None, :, None]) & within
    accuracy = np.where(cuts[:, None] <= cuts[None, :], np.mean(inside == learned, axis=-1), -1.0)
    lo, hi = np.unravel_index(np.argmax(accuracy), accuracy.shape)
    return float(cuts[lo]), float(cuts[hi]), float(accuracy[lo, hi])


def fit_rule(plain: pd.DataFrame, fitting: np.ndarray, column: str, with_lag: bool) -> dict:
    """The best band on ``column`` (and, ``with_lag``, on the task lag too), fitted on the ``fitting`` runs."""
    learned, values, lags = (plain[c].to_numpy(np.float64) for c in ("learned", column, "lag"))
    learned = learned.astype(bool)
    lag_bands = [(-np.inf, np.inf)]
    if with_lag:
        distinct = np.unique(lags[fitting])
        cuts = np.concatenate([[-np.inf], 0.5 * (distinct[1:] + distinct[:-1]), [np.inf]])
        lag_bands = [(lo, hi) for i, lo in enumerate(cuts) for hi in cuts[i:]]
    best = None
    for lag_lo, lag_hi in lag_bands:
        within = (lags >= lag_lo) & (lags <= lag_hi)
        lo, hi, accuracy = fit_band(values[fitting], learned[fitting], within[fitting])
        if best is None or accuracy > best["fitted"]:
            predicted = within & (values >= lo) & (values <= hi)
            best = {"candidate": column, "with_lag": with_lag, "lag_lo": lag_lo, "lag_hi": lag_hi, "lo": lo,
                    "hi": hi, "fitted": accuracy, "held_out": np.mean(predicted[~fitting] == learned[~fitting]),
                    "predicted": predicted}
    return best


def split(plain: pd.DataFrame) -> np.ndarray:
    """True for the fitting runs (seeds 0, 1 at lags 5, 10, 20), False for the held-out ones."""
    return (plain["seed"].isin(TRAIN_SEEDS) & plain["lag"].isin(TRAIN_LAGS)).to_numpy()


def evaluate(runs: pd.DataFrame) -> tuple[pd.DataFrame, int, pd.DataFrame]:
    """Fit every candidate on the fitting runs: ``(per-candidate table, chosen row, held-out runs with prediction)``.

    The candidates are a band on each quantity alone, the same with a band on the task
    lag, and the horizon rule of the page (no fit). The chosen rule has the best fitted
    accuracy (ties: the first in the table, so a single quantity before a pair).
    """
    plain = runs[(runs["task"] == "adding") & (runs["arm"] == "plain")].reset_index(drop=True)
    fitting, learned = split(plain), plain["learned"].to_numpy(bool)
    rows = [fit_rule(plain, fitting, column, with_lag) for with_lag in (False, True) for column in CANDIDATES
            if not (with_lag and column == "lag")]
    rule = ((plain["horizon_at_init"] >= plain["lag"]) & plain["verdict_at_init"].isin(["vanishing", "stable"]))
    rule = rule.to_numpy()
    rows.append({"candidate": "horizon_rule", "with_lag": False, "fitted": np.mean(rule[fitting] == learned[fitting]),
                 "held_out": np.mean(rule[~fitting] == learned[~fitting]), "predicted": rule})
    table = pd.DataFrame(rows)
    chosen = int(np.argmax(table["fitted"].to_numpy()[:-1]))
    held = plain[~fitting].copy()
    held["predicted"] = table.loc[chosen, "predicted"][~fitting]
    return table, chosen, held


def ceiling(runs: pd.DataFrame) -> float:
    """Accuracy of the best rule that sees only the initializer and the lag (majority outcome of each cell)."""
    plain = runs[(runs["task"] == "adding") & (runs["arm"] == "plain")]
    rate = plain.groupby(["init", "lag"])["learned"].mean()
    return float(np.sum(np.maximum(rate, 1 - rate) * plain.groupby(["init", "lag"]).size()) / len(plain))


# ---------------------------------------------------------------------------------------------
# Page texts
# ---------------------------------------------------------------------------------------------

def _cell(group: pd.DataFrame) -> str:
    ratios = group["loss_ratio"].to_numpy(np.float64)
    spread = f"{np.nanmin(ratios):.2f}–{np.nanmax(ratios):.2f}" if np.isfinite(ratios).any() else "diverged"
    return f"{int(group['learned'].sum())}/{len(group)} ({spread})"


def penalty_table(runs: pd.DataFrame, task: str, lags) -> str:
    """Markdown: rows initializers, columns (lag, arm): learned / runs (min–max loss / baseline)."""
    chosen = runs[(runs["task"] == task) & runs["lag"].isin(lags)]
    columns = [(lag, arm) for lag in lags for arm in ("plain", "penalty")]
    header = "| initializer | " + " | ".join(f"lag {lag}, {arm}" for lag, arm in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for init in dict.fromkeys(chosen["init"]):
        cells = [_cell(chosen[(chosen["init"] == init) & (chosen["lag"] == lag) & (chosen["arm"] == arm)])
                 for lag, arm in columns]
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    totals = [_cell(chosen[(chosen["lag"] == lag) & (chosen["arm"] == arm)]).split(" ")[0] for lag, arm in columns]
    lines.append("| **all** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    return "\n".join(lines)


def _interval(lo: float, hi: float, name: str) -> str:
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{lo:.3g} ≤ {name} ≤ {hi:.3g}"
    if np.isfinite(lo):
        return f"{name} ≥ {lo:.3g}"
    return f"{name} ≤ {hi:.3g}" if np.isfinite(hi) else ""


def _rule(row) -> str:
    if row["candidate"] == "horizon_rule":
        return "horizon(σ_max) ≥ lag and verdict not exploding (no fit)"
    parts = [_interval(row["lag_lo"], row["lag_hi"], "lag") if row["with_lag"] else "",
             _interval(row["lo"], row["hi"], "value")]
    return " and ".join(p for p in parts if p) or "always predicts the majority"


def predictor_texts(runs: pd.DataFrame) -> dict[str, str]:
    """Every text the predictor section of the page shows."""
    table, chosen, held = evaluate(runs)
    fitting = int(split(runs[(runs["task"] == "adding") & (runs["arm"] == "plain")].reset_index(drop=True)).sum())
    lines = ["| quantity at initialization | fitted rule: learns iff | fitting runs | held-out runs |",
             "|---|---|---|---|"]
    for i, row in table.iterrows():
        name = CANDIDATES.get(row["candidate"], "the horizon rule above")
        name = f"**{name}**" if i == chosen else name
        lines.append(f"| {name} | {_rule(row)} | {row['fitted']:.2f} | {row['held_out']:.2f} |")
    right = int((held["predicted"] == held["learned"]).sum())
    lo, hi = wilson(right, len(held))
    wrong = held[held["predicted"] != held["learned"]]
    wrong_lines = [f"- lag {r.lag}, {r.init}, seed {r.seed}: predicted {'to learn' if r.predicted else 'to fail'}, "
                   f"loss / baseline {r.loss_ratio:.2f}" for r in wrong.itertuples()]
    return {"predictor_table": "\n".join(lines), "fitting_runs": str(fitting), "held_out_runs": str(len(held)),
            "chosen": f"{CANDIDATES[table.loc[chosen, 'candidate']]}"
                      f"{', with the lag' if table.loc[chosen, 'with_lag'] else ''}: learns iff {_rule(table.loc[chosen])}",
            "held_out_right": str(right), "held_out_accuracy": f"{right / len(held):.2f}",
            "held_out_interval": f"{lo:.2f}–{hi:.2f}", "wrong_count": str(len(wrong)),
            "wrong_runs": "\n".join(wrong_lines) or "- none", "ceiling": f"{ceiling(runs):.2f}",
            "plain_runs": str(len(runs[(runs["task"] == "adding") & (runs["arm"] == "plain")]))}


def sign_test(successes: int, failures: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if both directions were equally likely."""
    total = successes + failures
    tail = sum(math.comb(total, k) for k in range(min(successes, failures) + 1)) / 2 ** total
    return min(1.0, 2 * tail) if total else 1.0


def paired_texts(runs: pd.DataFrame) -> dict[str, str]:
    """Penalty against plain, run by run (same initial parameters and batches): the texts the page shows."""
    texts = {}
    for task, lags in (("adding", (20, 30)), ("copy", (15, 25))):
        chosen = runs[(runs["task"] == task) & runs["lag"].isin(lags)]
        pairs = chosen[chosen["arm"] == "plain"].merge(chosen[chosen["arm"] == "penalty"], on=["lag", "init", "seed"],
                                                       suffixes=("_plain", "_penalty"))
        gained = int((~pairs["learned_plain"] & pairs["learned_penalty"]).sum())
        lost = int((pairs["learned_plain"] & ~pairs["learned_penalty"]).sum())
        texts[f"{task}_flips"] = f"{gained} failures into successes and {lost} successes into failures"
        texts[f"{task}_sign_p"] = f"{sign_test(gained, lost):.2f}"
        for lag in lags:
            at = pairs[pairs["lag"] == lag]
            change = np.log(at["loss_ratio_penalty"].to_numpy()) - np.log(at["loss_ratio_plain"].to_numpy())
            texts[f"{task}_{lag}_lower"] = f"{int(np.sum(change < 0))} of {len(at)}"
            texts[f"{task}_{lag}_median_factor"] = f"{np.exp(np.median(change)):.2f}"
    return texts


def weight_table(runs: pd.DataFrame, lag: int = 20) -> str:
    """Markdown: the adding task at ``lag`` for each penalty weight, against the plain runs, run by run."""
    chosen = runs[(runs["task"] == "adding") & (runs["lag"] == lag)]
    plain = chosen[chosen["arm"] == "plain"]
    lines = ["| penalty weight | learned / runs | runs with a lower final loss than plain | median factor on the loss |",
             "|---|---|---|---|", f"| 0 (plain) | {int(plain['learned'].sum())}/{len(plain)} | — | — |"]
    arms = sorted({a for a in chosen["arm"] if a.startswith("penalty")}, key=lambda a: float(a[8:] or 1.0))
    for arm in arms:
        pairs = plain.merge(chosen[chosen["arm"] == arm], on=["init", "seed"], suffixes=("_plain", "_penalty"))
        change = np.log(pairs["loss_ratio_penalty"].to_numpy()) - np.log(pairs["loss_ratio_plain"].to_numpy())
        lines.append(f"| {float(arm[8:] or 1.0):g} | {int(pairs['learned_penalty'].sum())}/{len(pairs)} | "
                     f"{int(np.sum(change < 0))} of {len(pairs)} | {np.exp(np.median(change)):.2f} |")
    return "\n".join(lines)


def quick_numbers():
    """The predictor's texts, refitted from the stored per-run table (well under a second)."""
    runs = pd.read_csv(RUNS_CSV)
    return STORE, {**predictor_texts(runs), **paired_texts(runs), "weight_table": weight_table(runs)}


def main(from_csv: bool = False) -> None:
    """Run everything (or, ``from_csv``, only rewrite the texts from the stored per-run table) and the pages."""
    start = time.time()
    if not from_csv:
        runs = run_experiments()
        DATA.mkdir(parents=True, exist_ok=True)
        runs.to_csv(RUNS_CSV, index=False, float_format="%.6g")
    runs = pd.read_csv(RUNS_CSV)  # the texts come from the stored table, exactly as quick_numbers reads it
    numbers = Numbers(STORE)
    for name, text in {**predictor_texts(runs), **paired_texts(runs)}.items():
        numbers[name] = text
    numbers["adding_table"] = penalty_table(runs, "adding", (20, 30))
    numbers["copy_table"] = penalty_table(runs, "copy", (15, 25))
    numbers["weight_table"] = weight_table(runs)
    for task, lags in (("adding", (20, 30)), ("copy", (15, 25))):
        for arm in ("plain", "penalty"):
            chosen = runs[(runs["task"] == task) & runs["lag"].isin(lags) & (runs["arm"] == arm)]
            numbers[f"{task}_{arm}_learned"] = f"{int(chosen['learned'].sum())} of {len(chosen)}"
    if not from_csv:
        numbers["cost"] = f"{100 * penalty_cost():.0f} %"
    publish(numbers, show=True)
    print(f"took {time.time() - start:.0f} s")


if __name__ == "__main__":
    main(from_csv="--from-csv" in sys.argv[1:])
