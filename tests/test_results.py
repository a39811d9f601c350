"""sharpness.studies.store and sharpness.book.stats on hand-made run folders: SEM and Wilcoxon against hand computations and scipy."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from sharpness.book import prose, stats, tables
from sharpness.studies import store


def write_run(root, control, seed, metrics, *, dataset="digits", arch="simple_cnn", rho=0.05, status="finished"):
    run_dir = root / dataset / arch / control / f"seed{seed}"
    run_dir.mkdir(parents=True)
    config = {"dataset": dataset, "arch": arch, "control": control, "seed": seed, "epochs": 2, "rho": rho}
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "summary.json").write_text(json.dumps({"status": status, "train_accuracy": 1.0}))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


@pytest.fixture
def runs(tmp_path):
    accuracy = {"baseline": [0.70, 0.72, 0.71, 0.69, 0.73], "aug": [0.71, 0.74, 0.68, 0.73, 0.78]}
    for control, values in accuracy.items():
        for seed, value in enumerate(values):
            write_run(tmp_path, control, seed, {"test_accuracy": value, "sharpness": {"fisher_rao_norm": seed + 1.0}})
    write_run(tmp_path, "aug", 9, {"test_accuracy": 0.0}, status="diverged")
    return store.collect_runs(tmp_path)


def test_collect_runs_reads_grid_coordinates_and_nested_metrics(runs):
    assert len(runs) == 11
    assert set(runs["control"]) == {"baseline", "aug"}
    assert runs.loc[runs["control"] == "aug", "rho"].isna().all()  # rho only means something for SAM
    assert sorted(runs.loc[runs["control"] == "baseline", "sharpness.fisher_rao_norm"]) == [1, 2, 3, 4, 5]
    assert runs["train_accuracy"].eq(1.0).all()


def test_summarise_mean_and_sem_match_hand_computation(tmp_path):
    for seed, value in enumerate([1.0, 2.0, 4.0]):
        write_run(tmp_path, "wd", seed, {"test_ece": value})
    table = stats.summarise(store.collect_runs(tmp_path), metrics=["test_ece"])
    row = table.iloc[0]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(7 / 3)
    # sample variance = (16/9 + 1/9 + 25/9) / 2 = 7/3, so SEM = sqrt(7/3) / sqrt(3) = sqrt(7) / 3
    assert row["sem"] == pytest.approx(math.sqrt(7) / 3)


def test_summarise_leaves_out_diverged_runs(runs):
    table = stats.summarise(runs, metrics=["test_accuracy"])
    aug = table[table["control"] == "aug"].iloc[0]
    assert aug["n"] == 5
    assert aug["mean"] == pytest.approx(np.mean([0.71, 0.74, 0.68, 0.73, 0.78]))
    with_diverged = stats.summarise(runs, metrics=["test_accuracy"], finished_only=False)
    assert with_diverged[with_diverged["control"] == "aug"].iloc[0]["n"] == 6


def test_percent_figures_of_evaluate_become_fractions(tmp_path):
    write_run(tmp_path, "aug", 0, {"corruption_accuracy": 58.6, "generalisation_gap": 12.5, "test_accuracy": 0.9})
    row = store.collect_runs(tmp_path).iloc[0]
    assert row["corruption_accuracy"] == pytest.approx(0.586)
    assert row["generalisation_gap"] == pytest.approx(0.125)
    assert row["test_accuracy"] == pytest.approx(0.9)


def test_disagreement_per_run_averages_to_the_all_pairs_value(tmp_path):
    torch = pytest.importorskip("torch")
    predictions = {0: [0, 0, 0, 0], 1: [0, 0, 1, 1], 2: [1, 1, 1, 1]}
    for seed, labels in predictions.items():
        run_dir = write_run(tmp_path, "wd", seed, {"test_accuracy": 0.5})
        torch.save(torch.tensor(labels), run_dir / "test_predictions.pt")
    write_run(tmp_path, "aug", 0, {"test_accuracy": 0.5})  # a lone seed: no pair, no disagreement
    runs = store.collect_runs(tmp_path)
    wd = runs[runs["control"] == "wd"].set_index("seed")["prediction_disagreement"]
    # pairs: (0,1) disagree on 2 of 4, (0,2) on 4 of 4, (1,2) on 2 of 4
    assert wd.to_dict() == pytest.approx({0: (0.5 + 1.0) / 2, 1: (0.5 + 0.5) / 2, 2: (1.0 + 0.5) / 2})
    assert wd.mean() == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert runs.loc[runs["control"] == "aug", "prediction_disagreement"].isna().all()


def test_wilcoxon_exact_p_value_matches_enumeration(runs):
    # aug - baseline = [+0.01, +0.02, -0.03, +0.04, +0.05]: ranks 1..5, W+ = 1 + 2 + 4 + 5 = 12.
    # Of the 32 equally likely sign patterns, 5 give W+ >= 12 ({1..5}, {2,3,4,5}, {1,3,4,5},
    # {1,2,4,5}, {3,4,5}), so the exact one-sided p-value is 5/32.
    finished = runs[runs["status"] == "finished"]
    test = stats.wilcoxon_vs_baseline(finished, "test_accuracy", "aug")
    assert test["alternative"] == "greater"  # the paper's claim: regularised is more accurate
    assert test["n"] == 5
    assert test["statistic"] == pytest.approx(12)
    assert test["pvalue"] == pytest.approx(5 / 32)
    flipped = stats.wilcoxon_vs_baseline(finished, "test_accuracy", "aug", alternative="less")
    assert flipped["pvalue"] == pytest.approx(scipy_stats.wilcoxon([0.01, 0.02, -0.03, 0.04, 0.05], alternative="less").pvalue)


def test_wilcoxon_pairs_by_seed_not_by_position(tmp_path):
    # The baseline seeds are written in another order and one seed is unmatched.
    for seed, value in [(2, 0.5), (0, 0.1), (1, 0.3), (7, 9.0)]:
        write_run(tmp_path, "baseline", seed, {"test_accuracy": value})
    for seed, value in [(0, 0.2), (1, 0.5), (2, 0.8)]:
        write_run(tmp_path, "aug", seed, {"test_accuracy": value})
    test = stats.wilcoxon_vs_baseline(store.collect_runs(tmp_path), "test_accuracy", "aug")
    assert test["n"] == 3
    assert test["pvalue"] == pytest.approx(1 / 8)  # all three differences positive: 2**-3


def test_wilcoxon_rejects_bad_input(runs):
    with pytest.raises(ValueError, match="no claim direction"):
        stats.wilcoxon_vs_baseline(runs, "train_accuracy", "aug")
    with pytest.raises(ValueError, match="'bigger'"):
        stats.wilcoxon_vs_baseline(runs, "test_accuracy", "aug", alternative="bigger")
    mixed = pd.concat([runs, runs.assign(arch="vit")])
    with pytest.raises(ValueError, match="several archs"):
        stats.wilcoxon_vs_baseline(mixed, "test_accuracy", "aug")


def test_paper_results_converts_percent_and_parses_the_rho_sweep():
    paper = store.paper_results("arxiv")
    assert set(paper["source"]) == {"arxiv"}
    row = paper[(paper["arch"] == "resnet18") & (paper["dataset"] == "cifar10") & (paper["control"] == "baseline")]
    corruption = row[row["metric"] == "corruption_accuracy"].iloc[0]
    assert corruption["mean"] == pytest.approx(0.58614) and corruption["sem"] == pytest.approx(0.00201)
    swept = paper[(paper["control"] == "baseline_sam") & (paper["rho"] == 0.25)]
    assert len(swept) == 5
    assert paper.loc[paper["control"] == "aug", "rho"].isna().all()
    assert "tiny_imagenet" in set(paper["dataset"])
    with pytest.raises(ValueError, match="'arxive'"):
        store.paper_results("arxive")


def test_comparison_table_puts_ours_beside_the_paper(runs):
    pytest.importorskip("sharpness.training.controls")
    ours = stats.summarise(runs)
    table = tables.comparison_table(
        ours, store.paper_results(), "digits", "simple_cnn", metrics=["test_accuracy"],
        paper_dataset="cifar10", paper_arch="resnet18",
    )
    assert table.loc["baseline", ("test_accuracy", "paper")] == "0.720 ± 0.002"
    expected = stats.format_mean_sem(np.mean([0.70, 0.72, 0.71, 0.69, 0.73]), scipy_stats.sem([0.70, 0.72, 0.71, 0.69, 0.73]))
    assert table.loc["baseline", ("test_accuracy", "ours")] == expected
    assert table.loc["wd", ("test_accuracy", "ours")] == "—"  # the paper has wd, we ran none


@pytest.mark.parametrize("mean, sem, text", [
    (0.825, 0.078, "0.825 ± 0.078"),  # two significant digits of the SEM, the mean to the same place
    (34.607, 0.757, "34.61 ± 0.76"),
    (2903.22, 89.243, "2903 ± 89"),
    (12345.0, 150.0, "12340 ± 150"),  # SEM 1.5e2: the mean rounds to the tens
    (0.72, 0.002, "0.720 ± 0.002"),  # no invented trailing zero (0.0020)
    (4.052e-06, 2.173e-07, "4.05e-06 ± 2.2e-07"),  # too small for fixed notation
    (0.009, 0.0, "0.009 ± 0"),
    (0.5, float("nan"), "0.5"),
    (float("nan"), 0.1, "—"),
])
def test_format_mean_sem_by_hand(mean, sem, text):
    assert stats.format_mean_sem(mean, sem) == text


def test_grid_summary_round_trip_keeps_runs_and_provenance(runs, tmp_path):
    path = store.save_grid(runs, tmp_path / "grid.json", settings={"epochs": 2}, data="hand-made")
    loaded, provenance = store.load_grid(path)
    assert {"machine", "commit", "data", "date", "settings"} <= set(provenance)
    assert provenance["settings"] == {"epochs": 2} and provenance["data"] == "hand-made"
    pd.testing.assert_frame_equal(
        stats.summarise(loaded), stats.summarise(runs.drop(columns="run_dir")), check_dtype=False
    )
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="missing"):
        store.load_grid(tmp_path / "bad.json")


def test_a_runs_history_keeps_the_learning_rate_of_each_epoch_beside_the_runs(tmp_path):
    """A run at lr 0.1 whose schedule ran its three epochs at 0.1, 0.075 and 0.025: each row keeps the rate its epoch
    ran at and carries the run's own lr and batch size as its coordinates."""
    run_dir = write_run(tmp_path, "baseline", 0, {})
    config = json.loads((run_dir / "config.json").read_text()) | {"lr": 0.1, "batch_size": 256}
    (run_dir / "config.json").write_text(json.dumps(config))
    schedule = [0.1, 0.075, 0.025]
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": epoch, "lr": lr, "train_loss": 1.0 / epoch}) + "\n" for epoch, lr in enumerate(schedule, 1)))
    history = store.run_history(run_dir)
    assert history["epoch_lr"].tolist() == pytest.approx(schedule)
    assert history["lr"].tolist() == [0.1] * 3 and history["batch_size"].tolist() == [256] * 3


