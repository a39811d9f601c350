"""Landscape figures and the live explorer, on hand-made surfaces whose numbers are known."""

from __future__ import annotations

import numpy as np
import pytest

from sharpness.book.figures import landscape as figures
from sharpness.measuring.landscape import ControlLandscape, Surface

AXIS = np.linspace(-1, 1, 5)


def bowl(control: str, curvature: float, measures: dict | None = None, seed: int = 0) -> ControlLandscape:
    """A quadratic bowl 1 + curvature * (a^2 + b^2): its mean rise over the grid is curvature * mean(a^2 + b^2)."""
    a, b = np.meshgrid(AXIS, AXIS, indexing="xy")
    loss = 1.0 + curvature * (a**2 + b**2)
    provenance = {"resolution": [5, 5], "span": [-1, 1], "directions_seed": 0, "subset_size": 8, "device": "test"}
    return ControlLandscape("digits", "simple_cnn", control, seed, Surface([AXIS, AXIS], loss, np.full_like(loss, 0.5), provenance),
                            measures or {})


def test_visual_rise_is_the_mean_rise_over_the_grid():
    expected = 2.0 * np.mean(AXIS[:, None] ** 2 + AXIS[None, :] ** 2)
    assert figures.visual_rise(bowl("baseline", 2.0).surface) == pytest.approx(expected)


def test_contours_share_one_colour_scale():
    items = [bowl("baseline", 1.0), bowl("aug", 5.0), bowl("wd", 0.5)]
    figure = figures.contour_grid(items)
    assert len(figure.data) == 3
    assert {trace.zmin for trace in figure.data} == {0.0}  # log10 of the lowest loss, 1
    assert [trace.zmax for trace in figure.data] == pytest.approx([np.log10(1 + 5.0 * 2)] * 3)
    assert sum(bool(trace.showscale) for trace in figure.data) == 1
    assert "digits, simple_cnn, seed 0" in figure.layout.title.text


def test_dropdown_shows_one_control_at_a_time():
    items = [bowl("baseline", 1.0), bowl("aug_sam", 3.0)]
    figure = figures.surface_dropdown(items)
    buttons = figure.layout.updatemenus[0].buttons
    assert [button.label for button in buttons] == ["baseline", "aug_sam"]
    assert buttons[1].args[0]["visible"] == [False, True]
    assert figure.layout.scene.zaxis.range[1] >= 1 + 3.0 * 2


def test_ranks_follow_the_values_and_show_disagreement():
    items = [
        bowl("baseline", 1.0, {"fisher_rao_norm": 9.0}),
        bowl("aug", 2.0, {"fisher_rao_norm": 5.0}),
        bowl("wd", 3.0, {"fisher_rao_norm": 1.0}),
    ]
    heatmap = figures.picture_versus_measures(items).data[0]
    assert list(heatmap.y) == ["picture: mean loss rise", "Fisher-Rao norm"]
    np.testing.assert_array_equal(heatmap.z, [[1, 2, 3], [3, 2, 1]])  # the measure reverses the picture


def test_figures_refuse_one_dimensional_surfaces():
    line = ControlLandscape("digits", "simple_cnn", "baseline", 0, Surface([AXIS], AXIS**2, AXIS * 0, {}))
    with pytest.raises(ValueError, match="not 2-D.*baseline"):
        figures.contour_grid([line])
    with pytest.raises(ValueError, match="no landscapes"):
        figures.surface_dropdown([])


def test_explorer_recomputes_on_each_choice_and_caches():
    calls = []

    def compute(control, seed, resolution):
        calls.append((control, seed, resolution))
        return bowl(control, {"baseline": 1.0, "aug_sam": 4.0}[control], {"sam_sharpness": 0.25}, seed=seed)

    explorer = figures.LandscapeExplorer(compute, controls=("baseline", "aug_sam"), seeds=(0, 3), resolutions=(5, 9))
    assert calls == [("baseline", 0, 5)]
    explorer.control.value = "aug_sam"
    assert explorer.updates.wait(timeout=60)  # computed off the kernel's thread (a bound, not an expectation)
    explorer.seed.value = 3
    assert explorer.updates.wait(timeout=60)
    assert calls[-1] == ("aug_sam", 3, 5)
    np.testing.assert_allclose(explorer.figure.data[0].z, bowl("aug_sam", 4.0).surface.loss)
    assert "aug_sam, seed 3" in explorer.figure.layout.title.text
    assert "SAM-sharpness 0.25" in explorer.readout.value
    explorer.control.value = "baseline"
    explorer.seed.value = 0  # back to the first choice: served from the cache
    assert explorer.updates.wait(timeout=60)
    assert calls.count(("baseline", 0, 5)) == 1
    assert explorer.widget().children[-1] is explorer.figure


