"""Training experiments: does the diagnosis at initialization predict learning?

* :mod:`gradscope.training.experiments`: copy and adding tasks, horizon experiments
  (re-exported here).
* :mod:`gradscope.training.clipping`: gradient clipping studies.
* :mod:`gradscope.training.monitor`: :class:`~gradscope.training.monitor.Monitor`, the
  diagnostics every N steps of your own training loop (also ``gradscope.Monitor``).
"""

from gradscope.training.experiments import *  # noqa: F401,F403  (the namespace re-exports the experiments API)
from gradscope.training.experiments import __all__ as _experiments_all

__all__ = list(_experiments_all)
