"""Figures for the book: plotly everywhere, shown so that they survive a static HTML build.

plotly >= 6 in a headless kernel emits only its own mime type, which the book's HTML builder drops.
`show` therefore emits the figure as self-contained HTML (a div and a `Plotly.newPlot` call, relying on
the plotly.js the book ships in `_static`), next to plotly's own mime type for live JupyterLab.
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
import plotly.io as pio

PLOTLY_MIME = "application/vnd.plotly.v1+json"


class BookFigure:
    """Wraps a figure; Jupyter and the book builder call `_repr_mimebundle_` to display it."""

    def __init__(self, figure: go.Figure):
        self.figure = figure

    def _repr_mimebundle_(self, include=None, exclude=None):
        html = pio.to_html(
            self.figure, include_plotlyjs=False, full_html=False, config={"responsive": True}
        )
        return {
            PLOTLY_MIME: json.loads(pio.to_json(self.figure, validate=False)),
            "text/html": html,
        }


def show(figure: go.Figure) -> BookFigure:
    """Display `figure` in the book and in live notebooks (use as the last expression of a cell)."""
    return BookFigure(figure)
