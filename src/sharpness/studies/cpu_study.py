"""The real CIFAR-10 study on a CPU: six controls x matched seeds, every measure, resumable from results/.

`python -m sharpness cpu-study` trains and evaluates the study run by run (two worker processes of one
thread each on a 2-core machine) and, as each run finishes, copies its small files into
`results/cpu_study/` (config, summary, per-epoch rows, every measure, test predictions; no checkpoint)
and rewrites the grid summary the book reads (`results/cifar10_folder_cnn_mlp_wide_cpu.json`). A run whose
files are under results/ is never redone, so the next invocation, on this machine or a fresh clone,
continues from what is committed. The order of the work (`plan`): all six controls of every seed, seed by
seed; 2-D loss surfaces of seed 0 (stored under `results/landscapes/`; they need that seed's weights, so
they are drawn on the machine that trained it); SAM on the baseline at the paper's other five radii on the
first RHO_SEEDS seeds (`results/cifar10_folder_cnn_mlp_wide_cpu_rho.json`).

The protocol is fixed here, in one place (`PROTOCOL`), and written into every summary's provenance.
"""

from __future__ import annotations

import argparse
import functools
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import runs
from ..core.lifeline import die_with_parent
from ..core.paths import DATA_DIR, RESULTS_DIR, RUNS_DIR
from ..measuring.corruptions import ALL_CORRUPTIONS
from ..measuring.evaluate import MEASURES, PREDICTIONS_FILE
from ..measuring.measures import HESSIAN_EIGENVALUE_TOL, HESSIAN_TRACE_TOL
from ..training.controls import CONTROLS
from . import store
from .registry import DEFAULT_RHO, PAPER_RHOS, PROTOCOL, Grid, monitor_every, network_label
from .sweep import execute_run

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
RHO_SEEDS = 3  # seeds of the rho sweep (the paper's five other radii), after every control of every seed
LANDSCAPE_SEED = 0
INTERPOLATED = ("baseline", "aug_sam")  # the straight line between these two minima of seed LANDSCAPE_SEED
# The rho sweep's evaluation: what its chapter shows (no Hessian, no corruptions: they would double its cost).
RHO_MEASURES = ("test_accuracy", "train_accuracy", "generalisation_gap", "test_ece", "fisher_rao_norm",
                "relative_flatness", "relative_flatness_paper", "sam_sharpness")
STUDY_DIR = RESULTS_DIR / "cpu_study"
GRID_FILE = RESULTS_DIR / f"{PROTOCOL['dataset']}_{PROTOCOL['arch']}_cpu.json"
RHO_GRID_FILE = RESULTS_DIR / f"{PROTOCOL['dataset']}_{PROTOCOL['arch']}_cpu_rho.json"
DEFAULT_RUNS_DIR = RUNS_DIR / "cpu_study"
CORRUPTED_DIR = DATA_DIR / "cifar10-c-generated"
SURFACES_DIR = RESULTS_DIR / "landscapes"
DATA_NOTE = ("real CIFAR-10 (the JPEG pack of ../shared/data, quality 75, ImageFolder), "
             f"{PROTOCOL['train_images']:,} fixed training images, the full 10,000-image test set")
COPIED_FILES = (runs.CONFIG, runs.SUMMARY, runs.METRICS, "metrics.json")


@functools.lru_cache(maxsize=None)
def sam_rho_scale(arch: str = PROTOCOL["arch"], reference: str = "resnet18") -> float:
    """||theta_0|| of `arch` over that of the paper's ResNet-18 (seed 0, parameters SAM perturbs), to 2 significant
    figures: the factor that gives the paper's SAM radii the same size relative to the weights on our network.

    SAM's ascent step has length rho whatever the network, so rho = 0.25 moves cnn_mlp's weights by 1.8% of
    their norm and ResNet-18's by 0.22%; at the paper's absolute radii 0.25 and 0.5 the small network's hidden
    units die within a few steps (the pilot's radius probes, results/cpu_pilot/pilot.json). Scaling the radius
    keeps the paper's relative step; run folders and result rows keep the paper's rho, the config records the scale.
    """
    from ..training.models import initial_weight_norm

    return float(f"{initial_weight_norm(arch) / initial_weight_norm(reference):.2g}")


