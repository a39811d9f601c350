"""sharpness.book.figures.results: the figures plot what the data say (checked against numpy/pandas directly)."""

import numpy as np
import pandas as pd
import pytest

from sharpness.book.figures import results as figures


def control_runs():
    rng = np.random.default_rng(0)
    rows = []
    for control in ("baseline", "aug", "wd_sam"):
        for seed in range(3):
            rows.append({"control": control, "seed": seed, "rho": 0.05 if control.endswith("sam") else np.nan,
                         "fisher_rao_norm": rng.uniform(1, 10), "test_accuracy": rng.uniform(0.5, 0.9)})
    return pd.DataFrame(rows)


def test_simpsons_paradox_lines_are_least_squares_fits_on_log_sharpness():
    # within each arch accuracy rises with sharpness; the sharper arch is the less accurate one
    points = pd.DataFrame({
        "arch": ["a"] * 3 + ["b"] * 3, "control": ["baseline", "aug", "wd"] * 2,
        "relative_flatness": [1, 10, 100, 1000, 10000, 100000],
        "test_accuracy": [0.80, 0.85, 0.90, 0.50, 0.55, 0.60],
    })
    figure = figures.simpsons_paradox(points, "relative_flatness", "test_accuracy", title="t")
    lines = {trace.name.split(" (")[0]: trace for trace in figure.data if trace.mode == "lines"}
    assert "+0.05 per decade" in lines["a trend"].name and "+0.05 per decade" in lines["b trend"].name
    pooled = np.polyfit(np.log10(points["relative_flatness"]), points["test_accuracy"], 1)
    assert pooled[0] < 0  # the pooled trend reverses the within-arch one
    line = lines["pooled over architectures"]
    assert np.allclose(line.y, pooled[0] * np.log10(line.x) + pooled[1])


def test_rho_sweep_plots_mean_and_sem_over_seeds():
    runs = pd.DataFrame({"rho": [0.05, 0.05, 0.5, 0.5], "seed": [0, 1, 0, 1], "test_accuracy": [0.7, 0.8, 0.6, 0.9]})
    figure = figures.rho_sweep(runs, None, ["test_accuracy"], title="t")
    ours = figure.data[0]
    assert list(ours.x) == [0.05, 0.5] and np.allclose(ours.y, [0.75, 0.75])
    assert np.allclose(ours.error_y.array, [0.05, 0.15])  # sample std / sqrt(2)


def test_rho_sweep_draws_runs_away_from_a_minimum_apart_from_the_mean():
    runs = pd.DataFrame({"rho": [0.05, 0.05, 0.5, 0.5], "seed": [0, 1, 0, 1], "test_accuracy": [0.7, 0.8, 0.1, 0.9]})
    stuck = pd.DataFrame({"rho": [0.5], "seed": [0]})
    figure = figures.rho_sweep(runs, None, ["test_accuracy"], title="t", not_at_minimum=stuck)
    line, crosses = figure.data[0], figure.data[1]
    assert list(line.x) == [0.05, 0.5] and np.allclose(line.y, [0.75, 0.9])  # 0.1 (seed 0 at 0.5) left out
    assert crosses.name == "no minimum" and list(crosses.x) == [0.5] and list(crosses.y) == [0.1]


def test_sharpness_vs_evaluation_has_a_point_per_run_and_a_mean_per_control():
    runs = control_runs()
    figure = figures.sharpness_vs_evaluation(runs, ["fisher_rao_norm"], ["test_accuracy"], title="t")
    points = [t for t in figure.data if t.mode == "markers" and t.showlegend is not False]
    means = [t for t in figure.data if t.marker.symbol == "x"]
    assert sum(len(t.x) for t in points) == len(runs)
    aug = runs[runs["control"] == "aug"]
    (aug_mean,) = [t for t in means if t.legendgroup == "aug"]
    assert aug_mean.x[0] == pytest.approx(aug["fisher_rao_norm"].mean())
    assert aug_mean.error_y.array[0] == pytest.approx(aug["test_accuracy"].sem())
    with pytest.raises(ValueError, match="sam_sharpness"):
        figures.sharpness_vs_evaluation(runs, ["sam_sharpness"], ["test_accuracy"], title="t")


