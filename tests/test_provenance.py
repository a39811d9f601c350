"""The commit recorded in every result's provenance, checked on a repository made here (so the expected
commit and the changed file are known by construction, not recomputed with the code's own commands)."""

import re
import subprocess

import sharpness.core.provenance as provenance


def make_repository(folder):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                              capture_output=True, text=True).stdout

    git("init", "-q")
    (folder / "kept.txt").write_text("a\n")
    (folder / "edited.txt").write_text("b\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    first = (folder / ".git" / "refs" / "heads").rglob("*").__next__().read_text().strip()  # what HEAD names
    return first


def test_commit_is_head_and_marks_only_a_changed_file(tmp_path, monkeypatch):
    commit = make_repository(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    assert provenance.git_commit() == commit
    (tmp_path / "edited.txt").write_text("changed\n")
    assert provenance.git_commit(tmp_path / "edited.txt") == commit + "+dirty"
    assert provenance.git_commit(tmp_path / "kept.txt") == commit


def test_commit_is_unknown_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    assert provenance.git_commit() == "unknown"
