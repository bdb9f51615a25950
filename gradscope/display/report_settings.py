"""The run settings of a report: how its numbers were made, as JSON values.

``metrics.json`` holds them as ``"settings"`` beside the ``"rows"``, so that a
program can run the analysis again: the keys follow :func:`gradscope.compare`'s
arguments (see :func:`run_settings`), and the pages show the same settings as a
table (:func:`settings_rows`).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import numbers
import platform
from collections.abc import Mapping

import numpy as np

import gradscope
from gradscope.display.reprs import format_number

__all__ = ["json_value", "run_settings", "settings_rows"]


def json_value(value):
    """A scalar as a JSON value: NumPy numbers become Python ints/floats, inf and NaN become ``None``."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value



def _json_setting(value):
    """A setting as a JSON value: numbers, text, lists and objects; arrays and callables as text."""
    if isinstance(value, Mapping):
        return {str(k): _json_setting(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_setting(v) for v in value]
    if value is None or isinstance(value, (str, bool, np.bool_, numbers.Real)):
        return json_value(value)
    if np.ndim(value) > 0:
        return f"array of shape {tuple(np.shape(value))}"
    return getattr(value, "__name__", None) or repr(value)


def _cell_settings(cell) -> dict:
    """The cell's type and constructor arguments (``getattr(gradscope, type)(**the rest)`` rebuilds it)."""
    fields = dataclasses.fields(cell) if dataclasses.is_dataclass(cell) else ()
    return {"type": type(cell).__name__, **{f.name: _json_setting(getattr(cell, f.name)) for f in fields if f.init}}


def _initializer_settings(labels, specs) -> list[dict]:
    """One ``{"label", "name", "options"}`` per initializer; only labels when the specs are unknown."""
    if specs is None:
        return [{"label": label} for label in labels]
    specs = list(specs.values()) if isinstance(specs, Mapping) else ([specs] if isinstance(specs, str) else specs)
    return [{"label": label, **_spec_settings(spec)} for label, spec in zip(labels, specs)]


def _spec_settings(spec) -> dict:
    if isinstance(spec, str):
        return {"name": spec, "options": {}}
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping):
        return {"name": spec[0], "options": _json_setting(spec[1])}
    return {"name": None, "callable": _json_setting(spec)}


def _versions() -> dict:
    import jax

    return {"gradscope": gradscope.__version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def run_settings(comparison, run: Mapping | None = None) -> dict:
    """The settings block of ``metrics.json``: enough to run the analysis again.

    Keys follow :func:`gradscope.compare`'s arguments: ``cell`` (``type`` and the
    constructor arguments), ``state_size``, ``num_steps``, ``seeds`` (list),
    ``initializers`` (``label``, ``name``, ``options``), ``inputs``, ``input_scale``,
    ``lags`` (as requested), ``num_log_lags``, ``analysed_lags`` (the lags kept),
    ``input_init``, ``bias_init``, ``dtype``, ``thresholds``, then ``versions``
    (gradscope, jax, numpy, python), ``backend`` and ``created``. Whatever ``run``
    holds beyond these (a ``command`` line, ``parameters``) is kept too.

    Args:
        comparison: the analysed :class:`~gradscope.Comparison`.
        run: the arguments given to :func:`gradscope.compare` (``initializers``,
            ``inputs``, ``input_scale``, ``lags``, ``num_log_lags``, ``input_init``,
            ``bias_init``) and anything else worth recording. Without it only what
            the comparison itself holds is recorded (initializers by label).

    Returns:
        A dict of JSON values (non-finite numbers become ``None``).
    """
    import jax

    run = dict(run or {})
    measured = {
        "cell": _cell_settings(comparison.cell), "state_size": int(comparison.spectra.state_size),
        "num_steps": int(comparison.num_steps), "seeds": [int(s) for s in comparison.seeds],
        "initializers": _initializer_settings(comparison.labels, run.pop("initializers", None)),
    }
    tail = {"analysed_lags": [int(k) for k in comparison.lags],
            "dtype": str(np.asarray(comparison.spectra.log_singular_values).dtype),
            "thresholds": dataclasses.asdict(comparison.thresholds)}
    command = {"command": run.pop("command")} if "command" in run else {}
    settings = {**command, **measured, **{k: v for k, v in run.items() if k not in measured | tail}, **tail,
                "versions": _versions(), "backend": jax.default_backend(),
                "created": datetime.datetime.now().isoformat(timespec="seconds")}
    return _json_setting(settings)


_SETTING_NAMES = {"state_size": "state size n", "num_steps": "steps T", "input_scale": "input scale",
                  "num_log_lags": "log-spaced lag count", "lags": "lags requested", "analysed_lags": "lags",
                  "input_init": "input kernel init", "bias_init": "bias init"}


def _setting_text(key: str, value) -> str:
    if key == "cell" and isinstance(value, Mapping):
        arguments = ", ".join(f"{k}={v!r}" for k, v in value.items() if k != "type")
        return f"{value.get('type')}({arguments})"
    if key == "initializers":
        return ", ".join(item["label"] for item in value)
    if key == "analysed_lags" and value:
        return f"{len(value)} lags from {min(value)} to {max(value)}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_setting_text(k, v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_setting_text(key, v) for v in value)
    return "null" if value is None else format_number(value)


def settings_rows(settings: Mapping) -> tuple:
    """The settings block as ``(name, text)`` rows for the pages' settings table."""
    return tuple((_SETTING_NAMES.get(key, key), _setting_text(key, value)) for key, value in settings.items())
