"""Run directories on disk: atomic writes and reading back what a run left behind.

A run directory (runs/<dataset>/<arch>/<control>/seed<k>/) holds `config.json`, `metrics.jsonl`
(one line per epoch), `checkpoint.pt` and, written last, `summary.json`. Every file is written to a
temporary name and moved into place with os.replace, so a reader (or a crash) never sees half a file;
temporary files a kill leaves behind are removed by the next run (`remove_leftovers`). A file that
cannot be read or written raises `RunFileError`, whose message names the file and the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"
LOCK = ".lock"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: files are created with the permissions the user's umask gives, as open() would


class RunFileError(Exception):
    """A run file that cannot be read or written; the message names the file and what to do."""


class RunBusyError(RunFileError):
    """Another process holds the lock of a run directory."""


def run_dir(runs_dir: str | os.PathLike, dataset: str, arch: str, control: str, seed: int) -> Path:
    """Where a run lives: runs_dir/<dataset>/<arch>/<control>/seed<k>. The names become folders, so each must
    be one plain path component (`untrusted.name`) and the seed an integer: nothing lands outside runs_dir."""
    from .untrusted import name

    where = "the run's settings"
    parts = [name(value, what, where) for value, what in ((dataset, "dataset"), (arch, "arch"), (control, "control"))]
    if isinstance(seed, bool) or not isinstance(seed, int) and not hasattr(seed, "__index__"):
        raise ValueError(f"{where}: seed {seed!r} is not an integer; give a whole number such as 0")
    return Path(runs_dir).joinpath(*parts, f"seed{int(seed)}")


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new hidden temporary file in `path`'s folder (made where missing): (handle, name); a RunFileError
    names `path` and the fix where it cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _unwritable(path, error) from error


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    handle, temporary = _temporary_beside(path)
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp makes 0600
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _unwritable(path, error) from error
        raise
    return path


def _unwritable(path: Path, error: OSError) -> RunFileError:
    return RunFileError(f"cannot write {path}: {error.strerror or error}; make {path.parent} writable and free space "
                        "on its disk (or choose another folder, e.g. --runs-dir), then run the command again")


def check_writable(path: str | os.PathLike) -> Path:
    """Prove that a file can be written at `path` (its folder made where missing) before work is spent that would
    end by writing it: a RunFileError names the file and the fix. Nothing is left behind."""
    path = Path(path)
    handle, temporary = _temporary_beside(path)
    os.close(handle)
    os.unlink(temporary)
    return path


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a kill in the middle of an atomic write left in `folder`."""
    leftovers = list(Path(folder).glob(".*.tmp"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


@contextlib.contextmanager
def locked(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` for the block (the OS drops it when the holder dies, even
    by kill -9). wait=False: raise RunBusyError at once when another process holds it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        raise _unwritable(path, error) from error
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunBusyError(f"another process (pid {holder}) is working in {path.parent} (it holds {path}): "
                               "wait for it to finish, or stop it, then run this command again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` so that `path` holds either the old or the new content, never a mix."""
    return _atomic(path, lambda f: f.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> Path:
    return _atomic(path, lambda f: f.write(content), "wb")


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def atomic_save(value: Any, path: str | os.PathLike) -> Path:
    """torch.save, atomically. torch reports a failed write (a full disk) as a RuntimeError from its C++ writer
    (inline_container.cc): it is raised as the OSError it is, so the error names the file and the fix."""
    import errno

    import torch  # here, so that the papermill guard's watcher process starts without torch

    def save(file) -> None:
        try:
            torch.save(value, file)
        except RuntimeError as error:
            text = str(error)
            if not any(mark in text for mark in ("inline_container", "PytorchStreamWriter", "write")):
                raise
            raise OSError(errno.EIO, f"torch could not write it, is the disk full? ({text.strip().splitlines()[0][:120]})") from error

    return _atomic(path, save, "wb")


def read_json(path: str | os.PathLike, fix: str = "restore it or delete it (a run rewrites what it needs)") -> dict:
    """A JSON object from `path`; a missing, unreadable or damaged file raises RunFileError ending in `fix`."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunFileError(f"cannot read {path} ({error}): {fix}") from error
    if not isinstance(value, dict):
        raise RunFileError(f"{path} holds a JSON {type(value).__name__}, not an object: {fix}")
    return value


def load_checkpoint(path: str | os.PathLike, fix: str, map_location: Any = "cpu") -> dict:
    """torch.load of a run's checkpoint; an empty, truncated or foreign file raises RunFileError ending in `fix`."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises EOFError, RuntimeError, UnpicklingError... for a damaged file
        raise RunFileError(f"{path} is damaged ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}): "
                           f"{fix}") from error
    if not isinstance(state, dict) or not {"model", "epochs_done", "history"} <= state.keys():
        raise RunFileError(f"{path} is not a checkpoint written by sharpness.training.train: {fix}")
    return state


def restore(load: Callable[[], Any], path: str | os.PathLike, network: str, fix: str) -> Any:
    """`load()` (model.load_state_dict of a checkpoint's weights, and the optimizer's); weights of another network
    than `network` (another arch, another number of classes) raise RunFileError naming `path` and ending in `fix`."""
    try:
        return load()
    except (RuntimeError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()
        raise RunFileError(f"{path} holds the weights of another network than {network} "
                           f"({type(error).__name__}: {first[0].strip() if first else ''}...): {fix}") from error


def epoch_wall_seconds(row: dict) -> float:
    """Wall seconds of one epoch row of METRICS (its steps, test curve and checkpoint); rows written before the
    wall time was recorded count their training seconds."""
    return row["epoch_wall_seconds"] if "epoch_wall_seconds" in row else row["train_seconds"]


def spent_seconds(run_dir: str | os.PathLike) -> tuple[float, float]:
    """What a run cost, from its own files: training (the wall seconds of its epochs, METRICS) and its end-of-run
    evaluation (the sum of its measures' seconds, metrics.json)."""
    training = sum(map(epoch_wall_seconds, read_jsonl(Path(run_dir) / METRICS)))
    return training, sum(measure_seconds(run_dir).values())


def measure_seconds(run_dir: str | os.PathLike) -> dict[str, float]:
    """The seconds each end-of-run measure took (metrics.json), none before the run is measured."""
    path = Path(run_dir) / "metrics.json"
    return {name: float(seconds) for name, seconds in (read_json(path).get("seconds", {}) if path.is_file() else {}).items()}


def epoch_costs(run_dir: str | os.PathLike) -> tuple[list[float], list[float], list[float]]:
    """Seconds of a run's epochs from its own rows, leaving out those that also measure the minimum criterion's loss:
    (the test pass of each row with a test point: its wall time beyond its steps; the same beyond the steps of each
    row without one; the steps of every row)."""
    tested, untested, steps = [], [], []
    for row in read_jsonl(Path(run_dir) / METRICS):
        if "measured_loss" in row or "train_seconds" not in row or "epoch_wall_seconds" not in row:
            continue
        steps.append(row["train_seconds"])
        (tested if "test_accuracy" in row else untested).append(row["epoch_wall_seconds"] - row["train_seconds"])
    return tested, untested, steps


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def is_finished(run_dir: str | os.PathLike) -> bool:
    """A run is finished (trained to the end or diverged) exactly when its summary.json exists."""
    return (Path(run_dir) / SUMMARY).is_file()


def find_runs(folder: str | os.PathLike, finished_only: bool = True) -> list[Path]:
    """Every run directory (a seed<k> folder holding a config.json) at or below `folder`, sorted.

    `folder` may be a run directory itself or any folder above runs, at any depth (runs, runs/digits,
    runs/digits/simple_cnn/aug), so a reader can name whichever level of the tree they mean.
    """
    folder = Path(folder)
    found = [folder] if folder.name.startswith("seed") and (folder / CONFIG).is_file() else []
    found = sorted({*found, *(p.parent for p in folder.rglob(f"seed*/{CONFIG}"))})
    return [p for p in found if is_finished(p)] if finished_only else found
