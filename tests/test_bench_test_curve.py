"""bench/test_curve_cost.py and `runs.epoch_costs`: the test pass priced from a run's own epoch rows (hand-made runs)."""

import importlib.util

import pytest

from sharpness.core import runs
from sharpness.core.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("test_curve_cost", REPO_ROOT / "bench" / "test_curve_cost.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def write_run(folder, control, rows):
    folder.mkdir(parents=True)
    runs.atomic_write_json(folder / runs.CONFIG, {"control": control})
    runs.atomic_write_jsonl(folder / runs.METRICS, rows)
    runs.atomic_write_json(folder / runs.SUMMARY, {"status": "finished"})  # only finished runs are read


def test_the_test_pass_is_the_wall_time_beyond_the_steps_of_rows_with_a_test_point(tmp_path):
    rows = [{"epoch": 1, "train_seconds": 1.0, "epoch_wall_seconds": 1.4, "test_accuracy": 0.3},
            {"epoch": 2, "train_seconds": 1.0, "epoch_wall_seconds": 1.0},  # no test point: nothing beyond the steps
            {"epoch": 3, "train_seconds": 1.0, "epoch_wall_seconds": 1.6, "test_accuracy": 0.4},
            {"epoch": 4, "train_seconds": 1.0, "epoch_wall_seconds": 2.5, "test_accuracy": 0.4, "measured_loss": 0.1}]
    write_run(tmp_path / "cpu_study" / "a" / "baseline" / "seed0", "baseline", rows)
    tested, untested, steps = runs.epoch_costs(tmp_path / "cpu_study" / "a" / "baseline" / "seed0")
    assert tested == pytest.approx([0.4, 0.6]) and untested == pytest.approx([0.0]) and steps == [1.0, 1.0, 1.0]
    [row] = bench.study_rows(tmp_path)
    assert (row["study"], row["steps"], row["epochs_with_test"], row["epochs_without"]) == ("cpu_study", "SGD", 2, 1)
    # median test pass 0.5 s against 1 s of steps: a third of an epoch; every tenth epoch saves 0.5 x 0.9 / 1.5
    assert row["test_share_every_epoch"] == pytest.approx(0.5 / 1.5)
    assert row["saved_on_1200_epochs"] == pytest.approx(0.5 * 0.9 / 1.5)
