"""sharpness.book.across: Simpson's paradox, Goldilocks, comparability and Figure 1's claims on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from sharpness.book import across
from sharpness.studies import store
from sharpness.training.controls import CONTROLS


def family_table(accuracies_b):
    """Two families of four controls: A flat and B sharp (x 100); accuracy rises with sharpness in A."""
    controls = ["baseline", "aug", "wd", "aug_sam"]
    return pd.DataFrame({
        "arch": ["A"] * 4 + ["B"] * 4, "control": controls * 2,
        "fisher_rao_norm": [1.0, 2.0, 3.0, 4.0, 100.0, 200.0, 300.0, 400.0],
        "test_accuracy": [0.5, 0.6, 0.7, 0.8, *accuracies_b],
    })


def test_simpson_reversal_with_hand_computed_spearman():
    # within A and within B accuracy rises with sharpness (Spearman +1 each); B is sharper and less accurate, so
    # pooled the ranks of x are 1..8 and of y 5..8, 1..4: d = -4 (A) and +4 (B), rho = 1 - 6*128/(8*63) = -11/21
    finding = across.simpson(family_table([0.1, 0.2, 0.3, 0.4]), "fisher_rao_norm", "test_accuracy")
    table = finding.table.set_index("arch")
    assert table.loc["A", "spearman"] == pytest.approx(1.0) and table.loc["B", "spearman"] == pytest.approx(1.0)
    assert table.loc["pooled", "spearman"] == pytest.approx(-11 / 21)
    assert table.loc["pooled", "n"] == 8
    # Pearson on log10 sharpness: A's log x is 0, .301, .477, .602 against a straight line in y, so r < 1 but > 0.9
    assert 0.9 < table.loc["A", "pearson"] < 1.0
    assert finding.status == "reverses" and "reverses" in finding.sentence and "-0.52" in finding.sentence


def test_simpson_keeps_its_sign_when_the_sharper_family_is_also_more_accurate():
    finding = across.simpson(family_table([0.85, 0.9, 0.95, 0.99]), "fisher_rao_norm", "test_accuracy")
    assert finding.table.set_index("arch").loc["pooled", "spearman"] == pytest.approx(1.0)
    assert finding.status == "keeps its sign"
    assert "(Spearman +1.00 in every family)" in finding.sentence  # both families +1: one value, not "+1.00 to +1.00"
    mixed = across.simpson(family_table([0.4, 0.3, 0.2, 0.1]), "fisher_rao_norm", "test_accuracy")
    assert "Spearman -1.00 to +1.00" in mixed.sentence


def test_simpson_statuses_without_enough_runs():
    assert across.simpson(pd.DataFrame(), "fisher_rao_norm", "test_accuracy").status == across.NOT_RUN
    one_family = family_table([0.1, 0.2, 0.3, 0.4]).query("arch == 'A'")
    assert across.simpson(one_family, "fisher_rao_norm", "test_accuracy").status == across.TOO_FEW
    mixed = family_table([0.4, 0.3, 0.2, 0.1])  # B falls while A rises
    assert across.simpson(mixed, "fisher_rao_norm", "test_accuracy").status == "mixed within"


def goldilocks_points(b_sharpness, b_accuracy):
    return pd.DataFrame({
        "arch": ["A"] * 3 + ["B"] * 3, "control": ["baseline", "aug", "aug_sam"] * 2,
        "fisher_rao_norm": [1.0, 2.0, 3.0, *b_sharpness], "test_accuracy": [0.5, 0.6, 0.7, *b_accuracy],
    })


def test_no_goldilocks_zone_when_a_worse_control_sits_in_the_band_of_the_best():
    # A: best is the sharpest (3); B: best is the flattest (2). Band [2, 3] holds A's control at 2, a worse one.
    finding = across.goldilocks(goldilocks_points([2.0, 5.0, 10.0], [0.9, 0.8, 0.7]), "fisher_rao_norm")
    table = finding.table.set_index("arch")
    assert table.loc["A", "best control"] == "aug_sam" and table.loc["A", "best is sharpest"]
    assert table.loc["B", "best control"] == "baseline" and not table.loc["B", "best is sharpest"]
    assert table.loc["A", "others in band"] == 1 and table.loc["B", "others in band"] == 0
    assert finding.status == "no Goldilocks zone" and "1 of 2 families" in finding.sentence


def test_a_goldilocks_zone_when_one_band_picks_the_best_everywhere():
    # A's best at 3, B's at 3.5 with its other controls at 10 and 20: the band [3, 3.5] holds only the best ones
    finding = across.goldilocks(goldilocks_points([3.5, 10.0, 20.0], [0.9, 0.8, 0.7]), "fisher_rao_norm")
    assert finding.status == "a Goldilocks zone"
    assert across.goldilocks(pd.DataFrame(), "fisher_rao_norm").status == across.NOT_RUN


def test_goldilocks_reads_lower_as_better_for_calibration():
    points = goldilocks_points([2.0, 5.0, 10.0], [0.9, 0.8, 0.7]).rename(columns={"test_accuracy": "test_ece"})
    table = across.goldilocks(points, "fisher_rao_norm", "test_ece").table.set_index("arch")
    assert table.loc["A", "best control"] == "baseline" and table.loc["B", "best control"] == "aug_sam"


def test_scale_comparison_counts_disjoint_family_ranges():
    points = pd.DataFrame({"arch": ["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["D"] * 2,
                           "fisher_rao_norm": [1.0, 1.5, 2.0, 10.0, 15.0, 20.0, 1.5, 8.0, 15.0, 100.0, 200.0]})
    finding = across.scale_comparison(points, "fisher_rao_norm")
    # A [1, 2] vs B [10, 20] disjoint; C [1.5, 15] overlaps both; medians 1.5, 15, 8 -> factor 10; D has only two
    # controls, too few for a range, and is left out (it would be disjoint from every other)
    assert finding.status == "disjoint ranges" and "1 of 3 pairs" in finding.sentence and "factor 10" in finding.sentence
    one_run = pd.DataFrame({"arch": ["A", "A", "A", "B"], "fisher_rao_norm": [1.0, 2.0, 3.0, 100.0]})
    assert across.scale_comparison(one_run, "fisher_rao_norm").status == across.TOO_FEW


def batch_lr_runs():
    """Two cells x (baseline, aug_sam) x 2 seeds. Cell lr 0.01: aug_sam more accurate and sharper; lr 0.001:
    aug_sam less accurate. The baseline's FR is 2 at lr 0.001 and 4 at lr 0.01."""
    rows = []
    for lr, base_fr, sam_acc in ((1e-3, 2.0, 0.5), (1e-2, 4.0, 0.9)):
        for seed in (0, 1):
            rows.append(dict(batch_size=128, lr=lr, control="baseline", seed=seed, fisher_rao_norm=base_fr, test_accuracy=0.6))
            rows.append(dict(batch_size=128, lr=lr, control="aug_sam", seed=seed, fisher_rao_norm=base_fr * 3, test_accuracy=sam_acc))
    return pd.DataFrame(rows)


