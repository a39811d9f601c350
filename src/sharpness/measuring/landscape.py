"""Loss landscapes: filter-normalised random directions (Li et al. 2018) and model interpolation.

A surface is the training loss (and accuracy) of theta_0 + a * d_1 (+ b * d_2) over a grid of (a, b),
in eval mode (BatchNorm uses its running statistics, which the directions never touch). Random
directions are filter-normalised: every filter of a direction (a slice along dim 0 of a weight tensor)
has the norm of the same filter of the weights, so the picture does not depend on the arbitrary
per-filter scale that BatchNorm and ReLU leave free. One-dimensional tensors (biases, BN weights) get a
zero direction unless asked for.

Many grid points are evaluated per forward pass: `torch.func.vmap` over stacked parameter sets turns a
chunk of K models into one grouped computation (conv layers become K-group convolutions). The plain
per-point loop is what the tests compare against, and the faster choice on a CPU (see `DEFAULT_METHOD`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ..core.cli_values import finite_float, positive_int
from ..core.paths import RESULTS_DIR
from ..core.progress import tqdm
from ..training.data import EVALUATION_BATCH_SIZE
from .measures import evaluation_mode, in_memory_format, to_channels_last

ONE_DIM_OPTIONS = ("zero", "random", "weights")
METHODS = ("auto", "vmap", "loop")
FILTER_EPS = 1e-10
STORED_SURFACES = RESULTS_DIR / "landscapes"
#: Grid points per axis of the paper's surfaces (its setting: 2-D, span (-1, 1), over the training set).
PAPER_RESOLUTION = 51

Direction = dict[str, torch.Tensor]


def choose(value, accepted: Sequence, what: str):
    """`value` if it is one of `accepted`, else a ValueError naming the accepted ones."""
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; accepted: {', '.join(map(str, accepted))}")
    return value


# --------------------------------------------------------------------------------------------------
# Directions
# --------------------------------------------------------------------------------------------------


def _rescale_filters(noise: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`noise` with each slice along dim 0 rescaled to the norm of the same slice of `weight`."""
    dims = tuple(range(1, weight.dim()))
    weight_norms = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
    noise_norms = torch.linalg.vector_norm(noise, dim=dims, keepdim=True)
    return noise * (weight_norms / (noise_norms + FILTER_EPS))


def filter_normalised_direction(
    model: nn.Module, *, generator: torch.Generator | None = None, one_dim: str = "zero"
) -> Direction:
    """A random direction over `model`'s parameters, filter-normalised to its weights.

    one_dim chooses the direction of 1-D tensors (biases, BN affine weights): "zero" (Li et al.'s
    default, the surface then moves only the filters), "random" (a Gaussian vector rescaled to the
    tensor's norm, the whole tensor treated as one filter) or "weights" (the weights themselves, as
    Li et al.'s code does when BN is included). The noise is drawn on the CPU from `generator` for every
    tensor whatever `one_dim` is, so a seed gives the same filter directions on every device and option.
    Buffers (BN running statistics) get no direction.
    """
    choose(one_dim, ONE_DIM_OPTIONS, "one_dim option")
    direction = {}
    for name, parameter in model.named_parameters():
        weight = parameter.detach()
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        noise = noise.to(device=weight.device, dtype=weight.dtype)
        if weight.dim() > 1:
            direction[name] = _rescale_filters(noise, weight)
        elif one_dim == "zero":
            direction[name] = torch.zeros_like(weight)
        elif one_dim == "weights":
            direction[name] = weight.clone()
        else:
            direction[name] = _rescale_filters(noise.reshape(1, -1), weight.reshape(1, -1)).reshape(weight.shape)
    return direction


def random_directions(model: nn.Module, count: int = 2, *, seed: int = 0, one_dim: str = "zero") -> list[Direction]:
    """`count` filter-normalised directions drawn one after the other from one generator seeded `seed`."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    generator = torch.Generator().manual_seed(seed)
    return [filter_normalised_direction(model, generator=generator, one_dim=one_dim) for _ in range(count)]


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name, detached: the point theta_0 a surface is centred on."""
    state = {name: p.detach() for name, p in model.named_parameters()}
    state.update({name: b.detach() for name, b in model.named_buffers()})
    return state


