"""The CPU study across networks and settings: three more network families, and the paper's batch x lr sweep.

`python -m sharpness cpu-families` runs, on the CPU study's protocol (`cpu_study.PROTOCOL`: the same 800
images, 120 epochs, cosine schedule, SAM radius scaled to each network's ||theta_0||, the same minimum
criterion), two plans, resumable from results/ exactly like `cpu-study` (the same task machinery):

- `--part families`: the six controls on each of FAMILIES (a small ResNet, a VGG-style plain stack, a small
  ViT; `sharpness.models`), seeds FAMILY_SEEDS, every measure. One family before the next, all controls of a
  seed before the next seed. A family first gets its own pilot: seed 0 of the augmentation controls (the
  hardest to fit) at each of its PILOT_SETTINGS (learning rate, epochs), trained only, recorded in PILOT_FILE;
  the family then runs at the first of them at which both reached a minimum (`family_setting`; its seed-0
  augmentation runs are the pilot's, copied rather than trained again), and is not run where none did.
  Runs land in `results/cpu_families/lr<lr>[_e<epochs>]/`, the grid in FAMILIES_GRID.
- `--part batch-lr`: Figure 1 / Appendix F.2 on the study's network: batch BATCH_SIZES x lr LEARNING_RATES x
  six controls x BATCH_LR_SEEDS, with the Figure 1 axes, test accuracy and ECE (`BATCH_LR_MEASURES`). The
  study's own setting is one cell: its runs are read from `results/cpu_study/`, not trained again. Whole
  seeds first (every cell and control of a seed: a complete, smaller Figure 1). Runs land in
  `results/cpu_batch_lr/b<batch>_lr<lr>/`, the grid in BATCH_LR_GRID.

Cost per family (`plan_hours`): the CPU seconds of one SGD step, one SAM step and one forward pass per image on
one thread, measured with `bench/families.py` relative to the study's network (FAMILY_COST), applied to the
wall seconds the study's own seed-0 runs took on this machine (STUDY_SECONDS); `networks_table` shows both.
Grid files live inside their folders (not results/*.json), so the controls chapters never mistake them for
the controls study.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..core import runs
from ..core.paths import RESULTS_DIR, RUNS_DIR
from ..training.controls import CONTROLS
from ..training.minimum import reached_minimum
from . import cpu_pilot, cpu_study, registry, store

FAMILIES = ("resnet_small", "vgg_small", "vit_small")  # the order of the work
FAMILY_SEEDS = (0, 1, 2)
BATCH_SIZES = (128, 256)
LEARNING_RATES = (1e-3, 1e-2)
BATCH_LR_SEEDS = (0, 1, 2, 3, 4)
# Figure 1's axes (Fisher-Rao norm, relative flatness, generalisation gap; train loss comes with every run),
# test accuracy and ECE, and SAM-sharpness: the rho sweep's evaluation, one source for both.
BATCH_LR_MEASURES = cpu_study.RHO_MEASURES
PARTS = ("families", "batch-lr")

# Cost relative to the study's network (cnn_mlp_wide = 1): thread CPU seconds of one SGD step and one SAM step on
# a batch of 128, and of a forward pass per image, medians of 3 after a warm-up, one thread, measured with
# `bench/families.py` under nice 19 beside the running CPU study (2026-11-30; absolute: cnn_mlp_wide 0.25-0.26 s
# per SGD step, 0.43-0.46 s per SAM step, 0.57-0.71 ms per image forward over the two measurements).
FAMILY_COST = {
    "cnn_mlp_wide": {"sgd": 1.0, "sam": 1.0, "forward": 1.0},
    "resnet_small": {"sgd": 1.46, "sam": 1.60, "forward": 1.98},  # widths 24/48/96 (16/32/64 gave 0.77, 0.95, 1.07)
    "vgg_small": {"sgd": 0.63, "sam": 0.71, "forward": 0.63},
    "vit_small": {"sgd": 1.03, "sam": 1.10, "forward": 1.40},
}
STUDY_EPOCHS = 120  # the epochs of the runs STUDY_SECONDS were measured on
# The study's seed-0 runs under its protocol on this 2-core machine, two workers (2026-11-30), wall seconds per
# control: training steps (summary train_seconds), the rest of training (per-epoch test curve, measured loss,
# checkpoints), evaluation without the Hessian, and the Hessian measures. wd_sam's evaluation had not finished:
# baseline_sam's stands in for it.
STUDY_SECONDS = {
    "baseline": (212, 171, 126, 126), "baseline_sam": (438, 175, 96, 80), "aug": (162, 111, 146, 199),
    "aug_sam": (322, 97, 134, 193), "wd": (153, 104, 82, 86), "wd_sam": (284, 86, 96, 80),
}

FAMILIES_DIR = RESULTS_DIR / "cpu_families"
BATCH_LR_DIR = RESULTS_DIR / "cpu_batch_lr"
FAMILIES_GRID = FAMILIES_DIR / "families.json"
class Setting(NamedTuple):
    """A learning rate and a number of epochs a family may run at (the rest is the study's protocol)."""

    lr: float
    epochs: int | None = None  # None: the protocol's

    def trained_epochs(self) -> int:
        return self.epochs or cpu_study.PROTOCOL["epochs"]

    def _longer(self) -> bool:
        return self.trained_epochs() != cpu_study.PROTOCOL["epochs"]

    @property
    def label(self) -> str:
        """'lr 0.05', or 'lr 0.05 for 360 epochs' where the epochs are not the protocol's."""
        return f"lr {self.lr:g}" + (f" for {self.trained_epochs()} epochs" if self._longer() else "")

    @property
    def folder(self) -> str:
        """The folder of a family's runs at this setting, e.g. 'lr0.05' or 'lr0.05_e360'."""
        return f"lr{self.lr:g}" + (f"_e{self.trained_epochs()}" if self._longer() else "")


# A family's candidate settings, in the order tried: the protocol's epochs at growing learning rates first (the
# study's 1e-2 left resnet_small's augmented and SAM runs short of the accuracy bar in 120 epochs: batch norm and
# skip connections train at larger steps), then longer training. The ViT fitted 39% (lr 0.01) and 53% (lr 0.05) of
# its augmented images in 120 epochs, the most of any rate at the largest: a larger step, then three times the
# epochs, come next (pilot.json).
PILOT_SETTINGS = {
    "resnet_small": (Setting(0.05), Setting(0.1)),
    "vgg_small": (Setting(1e-2), Setting(0.05)),
    "vit_small": (Setting(1e-2), Setting(0.05), Setting(0.1), Setting(0.05, 360)),
}
PILOT_FILE = FAMILIES_DIR / "pilot.json"
PILOT_RUNS_DIR = RUNS_DIR / "cpu_families_pilot"
BATCH_LR_GRID = BATCH_LR_DIR / "batch_lr.json"
FAMILIES_RUNS_DIR = RUNS_DIR / "cpu_families"
BATCH_LR_RUNS_DIR = RUNS_DIR / "cpu_batch_lr"
COMMANDS = {part: f"python -m sharpness cpu-families --part {part}" for part in PARTS}


def run_seconds(arch: str, control: str, epochs: int = STUDY_EPOCHS) -> float:
    """Estimated wall seconds of one run of `control` on `arch` for `epochs`: the study's measured parts, each scaled
    by the matching measured cost ratio (steps by the SGD or SAM step, the Hessian by the SGD step, the rest by
    forward), and training (steps and the per-epoch rest) by the epochs over the protocol's."""
    cost, (steps, rest, evaluation, hessian) = FAMILY_COST[arch], STUDY_SECONDS[control]
    step = cost["sam"] if control.endswith("sam") else cost["sgd"]
    return (steps * step + rest * cost["forward"]) * epochs / STUDY_EPOCHS + evaluation * cost["forward"] + hessian * cost["sgd"]


def plan_hours(arch: str, seeds: int = len(FAMILY_SEEDS), workers: int = 2, epochs: int = STUDY_EPOCHS) -> float:
    """Estimated hours of a family's plan: six controls x `seeds` seeds on `workers` processes."""
    return sum(run_seconds(arch, control, epochs) for control in CONTROLS) * seeds / workers / 3600


def measured_plan_hours(run_dirs, seeds: int = len(FAMILY_SEEDS), workers: int = 2) -> float | None:
    """Hours of six controls x `seeds` seeds on `workers` processes from committed runs' own timings (training
    epochs and end-of-run evaluation, `runs.spent_seconds`): each control's mean run, None until every control
    has one."""
    spent: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        spent.setdefault(runs.read_json(Path(run_dir) / runs.CONFIG)["control"], []).append(sum(runs.spent_seconds(run_dir)))
    if set(spent) < set(CONTROLS):
        return None
    return sum(sum(spent[control]) / len(spent[control]) for control in CONTROLS) * seeds / workers / 3600


def networks_table() -> pd.DataFrame:
    """The study's network and the three families: size, L of the Fisher-Rao norm, learning rate (the study's, or the
    one each family's pilot chose), SAM radius scale, measured cost relative to the study's network, and the hours of
    6 controls x 3 seeds: estimated from those costs, and measured from the committed runs where every control has
    one."""
    from ..training.models import build_model, count_weight_layers

    pilot = cpu_pilot.load_pilot(PILOT_FILE)
    rows = []
    for arch in ("cnn_mlp_wide", *FAMILIES):
        model = build_model(arch, 10)
        setting = Setting(cpu_study.PROTOCOL["lr"]) if arch == "cnn_mlp_wide" else family_setting(arch, pilot)
        committed = cpu_study.committed_controls_runs() if arch == "cnn_mlp_wide" else family_runs(arch, setting)
        seeds = f"6 controls x {len(FAMILY_SEEDS)} seeds"
        rows.append({"network": registry.NETWORK_NAMES[arch], "arch": arch, "parameters": sum(p.numel() for p in model.parameters()),
                     "weight layers (L)": count_weight_layers(model),
                     "learning rate": _rate_label(setting, arch, pilot), "SAM radius scale": cpu_study.sam_rho_scale(arch),
                     "SGD step cost": FAMILY_COST[arch]["sgd"], "SAM step cost": FAMILY_COST[arch]["sam"],
                     "forward cost": FAMILY_COST[arch]["forward"],
                     f"estimated hours for {seeds}": plan_hours(arch, epochs=setting.trained_epochs() if setting else STUDY_EPOCHS),
                     f"measured hours for {seeds}": measured_plan_hours(committed)})
    return pd.DataFrame(rows)


def _rate_label(setting: Setting | None, arch: str, pilot: pd.DataFrame) -> str:
    """A family's learning rate for the networks table: the rate (and its epochs where not the protocol's), or why
    there is none yet."""
    if setting is not None:
        return setting.label.removeprefix("lr ")
    return "pilot pending" if _pilot_runs_left(arch, pilot) else "none reached a minimum (not run)"


def cell_name(batch_size: int, lr: float) -> str:
    """The folder of one batch x lr cell, e.g. 'b256_lr0.001'."""
    return f"b{batch_size}_lr{lr:g}"


def is_study_cell(batch_size: int, lr: float) -> bool:
    """The CPU study's own setting: its runs stand for this cell."""
    return (batch_size, lr) == (cpu_study.PROTOCOL["batch_size"], cpu_study.PROTOCOL["lr"])


def batch_lr_grid(batch_size: int, lr: float, seeds, data_dir=None, runs_dir=BATCH_LR_RUNS_DIR):
    return cpu_study.grid(tuple(seeds), data_dir, Path(runs_dir) / cell_name(batch_size, lr), batch_size=batch_size,
                          lr=lr, measures=BATCH_LR_MEASURES)


def family_grid(arch: str, seeds, setting: Setting, data_dir=None, runs_dir=FAMILIES_RUNS_DIR):
    return cpu_study.grid(tuple(seeds), data_dir, Path(runs_dir) / setting.folder, arch=arch, lr=setting.lr,
                          epochs=setting.trained_epochs())


def family_runs(arch: str, setting: Setting | None) -> list[Path]:
    """The committed runs of `arch` at `setting` under FAMILIES_DIR, made under the protocol (none without a setting)."""
    if setting is None:
        return []
    return [path for path in runs.find_runs(FAMILIES_DIR / setting.folder)
            if path.parent.parent.name == arch and cpu_study.made_under_protocol(path, arch, setting.trained_epochs())
            and runs.read_json(path / runs.CONFIG).get("lr") == setting.lr]


# --- the family pilot: a learning rate per family at which its hardest controls reach a minimum ----------


def pilot_config(arch: str, setting: Setting, control: str, runs_dir=PILOT_RUNS_DIR, data_dir=None):
    """One pilot run: seed 0 of `control` at `setting`, the study's protocol otherwise (its images, schedule; SAM's
    radius scaled to the network)."""
    protocol = cpu_study.PROTOCOL
    return cpu_pilot.candidate_config(arch, protocol["train_images"], setting.trained_epochs(), protocol["lr_schedule"],
                                      cpu_study.sam_rho_scale(arch), control, runs_dir, data_dir, lr=setting.lr)


def pilot_tasks(arch: str, runs_dir=PILOT_RUNS_DIR, data_dir=None) -> list[cpu_study.Task]:
    """The pilot runs of `arch` not yet trained: seed 0 of cpu_pilot.PILOT_CONTROLS at each candidate setting."""
    configs = [pilot_config(arch, setting, control, runs_dir, data_dir)
               for setting in PILOT_SETTINGS[arch] for control in cpu_pilot.PILOT_CONTROLS]
    recorded = {_pilot_key(row) for row in _finished_pilot_runs(arch, cpu_pilot.load_pilot(PILOT_FILE)).to_dict("records")}
    return [cpu_study.Task("train", config, None) for config in configs
            if not runs.is_finished(config.run_dir) and _pilot_key(config) not in recorded]


def reuse_pilot_runs(arch: str, setting: Setting, runs_dir=FAMILIES_RUNS_DIR, pilot_runs_dir=PILOT_RUNS_DIR,
                     data_dir=None) -> list[Path]:
    """Copy the pilot's finished seed-0 runs of `arch` at `setting` to the family's run folders, where those are empty:
    the family's seed 0 of the same control is the same training (the same settings, bit for bit on CPU), so only
    its evaluation is left. A pilot run trained with other settings than the family's is not copied. Returns the
    folders filled."""
    from ..training.train import stored_config

    filled = []
    for config in family_grid(arch, (cpu_pilot.SHARED["seed"],), setting, data_dir, runs_dir).configs("cpu"):
        if (config.control not in cpu_pilot.PILOT_CONTROLS or config.run_dir.exists()
                or cpu_study.is_committed(config, runs_dir, FAMILIES_DIR)):
            continue
        pilot = pilot_config(arch, setting, config.control, pilot_runs_dir, data_dir).run_dir
        fix = f"delete {pilot} to train the pilot run again"
        if not runs.is_finished(pilot) or stored_config(pilot, fix).what_is_trained() != config.what_is_trained():
            continue
        staging = config.run_dir.with_name(config.run_dir.name + ".copying")  # a kill mid-copy leaves no half run
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(pilot, staging, ignore=shutil.ignore_patterns(runs.LOCK))
        runs.atomic_write_json(staging / runs.CONFIG, config.to_dict())  # where the family keeps it
        staging.rename(config.run_dir)
        filled.append(config.run_dir)
    return filled


def _pilot_key(run) -> tuple:
    """What identifies a pilot run: from its row in PILOT_FILE (a dict) or from its config."""
    if isinstance(run, dict):
        return run["arch"], float(run["lr"]), run["control"], int(run["epochs"]), int(run["train_images"])
    return run.arch, float(run.lr), run.control, int(run.epochs), int(run.max_train_samples)


def record_pilot(runs_dir=PILOT_RUNS_DIR) -> Path:
    """Measure the pilot runs trained here into PILOT_FILE, keeping the committed rows of runs whose checkpoints are
    elsewhere (a fresh clone resumes from the file, not from checkpoints)."""
    path = cpu_pilot.record_pilot(runs_dir, PILOT_FILE.with_suffix(".measured.json"), f"{COMMANDS['families']} (its pilot)")
    measured, committed = runs.read_json(path), cpu_pilot.load_pilot(PILOT_FILE)
    path.unlink()
    here = {_pilot_key(row) for row in measured["runs"]}
    kept = [row for row in committed.to_dict("records") if _pilot_key(row) not in here] if not committed.empty else []
    return runs.atomic_write_json(PILOT_FILE, {**measured, "runs": kept + measured["runs"]})


def _finished_pilot_runs(arch: str, pilot: pd.DataFrame) -> pd.DataFrame:
    """The pilot runs of `arch` that trained every planned epoch (an empty pilot has no columns to filter)."""
    return pilot if pilot.empty else pilot[pilot["arch"].eq(arch) & pilot["epochs_done"].eq(pilot["epochs"])]


def _pilot_runs_left(arch: str, pilot: pd.DataFrame) -> int:
    """The candidate pilot runs of `arch` (a setting and a control) that have not finished."""
    done = {(float(row["lr"]), int(row["epochs"]), row["control"])
            for row in _finished_pilot_runs(arch, pilot).to_dict("records")}
    return sum((setting.lr, setting.trained_epochs(), control) not in done
               for setting in PILOT_SETTINGS[arch] for control in cpu_pilot.PILOT_CONTROLS)


def family_setting(arch: str, pilot: pd.DataFrame | None = None) -> Setting | None:
    """The setting `arch` runs at: the first of its PILOT_SETTINGS at which every pilot control finished and reached
    a minimum (read from PILOT_FILE); None while the pilot has not shown one."""
    pilot = cpu_pilot.load_pilot(PILOT_FILE) if pilot is None else pilot
    if pilot.empty or "lr" not in pilot:
        return None
    finished = _finished_pilot_runs(arch, pilot)
    for setting in PILOT_SETTINGS[arch]:
        rows = finished[finished["lr"].eq(setting.lr) & finished["epochs"].eq(setting.trained_epochs())]
        if set(rows.loc[rows["reached_minimum"], "control"]) >= set(cpu_pilot.PILOT_CONTROLS):
            return setting
    return None


def pilot_finding(pilot: pd.DataFrame | None = None) -> str:
    """Per family, the setting the pilot chose, or why none is chosen, read from the pilot's runs."""
    from ..training.minimum import MIN_ACCURACY

    pilot = cpu_pilot.load_pilot(PILOT_FILE) if pilot is None else pilot
    sentences = []
    for arch in FAMILIES:
        name, settings = registry.NETWORK_NAMES[arch], PILOT_SETTINGS[arch]
        chosen = family_setting(arch, pilot)
        finished, left = _finished_pilot_runs(arch, pilot), _pilot_runs_left(arch, pilot)
        if chosen is not None:
            sentences.append(f"{name} runs at {chosen.label} (both augmentation controls of seed 0 reached a minimum there).")
        elif pilot.empty or not pilot["arch"].eq(arch).any():
            sentences.append(f"{name}: no pilot run yet.")
        elif left > 0:
            sentences.append(f"{name}: no setting chosen yet; {left} pilot run(s) still to finish.")
        else:
            # a setting is as close as its worse control got; the closest setting is the best of those
            worst = finished.sort_values(["reached_minimum", "measured_set_accuracy"]).groupby(["lr", "epochs"]).head(1)
            closest = worst.sort_values("measured_set_accuracy").iloc[-1]
            sentences.append(f"{name} is not run: at none of its settings ({', '.join(s.label for s in settings)}; "
                             f"{cpu_study.PROTOCOL['epochs']} epochs where not said) did both augmentation controls reach "
                             f"a minimum; the closest, {Setting(closest.lr, closest.epochs).label}, left {closest.control} at "
                             f"{closest.measured_set_accuracy:.1%} of its measured images (the bar: {MIN_ACCURACY:.0%}).")
    return " ".join(sentences)


def pilot_table(pilot: pd.DataFrame) -> pd.DataFrame:
    """The family pilot, a row per run: where each family's augmentation controls got to at each learning rate."""
    table = pd.DataFrame({
        "network": pilot["arch"].map(registry.NETWORK_NAMES),
        "learning rate": pilot["lr"].map("{:g}".format),
        "control": pilot["control"],
        "epochs done": pilot["epochs_done"].astype(str) + " / " + pilot["epochs"].astype(str),
        "accuracy on its measured images": pilot["measured_set_accuracy"].map("{:.1%}".format),
        "at a minimum": pilot["reached_minimum"].map({True: "yes", False: "no"}),
        "why not": [("" if reached else reason) for reached, reason in zip(pilot["reached_minimum"], pilot["reason"])],
    })
    return table.sort_values(["network", "learning rate", "control"], key=lambda c: c.map(str))


def plan(part: str, seeds=None, *, data_dir=None, runs_dir=None) -> list[cpu_study.Task]:
    """The runs of `part` not yet under results/, in an order whose every prefix is a complete smaller result:
    families: family by family, and within a family seed by seed (all six controls of a seed together);
    batch-lr: seed by seed, and within a seed every cell other than the study's (all controls of a cell together)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    if part == "families":
        runs_dir = runs_dir or FAMILIES_RUNS_DIR
        chosen = {arch: family_setting(arch) for arch in FAMILIES}
        grids = [family_grid(arch, (seed,), chosen[arch], data_dir, runs_dir) for arch in FAMILIES
                 if chosen[arch] is not None for seed in (seeds or FAMILY_SEEDS)]
    else:
        runs_dir = runs_dir or BATCH_LR_RUNS_DIR
        grids = [batch_lr_grid(batch, lr, (seed,), data_dir, runs_dir) for seed in (seeds or BATCH_LR_SEEDS)
                 for batch in BATCH_SIZES for lr in LEARNING_RATES if not is_study_cell(batch, lr)]
    study_dir = _study_dir(part)
    tasks = [cpu_study.Task("run", config, g) for g in grids for config in g.configs("cpu")]
    return [task for task in tasks if not cpu_study.is_committed(task.config, runs_dir, study_dir)]


def _study_dir(part: str) -> Path:
    return FAMILIES_DIR if part == "families" else BATCH_LR_DIR


# --- the grid summaries the book reads ----------------------------------------------------------


def with_minimum_verdict(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (one per run, with run_dir) plus `at_minimum` and `minimum_reason`, by `sharpness.minimum`'s
    criterion from each run's per-epoch rows and its accuracy on the measured images."""
    rows = rows.copy()
    verdicts = []
    for run_dir, accuracy in zip(rows["run_dir"], rows.get("measured_set.accuracy", pd.Series(index=rows.index, dtype=float))):
        history = runs.read_jsonl(Path(run_dir) / runs.METRICS)
        verdicts.append(reached_minimum(history, None if pd.isna(accuracy) else float(accuracy)))
    rows["at_minimum"] = [verdict for verdict, _ in verdicts]
    rows["minimum_reason"] = [reason for _, reason in verdicts]
    return rows


def _settings(part: str, seeds, archs, **extra) -> dict:
    """The protocol (less its one network), the networks and settings of `part`, and its command."""
    protocol = {key: value for key, value in cpu_study.PROTOCOL.items() if key != "arch"}
    return {**protocol, **extra, "datasets": [cpu_study.PROTOCOL["dataset"]], "archs": list(archs),
            "controls": list(CONTROLS), "seeds_planned": list(seeds), "command": COMMANDS[part]}


def write_families_grid(seeds=FAMILY_SEEDS) -> Path | None:
    """Rewrite FAMILIES_GRID from each family's runs at its chosen setting under FAMILIES_DIR, made under the
    protocol (None: no runs)."""
    chosen = {arch: family_setting(arch) for arch in FAMILIES}
    found = [path for arch, setting in chosen.items() for path in family_runs(arch, setting)]
    if not found:
        for stale in (FAMILIES_GRID, store.history_path(FAMILIES_GRID)):  # a grid of runs no longer chosen
            stale.unlink(missing_ok=True)
        return None
    settings = _settings("families", seeds, FAMILIES, sam_rho_scale={arch: cpu_study.sam_rho_scale(arch) for arch in FAMILIES},
                         lr={arch: s.lr for arch, s in chosen.items() if s is not None},
                         epochs={arch: s.trained_epochs() for arch, s in chosen.items() if s is not None},
                         lr_chosen_by="the family pilot (pilot.json beside this grid)")
    return store.save_grid(with_minimum_verdict(store.runs_from_dirs(found)), FAMILIES_GRID, settings=settings,
                             data=cpu_study.DATA_NOTE, tier="cpu")


def batch_lr_cell_runs(batch_size: int, lr: float) -> list[Path]:
    """The runs of one cell under results/: the CPU study's own (default radius) for its setting, else the cell's folder."""
    folder = cpu_study.STUDY_DIR if is_study_cell(batch_size, lr) else BATCH_LR_DIR / cell_name(batch_size, lr)
    found = [path for path in runs.find_runs(folder) if cpu_study.made_under_protocol(path)]
    return [path for path in found if (runs.read_json(path / runs.CONFIG).get("batch_size"),
                                       runs.read_json(path / runs.CONFIG).get("lr")) == (batch_size, lr)]


def write_batch_lr_grid(seeds=BATCH_LR_SEEDS) -> Path | None:
    """Rewrite BATCH_LR_GRID from every cell's runs (None: no cell but the study's has a run). Each cell is read
    on its own, so prediction disagreement pairs seeds within a cell only."""
    cells = {(batch, lr): batch_lr_cell_runs(batch, lr) for batch in BATCH_SIZES for lr in LEARNING_RATES}
    if not any(found for cell, found in cells.items() if not is_study_cell(*cell)):
        return None
    rows = pd.concat([store.runs_from_dirs(found) for found in cells.values() if found], ignore_index=True)
    settings = _settings("batch-lr", seeds, [cpu_study.PROTOCOL["arch"]], batch_size=list(BATCH_SIZES),
                         lr=list(LEARNING_RATES), sam_rho_scale=cpu_study.sam_rho_scale(),
                         study_cell_from="results/cpu_study (python -m sharpness cpu-study)")
    return store.save_grid(with_minimum_verdict(rows), BATCH_LR_GRID, settings=settings, data=cpu_study.DATA_NOTE,
                             tier="cpu")


def write_grid(part: str, seeds) -> Path | None:
    return write_families_grid(seeds) if part == "families" else write_batch_lr_grid(seeds)


# --- running ---------------------------------------------------------------------------------------


def run_part(part: str, seeds=None, *, workers: int = 2, data_dir=None, runs_dir=None, progress: bool = True) -> int:
    """Train, evaluate and commit every run of `part` not yet under results/; returns the number of failures."""
    seeds = tuple(seeds or (FAMILY_SEEDS if part == "families" else BATCH_LR_SEEDS))
    runs_dir = runs_dir or (FAMILIES_RUNS_DIR if part == "families" else BATCH_LR_RUNS_DIR)
    if part == "families":
        return _run_families(seeds, workers=workers, data_dir=data_dir, runs_dir=runs_dir, progress=progress)
    return _run_planned(part, plan(part, seeds, data_dir=data_dir, runs_dir=runs_dir), seeds, workers=workers,
                        data_dir=data_dir, runs_dir=runs_dir, progress=progress)


def _run_planned(part: str, todo, seeds, *, workers, data_dir, runs_dir, progress) -> int:
    print(f"CPU {part}: {len(todo)} runs to do with {workers} workers; finished runs go to {_study_dir(part)}")
    if not todo:
        write_grid(part, seeds)
        return 0
    cpu_study.prepare_data(data_dir, progress)
    return cpu_study.run_tasks(todo, workers=workers, runs_dir=runs_dir, study_dir=_study_dir(part),
                               write=functools.partial(write_grid, part, seeds), progress=progress, desc=f"CPU {part}")


def _run_families(seeds, *, workers, data_dir, runs_dir, progress, pilot_runs_dir=PILOT_RUNS_DIR) -> int:
    """Every family's pilot first (what is not trained yet: the cheap part that decides each family's setting), then
    family by family its runs at the setting its pilot chose (seed 0's augmentation runs copied from the pilot)."""
    failures = 0
    pilot = [task for arch in FAMILIES for task in pilot_tasks(arch, pilot_runs_dir, data_dir)]
    if pilot:
        print(f"CPU families: {len(pilot)} pilot runs with {workers} workers; recorded in {PILOT_FILE}")
        failures += cpu_study.run_tasks(pilot, workers=workers, runs_dir=pilot_runs_dir, study_dir=PILOT_FILE.parent,
                                        write=functools.partial(record_pilot, pilot_runs_dir), progress=progress,
                                        desc="family pilot")
    print(f"CPU families: {pilot_finding()}")
    for arch in FAMILIES:
        setting = family_setting(arch)
        if setting is None:
            continue
        if cpu_pilot.SHARED["seed"] in seeds:
            for folder in reuse_pilot_runs(arch, setting, runs_dir, pilot_runs_dir, data_dir):
                print(f"CPU families: {folder} trained by the pilot (copied); only its evaluation is left")
        todo = [task for task in plan("families", seeds, data_dir=data_dir, runs_dir=runs_dir) if task.config.arch == arch]
        failures += _run_planned("families", todo, seeds, workers=workers, data_dir=data_dir, runs_dir=runs_dir,
                                 progress=progress)
    return failures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all",
                        help="families (3 networks x 6 controls), batch-lr (Figure 1's sweep), or both in that order")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help=f"seeds in the order to run them (default: families {FAMILY_SEEDS}, batch-lr {BATCH_LR_SEEDS})")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one CPU thread each)")
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 ImageFolder pack (default: data/cifar10-jpeg)")
    parser.add_argument("--runs-dir", default=None, help="checkpoints and working files (default: runs/cpu_<part>)")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    if args.seeds is not None and (len(set(args.seeds)) != len(args.seeds) or any(seed < 0 for seed in args.seeds)):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {args.seeds}")
    started, failures = time.perf_counter(), 0
    for part in (PARTS if args.part == "all" else (args.part,)):
        runs_dir = None if args.runs_dir is None else Path(args.runs_dir) / part
        failures += run_part(part, args.seeds, workers=args.workers, data_dir=args.data_dir, runs_dir=runs_dir,
                             progress=not args.no_progress)
    print(f"CPU families / batch-lr: {failures} run(s) failed; {time.perf_counter() - started:.0f} s this invocation")
    return 1 if failures else 0
