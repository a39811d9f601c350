"""Two Gaussian classes and an MLP fitted to them: sharpness of the minimum versus class separation.

The classes are isotropic unit Gaussians centred at (-s/2, 0) and (+s/2, 0). When s is large a nearly
straight boundary separates them; as s shrinks, 100% training accuracy forces an ever more convoluted
boundary around individual points, a more complex function, and the function-centric view predicts a
sharper minimum. Every (separation, seed) network trains at once with `fit.BatchedTrainer` and is
snapshotted at the first epoch it classifies every training point correctly, on the device, with no
host round-trip; the sharpness measures of `fit` are then taken on the logistic loss at the snapshots.

Within a seed every separation sees the same noise draw and the same initial weights, so the
separation is the only thing that changes along a curve.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.cli_values import positive_float, positive_int
from ..core.paths import RESULTS_DIR
from ..core.progress import tqdm
from ..core.provenance import git_commit
from . import fit

Tensor = torch.Tensor

BOX = (-5.0, 5.0, -4.0, 4.0)  # x_min, x_max, y_min, y_max of every drawing


@dataclass(frozen=True)
class BoundaryConfig:
    separations: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
    seeds: tuple[int, ...] = tuple(range(5))
    points_per_class: int = 100
    test_points_per_class: int = 1000
    sizes: tuple[int, ...] = fit.LAYER_SIZES
    lr: float = 1e-2
    max_epochs: int = 20_000
    # None: stop at the first epoch with 100% training accuracy. A number: also require the mean
    # logistic loss to be at most this, so that every separation is compared at a matched loss.
    stop_loss: float | None = None
    measures: fit.MeasureSettings = field(default_factory=fit.MeasureSettings)
    data_seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if not self.separations or min(self.separations) < 0:
            raise ValueError(f"separations must be non-negative and non-empty, got {self.separations}")
        if self.points_per_class < 1 or self.max_epochs < 1:
            raise ValueError(
                f"points_per_class and max_epochs must be >= 1, got {self.points_per_class}, {self.max_epochs}"
            )
        if self.sizes[0] != 2 or self.sizes[-1] != 1:
            raise ValueError(f"sizes must start with 2 inputs and end with 1 output (a logit), got {self.sizes}")
        if self.stop_loss is not None and not (isinstance(self.stop_loss, (int, float)) and self.stop_loss > 0):
            raise ValueError(f"stop_loss must be None or a positive number, got {self.stop_loss!r}")


def stopping_rule(config: BoundaryConfig) -> str:
    """Where a network of `config` is measured, in words."""
    return "100% training accuracy" + (f" and loss ≤ {config.stop_loss:g}" if config.stop_loss is not None else "")


QUICK = dict(separations=(0.5, 1.0, 2.0, 3.0, 4.0), seeds=(0, 1), points_per_class=50, max_epochs=3000,
             measures=fit.MeasureSettings(power_iterations=30, hutchinson_samples=20))
PRESETS = {"quick": QUICK, "full": {}}
#: The matched training loss of the chapter's second study: every separation measured at the same loss.
MATCHED_LOSS = 0.02
#: The sharpness measures the claim "tighter boundaries give sharper minima" is judged by.
MEASURES = ("top_eigenvalue", "hessian_trace", "fisher_rao_exact")
#: Where stored boundary studies live, one folder each (`python -m sharpness boundary --out ...`).
STORED_DIR = RESULTS_DIR / "boundaries"


def gaussian_classes(separation: float, points_per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """Points (2n, 2) and labels (2n,) in {0, 1}; the noise depends only on `seed`, not on `separation`."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(2 * points_per_class, 2, generator=generator)
    labels = torch.cat([torch.zeros(points_per_class), torch.ones(points_per_class)])
    centres = torch.stack([(labels - 0.5) * separation, torch.zeros_like(labels)], dim=1)
    return noise + centres, labels


def _batch(config: BoundaryConfig, points_per_class: int, seed_offset: int) -> tuple[Tensor, Tensor]:
    pairs = [(s, k) for s in config.separations for k in config.seeds]
    draws = [gaussian_classes(s, points_per_class, config.data_seed + 1000 * seed_offset + k) for s, k in pairs]
    return torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws])


def training_errors(outputs: Tensor, labels: Tensor) -> Tensor:
    """(B,) number of misclassified points (logit > 0 predicts class 1)."""
    return ((outputs > 0).to(labels.dtype) != labels).sum(dim=1).to(outputs.dtype)


def stopping_criterion(outputs: Tensor, losses: Tensor, labels: Tensor, stop_loss: float | None) -> Tensor:
    """(B,) zero exactly when a network should stop: no training errors (and loss <= stop_loss if set)."""
    errors = training_errors(outputs, labels)
    if stop_loss is None:
        return errors
    return errors + (losses > stop_loss).to(errors.dtype)  # a loss above the threshold counts as an error


