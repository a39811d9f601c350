"""Networks fitted to the toy functions: does the sharpness of the learned minimum follow the target?

The paper's MLP study: a ReLU MLP 2 -> 64 -> 64 -> 1, Adam (lr 1e-3), full batch, 10,000 train and
10,000 test points with x, y ~ U(-3.5, 3.5), one data set per function (same inputs, different
targets), 10 seeds, up to 10^6 epochs.

Speed comes from training every (function, seed) network at once. The parameters of all networks are
rows of one tensor `flat` of shape (B, P); each row is sliced into the weight matrices of one MLP and
the layers run as batched matmuls. The training loss is the SUM of the networks' own losses, so each
row's gradient is its own network's gradient, and one torch.optim.Adam over `flat` is exactly B
independent Adams (Adam is elementwise). For the same reason the Hessian of the summed loss is block
diagonal, so one Hessian-vector product of the sum gives every network's own product: the sharpness
measures below are batched across networks for free.

Target losses are caught without synchronising with the device: after each forward pass, networks that
just reached a target have their parameters copied (`torch.where`) into a snapshot buffer, and the
measures are computed on the snapshots at the end. That keeps the training loop free of host
round-trips, which is what limits a GPU on networks this small.

Fisher-Rao norm for regression (our adaptation; the paper defines it for cross-entropy): with per-sample
loss l_i = l(f_i, y_i) and a bias-free ReLU network with D layers, f is positively homogeneous of degree
D in the parameters, so <theta, grad_theta l_i> = D * f_i * dl_i/df_i and

    FR = sqrt( D^2 * mean_i (f_i * dl_i/df_i)^2 )          (`fisher_rao`, D = 3 here)

For MSE dl_i/df_i = 2 (f_i - y_i). D counts the Linear layers (Liang et al.'s L + 1 with L hidden
layers). Biases break the homogeneity, so we also report the quantity the formula stands for,
sqrt(mean_i <theta, grad_theta l_i>^2), computed exactly with one forward-mode product (`fisher_rao_exact`).
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..core.progress import tqdm
from ..core.cli_values import positive_int
from ..core.provenance import git_commit
from ..core.runs import atomic_write_json, atomic_write_text
from . import toy

Tensor = torch.Tensor

LAYER_SIZES = (2, 64, 64, 1)
TARGET_LOSSES = (300.0, 150.0, 100.0, 10.0, 1.0)
INPUT_RANGE = (-3.5, 3.5)
MEASURES = ("top_eigenvalue", "hessian_trace", "fisher_rao", "fisher_rao_exact")
MEASURE_LABELS = {
    "top_eigenvalue": "Hessian top eigenvalue",
    "hessian_trace": "Hessian trace (Hutchinson)",
    "fisher_rao": "Fisher-Rao norm (homogeneous form)",
    "fisher_rao_exact": "Fisher-Rao norm (exact ⟨θ, ∇ℓᵢ⟩)",
}


# --------------------------------------------------------------------------------------------------
# Batched MLP: parameters are rows of a (B, P) tensor
# --------------------------------------------------------------------------------------------------


def parameter_count(sizes: Sequence[int] = LAYER_SIZES) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def unflatten(flat: Tensor, sizes: Sequence[int] = LAYER_SIZES) -> list[tuple[Tensor, Tensor]]:
    """Views of (weight (B, in, out), bias (B, 1, out)) per layer; row b of `flat` is network b."""
    if flat.dim() != 2 or flat.shape[1] != parameter_count(sizes):
        raise ValueError(f"flat parameters must have shape (B, {parameter_count(sizes)}), got {tuple(flat.shape)}")
    layers, offset = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weight = flat[:, offset : offset + fan_in * fan_out].view(-1, fan_in, fan_out)
        offset += fan_in * fan_out
        bias = flat[:, offset : offset + fan_out].view(-1, 1, fan_out)
        offset += fan_out
        layers.append((weight, bias))
    return layers


def forward(flat: Tensor, inputs: Tensor, sizes: Sequence[int] = LAYER_SIZES) -> Tensor:
    """Outputs (B, n) of the B networks; `inputs` is (n, d) shared by all or (B, n, d), one set each."""
    layers = unflatten(flat, sizes)
    hidden = inputs if inputs.dim() == 3 else inputs.expand(flat.shape[0], *inputs.shape)
    for index, (weight, bias) in enumerate(layers):
        hidden = torch.baddbmm(bias, hidden, weight)
        if index < len(layers) - 1:
            hidden = torch.relu_(hidden)  # in place: baddbmm does not need its output for backward
    return hidden.squeeze(-1)


def reference_mlp(seed: int, sizes: Sequence[int] = LAYER_SIZES, dtype=torch.float32) -> torch.nn.Sequential:
    """The same network as an ordinary nn.Sequential (PyTorch's default Linear init, seeded)."""
    torch.manual_seed(seed)
    modules: list[torch.nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        modules += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*modules[:-1]).to(dtype)


def flatten_module(mlp: torch.nn.Sequential) -> Tensor:
    """One row of `flat` from an nn.Sequential MLP (weights stored transposed: inputs @ W)."""
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    return torch.cat([t for m in linears for t in (m.weight.detach().T.reshape(-1), m.bias.detach())])


def initial_parameters(seeds: Sequence[int], sizes: Sequence[int] = LAYER_SIZES, dtype=torch.float32) -> Tensor:
    """(len(seeds), P): network k starts exactly where `reference_mlp(seeds[k])` does."""
    return torch.stack([flatten_module(reference_mlp(seed, sizes, dtype)) for seed in seeds])


# --------------------------------------------------------------------------------------------------
# Losses and sharpness measures, batched over networks
# --------------------------------------------------------------------------------------------------


def squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs - targets) ** 2


