"""Figures for the measures chapter: the corruption gallery, severity curves, and measure checks."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from PIL import Image

from sharpness import corruptions


def _png_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def corruption_mosaic(image: torch.Tensor, names: Sequence[str], severities: Sequence[int], seed: int = 0,
                      zoom: int = 3, gap: int = 4) -> np.ndarray:
    """One image (3, H, W uint8) as a grid: a row per corruption, the clean image then each severity."""
    height, width = image.shape[-2:]
    tile_h, tile_w = height * zoom + gap, width * zoom + gap
    mosaic = np.full((len(names) * tile_h, (len(severities) + 1) * tile_w, 3), 255, dtype=np.uint8)
    for row, name in enumerate(names):
        tiles = [image] + [corruptions.corrupt(image[None], name, s, seed)[0] for s in severities]
        for column, tile in enumerate(tiles):
            large = F.interpolate(tile[None].float(), scale_factor=zoom, mode="nearest")[0]
            pixels = large.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            top, left = row * tile_h, column * tile_w
            mosaic[top : top + height * zoom, left : left + width * zoom] = pixels
    return mosaic


def corruption_gallery(images: torch.Tensor, source: str, names: Sequence[str] = corruptions.ALL_CORRUPTIONS,
                       severities: Sequence[int] = corruptions.SEVERITIES, seed: int = 0) -> go.Figure:
    """Every corruption at every severity on one image; a slider switches between the given images."""
    mosaics = [corruption_mosaic(image, names, severities, seed) for image in images]
    rows, columns = len(names), len(severities) + 1
    height, width = mosaics[0].shape[:2]
    figure = go.Figure(go.Image(source=_png_uri(mosaics[0]), hoverinfo="skip"))
    figure.update_xaxes(
        tickvals=[(c + 0.5) * width / columns for c in range(columns)],
        ticktext=["clean"] + [f"severity {s}" for s in severities], side="top", showgrid=False,
    )  # fmt: skip
    figure.update_yaxes(tickvals=[(r + 0.5) * height / rows for r in range(rows)], ticktext=list(names), showgrid=False)
    figure.update_layout(
        title=f"Generated corruptions (CIFAR severity constants, seed {seed}) on {source}",
        height=70 + rows * 62, width=170 + columns * 110, margin=dict(l=130, r=10, t=90, b=70),
        sliders=[{
            "currentvalue": {"prefix": "image "},
            "steps": [{"label": str(i), "method": "restyle", "args": [{"source": [_png_uri(m)]}]}
                      for i, m in enumerate(mosaics)],
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
    figure = go.Figure()
    for name, group in changes.groupby("corruption", sort=False):
        dash = "dot" if name in corruptions.EXTRA_CORRUPTIONS else "solid"
        figure.add_scatter(x=group.severity, y=group.mean_abs_change, name=name, mode="lines+markers", line_dash=dash)
    figure.update_layout(
        title=f"How much each corruption changes the images, by severity ({source}; dotted: the 4 extra)",
        xaxis_title="severity", yaxis_title="mean |corrupted - clean| (0-255)", height=480,
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
        title="Fast measures vs independent references on a tiny BN network (float64; bars at 1e-17 are exact)",
        height=440, margin=dict(t=70, b=120),
    )
    return figure