def protocol_table():
    """The study's settings as a two-column table for the book (from PROTOCOL, the one source)."""
    import pandas as pd

    described = {
        "dataset": "data set", "arch": "network", "train_images": "training images (fixed random subset)",
        "test_images": "test images", "epochs": "epochs", "batch_size": "batch size", "lr": "peak learning rate (SGD momentum 0.9)",
        "lr_schedule": "learning-rate schedule", "monitor_test_images": (f"test images of the per-epoch curve (every epoch; a run k x {PROTOCOL['epochs']} "
                                "epochs long draws it every k-th)"),
        "slow_measure_images": "images for SAM-sharpness and the Hessian measures", "sam_draws": "SAM-sharpness draws (rho 0.005)",
        "hessian_iterations": (f"Hessian steps, at most (Lanczos stops at a {HESSIAN_EIGENVALUE_TOL:g} relative "
                               f"change, Hutchinson at a standard error of {HESSIAN_TRACE_TOL:.0%})"), "corruptions": "corruptions (x 5 severities)",
        "corruption_images": "test images per corruption and severity", "landscape_resolution": "loss surface grid (per axis)",
        "landscape_images": "training images per surface point",
        "sam_rho_scale": "SAM radius = the paper's rho x this (||theta_0|| ours / ResNet-18's)",
    }  # fmt: skip
    values = {**PROTOCOL, "arch": f"{PROTOCOL['arch']}: {network_label()}", "sam_rho_scale": sam_rho_scale()}
    return pd.DataFrame({"setting": [described[key] for key in values], "value": list(values.values())})


def _evaluation_options() -> dict:
    return {
        "slow_samples": PROTOCOL["slow_measure_images"], "sam_draws": PROTOCOL["sam_draws"],
        "hessian_iterations": PROTOCOL["hessian_iterations"], "corruptions": ALL_CORRUPTIONS,
        "cifar_c_dir": str(CORRUPTED_DIR), "also_clean": True,
    }  # fmt: skip


def grid(seeds=DEFAULT_SEEDS, data_dir: str | Path | None = None, runs_dir: str | Path = DEFAULT_RUNS_DIR,
         rhos=(DEFAULT_RHO,), *, arch: str | None = None, batch_size: int | None = None, lr: float | None = None,
         epochs: int | None = None, measures=None) -> Grid:
    """The study as a sweep grid: every control of every seed (SAM at each of `rhos`), the protocol's settings.

    With more than one rho only SAM on the baseline is swept (the paper's rho study) and the evaluation
    keeps the measures the rho chapter shows. `arch`, `batch_size`, `lr`, `epochs` and `measures` replace the protocol's
    for the studies across networks and settings (`sharpness.studies.cpu_families`); SAM's radius scale follows the arch.
    """
    rho_sweep = tuple(rhos) != (DEFAULT_RHO,)
    arch = arch or PROTOCOL["arch"]
    return Grid(
        datasets=(PROTOCOL["dataset"],), archs=(arch,), seeds=tuple(seeds), epochs=epochs or PROTOCOL["epochs"],
        controls=("baseline_sam",) if rho_sweep else None, rhos=tuple(rhos),
        runs_dir=runs_dir, data_dir=data_dir, batch_size=batch_size or PROTOCOL["batch_size"], lr=lr or PROTOCOL["lr"],
        measures=measures or (RHO_MEASURES if rho_sweep else MEASURES),
        train_options={"max_train_samples": PROTOCOL["train_images"], "channels_last": True,
                       "lr_schedule": PROTOCOL["lr_schedule"], "monitor_test_images": PROTOCOL["monitor_test_images"],
                       "monitor_every": monitor_every(epochs or PROTOCOL["epochs"]), "rho_scale": sam_rho_scale(arch)},
        evaluation_options=_evaluation_options(),
    )  # fmt: skip


