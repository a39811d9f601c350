"""The GPU campaign on the CPU: deadline stops, resumes, one archive, and the import home (digits, tiny)."""

from __future__ import annotations

import json
import tarfile
import time

import numpy as np
import pytest
import torch

from sharpness.__main__ import main as cli
from sharpness.core import runs
from sharpness.studies import campaign, campaign_import, registry, store, sweep
from sharpness.training.train import RunConfig, train


def tiny_config(runs_dir, **overrides) -> RunConfig:
    return RunConfig(dataset="digits", arch="simple_cnn", control="baseline", epochs=2, max_train_samples=64,
                     max_test_samples=32, runs_dir=str(runs_dir), device="cpu", **overrides)


def test_a_deadline_stops_between_epochs_and_the_run_resumes_to_the_same_weights(tmp_path):
    config = tiny_config(tmp_path / "sliced")
    assert train(config, progress=False, stop_after_epochs=1)["status"] == "interrupted"
    # One epoch has been timed; a deadline closer than that epoch's wall time must stop before the next one.
    stopped = train(config, progress=False, deadline=time.time() + 1e-3)
    assert stopped == {"status": "interrupted", "epochs_completed": 1, "run_dir": str(config.run_dir)}
    assert (config.run_dir / runs.CHECKPOINT).is_file() and not runs.is_finished(config.run_dir)
    assert train(config, progress=False)["status"] == "finished"
    whole = tiny_config(tmp_path / "whole")
    train(whole, progress=False)
    sliced_weights = torch.load(config.run_dir / runs.CHECKPOINT, weights_only=True)["model"]
    whole_weights = torch.load(whole.run_dir / runs.CHECKPOINT, weights_only=True)["model"]
    assert sliced_weights.keys() == whole_weights.keys()
    assert all(torch.equal(sliced_weights[k], whole_weights[k]) for k in whole_weights)


def test_a_deadline_between_two_saves_still_saves_the_epochs_done(tmp_path, monkeypatch):
    """With a checkpoint every 5th epoch, a deadline after epoch 2 saves epochs 1-2 on the way out: nothing trained
    is lost, and the resumed run ends at the weights of one never stopped."""
    import sharpness.training.train as train_module

    config = RunConfig(**{**tiny_config(tmp_path / "sliced").to_dict(), "epochs": 6, "monitor_every": 5})
    whole = RunConfig(**{**tiny_config(tmp_path / "whole").to_dict(), "epochs": 6})
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_epoch_fits", lambda deadline, history: len(history) < 2)
        assert train(config, progress=False, deadline=time.time() + 600)["epochs_completed"] == 2
    assert torch.load(config.run_dir / runs.CHECKPOINT, weights_only=True)["epochs_done"] == 2
    assert [row["epoch"] for row in runs.read_jsonl(config.run_dir / runs.METRICS)] == [1, 2]
    train(config, progress=False)
    train(whole, progress=False)
    sliced_weights = torch.load(config.run_dir / runs.CHECKPOINT, weights_only=True)["model"]
    whole_weights = torch.load(whole.run_dir / runs.CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(sliced_weights[k], whole_weights[k]) for k in whole_weights)


def test_execute_run_reports_interrupted_without_training_when_no_time_is_left(tmp_path):
    config = tiny_config(tmp_path)
    outcome = sweep.execute_run(config, deadline=time.time() + 1.0, reserve=60.0)
    assert outcome["status"] == "interrupted" and not config.run_dir.exists()


def campaign_command(tmp_path, deadline: float) -> int:
    return cli(["campaign", "--mode", "slices", "--preset", "rehearsal", "--dataset", "digits", "--arch", "simple_cnn", "--items", "grid",
                "--seeds", "0", "1", "--deadline", str(deadline), "--work", str(tmp_path / "work"),
                "--out", str(tmp_path / "out"), "--results-dir", str(tmp_path / "results"), "--device", "cpu",
                "--commit", "abc123"])


