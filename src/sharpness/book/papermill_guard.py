"""Keep `papermill notebooks/train.ipynb ...` useful and harmless in all of papermill 2.7's modes.

What papermill 2.7 does with `papermill notebooks/train.ipynb -p control aug_sam` (no output path),
measured on this project (tests/test_train_notebook.py):
- stdout a terminal, stdin not a pipe: refuses ("Missing argument 'OUTPUT_PATH'"); nothing runs.
- stdout redirected or piped, stdin not a pipe: runs; the executed notebook goes to stdout.
- stdin a pipe: reads the notebook to run *from stdin*. An empty pipe fails (NotJSONError) before
  anything runs; a pipe carrying the notebook (`cat nb | papermill nb ...`) runs it and writes the
  executed notebook OVER the source file (from before the first cell runs until the end).

The notebook writes its own run directory in every mode that runs. `keep_executed_notebook`, called
in the first cell after the parameters (before anything that can fail, parameter checks included),
adds the rest: when papermill writes the executed notebook to a file, a small detached process waits
for papermill to exit, whether it succeeded, failed or was killed, copies that file into the run
directory as train.ipynb and, if the file was the source notebook itself, restores the source (papermill's
first write with the injected cell and run metadata stripped: byte for byte the committed notebook).
The run directory's names come from notebook parameters, so they are checked (closed vocabularies) before
anything is written: with a bad one nothing is copied (the next cell then names the bad value). A call that
failed (or was killed) never replaces the train.ipynb already in the run directory, e.g. a finished run's.
Only the kernel can learn papermill's paths (from /proc) and only a process outliving papermill can
restore after its last write, hence the watcher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat

EXECUTED_NAME = "train.ipynb"


def _papermill_parent() -> tuple[int, list[str], Path] | None:
    """(pid, argv, cwd) of the papermill process running this kernel, or None (Linux /proc only)."""
    pid = os.getppid()
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    if not any(Path(arg).name == "papermill" or arg == "papermill" for arg in argv[:3]):
        return None
    return pid, argv, cwd


def _papermill_output(argv: list[str], cwd: Path) -> tuple[Path, bool] | None:
    """The notebook file papermill is writing, and whether that file is also its input (the source)."""
    for arg in argv:
        if not arg.endswith(".ipynb"):
            continue
        path = (cwd / arg).resolve()
        try:
            meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        except (OSError, ValueError):
            continue
        output = meta.get("output_path")
        if output and (cwd / output).resolve() == path:
            return path, meta.get("input_path") in ("-", output)
    return None


def checked_run_dir(runs_dir, dataset, arch, control, seed) -> Path | None:
    """The run directory the notebook's parameters name, or None where one of them is not an accepted value
    (so that nothing is written for it; the training cell then refuses the value by name)."""
    from ..core.runs import run_dir
    from ..training.controls import CONTROLS
    from ..training.data import DATASETS
    from ..training.models import ARCHS

    if dataset not in DATASETS or arch not in ARCHS or control not in CONTROLS or isinstance(seed, bool) or not isinstance(seed, int):
        return None
    return run_dir(runs_dir, dataset, arch, control, seed)


def keep_executed_notebook(runs_dir, dataset, arch, control, seed) -> str:
    """Call from the notebook's first cell after the parameters, before anything can fail: arrange for
    the executed notebook to land in the run directory (if the run creates it) and protect the source.

    The source restore is computed now, from papermill's first write (complete before any cell runs),
    and handed to the watcher, so a papermill killed halfway through a later write cannot spoil it.
    Returns a one-line description of what papermill is doing, for the notebook to print.
    """
    run_dir = checked_run_dir(runs_dir, dataset, arch, control, seed)
    parent = _papermill_parent()
    if parent is None:
        return "not run by the papermill command: nothing to copy"
    pid, argv, cwd = parent
    found = _papermill_output(argv, cwd)
    if found is None:
        return "papermill writes the executed notebook to stdout; the run directory holds everything else"
    output, overwrites_source = found
    source = _as_committed(output.read_text()) if overwrites_source else ""
    command = [sys.executable, "-m", "sharpness.book.papermill_guard", str(pid), str(output), str(Path(run_dir).resolve()) if run_dir else ""]
    watcher = subprocess.Popen(command, start_new_session=True, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=cwd)
    with watcher.stdin:  # the watcher reads the source to restore ("" for none), then waits for papermill
        watcher.stdin.write(source.encode())
    kept = f"kept in {run_dir}" if run_dir else "not kept (a parameter names no accepted value)"
    if overwrites_source:
        return f"papermill is writing over the source {output}: it will be restored, and the executed copy {kept}"
    return f"the executed notebook {output} will be {kept.replace('kept in', 'copied into')}"


def _as_committed(executed: str) -> str:
    """The text of the source notebook an executed (or merely parameterised) copy came from."""
    source = nbformat.writes(strip_execution(nbformat.reads(executed, as_version=4)))
    return source if source.endswith("\n") else source + "\n"  # as nbformat.write


def strip_execution(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as it was before papermill ran it: no injected cell, outputs or run metadata."""
    notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))  # deep copy
    notebook.cells = [c for c in notebook.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in notebook.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:  # papermill adds empty tag lists
            del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for key in ("papermill", "widgets", "language_info"):
        notebook.metadata.pop(key, None)
    return notebook


def succeeded(executed: str) -> bool:
    """Whether an executed notebook ran to its end without an error (papermill records both)."""
    try:
        notebook = json.loads(executed)
    except ValueError:
        return False
    meta = notebook.get("metadata", {}).get("papermill", {})
    errors = any(output.get("output_type") == "error" for cell in notebook.get("cells", []) for output in cell.get("outputs", []))
    return bool(meta.get("end_time")) and not meta.get("exception") and not errors


def _wait_then_keep(pid: int, output: Path, run_dir: Path | None, source: str, timeout_s: float = 7 * 24 * 3600) -> None:
    """After papermill `pid` exits: copy its output into `run_dir` (if the run made one, and unless a failed
    call would replace a train.ipynb there), restore `source`."""
    from ..core.runs import atomic_write_text

    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    executed = output.read_text() if output.is_file() else None
    if source:
        atomic_write_text(output, source)
    if executed is None or run_dir is None or not run_dir.is_dir() or output.parent.resolve() == run_dir.resolve():
        return
    if succeeded(executed) or not (run_dir / EXECUTED_NAME).is_file():
        atomic_write_text(run_dir / EXECUTED_NAME, executed)


if __name__ == "__main__":
    _wait_then_keep(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if sys.argv[3] else None, sys.stdin.read())
