"""Faults and bad input (issue 14): kills at the worst moment, rejected settings, stale caches, divergence,
two trainers on one run. Each case is reproduced as a user meets it (in a subprocess where that is how)."""

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sharpness.__main__ import main as cli
from sharpness.core import runs
from sharpness.training.train import RunConfig, train

SRC = Path(__file__).resolve().parents[1] / "src"
# A second or two per run: 64 digits, batch 32, one epoch.
TINY = ["--dataset", "digits", "--max-train-samples", "64", "--max-test-samples", "32", "--batch-size", "32",
        "--device", "cpu", "--threads", "1", "--no-progress"]
TINY_CONFIG = dict(dataset="digits", max_train_samples=64, max_test_samples=32, batch_size=32, device="cpu")


def python(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sharpness_command(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sharpness", *args]
    if kwargs.pop("background", False):
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # a bound for a hang, not an expectation: on a loaded 2-core machine importing torch alone can take minutes
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, **kwargs)


# --- case 2: a kill between the last checkpoint and metrics.jsonl ------------------------------------


@pytest.mark.parametrize("epochs", [1, 2])
def test_kill_after_the_last_checkpoint_is_repaired_by_the_rerun(tmp_path, epochs):
    killed = python(f"""
        import os, signal
        from sharpness.core import runs
        from sharpness.training import train
        real_write = runs.atomic_write_jsonl
        def write_then_maybe_die(path, rows):
            if len(rows) == {epochs}:  # the final checkpoint is on disk; die before its metric row is
                os.kill(os.getpid(), signal.SIGKILL)
            real_write(path, rows)
        runs.atomic_write_jsonl = write_then_maybe_die
        train.train(train.RunConfig(epochs={epochs}, **{TINY_CONFIG!r}), progress=False)
    """, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr
    config = RunConfig(epochs=epochs, runs_dir=str(tmp_path / "runs"), **TINY_CONFIG)
    assert len(runs.read_jsonl(config.run_dir / runs.METRICS)) == epochs - 1  # the damage the kill did

    summary = train(config, progress=False)
    history = torch.load(config.run_dir / runs.CHECKPOINT, weights_only=True)["history"]
    assert summary["status"] == "finished" and summary["epochs_completed"] == epochs
    assert runs.read_jsonl(config.run_dir / runs.METRICS) == json.loads(json.dumps(history))
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))


# --- case 3: a rejected setting leaves nothing behind --------------------------------------------------


@pytest.mark.parametrize("bad", [["--max-train-samples", "0"], ["--lr", "1e300"], ["--stop-after-epochs", "-1"],
                                 ["--device", "bogus"], ["--epochs", "0"]])
def test_a_rejected_setting_writes_nothing_and_the_corrected_command_runs(tmp_path, capsys, bad):
    quick = ["train", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), *TINY]
    with pytest.raises(SystemExit) as exit_info:
        cli([*quick, *bad])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and bad[0][2:].replace("-", "_") in message and "Traceback" not in message
    assert not (tmp_path / "runs").exists()
    assert cli(quick) == 0
    assert "status=finished" in capsys.readouterr().out


def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        cli(["train", "--runs-dir", str(tmp_path / "runs"), *TINY, "--device", "cuda"])
    message = capsys.readouterr().err
    assert "'cuda'" in message and "--device cpu" in message and not (tmp_path / "runs").exists()


# --- case 4: the folder cache follows the folder's contents ---------------------------------------------


