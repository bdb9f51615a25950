"""Stored programs: a later process runs gradscope's programs without tracing or lowering them again.

JAX's persistent compilation cache (:mod:`gradscope.core.cache`) spares a later process
XLA's compiler, but it is keyed by the lowered program, so every process still traces
and lowers each program before it can look one up. With the cache on, gradscope also
keeps its own programs lowered, serialized with :mod:`jax.export`, in the
``gradscope-programs`` folder of the cache folder: a later process reads them back and
goes straight to the compiled program (the benchmarks page times a second
``gradscope compare``).

Only calls whose meaning a key can pin down are stored: gradscope's own functions, with
cells and initializers named by plain values (names, numbers, options). A callable of
yours, an adapted model or anything else gradscope cannot name runs as usual (traced in
this process). The weight draws are not stored either: compiled as one program, a cell's
draws with several batched LAPACK calls (an LSTM's four orthogonal gates) can deadlock
XLA's CPU thread pool on a machine with few cores (seen with jaxlib 0.10.2), and they
compile slower than op by op (six LSTM draws: 3 s more in a cold run). The key holds a hash of gradscope's own source, the JAX and jaxlib
versions, the backend, JAX's configuration and the shapes and dtypes of the arguments,
so an edit of gradscope, an upgrade or a changed JAX flag makes a new entry instead of
reusing an old one; deleting the folder is always safe.

Entries are read back with :mod:`pickle` (the output's pytree structure) and JAX's
deserializer, as the compiled programs in the same folder are: keep the cache in a
folder only you write to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import os
import pickle
import tempfile
from pathlib import Path

import jax
import numpy as np

from gradscope.core import _checks

__all__ = ["FOLDER_NAME", "SMALL_PROGRAM", "identity_of", "store_folder", "store_in", "stored_call"]

FOLDER_NAME = "gradscope-programs"
"""The stored programs' folder inside the compilation cache folder."""

SMALL_PROGRAM = {"xla_backend_optimization_level": 2}
"""XLA options for programs that run once and briefly (drawing the inputs): one level below XLA's
default. Measured on the inputs of the default ``gradscope compare``: they compile in 0.39 s
instead of 0.53 s and draw the same numbers as op-by-op execution (tested); level 0 compiles
faster still but changes random draws in the last bits."""

_MAGIC = b"gradscope stored program 1\n"
_PACKAGE = Path(__file__).resolve().parents[1]
_folder: Path | None = None
_loaded: dict = {}
_not_exportable: set = set()


def store_in(folder: Path | None) -> None:
    """Store programs in ``folder`` from now on (None: stop storing); called by
    :func:`gradscope.enable_compilation_cache` with its cache folder."""
    global _folder
    _folder = None if folder is None else Path(folder) / FOLDER_NAME
    _loaded.clear()
    _not_exportable.clear()


def store_folder() -> Path | None:
    """The folder programs are stored in, or None when the store is off (the cache is off)."""
    return _folder


def stored_call(fn, *args, identity: str | None = None, compiler_options: dict | None = None):
    """``fn(*args)``, through a stored program when the store is on and the call can be named.

    Args:
        fn: a function of arrays (pytrees of arrays) that ``jax.jit`` can trace.
        *args: its arguments; every leaf a concrete array on one device.
        identity: what ``fn`` computes, as a string that changes whenever its result
            could (see :func:`identity_of`); default ``identity_of(fn)``. None there:
            ``fn`` runs as usual.
        compiler_options: XLA options for compiling the stored program.

    Returns:
        What ``fn(*args)`` returns.
    """
    if _folder is None:
        return fn(*args)
    identity = identity_of(fn) if identity is None else identity
    leaves, in_tree = jax.tree_util.tree_flatten(args)
    environment = _environment()
    if identity is None or environment is None or not all(_storable(leaf) for leaf in leaves):
        return fn(*args)
    signature = (identity, in_tree, tuple(_aval(leaf) for leaf in leaves),
                 repr(sorted((compiler_options or {}).items())), environment)
    program = _loaded.get(signature) or _program(fn, args, signature, compiler_options)
    if program is None:
        return fn(*args)
    _loaded[signature] = program
    call, out_tree = program
    return jax.tree_util.tree_unflatten(out_tree, call(*leaves))


def _storable(leaf) -> bool:
    return (isinstance(leaf, (jax.Array, np.ndarray)) and _checks.is_concrete(leaf)
            and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.extended)
            and (isinstance(leaf, np.ndarray) or len(leaf.devices()) == 1))


def _aval(leaf) -> tuple:
    return tuple(leaf.shape), str(leaf.dtype), bool(getattr(leaf, "weak_type", False))


def _program(fn, args, signature, compiler_options):
    """``(compiled call of flat leaves, output tree)`` read from the store or exported into it; None if
    ``fn`` cannot be exported (a host callback, say)."""
    if signature in _not_exportable:
        return None
    path = _folder / f"{_digest(signature)}.jaxprog"
    found = _read(path)
    if found is None:
        try:
            found = _export(fn, args)
            entry = _entry(*found)
        except Exception:  # noqa: BLE001 - not exportable: the caller runs fn itself (and raises its own errors)
            _not_exportable.add(signature)
            return None
        _write(path, entry)
    exported, out_tree = found
    _kernels_ready()
    return jax.jit(exported.call, compiler_options=compiler_options), out_tree


