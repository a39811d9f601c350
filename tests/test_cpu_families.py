"""sharpness.studies.cpu_families: the order of the work, resuming from results/, and the grids written from committed runs."""

import json

import pandas as pd
import pytest

from sharpness.core import runs
from sharpness.studies import cpu_families, cpu_study, setting_pilot, store
from sharpness.training.controls import CONTROLS


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    for module, name in ((cpu_families, "FAMILIES_DIR"), (cpu_families, "BATCH_LR_DIR"), (cpu_study, "STUDY_DIR")):
        monkeypatch.setattr(module, name, tmp_path / "results" / name.lower())
    monkeypatch.setattr(cpu_families, "FAMILIES_GRID", cpu_families.FAMILIES_DIR / "families.json")
    monkeypatch.setattr(cpu_families, "FAMILY_PILOT_FILE", cpu_families.FAMILIES_DIR / "pilot.json")
    monkeypatch.setattr(cpu_families, "BATCH_LR_GRID", cpu_families.BATCH_LR_DIR / "batch_lr.json")
    monkeypatch.setattr(cpu_families, "BATCH_LR_PILOT_FILE", cpu_families.BATCH_LR_DIR / "pilot.json")
    return tmp_path


def pilot_row(arch, lr, control, accuracy, *, reached=None, epochs_done=None, epochs=None, batch_size=None):
    """One run of a pilot as `cpu_pilot.measure` records it (the protocol's epochs unless given, no batch size unless
    given, as the first family pilot recorded it; the verdict: finished and over the 95% bar, unless given)."""
    epochs = epochs or cpu_study.PROTOCOL["epochs"]
    epochs_done = epochs if epochs_done is None else epochs_done
    return {"arch": arch, "lr": lr, "control": control, "epochs": epochs, "epochs_done": epochs_done,
            **({} if batch_size is None else {"batch_size": batch_size}),
            "measured_set_accuracy": accuracy,
            "reached_minimum": (accuracy >= 0.95 and epochs_done == epochs) if reached is None else reached,
            "reason": "hand-made"}


def write_pilot(rows, path=None):
    runs.atomic_write_json(path or cpu_families.FAMILY_PILOT_FILE, {"provenance": {}, "runs": rows})


def family_pilot_tasks(arch, runs_dir, data_dir=None):
    return setting_pilot.next_round(arch, cpu_families.PILOT_SETTINGS[arch], cpu_families.FAMILY_PILOT_FILE, runs_dir, data_dir)


def test_a_family_runs_at_the_first_learning_rate_where_both_augmentation_controls_reached_a_minimum(dirs):
    resnet_fast, resnet_faster = (setting.lr for setting in cpu_families.PILOT_SETTINGS["resnet_small"])
    vgg_first = cpu_families.PILOT_SETTINGS["vgg_small"][0].lr
    write_pilot([
        # ResNet: aug_sam short of the bar at the first rate, both over it at the second
        pilot_row("resnet_small", resnet_fast, "aug", 0.97), pilot_row("resnet_small", resnet_fast, "aug_sam", 0.90),
        pilot_row("resnet_small", resnet_faster, "aug", 0.99), pilot_row("resnet_small", resnet_faster, "aug_sam", 0.98),
        # VGG: both over the bar, but aug_sam stopped before its last epoch: not a minimum yet
        pilot_row("vgg_small", vgg_first, "aug", 0.99), pilot_row("vgg_small", vgg_first, "aug_sam", 0.99, epochs_done=60),
    ])
    assert cpu_families.family_setting("resnet_small") == cpu_families.Setting(resnet_faster)
    assert cpu_families.family_setting("vgg_small") is None and cpu_families.family_setting("vit_small") is None
    finding = cpu_families.pilot_finding()
    assert f"ResNet-8 runs at lr {resnet_faster:g}" in finding and "ViT (3 blocks, patch 4): no pilot run finished yet" in finding
    assert "VGG-8 (BN): no setting chosen yet; 3 pilot run(s) still to finish" in finding
    # a stage's finding (printed after its pilot) speaks of that stage's subjects only
    assert cpu_families.pilot_finding(stage=("VGG-8 (BN)",)) == \
        "VGG-8 (BN): no setting chosen yet; 3 pilot run(s) still to finish."
    table = setting_pilot.table(setting_pilot.load(cpu_families.FAMILY_PILOT_FILE))
    assert list(table["at a minimum"]) == ["yes", "no", "yes", "yes", "yes", "no"]  # ResNet-8 0.05, 0.1, then VGG
    assert list(table["why not"])[:2] == ["", "hand-made"] and list(table["learning rate"])[:3] == ["0.05", "0.05", "0.1"]
    # a run at a setting since dropped from the network's candidates (lr 0.1 for the VGG) is marked as such
    write_pilot([*setting_pilot.load(cpu_families.FAMILY_PILOT_FILE).to_dict("records"),
                 pilot_row("vgg_small", 0.1, "aug", 0.40, epochs_done=30), pilot_row("vgg_small", 0.1, "aug_sam", 0.99)])
    assert 0.1 not in {setting.lr for setting in cpu_families.PILOT_SETTINGS["vgg_small"]}
    marked = setting_pilot.table(setting_pilot.load(cpu_families.FAMILY_PILOT_FILE), cpu_families.pilot_candidates("families"))
    assert list(marked["why not"]) == ["", "hand-made", "", "", "", "hand-made", "hand-made; no longer a candidate setting",
                                       "no longer a candidate setting"]  # at a minimum there: nothing else to say
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