def test_differences_from_paper_names_claims_whose_majorities_differ():
    from sharpness.book import claims

    controls = ["baseline", "baseline_sam", "aug", "aug_sam", "wd", "wd_sam"]
    noise = [0.0, 0.002, -0.001, 0.001, -0.002]
    # ours, five seeds each at a minimum: every control more accurate; ECE higher for four, lower only for wd_sam
    accuracy = {"baseline": 0.5, **{c: 0.6 for c in controls[1:]}}
    ece = {"baseline": 0.1, **{c: 0.2 for c in controls[1:5]}, "wd_sam": 0.05}
    runs = pd.DataFrame([{"dataset": "cifar10_folder", "arch": "cnn_mlp", "control": c, "seed": s, "status": "finished",
                          "rho": 0.05 if c.endswith("sam") else np.nan, "train_accuracy": 1.0,
                          "test_accuracy": accuracy[c] + e * (1 + (c == "baseline")), "test_ece": ece[c] + e}
                         for c in controls for s, e in enumerate(noise)])
    history = pd.DataFrame([{**row, "epoch": epoch, "train_loss": 0.1} for row in
                            runs[["dataset", "arch", "control", "seed", "rho"]].to_dict("records") for epoch in range(1, 8)])
    tally = claims.tally(runs, history)
    # the paper's means: both claims hold for every control
    paper = pd.DataFrame([{"dataset": "cifar10", "arch": "resnet18", "control": c, "rho": 0.05 if c.endswith("sam") else np.nan,
                           "metric": metric, "mean": value, "sem": np.nan}
                          for c in controls for metric, value in
                          (("test_accuracy", accuracy[c]), ("test_ece", 0.3 if c == "baseline" else 0.2))])
    assert prose.differences_from_paper(tally, paper) == (
        "On our runs at a minimum, 1 of 2 tested claims hold for a majority of the controls (more accurate). "
        "Ours and the paper's differ on: better calibrated (ours: 1 of 5 controls; the paper's means: 5 of 5).")
    table = tables.claims_beside_paper(tally, paper)
    assert table.loc["better calibrated"].tolist() == ["1 of 5 (wd+S)", "1 of 5 (wd+S)", "5 of 5 (base+S, aug, aug+S, wd, wd+S)"]
    # no run at a minimum: nothing to compare
    away = claims.tally(runs.assign(train_accuracy=0.5), history)
    assert prose.differences_from_paper(away, paper).startswith("No claim could be tested on our runs at a minimum "
                                                                  "(0 of 30 runs reached one)")