@functools.lru_cache(maxsize=None)
def _kernels_ready() -> None:
    """Set up JAX's CPU LAPACK kernels, which a stored program can call before anything in this process has
    lowered a LAPACK call (what sets them up). Recent JAX does this itself when it calls an exported program;
    JAX 0.8 does not, and the program then crashes the process."""
    if jax.default_backend() == "cpu":
        from jaxlib import lapack

        lapack.prepare_lapack_call("geqrf_ffi", np.float32)


def _export(fn, args):
    leaves, in_tree = jax.tree_util.tree_flatten(args)
    structure = {}

    def flat(*flat_args):
        out_leaves, structure["out"] = jax.tree_util.tree_flatten(fn(*jax.tree_util.tree_unflatten(in_tree, flat_args)))
        return out_leaves

    exported = jax.export.export(jax.jit(flat))(*leaves)
    return exported, structure["out"]


def _read(path: Path):
    """``(exported, output tree)`` from ``path``, or None if it is missing or unreadable (then written anew)."""
    try:
        blob = path.read_bytes()
        if not blob.startswith(_MAGIC):
            return None
        start = len(_MAGIC) + 8
        size = int.from_bytes(blob[len(_MAGIC):start], "little")
        out_tree = pickle.loads(blob[start:start + size])
        return jax.export.deserialize(bytearray(blob[start + size:])), out_tree
    except Exception:  # noqa: BLE001 - a missing, truncated or foreign file is a cache miss
        return None


def _entry(exported, out_tree) -> bytes:
    tree = pickle.dumps(out_tree, protocol=pickle.HIGHEST_PROTOCOL)
    return _MAGIC + len(tree).to_bytes(8, "little") + tree + exported.serialize()


def _write(path: Path, blob: bytes) -> None:
    """Write atomically (a reader sees the whole entry or none); a full or read-only disk only costs the entry."""
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(blob)
        os.replace(partial, path)
    except OSError:
        if partial is not None:
            with contextlib.suppress(OSError):
                os.unlink(partial)


def _digest(signature) -> str:
    identity, in_tree, *rest = signature
    return hashlib.sha256(repr((_MAGIC, identity, str(in_tree), *rest)).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def _source_hash() -> str:
    """A hash of every module of gradscope: an edited or upgraded gradscope never reads an old entry."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _environment() -> tuple | None:
    """What else a program depends on: gradscope's source and name tables, JAX's version, backend and
    configuration; None when a name table holds a function of yours (see :func:`_registries`)."""
    import jaxlib

    registries = _registries()
    if registries is None:
        return None
    config = tuple(sorted((name, repr(value)) for name, value in jax.config.values.items()))
    return _source_hash(), registries, jax.__version__, jaxlib.__version__, jax.default_backend(), config


def _registries() -> tuple | None:
    """What gradscope's name tables (activations, initializers) hold, or None if one holds a function that is
    neither gradscope's nor JAX's: a name such as ``activation="tanh"`` only pins down what a program computes
    while these tables hold what gradscope ships (or other named functions, which the key then records)."""
    from gradscope import initializers
    from gradscope.cells import classic

    entries = []
    for table, contents in (("activations", classic.ACTIVATIONS), ("initializers", initializers._FACTORIES)):
        for name, function in contents.items():
            module = getattr(function, "__module__", None) or ""
            if not (_ours(function) or module == "jax" or module.startswith("jax.")):
                return None
            entries.append((table, name, module, getattr(function, "__qualname__", "")))
    return tuple(entries) + tuple(sorted(initializers._ALIASES.items()))


_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def identity_of(value) -> str | None:
    """A string naming ``value`` completely, or None if gradscope cannot name it.

    Named: plain values (None, numbers, strings), dtypes, tuples, lists and dicts of named
    values, and gradscope's own functions, methods, ``functools.partial`` objects and
    dataclasses (cells) whose fields are named. Their code is in :func:`_source_hash`, so
    the name and the source together fix what they compute. Anything else (a lambda, a
    callable of yours, an array) is None.
    """
    if isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return f"dtype({np.dtype(value).name})"
    if isinstance(value, (tuple, list)):
        return _named_sequence(value)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return None
        return _joined("dict", [value[key] for key in sorted(value)], sorted(value))
    if isinstance(value, functools.partial):
        keys = sorted(value.keywords)
        return _joined("partial", [value.func, *value.args, *(value.keywords[key] for key in keys)],
                       ["func", *[""] * len(value.args), *keys])
    if inspect.ismethod(value):
        return _joined("method", [value.__self__, value.__func__], ["self", "func"])
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and _ours(type(value)):
        fields = [field.name for field in dataclasses.fields(value)]
        return _joined(_qualified(type(value)), [getattr(value, name) for name in fields], fields)
    function = inspect.unwrap(value) if callable(value) else None
    if function is not None and _ours(function) and "<locals>" not in function.__qualname__:
        return _qualified(function)
    return None


def _named_sequence(value) -> str | None:
    kind = type(value)
    if kind not in (tuple, list) and not (hasattr(value, "_fields") and _ours(kind)):
        return None
    return _joined(_qualified(kind), list(value), list(getattr(value, "_fields", [""] * len(value))))


def _joined(name: str, values, labels) -> str | None:
    parts = [identity_of(item) for item in values]
    if any(part is None for part in parts):
        return None
    return f"{name}(" + ", ".join(f"{label}={part}" if label else part for label, part in zip(labels, parts)) + ")"


def _ours(thing) -> bool:
    module = getattr(thing, "__module__", None) or ""
    return module == "gradscope" or module.startswith("gradscope.")


def _qualified(thing) -> str:
    return f"{thing.__module__}.{thing.__qualname__}"
