"""The real CIFAR-10 study on a CPU: six controls x matched seeds, every measure, resumable from results/.

`python -m sharpness cpu-study` trains and evaluates the study run by run (two worker processes of one
thread each on a 2-core machine) and, as each run finishes, copies its small files into
`results/cpu_study/` (config, summary, per-epoch rows, every measure, test predictions; no checkpoint)
and rewrites the grid summary the book reads (`results/cifar10_folder_cnn_mlp_cpu.json`). A run whose
files are under results/ is never redone, so the next invocation, on this machine or a fresh clone,
continues from what is committed. After the seeds in `LANDSCAPE_AFTER_SEEDS`, 2-D loss surfaces of one
seed per control are drawn from the trained runs and stored under `results/landscapes/`.

The protocol is fixed here, in one place (`PROTOCOL`), and written into every summary's provenance.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import results, runs
from .controls import CONTROLS
from .corruptions import ALL_CORRUPTIONS
from .evaluate import MEASURES, PREDICTIONS_FILE
from .paths import DATA_DIR, RESULTS_DIR, RUNS_DIR
from .sweep import Grid, execute_run

# The study's settings. Batch size and learning rate come from the paper's own sweep ({128, 256} x
# {1e-3, 1e-2}, Appendix F.2): batch 128 at lr 1e-2 is the pair that brings the baseline to a minimum
# (>= 99% train accuracy) within 30 epochs on this network; SGD momentum 0.9, constant rate, and the
# controls' crop+flip, weight decay 5e-4 and SAM rho 0.05 are the paper's.
PROTOCOL = {
    "dataset": "cifar10_folder",
    "arch": "cnn_mlp",
    "train_images": 10_000,  # a fixed random subset of the 50k (the same for every run)
    "test_images": 10_000,  # the whole test set
    "epochs": 30,
    "batch_size": 128,
    "lr": 1e-2,
    "slow_measure_images": 2_000,  # SAM-sharpness (K = 100, rho 0.005) and the Hessian measures
    "sam_draws": 100,
    "hessian_iterations": 20,
    "corruptions": len(ALL_CORRUPTIONS),  # 15 standard + 4 extra, 5 severities, CIFAR constants
    "corruption_images": 1_000,  # a fixed random subset of the test set, corrupted once for all runs
    "landscape_resolution": 51,
    "landscape_images": 1_000,
}
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
LANDSCAPE_SEED = 0
LANDSCAPE_AFTER_SEEDS = 3  # surfaces are drawn once this many seeds are done (they need seed 0's weights)
STUDY_DIR = RESULTS_DIR / "cpu_study"
GRID_FILE = RESULTS_DIR / "cifar10_folder_cnn_mlp_cpu.json"
CORRUPTED_DIR = DATA_DIR / "cifar10-c-generated"
SURFACES_DIR = RESULTS_DIR / "landscapes"
DATA_NOTE = ("real CIFAR-10 (the JPEG pack of ../shared/data, quality 75, ImageFolder), "
             f"{PROTOCOL['train_images']:,} fixed training images, the full 10,000-image test set")
COPIED_FILES = (runs.CONFIG, runs.SUMMARY, runs.METRICS, "metrics.json")


def grid(seeds=DEFAULT_SEEDS, data_dir: str | Path | None = None, runs_dir: str | Path = RUNS_DIR / "cpu_study") -> Grid:
    """The study as a sweep grid: every control of every seed, the protocol's training and evaluation."""
    return Grid(
        datasets=(PROTOCOL["dataset"],), archs=(PROTOCOL["arch"],), seeds=tuple(seeds), epochs=PROTOCOL["epochs"],
        runs_dir=runs_dir, data_dir=data_dir, batch_size=PROTOCOL["batch_size"], lr=PROTOCOL["lr"], measures=MEASURES,
        train_options={"max_train_samples": PROTOCOL["train_images"], "channels_last": True},
        evaluation_options={
            "slow_samples": PROTOCOL["slow_measure_images"], "sam_draws": PROTOCOL["sam_draws"],
            "hessian_iterations": PROTOCOL["hessian_iterations"], "corruptions": ALL_CORRUPTIONS,
            "cifar_c_dir": str(CORRUPTED_DIR), "also_clean": True,
        },
    )  # fmt: skip


