"""How fast the small ViT fits the CPU study's augmented images, from each start of its embeddings.

Trains `vit_small`'s `aug` control (seed 0) under the CPU study's protocol (`cpu_study.grid`: its 800 CIFAR-10
images, batch 128, cosine schedule) for a few epochs at each learning rate, once with the class token and
position embeddings at the library's start (`models.EMBEDDING_INIT_STD`) and once at unit scale (the first
`SmallViT`), and prints the share of the training batches' images it classified right in the last epoch. The
augmentation controls are what keeps the ViT short of a minimum (`cpu_families.PILOT_SETTINGS`); this is the
measurement behind `SmallViT`'s docstring. Runs go to a temporary folder and are thrown away.

    PYTHONPATH=src python bench/vit_fit.py --data-dir data/cifar10-jpeg [--epochs 40] [--lrs 0.05 0.1] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from sharpness.core import runs
from sharpness.studies import cpu_study
from sharpness.training import models, train


def fitted_share(data_dir: str, lr: float, epochs: int, init_std: float, runs_dir: str) -> dict:
    """Train one `aug` run of vit_small with its embeddings started at `init_std`; its last epoch's train accuracy."""
    default = models.EMBEDDING_INIT_STD
    models.EMBEDDING_INIT_STD = init_std  # read when the network is built
    try:
        grid = cpu_study.grid((0,), data_dir, runs_dir, arch="vit_small", lr=lr, epochs=epochs)
        (config,) = [c for c in grid.configs("cpu") if c.control == "aug"]
        start = time.time()
        train.train(config, progress=False)
    finally:
        models.EMBEDDING_INIT_STD = default
    history = runs.read_jsonl(config.run_dir / runs.METRICS)
    return {"lr": lr, "epochs": epochs, "embedding_init_std": init_std, "train_accuracy": history[-1]["train_accuracy"],
            "wall_seconds": round(time.time() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the CIFAR-10 folder pack the CPU study reads")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.05])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for lr in args.lrs:
            for init_std in (models.EMBEDDING_INIT_STD, 1.0):
                rows.append(fitted_share(args.data_dir, lr, args.epochs, init_std, f"{scratch}/{lr}_{init_std}"))
                print(f"lr {lr:g}, embeddings from N(0, {init_std:g}^2): {rows[-1]['train_accuracy']:.1%} of the "
                      f"augmented training images after {args.epochs} epochs ({rows[-1]['wall_seconds']:.0f} s)", flush=True)
    if args.json:
        runs.atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
