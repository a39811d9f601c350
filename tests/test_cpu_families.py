"""sharpness.studies.cpu_families: the order of the work, resuming from results/, and the grids written from committed runs."""

import json

import pytest

from sharpness.core import runs
from sharpness.studies import cpu_families, cpu_pilot, cpu_study, store
from sharpness.training.controls import CONTROLS


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    for module, name in ((cpu_families, "FAMILIES_DIR"), (cpu_families, "BATCH_LR_DIR"), (cpu_study, "STUDY_DIR")):
        monkeypatch.setattr(module, name, tmp_path / "results" / name.lower())
    monkeypatch.setattr(cpu_families, "FAMILIES_GRID", cpu_families.FAMILIES_DIR / "families.json")
    monkeypatch.setattr(cpu_families, "PILOT_FILE", cpu_families.FAMILIES_DIR / "pilot.json")
    monkeypatch.setattr(cpu_families, "BATCH_LR_GRID", cpu_families.BATCH_LR_DIR / "batch_lr.json")
    return tmp_path


def pilot_row(arch, lr, control, accuracy, *, reached=None, epochs_done=120):
    """One run of the family pilot as `cpu_pilot.measure` records it (the verdict: finished and over the 95% bar,
    unless given)."""
    return {"arch": arch, "lr": lr, "control": control, "epochs": 120, "epochs_done": epochs_done,
            "measured_set_accuracy": accuracy,
            "reached_minimum": (accuracy >= 0.95 and epochs_done == 120) if reached is None else reached,
            "reason": "hand-made"}


def write_pilot(rows):
    runs.atomic_write_json(cpu_families.PILOT_FILE, {"provenance": {}, "runs": rows})


def test_a_family_runs_at_the_first_learning_rate_where_both_augmentation_controls_reached_a_minimum(dirs):
    resnet_fast, resnet_faster = cpu_families.PILOT_LEARNING_RATES["resnet_small"]
    vgg_first = cpu_families.PILOT_LEARNING_RATES["vgg_small"][0]
    write_pilot([
        # ResNet: aug_sam short of the bar at the first rate, both over it at the second
        pilot_row("resnet_small", resnet_fast, "aug", 0.97), pilot_row("resnet_small", resnet_fast, "aug_sam", 0.90),
        pilot_row("resnet_small", resnet_faster, "aug", 0.99), pilot_row("resnet_small", resnet_faster, "aug_sam", 0.98),
        # VGG: both over the bar, but aug_sam stopped before its last epoch: not a minimum yet
        pilot_row("vgg_small", vgg_first, "aug", 0.99), pilot_row("vgg_small", vgg_first, "aug_sam", 0.99, epochs_done=60),
    ])
    assert cpu_families.family_lr("resnet_small") == resnet_faster
    assert cpu_families.family_lr("vgg_small") is None and cpu_families.family_lr("vit_small") is None
    finding = cpu_families.pilot_finding()
    assert f"ResNet-8 runs at lr {resnet_faster:g}" in finding and "ViT (3 blocks, patch 4): no pilot run yet" in finding
    assert "VGG-8 (BN): no learning rate chosen yet; 3 pilot run(s) still to finish" in finding
    table = cpu_families.pilot_table(cpu_pilot.load_pilot(cpu_families.PILOT_FILE))
    assert list(table["at a minimum"]) == ["yes", "no", "yes", "yes", "yes", "no"]  # ResNet-8 0.05, 0.1, then VGG
    assert list(table["why not"])[:2] == ["", "hand-made"] and list(table["learning rate"])[:3] == ["0.05", "0.05", "0.1"]
    rates = cpu_families.networks_table().set_index("arch")["learning rate"]
    assert rates.to_dict() == {"cnn_mlp_wide": f"{cpu_study.PROTOCOL['lr']:g}", "resnet_small": f"{resnet_faster:g}",
                               "vgg_small": "pilot pending", "vit_small": "pilot pending"}

    # only the family with a chosen rate is planned, at that rate, in its own folder
    tasks = cpu_families.plan("families", (0, 1), runs_dir=dirs / "runs")
    assert [(t.config.arch, t.config.seed, t.config.control) for t in tasks] == \
        [("resnet_small", seed, control) for seed in (0, 1) for control in CONTROLS]
    assert {t.config.lr for t in tasks} == {resnet_faster}
    assert tasks[0].config.run_dir.is_relative_to(dirs / "runs" / f"lr{resnet_faster:g}")
    # the study's protocol otherwise, SAM's radius scaled to the network's own ||theta_0||
    assert {(t.config.epochs, t.config.max_train_samples, t.config.lr_schedule, t.config.batch_size, t.config.rho_scale)
            for t in tasks} == {(cpu_study.PROTOCOL["epochs"], cpu_study.PROTOCOL["train_images"], "cosine",
                                 cpu_study.PROTOCOL["batch_size"], cpu_study.sam_rho_scale("resnet_small"))}
    assert "hessian_trace" in tasks[0].grid.measures and "corruption_accuracy" in tasks[0].grid.measures


