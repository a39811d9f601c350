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


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The commit a run or measurement was made with, and whether the library differed from it (dirty).

    Read once per process, at its first call (the study's workers call it as they start): commits made while
    a long study runs must not be credited to runs whose code was loaded before them.
    """
    commit = git_commit(dirty_if_changed=REPO_ROOT / "src")
    return {"commit": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty")}
