"""Showing results to people: Jupyter displays and the HTML/Markdown report.

* :mod:`gradscope.display.reprs`: ``_repr_html_`` of result objects (re-exported here).
* :mod:`gradscope.display.report`: the report folder ``gradscope compare`` writes.

Nothing here computes: it formats the result objects' own tables and figures.
"""

from gradscope.display.reprs import *  # noqa: F401,F403
from gradscope.display.reprs import __all__ as _reprs_all

__all__ = list(_reprs_all)
