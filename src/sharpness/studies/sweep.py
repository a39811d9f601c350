"""Run the paper's grid (datasets x archs x controls x seeds, plus SAM rho values), k runs per GPU.

One training process cannot keep an H100 busy (it is launch-bound: 22-26k img/s for one ResNet-18 run,
87k in total for 4 concurrent runs, 118k for 8), so runs share a GPU. Three backends, one interface
(`run_configs(..., backend=...)`): "ray" (each run a Ray task holding 1/k of a GPU; local Ray or a
cluster by address), "local" (k worker processes per GPU of this machine, no Ray: what a bare GPU
machine has) and "serial" (one after another in this process). A run is trained (a papermill
execution of notebooks/train.ipynb where papermill is importable, else `sharpness.training.train.train`) and then
evaluated (`sharpness.measuring.evaluate.evaluate_run`). Finished runs (summary.json + metrics.json) are skipped;
a failed run leaves `sweep_failure.json` with its traceback and is retried only on request.

From a notebook cell: `run_sweep(Grid(controls=CONTROLS, seeds=range(3), epochs=100))`.
From a shell: `python -m sharpness sweep --controls all --seeds 0 1 2 --epochs 100`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.cli_values import positive_int
from ..core import runs as runs_on_disk
from ..core.paths import REPO_ROOT, RESULTS_DIR, RUNS_DIR
from ..core.progress import tqdm
from ..core.threads import single_cpu_thread
from . import store
from .registry import DEFAULT_RHO, PAPER_RHOS, Grid, Study, committed_grid, offline_grid, study_from_grid

FAILURE_FILE = "sweep_failure.json"
BACKENDS = ("ray", "local", "serial")
EXECUTED_NOTEBOOK = "train.out.ipynb"
TRAIN_NOTEBOOK = REPO_ROOT / "notebooks" / "train.ipynb"
# Concurrent runs per GPU: 8 gave the highest aggregate throughput measured on one H100.
DEFAULT_RUNS_PER_GPU = 8


@dataclass
class SweepReport:
    """What a sweep did: runs already done before it, runs it completed, runs that failed (with why)."""

    total: int
    skipped: list = field(default_factory=list)
    completed: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)  # run dir -> error message
    pending_failed: list = field(default_factory=list)  # failed earlier, not retried this time
    interrupted: list = field(default_factory=list)  # stopped at the deadline, resumable
    seconds: dict = field(default_factory=dict)  # run dir -> {"train", "evaluate", "total"} wall seconds

    def __str__(self):
        lines = [
            f"{self.total} runs: {len(self.skipped)} already done, {len(self.completed)} completed now, "
            f"{len(self.interrupted)} stopped at the deadline (resumable), "
            f"{len(self.failed)} failed, {len(self.pending_failed)} failed earlier (retry with retry_failed=True)"
        ]
        lines += [f"  FAILED {run_dir}: {failure_reason(error)}" for run_dir, error in self.failed.items()]
        lines += [f"  FAILED EARLIER {run_dir}: {failure_reason(_read_failure(run_dir))}" for run_dir in self.pending_failed]
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        """True when no run of the grid has failed, now or in an earlier sweep."""
        return not (self.failed or self.pending_failed)


def failure_reason(error: str | None) -> str:
    """The line that says why: the last non-blank line of a traceback (some end in blank lines)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no reason recorded"


def _read_failure(run_dir) -> str | None:
    from ..core.runs import RunFileError, read_json

    try:
        return read_json(Path(run_dir) / FAILURE_FILE).get("error")
    except RunFileError as error:
        return str(error)


def run_state(run_dir: Path) -> str:
    """'done' (trained and evaluated, or diverged), 'trained', 'failed' or 'todo'."""
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file():
        status = runs_on_disk.read_json(summary, "delete it; the next sweep finishes the run again from its checkpoint").get("status", "finished")
        if status != "finished" or _evaluated(run_dir):
            return "done"
        return "trained"
    if (run_dir / FAILURE_FILE).is_file():
        return "failed"
    return "todo"


