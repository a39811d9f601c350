"""What the per-epoch test curve costs on the committed CPU runs, read from their own epoch timings (nothing is re-run).

Usage: PYTHONPATH=src python bench/test_curve_cost.py [--json out.json]

Every epoch row of a run records its wall seconds and its training steps' seconds; the difference is the test pass
(1,000 images) where the row has a test point, and nearly nothing where it has none (`monitor_every` > 1). Rows of the
last epochs, which also measure the loss on the measured images for the minimum criterion, are left out. Per study
folder and control kind (SGD, SAM): the median test pass, the median epoch of training steps, and the share of an
epoch's wall time the test pass takes when drawn every epoch; then what drawing it every k-th epoch (k = epochs / 120
under the CPU protocol) saves on a run of the lr 0.001 cells (1,200 epochs, k = 10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from sharpness.core import runs
from sharpness.core.paths import RESULTS_DIR
from sharpness.studies.registry import monitor_every

STUDIES = ("cpu_study", "cpu_families", "cpu_batch_lr")
LONG_RUN_EPOCHS = 1_200  # the lr 0.001 cells' candidate


def study_rows(results_dir: Path = RESULTS_DIR) -> list[dict]:
    """One row per (study, SGD or SAM): medians over its runs' epochs."""
    rows = []
    for study in STUDIES:
        pooled: dict[str, tuple[list, list, list]] = {}
        for run_dir in runs.find_runs(results_dir / study):
            kind = "SAM" if runs.read_json(run_dir / runs.CONFIG)["control"].endswith("sam") else "SGD"
            for into, values in zip(pooled.setdefault(kind, ([], [], [])), runs.epoch_costs(run_dir)):
                into.extend(values)
        for kind, (tested, untested, steps) in sorted(pooled.items()):
            if not tested or not steps:
                continue
            test, step = statistics.median(tested), statistics.median(steps)
            rows.append({"study": study, "steps": kind, "epochs_with_test": len(tested), "epochs_without": len(untested),
                         "test_pass_s": test, "untested_rest_s": statistics.median(untested) if untested else None,
                         "steps_s": step, "test_share_every_epoch": test / (test + step),
                         f"saved_on_{LONG_RUN_EPOCHS}_epochs": _saving(test, step, monitor_every(LONG_RUN_EPOCHS))})
    return rows


def _saving(test: float, step: float, every: int) -> float:
    """The share of a run's epoch time saved by drawing the test curve every `every`-th epoch instead of every epoch."""
    return test * (1 - 1 / every) / (test + step)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = study_rows()
    if not rows:
        print(f"no committed CPU run with per-epoch timings under {RESULTS_DIR}", file=sys.stderr)
        return 1
    print(f"{'study':14} {'steps':5} {'epochs':>7} {'test pass':>9} {'steps':>7} {'test share':>10} "
          f"{'saved at ' + str(LONG_RUN_EPOCHS):>14}")
    for row in rows:
        print(f"{row['study']:14} {row['steps']:5} {row['epochs_with_test']:7d} {row['test_pass_s']:8.3f}s "
              f"{row['steps_s']:6.3f}s {row['test_share_every_epoch']:10.1%} {row[f'saved_on_{LONG_RUN_EPOCHS}_epochs']:14.1%}")
    if args.json:
        runs.atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
