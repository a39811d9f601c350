"""One lease of the GPU campaign: the grid's runs, k at a time as processes, admitted only if they finish.

A lease is one command of about 9 minutes on a fresh machine; a run unfinished at its end is lost. So:

1. the first seed's six controls start together as worker processes (their first epochs are the
   throughput measurement: no separate benchmark);
2. at every poll the lease measures each run's img/s (metrics.jsonl), the start-up seconds and, once a
   run is evaluated, the seconds per measure (metrics.json), and asks `sharpness.studies.admission.admit`
   which runs will finish training AND evaluation before the deadline: a running run that cannot is
   stopped, a queued one that cannot is never started; free slots take the next admitted runs (the next
   seed's controls);
3. each run packs into the archive as soon as it is evaluated (`Campaign.save_grid` + `Campaign.pack`),
   with the measured figures in the manifest (`lease`): img/s per run, aggregate img/s, seconds per
   measure, and every admission decision.

Runs already imported under results/campaign/ are skipped, so the next lease goes on with the next seed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import runs
from .admission import SAFETY_FACTOR, SAFETY_SECONDS, PlannedRun, Rates, admit

POLL_SECONDS = 2.0
OUTCOME = "lease_outcome.json"  # execute_run's outcome (its train / evaluate wall seconds), beside the run


def run_name(config) -> str:
    return f"{config.control}/seed{config.seed}"


def _work(config, measures, evaluation_options, threads: int, deadline: float, parent: int | None = None) -> None:
    """A worker process: train and evaluate one run, then leave its outcome beside it; it ends with the lease
    process `parent`, even a killed one."""
    from .sweep import _start_worker, execute_run

    _start_worker(threads, parent)
    outcome = execute_run(config, measures, False, evaluation_options, deadline=deadline)
    runs.atomic_write_json(Path(config.run_dir) / OUTCOME, outcome)


@dataclass
class Worker:
    config: object
    process: multiprocessing.Process
    started: float  # time.time() at its start
    first_epoch_seen: float | None = None  # when the first epoch row was written (its file's mtime)
    trained_at: float | None = None  # when summary.json was written

    def startup_seconds(self, rows: list[dict]) -> float | None:
        """Process start to the end of the first epoch, less one steady epoch: the cost of starting a run
        (spawn, imports, data, model, warm-up) that epochs x images / img/s leaves out."""
        steady = steady_epoch_seconds(rows)
        if self.first_epoch_seen is None or steady is None:
            return None
        return max(0.0, self.first_epoch_seen - self.started - steady)


def steady_epoch_seconds(rows: list[dict]) -> float | None:
    """Mean wall seconds of the epochs after the first (warm-up); the first alone if it is all there is."""
    walls = [runs.epoch_wall_seconds(row) for row in rows]
    steady = walls[1:] or walls
    return sum(steady) / len(steady) if steady else None


def epoch_images(rows: list[dict]) -> int | None:
    """Training images per epoch, from train.py's own rows (img/s x training seconds)."""
    return round(rows[0]["images_per_second"] * rows[0]["train_seconds"]) if rows else None


def measured_rate(rows: list[dict], epochs: int) -> float | None:
    """A run's img/s for admission: an epoch's training images over its wall time (test pass and checkpoint
    included), from the epochs after the first; None until there is one (a warm-up epoch alone could be
    several times slower and stop a run that would finish), unless the run has a single epoch."""
    seconds, images = steady_epoch_seconds(rows), epoch_images(rows)
    if len(rows) < min(2, epochs) or not seconds or not images:
        return None
    return images / seconds