def test_explorer_computes_off_the_kernels_thread_and_only_the_newest_choice():
    """A choice returns at once while a surface is being computed; choices made meanwhile replace each other,
    so after the slow one only the last is computed, and the busy sign names it until it is drawn."""
    import threading

    release, started, calls = threading.Event(), threading.Event(), []

    def compute(control, seed, resolution):
        calls.append((control, seed, resolution))
        if len(calls) == 2:  # the first choice after the opening drawing is slow
            started.set()
            assert release.wait(timeout=60)
        return bowl(control, 1.0 + resolution, seed=seed)

    explorer = figures.LandscapeExplorer(compute, controls=("baseline", "aug"), seeds=(0, 1), resolutions=(5, 9))
    explorer.resolution.value = 9
    assert started.wait(timeout=60)  # the slow computation runs, and the kernel's thread is back here
    explorer.control.value = "aug"
    explorer.seed.value = 1
    assert "computing the 9 x 9 surface of aug, seed 1" in explorer.updates.status.value
    release.set()
    assert explorer.updates.wait(timeout=60)
    assert calls == [("baseline", 0, 5), ("baseline", 0, 9), ("aug", 1, 9)]  # ("aug", 0, 9) was superseded
    assert "aug, seed 1" in explorer.figure.layout.title.text and explorer.updates.status.value == ""


def test_picture_measure_correlations_rank_controls_against_the_picture():
    # Rises grow with curvature 1 < 2 < 3; FR agrees, RF is the reverse, SAM swaps the first two.
    curvature = {"baseline": 1.0, "aug": 2.0, "wd": 3.0}
    fr, rf, sam = [1.0, 5.0, 9.0], [3.0, 2.0, 1.0], [2.0, 1.0, 3.0]
    items = [bowl(control, c, {"fisher_rao_norm": fr[i], "relative_flatness": rf[i], "sam_sharpness": sam[i]})
             for i, (control, c) in enumerate(curvature.items())]
    correlations = figures.picture_measure_correlations(items)
    # Spearman of ranks (1,2,3) with (2,1,3): 1 - 6 * (1 + 1 + 0) / (3 * (9 - 1)) = 0.5.
    assert correlations == pytest.approx({"fisher_rao_norm": 1.0, "relative_flatness": -1.0, "sam_sharpness": 0.5})
    note = figures.correlation_note(items)
    assert "- picture vs relative flatness: Spearman rank correlation -1.00 over 3 controls" in note
    assert "- picture vs SAM-sharpness: Spearman rank correlation +0.50 over 3 controls" in note


def test_source_note_says_whether_the_surfaces_are_the_offline_stand_in():
    offline = [bowl("baseline", 1.0)]
    offline[0].source = "offline runs"
    stored = [bowl("baseline", 1.0)]
    stored[0].source = "results/landscapes/digits/simple_cnn/seed0/baseline.json"
    assert figures.source_note(offline).startswith("**Surfaces shown: digits, simple_cnn, seed 0; 5x5 grid")
    assert "**not** the paper's" in figures.source_note(offline)
    assert "computed on test from the trained runs and stored" in figures.source_note(stored)  # the provenance's device
    assert "**not** the paper's" not in figures.source_note(stored)


def test_the_cpu_study_surfaces_are_named_as_the_real_study():
    from sharpness.studies import registry

    item = bowl("baseline", 1.0)
    item.dataset, item.arch = registry.PROTOCOL["dataset"], registry.PROTOCOL["arch"]
    from sharpness.training.models import build_model

    parameters = sum(p.numel() for p in build_model(registry.PROTOCOL["arch"], 10).parameters())  # counted here
    assert figures.settings_label([item]).startswith(f"real CIFAR-10, CNN-MLP ({parameters / 1000:.0f}k parameters), CPU study, seed 0;")


def test_the_3d_surfaces_name_their_axes_in_readable_type():
    explorer = figures.LandscapeExplorer(lambda control, seed, resolution: bowl(control, 1.0, seed=seed),
                                         controls=("baseline",), seeds=(0,), resolutions=(5,))
    for figure in (figures.surface_dropdown([bowl("baseline", 1.0)]), explorer.figure):
        scene = figure.layout.scene
        axes = (scene.xaxis, scene.yaxis, scene.zaxis)
        assert [axis.title.text for axis in axes] == ["a", "b", "loss"]
        assert all(axis.title.font.size >= 12 for axis in axes)


def test_a_failed_surface_names_its_error_and_the_explorer_goes_on():
    def compute(control, seed, resolution):
        if control == "aug":
            raise ValueError("no run for aug, seed 0 under runs/")
        return bowl(control, 1.0, seed=seed)

    explorer = figures.LandscapeExplorer(compute, controls=("baseline", "aug"), seeds=(0,), resolutions=(5,))
    explorer.control.value = "aug"
    assert explorer.updates.wait(timeout=60)
    assert "computing the 5 x 5 surface of aug, seed 0 failed:</b> no run for aug, seed 0 under runs/" in \
        explorer.updates.status.value
    assert explorer.figure.layout.title.text.startswith("baseline, seed 0")  # the last surface drawn stays
    explorer.control.value = "baseline"
    assert explorer.updates.wait(timeout=60) and explorer.updates.status.value == ""


def test_strings_from_a_stored_surface_are_escaped_in_every_title():
    item = bowl("<b>x</b>", 1.0)
    item.surface.provenance["device"] = "<img src=x>"
    label = figures.settings_label([item], "<br>")
    assert "&lt;img src=x&gt;" in label and "<br>" in label and "<img" not in label
    figure = figures.contour_grid([item])
    assert "&lt;b&gt;x&lt;/b&gt;" in figure.layout.annotations[0].text and figure.data[0].name == "&lt;b&gt;x&lt;/b&gt;"