def with_every_control(runs):
    """The four other controls beside baseline and aug_sam in every cell and seed, never the best (accuracy 0.55)."""
    others = [runs.query("control == 'baseline'").assign(control=control, test_accuracy=0.55)
              for control in CONTROLS if control not in ("baseline", "aug_sam")]
    return pd.concat([runs, *others], ignore_index=True)


def test_figure1_claims_cell_by_cell():
    finding = across.figure1_claims(with_every_control(batch_lr_runs()))
    table = finding.table.set_index("cell")
    assert list(table["aug_sam best"]) == [False, True] and table["aug_sam sharper than baseline"].all()
    assert finding.status == "holds in part"
    assert "best control by test accuracy in 1 of 2 cells (its lead over the runner-up beyond the seeds' range)" in finding.sentence
    assert list(table[across.CLEAR_LEAD]) == [None, True]  # aug_sam's seeds 0.9, the baseline's 0.6
    assert "moves every control's Fisher-Rao norm beyond its seeds' range at 1 of 1 batch size." in finding.sentence
    assert ("At batch 128, from lr 0.001 to lr 0.01 the Fisher-Rao norm moves beyond its seeds' range for 6 of 6 "
            "controls, all higher at lr 0.01: baseline (2 to 4), baseline_sam (2 to 4), aug (2 to 4), aug_sam (6 to 12), wd (2 to 4), "
            "wd_sam (2 to 4).") in finding.sentence
    across_batch = across.figure1_claims(with_every_control(batch_lr_runs()).assign(batch_size=lambda t: np.where(t["lr"] == 1e-3, 256, 128),
                                                                lr=0.01))
    assert ("At lr 0.01, from batch 128 to batch 256 the Fisher-Rao norm moves beyond its seeds' range for 6 of 6 "
            "controls, all lower at batch 256: baseline (4 to 2),") in across_batch.sentence
    assert "one learning rate counted, so its effect on sharpness is not judged yet." in across_batch.sentence
    assert finding.sentence.endswith("Control means; seeds per cell, the fewest of any control: batch 128, lr 0.001: 2; "
                                     "batch 128, lr 0.01: 2.")
    one_seed = across.figure1_claims(with_every_control(batch_lr_runs()).query("not (lr == 0.01 and seed == 1 and control == 'aug_sam')"))
    assert list(one_seed.table["seeds"]) == [2, 1]  # a cell's fewest seeds of any control
    assert across.figure1_claims(pd.DataFrame()).status == across.NOT_RUN
    assert across.figure1_claims(with_every_control(batch_lr_runs()).query("lr == 0.01")).status == across.TOO_FEW
    # A cell without a whole control (wd never run at lr 0.001) rests on no seed of it: not counted, and named.
    no_wd = across.figure1_claims(with_every_control(batch_lr_runs()).query("not (lr == 0.001 and control == 'wd')"))
    assert list(no_wd.table["seeds"]) == [0, 2] and no_wd.status == across.TOO_FEW
    assert no_wd.sentence.endswith("fewer than 1 seed of some control: batch 128, lr 0.001 (0 seeds).")
    # A cell whose first runs are aug and aug_sam only (a pilot's): listed, not compared, named as not counted.
    pilot_only = with_every_control(batch_lr_runs()).query("lr == 0.01 or control in ('aug', 'aug_sam')")
    short = across.figure1_claims(pilot_only.assign(batch_size=np.where(pilot_only["lr"] == 1e-3, 256, 128)))
    row = short.table.set_index("cell").loc["batch 256, lr 0.001"]
    assert not row["counted"] and row["seeds"] == 0 and pd.isna(row["best control"]) and np.isnan(row["baseline sharpness"])
    assert short.status == across.TOO_FEW and short.sentence.endswith("batch 256, lr 0.001 (0 seeds).")


