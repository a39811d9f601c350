"""A pilot over candidate settings: the first (batch, learning rate, epochs) at which a network's hardest controls
reach a minimum, so that a grid's runs are spent only where a comparison of minima is possible.

The studies across networks and settings (`sharpness.studies.cpu_families`) give each subject (a network family,
or a cell of the batch x lr sweep) an ordered tuple of candidate `Setting`s. The pilot trains seed 0 of the
augmentation controls (`cpu_pilot.PILOT_CONTROLS`: a network must fit every crop and flip of its images, and SAM
slows fitting further) at each candidate, under the CPU study's protocol otherwise, and records what the runs got
to in a pilot file (`cpu_pilot.measure`'s rows). The subject then runs at the first candidate where both reached a
minimum by the study's criterion (`chosen`), its seed-0 augmentation runs being the pilot's own (`reuse_runs`).
A pilot file is the record: a fresh clone resumes from it rather than from checkpoints it does not have.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..core import runs
from . import cpu_pilot, cpu_study, registry


class Setting(NamedTuple):
    """A learning rate, and where they are not the protocol's, the epochs and batch size a subject may run at."""

    lr: float
    epochs: int | None = None  # None: the protocol's
    batch_size: int | None = None  # None: the protocol's (and the folder does not name it)

    def trained_epochs(self) -> int:
        return self.epochs or cpu_study.PROTOCOL["epochs"]

    def trained_batch_size(self) -> int:
        return self.batch_size or cpu_study.PROTOCOL["batch_size"]

    def _longer(self) -> bool:
        return self.trained_epochs() != cpu_study.PROTOCOL["epochs"]

    @property
    def label(self) -> str:
        """'lr 0.05', 'batch 256, lr 0.001', with ' for 360 epochs' where the epochs are not the protocol's."""
        batch = "" if self.batch_size is None else f"batch {self.batch_size}, "
        return f"{batch}lr {self.lr:g}" + (f" for {self.trained_epochs()} epochs" if self._longer() else "")

    @property
    def folder(self) -> str:
        """The folder of a subject's runs at this setting: 'lr0.05', 'b256_lr0.001', 'b256_lr0.001_e360'."""
        batch = "" if self.batch_size is None else f"b{self.batch_size}_"
        return f"{batch}lr{self.lr:g}" + (f"_e{self.trained_epochs()}" if self._longer() else "")

    def key(self) -> tuple:
        """What a pilot row must match to be a run at this setting."""
        return float(self.lr), self.trained_epochs(), self.trained_batch_size()


def load(path: Path) -> pd.DataFrame:
    """A pilot file as a table (empty when none is committed). Rows recorded before the batch size was written were
    all trained at cpu_pilot.SHARED's batch size."""
    pilot = cpu_pilot.load_pilot(path)
    if not pilot.empty:
        recorded = pilot["batch_size"] if "batch_size" in pilot else pd.Series(index=pilot.index, dtype=float)
        pilot["batch_size"] = recorded.fillna(cpu_pilot.SHARED["batch_size"]).astype(int)
    return pilot


def run_config(arch: str, setting: Setting, control: str, runs_dir, data_dir=None):
    """One pilot run: seed 0 of `control` at `setting`, the study's protocol otherwise (its images and schedule;
    SAM's radius scaled to the network)."""
    protocol = cpu_study.PROTOCOL
    return cpu_pilot.candidate_config(arch, protocol["train_images"], setting.trained_epochs(), protocol["lr_schedule"],
                                      cpu_study.sam_rho_scale(arch), control, runs_dir, data_dir, lr=setting.lr,
                                      batch_size=setting.trained_batch_size())


def _key(run) -> tuple:
    """What identifies a pilot run: from its row in a pilot file (a dict) or from its config."""
    if isinstance(run, dict):
        return (run["arch"], float(run["lr"]), int(run["epochs"]), int(run["batch_size"]), run["control"],
                int(run["train_images"]))
    return run.arch, float(run.lr), int(run.epochs), int(run.batch_size), run.control, int(run.max_train_samples)


def decided_runs(arch: str, pilot: pd.DataFrame) -> pd.DataFrame:
    """The pilot runs of `arch` whose verdict is in: trained every planned epoch, or diverged (an empty pilot has no
    columns to filter)."""
    if pilot.empty:
        return pilot
    diverged = pilot["status"].eq("diverged") if "status" in pilot else False
    return pilot[pilot["arch"].eq(arch) & (pilot["epochs_done"].eq(pilot["epochs"]) | diverged)]


