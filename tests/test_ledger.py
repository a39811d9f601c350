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
NOISE = (0.0, 0.004, -0.003, 0.002, -0.001, 0.003, -0.002, 0.001, -0.004, 0.0)  # seed-to-seed, per seed


def converged(epochs):
    """Training losses flat over the last epochs (at a minimum), one per epoch: a history holds every epoch."""
    return [2.0, 1.0, 0.5, 0.2] + [0.1] * (epochs - 4)


def still_falling(epochs):
    """Training losses that fall by half over the last five epochs, one per epoch."""
    return [2.0 * 0.87 ** epoch for epoch in range(epochs)]


def write_grid(path, dataset, arch, seeds, epochs, tier, claims_hold=True, extra_settings=None,
               train_accuracy=1.0, losses=converged):
    """A grid summary in `store.save_grid`'s format, with its per-epoch history beside it: six controls,
    regularised controls sharper and more accurate than the baseline (or, with `claims_hold=False`, flatter
    and less accurate), every run ending at `train_accuracy` after the training losses `losses`."""
    sign = 1 if claims_hold else -1
    runs = [{"dataset": dataset, "arch": arch, "control": control, "seed": seed, "epochs": epochs, "status": "finished",
             "rho": 0.05 if control.endswith("sam") else None, "train_accuracy": train_accuracy,
             "test_accuracy": 0.7 + sign * (ACCURACY[control] - 0.7) + NOISE[seed] * (1 + (control == "baseline")),
             "relative_flatness": SHARPER[control] ** sign * (1 + NOISE[seed] * (2 if control == "baseline" else 1))}
            for control in CONTROLS for seed in seeds]
    settings = {"tier": tier, "epochs": epochs, "seeds": list(seeds), **(extra_settings or {})}
    provenance = {"machine": "box (2 CPUs, no GPU)", "commit": "0" * 40, "data": dataset, "date": "2026-01-02T00:00:00+00:00",
                  "settings": settings}
    path.write_text(json.dumps({"provenance": provenance, "runs": runs}), encoding="utf-8")
    history = pd.DataFrame([{**{k: run[k] for k in ("dataset", "arch", "control", "seed", "rho")}, "epoch": epoch + 1,
                             "train_loss": loss} for run in runs for epoch, loss in enumerate(losses(epochs))])
    history.to_csv(store.history_path(path), index=False)
    return path


def rows_by_item(rows):
    return {row.item: row for row in rows}


SHARPEST = "The sharpest model: augmentation + SAM against augmentation alone (sharper and better)"


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
    # 5 controls, each sharper (relative flatness) and more accurate, every run at a minimum
    assert claim.ours.startswith("18 of 18 runs reached a minimum")
    assert "sharper: 5 of 5 (" in claim.ours and "more accurate: 5 of 5 (" in claim.ours
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


def test_a_grid_that_contradicts_the_paper_changes_the_statuses_and_the_sentences(tmp_path):
    """The same grid file name, three contents: the paper's way, against it, and away from a minimum."""
    path = tmp_path / "cifar10_folder_cnn_mlp_cpu.json"
    write_grid(path, "cifar10_folder", "cnn_mlp", seeds=range(5), epochs=30, tier="cpu")
    agreeing = rows_by_item(ledger.ledger(results_dir=tmp_path))
    assert central(agreeing.values()).status == ledger.REDUCED_SCALE
    assert agreeing[SHARPEST].status == ledger.REDUCED_SCALE

    # controls flatter and less accurate than the baseline
    write_grid(path, "cifar10_folder", "cnn_mlp", seeds=range(5), epochs=30, tier="cpu", claims_hold=False)
    against = rows_by_item(ledger.ledger(results_dir=tmp_path))
    claim = central(against.values())
    assert claim.status == ledger.CONTRADICTED
    assert "sharper: 0 of 5 (none), against for " in claim.ours and "more accurate: 0 of 5 (none), against" in claim.ours
    assert against[SHARPEST].status == ledger.CONTRADICTED  # aug_sam flatter and less accurate than aug
    assert claim.ours != agreeing[central(agreeing.values()).item].ours

    # the paper's way, but no run at a minimum: not reproduced, with the reasons
    write_grid(path, "cifar10_folder", "cnn_mlp", seeds=range(5), epochs=30, tier="cpu", train_accuracy=0.76,
               losses=still_falling)
    away = rows_by_item(ledger.ledger(results_dir=tmp_path))
    claim = central(away.values())
    assert claim.status == ledger.NOT_REPRODUCED
    assert claim.ours.startswith("0 of 30 runs reached a minimum, too few to test: baseline: 5 of 5 runs not at a "
                                 "minimum (accuracy 76.0% on the measured images (< 95%))")
    assert away[SHARPEST].status == ledger.NOT_REPRODUCED


