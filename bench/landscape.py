"""Seconds per 51 x 51 loss surface: batched (vmap) vs per-point evaluation, ResNet-18 and simple_cnn.

Usage: python bench/landscape.py [--subset 128] [--points 12] [--device cpu|cuda] [--full]

Times `evaluate_points` on a CIFAR-shaped subset (random normalised images: the cost does not depend
on pixel values) for `--points` grid points after one warm-up chunk, and scales the per-point time to
the 2601 points of a 51 x 51 surface; `--full` evaluates the whole surface instead of extrapolating.
Timing is per image: a surface over n training images costs about n / subset times the figure printed.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from sharpness.measuring import landscape
from sharpness.training.models import build_model

SURFACE_POINTS = 51 * 51


def time_points(model, images, labels, points: int, *, method: str, chunk_size: int, batch_size: int) -> float:
    """Seconds per grid point, measured over `points` points after one warm-up chunk."""
    directions = landscape.random_directions(model, 2, seed=0)
    coefficients = np.random.default_rng(0).uniform(-1, 1, size=(points, 2))
    run = lambda rows: landscape.evaluate_points(  # noqa: E731
        model, directions, rows, images, labels, method=method, chunk_size=chunk_size, batch_size=batch_size,
        progress=False,
    )
    run(coefficients[: max(1, min(chunk_size, points))])  # warm-up: allocator, kernels, vmap tracing
    synchronise(images.device)
    started = time.perf_counter()
    run(coefficients)
    synchronise(images.device)
    return (time.perf_counter() - started) / points


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=None, help="training images per point (default: 128 CPU, 10000 GPU)")
    parser.add_argument("--points", type=int, default=None, help="grid points timed (default: 12 CPU, 256 GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", nargs="+", default=["resnet18", "simple_cnn"])
    parser.add_argument("--chunks", nargs="*", type=int, default=[4, 16], help="vmap chunk sizes to time (none: only the loop)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward (default: the subset on CPU, 512 GPU)")
    parser.add_argument("--full", action="store_true", help="evaluate all 2601 points instead of extrapolating")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    subset = args.subset or (10_000 if gpu else 128)
    points = SURFACE_POINTS if args.full else (args.points or (256 if gpu else 12))
    batch_size = args.batch_size or (512 if gpu else subset)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(subset, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (subset,), generator=generator).to(device)
    print(f"device: {landscape._device_name(device)}; torch {torch.__version__}; subset {subset} images; "
          f"{points} points timed{' (full surface)' if args.full else ', scaled to 2601'}; batch {batch_size}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for arch in args.archs:
        torch.manual_seed(0)
        model = build_model(arch, 10).to(device).eval()
        methods = [("loop", 1)] + [("vmap", chunk) for chunk in args.chunks]
        for method, chunk in methods:
            per_point = time_points(model, images, labels, points, method=method, chunk_size=chunk, batch_size=batch_size)
            label = method if method == "loop" else f"vmap chunk {chunk}"
            print(f"{arch:>10} {label:>14}: {per_point * 1e3:9.1f} ms/point, {subset / per_point:9.0f} img/s, "
                  f"{per_point * SURFACE_POINTS:9.1f} s per 51x51 surface of {subset} images")


if __name__ == "__main__":
    main()
