"""Figures for the measures chapter: the corruption gallery, severity curves, and measure checks."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
import torch
import torch.nn.functional as F
from PIL import Image

from ...measuring import corruptions


def _png_uri(pixels: np.ndarray) -> str:
    """The image as an inline PNG (lossless, so the JPEG row shows only its own artefacts)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _tile(image: torch.Tensor, zoom: int) -> np.ndarray:
    large = F.interpolate(image[None].float(), scale_factor=zoom, mode="nearest")[0]
    return large.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def corruption_mosaic(rows: Sequence[Sequence[torch.Tensor]], zoom: int = 1, gap: int = 2) -> np.ndarray:
    """Images (3, H, W uint8) laid out as a grid with white gaps, each pixel repeated `zoom` times."""
    height, width = rows[0][0].shape[-2:]
    tile_h, tile_w = height * zoom + gap, width * zoom + gap
    mosaic = np.full((len(rows) * tile_h, len(rows[0]) * tile_w, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            mosaic[r * tile_h : r * tile_h + height * zoom, c * tile_w : c * tile_w + width * zoom] = _tile(image, zoom)
    return mosaic


def corruption_gallery(images: torch.Tensor, source: str, names: Sequence[str] = corruptions.ALL_CORRUPTIONS,
                       severities: Sequence[int] = corruptions.SEVERITIES, seed: int = 0) -> go.Figure:
    """Every corruption (rows) at every severity (columns) on one image; a slider picks the image."""
    corrupted = {(name, s): corruptions.corrupt(images, name, s, seed) for name in names for s in severities}
    mosaics = [
        corruption_mosaic([[images[i]] + [corrupted[name, s][i] for s in severities] for name in names])
        for i in range(len(images))
    ]
    rows, columns = len(names), len(severities) + 1
    height, width = mosaics[0].shape[:2]
    sources = [_png_uri(mosaic) for mosaic in mosaics]
    figure = go.Figure(go.Image(source=sources[0], hoverinfo="skip"))
    figure.update_xaxes(
        tickvals=[(c + 0.5) * width / columns for c in range(columns)],
        ticktext=["clean"] + [f"severity {s}" for s in severities], side="top", showgrid=False,
    )  # fmt: skip
    figure.update_yaxes(tickvals=[(r + 0.5) * height / rows for r in range(rows)], ticktext=list(names), showgrid=False)
    figure.update_layout(
        title=f"Generated corruptions, CIFAR severity constants, seed {seed}<br><sup>{source}</sup>",
        height=90 + rows * 62, width=130 + columns * 95, margin=dict(l=120, r=10, t=110, b=70),  # fits 736 px
        sliders=[{
            "currentvalue": {"prefix": "image "},
            "steps": [{"label": str(i), "method": "restyle", "args": [{"source": [uri]}]}
                      for i, uri in enumerate(sources)],
        }] if len(mosaics) > 1 else [],
    )  # fmt: skip
    return figure


def severity_changes(images: torch.Tensor, names: Sequence[str] = corruptions.ALL_CORRUPTIONS,
                     severities: Sequence[int] = corruptions.SEVERITIES, seed: int = 0) -> pd.DataFrame:
    """Mean absolute pixel change (0-255 scale) per corruption and severity."""
    rows = []
    for name in names:
        for severity in severities:
            change = (corruptions.corrupt(images, name, severity, seed).float() - images.float()).abs().mean()
            rows.append({"corruption": name, "severity": severity, "mean_abs_change": float(change)})
    return pd.DataFrame(rows)


def severity_curves(changes: pd.DataFrame, source: str) -> go.Figure:
    """One line per corruption, each a distinct (colour, dash) pair: the standard ones solid and then dashed
    through the ten colours, the extra ones dotted; the legend sits below the plot in rows, all of it shown."""
    figure = go.Figure()
    palette = qualitative.D3
    standard = extra = 0
    for name, group in changes.groupby("corruption", sort=False):
        if name in corruptions.EXTRA_CORRUPTIONS:
            colour, dash, extra = palette[(5 + extra) % len(palette)], "dot", extra + 1
        else:
            colour, dash, standard = palette[standard % len(palette)], ("solid", "dash")[standard // len(palette) % 2], standard + 1
        figure.add_scatter(x=group.severity, y=group.mean_abs_change, name=name, mode="lines+markers",
                           line=dict(color=colour, dash=dash, width=2))
    figure.update_layout(
        title=dict(text=f"<b>How much each corruption changes the images, by severity</b><br>"
                        f"dotted: the 4 extra corruptions<br>{source}", font_size=13),
        xaxis_title="severity", yaxis_title="mean |corrupted - clean| (0-255)", height=720, margin=dict(t=110),
        legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"),
    )
    return figure


def verification_chart(table: pd.DataFrame) -> go.Figure:
    """Relative error of each fast measure against its independent reference (log scale)."""
    errors = (table["ours"] - table["reference"]).abs() / table["reference"].abs()
    figure = go.Figure(go.Bar(
        x=table["measure"], y=errors.clip(lower=1e-17), text=[f"{e:.1e}" for e in errors], textposition="outside",
        hovertext=table["reference_is"], marker_color="#4c78a8",
    ))  # fmt: skip
    figure.update_yaxes(type="log", title="|ours - reference| / |reference|", exponentformat="power")
    figure.update_layout(
        title="Fast measures vs independent references<br><sup>tiny float64 networks (table above); bars at 1e-17 mean exact agreement</sup>",
        height=440, margin=dict(t=70, b=120),
    )
    return figure