def test_a_step_that_sharpens_some_controls_and_flattens_others_says_both_ways():
    """wd's seeds at lr 0.01 set to 1 (from 2 at lr 0.001): it falls while the five others rise from 2 (6) to 4 (12)."""
    runs = with_every_control(batch_lr_runs())
    runs.loc[runs.eval("control == 'wd' and lr == 0.01"), "fisher_rao_norm"] = 1.0
    sentence = across.figure1_claims(runs).sentence
    assert ("moves beyond its seeds' range for 6 of 6 controls (5 higher at lr 0.01, 1 lower): baseline (2 to 4), "
            "baseline_sam (2 to 4), aug (2 to 4), aug_sam (6 to 12), wd (2 to 1), wd_sam (2 to 4).") in sentence


def test_a_move_along_the_sweep_names_the_epochs_where_the_two_ends_trained_for_different_lengths():
    runs = with_every_control(batch_lr_runs())
    longer = across.figure1_claims(runs.assign(epochs=np.where(runs["lr"] == 1e-3, 1200, 120)))
    assert list(longer.table["epochs"]) == [1200, 120]
    assert "At batch 128, from lr 0.001 (1,200 epochs) to lr 0.01 (120 epochs) the Fisher-Rao norm moves" in longer.sentence
    same = across.figure1_claims(runs.assign(epochs=120)).sentence
    assert "At batch 128, from lr 0.001 to lr 0.01 the Fisher-Rao norm moves" in same and "epochs)" not in same


