"""Toy-fit throughput: all (function x seed) networks as one batched computation vs one loop per network.

Prints epochs/s (one full-batch Adam step of every network) for the batched trainer and for a loop over
ordinary nn.Sequential + Adam models, on CPU and, where one is present, on the GPU; and what that means
for the paper's full study (7 functions x 10 seeds x 10^6 epochs, 10,000 points).

    python bench/fit.py [--points 10000] [--networks 70] [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from sharpness.toys import fit, toy


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def problem(networks: int, points: int, device: torch.device):
    names = list(toy.FUNCTIONS)
    config = fit.FitConfig(train_points=points, test_points=1)
    data = fit.make_data(config)
    rows = [index % len(names) for index in range(networks)]
    return data.train_inputs.to(device), data.train_targets[rows].to(device)


def batched_epochs_per_second(inputs, targets, steps: int) -> float:
    objective = fit.Objective(inputs, targets)
    flat = fit.initial_parameters(range(targets.shape[0])).to(inputs.device)
    trainer = fit.BatchedTrainer(objective, flat, lr=1e-3, targets=fit.TARGET_LOSSES)
    trainer.step(0)  # warm-up
    synchronise(inputs.device)
    started = time.perf_counter()
    for epoch in range(1, steps + 1):
        trainer.step(epoch)
    synchronise(inputs.device)
    return steps / (time.perf_counter() - started)


def sequential_epochs_per_second(inputs, targets, steps: int) -> float:
    models = [fit.reference_mlp(seed).to(inputs.device) for seed in range(targets.shape[0])]
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in models]

    def epoch():
        for model, optimizer, target in zip(models, optimizers, targets):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(inputs).squeeze(-1), target).backward()
            optimizer.step()

    epoch()  # warm-up
    synchronise(inputs.device)
    started = time.perf_counter()
    for _ in range(steps):
        epoch()
    synchronise(inputs.device)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--networks", type=int, default=70)
    parser.add_argument("--steps", type=int, default=5, help="timed epochs on CPU (x200 on GPU)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"{args.networks} networks (2-64-64-1 MLP), {args.points} points, full-batch Adam; torch {torch.__version__}")
    for device in devices:
        steps = args.steps * (200 if device.type == "cuda" else 1)
        inputs, targets = problem(args.networks, args.points, device)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
        batched = batched_epochs_per_second(inputs, targets, steps)
        sequential = sequential_epochs_per_second(inputs, targets, steps)
        print(
            f"{label}: batched {batched:.2f} epochs/s ({batched * args.networks:.1f} network-steps/s), "
            f"sequential {sequential:.2f} epochs/s ({sequential * args.networks:.1f} network-steps/s), "
            f"speed-up x{batched / sequential:.2f}; 10^6 epochs of this batch at this rate: "
            f"{10**6 / batched / 60:.1f} min of training (measures extra)"
        )
    if len(devices) == 1:
        print("no GPU here: the GPU figure (goal: full study <= 10 min on one H100) could not be measured")


if __name__ == "__main__":
    main()
