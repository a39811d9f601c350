"""Plotly figures of the toy functions: surfaces, contours and Hessian eigen-directions at the minima.

All figures are built from one routine, `function_traces`, so the static figures of the book (dropdown,
parameter slider) and the live widget explorer show exactly the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...toys import toy

# A function whose values on its box span more than this many decades gets a log colour scale.
LOG_COLOUR_DECADES = 2.0
ARROW_COLOURS = ("#d62728", "#1f77b4")  # sharpest direction red, flattest blue


@dataclass
class FunctionView:
    """The traces of one function and its colour-scale choice, as placed in a 1x2 subplot figure."""

    traces: list  # (trace, column) pairs
    log_colour: bool
    title: str


def _colour_values(z: np.ndarray, log_colour: bool) -> np.ndarray:
    shifted = z - z.min()
    return np.log10(1.0 + shifted) if log_colour else shifted


def needs_log_colour(z: np.ndarray) -> bool:
    spread = z.max() - z.min()
    return bool(np.log10(1.0 + spread) > LOG_COLOUR_DECADES)


def zoomed_domain(name: str, zoom: float, centre=None) -> tuple[float, float, float, float]:
    """The function's box shrunk by `zoom` (>= 1) around `centre` (default: its first minimum), moved back
    inside the function's box where it would stick out: at zoom 1 the view is the box itself, so every point
    a reader sees is one the explorer's "go to" accepts, and none it accepts is off the picture."""
    x_min, x_max, y_min, y_max = toy.get(name).domain
    cx, cy = centre if centre is not None else toy.get(name).minima[0]

    def window(centre: float, low: float, high: float) -> tuple[float, float]:
        half = (high - low) / (2 * zoom)
        middle = min(max(centre, low + half), high - half)
        return middle - half, middle + half

    return (*window(cx, x_min, x_max), *window(cy, y_min, y_max))


def eigen_arrows(name: str, point, box_size: float, params=None) -> list[go.Scatter]:
    """Two arrows from `point` along the Hessian eigenvectors, lengths proportional to curvature.

    The sharpest direction gets 30% of the box; the other is scaled by its eigenvalue ratio (kept
    at least 3% long so an extremely flat direction still shows its orientation).
    """
    stats = toy.hessian_stats(name, point, **(params or {}))
    largest = max(abs(v) for v in stats.eigenvalues) or 1.0
    arrows = []
    for index in (1, 0):  # eigh sorts ascending: index 1 is the sharpest direction
        value = stats.eigenvalues[index]
        direction = stats.eigenvectors[:, index]
        length = 0.3 * box_size * max(abs(value) / largest, 0.1)
        tip = np.asarray(point) + length * direction
        arrows.append(
            go.Scatter(
                x=[point[0], tip[0]],
                y=[point[1], tip[1]],
                mode="lines+markers",
                line=dict(color=ARROW_COLOURS[1 - index], width=3),
                marker=dict(symbol=["circle", "arrow"], size=[4, 14], angleref="previous"),
                name=f"eigenvalue {value:.4g}",
                hovertemplate=f"λ = {value:.4g}<extra></extra>",
                showlegend=False,
            )
        )
    return arrows


