"""Redrawing a plotly FigureWidget so that every frontend sees the result, Voila included.

plotly's FigureWidget sends each edit as a one-off message and keeps its synced state
(`_widget_data`, `_widget_layout`) only as of its creation, refreshing it when the figure itself is
displayed. A figure inside a VBox is never displayed itself, and Voila's page connects only after the
notebook has run, so edits made before then were lost (an empty figure). Syncing the state after
each redraw makes the last drawing the one any page, loaded now or later, shows.

A FigureWidget's view also draws once, at the width it first finds, and then ignores the window: narrowing
the page from 1,400 to 800 px cut off the right-hand (contour) panel until a reload. `live_figure` makes
figures that follow the page.
"""

from __future__ import annotations

from copy import deepcopy

import plotly.graph_objects as go


def live_figure(figure: go.Figure | None = None) -> go.FigureWidget:
    """A FigureWidget redrawn to its container's width whenever the window is resized (plotly's `responsive`
    config with `autosize`; no fixed width, so the page's width decides)."""
    widget = go.FigureWidget(figure)
    widget.layout.autosize, widget.layout.width = True, None
    widget._config = {**widget._config, "responsive": True}
    return widget


def sync_state(figure: go.FigureWidget) -> None:
    """Push the figure's current traces and layout into the widget's synced state (what a new view draws)."""
    figure._widget_layout = deepcopy(figure._layout_obj._props)
    figure._widget_data = deepcopy(figure._data)
