"""The GPU campaign: the paper-scale study on one bare GPU machine, within one lease.

The target machine (the H200 the device tool lends) has torch, torchvision, torchmetrics, numpy, scipy, pandas
and tqdm and nothing else. A lease is 15 minutes of device time in all (start, idle waits and the close count), one
command runs at most 10 minutes and every lease is a fresh, bare machine: about one command of 9
minutes, and a run unfinished at its end is lost. Two modes:

- `--mode lease` (the default, `sharpness.studies.lease`): the grid (six controls x seeds, the paper's protocol,
  fully evaluated), the six controls of a seed side by side, then the next seed; throughput is measured
  from the grid's own first epochs, and only runs that will finish training AND evaluation before
  `--deadline` are started or kept (`sharpness.studies.admission`); each run is packed as it finishes.
- `--mode slices --items ...`: the older priority list for a machine that keeps its files between
  commands: `smoke`, `bench` (the scripts under bench/), `grid`, `toy` (`sharpness fit`), `landscapes`
  (`sharpness landscape`) and `batch_lr` (batch {128, 256} x lr {1e-3, 1e-2}); training stops at epoch
  boundaries before the deadline and the next command on the same machine resumes.

Either way the finished summaries go into ONE archive in `--out` (rewritten atomically, so it is always
whole), and runs already imported under results/campaign/ are not redone.
`python -m sharpness campaign-import ARCHIVE` brings an archive home (`sharpness.studies.campaign_import`).

Nothing here imports papermill, Ray, Jupyter, plotly or ipywidgets.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.cli_values import commit_id, positive_float
from ..core import runs
from ..core.lifeline import die_with_parent
from ..core.paths import REPO_ROOT, RESULTS_DIR, RUNS_DIR
from ..core.provenance import git_commit
from ..training.controls import CONTROLS
from . import store
from .store import config_row, config_row_from_dict, run_key

ITEMS = ("smoke", "bench", "grid", "toy", "landscapes", "batch_lr")
MODES = ("lease", "slices")
ARCHIVE_NAME = "campaign.tar.gz"
MANIFEST = "manifest.json"
ARCHIVE_LIMIT_BYTES = 16 * 2**20  # what one returned file may weigh
PACK_SECONDS = 20.0  # kept free before the deadline for the last pack
CAMPAIGN_RESULTS = "campaign"  # results/campaign/: imported campaign grids and benchmarks


@dataclass
class Settings:
    """What the campaign runs. `PRESETS["paper"]` is the paper's protocol on CIFAR-10 / ResNet-18."""

    dataset: str = "cifar10_folder"
    arch: str = "resnet18"
    data_dir: str | None = None
    epochs: int | None = None  # None: the paper's (100)
    seeds: tuple[int, ...] = tuple(range(10))
    controls: tuple[str, ...] | None = None  # the grid's; None: all six
    train_samples: int | None = None  # None: the whole training set
    test_samples: int | None = None
    # 8 processes gave the highest aggregate throughput on one H100 (87k img/s with 4, 118k with 8; measured
    # before this repo)
    runs_per_gpu: int = 8
    evaluation: dict = field(default_factory=lambda: {"sam_draws": 100, "hessian_iterations": 20})
    evaluation_reserve: float = 150.0  # seconds a run's evaluation needs; none starts with less left
    smoke_samples: int = 2048
    smoke_evaluation: dict = field(default_factory=lambda: {
        "sam_draws": 2, "hessian_iterations": 2, "corruption_images": 200,
        "corruptions": ("gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression")})  # fmt: skip
    bench_epochs: int = 3
    bench_parallel: tuple[int, ...] = (1, 2, 4, 8)
    bench_train_samples: int | None = None
    bench_measure_images: int = 10_000
    bench_sam_draws: int = 10
    toy_preset: str = "full"
    toy_overrides: tuple[str, ...] = ()  # further `sharpness fit` options, e.g. ("--epochs", "1000")
    landscape_resolution: int = 51
    landscape_subset: int = 10_000
    landscape_sam_draws: int = 100
    sweep_batches: tuple[int, ...] = (128, 256)
    sweep_lrs: tuple[float, ...] = (1e-3, 1e-2)
    sweep_seeds: tuple[int, ...] = (0,)
    sweep_controls: tuple[str, ...] | None = None  # None: all six
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict] = {
    "paper": {},
    # The CPU rehearsal: every item on a few hundred images for one epoch, in a few minutes.
    "rehearsal": dict(
        epochs=1, seeds=(0, 1), train_samples=64, test_samples=50, runs_per_gpu=2,
        evaluation={"sam_draws": 2, "hessian_iterations": 2, "corruption_images": 50,
                    "corruptions": ("gaussian_noise", "fog", "jpeg_compression")},
        evaluation_reserve=5.0, smoke_samples=64, smoke_evaluation={
            "sam_draws": 1, "hessian_iterations": 1, "corruption_images": 50, "corruptions": ("gaussian_noise",)},
        bench_epochs=2, bench_parallel=(1, 2), bench_train_samples=64, bench_measure_images=64, bench_sam_draws=1,
        toy_preset="quick", toy_overrides=("--epochs", "200", "--seeds", "2", "--points", "200"),
        landscape_resolution=5, landscape_subset=128, landscape_sam_draws=2,
        sweep_controls=("baseline", "aug_sam"),
    ),  # fmt: skip
}


