"""Decision-boundary figures: a plotly slider over class separation (static) and a live ipywidgets explorer.

Both draw with `boundary_traces`, so the static frames and the live figure show the same picture.
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.special import expit

from ...toys import boundary, fit
from .fit import MEASURE_LABELS, subtitle
from .live import LatestOnly, live_figure, sync_state

CLASS_COLOURS = ("#1f77b4", "#d62728")


def settings_label(config: boundary.BoundaryConfig) -> str:
    hidden = "-".join(str(s) for s in config.sizes)
    return (
        f"MLP {hidden}, Adam lr {config.lr:g}, {2 * config.points_per_class} training points, "
        f"{len(config.seeds)} seed(s), stopped at the first epoch with {boundary.stopping_rule(config)}"
        f" (cap {config.max_epochs:,})"
    )


def boundary_traces(result: boundary.BoundaryResult, network: int, resolution: int = 81) -> list:
    """Probability shading, the p = 0.5 boundary and the training points of one network."""
    xs, ys, logits = result.logits_on_grid(network, resolution)
    probability = expit(logits)
    traces = [
        go.Heatmap(x=xs, y=ys, z=probability, zmin=0, zmax=1, colorscale="RdBu_r", opacity=0.35, showscale=False,
                   hovertemplate="p(class 1) = %{z:.2f}<extra></extra>"),
        go.Contour(x=xs, y=ys, z=logits, contours=dict(start=0, end=0, size=1, coloring="none"),
                   line=dict(color="black", width=2), showscale=False, hoverinfo="skip", name="decision boundary"),
    ]
    points, labels = result.inputs[network].numpy(), result.labels[network].numpy()
    for label, colour in enumerate(CLASS_COLOURS):
        chosen = points[labels == label]
        traces.append(go.Scatter(x=chosen[:, 0], y=chosen[:, 1], mode="markers", name=f"class {label}",
                                 marker=dict(color=colour, size=6, line=dict(color="white", width=0.5))))
    return traces


def network_title(result: boundary.BoundaryResult, network: int) -> str:
    row = result.records.loc[network]
    when = f"epoch {row['epoch']:.0f}" if row["reached"] else f"NOT at 100% after {result.config.max_epochs:,} epochs"
    return (
        f"separation {row['separation']:g}, seed {row['seed']}: 100% train accuracy at {when};<br>"
        f"λmax {row['top_eigenvalue']:.3g}, trace {row['hessian_trace']:.3g}, Fisher-Rao {row['fisher_rao_exact']:.3g}, "
        f"test accuracy {row['test_accuracy']:.2f}"
    )


def _boundary_layout(figure: go.Figure) -> None:
    x_min, x_max, y_min, y_max = boundary.BOX
    figure.update_xaxes(range=[x_min, x_max], title_text="x₁", constrain="domain")
    figure.update_yaxes(range=[y_min, y_max], title_text="x₂", scaleanchor="x")
    figure.update_layout(height=700, margin=dict(t=150), legend=dict(orientation="h", x=1, xanchor="right", y=1.0,
                                                                    yanchor="bottom"))


def separation_slider_figure(result: boundary.BoundaryResult, seed: int | None = None) -> go.Figure:
    """One frame per separation (precomputed); a plotly slider shows one at a time, no kernel needed."""
    seed = result.config.seeds[0] if seed is None else seed
    networks = [result.network(s, seed) for s in result.config.separations]
    figure = go.Figure()
    spans = []
    for index, network in enumerate(networks):
        start = len(figure.data)
        for trace in boundary_traces(result, network):
            trace.visible = index == 0
            figure.add_trace(trace)
        spans.append((start, len(figure.data)))
    total = len(figure.data)
    titles = [network_title(result, n) + subtitle(settings_label(result.config), 110) for n in networks]
    steps = [
        dict(label=f"{s:g}", method="update",
             args=[{"visible": [start <= i < end for i in range(total)]}, {"title.text": title}])
        for s, (start, end), title in zip(result.config.separations, spans, titles)
    ]
    figure.update_layout(
        title=dict(text=titles[0], font=dict(size=13)),
        sliders=[dict(steps=steps, active=0, currentvalue=dict(prefix="separation = "), y=-0.12, pad=dict(t=30))],
    )
    _boundary_layout(figure)
    return figure


def sharpness_vs_separation(result: boundary.BoundaryResult,
                            heading: str = "Sharpness at the stopping point vs separation") -> go.Figure:
    """Each measure (mean ± SEM over seeds) and the epochs needed, against separation; `heading` names the
    stopping point (each figure of a page its own)."""
    panels = ["top_eigenvalue", "hessian_trace", "fisher_rao_exact", "epoch"]
    titles = [MEASURE_LABELS.get(p, "epochs to the stopping point") for p in panels]
    figure = make_subplots(rows=2, cols=2, subplot_titles=titles, vertical_spacing=0.2)
    for index, panel in enumerate(panels):
        stats = result.summary(panel)
        figure.add_trace(
            go.Scatter(x=stats["separation"], y=stats["mean"], error_y=dict(array=stats["sem"]), mode="lines+markers",
                       showlegend=False, line=dict(color="#444")),
            index // 2 + 1, index % 2 + 1,
        )
    figure.update_xaxes(title_text="class separation", row=2)  # on the bottom row only: none runs into a title
    figure.update_yaxes(type="log")
    unreached = int((~result.records["reached"]).sum())
    figure.update_layout(
        height=680,
        title=dict(text=f"<b>{heading}</b><br>mean ± SEM over {len(result.config.seeds)} seeds;"
                        f" {unreached} network(s) never met the stopping rule{subtitle(settings_label(result.config))}",
                   font_size=13, y=0.98, yanchor="top"),
        margin=dict(t=130),
    )
    return figure


class BoundaryExplorer:
    """Live version (needs a kernel): sliders for separation, seed and points; each change trains a network.

    One network trains in about a second on a CPU core (four on a loaded one), off the kernel's main thread:
    slider steps made meanwhile replace each other, and only the newest is trained next (`LatestOnly`).
    """

    def __init__(self, separation: float = 1.0, seed: int = 0, points_per_class: int = 50, **settings):
        self.settings = {"max_epochs": 3000, "measures": fit.MeasureSettings(power_iterations=20, power_tolerance=1e-3, hutchinson_samples=10), **settings}
        self.separation = widgets.FloatSlider(value=separation, min=0.0, max=5.0, step=0.25,
                                              description="separation", continuous_update=False)
        self.seed = widgets.IntSlider(value=seed, min=0, max=9, description="seed", continuous_update=False)
        self.points = widgets.IntSlider(value=points_per_class, min=10, max=200, step=10,
                                        description="points/class", continuous_update=False)
        self.readout = widgets.HTML()
        self.figure = live_figure()
        _boundary_layout(self.figure)
        self.updates = LatestOnly(self._train, self._draw, describe=self._describe)
        self.updates.follow((self.separation, self.seed, self.points), self._request)

    def _request(self) -> tuple[float, int, int]:
        return self.separation.value, self.seed.value, self.points.value

    @staticmethod
    def _describe(request: tuple[float, int, int]) -> str:
        separation, seed, points = request
        return f"training a network for separation {separation:g}, seed {seed}, {points} points/class"

    def _train(self, request: tuple[float, int, int]) -> boundary.BoundaryResult:
        separation, seed, points = request
        return boundary.run_single(separation, seed, points_per_class=points, **self.settings)

    def _draw(self, result: boundary.BoundaryResult) -> None:
        self.result = result
        with self.figure.batch_update():
            self.figure.data = ()
            for trace in boundary_traces(result, 0):
                self.figure.add_trace(trace)
            self.figure.layout.title.text = network_title(result, 0)
        sync_state(self.figure)
        self.readout.value = f"<small>{settings_label(result.config)}</small>"

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.separation, self.seed, self.points]), self.updates.status,
                             self.readout, self.figure])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())


def bayes_accuracy(separation: float) -> float:
    """The best test accuracy any classifier can reach on the two unit-variance Gaussian classes with
    centres `separation` apart: Phi(separation / 2), the Bayes classifier's (the perpendicular bisector)."""
    from scipy.stats import norm

    return float(norm.cdf(separation / 2))


def memorisation_note(result: boundary.BoundaryResult) -> str:
    """Markdown: per separation, the networks' mean test accuracy beside the Bayes accuracy, and which
    separations can only be fitted to 100% training accuracy by memorising overlapping classes."""
    accuracy = result.records.groupby("separation")["test_accuracy"].mean()
    cells = ", ".join(f"s = {s:g}: {a:.2f} (best possible {bayes_accuracy(s):.2f})" for s, a in accuracy.items())
    overlapping = [s for s in accuracy.index if bayes_accuracy(s) < 0.9]
    note = f"Mean test accuracy per separation, beside the Bayes classifier's: {cells}."
    if overlapping:
        note += (f" Where even the best classifier errs on more than a tenth of the points (s ≤ {max(overlapping):g}), "
                 "100% training accuracy is reached only by memorising points of the overlapping classes: the "
                 "extra sharpness at those separations comes with memorisation, so it is not evidence of sharpness "
                 "without worse generalisation.")
    return note
