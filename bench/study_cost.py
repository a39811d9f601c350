"""What the committed CPU study cost, read from its runs' own timings (nothing is re-run).

Usage: PYTHONPATH=src python bench/study_cost.py [--json out.json]

Per committed run of the protocol (the controls grid and the rho sweep): training as the wall time of its
epochs (the steps plus the per-epoch test curve and checkpoint), the end-of-run evaluation as the sum of its
measures' seconds (`metrics.json`), and their ratio; per loss surface of the protocol's network, the seconds
its file records. The plan's core-seconds add them up; the study's workers use one thread each, so on the
2-core machine the plan's wall time is about half of that. Issue 25's goals: evaluation at most half of
training at the median run, and the whole plan within 3 hours of the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from sharpness.core import runs
from sharpness.studies import cpu_study

CORES = 2  # the machine the plan is sized for
EVALUATION_GOAL = 0.5  # evaluation / training at the median run
PLAN_GOAL_HOURS = 3.0


def run_cost(run_dir: Path) -> dict:
    """Training and evaluation seconds of one committed run, from its files."""
    training, evaluation = runs.spent_seconds(run_dir)
    config = runs.read_json(run_dir / runs.CONFIG)
    trained_by = runs.read_json(run_dir / runs.SUMMARY).get("code", {}).get("commit") or "?"
    measured_by = runs.read_json(run_dir / "metrics.json").get("code", {}).get("commit") or "?"
    return {"run": str(run_dir.relative_to(cpu_study.STUDY_DIR)), "control": config["control"], "seed": config["seed"],
            "trained_by": trained_by[:8], "measured_by": measured_by[:8],
            "rho": config.get("rho"), "training_seconds": training, "evaluation_seconds": evaluation,
            "evaluation_over_training": evaluation / training if training else float("nan")}


def surface_seconds(arch: str) -> list[float]:
    """Seconds of each committed loss surface (and interpolation) of `arch`, as its file records them."""
    folder = cpu_study.SURFACES_DIR / cpu_study.PROTOCOL["dataset"] / arch
    seconds = []
    for path in sorted(folder.rglob("*.json")):
        surface = runs.read_json(path).get("surface", {})
        recorded = surface.get("provenance", {}).get("seconds")
        if recorded is not None:
            seconds.append(float(recorded))
    return seconds


def report() -> dict:
    controls = [run_cost(path) for path in cpu_study.committed_controls_runs()]
    rho = [run_cost(path) for folder in sorted(cpu_study.STUDY_DIR.glob("rho*")) for path in runs.find_runs(folder)
           if cpu_study.made_under_protocol(path)]
    surfaces = surface_seconds(cpu_study.PROTOCOL["arch"])
    every = controls + rho
    core_seconds = sum(r["training_seconds"] + r["evaluation_seconds"] for r in every) + sum(surfaces)
    ratios = [r["evaluation_over_training"] for r in every]
    grid_ratios = [r["evaluation_over_training"] for r in controls]
    return {
        "median_evaluation_over_training_controls_grid": statistics.median(grid_ratios) if grid_ratios else None,
        "runs": every, "surfaces": len(surfaces), "surface_seconds": sum(surfaces),
        "training_seconds": sum(r["training_seconds"] for r in every),
        "evaluation_seconds": sum(r["evaluation_seconds"] for r in every),
        "median_evaluation_over_training": statistics.median(ratios) if ratios else None,
        "plan_core_seconds": core_seconds, "plan_hours_on_the_machine": core_seconds / CORES / 3600,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    result = report()
    if not result["runs"]:
        print(f"no committed run of the protocol under {cpu_study.STUDY_DIR}", file=sys.stderr)
        return 1
    print(f"{'run':<45} {'train s':>8} {'eval s':>8} {'eval/train':>10}  trained by / measured by (commits)")
    for row in result["runs"]:
        print(f"{row['run']:<45} {row['training_seconds']:8.0f} {row['evaluation_seconds']:8.0f} "
              f"{row['evaluation_over_training']:10.2f}  {row['trained_by']} / {row['measured_by']}")
    median = result["median_evaluation_over_training"]
    print(f"\n{len(result['runs'])} runs: training {result['training_seconds']:.0f} s, evaluation "
          f"{result['evaluation_seconds']:.0f} s; median evaluation / training {median:.2f} (goal <= {EVALUATION_GOAL}); "
          f"over the controls grid alone {result['median_evaluation_over_training_controls_grid']:.2f}")
    print(f"{result['surfaces']} surfaces: {result['surface_seconds']:.0f} s")
    print(f"plan: {result['plan_core_seconds']:.0f} core-seconds, {result['plan_hours_on_the_machine']:.2f} h on "
          f"{CORES} cores (goal <= {PLAN_GOAL_HOURS} h)")
    if args.json:
        runs.atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