def committed_dir(config, runs_dir: str | Path = DEFAULT_RUNS_DIR, study_dir: Path | None = None) -> Path:
    """Where a run's small files live under results/: its folder's place below `runs_dir`, below `study_dir`
    (default STUDY_DIR)."""
    return (STUDY_DIR if study_dir is None else Path(study_dir)) / Path(config.run_dir).relative_to(runs_dir)


def is_committed(config, runs_dir: str | Path = DEFAULT_RUNS_DIR, study_dir: Path | None = None) -> bool:
    """A run is done for good once its evaluation (metrics.json, and the test predictions disagreement needs when
    it measured test accuracy) or its divergence is under results/."""
    folder = committed_dir(config, runs_dir, study_dir)
    if not runs.is_finished(folder):
        return False
    if runs.read_json(folder / runs.SUMMARY).get("status") != "finished":
        return True
    if not (folder / "metrics.json").is_file():
        return False
    return "test_accuracy" not in runs.read_json(folder / "metrics.json") or (folder / store.PREDICTIONS_JSON).is_file()


def copy_to_results(run_dir: Path, target: Path) -> None:
    """The run's small files (no checkpoint), and its test predictions as JSON (disagreement needs them)."""
    import torch

    for name in COPIED_FILES:  # atomically: a full disk leaves the old file and no temporary one, and names the file
        if (run_dir / name).is_file():
            runs.atomic_write_bytes(target / name, (run_dir / name).read_bytes())
    predictions = run_dir / PREDICTIONS_FILE
    if predictions.is_file():
        values = torch.load(predictions, weights_only=True).tolist()
        runs.atomic_write_text(target / store.PREDICTIONS_JSON, json.dumps(values, separators=(",", ":")))


def write_grids(seeds=DEFAULT_SEEDS) -> list[Path]:
    """Rewrite the grid summaries the book reads from the runs under STUDY_DIR: the controls study
    (GRID_FILE) and the rho sweep (RHO_GRID_FILE: SAM on the baseline at every radius, 0.05 included)."""
    settings = {**PROTOCOL, "sam_rho_scale": sam_rho_scale(), "seeds_planned": list(seeds), "datasets": [PROTOCOL["dataset"]],
                "archs": [PROTOCOL["arch"]], "command": "python -m sharpness cpu-study"}
    written = []
    controls_runs = committed_controls_runs()
    if controls_runs:
        written.append(store.save_grid(store.runs_from_dirs(controls_runs), GRID_FILE,
                                         settings={**settings, "controls": list(CONTROLS)}, data=DATA_NOTE, tier="cpu"))
    rho_runs = [path for path in controls_runs if path.parent.name == "baseline_sam"]
    rho_runs += [path for folder in sorted(STUDY_DIR.glob("rho*")) for path in runs.find_runs(folder) if made_under_protocol(path)]
    if any(path.is_relative_to(folder) for path in rho_runs for folder in STUDY_DIR.glob("rho*")):
        written.append(store.save_grid(store.runs_from_dirs(rho_runs), RHO_GRID_FILE,
                                         settings={**settings, "controls": ["baseline_sam"], "rhos": list(PAPER_RHOS)},
                                         data=DATA_NOTE, tier="cpu"))
    return written


def committed_controls_runs() -> list[Path]:
    """The committed runs of the controls grid under PROTOCOL (not the rho sweep's, not earlier protocols')."""
    return [path for path in runs.find_runs(STUDY_DIR) if made_under_protocol(path)
            and not path.relative_to(STUDY_DIR).parts[0].startswith("rho")]


