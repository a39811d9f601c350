"""CPU cost of the network families against the CPU study's network: thread CPU seconds per step and per image.

Measures, on one thread and random 32x32 inputs (the cost does not depend on the pixels), for each arch: one SGD
step and one SAM step on a batch of 128 (the study's batch), and a forward pass without gradients per image
(what monitoring and most of the evaluation cost). Thread CPU time, not wall time, so the figures hold on a
machine whose cores are busy with other work (run it under `nice -n 19` beside a study); the ratio to the
reference network (the study's, whose runs' wall times are measured) is what `sharpness.families` extrapolates.

    PYTHONPATH=src nice -n 19 python bench/families.py [--archs ...] [--steps 4] [--reference cnn_mlp_wide]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from sharpness.training.models import build_model, count_weight_layers
from sharpness.training.sam import SAM, frozen_batchnorm_stats


def cpu_seconds(function, repeats: int) -> float:
    """Thread CPU seconds of one call of `function`, the median of `repeats` after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        function()
        times.append(time.thread_time() - start)
    return sorted(times)[len(times) // 2]


def measure(arch: str, steps: int, batch: int = 128) -> dict:
    torch.manual_seed(0)
    model = build_model(arch, 10).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sam = SAM(optimizer, rho=0.01)

    def sgd_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def sam_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        sam.first_step()
        with frozen_batchnorm_stats(model):
            F.cross_entropy(model(x), y).backward()
        sam.second_step()

    model.train()
    sgd = cpu_seconds(sgd_step, steps)
    sam_seconds = cpu_seconds(sam_step, steps)
    model.eval()
    big = torch.randn(500, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        forward = cpu_seconds(lambda: model(big), steps) / len(big)
    return {"arch": arch, "parameters": sum(p.numel() for p in model.parameters()),
            "weight_layers": count_weight_layers(model), "sgd_step_s": sgd, "sam_step_s": sam_seconds,
            "forward_per_image_s": forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet_small", "vgg_small", "vit_small"])
    parser.add_argument("--reference", default="cnn_mlp_wide")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = measure(args.reference, args.steps)
    for arch in [args.reference, *args.archs]:  # each line as soon as it is measured (a starved run takes long)
        row = reference if arch == args.reference else measure(arch, args.steps)
        row.update({f"{key}_ratio": row[key] / reference[key] for key in ("sgd_step_s", "sam_step_s", "forward_per_image_s")})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
