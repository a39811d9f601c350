"""Grid benchmark: aggregate training throughput of the real mix of runs, k at a time on one device,
and the projected time of the paper's grid (6 controls x 10 seeds x 100 epochs, with evaluation).

For each k in --parallel, k runs cycling through the six controls (so half of them use SAM, as in the
grid) train for --epochs epochs side by side as worker processes (or Ray tasks; 1/k of the GPU each), then are evaluated.
Measured: each run's images/s over its epochs after the first (warm-up), summed over the k runs (the
runs overlap for those epochs), and each run's evaluation and start-up seconds. Projected grid time =
training images of the grid / aggregate throughput + (evaluation + start-up seconds per run) x 60 / k.
Share of peak: training FLOP/s (forward FLOPs per image counted by torch's FlopCounterMode, x3 for
forward + backward, x2 again for SAM's two passes) over the device's dense bf16 peak.

    python bench/grid.py                      # CPU here: tiny setting (digits, small CNN)
    python bench/grid.py --save               # on a GPU: ResNet-18 / CIFAR-10 pack, k = 1 4 8, writes
                                              # results/bench_grid.json (read by the results chapter)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from sharpness.core import runs
from sharpness.core.paths import RESULTS_DIR
from sharpness.studies import store, sweep
from sharpness.training.controls import CONTROLS, get_control
from sharpness.training.models import build_model
from sharpness.training.train import RunConfig

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
GRID_RUNS, GRID_EPOCHS = len(CONTROLS) * 10, 100


def bf16_peak(device_name: str) -> float | None:
    for key, peak in BF16_PEAK.items():  # most specific names first
        if key in device_name:
            return peak
    return None


def forward_flops_per_image(arch: str, num_classes: int, image_size: int) -> float:
    model = build_model(arch, num_classes, image_size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return float(counter.get_total_flops())


def mix(k: int, args, runs_dir: Path, device: str) -> list[RunConfig]:
    """Runs cycling through the controls (baseline, baseline_sam, aug, ...; seed = position // 6): at
    least one of each control, and a whole number of rounds of k, so half of them use SAM as in the grid."""
    count = k * math.ceil(len(CONTROLS) / k)
    return [
        RunConfig(
            dataset=args.dataset, arch=args.arch, control=CONTROLS[i % len(CONTROLS)], seed=i // len(CONTROLS),
            epochs=args.epochs, data_dir=args.data_dir, runs_dir=str(runs_dir), device=device,
            max_train_samples=args.train_samples,
        )
        for i in range(count)
    ]


def measure(k: int, args, device: str, forward_flops: float) -> dict:
    """Train and evaluate the mix k runs at a time; throughput over the epochs after each run's first.

    Aggregate rate = k x (images / seconds summed over runs): k runs share the device at any time, so
    the device time is the runs' summed time over k. (Runs that end early leave the last ones less
    contended, which flatters large k slightly.)
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-grid-k{k}-") as scratch:
        configs = mix(k, args, Path(scratch), device)
        cpus = args.cpus or (k if device == "cpu" else None)
        started = time.perf_counter()
        try:
            report = sweep.run_configs(configs, measures=args.measures, backend=args.backend, num_cpus=cpus,
                                       runs_per_gpu=k, use_papermill=False, progress=False)
        finally:
            if args.backend == "ray":
                import ray

                ray.shutdown()
        wall = time.perf_counter() - started
        if report.failed:
            raise RuntimeError(f"benchmark runs failed:\n{report}")
        images = flops = seconds = 0.0
        evaluation, overhead = [], []
        for config in configs:
            history = runs.read_jsonl(config.run_dir / runs.METRICS)
            steady = history[1:] or history
            run_images = sum(row["images_per_second"] * row["train_seconds"] for row in steady)
            passes = 2 if get_control(config.control).sam else 1
            images += run_images
            flops += run_images * 3 * passes * forward_flops
            seconds += sum(row["train_seconds"] for row in steady)
            timing = report.seconds[str(config.run_dir)]
            evaluation.append(timing["evaluate"])
            overhead.append(timing["train"] - sum(row["train_seconds"] for row in history))
    return {
        "runs_in_parallel": k,
        "runs": len(configs),
        "images_per_second": k * images / seconds,
        "training_flops_per_second": k * flops / seconds,
        "evaluation_seconds_per_run": statistics.mean(evaluation),
        "startup_seconds_per_run": statistics.mean(overhead),
        "bench_wall_seconds": wall,
    }