def test_a_partial_grid_with_two_seeds_has_not_enough_seeds(tmp_path):
    write_grid(tmp_path / "cifar10_folder_cnn_mlp_cpu.json", "cifar10_folder", "cnn_mlp", seeds=(0, 1), epochs=30, tier="cpu")
    rows = rows_by_item(ledger.ledger(results_dir=tmp_path))
    assert central(rows.values()).status == ledger.TOO_FEW_SEEDS
    assert "at most 2 paired seeds per comparison, the tests need 3" in central(rows.values()).ours
    assert rows[SHARPEST].status == ledger.TOO_FEW_SEEDS
    write_grid(tmp_path / "cifar10_folder_cnn_mlp_cpu.json", "cifar10_folder", "cnn_mlp", seeds=(0,), epochs=30, tier="cpu")
    assert central(ledger.ledger(results_dir=tmp_path)).status == ledger.TOO_FEW_SEEDS


def test_every_status_is_explained_on_the_page():
    for status in ledger.STATUSES:
        assert status in ledger.STATUS_COLOURS
    for word in ("not reproduced", "not enough seeds", "contradicted", "partly reproduced", "not shown at this n"):
        assert f"*{word}*" in ledger.STATUS_RULE.lower()
    rules = ledger.status_rules()
    assert ledger.STATUS_RULE in rules and "10% of the target loss" in rules and "51 x 51" in rules


RHO_ITEM = "SAM radius sweep: rho in {0.5, 0.25, 0.05, 0.025, 0.005, 0.0025}"


def write_rho_sweep(path, accuracy_at_025, train_accuracy_at_025=0.99, seeds=range(3)):
    """A rho sweep (0.5, 0.25, 0.05) with its history: rho 0.5 collapses (train accuracy 0.11); rho 0.25 is
    sharper than 0.05 and has test accuracy `accuracy_at_025` (0.05 has 0.80)."""
    runs = [{"dataset": "cifar10_folder", "arch": "resnet18", "control": "baseline_sam", "seed": seed, "epochs": 30,
             "status": "finished", "rho": rho, "train_accuracy": train, "test_accuracy": test + NOISE[seed],
             "relative_flatness": flatness * (1 + NOISE[seed])}
            for rho, train, test, flatness in ((0.5, 0.11, 0.10, 1.0), (0.25, train_accuracy_at_025, accuracy_at_025, 9.0),
                                               (0.05, 0.99, 0.80, 3.0))
            for seed in seeds]
    path.write_text(json.dumps({"provenance": {"machine": "m", "date": "2026", "settings": {"tier": "gpu"}}, "runs": runs}))
    history = pd.DataFrame([{**{k: run[k] for k in ("dataset", "arch", "control", "seed", "rho")}, "epoch": epoch + 1,
                             "train_loss": loss} for run in runs for epoch, loss in enumerate(converged(30))])
    history.to_csv(store.history_path(path), index=False)