def test_a_family_whose_every_pilot_run_missed_the_bar_is_not_run_and_the_page_says_how_close_it_came(dirs):
    rates = cpu_families.PILOT_LEARNING_RATES["vit_small"]
    write_pilot([pilot_row("vit_small", lr, control, accuracy) for lr, accuracy in zip(rates, (0.39, 0.53))
                 for control in ("aug", "aug_sam")])
    assert cpu_families.family_lr("vit_small") is None
    assert cpu_families.networks_table().set_index("arch").loc["vit_small", "learning rate"] == "none reached a minimum (not run)"
    finding = cpu_families.pilot_finding()
    assert (f"ViT (3 blocks, patch 4) is not run: at none of its learning rates ({', '.join(f'{lr:g}' for lr in rates)}) "
            "did both augmentation controls reach a minimum in 120 epochs") in finding
    assert f"at lr {rates[1]:g}, fitted 53.0% of its measured images (the bar: 95%)" in finding


def test_no_family_is_planned_before_its_pilot_and_the_pilot_trains_the_augmentation_controls(dirs):
    assert cpu_families.plan("families", (0,), runs_dir=dirs / "runs") == []
    pilot = cpu_families.pilot_tasks("vit_small", dirs / "pilot_runs")
    assert [(t.kind, t.config.lr, t.config.control, t.config.seed) for t in pilot] == \
        [("train", lr, control, 0) for lr in cpu_families.PILOT_LEARNING_RATES["vit_small"] for control in ("aug", "aug_sam")]
    assert {(t.config.epochs, t.config.max_train_samples) for t in pilot} == \
        {(cpu_study.PROTOCOL["epochs"], cpu_study.PROTOCOL["train_images"])}
    assert len({t.config.run_dir for t in pilot}) == len(pilot)  # every candidate in its own folder
    finished = pilot[0].config.run_dir
    finished.mkdir(parents=True)
    runs.atomic_write_json(finished / runs.SUMMARY, {"status": "finished"})
    assert [t.config.run_dir for t in cpu_families.pilot_tasks("vit_small", dirs / "pilot_runs")] == \
        [t.config.run_dir for t in pilot[1:]]


def test_batch_lr_plan_skips_the_study_cell_and_puts_whole_seeds_first(dirs):
    tasks = cpu_families.plan("batch-lr", (3, 0), runs_dir=dirs / "runs")
    cells = [(128, 1e-3), (256, 1e-3), (256, 1e-2)]  # (128, 1e-2) is the CPU study's own setting
    order = [(t.config.seed, t.config.batch_size, t.config.lr, t.config.control) for t in tasks]
    assert order == [(seed, b, lr, c) for seed in (3, 0) for b, lr in cells for c in CONTROLS]
    assert tasks[0].grid.measures == cpu_families.BATCH_LR_MEASURES
    assert {t.config.arch for t in tasks} == {cpu_study.PROTOCOL["arch"]}
    assert tasks[6].config.run_dir.is_relative_to(dirs / "runs" / "b256_lr0.001")
    assert "batch 256 lr 0.001" in tasks[6].name
    with pytest.raises(ValueError, match="'batch_lr'.*families, batch-lr"):
        cpu_families.plan("batch_lr")


