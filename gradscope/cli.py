"""The ``gradscope`` console command: compare initializers or analyse saved parameters, write a report.

::

    gradscope compare [options]                 # default: vanilla tanh RNN, 6 initializers, 4 seeds
    gradscope compare --cell lru                # a modern cell under its own initializers (LRU rings)
    gradscope compare --cells                   # classic and modern cells side by side, matched state size
    gradscope analyze --cell lstm --params p.npz [options]
    gradscope calibrate --cell gru --init orthogonal   # the critical gain of an initializer family

Both write a report folder (see :mod:`gradscope.report`). The command only parses
arguments, calls the API and writes files. Bad arguments exit with status 2 and
a message naming the fix; a numerical overflow in ``analyze`` exits with status 1;
Ctrl-C exits with status 130 after one line, leaving no half-written report.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import shlex
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import gradscope
from gradscope.cells import classic as cells
from gradscope.cells import modern
from gradscope import initializers
from gradscope._interrupts import check_interrupted, remembering_interrupts
from gradscope.display import report
from gradscope.display.figure_worker import FigureWorker
from gradscope.analysis.comparison import DEFAULT_INITIALIZERS, make_inputs
from gradscope.core import cache
from gradscope.core.lags import select_lags
from gradscope.core.pipeline import cpu_workers

__all__ = ["CELLS", "CLASSIC_CELLS", "build_parser", "load_params", "main", "parse_init", "parse_lags"]

CELLS = {"vanilla": cells.VanillaRNN, "lstm": cells.LSTM, "gru": cells.GRU, "lru": modern.LRU,
         "s4d": modern.DiagonalSSM, "selective": modern.SelectiveSSM, "mingru": modern.MinGRU,
         "minlstm": modern.MinLSTM}
"""Cell layouts by command-line name."""

CLASSIC_CELLS = ("vanilla", "lstm", "gru")
"""The cells ``calibrate`` takes (a gain family needs a recurrent kernel)."""

_PARAM_TYPES = {"vanilla": cells.VanillaParams, "lstm": cells.LSTMParams, "gru": cells.GRUParams,
                "lru": modern.LRUParams, "s4d": modern.DiagonalSSMParams, "selective": modern.SelectiveSSMParams,
                "mingru": modern.MinGRUParams, "minlstm": modern.MinLSTMParams}

_KERNELS = (("recurrent_kernel", 0, 2), ("input_kernel", 0, 2))
_SIZES = {"vanilla": _KERNELS, "lstm": _KERNELS, "gru": _KERNELS, "lru": (("nu_log", 0, 1), ("skip", 0, 1)),
          "s4d": (("log_neg_real", 1, 2), ("log_neg_real", 0, 2)), "selective": (("log_neg_a", 1, 2), ("log_neg_a", 0, 2)),
          "mingru": (("gate_kernel", 1, 2), ("gate_kernel", 0, 2)),
          "minlstm": (("candidate_kernel", 1, 2), ("candidate_kernel", 0, 2))}
"""Where ``analyze`` reads the hidden and input sizes: (array, axis, the array's dimensions) for each."""

_CELL_HELP = ("cell type (default vanilla); modern cells: lru (hidden = complex units, state 2 x hidden), s4d "
              "(diagonal SSM: hidden = complex modes per input channel), selective (Mamba's SSM: hidden = state "
              "per channel, input size = channels), mingru, minlstm")


# ---------------------------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------------------------

def _option_value(text: str):
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return convert(text)
    return text


def parse_init(text: str):
    """Parse ``name`` or ``name:key=value,key=value`` into an initializer spec.

    >>> parse_init("orthogonal:gain=1.1")
    ('orthogonal', {'gain': 1.1})

    Values are read as int, else float, else kept as text.

    Raises:
        argparse.ArgumentTypeError: an option without ``=`` or an empty name.
    """
    name, _, options = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:key=value,..., got {text!r}")
    if not options:
        return name
    pairs = [item.partition("=") for item in options.split(",")]
    bad = [key for key, sep, value in pairs if not (key and sep and value)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected options as key=value after the colon, e.g. orthogonal:gain=1.1; "
                                         f"got {text!r}")
    return name, {key.strip(): _option_value(value.strip()) for key, _, value in pairs}


def parse_lags(text: str):
    """Parse ``all``, ``log`` or a comma list of ints (``1,2,5,10``) into a lag request.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if text in ("all", "log"):
        return text
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all', 'log' or comma-separated ints like 1,2,5,10; "
                                         f"got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------

def _run_options() -> argparse.ArgumentParser:
    """Options shared by every subcommand that analyses and writes a report."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("analysis")
    group.add_argument("--activation", default=None,
                       help=f"vanilla cell activation (default tanh); one of {', '.join(sorted(cells.ACTIVATIONS))}")
    group.add_argument("--gru-reset", choices=("after", "before"), default=None,
                       help="GRU reset-gate convention: after (cuDNN/PyTorch, default) or before (Cho et al.)")
    group.add_argument("--steps", type=_positive_int, default=100, help="horizon T (default 100)")
    group.add_argument("--seeds", type=_positive_int, default=4, help="number of seeds 0..N-1 (default 4)")
    group.add_argument("--inputs", choices=("gaussian", "zeros"), default="gaussian",
                       help="input sequence: N(0, input-scale^2) per seed, or zeros (default gaussian)")
    group.add_argument("--input-scale", type=float, default=1.0, help="std of the Gaussian inputs (default 1)")
    group.add_argument("--lags", type=parse_lags, default="all",
                       help="lags k to analyse: all (1..T), log (log-spaced) or a list like 1,2,5,10 (default all)")
    group.add_argument("--num-log-lags", type=_positive_int, default=32, help="lag count for --lags log (default 32)")
    group.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="precision of the analysis (default float32)")
    output = common.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("gradscope-report"),
                        help="report folder to create (default ./gradscope-report)")
    output.add_argument("--force", action="store_true", help="write into an existing report folder")
    output.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    _add_cache_option(output)
    return common