def logistic_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")


PER_SAMPLE_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": squared_error, "bce": logistic_loss}


def per_sample_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    try:
        return PER_SAMPLE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; accepted: {', '.join(PER_SAMPLE_LOSSES)}") from None


@dataclass(frozen=True)
class Objective:
    """Inputs, targets (B, n) and per-sample loss: what each network's loss (mean over points) is."""

    inputs: Tensor
    targets: Tensor
    loss: str = "mse"
    sizes: tuple[int, ...] = LAYER_SIZES

    def outputs(self, flat: Tensor) -> Tensor:
        return forward(flat, self.inputs, self.sizes)

    def losses(self, flat: Tensor) -> Tensor:
        """(B,) mean loss of every network."""
        return per_sample_loss(self.loss)(self.outputs(flat), self.targets).mean(dim=1)

    def select(self, rows: Tensor | Sequence[int]) -> "Objective":
        """The objective of a subset of networks (targets and per-network inputs follow the rows)."""
        inputs = self.inputs[rows] if self.inputs.dim() == 3 else self.inputs
        return replace(self, inputs=inputs, targets=self.targets[rows])


def _with_grad(flat: Tensor) -> Tensor:
    return flat.detach().clone().requires_grad_(True)


class HessianOperator:
    """v -> H v for every network at once (row b: H_b v_b; the Hessian of the summed loss is block diagonal).

    The gradient graph is built once and reused by every product.
    """

    def __init__(self, objective: Objective, flat: Tensor):
        self.params = _with_grad(flat)
        (self.gradient,) = torch.autograd.grad(objective.losses(self.params).sum(), self.params, create_graph=True)

    def __call__(self, vectors: Tensor) -> Tensor:
        (product,) = torch.autograd.grad(self.gradient, self.params, grad_outputs=vectors, retain_graph=True)
        return product.detach()


def top_eigenvalue(
    objective: Objective, flat: Tensor, iterations: int = 50, tolerance: float = 1e-4, seed: int = 0
) -> Tensor:
    """Dominant Hessian eigenvalue of every network by power iteration (PyHessian's estimator).

    Stops when every network's Rayleigh quotient changed by less than `tolerance` (relative).
    """
    hessian = HessianOperator(objective, flat)
    generator = torch.Generator(device=flat.device).manual_seed(seed)
    vector = torch.randn(flat.shape, generator=generator, device=flat.device, dtype=flat.dtype)
    vector = vector / vector.norm(dim=1, keepdim=True)
    eigenvalue = torch.full((flat.shape[0],), float("nan"), device=flat.device, dtype=flat.dtype)
    for _ in range(iterations):
        product = hessian(vector)
        new_eigenvalue = (product * vector).sum(dim=1)
        vector = product / product.norm(dim=1, keepdim=True).clamp_min(torch.finfo(flat.dtype).tiny)
        converged = ((new_eigenvalue - eigenvalue).abs() <= tolerance * new_eigenvalue.abs()).all()
        eigenvalue = new_eigenvalue
        if converged:
            break
    return eigenvalue


