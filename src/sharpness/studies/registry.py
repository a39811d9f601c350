"""Which committed study a page shows: the CPU study, a campaign grid, or the offline stand-in.

A study is a `Grid` of runs (data sets x networks x controls x seeds x SAM radii). Pages show the best
committed grid summary under results/ (`committed_grids`: a GPU campaign, then the CPU study), or, where
none is committed, the small offline grid (`offline_grid`) that `studies.sweep.load_study` trains while
the book builds. The CPU study's protocol lives here (`PROTOCOL`), so that pages name its network without
importing the orchestrators; this module imports none of them (sweep, cpu_study, campaign).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.paths import REPO_ROOT, RESULTS_DIR, RUNS_DIR
from ..measuring.corruptions import ALL_CORRUPTIONS
from ..training.controls import SAM_RHO
from .store import load_grid, load_history, load_json

DEFAULT_RHO = SAM_RHO
PAPER_RHOS = (0.5, 0.25, 0.05, 0.025, 0.005, 0.0025)


@dataclass
class Grid:
    """The runs of a sweep: every dataset x arch x control x seed, and each SAM control at every rho.

    Non-SAM controls ignore rho and run once. Runs at a rho other than 0.05 live under
    `runs_dir/rho<value>/`, so the default-rho tree keeps the layout of single runs.
    """

    datasets: Sequence[str] = ("digits",)
    archs: Sequence[str] = ("simple_cnn",)
    controls: Sequence[str] | None = None  # None: all six controls
    seeds: Sequence[int] = (0,)
    rhos: Sequence[float] = (DEFAULT_RHO,)
    epochs: int | None = None  # None: the paper's schedule for the data set
    runs_dir: Path | str = RUNS_DIR
    data_dir: Path | str | None = None
    batch_size: int | None = None
    lr: float | None = None
    measures: Sequence[str] | None = None  # None: evaluate_run's default measures
    train_options: dict = field(default_factory=dict)  # further RunConfig fields
    evaluation_options: dict = field(default_factory=dict)  # further evaluate_run arguments (e.g. sam_draws)

    def __post_init__(self):
        from ..training.controls import CONTROLS

        # A value given twice (--seeds 0 0) names one run, not two: duplicates collapse, first order kept.
        self.datasets, self.archs, self.rhos = (tuple(dict.fromkeys(v)) for v in (self.datasets, self.archs, self.rhos))
        self.controls = tuple(dict.fromkeys(CONTROLS if self.controls is None else self.controls))
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ValueError(f"unknown controls {unknown}; accepted: {CONTROLS}")
        bad_rhos = [rho for rho in self.rhos if not rho > 0]
        if bad_rhos:
            raise ValueError(f"SAM rho values must be positive, got {bad_rhos}")
        self.seeds = tuple(dict.fromkeys(int(seed) for seed in self.seeds))
        if not self.seeds:
            raise ValueError("a grid needs at least one seed")

    def runs_root(self, rho: float) -> Path:
        base = Path(self.runs_dir)
        return base if rho == DEFAULT_RHO else base / f"rho{rho:g}"

    def configs(self, device: str = "cpu") -> list:
        """One `RunConfig` per run of the grid, in a stable order (the controls of a seed together)."""
        from ..training.train import RunConfig

        options = dict(self.train_options)
        options.update({name: getattr(self, name) for name in ("lr", "batch_size", "epochs") if getattr(self, name) is not None})
        return [
            RunConfig(
                dataset=dataset, arch=arch, control=control, seed=seed, rho=rho, data_dir=self.data_dir,
                runs_dir=self.runs_root(rho), device=device, **options,
            )
            for dataset, arch, seed, control in itertools.product(self.datasets, self.archs, self.seeds, self.controls)
            for rho in (self.rhos if control.endswith("sam") else (DEFAULT_RHO,))
        ]


# --- the CPU study's protocol ----------------------------------------------------------------------

# The CPU study's settings, chosen with the recorded pilot (results/cpu_pilot/pilot.json, `cpu_study_pilot`) so that
# every run of every control ends at a minimum by the study's criterion (>= 95% accuracy on the images its
# sharpness is measured on, the fixed augmented copy for augmentation controls, and a training loss that has
# stopped falling). Batch 128 and peak lr 1e-2 come from the paper's own sweep ({128, 256} x {1e-3, 1e-2},
# Appendix F.2); the cosine annealing is the paper's CIFAR-100 schedule; SGD momentum 0.9 and the controls'
# crop+flip, weight decay 5e-4 and SAM rho 0.05 are the paper's. The 30-epoch, 10,000-image protocol before it
# left the augmentation controls at 75% train accuracy (git history of results/).
PROTOCOL = {
    "dataset": "cifar10_folder",
    "arch": "cnn_mlp_wide",
    "train_images": 800,  # a fixed random subset of the 50k (the same for every run)
    "test_images": 10_000,  # the whole test set
    "epochs": 120,
    "batch_size": 128,
    "lr": 1e-2,
    "lr_schedule": "cosine",  # annealed to 0 over the run
    "monitor_test_images": 1_000,  # the per-epoch test curve; the end-of-run evaluation uses all 10,000
    "slow_measure_images": 500,  # SAM-sharpness (K = 100, rho 0.005) and the Hessian measures
    "sam_draws": 100,
    "hessian_iterations": 20,
    "corruptions": len(ALL_CORRUPTIONS),  # 15 standard + 4 extra, 5 severities, CIFAR constants
    "corruption_images": 500,  # a fixed random subset of the test set, corrupted once for all runs
    "landscape_resolution": 31,
    "landscape_images": 500,
}


def monitor_every(epochs: int) -> int:
    """How often a run of `epochs` under the protocol draws its test curve: every epoch at the protocol's length, every
    k-th on a run k times as long, so a curve keeps the protocol's points. On the long runs of the studies across
    settings (800 images, a few steps an epoch) the curve would cost a quarter of the training; the weights are the
    same either way."""
    return max(1, epochs // PROTOCOL["epochs"])


#: The CPU networks as the book names them (the studies across families name theirs the same way).
NETWORK_NAMES = {"cnn_mlp": "CNN-MLP", "cnn_mlp_wide": "CNN-MLP", "resnet_small": "ResNet-8", "vgg_small": "VGG-8 (BN)",
                 "vit_small": "ViT (3 blocks, patch 4)"}


def network_label(arch: str = PROTOCOL["arch"]) -> str:
    """A network as the book names it, with its size counted from the model itself."""
    from ..training.models import build_model

    parameters = sum(p.numel() for p in build_model(arch, 10).parameters())
    return f"{NETWORK_NAMES.get(arch, arch)} ({parameters / 1000:.0f}k parameters)"


# --- committed grids under results/ ---------------------------------------------------------------

#: Where a grid came from, best first: a GPU campaign, the CPU study; grids without a tier come last.
TIERS = ("gpu", "cpu")


def grid_tier(path: Path | str) -> str | None:
    """The `tier` in a grid summary's provenance ("gpu", "cpu"), or None where it names none."""
    document = load_json(Path(path))  # a truncated file: a ValueError naming it
    origin = document.get("provenance") if isinstance(document, dict) else None
    if not isinstance(origin, dict):
        return None  # no grid: reading it (store.load_grid) names the file and the fix
    settings = origin.get("settings") if isinstance(origin.get("settings"), dict) else {}
    return origin.get("tier") or settings.get("tier")  # grids of the first CPU-study code kept it in settings