def interpolation_directions(model_a: nn.Module, model_b: nn.Module) -> tuple[Direction, Direction]:
    """theta_b - theta_a, split into the parameters' part and the floating buffers' part.

    BN running statistics belong to the eval-mode function, so they move too (alpha = 1 is then exactly
    model_b); they are kept apart because beyond the two ends a running variance extrapolated linearly
    can turn negative, so `interpolation` holds them at the nearer end there.
    """
    state_a, state_b = model_state(model_a), model_state(model_b)
    if state_a.keys() != state_b.keys():
        missing = sorted(state_a.keys() ^ state_b.keys())
        raise ValueError(f"models differ in their tensors (not the same architecture): {missing[:5]}")
    parameter_names = {name for name, _ in model_a.named_parameters()}
    parameters, buffers = {}, {}
    for name, a in state_a.items():
        b = state_b[name]
        if a.shape != b.shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(a.shape)} in model_a and {tuple(b.shape)} in model_b")
        if a.is_floating_point():
            (parameters if name in parameter_names else buffers)[name] = b.to(a.device) - a
    return parameters, buffers


# --------------------------------------------------------------------------------------------------
# Evaluation of many points
# --------------------------------------------------------------------------------------------------

# Which evaluation is faster, measured with bench/landscape.py on the shared 2-core development machine:
# - CPU, one thread per process (what the book uses there): the plain loop was 1.1-1.9x (ResNet-18)
#   and 1.3-1.6x (simple_cnn) faster than vmap over 4 points per pass. vmap turns K weight sets into
#   K-group convolutions, which are slower on CPU than K dense ones, and with one thread there is no
#   per-layer overhead worth amortising.
# - CPU with two threads on an oversubscribed machine, vmap with 4 points per pass won 1.1-1.7x, by
#   paying the thread synchronisation once per layer for 4 points; single-threaded loops beat both.
# - GPU: not measured yet (no GPU was lent while this was written; `python bench/landscape.py` on one
#   prints both). Expected to favour vmap: a ResNet-18 forward is launch-bound there, and on an H100
#   fusing N models into grouped convolutions gave 44-52k img/s against 22-26k for one (measured before this repo).
DEFAULT_METHOD = {"cuda": "vmap"}  # any other device: "loop"
DEFAULT_CHUNK_SIZE = {"cuda": 16}  # any other device: 4


def _moving_tensors(base: dict[str, torch.Tensor], directions: Sequence[Direction]) -> dict[str, torch.Tensor]:
    """For each tensor some direction moves, the directions stacked on a leading axis (n_dirs, *shape)."""
    for direction in directions:
        unknown = set(direction) - set(base)
        if unknown:
            raise ValueError(f"direction names tensors the model does not have: {sorted(unknown)[:5]}")
    moving = {}
    for name, tensor in base.items():
        parts = [d.get(name) for d in directions]
        if all(part is None or not bool(part.any()) for part in parts):
            continue
        moving[name] = torch.stack(
            [torch.zeros_like(tensor) if part is None else part.to(tensor) for part in parts]
        )
    return moving


