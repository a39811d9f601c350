"""The minimum criterion on a grid's runs and hand-made histories, Holm's correction and the paired t-test against hand-computed
cases, and the claim tally on runs whose right verdicts are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sharpness.book import claims
from sharpness.training import minimum

FLAT = [2.0, 1.0, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # the last six epochs equal: no drop


# --- the minimum criterion -------------------------------------------------------------------------

def rows(losses):
    return [{"epoch": i + 1, "train_loss": loss} for i, loss in enumerate(losses)]


@pytest.mark.parametrize("last, reached", [(0.98, False), (0.981, True), (1.2, True)])
def test_the_loss_must_fall_by_less_than_two_percent_over_the_last_five_epochs(last, reached):
    # loss[-6] = 1.0, loss[-1] = `last`: a drop of exactly 2% still counts as falling; a rise has stopped falling
    history = rows([3.0, 2.0, 1.0, 0.99, 0.99, 0.99, 0.99, last])
    assert minimum.loss_drop(history)[0] == pytest.approx(1.0 - last)
    assert minimum.reached_minimum(history, 0.99)[0] is reached


def test_check_matches_runs_to_their_histories_and_flags_runs_without_one():
    key = {"dataset": "d", "arch": "a"}
    runs = pd.DataFrame([
        {**key, "control": "aug", "rho": np.nan, "seed": 0, "status": "finished", "measured_set.accuracy": 0.97,
         "train_accuracy": 0.5},  # the measured-set accuracy decides where a run has one
        {**key, "control": "aug_sam", "rho": 0.05, "seed": 0, "status": "finished", "train_accuracy": 0.97},
        {**key, "control": "wd", "rho": np.nan, "seed": 0, "status": "finished", "train_accuracy": 0.97},
        {**key, "control": "baseline", "rho": np.nan, "seed": 0, "status": "finished", "train_accuracy": 0.90},
        {**key, "control": "baseline_sam", "rho": 0.05, "seed": 0, "status": "diverged", "train_accuracy": 0.99},
    ])
    history = pd.DataFrame(
        [{**key, "control": control, "rho": rho, "seed": 0, "epoch": e + 1, "train_loss": loss}
         for control, rho, losses in (("aug", np.nan, FLAT), ("aug_sam", 0.05, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]),
                                      ("baseline", np.nan, FLAT), ("baseline_sam", 0.05, FLAT))
         for e, loss in enumerate(losses)]
    ).sample(frac=1, random_state=0)  # epochs out of order: the check sorts them
    checked = minimum.check(runs, history).set_index("control")
    assert checked["at_minimum"].to_dict() == {"aug": True, "aug_sam": False, "wd": False, "baseline": False,
                                               "baseline_sam": False}
    assert checked.loc["aug", "accuracy"] == 0.97 and checked.loc["aug_sam", "loss_drop"] == pytest.approx(0.5)
    assert checked.loc["aug_sam", "first_train_loss"] == 1.0 and checked.loc["aug_sam", "epochs"] == 6
    assert checked.loc["wd", "reason"] == "no per-epoch history"
    assert checked.loc["baseline_sam", "reason"] == "did not finish"
    assert list(minimum.at_minimum(runs, checked.reset_index())["control"]) == ["aug"]
    assert minimum.counts(checked.reset_index()).to_dict() == {
        "aug": "1 of 1", "aug_sam": "0 of 1", "wd": "0 of 1", "baseline": "0 of 1", "baseline_sam": "0 of 1"}
    assert minimum.reasons_sentence(checked.reset_index()) == (
        "aug_sam: 1 of 1 runs not at a minimum (loss still falling 50.0% over the last 5 epochs); "
        "wd: 1 of 1 runs not at a minimum (no per-epoch history); "
        "baseline: 1 of 1 runs not at a minimum (accuracy 90.0% on the measured images (< 95%)); "
        "baseline_sam: 1 of 1 runs not at a minimum (did not finish)")


# --- Holm and the paired tests --------------------------------------------------------------------

def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept monotone: 0.06
    assert claims.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = claims.holm([0.5, 0.6, np.nan])  # NaN is no test: m = 2; nothing exceeds 1
    assert adjusted[:2] == pytest.approx([1.0, 1.0]) and np.isnan(adjusted[2])
    # at 0.05 Holm rejects 0.005 and 0.01, then stops at 0.03 (> 0.05 / 2), so 0.04 is not rejected either
    assert list(claims.holm([0.01, 0.04, 0.03, 0.005]) < 0.05) == [True, False, False, True]


def _runs(values: dict[str, list[float]], metric: str = "test_accuracy") -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "arch": "a", "control": c, "rho": np.nan, "seed": s, "status": "finished", metric: v}
                         for c, column in values.items() for s, v in enumerate(column)])


def test_paired_t_test_by_hand():
    # differences 1, 2, 3: t = 2 / (1 / sqrt 3) = 2 sqrt 3 with 2 degrees of freedom, whose CDF is
    # 1/2 + t / (2 sqrt(t^2 + 2)): one-sided p = 1/2 - sqrt(12) / (2 sqrt 14)
    runs = _runs({"baseline": [0.0, 0.0, 0.0], "aug": [1.0, 2.0, 3.0]})
    test = claims.paired_test(runs, "test_accuracy", "aug", "baseline", "greater")
    assert test["n"] == 3 and test["difference"] == pytest.approx(2.0)
    assert test["p"] == pytest.approx(0.5 - math.sqrt(12) / (2 * math.sqrt(14)))
    assert test["p"] + test["p_against"] == pytest.approx(1.0)
    assert test["p_wilcoxon"] == pytest.approx(1 / 8)  # all three differences positive: 2^-3


def test_claims_hold_against_or_lack_seeds():
    noise = [0.000, 0.003, -0.002, 0.001, -0.001]
    base = [0.70 + e for e in noise]
    runs = _runs({"baseline": base, "aug": [b + 0.05 + 0.4 * e for b, e in zip(base, noise[::-1])],
                  "wd": [b - 0.05 + 0.4 * e for b, e in zip(base, noise[::-1])],
                  "wd_sam": [b + 0.4 * e for b, e in zip(base, noise[::-1])]})
    tests = claims.claim_tests(runs)
    assert len(tests) == 3 and tests["p_holm"].notna().all()  # one deciding test per control: m = 3
    verdicts = claims.verdicts(tests).set_index("control")["verdict"].to_dict()
    assert verdicts == {"aug": claims.HOLDS, "wd": claims.AGAINST, "wd_sam": claims.NOT_SHOWN}
    summary = claims.claim_summary(claims.verdicts(tests)).set_index("claim").loc["more accurate"]
    assert summary["holds for"] == ["aug"] and summary["against"] == ["wd"] and summary["tested"] == 3
    few = claims.claim_tests(runs[runs["seed"] < 2])
    assert set(few["verdict"]) == {claims.FEW_SEEDS} and few["p_holm"].isna().all()
    assert "not enough seeds" in claims.resolution_note(few)


def test_sharper_is_decided_by_a_majority_of_the_measure_families():
    seeds = range(4)
    rows = []
    for control, factor in (("baseline", 1.0), ("aug", 2.0)):
        for s in seeds:
            wobble = 1 + 0.01 * s * (1 if control == "aug" else -1)
            rows.append({"dataset": "d", "arch": "a", "control": control, "rho": np.nan, "seed": s, "status": "finished",
                         # Fisher-Rao in both forms and relative flatness: sharper; SAM-sharpness: flatter
                         "fisher_rao_norm": factor * wobble, "fisher_rao_norm_exact": factor * wobble,
                         "relative_flatness": factor * wobble, "sam_sharpness": wobble / factor})
    tests = claims.claim_tests(pd.DataFrame(rows))
    # the exact Fisher-Rao norm is shown, not counted: three deciding tests, one per family
    assert tests["deciding"].sum() == 3 and not tests.set_index("metric").loc["fisher_rao_norm_exact", "deciding"]
    verdict = claims.verdicts(tests).iloc[0]
    assert verdict["verdict"] == claims.HOLDS  # 2 of 3 families hold
    assert verdict["families"] == "Fisher-Rao: holds, relative flatness: holds, SAM-sharpness: against"


def test_smallest_wilcoxon_p_and_the_resolution_note():
    assert claims.smallest_wilcoxon_p(5) == 1 / 32
    runs = _runs({"baseline": [0.7, 0.71, 0.69, 0.7, 0.72], "aug": [0.8, 0.82, 0.79, 0.81, 0.8],
                  "wd": [0.8, 0.82, 0.79, 0.81, 0.8]})
    note = claims.resolution_note(claims.claim_tests(runs))
    assert note.startswith("2 tests decide (n = 5 paired seeds)") and "0.05/2 = 0.025" in note
    assert "2^-5 = 0.0312, so no Wilcoxon test could pass" in note