def committed_grids(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Grid summaries committed under results/ and results/campaign/ (imported campaigns), best tier first
    (see TIERS), then by name; not the paper's reference folder, not benchmarks, not pilots (results/*_pilot.json
    records pilot runs, not a grid: the ledger would read it as one)."""
    found = [p for folder in (Path(results_dir), Path(results_dir) / "campaign")
             for p in folder.glob("*.json") if not p.stem.startswith("bench") and not p.stem.endswith("_pilot")]
    rank = lambda path: TIERS.index(grid_tier(path)) if grid_tier(path) in TIERS else len(TIERS)  # noqa: E731
    return sorted(found, key=lambda path: (rank(path), path.name))


# --- the book's study: committed results, or a small offline grid ---------------------------------

OFFLINE_RUNS_DIR = REPO_ROOT / "_build" / "offline_runs"
OFFLINE_MEASURES = (
    "test_accuracy", "test_ece", "train_accuracy", "generalisation_gap", "fisher_rao_norm", "relative_flatness",
    "sam_sharpness", "corruption_accuracy",
)  # fmt: skip
# Cheaper than the paper's evaluation, to fit a CPU book build: 4 SAM-sharpness draws instead of 100,
# five corruption families (noise, blur, weather, digital, compression) on 100 test images.
OFFLINE_EVALUATION = {
    "sam_draws": 4,
    "corruptions": ("gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"),
    "corruption_images": 100,
}
STUDIES = ("controls", "rho")


def offline_grid(
    study: str = "controls", seeds=(0, 1), epochs: int = 3, train_samples: int | None = None, runs_dir=OFFLINE_RUNS_DIR
) -> Grid:
    """The small CPU grid the book runs when no results are committed: digits and the small CNN,
    `train_samples` training images (None: all 1,437), a few epochs.

    "controls": all six controls at rho 0.05; "rho": SAM on the baseline at the paper's six radii.
    Both write under `runs_dir` (the build folder), so chapters share one grid (the rho = 0.05 runs
    are the same runs in both) and a rebuild reuses it.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; accepted: {STUDIES}")
    controls, rhos = (None, (DEFAULT_RHO,)) if study == "controls" else (("baseline_sam",), PAPER_RHOS)
    return Grid(
        datasets=("digits",), archs=("simple_cnn",), controls=controls, seeds=tuple(seeds), rhos=rhos,
        epochs=epochs, runs_dir=runs_dir, measures=OFFLINE_MEASURES, evaluation_options=OFFLINE_EVALUATION,
        train_options={"max_train_samples": train_samples},
    )