def test_training_bands_draw_the_median_and_range_per_control_and_dot_runs_away_from_a_minimum():
    history = pd.DataFrame({"control": ["aug"] * 6, "seed": [0, 0, 1, 1, 2, 2], "epoch": [1, 2] * 3,
                            "train_loss": [0.9, 0.5, 0.7, 0.1, 0.8, 0.3], "train_accuracy": [0.1] * 6})
    figure = figures.training_bands(history, title="t", metrics=("train_loss",))
    band, median = figure.data
    assert list(median.y) == [0.8, 0.3]  # by hand: medians of (0.9, 0.7, 0.8) and (0.5, 0.1, 0.3)
    assert list(band.y) == [0.9, 0.5, 0.1, 0.7]  # the top edge forward, the bottom edge back
    checked = pd.DataFrame({"control": ["aug"] * 3, "seed": [0, 1, 2], "at_minimum": [True, False, True]})
    figure = figures.training_bands(history, title="t", metrics=("train_loss",), checked=checked)
    (dotted,) = [t for t in figure.data if t.line.dash == "dot"]
    assert list(dotted.y) == [0.7, 0.1] and "(1 of 3)" in figure.layout.title.text


def test_sharpness_scatter_draws_runs_away_from_a_minimum_as_open_circles():
    runs = control_runs()
    figure = figures.sharpness_vs_evaluation(runs, ["fisher_rao_norm"], ["test_accuracy"], title="t",
                                             away={("aug", 1)})
    (aug,) = [t for t in figure.data if t.legendgroup == "aug" and t.mode == "markers" and len(t.x) == 3]
    assert list(aug.marker.symbol) == ["circle", "circle-open", "circle"]
    assert aug.text[1] == "aug, seed 1 (no minimum)"




def test_rho_sweep_puts_the_papers_figures_on_their_own_axes():
    runs = pd.DataFrame({"rho": [0.05, 0.5], "seed": [0, 0], "test_accuracy": [0.7, 0.8], "relative_flatness": [1.0, 2.0],
                         "relative_flatness_paper": [10.0, 20.0]})
    paper = pd.DataFrame({"rho": [0.05, 0.25], "metric": ["relative_flatness"] * 2, "mean": [75.0, 4876.0], "sem": [1.7, 314.0]})
    figure = figures.rho_sweep(runs, paper, ["test_accuracy", "relative_flatness", "relative_flatness_paper"], title="t")
    assert len(figure.data) == 4  # ours x 3 rows, and the paper's only beside ours computed its way
    ours_clean, ours_rf, theirs_rf = figure.data[1], figure.data[2], figure.data[3]
    assert list(ours_clean.y) == [1.0, 2.0] and list(ours_rf.y) == [10.0, 20.0]
    assert list(theirs_rf.y) == [75.0, 4876.0] and theirs_rf.yaxis == "y6"  # third row, right column
    assert ours_rf.yaxis != theirs_rf.yaxis  # separate y axes: the paper's 4876 cannot flatten our 10 to 20


def test_learning_curves_draw_the_test_curve_at_the_epochs_that_have_it():
    """A run with `monitor_every` 2 has test points at epochs 2 and 3 (the last) only: the dotted lines join those,
    the training lines every epoch."""
    from sharpness.book.figures.training import learning_curves

    rows = [{"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.2},
            {"epoch": 2, "train_loss": 1.5, "train_accuracy": 0.4, "test_loss": 1.7, "test_accuracy": 0.35},
            {"epoch": 3, "train_loss": 1.2, "train_accuracy": 0.6, "test_loss": 1.6, "test_accuracy": 0.4}]
    traces = {trace.name + (" acc" if trace.yaxis == "y2" else " loss"): trace for trace in learning_curves({"aug": rows}, "t").data}
    assert list(traces["aug train loss"].x) == [1, 2, 3] and list(traces["aug train loss"].y) == [2.0, 1.5, 1.2]
    assert list(traces["aug test loss"].x) == [2, 3] and list(traces["aug test loss"].y) == [1.7, 1.6]
    assert list(traces["aug test acc"].x) == [2, 3] and list(traces["aug test acc"].y) == [0.35, 0.4]