@pytest.mark.parametrize("seeds_low_lr, seeds_high_lr, apart", [
    ((1.5, 2.5), (3.5, 4.5), True),   # means 2 and 4, the seeds 1 apart
    ((1.0, 3.0), (2.5, 5.5), False),  # the same means, seed 1 at lr 0.001 above seed 0 at lr 0.01
    ((1.0, 3.0), (3.0, 5.0), False),  # ranges that touch are not apart
])
def test_figure1_claims_say_whether_the_baselines_move_exceeds_its_seeds(seeds_low_lr, seeds_high_lr, apart):
    """The same means of the baseline (2 at lr 0.001, 4 at lr 0.01) say an effect only where its seeds' ranges are
    apart: each cell's baseline seeds are set by hand (the other controls' seeds agree, 2 then 4, so they move), and
    the range the sentence gives is their min and max."""
    runs = with_every_control(batch_lr_runs())
    for lr, values in ((1e-3, seeds_low_lr), (1e-2, seeds_high_lr)):
        for seed, value in enumerate(values):
            runs.loc[runs.eval(f"control == 'baseline' and lr == {lr} and seed == {seed}"), "fisher_rao_norm"] = value
    finding = across.figure1_claims(runs)
    low, high = (f"{min(v):g}-{max(v):g}" for v in (seeds_low_lr, seeds_high_lr))
    moved = ("6 of 6 controls, all higher at lr 0.01: baseline (2 to 4), baseline_sam" if apart
             else "5 of 6 controls, all higher at lr 0.01: baseline_sam")
    assert f"from lr 0.001 to lr 0.01 the Fisher-Rao norm moves beyond its seeds' range for {moved}" in finding.sentence
    assert (f"; not the baseline's (2, seeds {low}, to 4, seeds {high})." in finding.sentence) == (not apart)
    assert finding.status == "holds in part"  # aug_sam is best in one cell of two, whether or not the lr moves
    assert list(finding.table["baseline lowest seed"]) == [min(seeds_low_lr), min(seeds_high_lr)]


def test_sharpness_per_cell_gives_each_controls_mean_and_seed_range_by_hand():
    """Baseline seeds 1.5 and 2.5 at lr 0.001 (mean 2), 3.5 and 4.5 at lr 0.01 (mean 4); aug_sam three times the
    batch_lr_runs baseline; a run away from a minimum (FR 100) is left out."""
    runs = batch_lr_runs()
    runs.loc[runs.eval("control == 'baseline'"), "fisher_rao_norm"] = [1.5, 2.5, 3.5, 4.5]
    away = runs.iloc[[0]].assign(seed=2, fisher_rao_norm=100.0, at_minimum=False)
    table = across.sharpness_per_cell(pd.concat([runs.assign(at_minimum=True), away]), "fisher_rao_norm")
    assert table.columns.tolist() == ["control", "batch 128, lr 0.001", "batch 128, lr 0.01"]
    assert table.set_index("control").to_dict("index") == {
        "baseline": {"batch 128, lr 0.001": "2 (1.5-2.5)", "batch 128, lr 0.01": "4 (3.5-4.5)"},
        "aug_sam": {"batch 128, lr 0.001": "6 (6-6)", "batch 128, lr 0.01": "12 (12-12)"}}
    assert across.sharpness_per_cell(pd.DataFrame()).empty


@pytest.mark.parametrize("aug_sam_accuracy, aug_sam_times, lr_moves, status", [
    (0.9, 3.0, True, "holds in every cell"),   # best and sharper in both cells, every control's FR doubles with lr
    (0.9, 3.0, False, "holds in part"),        # the same, but no control's FR changes with the lr
    (0.5, 0.5, False, "holds in no cell"),     # worse and flatter than the baseline in both cells, lr moves nothing
    (0.5, 0.5, True, "holds in part"),         # ... but the lr moves every control's sharpness: one part holds
    (0.9, 3.0, "all but wd", "holds in part"),  # one control the lr does not move: the third part fails
])
def test_figure1_claims_status_weighs_all_three_parts(aug_sam_accuracy, aug_sam_times, lr_moves, status):
    """G.1's claim has three parts (aug_sam best, aug_sam sharper than the baseline, the lr moving every control's
    sharpness beyond its seeds); the status holds in every cell only when all three do, in no cell when none does."""
    runs = with_every_control(batch_lr_runs())
    doubles = runs["lr"].eq(1e-2) & (runs["control"].ne("wd") if lr_moves == "all but wd" else bool(lr_moves))
    aug_sam = runs["control"].eq("aug_sam")
    runs["fisher_rao_norm"] = 2.0 * np.where(doubles, 2.0, 1.0) * np.where(aug_sam, aug_sam_times, 1.0)
    runs.loc[aug_sam, "test_accuracy"] = aug_sam_accuracy
    assert across.figure1_claims(runs).status == status