def _evaluated(run_dir: Path) -> bool:
    """metrics.json is there, with the test predictions beside it where it holds test accuracy (prediction
    disagreement reads them: lost, the run is evaluated again, which measures them again)."""
    from ..measuring.evaluate import METRICS_FILE, PREDICTIONS_FILE

    if not (run_dir / METRICS_FILE).is_file():
        return False
    metrics = runs_on_disk.read_json(run_dir / METRICS_FILE, "delete it; the next sweep evaluates the run again")
    return "test_accuracy" not in metrics or (run_dir / PREDICTIONS_FILE).is_file()


def _train_with_papermill(config) -> None:
    """Execute notebooks/train.ipynb for `config`, passing the parameters the notebook declares."""
    import papermill

    declared = papermill.inspect_notebook(str(TRAIN_NOTEBOOK))
    values = {key: value for key, value in dataclasses.asdict(config).items() if key in declared}
    values = {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}
    if "threads" in declared and str(config.device) == "cpu":
        import torch

        values["threads"] = torch.get_num_threads()  # the kernel uses this process's CPU threads
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    partial = run_dir / f"{EXECUTED_NOTEBOOK}.partial"  # papermill rewrites its output after every cell
    try:
        papermill.execute_notebook(str(TRAIN_NOTEBOOK), str(partial), parameters=values, progress_bar=False, cwd=str(REPO_ROOT))
    finally:  # whole, and kept when the run failed (it shows where)
        if partial.is_file():
            os.replace(partial, run_dir / EXECUTED_NOTEBOOK)


def papermill_available() -> bool:
    try:
        import papermill  # noqa: F401
    except ImportError:
        return False
    return TRAIN_NOTEBOOK.is_file()


def execute_run(
    config, measures=None, use_papermill: bool | None = None, evaluation_options: dict | None = None,
    deadline: float | None = None, reserve: float = 0.0,
) -> dict:
    """Train (unless trained) and evaluate (unless evaluated) one run; never raises.

    Returns {"run_dir", "status": "done" | "interrupted" | "failed", "error", "seconds"}, where
    "seconds" splits this call's wall time into "train", "evaluate" and "total" (the grid benchmark
    projects from them). A failure also lands in the run folder, so later sweeps skip it unless asked
    to retry. With a `deadline` (a `time.time()` value), training stops before an epoch that would
    overrun it and evaluation starts only with `reserve` seconds to spare: the run is "interrupted",
    its checkpoint intact, and the next call resumes it.
    """
    run_dir = Path(config.run_dir)
    failure = run_dir / FAILURE_FILE
    seconds = {"train": 0.0, "evaluate": 0.0}
    started = time.perf_counter()

    def out_of_time() -> bool:
        return deadline is not None and time.time() + reserve > deadline

    try:
        if use_papermill is None:
            use_papermill = deadline is None and papermill_available()
        failure.unlink(missing_ok=True)
        if run_state(run_dir) in ("todo", "failed") and not out_of_time():
            if use_papermill:
                _train_with_papermill(config)
            else:
                from ..training.train import train

                train(config, progress=False, deadline=deadline)
            seconds["train"] = time.perf_counter() - started
        if run_state(run_dir) in ("todo", "failed") or (run_state(run_dir) == "trained" and out_of_time()):
            return {"run_dir": str(run_dir), "status": "interrupted", "error": None,
                    "seconds": {**seconds, "total": time.perf_counter() - started}}
        if run_state(run_dir) == "trained":
            from ..measuring.evaluate import evaluate_run

            kwargs = dict(evaluation_options or {}, progress=False)
            if measures is not None:
                kwargs["measures"] = tuple(measures)
            evaluation_started = time.perf_counter()
            evaluate_run(run_dir, device=config.device, **kwargs)
            seconds["evaluate"] = time.perf_counter() - evaluation_started
        if run_state(run_dir) != "done":
            raise RuntimeError(f"{run_dir} has no summary.json/metrics.json after training and evaluation")
        outcome = {"run_dir": str(run_dir), "status": "done", "error": None}
    except Exception:  # a sweep reports failures instead of stopping at the first one
        error = traceback.format_exc()
        _write_failure(run_dir, error)
        outcome = {"run_dir": str(run_dir), "status": "failed", "error": error}
    return {**outcome, "seconds": {**seconds, "total": time.perf_counter() - started}}