def function_traces(
    name: str, params=None, resolution: int = 61, domain=None, point=None, log_colour=None, colour_max=None
) -> FunctionView:
    """Surface (column 1) and contour with minima and eigen-arrows (column 2) for one function.

    `log_colour` and `colour_max` default to what this function's own values need; figures that
    compare several views pass shared ones, so equal colours and contour levels mean equal heights.
    """
    params = params or {}
    function = toy.get(name)
    xs, ys, z = toy.grid(name, resolution, domain=domain, **params)
    log_colour = needs_log_colour(z) if log_colour is None else log_colour
    colour = _colour_values(z, log_colour)
    colour_max = float(colour.max()) if colour_max is None else colour_max
    colour_title = "log10(1 + f − min f)" if log_colour else "f − min f"
    hover = "x=%{x:.3f}<br>y=%{y:.3f}<br>f=%{customdata:.4g}<extra></extra>"
    surface = go.Surface(
        x=xs, y=ys, z=z, surfacecolor=colour, customdata=z, colorscale="Viridis", cmin=0.0, cmax=colour_max,
        # Horizontal, under the surface: clear of the z-axis ticks at any page width.
        colorbar=dict(title=dict(text=colour_title, side="top"), orientation="h", x=0.27, xanchor="center",
                      y=-0.02, yanchor="top", len=0.45, thickness=12), hovertemplate=hover, name=function.label,
    )
    contour = go.Contour(
        x=xs, y=ys, z=colour, customdata=z, colorscale="Viridis", showscale=False, zmin=0.0, zmax=colour_max,
        autocontour=False, contours=dict(start=0.0, end=colour_max, size=colour_max / 30 or 1.0),
        hovertemplate=hover, name=function.label,
    )
    traces = [(surface, 1), (contour, 2)]

    box_size = min(xs[-1] - xs[0], ys[-1] - ys[0])
    minima = [m for m in function.minima_for(**params) if xs[0] <= m[0] <= xs[-1] and ys[0] <= m[1] <= ys[-1]]
    if minima:
        traces.append((
            go.Scatter(
                x=[m[0] for m in minima], y=[m[1] for m in minima], mode="markers",
                marker=dict(symbol="x", size=10, color="white", line=dict(width=1, color="black")),
                name="global minimum", showlegend=False,
                hovertemplate="minimum (%{x:.4f}, %{y:.4f})<extra></extra>",
            ),
            2,
        ))
        minimum_values = [float(function(m[0], m[1], **params)) for m in minima]
        traces.append((
            go.Scatter3d(
                x=[m[0] for m in minima], y=[m[1] for m in minima], z=minimum_values, mode="markers",
                marker=dict(size=5, color="red"), name="global minimum", showlegend=False,
            ),
            1,
        ))
    for m in ([point] if point is not None else minima):
        traces.extend((arrow, 2) for arrow in eigen_arrows(name, m, box_size, params))

    stats = toy.hessian_stats(name, minima[0], **params) if minima else None
    title = function.label
    if stats is not None:
        title += (  # a second, smaller line: long enough to be cut on a narrow page otherwise
            f'<br><span style="font-size:12px">at the minimum {tuple(round(c, 3) for c in minima[0])}: '
            f"λmax = {stats.max_eigenvalue:.4g}, trace = {stats.trace:.4g}, det = {stats.determinant:.4g}, "
            f"κ = {stats.condition_number:.4g}</span>"
        )
    return FunctionView(traces, log_colour, title)


SCENE_VIEW = dict(camera=dict(eye=dict(x=1.9, y=1.9, z=1.35)), aspectmode="cube")


def _two_panel_figure() -> go.Figure:
    figure = make_subplots(
        rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "xy"}]], column_widths=[0.55, 0.45],
        subplot_titles=("surface", "contours; red: sharpest, blue: flattest"),
    )
    figure.update_annotations(font_size=12)
    figure.update_layout(height=600, margin=dict(l=10, r=10, t=130, b=70), showlegend=False)
    figure.update_xaxes(title_text="x", row=1, col=2)
    figure.update_yaxes(title_text="y", scaleanchor="x", row=1, col=2)
    # The camera stands back from plotly's default (1.25, 1.25, 1.25): the whole box, its tick labels and axis
    # titles stay inside a 300 px wide panel.
    figure.update_scenes(xaxis_title="x", yaxis_title="y", zaxis_title="f(x, y)", **SCENE_VIEW)
    return figure


def _add_views(figure: go.Figure, views: list[FunctionView], shown: int = 0) -> list[list[bool]]:
    """Add every view's traces, view `shown` visible; return, per view, the mask that shows only it."""
    spans = []
    for index, view in enumerate(views):
        start = len(figure.data)
        for trace, column in view.traces:
            trace.visible = index == shown
            figure.add_trace(trace, row=1, col=column)
        spans.append((start, len(figure.data)))
    total = len(figure.data)
    return [[start <= i < end for i in range(total)] for start, end in spans]