def commit_run(config, runs_dir, study_dir, *, accuracy, losses, fisher_rao=1.0):
    """A run's small files as the plan commits them, with hand-made per-epoch measured losses."""
    folder = cpu_study.committed_dir(config, runs_dir, study_dir)
    folder.mkdir(parents=True)
    runs.atomic_write_json(folder / runs.CONFIG, config.to_dict())
    runs.atomic_write_json(folder / runs.SUMMARY, {"status": "finished", "train_loss": losses[-1]})
    runs.atomic_write_jsonl(folder / runs.METRICS, [{"epoch": i + 1, "train_loss": loss, "train_accuracy": accuracy,
                                                      "measured_loss": loss} for i, loss in enumerate(losses)])
    (folder / "metrics.json").write_text(json.dumps({"fisher_rao_norm": fisher_rao, "test_accuracy": 50.0,
                                                     "measured_set": {"accuracy": accuracy, "loss": losses[-1]}}))
    (folder / store.PREDICTIONS_JSON).write_text(json.dumps([0, 1, 2]))  # a committed run keeps its test predictions
    return folder


def test_committed_runs_are_skipped_and_the_batch_lr_grid_reads_every_cell(dirs):
    runs_dir = dirs / "runs"
    todo = cpu_families.plan("batch-lr", (0,), runs_dir=runs_dir)
    flat, falling = [0.100, 0.100, 0.100, 0.100, 0.100, 0.099], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    commit_run(todo[0].config, runs_dir, cpu_families.BATCH_LR_DIR, accuracy=0.99, losses=flat)
    commit_run(todo[1].config, runs_dir, cpu_families.BATCH_LR_DIR, accuracy=0.99, losses=falling)
    assert [t.name for t in cpu_families.plan("batch-lr", (0,), runs_dir=runs_dir)] == [t.name for t in todo[2:]]
    assert cpu_families.write_batch_lr_grid() is not None
    # the study's own cell comes from the CPU study's folder, not trained again
    study = cpu_study.grid((0,), runs_dir=dirs / "study_runs").configs("cpu")[0]
    commit_run(study, dirs / "study_runs", cpu_study.STUDY_DIR, accuracy=0.90, losses=flat)
    grid, provenance = store.load_grid(cpu_families.write_batch_lr_grid())
    assert provenance["settings"]["command"] == "python -m sharpness cpu-families --part batch-lr"
    rows = grid.set_index(["batch_size", "lr", "control"])
    assert rows.loc[(128, 1e-3, "baseline"), "at_minimum"]  # 99% and a loss that fell 1%
    assert not rows.loc[(128, 1e-3, "baseline_sam"), "at_minimum"]  # still falling: 0.6 -> 0.1
    assert not rows.loc[(128, 1e-2, "baseline"), "at_minimum"]  # the study's run, at 90% accuracy
    assert "90.0%" in rows.loc[(128, 1e-2, "baseline"), "minimum_reason"]
    assert not any(path.name.endswith(".json") for path in dirs.glob("results/*.json"))  # nothing at results/ top level


def test_families_grid_is_not_written_without_runs(dirs):
    assert cpu_families.write_families_grid() is None and not cpu_families.FAMILIES_GRID.exists()
    assert not store.history_path(cpu_families.FAMILIES_GRID).exists()


def test_the_families_grid_reads_each_family_at_its_chosen_rate_only(dirs):
    runs_dir = dirs / "runs"
    lr = cpu_families.PILOT_LEARNING_RATES["resnet_small"][0]
    write_pilot([pilot_row("resnet_small", lr, control, 0.99) for control in ("aug", "aug_sam")])
    flat = [0.100, 0.100, 0.100, 0.100, 0.100, 0.099]
    chosen = cpu_families.family_grid("resnet_small", (0,), lr, runs_dir=runs_dir).configs("cpu")[0]
    other = cpu_families.family_grid("resnet_small", (0,), 1e-2, runs_dir=runs_dir).configs("cpu")[0]
    commit_run(chosen, runs_dir, cpu_families.FAMILIES_DIR, accuracy=0.99, losses=flat)
    commit_run(other, runs_dir, cpu_families.FAMILIES_DIR, accuracy=0.99, losses=flat, fisher_rao=7.0)
    grid, provenance = store.load_grid(cpu_families.write_families_grid())
    assert list(grid["lr"]) == [lr] and list(grid["fisher_rao_norm"]) == [1.0]
    assert provenance["settings"]["lr"] == {"resnet_small": lr}
    # a pilot that no longer shows the rate leaves no grid behind
    write_pilot([pilot_row("resnet_small", lr, control, 0.50) for control in ("aug", "aug_sam")])
    assert cpu_families.write_families_grid() is None and not cpu_families.FAMILIES_GRID.exists()
    assert not store.history_path(cpu_families.FAMILIES_GRID).exists()