def _write_png(image, path: Path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def test_folder_cache_notices_added_and_replaced_images(tmp_path):
    from sharpness.training.data import load_dataset

    digits = load_dataset("digits")
    for split, count in (("train", 3), ("test", 2)):
        for c in range(2):
            for i in range(count):
                _write_png(digits.train_images[10 * c + i], tmp_path / split / f"class{c}" / f"{i}.png")
    first = load_dataset("cifar10_folder", tmp_path)
    assert len(first.train_labels) == 6
    _write_png(digits.train_images[50], tmp_path / "train" / "class1" / "extra.png")
    added = load_dataset("cifar10_folder", tmp_path)
    assert len(added.train_labels) == 7 and torch.equal(added.train_images[-1], digits.train_images[50])
    _write_png(digits.train_images[60], tmp_path / "train" / "class0" / "0.png")  # same name, other picture
    os.utime(tmp_path / "train" / "class0" / "0.png", ns=(time.time_ns() + 10**9,) * 2)
    replaced = load_dataset("cifar10_folder", tmp_path)
    assert torch.equal(replaced.train_images[0], digits.train_images[60])
    (tmp_path / "test" / "class2").mkdir()
    (tmp_path / "train" / "class2").mkdir()
    for split in ("train", "test"):
        _write_png(digits.train_images[70], tmp_path / split / "class2" / "0.png")
    assert load_dataset("cifar10_folder", tmp_path).num_classes == 3


# --- case 5: divergence as a user sees it --------------------------------------------------------------


def test_a_huge_learning_rate_is_recorded_as_divergence_with_its_reason(tmp_path, capsys):
    assert cli(["train", "--epochs", "3", "--lr", "1e9", "--runs-dir", str(tmp_path / "runs"), *TINY]) == 0
    printed = capsys.readouterr().out
    run_dir = RunConfig(runs_dir=str(tmp_path / "runs"), **TINY_CONFIG).run_dir
    summary = runs.read_json(run_dir / runs.SUMMARY)
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 1
    loss = summary["train_loss"]
    assert not (math.isfinite(loss) and loss <= 10 * math.log(10))  # ten times a uniform guess's loss
    assert "diverged" in printed and "ln(10)" in summary["diverged_reason"] and summary["diverged_reason"] in printed


def test_an_ordinary_run_is_not_called_diverged(tmp_path):
    summary = train(RunConfig(epochs=2, runs_dir=str(tmp_path / "runs"), **TINY_CONFIG), progress=False)
    assert summary["status"] == "finished" and "diverged_reason" not in summary


# --- case 8: two trainers on one run directory ---------------------------------------------------------


def test_a_second_identical_train_command_is_refused_while_the_first_runs(tmp_path):
    command = ["train", "--epochs", "2000", "--runs-dir", "runs", *TINY]  # busy until killed (an hour or more)
    first = sharpness_command(*command, cwd=tmp_path, background=True)
    try:
        metrics = RunConfig(runs_dir=str(tmp_path / "runs"), **TINY_CONFIG).run_dir / runs.METRICS
        deadline = time.monotonic() + 1200  # a bound for a hang, not an expectation: a loaded machine is slow
        while not metrics.is_file():  # the first is training
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.stdout else ""
            time.sleep(0.2)
        second = sharpness_command(*command, cwd=tmp_path)
        assert second.returncode != 0 and "another process" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first was not disturbed
    finally:
        first.kill()
        first.wait()
    resumed = sharpness_command(*command[:2], "2", *command[3:], cwd=tmp_path)  # the lock dies with its holder
    assert resumed.returncode != 0 and "other settings" in resumed.stderr  # epochs differ: refused, not locked
    again = sharpness_command(*command, "--stop-after-epochs", "1", cwd=tmp_path)
    assert again.returncode == 0 and "status=interrupted" in again.stdout, again.stderr


def test_a_truncated_jpeg_is_named(tmp_path):
    from PIL import Image

    from sharpness.training.data import load_dataset

    digits = load_dataset("digits")
    for split in ("train", "test"):
        for c in range(2):
            folder = tmp_path / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(digits.train_images[4 * c + i].permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg")
    broken = tmp_path / "train" / "class1" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"cannot decode the image {broken} .*replace it"):
        load_dataset("cifar10_folder", tmp_path)


# --- case 6: the sweep checks options first and never hides a failure ------------------------------------


def test_failure_reason_skips_the_blank_lines_a_traceback_may_end_with():
    from sharpness.studies.sweep import SweepReport

    report = SweepReport(total=1, failed={"runs/a": "Traceback (most recent call last):\n  ...\nValueError: boom\n\n  \n"})
    assert "FAILED runs/a: ValueError: boom" in str(report)


def test_sweep_checks_options_before_training_and_fails_while_any_run_has_failed(tmp_path, capsys):
    sweep = ["sweep", "--controls", "baseline", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
             "--backend", "serial", "--no-papermill", "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        cli([*sweep, "--measures", "test_accuracy", "bogus"])
    assert exit_info.value.code == 2 and "unknown measures ['bogus']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing trained

    failing = [*sweep, "--measures", "test_accuracy", "--datasets", "cifar10_folder", "--data-dir", str(tmp_path / "no-data")]
    assert cli(failing) == 1
    assert "no-data" in capsys.readouterr().out.split("FAILED", 1)[1]  # the reason, not an empty string
    assert cli(failing) == 1  # still failed (not retried): the exit status says so
    printed = capsys.readouterr().out
    assert "1 failed earlier" in printed and "no-data" in printed.split("FAILED EARLIER", 1)[1]


# --- case 7: evaluating runs that cannot be evaluated --------------------------------------------------


def test_evaluating_only_unfinished_runs_says_which_and_why_and_fails(tmp_path, capsys):
    import papermill

    from sharpness.core.paths import REPO_ROOT
    from sharpness.measuring import evaluate

    runs_dir = tmp_path / "runs"
    unfinished = RunConfig(epochs=2, runs_dir=str(runs_dir), **TINY_CONFIG)
    assert train(unfinished, progress=False, stop_after_epochs=1)["status"] == "interrupted"
    with pytest.raises(ValueError, match="nothing to evaluate") as error:
        evaluate.evaluate_runs(runs_dir, device="cpu", measures=("test_accuracy",))
    assert f"{unfinished.run_dir}: not finished training" in str(error.value)
    with pytest.raises(papermill.PapermillExecutionError, match="nothing to evaluate"):  # the notebook fails too
        papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "evaluate.ipynb"), str(tmp_path / "out.ipynb"),
                                   kernel_name="python3", progress_bar=False,
                                   parameters=dict(run_dirs=str(runs_dir), device="cpu", measures="test_accuracy"))

    finished = RunConfig(control="wd", epochs=1, runs_dir=str(runs_dir), **TINY_CONFIG)
    train(finished, progress=False)
    capsys.readouterr()
    results = evaluate.evaluate_runs(runs_dir, device="cpu", measures=("test_accuracy",))
    assert [result["run_dir"] for result in results] == [str(finished.run_dir)]
    assert f"skipping {unfinished.run_dir}: not finished training" in capsys.readouterr().out