def explorer_figure(resolution: int = 51) -> go.Figure:
    """All seven functions in one figure; a dropdown (plotly-native, works in static HTML) picks one."""
    names = list(toy.FUNCTIONS)
    views = [function_traces(name, resolution=resolution) for name in names]
    figure = _two_panel_figure()
    masks = _add_views(figure, views)
    buttons = [
        dict(label=toy.get(name).label, method="update", args=[{"visible": mask}, {"title.text": view.title}])
        for name, view, mask in zip(names, views, masks)
    ]
    figure.update_layout(  # the title on the left, the menu on the right: neither covers the other
        title=dict(text=views[0].title, font=dict(size=14), x=0.01, xanchor="left", y=0.97, yanchor="top"),
        updatemenus=[dict(buttons=buttons, direction="down", x=1.0, y=1.2, xanchor="right", yanchor="top", showactive=True)],
    )
    return figure


def parameter_slider_figure(name: str, parameter: str, values, resolution: int = 51, zoom: float = 1.0) -> go.Figure:
    """One function under a parameter sweep; a plotly slider steps through precomputed surfaces."""
    function = toy.get(name)
    if parameter not in function.params:
        raise ValueError(f"{name} has no parameter {parameter!r}; accepted: {', '.join(function.params) or 'none'}")
    domain = zoomed_domain(name, zoom)
    # One height axis, one colour scale and one set of contour levels for every step, so the reader
    # sees the minimum steepen rather than a rescaled copy of the same picture.
    heights = [toy.grid(name, resolution, domain=domain, **{parameter: v})[2] for v in values]
    log_colour = any(needs_log_colour(z) for z in heights)
    colour_max = max(float(_colour_values(z, log_colour).max()) for z in heights)
    views = [
        function_traces(name, {parameter: v}, resolution, domain, log_colour=log_colour, colour_max=colour_max)
        for v in values
    ]
    # Open at the paper's value of the parameter (Rosenbrock b = 100, Rastrigin A = 10) where it is a step.
    default = function.params[parameter]
    shown = list(values).index(default) if default in values else 0
    figure = _two_panel_figure()
    masks = _add_views(figure, views, shown)
    figure.update_scenes(zaxis=dict(range=[min(z.min() for z in heights), max(z.max() for z in heights)]))
    steps = [
        dict(label=f"{v:g}", method="update", args=[{"visible": mask}, {"title.text": view.title}])
        for v, view, mask in zip(values, views, masks)
    ]
    figure.update_layout(
        title=dict(text=views[shown].title, font=dict(size=14), x=0.01, xanchor="left"),
        sliders=[dict(steps=steps, active=shown, currentvalue=dict(prefix=f"{parameter} = "), pad=dict(t=30))],
    )
    return figure


def curvature_versus_parameter(name: str, parameter: str, values) -> go.Figure:
    """Top eigenvalue and condition number at the minimum as a parameter varies."""
    stats = [toy.hessian_stats(name, toy.get(name).minima_for(**{parameter: v})[0], **{parameter: v}) for v in values]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("largest Hessian eigenvalue", "condition number"))
    figure.add_trace(go.Scatter(x=list(values), y=[s.max_eigenvalue for s in stats], mode="lines+markers"), 1, 1)
    figure.add_trace(go.Scatter(x=list(values), y=[s.condition_number for s in stats], mode="lines+markers"), 1, 2)
    figure.update_xaxes(title_text=parameter)
    figure.update_layout(height=320, showlegend=False, title=f"{toy.get(name).label}: curvature at the minimum")
    return figure


HESSIAN_COLUMNS = ("condition_number", "hessian_trace", "hessian_determinant", "max_eigenvalue")