def preset(name: str, **overrides) -> Settings:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; accepted: {', '.join(PRESETS)}")
    return Settings(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


class Campaign:
    """One command's slice: settings, the work folder on this machine, the deadline and the item log."""

    def __init__(self, settings: Settings, work: Path, out: Path, deadline: float, results_dir: Path = RESULTS_DIR,
                 device: str = "auto", commit: str | None = None):
        self.settings, self.work, self.out, self.deadline = settings, Path(work), Path(out), deadline
        self.results_dir, self.commit = Path(results_dir), commit or git_commit()
        from ..training.train import resolve_device

        self.device = str(resolve_device(device))
        self.staging = self.work / "results"  # what the archive holds
        self.status: dict[str, str] = {}
        self.lease: dict | None = None  # a lease's measured figures and decisions (`sharpness.studies.lease`)
        self.lease_slots: int | None = None  # runs side by side in a lease; None: the controls of a seed

    # --- time ---------------------------------------------------------------------------------
    def seconds_left(self) -> float:
        return self.deadline - time.time()

    def log(self, message: str) -> None:
        print(f"[campaign {time.strftime('%H:%M:%S')}, {self.seconds_left():.0f} s left] {message}", flush=True)

    def run_child(self, argv: list[str]) -> str:
        """Run `python argv...` (a bench script or a sharpness command) until it ends or the deadline comes:
        'done', 'stopped at the deadline' or 'failed (exit N)'."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
        # Its own process group, so that the workers it starts (bench/grid.py's) are stopped with it; and it ends
        # with this process, even a killed one (PR_SET_PDEATHSIG, set before exec and kept across it).
        child = subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, env=env, start_new_session=True,
                                 preexec_fn=functools.partial(die_with_parent, os.getpid(), watch=False))
        try:
            returncode = child.wait(timeout=max(1.0, self.seconds_left()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return "stopped at the deadline"
        return "done" if returncode == 0 else f"failed (exit {returncode})"

    # --- runs ---------------------------------------------------------------------------------
    def grid(self, runs_dir: Path, seeds, *, controls=None, epochs=None, train_samples=None, test_samples=None,
             batch_size=None, lr=None, evaluation=None, measures=None):
        from .registry import Grid

        s = self.settings
        return Grid(
            datasets=(s.dataset,), archs=(s.arch,), controls=controls, seeds=tuple(seeds), epochs=epochs or s.epochs,
            runs_dir=runs_dir, data_dir=s.data_dir, batch_size=batch_size, lr=lr, measures=measures,
            evaluation_options=dict(s.evaluation if evaluation is None else evaluation),
            train_options={"max_train_samples": train_samples or s.train_samples, "max_test_samples": test_samples or s.test_samples},
        )  # fmt: skip

    def run_grids(self, grids, reserve: float, measures=None, summary: str | None = None) -> tuple[str, object]:
        """Train and evaluate every unfinished run of `grids`, k per GPU, until the deadline; runs already
        imported into the summary named `summary` (as `save_grid` names it) are not redone."""
        from .sweep import run_configs

        configs = [config for grid in grids for config in grid.configs(device=self.device)]
        if summary is not None:
            imported = self.imported_keys(summary)
            configs = [config for config in configs if run_key(config_row(config)) not in imported]
        report = run_configs(configs, measures=measures, evaluation_options=grids[0].evaluation_options, backend="local",
                             runs_per_gpu=self.settings.runs_per_gpu, deadline=self.deadline, reserve=reserve, progress=False)
        self.log(str(report))
        status = "failed" if report.failed or report.pending_failed else "stopped at the deadline" if report.interrupted else "done"
        return status, report

    def imported_keys(self, summary: str) -> set:
        """The runs of one imported summary under results/campaign/ (`summary` as `save_grid` names it: the
        same run in another summary, e.g. the default batch and lr in the grid and in the sweep, counts
        for each)."""
        path = self.results_dir / CAMPAIGN_RESULTS / summary.removeprefix("grid/")
        if not path.is_file():
            return set()
        return {run_key(row) for row in json.loads(path.read_text()).get("runs", [])}

    def save_grid(self, grids, name: str) -> Path | None:
        """Write the grids' finished runs as one grid summary (and their test predictions) into staging."""
        from .sweep import run_state

        run_dirs = list(dict.fromkeys(config.run_dir for grid in grids for config in grid.configs()
                                      if run_state(config.run_dir) == "done"))  # grids may share runs: once each
        if not run_dirs:
            return None
        frame = store.runs_from_dirs(run_dirs)
        path = store.save_grid(frame, self.staging / name, settings=self.grid_settings(grids), data=self.data_note())
        for run_dir in run_dirs:
            predictions = Path(run_dir) / "test_predictions.pt"
            if predictions.is_file():
                import torch

                config = json.loads((Path(run_dir) / runs.CONFIG).read_text())
                target = self.staging / "predictions" / f"{prediction_name(config_row_from_dict(config))}.npy"
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, torch.load(predictions, weights_only=True).numpy().astype(np.uint8))
        return path

    def grid_settings(self, grids) -> dict:
        grid = grids[0]
        return {"datasets": list(grid.datasets), "archs": list(grid.archs), "controls": list(grid.controls),
                "seeds": sorted({seed for g in grids for seed in g.seeds}), "epochs": grid.epochs,
                "batch_sizes": sorted({g.batch_size for g in grids if g.batch_size}), "lrs": sorted({g.lr for g in grids if g.lr}),
                "train_options": grid.train_options, "evaluation_options": grid.evaluation_options}  # fmt: skip

    def data_note(self) -> str:
        s = self.settings
        return f"{s.dataset} ({s.data_dir or 'default data dir'}), train cut {s.train_samples or 'none'}, test cut {s.test_samples or 'none'}"

    # --- packing ------------------------------------------------------------------------------
    def manifest(self) -> dict:
        import torch

        cuda = torch.cuda.is_available()
        return {
            "provenance": {
                "machine": store.machine_description(), "host": platform.node(), "cpus": os.cpu_count(),
                "gpu": torch.cuda.get_device_name(0) if cuda else None, "gpus": torch.cuda.device_count() if cuda else 0,
                "torch": torch.__version__, "python": platform.python_version(), "commit": self.commit,
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "tier": "gpu" if cuda else "cpu",
            },
            "settings": self.settings.to_dict(),
            "items": self.status,
            **({"lease": self.lease} if self.lease is not None else {}),
        }  # fmt: skip

    def pack(self) -> Path:
        """Write every finished summary in staging, with the manifest, as ONE archive in `out` (atomically)."""
        runs.atomic_write_json(self.staging / MANIFEST, self.manifest())
        self.out.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.out, prefix=".campaign.", suffix=".tmp")
        os.close(handle)
        try:
            with tarfile.open(temporary, "w:gz") as archive:
                archive.add(self.staging, arcname="campaign")
            size = Path(temporary).stat().st_size
            if size > ARCHIVE_LIMIT_BYTES:
                raise ValueError(f"the campaign archive would be {size / 2**20:.1f} MiB, over the 16 MiB a returned file may "
                                 f"weigh; lower --landscape-resolution or pack fewer items per machine")
            os.replace(temporary, self.out / ARCHIVE_NAME)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return self.out / ARCHIVE_NAME


