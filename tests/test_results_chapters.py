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


def _sweep_history(final_by_run):
    """Three epochs per run: (rho, seed) -> final (train loss, train accuracy); epoch 1 at loss 2.3, accuracy 0.1."""
    rows = []
    for (rho, seed), (loss, accuracy) in final_by_run.items():
        for epoch, (l, a) in ((1, (2.3, 0.1)), (2, ((2.3 + loss) / 2, (0.1 + accuracy) / 2)), (3, (loss, accuracy))):
            rows.append({"dataset": "d", "arch": "a", "control": "baseline_sam", "rho": rho, "seed": seed,
                         "epoch": epoch, "train_loss": l, "train_accuracy": a})
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # epochs out of order: the check sorts them


def test_minimum_check_uses_the_final_training_accuracy():
    history = _sweep_history({(0.05, 0): (0.02, 0.999), (0.5, 0): (2.29, 0.11), (0.5, 1): (0.4, 0.949),
                              (0.5, 2): (0.3, 0.95)})
    check = stats.minimum_check(history).set_index(["rho", "seed"])
    assert check["at_minimum"].to_dict() == {(0.05, 0): True, (0.5, 0): False, (0.5, 1): False, (0.5, 2): True}
    assert check.loc[(0.5, 0), "last_train_loss"] == 2.29 and check.loc[(0.5, 0), "first_train_loss"] == 2.3
    assert check.loc[(0.5, 0), "epochs"] == 3


def test_rho_findings_leave_out_runs_away_from_a_minimum_and_name_the_trends():
    history = _sweep_history({(r, s): (0.05, 0.99) for r in (0.005, 0.05) for s in (0, 1)}
                             | {(0.5, 0): (2.30, 0.11), (0.5, 1): (1.07, 0.61)})
    runs = pd.DataFrame({"dataset": "d", "arch": "a", "control": "baseline_sam",
                         "rho": [0.005, 0.005, 0.05, 0.05, 0.5, 0.5], "seed": [0, 1, 0, 1, 0, 1],
                         "test_accuracy": [0.60, 0.62, 0.64, 0.66, 0.10, 0.11],
                         "fisher_rao_norm": [2.0, 2.0, 1.0, 1.0, 0.2, 0.2]})
    text = prose.rho_findings(runs, stats.minimum_check(history), ["test_accuracy", "fisher_rao_norm"])
    first, second, third = text.split("\n\n")
    assert first.startswith("**At rho = 0.5 SAM did not bring this network to a minimum** in 2 of 2 runs: ")
    assert "training accuracy is 0.11–0.61 (the bar: 95%) and their training loss 1.07–2.30, from 2.30 after" in first
    assert second == ("Over the radii whose runs reached a minimum (rho = 0.005, 0.05; 2 seeds each), from "
                      "rho = 0.005 to 0.05: test accuracy rises (0.61 → 0.65); Fisher-Rao norm falls (2 → 1).")
    # the paper: a larger radius gives a more accurate function at a sharper minimum
    assert "the paper's way (more accurate, better calibrated, sharper) for test accuracy; the other way for " \
           "Fisher-Rao norm." in third


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


def test_wilcoxon_pvalues_pivot_matches_scipy():
    accuracy = {"baseline": [0.70, 0.72, 0.71, 0.69], "aug": [0.71, 0.75, 0.70, 0.74]}
    runs = run_rows(accuracy)
    runs = pd.concat([runs, run_rows({"aug": [0.0]}).assign(seed=9, status="diverged")], ignore_index=True)
    pvalues = stats.wilcoxon_pvalues(runs)
    expected = scipy_stats.wilcoxon(np.subtract(accuracy["aug"], accuracy["baseline"]), alternative="greater").pvalue
    assert pvalues.loc[("digits", "simple_cnn", "aug"), "test_accuracy"] == pytest.approx(expected)
    assert list(pvalues.index) == [("digits", "simple_cnn", "aug")]


def test_claim_agreement_counts_controls_in_the_claimed_direction():
    summary = pd.DataFrame({
        "dataset": "digits", "arch": "simple_cnn", "rho": [np.nan, np.nan, 0.05],
        "control": ["baseline", "aug", "aug_sam"], "metric": "test_ece", "mean": [0.10, 0.05, 0.20], "sem": np.nan,
    })
    paper = pd.DataFrame({
        "dataset": "cifar10", "arch": "resnet18", "rho": [np.nan, np.nan, 0.05],
        "control": ["baseline", "aug", "aug_sam"], "metric": "test_ece", "mean": [0.10, 0.05, 0.02], "sem": np.nan,
    })
    table = stats.claim_agreement(summary, paper, "LABEL")
    assert table.loc["test_ece"].tolist() == ["less than baseline", "1 of 2", "2 of 2"]
    assert list(table.columns) == ["claim (vs baseline)", "ours (LABEL)", "paper (ResNet-18, CIFAR-10)"]


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