def test_a_family_whose_every_pilot_run_missed_the_bar_is_not_run_and_the_page_says_how_close_it_came(dirs, monkeypatch):
    monkeypatch.setitem(cpu_families.PILOT_SETTINGS, "vit_small", (cpu_families.Setting(0.01), cpu_families.Setting(0.05, 360)))
    write_pilot([pilot_row("vit_small", 0.01, control, 0.39) for control in ("aug", "aug_sam")])
    assert cpu_families.networks_table().set_index("arch").loc["vit_small", "learning rate"] == "pilot pending"
    assert "ViT (3 blocks, patch 4): no setting chosen yet; 2 pilot run(s) still to finish" in cpu_families.pilot_finding()
    write_pilot([pilot_row("vit_small", 0.01, control, 0.39) for control in ("aug", "aug_sam")] +
                [pilot_row("vit_small", 0.05, control, 0.53 if control == "aug_sam" else 0.96, epochs=360)
                 for control in ("aug", "aug_sam")])
    assert cpu_families.family_setting("vit_small") is None
    assert cpu_families.networks_table().set_index("arch").loc["vit_small", "learning rate"] == "none reached a minimum (not run)"
    finding = cpu_families.pilot_finding()
    assert ("ViT (3 blocks, patch 4) is not run: at none of its settings (lr 0.01, lr 0.05 for 360 epochs; 120 epochs "
            "where not said) did both augmentation controls reach a minimum") in finding
    # the closest setting is the one whose worse control got furthest: aug_sam at 53% for 360 epochs, not aug's 96%
    assert "the closest, lr 0.05 for 360 epochs, left aug_sam at 53.0% of its measured images (the bar: 95%)" in finding


def test_a_family_chosen_at_longer_training_runs_and_is_read_at_those_epochs_only(dirs, monkeypatch):
    longer = cpu_families.Setting(0.05, 360)
    monkeypatch.setitem(cpu_families.PILOT_SETTINGS, "vit_small", (cpu_families.Setting(0.05), longer))
    write_pilot([pilot_row("vit_small", 0.05, control, 0.53) for control in ("aug", "aug_sam")] +
                [pilot_row("vit_small", 0.05, control, 0.97, epochs=360) for control in ("aug", "aug_sam")])
    assert cpu_families.family_setting("vit_small") == longer
    assert "ViT (3 blocks, patch 4) runs at lr 0.05 for 360 epochs" in cpu_families.pilot_finding()
    row = cpu_families.networks_table().set_index("arch").loc["vit_small"]
    assert row["learning rate"] == "0.05 for 360 epochs"
    assert pd.isna(row[f"estimated hours for 6 controls x {len(cpu_families.FAMILY_SEEDS)} seeds"])  # no study run to scale
    # three times the steps; the test pass every third epoch (as many as in 120 epochs) and the evaluation the same
    costs = {control: {"steps": 1.0, "test_pass": 0.3, "evaluation": 40.0, "hessian": 20.0} for control in CONTROLS}
    assert cpu_families.run_seconds("vit_small", "aug", costs, 360) - cpu_families.run_seconds("vit_small", "aug", costs) == \
        pytest.approx(240 * 1.0 * cpu_families.FAMILY_COST["vit_small"]["sgd"])
    runs_dir = dirs / "runs"
    tasks = cpu_families.plan("families", (0,), runs_dir=runs_dir)
    assert {(t.config.arch, t.config.lr, t.config.epochs) for t in tasks} == {("vit_small", 0.05, 360)}
    assert tasks[0].config.run_dir.is_relative_to(runs_dir / "lr0.05_e360") and "360 epochs" in tasks[0].name
    # three times the protocol's epochs: the test curve every third epoch (120 points), in the pilot's run as in the grid's
    assert tasks[0].config.monitor_every == 3
    assert setting_pilot.run_config("vit_small", longer, "aug", runs_dir).monitor_every == 3
    assert setting_pilot.run_config("vit_small", cpu_families.Setting(0.05, 1_200), "aug", runs_dir).monitor_every == 10
    flat = [0.100, 0.100, 0.100, 0.100, 0.100, 0.099]
    shorter = cpu_families.family_grid("vit_small", (0,), cpu_families.Setting(0.05), runs_dir=runs_dir).configs("cpu")[0]
    assert shorter.monitor_every == 1
    commit_run(tasks[0].config, runs_dir, cpu_families.FAMILIES_DIR, accuracy=0.99, losses=flat)
    commit_run(shorter, runs_dir, cpu_families.FAMILIES_DIR, accuracy=0.99, losses=flat, fisher_rao=7.0)
    grid, provenance = store.load_grid(cpu_families.write_families_grid())
    assert list(grid["epochs"]) == [360] and list(grid["fisher_rao_norm"]) == [1.0]
    assert provenance["settings"]["epochs"] == {"vit_small": 360} and provenance["settings"]["lr"] == {"vit_small": 0.05}