def prediction_name(row: dict) -> str:
    """File stem of a run's saved test predictions, unique per `run_key`."""
    rho, epochs, batch, lr = (store.as_number(row.get(key)) for key in ("rho", "epochs", "batch_size", "lr"))
    return (f"{row['dataset']}_{row['arch']}_{row['control']}{'' if rho is None else f'_rho{rho:g}'}_seed{int(row['seed'])}"
            f"_e{epochs:g}_b{batch:g}_lr{lr:g}")


# --- the items -----------------------------------------------------------------------------------


def smoke(campaign: Campaign) -> str:
    """One epoch of every control on a small cut of the data, then every measure on each run."""
    from ..measuring.evaluate import MEASURES

    s = campaign.settings
    grid = campaign.grid(campaign.work / "smoke", (0,), epochs=1, train_samples=s.smoke_samples,
                         test_samples=min(s.smoke_samples, s.test_samples or s.smoke_samples), evaluation=s.smoke_evaluation,
                         measures=MEASURES)  # fmt: skip
    status, report = campaign.run_grids([grid], reserve=campaign.settings.evaluation_reserve / 4, measures=MEASURES)
    rows = []
    for config in grid.configs():
        metrics_path = Path(config.run_dir) / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        rows.append({"control": config.control, "measured": sorted(k for k in MEASURES if k in metrics),
                     "seconds": report.seconds.get(str(config.run_dir), {}), "measure_seconds": metrics.get("seconds", {})})
    runs.atomic_write_json(campaign.staging / "bench" / "smoke.json", {"status": status, "runs": rows, "failed": report.failed})
    return status