def evaluate_points(
    model: nn.Module,
    directions: Sequence[Direction],
    coefficients: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    base: dict[str, torch.Tensor] | None = None,
    batch_size: int = EVALUATION_BATCH_SIZE,
    chunk_size: int | None = None,
    method: str = "auto",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy at theta_0 + sum_j c_kj d_j for every row c_k of `coefficients`.

    images/labels: the evaluation set (normalised float images), moved to the model's device once.
    base: theta_0 (defaults to the model's own parameters and buffers). method: "vmap" evaluates
    chunk_size grid points per forward pass, "loop" one; "auto" picks by device (DEFAULT_METHOD).
    autocast_dtype (e.g. torch.bfloat16) runs the forward passes under autocast; the default keeps
    float32, since a landscape's detail near the minimum is small. The "loop" method feeds images
    channels_last (x2.7 faster on a CPU with batch 128, issue 25; the values move by float rounding).
    """
    method = choose(method, METHODS, "method")
    device = next(model.parameters()).device
    if method == "auto":
        method = DEFAULT_METHOD.get(device.type, "loop")
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE.get(device.type, 4)
    if chunk_size < 1 or batch_size < 1:
        raise ValueError(f"chunk_size and batch_size must be positive, got {chunk_size} and {batch_size}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (and at least one), got {len(images)} and {len(labels)}")
    base = model_state(model) if base is None else base
    coefficients = torch.as_tensor(np.asarray(coefficients, dtype=np.float64), dtype=torch.float32, device=device)
    if coefficients.ndim != 2 or coefficients.shape[1] != len(directions):
        raise ValueError(f"coefficients must have shape (points, {len(directions)}), got {tuple(coefficients.shape)}")
    moving = _moving_tensors(base, directions)
    fixed = {name: tensor for name, tensor in base.items() if name not in moving}
    images, labels = images.to(device), labels.to(device)
    if method == "loop":
        images = in_memory_format(images, torch.channels_last)

    def logits_of(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (state, fixed), (x,))

    batched_logits = vmap(logits_of, in_dims=(0, None))
    points = len(coefficients)
    loss_sums = torch.zeros(points, dtype=torch.float64, device=device)
    correct = torch.zeros(points, dtype=torch.float64, device=device)
    step = chunk_size if method == "vmap" else 1
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with evaluation_mode(model), torch.no_grad(), autocast:
        for start in tqdm(range(0, points, step), desc=f"landscape ({method})", disable=not progress, leave=False):
            chunk = coefficients[start : start + step]
            states = {name: base[name] + torch.tensordot(chunk.to(d.dtype), d, dims=1) for name, d in moving.items()}
            for first in range(0, len(images), batch_size):
                x, y = images[first : first + batch_size], labels[first : first + batch_size]
                if method == "vmap":
                    logits = batched_logits(states, x)
                else:
                    logits = logits_of({name: s[0] for name, s in states.items()}, x).unsqueeze(0)
                logits = logits.float()
                flat_losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(chunk)), reduction="none")
                loss_sums[start : start + len(chunk)] += flat_losses.view(len(chunk), -1).sum(1).double()
                correct[start : start + len(chunk)] += (logits.argmax(-1) == y).sum(1).double()
    return (loss_sums / len(images)).cpu().numpy(), (correct / len(images)).cpu().numpy()


# --------------------------------------------------------------------------------------------------
# Surfaces
# --------------------------------------------------------------------------------------------------


@dataclass
class Surface:
    """Loss and accuracy over a grid: 1-D (axes = [alphas]) or 2-D (loss[j, i] at alphas[i], betas[j]).

    provenance records how it was made (directions seed, subset, model, device, time) so a stored
    surface says what produced it.
    """

    axes: list[np.ndarray]
    loss: np.ndarray
    accuracy: np.ndarray
    provenance: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return len(self.axes)

    def value_at_origin(self, values: np.ndarray | None = None) -> float:
        """The grid value nearest to the origin (exactly the origin when the grid contains it)."""
        values = self.loss if values is None else values
        index = tuple(int(np.abs(axis).argmin()) for axis in reversed(self.axes))
        return float(values[index])

    def to_dict(self) -> dict:
        def compact(values):
            return [float(f"{v:.7g}") for v in np.asarray(values, dtype=float).ravel()]

        return {
            "axes": [np.asarray(axis, dtype=float).tolist() for axis in self.axes],
            "shape": list(self.loss.shape),
            "loss": compact(self.loss),
            "accuracy": compact(self.accuracy),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, record: dict) -> "Surface":
        shape = tuple(record["shape"])
        return cls(
            axes=[np.asarray(axis, dtype=float) for axis in record["axes"]],
            loss=np.asarray(record["loss"], dtype=float).reshape(shape),
            accuracy=np.asarray(record["accuracy"], dtype=float).reshape(shape),
            provenance=dict(record.get("provenance", {})),
        )


def grid_axis(resolution: int, span: tuple[float, float]) -> np.ndarray:
    """`resolution` evenly spaced coefficients over `span` (odd resolutions contain the centre)."""
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    low, high = span
    if not low < high:
        raise ValueError(f"span must be (low, high) with low < high, got {span}")
    return np.linspace(low, high, resolution)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def _surface_from(model, directions, axes, images, labels, provenance, coefficients=None, **evaluation) -> Surface:
    """Evaluate the grid spanned by `axes` (coefficients default to the grid points themselves)."""
    mesh = np.meshgrid(*axes, indexing="xy")  # 2-D: rows follow the second axis (plotly's z[j][i])
    if coefficients is None:
        coefficients = np.stack([m.ravel() for m in mesh], axis=1)
    device = next(model.parameters()).device
    started = time.perf_counter()
    loss, accuracy = evaluate_points(model, directions, coefficients, images, labels, **evaluation)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    shape = mesh[0].shape
    provenance = {
        **provenance,
        "subset_size": len(images),
        "resolution": [len(axis) for axis in axes],
        "device": _device_name(device),
        "seconds": round(seconds, 3),
        "torch": torch.__version__,
        "eval_mode": True,
    }
    return Surface(list(axes), loss.reshape(shape), accuracy.reshape(shape), provenance)


def loss_surface(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    dims: int = 2,
    resolution: int = PAPER_RESOLUTION,
    span: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
    one_dim: str = "zero",
    provenance: dict | None = None,
    **evaluation,
) -> Surface:
    """The loss along `dims` (1 or 2) filter-normalised random directions drawn with `seed`.

    The paper's setting is dims=2, resolution=51, span=(-1, 1) over the training set. Keyword
    `evaluation` arguments go to `evaluate_points` (batch_size, chunk_size, method, progress...).
    """
    choose(dims, (1, 2), "number of dimensions")
    directions = random_directions(model, dims, seed=seed, one_dim=one_dim)
    axes = [grid_axis(resolution, span)] * dims
    record = {"kind": "random directions", "directions_seed": seed, "one_dim": one_dim, "span": list(span)}
    return _surface_from(model, directions, axes, images, labels, {**record, **(provenance or {})}, **evaluation)


def interpolation(
    model_a: nn.Module,
    model_b: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    resolution: int = 41,
    span: tuple[float, float] = (-0.5, 1.5),
    provenance: dict | None = None,
    **evaluation,
) -> Surface:
    """The loss along theta(alpha) = (1 - alpha) theta_a + alpha theta_b (Goodfellow et al. 2015).

    alpha = 0 is model_a, alpha = 1 is model_b. BN running statistics are interpolated alongside, with
    alpha clipped to [0, 1] for them (see `interpolation_directions`).
    """
    directions = interpolation_directions(model_a, model_b)
    alphas = grid_axis(resolution, span)
    coefficients = np.stack([alphas, np.clip(alphas, 0.0, 1.0)], axis=1)
    record = {"kind": "interpolation", "span": list(span), "buffers": "interpolated, alpha clipped to [0, 1]"}
    return _surface_from(
        model_a, list(directions), [alphas], images, labels, {**record, **(provenance or {})}, coefficients, **evaluation
    )


def training_subset(data, size: int | None = None, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random `size`-image subset of `data`'s training set (all of it for None), normalised, no augmentation."""
    total = len(data.train_labels)
    if size is not None and not 0 < size <= total:
        raise ValueError(f"subset size must be between 1 and {total} (the training set), got {size}")
    if size is None or size == total:
        index = torch.arange(total)
    else:
        index = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:size]
    return data.normalise(data.train_images[index]), data.train_labels[index]


# --------------------------------------------------------------------------------------------------
# The study: one surface per control of one seed, beside the invariant measures
# --------------------------------------------------------------------------------------------------

MEASURE_LABELS = {
    "fisher_rao_norm": "Fisher-Rao norm",
    "relative_flatness": "relative flatness",
    "sam_sharpness": "SAM-sharpness",
}


@dataclass
class ControlLandscape:
    """The surface of one trained run (dataset, arch, control, seed) and its invariant measures."""

    dataset: str
    arch: str
    control: str
    seed: int
    surface: Surface
    measures: dict[str, float] = field(default_factory=dict)
    source: str = "computed"  # where it came from: "offline runs", or the stored file (not saved)

    def to_dict(self) -> dict:
        keys = ("dataset", "arch", "control", "seed", "measures")
        return {**{key: getattr(self, key) for key in keys}, "surface": self.surface.to_dict()}

    @classmethod
    def from_dict(cls, record: dict) -> "ControlLandscape":
        keys = ("dataset", "arch", "control", "seed", "measures")
        return cls(**{key: record[key] for key in keys}, surface=Surface.from_dict(record["surface"]))


def landscape_path(dataset: str, arch: str, seed: int, control: str, root: Path | str = STORED_SURFACES) -> Path:
    return Path(root) / dataset / arch / f"seed{seed}" / f"{control}.json"


def save_landscape(item: ControlLandscape, root: Path | str = STORED_SURFACES) -> Path:
    """Write `item` as compact JSON (npz is kept out of git) under root/dataset/arch/seed<k>/<control>.json."""
    path = landscape_path(item.dataset, item.arch, item.seed, item.control, root)
    return save_surface_json(item.surface, path, item.to_dict())


def save_surface_json(surface: Surface, path: Path | str, document: dict | None = None) -> Path:
    """Write `document` (default: the surface itself) as compact JSON at `path`, unless the surface holds no finite
    loss at all (a diverged network, a span that leaves the weights far behind): that is refused, naming the file
    that was not written, so a command never reports a picture of nothing as done."""
    from ..core.runs import atomic_write_text

    if not np.isfinite(np.asarray(surface.loss, dtype=float)).any():
        axes = ", ".join(f"{float(np.min(axis)):g} to {float(np.max(axis)):g}" for axis in surface.axes)
        raise ValueError(f"not writing {path}: every loss of the surface (coefficients {axes}) is NaN or infinite; "
                         "draw it from a run that trained to a finite loss, over a smaller --span (e.g. -1 1)")
    return atomic_write_text(path, json.dumps(surface.to_dict() if document is None else document, separators=(",", ":")))


def read_landscape_json(path: Path | str, parse):
    """`parse(record)` of the JSON file `path` (a stored surface); a truncated or junk file raises ValueError naming
    it and the fix."""
    from ..core.runs import RunFileError, read_json

    fix = (f"restore it (git checkout -- {path}) or delete it and draw it again "
           "(python -m sharpness landscape, or the cpu-study that made it)")
    try:
        return parse(read_json(path, fix))
    except RunFileError as error:
        raise ValueError(str(error)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} is not a stored loss surface ({type(error).__name__}: {error}): {fix}") from None


def refuse_untrained(run_dir: Path | str) -> None:
    """A ValueError naming `run_dir` when it did not train to a finished minimum (unfinished or diverged)."""
    from .evaluate import why_not_evaluable

    reason = why_not_evaluable(Path(run_dir))
    if reason:
        raise ValueError(f"no loss surface of {run_dir}: {reason}. A surface is drawn around a trained minimum: "
                         "choose a run that finished, or train this one again (e.g. with a smaller --lr)")


def stored_landscapes(
    dataset: str | None = None, arch: str | None = None, seed: int | None = None, root: Path | str = STORED_SURFACES
) -> list[ControlLandscape]:
    """Surfaces stored under `root` (e.g. computed on a GPU), filtered by whatever is given."""
    pattern = f"{dataset or '*'}/{arch or '*'}/seed{'*' if seed is None else seed}/*.json"
    return [
        replace(read_landscape_json(path, ControlLandscape.from_dict), source=str(path))
        for path in sorted(Path(root).glob(pattern))
    ]


def invariant_measures(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512, sam_draws: int = 100,
    progress: bool = False,
) -> dict[str, float]:
    """The reparameterisation-aware measures of chapter 4 on the same images as the surface."""
    from . import measures

    device = next(model.parameters()).device
    batches = [
        (images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device))
        for i in range(0, len(images), batch_size)
    ]
    return {
        "fisher_rao_norm": measures.fisher_rao_norm(model, batches, progress=progress),
        "relative_flatness": measures.relative_flatness(model, batches, progress=progress),
        "sam_sharpness": measures.sam_sharpness(model, batches, draws=sam_draws, progress=progress),
    }