def test_figure1_claims_count_only_cells_with_the_seeds_asked_for():
    """A third cell (batch 256, lr 0.01: aug_sam best, as at batch 128) and one seed of aug_sam gone from lr 0.001,
    the only cell where aug_sam is not best: with two seeds asked for, aug_sam is best and sharper in every cell
    counted, the lr's effect is not judged (one lr counted), and the short cell is still in the table, marked and
    named."""
    runs = with_every_control(pd.concat([batch_lr_runs(), batch_lr_runs().query("lr == 0.01").assign(batch_size=256)]))
    runs = runs.query("not (lr == 0.001 and seed == 1 and control == 'aug_sam')")
    assert across.figure1_claims(runs).status == "holds in part"  # every cell counted
    finding = across.figure1_claims(runs, seeds_needed=2)
    assert finding.status == "holds in part" and "in 2 of 2 cells (ahead of the runner-up beyond the seeds' range in 2 of "\
        "them) and sharper than the baseline by Fisher-Rao norm in 2; one learning rate counted" in finding.sentence
    assert finding.sentence.endswith("Not counted yet, fewer than 2 seeds of some control: batch 128, lr 0.001 (1 seed).")
    table = finding.table.set_index("cell")
    assert list(table["counted"]) == [False, True, True] and table.loc["batch 128, lr 0.001", "seeds"] == 1
    assert "at lr 0.001" not in finding.sentence  # the lr's effect rests on the short cell: not claimed yet
    too_few = across.figure1_claims(runs.query("batch_size == 128"), seeds_needed=2)
    assert too_few.status == across.TOO_FEW and too_few.sentence.startswith("1 cell with 2 or more seeds")


def test_usable_runs_drop_diverged_runs_and_runs_away_from_a_minimum():
    runs = pd.DataFrame({"status": ["finished", "finished", "diverged"], "at_minimum": [True, False, True]})
    assert list(across.usable_runs(runs).index) == [0]


def test_minimum_verdicts_from_committed_history():
    """Run 1's measured loss fell 1% over the last 5 epochs at 99% accuracy (a minimum); run 2's fell 50%."""
    history = pd.DataFrame(
        [dict(dataset="d", arch="a", control="baseline", rho=np.nan, seed=0, epoch=e, train_loss=1.0,
              measured_loss=1.0 - 0.002 * e) for e in range(1, 7)]
        + [dict(dataset="d", arch="a", control="baseline_sam", rho=0.05, seed=0, epoch=e, train_loss=1.0,
                measured_loss=2.0 / e) for e in range(1, 7)])
    runs = pd.DataFrame([dict(dataset="d", arch="a", control="baseline", rho=np.nan, seed=0, **{"measured_set.accuracy": 0.99}),
                         dict(dataset="d", arch="a", control="baseline_sam", rho=0.05, seed=0, **{"measured_set.accuracy": 0.99})])
    checked = across.minimum_verdicts(runs, history)
    assert list(checked["at_minimum"]) == [True, False]
    assert "still falling" in checked["minimum_reason"].iloc[1]


def test_minima_are_counted_per_control_and_the_runs_that_missed_are_named(tmp_path):
    """By hand: the ViT has four seeds of every control with aug_sam seed 2 short of the accuracy bar (three minima
    of aug_sam, the plan's count), the ResNet two seeds with wd never run (zero) and one diverged baseline."""
    from sharpness.studies import cpu_families

    rows = [dict(dataset="cifar10_folder", arch="vit_small", control=control, seed=seed, status="finished",
                 at_minimum=(control, seed) != ("aug_sam", 2), minimum_reason="accuracy 94.5% on the measured images (< 95%)")
            for control in CONTROLS for seed in range(4)]
    rows += [dict(dataset="cifar10_folder", arch="resnet_small", control=control, seed=seed,
                  status="diverged" if (control, seed) == ("baseline", 1) else "finished", at_minimum=True, minimum_reason="")
             for control in CONTROLS if control != "wd" for seed in range(2)]
    runs = pd.DataFrame(rows)
    counts = across.minima_per_control(runs, ("arch",), 3).set_index("arch")
    assert counts.loc["vit_small", list(CONTROLS)].tolist() == [3 if c == "aug_sam" else 4 for c in CONTROLS]
    assert counts.loc["resnet_small", list(CONTROLS)].tolist() == [1 if c == "baseline" else 0 if c == "wd" else 2 for c in CONTROLS]
    assert counts["fewest"].to_dict() == {"resnet_small": 0, "vit_small": 3}
    assert counts["complete"].to_dict() == {"resnet_small": False, "vit_small": True}
    assert across.short_of_minimum(runs, ("arch",)) == (
        "ResNet-8: baseline seed 1 (diverged); ViT (3 blocks, patch 4): aug_sam seed 2 (accuracy 94.5% on the measured "
        "images (< 95%))")
    assert across.short_of_minimum(runs[runs["arch"] == "resnet_small"].assign(status="finished"), ("arch",)) == ""

    grid = tmp_path / "families.json"
    store.save_grid(runs, grid, settings={}, data="hand-made")
    status, sentence = across.families_finding(grid)
    assert cpu_families.MINIMA_PER_CONTROL["families"] == 3
    assert status == f"1 of {len(cpu_families.FAMILIES)} with 3 runs at a minimum of every control"
    assert sentence.startswith("ViT (3 blocks, patch 4): 23 of 24 runs at a minimum over 4 seed(s), at least 3 of every control; "
                               "ResNet-8: 9 of 10 runs at a minimum over 2 seed(s), at least 0 of every control.")
    assert sentence.endswith("Not at a minimum, left out of every comparison: ResNet-8: baseline seed 1 (diverged); "
                             "ViT (3 blocks, patch 4): aug_sam seed 2 (accuracy 94.5% on the measured images (< 95%)).")


