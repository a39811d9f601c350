"""Untrusted files stay data (issue 20): crafted archives, hostile grids and notebook parameters, duplicated
and truncated results. Every hostile file is built here by the test itself."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sharpness.core import untrusted
from sharpness.studies import campaign_import

DATE = "2026-01-31T12:00:00+00:00"
HOSTILE = '<img src=x onerror=alert(1)>'


def manifest(**provenance) -> bytes:
    return json.dumps({"provenance": {"tier": "cpu", "date": DATE, "host": "box", "commit": "abc", **provenance},
                       "settings": {}, "items": {}}).encode()


def grid_row(control="baseline", seed=0, **extra) -> dict:
    return {"dataset": "digits", "arch": "simple_cnn", "control": control, "seed": seed, "rho": None, "epochs": 2,
            "batch_size": 32, "lr": 0.1, "status": "finished", "test_accuracy": 0.5 + seed / 10, **extra}


def grid_document(rows) -> bytes:
    return json.dumps({"provenance": {"machine": "m", "commit": "c", "data": "d", "date": DATE, "settings": {}},
                       "runs": rows}).encode()


def craft(path: Path, files: dict[str, bytes], links: dict[str, str] = {}) -> Path:
    """A gzipped tar of `files` (member name -> content) and symbolic links (name -> target)."""
    with tarfile.open(path, "w:gz") as pack:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            pack.addfile(info, io.BytesIO(content))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            pack.addfile(info)
    return path


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


# --- case 1: names in the manifest and the archive that become paths -----------------------------------


@pytest.mark.parametrize("field, value", [("tier", "../../x"), ("tier", "tpu"), ("host", "../../.ipython/profile_default/ipython_config"),
                                          ("host", "a/b"), ("date", "../../../victim"), ("date", "2026-01-31")])
def test_a_manifest_value_that_would_leave_results_is_refused_and_nothing_is_written(tmp_path, field, value):
    archive = craft(tmp_path / "evil.tar.gz", {
        "campaign/manifest.json": manifest(**{field: value}),
        "campaign/toy/cpu_medium/records.csv": b"a,b\n1,2\n",
        "campaign/grid/digits_simple_cnn.json": grid_document([grid_row()]),
    })
    results_dir = tmp_path / "deep" / "er" / "results"
    results_dir.mkdir(parents=True)
    with pytest.raises(untrusted.UntrustedValueError, match=field) as error:
        campaign_import.import_archive(archive, results_dir)
    assert repr(value) in str(error.value) and "manifest.json" in str(error.value)
    assert files_under(tmp_path) == {"evil.tar.gz"}


@pytest.mark.parametrize("files, links", [
    ({"campaign/manifest.json": manifest(), "campaign/toy/cpu_..x/records.csv": b"x"}, {}),
    ({"campaign/manifest.json": manifest(), "campaign/landscapes/a b;rm/x.json": b"{}"}, {}),
    ({"campaign/manifest.json": manifest(), "other/ipython_config.py": b"print(1)"}, {}),
    ({"campaign/manifest.json": manifest()}, {"campaign/landscapes/link.json": "/etc/passwd"}),
])
def test_odd_member_names_and_links_are_refused_before_anything_is_unpacked(tmp_path, monkeypatch, files, links):
    unpacked = []
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda self, *a, **k: unpacked.append(a))
    archive = craft(tmp_path / "odd.tar.gz", files, links)
    with pytest.raises(ValueError, match="odd.tar.gz: member"):
        campaign_import.import_archive(archive, tmp_path / "results")
    assert unpacked == [] and not (tmp_path / "results").exists()


def test_every_write_is_checked_to_stay_inside_the_results_folder(tmp_path):
    with pytest.raises(untrusted.UntrustedValueError, match="outside"):
        untrusted.inside(tmp_path / "results", tmp_path / "results" / "toy_fit" / ".." / ".." / "x", "archive")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "landscapes").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(untrusted.UntrustedValueError, match="outside"):
        untrusted.inside(tmp_path / "results", tmp_path / "results" / "landscapes" / "x.json", "archive")
    assert untrusted.inside(tmp_path / "results", tmp_path / "results" / "a" / "b.json", "archive")


def test_a_genuine_archive_imports_with_its_hidden_leftovers_skipped(tmp_path):
    archive = craft(tmp_path / "good.tar.gz", {
        "campaign/manifest.json": manifest(host="gpu-box.example"),
        "campaign/grid/digits_simple_cnn.json": grid_document([grid_row(seed=0), grid_row(seed=1)]),
        "campaign/grid/.digits_simple_cnn.json.abc.tmp": b"half a file",
        "campaign/toy/cpu_medium/records.csv": b"a,b\n1,2\n",
    })
    results_dir = tmp_path / "results"
    campaign_import.import_archive(archive, results_dir)
    assert files_under(results_dir) == {"campaign/digits_simple_cnn.json", "toy_fit/cpu_medium/records.csv",
                                        "campaign/imports/2026-01-31T120000Z_gpu-box.example.json"}


# --- case 3: sizes are capped and the manifest checked before anything is unpacked --------------------------


@pytest.mark.parametrize("limit", ["MEMBER_LIMIT", "UNPACKED_LIMIT"])
def test_an_archive_that_would_unpack_too_much_is_refused_before_unpacking(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(campaign_import, limit, 2**20)  # the caps scaled down a thousandfold, so the test stays small
    unpacked = []
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda self, *a, **k: unpacked.append(a))
    zeros = bytes(700 * 2**10) if limit == "UNPACKED_LIMIT" else bytes(2**20 + 1)
    archive = craft(tmp_path / "bomb.tar.gz", {"campaign/manifest.json": manifest(),
                                               **{f"campaign/bench/{i}.json": zeros for i in range(2)}})
    assert archive.stat().st_size < 2**15  # small packed, large unpacked
    with pytest.raises(ValueError, match="MiB"):
        campaign_import.import_archive(archive, tmp_path / "results")
    assert unpacked == []


def test_a_hostile_manifest_is_refused_before_anything_is_unpacked(tmp_path, monkeypatch):
    unpacked = []
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda self, *a, **k: unpacked.append(a))
    archive = craft(tmp_path / "evil.tar.gz", {"campaign/bench/a.json": b"{}", "campaign/manifest.json": manifest(tier="../x")})
    with pytest.raises(untrusted.UntrustedValueError):
        campaign_import.import_archive(archive, tmp_path / "results")
    assert unpacked == []


def test_an_archive_over_what_a_device_returns_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign_import, "DEVICE_RETURN_LIMIT", 100)
    archive = craft(tmp_path / "big.tar.gz", {"campaign/manifest.json": manifest(), "campaign/bench/a.json": bytes(range(256)) * 4})
    with pytest.raises(ValueError, match="more than a device returns"):
        campaign_import.import_archive(archive, tmp_path / "results")


def test_a_pickled_prediction_file_is_refused_naming_it(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    archive = craft(tmp_path / "pickled.tar.gz", {"campaign/manifest.json": manifest(),
                                                  "campaign/predictions/p.npy": buffer.getvalue()})
    with pytest.raises(ValueError, match=r"p\.npy is not a plain array"):
        campaign_import.import_archive(archive, tmp_path / "results")


# --- case 5 (import): a run twice in one archive is imported once -------------------------------------------


def test_a_run_twice_in_an_archive_is_imported_once(tmp_path):
    archive = craft(tmp_path / "twice.tar.gz", {
        "campaign/manifest.json": manifest(),
        "campaign/grid/digits_simple_cnn.json": grid_document([grid_row(seed=0), grid_row(seed=0), grid_row(seed=1)]),
    })
    campaign_import.import_archive(archive, tmp_path / "results")
    rows = json.loads((tmp_path / "results" / "campaign" / "digits_simple_cnn.json").read_text())["runs"]
    assert sorted(row["seed"] for row in rows) == [0, 1]


# --- case 7: an import never replaces results of another source without --replace ---------------------------


def test_an_import_refuses_to_replace_committed_results_unless_told(tmp_path, capsys):
    from sharpness.__main__ import main as cli

    results_dir = tmp_path / "results"
    committed = {"toy_fit/cpu_medium/records.csv": b"committed toy\n", "landscapes/digits/simple_cnn/s.json": b'{"old": 1}'}
    for name, content in committed.items():
        (results_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (results_dir / name).write_bytes(content)
    archive = craft(tmp_path / "other.tar.gz", {
        "campaign/manifest.json": manifest(),
        "campaign/toy/cpu_medium/records.csv": b"archive toy\n",
        "campaign/landscapes/digits/simple_cnn/s.json": b'{"new": 1}',
        "campaign/grid/digits_simple_cnn.json": grid_document([grid_row()]),
    })
    with pytest.raises(SystemExit) as exit_info:
        cli(["campaign-import", str(archive), "--results-dir", str(results_dir)])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--replace" in message and "records.csv" in message and "s.json" in message
    assert files_under(results_dir) == set(committed)  # nothing written, not even the grid
    assert all((results_dir / name).read_bytes() == content for name, content in committed.items())
    assert cli(["campaign-import", str(archive), "--results-dir", str(results_dir), "--replace"]) == 0
    assert (results_dir / "toy_fit/cpu_medium/records.csv").read_bytes() == b"archive toy\n"
    # The same archive again is no conflict (same content), and adds no run.
    assert cli(["campaign-import", str(archive), "--results-dir", str(results_dir)]) == 0
    assert len(json.loads((results_dir / "campaign" / "digits_simple_cnn.json").read_text())["runs"]) == 1


# --- case 4: the train notebook's names and a failed call ----------------------------------------------------


def test_run_folders_are_made_of_plain_names_only(tmp_path):
    from sharpness.book.papermill_guard import checked_run_dir
    from sharpness.core import runs

    for control in ("../../x/victim", "a/b", "..", ".hidden", ""):
        with pytest.raises(ValueError, match="control"):
            runs.run_dir(tmp_path, "digits", "simple_cnn", control, 0)
        assert checked_run_dir(tmp_path, "digits", "simple_cnn", control, 0) is None
    for seed in ("0/../..", 0.5, True):
        with pytest.raises(ValueError, match="seed"):
            runs.run_dir(tmp_path, "digits", "simple_cnn", "baseline", seed)
    assert runs.run_dir(tmp_path, "digits", "simple_cnn", "baseline", np.int64(3)) == tmp_path / "digits/simple_cnn/baseline/seed3"
    assert checked_run_dir(tmp_path, "digits", "simple_cnn", "wd", 1) == tmp_path / "digits/simple_cnn/wd/seed1"


def executed_notebook(exception: bool) -> str:
    return json.dumps({"metadata": {"papermill": {"end_time": "now", "exception": exception}}, "nbformat": 4,
                       "nbformat_minor": 5, "cells": [{"cell_type": "code", "source": "", "metadata": {},
                                                       "outputs": [{"output_type": "error"}] if exception else []}]})


@pytest.mark.parametrize("exception", [True, False])
def test_a_failed_call_never_replaces_a_runs_kept_notebook(tmp_path, exception):
    import subprocess
    import sys

    from sharpness.book.papermill_guard import _wait_then_keep

    run_dir = tmp_path / "runs" / "digits" / "simple_cnn" / "baseline" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "train.ipynb").write_text("the finished run's notebook")
    output = tmp_path / "out.ipynb"
    output.write_text(executed_notebook(exception))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    _wait_then_keep(int(gone), output, run_dir, "", timeout_s=5)
    kept = (run_dir / "train.ipynb").read_text()
    assert kept == ("the finished run's notebook" if exception else output.read_text())


@pytest.mark.slow
def test_papermill_with_a_rejected_epoch_count_or_a_path_as_control_writes_nothing(tmp_path):
    """The issue's two calls, end to end: `-p epochs -3` over a finished run, `-p control ../../x/victim`."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    source = repo / "notebooks" / "train.ipynb"
    shutil.copy(source, tmp_path / "train.ipynb")
    quick = ["-p", "max_train_samples", "64", "-p", "max_test_samples", "32", "-p", "batch_size", "32",
             "-p", "device", "cpu", "-p", "threads", "1"]

    def papermill(*parameters):
        return subprocess.run([sys.executable, "-m", "papermill", "train.ipynb", "out.ipynb", *quick, *parameters],
                              cwd=tmp_path, capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")})

    run_dir = tmp_path / "runs" / "digits" / "simple_cnn" / "baseline" / "seed0"
    assert papermill("-p", "epochs", "1").returncode == 0
    deadline = time.monotonic() + 60
    while not (run_dir / "train.ipynb").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    finished = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert "train.ipynb" in finished and "summary.json" in finished

    victim = tmp_path / "x" / "victim" / "seed0"  # runs/digits/simple_cnn/../../../x/victim/seed0
    victim.mkdir(parents=True)
    assert papermill("-p", "epochs", "-3").returncode != 0
    assert papermill("-p", "control", "../../../x/victim").returncode != 0
    time.sleep(3)  # the guard's watcher acts just after papermill exits
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == finished
    assert list(victim.iterdir()) == []


# --- case 2: a hostile grid shows its text on every page and never runs it ---------------------------------


def hostile_grid(results_dir: Path, name: str = "digits_simple_cnn.json") -> Path:
    """A grid whose every free string (provenance, settings, arch, even a metric's name) is an HTML tag."""
    rng = np.random.default_rng(0)
    rows = []
    for control in ("baseline", "baseline_sam", "aug", "aug_sam", "wd", "wd_sam"):
        for seed in range(3):
            rows.append({"dataset": "digits", "arch": HOSTILE, "control": control, "seed": seed, "status": "finished",
                         "epochs": 2, "rho": 0.05 if control.endswith("sam") else None,
                         **{metric: float(rng.uniform(0.1, 0.9)) for metric in (
                             "test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement",
                             "generalisation_gap", "fisher_rao_norm", "sam_sharpness", "relative_flatness",
                             "hessian_trace", "clean.sam_sharpness", HOSTILE, "clean." + HOSTILE)}})
    provenance = {"machine": HOSTILE, "commit": HOSTILE, "data": HOSTILE, "date": HOSTILE, "tier": "cpu",
                  "settings": {"datasets": [HOSTILE], "archs": [HOSTILE], "command": HOSTILE}}
    path = results_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"provenance": provenance, "runs": rows}))
    history = [{**{key: row[key] for key in ("dataset", "arch", "control", "seed", "rho")}, "epoch": epoch,
                "train_loss": 1.0 / epoch, "train_accuracy": 0.5 + epoch / 5} for row in rows for epoch in (1, 2)]
    path.with_suffix(".history.csv").write_text(__import__("pandas").DataFrame(history).to_csv(index=False))
    return path


