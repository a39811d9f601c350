"""sharpness.training.train: matched seeds, exact resume, skipping, divergence, run files and the CLI."""

import hashlib
import json
import os

import pytest
import torch

import sharpness.training.train as train_module
from sharpness.__main__ import main as cli
from sharpness.training.controls import CONTROLS
from sharpness.training.train import RunConfig, _Trainer, epoch_order, load_run, prepare_data, train

# A few seconds per run on a shared CPU: 128 digits, batch 32, 1-2 epochs.
QUICK = dict(dataset="digits", arch="simple_cnn", max_train_samples=128, max_test_samples=64, batch_size=32,
             device="cpu")


def digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_matched_seeds_same_start_and_same_order_for_every_control(tmp_path, monkeypatch):
    """Record the index order each epoch really uses (from the generator handed to `batches`)."""
    seen = {}
    original = train_module.batches

    def recording_batches(images, labels, batch_size, *, shuffle_generator=None, **kwargs):
        if shuffle_generator is not None:  # training batches (evaluation is sequential)
            copy = torch.Generator().set_state(shuffle_generator.get_state())
            seen.setdefault(current, []).append(digest([torch.randperm(len(images), generator=copy)]))
        return original(images, labels, batch_size, shuffle_generator=shuffle_generator, **kwargs)

    monkeypatch.setattr(train_module, "batches", recording_batches)
    starts = {}
    data = None
    for seed, controls in ((0, CONTROLS), (1, ("baseline",))):
        for control in controls:
            current = (seed, control)
            config = RunConfig(control=control, seed=seed, epochs=2, runs_dir=str(tmp_path),
                               **{**QUICK, "max_train_samples": 64})
            data = data or prepare_data(config)
            starts[current] = digest(_Trainer(config, data, torch.device("cpu")).model.state_dict().values())
            train(config, progress=False)
    assert len({starts[0, c] for c in CONTROLS}) == 1
    assert len({tuple(seen[0, c]) for c in CONTROLS}) == 1 and len(seen[0, "aug_sam"]) == 2
    assert seen[0, "baseline"][0] != seen[0, "baseline"][1]  # a new order each epoch
    assert starts[0, "baseline"] != starts[1, "baseline"] and seen[0, "baseline"] != seen[1, "baseline"]


def test_training_visits_the_images_in_epoch_order_for_every_control(tmp_path, monkeypatch):
    """The labels of the batches training really draws are labels[epoch_order(seed, epoch)], augmentation or not."""
    visited = []
    original = train_module.batches

    def recording_batches(images, labels, batch_size, *, shuffle_generator=None, **kwargs):
        for x, y in original(images, labels, batch_size, shuffle_generator=shuffle_generator, **kwargs):
            if shuffle_generator is not None:  # training, not evaluation
                visited.append(y.clone())
            yield x, y

    monkeypatch.setattr(train_module, "batches", recording_batches)
    for control in ("baseline", "aug_sam"):
        visited.clear()
        config = RunConfig(control=control, epochs=2, runs_dir=str(tmp_path), **{**QUICK, "max_train_samples": 64})
        train(config, progress=False)
        labels = prepare_data(config).train_labels
        expected = torch.cat([labels[epoch_order(config.seed, epoch, len(labels))] for epoch in range(2)])
        assert torch.equal(torch.cat(visited), expected), control


def test_controls_really_train_differently(tmp_path):
    finals = {}
    for control in ("baseline", "aug", "wd", "baseline_sam"):
        config = RunConfig(control=control, epochs=1, runs_dir=str(tmp_path), **QUICK)
        train(config, progress=False)
        finals[control] = digest(torch.load(config.run_dir / "checkpoint.pt")["model"].values())
    assert len(set(finals.values())) == 4


