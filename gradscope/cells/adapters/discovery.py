"""Find the recurrent layers of a whole Flax (nnx, linen) or Equinox model, and what each one sees.

:func:`discover` runs the model's own forward pass once with every recurrent cell
instrumented: each call of a cell reports its carry, its input and its new carry to
the host (``jax.debug.callback``, ordered), wherever the cell is called from: inside
``nnx.RNN``, ``linen.RNN``, a ``lax.scan`` of your own, a Python loop, under
``jit`` or ``vmap``. The calls give, for each layer in the order the model runs
them, the inputs it actually saw, its initial carry and its carries after each step.

What counts as a recurrent cell:

* Flax nnx: instances of ``nnx.RNNCellBase`` (``LSTMCell``, ``GRUCell``, ...);
* Flax linen: instances of ``nn.RNNCellBase``, found while ``model.apply`` runs
  (``nn.intercept_methods``);
* Equinox: ``eqx.nn.LSTMCell`` and ``eqx.nn.GRUCell``;

plus any class passed as ``cell_types`` (your own cells; a cell inside another found
cell is part of it, not a layer of its own). Cells are instrumented only while the
forward pass runs and are restored afterwards (nnx cells by a temporary subclass,
Equinox models by a modified copy; linen through Flax's method interceptor).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gradscope.cells.adapters.equinox import from_equinox
from gradscope.cells.adapters.flax import from_flax
from gradscope.cells.stacked import Stacked, output_of

__all__ = ["Layer", "ModelLayers", "Recording", "discover", "library_of"]

_LOOKED_FOR = (
    "Flax nnx cells (nnx.RNNCellBase subclasses such as nnx.LSTMCell, also inside nnx.RNN), Flax linen cells "
    "(nn.RNNCellBase subclasses, also inside nn.RNN), Equinox eqx.nn.LSTMCell / eqx.nn.GRUCell, and the "
    "classes given as cell_types")
_STEP_HINT = ("for a recurrence written by hand, write one step as step(params, h, x) -> h_next and call "
              "gradscope.jacobian_spectra(step, params, xs, h0)")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """One recurrent layer of a model.

    Attributes:
        name: where it lives: the attribute path for nnx and Equinox (``"encoder.layers[0].cell"``),
            the variables path for linen (``"RNN_0/cell"``).
        cell: the cell behind gradscope's cell interface (an adapter); its parameters in a
            given model come from :meth:`ModelLayers.params`.
        path: the keys that lead to the cell from the model (or, for linen, from ``variables["params"]``).
    """

    name: str
    cell: Any
    path: tuple


@dataclasses.dataclass(frozen=True)
class Recording:
    """What one forward pass showed, layer by layer (in the order the model first called them).

    ``S`` is the number of sequences (the batch, flattened; 1 for an unbatched call)
    and ``T`` the number of steps the layer ran.

    Attributes:
        inputs: per layer, ``[S, T, input_size]``: the inputs the layer saw.
        initial: per layer, its first carry, each leaf ``[S, ...]``.
        states: per layer, its carry after each step, each leaf ``[S, T, ...]``.
    """

    inputs: tuple
    initial: tuple
    states: tuple


@dataclasses.dataclass(frozen=True, eq=False)
class ModelLayers:
    """The recurrent layers :func:`discover` found in a model, and how to read their parameters.

    Attributes:
        library: ``"flax.nnx"``, ``"flax.linen"`` or ``"equinox"``.
        layers: the layers, in the order the forward pass runs them.
        chained: True when each layer's inputs are, step by step, the outputs of the
            layer below (then the layers form one :class:`~gradscope.cells.Stacked` recurrence).
        notes: what a user should know about the discovery (why the layers are not
            chained, a layer restarted within the forward pass, ...).
    """

    library: str
    layers: tuple
    chained: bool
    notes: tuple
    finder: Any = dataclasses.field(repr=False)

    @property
    def names(self) -> tuple:
        """The layers' names."""
        return tuple(layer.name for layer in self.layers)

    def stack(self) -> Stacked:
        """The layers as one recurrence (meaningful when :attr:`chained`)."""
        return Stacked(tuple(layer.cell for layer in self.layers))

    def params(self, state) -> tuple:
        """Each layer's parameters in ``state`` (a model of the same architecture; linen: its variables)."""
        return tuple(self.finder.params(state, layer.path) for layer in self.layers)

    def record(self, state, xs) -> Recording:
        """Run the forward pass of ``state`` (same architecture) on ``xs`` and record every layer again."""
        calls = self.finder.run(state, xs)
        missing = [layer.name for layer in self.layers if layer.path not in calls]
        if missing:
            raise ValueError(f"the forward pass on these inputs did not call the layers {missing}")
        return _recording([_sequences(calls[layer.path])[0] for layer in self.layers])