def _write_failure(run_dir: Path, error: str) -> None:
    from ..core.runs import atomic_write_json

    atomic_write_json(Path(run_dir) / FAILURE_FILE, {"error": error})


def _plan(configs, retry_failed: bool, report: SweepReport) -> list:
    todo = []
    for config in configs:
        state = run_state(config.run_dir)
        if state == "done":
            report.skipped.append(str(config.run_dir))
        elif state == "failed" and not retry_failed:
            report.pending_failed.append(str(config.run_dir))
        else:
            todo.append(config)
    return todo


def _record(outcome: dict, report: SweepReport, bar) -> None:
    if outcome["status"] == "done":
        report.completed.append(outcome["run_dir"])
    elif outcome["status"] == "interrupted":
        report.interrupted.append(outcome["run_dir"])
    else:
        report.failed[outcome["run_dir"]] = outcome["error"]
    report.seconds[outcome["run_dir"]] = outcome.get("seconds", {})
    bar.update(1)
    bar.set_postfix(failed=len(report.failed))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_sweep(
    grid: Grid,
    *,
    backend: str = "ray",
    address: str | None = None,
    num_cpus: int | None = None,
    runs_per_gpu: int = DEFAULT_RUNS_PER_GPU,
    device: str | None = None,
    retry_failed: bool = False,
    use_papermill: bool | None = None,
    progress: bool = True,
    deadline: float | None = None,
    reserve: float = 0.0,
) -> SweepReport:
    """Run every unfinished run of `grid`; returns a `SweepReport` (failures are reported, not raised).

    backend "ray": one Ray task per run, `1/runs_per_gpu` of a GPU each when CUDA is present (Ray sets
    each task's visible device); `address` joins an existing cluster, else a local Ray starts with
    `num_cpus` CPUs. backend "local": `runs_per_gpu` worker processes per visible GPU (or `num_cpus`
    workers on a CPU), no Ray. backend "serial": the runs one after another in this process (used by
    the book's small offline grids). `deadline` and `reserve`: see `execute_run`.
    """
    device = device or _device()
    return run_configs(
        grid.configs(device=device), measures=grid.measures, evaluation_options=grid.evaluation_options, backend=backend, address=address, num_cpus=num_cpus,
        runs_per_gpu=runs_per_gpu, retry_failed=retry_failed, use_papermill=use_papermill, progress=progress,
        deadline=deadline, reserve=reserve,
    )