def test_no_family_is_planned_before_its_pilot_and_the_pilot_tries_one_setting_at_a_time(dirs, monkeypatch):
    """A round trains the augmentation controls at the first candidate whose verdict is not in the pilot file; a
    candidate both of whose runs missed the bar (or diverged) leads to the next, a chosen one ends the pilot."""
    settings = (cpu_families.Setting(0.01), cpu_families.Setting(0.05), cpu_families.Setting(0.05, 360))
    monkeypatch.setitem(cpu_families.PILOT_SETTINGS, "vit_small", settings)
    assert cpu_families.plan("families", (0,), runs_dir=dirs / "runs") == []

    def round_():
        tasks = family_pilot_tasks("vit_small", dirs / "pilot_runs")
        assert {t.kind for t in tasks} <= {"train"} and {t.config.seed for t in tasks} <= {0}
        assert {t.config.max_train_samples for t in tasks} <= {cpu_study.PROTOCOL["train_images"]}
        return [(t.config.lr, t.config.epochs, t.config.control) for t in tasks]

    epochs = cpu_study.PROTOCOL["epochs"]
    assert round_() == [(0.01, epochs, "aug"), (0.01, epochs, "aug_sam")]
    write_pilot([pilot_row("vit_small", 0.01, "aug", 0.40)])
    assert round_() == [(0.01, epochs, "aug_sam")]  # one verdict in: the other control of the same setting
    write_pilot([pilot_row("vit_small", 0.01, "aug", 0.40), pilot_row("vit_small", 0.01, "aug_sam", 0.30, epochs_done=7)])
    assert round_() == [(0.01, epochs, "aug_sam")]  # stopped early is no verdict
    diverged = {**pilot_row("vit_small", 0.01, "aug_sam", 0.10, epochs_done=7), "status": "diverged"}
    write_pilot([pilot_row("vit_small", 0.01, "aug", 0.40), diverged])
    assert round_() == [(0.05, epochs, "aug"), (0.05, epochs, "aug_sam")]  # diverged is a verdict: the next setting
    assert setting_pilot.runs_left("vit_small", settings, setting_pilot.load(cpu_families.FAMILY_PILOT_FILE)) == 4
    write_pilot([pilot_row("vit_small", 0.01, "aug", 0.40), diverged,
                 pilot_row("vit_small", 0.05, "aug", 0.96), pilot_row("vit_small", 0.05, "aug_sam", 0.97)])
    assert round_() == [] and cpu_families.family_setting("vit_small") == settings[1]  # 360 epochs never tried
    assert setting_pilot.runs_left("vit_small", settings, setting_pilot.load(cpu_families.FAMILY_PILOT_FILE)) == 0
    folders = {setting_pilot.run_config("vit_small", s, c, dirs / "pilot_runs").run_dir for s in settings for c in ("aug", "aug_sam")}
    assert len(folders) == 6  # every candidate in its own folder


def test_each_family_finishes_its_grid_before_the_next_familys_pilot_starts(dirs, monkeypatch):
    """`run_part` works family by family: a decided family's runs come before the pilot of a family still
    undecided, so an interruption leaves whole families (the training itself is replaced by a log)."""
    monkeypatch.setattr(cpu_families, "FAMILIES", ("resnet_small", "vit_small"))
    write_pilot([pilot_row("resnet_small", 0.05, control, 0.99) for control in ("aug", "aug_sam")])
    monkeypatch.setattr(cpu_study, "prepare_data", lambda *args, **kwargs: None)
    log = []

    def run_tasks(todo, **kwargs):
        log.append((kwargs["desc"], sorted({(t.kind, t.config.arch, t.config.seed) for t in todo})))
        return 0

    monkeypatch.setattr(cpu_study, "run_tasks", run_tasks)
    assert cpu_families.run_part("families", (0, 1), workers=1, runs_dir=dirs / "runs", progress=False,
                                 pilot_runs_dir=dirs / "pilot_runs") == 0
    assert log == [("CPU families", [("run", "resnet_small", 0), ("run", "resnet_small", 1)]),
                   ("families pilot", [("train", "vit_small", 0)])]


def test_a_decided_cell_runs_its_seeds_before_the_next_cells_pilot(dirs, monkeypatch):
    """The sweep works cell by cell too: a cell its pilot decided runs all its seeds before the pilot of a cell
    that is still searching (whose 1200-epoch round can take hours) trains anything."""
    batch_lr_pilot((256, 1e-2, 120, 0.80, 0.80), (256, 1e-2, 360, 0.99, 0.98))
    monkeypatch.setattr(cpu_study, "prepare_data", lambda *args, **kwargs: None)
    log = []

    def run_tasks(todo, **kwargs):
        log.append((kwargs["desc"], [(t.kind, t.config.batch_size, t.config.lr, t.config.epochs, t.config.seed) for t in todo]))
        return 0

    monkeypatch.setattr(cpu_study, "run_tasks", run_tasks)
    assert cpu_families.run_part("batch-lr", (0, 1), workers=1, runs_dir=dirs / "runs", progress=False,
                                 pilot_runs_dir=dirs / "pilot_runs") == 0
    first, pilot = log[0], log[1]
    assert first == ("CPU batch-lr", [("run", 256, 1e-2, 360, seed) for seed in (0, 1) for _ in CONTROLS])
    assert pilot == ("batch-lr pilot", [("train", 128, 1e-3, 120, 0)] * 2)  # the next cell's first round


