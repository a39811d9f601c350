"""Figures for the book: plotly everywhere.

Chapters end a cell with `show(fig)`. Live, plotly's own renderer draws it; in the static book the
`sharpness.book.PlotlyMimeRenderer` plugin turns plotly's output into HTML, and the build check counts
`show(` calls per chapter against the figures that reached the page.
"""

from __future__ import annotations

import plotly.graph_objects as go


def show(figure: go.Figure) -> go.Figure:
    """Display `figure` (use as the last expression of a cell); a single, countable way to show figures."""
    if not isinstance(figure, go.Figure):
        raise TypeError(f"show() takes a plotly Figure, got {type(figure).__name__}")
    return figure
