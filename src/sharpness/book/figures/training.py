"""Learning curves of training runs (from their metrics.jsonl rows)."""

from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def learning_curves(histories: Mapping[str, Sequence[dict]], title: str) -> go.Figure:
    """Loss and accuracy per epoch, train (solid) and test (dotted), one colour per run.

    `histories` maps a run's label to its per-epoch rows (keys epoch, train_loss, train_accuracy, and test_loss,
    test_accuracy in the rows the test curve was drawn at), as `sharpness.core.runs.read_jsonl(run_dir / "metrics.jsonl")` gives them.
    """
    if not histories:
        raise ValueError("learning_curves needs at least one run's history")
    figure = make_subplots(rows=1, cols=2, subplot_titles=("cross-entropy loss", "accuracy"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for index, (name, rows) in enumerate(histories.items()):
        colour = palette[index % len(palette)]
        for col, metric in enumerate(("loss", "accuracy"), start=1):
            for split, dash in (("train", "solid"), ("test", "dot")):
                drawn = [row for row in rows if f"{split}_{metric}" in row]  # a run's `monitor_every` spaces its test curve
                figure.add_scatter(
                    x=[row["epoch"] for row in drawn], y=[row[f"{split}_{metric}"] for row in drawn], mode="lines+markers",
                    name=f"{name} {split}", legendgroup=name, showlegend=col == 1,
                    line=dict(color=colour, dash=dash), row=1, col=col,
                )
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title=title, height=380, legend=dict(orientation="h", y=-0.25))
    return figure