def test_findings_say_not_run_yet_without_committed_grids(tmp_path):
    absent = tmp_path / "absent.json"
    by_measure = [pair for claim in across.FAMILY_CLAIMS for pair in across.family_findings(claim, absent, absent)]
    assert len(by_measure) == len(across.FAMILY_CLAIMS) * len(across.FAMILY_MEASURES)
    for status, sentence in (*by_measure, across.families_finding(absent), across.figure1_finding(absent)):
        assert status == across.NOT_RUN and sentence


def test_a_grid_with_an_unknown_name_is_refused_with_the_file_named(tmp_path):
    from sharpness.studies import store

    path = tmp_path / "grid.json"
    store.save_grid(pd.DataFrame([dict(dataset="d", arch="<b>x</b>", control="baseline", seed=0, status="finished")]),
                      path, settings={}, data="hand-made")
    with pytest.raises(ValueError, match=r"grid.json: unknown arch '<b>x</b>'.*cpu-families"):
        across.load_runs(path)


def test_figures_draw_runs_or_say_not_run_yet():
    from sharpness.book.figures import across as figures

    empty = figures.figure1(pd.DataFrame(), title="t")
    assert not empty.data and "Not run yet" in empty.layout.annotations[0].text
    one_family = family_table([0.1, 0.2, 0.3, 0.4]).query("arch == 'A'")
    assert "1 family" in figures.simpson(one_family, "fisher_rao_norm", "test_accuracy", title="t").layout.annotations[0].text
    drawn = figures.simpson(family_table([0.1, 0.2, 0.3, 0.4]), "fisher_rao_norm", "test_accuracy", title="t")
    assert {trace.name for trace in drawn.data} >= {"A", "B"} and not drawn.layout.annotations
    runs = batch_lr_runs().assign(relative_flatness=1.0, generalisation_gap=0.1, train_loss=0.01)
    assert len(figures.figure1(runs, title="t").data) > 0


def test_the_scales_figure_puts_each_familys_control_means_on_a_log_axis_per_measure():
    from sharpness.book.figures import across as figures

    table = family_table([0.1, 0.2, 0.3, 0.4]).assign(relative_flatness=lambda t: t["fisher_rao_norm"] * 10)
    drawn = figures.scales(table, ["fisher_rao_norm", "relative_flatness", "not_measured"], title="t")
    assert [a.text for a in drawn.layout.annotations] == ["Fisher-Rao norm", "relative flatness (clean mean)"]
    assert drawn.layout.yaxis.type == "log" and drawn.layout.yaxis2.type == "log"
    aug_sam = [trace for trace in drawn.data if trace.name == "aug_sam"]
    assert [list(trace.y) for trace in aug_sam] == [[4.0, 400.0], [40.0, 4000.0]] and list(aug_sam[0].x) == ["A", "B"]
    assert sum(trace.showlegend for trace in drawn.data) == 4  # one legend entry per control
    assert "1 family" in figures.scales(table.query("arch == 'A'"), ["fisher_rao_norm"], title="t").layout.annotations[0].text


