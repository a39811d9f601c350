"""Redrawing a plotly FigureWidget so that every frontend sees the result, Voila included.

plotly's FigureWidget sends each edit as a one-off message and keeps its synced state
(`_widget_data`, `_widget_layout`) only as of its creation, refreshing it when the figure itself is
displayed. A figure inside a VBox is never displayed itself, and Voila's page connects only after the
notebook has run, so edits made before then were lost (an empty figure). Syncing the state after
each redraw makes the last drawing the one any page, loaded now or later, shows.

A FigureWidget's view also draws once, at the width it first finds, and then ignores the window: narrowing
the page from 1,400 to 800 px cut off the right-hand (contour) panel until a reload. `live_figure` makes
figures that follow the page. `LatestOnly` keeps a slow redraw (a retrain) from queueing behind the slider.
"""

from __future__ import annotations

import html
import threading
from copy import deepcopy
from typing import Callable, Generic, TypeVar

import ipywidgets as widgets
import plotly.graph_objects as go

Request, Result = TypeVar("Request"), TypeVar("Result")


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


class LatestOnly(Generic[Request, Result]):
    """Runs a slow redraw off the kernel's main thread, for the newest request only, with a busy sign.

    The kernel handles one widget message at a time: a retrain that blocks it queues every step the reader
    makes meanwhile (arrow keys on a slider: one retrain per press, 18 s to catch up). Here a change only
    records what was asked; one worker thread computes the newest request and draws its result unless a newer
    request came in meanwhile, in which case the result is dropped and the newer one computed. `status` says
    what is being computed until the newest request is drawn, and why it failed if it did.
    """

    def __init__(self, compute: Callable[[Request], Result], draw: Callable[[Result], None],
                 describe: Callable[[Request], str] = lambda request: f"computing {request}"):
        self.compute, self.draw, self.describe = compute, draw, describe
        self.status = widgets.HTML()
        self._lock = threading.Lock()
        self._newest = 0  # number of the newest request
        self._pending: tuple[int, Request] | None = None  # the newest request, not started yet
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, request: Request) -> None:
        """Ask for `request`; returns at once. Any request not yet drawn is superseded."""
        with self._lock:
            self._newest += 1
            self._pending = (self._newest, request)
            self.status.value = f"<i>Busy: {html.escape(self.describe(request))}…</i>"
            self._idle.clear()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="explorer-redraw", daemon=True)
                self._worker.start()

    def follow(self, controls, request: Callable[[], Request]) -> None:
        """Draw `request()` now (the first drawing, before the page shows), then submit it whenever one of
        `controls` (widgets) changes value: an explorer's whole wiring."""
        for control in controls:
            control.observe(lambda change: self.submit(request()), names="value")
        self.draw(self.compute(request()))

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the newest request was drawn (or failed) within `timeout` seconds."""
        return self._idle.wait(timeout)

    def _work(self) -> None:
        outcome = ""
        while True:
            with self._lock:
                if self._pending is None:  # nothing newer asked for: done
                    self._worker = None
                    self.status.value = outcome
                    self._idle.set()
                    return
                number, request = self._pending
                self._pending = None
            try:
                result = self.compute(request)
            except Exception as error:  # the reader sees why; the explorer keeps working
                outcome = f"<b>{html.escape(self.describe(request))} failed:</b> {html.escape(str(error))}"
                continue
            with self._lock:
                stale = number != self._newest
            if not stale:
                self.draw(result)
                outcome = ""
