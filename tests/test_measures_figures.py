"""The measures chapter's building blocks: verification table and figures."""

from __future__ import annotations

import pytest
import torch

from sharpness.book.figures import measures as figures
from sharpness.measuring import corruptions, measures


def test_verification_table_deterministic_rows_agree():
    table = measures.verification_table(seed=1).set_index("measure")
    for name in ("relative_flatness", "fisher_rao_norm (ReLU, no bias, L+1 = 2)", "hessian_top_eigenvalue"):
        assert table.loc[name, "ours"] == pytest.approx(table.loc[name, "reference"], rel=1e-6), name
    for row in table.itertuples():  # Monte-Carlo rows: within 15% at these draw counts
        assert row.ours == pytest.approx(row.reference, rel=0.15), row.Index


def test_gallery_has_one_tile_per_corruption_and_severity():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    names = ("fog", "contrast")
    figure = figures.corruption_gallery(images, "random test images", names=names, severities=(1, 5))
    assert len(figure.data) == 1 and len(figure.layout.sliders[0].steps) == 2
    assert list(figure.layout.yaxis.ticktext) == list(names)
    mosaic = figures.corruption_mosaic([[images[0]] * 3] * 2, zoom=1, gap=2)
    assert mosaic.shape == (2 * 34, 3 * 34, 3)
    assert (mosaic[:32, :32] == images[0].permute(1, 2, 0).numpy()).all()


def test_severity_changes_table():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    changes = figures.severity_changes(images, names=("contrast",))
    assert list(changes.severity) == list(corruptions.SEVERITIES)
    assert changes.mean_abs_change.is_monotonic_increasing