def hutchinson_trace(objective: Objective, flat: Tensor, samples: int = 50, seed: int = 0) -> Tensor:
    """Hessian trace of every network, E[v^T H v] over Rademacher vectors v (Hutchinson)."""
    hessian = HessianOperator(objective, flat)
    generator = torch.Generator(device=flat.device).manual_seed(seed)
    total = torch.zeros(flat.shape[0], device=flat.device, dtype=flat.dtype)
    for _ in range(samples):
        signs = torch.randint(0, 2, flat.shape, generator=generator, device=flat.device).to(flat.dtype) * 2 - 1
        total += (hessian(signs) * signs).sum(dim=1)
    return total / samples


def exact_hessians(objective: Objective, flat: Tensor) -> Tensor:
    """(B, P, P) Hessians by autograd, one network at a time: the reference for small networks."""
    hessians = []
    for row in range(flat.shape[0]):
        single = objective.select([row])
        hessians.append(
            torch.autograd.functional.hessian(lambda p: single.losses(p[None])[0], flat[row].detach())
        )
    return torch.stack(hessians)


def _loss_slopes(objective: Objective, outputs: Tensor) -> Tensor:
    """dl_i/df_i for every network and point (autograd through the per-sample loss)."""
    outputs = outputs.detach().requires_grad_(True)
    (slopes,) = torch.autograd.grad(per_sample_loss(objective.loss)(outputs, objective.targets).sum(), outputs)
    return slopes


def fisher_rao(objective: Objective, flat: Tensor) -> Tensor:
    """Homogeneous-form Fisher-Rao norm: sqrt(D^2 mean_i (f_i dl_i/df_i)^2), D = number of layers."""
    depth = len(objective.sizes) - 1
    with torch.no_grad():
        outputs = objective.outputs(flat)
    slopes = _loss_slopes(objective, outputs)
    return depth * (outputs * slopes).pow(2).mean(dim=1).sqrt()


def fisher_rao_exact(objective: Objective, flat: Tensor) -> Tensor:
    """sqrt(mean_i <theta, grad_theta l_i>^2) exactly: one jvp of the outputs with tangent theta."""
    flat = flat.detach()
    with warnings.catch_warnings():
        # torch >= 2.12 warns, once, that its own jvp decompositions still use torch.jit.script.
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        outputs, directional = torch.func.jvp(objective.outputs, (flat,), (flat,))
    slopes = _loss_slopes(objective, outputs)
    return (slopes * directional).pow(2).mean(dim=1).sqrt()


@dataclass(frozen=True)
class MeasureSettings:
    power_iterations: int = 50
    power_tolerance: float = 1e-4
    hutchinson_samples: int = 50
    seed: int = 0


def sharpness(objective: Objective, flat: Tensor, settings: MeasureSettings = MeasureSettings()) -> dict[str, Tensor]:
    """Every measure in MEASURES for every network (rows of `flat`)."""
    return {
        "top_eigenvalue": top_eigenvalue(
            objective, flat, settings.power_iterations, settings.power_tolerance, settings.seed
        ),
        "hessian_trace": hutchinson_trace(objective, flat, settings.hutchinson_samples, settings.seed),
        "fisher_rao": fisher_rao(objective, flat),
        "fisher_rao_exact": fisher_rao_exact(objective, flat),
    }


# --------------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitConfig:
    """One fitting study. `FitConfig()` is the paper's full setting; see PRESETS for smaller ones."""

    functions: tuple[str, ...] = tuple(toy.FUNCTIONS)
    seeds: tuple[int, ...] = tuple(range(10))
    epochs: int = 10**6
    train_points: int = 10_000
    test_points: int = 10_000
    lr: float = 1e-3
    target_losses: tuple[float, ...] = TARGET_LOSSES
    records_per_decade: int = 4
    data_seed: int = 1234
    measures: MeasureSettings = field(default_factory=MeasureSettings)
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        for name in self.functions:
            toy.get(name)  # raises a ValueError naming the accepted functions
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {self.dtype!r} not supported; accepted: float32, float64")
        for name in ("epochs", "train_points", "test_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def record_epochs(self) -> list[int]:
        """0, then `records_per_decade` log-spaced epochs per decade up to `epochs` (always included)."""
        decades = math.log10(self.epochs)
        points = np.logspace(0, decades, max(2, round(decades * self.records_per_decade) + 1))
        return sorted({0, self.epochs, *np.unique(np.round(points).astype(int)).tolist()})

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # Book build on 2 CPU cores: every function, 2 seeds, a short run on few points.
    "quick": dict(seeds=(0, 1), epochs=2000, train_points=500, test_points=500,
                  measures=MeasureSettings(power_iterations=20, hutchinson_samples=10)),
    # A CPU run of about an hour on one core: all 70 networks, fewer points and epochs.
    "medium": dict(epochs=10_000, train_points=1000, test_points=1000, records_per_decade=3,
                   measures=MeasureSettings(power_iterations=30, hutchinson_samples=20)),
    "full": {},
}


