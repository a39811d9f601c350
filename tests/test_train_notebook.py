"""notebooks/train.ipynb under papermill: each papermill mode trains a run and leaves the source intact.

Each mode runs once, with a different control (SAM, augmentation, weight decay all appear): the controls
themselves are tested without papermill (tests/test_train.py) and the notebook's declared parameters below,
so running a mode once per control only repeated the same papermill path (issue 25).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow
SOURCE = Path(__file__).resolve().parents[1] / "notebooks" / "train.ipynb"
QUICK = ["-p", "epochs", "1", "-p", "max_train_samples", "64", "-p", "max_test_samples", "32",
         "-p", "batch_size", "32", "-p", "device", "cpu", "-p", "threads", "1", "-p", "runs_dir", "runs"]
# The recommended form (an output notebook), and the two bare forms papermill 2.7 accepts, each with a control.
MODES = {"output": "wd_sam", "stdout": "aug", "stdin_pipe": "aug_sam"}


def wait_for(condition, seconds=60.0):
    """The guard's watcher finishes just after papermill exits."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("mode", MODES)
def test_notebook_trains_in_every_papermill_mode_and_leaves_the_source_alone(tmp_path, mode):
    notebook = tmp_path / "train.ipynb"
    shutil.copy(SOURCE, notebook)
    original = notebook.read_bytes()
    control = MODES[mode]
    command = [sys.executable, "-m", "papermill", "train.ipynb"]
    stdin = subprocess.DEVNULL
    if mode == "output":
        command.append("executed.ipynb")
    elif mode == "stdin_pipe":
        stdin = None  # a pipe carrying the notebook: papermill reads it and writes over train.ipynb
    command += ["-p", "control", control, *QUICK]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=600,
                            **({"input": original} if stdin is None else {"stdin": stdin}))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    run_dir = tmp_path / "runs" / "digits" / "simple_cnn" / control / "seed0"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_completed"] == 1
    assert summary["config"]["control"] == control

    if mode == "stdout":  # the executed notebook went to stdout
        executed = nbformat.reads(result.stdout.decode(), as_version=4)
    else:  # it was written to a file, and the guard copies it into the run directory
        assert wait_for(lambda: (run_dir / "train.ipynb").is_file())
        executed = nbformat.read(run_dir / "train.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)  # the learning curves
    assert wait_for(lambda: notebook.read_bytes() == original, seconds=60), "source notebook left modified"


def test_bare_papermill_with_an_empty_stdin_pipe_runs_nothing_and_harms_nothing(tmp_path):
    """papermill 2.7 then reads the notebook from stdin and fails: documented in sharpness.book.papermill_guard."""
    notebook = tmp_path / "train.ipynb"
    shutil.copy(SOURCE, notebook)
    result = subprocess.run([sys.executable, "-m", "papermill", "train.ipynb", "-p", "control", "aug_sam", *QUICK],
                            cwd=tmp_path, input=b"", capture_output=True, timeout=300)
    assert result.returncode != 0 and b"NotJSONError" in result.stderr
    assert notebook.read_bytes() == SOURCE.read_bytes() and not (tmp_path / "runs").exists()


def test_strip_execution_restores_the_committed_notebook_exactly(tmp_path):
    """The restore rule on its own: execute-like changes (injected cell, outputs, metadata) are undone."""
    from sharpness.book.papermill_guard import strip_execution

    notebook = nbformat.read(SOURCE, as_version=4)
    injected = nbformat.v4.new_code_cell('control = "wd"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(2, injected)
    notebook.metadata["papermill"] = {"input_path": "-", "output_path": "train.ipynb"}
    notebook.metadata["language_info"] = {"name": "python"}
    for cell in notebook.cells:
        cell.metadata.setdefault("tags", [])
        cell.metadata["papermill"] = {"status": "completed"}
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
            cell.execution_count = 3
    path = tmp_path / "restored.ipynb"
    nbformat.write(strip_execution(notebook), path)
    assert path.read_bytes() == SOURCE.read_bytes()


def test_notebook_declares_every_run_setting():
    """A sweep passes RunConfig fields as papermill parameters: none may be silently dropped."""
    import dataclasses

    import papermill

    from sharpness.training.train import RunConfig

    declared = set(papermill.inspect_notebook(str(SOURCE)))
    assert {f.name for f in dataclasses.fields(RunConfig)} <= declared


def test_piped_source_with_a_rejected_parameter_is_restored_byte_for_byte(tmp_path):
    """The issue's case: papermill writes over the source, then the parameters are rejected (the run fails)."""
    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "train.ipynb"
    shutil.copy(SOURCE, notebook)
    result = subprocess.run("cat notebooks/train.ipynb | papermill notebooks/train.ipynb -p control bogus > /dev/null",
                            shell=True, cwd=tmp_path, capture_output=True, timeout=300,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert result.returncode != 0 and b"unknown control 'bogus'" in result.stderr
    assert wait_for(lambda: notebook.read_bytes() == SOURCE.read_bytes(), seconds=60), "source notebook left modified"
    assert not (tmp_path / "runs").exists()