def landscape_of_run(
    run_dir: Path | str,
    *,
    resolution: int = PAPER_RESOLUTION,
    span: tuple[float, float] = (-1.0, 1.0),
    subset: int | None = 10_000,
    subset_seed: int = 0,
    directions_seed: int = 0,
    sam_draws: int = 100,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **evaluation,
) -> ControlLandscape:
    """Load a trained run, draw its surface over a training subset, and measure it on the same subset."""
    from ..training.train import load_run

    refuse_untrained(run_dir)
    model, config, data = load_run(run_dir, device=device)
    images, labels = training_subset(data, min(subset, len(data.train_labels)) if subset else None, seed=subset_seed)
    images, labels = images.to(device), labels.to(device)
    provenance = {"run_dir": str(run_dir), "subset_seed": subset_seed, "epochs": config.epochs}
    surface = loss_surface(
        model, images, labels, resolution=resolution, span=span, seed=directions_seed, provenance=provenance,
        progress=progress, **evaluation,
    )
    measures = invariant_measures(to_channels_last(model), images, labels, sam_draws=sam_draws)  # faster, same values
    surface.provenance["measures"] = f"on the same {len(images)} training images; SAM-sharpness with {sam_draws} draws"
    return ControlLandscape(config.dataset, config.arch, config.control, config.seed, surface, measures)