def made_under_protocol(run_dir: Path, arch: str = PROTOCOL["arch"], epochs: int | None = None) -> bool:
    """Whether a committed run was made under PROTOCOL (earlier protocols' runs may still sit under results/),
    on `arch` for `epochs` (default: the protocol's; the studies across networks reuse the protocol on other
    networks, a family at the epochs its pilot chose)."""
    config = runs.read_json(run_dir / runs.CONFIG)
    return (config.get("arch") == arch and config.get("max_train_samples") == PROTOCOL["train_images"]
            and config.get("epochs") == (epochs or PROTOCOL["epochs"]) and config.get("lr_schedule") == PROTOCOL["lr_schedule"])


# --- the work: tasks for the worker processes ---------------------------------------------------------


def _worker_init(parent: int | None = None) -> None:
    import torch

    from ..core.provenance import code_version

    die_with_parent(parent)

    torch.set_num_threads(1)  # one thread per process is fastest for a small network on a shared CPU
    code_version()  # the commit this worker's code was loaded from, recorded in every run it makes


def _train_and_evaluate(config, measures, evaluation_options) -> dict:
    return execute_run(config, measures, use_papermill=False, evaluation_options=evaluation_options)


def _train_only(config) -> str:
    from ..training.train import train

    train(config, progress=False)
    return str(config.run_dir)


def _re_evaluate(run_dir: str, measures, evaluation_options) -> dict:
    from ..measuring.evaluate import evaluate_run

    return evaluate_run(run_dir, measures, device="cpu", overwrite=True, progress=False, **evaluation_options)


def _landscape(run_dir: str, surfaces_dir: str, resolution: int, images: int, sam_draws: int) -> str:
    from ..measuring.landscape import landscape_of_run, save_landscape

    item = landscape_of_run(run_dir, resolution=resolution, subset=images, sam_draws=sam_draws, progress=False)
    return str(save_landscape(item, surfaces_dir))


def _interpolation(run_a: str, run_b: str, path: str, images: int) -> str:
    from ..measuring.landscape import interpolation_of_runs, save_surface_json

    return str(save_surface_json(interpolation_of_runs(run_a, run_b, subset=images, progress=False), path))


@dataclass
class Task:
    kind: str  # "run" (train and evaluate), "train" (a pilot run: no evaluation), "re-evaluate" (measure a committed
    # run again from its checkpoint), "landscape" (a surface of a trained run), "interpolation"
    config: object
    grid: Grid | None  # None for "train"

    @property
    def name(self) -> str:
        config = self.config
        rho = f" rho {config.rho:g}" if config.control.endswith("sam") else ""
        setting = "" if (config.batch_size, config.lr) == (PROTOCOL["batch_size"], PROTOCOL["lr"]) else \
            f" batch {config.batch_size} lr {config.lr:g}"
        setting += "" if config.epochs == PROTOCOL["epochs"] else f" {config.epochs} epochs"
        return f"{self.kind} {config.arch}{setting} {config.control}{rho} seed{config.seed}"

    def submit(self, pool: concurrent.futures.Executor) -> concurrent.futures.Future:
        if self.kind == "run":
            return pool.submit(_train_and_evaluate, self.config, self.grid.measures, self.grid.evaluation_options)
        if self.kind == "train":
            return pool.submit(_train_only, self.config)
        if self.kind == "re-evaluate":
            return pool.submit(_re_evaluate, str(self.config.run_dir), self.grid.measures, self.grid.evaluation_options)
        if self.kind == "landscape":
            return pool.submit(_landscape, str(self.config.run_dir), str(SURFACES_DIR), PROTOCOL["landscape_resolution"],
                               PROTOCOL["landscape_images"], PROTOCOL["sam_draws"])
        return pool.submit(_interpolation, *map(str, self._interpolated_runs()), str(self._interpolation_file()),
                           PROTOCOL["landscape_images"])

    def _interpolated_runs(self) -> tuple[Path, Path]:
        """baseline -> aug_sam of this task's seed, the book's "between two minima" picture."""
        return tuple(Path(self.config.run_dir).parent.parent / control / f"seed{self.config.seed}" for control in INTERPOLATED)

    def _interpolation_file(self) -> Path:
        from ..measuring.landscape import interpolation_path

        return interpolation_path(self.config.dataset, self.config.arch, self.config.seed, *INTERPOLATED, SURFACES_DIR)

    def ready(self) -> bool:
        """Surfaces need their runs trained; runs are always ready."""
        if self.kind == "interpolation":
            return all(runs.is_finished(path) for path in self._interpolated_runs())
        return self.kind in ("run", "train", "re-evaluate") or runs.is_finished(self.config.run_dir)