def test_committed_family_runs_are_measured_again_from_their_checkpoints(study, dirs, monkeypatch):
    """`cpu-families --re-evaluate`: every committed run of a chosen family measured by older code is measured
    again from its checkpoint (the same predictions), and the grid rewritten; nothing is trained."""
    import argparse

    monkeypatch.setattr(cpu_families, "FAMILIES", ("vgg_small",))
    write_pilot([pilot_row("vgg_small", 1e-2, control, 0.99) for control in ("aug", "aug_sam")])
    runs_dir = study / "runs"
    assert cpu_families.run_part("families", (0,), workers=1, data_dir=study / "pack", runs_dir=runs_dir,
                                 progress=False, pilot_runs_dir=study / "pilot_runs") == 0
    committed = sorted(cpu_families.FAMILIES_DIR.rglob("metrics.json"))
    assert len(committed) == len(CONTROLS)
    before = {path: json.loads(path.read_text()) for path in committed}
    for path, metrics in before.items():  # measured by a commit this repository does not know: older code
        path.write_text(json.dumps({**metrics, "code": {"commit": "f" * 40, "dirty": False}}))
    checkpoints = {path: path.stat().st_mtime_ns for path in runs_dir.rglob("checkpoint.pt")}
    parser = argparse.ArgumentParser()
    cpu_families.add_arguments(parser)
    args = parser.parse_args(["--part", "families", "--seeds", "0", "--workers", "1", "--re-evaluate",
                              "--runs-dir", str(study / "all_runs"), "--data-dir", str(study / "pack"), "--no-progress"])
    with pytest.raises(ValueError, match="checkpoint.pt is missing.*--runs-dir"):  # not the folder that trained them
        cpu_families.main(args)
    args.runs_dir = None
    monkeypatch.setattr(cpu_families, "FAMILIES_RUNS_DIR", runs_dir)
    assert cpu_families.main(args) == 0
    for path, metrics in before.items():
        again = json.loads(path.read_text())
        assert again["code"]["commit"] != "f" * 40
        assert again["test_accuracy"] == metrics["test_accuracy"]
        assert again["fisher_rao_norm"] == pytest.approx(metrics["fisher_rao_norm"], rel=1e-5)
    assert {path: path.stat().st_mtime_ns for path in runs_dir.rglob("checkpoint.pt")} == checkpoints  # not trained
    assert store.load_grid(cpu_families.FAMILIES_GRID)[0]["test_accuracy"].notna().all()


def batch_lr_pilot(*cells):
    """A batch x lr pilot file: for each (batch, lr, epochs, aug accuracy, aug_sam accuracy), its two runs."""
    arch = cpu_study.PROTOCOL["arch"]
    write_pilot([pilot_row(arch, lr, control, accuracy, epochs=epochs, batch_size=batch)
                 for batch, lr, epochs, *accuracies in cells for control, accuracy in zip(("aug", "aug_sam"), accuracies)],
                cpu_families.BATCH_LR_PILOT_FILE)


def test_batch_lr_cells_run_at_their_pilots_setting_skip_the_study_cell_and_go_cell_by_cell(dirs):
    assert cpu_families.plan("batch-lr", (0,), runs_dir=dirs / "runs") == []  # no cell before its pilot
    pilot = setting_pilot.next_round(cpu_study.PROTOCOL["arch"], cpu_families.CELL_SETTINGS[(256, 1e-3)],
                                     cpu_families.BATCH_LR_PILOT_FILE, dirs / "pilot_runs")
    assert [(t.config.batch_size, t.config.lr, t.config.epochs, t.config.control) for t in pilot] == \
        [(256, 1e-3, cpu_study.PROTOCOL["epochs"], control) for control in ("aug", "aug_sam")]
    assert [s.epochs for s in cpu_families.CELL_SETTINGS[(256, 1e-3)]] == [None, 1_200, 2_400]
    assert [s.epochs for s in cpu_families.CELL_SETTINGS[(128, 1e-3)]] == [None, 1_200]
    assert [s.epochs for s in cpu_families.CELL_SETTINGS[(256, 1e-2)]] == [None, 360, 1_200]
    assert (128, 1e-2) not in cpu_families.CELL_SETTINGS  # the CPU study's own setting: no pilot, its runs stand
    assert set(cpu_families.CELL_SETTINGS) | {(128, 1e-2)} == {(b, lr) for b in (128, 256) for lr in (1e-3, 1e-2)}

    batch_lr_pilot((128, 1e-3, 120, 0.60, 0.50), (128, 1e-3, 360, 0.93, 0.90), (128, 1e-3, 1200, 0.99, 0.97),
                   (256, 1e-3, 120, 0.50, 0.40), (256, 1e-3, 360, 0.80, 0.70), (256, 1e-3, 1200, 0.97, 0.94),
                   (256, 1e-3, 2400, 0.98, 0.945), (256, 1e-2, 120, 0.98, 0.96))
    assert cpu_families.cell_setting(128, 1e-3) == cpu_families.Setting(1e-3, 1200, 128)
    assert cpu_families.cell_setting(256, 1e-3) is None and cpu_families.cell_setting(256, 1e-2) == cpu_families.Setting(1e-2, None, 256)
    finding = cpu_families.pilot_finding("batch-lr")
    assert "batch 128, lr 0.001 runs for 1200 epochs (both augmentation controls" in finding  # its name says the rest
    assert "batch 256, lr 0.01 runs for the protocol's 120 epochs" in finding
    assert "the closest, batch 256, lr 0.001 for 2400 epochs, left aug_sam at 94.5%" in finding
    cells = cpu_families.cells_table().set_index("cell")["runs at"].to_dict()
    assert cells == {"batch 128, lr 0.001": "batch 128, lr 0.001 for 1200 epochs", "batch 128, lr 0.01": "the CPU study's runs",
                     "batch 256, lr 0.001": "none reached a minimum (not run)", "batch 256, lr 0.01": "batch 256, lr 0.01"}

    tasks = cpu_families.plan("batch-lr", (3, 0), runs_dir=dirs / "runs")
    order = [(t.config.seed, t.config.batch_size, t.config.lr, t.config.epochs, t.config.control) for t in tasks]
    # Cell by cell (the cheapest first: CELL_ORDER), and within a cell seed by seed, all controls of a seed together.
    assert order == [(seed, b, lr, epochs, c) for b, lr, epochs in ((256, 1e-2, 120), (128, 1e-3, 1200)) for seed in (3, 0)
                     for c in CONTROLS]
    assert tasks[0].grid.measures == cpu_families.BATCH_LR_MEASURES
    assert {t.config.arch for t in tasks} == {cpu_study.PROTOCOL["arch"]}
    assert tasks[0].config.run_dir.is_relative_to(dirs / "runs" / "b256_lr0.01")
    assert tasks[12].config.run_dir.is_relative_to(dirs / "runs" / "b128_lr0.001_e1200")
    assert "batch 128 lr 0.001 1200 epochs" in tasks[12].name
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
    batch_lr_pilot((128, 1e-3, 120, 0.99, 0.99), (256, 1e-2, 120, 0.99, 0.99))
    todo = cpu_families.plan("batch-lr", (0,), runs_dir=runs_dir)
    flat, falling = [0.100, 0.100, 0.100, 0.100, 0.100, 0.099], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    commit_run(todo[0].config, runs_dir, cpu_families.BATCH_LR_DIR, accuracy=0.99, losses=flat)
    commit_run(todo[1].config, runs_dir, cpu_families.BATCH_LR_DIR, accuracy=0.99, losses=falling)
    assert [t.name for t in cpu_families.plan("batch-lr", (0,), runs_dir=runs_dir)] == [t.name for t in todo[2:]]
    assert cpu_families.write_batch_lr_grid() is not None
    # the study's own cell comes from the CPU study's folder, not trained again
    study = cpu_study.grid((0,), runs_dir=dirs / "study_runs").configs("cpu")[0]
    commit_run(study, dirs / "study_runs", cpu_study.STUDY_DIR, accuracy=0.90, losses=flat)
    # the study's rho sweep (baseline_sam at another radius, the same batch and lr) is not the study's cell
    rho = cpu_study.grid((0,), runs_dir=dirs / "study_runs", rhos=[0.25]).configs("cpu")[0]
    assert commit_run(rho, dirs / "study_runs", cpu_study.STUDY_DIR, accuracy=0.99, losses=flat).is_relative_to(
        cpu_study.STUDY_DIR / "rho0.25")
    grid, provenance = store.load_grid(cpu_families.write_batch_lr_grid())
    assert provenance["settings"]["command"] == "python -m sharpness cpu-families --part batch-lr"
    rows = grid.set_index(["batch_size", "lr", "control"])
    assert rows.loc[(256, 1e-2, "baseline"), "at_minimum"]  # 99% and a loss that fell 1% (the first cell: CELL_ORDER)
    assert not rows.loc[(256, 1e-2, "baseline_sam"), "at_minimum"]  # still falling: 0.6 -> 0.1
    assert not rows.loc[(128, 1e-2, "baseline"), "at_minimum"]  # the study's run, at 90% accuracy
    assert len(grid[grid["batch_size"].eq(128) & grid["lr"].eq(1e-2)]) == 1  # not the rho sweep's run
    assert "90.0%" in rows.loc[(128, 1e-2, "baseline"), "minimum_reason"]
    assert not any(path.name.endswith(".json") for path in dirs.glob("results/*.json"))  # nothing at results/ top level