def projected_grid_minutes(row: dict, images_per_epoch: int = 50_000) -> float:
    """Minutes for the 60-run, 100-epoch grid at the measured aggregate throughput, with each run's
    evaluation and start-up paid once per run and k runs paying them side by side."""
    training = GRID_RUNS * GRID_EPOCHS * images_per_epoch / row["images_per_second"]
    fixed = (row["evaluation_seconds_per_run"] + row["startup_seconds_per_run"]) * math.ceil(GRID_RUNS / row["runs_in_parallel"])
    return (training + fixed) / 60


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18" if cuda else "simple_cnn")
    parser.add_argument("--dataset", default="cifar10_folder" if cuda else "digits")
    parser.add_argument("--data-dir", default="data/cifar10-jpeg" if cuda else None)
    parser.add_argument("--epochs", type=int, default=3 if cuda else 2, help="epochs per run (the first is warm-up)")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8] if cuda else [1, 2])
    parser.add_argument("--train-samples", type=int, default=None if cuda else 256, help="cut the training set")
    parser.add_argument("--measures", nargs="+", default=None if cuda else ["test_accuracy", "test_ece"],
                        help="evaluation measures (default on GPU: all of evaluate_run's)")
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--backend", choices=sweep.BACKENDS[:2], default="local",
                        help="local: k worker processes, no Ray (a bare GPU machine); ray: k Ray tasks")
    parser.add_argument("--save", action="store_true", help=f"write {RESULTS_DIR / 'bench_grid.json'}")
    parser.add_argument("--json", default=None, help="write the figures (same document as --save) to this file")
    args = parser.parse_args(argv)

    device = "cuda" if cuda else "cpu"
    device_name = torch.cuda.get_device_name(0) if cuda else "CPU"
    probe = RunConfig(dataset=args.dataset, arch=args.arch, data_dir=args.data_dir, runs_dir="unused",
                      max_train_samples=args.train_samples)
    from sharpness.training.train import prepare_data

    data = prepare_data(probe)
    train_images = len(data.train_images)
    forward_flops = forward_flops_per_image(args.arch, data.num_classes, data.image_size)
    peak = bf16_peak(device_name) if cuda else None
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "n/a (no GPU with a known peak)"
    print(f"device: {device_name}; {args.arch} on {args.dataset} ({train_images} training images), "
          f"{args.epochs} epochs per run; forward {forward_flops / 1e9:.4f} GFLOP per image; bf16 peak {peak_text}")
    print(f"projection: 6 controls x 10 seeds x 100 epochs of 50,000 images (CIFAR-10 size) of {args.arch}, with evaluation"
          + ("" if cuda else " -- CPU figures here; the real projection needs the GPU"))
    rows = []
    for k in args.parallel:
        row = measure(k, args, device, forward_flops)
        row["projected_grid_minutes"] = projected_grid_minutes(row)
        row["share_of_bf16_peak"] = row["training_flops_per_second"] / peak if peak else None
        rows.append(row)
        share = f"{row['share_of_bf16_peak']:.1%}" if peak else "n/a"
        print(f"k={k}: {row['images_per_second']:,.0f} img/s in total, {row['training_flops_per_second'] / 1e12:.3f} "
              f"TFLOP/s ({share} of bf16 peak), eval {row['evaluation_seconds_per_run']:.1f} s/run, start-up "
              f"{row['startup_seconds_per_run']:.1f} s/run -> projected grid {row['projected_grid_minutes']:,.0f} min "
              f"(bench wall {row['bench_wall_seconds']:.0f} s)")
    best = min(rows, key=lambda row: row["projected_grid_minutes"])
    print(f"best: k={best['runs_in_parallel']}, projected grid {best['projected_grid_minutes']:,.0f} min (goal: 60 min on one H100)")
    settings = {key: value for key, value in vars(args).items() if key not in ("save", "json")}
    document = {"provenance": store.provenance(settings, data=f"{args.dataset} ({args.data_dir})"),
                "device": device_name, "bf16_peak_flops": peak, "rows": rows, "best": best}
    for path in [RESULTS_DIR / "bench_grid.json"] * args.save + [args.json] * bool(args.json):
        runs.atomic_write_json(path, document)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