def plan(seeds=DEFAULT_SEEDS, *, data_dir=None, runs_dir=DEFAULT_RUNS_DIR, landscapes: bool = True,
         rho_sweep: bool = True) -> list[Task]:
    """What is not yet under results/, most important first, so that an interruption anywhere leaves a complete
    smaller study: all six controls of one seed before the next seed (the claims need matched seeds), then the
    surfaces of seed LANDSCAPE_SEED (one per control, and the line between the INTERPOLATED pair), then the
    rho sweep on the first RHO_SEEDS seeds; runs trained already, with only their evaluation left, go first."""
    from ..measuring.landscape import landscape_path

    tasks = _controls_tasks(seeds, data_dir, runs_dir)
    if landscapes and LANDSCAPE_SEED in seeds:
        g = grid((LANDSCAPE_SEED,), data_dir, runs_dir)
        tasks += [Task("landscape", c, g) for c in g.configs("cpu")
                  if not landscape_path(c.dataset, c.arch, c.seed, c.control, SURFACES_DIR).is_file()]
        between = Task("interpolation", g.configs("cpu")[0], g)
        if not between._interpolation_file().is_file():
            tasks.append(between)
    if rho_sweep:
        tasks += _rho_tasks(seeds, data_dir, runs_dir)
    # surfaces were kept above only where their file is missing; a run, where it is not committed
    return trained_first([task for task in tasks if task.kind != "run" or not is_committed(task.config, runs_dir)])


def trained_first(tasks: list[Task]) -> list[Task]:
    """`tasks` with the runs trained already (an evaluation cut short, a pilot's run copied in) moved to the front:
    a minute of measuring each, they should land before hours of training. Stable: the rest keep their order."""
    return sorted(tasks, key=lambda task: not (task.kind == "run" and runs.is_finished(task.config.run_dir)))


def _controls_tasks(seeds, data_dir, runs_dir) -> list[Task]:
    return [Task("run", c, g) for seed in seeds for g in (grid((seed,), data_dir, runs_dir),) for c in g.configs("cpu")]


def _rho_tasks(seeds, data_dir, runs_dir) -> list[Task]:
    g = grid(tuple(seeds[:RHO_SEEDS]), data_dir, runs_dir, rhos=[rho for rho in PAPER_RHOS if rho != DEFAULT_RHO])
    return [Task("run", c, g) for c in g.configs("cpu")]


def newest_measuring_commit() -> str | None:
    """The newest commit that changed the measuring package (None outside git)."""
    from ..core.provenance import last_change
    from ..measuring import evaluate

    return last_change(Path(evaluate.__file__).parent)


def measured_by_current_code(committed: Path, newest: str | None = None) -> bool:
    """Whether a committed run's metrics.json was written by clean code at or after `newest` (default: the newest
    commit that changed the measuring package; unknown commits and a missing git count as not)."""
    from ..core.provenance import contains

    code = runs.read_json(committed / "metrics.json").get("code", {})
    newest = newest or newest_measuring_commit()
    return bool(newest and code.get("commit")) and not code.get("dirty") and contains(code["commit"], newest)


def re_evaluation_plan(seeds=DEFAULT_SEEDS, *, data_dir=None, runs_dir=DEFAULT_RUNS_DIR) -> list[Task]:
    """The committed runs (controls grid, then rho sweep) whose measures predate the current measuring code, to
    measure again from the checkpoints under `runs_dir` (see `stale_measures`)."""
    return stale_measures(_controls_tasks(seeds, data_dir, runs_dir) + _rho_tasks(seeds, data_dir, runs_dir), runs_dir)