def test_reserve_seeds_are_added_while_a_control_could_not_reach_its_count_of_minima():
    """Worked by hand: a cell needs 5 runs at a minimum of every control, a family 3; an uncommitted run counts as
    a possible minimum, so a miss adds the next seed only where the default seeds can no longer make up the count."""
    cell = cpu_families.BATCH_LR_SEEDS
    assert cell == (0, 1, 2, 3, 4) and cpu_families.MINIMA_PER_CONTROL == {"families": 3, "batch-lr": 5}
    assert cpu_families.with_reserve_seeds("batch-lr", {}) == cell  # nothing committed: every run may reach one
    every = {(control, seed): True for control in CONTROLS for seed in cell}
    assert cpu_families.with_reserve_seeds("batch-lr", every) == cell
    one_miss = {**every, ("aug_sam", 1): False}  # batch 256 / lr 0.01: aug_sam seed 1 still falling
    assert cpu_families.with_reserve_seeds("batch-lr", one_miss) == (0, 1, 2, 3, 4, 5)
    # a miss in the reserve seed itself: one more; two controls missing once each still need one seed (matched)
    assert cpu_families.with_reserve_seeds("batch-lr", {**one_miss, ("aug_sam", 5): False}) == (0, 1, 2, 3, 4, 5, 6)
    assert cpu_families.with_reserve_seeds("batch-lr", {**one_miss, ("wd", 3): False}) == (0, 1, 2, 3, 4, 5)
    # capped at MAX_RESERVE_SEEDS more: a control that keeps missing is reported short, not trained for ever
    misses = {**every, **{("aug", seed): False for seed in range(7)}}
    assert cpu_families.with_reserve_seeds("batch-lr", misses) == (0, 1, 2, 3, 4, 5, 6)
    # a family's four default seeds leave room for one miss (the ViT's aug_sam seed 2), not for two
    family = cpu_families.FAMILY_SEEDS
    assert cpu_families.with_reserve_seeds("families", {("aug_sam", 2): False}) == family
    assert cpu_families.with_reserve_seeds("families", {("aug_sam", 2): False, ("aug_sam", 0): False}) == (*family, 4)


