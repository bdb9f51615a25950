"""What theory predicts, and where measurements meet it.

* :mod:`gradscope.theory.meanfield`: mean field, exact linear results, bounds
  (re-exported here, so ``gradscope.theory.mean_field`` is the function).
* :mod:`gradscope.theory.calibrate`: the critical gain of a cell, measured.
* :mod:`gradscope.theory.phase`: phase diagrams of measured rates against mean field.
* :mod:`gradscope.theory.memory`: closed forms for the curse of memory in linear diagonal recurrences.
"""

from gradscope.theory.meanfield import *  # noqa: F401,F403  (the namespace re-exports the mean-field API)
from gradscope.theory.meanfield import __all__ as _meanfield_all

__all__ = list(_meanfield_all)