def stale_measures(tasks: list[Task], runs_dir, study_dir: Path | None = None) -> list[Task]:
    """"re-evaluate" tasks for the finished runs of `tasks` committed under `study_dir` (default STUDY_DIR) whose
    measures predate the current measuring code, measured again from their checkpoints under `runs_dir` (the
    machine that trained them keeps them). A run whose checkpoint is missing, or whose checkpoint is not the
    committed run's (another summary), is refused by name."""
    todo, problems, newest = [], [], newest_measuring_commit()
    for task in tasks:
        committed = committed_dir(task.config, runs_dir, study_dir)
        if not is_committed(task.config, runs_dir, study_dir) or \
                runs.read_json(committed / runs.SUMMARY).get("status") != "finished":
            continue
        if measured_by_current_code(committed, newest):
            continue
        local = Path(task.config.run_dir)
        if not (local / runs.CHECKPOINT).is_file():
            problems.append(f"{local / runs.CHECKPOINT} is missing")
        elif runs.read_json(local / runs.SUMMARY) != runs.read_json(committed / runs.SUMMARY):
            problems.append(f"{local} holds another training than {committed} (their summary.json differ)")
        else:
            todo.append(Task("re-evaluate", task.config, task.grid))
    if problems:
        raise ValueError("cannot measure the committed runs again: " + "; ".join(problems) +
                         ". Pass --runs-dir with the folder the study trained them in")
    return todo


def prepare_data(data_dir: str | Path | None, progress: bool = True) -> None:
    """Decode the images once (cached beside them) and corrupt the fixed test subset once for all runs."""
    from ..measuring.corruptions import write_cifar_c
    from ..measuring.evaluate import fixed_subset
    from ..training.data import load_dataset

    data = load_dataset(PROTOCOL["dataset"], data_dir, progress=progress)
    if not (CORRUPTED_DIR / "labels.npy").is_file() or any(not (CORRUPTED_DIR / f"{n}.npy").is_file() for n in ALL_CORRUPTIONS):
        subset = fixed_subset(len(data.test_labels), PROTOCOL["corruption_images"], seed=0)
        write_cifar_c(data.test_images[subset], data.test_labels[subset], CORRUPTED_DIR, progress=progress)


def run_study(seeds=DEFAULT_SEEDS, *, workers: int = 2, data_dir=None, runs_dir=DEFAULT_RUNS_DIR,
              landscapes: bool = True, rho_sweep: bool = True, progress: bool = True) -> int:
    """Train, evaluate and commit every run not yet under results/; returns the number of failures."""
    todo = plan(seeds, data_dir=data_dir, runs_dir=runs_dir, landscapes=landscapes, rho_sweep=rho_sweep)
    print(f"CPU study: {len(todo)} tasks to do with {workers} workers; finished runs go to {STUDY_DIR}")
    if not todo:
        write_grids(seeds)
        return 0
    prepare_data(data_dir, progress)
    return run_tasks(todo, workers=workers, runs_dir=runs_dir, study_dir=STUDY_DIR,
                     write=functools.partial(write_grids, seeds), progress=progress, desc="CPU study tasks")


def re_evaluate_study(seeds=DEFAULT_SEEDS, *, workers: int = 2, data_dir=None, runs_dir=DEFAULT_RUNS_DIR,
                      progress: bool = True) -> int:
    """Measure again every committed run whose measures predate the measuring code (`re_evaluation_plan`), rewriting
    its files under results/ and the grids as each lands; returns the number of failures."""
    todo = re_evaluation_plan(seeds, data_dir=data_dir, runs_dir=runs_dir)
    print(f"CPU study: {len(todo)} committed runs to measure again with {workers} workers")
    if not todo:
        return 0
    prepare_data(data_dir, progress)
    return run_tasks(todo, workers=workers, runs_dir=runs_dir, study_dir=STUDY_DIR,
                     write=functools.partial(write_grids, seeds), progress=progress, desc="measured again")