def test_a_cell_short_of_minima_plans_a_matched_reserve_seed_and_the_command_runs_it(dirs, monkeypatch):
    """Run by the plan, a cell whose run missed a minimum gets the next seed of all six controls, planned again after
    the round that committed the miss; seeds given on the command line are run as given. (Training is replaced by
    committing hand-made runs: the baseline_sam run of seed 1 still falling, every other at a minimum.)"""
    monkeypatch.setattr(cpu_families, "BATCH_LR_SEEDS", (0, 1))
    monkeypatch.setitem(cpu_families.MINIMA_PER_CONTROL, "batch-lr", 2)
    # the first cell chosen at 120 epochs; every candidate of the other cells missed (no pilot left to train)
    batch_lr_pilot((256, 1e-2, 120, 0.99, 0.99), *((batch, lr, setting.trained_epochs(), 0.5, 0.5)
                                                   for (batch, lr), settings in cpu_families.CELL_SETTINGS.items()
                                                   if (batch, lr) != (256, 1e-2) for setting in settings))
    monkeypatch.setattr(cpu_study, "prepare_data", lambda *args, **kwargs: None)
    runs_dir, rounds = dirs / "runs", []
    flat, falling = [0.100, 0.100, 0.100, 0.100, 0.100, 0.099], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]

    def run_tasks(todo, **kwargs):
        rounds.append(sorted({t.config.seed for t in todo}))
        for task in todo:
            missed = (task.config.control, task.config.seed) == ("baseline_sam", 1)
            commit_run(task.config, runs_dir, cpu_families.BATCH_LR_DIR, accuracy=0.99, losses=falling if missed else flat)
        return 0

    monkeypatch.setattr(cpu_study, "run_tasks", run_tasks)
    assert [t.config.seed for t in cpu_families.plan("batch-lr", runs_dir=runs_dir)] == [0] * 6 + [1] * 6
    assert cpu_families.run_part("batch-lr", workers=1, runs_dir=runs_dir, progress=False,
                                 pilot_runs_dir=dirs / "pilot_runs") == 0
    assert rounds == [[0, 1], [2]]  # the miss committed in the first round called for seed 2, all six controls
    grid, provenance = store.load_grid(cpu_families.BATCH_LR_GRID)
    assert len(grid) == 18 and int(grid["at_minimum"].sum()) == 17
    assert grid[grid["control"] == "baseline_sam"]["at_minimum"].tolist() == [True, False, True]
    assert provenance["settings"]["minima_per_control"] == 2 and provenance["settings"]["reserve_seeds_at_most"] == 2
    assert cpu_families.plan("batch-lr", runs_dir=runs_dir) == []  # every control has its two minima
    # seeds given by hand are not topped up: seed 3 alone is planned, whatever the cell's misses
    assert {t.config.seed for t in cpu_families.plan("batch-lr", (3,), runs_dir=runs_dir)} == {3}


def test_families_grid_is_not_written_without_runs(dirs):
    assert cpu_families.write_families_grid() is None and not cpu_families.FAMILIES_GRID.exists()
    assert not store.history_path(cpu_families.FAMILIES_GRID).exists()


def test_the_families_grid_reads_each_family_at_its_chosen_rate_only(dirs):
    runs_dir = dirs / "runs"
    lr = cpu_families.PILOT_SETTINGS["resnet_small"][0].lr
    write_pilot([pilot_row("resnet_small", lr, control, 0.99) for control in ("aug", "aug_sam")])
    flat = [0.100, 0.100, 0.100, 0.100, 0.100, 0.099]
    chosen = cpu_families.family_grid("resnet_small", (0,), cpu_families.Setting(lr), runs_dir=runs_dir).configs("cpu")[0]
    other = cpu_families.family_grid("resnet_small", (0,), cpu_families.Setting(1e-2), runs_dir=runs_dir).configs("cpu")[0]
    commit_run(chosen, runs_dir, cpu_families.FAMILIES_DIR, accuracy=0.99, losses=flat)
    commit_run(other, runs_dir, cpu_families.FAMILIES_DIR, accuracy=0.99, losses=flat, fisher_rao=7.0)
    grid, provenance = store.load_grid(cpu_families.write_families_grid())
    assert list(grid["lr"]) == [lr] and list(grid["fisher_rao_norm"]) == [1.0]
    assert provenance["settings"]["lr"] == {"resnet_small": lr}
    # a pilot that no longer shows the rate leaves no grid behind
    write_pilot([pilot_row("resnet_small", lr, control, 0.50) for control in ("aug", "aug_sam")])
    assert cpu_families.write_families_grid() is None and not cpu_families.FAMILIES_GRID.exists()
    assert not store.history_path(cpu_families.FAMILIES_GRID).exists()


