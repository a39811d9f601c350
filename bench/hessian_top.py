"""Hessian top eigenvalue: Lanczos (the measure) against power iteration (PyHessian's estimator, the measure before
it), on trained runs of the CPU study: Hessian-vector products used, seconds, and the values.

Usage: PYTHONPATH=src python bench/hessian_top.py RUN_DIR [RUN_DIR ...] [--json out.json]

Both start from the same random vector, stop at the same relative change (HESSIAN_EIGENVALUE_TOL) or the study's
budget of products, on the same images (the study's measured set, `slow_measure_images` of them). One thread,
as the study's workers run. The power iteration here is the textbook loop the measure used to be.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from sharpness.core import runs
from sharpness.measuring import measures
from sharpness.measuring.evaluate import fixed_subset
from sharpness.studies.registry import PROTOCOL
from sharpness.training.data import EVALUATION_BATCH_SIZE, batches
from sharpness.training.train import load_run, measurement_images


def power_iteration(model, prepared, iterations: int, tol: float, seed: int = 0) -> measures.HessianEstimate:
    """Largest-magnitude eigenvalue by power iteration, stopping as the measure does (the reference)."""
    model = measures.contiguous_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    vector = measures._random_like(params, torch.Generator().manual_seed(seed), rademacher=False)
    value, change, converged, steps = None, None, False, 0
    with measures.evaluation_mode(model):
        for steps in range(1, iterations + 1):
            norm = math.sqrt(measures._dot(vector, vector))
            vector = [v / norm for v in vector]
            product = measures.hessian_vector_product(model, prepared, vector)
            estimate = measures._dot(vector, product)
            if value is not None:
                change = abs(estimate - value) / (abs(value) + 1e-12)
                converged = change <= tol
            value, vector = estimate, product
            if converged:
                break
    return measures.HessianEstimate(value, steps, tol, converged, relative_change=change)


def compare(run_dir: Path) -> dict:
    model, config, data = load_run(run_dir)
    images, labels = measurement_images(data, config)
    subset = fixed_subset(len(labels), PROTOCOL["slow_measure_images"], seed=0)  # the images the study measures
    prepared = measures.prepared_batches(lambda: batches(images[subset], labels[subset], EVALUATION_BATCH_SIZE, data=data), model)
    row = {"run": str(run_dir), "images": len(labels[subset])}
    for name, method in (("power", power_iteration), ("lanczos", measures.hessian_top_eigenvalue_estimate)):
        started = time.process_time()
        if name == "power":
            estimate = method(model, prepared, PROTOCOL["hessian_iterations"], measures.HESSIAN_EIGENVALUE_TOL)
        else:
            estimate = method(model, prepared, PROTOCOL["hessian_iterations"], progress=False)
        row[name] = {"value": estimate.value, "steps": estimate.steps, "converged": estimate.converged,
                     "residual": estimate.residual, "cpu_seconds": time.process_time() - started}
    row["relative_difference"] = abs(row["lanczos"]["value"] - row["power"]["value"]) / abs(row["power"]["value"])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="trained runs (with checkpoint.pt)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    missing = [str(path) for path in args.run_dirs if not (path / runs.CHECKPOINT).is_file()]
    if missing:
        print(f"no {runs.CHECKPOINT} in {', '.join(missing)}: pass trained run folders", file=sys.stderr)
        return 1
    rows = []
    print(f"{'run':<60} {'power: steps, s, value':>32} {'lanczos: steps, s, value':>32} {'rel. diff':>9}")
    for run_dir in args.run_dirs:
        row = compare(run_dir)
        rows.append(row)
        power, lanczos = row["power"], row["lanczos"]
        print(f"{str(run_dir)[-60:]:<60} {power['steps']:>6} {power['cpu_seconds']:7.1f} {power['value']:17.6g} "
              f"{lanczos['steps']:>6} {lanczos['cpu_seconds']:7.1f} {lanczos['value']:17.6g} {row['relative_difference']:9.1e}",
              flush=True)
    seconds = {name: sum(row[name]["cpu_seconds"] for row in rows) for name in ("power", "lanczos")}
    print(f"\n{len(rows)} runs: power iteration {seconds['power']:.0f} CPU-s, Lanczos {seconds['lanczos']:.0f} CPU-s "
          f"(x{seconds['lanczos'] / seconds['power']:.2f})")
    if args.json:
        runs.atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