# --- errors that name the file and the fix ------------------------------------------------------------


def test_damaged_checkpoint_config_and_summary_are_named_with_the_fix(tmp_path, capsys):
    from sharpness.training.train import load_run

    two_epochs = ["train", "--epochs", "2", "--runs-dir", str(tmp_path / "runs"), *TINY]
    run_dir = RunConfig(runs_dir=str(tmp_path / "runs"), **TINY_CONFIG).run_dir
    assert cli([*two_epochs, "--stop-after-epochs", "1"]) == 0
    checkpoint, config = run_dir / runs.CHECKPOINT, run_dir / runs.CONFIG
    good_checkpoint, good_config = checkpoint.read_bytes(), config.read_text()

    def refused(fix: str, path: Path):
        with pytest.raises(SystemExit) as exit_info:
            cli(two_epochs)
        message = capsys.readouterr().err
        assert exit_info.value.code == 2 and str(path) in message and fix in message and "Traceback" not in message

    for damage in (b"", good_checkpoint[: len(good_checkpoint) // 2]):  # empty, truncated
        checkpoint.write_bytes(damage)
        refused("delete it to train the run from the start", checkpoint)
        with pytest.raises(runs.RunFileError, match=f"{checkpoint} is damaged.*train the run again"):
            load_run(run_dir)  # what evaluate does
    checkpoint.write_bytes(good_checkpoint)
    for damage in ("{garbage", "[1, 2]", '{"control": "baseline", "seed": "zero"}'):  # not JSON, not an object, wrong type
        config.write_text(damage)
        refused(f"delete the run directory {run_dir}", config)
    config.write_text(good_config)
    assert cli(two_epochs) == 0 and "status=finished" in capsys.readouterr().out
    (run_dir / runs.SUMMARY).write_text('{"status": "finis')
    refused("delete it, and the next train command writes it again", run_dir / runs.SUMMARY)


def test_a_full_disk_is_named_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "summary.json"
    runs.atomic_write_json(path, {"old": 1})

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs.os, "fsync", no_space)
    with pytest.raises(runs.RunFileError, match=f"cannot write {path}: No space left on device; .*free space"):
        runs.atomic_write_json(path, {"new": 2})
    assert runs.read_json(path) == {"old": 1} and list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_an_unwritable_run_directory_is_noticed_before_an_epoch_is_spent(tmp_path, monkeypatch):
    """As root (CI) a read-only folder stays writable, so the refusal mkstemp would raise is injected."""
    import sharpness.training.train as train_module

    config = RunConfig(epochs=1, runs_dir=str(tmp_path / "runs"), **TINY_CONFIG)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runs.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(train_module._Trainer, "train_epoch", lambda *args: pytest.fail("an epoch was spent"))
    with pytest.raises(runs.RunFileError, match=f"cannot write {config.run_dir / runs.CONFIG}: Permission denied; make"):
        train(config, progress=False)


def test_leftover_temporary_files_of_a_kill_are_removed(tmp_path):
    config = RunConfig(epochs=2, runs_dir=str(tmp_path / "runs"), **TINY_CONFIG)
    train(config, progress=False, stop_after_epochs=1)
    leftover = config.run_dir / ".checkpoint.pt.k1ll3d_x.tmp"  # as a kill inside atomic_save leaves it
    leftover.write_bytes(b"half a checkpoint")
    train(config, progress=False)
    assert not leftover.exists()


# --- naming runs by any folder (issue 24) -------------------------------------------------------------


def test_find_runs_takes_a_run_or_any_folder_above_runs(tmp_path):
    made = [tmp_path / "runs" / "digits" / "simple_cnn" / control / f"seed{seed}"
            for control, seed in (("aug", 0), ("aug", 1), ("wd", 0))]
    made.append(tmp_path / "runs" / "rho0.1" / "digits" / "simple_cnn" / "baseline_sam" / "seed0")  # deeper
    for run_dir in made:
        run_dir.mkdir(parents=True)
        (run_dir / runs.CONFIG).write_text("{}")
    (made[0] / runs.SUMMARY).write_text("{}")
    (tmp_path / "runs" / "digits" / "notes").mkdir()  # a folder that is no run
    (tmp_path / "runs" / "digits" / "notes" / runs.CONFIG).write_text("{}")
    assert runs.find_runs(tmp_path / "runs", finished_only=False) == sorted(made)
    assert runs.find_runs(tmp_path / "runs" / "digits", finished_only=False) == made[:3]
    assert runs.find_runs(tmp_path / "runs" / "digits" / "simple_cnn" / "aug", finished_only=False) == made[:2]
    assert runs.find_runs(made[1], finished_only=False) == [made[1]]
    assert runs.find_runs(tmp_path / "runs" / "digits") == [made[0]]  # finished only: the one with a summary
    assert runs.find_runs(tmp_path / "elsewhere") == []


def test_a_finished_run_prints_a_line_per_epoch_where_no_bar_reaches_a_terminal_and_drops_its_lock(tmp_path, capsys):
    config = RunConfig(epochs=2, runs_dir=str(tmp_path / "runs"), **TINY_CONFIG)
    train(config, progress=True)  # pytest's captured stderr is no terminal, as papermill's --log-output
    lines = [line for line in capsys.readouterr().out.splitlines() if "baseline seed0: epoch" in line]
    assert [line.split(",")[0] for line in lines] == ["baseline seed0: epoch 1/2", "baseline seed0: epoch 2/2"]
    assert not (config.run_dir / runs.LOCK).exists() and runs.is_finished(config.run_dir)
    train(config, progress=False)  # finished: skipped, and still no lock
    assert not (config.run_dir / runs.LOCK).exists()