def run_tasks(todo: list[Task], *, workers: int, runs_dir, study_dir: Path, write, progress: bool = True,
              desc: str = "tasks") -> int:
    """Do `todo` in order on `workers` processes (one thread each), starting each task once it is ready; copy
    every finished run's small files to its place under `study_dir` and call `write()` (rewrite the grid
    summaries) as it lands. Returns the number of failures."""
    from ..core.progress import tqdm

    todo, failures = list(todo), 0
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                                initargs=(os.getpid(),)) as pool, \
            tqdm(total=len(todo), desc=desc, unit="task", disable=not progress) as bar:
        running: dict[concurrent.futures.Future, Task] = {}
        while todo or running:
            for task in [t for t in todo if t.ready()][: max(0, workers - len(running))]:
                todo.remove(task)
                running[task.submit(pool)] = task
            if not running:  # what is left waits for runs that failed
                failures += len(todo)
                print(f"not done (their runs failed): {', '.join(t.name for t in todo)}", file=sys.stderr)
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                failures += not _finish(task, future, committed_dir(task.config, runs_dir, study_dir), write)
                bar.update()
    return failures


def _finish(task: Task, future: concurrent.futures.Future, target: Path, write) -> bool:
    """Record a finished task under results/ (`target`, then `write()`); report a failure. True when it succeeded."""
    try:
        outcome = future.result()
    except Exception as error:  # the worker process itself died
        print(f"FAILED {task.name}: {error!r}", file=sys.stderr)
        return False
    if task.kind == "re-evaluate":
        copy_to_results(Path(task.config.run_dir), target)
        write()
        print(f"{task.name}: measured again in {sum(outcome['seconds'].values()):.0f} s -> {target}")
        return True
    if task.kind != "run":
        print(f"{task.kind} written: {outcome}")
        if task.kind == "train":
            write()  # a pilot's record
        return True
    if outcome["status"] != "done":
        reason = [line for line in (outcome["error"] or "").splitlines() if line.strip()]
        print(f"FAILED {task.name}: {reason[-1] if reason else 'unknown error'}", file=sys.stderr)
        return False
    copy_to_results(Path(outcome["run_dir"]), target)
    write()
    seconds = outcome.get("seconds", {})
    print(f"{task.name}: done in {seconds.get('total', 0):.0f} s (train {seconds.get('train', 0):.0f} s, "
          f"evaluate {seconds.get('evaluate', 0):.0f} s) -> {target}")
    return True


# --- command line ---------------------------------------------------------------------------------


def add_run_arguments(parser: argparse.ArgumentParser, *, seeds_default, seeds_help: str, runs_dir_default,
                      runs_dir_help: str) -> None:
    """The options every CPU plan shares (cpu-study, cpu-families): seeds, workers, data, runs folder, measuring
    committed runs again, progress."""
    parser.add_argument("--seeds", nargs="+", type=int, default=seeds_default, help=seeds_help)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one CPU thread each)")
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 ImageFolder pack (default: data/cifar10-jpeg)")
    parser.add_argument("--runs-dir", default=runs_dir_default, help=runs_dir_help)
    parser.add_argument("--re-evaluate", action="store_true",
                        help="measure the committed runs again with the current measuring code (needs their checkpoints)")
    parser.add_argument("--no-progress", action="store_true")


def check_run_arguments(args: argparse.Namespace) -> None:
    """Refuse, by value, a worker count or seed list that `add_run_arguments` parsed but no plan can use."""
    if args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    if args.seeds is not None and (len(set(args.seeds)) != len(args.seeds) or any(seed < 0 for seed in args.seeds)):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {args.seeds}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, seeds_default=list(DEFAULT_SEEDS), seeds_help="seeds, in the order to run them",
                      runs_dir_default=str(DEFAULT_RUNS_DIR), runs_dir_help="checkpoints and working files")
    parser.add_argument("--no-landscapes", action="store_true", help="skip the loss surfaces of seed 0")
    parser.add_argument("--no-rho-sweep", action="store_true", help="skip SAM on the baseline at the paper's other radii")


