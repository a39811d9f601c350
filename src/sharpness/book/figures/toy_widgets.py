"""Live explorer of the toy functions (needs a running kernel: Jupyter, or a Binder/Thebe launch).

Sliders pick the function, its parameter, the zoom and a point; the figure is redrawn with the same
`function_traces` as the static figures, and a read-out gives the local Hessian at the point.
"""

from __future__ import annotations

import math

import ipywidgets as widgets

from ...toys import toy
from .live import live_figure, sync_state
from .toy import _two_panel_figure, function_traces, zoomed_domain


class ToyExplorer:
    """Function dropdown, parameter / zoom / point sliders, a FigureWidget and a Hessian read-out."""

    def __init__(self, name: str = "rosenbrock", resolution: int = 41):
        self.resolution = resolution
        self.function = widgets.Dropdown(
            options=[(f.label, f.name) for f in toy.FUNCTIONS.values()], value=toy.get(name).name,
            description="function",
        )
        self.parameter = widgets.FloatSlider(description="parameter", continuous_update=False)
        self.zoom = widgets.FloatLogSlider(value=1.0, base=10, min=0, max=2, description="zoom", continuous_update=False)
        self.x = widgets.FloatSlider(description="point x", step=0.01, continuous_update=False)
        self.y = widgets.FloatSlider(description="point y", step=0.01, continuous_update=False)
        self.typed_point = widgets.Text(placeholder="x, y  (Enter)", description="go to", continuous_update=False)
        self.message = widgets.HTML()
        self.readout = widgets.HTML()
        self.figure = live_figure(_two_panel_figure())
        self._updating = False
        self.function.observe(self._on_function, names="value")
        for control in (self.parameter, self.zoom, self.x, self.y):
            control.observe(self._redraw, names="value")
        self.typed_point.observe(self._on_typed_point, names="value")
        self._on_function()

    @property
    def params(self) -> dict[str, float]:
        names = list(toy.get(self.function.value).params)
        return {names[-1]: self.parameter.value} if names else {}

    def _on_function(self, change=None):
        """New function: reset the sliders to its ranges, the point to its first minimum."""
        function = toy.get(self.function.value)
        self._updating = True
        try:
            if function.param_ranges:
                name = list(function.params)[-1]
                low, high = function.param_ranges[name]
                self.parameter.min, self.parameter.max = low, high
                self.parameter.value = function.params[name]
                self.parameter.step = (high - low) / 100
                self.parameter.description = name
                self.parameter.disabled = False
            else:
                self.parameter.description, self.parameter.disabled = "(none)", True
            x_min, x_max, y_min, y_max = function.domain
            self.x.min, self.x.max, self.x.value = x_min, x_max, function.minima[0][0]
            self.y.min, self.y.max, self.y.value = y_min, y_max, function.minima[0][1]
            self.zoom.value = 1.0
        finally:
            self._updating = False
        self._redraw()

    def _on_typed_point(self, change=None):
        """Move the point to what was typed; a value that cannot be used gets a message, never a traceback."""
        text = self.typed_point.value.strip()
        if not text:
            return
        try:
            x, y = self.go_to(text)
        except ValueError as error:
            self.message.value = f"<span style='color:#b00'>{error}</span>"
            return
        self.message.value = ""
        self._updating = True
        try:
            self.x.value, self.y.value = x, y
        finally:
            self._updating = False
        self._redraw()  # once, also when only one coordinate changed

    def go_to(self, text: str) -> tuple[float, float]:
        """The point (x, y) that `text` names, checked against the function's domain."""
        parts = [part.strip() for part in text.replace(";", ",").split(",")]
        try:
            x, y = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"could not read {text!r} as a point: type two numbers, e.g. 1, 1") from None
        if not all(map(math.isfinite, (x, y))):
            raise ValueError(f"{text!r} is not a finite point: type two finite numbers, e.g. 1, 1")
        x_min, x_max, y_min, y_max = toy.get(self.function.value).domain
        if not (x_min <= x <= x_max and y_min <= y <= y_max):
            raise ValueError(f"({x:g}, {y:g}) lies outside this function's domain "
                             f"x in [{x_min:g}, {x_max:g}], y in [{y_min:g}, {y_max:g}]: pick a point inside it")
        return x, y

    def _redraw(self, change=None):
        if self._updating:
            return
        name, point = self.function.value, (self.x.value, self.y.value)
        domain = zoomed_domain(name, self.zoom.value, centre=point)
        view = function_traces(name, self.params, self.resolution, domain=domain, point=point)
        stats = toy.hessian_stats(name, point, **self.params)
        with self.figure.batch_update():
            self.figure.data = ()
            for trace, column in view.traces:
                self.figure.add_trace(trace, row=1, col=column)
            self.figure.layout.title.text = view.title
        sync_state(self.figure)
        self.readout.value = (
            f"<b>Hessian at ({point[0]:.3f}, {point[1]:.3f})</b>: eigenvalues "
            f"{stats.eigenvalues[0]:.4g}, {stats.eigenvalues[1]:.4g}; trace {stats.trace:.4g}; "
            f"determinant {stats.determinant:.4g}; condition number {stats.condition_number:.4g}"
        )
        self.stats = stats

    def widget(self) -> widgets.Widget:
        # the point's column wraps under the first on a narrow page instead of squeezing both until cut
        controls = widgets.HBox([widgets.VBox([self.function, self.parameter, self.zoom]),
                                 widgets.VBox([self.x, self.y, self.typed_point, self.message])],
                                layout=widgets.Layout(flex_flow="row wrap"))
        return widgets.VBox([controls, self.readout, self.figure])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())