def test_plan_hours_extrapolate_the_studys_measured_runs(monkeypatch):
    # the study's own network costs exactly its measured seed-0 runs: 635 + 789 + 618 + 746 + 425 + 546 = 3,759 s
    # per seed, 3 seeds on 2 workers
    assert cpu_families.plan_hours("cnn_mlp_wide") == pytest.approx(3759 * 3 / 2 / 3600)
    monkeypatch.setitem(cpu_families.FAMILY_COST, "double", {"sgd": 2.0, "sam": 2.0, "forward": 2.0})
    assert cpu_families.plan_hours("double", seeds=5, workers=1) == pytest.approx(2 * 3759 * 5 / 3600)
    # only the SAM step is dearer: the SAM controls' training steps (438 + 322 + 284 s) are added once more
    monkeypatch.setitem(cpu_families.FAMILY_COST, "sam_only", {"sgd": 1.0, "sam": 2.0, "forward": 1.0})
    assert cpu_families.plan_hours("sam_only", seeds=1, workers=1) == pytest.approx((3759 + 438 + 322 + 284) / 3600)


def test_the_families_command_trains_every_pilot_first_and_runs_no_family_whose_pilot_missed_the_bar(study, dirs, monkeypatch):
    """End to end on the tiny pack: one epoch fits no augmented image set, so the pilot is trained and recorded and
    no family run is made (the protocol cut to one epoch on 64 images by the `study` fixture)."""
    monkeypatch.setattr(cpu_families, "FAMILIES", ("vgg_small",))
    monkeypatch.setitem(cpu_families.PILOT_LEARNING_RATES, "vgg_small", (1e-2,))
    monkeypatch.setattr(cpu_families, "FAMILIES_RUNS_DIR", study / "runs")
    pilot_runs = study / "pilot_runs"
    failures = cpu_families._run_families((0,), workers=1, data_dir=study / "pack", runs_dir=study / "runs",
                                          progress=False, pilot_runs_dir=pilot_runs)
    assert failures == 0
    pilot = cpu_pilot.load_pilot(cpu_families.PILOT_FILE)
    assert sorted(pilot["control"]) == ["aug", "aug_sam"] and pilot["epochs_done"].eq(1).all()
    assert pilot["lr"].eq(1e-2).all() and pilot["train_images"].eq(64).all()
    assert not pilot["reached_minimum"].any()  # one epoch of augmented digits is no minimum
    assert cpu_families.family_lr("vgg_small") is None
    assert not (study / "runs").exists() and not cpu_families.FAMILIES_GRID.exists()
    # a second call trains nothing again
    assert cpu_families.pilot_tasks("vgg_small", pilot_runs, study / "pack") == []


def test_a_fresh_clone_resumes_the_pilot_from_its_committed_file(study, dirs, monkeypatch):
    """Runs recorded as finished in the committed pilot file are not trained again, and a new pilot run measured
    here joins them instead of replacing them."""
    monkeypatch.setitem(cpu_families.PILOT_LEARNING_RATES, "vgg_small", (1e-2,))
    protocol = cpu_study.PROTOCOL
    recorded = {**pilot_row("vgg_small", 1e-2, "aug", 0.99, epochs_done=protocol["epochs"]),
                "epochs": protocol["epochs"], "train_images": protocol["train_images"]}
    write_pilot([recorded])
    pilot_runs = study / "pilot_runs"
    todo = cpu_families.pilot_tasks("vgg_small", pilot_runs, study / "pack")
    assert [t.config.control for t in todo] == ["aug_sam"]  # aug is in the file, with no checkpoint here
    assert cpu_study.run_tasks(todo, workers=1, runs_dir=pilot_runs, study_dir=cpu_families.PILOT_FILE.parent,
                               write=lambda: cpu_families.record_pilot(pilot_runs), progress=False) == 0
    rows = cpu_pilot.load_pilot(cpu_families.PILOT_FILE)
    assert sorted(rows["control"]) == ["aug", "aug_sam"]
    assert rows.set_index("control").loc["aug", "measured_set_accuracy"] == 0.99  # the committed row, kept as it was
    assert not list(cpu_families.PILOT_FILE.parent.glob("*.measured.json"))
    assert cpu_families.pilot_tasks("vgg_small", pilot_runs, study / "pack") == []