@pytest.mark.parametrize("control", ["aug_sam", "wd"])
def test_resume_reaches_the_uninterrupted_result_exactly(tmp_path, control):
    straight = RunConfig(control=control, epochs=2, runs_dir=str(tmp_path / "straight"), **QUICK)
    resumed = RunConfig(control=control, epochs=2, runs_dir=str(tmp_path / "resumed"), **QUICK)
    train(straight, progress=False)
    first = train(resumed, progress=False, stop_after_epochs=1)
    assert first["status"] == "interrupted" and not (resumed.run_dir / "summary.json").exists()
    assert len((resumed.run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    train(resumed, progress=False)
    a = torch.load(straight.run_dir / "checkpoint.pt")
    b = torch.load(resumed.run_dir / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    drop_time = lambda rows: [{k: v for k, v in r.items() if "second" not in k} for r in rows]  # noqa: E731
    assert drop_time(a["history"]) == drop_time(b["history"])


def test_a_sparser_test_curve_leaves_the_weights_and_every_training_row_as_they_were(tmp_path, monkeypatch):
    """`monitor_every` decides only at which epochs the test curve is drawn and the checkpoint saved (every third, the
    last, and where a call stops): the weights, the training rows and the minimum criterion's rows are those of the
    run that does both every epoch; a run resumes at another spacing."""
    every = RunConfig(control="aug_sam", epochs=7, runs_dir=str(tmp_path / "every"), **QUICK)
    sparse = RunConfig(control="aug_sam", epochs=7, monitor_every=3, runs_dir=str(tmp_path / "sparse"), **QUICK)
    train(every, progress=False)
    saved, save = [], train_module.runs.atomic_save
    monkeypatch.setattr(train_module.runs, "atomic_save", lambda state, path: saved.append(state["epochs_done"]) or save(state, path))
    train(sparse, progress=False, stop_after_epochs=4)
    summary = train(RunConfig(**{**sparse.to_dict(), "monitor_every": 2}), progress=False)  # resumed, every second epoch
    assert saved == [3, 4, 6, 7]  # every third epoch, the stop after 4; then every second epoch and the last
    a, b = torch.load(every.run_dir / "checkpoint.pt"), torch.load(sparse.run_dir / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows_every = [json.loads(line) for line in (every.run_dir / "metrics.jsonl").read_text().splitlines()]
    rows_sparse = [json.loads(line) for line in (sparse.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows_sparse if "test_accuracy" in row] == [3, 6, 7]
    assert all("measured_loss" in row for row in rows_sparse[-6:])  # what the minimum criterion reads
    untested = lambda rows: [{k: v for k, v in r.items() if "second" not in k and not k.startswith("test_")} for r in rows]  # noqa: E731
    assert untested(rows_sparse) == untested(rows_every)
    assert [r["test_accuracy"] for r in rows_sparse if "test_accuracy" in r] == [rows_every[i - 1]["test_accuracy"] for i in (3, 6, 7)]
    assert summary["test_accuracy"] == rows_every[-1]["test_accuracy"]


def test_run_files_and_a_finished_run_is_skipped(tmp_path):
    config = RunConfig(control="baseline", epochs=2, runs_dir=str(tmp_path), **QUICK)
    summary = train(config, progress=False)
    run_dir = tmp_path / "digits" / "simple_cnn" / "baseline" / "seed0"
    assert config.run_dir == run_dir
    files = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert files.keys() == {"config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"}  # the lock is released
    umask = os.umask(0)
    os.umask(umask)
    assert set(files.values()) == {0o666 & ~umask}  # as any program's files, not mkstemp's 0600
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert summary["status"] == "finished" and summary["test_accuracy"] == rows[-1]["test_accuracy"]
    assert json.loads((run_dir / "config.json").read_text())["lr"] == 0.05
    stamp = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    again = train(config, progress=False)
    assert again["skipped"] and (run_dir / "checkpoint.pt").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other settings.*lr"):
        train(RunConfig(control="baseline", epochs=2, lr=0.01, runs_dir=str(tmp_path), **QUICK), progress=False)


def test_load_run_gives_back_the_trained_model(tmp_path):
    config = RunConfig(control="wd", epochs=1, runs_dir=str(tmp_path), **QUICK)
    summary = train(config, progress=False)
    model, loaded_config, data = load_run(config.run_dir)
    assert loaded_config == config and not model.training
    assert len(data.test_images) == 64
    with torch.no_grad():
        accuracy = (model(data.normalise(data.test_images)).argmax(1) == data.test_labels).float().mean().item()
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=1e-9)


def test_nan_loss_is_recorded_as_divergence(tmp_path):
    config = RunConfig(control="baseline", epochs=3, lr=1e20, runs_dir=str(tmp_path), **QUICK)
    summary = train(config, progress=False)
    assert summary["status"] == "diverged" and summary["epochs_completed"] < 3
    assert json.loads((config.run_dir / "summary.json").read_text())["status"] == "diverged"
    assert train(config, progress=False)["skipped"]  # a diverged run is finished too


def test_dataloader_path_trains_like_the_resident_path(tmp_path):
    results = {}
    for loader in ("resident", "dataloader"):
        config = RunConfig(control="baseline", epochs=1, loader=loader, runs_dir=str(tmp_path / loader), **QUICK)
        train(config, progress=False)
        results[loader] = torch.load(config.run_dir / "checkpoint.pt")["model"]
    for key, value in results["resident"].items():
        torch.testing.assert_close(results["dataloader"][key], value, rtol=1e-3, atol=1e-4)  # float rounding only


def test_gpu_settings_run_on_cpu_too(tmp_path):
    """bf16 autocast and channels_last (the CUDA defaults) through the same loop, here on the CPU."""
    base = RunConfig(control="aug_sam", epochs=1, runs_dir=str(tmp_path / "fp32"), **QUICK)
    fast = RunConfig(control="aug_sam", epochs=1, precision="bf16", channels_last=True,
                     runs_dir=str(tmp_path / "bf16"), **QUICK)
    trainer = _Trainer(fast, prepare_data(fast), torch.device("cpu"))
    assert trainer.bf16 and trainer.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    a, b = train(base, progress=False), train(fast, progress=False)
    assert b["status"] == "finished"
    assert abs(a["train_loss"] - b["train_loss"]) < 0.05  # bf16 rounding, not a different computation
    assert b["train_loss"] != a["train_loss"]


@pytest.mark.parametrize("bad, message", [
    (dict(control="sam"), "unknown control 'sam'"), (dict(dataset="mnist"), "unknown dataset 'mnist'"),
    (dict(arch="resnet50"), "unknown arch 'resnet50'"), (dict(epochs=0), "epochs"),
    (dict(lr=-1.0), "lr"), (dict(loader="fast"), "unknown loader"), (dict(monitor_every=0), "monitor_every must be a positive"),
])
def test_bad_config_values_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**bad)


def test_cli_trains_and_reports_bad_input(tmp_path, capsys):
    args = ["train", "--control", "aug", "--epochs", "1", "--max-train-samples", "64", "--max-test-samples", "32",
            "--batch-size", "32", "--runs-dir", str(tmp_path), "--device", "cpu", "--no-progress"]
    assert cli(args) == 0
    assert "status=finished" in capsys.readouterr().out
    assert (tmp_path / "digits" / "simple_cnn" / "aug" / "seed0" / "summary.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--arch", "lenet", "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "unknown arch 'lenet'" in capsys.readouterr().err


def test_cosine_schedule_follows_the_formula_and_resumes_exactly(tmp_path, monkeypatch):
    """CIFAR-100's schedule (lr_e = lr0 (1 + cos(pi e / T)) / 2, T = epochs), here on digits, across a resume."""
    import math

    from sharpness.training.controls import Hyperparameters

    cosine = Hyperparameters(lr=0.05, schedule="cosine", epochs=4, batch_size=32)
    monkeypatch.setattr(train_module, "hyperparameters", lambda dataset: cosine)
    whole = RunConfig(control="wd_sam", runs_dir=str(tmp_path / "whole"), **{**QUICK, "max_train_samples": 64})
    split = RunConfig(control="wd_sam", runs_dir=str(tmp_path / "split"), **{**QUICK, "max_train_samples": 64})
    assert whole.schedule == "cosine" and whole.epochs == 4
    train(whole, progress=False)
    assert train(split, progress=False, stop_after_epochs=1)["status"] == "interrupted"
    assert train(split, progress=False, stop_after_epochs=2)["status"] == "interrupted"
    train(split, progress=False)
    expected = [0.05 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    for config in (whole, split):
        rows = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [row["lr"] for row in rows] == pytest.approx(expected, rel=1e-12)
    a, b = (torch.load(c.run_dir / "checkpoint.pt", weights_only=True) for c in (whole, split))
    assert digest(a["model"].values()) == digest(b["model"].values())
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
