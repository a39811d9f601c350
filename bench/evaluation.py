"""A run's end-of-run evaluation, measure by measure, in units of one forward pass over the same images.

Usage: PYTHONPATH=src python bench/evaluation.py RUN_DIR [--measures ...] [--threads 1] [--cifar-c-dir DIR]
                                                 [--json out.json]

Copies the finished run to a scratch folder and evaluates it there as the CPU study does
(the evaluation options of `cpu_study.grid`; the run's own metrics.json is left alone). Each measure's seconds are
divided by the seconds of one plain forward pass, in the evaluation's model format and batch size, over
the images that measure reads: the training images for the one-pass measures and the exact Fisher-Rao
norm, the fixed subset for SAM-sharpness and the Hessian extras, the test set for the test predictions,
every corrupted image for corruption accuracy. The unit cancels the machine's speed and most of its
load, so a measure whose ratio grows has regressed. The forward pass is timed before and after the
evaluation (the spread shows how steady the machine was); the last line compares the evaluation with
the run's own training time (issue 25's goal: at most half).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sharpness.measuring import evaluate, measures
from sharpness.studies import cpu_study
from sharpness.training.data import batches as data_batches
from sharpness.training.train import load_run

FORWARD_REPEATS = 3


def forward_seconds_per_image(model, data, images, labels, batch_size: int) -> float:
    """Seconds per image of one forward pass (eval mode, float64 loss as the measures take it)."""
    source = lambda: data_batches(images, labels, batch_size, data=data)  # noqa: E731
    started = time.perf_counter()
    measures.mean_loss(model, source)
    return (time.perf_counter() - started) / len(labels)


def images_read(name: str, metrics: dict, test_images: int) -> int:
    """How many images the evaluation step `name` (a key of metrics.json's "seconds") passes over."""
    settings = metrics["settings"]
    step = name.rsplit(".", 1)[-1]  # "clean.sam_sharpness" reads as many images as "sam_sharpness"
    if step in ("sam_sharpness", "hessian_top_eigenvalue", "hessian_trace"):
        return settings["slow_measure_images"]
    if step == "test_predictions":
        return test_images
    if step == "corruption_accuracy":
        corruption = metrics["corruption"]
        return corruption["images"] * len(corruption["by_corruption"]) * len(corruption["severities"])
    return settings["train_images"]  # train_pass, train_predictions, fisher_rao_norm_exact


def table(run_dir: Path, measure_names, cifar_c_dir: str | None) -> dict:
    """Evaluate a copy of `run_dir`; seconds and forward-pass units per step, with provenance."""
    model, config, data = load_run(run_dir, "cpu")
    measures.to_channels_last(model)  # as evaluate_run runs it
    model.eval()
    images, labels = data.train_images, data.train_labels
    before = [forward_seconds_per_image(model, data, images, labels, config.batch_size) for _ in range(FORWARD_REPEATS)]
    options = dict(cpu_study.grid((config.seed,)).evaluation_options)
    if cifar_c_dir is not None:
        options["cifar_c_dir"] = cifar_c_dir
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(shutil.copytree(run_dir, Path(scratch) / "run", ignore=shutil.ignore_patterns("metrics.json")))
        started = time.perf_counter()
        metrics = evaluate.evaluate_run(copy, measure_names, device="cpu", progress=False, **options)
        total = time.perf_counter() - started
    after = [forward_seconds_per_image(model, data, images, labels, config.batch_size) for _ in range(FORWARD_REPEATS)]
    per_image = statistics.median(before + after)
    rows = []
    for name, seconds in metrics["seconds"].items():
        count = images_read(name, metrics, len(data.test_labels))
        rows.append({"step": name, "images": count, "seconds": round(seconds, 3),
                     "forward_passes": round(seconds / (per_image * count), 2)})
    train_seconds = json.loads((run_dir / "summary.json").read_text()).get("train_seconds")
    return {
        "run_dir": str(run_dir), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "forward_seconds_per_1000_images": {"before": [round(1000 * s, 4) for s in before],
                                            "after": [round(1000 * s, 4) for s in after]},
        "rows": rows, "evaluation_seconds": round(total, 2), "train_seconds": train_seconds,
        "estimates": metrics.get(evaluate.ESTIMATES_KEY, {}),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--measures", nargs="+", default=list(evaluate.MEASURES))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the study's workers use 1)")
    parser.add_argument("--cifar-c-dir", default=None, help="corrupted test images (default: the study's folder)")
    parser.add_argument("--json", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    if not (args.run_dir / "summary.json").is_file():
        print(f"{args.run_dir} is not a finished run (no summary.json): train it first", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    result = table(args.run_dir, args.measures, args.cifar_c_dir)
    print(f"{'step':32} {'images':>8} {'seconds':>9} {'x forward':>10}")
    for row in result["rows"]:
        print(f"{row['step']:32} {row['images']:8d} {row['seconds']:9.2f} {row['forward_passes']:10.2f}")
    spread = result["forward_seconds_per_1000_images"]
    print(f"one forward pass: {spread['before']} s per 1000 images before, {spread['after']} after")
    if result["train_seconds"]:
        print(f"evaluation {result['evaluation_seconds']:.1f} s = {result['evaluation_seconds'] / result['train_seconds']:.2f}"
              f" x the run's training ({result['train_seconds']:.1f} s, timed when it trained)")
    for name, record in result["estimates"].items():
        print(f"{name}: " + ", ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                                      for key, value in record.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
