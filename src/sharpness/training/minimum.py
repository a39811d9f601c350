"""When a trained network sits at a minimum: the criterion every comparison of sharpness rests on.

Sharpness describes a minimum, so the study compares it only between runs that reached one. A run reached
a minimum when (1) its accuracy on the images its sharpness is measured on (one fixed augmented copy of the
training set for augmentation controls, the clean set otherwise) is at least MIN_ACCURACY, and (2) its loss
on those images has stopped falling: over the last PLATEAU_EPOCHS epochs it fell by less than PLATEAU_DROP of
its value, or by less than PLATEAU_FLOOR nats (a network that fits its images perfectly has a loss near 0,
where a relative change of a few per cent is a change of 1e-4 nats: no descent left to measure). Training records that loss, deterministically (eval mode, fixed images), for the final
PLATEAU_EPOCHS + 1 epochs; a run recorded before that carries only the running training loss, whose
per-epoch sampling noise (fresh augmentations, batch statistics) is judged the same way and says so.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

MIN_ACCURACY = 0.95
PLATEAU_EPOCHS = 5
PLATEAU_DROP = 0.02
PLATEAU_FLOOR = 1e-3  # nats
CRITERION = (f"accuracy >= {MIN_ACCURACY:.0%} on the images its sharpness is measured on, and a loss on them that fell "
             f"by less than {PLATEAU_DROP:.0%} (or {PLATEAU_FLOOR:g} nats) over the last {PLATEAU_EPOCHS} epochs")


def loss_drop(history: Sequence[dict], absolute: bool = False) -> tuple[float | None, str]:
    """Relative (or, with `absolute`, plain) fall of the loss over the last PLATEAU_EPOCHS epochs, and which loss
    it was read from."""
    key = "measured_loss" if len(history) > PLATEAU_EPOCHS and all(
        "measured_loss" in row for row in history[-PLATEAU_EPOCHS - 1:]) else "train_loss"
    if len(history) <= PLATEAU_EPOCHS:
        return None, key
    before, last = history[-PLATEAU_EPOCHS - 1][key], history[-1][key]
    if absolute:
        return before - last, key
    return (before - last) / before if before else None, key


def reached_minimum(history: Sequence[dict], measured_accuracy: float | None) -> tuple[bool, str]:
    """(verdict, reason in words) for one run from its per-epoch history and its final measured-set accuracy."""
    if measured_accuracy is None:
        return False, "no accuracy on the measured images"
    drop, key = loss_drop(history)
    if drop is None:
        return False, f"history too short ({len(history)} epochs) to judge the loss"
    if measured_accuracy < MIN_ACCURACY:
        return False, f"accuracy {measured_accuracy:.1%} on the measured images (< {MIN_ACCURACY:.0%})"
    if drop >= PLATEAU_DROP and loss_drop(history, absolute=True)[0] >= PLATEAU_FLOOR:
        return False, f"{key.replace('_', ' ')} still falling ({drop:.1%} over the last {PLATEAU_EPOCHS} epochs)"
    fell = loss_drop(history, absolute=True)[0]
    return True, (f"accuracy {measured_accuracy:.1%}, {key.replace('_', ' ')} fell {drop:.1%} ({fell:.1e} nats) over the "
                  f"last {PLATEAU_EPOCHS} epochs")


# --- verdicts for the runs of a committed grid (one row per run of a grid summary) ----------------------------

#: A run's coordinates in a grid: what matches its row of a grid summary to its rows of the history.
RUN_KEYS = ("dataset", "arch", "control", "rho", "seed")
#: A batch x learning-rate sweep holds one run per seed in each of its cells: where a grid and its history both
#: carry these columns (the run's batch size and learning rate), they are part of a run's coordinates too.
CELL_KEYS = ("batch_size", "lr")


def cell_keys(*tables: pd.DataFrame) -> list[str]:
    """The CELL_KEYS that every one of `tables` carries (a batch x lr sweep's grid and history both do)."""
    return [key for key in CELL_KEYS if all(key in table.columns for table in tables)]


def as_number(value) -> float | None:
    """A JSON/pandas number as a float (None for missing or NaN), so keys from any source compare equal."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def run_identity(row, cells: Sequence[str] = ()) -> tuple:
    """What matches a run's row of a grid summary to its rows of the per-epoch history (one source for the
    verdicts here and for `store.load_history`): RUN_KEYS, the SAM radius rounded and None for a control without
    SAM (whatever its row says), and the `cells` columns (`cell_keys`)."""
    rho = as_number(row.get("rho")) if str(row.get("control")).endswith("_sam") else None
    seed = as_number(row.get("seed"))
    return (row.get("dataset"), row.get("arch"), row.get("control"), None if seed is None else int(seed),
            None if rho is None else round(rho, 6), *(as_number(row.get(column)) for column in cells))


#: Where a grid's per-run row keeps the accuracy on the measured images (metrics.json's measured_set), and the
#: column an older run falls back to (its train accuracy, measured on the same images: the fixed augmented
#: copy for augmentation controls, the clean images otherwise).
ACCURACY_COLUMNS = ("measured_set.accuracy", "train_accuracy")


def criterion() -> str:
    """The criterion in words, for the pages: 'a run reached a minimum when it has ...' (from CRITERION)."""
    return f"a run reached a minimum when it has {CRITERION}"


def _measured_accuracy(run: dict) -> float | None:
    for column in ACCURACY_COLUMNS:
        value = run.get(column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value)
    return None


def _rows(records: list[dict]) -> list[dict]:
    """A run's history as `reached_minimum` reads it: epoch order, missing values dropped per row."""
    return [{k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            for row in sorted(records, key=lambda row: row["epoch"])]


def check(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One row per run of `runs` (a grid's per-run rows): its RUN_KEYS, the accuracy on its measured images,
    epochs of history, first and last training loss, the loss drop `reached_minimum` judged (relative and in
    nats), `at_minimum` and `reason`. `history` holds the per-epoch rows of the same runs (`results.load_history`); a
    run     without any, or that did not finish, is not at a minimum."""
    missing = [k for k in RUN_KEYS if k not in runs.columns]
    if missing:
        raise ValueError(f"runs lack the columns {missing}; a grid's per-run rows carry {list(RUN_KEYS)}")
    cells = cell_keys(runs, history) if len(history) else []
    keys, records = [*RUN_KEYS, *cells], {}
    if len(history):
        for column in ("epoch", "train_loss"):
            if column not in history.columns:
                raise ValueError(f"the per-epoch history has no {column!r} column; it has {sorted(history.columns)}")
        for row in history.to_dict("records"):
            records.setdefault(run_identity(row, cells), []).append(row)
    by_run = {identity: _rows(rows) for identity, rows in records.items()}
    rows = []
    for run in runs.to_dict("records"):
        rows_of_run = by_run.get(run_identity(run, cells), [])
        accuracy = _measured_accuracy(run)
        if run.get("status", "finished") != "finished":
            at_minimum, reason = False, "did not finish"
        elif not rows_of_run:
            at_minimum, reason = False, "no per-epoch history"
        else:
            at_minimum, reason = reached_minimum(rows_of_run, accuracy)
        drop = loss_drop(rows_of_run)[0] if rows_of_run else None
        fell = loss_drop(rows_of_run, absolute=True)[0] if rows_of_run else None
        losses = [row.get("train_loss", math.nan) for row in rows_of_run]
        rows.append({**{k: run.get(k) for k in keys}, "accuracy": accuracy, "epochs": len(rows_of_run),
                     "first_train_loss": losses[0] if losses else math.nan,
                     "last_train_loss": losses[-1] if losses else math.nan,
                     "loss_drop": math.nan if drop is None else drop,
                     "loss_drop_nats": math.nan if fell is None else fell,
                     "at_minimum": at_minimum, "reason": reason})
    columns = [*keys, "accuracy", "epochs", "first_train_loss", "last_train_loss", "loss_drop", "loss_drop_nats",
               "at_minimum", "reason"]
    table = pd.DataFrame(rows, columns=columns)
    table["rho"] = pd.to_numeric(table["rho"])
    table["at_minimum"] = table["at_minimum"].astype(bool)
    return table


def at_minimum(runs: pd.DataFrame, checked: pd.DataFrame) -> pd.DataFrame:
    """The rows of `runs` that `checked` (a `check`) finds at a minimum."""
    cells = cell_keys(runs, checked)
    reached = {run_identity(row, cells) for row in checked[checked["at_minimum"]].to_dict("records")}
    keep = [run_identity(row, cells) in reached for row in runs.to_dict("records")]
    return runs[np.array(keep, dtype=bool)] if len(runs) else runs


def counts(checked: pd.DataFrame, by: str = "control") -> pd.Series:
    """'k of n' runs at a minimum per value of `by` (in order of first appearance)."""
    grouped = checked.groupby(by, sort=False, dropna=False)["at_minimum"]
    return grouped.sum().astype(int).astype(str) + " of " + grouped.size().astype(str)


def reasons_sentence(checked: pd.DataFrame, by: str = "control") -> str:
    """Per value of `by` with runs away from a minimum: how many, and the range of the figures that fail
    (accuracy on the measured images, loss drop); '' where every run reached one."""
    failed = checked[~checked["at_minimum"]]
    parts = []
    for name, block in failed.groupby(by, sort=False, dropna=False):
        total = int((checked[by] == name).sum())
        causes = []
        low = block[block["reason"].str.startswith("accuracy")]["accuracy"]
        if len(low):
            causes.append(f"accuracy {_span(low * 100, 1)}% on the measured images (< {MIN_ACCURACY:.0%})")
        falling = block[block["reason"].str.contains("still falling")]["loss_drop"]
        if len(falling):
            causes.append(f"loss still falling {_span(falling * 100, 1)}% over the last {PLATEAU_EPOCHS} epochs")
        explained = set(low.index) | set(falling.index)
        causes.extend(sorted(set(block.loc[[i for i in block.index if i not in explained], "reason"])))
        label = f"rho {name:g}" if by == "rho" else str(name)
        parts.append(f"{label}: {len(block)} of {total} runs not at a minimum ({'; '.join(causes)})")
    return "; ".join(parts)


def _span(values: pd.Series, digits: int) -> str:
    low, high = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return low if low == high else f"{low}–{high}"
