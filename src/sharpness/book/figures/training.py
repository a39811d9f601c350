"""Learning curves of training runs (from their metrics.jsonl rows), and the noise of the minimum criterion."""

from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...measuring.plateau_noise import windows
from ...training.minimum import PLATEAU_DROP, PLATEAU_EPOCHS


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


def plateau_noise(document: dict, title: str) -> go.Figure:
    """Per measured run (a row), the fall of its measured loss over every window of PLATEAU_EPOCHS frozen-weight
    passes (grey dots) and over its last PLATEAU_EPOCHS epochs of training (a black diamond), beside the
    criterion's threshold (`sharpness.measuring.plateau_noise.load` gives `document`)."""
    figure = go.Figure()
    for index, run in enumerate(document["runs"]):
        label = f"{run['control']} seed {run['seed']} · batch {run['batch_size']}, lr {run['lr']:g}"
        falls = windows(run["frozen"])
        trained = windows(run["recorded"][-PLATEAU_EPOCHS - 1:])["fall"]
        figure.add_scatter(x=100 * falls["fall"], y=[label] * len(falls), mode="markers", name="frozen weights",
                           legendgroup="frozen", showlegend=index == 0,
                           marker=dict(color="rgba(90,90,90,0.55)", size=8),
                           customdata=falls["fall_nats"], hovertemplate="fell %{x:.2f}% (%{customdata:.1e} nats)")
        figure.add_scatter(x=100 * trained, y=[label] * len(trained), mode="markers", name="training's last epochs",
                           legendgroup="trained", showlegend=index == 0,
                           marker=dict(color="black", symbol="diamond", size=10))
    figure.add_vline(x=100 * PLATEAU_DROP, line_dash="dash", line_color="#d62728",
                     annotation_text=f"criterion: falling by {PLATEAU_DROP:.0%}", annotation_position="top")
    figure.update_xaxes(title_text=f"fall of the measured loss over {PLATEAU_EPOCHS} epochs or passes (%)",
                        zeroline=True)
    figure.update_layout(title=title, height=160 + 28 * len(document["runs"]), legend=dict(orientation="h", y=-0.2),
                         margin=dict(l=20))
    return figure