@dataclass
class BoundaryResult:
    """`records`: one row per (separation, seed); `parameters`: the snapshots (rows of `fit.forward`)."""

    config: BoundaryConfig
    records: pd.DataFrame
    parameters: Tensor
    inputs: Tensor
    labels: Tensor
    seconds: float

    def network(self, separation: float, seed: int) -> int:
        matches = self.records.index[(self.records["separation"] == separation) & (self.records["seed"] == seed)]
        if not len(matches):
            raise ValueError(
                f"no network for separation={separation}, seed={seed}; separations: "
                f"{list(self.config.separations)}, seeds: {list(self.config.seeds)}"
            )
        return int(matches[0])

    def logits_on_grid(self, network: int, resolution: int = 81) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_min, x_max, y_min, y_max = BOX
        xs, ys = torch.linspace(x_min, x_max, resolution), torch.linspace(y_min, y_max, resolution)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
        with torch.no_grad():
            logits = fit.forward(self.parameters[network : network + 1], points, self.config.sizes)[0]
        return xs.numpy(), ys.numpy(), logits.reshape(resolution, resolution).numpy()

    def summary(self, measure: str = "top_eigenvalue") -> pd.DataFrame:
        return summary(self.records, measure)

    def stored(self, commit: str) -> "StoredBoundary":
        """What is kept of this study under results/: its settings, its records and where it was made (the
        drawings need the parameters and are made again by the chapter)."""
        return StoredBoundary(self.config, self.records, fit.provenance(torch.device(self.config.device),
                                                                        self.seconds, commit))


def summary(records: pd.DataFrame, measure: str = "top_eigenvalue") -> pd.DataFrame:
    """Mean and SEM over seeds per separation."""
    if measure not in records.columns:
        raise ValueError(f"unknown column {measure!r}; accepted: {', '.join(records.columns)}")
    return records.groupby("separation")[measure].agg(["mean", "sem", "count"]).reset_index()