def _add_cache_option(group) -> None:
    group.add_argument("--no-cache", action="store_true",
                       help="compile everything afresh: do not use the compilation cache folder "
                            f"(default {cache.cache_dir() or 'off'}; set {cache.CACHE_VARIABLE} to move it, or to off)")


def _add_compare(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "compare", parents=[common], help="compare recurrent-kernel initializers for a cell and write a report",
        description="Compare recurrent-kernel initializers for one cell over several seeds and write a report "
                    "folder (metrics.csv, metrics.json, report.md, report.html, figures/).")
    parser.add_argument("--cell", choices=tuple(CELLS), default=None, help=_CELL_HELP)
    parser.add_argument("--hidden", type=_positive_int, default=None, help="hidden size (default 64)")
    parser.add_argument("--input-size", type=_positive_int, default=None, help="input size (default 1)")
    parser.add_argument("--init", type=parse_init, action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
                        help="recurrent initializer, repeatable, e.g. --init orthogonal:gain=1.1 --init he_normal "
                             f"(default: {' '.join(DEFAULT_INITIALIZERS)}; for a modern cell its own, e.g. "
                             "--init ring:r_min=0.9,r_max=0.999 for lru, s4d_lin/s4d_inv/s4d_real for s4d, "
                             "zeros and chrono:t_max=100 (gate biases) for mingru/minlstm); "
                             f"names: {', '.join(initializers.available())}")
    parser.add_argument("--bias-init", type=parse_init, default=None, metavar="NAME[:KEY=VALUE,...]",
                        help="bias initializer for every --init, e.g. chrono:t_max=100 for lstm/gru gate biases")
    parser.add_argument("--forget-bias", type=float, default=None, help="LSTM forget-gate bias at init (default 0)")
    lineup = parser.add_argument_group("cells side by side (--cells)")
    lineup.add_argument("--cells", nargs="*", choices=tuple(CELLS), default=None, metavar="CELL",
                        help="compare cells against each other instead of initializers: classic cells under "
                             "classic initializations, modern ones under theirs, all at one state size (no names: "
                             f"all of {', '.join(CELLS)}); adds the curse-of-memory sensitivity")
    lineup.add_argument("--state-size", type=_positive_int, default=64,
                        help="flat state size n of every cell in --cells (even; default 64)")
    lineup.add_argument("--t-max", type=float, default=100.0, help="t_max of the chrono initializations (default 100)")
    parser.set_defaults(handler=_run_compare, parser=parser)


