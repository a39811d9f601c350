"""Two-Gaussian decision boundaries: data, the 100%-accuracy stopping rule, figures and the live explorer."""

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from sharpness.book.figures import boundary as boundary_figures
from sharpness.toys import boundary, fit

FAST = dict(separations=(0.5, 4.0), seeds=(0,), points_per_class=20, test_points_per_class=50, sizes=(2, 16, 16, 1),
            max_epochs=2000, measures=fit.MeasureSettings(power_iterations=10, hutchinson_samples=4))


@pytest.fixture(scope="module")
def result():
    return boundary.run(boundary.BoundaryConfig(**FAST), progress=False)


def test_classes_differ_only_by_the_separation():
    near, near_labels = boundary.gaussian_classes(0.5, 30, seed=3)
    far, far_labels = boundary.gaussian_classes(4.0, 30, seed=3)
    assert torch.equal(near_labels, far_labels) and near_labels.sum() == 30
    shift = far - near  # class 0 moves left by 1.75, class 1 right by 1.75, y unchanged
    torch.testing.assert_close(shift[:, 0], (near_labels - 0.5) * 3.5)
    torch.testing.assert_close(shift[:, 1], torch.zeros(60))


def test_networks_are_measured_at_the_first_epoch_of_perfect_training_accuracy(result):
    records = result.records
    assert records["reached"].all()
    assert (records["train_accuracy"] == 1.0).all()
    # Independently: the stored parameters classify every training point correctly ...
    for network in range(len(records)):
        logits = fit.forward(result.parameters[network : network + 1], result.inputs[network], FAST["sizes"])[0]
        assert torch.equal((logits > 0).float(), result.labels[network])
    # ... and the overlapping classes take longer to separate than well-separated ones.
    near, far = records.set_index("separation").loc[[0.5, 4.0], "epoch"]
    assert near > far


def test_unreached_networks_are_reported(result):
    capped = boundary.run(boundary.BoundaryConfig(**{**FAST, "max_epochs": 1}), progress=False)
    assert not capped.records.loc[capped.records["separation"] == 0.5, "reached"].any()
    assert capped.records.loc[~capped.records["reached"], "epoch"].isna().all()
    assert "NOT at 100%" in boundary_figures.network_title(capped, 0)


def test_sharpness_measures_are_those_of_the_logistic_loss(result):
    objective = fit.Objective(result.inputs, result.labels, loss="bce", sizes=FAST["sizes"])
    hessians = fit.exact_hessians(objective.select([1]), result.parameters[1:2])
    dominant = torch.linalg.eigvalsh(hessians[0].double()).abs().max()
    assert np.isclose(result.records.loc[1, "top_eigenvalue"], float(dominant), rtol=0.05)


def test_slider_figure_has_one_frame_per_separation(result):
    figure = boundary_figures.separation_slider_figure(result)
    steps = figure.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0.5", "4"]
    visible = [s.args[0]["visible"] for s in steps]
    assert all(sum(v) == len(v) // 2 for v in visible) and visible[0] != visible[1]
    assert "separation 4" in steps[1].args[1]["title.text"]
    assert "40 training points, 1 seed(s)" in figure.layout.title.text  # the settings are shown
    summary = boundary_figures.sharpness_vs_separation(result)
    assert len(summary.data) == 4


def test_live_explorer_retrains_when_a_slider_moves():
    explorer = boundary_figures.BoundaryExplorer(separation=4.0, points_per_class=15, sizes=(2, 8, 8, 1), max_epochs=500)
    first_title, first_points = explorer.figure.layout.title.text, explorer.figure.data[2].x
    assert first_title.startswith("separation 4")
    explorer.separation.value = 1.0
    assert explorer.updates.wait(timeout=300)  # trained off the kernel's thread (a bound, not an expectation)
    assert explorer.figure.layout.title.text.startswith("separation 1")
    assert explorer.figure.data[2].x[0] != first_points[0]  # class-0 points moved
    explorer.points.value = 30
    assert explorer.updates.wait(timeout=300)
    assert len(explorer.figure.data[2].x) + len(explorer.figure.data[3].x) == 60


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="separations"):
        boundary.BoundaryConfig(separations=(-1.0,))
    with pytest.raises(ValueError, match="sizes"):
        boundary.BoundaryConfig(sizes=(2, 8, 3))
    with pytest.raises(ValueError, match="separations: \\[0.5, 4.0\\]"):
        boundary.run(boundary.BoundaryConfig(**FAST), progress=False).network(2.0, 0)


def test_stop_loss_matches_the_training_loss_across_separations():
    matched = boundary.run(boundary.BoundaryConfig(**{**FAST, "stop_loss": 0.05}), progress=False)
    records = matched.records
    assert records["reached"].all() and (records["train_accuracy"] == 1.0).all()
    assert (records["train_loss"] <= 0.05).all()
    # Stopping later than at first 100% accuracy: at least as many epochs as without the loss condition.
    first = boundary.run(boundary.BoundaryConfig(**FAST), progress=False).records
    assert (records["epoch"].to_numpy() >= first["epoch"].to_numpy()).all()