def test_a_tiny_campaign_stops_at_its_deadline_resumes_packs_one_archive_and_comes_home(tmp_path):
    archive = tmp_path / "out" / campaign.ARCHIVE_NAME
    # Slice 1: a deadline that leaves less than a run's evaluation reserve: nothing starts, the archive still lands.
    assert campaign_command(tmp_path, campaign.PACK_SECONDS + 1) == 0
    with tarfile.open(archive) as pack:
        manifest = json.load(pack.extractfile("campaign/manifest.json"))
    assert manifest["items"] == {"grid": "stopped at the deadline"}
    assert manifest["provenance"]["commit"] == "abc123" and manifest["provenance"]["torch"] == torch.__version__
    # Slice 2 resumes and finishes the grid: 6 controls x 2 seeds.
    assert campaign_command(tmp_path, 600) == 0
    with tarfile.open(archive) as pack:
        names = pack.getnames()
        manifest = json.load(pack.extractfile("campaign/manifest.json"))
    assert manifest["items"] == {"grid": "done"}
    assert "campaign/grid/digits_simple_cnn.json" in names
    assert sum(name.startswith("campaign/predictions/") for name in names) == 12
    assert not any(name.endswith(".pt") for name in names)  # no checkpoints leave the machine

    results_dir = tmp_path / "results"
    campaign_import.import_archive(archive, results_dir)
    grid_file = results_dir / "campaign" / "digits_simple_cnn.json"
    frame, provenance = store.load_grid(grid_file)
    assert len(frame) == 12 and set(frame["seed"]) == {0, 1} and (frame["status"] == "finished").all()
    assert provenance["tier"] == "cpu" and provenance["campaign"]["commit"] == "abc123"
    # Disagreement of a control's two seeds, recomputed at import from the shipped predictions, by hand:
    row = frame[(frame["control"] == "baseline") & (frame["seed"] == 0)].iloc[0]
    a, b = (np.load(results_dir / "campaign" / "predictions" / f"{campaign.prediction_name({**row.to_dict(), 'seed': s})}.npy")
            for s in (0, 1))
    assert row["prediction_disagreement"] == pytest.approx(float(np.mean(a != b)))
    # Importing the same archive again adds nothing; a third slice finds every run committed and redoes none.
    campaign_import.import_archive(archive, results_dir)
    assert len(store.load_grid(grid_file)[0]) == 12
    study = sweep.load_study("controls", results_dir=results_dir)
    assert not study.offline and study.provenance["tier"] == "cpu" and "committed grid (CPU)" in study.label


def lease_command(tmp_path, work: str, seeds, deadline: float = 600) -> int:
    return cli(["campaign", "--preset", "rehearsal", "--dataset", "digits", "--arch", "simple_cnn", "--epochs", "2",
                "--controls", "baseline", "baseline_sam", "--seeds", *map(str, seeds), "--deadline", str(deadline),
                "--work", str(tmp_path / work), "--out", str(tmp_path / work / "out"), "--results-dir", str(tmp_path / "results"),
                "--device", "cpu", "--commit", "abc123"])


