"""Figures of the chapter across networks and settings: our Figure 1, each family's scale of sharpness, and
Simpson's paradox on our families.

Each draws from the runs it is given and, where there are none yet, an empty frame whose title says so (the
page then shows that the grid is not run yet instead of a missing figure).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import across, prose
from . import results as result_figures


def not_run(title: str, sentence: str) -> go.Figure:
    """An empty frame with `title` and, in its middle, why there is nothing to draw."""
    figure = go.Figure()
    figure.add_annotation(text=sentence, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(title=title, height=300)
    return figure


def _too_few_families(title: str, count: int) -> go.Figure:
    """The empty frame of a figure across families while fewer than two have runs at a minimum."""
    return not_run(title, f"Not run yet: {count} famil{'y' if count == 1 else 'ies'} with runs at a minimum; "
                          "the comparison needs two.")


def figure1(runs: pd.DataFrame, title: str) -> go.Figure:
    """Figure 1's axes (sharpness against generalisation gap, train loss, test accuracy and ECE), a point per run, a
    marker per cell of the sweep, each control's mean within a cell."""
    quality = [m for m in across.FIGURE1_QUALITY if m in runs.columns]
    if not len(runs):
        return not_run(title, "Not run yet: no batch x learning-rate run of ours at a minimum is committed.")
    cells = runs.assign(cell=[across.cell_label(b, lr) for b, lr in zip(runs["batch_size"], runs["lr"])])
    return result_figures.sharpness_vs_evaluation(cells, across.FIGURE1_SHARPNESS, quality, title=title, setting="cell")


def simpson(points: pd.DataFrame, measure: str, quality: str, title: str) -> go.Figure:
    """Control means of every family with a trend line per family and one pooled (`results.simpsons_paradox`)."""
    count = points["arch"].nunique() if len(points) else 0
    if count < 2:
        return _too_few_families(title, count)
    return result_figures.simpsons_paradox(points, measure, quality, title=title)


def scales(points: pd.DataFrame, measures, title: str) -> go.Figure:
    """Each family's control means on one log axis per measure, a marker per control in its colour: how far apart
    the families' scales of sharpness sit shows at a glance whether a value can be compared across them."""
    measures = [m for m in measures if m in points.columns]
    count = points["arch"].nunique() if len(points) else 0
    if count < 2 or not measures:
        return _too_few_families(title, count)
    figure = make_subplots(rows=1, cols=len(measures), subplot_titles=[result_figures.label(m) for m in measures])
    for column, measure in enumerate(measures, start=1):
        for control, colour in result_figures.CONTROL_COLOURS.items():
            block = points[(points["control"] == control) & (points[measure] > 0)]
            if len(block):
                figure.add_scatter(x=block["arch"].map(prose.network_name), y=block[measure], mode="markers", name=control, legendgroup=control,
                                   showlegend=column == 1, marker=dict(color=colour, size=10, opacity=0.8),
                                   hovertemplate=f"%{{x}}, {control}: %{{y:.3g}}<extra></extra>", row=1, col=column)
        figure.update_yaxes(type="log", title_text="(log)" if column == 1 else None, row=1, col=column)
    figure.update_layout(title=title, height=460)
    return figure


LR_LINES = (("#2b2b2b", "solid"), ("#c44e52", "dash"), ("#4c72b0", "dot"))  # one look per lr, the same in every panel


def sweep_moves(runs: pd.DataFrame, measure: str, title: str) -> go.Figure:
    """A panel per control: its mean `measure` (bars: lowest to highest seed) against the batch size, a line per
    learning rate. Lines that slope the same way say the batch size moves every lr alike; lines that cross say its
    effect reverses with the lr, which G.1's sentences state in words (`across.figure1_claims`)."""
    if not len(runs):
        return not_run(title, "Not run yet: no batch x learning-rate run of ours at a minimum is committed.")
    spread = across.seed_spread(runs, measure).reset_index()
    controls = [control for control in result_figures.CONTROL_COLOURS if control in set(spread["control"])]
    looks = dict(zip(sorted(spread["lr"].unique()), LR_LINES))  # by the lr itself: a control missing one keeps the rest's
    batches = [f"batch {int(b)}" for b in sorted(spread["batch_size"].unique())]
    columns = 3
    figure = make_subplots(rows=-(-len(controls) // columns), cols=columns, subplot_titles=controls,
                           horizontal_spacing=0.07, vertical_spacing=0.14)
    for at, control in enumerate(controls):
        row, col = divmod(at, columns)
        for lr, block in spread[spread["control"] == control].groupby("lr"):
            (colour, dash), block = looks[lr], block.sort_values("batch_size")
            figure.add_scatter(
                x=block["batch_size"].map(lambda b: f"batch {int(b)}"), y=block["mean"], mode="lines+markers",
                name=f"lr {lr:g}", legendgroup=f"lr {lr:g}", showlegend=at == 0,
                line=dict(color=colour, dash=dash), marker=dict(size=9),
                error_y=dict(type="data", symmetric=False, array=block["max"] - block["mean"],
                             arrayminus=block["mean"] - block["min"]),
                hovertemplate=f"{control}, lr {lr:g}, %{{x}}: %{{y:.3g}}<extra></extra>", row=row + 1, col=col + 1)
        figure.update_yaxes(type="log", row=row + 1, col=col + 1)
    figure.update_xaxes(categoryorder="array", categoryarray=batches)
    figure.update_yaxes(title_text=f"{result_figures.label(measure)} (log)", col=1)
    figure.update_layout(title=title, height=150 + 330 * -(-len(controls) // columns), margin=dict(t=160),
                         legend_title_text="learning rate")  # room for a title of three lines
    return figure