def committed_dir(config) -> Path:
    """Where a run's small files live under results/: the run folder's layout below STUDY_DIR."""
    return STUDY_DIR / config.dataset / config.arch / config.control / f"seed{config.seed}"


def is_committed(config) -> bool:
    """A run is done for good once its evaluation (metrics.json) or its divergence is under results/."""
    folder = committed_dir(config)
    if not runs.is_finished(folder):
        return False
    return (folder / "metrics.json").is_file() or runs.read_json(folder / runs.SUMMARY).get("status") != "finished"


def copy_to_results(run_dir: Path, target: Path) -> None:
    """The run's small files (no checkpoint), and its test predictions as JSON (disagreement needs them)."""
    import torch

    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, target / f".{name}.tmp")
            (target / f".{name}.tmp").replace(target / name)
    predictions = run_dir / PREDICTIONS_FILE
    if predictions.is_file():
        values = torch.load(predictions, weights_only=True).tolist()
        runs.atomic_write_text(target / results.PREDICTIONS_JSON, json.dumps(values, separators=(",", ":")))


def write_grid(seeds=DEFAULT_SEEDS) -> Path | None:
    """Rewrite the grid summary the book reads (GRID_FILE) from every run under STUDY_DIR; None if none."""
    run_dirs = runs.find_runs(STUDY_DIR)
    if not run_dirs:
        return None
    settings = {**PROTOCOL, "tier": "cpu", "seeds_planned": list(seeds), "controls": list(CONTROLS),
                "datasets": [PROTOCOL["dataset"]], "archs": [PROTOCOL["arch"]],
                "command": "python -m sharpness cpu-study"}
    return results.save_grid(results.runs_from_dirs(run_dirs), GRID_FILE, settings=settings, data=DATA_NOTE)


# --- the work: tasks for the worker processes ---------------------------------------------------------


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one thread per process is fastest for a small network on a shared CPU


def _train_and_evaluate(config, measures, evaluation_options) -> dict:
    return execute_run(config, measures, use_papermill=False, evaluation_options=evaluation_options)


def _landscape(run_dir: str, surfaces_dir: str, resolution: int, images: int, sam_draws: int) -> str:
    from .landscape import landscape_of_run, save_landscape

    item = landscape_of_run(run_dir, resolution=resolution, subset=images, sam_draws=sam_draws, progress=False)
    return str(save_landscape(item, surfaces_dir))


@dataclass
class Task:
    kind: str  # "run" or "landscape"
    config: object

    @property
    def name(self) -> str:
        return f"{self.kind} {self.config.control} seed{self.config.seed}"


def prepare_data(data_dir: str | Path | None, progress: bool = True) -> None:
    """Decode the images once (cached beside them) and corrupt the fixed test subset once for all runs."""
    from .corruptions import write_cifar_c
    from .data import load_dataset
    from .evaluate import fixed_subset

    data = load_dataset(PROTOCOL["dataset"], data_dir)
    if not (CORRUPTED_DIR / "labels.npy").is_file() or any(not (CORRUPTED_DIR / f"{n}.npy").is_file() for n in ALL_CORRUPTIONS):
        subset = fixed_subset(len(data.test_labels), PROTOCOL["corruption_images"], seed=0)
        write_cifar_c(data.test_images[subset], data.test_labels[subset], CORRUPTED_DIR, progress=progress)