def bench(campaign: Campaign) -> str:
    """The benchmark scripts under bench/, each writing its figures as JSON into the archive."""
    s = campaign.settings
    data = ["--dataset", s.dataset, "--arch", s.arch] + (["--data-dir", s.data_dir] if s.data_dir else [])
    cut = ["--max-train-samples", str(s.bench_train_samples)] if s.bench_train_samples else []
    jobs = {
        "train_throughput": ["bench/train_throughput.py", *data, "--epochs", str(s.bench_epochs), *cut],
        "grid": ["bench/grid.py", *data, "--epochs", str(s.bench_epochs), "--backend", "local",
                 "--parallel", *map(str, s.bench_parallel),
                 *(["--train-samples", str(s.bench_train_samples)] if s.bench_train_samples else [])],
        "measures": ["bench/measures.py", "--arch", s.arch,  # real images where the campaign has the CIFAR-10 pack
                     *(["--real", *(["--data-dir", s.data_dir] if s.data_dir else [])] if s.dataset == "cifar10_folder" else []),
                     "--images", str(s.bench_measure_images), "--sam-draws", str(s.bench_sam_draws)],
    }  # fmt: skip
    outcome = "done"
    for name, argv in jobs.items():
        target = campaign.staging / "bench" / f"{name}.json"
        if target.is_file():
            continue
        campaign.log(f"bench: {name}")
        status = campaign.run_child([*argv, "--json", str(target)])
        if status != "done":
            outcome = status
            if status.startswith("stopped"):
                break
    return outcome


def grid(campaign: Campaign) -> str:
    """The six controls x seeds at the paper's protocol, seeds in order, each run trained and evaluated."""
    s = campaign.settings
    grids = [campaign.grid(campaign.work / "runs", (seed,), controls=s.controls) for seed in s.seeds]  # whole seeds first
    name = f"grid/{s.dataset}_{s.arch}.json"
    status, _ = campaign.run_grids(grids, reserve=s.evaluation_reserve, summary=name)
    campaign.save_grid(grids, name)
    return status