def interpolation_path(dataset: str, arch: str, seed: int, control_a: str, control_b: str,
                       root: Path | str = STORED_SURFACES) -> Path:
    return Path(root) / dataset / arch / f"seed{seed}" / "interpolation" / f"{control_a}__{control_b}.json"


def interpolation_of_runs(
    run_a: Path | str,
    run_b: Path | str,
    *,
    resolution: int = 21,
    span: tuple[float, float] = (-0.5, 1.5),
    subset: int | None = 10_000,
    subset_seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **evaluation,
) -> Surface:
    """The 1-D interpolation between two trained runs, over a subset of run_a's training set."""
    from ..training.train import load_run

    refuse_untrained(run_a)
    refuse_untrained(run_b)
    model_a, config_a, data = load_run(run_a, device=device)
    model_b, config_b, _ = load_run(run_b, device=device)
    images, labels = training_subset(data, min(subset, len(data.train_labels)) if subset else None, seed=subset_seed)
    provenance = {"run_a": str(run_a), "run_b": str(run_b), "subset_seed": subset_seed,
                  "controls": [config_a.control, config_b.control], "seeds": [config_a.seed, config_b.seed]}
    return interpolation(model_a, model_b, images.to(device), labels.to(device), resolution=resolution, span=span,
                         provenance=provenance, progress=progress, **evaluation)


