"""sharpness.training.minimum and what training records for it: hand-made histories, and a real tiny run."""

import pytest
import torch

from sharpness.training import minimum
from sharpness.training.train import RunConfig, load_run, measurement_images, train


def history(losses, key="measured_loss"):
    return [{"epoch": i + 1, "train_loss": loss, key: loss} for i, loss in enumerate(losses)]


def test_a_run_at_a_plateau_with_high_accuracy_reached_a_minimum():
    ok, reason = minimum.reached_minimum(history([2.0, 1.0, 0.50, 0.50, 0.499, 0.498, 0.497, 0.496]), 0.97)
    assert ok and "0.8% (4.0e-03 nats)" in reason  # (0.50 - 0.496) / 0.50, by hand


def test_low_accuracy_or_a_falling_loss_or_a_short_history_is_no_minimum():
    assert minimum.reached_minimum(history([1.0] * 8), 0.949)[0] is False
    ok, reason = minimum.reached_minimum(history([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), 0.99)
    assert not ok and "still falling" in reason and "55.6%" in reason  # (0.9 - 0.4) / 0.9: epoch 2 to epoch 7
    assert minimum.reached_minimum(history([0.1] * 5), 0.99) == (False, "history too short (5 epochs) to judge the loss")
    assert minimum.reached_minimum(history([0.1] * 8), None)[0] is False


def test_a_near_zero_loss_that_moves_by_a_few_per_cent_has_no_descent_left():
    """100% accuracy, loss 0.0022 -> 0.00213 (3% but 7e-5 nats): a minimum; 0.50 -> 0.45 (10%, 0.05 nats): not."""
    assert minimum.reached_minimum(history([0.1, 0.01, 0.0022, 0.00218, 0.00216, 0.00215, 0.00214, 0.00213]), 1.0)[0]
    assert not minimum.reached_minimum(history([1.0, 0.6, 0.50, 0.49, 0.48, 0.47, 0.46, 0.45]), 1.0)[0]


def test_older_runs_without_the_measured_loss_are_judged_on_the_training_loss_and_say_so():
    rows = [{"epoch": i + 1, "train_loss": loss} for i, loss in enumerate([1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])]
    ok, reason = minimum.reached_minimum(rows, 0.99)
    assert ok and "train loss" in reason


def test_training_records_the_measured_loss_over_the_final_epochs(tmp_path):
    config = RunConfig(dataset="digits", arch="simple_cnn", control="aug", epochs=7, max_train_samples=64,
                       max_test_samples=40, monitor_test_images=16, runs_dir=str(tmp_path), device="cpu", lr_schedule="cosine")
    train(config, progress=False)
    rows = [__import__("json").loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert ["measured_loss" in row for row in rows] == [False] + [True] * 6  # the last PLATEAU_EPOCHS + 1 epochs
    assert rows[-1]["lr"] < rows[0]["lr"]  # the cosine schedule anneals
    # the recorded value is the loss of the final weights on the fixed augmented copy (an independent forward pass)
    model, config, data = load_run(config.run_dir)
    images, labels = measurement_images(data, config)
    from sharpness.training.data import batches

    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(model(x), y, reduction="sum") for x, y in batches(images, labels, 16, data=data)]
    assert rows[-1]["measured_loss"] == pytest.approx(float(sum(losses)) / len(labels), rel=1e-5)


def test_rho_scale_multiplies_the_sam_radius(tmp_path):
    """SAM at rho 0.1 x scale 0.5 takes exactly the steps of SAM at rho 0.05 x scale 1."""
    common = dict(dataset="digits", arch="simple_cnn", control="baseline_sam", epochs=1, max_train_samples=64,
                  max_test_samples=20, device="cpu")
    a = RunConfig(rho=0.1, rho_scale=0.5, runs_dir=str(tmp_path / "a"), **common)
    b = RunConfig(rho=0.05, rho_scale=1.0, runs_dir=str(tmp_path / "b"), **common)
    c = RunConfig(rho=0.1, rho_scale=1.0, runs_dir=str(tmp_path / "c"), **common)
    for config in (a, b, c):
        train(config, progress=False)
    weights = [torch.cat([p.flatten() for p in load_run(x.run_dir)[0].parameters()]) for x in (a, b, c)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    with pytest.raises(ValueError, match="rho_scale"):
        RunConfig(rho_scale=0.0, **common)


def test_every_committed_run_of_the_controls_grid_reached_a_minimum():
    """The CPU study's claim rests on this: read the committed histories and measured accuracies, judge each run."""
    from sharpness.core import runs
    from sharpness.studies import cpu_study

    folders = cpu_study.committed_controls_runs()
    assert folders, f"no committed run of the CPU study's protocol under {cpu_study.STUDY_DIR}"
    verdicts = {}
    for folder in folders:
        metrics = runs.read_json(folder / "metrics.json")
        verdicts[str(folder.relative_to(cpu_study.STUDY_DIR))] = minimum.reached_minimum(
            runs.read_jsonl(folder / runs.METRICS), metrics["measured_set"]["accuracy"])
    missed = {name: reason for name, (ok, reason) in verdicts.items() if not ok}
    assert not missed, f"runs not at a minimum: {missed}"
    assert all("measured loss" in reason for _, reason in verdicts.values())  # judged on the deterministic loss


def test_runs_of_one_seed_in_two_cells_of_a_sweep_are_judged_each_on_its_own_history():
    """Batch 128 and batch 256 of the same control and seed: the first plateaued, the second still falls. Keyed
    without the cell, their histories would merge into one run of twelve rows and share one verdict."""
    import pandas as pd

    run = dict(dataset="d", arch="a", control="aug", rho=float("nan"), seed=0, lr=0.01)
    plateau, falling = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    history = pd.DataFrame([{**run, "batch_size": batch, "epoch": epoch + 1, "train_loss": loss, "measured_loss": loss}
                            for batch, losses in ((128, plateau), (256, falling)) for epoch, loss in enumerate(losses)])
    runs = pd.DataFrame([{**run, "batch_size": batch, "measured_set.accuracy": 0.99} for batch in (128, 256)])
    checked = minimum.check(runs, history)
    assert checked["at_minimum"].tolist() == [True, False] and checked["epochs"].tolist() == [6, 6]
    assert "50.0%" in checked["reason"].iloc[1]  # (1.0 - 0.5) / 1.0 over the batch-256 run's own epochs
    assert checked["loss_drop_nats"].tolist() == pytest.approx([0.0, 0.5])
    assert minimum.at_minimum(runs, checked)["batch_size"].tolist() == [128]


def test_a_runs_history_is_found_across_the_ways_files_write_its_radius_and_seed():
    """The grid's JSON and the history's CSV write a run differently: a control without SAM may carry the default
    radius in one and none in the other, a radius may come back from text a few ulps off, a seed as 2.0. The same
    run is found either way; another radius of a SAM control is another run."""
    import pandas as pd

    plateau = [0.5] * 6
    grid_rows = [dict(dataset="d", arch="a", control="aug", rho=float("nan"), seed=2),
                 dict(dataset="d", arch="a", control="aug_sam", rho=0.05, seed=2),
                 dict(dataset="d", arch="a", control="aug_sam", rho=0.1, seed=2)]
    written = [dict(dataset="d", arch="a", control="aug", rho=0.05, seed=2.0),
               dict(dataset="d", arch="a", control="aug_sam", rho=0.05 + 1e-12, seed=2.0)]
    history = pd.DataFrame([{**run, "epoch": epoch + 1, "train_loss": loss, "measured_loss": loss}
                            for run in written for epoch, loss in enumerate(plateau)])
    runs = pd.DataFrame([{**row, "measured_set.accuracy": 0.99} for row in grid_rows])
    checked = minimum.check(runs, history)
    assert checked["epochs"].tolist() == [6, 6, 0]
    assert checked["at_minimum"].tolist() == [True, True, False]
    assert checked["reason"].iloc[2] == "no per-epoch history"
    kept = minimum.at_minimum(runs, checked)
    assert kept["control"].tolist() == ["aug", "aug_sam"] and kept["rho"].iloc[1] == 0.05