def test_a_stored_study_reads_back_as_it_was_written(result, tmp_path):
    stored = result.stored("abc123")
    loaded = boundary.StoredBoundary.load(stored.save(tmp_path / "study"))
    assert loaded.config == result.config  # tuples, the measure settings and the stopping rule survive the file
    pd.testing.assert_frame_equal(loaded.records, result.records, check_dtype=False)
    assert loaded.provenance["commit"] == "abc123" and loaded.provenance["seconds"] == round(result.seconds, 1)
    assert [(study.name, study.config) for study in boundary.stored_results(tmp_path)] == [("study", result.config)]
    # the chapter draws a stored study with the figure of a fresh one
    assert len(boundary_figures.sharpness_vs_separation(loaded).data) == 4


def test_a_damaged_stored_study_is_refused_by_name(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "records.csv").write_text("separation,seed\n1,0\n")
    with pytest.raises(ValueError, match=r"bad is not a stored boundary study .*python -m sharpness boundary --out"):
        boundary.StoredBoundary.load(tmp_path / "bad")
    (tmp_path / "bad" / "provenance.json").write_text(
        json.dumps({"config": {**asdict(boundary.BoundaryConfig())}, "provenance": {}}))
    with pytest.raises(ValueError, match=r"records.csv lacks the column\(s\) epoch, fisher_rao_exact, hessian_trace, reached"):
        boundary.StoredBoundary.load(tmp_path / "bad")


def hand_made(means: dict[float, float], reached=None) -> boundary.StoredBoundary:
    """A stored study whose every measure has, per separation, two seeds at mean +- 1 (all reached unless
    `reached` says otherwise)."""
    rows = [{"separation": s, "seed": seed, "reached": (reached or {}).get(s, True), "epoch": 100.0,
             **{m: mean + (1 if seed else -1) for m in boundary.MEASURES}}
            for s, mean in means.items() for seed in (0, 1)]
    return boundary.StoredBoundary(boundary.BoundaryConfig(separations=tuple(means), seeds=(0, 1)), pd.DataFrame(rows), {})


def test_the_trend_is_the_rank_correlation_over_the_separations_every_seed_reached():
    falling = hand_made({0.5: 40.0, 1.0: 30.0, 2.0: 20.0, 4.0: 10.0})
    rho, p_value, separations = boundary.separation_trend(falling, "top_eigenvalue")
    assert (rho, separations) == (-1.0, 4) and p_value == pytest.approx(0.0, abs=1e-12)
    # ranks of (0.5, 1, 2) against means (30, 10, 20): d = (2, -1, -1), rho = 1 - 6 * 6 / (3 * 8) = -0.5; 4.0 left out
    mixed = hand_made({0.5: 30.0, 1.0: 10.0, 2.0: 20.0, 4.0: 90.0}, reached={4.0: False})
    rho, p_value, separations = boundary.separation_trend(mixed, "hessian_trace")
    # the p-value of scipy's t-approximation: t = -0.5 sqrt(1 / 0.75) = -1 / sqrt(3) on 1 degree of freedom (a
    # Cauchy variable), so p = 1 - 2 atan(1 / sqrt(3)) / pi = 1 - 2 (pi / 6) / pi = 2 / 3
    assert (rho, separations) == (pytest.approx(-0.5), 3) and p_value == pytest.approx(2 / 3)
    # a seed whose row is missing at a separation has not reached it there
    dropped = hand_made({0.5: 40.0, 1.0: 30.0, 2.0: 20.0, 4.0: 10.0})
    dropped.records = dropped.records.iloc[1:]
    assert boundary.separation_trend(dropped, "top_eigenvalue")[2] == 3
    rho, p_value, separations = boundary.separation_trend(hand_made({0.5: 3.0, 4.0: 1.0}), "top_eigenvalue")
    assert np.isnan(rho) and np.isnan(p_value) and separations == 2


def test_a_stored_study_with_bad_values_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="stop_loss must be None or a positive number, got 'low'"):
        boundary.BoundaryConfig(stop_loss="low")
    study = hand_made({0.5: 3.0, 1.0: 2.0, 4.0: 1.0})
    study.records = study.records.assign(reached="yes")
    study.save(tmp_path / "words")
    with pytest.raises(ValueError, match=r"words/records.csv: 'reached' holds \w+ values, not True/False"):
        boundary.stored_results(tmp_path)
    (tmp_path / "words" / "records.csv").unlink()  # a folder with its provenance only
    with pytest.raises(ValueError, match="words is not a stored boundary study"):
        boundary.stored_results(tmp_path)


def test_the_cli_stores_a_study_that_reads_back_with_its_stopping_rule(tmp_path, monkeypatch):
    from sharpness.__main__ import main

    monkeypatch.setitem(boundary.PRESETS, "quick", FAST)
    assert main(["boundary", "--preset", "quick", "--stop-loss", "0.05", "--out", str(tmp_path / "matched")]) == 0
    stored = boundary.StoredBoundary.load(tmp_path / "matched")
    assert stored.config == boundary.BoundaryConfig(**FAST, stop_loss=0.05)
    assert stored.stopping_rule() == "100% training accuracy and loss ≤ 0.05"
    assert stored.records["reached"].all() and (stored.records["train_loss"] <= 0.05).all()