def run_study(seeds=DEFAULT_SEEDS, *, workers: int = 2, data_dir=None, runs_dir=RUNS_DIR / "cpu_study",
              landscapes: bool = True, progress: bool = True) -> int:
    """Train, evaluate and commit every run not yet under results/; returns the number of failures."""
    from tqdm.auto import tqdm

    from .landscape import landscape_path

    study = grid(seeds, data_dir, runs_dir)
    configs = study.configs(device="cpu")
    todo = [Task("run", c) for c in configs if not is_committed(c)]
    if landscapes:
        for c in configs:
            if c.seed == LANDSCAPE_SEED and not landscape_path(c.dataset, c.arch, c.seed, c.control, SURFACES_DIR).is_file():
                # after the first LANDSCAPE_AFTER_SEEDS seeds' runs, before the rest
                position = sum(1 for t in todo if t.kind == "run" and t.config.seed in seeds[:LANDSCAPE_AFTER_SEEDS])
                todo.insert(position, Task("landscape", c))
    print(f"CPU study: {len(configs)} runs planned, {len(configs) - sum(t.kind == 'run' for t in todo)} already "
          f"under {STUDY_DIR}, {len(todo)} tasks to do with {workers} workers")
    if not todo:
        write_grid(seeds=seeds)
        return 0
    prepare_data(data_dir, progress)
    failures = 0
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool, \
            tqdm(total=len(todo), desc="CPU study tasks", unit="task", disable=not progress) as bar:
        running: dict[concurrent.futures.Future, Task] = {}
        while todo or running:
            for task in [t for t in todo if _ready(t)][: max(0, workers - len(running))]:
                todo.remove(task)
                if task.kind == "run":
                    future = pool.submit(_train_and_evaluate, task.config, study.measures, study.evaluation_options)
                else:
                    future = pool.submit(_landscape, str(task.config.run_dir), str(SURFACES_DIR), PROTOCOL["landscape_resolution"],
                                         PROTOCOL["landscape_images"], PROTOCOL["sam_draws"])
                running[future] = task
            if not running:  # what is left waits for runs that failed
                failures += len(todo)
                print(f"not done (their runs failed): {', '.join(t.name for t in todo)}", file=sys.stderr)
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                failures += not _finish(task, future, seeds)
                bar.update()
    return failures


def _ready(task: Task) -> bool:
    """A landscape needs its run trained; runs are always ready."""
    return task.kind == "run" or runs.is_finished(task.config.run_dir)


def _finish(task: Task, future: concurrent.futures.Future, seeds) -> bool:
    """Record a finished task under results/; report a failure. True when it succeeded."""
    try:
        outcome = future.result()
    except Exception as error:  # the worker process itself died
        print(f"FAILED {task.name}: {error!r}", file=sys.stderr)
        return False
    if task.kind == "landscape":
        print(f"surface written: {outcome}")
        return True
    if outcome["status"] != "done":
        reason = [line for line in (outcome["error"] or "").splitlines() if line.strip()]
        print(f"FAILED {task.name}: {reason[-1] if reason else 'unknown error'}", file=sys.stderr)
        return False
    copy_to_results(Path(outcome["run_dir"]), committed_dir(task.config))
    write_grid(seeds=seeds)
    seconds = outcome.get("seconds", {})
    print(f"{task.name}: done in {seconds.get('total', 0):.0f} s (train {seconds.get('train', 0):.0f} s, "
          f"evaluate {seconds.get('evaluate', 0):.0f} s) -> {committed_dir(task.config)}")
    return True


# --- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="seeds, in the order to run them")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one CPU thread each)")
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 ImageFolder pack (default: data/cifar10-jpeg)")
    parser.add_argument("--runs-dir", default=str(RUNS_DIR / "cpu_study"), help="checkpoints and working files")
    parser.add_argument("--no-landscapes", action="store_true", help="skip the loss surfaces of seed 0")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    if len(set(args.seeds)) != len(args.seeds) or any(seed < 0 for seed in args.seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {args.seeds}")
    started = time.perf_counter()
    failures = run_study(tuple(args.seeds), workers=args.workers, data_dir=args.data_dir, runs_dir=args.runs_dir,
                         landscapes=not args.no_landscapes, progress=not args.no_progress)
    print(f"CPU study: {failures} task(s) failed; {time.perf_counter() - started:.0f} s this invocation; "
          f"grid summary: {GRID_FILE}")
    return 1 if failures else 0