def test_figures_and_tables_name_the_families_as_the_page_does():
    from sharpness.book.figures import across as figures
    from sharpness.studies.registry import NETWORK_NAMES

    table = family_table([0.1, 0.2, 0.3, 0.4]).replace({"arch": {"A": "resnet_small", "B": "vit_small"}})
    scales = figures.scales(table, ["fisher_rao_norm"], title="t")
    assert list(scales.data[0].x) == ["ResNet-8", "ViT (3 blocks, patch 4)"]
    simpson = figures.simpson(table, "fisher_rao_norm", "test_accuracy", title="t")
    # least squares on log10 x, by hand
    assert {"ResNet-8", "ResNet-8 trend (slope +0.485 per decade)"} <= {trace.name for trace in simpson.data}
    named = across.named_networks(across.simpson(table, "fisher_rao_norm", "test_accuracy").table)
    assert list(named["network"]) == [NETWORK_NAMES["resnet_small"], NETWORK_NAMES["vit_small"], "pooled"]
    # The paper's networks keep their own names; an unknown key is shown as it is (it was validated on loading).
    assert across.named_networks(pd.DataFrame({"arch": ["resnet18", "other"]}))["network"].tolist() == ["ResNet-18", "other"]


def test_figure1_takes_a_controls_mean_within_each_cell_and_marks_cells_apart():
    from sharpness.book.figures import across as figures

    runs = batch_lr_runs().assign(relative_flatness=1.0, generalisation_gap=0.1, train_loss=0.01, test_ece=0.05)
    drawn = figures.figure1(runs, title="t")
    panel = [t for t in drawn.data if t.xaxis == "x" and t.yaxis == "y"  # Fisher-Rao norm vs generalisation gap
             and t.legendgroup != "settings"]  # without the legend's key to the cells' markers
    points = [t for t in panel if t.hovertemplate.startswith("%{text}")]
    assert {(t.text[0], t.marker.symbol[0]) for t in points} == {
        ("baseline, batch 128, lr 0.001, seed 0", "circle"), ("aug_sam, batch 128, lr 0.001, seed 0", "circle"),
        ("baseline, batch 128, lr 0.01, seed 0", "square"), ("aug_sam, batch 128, lr 0.01, seed 0", "square")}
    means = {t.hovertemplate.split(" mean")[0]: t.x[0] for t in panel if t.marker.symbol == "x"}
    # aug_sam's Fisher-Rao norm is 6 at lr 0.001 and 12 at lr 0.01: one mean per cell, never their average 9
    assert means == {"baseline, batch 128, lr 0.001": 2.0, "aug_sam, batch 128, lr 0.001": 6.0,
                     "baseline, batch 128, lr 0.01": 4.0, "aug_sam, batch 128, lr 0.01": 12.0}
    legend = {(t.name, t.legendgroup, t.marker.symbol) for t in drawn.data if t.showlegend is not False}
    # one entry per control, and one per cell keying its marker (the points' symbols above)
    assert legend == {("baseline", "baseline", ("circle", "circle")), ("aug_sam", "aug_sam", ("circle", "circle")),
                      ("batch 128, lr 0.001", "settings", "circle"), ("batch 128, lr 0.01", "settings", "square")}


def four_cells(scale_256):
    """Batch 128's two cells as in batch_lr_runs, and batch 256's the same with each run's Fisher-Rao norm times
    scale_256[lr]; lr 0.001 trains 1,200 epochs at both batch sizes, lr 0.01 120 at batch 128 and 360 at batch 256."""
    small = with_every_control(batch_lr_runs())
    large = small.assign(batch_size=256, fisher_rao_norm=small["fisher_rao_norm"] * small["lr"].map(scale_256))
    runs = pd.concat([small, large], ignore_index=True)
    return runs.assign(epochs=np.select([runs["lr"] == 1e-3, runs["batch_size"] == 128], [1200, 120], 360))


def test_a_step_that_goes_one_way_at_one_lr_and_the_other_way_at_another_is_called_a_reversal():
    """Batch 256 raises every control's norm by half at lr 0.001 (2 -> 3) and halves it at lr 0.01 (4 -> 2)."""
    sentence = across.figure1_claims(four_cells({1e-3: 1.5, 1e-2: 0.5})).sentence
    assert ("So the batch size's effect on the Fisher-Rao norm reverses with the learning rate: at lr 0.001 the controls "
            "that move are all higher at batch 256 than at batch 128; at lr 0.01 all lower at batch 256 than at batch "
            "128; the two ends also trained for different lengths at lr 0.01 (120 against 360 epochs), so there the "
            "move is the training length's as much as the batch size's.") in sentence
    # along lr the same numbers reverse too: 2 -> 4 at batch 128, 3 -> 2 at batch 256
    assert ("So the learning rate's effect on the Fisher-Rao norm reverses with the batch size: at batch 128 the "
            "controls that move are all higher at lr 0.01 than at lr 0.001; at batch 256 all lower at lr 0.01 than at "
            "lr 0.001; the two ends also trained for different lengths at batch 128 (1,200 against 120 epochs) and "
            "at batch 256 (1,200 against 360 epochs), so there") in sentence


