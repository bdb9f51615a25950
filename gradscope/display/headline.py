"""How every gradscope result shows itself: one protocol, one renderer.

A result class mixes in :class:`Readable` and implements one method, ``_headline()``,
returning a :class:`Headline`: its name, a few lines of facts (shape, lags,
settings) and a small table of its headline numbers (rates, horizons, verdicts...).
:class:`Readable` turns that into

* ``repr(result)``: a few lines of text (the facts, then the table, at most
  :data:`MAX_TEXT_ROWS` rows), never the arrays themselves;
* ``result._repr_html_()`` (what Jupyter shows): the same facts and table as HTML,
  followed by the figures the headline names, drawn by :mod:`gradscope.plotting`.

Both renderers live in :mod:`gradscope.display.reprs` and are imported only when a
result is shown, so a result module imports nothing but this small module. A result
that is a JAX pytree can hold tracers (inside ``jit``/``vmap``/``grad``) or shape
placeholders (``jax.eval_shape``): its repr then lists the shapes and dtypes of its
fields instead of numbers, and ``_headline()`` is never called.

To make a new result readable::

    @dataclasses.dataclass(frozen=True, repr=False)   # repr=False: keep Readable's
    class MyResult(Readable):
        ...
        def _headline(self) -> Headline:
            return Headline("MyResult", (f"n = {self.n}",), {"rate": [self.rate]},
                            figures=("plot_something",))

``figures`` names functions of :mod:`gradscope.plotting` that take the result as
their only argument. A tidy ``to_dataframe()`` (one row per observation) is the other
half of the contract; :func:`long_table` builds one from arrays with named axes.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Headline", "MAX_TEXT_ROWS", "Readable", "batch_index_columns", "batched_table", "lag_range", "long_table"]

MAX_TEXT_ROWS = 8
"""Rows of the headline table that ``repr`` shows (the HTML shows up to 16)."""


class Headline(NamedTuple):
    """What a result shows first.

    Attributes:
        kind: the result's name, e.g. ``"Spectra"``.
        facts: short lines of text (shape, lags, settings), each under about 100 characters.
        table: the headline numbers, one row per configuration: ``{name: sequence}`` of
            equal lengths or a pandas DataFrame (built when the result is shown), or None.
        figures: names of :mod:`gradscope.plotting` functions that draw the result
            (called with the result alone) for the HTML display.
    """

    kind: str
    facts: tuple = ()
    table: dict | None = None
    figures: tuple = ()


class Readable:
    """Mixin giving a result a short ``repr`` and a Jupyter ``_repr_html_`` from its ``_headline()``.

    Dataclasses that mix it in must pass ``repr=False`` to ``dataclasses.dataclass``
    (otherwise the generated repr, every array in full, replaces this one).
    """

    __slots__ = ()

    def _headline(self) -> Headline:
        raise NotImplementedError(f"{type(self).__name__} must implement _headline()")

    def __repr__(self) -> str:
        from gradscope.display.reprs import headline_text

        return headline_text(self)

    def _repr_html_(self) -> str:
        """Jupyter display: facts, headline table and figures (see :mod:`gradscope.display.headline`)."""
        from gradscope.display.reprs import headline_html

        return headline_html(self)


def batch_index_columns(batch_shape: tuple) -> dict:
    """Named axes ``batch_0, batch_1, ...`` (integer indices) for the leading batch axes of a result."""
    return {f"batch_{axis}": range(size) for axis, size in enumerate(batch_shape)}


def long_table(axes: dict, columns: dict):
    """A tidy DataFrame: one row per combination of the ``axes`` values (first axis slowest).

    Args:
        axes: ``{name: values}``, the named axes in order; they become the leading columns.
        columns: ``{name: array}``, each broadcastable to the axes' shape (a scalar, or
            an array with the leading axes and size-1 axes elsewhere).

    Returns:
        A pandas DataFrame with the axis columns, then ``columns``, in order.
    """
    import numpy as np
    import pandas as pd

    values = [np.asarray(list(v)) for v in axes.values()]
    shape = tuple(len(v) for v in values)
    grid = np.meshgrid(*values, indexing="ij") if values else []
    table = {name: g.ravel() for name, g in zip(axes, grid)}
    for name, column in columns.items():
        array = np.asarray(column)
        table[name] = np.broadcast_to(array.reshape(array.shape + (1,) * (len(shape) - array.ndim)), shape).ravel()
    return pd.DataFrame(table)


def batched_table(batch_shape: tuple, columns: dict):
    """One row per batch entry: ``batch_0, ...`` index columns, then ``columns`` (each of ``batch_shape`` size).

    An unbatched result (``batch_shape == ()``) gets one row and no index columns.
    """
    import numpy as np

    return long_table(batch_index_columns(batch_shape),
                      {name: np.reshape(np.asarray(values), batch_shape) for name, values in columns.items()})


def lag_range(lags) -> str:
    """``"61 lags (0..60)"``: how many lags and their range, for a headline fact."""
    lags = list(lags)
    return f"{len(lags)} lag{'s' if len(lags) != 1 else ''} ({lags[0]}..{lags[-1]})" if lags else "no lags"