def test_rho_state_table_says_per_radius_how_far_sam_stepped_and_what_the_network_became():
    from sharpness.book import tables

    runs = pd.DataFrame({"rho": [0.05, 0.05, 0.5], "seed": [0, 1, 0], "measured_set.accuracy": [1.0, 0.98, 0.12],
                         "measured_set.dead_unit_fraction": [0.05, 0.07, 0.9], "measured_set.logit_spread": [4.0, 5.0, 0.02]})
    checked = pd.DataFrame({"rho": [0.05, 0.05, 0.5], "seed": [0, 1, 0], "at_minimum": [True, True, False]})
    table = tables.rho_state_table(runs, checked, rho_scale=0.2, weight_norm=20.0).set_index("rho (the paper's)")
    # by hand: 0.5 x 0.2 = 0.1, which is 0.5% of 20; medians of the two seeds at 0.05: 99%, 6%, 4.5
    assert table.loc["0.5", "radius used"] == "0.1" and table.loc["0.5", "radius / ||θ₀||"] == "0.5%"
    assert table.loc["0.05", "runs at a minimum"] == "2 of 2" and table.loc["0.5", "runs at a minimum"] == "0 of 1"
    assert table.loc["0.05", "accuracy (measured images)"] == "99.0%"
    assert table.loc["0.05", "dead hidden units"] == "6.0%" and table.loc["0.05", "logit spread"] == "4.5"
    assert table.loc["0.5", "dead hidden units"] == "90.0%" and table.loc["0.5", "logit spread"] == "0.02"


