"""The commit recorded in every result's provenance."""

import re
import subprocess

import sharpness.provenance as provenance
from sharpness.paths import REPO_ROOT


def test_commit_is_the_repositorys_head_and_marks_changed_files():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert provenance.git_commit() == head
    changed = subprocess.run(["git", "status", "--porcelain", "--", "README.md"], cwd=REPO_ROOT,
                             capture_output=True, text=True).stdout.strip()
    assert provenance.git_commit(REPO_ROOT / "README.md") == head + ("+dirty" if changed else "")


def test_commit_is_unknown_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    assert provenance.git_commit() == "unknown"