def run_configs(
    configs, *, measures=None, evaluation_options=None, backend="ray", address=None, num_cpus=None, runs_per_gpu=DEFAULT_RUNS_PER_GPU,
    retry_failed=False, use_papermill=None, progress=True, deadline=None, reserve=0.0,
) -> SweepReport:
    """`run_sweep` for an explicit list of `RunConfig`s (e.g. the benchmark's mix of controls)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {BACKENDS}")
    if runs_per_gpu < 1:
        raise ValueError(f"runs_per_gpu must be >= 1, got {runs_per_gpu}")
    from ..measuring.evaluate import check_evaluation_options, check_measures

    if measures is not None:
        check_measures(measures)
    check_evaluation_options(evaluation_options or {})
    from ..training.train import resolve_device

    for device in {str(config.device) for config in configs}:
        resolve_device(device)  # e.g. cuda asked for on a machine without one: say so before any run starts
    report = SweepReport(total=len(configs))
    todo = _plan(configs, retry_failed, report)
    run_arguments = (measures, use_papermill, evaluation_options, deadline, reserve)
    bar = tqdm(total=len(configs), initial=len(report.skipped), desc="runs done", unit="run", disable=not (progress and todo))
    try:
        if backend == "serial":
            for config in todo:
                _record(execute_run(config, *run_arguments), report, bar)
        elif todo and backend == "local":
            _run_locally(todo, run_arguments, num_cpus, runs_per_gpu, report, bar)
        elif todo:
            _run_on_ray(todo, run_arguments, address, num_cpus, runs_per_gpu, report, bar)
    finally:
        bar.close()
    return report


def _start_worker(threads: int, parent: int | None = None) -> None:
    """Initialiser of a local worker: a fixed share of the CPU's threads (k workers must not oversubscribe it),
    and an end with the process `parent` that started it, even a killed one (`core.lifeline.die_with_parent`)."""
    import torch

    from ..core.lifeline import die_with_parent

    die_with_parent(parent)
    torch.set_num_threads(threads)


def _run_locally(todo, run_arguments, num_cpus, runs_per_gpu, report, bar) -> None:
    """`runs_per_gpu` worker processes per visible GPU (runs dealt to the GPUs in turn), or `num_cpus`
    (default: all cores) workers when the runs are on the CPU. Spawned, not forked: a forked CUDA
    context is unusable. Runs stop themselves before the deadline (`execute_run`); a worker still busy
    when it has passed (a long evaluation) is terminated: every file it writes is atomic, so its run is
    left trained-not-evaluated or at its last checkpoint, and the next call picks it up from there."""
    import torch

    deadline = run_arguments[3]
    gpus = torch.cuda.device_count() if any(str(config.device).startswith("cuda") for config in todo) else 0
    if gpus > 1:
        todo = [dataclasses.replace(config, device=f"cuda:{index % gpus}") if str(config.device) == "cuda" else config
                for index, config in enumerate(todo)]
    workers = min(runs_per_gpu * gpus if gpus else (num_cpus or os.cpu_count() or 1), len(todo))
    threads = max(1, (os.cpu_count() or 1) // workers)
    children_before = set(multiprocessing.active_children())
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_start_worker, initargs=(threads, os.getpid()))
    pending = {pool.submit(execute_run, config, *run_arguments): config for config in todo}
    try:
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        for future in concurrent.futures.as_completed(pending, timeout=timeout):
            config = pending.pop(future)
            try:
                outcome = future.result()
            except Exception:  # the worker process itself died (e.g. out of memory)
                outcome = {"run_dir": str(config.run_dir), "status": "failed", "error": traceback.format_exc()}
                _write_failure(config.run_dir, outcome["error"])
            _record(outcome, report, bar)
    except concurrent.futures.TimeoutError:  # the pool's workers, including any still starting up
        for worker in set(multiprocessing.active_children()) - children_before:
            worker.terminate()
        for config in pending.values():
            _record({"run_dir": str(config.run_dir), "status": "interrupted", "error": None}, report, bar)
        pending.clear()
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)


def _run_on_ray(todo, run_arguments, address, num_cpus, runs_per_gpu, report, bar) -> None:
    try:
        import ray
    except ImportError as error:
        raise ImportError("the ray backend needs Ray: pip install -e '.[cluster]' (Ray without its dashboard), or use "
                          "--backend local (processes on this machine) or serial") from error

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    on_gpu = any(str(config.device).startswith("cuda") for config in todo)
    resources = {"num_cpus": 1, "num_gpus": 1.0 / runs_per_gpu if on_gpu else 0}
    remote_run = ray.remote(max_retries=0)(execute_run).options(**resources)
    pending = {remote_run.remote(config, *run_arguments): config for config in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        config = pending.pop(ready[0])
        try:
            outcome = ray.get(ready[0])
        except Exception:  # the worker itself died (e.g. out of memory)
            outcome = {"run_dir": str(config.run_dir), "status": "failed", "error": traceback.format_exc()}
            _write_failure(config.run_dir, outcome["error"])
        _record(outcome, report, bar)


def grid_runs(grid: Grid) -> pd.DataFrame:
    """The grid's finished runs as one row each (`store.collect_runs` restricted to this grid)."""
    run_dirs = [config.run_dir for config in grid.configs() if (Path(config.run_dir) / "summary.json").is_file()]
    return store.runs_from_dirs(run_dirs)


# --- the book's study: committed results, or a small offline grid ---------------------------------