def test_a_sweeps_history_tells_the_runs_of_one_seed_in_different_cells_apart(tmp_path):
    """Two cells (lr 0.001 at 4 epochs, lr 0.01 at 2) of the same control and seed: each run has its own epochs;
    a history lacking one epoch of one cell is refused, naming that run."""
    run = dict(dataset="d", arch="a", control="baseline", seed=0, status="finished", batch_size=128)
    cells = {0.001: 4, 0.01: 2}
    (tmp_path / "sweep.json").write_text(json.dumps({"provenance": {}, "runs": [
        {**run, "lr": lr, "epochs": epochs} for lr, epochs in cells.items()]}))
    rows = [{**run, "lr": lr, "epoch": epoch, "train_loss": 1.0} for lr, epochs in cells.items()
            for epoch in range(1, epochs + 1)]
    pd.DataFrame(rows).to_csv(tmp_path / "sweep.history.csv", index=False)
    assert len(store.load_history(tmp_path / "sweep.json")) == 6
    pd.DataFrame(rows[:-1]).to_csv(tmp_path / "sweep.history.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks epochs of the run .*0\.01\) \(has 1 of 2\)"):
        store.load_history(tmp_path / "sweep.json")


def test_the_runs_the_plateau_rule_alone_left_out_are_named_beside_the_frozen_weight_noise(tmp_path):
    """A grid of three runs at 99% on their measured images: one plateaued, one whose loss fell 3% (0.1 -> 0.097)
    and one at 80% accuracy (left out for its accuracy, not the plateau); a second path that does not exist."""
    run = dict(dataset="d", arch="cnn_mlp_wide", rho=None, status="finished", batch_size=128, lr=0.01, epochs=6)
    grid = [{**run, "control": "aug", "seed": 0, "measured_set.accuracy": 0.99},
            {**run, "control": "aug", "seed": 1, "measured_set.accuracy": 0.99},
            {**run, "control": "aug_sam", "seed": 0, "measured_set.accuracy": 0.80}]
    (tmp_path / "g.json").write_text(json.dumps({"provenance": {}, "runs": grid}))
    losses = {("aug", 0): [0.1] * 6, ("aug", 1): [0.1, 0.1, 0.1, 0.1, 0.1, 0.097], ("aug_sam", 0): [0.1] * 6}
    pd.DataFrame([{**run, "control": control, "seed": seed, "epoch": epoch + 1, "train_loss": loss, "measured_loss": loss}
                  for (control, seed), values in losses.items() for epoch, loss in enumerate(values)]
                 ).to_csv(tmp_path / "g.history.csv", index=False)
    total, misses = prose.plateau_misses([tmp_path / "g.json", tmp_path / "absent.json"])
    assert total == 3 and misses[["control", "seed"]].values.tolist() == [["aug", 1]]
    assert misses[["fall", "fall_nats"]].values.tolist()[0] == pytest.approx([0.03, 0.003])
    wide = prose.network_name("cnn_mlp_wide")
    frozen = pd.DataFrame({"fall": [0.035, 0.01], "fall_nats": [0.001, 0.004]})  # neither window beats both figures
    assert prose.plateau_misses_sentence(total, misses, frozen, wide) == (
        f"Of the 3 runs of the committed grids, the plateau rule alone left 1 out: {wide} aug seed 1 (batch 128, "
        f"lr 0.01): fell 3.0% (3.0e-03 nats). Of the 2 windows of passes with the weights of {wide} runs frozen, none "
        "fell as far as any of those, on both counts.")
    frozen.loc[2] = [0.031, 0.0031]  # a window that fell a little further on both counts
    assert prose.plateau_misses_sentence(total, misses, frozen, wide).endswith(
        "Of the 3 windows of passes with the weights of CNN-MLP runs frozen, 1 of those 1 falls is matched by one of "
        "them, so noise alone could have left such a run out.")
    assert prose.plateau_misses_sentence(3, misses.iloc[:0], frozen, wide) == (
        "Of the 3 runs of the committed grids, the plateau rule alone left none out.")
