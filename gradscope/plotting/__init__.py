"""Figures from gradscope results. Plot functions take result objects or tables and return a Figure.

They never compute: every number drawn comes from :mod:`gradscope`'s analysis API.
"""

from gradscope.plotting.style import COLUMN_WIDTH, FULL_WIDTH, PALETTE, color, new_axes, save_figure, style

__all__ = ["COLUMN_WIDTH", "FULL_WIDTH", "PALETTE", "color", "new_axes", "save_figure", "style"]