def test_no_reversal_where_every_line_of_an_axis_moves_the_same_way():
    """Batch 256 halves every norm at both lrs: the batch size lowers it at both, the lr raises it at both."""
    sentence = across.figure1_claims(four_cells({1e-3: 0.5, 1e-2: 0.5})).sentence
    assert "all lower at batch 256" in sentence and "all higher at lr 0.01" in sentence
    assert "reverses" not in sentence


def test_the_sweep_figure_draws_each_controls_seed_mean_and_range_per_lr_against_the_batch_size():
    """Seed 1 of every run at batch 256, lr 0.01 doubled: baseline's seeds there 2 and 4 (from 4 x 0.5 = 2), mean 3,
    bars down 1 and up 1; at batch 128 both seeds agree (no bar)."""
    from sharpness.book.figures import across as figures

    runs = four_cells({1e-3: 1.5, 1e-2: 0.5})
    runs.loc[runs.eval("batch_size == 256 and lr == 0.01 and seed == 1"), "fisher_rao_norm"] *= 2
    drawn = figures.sweep_moves(runs, "fisher_rao_norm", title="t")
    assert [a.text for a in drawn.layout.annotations] == list(CONTROLS)  # a panel per control, the paper's order
    baseline = {t.name: t for t in drawn.data if t.xaxis == "x"}
    assert list(baseline["lr 0.001"].x) == ["batch 128", "batch 256"] and list(baseline["lr 0.001"].y) == [2.0, 3.0]
    assert list(baseline["lr 0.01"].y) == [4.0, 3.0]
    assert list(baseline["lr 0.01"].error_y.array) == [0.0, 1.0] and list(baseline["lr 0.01"].error_y.arrayminus) == [0.0, 1.0]
    assert sum(t.showlegend for t in drawn.data) == 2 and drawn.layout.yaxis.type == "log"
    # wd never run at lr 0.001: its one line keeps lr 0.01's look (the baseline's), not lr 0.001's
    without = figures.sweep_moves(runs.query("not (control == 'wd' and lr == 0.001)"), "fisher_rao_norm", title="t")
    wd_panel = without.layout.annotations.index(next(a for a in without.layout.annotations if a.text == "wd")) + 1
    (wd,) = [t for t in without.data if t.xaxis == f"x{wd_panel}"]
    assert wd.name == "lr 0.01" and wd.line.dash == baseline["lr 0.01"].line.dash != baseline["lr 0.001"].line.dash
    assert "Not run yet" in figures.sweep_moves(pd.DataFrame(), "fisher_rao_norm", title="t").layout.annotations[0].text


def test_aug_sams_lead_counts_as_clear_only_where_its_seeds_range_is_apart_from_the_runner_ups():
    """At lr 0.01 aug_sam's seeds score 0.9 and 0.5 (mean 0.7, the best), the baseline's 0.6 and 0.6: the lead lies
    inside aug_sam's range. A third cell (batch 256) where its seeds score 0.9 and 0.8 against the baseline's 0.6 is a
    clear lead."""
    runs = with_every_control(batch_lr_runs())
    runs.loc[runs.eval("control == 'aug_sam' and lr == 0.01 and seed == 1"), "test_accuracy"] = 0.5
    finding = across.figure1_claims(runs)
    assert list(finding.table[across.CLEAR_LEAD]) == [None, False]
    assert "in 1 of 2 cells (its lead over the runner-up within the seeds' range)" in finding.sentence
    third = runs.query("lr == 0.01").assign(batch_size=256)
    third.loc[third.eval("control == 'aug_sam' and seed == 1"), "test_accuracy"] = 0.8
    both = across.figure1_claims(pd.concat([runs, third], ignore_index=True))
    assert list(both.table[across.CLEAR_LEAD]) == [None, False, True]
    assert "in 2 of 3 cells (ahead of the runner-up beyond the seeds' range in 1 of them)" in both.sentence