def test_plan_hours_extrapolate_the_studys_committed_runs(tmp_path, monkeypatch):
    """Per control, the study's median epoch (steps; the test pass: wall beyond the steps) and mean evaluation (the
    Hessian measures apart), scaled by a family's cost ratios; the minimum criterion's rows are left out."""
    folders = []
    for control in CONTROLS:
        steps = [2.0, 2.0, 2.4] if control.endswith("sam") else [1.0, 1.0, 1.2]
        rows = [{"epoch": i + 1, "train_seconds": t, "epoch_wall_seconds": t + 0.5, "test_accuracy": 0.5} for i, t in enumerate(steps)]
        rows.append({"epoch": 4, "train_seconds": 9.0, "epoch_wall_seconds": 20.0, "test_accuracy": 0.5, "measured_loss": 0.1})
        folder = tmp_path / control / "seed0"
        folder.mkdir(parents=True)
        runs.atomic_write_json(folder / runs.CONFIG, {"control": control, "seed": 0})
        runs.atomic_write_jsonl(folder / runs.METRICS, rows)
        runs.atomic_write_json(folder / "metrics.json", {"seconds": {"test_predictions": 10.0, "hessian_trace": 30.0,
                                                                     "clean.hessian_top_eigenvalue": 10.0}})
        folders.append(folder)
    costs = cpu_families.study_seconds(folders)
    assert costs["aug_sam"] == {"steps": 2.0, "test_pass": pytest.approx(0.5), "evaluation": 10.0, "hessian": 40.0}
    # at 120 epochs an SGD run is 120 x (1.0 + 0.5) + 10 + 40 = 230 s, a SAM run 120 x (2.0 + 0.5) + 50 = 350 s
    assert cpu_families.plan_hours("cnn_mlp_wide", seeds=3, costs=costs) == pytest.approx((3 * 230 + 3 * 350) * 3 / 2 / 3600)
    # 1,200 epochs: a test point every 10th epoch: 1200 x (1.0 + 0.05) + 50 = 1,310 s and 1200 x 2.05 + 50 = 2,510 s
    assert cpu_families.plan_hours("cnn_mlp_wide", seeds=1, workers=1, epochs=1_200, costs=costs) == \
        pytest.approx((3 * 1310 + 3 * 2510) / 3600)
    monkeypatch.setitem(cpu_families.FAMILY_COST, "double", {"sgd": 2.0, "sam": 2.0, "forward": 2.0})
    assert cpu_families.plan_hours("double", seeds=1, workers=1, costs=costs) == pytest.approx(2 * (3 * 230 + 3 * 350) / 3600)
    assert cpu_families.plan_hours("cnn_mlp_wide", costs=cpu_families.study_seconds(folders[:-1])) is None  # a control missing


def test_the_families_command_trains_every_pilot_first_and_runs_no_family_whose_pilot_missed_the_bar(study, dirs, monkeypatch):
    """End to end on the tiny pack: one epoch fits no augmented image set, so the pilot tries both settings, one
    round each, records them and makes no family run (the protocol cut to one epoch on 64 images by the `study`
    fixture)."""
    monkeypatch.setattr(cpu_families, "FAMILIES", ("vgg_small",))
    monkeypatch.setitem(cpu_families.PILOT_SETTINGS, "vgg_small", (cpu_families.Setting(1e-2), cpu_families.Setting(0.05)))
    monkeypatch.setattr(cpu_families, "FAMILIES_RUNS_DIR", study / "runs")
    pilot_runs = study / "pilot_runs"
    failures = cpu_families.run_part("families", (0,), workers=1, data_dir=study / "pack", runs_dir=study / "runs",
                                     progress=False, pilot_runs_dir=pilot_runs)
    assert failures == 0
    pilot = setting_pilot.load(cpu_families.FAMILY_PILOT_FILE)
    assert sorted(zip(pilot["lr"], pilot["control"])) == [(1e-2, "aug"), (1e-2, "aug_sam"), (0.05, "aug"), (0.05, "aug_sam")]
    assert pilot["epochs_done"].eq(1).all() and pilot["status"].eq("finished").all() and pilot["train_images"].eq(64).all()
    assert not pilot["reached_minimum"].any()  # one epoch of augmented digits is no minimum
    assert cpu_families.family_setting("vgg_small") is None
    assert not (study / "runs").exists() and not cpu_families.FAMILIES_GRID.exists()
    # a second call trains nothing again
    assert family_pilot_tasks("vgg_small", pilot_runs, study / "pack") == []
    # a run trained here whose row never reached the file (a kill between the two) comes back, and is only recorded
    write_pilot([row for row in runs.read_json(cpu_families.FAMILY_PILOT_FILE)["runs"] if row["lr"] != 0.05 or row["control"] != "aug"])
    todo = family_pilot_tasks("vgg_small", pilot_runs, study / "pack")
    assert [(t.config.lr, t.config.control) for t in todo] == [(0.05, "aug")] and runs.is_finished(todo[0].config.run_dir)
    trained = (todo[0].config.run_dir / runs.CHECKPOINT).stat().st_mtime_ns
    assert cpu_families.run_part("families", (0,), workers=1, data_dir=study / "pack", runs_dir=study / "runs",
                                 progress=False, pilot_runs_dir=pilot_runs) == 0
    assert (todo[0].config.run_dir / runs.CHECKPOINT).stat().st_mtime_ns == trained  # not trained again
    assert len(setting_pilot.load(cpu_families.FAMILY_PILOT_FILE)) == 4 and family_pilot_tasks("vgg_small", pilot_runs) == []


def test_a_fresh_clone_resumes_the_pilot_from_its_committed_file(study, dirs, monkeypatch):
    """Runs recorded as finished in the committed pilot file are not trained again, and a new pilot run measured
    here joins them instead of replacing them."""
    monkeypatch.setitem(cpu_families.PILOT_SETTINGS, "vgg_small", (cpu_families.Setting(1e-2),))
    protocol = cpu_study.PROTOCOL
    recorded = {**pilot_row("vgg_small", 1e-2, "aug", 0.99, epochs_done=protocol["epochs"]),
                "epochs": protocol["epochs"], "train_images": protocol["train_images"]}
    write_pilot([recorded])
    pilot_runs = study / "pilot_runs"
    todo = family_pilot_tasks("vgg_small", pilot_runs, study / "pack")
    assert [t.config.control for t in todo] == ["aug_sam"]  # aug is in the file, with no checkpoint here
    assert cpu_study.run_tasks(todo, workers=1, runs_dir=pilot_runs, study_dir=cpu_families.FAMILY_PILOT_FILE.parent,
                               write=lambda: setting_pilot.record(pilot_runs, cpu_families.FAMILY_PILOT_FILE, "test"),
                               progress=False) == 0
    rows = setting_pilot.load(cpu_families.FAMILY_PILOT_FILE)
    assert sorted(rows["control"]) == ["aug", "aug_sam"]
    assert rows.set_index("control").loc["aug", "measured_set_accuracy"] == 0.99  # the committed row, kept as it was
    assert not list(cpu_families.FAMILY_PILOT_FILE.parent.glob("*.measured.json"))
    assert family_pilot_tasks("vgg_small", pilot_runs, study / "pack") == []