def _add_analyze(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "analyze", parents=[common], help="analyse saved parameters (.npz) of a cell and write a report",
        description="Analyse one saved parameter set. The .npz holds one array per field of the cell's "
                    "parameter layout: vanilla: recurrent_kernel (n, n), input_kernel (m, n), bias (n,); "
                    "lstm: recurrent_kernel (n, 4n), input_kernel (m, 4n), bias (4n,) with gates i, f, g, o; "
                    "gru: recurrent_kernel (n, 3n), input_kernel (m, 3n), input_bias (3n,), recurrent_bias (3n,) "
                    "with gates r, z, n. Kernels are (fan_in, fan_out): the layer computes x @ W. "
                    "--seeds sets how many input sequences are drawn.")
    parser.add_argument("--cell", choices=tuple(CELLS), required=True,
                        help="the parameters' cell layout (fields of its parameter NamedTuple, e.g. "
                             "gradscope.cells.LRUParams for lru)")
    parser.add_argument("--params", type=Path, required=True, help="the .npz file of parameters")
    parser.add_argument("--label", default=None, help="name of this parameter set in the report (default file stem)")
    parser.set_defaults(handler=_run_analyze, parser=parser)


def _parse_bracket(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        bracket = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH gains such as 0.25,8, got {text!r}") from None
    if not 0 < bracket[0] < bracket[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW < HIGH, got {text!r}")
    return bracket


def _add_calibrate(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="find the gain at which an initializer family's measured growth rate is zero",
        description="Root-find the critical gain (edge between vanishing and exploding) of each --init family "
                    "for a cell, on the seed-averaged measured rate; prints the gain with its +-1 standard-error "
                    "interval. Works for LSTM and GRU, where no closed form exists.")
    parser.add_argument("--cell", choices=CLASSIC_CELLS, default="vanilla", help="cell type (default vanilla)")
    parser.add_argument("--hidden", type=_positive_int, default=64, help="hidden size (default 64)")
    parser.add_argument("--input-size", type=_positive_int, default=1, help="input size (default 1)")
    parser.add_argument("--activation", default=None, help="vanilla cell activation (default tanh)")
    parser.add_argument("--gru-reset", choices=("after", "before"), default=None, help="GRU reset convention")
    parser.add_argument("--forget-bias", type=float, default=None, help="LSTM forget-gate bias at init")
    parser.add_argument("--init", type=parse_init, action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
                        help="initializer family with a gain option, repeatable (default orthogonal)")
    parser.add_argument("--which", choices=("rms_rate", "rate"), default="rms_rate",
                        help="rate to zero: RMS singular value (default, what mean-field theory predicts) "
                             "or sigma_max")
    parser.add_argument("--bracket", type=_parse_bracket, default=(0.25, 8.0), help="LOW,HIGH gains (default 0.25,8)")
    parser.add_argument("--steps", type=_positive_int, default=200, help="horizon T (default 200)")
    parser.add_argument("--seeds", type=_positive_int, default=4, help="number of seeds (default 4)")
    parser.add_argument("--inputs", choices=("gaussian", "zeros"), default="gaussian", help="input sequence")
    parser.add_argument("--input-scale", type=float, default=1.0, help="std of the Gaussian inputs (default 1)")
    parser.add_argument("--csv", type=Path, default=None, help="also write every evaluation (gain, rate) here")
    _add_cache_option(parser)
    parser.set_defaults(handler=_run_calibrate, parser=parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``gradscope`` argument parser, one subparser per subcommand (``compare``, ``analyze``)."""
    parser = argparse.ArgumentParser(
        prog="gradscope", description="How does the gradient travel back through time in a recurrent network? "
                                      "Run 'gradscope compare' for the default comparison of initializers.")
    parser.add_argument("--version", action="version", version=f"gradscope {gradscope.__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    common = _run_options()
    _add_compare(subparsers, common)
    _add_analyze(subparsers, common)
    _add_calibrate(subparsers)
    return parser


# ---------------------------------------------------------------------------------------------
# Cells and parameters
# ---------------------------------------------------------------------------------------------

def _cell_options(args) -> dict:
    """Cell keyword options from the flags, refusing flags that do not apply to the chosen cell."""
    applies = {"activation": "vanilla", "gru_reset": "gru", "forget_bias": "lstm"}
    keyword = {"activation": "activation", "gru_reset": "reset", "forget_bias": "forget_bias"}
    options = {}
    for flag, cell in applies.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if args.cell != cell:
            raise ValueError(f"--{flag.replace('_', '-')} applies to --cell {cell} only, not --cell {args.cell}")
        options[keyword[flag]] = value
    return options


def _expected_params(cell):
    import jax

    return jax.eval_shape(lambda: cell.init(jax.random.key(0)))


def load_params(path, layout: str, **cell_options):
    """Load a cell's parameters from an ``.npz`` file (``allow_pickle=False``).

    The file holds one array per field of the layout's parameter NamedTuple
    (:class:`~gradscope.cells.VanillaParams`, :class:`~gradscope.cells.LSTMParams`,
    :class:`~gradscope.cells.GRUParams`, :class:`~gradscope.cells.LRUParams`, ...); hidden and
    input sizes are read from the arrays (classic cells: ``recurrent_kernel``
    ``(n, gates * n)`` and ``input_kernel`` ``(m, gates * n)``; the LRU: ``nu_log`` and ``skip``;
    the SSMs: ``(channels, state)`` of ``A``'s parameters; minGRU/minLSTM: their kernels).

    Args:
        path: the ``.npz`` file.
        layout: a name in :data:`CELLS`.
        **cell_options: passed to the cell (``activation`` for vanilla, ``reset`` for GRU).

    Returns:
        ``(cell, params, extra_names)``: the built cell, its params NamedTuple of
        NumPy arrays, and the names in the file that the layout does not use.

    Raises:
        ValueError: an unreadable file, a missing array or an array of the wrong shape.
    """
    fields = _PARAM_TYPES[layout]._fields
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"could not read {str(path)!r} as an .npz of arrays ({err}); save it with "
                         f"numpy.savez(path, {', '.join(f'{f}=...' for f in fields)})") from None
    missing = [name for name in fields if name not in arrays]
    if missing:
        raise ValueError(f"{str(path)!r} lacks array(s) {missing} for --cell {layout}; expected arrays "
                         f"{list(fields)}, found {sorted(arrays)}")
    cell = _cell_from_arrays(layout, arrays, cell_options)
    expected = _expected_params(cell)
    for name, spec in zip(fields, expected):
        if arrays[name].shape != spec.shape:
            raise ValueError(f"array {name!r} in {str(path)!r} has shape {arrays[name].shape}; --cell {layout} with "
                             f"hidden {cell.hidden_size} and input size {cell.input_size} expects {spec.shape}")
    params = _PARAM_TYPES[layout](*(np.asarray(arrays[name]) for name in fields))
    return cell, params, sorted(set(arrays) - set(fields))


def _cell_from_arrays(layout: str, arrays: dict, cell_options: dict):
    sizes = []
    for name, axis, ndim in _SIZES[layout]:
        if arrays[name].ndim != ndim:
            raise ValueError(f"array {name!r} must be {ndim}-D{' (fan_in, fan_out)' if 'kernel' in name else ''}, "
                             f"got shape {arrays[name].shape}")
        sizes.append(int(arrays[name].shape[axis]))
    if layout == "selective" and arrays["delta_down"].ndim == 2:
        cell_options = {**cell_options, "dt_rank": int(arrays["delta_down"].shape[1])}
    return CELLS[layout](*sizes, **cell_options)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

def _precision(dtype: str):
    """Context that enables JAX's 64-bit mode for float64 runs only."""
    import jax

    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _finish(args, comparison, settings, run, notes=()) -> None:
    check_interrupted()
    built = report.build_report(comparison, settings=settings, run=run)
    if notes:
        built = dataclasses.replace(built, notes=built.notes + tuple(notes))
    files = report.write_report(built, args.out, force=args.force, worker=args.figure_worker)
    if not args.quiet:
        print(comparison.to_dataframe().to_string(index=False))
        print(f"\nreport written to {files.folder}/ (open {files.html.name}; metrics in {files.metrics_csv.name}, "
              f"{files.metrics_json.name}; figures in figures/)")


def _checked_spec(flag: str, spec):
    try:
        initializers.resolve(spec)
    except (TypeError, ValueError) as err:  # an option the initializer does not take: a usage error here
        raise ValueError(f"{flag} {spec[0] if isinstance(spec, tuple) else spec}: {err}") from None
    return spec


def _compare_specs(args, cell) -> list:
    specs = list(args.init) if args.init else list(getattr(cell, "default_initializers", DEFAULT_INITIALIZERS))
    return [_checked_spec("--init", spec) for spec in specs]


def _run_compare(args, argv) -> int:
    report.check_output_folder(args.out, args.force)
    if args.cells is not None:
        return _run_lineup(args, argv)
    args.cell = args.cell or "vanilla"
    cell = CELLS[args.cell](args.hidden or 64, args.input_size or 1, **_cell_options(args))
    specs = _compare_specs(args, cell)
    classic = args.cell in CLASSIC_CELLS  # the modern cells bring their own input and bias initializers
    bias = _checked_spec("--bias-init", args.bias_init) if args.bias_init is not None else ("zeros" if classic else None)
    select_lags(args.lags, args.steps, args.num_log_lags)
    run = {"command": shlex.join(["gradscope", *argv]), "initializers": specs, **_analysis_options(args),
           "input_init": "lecun_normal" if classic else None, "bias_init": bias}
    with _precision(args.dtype):
        comparison = gradscope.compare(cell, specs, seeds=args.seeds, num_steps=args.steps, inputs=args.inputs,
                                       input_scale=args.input_scale, lags=args.lags, num_log_lags=args.num_log_lags,
                                       input_init=run["input_init"], bias_init=run["bias_init"], dtype=args.dtype,
                                       progress=False if args.quiet else None)
        _finish(args, comparison, [], run)
    return 0


def _run_lineup(args, argv) -> int:
    from gradscope.analysis.lineup import LINEUP_FIELDS, compare_cells, default_lineup

    given = [flag for flag in ("cell", "hidden", "input_size", "init", "bias_init", "forget_bias", "activation",
                               "gru_reset") if getattr(args, flag, None) is not None]
    if given:
        raise ValueError(f"--{given[0].replace('_', '-')} selects or sizes one cell; --cells sizes and initializes "
                         "every cell itself (set --state-size and --t-max instead)")
    families = {cls: name for name, cls in CELLS.items()}
    contenders = [c for c in default_lineup(args.state_size, args.t_max)
                  if not args.cells or families[type(c.cell)] in args.cells]
    select_lags(args.lags, args.steps, args.num_log_lags)
    with _precision(args.dtype):
        comparison = compare_cells(
            contenders, seeds=args.seeds, num_steps=args.steps, inputs=args.inputs, input_scale=args.input_scale,
            lags=args.lags, num_log_lags=args.num_log_lags, dtype=args.dtype, progress=False if args.quiet else None)
        run = {"command": shlex.join(["gradscope", *argv]), **_analysis_options(args), "t_max": args.t_max}
        _finish(args, comparison, [("cells", repr(comparison.cell))], run,
                [f"{name}: {meaning}" for name, meaning in LINEUP_FIELDS.items()])
    return 0


def _analysis_options(args) -> dict:
    """The analysis options as the run settings of metrics.json record them (gradscope.compare's names)."""
    return {"inputs": args.inputs, "input_scale": args.input_scale, "lags": args.lags,
            "num_log_lags": args.num_log_lags}


def _file_settings(path: Path) -> dict:
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _run_analyze(args, argv) -> int:
    import jax

    report.check_output_folder(args.out, args.force)
    cell, params, extra = load_params(args.params, args.cell, **_cell_options(args))
    if extra and not args.quiet:
        print(f"note: ignoring array(s) {extra} in {args.params}, which --cell {args.cell} does not use",
              file=sys.stderr)
    seeds = tuple(range(args.seeds))
    select_lags(args.lags, args.steps, args.num_log_lags)
    with _precision(args.dtype):
        xs = make_inputs(args.inputs, seeds, args.steps, cell.input_size, args.input_scale, args.dtype)
        spectra = gradscope.jacobian_spectra(cell, params, xs, lags=args.lags, num_log_lags=args.num_log_lags,
                                             dtype=args.dtype)
        label = args.label or args.params.stem
        comparison = gradscope.Comparison((label,), seeds, jax.tree_util.tree_map(lambda a: a[None], spectra),
                                          gradscope.Thresholds(), cell, args.steps)
        run = {"command": shlex.join(["gradscope", *argv]), "parameters": _file_settings(args.params),
               **_analysis_options(args)}
        _finish(args, comparison, [("note", "seeds are input sequences; the parameters are fixed")], run)
    return 0


def _run_calibrate(args, argv) -> int:
    from gradscope.theory.calibrate import calibrate

    cell = CELLS[args.cell](args.hidden, args.input_size, **_cell_options(args))
    tables = []
    for spec in args.init or ["orthogonal"]:
        result = calibrate(cell, spec, bracket=args.bracket, which=args.which, seeds=args.seeds,
                           num_steps=args.steps, inputs=args.inputs, input_scale=args.input_scale)
        print(result.describe())
        tables.append(result.to_dataframe().assign(init=result.initializer))
    if args.csv is not None:
        import pandas as pd

        pd.concat(tables, ignore_index=True).to_csv(args.csv, index=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gradscope`` command; return its exit status (0 ok, 1 overflow, 2 bad arguments, 130 Ctrl-C).

    Ctrl-C prints one line saying whether the report folder was left as it was, and
    returns 130; a report folder is never left half-written.

    Args:
        argv: the arguments after ``gradscope`` (default ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\ngradscope: error: choose a command, e.g. 'gradscope compare'", file=sys.stderr)
        return 2
    return _dispatch(args, argv)


def _report_state(args) -> tuple:
    """Whether the --out folder exists, and the identity of its report.html (changed by a completed write)."""
    out = getattr(args, "out", None)
    page = Path(out or "") / "report.html"
    return (out is not None and Path(out).exists(),
            (page.stat().st_ino, page.stat().st_mtime_ns) if out is not None and page.exists() else None)


def _interrupted(args, before: tuple) -> str:
    """The one line printed for Ctrl-C: what happened to the report folder."""
    out = getattr(args, "out", None)
    if out is None:
        return "interrupted"
    if _report_state(args) != before:
        return f"interrupted just after the report was written to {out}"
    return f"interrupted; no report written ({out} {'is unchanged' if before[0] else 'was not created'})"


def _figure_worker(args):
    """A helper process to save half the report's figures, started now so it is ready when they are.

    Only for commands that write a report, on a machine with more than one core for us.
    """
    if getattr(args, "out", None) is not None and cpu_workers() >= 2:
        with contextlib.suppress(OSError):  # no process to spare: the command saves every figure itself
            return FigureWorker()
    return contextlib.nullcontext()


def _dispatch(args, argv) -> int:
    if not getattr(args, "no_cache", True):
        cache.enable_compilation_cache()
    before = _report_state(args)
    try:
        with remembering_interrupts(), _figure_worker(args) as args.figure_worker:
            status = args.handler(args, argv)
            check_interrupted()
        return status
    except KeyboardInterrupt:
        newline = "\n" if sys.stderr.isatty() else ""  # end a progress bar's line first
        print(f"{newline}{args.parser.prog}: {_interrupted(args, before)}", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, NotADirectoryError) as err:
        args.parser.print_usage(sys.stderr)
        print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except gradscope.NumericalOverflowError as err:
        print(f"{args.parser.prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from gradscope.__main__ import console_main

    console_main()