def main(args: argparse.Namespace) -> int:
    check_run_arguments(args)
    for path in (GRID_FILE, RHO_GRID_FILE, STUDY_DIR / "metrics.json"):  # a read-only results/ is noticed before training
        runs.check_writable(path)
    started = time.perf_counter()
    if args.re_evaluate:
        failures = re_evaluate_study(tuple(args.seeds), workers=args.workers, data_dir=args.data_dir,
                                     runs_dir=args.runs_dir, progress=not args.no_progress)
        print(f"CPU study: {failures} re-evaluation(s) failed; {time.perf_counter() - started:.0f} s")
        return 1 if failures else 0
    failures = run_study(tuple(args.seeds), workers=args.workers, data_dir=args.data_dir, runs_dir=args.runs_dir,
                         landscapes=not args.no_landscapes, rho_sweep=not args.no_rho_sweep, progress=not args.no_progress)
    print(f"CPU study: {failures} task(s) failed; {time.perf_counter() - started:.0f} s this invocation; "
          f"grid summary: {GRID_FILE}")
    return 1 if failures else 0


# --- what "matched seeds" guarantees across machines ----------------------------------------------

RERUN_FILE = RESULTS_DIR / "reproducibility" / "baseline_seed0_onednn_off.json"


def kernel_rerun(seed: int = 0, control: str = "baseline", data_dir=None, runs_dir=RUNS_DIR / "kernel_rerun") -> Path:
    """Train one committed run again with oneDNN off (other CPU kernels: what another machine changes) and store
    its test predictions; `rerun_disagreement` compares them with the committed run's."""
    import torch

    from ..core.provenance import code_version
    from ..measuring.evaluate import predict
    from ..training.data import batches
    from ..training.train import load_run, train

    torch.backends.mkldnn.enabled = False
    config = next(c for c in grid((seed,), data_dir, runs_dir).configs("cpu") if c.control == control)
    train(config, progress=False)
    model, config, data = load_run(config.run_dir)
    logits, _ = predict(model, lambda: batches(data.test_images, data.test_labels, 128, data=data), progress=False)
    document = {"provenance": {"what": f"the CPU study's {control} seed {seed}, trained again on the same machine and packages "
                                       "with oneDNN switched off (torch.backends.mkldnn.enabled = False): other CPU kernels",
                               "command": "python -c 'from sharpness.studies.cpu_study import kernel_rerun; kernel_rerun()'",
                               "code": code_version(), "date": time.strftime("%Y-%m-%d"), "config": config.to_dict()},
                "test_predictions": logits.argmax(1).tolist()}
    return runs.atomic_write_json(RERUN_FILE, document)


def rerun_disagreement(path: Path = RERUN_FILE) -> dict | None:
    """Share of test images on which the kernel re-run and the committed run disagree, beside the mean
    disagreement between the committed seeds of the same control (None when no re-run is committed)."""
    import torch

    from ..measuring.evaluate import prediction_disagreement

    if not Path(path).is_file():
        return None
    rerun = runs.read_json(path)
    config = rerun["provenance"]["config"]
    folder = STUDY_DIR / config["dataset"] / config["arch"] / config["control"]
    seeds = {p.parent.name: store.saved_predictions(p.parent) for p in sorted(folder.glob(f"seed*/{store.PREDICTIONS_JSON}"))}
    ours = seeds.get(f"seed{config['seed']}")
    if ours is None:
        return None
    return {"control": config["control"], "seed": config["seed"],
            "rerun": prediction_disagreement([torch.tensor(rerun["test_predictions"]), ours]),
            "between_seeds": prediction_disagreement(list(seeds.values())) if len(seeds) > 1 else None,
            "seeds": len(seeds)}
