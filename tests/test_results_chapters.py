"""The helpers behind the study chapters, on hand-made studies and tables whose answers are known."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from sharpness.book import prose, stats, tables
from sharpness.studies import store
from sharpness.training import controls

PROVENANCE = {"machine": "box (2 CPUs, no GPU)", "commit": "0123456789abcdef", "data": "digits", "date": "2026-01-01"}


def fake_study(runs: pd.DataFrame | None = None, offline: bool = True) -> SimpleNamespace:
    return SimpleNamespace(runs=runs, provenance=PROVENANCE, offline=offline, label="LABEL")


def run_rows(values: dict[str, list[float]], metric: str = "test_accuracy", **extra) -> pd.DataFrame:
    """One finished digits/simple_cnn run per (control, seed), `metric` set from `values[control][seed]`."""
    rows = [{"dataset": "digits", "arch": "simple_cnn", "control": control, "seed": seed, "status": "finished",
             "rho": 0.05 if "sam" in control else np.nan, metric: value, **extra}
            for control, column in values.items() for seed, value in enumerate(column)]
    return pd.DataFrame(rows)


def test_simpson_slopes_within_and_pooled_by_hand():
    # Arch a: log10 sharpness 0, 1, 2 and accuracy +0.1 a decade; arch b: -2, -1, 0 and +0.05 a decade.
    points = pd.DataFrame({
        "arch": ["a"] * 3 + ["b"] * 3,
        "relative_flatness": [1, 10, 100, 0.01, 0.1, 1],
        "flat_everywhere": [2.0] * 6,
        "test_accuracy": [0.5, 0.6, 0.7, 0.9, 0.95, 1.0],
    })
    slopes = stats.simpson_slopes(points, measures=("relative_flatness", "flat_everywhere")).set_index("sharpness measure")
    # Pooled: mean log x = 0, sum x*y = 0.6 + 1.4 - 1.8 - 0.95 = -0.75, sum x^2 = 10, slope -0.075.
    assert slopes.loc["relative_flatness"].to_dict() == pytest.approx({"within a": 0.1, "within b": 0.05, "pooled": -0.075})
    assert slopes.loc["flat_everywhere"].isna().all()  # one sharpness value: no slope


def test_decade_slope_matches_numpy_polyfit_on_noisy_points():
    generator = np.random.default_rng(0)
    sharpness = 10 ** generator.uniform(-1, 2, size=20)
    quality = 0.3 * np.log10(sharpness) + generator.normal(0, 0.05, size=20)
    assert stats.decade_slope(sharpness, quality) == pytest.approx(np.polyfit(np.log10(sharpness), quality, 1)[0])
    assert stats.decade_slope(sharpness, quality) == pytest.approx(scipy_stats.linregress(np.log10(sharpness), quality).slope)


@pytest.mark.parametrize("offline", [True, False])
def test_study_note_names_the_runs_and_flags_the_offline_grid(offline):
    runs = run_rows({"baseline": [0.5, 0.6], "aug": [0.7, 0.8]}, epochs=3)
    note = prose.study_note(fake_study(runs, offline=offline))
    assert note.startswith("**Runs shown: LABEL** (digits, simple_cnn: 2 controls x 2 seeds (0, 1), 3 epochs). "
                           "Machine: box (2 CPUs, no GPU); commit `0123456789`; data: digits;")
    assert ("not** a reproduction" in note) is offline


def test_rho_note_lists_the_finished_sam_radii_and_seeds():
    runs = pd.DataFrame({
        "control": ["baseline_sam", "baseline_sam", "baseline_sam", "baseline_sam", "baseline"],
        "rho": [0.25, 0.05, 0.05, 0.5, np.nan], "seed": [1, 0, 1, 2, 7],
        "status": ["finished", "finished", "finished", "diverged", "finished"],
    })
    note = prose.rho_note(fake_study(runs, offline=False))
    assert note == ("**Runs shown: LABEL** (radii 0.05, 0.25; seeds 0, 1). Machine: box (2 CPUs, no GPU); "
                    "commit `0123456789`; date: 2026-01-01.")
    assert "open diamonds" in prose.rho_note(fake_study(runs, offline=True))


def _sweep(final_by_run):
    """(runs, history) of a rho sweep: (rho, seed) -> (final train accuracy, test accuracy, Fisher-Rao norm,
    losses); the history holds the losses per epoch, shuffled (the check sorts them)."""
    runs, history = [], []
    for (rho, seed), (train, test, fisher_rao, losses) in final_by_run.items():
        key = {"dataset": "d", "arch": "a", "control": "baseline_sam", "rho": rho, "seed": seed}
        runs.append({**key, "status": "finished", "train_accuracy": train, "test_accuracy": test, "fisher_rao_norm": fisher_rao})
        history += [{**key, "epoch": epoch + 1, "train_loss": loss} for epoch, loss in enumerate(losses)]
    return pd.DataFrame(runs), pd.DataFrame(history).sample(frac=1, random_state=0)


FLAT = [2.3, 1.0, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
COLLAPSED = [2.3] * 10


def test_rho_findings_leave_out_runs_away_from_a_minimum_and_test_the_end_radii():
    from sharpness.training import minimum

    noise = (0.0, 0.002, -0.001)
    runs, history = _sweep(
        {(0.005, s): (0.99, 0.60 + e, 2.0 * (1 + e), FLAT) for s, e in enumerate(noise)}
        | {(0.05, s): (0.99, 0.66 + 2 * e, 1.0 * (1 - e), FLAT) for s, e in enumerate(noise)}
        | {(0.5, 0): (0.11, 0.10, 0.2, COLLAPSED), (0.5, 1): (0.61, 0.50, 0.2, FLAT)})
    checked = minimum.check(runs, history)
    text = prose.rho_findings(runs, checked, history)
    first, second, third = text.split("\n\n")
    assert first.startswith("**Runs that reached no minimum** (a run reached a minimum when")
    assert "rho 0.5: 2 of 2 runs not at a minimum (accuracy 11.0–61.0% on the measured images (< 95%))" in first
    assert second == "Runs at a minimum per radius: rho 0.5: 0 of 2; rho 0.05: 3 of 3; rho 0.005: 3 of 3."
    # rho 0.05 against 0.005: more accurate (the paper's way), flatter by Fisher-Rao (against it)
    assert third.startswith("rho = 0.05 against rho = 0.005, paired over the seeds both reached a minimum in")
    assert third.endswith("sharper: against; more accurate: holds.")


def test_rho_table_largest_radius_first_with_dashes_for_missing_figures():
    long = pd.DataFrame({"rho": [0.05, 0.25, 0.05], "metric": ["test_accuracy", "test_accuracy", "test_ece"],
                         "mean": [0.79, 0.84, 0.11], "sem": [0.01, np.nan, 0.002]})
    table = tables.rho_table(long, ["test_ece", "fisher_rao_norm", "test_accuracy"])
    assert list(table.columns) == ["0.25", "0.05"]
    assert list(table.index) == ["ECE", "test acc."]  # no fisher_rao_norm figures at all
    assert table["0.25"].tolist() == ["—", "0.84"]
    assert table["0.05"].tolist() == ["0.110 ± 0.002", "0.79 ± 0.01"]


def test_clean_data_table_short_names_and_yes_no_verdicts():
    runs = pd.DataFrame({"control": ["baseline", "baseline", "aug_sam", "aug_sam"], "seed": [0, 1, 0, 1], "status": "finished",
                         "fisher_rao_norm": [1.0, 2.0, 4.0, 6.0], "clean.fisher_rao_norm": [np.nan, np.nan, 1.0, 1.2]})
    table = tables.clean_data_table(stats.clean_data_check(runs))
    row = table.iloc[0]
    assert (row["measure"], row["control"], row["sharper (aug.)"], row["sharper (clean)"]) == (
        "Fisher-Rao", "aug+S", "yes", "no")  # 5 > 1.5 on augmented images, 1.1 < 1.5 on clean ones
    assert row["augmented"] == "5 ± 1" and row["clean"] == "1.1 ± 0.1"


def test_grid_benchmark_note_with_and_without_a_measurement(tmp_path):
    missing = prose.grid_benchmark_note(tmp_path / "bench_grid.json", runs_label="real CIFAR-10, CPU, 5 seeds")
    assert "`results/bench_grid.json` is absent" in missing
    assert "the runs on this page are real CIFAR-10, CPU, 5 seeds" in missing and "session" not in missing
    bench = {"provenance": {"machine": "h100", "date": "2026-01-02"},
             "best": {"runs_in_parallel": 4, "images_per_second": 12345.6, "share_of_bf16_peak": 0.4567,
                      "projected_grid_minutes": 59.6}}
    (tmp_path / "bench_grid.json").write_text(json.dumps(bench))
    note = prose.grid_benchmark_note(tmp_path / "bench_grid.json")
    assert note.startswith("Measured on h100 (2026-01-02): 4 concurrent runs gave 12,346 training images per second")
    assert "45.7% of the bf16 peak" in note and "60 minutes (goal: 60)" in note


def test_comparison_tables_one_function_and_one_sharpness_table_per_setting():
    runs = run_rows({"baseline": [0.7, 0.8], "aug": [0.9, 1.0]}, fisher_rao_norm=3.0)
    paper = store.paper_results("arxiv")
    captioned = tables.comparison_tables(fake_study(runs), paper)
    assert [caption.split(":")[0] for caption, _ in captioned] == ["The learned function", "Sharpness"]
    assert captioned[0][0].endswith("paper: resnet18 on cifar10 (a different setting: compare orderings, not values). "
                                 + prose.CONTROL_LEGEND)
    function_metrics = list(dict.fromkeys(captioned[0][1].index.get_level_values("metric")))
    assert "test acc." in function_metrics
    short = [prose.METRIC_SHORT[m] for m in tables.FUNCTION_METRICS]
    assert function_metrics == [m for m in short if m in function_metrics]  # the paper's order
    assert list(captioned[0][1].columns) == list(prose.CONTROL_SHORT.values())  # ours and the paper's controls, short
    # Mean of 0.9 and 1.0; SEM = sample std (0.1 / sqrt 2) / sqrt 2 = 0.05.
    assert captioned[0][1].loc[("test acc.", "ours"), "aug"] == "0.95 ± 0.05"
    # with a minimum check, every table ends with the count of our runs at a minimum per control
    checked = pd.DataFrame({"control": ["baseline", "baseline", "aug", "aug"], "at_minimum": [True, True, False, True]})
    for _, table in tables.comparison_tables(fake_study(runs), paper, checked=checked):
        assert table.index[-1] == (tables.MINIMUM_ROW, "ours")
        assert table.loc[(tables.MINIMUM_ROW, "ours"), ["base", "aug", "wd"]].tolist() == ["2 of 2", "1 of 2", "—"]


def test_first_setting_beside_paper_takes_sam_at_the_paper_radius():
    runs = run_rows({"baseline": [0.7, 0.8]})
    summary = stats.summarise(runs)
    paper = store.paper_results("arxiv")
    shown = stats.first_setting_beside_paper(fake_study(runs), summary, paper)
    assert shown["setting"] == ("digits", "simple_cnn") and shown["paper_setting"] == ("cifar10", "resnet18")
    assert shown["metrics"] == ["test_accuracy"]
    assert set(shown["paper"]["rho"].dropna()) <= {0.05}
    assert len(shown["paper"]) == ((paper["dataset"] == "cifar10") & (paper["arch"] == "resnet18")
                                   & (paper["rho"].isna() | (paper["rho"] == 0.05))).sum()


def test_controls_and_hyperparameter_tables_list_every_control_and_data_set():
    table = tables.controls_table().set_index("control")
    assert list(table.index) == list(controls.CONTROLS)
    assert table.loc["wd_sam"].tolist() == [False, True, controls.get_control("wd_sam").weight_decay]
    hyper = tables.hyperparameter_table(("digits",))
    assert hyper.iloc[0]["data set"] == "digits" and len(hyper) == 1


def test_seeds_pair_controls_and_differ_from_each_other():
    differences = stats.initial_weight_differences(seeds=(0, 1))
    per_control = differences[differences["seed"] != "0 vs 1"]
    assert len(per_control) == 2 * (len(controls.CONTROLS) - 1)
    assert (per_control["max |initial weight difference|"] == 0).all()
    assert differences.iloc[-1]["max |initial weight difference|"] > 0
    assert stats.epoch_order_checks(count=50) == {"permutation": True, "epochs_differ": True, "seeds_differ": True}
    assert torch.equal(stats.initial_weights("aug", 3), stats.initial_weights("wd_sam", 3))