def preset(name: str, **overrides) -> FitConfig:
    """A named setting ("quick", "medium", "full"), optionally with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; accepted: {', '.join(PRESETS)}")
    return FitConfig(**{**PRESETS[name], **overrides})


@dataclass
class FitData:
    """Shared inputs and one row of targets per function."""

    functions: tuple[str, ...]
    train_inputs: Tensor
    train_targets: Tensor  # (F, n)
    test_inputs: Tensor
    test_targets: Tensor


def make_data(config: FitConfig) -> FitData:
    """Points uniform on [-3.5, 3.5]^2 (one draw, seeded), targets from every toy function."""
    generator = torch.Generator().manual_seed(config.data_seed)
    low, high = INPUT_RANGE

    def sample(n: int) -> tuple[Tensor, Tensor]:
        inputs = torch.rand(n, 2, generator=generator, dtype=torch.float64) * (high - low) + low
        targets = torch.stack([toy.get(name)(inputs[:, 0], inputs[:, 1]) for name in config.functions])
        return inputs.to(config.torch_dtype), targets.to(config.torch_dtype)

    train_inputs, train_targets = sample(config.train_points)
    test_inputs, test_targets = sample(config.test_points)
    return FitData(config.functions, train_inputs, train_targets, test_inputs, test_targets)


@dataclass
class FitResult:
    """`records`: one row per network and record (log-spaced epoch or target loss); `provenance`."""

    config: FitConfig
    records: pd.DataFrame
    provenance: dict

    def at_targets(self) -> pd.DataFrame:
        return self.records[self.records["kind"] == "target"]

    def over_training(self) -> pd.DataFrame:
        return self.records[self.records["kind"] == "epoch"]

    def save(self, directory: str | Path) -> Path:
        return save_study(directory, self.records, self.config.to_dict(), self.provenance)

    @classmethod
    def load(cls, directory: str | Path) -> "FitResult":
        directory = Path(directory)
        meta = json.loads((directory / "provenance.json").read_text())
        settings = meta["config"]
        settings["measures"] = MeasureSettings(**settings["measures"])
        for key in ("functions", "seeds", "target_losses"):
            settings[key] = tuple(settings[key])
        return cls(FitConfig(**settings), pd.read_csv(directory / "records.csv"), meta["provenance"])


def save_study(directory: str | Path, records: pd.DataFrame, config: dict, provenance: dict) -> Path:
    """A toy study's folder under results/: `records.csv` and `provenance.json` ({config, provenance}), each
    written atomically (the fitting and the boundary studies keep theirs alike)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "records.csv", records.to_csv(index=False))
    atomic_write_json(directory / "provenance.json", {"config": config, "provenance": provenance})
    return directory