def test_rho_row_names_the_radii_at_a_minimum_and_tests_the_papers_pair(tmp_path):
    path = tmp_path / "cifar10_folder_resnet18_rho.json"
    write_rho_sweep(path, accuracy_at_025=0.85)
    row = rows_by_item(ledger.ledger(results_dir=tmp_path))[RHO_ITEM]
    assert row.status == ledger.REDUCED_SCALE  # sharper and more accurate at 0.25; no ECE or corruptions measured
    assert row.ours.startswith("runs at a minimum per radius: rho 0.5: 0 of 3, rho 0.25: 3 of 3, rho 0.05: 3 of 3; "
                               "rho 0.25 against rho 0.05 (the paper's printed pair): 6 of 6 runs reached a minimum")
    assert "3 radii, seeds each 3" in row.ran and "inference" in row.paper
    write_rho_sweep(path, accuracy_at_025=0.75)  # less accurate at the larger radius
    assert rows_by_item(ledger.ledger(results_dir=tmp_path))[RHO_ITEM].status == ledger.CONTRADICTED
    write_rho_sweep(path, accuracy_at_025=0.85, train_accuracy_at_025=0.6)  # rho 0.25 reaches no minimum
    row = rows_by_item(ledger.ledger(results_dir=tmp_path))[RHO_ITEM]
    assert row.status == ledger.NOT_REPRODUCED and "rho 0.25: 3 of 3 runs not at a minimum (accuracy 60.0% on the measured images" in row.ours


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