def _controls_at(decided: pd.DataFrame, setting: Setting) -> tuple[set[str], set[str]]:
    """The pilot controls decided at `setting`, and those of them that reached a minimum (only a finished run can:
    `cpu_pilot.measure` gives a stopped or diverged run no verdict but False)."""
    if decided.empty:
        return set(), set()
    lr, epochs, batch_size = setting.key()
    rows = decided[decided["lr"].eq(lr) & decided["epochs"].eq(epochs) & decided["batch_size"].eq(batch_size)]
    return set(rows["control"]), set(rows.loc[rows["reached_minimum"], "control"])


def next_round(arch: str, candidates, pilot_file: Path, runs_dir, data_dir=None) -> list[cpu_study.Task]:
    """The pilot runs of `arch` to train next: those of the first of `candidates` whose verdict is not in
    `pilot_file` yet, or none once a candidate is chosen or every one is decided. Candidates are tried one at a
    time, so a subject that reaches a minimum at its first setting never pays for its longer ones. A run already
    trained here but not recorded comes back too: its task finds it finished and records it."""
    decided = decided_runs(arch, load(pilot_file))
    for setting in candidates:
        recorded, reached = _controls_at(decided, setting)
        if reached >= set(cpu_pilot.PILOT_CONTROLS):
            return []  # chosen: nothing more to try
        if recorded >= set(cpu_pilot.PILOT_CONTROLS):
            continue  # tried, and short of a minimum: the next candidate
        return [cpu_study.Task("train", run_config(arch, setting, control, runs_dir, data_dir), None)
                for control in cpu_pilot.PILOT_CONTROLS if control not in recorded]
    return []


def record(runs_dir, pilot_file: Path, command: str) -> Path:
    """Measure the pilot runs trained here into `pilot_file`, keeping the committed rows of runs whose checkpoints
    are elsewhere (a fresh clone resumes from the file, not from checkpoints)."""
    path = cpu_pilot.record_pilot(runs_dir, pilot_file.with_suffix(".measured.json"), command)
    measured, committed = runs.read_json(path), load(pilot_file)
    path.unlink()
    here = {_key(row) for row in measured["runs"]}
    kept = [row for row in committed.to_dict("records") if _key(row) not in here] if not committed.empty else []
    return runs.atomic_write_json(pilot_file, {**measured, "runs": kept + measured["runs"]})


def runs_left(arch: str, candidates, pilot: pd.DataFrame) -> int:
    """The candidate pilot runs of `arch` (a setting and a control) whose verdict is not in (none once a setting is
    chosen)."""
    if chosen(arch, candidates, pilot) is not None:
        return 0  # the longer candidates after the chosen one are never run
    decided = decided_runs(arch, pilot)
    return sum(len(set(cpu_pilot.PILOT_CONTROLS) - _controls_at(decided, setting)[0]) for setting in candidates)


def chosen(arch: str, candidates, pilot: pd.DataFrame) -> Setting | None:
    """The first of `candidates` at which every pilot control of `arch` finished and reached a minimum; None while
    the pilot has not shown one."""
    decided = decided_runs(arch, pilot)
    return next((setting for setting in candidates
                 if _controls_at(decided, setting)[1] >= set(cpu_pilot.PILOT_CONTROLS)), None)