def provenance(device: torch.device, seconds: float, commit: str) -> dict:
    """Where, with which code (`commit`, taken when the run started) and when a result was made."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "machine": f"{platform.node()} ({device.type}: {name}, {torch.get_num_threads()} threads)",
        "commit": commit,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 1),
    }


class BatchedTrainer:
    """Adam on B networks at once, with device-side snapshots at the first epoch each target is reached.

    `losses` seen at step t are those of the parameters after t updates (epoch t): full-batch training
    computes them anyway before the update, so no extra pass is needed to catch a target.
    """

    def __init__(self, objective: Objective, flat: Tensor, lr: float, targets: Sequence[float] = ()):
        self.objective = objective
        self.flat = flat.detach().clone().requires_grad_(True)
        fused = self.flat.device.type == "cuda"
        self.optimizer = torch.optim.Adam([self.flat], lr=lr, fused=fused)
        device, dtype = self.flat.device, self.flat.dtype
        self.targets = torch.tensor(list(targets), device=device, dtype=dtype)
        count = (len(targets), flat.shape[0])
        self.reached_epoch = torch.full(count, -1, device=device, dtype=torch.long)
        self.snapshots = torch.zeros(*count, flat.shape[1], device=device, dtype=dtype)

    def losses(self) -> Tensor:
        return self.objective.losses(self.flat)

    def step(self, epoch: int, losses: Tensor | None = None, criterion: Tensor | None = None) -> Tensor:
        """Catch targets reached at `epoch`, then one Adam update; returns the losses at `epoch`.

        Targets are compared with `criterion` (B,) when given (e.g. a count of training errors), else
        with the losses.
        """
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.losses() if losses is None else losses
        self.catch_targets(epoch, (losses if criterion is None else criterion).detach())
        losses.sum().backward()
        self.optimizer.step()
        return losses.detach()

    def catch_targets(self, epoch: int, values: Tensor) -> None:
        """Snapshot the networks whose `values` are at or below a target for the first time."""
        if not len(self.targets):
            return
        newly = (values[None, :] <= self.targets[:, None]) & (self.reached_epoch < 0)
        self.snapshots = torch.where(newly[..., None], self.flat.detach()[None], self.snapshots)
        self.reached_epoch = torch.where(newly, epoch, self.reached_epoch)

    def all_reached(self) -> bool:
        return bool((self.reached_epoch >= 0).all())


def _measure_rows(
    objective: Objective, test: Objective, flat: Tensor, settings: MeasureSettings
) -> dict[str, np.ndarray]:
    with torch.no_grad():
        train_loss, test_loss = objective.losses(flat), test.losses(flat)
    values = {"train_loss": train_loss, "test_loss": test_loss, "gap": test_loss - train_loss}
    values.update(sharpness(objective, flat, settings))
    return {key: value.detach().cpu().double().numpy() for key, value in values.items()}


def run(config: FitConfig, progress: bool = True) -> FitResult:
    """Train every (function, seed) network together; record measures over training and at targets."""
    started, commit = time.perf_counter(), git_commit(dirty_if_changed=Path(__file__))
    device = torch.device(config.device)
    data = make_data(config)
    functions = [name for name in config.functions for _ in config.seeds]
    seeds = [seed for _ in config.functions for seed in config.seeds]
    rows = [config.functions.index(name) for name in functions]

    def objective(inputs: Tensor, targets: Tensor) -> Objective:
        return Objective(inputs.to(device), targets[rows].to(device))

    train, test = objective(data.train_inputs, data.train_targets), objective(data.test_inputs, data.test_targets)
    flat = initial_parameters(seeds, dtype=config.torch_dtype).to(device)
    trainer = BatchedTrainer(train, flat, config.lr, config.target_losses)
    record_at = set(config.record_epochs())
    records: list[dict] = []

    def add_records(kind: str, epoch, values: dict[str, np.ndarray], networks, target=float("nan")):
        epochs = np.broadcast_to(np.asarray(epoch, dtype=float), (len(networks),))
        for position, network in enumerate(networks):
            records.append({
                "kind": kind, "function": functions[network], "seed": seeds[network],
                "target": target, "epoch": epochs[position],
                **{key: float(value[position]) for key, value in values.items()},
            })

    bar = tqdm(total=config.epochs, desc=f"fitting {len(functions)} networks", disable=not progress, mininterval=1.0)
    for epoch in range(config.epochs + 1):
        if epoch in record_at:
            values = _measure_rows(train, test, trainer.flat.detach(), config.measures)
            add_records("epoch", epoch, values, range(len(functions)))
            bar.set_postfix(median_train_loss=f"{np.median(values['train_loss']):.3g}")
        if epoch == config.epochs:
            with torch.no_grad():
                trainer.catch_targets(epoch, trainer.losses())
            break
        trainer.step(epoch)
        bar.update()
    bar.close()

    reached_epoch = trainer.reached_epoch.cpu().numpy()
    for index, target in enumerate(config.target_losses):
        hit = np.flatnonzero(reached_epoch[index] >= 0)
        missed = np.flatnonzero(reached_epoch[index] < 0)
        if len(hit):
            index_tensor = torch.as_tensor(hit, device=device)
            values = _measure_rows(
                train.select(index_tensor), test.select(index_tensor), trainer.snapshots[index, hit], config.measures
            )
            add_records("target", reached_epoch[index, hit], values, hit, target)
        # Never reached: the row says so (epoch and measures NaN).
        add_records("target", np.nan, {}, missed, target)
    columns = ["kind", "function", "seed", "target", "epoch", "train_loss", "test_loss", "gap", *MEASURES]
    frame = pd.DataFrame.from_records(records).reindex(columns=columns)
    frame["reached"] = frame["epoch"].notna()
    return FitResult(config, frame, provenance(device, time.perf_counter() - started, commit))


def stored_results(directory: str | Path) -> list[FitResult]:
    """Saved studies under `directory` (one folder each), smallest first (by networks x epochs x points)."""
    results = [FitResult.load(path.parent) for path in sorted(Path(directory).glob("*/records.csv"))]
    return sorted(results, key=lambda r: len(r.config.functions) * len(r.config.seeds) * r.config.epochs
                  * r.config.train_points)


# --------------------------------------------------------------------------------------------------
# Summaries for the book
# --------------------------------------------------------------------------------------------------


def analytic_curvature(measure: str = "max_eigenvalue") -> pd.Series:
    """Per function, the curvature at its global minimum (chapter 1; Himmelblau: mean over minima)."""
    table = pd.DataFrame(toy.minima_table())
    if measure not in table.columns or measure in ("function", "x", "y"):
        accepted = [c for c in table.columns if c not in ("function", "x", "y")]
        raise ValueError(f"unknown analytic measure {measure!r}; accepted: {', '.join(accepted)}")
    return table.groupby("function")[measure].mean()


def summary_at_targets(result: FitResult, measure: str = "top_eigenvalue") -> pd.DataFrame:
    """Per function and target: mean and SEM over seeds of `measure`, and how many seeds got there."""
    if measure not in MEASURES + ("epoch", "gap", "test_loss"):
        raise ValueError(f"unknown measure {measure!r}; accepted: {', '.join(MEASURES)}, epoch, gap, test_loss")
    frame = result.at_targets()
    grouped = frame.groupby(["function", "target"], sort=False)
    summary = grouped[measure].agg(["mean", "sem"]).join(grouped["reached"].agg(["sum", "size"]))
    return summary.rename(columns={"sum": "seeds_reached", "size": "seeds"}).reset_index()


def orderings(result: FitResult, measure: str = "top_eigenvalue", analytic: str = "max_eigenvalue") -> pd.DataFrame:
    """Per target: the functions every seed fitted, ordered flattest to sharpest by the networks and by chapter 1."""
    reference = analytic_curvature(analytic)
    agreement = rank_agreement(result, measure, analytic).set_index("target")["spearman"]
    rows = []
    for target, group in summary_at_targets(result, measure).groupby("target", sort=False):
        complete = group[group["seeds_reached"] == group["seeds"]]
        rows.append({
            "target": target,
            "networks": " < ".join(complete.sort_values("mean")["function"]),
            "chapter 1": " < ".join(reference[complete["function"]].sort_values().index),
            "spearman": agreement[target],
        })
    return pd.DataFrame(rows)


def rank_agreement(result: FitResult, measure: str = "top_eigenvalue", analytic: str = "max_eigenvalue") -> pd.DataFrame:
    """Spearman rank correlation, per target, between the networks' sharpness and the analytic curvature.

    Only functions that every seed fitted to the target take part; fewer than 3 gives NaN.
    """
    from scipy.stats import spearmanr

    reference = analytic_curvature(analytic)
    rows = []
    for target, group in summary_at_targets(result, measure).groupby("target", sort=False):
        complete = group[group["seeds_reached"] == group["seeds"]]
        rho = (
            spearmanr(complete["mean"], reference[complete["function"]].to_numpy()).statistic
            if len(complete) >= 3 else float("nan")
        )
        rows.append({"target": target, "functions": len(complete), "spearman": float(rho)})
    return pd.DataFrame(rows)


def unfitted_functions(result: FitResult) -> list[str]:
    """Functions that no seed of a run brought to any of its target losses."""
    reached = result.at_targets().groupby("function", sort=False)["reached"].sum()
    return [name for name, count in reached.items() if count == 0]


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="quick", choices=list(PRESETS))
    parser.add_argument("--out", required=True, help="directory for records.csv and provenance.json")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1)")
    parser.add_argument("--points", type=positive_int, help="train and test points")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (1 avoids contention on a shared machine)")


def main(args=None) -> int:
    """python -m sharpness fit --preset quick|medium|full [--epochs N ...] --out DIR"""
    import argparse

    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(description=main.__doc__)
        add_arguments(parser)
        args = parser.parse_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict = {"device": args.device}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.seeds:
        overrides["seeds"] = tuple(range(args.seeds))
    if args.points:
        overrides["train_points"] = overrides["test_points"] = args.points
    result = run(preset(args.preset, **overrides))
    print(f"saved {len(result.records)} records to {result.save(args.out)} in {result.provenance['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
