"""sharpness.studies.cpu_study: the order of the work, what lands under results/, and resuming from it alone."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from sharpness.studies import cpu_study, registry, store
from sharpness.studies.registry import PAPER_RHOS
from sharpness.training.controls import CONTROLS


def test_with_every_run_committed_the_plan_still_draws_the_missing_surfaces_and_the_interpolation(study, monkeypatch):
    monkeypatch.setattr(cpu_study, "is_committed", lambda config, runs_dir: True)
    tasks = cpu_study.plan((0,), data_dir=study / "pack", runs_dir=study / "runs")
    assert [(t.kind, t.config.control) for t in tasks] == [("landscape", c) for c in CONTROLS] + [("interpolation", "baseline")]


def test_plan_puts_whole_seeds_first_then_surfaces_then_rho_sweep(study, monkeypatch):
    monkeypatch.setattr(cpu_study, "RHO_SEEDS", 2)
    tasks = cpu_study.plan((0, 1, 5), data_dir=study / "pack", runs_dir=study / "runs")
    kinds = [(t.kind, t.config.seed, t.config.control, t.config.rho) for t in tasks]
    assert [(k, s, c) for k, s, c, _ in kinds[:18]] == [("run", s, c) for s in (0, 1, 5) for c in CONTROLS]
    assert kinds[18:24] == [("landscape", 0, c, 0.05) for c in CONTROLS]
    assert kinds[24][:2] == ("interpolation", 0)
    other_rhos = [rho for rho in PAPER_RHOS if rho != 0.05]
    assert kinds[25:] == [("run", s, "baseline_sam", rho) for s in (0, 1) for rho in other_rhos]
    # the rho runs keep the measures of the rho chapter; the controls get every measure
    assert tasks[25].grid.measures == cpu_study.RHO_MEASURES and "hessian_trace" in tasks[0].grid.measures
    # every run carries the protocol's schedule and the SAM radius scale (the paper's rho relative to ||theta_0||)
    assert {(t.config.lr_schedule, t.config.rho_scale) for t in tasks} == {("cosine", cpu_study.sam_rho_scale())}


def test_a_run_trained_but_not_yet_measured_is_planned_first(study, monkeypatch):
    """An interruption between a run's training and its evaluation leaves a finished run (summary.json) that is not
    committed; its minute of measuring goes before the hours of training still ahead, the rest keeps its order."""
    from sharpness.core import runs

    monkeypatch.setattr(cpu_study, "RHO_SEEDS", 1)
    before = cpu_study.plan((0, 1), data_dir=study / "pack", runs_dir=study / "runs")
    trained = next(t for t in before if t.kind == "run" and (t.config.seed, t.config.control) == (1, "wd"))
    runs.atomic_write_json(Path(trained.config.run_dir) / runs.SUMMARY, {"status": "finished"})
    after = cpu_study.plan((0, 1), data_dir=study / "pack", runs_dir=study / "runs")
    assert [t.name for t in after] == [trained.name] + [t.name for t in before if t.name != trained.name]
    assert len(after) == len(before) and after[0].kind == "run"


def test_sam_radius_scale_is_the_ratio_of_initial_weight_norms():
    """Against an independent count: the parameter norms of freshly built networks (seed 0)."""
    from sharpness.training.models import build_model

    def norm(arch):
        torch.manual_seed(0)
        return torch.sqrt(sum((p.detach().double() ** 2).sum() for p in build_model(arch, 10).parameters())).item()

    ratio = norm(registry.PROTOCOL["arch"]) / norm("resnet18")
    assert cpu_study.sam_rho_scale() == pytest.approx(ratio, rel=0.03)  # two significant figures
    assert 0.05 < cpu_study.sam_rho_scale() < 0.5  # ResNet-18 is the far larger network


def test_a_study_lands_under_results_and_resumes_from_there_alone(study):
    runs_dir = study / "runs"
    assert cpu_study.run_study((0,), workers=1, data_dir=study / "pack", runs_dir=runs_dir, rho_sweep=False,
                               progress=False) == 0
    committed = sorted(p.parent.parent.name for p in cpu_study.STUDY_DIR.rglob("metrics.json"))
    assert committed == sorted(CONTROLS)
    for folder in cpu_study.STUDY_DIR.rglob("seed0"):
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "summary.json", "metrics.json", "metrics.jsonl", "test_predictions.json"} <= names
        assert not any(name.endswith(".pt") for name in names)  # no checkpoint, no tensors in git
        assert len(json.loads((folder / "test_predictions.json").read_text())) == 30  # 3 test images x 10 classes
    grid, provenance = store.load_grid(cpu_study.GRID_FILE)
    assert provenance["tier"] == "cpu" and provenance["settings"]["epochs"] == 1
    assert sorted(grid["control"]) == sorted(CONTROLS)
    augmented = grid["control"].str.startswith("aug")
    assert grid.loc[augmented, "clean.sam_sharpness"].notna().all()  # the Appendix F.1 measures
    assert grid.loc[~augmented, "clean.sam_sharpness"].isna().all()
    assert grid["corruption.images"].eq(20).all() and grid["settings.slow_measure_images"].eq(16).all()
    assert len(list(cpu_study.SURFACES_DIR.glob("*/*/seed0/*.json"))) == len(CONTROLS)
    assert len(list(cpu_study.SURFACES_DIR.glob("*/*/seed0/interpolation/baseline__aug_sam.json"))) == 1
    # a fresh clone has results/ but no runs/: nothing is redone
    shutil.rmtree(runs_dir)
    assert cpu_study.plan((0,), data_dir=study / "pack", runs_dir=runs_dir, rho_sweep=False) == []


def test_committed_runs_are_measured_again_from_their_checkpoints_and_refused_without_them(study):
    import argparse

    runs_dir = study / "runs"
    assert cpu_study.run_study((0,), workers=1, data_dir=study / "pack", runs_dir=runs_dir, rho_sweep=False,
                               landscapes=False, progress=False) == 0
    committed = sorted(cpu_study.STUDY_DIR.rglob("metrics.json"))
    before = {path: json.loads(path.read_text()) for path in committed}
    for path, metrics in before.items():  # measured by a commit this repository does not know: older code
        path.write_text(json.dumps({**metrics, "code": {"commit": "f" * 40, "dirty": False},
                                    "seconds": {**metrics["seconds"], "a_measure_of_old_code": 1e6}}))
    parser = argparse.ArgumentParser()
    cpu_study.add_arguments(parser)
    args = parser.parse_args(["--seeds", "0", "--workers", "1", "--re-evaluate", "--runs-dir", str(runs_dir),
                              "--data-dir", str(study / "pack"), "--no-progress"])
    assert cpu_study.main(args) == 0
    for path, metrics in before.items():
        again = json.loads(path.read_text())
        # the same checkpoint measured again: the same predictions, the same sharpness within float rounding
        assert again["test_accuracy"] == metrics["test_accuracy"]
        assert again["fisher_rao_norm"] == pytest.approx(metrics["fisher_rao_norm"], rel=1e-5)
        assert again["hessian_trace"] == pytest.approx(metrics["hessian_trace"], rel=1e-5)
        assert "a_measure_of_old_code" not in again["seconds"]  # everything measured again, everything timed again
        assert again["code"]["commit"] != "f" * 40
    assert store.load_grid(cpu_study.GRID_FILE)[0]["test_accuracy"].notna().all()

    # the grid is measured by the current code now, unless the code was uncommitted (then it is measured again)
    dirty = json.loads(committed[0].read_text())["code"]["dirty"]
    assert len(cpu_study.re_evaluation_plan((0,), data_dir=study / "pack", runs_dir=runs_dir)) == (len(CONTROLS) if dirty else 0)
    # a checkpoint that is gone, or another training in its place, is named instead of measured
    for path in committed:
        path.write_text(json.dumps({**json.loads(path.read_text()), "code": {"commit": "f" * 40, "dirty": False}}))
    checkpoint = next(runs_dir.rglob("checkpoint.pt"))
    checkpoint.unlink()
    with pytest.raises(ValueError, match=f"{checkpoint}.* is missing.*--runs-dir"):
        cpu_study.re_evaluation_plan((0,), data_dir=study / "pack", runs_dir=runs_dir)
    shutil.rmtree(checkpoint.parent)
    summary = next(runs_dir.rglob("summary.json"))
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "train_loss": 123.0}))
    with pytest.raises(ValueError, match="holds another training"):
        cpu_study.re_evaluation_plan((0,), data_dir=study / "pack", runs_dir=runs_dir)


def test_a_measurement_counts_as_current_only_from_clean_code_at_or_after_the_measuring_packages_last_change(tmp_path):
    from sharpness.core import provenance
    from sharpness.core.paths import REPO_ROOT
    from sharpness.measuring import evaluate

    newest = provenance.last_change(REPO_ROOT / "src" / "sharpness" / "measuring")
    if newest is None:
        pytest.skip("needs the project's git history")
    first = provenance.git_commit()  # HEAD, which holds the newest change
    root = __import__("subprocess").run(["git", "rev-list", "--max-parents=0", "HEAD"], capture_output=True, text=True,
                                        cwd=REPO_ROOT).stdout.split()[0]

    def measured_by(commit, dirty=False):
        (tmp_path / "metrics.json").write_text(json.dumps({"code": {"commit": commit, "dirty": dirty}}))
        return cpu_study.measured_by_current_code(tmp_path)

    assert Path(evaluate.__file__).parent.name == "measuring"
    assert measured_by(first.removesuffix("+dirty")) and measured_by(newest)
    assert not measured_by(root)  # the first commit predates every measure
    assert not measured_by(newest, dirty=True) and not measured_by("f" * 40) and not measured_by("unknown")


def test_disagreement_is_computed_from_committed_predictions(tmp_path):
    rows = []
    for seed, predictions in enumerate(([0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 2, 0])):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        (folder / store.PREDICTIONS_JSON).write_text(json.dumps(predictions))
        rows.append({"dataset": "d", "arch": "a", "control": "baseline", "rho": float("nan"), "seed": seed,
                     "run_dir": str(folder)})
    with_disagreement = store.add_disagreement(pd.DataFrame(rows))
    # pairs by hand: (0,1) differ at 1 of 4, (0,2) at 2 of 4, (1,2) at 1 of 4
    assert with_disagreement["prediction_disagreement"].tolist() == pytest.approx([3 / 8, 2 / 8, 3 / 8])
    assert with_disagreement["prediction_disagreement"].mean() == pytest.approx((1 + 2 + 1) / 4 / 3)