def finding(name: str, arch: str, candidates, pilot: pd.DataFrame) -> str:
    """One sentence: the setting `name` runs at, or why none is chosen (how close the pilot came), from the pilot."""
    from ..training.minimum import MIN_ACCURACY

    setting, left = chosen(arch, candidates, pilot), runs_left(arch, candidates, pilot)
    if setting is not None:
        rest = setting.label.removeprefix(name).strip()  # a cell of the sweep is named by its setting: say only the epochs
        where = (f"at {setting.label}" if rest == setting.label
                 else rest or f"for the protocol's {cpu_study.PROTOCOL['epochs']} epochs")
        return f"{name} runs {where} (both augmentation controls of seed 0 reached a minimum there)."
    if left == len(candidates) * len(cpu_pilot.PILOT_CONTROLS):
        return f"{name}: no pilot run finished yet."
    if left > 0:
        return f"{name}: no setting chosen yet; {left} pilot run(s) still to finish."
    keys = {setting.key() for setting in candidates}
    decided = decided_runs(arch, pilot)
    decided = decided[[key in keys for key in zip(decided["lr"], decided["epochs"], decided["batch_size"])]]
    # a setting is as close as its worse control got; the closest setting is the best of those
    worst = decided.sort_values(["reached_minimum", "measured_set_accuracy"]).groupby(["lr", "epochs", "batch_size"]).head(1)
    closest = worst.sort_values("measured_set_accuracy").iloc[-1]
    where = next(s for s in candidates if s.key() == (closest.lr, closest.epochs, closest.batch_size))
    return (f"{name} is not run: at none of its settings ({', '.join(s.label for s in candidates)}; "
            f"{cpu_study.PROTOCOL['epochs']} epochs where not said) did both augmentation controls reach a minimum; "
            f"the closest, {where.label}, left {closest.control} at {closest.measured_set_accuracy:.1%} of its measured "
            f"images (the bar: {MIN_ACCURACY:.0%}).")


def table(pilot: pd.DataFrame, candidates: dict | None = None) -> pd.DataFrame:
    """A pilot, a row per run: where the augmentation controls got to at each setting. With `candidates` ({arch:
    its candidate Settings}), a run at a setting that is no longer among its network's candidates says so: it is the
    record of what was started, not a setting the plan still tries."""
    why_not = [("" if reached else reason) for reached, reason in zip(pilot["reached_minimum"], pilot["reason"])]
    if candidates is not None:
        keys = {arch: {setting.key() for setting in settings} for arch, settings in candidates.items()}
        dropped = [(lr, epochs, batch) not in keys.get(arch, set()) for arch, lr, epochs, batch in
                   zip(pilot["arch"], pilot["lr"].astype(float), pilot["epochs"].astype(int), pilot["batch_size"].astype(int))]
        why_not = ["; ".join(filter(None, (why, "no longer a candidate setting"))) if gone else why
                   for why, gone in zip(why_not, dropped)]
    result = pd.DataFrame({
        "network": pilot["arch"].map(registry.NETWORK_NAMES),
        "batch size": pilot["batch_size"].astype(str),
        "learning rate": pilot["lr"].map("{:g}".format),
        "control": pilot["control"],
        "epochs done": pilot["epochs_done"].astype(str) + " / " + pilot["epochs"].astype(str),
        # the verdict before the wider columns: a table wider than the page scrolls, and this is what it is for
        "at a minimum": pilot["reached_minimum"].map({True: "yes", False: "no"}),
        "train accuracy (measured images)": pilot["measured_set_accuracy"].map("{:.1%}".format),
        "why not": why_not,
    })
    order = pilot.assign(network=result["network"]).sort_values(["network", "batch_size", "lr", "epochs", "control"]).index
    return result.loc[order]


def reuse_runs(setting: Setting, targets, pilot_runs_dir, data_dir=None) -> list[Path]:
    """Copy the pilot's finished runs at `setting` to the run folders of `targets` (seed-0 configs of the
    grid at that setting) that are empty: the same control at the same settings is the same training (bit for bit
    on CPU), so only its evaluation is left. A pilot run trained with other settings is not copied. Returns the
    folders filled."""
    from ..training.train import stored_config

    filled = []
    for config in targets:
        if config.control not in cpu_pilot.PILOT_CONTROLS or config.seed != cpu_pilot.SHARED["seed"] or config.run_dir.exists():
            continue
        pilot = run_config(config.arch, setting, config.control, pilot_runs_dir, data_dir).run_dir
        fix = f"delete {pilot} to train the pilot run again"
        if not runs.is_finished(pilot) or stored_config(pilot, fix).what_is_trained() != config.what_is_trained():
            continue
        staging = config.run_dir.with_name(config.run_dir.name + ".copying")  # a kill mid-copy leaves no half run
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(pilot, staging, ignore=shutil.ignore_patterns(runs.LOCK))
        runs.atomic_write_json(staging / runs.CONFIG, config.to_dict())  # where the grid keeps it
        staging.rename(config.run_dir)
        filled.append(config.run_dir)
    return filled
