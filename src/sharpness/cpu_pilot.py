"""The pilot that chose the CPU study's protocol: which network, how many images and epochs reach a minimum.

The hardest controls to fit are the augmentation ones (a network must classify every crop and flip of its
training images), so the pilot trains `aug` (and `aug_sam`, SAM slows fitting further) of seed 0 under each
candidate protocol and records, from the runs themselves, the accuracy and loss on one fixed augmented copy
of the training images (the images the sharpness measures see), the fall of the training loss over the last
epochs, the test accuracy and the cost. `python -m sharpness cpu-pilot` trains what is missing and writes
`results/cpu_study_pilot.json`; the setup chapter shows it beside the protocol it led to.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import runs
from .paths import RESULTS_DIR, RUNS_DIR

PILOT_FILE = RESULTS_DIR / "cpu_study_pilot.json"
DEFAULT_RUNS_DIR = RUNS_DIR / "cpu_pilot"
PILOT_CONTROLS = ("aug", "aug_sam")
# (arch, training images, epochs, schedule, SAM radius scale): the old protocol first, then the levers in turn.
CANDIDATES = (
    ("cnn_mlp", 5_000, 40, "cosine", 1.0),
    ("cnn_mlp", 2_000, 100, "cosine", 1.0),
    ("cnn_mlp_h1024", 2_000, 60, "cosine", 1.0),
    ("cnn_mlp_wide", 1_000, 100, "cosine", 1.0),
    ("cnn_mlp_wide", 1_000, 100, "cosine", 0.18),
    ("cnn_mlp_wide", 800, 120, "cosine", 0.18),
)
SHARED = {"dataset": "cifar10_folder", "seed": 0, "lr": 1e-2, "batch_size": 128, "channels_last": True,
          "monitor_test_images": 1_000, "device": "cpu"}


def candidate_config(arch: str, images: int, epochs: int, schedule: str, rho_scale: float, control: str, runs_dir,
                     data_dir=None):
    from .train import RunConfig

    folder = Path(runs_dir) / f"{arch}_{images}_{epochs}_{schedule}_rho-scale{rho_scale:g}"
    return RunConfig(arch=arch, control=control, epochs=epochs, max_train_samples=images, lr_schedule=schedule,
                     rho_scale=rho_scale, runs_dir=str(folder), data_dir=data_dir, **SHARED)


def measure(run_dir: Path) -> dict:
    """What the pilot records of one run (finished or stopped early: `epochs_done` says which)."""
    import torch

    from .evaluate import measured_set_diagnostics, measurement_images
    from .data import batches
    from .measures import classifier_pass
    from .models import build_model
    from .train import load_run

    history = runs.read_jsonl(run_dir / runs.METRICS)
    model, config, data = load_run(run_dir)
    images, labels = measurement_images(data, config)
    with torch.no_grad():
        diagnostics = measured_set_diagnostics(classifier_pass(model, lambda: batches(images, labels, 128, data=data), progress=False))
    losses = [row["train_loss"] for row in history]
    return {
        "arch": config.arch, "parameters": sum(p.numel() for p in build_model(config.arch, 10).parameters()),
        "train_images": config.max_train_samples, "epochs": config.epochs, "epochs_done": len(history),
        "lr_schedule": config.lr_schedule, "control": config.control,
        "sam_radius": config.rho * config.rho_scale if config.control.endswith("sam") else None,
        "measured_set_accuracy": diagnostics["accuracy"], "measured_set_loss": diagnostics["loss"],
        "loss_drop_last_5_epochs": (losses[-6] - losses[-1]) / losses[-6] if len(losses) >= 6 else None,
        "test_accuracy_monitored": history[-1]["test_accuracy"],
        "train_seconds": sum(row["train_seconds"] for row in history),
        "images_per_second": sum(row["images_per_second"] for row in history) / len(history),
    }  # fmt: skip


def run_pilot(runs_dir=DEFAULT_RUNS_DIR, data_dir=None, candidates=CANDIDATES, train_missing: bool = True) -> Path:
    """Train (when asked) every candidate's pilot runs, then measure every run found under `runs_dir` (runs
    stopped early are recorded with the epochs they did) and write PILOT_FILE."""
    from .provenance import code_version
    from .train import train

    for candidate in candidates if train_missing else ():
        for control in PILOT_CONTROLS:
            config = candidate_config(*candidate, control, runs_dir, data_dir)
            if not runs.is_finished(config.run_dir):
                started = time.perf_counter()
                train(config, progress=False)
                print(f"pilot {candidate} {control}: trained in {time.perf_counter() - started:.0f} s")
    found = [path.parent for path in sorted(Path(runs_dir).glob(f"**/{runs.CHECKPOINT}"))]
    rows = [measure(path) for path in found]
    document = {"provenance": {"command": "python -m sharpness cpu-pilot", "code": code_version(),
                               "settings": SHARED, "date": time.strftime("%Y-%m-%d")}, "runs": rows}
    return runs.atomic_write_json(PILOT_FILE, document)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR))
    parser.add_argument("--data-dir", default=None, help="the CIFAR-10 ImageFolder pack (default: data/cifar10-jpeg)")
    parser.add_argument("--record-only", action="store_true", help="measure the runs there, train nothing")


def main(args: argparse.Namespace) -> int:
    print(f"pilot written: {run_pilot(args.runs_dir, args.data_dir, train_missing=not args.record_only)}")
    return 0