def discover(model, xs, *, variables=None, forward: Callable | None = None, cell_types=()):
    """Find the recurrent layers of ``model`` and record what each one sees on ``xs``.

    Args:
        model: a Flax nnx module, a Flax linen module (with ``variables``, or bound) or
            an Equinox module.
        xs: what the model takes: ``model(xs)`` (linen: ``model.apply(variables, xs)``).
        variables: a linen model's variables.
        forward: how to run the model, if not as above: ``forward(model, xs)`` (nnx,
            Equinox) or ``forward(variables, xs)`` (linen).
        cell_types: extra classes to treat as recurrent cells (your own cells).

    Returns:
        ``(ModelLayers, Recording)``.

    Raises:
        TypeError: ``model`` is none of the above.
        ValueError: no recurrent cell in the model, or none called by the forward pass.
    """
    library = library_of(model)
    _refuse_a_cell(model, library, tuple(cell_types))
    finder, state = _FINDERS[library].create(model, variables, forward, tuple(cell_types))
    calls = finder.run(state, xs)
    if not calls:
        raise ValueError(f"diagnose found no recurrent layer in {type(model).__name__}: the forward pass on xs "
                         f"called none. It looked for {_LOOKED_FOR}. Pass cell_types=(YourCell,) for your own "
                         f"cell class, or {_STEP_HINT}")
    runs = {}
    notes = [f"{finder.name(path)} is a recurrent cell of the model that the forward pass on xs did not call"
             for path in getattr(finder, "paths", ()) if path not in calls]
    for path, records in calls.items():
        runs[path], restarted = _sequences(records)
        if restarted:
            steps = np.shape(runs[path][0])[1]
            notes.append(f"{finder.name(path)} was started afresh within the forward pass (called on several "
                         f"sequences in turn, or reset); only its first run of {steps} steps is used")
    layers = tuple(Layer(finder.name(path), finder.adapter(path, runs[path]), path) for path in calls)
    recording = _recording([runs[layer.path] for layer in layers])
    chained, why = _chained(layers, recording)
    notes += [why] if why else []
    return ModelLayers(library, layers, chained, tuple(notes), finder), recording


def library_of(model) -> str:
    """``"flax.nnx"``, ``"flax.linen"`` or ``"equinox"``: which library ``model`` belongs to.

    Raises:
        TypeError: none of them (with what is accepted instead).
    """
    if "flax" in sys.modules:
        if isinstance(model, importlib.import_module("flax.nnx").Module):
            return "flax.nnx"
        if isinstance(model, importlib.import_module("flax.linen").Module):
            return "flax.linen"
    if "equinox" in sys.modules and isinstance(model, importlib.import_module("equinox").Module):
        return "equinox"
    raise TypeError(f"expected a Flax nnx module, a Flax linen module (with its variables) or an Equinox module, "
                    f"got {type(model).__name__}; for one cell use gradscope.cells.from_flax/from_equinox with "
                    f"jacobian_spectra, and {_STEP_HINT}")


# ---------------------------------------------------------------------------------------------
# Turning the recorded calls into sequences
# ---------------------------------------------------------------------------------------------

class _Log:
    """The calls of each cell, as host arrays ``(carry, input, new carry)``, keyed by the cell's path.

    A cell's call sends its arrays with an ordered ``jax.debug.callback`` that appends
    them to the log active when the callback *runs* (so a compiled forward pass cached
    from an earlier recording reports to the current one).
    """

    active: _Log | None = None

    def __init__(self):
        self.calls: dict[tuple, list] = {}

    @contextlib.contextmanager
    def activated(self):
        """Make this the log that recorded calls go to."""
        previous, _Log.active = _Log.active, self
        try:
            yield self
        finally:
            _Log.active = previous

    @staticmethod
    def record(path, carry, x, new_carry) -> None:
        """Send one call (inside any trace) to the host, in order with the other calls."""
        jax.debug.callback(functools.partial(_Log._keep, path), carry, x, new_carry, ordered=True)

    @staticmethod
    def _keep(path, *arrays) -> None:
        if _Log.active is not None:
            _Log.active.calls.setdefault(path, []).append(jax.tree_util.tree_map(np.asarray, arrays))


