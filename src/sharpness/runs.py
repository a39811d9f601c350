"""Run directories on disk: atomic writes and reading back what a run left behind.

A run directory (runs/<dataset>/<arch>/<control>/seed<k>/) holds `config.json`, `metrics.jsonl`
(one line per epoch), `checkpoint.pt` and, written last, `summary.json`. Every file is written to a
temporary name and moved into place with os.replace, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"


def run_dir(runs_dir: str | os.PathLike, dataset: str, arch: str, control: str, seed: int) -> Path:
    """Where a run lives: runs_dir/<dataset>/<arch>/<control>/seed<k>."""
    return Path(runs_dir) / dataset / arch / control / f"seed{seed}"


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` so that `path` holds either the old or the new content, never a mix."""
    return _atomic(path, lambda f: f.write(text), "w")


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def atomic_save(value: Any, path: str | os.PathLike) -> Path:
    """torch.save, atomically."""
    import torch  # here, so that the papermill guard's watcher process starts without torch

    return _atomic(path, lambda f: torch.save(value, f), "wb")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_finished(run_dir: str | os.PathLike) -> bool:
    """A run is finished (trained to the end or diverged) exactly when its summary.json exists."""
    return (Path(run_dir) / SUMMARY).is_file()


def find_runs(runs_dir: str | os.PathLike, finished_only: bool = True) -> list[Path]:
    """Every run directory below `runs_dir` (those with a config.json), sorted."""
    found = sorted(p.parent for p in Path(runs_dir).glob(f"*/*/*/seed*/{CONFIG}"))
    return [p for p in found if is_finished(p)] if finished_only else found