def toy(campaign: Campaign) -> str:
    """The toy-function study (`sharpness fit`); redone whole if a deadline cut it."""
    s = campaign.settings
    target = campaign.staging / "toy" / f"{campaign.device.split(':')[0]}_{s.toy_preset}"
    if (target / "records.csv").is_file() or (campaign.results_dir / "toy_fit" / f"gpu_{s.toy_preset}" / "records.csv").is_file():
        return "done"
    device = campaign.device
    return campaign.run_child(["-m", "sharpness", "fit", "--preset", s.toy_preset, "--out", str(target), "--device", device,
                               *s.toy_overrides])


def landscapes(campaign: Campaign) -> str:
    """Loss surfaces of the seed-0 grid runs of the six controls (those not yet stored)."""
    from ..measuring.landscape import interpolation_path, landscape_path
    from .sweep import run_state

    s, seed = campaign.settings, 0
    runs_dir = campaign.work / "runs"
    seed_runs = campaign.grid(runs_dir, (seed,)).configs()
    if any(run_state(config.run_dir) != "done" for config in seed_runs):
        return "waiting for the grid's seed-0 runs"
    out = campaign.staging / "landscapes"
    stored = lambda control: any(landscape_path(s.dataset, s.arch, seed, control, root).is_file()  # noqa: E731
                                 for root in (out, campaign.results_dir / "landscapes"))
    missing = [control for control in CONTROLS if not stored(control)]
    if not missing and interpolation_path(s.dataset, s.arch, seed, "baseline", "aug_sam", out).is_file():
        return "done"
    return campaign.run_child([
        "-m", "sharpness", "landscape", "--runs-dir", str(runs_dir), "--dataset", s.dataset, "--arch", s.arch,
        "--seed", str(seed), "--controls", *(missing or ["baseline"]), "--resolution", str(s.landscape_resolution),
        "--subset", str(s.landscape_subset), "--sam-draws", str(s.landscape_sam_draws), "--device", campaign.device,
        "--out", str(out)])  # fmt: skip


def batch_lr(campaign: Campaign) -> str:
    """The paper's Figure 1 / Appendix F.2 sweep: batch {128, 256} x lr {1e-3, 1e-2}, every control."""
    s = campaign.settings
    grids = [campaign.grid(campaign.work / "batch_lr" / f"b{batch}_lr{lr:g}", s.sweep_seeds, controls=s.sweep_controls,
                           batch_size=batch, lr=lr)
             for batch in s.sweep_batches for lr in s.sweep_lrs]
    name = f"batch_lr/{s.dataset}_{s.arch}.json"
    status, _ = campaign.run_grids(grids, reserve=s.evaluation_reserve, summary=name)
    campaign.save_grid(grids, name)
    return status


ITEM_FUNCTIONS = {"smoke": smoke, "bench": bench, "grid": grid, "toy": toy, "landscapes": landscapes, "batch_lr": batch_lr}


def prepare_data(settings: Settings, archive: str | None) -> None:
    """Unpack `archive` (e.g. .carry/cifar10-jpeg.tar.xz) into the data dir unless that is there already."""
    if archive is None:
        return
    if not Path(archive).is_file():
        raise FileNotFoundError(f"--data-archive {archive} does not exist: copy the CIFAR-10 pack there "
                                "(cp ../shared/data/cifar10-jpeg.tar.xz .carry/) and name .carry in the carry option")
    if settings.data_dir is None:
        raise ValueError("--data-archive needs --data-dir, the folder to unpack it into")
    target = Path(settings.data_dir)
    if (target / "train").is_dir() and (target / "test").is_dir():
        return
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(archive) as pack:
        pack.extractall(partial, filter="data")
    os.replace(partial, target)


def run_campaign(campaign: Campaign, items) -> dict[str, str]:
    """Work down `items` in order until the deadline, packing the archive after each item."""
    for name in items:
        if campaign.seconds_left() <= 0:
            campaign.status[name] = "not started (deadline)"
            continue
        campaign.log(f"item {name}")
        try:
            campaign.status[name] = ITEM_FUNCTIONS[name](campaign)
        except Exception as error:  # one item failing must not cost the others their slice
            import traceback

            traceback.print_exc()
            campaign.status[name] = f"failed: {type(error).__name__}: {error}"
        campaign.log(f"item {name}: {campaign.status[name]}; packed {campaign.pack()}")
    return campaign.status


