"""How much of the minimum criterion's plateau test is noise: the measured loss of a run whose weights are frozen.

The criterion (`sharpness.training.minimum`) reads a loss in eval mode on fixed images at the end of each of a
run's last epochs. By then a cosine schedule has brought the learning rate close to zero and the weights hardly
move, yet that loss still moves between epochs, because every training batch also updates the batch-norm running
statistics that eval mode uses. Here a finished run's weights stay fixed while further epochs' batches pass through
it in train mode without a step (`batchnorm_pass`); the loss after each pass is what the criterion would read if
descent had stopped entirely. Each window of PLATEAU_EPOCHS passes is then judged by the criterion's own rule.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core import runs
from ..core.cli_values import positive_int
from ..core.paths import RESULTS_DIR
from ..core.progress import tqdm
from ..core.provenance import code_version
from ..core.untrusted import name
from ..training.controls import CONTROLS
from ..training.minimum import PLATEAU_DROP, PLATEAU_EPOCHS, PLATEAU_FLOOR, loss_drop, reached_minimum
from ..training.models import ARCHS
from ..training.train import load_trainer, measurement_images, stored_config

STORED = RESULTS_DIR / "minimum" / "plateau_noise.json"  # a folder of its own: results/*.json are grids
#: Passes per run: PLATEAU_EPOCHS + 1 losses make one window; ten passes more make ten more windows.
DEFAULT_PASSES = PLATEAU_EPOCHS + 10


def frozen_weight_losses(run_dir: Path, passes: int, data_dir: str | Path | None = None) -> dict:
    """One run's identity, the measured losses its training recorded over its last epochs, and the measured loss
    as trained followed by the loss after each of `passes` batch-norm-only passes (epochs after its last)."""
    trainer, history = load_trainer(run_dir, data_dir)
    config = trainer.config
    images = measurement_images(trainer.data, config)
    losses = [trainer.evaluate(*images)[0]]
    for epoch in tqdm(range(config.epochs, config.epochs + passes), desc=f"{config.control} seed{config.seed}"):
        trainer.batchnorm_pass(epoch)
        losses.append(trainer.evaluate(*images)[0])
    return {"dataset": config.dataset, "arch": config.arch, "control": config.control, "seed": config.seed,
            "batch_size": config.batch_size, "lr": config.lr, "epochs": config.epochs,
            "train_images": len(trainer.data.train_labels),
            "recorded": [row["measured_loss"] for row in history if "measured_loss" in row], "frozen": losses}


def _window(losses: Sequence[float]) -> list[dict]:
    return [{"measured_loss": value} for value in losses]


def windows(losses: Sequence[float]) -> pd.DataFrame:
    """Every run of PLATEAU_EPOCHS + 1 consecutive losses: its relative and absolute fall (`loss_drop`, the
    criterion's own arithmetic) and whether the criterion's plateau rule reads it as still falling."""
    rows = []
    for start in range(len(losses) - PLATEAU_EPOCHS):
        window = _window(losses[start:start + PLATEAU_EPOCHS + 1])
        rows.append({"start": start, "fall": loss_drop(window)[0], "fall_nats": loss_drop(window, absolute=True)[0],
                     "still_falling": not reached_minimum(window, measured_accuracy=1.0)[0]})
    return pd.DataFrame(rows, columns=["start", "fall", "fall_nats", "still_falling"])


def all_windows(document: dict) -> pd.DataFrame:
    """`windows` of every measured run's frozen-weight losses, in one table with each run's control and seed."""
    tables = [windows(run["frozen"]).assign(control=run["control"], seed=run["seed"]) for run in document["runs"]]
    return pd.concat(tables, ignore_index=True) if tables else windows([])


def load(path: Path = STORED) -> dict | None:
    """The stored measurement, its values checked (they reach the page); None where none is stored."""
    if not path.is_file():
        return None
    document = runs.read_json(path, fix=f"restore {path.name} from git or measure again "
                                        "(python -m sharpness plateau-noise)")
    if not document.get("runs"):
        raise ValueError(f"{path} holds no measured runs; measure some (python -m sharpness plateau-noise RUN_DIR...) "
                         "or remove it")
    for run in document["runs"]:
        name(run.get("control"), "control", str(path), accepted=CONTROLS)
        name(run.get("arch"), "arch", str(path), accepted=ARCHS)
        name(run.get("dataset"), "dataset", str(path))
        for field in ("seed", "batch_size", "lr", "epochs", "train_images"):
            _number(run.get(field), field, path)
        for field in ("frozen", "recorded"):
            if not isinstance(run.get(field), list) or not run[field]:
                raise ValueError(f"{path}: {field} {run.get(field)!r} is not a list of losses; measure again "
                                 "(python -m sharpness plateau-noise)")
            for value in run[field]:
                _number(value, field, path)
    return document


def _number(value, field: str, path: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path}: {field} {value!r} is not a finite number; measure again "
                         "(python -m sharpness plateau-noise)")


def noise_table(document: dict) -> pd.DataFrame:
    """One row per measured run: its cell and seed, the loss as trained, the largest fall and rise over a window of
    frozen-weight passes, how many windows the plateau rule reads as still falling, and the fall its training
    recorded over its own last PLATEAU_EPOCHS epochs."""
    rows = []
    for run in document["runs"]:
        frozen = windows(run["frozen"])
        recorded = run["recorded"][-PLATEAU_EPOCHS - 1:]
        rows.append({"control": run["control"], "batch_size": run["batch_size"], "lr": run["lr"], "seed": run["seed"],
                     "loss": run["frozen"][0],
                     "largest_fall": frozen["fall"].max(), "largest_fall_nats": frozen["fall_nats"].max(),
                     "largest_rise": -frozen["fall"].min(),
                     "windows": len(frozen), "still_falling": int(frozen["still_falling"].sum()),
                     "trained_fall": loss_drop(_window(recorded))[0]})
    return pd.DataFrame(rows)


def noise_finding(table: pd.DataFrame) -> str:
    """The measurement in one sentence, from `noise_table`."""
    falling = table[table["still_falling"] > 0]
    return (
        f"With the weights of {len(table)} finished runs ({', '.join(dict.fromkeys(table['control']))}) frozen, each "
        f"pass of one more epoch's batches (moving only the batch-norm running statistics) still moved the measured "
        f"loss: over {PLATEAU_EPOCHS} passes it fell by up to {table['largest_fall'].max():.1%} (and by at most "
        f"{table['largest_fall_nats'].max():.1e} nats) and rose by up to {table['largest_rise'].max():.1%}; a run "
        f"counts as still falling when its loss falls by {PLATEAU_DROP:.0%} and {PLATEAU_FLOOR:g} nats or more. The "
        f"plateau rule would read {int(table['still_falling'].sum())} of {int(table['windows'].sum())} such windows "
        f"as still falling, in {len(falling)} of the {len(table)} runs"
        + (f" ({', '.join(sorted(set(falling['control'])))}): a run can fail that rule with no descent left."
           if len(falling) else ": at this threshold the rule clears the noise.")
    )


# ----------------------------------------------------------------------------------------------------------
# Command line: `python -m sharpness plateau-noise RUN_DIR ...`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="finished runs (with checkpoint.pt)")
    parser.add_argument("--passes", type=positive_int, default=DEFAULT_PASSES,
                        help=f"batch-norm-only passes per run (default {DEFAULT_PASSES}; {PLATEAU_EPOCHS} make one "
                             "window)")
    parser.add_argument("--data-dir", default=None,
                        help="where the data set lives now, if not where the runs were trained")
    parser.add_argument("--out", type=Path, default=STORED)


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """python -m sharpness plateau-noise runs/.../aug/seed0 runs/.../aug_sam/seed0 [--passes 15]"""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(description="The minimum criterion's noise with the weights frozen.")
        add_arguments(parser)
        args = parser.parse_args(args)
    if args.passes < PLATEAU_EPOCHS:
        raise ValueError(f"--passes {args.passes} makes no window of the criterion's {PLATEAU_EPOCHS} epochs: give "
                         f"--passes {PLATEAU_EPOCHS} or more")
    unfinished = [str(d) for d in args.run_dirs if not runs.is_finished(d)]
    if unfinished:
        print("not finished (no summary.json): " + ", ".join(unfinished), file=sys.stderr)
        return 1
    provenance = {"code": code_version(), "command": "python -m sharpness plateau-noise", "passes": args.passes,
                  "date": _dt.date.today().isoformat()}
    # resumable: each run is stored as it is measured, and runs already in --out with the same passes are kept
    earlier = load(args.out)
    if earlier and earlier["provenance"].get("passes") != args.passes:
        raise ValueError(f"{args.out} holds runs measured with --passes {earlier['provenance'].get('passes')}, not "
                         f"{args.passes}: give that --passes to add to it, or another --out")
    measured = earlier["runs"] if earlier else []
    done = {_identity(run) for run in measured}
    for run_dir in args.run_dirs:
        config = stored_config(run_dir, fix=f"delete {run_dir} or leave it out")
        if _identity(config.to_dict()) in done:
            continue
        measured.append(frozen_weight_losses(run_dir, args.passes, args.data_dir))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_json(args.out, {"provenance": provenance, "runs": measured})
    print(noise_finding(noise_table({"runs": measured})))
    return 0


def _identity(run: dict) -> tuple:
    return tuple(run[key] for key in ("dataset", "arch", "control", "seed", "batch_size", "lr", "epochs"))
