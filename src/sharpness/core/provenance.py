"""The code version a result was made with, for the provenance stored beside every result."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from .paths import REPO_ROOT


def git_commit(dirty_if_changed: Path | None = None) -> str:
    """HEAD of the repository, with "+dirty" when `dirty_if_changed` differs from it; "unknown" outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=REPO_ROOT).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if dirty_if_changed is not None and git("status", "--porcelain", "--", str(dirty_if_changed)):
            commit += "+dirty"
        return commit
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def last_change(path: Path) -> str | None:
    """The newest commit that changed `path` (a file or folder of the repository); None outside git."""
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", str(path)], capture_output=True, text=True,
                                check=True, cwd=REPO_ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit or None


def contains(commit: str, older: str) -> bool:
    """Whether `commit` is `older` or descends from it (False where either is unknown to this repository)."""
    try:
        return subprocess.run(["git", "merge-base", "--is-ancestor", older, commit], capture_output=True,
                              cwd=REPO_ROOT).returncode == 0
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The commit a run or measurement was made with, and whether the library differed from it (dirty).

    Read once per process, at its first call (the study's workers call it as they start): commits made while
    a long study runs must not be credited to runs whose code was loaded before them.
    """
    commit = git_commit(dirty_if_changed=REPO_ROOT / "src")
    return {"commit": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty")}