def printed_agreement(reference_csv) -> pd.DataFrame:
    """Each figure of the paper's Tables 1-2 beside ours rounded to the decimals the paper printed:
    one row per (minimum, statistic) with `agrees` (equal at the printed digits)."""
    printed = pd.read_csv(reference_csv, dtype=str)
    ours = pd.DataFrame(toy.minima_table())
    rows = []
    for record in printed.to_dict("records"):
        match = ours[(ours["function"] == record["function"]) & np.isclose(ours["x"], float(record["x"]), atol=1e-4)
                     & np.isclose(ours["y"], float(record["y"]), atol=1e-4)]
        if match.empty:
            continue
        for column in HESSIAN_COLUMNS:
            text = record[column]
            fraction = text.split(".")[1] if "." in text else ""
            decimals = len(fraction) if fraction.strip("0") else 0  # "157438.0" is the printed 157438
            value = float(match[column].iloc[0])
            rows.append({"function": record["function"], "x": float(record["x"]), "y": float(record["y"]), "statistic": column, "paper": text,
                         "ours": value, "agrees": round(value, decimals) == round(float(text), decimals)})
    return pd.DataFrame(rows)


def printed_agreement_note(reference_csv) -> str:
    """Markdown: how many of the paper's printed figures ours match at the printed digits, which do
    not, and the largest relative difference (the paper rounds, so ours carry more digits)."""
    table = printed_agreement(reference_csv)
    absolute = (table["ours"] - table["paper"].astype(float)).abs()
    relative = absolute / table["paper"].astype(float).abs()

    def example(index, size):
        row = table.loc[index]
        return (f"{size}: {row['function']} {row['statistic'].replace('_', ' ')}, ours {row['ours']:.8g}, "
                f"printed {row['paper'].removesuffix('.0')}")

    note = (f"Rounded to the digits the paper prints, {int(table['agrees'].sum())} of {len(table)} figures agree "
            f"with ours. The paper's figures are rounded and ours are not, so they are not identical: largest "
            f"relative difference {example(relative.idxmax(), f'{relative.max():.1e}')}; largest absolute "
            f"difference {example(absolute.idxmax(), f'{absolute.max():.2g}')}.")
    differing = table[~table["agrees"]]
    if len(differing):
        note += " These differ at the printed digits: " + "; ".join(
            f"{row.function} at x = {row.x:g}, {row.statistic.replace('_', ' ')}: ours {row.ours:.6g}, printed {row.paper}"
            for row in differing.itertuples()) + "."
    return note


HESSIAN_HEADERS = {"condition_number": "condition no.", "hessian_trace": "trace", "hessian_determinant": "determinant",
                   "max_eigenvalue": "λ max"}


def hessian_comparison_table(reference_csv) -> pd.DataFrame:
    """Tables 1-2 in a narrow layout: two rows per minimum (ours, the paper's), one short column per statistic."""
    table = printed_agreement(reference_csv)
    table["minimum"] = [f"{function} ({x:.3g}, {y:.3g})" for function, x, y in zip(table["function"], table["x"], table["y"])]
    ours = table.pivot_table(index="minimum", columns="statistic", values="ours", aggfunc="first", sort=False)
    paper = table.assign(paper=table["paper"].astype(float)).pivot_table(
        index="minimum", columns="statistic", values="paper", aggfunc="first", sort=False)
    both = pd.concat({"ours": ours, "paper": paper}, names=["source"]).swaplevel().sort_index(
        level=0, sort_remaining=False, key=lambda level: level.map({m: i for i, m in enumerate(ours.index)}))
    return both[list(HESSIAN_COLUMNS)].rename(columns=HESSIAN_HEADERS)


SHARPNESS_STATISTICS = {"max_eigenvalue": "top eigenvalue", "hessian_trace": "trace", "hessian_determinant": "determinant"}


def sharpest_sentence() -> str:
    """Which function's minimum is sharpest, by each Hessian statistic (computed from `toy.minima_table`;
    Himmelblau: its sharpest minimum): the answer depends on the statistic, so none is 'the sharpest of all'."""
    table = pd.DataFrame(toy.minima_table())
    parts = []
    for column, name in SHARPNESS_STATISTICS.items():
        best = table.loc[table[column].idxmax()]
        runner = table[table["function"] != best["function"]].sort_values(column).iloc[-1]
        parts.append(f"by {name}, {best['function']} ({best[column]:,.1f}; next {runner['function']}, {runner[column]:,.1f})")
    return "Which minimum is sharpest depends on the statistic: " + "; ".join(parts) + "."
