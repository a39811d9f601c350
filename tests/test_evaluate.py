"""Evaluation metrics against hand computations, and one tiny run evaluated end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from sharpness.measuring import evaluate, measures
from sharpness.training.data import ImageData
from sharpness.training.data import batches as data_batches


def test_accuracy_from_indices_and_scores():
    labels = torch.tensor([0, 1, 2, 1])
    assert evaluate.accuracy(torch.tensor([0, 1, 1, 1]), labels) == 0.75
    scores = torch.tensor([[3.0, 1, 0], [0, 1, 2], [0, 0, 1], [1, 2, 0]])
    assert evaluate.accuracy(scores, labels) == 0.75


def test_ece_matches_hand_computation():
    probs = torch.tensor([
        [0.90, 0.05, 0.05],  # confidence 0.90, correct        -> bin 13 (0.8667-0.9333)
        [0.91, 0.04, 0.05],  # confidence 0.91, wrong           -> bin 13
        [0.50, 0.30, 0.20],  # confidence 0.50, correct         -> bin 7 (0.4667-0.5333)
        [0.20, 0.45, 0.35],  # confidence 0.45, wrong           -> bin 6 (0.4-0.4667)
        [0.10, 0.12, 0.78],  # confidence 0.78, correct         -> bin 11 (0.7333-0.8)
        [0.02, 0.97, 0.01],  # confidence 0.97, correct         -> bin 14
    ])  # fmt: skip
    labels = torch.tensor([0, 1, 0, 2, 2, 1])
    # Bins by hand: {0.90 ok, 0.91 wrong}: |1/2 - 0.905| * 2/6; {0.50 ok}: |1 - 0.5| / 6;
    # {0.45 wrong}: |0 - 0.45| / 6; {0.78 ok}: |1 - 0.78| / 6; {0.97 ok}: |1 - 0.97| / 6.
    expected = (abs(0.5 - 0.905) * 2 + 0.5 + 0.45 + 0.22 + 0.03) / 6
    assert evaluate.expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-6)


def test_disagreement_over_all_pairs_by_hand():
    a = torch.tensor([0, 1, 2, 3])
    b = torch.tensor([0, 1, 2, 0])  # differs from a in 1 of 4
    c = torch.tensor([1, 1, 0, 0])  # differs from a in 3, from b in 2
    assert evaluate.prediction_disagreement([a, b]) == 0.25
    assert evaluate.prediction_disagreement([a, b, c]) == pytest.approx((0.25 + 0.75 + 0.5) / 3)
    scores = torch.nn.functional.one_hot(c, 4).float()
    assert evaluate.prediction_disagreement([a, scores]) == 0.75
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.prediction_disagreement([a])


class ConstantModel(nn.Module):
    """Always predicts class 0: its accuracy is the share of label 0, whatever the images."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(classes, 0, -1).float())

    def forward(self, x):
        return self.bias.expand(len(x), -1)


def tiny_data(count: int = 20) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.arange(count) % 4 % 3  # label 0 for half of them
    return ImageData("tiny", images, labels, images, labels, 3, (0.5,) * 3, (0.25,) * 3)


def test_corruption_accuracy_reads_cifar_c_files_severity_by_severity(tmp_path):
    per_severity = 10
    labels = np.concatenate([np.full(per_severity, 0 if s < 2 else 1) for s in range(5)])  # severities 1-2 all 0
    labels[0] = 2  # severity 1: 9 of 10 are class 0
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "fog.npy", np.zeros((5 * per_severity, 8, 8, 3), dtype=np.uint8))
    result = evaluate.corruption_accuracy(ConstantModel(), tiny_data(), ["fog"], cifar_c_dir=tmp_path, progress=False)
    assert result["by_corruption"]["fog"] == [90.0, 100.0, 0.0, 0.0, 0.0]
    assert result["corruption_accuracy"] == pytest.approx(38.0)
    assert "files" in result["source"]
    with pytest.raises(FileNotFoundError, match="snow.npy"):
        evaluate.corruption_accuracy(ConstantModel(), tiny_data(), ["snow"], cifar_c_dir=tmp_path)


def test_generated_corruption_accuracy_is_deterministic():
    data = tiny_data()
    first = evaluate.corruption_accuracy(ConstantModel(), data, ["gaussian_noise"], severities=[1, 5], progress=False)
    assert first["by_corruption"]["gaussian_noise"] == [50.0, 50.0]  # the constant model ignores images
    assert "generated" in first["source"]
    with pytest.raises(ValueError, match="accepted: gaussian_noise"):
        evaluate.corruption_accuracy(ConstantModel(), data, ["rain"])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from sharpness.training.train import RunConfig, train

    config = RunConfig(dataset="digits", arch="simple_cnn", control="aug", seed=0, epochs=1, device="cpu",
                       runs_dir=str(tmp_path_factory.mktemp("runs")), max_train_samples=96, max_test_samples=64)  # fmt: skip
    summary = train(config, progress=False)
    return config, summary


