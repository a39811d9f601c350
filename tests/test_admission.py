"""Admission control with a fake clock: hand-computed estimates, refusals, slots, probes and bad clocks."""

from __future__ import annotations

import math

import pytest

from sharpness.studies.admission import SAFETY_FACTOR, SAFETY_SECONDS, PlannedRun, Rates, admit

# Measured: 1,000 img/s for baseline, 500 for baseline_sam; a run's evaluation 20 s; start-up 5 s.
RATES = Rates({"baseline": 1000.0, "baseline_sam": 500.0}, evaluation_seconds=20.0, startup_seconds=5.0)
NOW = 1000.0


def queued(key="r", control="baseline", epochs=50, images=1000):
    return PlannedRun(key, control, epochs_left=epochs, train_images=images)


def test_the_margin_is_the_stated_one():
    assert (SAFETY_FACTOR, SAFETY_SECONDS) == (1.15, 10.0)


def test_a_run_that_can_finish_is_admitted_and_one_that_cannot_is_refused():
    # By hand: 5 s start-up + 50 epochs x 1,000 images / 1,000 img/s + 20 s evaluation = 75 s;
    # with the margin 1.15 x 75 + 10 = 96.25 s, so it is evaluated at 1096.25 on the fake clock.
    fits = admit([queued()], RATES, NOW, 1097.0, slots=6)["r"]
    assert fits.verdict == "admitted" and fits.estimate == pytest.approx(75.0) and fits.finish == pytest.approx(1096.25)
    late = admit([queued()], RATES, NOW, 1096.0, slots=6)["r"]
    assert late.verdict == "refused" and "after the deadline" in late.reason


def test_the_estimate_uses_the_measured_rates():
    # The SAM control's measured 500 img/s: 5 + 50 x 1,000 / 500 + 20 = 125 s.
    assert admit([queued(control="baseline_sam")], RATES, NOW, 2000.0, slots=6)["r"].estimate == pytest.approx(125.0)
    # A run measured faster than before is judged by the new rate: at 2,000 img/s, 5 + 25 + 20 = 50 s.
    faster = Rates({"baseline": 2000.0}, evaluation_seconds=20.0, startup_seconds=5.0)
    assert admit([queued()], faster, NOW, 2000.0, slots=6)["r"].estimate == pytest.approx(50.0)
    # A running run is judged by its own rate, has no start-up left, and has done 8 s of its evaluation:
    # 10 epochs x 1,000 / 250 img/s + (20 - 8) = 52 s; the margin makes it 69.8 s: refused at a 60-s deadline.
    running = PlannedRun("mine", "baseline", epochs_left=10, train_images=1000, running=True, rate=250.0, evaluation_elapsed=8.0)
    decision = admit([running], RATES, NOW, NOW + 60.0, slots=6)["mine"]
    assert decision.verdict == "refused" and decision.estimate == pytest.approx(52.0)
    assert admit([running], RATES, NOW, NOW + 70.0, slots=6)["mine"].verdict == "admitted"


def test_a_queued_run_is_judged_from_when_a_slot_frees():
    # One slot, held by a running run needing 20 epochs x 1,000 / 1,000 + 20 = 40 s (padded 56 s): the queued
    # 75-s run starts at +56 and is evaluated at +56 + 96.25 = +152.25.
    running = PlannedRun("first", "baseline", epochs_left=20, train_images=1000, running=True)
    plan = [running, queued("second")]
    assert admit(plan, RATES, NOW, NOW + 152.0, slots=1)["second"].verdict == "refused"
    assert admit(plan, RATES, NOW, NOW + 153.0, slots=1)["second"].verdict == "admitted"
    assert admit(plan, RATES, NOW, NOW + 153.0, slots=2)["second"].finish == pytest.approx(NOW + 96.25)  # a free slot
    # A refused run takes no slot: the cheaper run behind it is still admitted.
    decisions = admit([running, queued("long", epochs=500), queued("short", epochs=1)], RATES, NOW, NOW + 60.0, slots=2)
    assert (decisions["long"].verdict, decisions["short"].verdict) == ("refused", "admitted")


def test_without_measured_rates_the_first_runs_are_probes_and_a_hopeless_lower_bound_is_refused():
    plan = [queued(f"c{i}", control=c) for i, c in enumerate(["baseline", "baseline_sam", "aug"])]
    decisions = admit(plan, Rates(), NOW, NOW + 540.0, slots=2)
    assert [decisions[f"c{i}"].verdict for i in range(3)] == ["probe", "probe", "waiting"]
    # Training alone (50 x 1,000 / 100 = 500 s, padded 585 s) overruns a 540-s deadline before the evaluation is measured.
    slow = Rates({"baseline": 100.0}, startup_seconds=0.0)
    decision = admit([queued()], slow, NOW, NOW + 540.0, slots=6)["r"]
    assert decision.verdict == "refused" and decision.reason.startswith("at least 500 s")
    assert admit([queued()], Rates({"baseline": 1000.0}, startup_seconds=0.0), NOW, NOW + 540.0, slots=6)["r"].verdict == "waiting"


@pytest.mark.parametrize("deadline", [math.nan, -1.0, math.inf, None])
def test_nan_negative_or_infinite_deadlines_are_refused_with_a_clear_error(deadline):
    with pytest.raises(ValueError, match=r"finite, non-negative deadline .* --deadline 540"):
        admit([queued()], RATES, NOW, deadline, slots=6)


def test_broken_rates_and_slots_are_refused():
    with pytest.raises(ValueError, match="img/s of baseline"):
        admit([queued()], Rates({"baseline": -5.0}), NOW, NOW + 100, slots=6)
    with pytest.raises(ValueError, match="evaluation seconds"):
        admit([queued()], Rates({}, evaluation_seconds=math.nan), NOW, NOW + 100, slots=6)
    with pytest.raises(ValueError, match="slots"):
        admit([queued()], RATES, NOW, NOW + 100, slots=0)


def test_the_lease_measures_img_per_s_from_steady_epochs_by_wall_time():
    from sharpness.studies.lease import epoch_images, measured_rate

    rows = [{"images_per_second": 100.0, "train_seconds": 2.0, "epoch_wall_seconds": wall} for wall in (9.0, 4.0, 6.0)]
    assert epoch_images(rows) == 200
    assert measured_rate(rows, epochs=100) == pytest.approx(200 / 5.0)  # the warm-up epoch (9 s) left out
    assert measured_rate(rows[:1], epochs=100) is None  # a warm-up epoch alone does not judge a run
    assert measured_rate(rows[:1], epochs=1) == pytest.approx(200 / 9.0)


def test_without_a_poll_during_training_the_aggregate_comes_from_the_finished_runs_windows():
    from sharpness.studies.lease import Lease

    lease = Lease.__new__(Lease)  # only the finished runs' figures matter here
    lease.finished = {  # by hand: 2 x 200 + 3 x 100 = 700 images from t = 10 to t = 24, so 50 img/s over 2 runs
        "a": {"training_window": [10.0, 20.0], "epochs": 2, "train_images": 200},
        "b": {"training_window": [14.0, 24.0], "epochs": 3, "train_images": 100},
    }
    assert lease.aggregate_of_finished() == (pytest.approx(50.0), 2)
    lease.finished = {}
    assert lease.aggregate_of_finished() == (None, 0)
