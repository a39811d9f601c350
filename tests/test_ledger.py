"""The reproduction ledger, on hand-made grid files whose right status is known."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from sharpness.book import ledger, prose, stats
from sharpness.core.paths import REFERENCE_DIR
from sharpness.studies import store
from sharpness.training.controls import CONTROLS

SHARPER = {"baseline": 1.0, "baseline_sam": 2.0, "aug": 4.0, "aug_sam": 8.0, "wd": 3.0, "wd_sam": 5.0}
ACCURACY = {"baseline": 0.70, "baseline_sam": 0.75, "aug": 0.85, "aug_sam": 0.88, "wd": 0.72, "wd_sam": 0.78}


def write_grid(path, dataset, arch, seeds, epochs, tier, claims_hold=True, extra_settings=None):
    """A grid summary in `store.save_grid`'s format: six controls, regularised controls sharper and
    more accurate than the baseline (or, with `claims_hold=False`, flatter and less accurate)."""
    sign = 1 if claims_hold else -1
    runs = [{"dataset": dataset, "arch": arch, "control": control, "seed": seed, "epochs": epochs, "status": "finished",
             "rho": 0.05 if control.endswith("sam") else None,
             "test_accuracy": 0.7 + sign * (ACCURACY[control] - 0.7) + 0.001 * seed,
             "relative_flatness": SHARPER[control] ** sign * (1 + 0.01 * seed)}
            for control in CONTROLS for seed in seeds]
    settings = {"tier": tier, "epochs": epochs, "seeds": list(seeds), **(extra_settings or {})}
    provenance = {"machine": "box (2 CPUs, no GPU)", "commit": "0" * 40, "data": dataset, "date": "2026-01-02T00:00:00+00:00",
                  "settings": settings}
    path.write_text(json.dumps({"provenance": provenance, "runs": runs}), encoding="utf-8")
    return path


def rows_by_item(rows):
    return {row.item: row for row in rows}


def central(rows):
    return next(row for row in rows if row.item.startswith("Central claim"))


def table_row(rows, arch, dataset):
    return rows_by_item(rows)[f"Table: {arch} on {dataset}, six controls"]


def test_no_results_means_stand_ins_and_nothing_run(tmp_path):
    rows = ledger.ledger(results_dir=tmp_path)
    assert central(rows).status == ledger.STAND_IN
    tables = [row for row in rows if row.item.startswith("Table:")]
    # one row per (dataset, arch) the paper tabulates
    paper = store.paper_results(None)
    assert len(tables) == len(paper[paper["rho"].isna() | (paper["rho"] == 0.05)][["dataset", "arch"]].drop_duplicates())
    assert {row.status for row in tables} == {ledger.NOT_RUN}
    assert rows_by_item(rows)["SAM radius sweep: rho in {0.5, 0.25, 0.05, 0.025, 0.005, 0.0025}"].status == ledger.STAND_IN
    assert all(row.status in ledger.STATUSES for row in rows)


def test_cpu_study_with_a_small_network_is_a_reduced_real_scale_and_says_what_ran(tmp_path):
    write_grid(tmp_path / "cifar10_folder_small_cnn.json", "cifar10_folder", "small_cnn", seeds=(0, 1, 2), epochs=12,
               tier="cpu", extra_settings={"train_samples": 10000})
    rows = ledger.ledger(results_dir=tmp_path)
    claim = central(rows)
    assert claim.status == ledger.REDUCED_SCALE
    for fact in ("small_cnn on CIFAR-10", "10,000 training images", "6 controls x 3 seeds", "12 epochs", "CPU run"):
        assert fact in claim.ran
    # 5 controls x 2 metrics (accuracy, relative flatness), all in the claimed direction
    assert claim.ours.startswith("10 of 10 comparisons")
    # a small CNN is none of the paper's tables
    assert table_row(rows, "ResNet-18", "CIFAR-10").status == ledger.NOT_RUN


def test_gpu_grid_at_the_papers_scale_fills_its_table_row(tmp_path):
    write_grid(tmp_path / "cifar10_folder_resnet18.json", "cifar10_folder", "resnet18", seeds=range(10), epochs=100, tier="gpu")
    rows = ledger.ledger(results_dir=tmp_path)
    row = table_row(rows, "ResNet-18", "CIFAR-10")
    assert row.status == ledger.PAPER_SCALE
    assert "10 seeds" in row.ran and "100 epochs" in row.ran and "GPU run" in row.ran
    assert "best aug_sam" in row.ours and "best aug_sam" in row.paper
    assert central(rows).status == ledger.PAPER_SCALE
    # fewer seeds than the paper's ten: a reduced scale
    write_grid(tmp_path / "cifar10_folder_resnet18.json", "cifar10_folder", "resnet18", seeds=range(3), epochs=100, tier="gpu")
    assert table_row(ledger.ledger(results_dir=tmp_path), "ResNet-18", "CIFAR-10").status == ledger.REDUCED_SCALE


def test_a_grid_against_the_claims_is_contradicted(tmp_path):
    write_grid(tmp_path / "cifar10_folder_resnet18.json", "cifar10_folder", "resnet18", seeds=(0, 1), epochs=20,
               tier="cpu", claims_hold=False)
    rows = ledger.ledger(results_dir=tmp_path)
    assert table_row(rows, "ResNet-18", "CIFAR-10").status == ledger.CONTRADICTED
    assert central(rows).ours.startswith("0 of 10 comparisons")


def test_claim_tally_by_hand():
    runs = pd.DataFrame([
        {"dataset": "d", "arch": "a", "control": c, "seed": 0, "rho": np.nan, "status": "finished", "test_accuracy": acc}
        for c, acc in (("baseline", 0.5), ("aug", 0.6), ("wd", 0.4))
    ])
    assert ledger.claim_tally(runs) == (1, 2)  # aug beats the baseline, wd does not


def test_rho_sweep_file_fills_the_rho_row(tmp_path):
    runs = [{"dataset": "cifar10_folder", "arch": "resnet18", "control": "baseline_sam", "seed": 0, "epochs": 30,
             "status": "finished", "rho": rho, "test_accuracy": accuracy}
            for rho, accuracy in ((0.5, 0.1), (0.05, 0.8), (0.005, 0.78))]
    (tmp_path / "cifar10_folder_resnet18_rho.json").write_text(
        json.dumps({"provenance": {"machine": "m", "date": "2026", "settings": {"tier": "gpu"}}, "runs": runs}))
    row = rows_by_item(ledger.ledger(results_dir=tmp_path))["SAM radius sweep: rho in {0.5, 0.25, 0.05, 0.025, 0.005, 0.0025}"]
    assert row.status == ledger.REDUCED_SCALE
    assert row.ours == "radii 0.5, 0.05, 0.005"

    # With the per-epoch history beside it: the run at rho 0.5 ends at 11% training accuracy, so it is named.
    history = pd.DataFrame([{"dataset": "cifar10_folder", "arch": "resnet18", "control": "baseline_sam", "seed": 0,
                             "rho": rho, "epoch": epoch, "train_loss": 1.0, "train_accuracy": first if epoch < 30 else last}
                            for rho, (first, last) in ((0.5, (0.10, 0.11)), (0.05, (0.4, 0.99)), (0.005, (0.4, 0.98)))
                            for epoch in range(1, 31)])  # every epoch: a history missing epochs is refused
    history.to_csv(store.history_path(tmp_path / "cifar10_folder_resnet18_rho.json"), index=False)
    row = rows_by_item(ledger.ledger(results_dir=tmp_path))["SAM radius sweep: rho in {0.5, 0.25, 0.05, 0.025, 0.005, 0.0025}"]
    # the trend leaves rho 0.5 out: 0.78 -> 0.80 from 0.005 to 0.05 is the paper's way
    assert row.ours == ("radii 0.5, 0.05, 0.005; rho 0.005 → 0.05: 1 of 1 metrics move the paper's way; "
                        "no minimum (train accuracy < 95%) in some or all runs at rho 0.5")


def test_toy_hessian_row_checks_the_papers_tables(tmp_path):
    for name in ("toy_hessians.csv", "paper_results.csv"):
        shutil.copy(REFERENCE_DIR / name, tmp_path / name)
    assert ledger.toy_hessian_row(tmp_path).status == ledger.PAPER_SCALE
    reference = pd.read_csv(tmp_path / "toy_hessians.csv")
    reference.loc[reference["function"] == "booth", "hessian_trace"] = 21.0  # the true trace is 20
    reference.to_csv(tmp_path / "toy_hessians.csv", index=False)
    row = ledger.toy_hessian_row(tmp_path)
    assert row.status == ledger.CONTRADICTED
    assert "4.8e-02" in row.ours  # |20 - 21| / 21, relative to the paper's figure


def test_unreadable_grid_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        ledger.ledger(results_dir=tmp_path)


def test_html_has_one_row_per_entry_with_links_and_code():
    rows = [ledger.Row("item <1>", ledger.NOT_RUN, "ran", "ours", "paper", "`python -m x`", "study/rho")]
    page = ledger.ledger_html(rows)
    assert page.count("<tr>") == 2  # header and one row
    assert 'href="study/rho.html"' in page and "item &lt;1&gt;" in page and "<code>python -m x</code>" in page


# --- sentences computed from the numbers -------------------------------------------------------

def test_simpson_findings_by_hand():
    assert stats.simpson_finding([0.05, 0.08], -0.007) == "nearly vanishes"  # |pooled| < 0.25 x 0.05
    assert stats.simpson_finding([0.05, 0.08], -0.03) == "reverses"
    assert stats.simpson_finding([0.05, 0.08], 0.02) == "weakens"
    assert stats.simpson_finding([0.05, 0.08], 0.06) == "keeps its sign"
    assert stats.simpson_finding([0.05, -0.08], 0.06) == "mixed within"


def test_simpson_sentence_on_the_papers_figures_says_what_the_slopes_say():
    points = stats.paper_control_means("workshop", dataset="cifar10")
    slopes = stats.simpson_slopes(points).set_index("sharpness measure")
    sentence = prose.simpson_sentence(points)
    pooled_rf = slopes.loc["relative_flatness", "pooled"]
    assert abs(pooled_rf) < 0.01  # the paper's own figures: relative flatness pooled slope about -0.007
    assert "relative flatness: test accuracy rises with sharpness within every architecture" in sentence
    assert f"the trend nearly vanishes ({pooled_rf:+.3f})" in sentence
    assert "reverses" not in sentence  # for no measure does the pooled trend reverse


def test_printed_agreement_rounds_ours_to_the_printed_digits(tmp_path):
    from sharpness.book.figures import toy as toy_figures

    reference = pd.read_csv(REFERENCE_DIR / "toy_hessians.csv", dtype=str)
    reference.loc[reference["function"] == "booth", "hessian_trace"] = "20.1"  # the true trace is 20
    reference.to_csv(tmp_path / "toy.csv", index=False)
    table = toy_figures.printed_agreement(tmp_path / "toy.csv")
    assert len(table) == 4 * len(reference)
    assert table[~table["agrees"]][["function", "statistic"]].values.tolist() == [["booth", "hessian_trace"]]
    # Rastrigin's determinant is 2 + 4 pi^2 A squared = 157437.68..., printed as the integer 157438
    assert toy_figures.printed_agreement(REFERENCE_DIR / "toy_hessians.csv")["agrees"].all()
    assert "rastrigin hessian determinant, ours 157437.68, printed 157438" in toy_figures.printed_agreement_note(
        REFERENCE_DIR / "toy_hessians.csv")


def test_bayes_accuracy_of_two_gaussians_by_monte_carlo():
    from sharpness.book.figures.boundary import bayes_accuracy

    generator = np.random.default_rng(0)
    separation, n = 1.0, 400_000
    labels = generator.integers(0, 2, n)
    x = generator.normal(size=n) + np.where(labels == 1, separation / 2, -separation / 2)
    assert np.mean((x > 0) == (labels == 1)) == pytest.approx(bayes_accuracy(separation), abs=3e-3)
    assert bayes_accuracy(0.5) == pytest.approx(0.5987, abs=1e-4)  # Phi(0.25), from a normal table


def test_units_and_wilcoxon_notes_read_the_data():
    note = prose.units_note()
    assert "percentage points" in note and "divides them by 100" in note
    runs = pd.DataFrame([{"dataset": "d", "arch": "a", "control": c, "seed": s, "rho": np.nan, "status": "finished",
                          "test_accuracy": 0.5 + 0.1 * (c == "aug") + 0.01 * s}
                         for c in ("baseline", "aug") for s in (0, 1)])
    assert "n = 2 seeds" in prose.wilcoxon_note(runs) and "= 0.25" in prose.wilcoxon_note(runs)
    assert prose.runs_scale(runs.assign(epochs=3)) == "d, a: 2 controls x 2 seeds (0, 1), 3 epochs"


def test_appendix_f1_row_reports_the_clean_data_check(tmp_path):
    path = write_grid(tmp_path / "cifar10_folder_cnn_mlp_cpu.json", "cifar10_folder", "cnn_mlp", seeds=(0, 1), epochs=30,
                      tier="cpu", extra_settings={"train_images": 10000, "command": "python -m sharpness cpu-study"})
    assert rows_by_item(ledger.ledger(results_dir=tmp_path))[
        "Appendix F.1: sharpness of the augmentation controls on clean instead of augmented data"].status == ledger.NOT_RUN
    document = json.loads(path.read_text())
    for run in document["runs"]:  # on clean data aug stays sharper than the baseline (4 > 1), aug_sam does not (0.5)
        if run["control"].startswith("aug"):
            run["clean.relative_flatness"] = 0.5 if run["control"] == "aug_sam" else run["relative_flatness"]
    path.write_text(json.dumps(document))
    row = rows_by_item(ledger.ledger(results_dir=tmp_path))[
        "Appendix F.1: sharpness of the augmentation controls on clean instead of augmented data"]
    assert row.status == ledger.REDUCED_SCALE and row.command == "`python -m sharpness cpu-study`"
    assert row.ours == ("The verdict 'sharper than the baseline' is the same on clean and augmented data in 1 of 2 cases; "
                        "it flips in 1 (aug_sam, relative_flatness: sharper on augmented data only).")