@dataclass
class StoredBoundary:
    """A boundary study kept under results/: `config`, `records` (one row per network), `provenance`
    (machine, commit, torch, date, seconds) and `name`, its folder's."""

    config: BoundaryConfig
    records: pd.DataFrame
    provenance: dict
    name: str = ""

    def summary(self, measure: str = "top_eigenvalue") -> pd.DataFrame:
        return summary(self.records, measure)

    def save(self, directory: str | Path) -> Path:
        return fit.save_study(directory, self.records, asdict(self.config), self.provenance)

    @classmethod
    def load(cls, directory: str | Path) -> "StoredBoundary":
        """Read a folder written by `save`; a damaged or foreign one is refused by name."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / "provenance.json").read_text(encoding="utf-8"))
            settings = dict(meta["config"])
            settings["measures"] = fit.MeasureSettings(**settings["measures"])
            for key in ("separations", "seeds", "sizes"):
                settings[key] = tuple(settings[key])
            config = BoundaryConfig(**settings)
            records = pd.read_csv(directory / "records.csv")
            provenance = dict(meta["provenance"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{directory} is not a stored boundary study ({error}); write one with "
                             f"`python -m sharpness boundary --out {directory}`") from error
        again = f"write it again with `python -m sharpness boundary --out {directory}`"
        missing = {"separation", "seed", "reached", "epoch", *MEASURES} - set(records.columns)
        if missing:
            raise ValueError(f"{directory / 'records.csv'} lacks the column(s) {', '.join(sorted(missing))}; {again}")
        if records["reached"].dtype != bool:
            raise ValueError(f"{directory / 'records.csv'}: 'reached' holds {records['reached'].dtype} values, not "
                             f"True/False; {again}")
        return cls(config, records, provenance, directory.name)

    def stopping_rule(self) -> str:
        return stopping_rule(self.config)

    def made(self) -> str:
        """Where and when the study was made (machine, date), from its provenance."""
        return f"{self.provenance.get('machine', '?')}, {str(self.provenance.get('date', '?'))[:10]}"


def stored_results(directory: str | Path = STORED_DIR) -> list[StoredBoundary]:
    """The stored studies under `directory` (one folder each, records.csv or provenance.json in it: a folder
    with only one of them is refused by name), in the order of their folder names."""
    folders = sorted({path.parent for pattern in ("*/records.csv", "*/provenance.json")
                      for path in Path(directory).glob(pattern)})
    return [StoredBoundary.load(folder) for folder in folders]


def separation_trend(study: StoredBoundary | BoundaryResult, measure: str) -> tuple[float, float, int]:
    """Spearman rank correlation between the separation and the seeds' mean of `measure`, its two-sided p-value,
    over the separations at which every seed met the stopping rule (a network measured where the cap stopped it
    is not at the rule's point), and how many separations that is; NaN below three. Negative: closer classes, a
    tighter boundary, a sharper minimum."""
    from scipy.stats import spearmanr

    records = study.records
    reached = records.groupby("separation")["reached"]
    complete = reached.all() & (reached.size() == len(study.config.seeds))  # a seed's missing row is not reached
    means = records[records["separation"].isin(complete[complete].index)].groupby("separation")[measure].mean()
    if len(means) < 3:
        return float("nan"), float("nan"), len(means)
    result = spearmanr(means.index.to_numpy(), means.to_numpy())
    return float(result.statistic), float(result.pvalue), len(means)


def trend_table(studies: list[StoredBoundary]) -> pd.DataFrame:
    """One row per study and measure of `MEASURES`: the stopping rule, the measure, the separations every seed
    reached and the `separation_trend` over them (what the claim ledger judges)."""
    rows = []
    for study in studies:
        for measure in MEASURES:
            rho, p_value, separations = separation_trend(study, measure)
            rows.append({"study": study.name, "stopping rule": study.stopping_rule(), "measure": fit.MEASURE_LABELS[measure],
                         "separations reached": separations, "spearman": rho, "p": p_value})
    return pd.DataFrame(rows, columns=["study", "stopping rule", "measure", "separations reached", "spearman", "p"])


def run(config: BoundaryConfig = BoundaryConfig(), progress: bool = True) -> BoundaryResult:
    """Train every (separation, seed) network to 100% training accuracy (and `stop_loss`); measure there."""
    started = time.perf_counter()
    device = torch.device(config.device)
    inputs, labels = (t.to(device) for t in _batch(config, config.points_per_class, 0))
    test_inputs, test_labels = (t.to(device) for t in _batch(config, config.test_points_per_class, 1))
    objective = fit.Objective(inputs, labels, loss="bce", sizes=config.sizes)
    seeds = [k for _ in config.separations for k in config.seeds]
    flat = fit.initial_parameters(seeds, config.sizes).to(device)
    trainer = fit.BatchedTrainer(objective, flat, config.lr, targets=(0.0,))  # target: zero training errors

    bar = tqdm(total=config.max_epochs, desc=f"{len(seeds)} boundary networks", disable=not progress, mininterval=1.0)
    for epoch in range(config.max_epochs + 1):
        outputs = objective.outputs(trainer.flat)
        losses = fit.per_sample_loss("bce")(outputs, labels).mean(dim=1)
        criterion = stopping_criterion(outputs.detach(), losses.detach(), labels, config.stop_loss)
        if epoch == config.max_epochs:
            trainer.catch_targets(epoch, criterion)
            break
        trainer.step(epoch, losses, criterion=criterion)
        bar.update()
        if epoch % 100 == 0 and trainer.all_reached():
            break
    bar.close()

    reached = trainer.reached_epoch[0] >= 0
    # Networks that never got every point right are measured where training stopped.
    parameters = torch.where(reached[:, None], trainer.snapshots[0], trainer.flat.detach())
    values = fit.sharpness(objective, parameters, config.measures)
    with torch.no_grad():
        train_outputs = objective.outputs(parameters)
        test_outputs = fit.forward(parameters, test_inputs, config.sizes)
        values["train_loss"] = objective.losses(parameters)
        values["train_accuracy"] = 1 - training_errors(train_outputs, labels) / labels.shape[1]
        values["test_accuracy"] = 1 - training_errors(test_outputs, test_labels) / test_labels.shape[1]
    records = pd.DataFrame({
        "separation": [s for s in config.separations for _ in config.seeds],
        "seed": seeds,
        "reached": reached.cpu().numpy(),
        "epoch": trainer.reached_epoch[0].cpu().numpy().astype(float),
        **{key: value.detach().cpu().double().numpy() for key, value in values.items()},
    })
    records.loc[~records["reached"], "epoch"] = np.nan
    return BoundaryResult(config, records, parameters.cpu(), inputs.cpu(), labels.cpu(), time.perf_counter() - started)


def run_single(separation: float, seed: int = 0, **settings) -> BoundaryResult:
    """One network (for the live explorer): `settings` override BoundaryConfig fields."""
    return run(replace(BoundaryConfig(**settings), separations=(separation,), seeds=(seed,)), progress=False)


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="full", choices=list(PRESETS),
                        help="full: 6 separations x 5 seeds, 100 points per class; quick: the book build's")
    parser.add_argument("--stop-loss", type=positive_float,
                        help=f"also train on to this mean logistic loss (the chapter's matched loss: {MATCHED_LOSS:g})")
    parser.add_argument("--out", required=True, help=f"folder for records.csv and provenance.json (kept under {STORED_DIR.name}/ in results/)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1: the networks train as one batch)")


def main(args) -> int:
    """python -m sharpness boundary --preset full [--stop-loss 0.02] --out results/boundaries/NAME"""
    torch.set_num_threads(args.threads)
    commit = git_commit(dirty_if_changed=Path(__file__).parent)  # this module and the fit code it trains with
    config = BoundaryConfig(**PRESETS[args.preset], stop_loss=args.stop_loss)
    study = run(config).stored(commit)
    print(f"saved {len(study.records)} networks to {study.save(args.out)} in {study.provenance['seconds']} s")
    return 0