@dataclass
class Study:
    """Per-run rows of one study, where they came from, and whether they are the offline stand-in."""

    runs: pd.DataFrame
    history: pd.DataFrame  # per-epoch rows of every run (training curves)
    provenance: dict
    offline: bool

    @property
    def label(self) -> str:
        """A short name for titles: where the runs come from."""
        if self.offline:
            return "offline CPU grid, digits + small CNN (not the paper's setting)"
        settings = self.provenance.get("settings", {})
        seeds = self.runs[self.runs["status"] == "finished"].groupby(["control", "rho"], dropna=False)["seed"].nunique()
        low, high = (int(seeds.min()), int(seeds.max())) if len(seeds) else (0, 0)
        seed_count = f"{low} seed{'s' * (high != 1)}" if low == high else f"{low}-{high} seeds"
        if str(settings.get("command", "")).endswith("cpu-study"):
            archs = sorted(set(self.runs["arch"]))
            return f"real CIFAR-10, {', '.join(network_label(arch) for arch in archs)}, CPU, {seed_count}"
        tier = {"gpu": " (GPU campaign)", "cpu": " (CPU)"}.get(self.provenance.get("tier"), "")
        return f"{'/'.join(settings.get('datasets', []))}, {'/'.join(settings.get('archs', []))}, committed grid{tier}, {seed_count}"


def committed_grid(study: str = "controls", results_dir: Path = RESULTS_DIR) -> Path | None:
    """The committed summary of `study` under results/ (files named *_rho.json hold rho sweeps), or None;
    of several, the best tier (a GPU campaign, then the CPU study; `committed_grids`)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; accepted: {STUDIES}")
    for path in committed_grids(results_dir):
        if path.stem.endswith("_rho") == (study == "rho"):
            return path
    return None


def study_from_grid(path: Path | str) -> Study:
    """The committed study in the grid summary at `path` (see `committed_grid`)."""
    runs, origin = load_grid(path)
    return Study(runs, load_history(path), origin, offline=False)