# --- command line ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", default="lease", choices=MODES,
                        help="lease (default: the grid in one command on a fresh machine, admitted runs only) or "
                             "slices (--items in priority order, resuming on a machine that keeps its files)")
    parser.add_argument("--items", nargs="+", default=None, choices=ITEMS,
                        help=f"--mode slices only: in priority order (default: {' '.join(ITEMS)})")
    parser.add_argument("--preset", default="paper", choices=list(PRESETS), help="paper, or rehearsal (tiny, for a CPU)")
    parser.add_argument("--deadline", type=positive_float, default=540.0,
                        help="seconds from now by which this command ends, archive packed (default 540: a 10-minute command)")
    parser.add_argument("--out", default=os.environ.get("OUT", "campaign-out"), help="folder for the archive (default $OUT)")
    parser.add_argument("--work", default=str(RUNS_DIR / "campaign"), help="runs and checkpoints on this machine")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="committed results (runs found there are not redone)")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--arch", default=None)
    parser.add_argument("--data-dir", default=None, help="the data set (e.g. data/cifar10-jpeg)")
    parser.add_argument("--data-archive", default=None, help="unpack this pack into --data-dir first (e.g. .carry/cifar10-jpeg.tar.xz)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="grid seeds, in order")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--controls", nargs="+", default=None, help="the grid's controls (default: all six)")
    parser.add_argument("--runs-per-gpu", type=int, default=None,
                        help="runs side by side (default: lease, the controls of a seed; slices, the preset's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--commit", type=commit_id, default=None,
                        help="the code's commit (git rev-parse HEAD, printed where its history is), where git is not on the machine")


def main(args: argparse.Namespace) -> int:
    started = time.time()
    overrides = {key: getattr(args, key) for key in ("dataset", "arch", "data_dir", "epochs", "train_samples",
                                                      "test_samples", "runs_per_gpu")}  # fmt: skip
    overrides["seeds"] = tuple(args.seeds) if args.seeds else None
    overrides["controls"] = tuple(args.controls) if args.controls else None
    if args.mode == "lease" and args.items:
        raise ValueError(f"--items {' '.join(args.items)} belongs to --mode slices; a lease runs the grid "
                         "(add --mode slices for the smoke, bench, toy, landscapes and batch_lr items)")
    # Absolute paths: the children (bench scripts, fit, landscape) run from the repository root.
    overrides["data_dir"] = str(Path(args.data_dir).resolve()) if args.data_dir else None
    args.work, args.out, args.results_dir = (Path(path).resolve() for path in (args.work, args.out, args.results_dir))
    settings = preset(args.preset, **overrides)
    if not math.isfinite(args.deadline) or args.deadline <= PACK_SECONDS:
        raise ValueError(f"--deadline {args.deadline:g} is not a usable time: give a number of seconds above "
                         f"{PACK_SECONDS:g} (the last pack), e.g. --deadline 540 for one 10-minute command")
    campaign = Campaign(settings, args.work, args.out, started + args.deadline - PACK_SECONDS,
                        results_dir=args.results_dir, device=args.device, commit=args.commit)
    campaign.lease_slots = args.runs_per_gpu
    prepare_data(settings, args.data_archive)
    if args.mode == "lease":
        from .lease import grid_lease

        campaign.log("lease: the grid, admitted runs only")
        try:
            campaign.status["grid"] = grid_lease(campaign)
        except Exception as error:  # the archive is still packed with what finished
            import traceback

            traceback.print_exc()
            campaign.status["grid"] = f"failed: {type(error).__name__}: {error}"
        status = campaign.status
    else:
        status = run_campaign(campaign, args.items or ITEMS)
    archive = campaign.pack()
    print(f"archive: {archive} ({archive.stat().st_size / 2**20:.2f} MiB), {time.time() - started:.0f} s")
    for name, outcome in status.items():
        print(f"  {name}: {outcome}")
    return 1 if any(outcome.startswith("failed") for outcome in status.values()) else 0