def _same(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _stride(records) -> int | None:
    """How many sequences ran in lockstep (a ``vmap`` calls the cell once per sequence and step), or None."""
    count = len(records)
    for stride in range(1, count):
        if count % stride == 0 and all(_same(records[t + stride][0], records[t][2]) for t in range(count - stride)):
            return stride
    return 1 if count == 1 else None


def _sequences(records) -> tuple[tuple, bool]:
    """``((inputs [S, T, F], initial carry [S, ...], carries [S, T, ...]), restarted)`` from one cell's calls.

    Calls interleaved by a ``vmap`` become separate sequences; a cell whose carry does
    not continue from one call to the next (it was run again) keeps its first run.
    """
    stride = _stride(records)
    restarted = stride is None
    if restarted:
        run = next((t for t in range(1, len(records)) if not _same(records[t][0], records[t - 1][2])), len(records))
        records, stride = records[:run], 1
    carry0, x0, _ = records[0]
    batch = np.shape(x0)[:-1]

    def stack(index):  # [N, *batch, ...] with N = T * stride  ->  [stride * batch, T, ...]
        def one(*leaves):
            a = np.stack(leaves).reshape(len(records) // stride, stride, *np.shape(leaves[0]))
            a = np.moveaxis(a, 0, 1 + len(batch))
            return a.reshape(-1, *a.shape[1 + len(batch):])
        return jax.tree_util.tree_map(one, *[r[index] for r in records])

    initial = jax.tree_util.tree_map(lambda a: a[:, 0], stack(0))
    return (stack(1), initial, stack(2)), restarted


def _recording(runs) -> Recording:
    return Recording(*(tuple(run[i] for run in runs) for i in range(3)))


def _chained(layers, recording) -> tuple[bool, str | None]:
    """Whether each layer's inputs are the outputs of the layer below, and if not, why."""
    for below, above, carries, inputs in zip(layers, layers[1:], recording.states, recording.inputs[1:]):
        outputs = np.asarray(output_of(below.cell, carries))
        if outputs.shape != np.shape(inputs):
            return False, (f"{above.name} does not take the outputs of {below.name} step by step (its inputs are "
                           f"{np.shape(inputs)}, the outputs below {outputs.shape}, as [sequences, steps, size]); "
                           "the layers are analysed one by one, not as one stack")
        scale = max(float(np.max(np.abs(outputs), initial=0.0)), 1.0)
        if not np.allclose(inputs, outputs, rtol=1e-5, atol=1e-6 * scale):
            return False, (f"{above.name} sees something other than the outputs of {below.name} (a layer "
                           "between them, dropout, a reversed direction, ...); the layers are analysed one by "
                           "one, not as one stack: write the stacked step yourself for that")
    return True, None


# ---------------------------------------------------------------------------------------------
# Per library: finding the cells, instrumenting them, reading their parameters
# ---------------------------------------------------------------------------------------------

def _walk(node, path):
    """Follow ``(kind, key)`` steps: attributes, or items (nnx containers name both alike, hence the fallback)."""
    for kind, key in path:
        node = getattr(node, key) if kind == "attr" and hasattr(node, key) else node[key]
    return node


def _attribute_name(path) -> str:
    text = "".join(f".{key}" if kind == "attr" else f"[{key!r}]" for kind, key in path)
    return text.lstrip(".")


def _inside_another(path, paths) -> bool:
    return any(other != path and path[:len(other)] == other for other in paths)


@dataclasses.dataclass(eq=False)
class _ModuleFinder:
    """Models that hold their cells (nnx, Equinox): the cells are found in the model before it runs.

    Attributes:
        model: the model as given (its cells make the adapters).
        forward: ``forward(model, xs)``.
        paths: where the cells are, as ``(kind, key)`` steps (see :func:`_walk`).
    """

    model: Any
    forward: Callable
    paths: tuple

    @classmethod
    def create(cls, model, variables, forward, cell_types):
        paths = cls.find(model, cell_types)
        _need_cells(paths, model)
        return cls(model, forward or (lambda m, xs: m(xs)), paths), model

    def name(self, path) -> str:
        return _attribute_name(path)


class _NNX(_ModuleFinder):
    """nnx: cells found in the module graph; instrumented by a temporary recording subclass."""

    library = "flax.nnx"

    @staticmethod
    def find(model, cell_types) -> tuple:
        nnx = importlib.import_module("flax.nnx")
        kinds = (nnx.RNNCellBase, *cell_types)
        found = [tuple(("item" if isinstance(k, int) else "attr", k) for k in path)
                 for path, node in nnx.iter_graph(model) if isinstance(node, kinds)]
        return tuple(p for p in found if not _inside_another(p, found))

    def run(self, model, xs) -> dict:
        cells = [_walk(model, path) for path in self.paths]
        with _Log().activated() as log, _recording_classes(cells, self.paths, self.library):
            _call_forward(self.forward, model, xs)
        return log.calls

    def adapter(self, path, run):
        return _adapted(lambda: from_flax(_walk(self.model, path)), self.name(path))

    def params(self, model, path):
        nnx = importlib.import_module("flax.nnx")
        return nnx.state(_walk(model, path), nnx.Param)


_RECORDING_CLASSES: dict = {}
_CALL_CONVENTIONS = {  # (call arguments, result) -> (carry, input, new carry)
    "flax.nnx": lambda args, out: (args[0], args[1], out[0]),  # carry, y = cell(carry, x)
    "flax.linen": lambda args, out: (args[0], args[1], out[0]),
    "equinox": lambda args, out: (args[1], args[0], out),  # hidden = cell(input, hidden)
}


def _recording_class(cls, path, library):
    """A subclass of ``cls`` whose ``__call__`` also records each call under ``path`` (made once, reused).

    It keeps the class name and ``isinstance`` checks of the model's own code, and being
    the same class at every recording, lets compiled forward passes be reused.
    """
    if (cls, path) not in _RECORDING_CLASSES:
        def __call__(self, *args, **kwargs):
            out = cls.__call__(self, *args, **kwargs)
            _Log.record(path, *_CALL_CONVENTIONS[library](args, out))
            return out
        _RECORDING_CLASSES[cls, path] = type(cls.__name__, (cls,), {"__call__": __call__})
    return _RECORDING_CLASSES[cls, path]


@contextlib.contextmanager
def _recording_classes(cells, paths, library):
    """nnx cells are graph nodes the model may share: give them the recording class in place, then restore."""
    originals = [type(cell) for cell in cells]
    try:
        for cell, path in zip(cells, paths):
            object.__setattr__(cell, "__class__", _recording_class(type(cell), path, library))
        yield
    finally:
        for cell, original in zip(cells, originals):
            object.__setattr__(cell, "__class__", original)


@dataclasses.dataclass(eq=False)
class _Linen:
    """linen: cells found while ``apply`` runs, through Flax's method interceptor."""

    forward: Callable
    kinds: tuple
    modules: dict = dataclasses.field(default_factory=dict)
    library = "flax.linen"

    @classmethod
    def create(cls, model, variables, forward, cell_types):
        linen = importlib.import_module("flax.linen")
        if getattr(model, "scope", None) is not None:  # a bound module carries its variables
            model, variables = model.unbind()
        if variables is None:
            raise ValueError(f"a linen model holds no parameters: pass its variables, "
                             f"diagnose({type(model).__name__}(...), xs, variables=variables)")
        return cls(forward or (lambda v, xs: model.apply(v, xs)), (linen.RNNCellBase, *cell_types)), variables

    def name(self, path) -> str:
        return "/".join(str(key) for _, key in path)

    def run(self, variables, xs) -> dict:
        linen, depth = importlib.import_module("flax.linen"), [0]

        def intercept(next_fun, args, kwargs, context):
            module = context.module
            if context.method_name != "__call__" or not isinstance(module, self.kinds) or depth[0]:
                return next_fun(*args, **kwargs)
            path = tuple(("item", key) for key in module.scope.path)
            self.modules.setdefault(path, module.clone(parent=None))
            depth[0] += 1
            try:
                out = next_fun(*args, **kwargs)
            finally:
                depth[0] -= 1
            _Log.record(path, *_CALL_CONVENTIONS[self.library](args, out))
            return out

        with _Log().activated() as log, linen.intercept_methods(intercept):
            _call_forward(self.forward, variables, xs)
        return log.calls

    def adapter(self, path, run):
        return _adapted(lambda: from_flax(self.modules[path]), self.name(path))

    def params(self, variables, path):
        return {"params": _walk(variables["params"], path)}


class _Equinox(_ModuleFinder):
    """Equinox: cells found in the pytree; instrumented in a copy of the model (``eqx.tree_at``)."""

    library = "equinox"

    @staticmethod
    def find(model, cell_types) -> tuple:
        eqx = importlib.import_module("equinox")
        kinds = (eqx.nn.LSTMCell, eqx.nn.GRUCell, *cell_types)
        leaves = jax.tree_util.tree_flatten_with_path(model, is_leaf=lambda node: isinstance(node, kinds))[0]
        return tuple(_equinox_path(path) for path, node in leaves if isinstance(node, kinds))

    def run(self, model, xs) -> dict:
        eqx = importlib.import_module("equinox")
        where = lambda m: [_walk(m, path) for path in self.paths]  # noqa: E731
        recorders = [_recording_copy(cell, path, self.library) for cell, path in zip(where(model), self.paths)]
        with _Log().activated() as log:
            _call_forward(self.forward, eqx.tree_at(where, model, recorders), xs)
        return log.calls

    def adapter(self, path, run):
        carry = ("h",) if len(jax.tree_util.tree_leaves(run[1])) == 1 else ("h", "c")
        return _adapted(lambda: from_equinox(_walk(self.model, path), carry=carry), self.name(path))

    def params(self, model, path):
        eqx = importlib.import_module("equinox")
        return eqx.filter(_walk(model, path), eqx.is_array)


def _equinox_path(path) -> tuple:
    keys = []
    for entry in path:
        if isinstance(entry, jax.tree_util.GetAttrKey):
            keys.append(("attr", entry.name))
        elif isinstance(entry, (jax.tree_util.SequenceKey, jax.tree_util.DictKey)):
            keys.append(("item", entry.idx if isinstance(entry, jax.tree_util.SequenceKey) else entry.key))
        else:
            raise TypeError(f"cannot follow the pytree path {jax.tree_util.keystr(path)} to a cell")
    return tuple(keys)


def _recording_copy(cell, path, library):
    """An Equinox cell is an immutable pytree: a copy of it with the recording class stands in for it."""
    copy = object.__new__(_recording_class(type(cell), path, library))
    copy.__dict__.update(cell.__dict__)
    return copy


_FINDERS = {"flax.nnx": _NNX, "flax.linen": _Linen, "equinox": _Equinox}


def _refuse_a_cell(model, library, cell_types) -> None:
    """A bare cell is one step, not a model that runs over a sequence: point to the cell API instead."""
    kinds = {"flax.nnx": ("flax.nnx", "RNNCellBase"), "flax.linen": ("flax.linen", "RNNCellBase"),
             "equinox": ("equinox.nn", "LSTMCell", "GRUCell")}[library]
    module = importlib.import_module(kinds[0])
    if isinstance(model, (*(getattr(module, k) for k in kinds[1:]), *cell_types)):
        wrap = "from_equinox" if library == "equinox" else "from_flax"
        raise TypeError(f"{type(model).__name__} is a single recurrent cell, not a model that runs over a "
                        f"sequence: wrap it with adapted = gradscope.cells.{wrap}(cell) and use "
                        "gradscope.jacobian_spectra(adapted, adapted.params, xs), or "
                        "gradscope.Monitor(adapted, xs, params=adapted.params) while training")


def _need_cells(paths, model) -> None:
    if not paths:
        raise ValueError(f"diagnose found no recurrent cell in {type(model).__name__}; it looked for {_LOOKED_FOR}. "
                         f"Pass cell_types=(YourCell,) for your own cell class, or {_STEP_HINT}")


def _adapted(make, name):
    try:
        return make()
    except (TypeError, ValueError) as err:
        raise TypeError(f"the recurrent layer {name} cannot be wrapped for gradscope: {err}; {_STEP_HINT}") from err


def _call_forward(forward, state, xs) -> None:
    try:
        jax.block_until_ready(forward(state, xs))
        jax.effects_barrier()
    except Exception as err:  # noqa: BLE001 - re-raised with the context a user needs
        raise RuntimeError(f"running the model on xs to find what each recurrent layer sees failed: "
                           f"{type(err).__name__}: {err}. Check that the model takes xs as given (pass "
                           "forward=... if it needs other arguments)") from err