# --------------------------------------------------------------------------------------------------
# Command line (the GPU machines have no papermill): surfaces of trained runs into results/landscapes
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.controls import CONTROLS

    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--controls", nargs="+", default=list(CONTROLS))
    parser.add_argument("--resolution", type=positive_int, default=PAPER_RESOLUTION)
    parser.add_argument("--span", type=finite_float, nargs=2, default=(-1.0, 1.0))
    parser.add_argument("--subset", type=int, default=10_000, help="training images per point (0: all)")
    parser.add_argument("--directions-seed", type=int, default=0)
    parser.add_argument("--sam-draws", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=EVALUATION_BATCH_SIZE)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--interpolate", nargs=2, metavar=("CONTROL_A", "CONTROL_B"), default=("baseline", "aug_sam"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(STORED_SURFACES))


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """python -m sharpness landscape --runs-dir runs --dataset cifar10 --arch resnet18 --seed 0 [...]"""
    from ..training.controls import CONTROLS

    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(description="Loss surfaces of trained runs, stored as JSON with provenance.")
        add_arguments(parser)
        args = parser.parse_args(args)
    for control in [*args.controls, *args.interpolate]:
        choose(control, CONTROLS, "control")
    if not args.span[0] < args.span[1]:
        raise ValueError(f"--span {args.span[0]:g} {args.span[1]:g} is empty: give the low end first, e.g. --span -1 1")
    run_dir = lambda control: Path(args.runs_dir) / args.dataset / args.arch / control / f"seed{args.seed}"  # noqa: E731
    missing = [str(run_dir(c)) for c in {*args.controls, *args.interpolate} if not (run_dir(c) / "summary.json").is_file()]
    if missing:
        print("not trained (no summary.json): " + ", ".join(sorted(missing)), file=sys.stderr)
        return 1
    evaluation = dict(device=args.device, batch_size=args.batch_size, chunk_size=args.chunk_size, subset=args.subset or None)
    for control in args.controls:
        item = landscape_of_run(run_dir(control), resolution=args.resolution, span=tuple(args.span),
                                directions_seed=args.directions_seed, sam_draws=args.sam_draws, **evaluation)
        path = save_landscape(item, args.out)
        print(f"{control}: {item.surface.provenance['seconds']:.1f} s for {args.resolution}x{args.resolution} -> {path}")
    control_a, control_b = args.interpolate
    surface = interpolation_of_runs(run_dir(control_a), run_dir(control_b), **evaluation)
    path = save_surface_json(surface, interpolation_path(args.dataset, args.arch, args.seed, control_a, control_b, args.out))
    print(f"interpolation {control_a} -> {control_b}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