def rendered(output) -> str:
    """What a page shows for a cell's value: a Styler's HTML, or the Markdown text as it is."""
    return output.to_html() if hasattr(output, "to_html") else str(output)


def assert_no_tag(text: str, where: str):
    assert "<img" not in text and "onerror" not in text.replace("onerror=alert", "") and HOSTILE not in text, where
    assert "&lt;img src=x onerror=alert(1)&gt;" in text or "img" not in text, where


def test_a_hostile_grid_is_escaped_on_the_results_and_rho_pages(tmp_path):
    from sharpness.book import claims, prose, stats, tables
    from sharpness.book.figures import results as result_figures
    from sharpness.core.untrusted import styled
    from sharpness.studies import store, sweep
    from sharpness.training import minimum

    hostile_grid(tmp_path)
    hostile_grid(tmp_path, "digits_simple_cnn_rho.json")
    study = sweep.load_study("controls", results_dir=tmp_path)
    rho_study = sweep.load_study("rho", results_dir=tmp_path)
    paper = store.paper_results("arxiv")
    summary = stats.summarise(study.runs)
    check = stats.clean_data_check(study.runs)
    sam_runs = stats.sam_rho_runs(rho_study)
    metrics = [m for m in tables.RHO_METRICS if m in sam_runs.columns]
    tally = claims.tally(study.runs, study.history)
    shown = {
        "study_note": prose.study_note(study),
        "rho_note": prose.rho_note(rho_study),
        **{f"comparison table {i}": styled(table, caption) for i, (caption, table) in
           enumerate(tables.comparison_tables(study, paper, summary))},
        "ours_table": styled(tables.ours_table(summary, stats.EXTRA_SHARPNESS_METRICS), f"({study.label})"),
        "claim_test_table": result_figures.pvalue_table(tables.claim_test_table(tally.all_tests), f"({study.label})",
                                                         pvalue_columns=["p (t)", "p (Holm)", "p (Wilcoxon)"]),
        "claims_beside_paper": styled(tables.claims_beside_paper(tally, paper), "c"),
        "clean_data_table": styled(tables.clean_data_table(check), f"({study.label})"),
        "clean_data_sentence": prose.clean_data_sentence(check),
        "differences_from_paper": prose.differences_from_paper(tally, paper),
        "resolution_note": claims.resolution_note(tally.all_tests),
        "rho_findings": prose.rho_findings(sam_runs, minimum.check(sam_runs, rho_study.history), rho_study.history),
        "rho_table": styled(tables.rho_table(stats.summarise(sam_runs, metrics=metrics), metrics), f"({rho_study.label})"),
    }
    assert HOSTILE in study.label and HOSTILE in set(check["measure"])  # the hostile strings do reach the pages
    for where, output in shown.items():
        assert_no_tag(rendered(output), where)