class Lease:
    """The state of one lease: workers, measurements, decisions; `run()` drives it to the deadline."""

    def __init__(self, campaign, configs, *, slots: int, measures=None, evaluation_options=None,
                 summary: str, grids, train_images: int | None = None, poll: float = POLL_SECONDS):
        self.campaign, self.queue, self.slots = campaign, list(configs), slots
        self.measures, self.evaluation_options, self.summary, self.grids = measures, evaluation_options or {}, summary, grids
        self.poll = poll
        self.workers: dict[str, Worker] = {}
        self.finished: dict[str, dict] = {}  # run -> its figures
        self.outcomes: dict[str, str] = {}  # run -> what became of it
        self.decisions: dict[str, dict] = {}  # run -> the last admission decision
        self.aggregate: list[tuple[float, int]] = []  # (summed training img/s, runs training) per poll
        self.train_images = train_images  # per epoch, for the queued runs' estimates
        self.last_rates = Rates()  # as last measured (workers that were stopped take theirs with them)

    # --- measurements ----------------------------------------------------------------------------
    def rows(self, config) -> list[dict]:
        path = Path(config.run_dir) / runs.METRICS
        return runs.read_jsonl(path) if path.is_file() else []

    def rates(self) -> Rates:
        per_control: dict[str, float] = {}
        for worker in self.workers.values():
            rate = measured_rate(self.rows(worker.config), worker.config.epochs)
            if rate is not None:
                control = worker.config.control
                per_control[control] = min(per_control.get(control, float("inf")), rate)
        for figures in self.finished.values():  # keep the rate of a control whose runs have all finished
            control = figures["control"]
            if figures.get("effective_images_per_second") and control not in per_control:
                per_control[control] = figures["effective_images_per_second"]
        startup = [worker.startup_seconds(self.rows(worker.config)) for worker in self.workers.values()]
        startup += [figures["startup_seconds"] for figures in self.finished.values()]
        startup = [seconds for seconds in startup if seconds is not None]
        return Rates(per_control, self.evaluation_seconds(), max(startup) if startup else None)

    def evaluation_seconds(self) -> float | None:
        """One run's evaluation: per measure the slowest measured, summed, plus the slowest loading overhead."""
        timings = [figures for figures in self.finished.values() if figures.get("measure_seconds")]
        if not timings:
            return None
        names = {name for figures in timings for name in figures["measure_seconds"]}
        measures = sum(max(figures["measure_seconds"].get(name, 0.0) for figures in timings) for name in names)
        overhead = max(max(0.0, figures["evaluate_seconds"] - sum(figures["measure_seconds"].values())) for figures in timings)
        return measures + overhead

    def observe(self, now: float) -> None:
        """Start-up seconds of runs past their first epoch, when they left training, and the aggregate img/s."""
        training_rate, training = 0.0, 0
        for worker in self.workers.values():
            rows = self.rows(worker.config)
            run_dir = Path(worker.config.run_dir)
            if rows and worker.first_epoch_seen is None:  # missed (a poll later than epoch 2): the epoch's end is
                worker.first_epoch_seen = ((run_dir / runs.METRICS).stat().st_mtime if len(rows) == 1  # bounded by now
                                           else now - sum(row.get("epoch_wall_seconds", 0.0) for row in rows[1:]))
            if worker.trained_at is None and (run_dir / runs.SUMMARY).is_file():
                worker.trained_at = (run_dir / runs.SUMMARY).stat().st_mtime
            if rows and worker.trained_at is None:
                training_rate += rows[-1]["images_per_second"]
                training += 1
        if training:
            self.aggregate.append((training_rate, training))

    def plan(self, now: float) -> list[PlannedRun]:
        planned = []
        for name, worker in self.workers.items():
            rows = self.rows(worker.config)
            planned.append(PlannedRun(
                name, worker.config.control, worker.config.epochs - len(rows) if worker.trained_at is None else 0,
                epoch_images(rows) or self.train_images, running=True, rate=measured_rate(rows, worker.config.epochs),
                evaluation_elapsed=0.0 if worker.trained_at is None else max(0.0, now - worker.trained_at)))  # fmt: skip
        planned += [PlannedRun(run_name(config), config.control, config.epochs - len(self.rows(config)), self.train_images)
                    for config in self.queue]
        return planned

    # --- processes -----------------------------------------------------------------------------
    def start(self, config) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.slots)
        process = multiprocessing.get_context("spawn").Process(
            target=_work, args=(config, self.measures, self.evaluation_options, threads, self.campaign.deadline, os.getpid()),
            name=f"lease {run_name(config)}", daemon=True)  # fmt: skip
        process.start()
        self.workers[run_name(config)] = Worker(config, process, time.time())
        self.queue.remove(config)

    def stop(self, outcomes: dict[str, str]) -> None:
        """Stop these workers (name -> what to record): all signalled first, then waited for, so that stopping
        six does not take six times as long."""
        workers = {name: self.workers.pop(name) for name in outcomes}
        for worker in workers.values():
            worker.process.terminate()
        for name, worker in workers.items():
            worker.process.join(10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            self.outcomes[name] = outcomes[name]

    def harvest(self) -> bool:
        """Collect workers that have ended; a finished run is packed at once. A worker whose run is evaluated
        (its outcome written) counts as finished even while its interpreter is still shutting down: it is
        stopped, not judged. True when one finished."""
        from .sweep import failure_reason, run_state

        packed = False
        for name, worker in list(self.workers.items()):
            run_dir = Path(worker.config.run_dir)
            done = run_state(run_dir) == "done" and (run_dir / OUTCOME).is_file()
            if worker.process.is_alive() and not done:
                continue
            self.stop({name: "finished and evaluated" if done else ""})
            if done:
                self.finished[name] = self.figures(worker)
                packed = True
            else:
                outcome = runs.read_json(run_dir / OUTCOME) if (run_dir / OUTCOME).is_file() else {}
                self.outcomes[name] = (f"failed: {failure_reason(outcome.get('error'))}" if outcome.get("status") == "failed"
                                       else f"unfinished ({outcome.get('status') or f'exit {worker.process.exitcode}'})")
        if packed:
            self.pack()
        return packed

    def figures(self, worker: Worker) -> dict:
        """A finished run's measured figures (they travel in the manifest)."""
        run_dir = Path(worker.config.run_dir)
        summary = runs.read_json(run_dir / runs.SUMMARY)
        metrics = runs.read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
        outcome = runs.read_json(run_dir / OUTCOME) if (run_dir / OUTCOME).is_file() else {}
        rows = self.rows(worker.config)
        trained_at = worker.trained_at or (run_dir / runs.SUMMARY).stat().st_mtime
        return {
            "control": worker.config.control, "seed": worker.config.seed, "status": summary.get("status"),
            "training_window": [trained_at - sum(map(runs.epoch_wall_seconds, rows)),
                                trained_at],  # wall-clock start and end of its epochs
            "epochs": len(rows), "train_images": epoch_images(rows),
            "images_per_second": summary.get("images_per_second"),  # training steps only (train.py)
            "effective_images_per_second": measured_rate(rows, len(rows)),  # per-epoch wall time, as admission uses
            "startup_seconds": worker.startup_seconds(rows),
            "train_seconds": outcome.get("seconds", {}).get("train"),
            "evaluate_seconds": outcome.get("seconds", {}).get("evaluate", 0.0),
            "measure_seconds": metrics.get("seconds", {}),
            "wall_seconds": time.time() - worker.started,
        }  # fmt: skip

    def report(self) -> dict:
        """The lease's figures for the manifest."""
        measure_names = sorted({name for figures in self.finished.values() for name in figures["measure_seconds"]})
        peak = max(self.aggregate, default=None) or self.aggregate_of_finished()
        rates = self.last_rates
        return {
            "slots": self.slots, "margin": {"factor": SAFETY_FACTOR, "seconds": SAFETY_SECONDS},
            "runs": self.finished,
            "aggregate_images_per_second": peak[0], "aggregate_runs": peak[1],
            "mean_aggregate_images_per_second": (sum(rate for rate, _ in self.aggregate) / len(self.aggregate)
                                                 if self.aggregate else None),
            "measure_seconds": {name: max(f["measure_seconds"].get(name, 0.0) for f in self.finished.values())
                                for name in measure_names},
            "evaluation_seconds": rates.evaluation_seconds, "startup_seconds": rates.startup_seconds,
            "control_images_per_second": dict(rates.images_per_second),
            "outcomes": self.outcomes, "decisions": self.decisions,
        }  # fmt: skip

    def aggregate_of_finished(self) -> tuple[float | None, int]:
        """(img/s, runs) over the finished runs' training windows: every image they trained over the wall time
        from the first run's first epoch to the last run's last. The fallback when runs train faster than the
        poll and no poll saw them training."""
        windows = [(f["training_window"], f["epochs"] * (f["train_images"] or 0)) for f in self.finished.values()]
        if not windows:
            return None, 0
        span = max(end for (_, end), _ in windows) - min(start for (start, _), _ in windows)
        return (sum(images for _, images in windows) / span if span > 0 else None), len(windows)

    def pack(self) -> Path:
        self.campaign.lease = self.report()
        self.campaign.save_grid(self.grids, self.summary)
        return self.campaign.pack()

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> str:
        from .sweep import run_state

        for config in [config for config in self.queue if run_state(config.run_dir) == "done"]:  # earlier command, same machine
            self.queue.remove(config)
            self.outcomes[run_name(config)] = "finished earlier on this machine"
        try:
            while True:
                self.harvest()
                now = time.time()
                if now >= self.campaign.deadline:
                    self.stop({name: "stopped at the deadline (lost)" for name in self.workers})
                    break
                self.observe(now)
                self.last_rates = self.rates()
                decisions = admit(self.plan(now), self.last_rates, now, self.campaign.deadline, slots=self.slots)
                self.decisions.update({name: {"verdict": d.verdict, "estimate_seconds": d.estimate, "reason": d.reason}
                                       for name, d in decisions.items()})
                refused = {name: f"refused while running: {decision.reason}" for name, decision in decisions.items()
                           if decision.verdict == "refused" and name in self.workers}
                for name, outcome in refused.items():
                    self.campaign.log(f"{name}: {outcome}; stopped")
                self.stop(refused)
                for config in list(self.queue):
                    if len(self.workers) >= self.slots:
                        break
                    if decisions[run_name(config)].verdict in ("admitted", "probe"):
                        self.campaign.log(f"start {run_name(config)}: {decisions[run_name(config)].reason}")
                        self.start(config)
                if not self.workers:
                    break
                time.sleep(self.poll)
        finally:
            self.stop({name: "stopped (the lease ended)" for name in self.workers})
        for config in self.queue:
            decision = self.decisions.get(run_name(config), {})
            self.outcomes[run_name(config)] = f"not started: {decision.get('verdict', 'not planned')} ({decision.get('reason', '')})"
        self.pack()
        unfinished = [name for name, outcome in self.outcomes.items() if not outcome.startswith("finished")]
        if any(outcome.startswith("failed") for outcome in self.outcomes.values()):
            return "failed"
        return f"done: {len(self.finished)} runs finished" + (f", {len(unfinished)} not" if unfinished else "")


def grid_lease(campaign) -> str:
    """The campaign's grid in one lease: its seeds in order, the runs not yet imported, `slots` at a time
    (default: the six controls of a seed)."""
    from ..training.train import prepare_data

    s = campaign.settings
    name = f"grid/{s.dataset}_{s.arch}.json"  # the slices' grid item names it so too: imports merge into one file
    grids = [campaign.grid(campaign.work / "runs", (seed,), controls=s.controls) for seed in s.seeds]
    imported = campaign.imported_keys(name)
    from .store import config_row, run_key

    configs = [config for grid in grids for config in grid.configs(device=campaign.device)
               if run_key(config_row(config)) not in imported]
    skipped = sum(len(grid.configs()) for grid in grids) - len(configs)
    campaign.log(f"lease: {len(configs)} runs planned, {skipped} already imported")
    if not configs:
        return "done: every run already imported"
    # Decode the data once here (the cache the workers read), not in six processes at once.
    train_images = len(prepare_data(configs[0]).train_labels)
    lease = Lease(campaign, configs, slots=campaign.lease_slots or len(grids[0].controls),
                  evaluation_options=grids[0].evaluation_options, summary=name, grids=grids, train_images=train_images)
    return lease.run()