def load_study(
    study: str = "controls", *, grid: Grid | None = None, results_dir: Path = RESULTS_DIR, progress: bool = True
) -> Study:
    """The runs a chapter shows: the committed grid of `study` if there is one, else `grid` (default
    `offline_grid(study)`), run serially now where not already on disk."""
    path = committed_grid(study, results_dir)
    if path is not None and grid is None:
        return study_from_grid(path)
    grid = grid or offline_grid(study)
    # In this process (no notebook kernel per run), on one CPU thread: the cheapest way on a shared CPU.
    # Book builds side by side train the shared offline grid once; the later ones wait, then find it finished.
    with runs_on_disk.locked(Path(grid.runs_dir) / ".sweep.lock"), single_cpu_thread():
        report = run_sweep(grid, backend="serial", device="cpu", use_papermill=False, progress=progress)
    if report.failed:
        raise RuntimeError(f"offline grid failed:\n{report}")
    settings = {key: value for key, value in dataclasses.asdict(grid).items() if key not in ("runs_dir", "train_options")}
    origin = store.provenance(settings, data="scikit-learn digits (8x8 upsampled to 32x32), offline")
    runs = grid_runs(grid)
    history = pd.concat([store.run_history(run_dir) for run_dir in runs["run_dir"]], ignore_index=True)
    return Study(runs, history, origin, offline=True)


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--archs", nargs="+", default=["simple_cnn"])
    parser.add_argument("--controls", nargs="+", default=["all"], help="control names, or 'all'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seed numbers, e.g. 0 1 2")
    parser.add_argument("--rhos", nargs="+", default=[str(DEFAULT_RHO)],
                        help=f"SAM radii for the SAM controls, or 'paper' for {' '.join(map(str, PAPER_RHOS))}")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--runs-dir", default=str(RUNS_DIR))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--measures", nargs="+", default=None)
    parser.add_argument("--backend", choices=BACKENDS, default="ray",
                        help="ray (local Ray or --address), local (k processes per GPU, no Ray) or serial")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start Ray locally)")
    parser.add_argument("--num-cpus", type=positive_int, default=None)
    parser.add_argument("--runs-per-gpu", type=positive_int, default=DEFAULT_RUNS_PER_GPU)
    parser.add_argument("--device", default=None)
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--no-papermill", action="store_true", help="train through sharpness.training.train, not the notebook")
    parser.add_argument("--results", default=None, help="write the grid summary here (e.g. results/cifar10_resnet18.json)")
    parser.add_argument("--data-note", default=None, help="data description for the summary's provenance")


def parse_rhos(values: Sequence[str]) -> tuple[float, ...]:
    """Radii from the command line: numbers, or the single word 'paper' for the paper's six."""
    if list(values) == ["paper"]:
        return PAPER_RHOS
    try:
        return tuple(float(value) for value in values)
    except ValueError:
        raise ValueError(f"--rhos takes numbers or 'paper', got {' '.join(values)!r}") from None


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """`python -m sharpness sweep ...` (parsed arguments from the command registry, or an argv list)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="python -m sharpness sweep", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args(args)
    grid = Grid(
        datasets=args.datasets, archs=args.archs, controls=None if args.controls == ["all"] else args.controls,
        seeds=args.seeds, rhos=parse_rhos(args.rhos), epochs=args.epochs, runs_dir=args.runs_dir, data_dir=args.data_dir,
        batch_size=args.batch_size, lr=args.lr, measures=args.measures,
    )
    if args.results:  # a read-only results folder is noticed now, not after the runs have trained
        runs_on_disk.check_writable(args.results)
    report = run_sweep(
        grid, backend=args.backend, address=args.address, num_cpus=args.num_cpus, runs_per_gpu=args.runs_per_gpu,
        device=args.device, retry_failed=args.retry_failed, use_papermill=False if args.no_papermill else None,
    )
    print(report)
    if args.results:
        settings = {key: value for key, value in vars(args).items() if key not in ("results", "data_note")}
        data = args.data_note or f"{', '.join(args.datasets)} (data dir: {args.data_dir or 'default'})"
        path = store.save_grid(grid_runs(grid), args.results, settings=settings, data=data, merge=True)
        print(f"grid summary written to {path} (runs of earlier sweeps kept)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
