"""Loss landscapes: filter-normalised random directions (Li et al. 2018) and model interpolation.

A surface is the training loss (and accuracy) of theta_0 + a * d_1 (+ b * d_2) over a grid of (a, b),
in eval mode (BatchNorm uses its running statistics, which the directions never touch). Random
directions are filter-normalised: every filter of a direction (a slice along dim 0 of a weight tensor)
has the norm of the same filter of the weights, so the picture does not depend on the arbitrary
per-filter scale that BatchNorm and ReLU leave free. One-dimensional tensors (biases, BN weights) get a
zero direction unless asked for.

Many grid points are evaluated per forward pass: `torch.func.vmap` over stacked parameter sets turns a
chunk of K models into one grouped computation (conv layers become K-group convolutions). The plain
per-point loop is kept both as the reference the tests compare against and as the faster choice where
it is (see `DEFAULT_METHOD`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

ONE_DIM_OPTIONS = ("zero", "random", "weights")
METHODS = ("auto", "vmap", "loop")
FILTER_EPS = 1e-10
ROOT = Path(__file__).resolve().parents[2]
STORED_SURFACES = ROOT / "results" / "landscapes"

Direction = dict[str, torch.Tensor]


def _choose(value, accepted: Sequence, what: str):
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
    _choose(one_dim, ONE_DIM_OPTIONS, "one_dim option")
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


def interpolation_direction(model_a: nn.Module, model_b: nn.Module) -> Direction:
    """theta_b - theta_a over parameters and floating buffers, so that alpha = 1 is exactly model_b.

    BN running statistics are interpolated too: in eval mode they are part of the function, and keeping
    model_a's statistics would make the alpha = 1 end differ from model_b.
    """
    state_a, state_b = model_state(model_a), model_state(model_b)
    if state_a.keys() != state_b.keys():
        missing = sorted(state_a.keys() ^ state_b.keys())
        raise ValueError(f"models differ in their tensors (not the same architecture): {missing[:5]}")
    direction = {}
    for name, a in state_a.items():
        b = state_b[name]
        if a.shape != b.shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(a.shape)} in model_a and {tuple(b.shape)} in model_b")
        if a.is_floating_point():
            direction[name] = b.to(a.device) - a
    return direction


# --------------------------------------------------------------------------------------------------
# Evaluation of many points
# --------------------------------------------------------------------------------------------------

# Measured by bench/landscape.py on the 2 CPU cores of the development machine (see the chapter and
# the bench output): on CPU, vmap's grouped convolutions are no faster than the plain loop, because a
# single model already keeps both cores busy and grouped convolutions are less optimised on CPU. On a
# GPU one ResNet-18 forward is launch-bound, and vmap fuses K models into one launch per layer.
DEFAULT_METHOD = {"cuda": "vmap"}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate in eval mode (BN running statistics, no dropout), restoring the training flag after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


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
    batch_size: int = 512,
    chunk_size: int = 16,
    method: str = "auto",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy at theta_0 + sum_j c_kj d_j for every row c_k of `coefficients`.

    images/labels: the evaluation set (normalised float images), moved to the model's device once.
    base: theta_0 (defaults to the model's own parameters and buffers). chunk_size: grid points per
    forward pass with method "vmap". autocast_dtype (e.g. torch.bfloat16) runs the forward passes under
    autocast; the default keeps float32, since a landscape's detail near the minimum is small.
    """
    method = _choose(method, METHODS, "method")
    device = next(model.parameters()).device
    if method == "auto":
        method = DEFAULT_METHOD.get(device.type, "loop")
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

    def logits_of(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (state, fixed), (x,))

    batched_logits = vmap(logits_of, in_dims=(0, None))
    points = len(coefficients)
    loss_sums = torch.zeros(points, dtype=torch.float64, device=device)
    correct = torch.zeros(points, dtype=torch.float64, device=device)
    step = chunk_size if method == "vmap" else 1
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else _no_context()
    )
    with eval_mode(model), torch.no_grad(), autocast:
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


@contextmanager
def _no_context():
    yield


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


def _surface_from(model, directions, axes, images, labels, provenance, **evaluation) -> Surface:
    mesh = np.meshgrid(*axes, indexing="xy")  # 2-D: rows follow the second axis (plotly's z[j][i])
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
    resolution: int = 51,
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
    _choose(dims, (1, 2), "number of dimensions")
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

    alpha = 0 is model_a, alpha = 1 is model_b (BN running statistics interpolated alongside).
    """
    direction = interpolation_direction(model_a, model_b)
    record = {"kind": "interpolation", "span": list(span)}
    axes = [grid_axis(resolution, span)]
    return _surface_from(model_a, [direction], axes, images, labels, {**record, **(provenance or {})}, **evaluation)


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
