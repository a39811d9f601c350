"""Training throughput (images/s) of one run per control, through the real training loop.

Each control trains a fresh run in a temporary runs folder for --epochs epochs; the figure is the
mean of the per-epoch images/s after the first epoch (warm-up: kernel selection, caches), as
`sharpness.training.train` records it (device synchronised at both ends of each epoch). Baseline is also run
through the textbook DataLoader path for comparison.

    python bench/train_throughput.py          # CPU here: digits, simple_cnn, 512 images, 1 thread
    python bench/train_throughput.py          # on CUDA: CIFAR-10 JPEG pack (data/cifar10-jpeg), ResNet-18,
                                              # batch 256, bf16 autocast, channels_last, GPU-resident data
    python bench/train_throughput.py --preset cpu-study   # the CPU study's network and settings on one core:
                                              # cnn_mlp, CIFAR-10 JPEG pack, batch 128, channels_last
Anchors measured before this repo (one H100, ResNet-18 batch 256): textbook 18.0k img/s, GPU-resident 22-26k img/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from sharpness.core.runs import METRICS, atomic_write_json, read_jsonl
from sharpness.studies.store import provenance
from sharpness.training.controls import CONTROLS
from sharpness.training.train import RunConfig, resolve_device, train


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="cifar10_folder" if cuda else "digits")
    parser.add_argument("--arch", default="resnet18" if cuda else "simple_cnn")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256 if cuda else 64)
    parser.add_argument("--max-train-samples", type=int, default=None if cuda else 512)
    parser.add_argument("--controls", nargs="+", default=list(CONTROLS))
    parser.add_argument("--textbook", action=argparse.BooleanOptionalAction, default=True,
                        help="also time baseline through the DataLoader path")
    parser.add_argument("--threads", type=int, default=None if cuda else 1)
    parser.add_argument("--json", default=None, help="also write the table (with provenance) to this file")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last memory format (default: on for CUDA only)")
    parser.add_argument("--preset", choices=["cpu-study"], default=None,
                        help="cpu-study: the settings of `python -m sharpness cpu-study` (sharpness.studies.registry.PROTOCOL)")
    args = parser.parse_args()
    if args.preset == "cpu-study":
        from sharpness.studies.registry import PROTOCOL

        args.dataset, args.arch, args.batch_size = PROTOCOL["dataset"], PROTOCOL["arch"], PROTOCOL["batch_size"]
        args.max_train_samples, args.channels_last, args.textbook = 2_000, True, False
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    jobs = [(control, "resident") for control in args.controls]
    if args.textbook:
        jobs.append(("baseline", "dataloader"))
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for control, loader in jobs:
            config = RunConfig(dataset=args.dataset, arch=args.arch, control=control, epochs=args.epochs,
                               data_dir=args.data_dir, runs_dir=f"{runs_dir}/{loader}", device=str(device),
                               batch_size=args.batch_size, max_train_samples=args.max_train_samples, loader=loader,
                               channels_last=args.channels_last)
            summary = train(config, progress=False)
            history = [row["images_per_second"] for row in read_jsonl(config.run_dir / METRICS)]
            timed = history[1:] or history
            rows.append((control, loader, statistics.mean(timed), min(timed), max(timed), summary["test_accuracy"]))
            print(f"  {control:<13} {loader:<10} {rows[-1][2]:>10.0f} img/s", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    images = args.max_train_samples or "all"
    print(f"\n{args.arch} on {args.dataset} ({images} training images), batch {args.batch_size}, {args.epochs} epochs, "
          f"{name}, torch {torch.__version__}")
    print(f"{'control':<13} {'loader':<10} {'img/s':>10} {'min':>10} {'max':>10} {'test acc':>9}")
    for control, loader, mean, low, high, accuracy in rows:
        print(f"{control:<13} {loader:<10} {mean:>10.0f} {low:>10.0f} {high:>10.0f} {accuracy:>9.3f}")
    if args.json:
        columns = ("control", "loader", "images_per_second", "min", "max", "test_accuracy")
        settings = {key: value for key, value in vars(args).items() if key != "json"}
        document = {"provenance": provenance(settings, data=f"{args.dataset} ({args.data_dir}), {images} training images"),
                    "device": name, "rows": [dict(zip(columns, row)) for row in rows]}
        atomic_write_json(args.json, document)
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