def test_a_json_that_is_no_grid_at_the_top_of_results_is_named_with_where_it_belongs(tmp_path):
    (tmp_path / "noise.json").write_text(json.dumps({"windows": [0.01]}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"noise\.json is not a grid summary: missing \['provenance', 'runs'\].*subfolder"):
        ledger.committed_grids(tmp_path)
    (tmp_path / "minimum").mkdir()
    (tmp_path / "noise.json").rename(tmp_path / "minimum" / "noise.json")  # where the fix says it belongs
    assert ledger.committed_grids(tmp_path) == []


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


def test_units_note_and_runs_scale_read_the_data():
    note = prose.units_note()
    assert "percentage points" in note and "divides them by 100" in note
    runs = pd.DataFrame([{"dataset": "d", "arch": "a", "control": c, "seed": s, "rho": np.nan, "status": "finished",
                          "test_accuracy": 0.5 + 0.1 * (c == "aug") + 0.01 * s}
                         for c in ("baseline", "aug") for s in (0, 1)])
    assert prose.runs_scale(runs.assign(epochs=3)) == "d, a: 2 controls x 2 seeds (0, 1), 3 epochs"


F1_ITEM = "Appendix F.1: sharpness of the augmentation controls on clean instead of augmented data"


def test_appendix_f1_row_reports_the_clean_data_check(tmp_path):
    for name in ("paper_results.csv", "toy_hessians.csv"):
        shutil.copy(REFERENCE_DIR / name, tmp_path / name)
    path = write_grid(tmp_path / "cifar10_folder_cnn_mlp_cpu.json", "cifar10_folder", "cnn_mlp", seeds=(0, 1, 2), epochs=30,
                      tier="cpu", extra_settings={"train_images": 10000, "command": "python -m sharpness cpu-study"})
    row = rows_by_item(ledger.ledger(results_dir=tmp_path, reference_dir=tmp_path))[F1_ITEM]
    assert row.status == ledger.NOT_RUN and "not transcribed" in row.paper
    shutil.copy(REFERENCE_DIR / "appendix_f1.csv", tmp_path / "appendix_f1.csv")
    document = json.loads(path.read_text())
    for run in document["runs"]:  # on clean data aug stays sharper than the baseline (4 > 1), aug_sam does not (0.5)
        if run["control"].startswith("aug"):
            run["clean.relative_flatness"] = 0.5 if run["control"] == "aug_sam" else run["relative_flatness"]
    path.write_text(json.dumps(document))
    row = rows_by_item(ledger.ledger(results_dir=tmp_path, reference_dir=tmp_path))[F1_ITEM]
    assert row.status == ledger.PARTLY and row.command == "`python -m sharpness cpu-study`"
    assert row.ours == ("runs at a minimum: The verdict 'sharper than the baseline' is the same on clean and augmented "
                        "data in 1 of 2 cases; it flips in 1 (aug_sam, relative_flatness: sharper on augmented data only).")
    # the paper's figures, read from results/reference/appendix_f1.csv
    assert row.paper == ("the paper's Appendix F.1: aug Fisher-Rao norm (resnet18, cifar10): 3.94 ± 0.21 on augmented "
                         "vs 3.96 ± 0.29 on clean data")


def test_appendix_f1_reference_with_a_bad_label_names_the_file(tmp_path):
    (tmp_path / "appendix_f1.csv").write_text("arch,dataset,control,metric,measured_on,mean,sem\n"
                                              "resnet18,cifar10,aug,fisher_rao_norm,blurred,1,0.1\n")
    with pytest.raises(ValueError, match="appendix_f1.csv.*blurred"):
        store.appendix_f1_paper(tmp_path)


def test_rows_across_networks_and_settings_take_their_status_from_our_cpu_grids(tmp_path):
    from sharpness.book import across

    paths = across.committed_paths(tmp_path)
    controls = {"baseline": 1.0, "aug": 2.0, "wd": 3.0, "aug_sam": 4.0}  # sharpness and accuracy rise together
    rows = [dict(dataset="cifar10_folder", arch=arch, control=control, seed=seed, status="finished", at_minimum=True,
                 rho=0.05 if control.endswith("sam") else None, fisher_rao_norm=level * scale,
                 relative_flatness=level * scale, test_accuracy=base + level / 10)
            for arch, scale, base in (("resnet_small", 1.0, 0.4), ("vgg_small", 100.0, 0.0))
            for control, level in controls.items() for seed in (0, 1, 2)]
    paths["families"].parent.mkdir(parents=True)
    store.save_grid(pd.DataFrame(rows), paths["families"], settings={}, data="hand-made")
    by_item = rows_by_item(ledger.ledger(results_dir=tmp_path))
    # Within each family accuracy rises with sharpness; the sharper family is the less accurate: pooled, it falls.
    simpson = by_item["Simpson's paradox: pooled over architectures, the sharpness-accuracy trend differs from within each"]
    assert simpson.status == ledger.REDUCED_SCALE and "reverses" in simpson.ours and simpson.chapter == "study/across"
    assert "ResNet-8: 12 of 12 runs at a minimum" in simpson.ran  # named as the page names it
    # Best (aug_sam) at 4 in one family and 400 in the other: the other's 100-300 sit inside that band.
    goldilocks = by_item["No Goldilocks zone: no single level of sharpness is best across architectures and data sets"]
    assert goldilocks.status == ledger.REDUCED_SCALE and "no single level of sharpness is best everywhere" in goldilocks.ours
    scale = by_item["Sharpness is not comparable across architectures: each network family has its own scale"]
    assert scale.status == ledger.REDUCED_SCALE and "factor 100" in scale.ours and "1 of 1 pairs" in scale.ours

    # A batch x lr sweep of every control where aug_sam is best and sharper in one cell and worst and flattest in the
    # other; six seeds, one run of wd short of a minimum in each cell: five of every control, what a cell needs to
    # count for G.1.
    cells = {(128, 1e-3): 1, (256, 1e-2): -1}
    levels = {**controls, "baseline_sam": 1.5, "wd_sam": 3.5}
    sweep = [dict(dataset="cifar10_folder", arch="cnn_mlp_wide", control=control, seed=seed, status="finished",
                  at_minimum=not (control == "wd" and seed == 0), batch_size=batch, lr=lr,
                  rho=0.05 if control.endswith("sam") else None,
                  fisher_rao_norm=level ** sign, test_accuracy=0.5 + sign * level / 10)
             for (batch, lr), sign in cells.items() for control, level in levels.items() for seed in range(6)]
    paths["batch_lr"].parent.mkdir(parents=True)

    def sweep_rows():
        """The ledger's Figure 1 and Appendix G.1 rows, with `sweep` committed as the batch x lr grid."""
        store.save_grid(pd.DataFrame(sweep), paths["batch_lr"], settings={}, data="hand-made")
        by_item = rows_by_item(ledger.ledger(results_dir=tmp_path))
        return [next(row for item, row in by_item.items() if item.startswith(name)) for name in ("Figure 1", "Appendix G.1")]

    figure1, g1 = sweep_rows()
    assert figure1.status == ledger.PARTLY and figure1.ours == ("70 of 72 runs reached a minimum; 2 of the 4 cells run, 2 with 5 runs at a minimum of "
                                                      "every control")
    assert g1.status == ledger.PARTLY and "best control by test accuracy in 1 of 2 cells" in g1.ours
    # One more miss of wd in the first cell leaves it four seeds: G.1 counts one cell, too few for the claim.
    sweep[next(i for i, row in enumerate(sweep) if (row["lr"], row["control"], row["seed"]) == (1e-3, "wd", 1))]["at_minimum"] = False
    _, g1 = sweep_rows()
    assert g1.status == ledger.NOT_RUN and g1.ours.startswith("69 of 72 runs at a minimum; 1 cell with 5 or more seeds")
    assert "Not counted yet, fewer than 5 seeds of some control: batch 128, lr 0.001 (4 seeds)." in g1.ours

    # Every run at a minimum, still two cells of four: Figure 1 is partly reproduced. aug_sam sharper than the
    # baseline in both cells and the best in neither: Appendix G.1 holds in part, not "in no cell".
    for row in sweep:
        row.update(at_minimum=True, fisher_rao_norm=levels[row["control"]], test_accuracy=0.5 - levels[row["control"]] / 10)
    figure1, g1 = sweep_rows()
    assert figure1.status == ledger.PARTLY and figure1.ours.startswith("72 of 72 runs reached a minimum; 2 of the 4 cells run")
    assert g1.status == ledger.PARTLY and "in 0 of 2 cells and sharper than the baseline by Fisher-Rao norm in 2" in g1.ours

    # All four cells, six seeds each, one run short of a minimum: every control of every cell still has five minima,
    # so Figure 1 stands at a reduced scale; the missing run is named on the page, not counted. One more miss in the
    # same control and cell leaves that cell four: partly.
    cells = [(128, 1e-3), (128, 1e-2), (256, 1e-3), (256, 1e-2)]
    sweep = [dict(dataset="cifar10_folder", arch="cnn_mlp_wide", control=control, seed=seed, status="finished",
                  at_minimum=(batch, lr, control, seed) != (256, 1e-2, "aug_sam", 1), batch_size=batch, lr=lr,
                  rho=0.05 if control.endswith("sam") else None, minimum_reason="hand-made",
                  fisher_rao_norm=1.0 + seed, test_accuracy=0.5) for batch, lr in cells for control in CONTROLS for seed in range(6)]
    figure1, _ = sweep_rows()
    assert figure1.status == ledger.REDUCED_SCALE
    assert figure1.ours == "143 of 144 runs reached a minimum; 4 of the 4 cells run, 4 with 5 runs at a minimum of every control"
    assert across.figure1_finding(paths["batch_lr"])[1].endswith("Not at a minimum, left out: batch 256, lr 0.01: aug_sam seed 1 (hand-made).")
    for row in sweep:
        if (row["batch_size"], row["lr"], row["control"], row["seed"]) == (256, 1e-2, "aug_sam", 2):
            row["at_minimum"] = False
    figure1, _ = sweep_rows()
    assert figure1.status == ledger.PARTLY and figure1.ours.endswith("4 of the 4 cells run, 3 with 5 runs at a minimum of every control")


def test_a_claim_across_families_is_partly_reproduced_where_the_measures_disagree(tmp_path):
    """Each sharpness measure judges the claim on its own; the ledger row is partly reproduced when they differ, and
    says what each measure found."""
    from sharpness.book import across

    paths = across.committed_paths(tmp_path)
    controls = {"baseline": 1.0, "aug": 2.0, "wd": 3.0, "aug_sam": 4.0}
    # Family B is 100x sharper than A by Fisher-Rao norm and relative flatness, 100x flatter by SAM-sharpness, and
    # less accurate: pooled, the trend reverses by the first two and keeps its sign by the third.
    rows = [dict(dataset="cifar10_folder", arch=arch, control=control, seed=0, status="finished", at_minimum=True,
                 rho=0.05 if control.endswith("sam") else None, fisher_rao_norm=level * scale,
                 relative_flatness=level * scale, sam_sharpness=level * 100 / scale, test_accuracy=base + level / 10)
            for arch, scale, base in (("resnet_small", 1.0, 0.4), ("vgg_small", 100.0, 0.0))
            for control, level in controls.items()]
    paths["families"].parent.mkdir(parents=True)
    store.save_grid(pd.DataFrame(rows), paths["families"], settings={}, data="hand-made")
    by_item = rows_by_item(ledger.ledger(results_dir=tmp_path))
    simpson = by_item["Simpson's paradox: pooled over architectures, the sharpness-accuracy trend differs from within each"]
    assert simpson.status == ledger.PARTLY
    assert simpson.ours.count("reverses") == 2 and "SAM-sharpness against test accuracy" in simpson.ours
    assert "keeps its sign and strength (+1.00)" in simpson.ours  # ranks of both families line up: Spearman +1
    scale = by_item["Sharpness is not comparable across architectures: each network family has its own scale"]
    assert scale.status == ledger.REDUCED_SCALE and scale.ours.count("1 of 1 pairs") == 3  # disjoint by all three


BOUNDARY_ITEM = "Decision boundaries: tighter boundaries give sharper minima"


def store_boundary(results_dir, name, means_by_measure, stop_loss=None):
    """A stored boundary study under results_dir/boundaries/name: per measure, the mean at each separation (two
    seeds at mean +- 1, all at the stopping rule)."""
    from sharpness.toys import boundary

    separations = tuple(next(iter(means_by_measure.values())))
    rows = [{"separation": s, "seed": seed, "reached": True, "epoch": 100.0,
             **{m: means[s] + (1 if seed else -1) for m, means in means_by_measure.items()}}
            for s in separations for seed in (0, 1)]
    config = boundary.BoundaryConfig(separations=separations, seeds=(0, 1), stop_loss=stop_loss)
    boundary.StoredBoundary(config, pd.DataFrame(rows), {"machine": "test <box>", "date": "2026-12-01T00:00:00Z"}
                            ).save(results_dir / "boundaries" / name)


def test_the_boundary_row_reads_the_stored_studies_by_every_measure(tmp_path):
    falling = {0.5: 9.0, 1.0: 5.0, 2.0: 3.0, 4.0: 1.0}
    rising = {0.5: 1.0, 1.0: 3.0, 2.0: 5.0, 4.0: 9.0}
    assert rows_by_item(ledger.ledger(results_dir=tmp_path))[BOUNDARY_ITEM].status == ledger.NOT_RUN
    measures = ("top_eigenvalue", "hessian_trace", "fisher_rao_exact")
    store_boundary(tmp_path, "full", dict.fromkeys(measures, falling))
    row = ledger.boundary_row(tmp_path)
    assert row.status == ledger.REDUCED_SCALE
    assert row.ours.endswith("in full (100% training accuracy; the 4 separations every seed reached): Hessian top "
                             "eigenvalue -1.00 (p = 0), Hessian trace (Hutchinson) -1.00 (p = 0), Fisher-Rao norm "
                             "(exact ⟨θ, ∇ℓᵢ⟩) -1.00 (p = 0)")
    assert "full (100% training accuracy): 4 separations x 2 seeds" in row.ran and "test <box>, 2026-12-01" in row.ran
    assert "test &lt;box&gt;" in ledger.ledger_html([row])  # a string from a file is escaped on the page
    # a second study at the same stopping rule keeps its own name and counts
    store_boundary(tmp_path, "full_again", dict.fromkeys(measures, falling))
    assert "; full_again (100% training accuracy; the 4 separations" in ledger.boundary_row(tmp_path).ours
    # at the matched loss the trace rises: the measures disagree, the claim holds in part
    store_boundary(tmp_path, "matched", {**dict.fromkeys(measures, falling), "hessian_trace": rising}, stop_loss=0.02)
    row = ledger.boundary_row(tmp_path)
    assert row.status == ledger.PARTLY and "matched (100% training accuracy and loss ≤ 0.02; the 4 separations" in row.ours
    assert "Hessian trace (Hutchinson) +1.00 (p = 0)" in row.ours
    # every measure rising in every study: contradicted; flat everywhere: not shown
    for name in ("full", "full_again", "matched"):
        store_boundary(tmp_path, name, dict.fromkeys(measures, rising))
    assert ledger.boundary_row(tmp_path).status == ledger.CONTRADICTED
    for name in ("full", "full_again", "matched"):
        store_boundary(tmp_path, name, dict.fromkeys(measures, dict.fromkeys(falling, 2.0)))
    row = ledger.boundary_row(tmp_path)
    assert row.status == ledger.NOT_SHOWN and "Hessian top eigenvalue: none" in row.ours  # constant means: no rank