def test_hostile_provenance_is_escaped_in_the_benchmark_landscape_and_toy_notes(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sharpness.book import prose
    from sharpness.book.figures import fit as fit_figures
    from sharpness.book.figures import landscape as landscape_figures

    bench = tmp_path / "bench_grid.json"
    bench.write_text(json.dumps({"provenance": {"machine": HOSTILE, "date": HOSTILE}, "best": {
        "runs_in_parallel": 4, "images_per_second": 1e4, "share_of_bf16_peak": 0.3, "projected_grid_minutes": 50}}))
    assert_no_tag(prose.grid_benchmark_note(bench), "grid_benchmark_note")

    surface = SimpleNamespace(provenance={"device": HOSTILE}, config={})
    item = SimpleNamespace(source="stored", surface=surface, control="baseline")
    monkeypatch.setattr(landscape_figures, "settings_label", lambda landscapes: HOSTILE)  # read from the same provenance
    assert_no_tag(landscape_figures.source_note([item]), "landscape source_note")

    config = SimpleNamespace(seeds=[0], epochs=10, train_points=5, test_points=5, lr=0.1)
    stored = SimpleNamespace(config=config, provenance={"machine": HOSTILE, "date": HOSTILE, "commit": HOSTILE, "seconds": 60})
    assert_no_tag(fit_figures.stored_run_note([stored]), "toy stored_run_note")


def test_the_pages_build_tables_through_the_escaping_helper():
    """pandas' Styler escapes nothing: every table a page shows must go through `untrusted.styled`."""
    import re

    book = Path(__file__).resolve().parents[1] / "book"
    offenders = [f"{page.relative_to(book)}:{number}" for page in sorted(book.rglob("*.md"))
                 for number, line in enumerate(page.read_text().splitlines(), start=1) if re.search(r"\.style\b", line)]
    assert offenders == []


# --- cases 5 and 6: one row per run, and a second sweep adds to the summary ---------------------------------

SWEEP = ["sweep", "--controls", "baseline", "--epochs", "1", "--batch-size", "256", "--backend", "serial",
         "--no-papermill", "--device", "cpu", "--measures", "test_accuracy"]


def test_a_seed_given_twice_is_one_run_and_a_second_sweep_merges_into_the_summary(tmp_path):
    from sharpness.book import stats
    from sharpness.studies import store
    from sharpness.__main__ import main as cli

    summary = tmp_path / "grid.json"
    common = [*SWEEP, "--runs-dir", str(tmp_path / "runs"), "--results", str(summary)]
    assert cli([*common, "--seeds", "0", "0"]) == 0
    rows, _ = store.load_grid(summary)
    assert list(rows["seed"]) == [0]  # not two rows (and n = 2 with SEM 0) for one run
    assert cli([*common, "--seeds", "1"]) == 0
    rows, provenance = store.load_grid(summary)
    assert sorted(rows["seed"]) == [0, 1] and len(provenance["earlier"]) == 1
    history = store.load_history(summary)
    assert sorted(history["seed"]) == [0, 1]  # each run's one epoch
    summarised = stats.summarise(rows)
    assert set(summarised["n"]) == {2}


def test_a_grid_holding_a_run_twice_is_refused_naming_the_file(tmp_path):
    from sharpness.studies import store

    path = tmp_path / "doubled.json"
    path.write_bytes(grid_document([grid_row(seed=0), grid_row(seed=1), grid_row(seed=0, test_accuracy=0.9)]))
    with pytest.raises(ValueError, match=r"doubled\.json holds 1 runs twice"):
        store.load_grid(path)
    import pandas as pd

    with pytest.raises(ValueError, match="twice"):
        store.save_grid(pd.DataFrame([grid_row(seed=0), grid_row(seed=0)]), tmp_path / "new.json", settings={}, data="d")
    assert not (tmp_path / "new.json").exists()


# --- case 8: a truncated history is refused, naming the file -------------------------------------------------


def history_csv(rows, epochs=3) -> str:
    import pandas as pd

    return pd.DataFrame([{"epoch": e, "dataset": r["dataset"], "arch": r["arch"], "control": r["control"], "seed": r["seed"],
                          "rho": r["rho"], "train_loss": 1.0 / e, "train_accuracy": 0.9} for r in rows
                         for e in range(1, epochs + 1)]).to_csv(index=False)


def test_a_truncated_history_is_refused_naming_the_file(tmp_path):
    from sharpness.studies import store

    rows = [grid_row(seed=s, epochs=3, epochs_completed=3) for s in (0, 1)]
    grid = tmp_path / "g.json"
    grid.write_bytes(grid_document(rows))
    whole = history_csv(rows)
    store.history_path(grid).write_text(whole)
    assert len(store.load_history(grid)) == 6
    lines = whole.splitlines(keepends=True)
    for damaged in ("".join(lines[:-1]),                      # the last epoch of the last run lost
                    "".join(lines[:-1]) + lines[-1][:10],     # cut in the middle of a line
                    "".join(lines[:3])):                      # one run's history only
        store.history_path(grid).write_text(damaged)
        with pytest.raises(ValueError, match=r"g\.history\.csv"):
            store.load_history(grid)


# --- bad command-line values are refused at once, naming the option ----------------------------------------


@pytest.mark.parametrize("command, option, value", [
    ("train", "--threads", "-1"), ("train", "--threads", "0"), ("evaluate", "--hessian-iterations", "0"),
    ("evaluate", "--corruption-images", "0"), ("evaluate", "--corruption-images", "-1"), ("evaluate", "--sam-draws", "0"),
    ("sweep", "--num-cpus", "-1"), ("sweep", "--epochs", "0"), ("fit", "--epochs", "0"), ("fit", "--threads", "-1"),
    ("campaign", "--deadline", "nan"), ("campaign", "--deadline", "-5"), ("landscape", "--span", "0 inf"),
    ("landscape", "--resolution", "0"),
])
def test_a_bad_command_line_value_is_refused_naming_the_option(tmp_path, capsys, command, option, value):
    from sharpness.__main__ import main as cli

    required = {"evaluate": [str(tmp_path / "runs")], "fit": ["--out", str(tmp_path / "out")]}.get(command, [])
    with pytest.raises(SystemExit) as exit_info:
        cli([command, *required, option, *value.split()])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"argument {option}" in message and "Traceback" not in message
    assert list(tmp_path.iterdir()) == []


def test_an_empty_landscape_span_is_refused(tmp_path):
    from sharpness.measuring import landscape

    for span in (["1", "-1"], ["0", "0"]):
        with pytest.raises(ValueError, match="--span"):
            landscape.main(["--runs-dir", str(tmp_path), "--span", *span])


@pytest.mark.parametrize("port", ["-1", "0", "70000", "http"])
def test_the_explorer_refuses_a_port_it_cannot_listen_on(capsys, port):
    from sharpness.book.figures import explore

    with pytest.raises(SystemExit) as exit_info:
        explore.main(["--port", port, "--no-browser"])
    assert exit_info.value.code == 2 and "argument --port" in capsys.readouterr().err


# --- case 9: no baseline, infinite values, truncated files ---------------------------------------------------


def test_a_grid_without_a_baseline_reproduces_nothing(tmp_path):
    import pandas as pd

    from sharpness.book import claims, ledger

    rows = pd.DataFrame([grid_row(control=c, seed=s, dataset="cifar10_folder") for c in ("aug", "wd") for s in (0, 1)])
    status, text = ledger.claims_status(claims.tally(rows, pd.DataFrame()), ledger.REDUCED_SCALE)
    assert status == ledger.NOT_RUN and "no comparison" in text and "0 of 0" not in text


def test_an_infinite_mean_is_no_comparison_and_an_infinite_finished_measure_is_refused(tmp_path):
    import pandas as pd

    from sharpness.studies import store

    summary = pd.DataFrame([{"dataset": "d", "arch": "a", "metric": "test_accuracy", "control": c, "rho": np.nan, "mean": m}
                            for c, m in (("baseline", 0.5), ("aug", 0.6), ("wd", float("inf")), ("aug_sam", 0.4))])
    from sharpness.book import claims

    verdicts = claims.mean_verdicts(summary).query("claim == 'more accurate'").set_index("control")["verdict"]
    assert verdicts.to_dict() == {"aug": claims.HOLDS, "aug_sam": claims.AGAINST}  # wd's infinite mean: no comparison
    path = tmp_path / "inf.json"
    path.write_text(grid_document([grid_row(seed=0), grid_row(seed=1)]).decode().replace('"test_accuracy": 0.5', '"test_accuracy": Infinity'))
    with pytest.raises(ValueError, match=r"inf\.json: the finished run .* infinite test_accuracy"):
        store.load_grid(path)


def test_a_truncated_grid_json_is_refused_naming_it(tmp_path):
    from sharpness.studies import registry, store

    path = tmp_path / "cut.json"
    path.write_bytes(grid_document([grid_row()])[:40])
    for read in (store.load_grid, registry.grid_tier):
        with pytest.raises(ValueError, match=r"cut\.json is not readable JSON"):
            read(path)


# --- errors list: a results page on a bad grid names the file and the fix, or renders --------------------------


def plain_grid(results_dir: Path, damage) -> Path:
    """`hostile_grid`'s layout (controls and rho grids, six controls x three seeds, histories beside them) with
    plain names, then `damage(document)` applied to both grid files."""
    paths = [hostile_grid(results_dir), hostile_grid(results_dir, "digits_simple_cnn_rho.json")]
    for path in paths:
        text = path.read_text().replace(json.dumps(HOSTILE)[1:-1], "simple_cnn")
        document = json.loads(text)
        for row in document["runs"]:
            row.pop("clean.simple_cnn", None)
            row["simple_cnn_extra"] = row.pop("simple_cnn", 0.5)
        damage(document)
        path.write_text(json.dumps(document))
        history = path.with_suffix(".history.csv")
        history.write_text(history.read_text().replace(HOSTILE, "simple_cnn").replace('"simple_cnn"', "simple_cnn"))
    return paths[0]


def page_outputs(results_dir: Path) -> dict:
    """What the results, rho, setup and ledger pages compute from the grids under `results_dir`, rendered (the
    library calls their cells make, in their order)."""
    from sharpness.book import claims, ledger, prose, stats, tables
    from sharpness.book.figures import results as result_figures
    from sharpness.core.untrusted import styled
    from sharpness.studies import store, sweep
    from sharpness.training import minimum

    study = sweep.load_study("controls", results_dir=results_dir)
    paper = store.paper_results("arxiv")
    summary = stats.summarise(study.runs)
    checked = minimum.check(study.runs, study.history)
    tally = claims.tally(study.runs, study.history)
    shown = {
        "study_note": prose.study_note(study),
        "minimum": minimum.reasons_sentence(checked),
        "study_beside_paper": result_figures.study_beside_paper(study, summary, paper, "x of y"),
        **{f"comparison {i}": styled(table, caption) for i, (caption, table) in
           enumerate(tables.comparison_tables(study, paper, summary, checked))},
        "ours_table": styled(tables.ours_table(summary, stats.EXTRA_SHARPNESS_METRICS, checked), "c"),
        "resolution": claims.resolution_note(tally.tests) + claims.resolution_note(tally.all_tests),
        **{f"claim tests {i}": result_figures.pvalue_table(tables.claim_test_table(tests), "c",
                                                           pvalue_columns=["p (t)", "p (Holm)", "p (Wilcoxon)"])
           for i, tests in enumerate((tally.tests, tally.all_tests)) if not tables.claim_test_table(tests).empty},
        "claims_beside_paper": styled(tables.claims_beside_paper(tally, paper), "c"),
        "differences": prose.differences_from_paper(tally, paper),
        **{"clean_data": styled(tables.clean_data_table(check), "c") for check in [stats.clean_data_check(study.runs)]
           if not check.empty},  # the page shows a sentence instead of an empty table
        "sharpness_vs_evaluation": result_figures.study_sharpness_vs_evaluation(study, checked),
        "training_bands": result_figures.training_bands(study.history, title="t", checked=checked),
    }
    rho_study = sweep.load_study("rho", results_dir=results_dir)
    sam_runs = stats.sam_rho_runs(rho_study)
    metrics = [m for m in tables.RHO_METRICS if m in sam_runs.columns]
    sam_history = rho_study.history[rho_study.history["control"] == "baseline_sam"]
    rho_checked = minimum.check(sam_runs, sam_history)
    shown |= {
        "rho_note": prose.rho_note(rho_study),
        "rho_sweep": result_figures.rho_sweep(sam_runs, stats.paper_rho_sweep(paper), metrics, title="t",
                                              not_at_minimum=rho_checked[~rho_checked["at_minimum"]]),
        "rho_table": styled(tables.rho_table(stats.summarise(minimum.at_minimum(sam_runs, rho_checked), metrics=metrics),
                                             metrics), "c"),
        "rho_findings": prose.rho_findings(sam_runs, rho_checked, sam_history),
    }
    rows = ledger.ledger(results_dir=results_dir)
    shown["ledger"] = ledger.status_counts(rows) + ledger.ledger_html(rows)
    return {where: output.to_html() if hasattr(output, "to_html") else output.to_json() if hasattr(output, "to_json")
            else str(output) for where, output in shown.items()}


def drop_provenance(document):
    for key in ("commit", "machine", "date", "data", "settings"):
        document["provenance"].pop(key)


def drop_some_measures(document):
    for row in document["runs"][::2]:
        for name in ("test_accuracy", "sam_sharpness", "relative_flatness"):
            row.pop(name)


def drop_every_measure(document):
    document["runs"] = [{k: v for k, v in row.items() if k in ("dataset", "arch", "control", "seed", "rho", "status",
                                                               "epochs")} for row in document["runs"]]


def huge_in_unfinished_runs(document):
    for row in document["runs"][:4]:
        row |= {"status": "failed", "test_accuracy": 1e308, "relative_flatness": -1e308, "fisher_rao_norm": 1e308}


def nan_measures(document):
    for row in document["runs"][::3]:
        row["sam_sharpness"] = float("nan")


@pytest.mark.parametrize("damage", [drop_provenance, drop_some_measures, drop_every_measure, huge_in_unfinished_runs,
                                    nan_measures])
def test_a_results_page_on_an_odd_grid_renders(tmp_path, damage):
    plain_grid(tmp_path, damage)
    shown = page_outputs(tmp_path)
    assert "Traceback" not in "".join(shown.values()) and len(shown) > 15


@pytest.mark.parametrize("value, shown", [(1e308, "1e+308"), (-1e308, "-1e+308"), (10**400, "10^400"),
                                          (float("inf"), "infinite")], ids=["1e308", "-1e308", "10^400", "inf"])
def test_a_results_page_on_a_grid_with_a_measure_too_large_to_average_names_the_file_and_the_fix(tmp_path, value, shown):
    def huge(document):
        document["runs"][1]["relative_flatness"] = value
        document["runs"][2]["relative_flatness"] = value

    path = plain_grid(tmp_path, huge)
    with pytest.raises(ValueError) as error:
        page_outputs(tmp_path)
    message = str(error.value)
    assert str(path) in message and "relative_flatness" in message and shown in message
    assert "sharpness evaluate --overwrite" in message and "remove the row" in message


def test_an_integer_too_long_to_read_is_refused_naming_the_file(tmp_path):
    from sharpness.studies import store

    path = plain_grid(tmp_path, lambda document: None)
    path.write_text(path.read_text().replace('"epochs": 2', '"epochs": 1' + "0" * 5000, 1))
    with pytest.raises(ValueError, match=rf"{path} is not readable JSON .*git checkout"):
        store.load_grid(path)


@pytest.mark.parametrize("damage, named", [
    (lambda document: document["runs"][2].pop("status"), "run 3 of 18 lacks status"),
    (lambda document: document["runs"][0].pop("control"), "run 1 of 18 lacks control"),
    (lambda document: [row.pop(key) for row in document["runs"] for key in ("dataset", "seed")], "lacks dataset, seed"),
    (lambda document: document["runs"].clear(), "holds no runs"),
    (lambda document: document.update(runs={"a": 1}), "runs are no list"),
    (lambda document: document["runs"].append(5), "runs are no list"),
    (lambda document: document["runs"][4].update(seed="zero"), 'run 5 of 18 has seed = "zero"'),
    (lambda document: document["runs"][4].update(control=["baseline"]), "run 5 of 18 has control"),
    (lambda document: document["runs"][6].update(test_accuracy="0.5"), 'run 7 of 18 has test_accuracy = "0.5"'),
    (lambda document: document["runs"][6].update({"clean.sam_sharpness": [1]}), "has clean.sam_sharpness = [1]"),
    (lambda document: document.update(provenance="x"), "provenance is no JSON object"),
    (lambda document: document.pop("provenance"), "missing ['provenance']"),
], ids=["status", "control", "dataset and seed", "no runs", "runs a dict", "a row a number", "seed text",
        "control a list", "measure text", "clean measure a list", "provenance text", "no provenance"])
def test_a_results_page_on_a_grid_of_another_shape_names_the_file_and_the_fix(tmp_path, damage, named):
    path = plain_grid(tmp_path, damage)
    with pytest.raises(ValueError) as error:
        page_outputs(tmp_path)
    message = str(error.value)
    assert str(path) in message and named in message and f"git checkout -- {path}" in message


def test_a_results_page_on_a_grid_holding_a_run_twice_names_the_file_and_the_fix(tmp_path):
    path = plain_grid(tmp_path, lambda document: document["runs"].append(dict(document["runs"][3])))
    with pytest.raises(ValueError) as error:
        page_outputs(tmp_path)
    assert str(path) in str(error.value) and "remove the duplicate rows" in str(error.value)


def test_a_mean_or_sem_that_is_not_finite_is_shown_not_a_crash():
    from sharpness.book import stats

    assert stats.format_mean_sem(1e308, float("inf")) == "1e+308 ± inf"
    assert stats.format_mean_sem(float("inf"), 0.5) == "inf ± 0.5"
    assert stats.format_mean_sem(float("-inf"), float("inf")) == "-inf ± inf"
    assert stats.format_mean_sem(0.825, 0.078) == "0.825 ± 0.078"


# --- case 12: leftovers of an atomic write never reach a commit ------------------------------------------------


def test_temporary_files_of_atomic_writes_are_git_ignored():
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    leftover = "results/cpu_study/cifar10_folder/cnn_mlp/baseline/seed0/.metrics.jsonl.abc123.tmp"
    shown = subprocess.run(["git", "check-ignore", "--no-index", leftover], cwd=repo, capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.strip() == leftover


def test_a_pickled_prediction_tensor_is_refused_naming_it(tmp_path):
    import argparse

    import torch

    from sharpness.studies import store
    from sharpness.measuring.evaluate import PREDICTIONS_FILE

    torch.save({"predictions": argparse.Namespace(code="would run")}, tmp_path / PREDICTIONS_FILE)
    with pytest.raises(ValueError, match=f"{PREDICTIONS_FILE} is not a plain tensor"):
        store.saved_predictions(tmp_path)
    torch.save(torch.tensor([1, 2, 3]), tmp_path / PREDICTIONS_FILE)
    assert store.saved_predictions(tmp_path).tolist() == [1, 2, 3]


# --- case 10: metrics.json keeps each value beside the settings it was computed with -------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny finished run (64 digits, one epoch), copied by each test that changes it."""
    from sharpness.training.train import RunConfig, train

    config = RunConfig(epochs=1, runs_dir=str(tmp_path_factory.mktemp("runs")), dataset="digits", max_train_samples=64,
                       max_test_samples=32, batch_size=32, device="cpu")
    train(config, progress=False)
    return config.run_dir


def run_copy(trained_run, tmp_path, name="run") -> Path:
    import shutil

    return Path(shutil.copytree(trained_run, tmp_path / name))


def test_a_second_evaluation_with_other_settings_measures_again_and_records_what_it_used(trained_run, tmp_path):
    from sharpness.measuring.evaluate import evaluate_run

    quick = dict(device="cpu", progress=False, sam_draws=2)
    run, fresh = run_copy(trained_run, tmp_path), run_copy(trained_run, tmp_path, "fresh")
    first = evaluate_run(run, ["fisher_rao_norm"], max_train_samples=40, **quick)
    again = evaluate_run(run, ["fisher_rao_norm"], max_train_samples=20, **quick)
    truth = evaluate_run(fresh, ["fisher_rao_norm"], max_train_samples=20, **quick)  # 20 images from the start
    assert again["fisher_rao_norm"] == truth["fisher_rao_norm"] != first["fisher_rao_norm"]
    assert again["settings"]["train_images"] == 20


def test_a_kept_value_keeps_the_settings_it_was_computed_with(trained_run, tmp_path):
    from sharpness.measuring.evaluate import METRICS_FILE, evaluate_run

    run = run_copy(trained_run, tmp_path)
    first = evaluate_run(run, ["sam_sharpness"], device="cpu", progress=False, sam_draws=2, slow_samples=16)
    later = evaluate_run(run, ["hessian_trace"], device="cpu", progress=False, hessian_iterations=2, slow_samples=16)
    assert later["sam_sharpness"] == first["sam_sharpness"]  # not measured again: nothing it depends on changed...
    assert later["settings"]["sam_draws"] == 2 and later["settings"]["hessian_iterations"] == 2  # ...and said so
    stored = json.loads((run / METRICS_FILE).read_text())
    assert stored["settings"]["sam_draws"] == 2 and stored["hessian_trace"] == later["hessian_trace"]


def test_a_kept_value_and_a_new_one_on_other_images_are_refused_before_measuring(trained_run, tmp_path):
    from sharpness.measuring.evaluate import METRICS_FILE, evaluate_run

    run = run_copy(trained_run, tmp_path)
    evaluate_run(run, ["fisher_rao_norm", "test_accuracy"], device="cpu", progress=False, max_train_samples=40)
    before = (run / METRICS_FILE).read_bytes()
    with pytest.raises(ValueError, match=rf"{METRICS_FILE} holds fisher_rao_norm measured with train_images = 40.*"
                                         r"train_accuracy with train_images = 20.*Measure fisher_rao_norm again too"):
        evaluate_run(run, ["train_accuracy"], device="cpu", progress=False, max_train_samples=20)
    assert (run / METRICS_FILE).read_bytes() == before


def test_a_null_value_and_lost_test_predictions_are_measured_again(trained_run, tmp_path):
    from sharpness.measuring.evaluate import METRICS_FILE, PREDICTIONS_FILE, evaluate_run

    run, fresh = run_copy(trained_run, tmp_path), run_copy(trained_run, tmp_path, "fresh")
    options = dict(device="cpu", progress=False, hessian_iterations=2, slow_samples=16)
    evaluate_run(run, ["test_accuracy", "hessian_trace"], **options)
    stored = json.loads((run / METRICS_FILE).read_text())
    stored["hessian_trace"] = None  # as a call with --hessian-iterations 0 left it
    (run / METRICS_FILE).write_text(json.dumps(stored))
    (run / PREDICTIONS_FILE).unlink()
    again = evaluate_run(run, ["test_accuracy", "hessian_trace"], **options)
    truth = evaluate_run(fresh, ["test_accuracy", "hessian_trace"], **options)
    assert again["hessian_trace"] == truth["hessian_trace"] is not None
    assert (run / PREDICTIONS_FILE).is_file()


@pytest.mark.parametrize("option, value", [("hessian_iterations", 0), ("corruption_images", 0), ("corruption_images", -1),
                                           ("sam_draws", 0), ("max_train_samples", -5), ("hessian_iterations", 2.5)])
def test_bad_evaluation_values_from_python_are_refused_naming_them(trained_run, tmp_path, option, value):
    from sharpness.measuring.evaluate import METRICS_FILE, evaluate_run

    run = run_copy(trained_run, tmp_path)
    with pytest.raises(ValueError, match=rf"--{option.replace('_', '-')} {value} is not a whole number of at least 1"):
        evaluate_run(run, ["hessian_trace", "corruption_accuracy"], device="cpu", progress=False, **{option: value})
    assert not (run / METRICS_FILE).exists()


# --- case 11: a study with nothing to do keeps its grid; lost predictions are redone ------------------------


def committed_run(folder: Path, seed: int, predictions: bool = True) -> Path:
    """A run folder as the CPU study commits it (config, summary, per-epoch rows, metrics, predictions)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "d", "arch": "a", "control": "baseline", "seed": seed,
                                                    "epochs": 1, "batch_size": 8, "lr": 0.1}))
    (folder / "summary.json").write_text(json.dumps({"status": "finished", "epochs_completed": 1}))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8}) + "\n")
    (folder / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5 + seed / 10}))
    if predictions:
        (folder / "test_predictions.json").write_text(json.dumps([seed, 1, 2]))
    return folder


def test_rewriting_a_grid_with_nothing_new_keeps_its_machine_commit_and_date(tmp_path, monkeypatch):
    from sharpness.studies import store

    folders = [committed_run(tmp_path / "study" / f"seed{seed}", seed) for seed in (0, 1)]
    path = tmp_path / "grid.json"
    store.save_grid(store.runs_from_dirs(folders), path, settings={"epochs": 1}, data="d", tier="cpu")
    written = path.read_bytes(), store.history_path(path).read_bytes()
    monkeypatch.setattr(store, "git_commit", lambda: "another commit")
    monkeypatch.setattr(store, "machine_description", lambda: "another machine")
    store.save_grid(store.runs_from_dirs(folders), path, settings={"epochs": 1}, data="d", tier="cpu")
    assert (path.read_bytes(), store.history_path(path).read_bytes()) == written
    folders.append(committed_run(tmp_path / "study" / "seed2", 2))  # a new run: a new file, with where it was made
    store.save_grid(store.runs_from_dirs(folders), path, settings={"epochs": 1}, data="d", tier="cpu")
    rows, provenance = store.load_grid(path)
    assert sorted(rows["seed"]) == [0, 1, 2] and provenance["commit"] == "another commit"


def test_a_committed_run_without_its_test_predictions_is_redone(tmp_path):
    from types import SimpleNamespace

    from sharpness.studies import cpu_study, sweep

    runs_dir, study_dir = tmp_path / "runs", tmp_path / "results"
    config = SimpleNamespace(run_dir=runs_dir / "d" / "a" / "baseline" / "seed0")
    committed = committed_run(study_dir / "d" / "a" / "baseline" / "seed0", 0)
    assert cpu_study.is_committed(config, runs_dir, study_dir)
    (committed / "test_predictions.json").unlink()
    assert not cpu_study.is_committed(config, runs_dir, study_dir)
    # and the run folder itself: evaluated again when its saved predictions are gone (evaluate measures them again)
    local = committed_run(config.run_dir, 0, predictions=False)
    assert sweep.run_state(local) == "trained"
    (local / "test_predictions.pt").write_bytes(b"saved")
    assert sweep.run_state(local) == "done"


# --- case 11: no loss surface of a diverged run, none that is all NaN, and damaged stored surfaces named ------


def test_a_diverged_run_has_no_loss_surface_and_the_command_fails(trained_run, tmp_path, capsys):
    from sharpness.__main__ import main as cli
    from sharpness.measuring import landscape

    runs_dir = tmp_path / "runs"
    run = Path(__import__("shutil").copytree(trained_run, runs_dir / "digits" / "simple_cnn" / "baseline" / "seed0"))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "diverged", "diverged_reason": "loss nan at epoch 1"}))
    with pytest.raises(ValueError, match=rf"no loss surface of {run}: training diverged \(loss nan at epoch 1\)"):
        landscape.landscape_of_run(run, resolution=3, subset=16, sam_draws=1, progress=False)
    out = tmp_path / "surfaces"
    with pytest.raises(SystemExit) as exit_info:
        cli(["landscape", "--runs-dir", str(runs_dir), "--dataset", "digits", "--arch", "simple_cnn", "--controls",
             "baseline", "--interpolate", "baseline", "baseline", "--resolution", "3", "--subset", "16", "--out", str(out)])
    assert exit_info.value.code == 2 and "diverged" in capsys.readouterr().err and not out.exists()


def test_a_surface_without_one_finite_loss_is_not_saved(tmp_path):
    from sharpness.measuring import landscape

    axes = [np.linspace(-1, 1, 3)] * 2
    nothing = landscape.Surface(axes, np.full((3, 3), np.nan), np.zeros((3, 3)))
    item = landscape.ControlLandscape("digits", "simple_cnn", "baseline", 0, nothing)
    with pytest.raises(ValueError, match=r"not writing .*baseline\.json: every loss of the surface .* is NaN or infinite"):
        landscape.save_landscape(item, tmp_path)
    assert files_under(tmp_path) == set()
    partly = np.full((3, 3), np.inf)
    partly[1, 1] = 0.3  # far from the minimum the loss may overflow; the surface still shows the minimum
    saved = landscape.save_landscape(landscape.ControlLandscape("digits", "simple_cnn", "baseline", 0,
                                                                landscape.Surface(axes, partly, np.zeros((3, 3)))), tmp_path)
    assert landscape.stored_landscapes(root=tmp_path)[0].surface.loss[1, 1] == pytest.approx(0.3)
    assert saved.is_file()


@pytest.mark.parametrize("damage", ["truncated", "junk"])
def test_a_damaged_stored_surface_is_named_with_the_fix(tmp_path, monkeypatch, damage):
    from sharpness.measuring import landscape
    from sharpness.studies import surfaces

    axes = [np.linspace(-1, 1, 3)]
    surface = landscape.Surface(axes, np.array([1.0, 0.5, 1.0]), np.array([0.5, 0.9, 0.5]))
    path = landscape.save_landscape(landscape.ControlLandscape("digits", "simple_cnn", "baseline", 0, surface), tmp_path)
    between = landscape.save_surface_json(surface, landscape.interpolation_path("digits", "simple_cnn", 0, "baseline",
                                                                                "aug_sam", tmp_path))
    for damaged in (path, between):
        text = damaged.read_text()
        damaged.write_text(text[: len(text) // 2] if damage == "truncated" else '{"surface": {"axes": "junk"}}')
    with pytest.raises(ValueError, match=rf"{path}.*git checkout -- {path}"):
        landscape.stored_landscapes(root=tmp_path)
    monkeypatch.setattr(surfaces, "STORED_SURFACES", tmp_path)
    with pytest.raises(ValueError, match=rf"{between}.*git checkout"):
        surfaces.control_interpolation(0)


# --- case 11 and the errors list: image folders (16-bit PNGs, an empty class folder) and a rate that is 0 ----


def image_pack(root: Path, image=lambda split, c, i: np.full((8, 8, 3), 40 * c + i, np.uint8), empty=None) -> Path:
    """train/ and test/ of two classes, two PNGs each (`image` makes each one's pixels); `empty`: a class folder
    (split, class) left without images."""
    from PIL import Image

    for split in ("train", "test"):
        for c in range(2):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            if (split, c) == empty:
                (folder / "README.txt").write_text("images to come")
                continue
            for i in range(2):
                Image.fromarray(image(split, c, i)).save(folder / f"{i}.png")
    return root


def test_16_bit_pngs_are_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    from sharpness.training.data import load_dataset

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 to 63,000 of 65,535
    data = load_dataset("cifar10_folder", image_pack(tmp_path, lambda split, c, i: ramp + 100 * c + i))
    first = data.train_images[0]  # class0/0.png
    assert first.shape == (3, 8, 8) and bool((first[0] == first[1]).all() and (first[1] == first[2]).all())
    assert first[0].tolist() == np.round(ramp / 257).astype(np.uint8).tolist()  # the same brightness in 8 bits
    assert int(first.min()) == 0 and int(first.max()) == 245


def test_an_image_of_floats_is_refused_naming_it(tmp_path):
    from PIL import Image

    from sharpness.training.data import load_dataset

    root = image_pack(tmp_path)
    odd = root / "test" / "class1" / "2.tiff"
    Image.fromarray(np.ones((8, 8), np.float32)).save(odd)
    with pytest.raises(ValueError, match=rf"cannot decode the image {odd} \(its pixels are 32-bit floats"):
        load_dataset("cifar10_folder", root)


def test_an_empty_class_folder_is_named(tmp_path):
    from sharpness.training.data import load_dataset

    root = image_pack(tmp_path, empty=("train", 1))
    with pytest.raises(ValueError, match=rf"the class folder {root / 'train' / 'class1'} holds no images .* remove the class"):
        load_dataset("cifar10_folder", root)


def test_a_learning_rate_that_is_0_in_float32_is_refused_before_training(tmp_path, capsys):
    from sharpness.__main__ import main as cli

    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--lr", "1e-300", "--dataset", "digits", "--runs-dir", str(tmp_path / "runs"), "--device", "cpu",
             "--epochs", "1", "--no-progress"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "lr must be a positive number from 1.18e-38" in message and "1e-300" in message
    assert not (tmp_path / "runs").exists()


# --- case 12: cpu-study leaves nothing behind: no temporary files on a full disk, no workers after kill -9 ----


def test_a_full_disk_while_committing_a_run_is_named_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    from sharpness.core import runs
    from sharpness.studies import cpu_study

    run = committed_run(tmp_path / "runs" / "seed0", 0, predictions=False)
    target = tmp_path / "results" / "seed0"
    target.mkdir(parents=True)
    (target / "metrics.jsonl").write_text("the committed rows\n")

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs.os, "fsync", no_space)
    with pytest.raises(runs.RunFileError, match=rf"cannot write {target}/\S+: No space left on device; .*free space"):
        cpu_study.copy_to_results(run, target)
    assert [path.name for path in target.iterdir()] == ["metrics.jsonl"]  # no .<name>.tmp left behind
    assert (target / "metrics.jsonl").read_text() == "the committed rows\n"


PARENT = '''
import os, sys, time
from pathlib import Path
from types import SimpleNamespace

from sharpness.studies import cpu_study


class Job:
    def __init__(self, kind, call, *args):
        self.kind, self.call, self.args = kind, call, args
        self.name, self.config = kind, SimpleNamespace(run_dir=Path("runs") / kind)

    def ready(self):
        return True

    def submit(self, pool):
        return pool.submit(self.call, *self.args)


if __name__ == "__main__":
    cpu_study.run_tasks([Job("pid", os.getpid), Job("sleep", time.sleep, 600)], workers=1, runs_dir="runs",
                        study_dir=Path("results"), write=lambda: None, progress=False)
'''


def test_the_workers_of_a_killed_cpu_study_end_with_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "parent.py").write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-u", "parent.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = parent.stdout.readline()  # "pid written: <the worker's pid>", once the worker is up
        worker = int(line.rsplit(":", 1)[1])
        time.sleep(1)  # the worker is now in its 600 s task
        assert alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), "the worker outlived its killed parent"
    finally:
        parent.kill()
        if "worker" in locals() and alive(worker):
            os.kill(worker, signal.SIGKILL)


# The campaign's processes, started the way the campaign starts them: a lease's run process (Lease.start, whose
# run is swapped for a sleep: spawn imports this script, __mp_main__, in the worker before the target runs) and
# a child command (Campaign.run_child). Each prints its pid, then sleeps.
CAMPAIGN_PARENT = '''
import os, sys, time
from types import SimpleNamespace

from sharpness.studies import campaign, lease, sweep


def sleeping_run(*args, **kwargs):
    print(f"worker pid: {os.getpid()}", flush=True)
    time.sleep(600)


sweep.execute_run = sleeping_run  # also in the spawned worker, which imports this file as __mp_main__

if __name__ == "__main__":
    if sys.argv[1] == "lease":
        config = SimpleNamespace(control="baseline", seed=0, run_dir="runs/baseline/seed0")
        holder = SimpleNamespace(slots=1, measures=None, evaluation_options={}, workers={}, queue=[config],
                                 campaign=SimpleNamespace(deadline=time.time() + 600))
        lease.Lease.start(holder, config)
        time.sleep(600)
    else:
        child = "import os, time; print(f'worker pid: {os.getpid()}', flush=True); time.sleep(600)"
        campaign.Campaign.run_child(SimpleNamespace(seconds_left=lambda: 600.0), ["-c", child])
'''


@pytest.mark.parametrize("kind", ["lease", "child"])
def test_the_processes_of_a_killed_campaign_end_with_it(tmp_path, kind):
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "parent.py").write_text(CAMPAIGN_PARENT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-u", "parent.py", kind], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = parent.stdout.readline()  # "worker pid: <pid>", once the worker is up
        assert line.startswith("worker pid:"), line + parent.stdout.read()
        worker = int(line.rsplit(":", 1)[1])
        time.sleep(1)
        assert alive(worker) and worker != parent.pid
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), f"the {kind} process outlived its killed parent"
    finally:
        parent.kill()
        if "worker" in locals() and alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_worker_whose_parent_is_already_gone_ends_at_once(tmp_path):
    """The race the prctl cannot cover: the parent died before the worker asked to die with it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    code = ("import os, time; from sharpness.core.lifeline import die_with_parent; "
            "die_with_parent(os.getppid() + 1); time.sleep(60); print('still here')")  # a parent that is not ours
    finished = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1 and "still here" not in finished.stdout


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# --- errors list: a full disk inside torch.save, a checkpoint of another network --------------------------------

TINY = ["--dataset", "digits", "--max-train-samples", "64", "--max-test-samples", "32", "--batch-size", "32",
        "--device", "cpu", "--threads", "1", "--no-progress"]


def test_a_full_disk_while_saving_a_checkpoint_names_it_and_the_fix(tmp_path, monkeypatch, capsys):
    import torch

    from sharpness.__main__ import main as cli

    real_save = torch.save

    def full_disk(value, file, *args, **kwargs):  # what torch's C++ writer raises when the disk is full
        if isinstance(value, dict) and "epochs_done" in value:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4416 vs 4304")
        return real_save(value, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), *TINY])
    message = capsys.readouterr().err
    checkpoint = tmp_path / "runs" / "digits" / "simple_cnn" / "baseline" / "seed0" / "checkpoint.pt"
    assert exit_info.value.code == 2 and f"cannot write {checkpoint}" in message and "disk full" in message
    assert "free space" in message and "Traceback" not in message
    assert not list(checkpoint.parent.glob(".*.tmp")) and not checkpoint.exists()


def test_a_checkpoint_of_another_network_is_named_on_evaluate_and_on_resume(tmp_path, capsys):
    from sharpness.__main__ import main as cli

    runs_dir = tmp_path / "runs"
    for arch in ("simple_cnn", "cnn_mlp"):  # two runs stopped after one epoch of two
        assert cli(["train", "--epochs", "2", "--stop-after-epochs", "1", "--arch", arch, "--runs-dir", str(runs_dir), *TINY]) == 0
    ours, other = (runs_dir / "digits" / arch / "baseline" / "seed0" for arch in ("simple_cnn", "cnn_mlp"))
    (ours / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    for command in (["train", "--epochs", "2", "--runs-dir", str(runs_dir), *TINY], ["evaluate", str(ours), "--device", "cpu"]):
        if command[0] == "evaluate":
            (ours / "summary.json").write_text(json.dumps({"status": "finished"}))  # as if it had finished
        with pytest.raises(SystemExit) as exit_info:
            cli(command)
        message = capsys.readouterr().err
        assert exit_info.value.code == 2 and "Traceback" not in message, command
        assert f"{ours / 'checkpoint.pt'} holds the weights of another network than simple_cnn" in message, command
        assert "train the run" in message, command


# --- errors list: a read-only results folder is noticed before anything trains --------------------------------


@pytest.mark.parametrize("command", ["sweep", "cpu-study"])
def test_a_read_only_results_folder_is_noticed_before_a_run_trains(tmp_path, monkeypatch, capsys, command):
    """As root (CI) a read-only folder stays writable, so the refusal mkstemp would raise is injected."""
    from sharpness.__main__ import main as cli
    from sharpness.core import runs
    from sharpness.studies import cpu_study, sweep

    results = tmp_path / "results"

    def read_only(*args, dir=None, **kwargs):
        if str(dir).startswith(str(results)):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    real_mkstemp = runs.tempfile.mkstemp
    monkeypatch.setattr(runs.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("a run was started"))
    monkeypatch.setattr(cpu_study, "run_study", lambda *a, **k: pytest.fail("a run was started"))
    for name, value in (("GRID_FILE", results / "grid.json"), ("RHO_GRID_FILE", results / "grid_rho.json"),
                        ("STUDY_DIR", results / "cpu_study")):
        monkeypatch.setattr(cpu_study, name, value)
    arguments = [*SWEEP, "--runs-dir", str(tmp_path / "runs"), "--results", str(results / "grid.json")] \
        if command == "sweep" else ["cpu-study", "--runs-dir", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        cli(arguments)
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"cannot write {results}" in message and "Permission denied; make" in message


def test_styled_tables_wrap_prose_columns_and_keep_figures_on_one_line():
    import pandas as pd

    table = pd.DataFrame({"setting": ["Hessian steps, at most (power iteration stops at a 0.001 relative change)", "epochs"],
                          "value": ["0.6370 ± 0.0041", "120"], "n": [1, 2]})
    html_text = untrusted.styled(table).to_html()
    css = html_text.split("</style>")[0]
    wrapped = {cell for rule in css.split("}") if "white-space: normal" in rule for cell in re.findall(r"_col(\d)", rule)}
    assert wrapped == {"0"}  # the long label only: neither the figure nor the number column