def test_evaluate_run_writes_metrics_consistent_with_training_and_measures(finished_run):
    from sharpness.training.train import load_run

    config, summary = finished_run
    metrics = evaluate.evaluate_run(config.run_dir, device="cpu", sam_draws=2, corruptions=("fog",),
                                    corruption_images=32, progress=False)  # fmt: skip
    on_disk = json.loads((config.run_dir / evaluate.METRICS_FILE).read_text())
    assert on_disk["test_accuracy"] == metrics["test_accuracy"]
    # The training loop's own final test evaluation is an independent computation of the same number.
    assert metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert metrics["generalisation_gap"] == pytest.approx(100 * (metrics["train_accuracy"] - metrics["test_accuracy"]))
    assert set(evaluate.DEFAULT_MEASURES) <= set(metrics)
    assert metrics["settings"]["train_set"] == "one fixed augmented copy"

    # The one-pass values equal the stand-alone measures on the same (fixed, augmented) images.
    model, _, data = load_run(config.run_dir)
    images, labels = evaluate.measurement_images(data, config)
    batches = lambda: data_batches(images, labels, config.batch_size, data=data)  # noqa: E731
    assert metrics["fisher_rao_norm"] == pytest.approx(measures.fisher_rao_norm(model, batches, progress=False), rel=1e-6)
    assert metrics["relative_flatness"] == pytest.approx(measures.relative_flatness(model, batches, progress=False), rel=1e-6)
    saved = torch.load(config.run_dir / evaluate.PREDICTIONS_FILE, weights_only=True)
    assert len(saved) == 64 and evaluate.prediction_disagreement([saved, saved]) == 0.0


def test_evaluate_run_skips_measures_already_written(finished_run):
    config, _ = finished_run
    evaluate.evaluate_run(config.run_dir, measures=("test_accuracy",), device="cpu", progress=False)
    path = config.run_dir / evaluate.METRICS_FILE
    stored = json.loads(path.read_text())
    stored["test_accuracy"] = -1.0  # a marker: a skipped measure keeps it
    path.write_text(json.dumps(stored))
    assert evaluate.evaluate_run(config.run_dir, measures=("test_accuracy",), device="cpu", progress=False)["test_accuracy"] == -1.0
    redone = evaluate.evaluate_run(config.run_dir, measures=("test_accuracy",), device="cpu", overwrite=True, progress=False)
    assert redone["test_accuracy"] >= 0
    with pytest.raises(ValueError, match="accepted: test_accuracy"):
        evaluate.evaluate_run(config.run_dir, measures=("loss_of_nerve",))


@pytest.mark.slow
def test_evaluate_notebook_writes_metrics_and_shows_a_summary(finished_run, tmp_path):
    import papermill

    from sharpness.core.paths import REPO_ROOT

    config, _ = finished_run
    (config.run_dir / evaluate.METRICS_FILE).unlink(missing_ok=True)
    output = tmp_path / "evaluate.out.ipynb"
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "evaluate.ipynb"), str(output), kernel_name="python3", progress_bar=False,
        parameters=dict(run_dirs=f"{config.runs_dir}/{config.dataset}", device="cpu", measures="test_accuracy,test_ece"),
    )  # fmt: skip  (runs/digits: a folder two levels above the run, as the README's reader names it)
    metrics = json.loads((config.run_dir / evaluate.METRICS_FILE).read_text())
    assert {"test_accuracy", "test_ece"} <= set(metrics)
    outputs = [o for cell in json.loads(output.read_text())["cells"] for o in cell.get("outputs", [])]
    assert any("test_accuracy" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    printed = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "Empty DataFrame" not in printed and "each of digits/simple_cnn/aug has one evaluated seed" in printed


def test_one_seed_per_control_gets_a_sentence_naming_the_groups_instead_of_an_empty_table():
    results = [{"run_dir": "r1", "run": {"dataset": "digits", "arch": "simple_cnn", "control": "wd"}},
               {"run_dir": "r2", "run": {"dataset": "digits", "arch": "simple_cnn", "control": "aug"}}]
    sentence = evaluate.disagreement_or_why_not(results)
    assert isinstance(sentence, str) and "digits/simple_cnn/aug, digits/simple_cnn/wd" in sentence


def test_aug_controls_are_measured_on_one_fixed_augmented_copy_and_others_on_clean_data():
    from augmentation_checks import is_crop_or_mirror

    from sharpness.training.data import load_dataset
    from sharpness.training.train import RunConfig

    data = load_dataset("digits").subset(40, 8)
    for control in ("aug", "aug_sam"):
        images, labels = evaluate.measurement_images(data, RunConfig(control=control))
        assert torch.equal(labels, data.train_labels)
        assert all(is_crop_or_mirror(got, clean) for got, clean in zip(images, data.train_images))
        assert sum(not torch.equal(got, clean) for got, clean in zip(images, data.train_images)) > 20
        again, _ = evaluate.measurement_images(data, RunConfig(control=control))
        assert torch.equal(again, images)  # the same copy for every measure and every pass
    for control in ("baseline", "wd_sam"):
        images, labels = evaluate.measurement_images(data, RunConfig(control=control))
        assert torch.equal(images, data.train_images) and torch.equal(labels, data.train_labels)