def test_the_pilots_seed_0_runs_are_copied_to_the_family_and_only_evaluated_there(study, dirs):
    """A pilot run at the chosen setting is the family's seed 0 of that control: copied (its checkpoint and epochs
    as they are, the family's config), then evaluated without training again; a pilot run trained with other
    settings, or one not finished, is not copied."""
    from sharpness.studies.sweep import execute_run
    from sharpness.training.train import train

    setting, pilot_runs, family_runs = cpu_families.Setting(1e-2), study / "pilot_runs", study / "runs"
    pilot = setting_pilot.run_config("vgg_small", setting, "aug", pilot_runs, study / "pack")
    train(pilot, progress=False)
    stored = json.loads((pilot.run_dir / runs.CONFIG).read_text())
    runs.atomic_write_json(pilot.run_dir / runs.CONFIG, {**stored, "batch_size": 64})  # as if trained otherwise
    targets = cpu_families.family_grid("vgg_small", (0,), setting, study / "pack", family_runs).configs("cpu")
    assert setting_pilot.reuse_runs(setting, targets, pilot_runs, study / "pack") == []
    runs.atomic_write_json(pilot.run_dir / runs.CONFIG, stored)

    family = {c.control: c for c in targets}
    assert setting_pilot.reuse_runs(setting, targets, pilot_runs, study / "pack") == \
        [family["aug"].run_dir]  # aug_sam's pilot run was never trained
    copied = family["aug"].run_dir
    assert (copied / runs.CHECKPOINT).read_bytes() == (pilot.run_dir / runs.CHECKPOINT).read_bytes()
    assert runs.read_jsonl(copied / runs.METRICS) == runs.read_jsonl(pilot.run_dir / runs.METRICS)
    assert runs.read_json(copied / runs.CONFIG) == json.loads(json.dumps(family["aug"].to_dict()))
    assert not list(copied.parent.glob("*.copying"))
    assert setting_pilot.reuse_runs(setting, targets, pilot_runs, study / "pack") == []
    grid = cpu_families.family_grid("vgg_small", (0,), setting, study / "pack", family_runs)
    order = [task.config.control for task in cpu_families._pending("families", [(grid, setting)], family_runs)]
    assert order == ["aug"] + [control for control in CONTROLS if control != "aug"]  # only measuring left: first

    epochs = runs.read_jsonl(copied / runs.METRICS)
    outcome = execute_run(family["aug"], ("test_accuracy", "fisher_rao_norm"), use_papermill=False)
    assert outcome["status"] == "done" and outcome["seconds"]["train"] == 0.0  # nothing trained
    assert runs.read_jsonl(copied / runs.METRICS) == epochs
    assert 0.0 <= runs.read_json(copied / "metrics.json")["test_accuracy"] <= 100.0


def test_measured_plan_hours_read_the_committed_runs_own_timings(tmp_path):
    def run(control, seed, epoch_seconds, evaluation_seconds):
        folder = tmp_path / control / f"seed{seed}"
        folder.mkdir(parents=True)
        runs.atomic_write_json(folder / runs.CONFIG, {"control": control, "seed": seed})
        runs.atomic_write_jsonl(folder / runs.METRICS, [{"epoch": i + 1, "epoch_wall_seconds": s}
                                                          for i, s in enumerate(epoch_seconds)])
        runs.atomic_write_json(folder / "metrics.json", {"seconds": {"hessian_trace": evaluation_seconds / 2,
                                                                     "test_accuracy": evaluation_seconds / 2}})
        return folder

    assert runs.spent_seconds(run("baseline", 0, [10.0, 20.0, 30.0], 40.0)) == (60.0, 40.0)
    dirs = [tmp_path / "baseline" / "seed0", run("baseline", 1, [100.0], 0.0)]  # baseline's mean run: 100 s
    dirs += [run(control, 0, [50.0], 50.0) for control in CONTROLS if control != "baseline"]  # 100 s each
    assert cpu_families.measured_plan_hours(dirs[:-1], seeds=3) is None  # one control has no run yet
    # six controls x 100 s x 3 seeds on 2 workers
    assert cpu_families.measured_plan_hours(dirs, seeds=3) == pytest.approx(6 * 100 * 3 / 2 / 3600)


@pytest.mark.parametrize("module", [cpu_study, cpu_families])
@pytest.mark.parametrize("argv, message", [(["--workers", "0"], "--workers must be a positive integer, got 0"),
                                           (["--seeds", "1", "1"], r"--seeds must be distinct non-negative integers, got \[1, 1\]"),
                                           (["--seeds", "-1"], r"got \[-1\]")])
def test_both_cpu_plans_refuse_bad_workers_and_seeds_by_value_before_any_work(module, argv, message):
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    with pytest.raises(ValueError, match=message):
        module.main(parser.parse_args(argv))