def test_a_lease_packs_its_finished_runs_with_measured_figures_and_the_next_lease_goes_on_from_the_import(tmp_path):
    assert lease_command(tmp_path, "lease1", [0]) == 0
    archive = tmp_path / "lease1" / "out" / campaign.ARCHIVE_NAME
    with tarfile.open(archive) as pack:
        names = pack.getnames()
        manifest = json.load(pack.extractfile("campaign/manifest.json"))
        grid = json.load(pack.extractfile("campaign/grid/digits_simple_cnn.json"))
    lease = manifest["lease"]
    assert sorted(lease["runs"]) == ["baseline/seed0", "baseline_sam/seed0"] and len(grid["runs"]) == 2
    assert not any(name.endswith(".pt") for name in names)
    for figures in lease["runs"].values():  # the runs' own figures: 64 images an epoch, 2 epochs, every measure timed
        assert figures["train_images"] == 64 and figures["epochs"] == 2 and figures["images_per_second"] > 0
        assert figures["measure_seconds"]["sam_sharpness"] > 0 and figures["evaluate_seconds"] >= figures["measure_seconds"]["sam_sharpness"]
    assert lease["aggregate_images_per_second"] > 0 and set(lease["control_images_per_second"]) == {"baseline", "baseline_sam"}
    assert lease["decisions"]["baseline/seed0"]["verdict"] in ("probe", "admitted")

    campaign_import.import_archive(archive, tmp_path / "results")
    grid_file = tmp_path / "results" / "campaign" / "digits_simple_cnn.json"
    assert campaign_import.lease_figures(store.load_grid(grid_file)[1])[0]["runs"].keys() == lease["runs"].keys()
    # The next lease is a fresh machine (its own work folder): seed 0 is imported, so only seed 1 runs.
    assert lease_command(tmp_path, "lease2", [0, 1]) == 0
    archive = tmp_path / "lease2" / "out" / campaign.ARCHIVE_NAME
    with tarfile.open(archive) as pack:
        manifest = json.load(pack.extractfile("campaign/manifest.json"))
    assert sorted(manifest["lease"]["runs"]) == ["baseline/seed1", "baseline_sam/seed1"]
    campaign_import.import_archive(archive, tmp_path / "results")
    frame, provenance = store.load_grid(grid_file)
    assert sorted(zip(frame["control"], frame["seed"])) == [("baseline", 0), ("baseline", 1), ("baseline_sam", 0), ("baseline_sam", 1)]
    figures = campaign_import.lease_figures(provenance)
    assert [sorted(entry["runs"]) for entry in figures] == [["baseline/seed1", "baseline_sam/seed1"],
                                                            ["baseline/seed0", "baseline_sam/seed0"]]


@pytest.mark.parametrize("deadline", ["nan", "-5", "inf"])
def test_a_lease_refuses_a_deadline_that_is_not_a_time(tmp_path, capsys, deadline):
    with pytest.raises(SystemExit):
        lease_command(tmp_path, "bad", [0], deadline=float(deadline))
    error = capsys.readouterr().err
    assert "--deadline" in error and repr(float(deadline)).strip("'") in error.replace("'", "")  # names the option and value
    assert not (tmp_path / "bad").exists()


def test_items_belong_to_the_slices_mode(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["campaign", "--items", "grid", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert "--items grid belongs to --mode slices" in capsys.readouterr().err


def write_grid(path, tier):
    document = {"provenance": {"tier": tier} if tier else {}, "runs": [{"dataset": "d", "arch": "a", "control": "baseline", "seed": 0}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_committed_grids_rank_gpu_before_cpu_before_untiered(tmp_path):
    untiered = write_grid(tmp_path / "a_old.json", None)
    cpu = write_grid(tmp_path / "b_cpu_study.json", "cpu")
    gpu = write_grid(tmp_path / "campaign" / "z_resnet.json", "gpu")
    write_grid(tmp_path / "bench_grid.json", "gpu")  # benchmarks are never grids
    assert registry.committed_grids(tmp_path) == [gpu, cpu, untiered]
    assert registry.committed_grid("controls", tmp_path) == gpu


def test_import_refuses_what_is_not_a_campaign_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="no campaign archive"):
        campaign_import.import_archive(tmp_path / "missing.tar.gz", tmp_path)
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_text("not a tar file")
    with pytest.raises(ValueError, match="not a campaign archive"):
        campaign_import.import_archive(bogus, tmp_path)


def test_the_campaign_commands_import_nothing_the_gpu_machine_lacks():
    """The GPU machine has torch, torchvision, torchmetrics, numpy, scipy, pandas, tqdm only (the device tool's H200)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sharpness.studies import campaign, campaign_import, store, sweep\n"
        "from sharpness.measuring import evaluate, landscape\n"
        "from sharpness.toys import fit\n"
        "from sharpness.training import train\n"
        "from sharpness.book import stats\n"
        "from sharpness.__main__ import build_parser\n"
        "for command in ('campaign', 'campaign-import', 'evaluate', 'fit', 'landscape', 'sweep', 'train'):\n"
        "    build_parser(command)\n"
        "absent = ('papermill', 'ray', 'jupyter', 'jupyter_core', 'IPython', 'ipykernel', 'plotly', 'ipywidgets', 'sklearn')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in absent))\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"
