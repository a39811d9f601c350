"""Seconds per sharpness measure for ResNet-18 on CIFAR-10-shaped training data, scaled to the full 50k.

Usage: python bench/measures.py [--images 1024] [--device cpu|cuda] [--sam-draws 3] [--hessian-steps 2]
                                [--real] [--arch resnet18] [--batch-size 256]

Each measure runs once on `--images` training images (random CIFAR-shaped images by default: cost does
not depend on pixel values; `--real` uses the CIFAR-10 JPEG pack when extracted under data/). The cost
of every measure is linear in the number of images and, for SAM-sharpness and the Hessian extras, in
the number of draws or iterations, so the table scales the measured seconds to 50,000 images,
K = 100 SAM draws and 20 Hessian iterations. "passes" is the cost in units of one plain forward pass.
"""

from __future__ import annotations

import argparse
import time

import torch

from sharpness.measuring import measures
from sharpness.training.data import ImageData, batches
from sharpness.training.models import build_model

FULL_TRAIN = 50_000
PAPER_SAM_DRAWS = 100
HESSIAN_STEPS = 20


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cifar_like(count: int, real: bool, data_dir: str | None = None) -> ImageData:
    if real:
        from sharpness.training.data import load_dataset

        return load_dataset("cifar10_folder", data_dir).subset(count, 16)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (count,), generator=generator)
    stats = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return ImageData("random-cifar-shaped", images, labels, images[:16], labels[:16], 10, *stats)


def timed(device: torch.device, compute) -> float:
    synchronise(device)
    started = time.perf_counter()
    compute()
    synchronise(device)
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sam-draws", type=int, default=3)
    parser.add_argument("--hessian-steps", type=int, default=2)
    parser.add_argument("--real", action="store_true", help="use the CIFAR-10 JPEG pack instead of random images")
    parser.add_argument("--data-dir", default=None, help="where the pack is, with --real (default: data/cifar10-jpeg)")
    parser.add_argument("--json", default=None, help="also write the table (with provenance) to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    data = cifar_like(args.images, args.real, args.data_dir).to(device)
    model = build_model(args.arch, data.num_classes).to(device).eval()
    source = lambda: batches(data.train_images, data.train_labels, args.batch_size, data=data)  # noqa: E731
    list(source())  # warm-up: first-call kernel selection and allocation
    with torch.no_grad():
        model(next(iter(source()))[0])

    # name: (run it, how many times the measured run must be repeated to reach the paper's setting)
    jobs = {
        "forward pass (reference)": (lambda: measures.mean_loss(model, source), 1),
        "fisher_rao_norm": (lambda: measures.fisher_rao_norm(model, source, progress=False), 1),
        "relative_flatness": (lambda: measures.relative_flatness(model, source, progress=False), 1),
        "relative_flatness (paper)": (lambda: measures.relative_flatness(model, source, True, progress=False), 1),
        "fisher_rao_norm_exact (jvp)": (lambda: measures.fisher_rao_norm_exact(model, source, progress=False), 1),
        f"sam_sharpness (K={args.sam_draws})": (
            lambda: measures.sam_sharpness(model, source, draws=args.sam_draws, progress=False),
            (PAPER_SAM_DRAWS + 1) / (args.sam_draws + 1),
        ),
        f"hessian_top_eigenvalue ({args.hessian_steps} it)": (
            lambda: measures.hessian_top_eigenvalue(model, source, iterations=args.hessian_steps, tol=0, progress=False),
            HESSIAN_STEPS / args.hessian_steps,
        ),
        f"hessian_trace ({args.hessian_steps} draws)": (
            lambda: measures.hessian_trace(model, source, draws=args.hessian_steps, progress=False),
            HESSIAN_STEPS / args.hessian_steps,
        ),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.arch} on {args.images} {data.name} images, batch {args.batch_size}, {name}, torch {torch.__version__}")
    print(f"{'measure':36s} {'seconds':>9s} {'passes':>7s} {'scaled to 50k, K=100 / 20 it':>30s}")
    forward = None
    rows = []
    for label, (compute, repeat) in jobs.items():
        seconds = timed(device, compute)
        forward = forward or seconds
        scaled = seconds * repeat * FULL_TRAIN / args.images
        rows.append({"measure": label, "seconds": seconds, "passes": seconds / forward, "seconds_at_50k_paper_setting": scaled})
        print(f"{label:36s} {seconds:9.2f} {seconds / forward:7.2f} {scaled:27.0f} s", flush=True)
    if args.json:
        from sharpness.core.runs import atomic_write_json
        from sharpness.studies.store import provenance

        settings = {key: value for key, value in vars(args).items() if key != "json"}
        document = {"provenance": provenance(settings, data=f"{args.images} {data.name} images"), "device": name,
                    "scaled_to": {"images": FULL_TRAIN, "sam_draws": PAPER_SAM_DRAWS, "hessian_steps": HESSIAN_STEPS},
                    "rows": rows}
        atomic_write_json(args.json, document)
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
