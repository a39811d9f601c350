"""The store: per-run rows read from run folders, and grid files under results/ written and read back.

`collect_runs` / `runs_from_dirs` turn run folders (written by `training.train` and `measuring.evaluate`)
into one row per run; `save_grid` / `load_grid` keep a grid's per-run rows in `results/` together with
their provenance (per-run rows, not only means, so SEMs and tests can be recomputed from the file);
`paper_results` reads the paper's own figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import pickle
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import REFERENCE_DIR, RESULTS_DIR
from ..core.provenance import git_commit
from ..training.controls import SAM_RHO
from ..training.minimum import as_number, cell_keys, run_identity


REFERENCE_CSV = REFERENCE_DIR / "paper_results.csv"


GROUP_KEYS = ("dataset", "arch", "control", "rho")


# Metrics of the paper, in the order its tables print them.
METRICS = (
    "test_accuracy",
    "test_ece",
    "corruption_accuracy",
    "prediction_disagreement",
    "generalisation_gap",
    "fisher_rao_norm",
    "sam_sharpness",
    "relative_flatness",
    # ours beyond the paper's tables: relative flatness in the paper's convention, the exact
    # Fisher-Rao norm and the Hessian extras (the measures chapter defines each)
    "relative_flatness_paper",
    "fisher_rao_norm_exact",
    "hessian_top_eigenvalue",
    "hessian_trace",
)


# The paper prints these two in percent; we keep fractions everywhere.
PERCENT_METRICS = ("corruption_accuracy", "generalisation_gap")


# Names the paper's file uses that differ from ours.
DATASET_ALIASES = {"tinyimagenet": "tiny_imagenet"}


def paper_results(source: str | None = "arxiv", path: Path = REFERENCE_CSV) -> pd.DataFrame:
    """The paper's figures in long form (source, arch, dataset, control, metric, mean, sem, rho).

    `source` is "arxiv" (the reproduced version), "workshop" (full tables) or None for both.
    Percent figures become fractions; SAM-sweep controls ("baseline_sam_rho0.25") become
    control "baseline_sam" with that rho, other SAM controls get the default rho 0.05.
    """
    sources = ("arxiv", "workshop")
    if source is not None and source not in sources:
        raise ValueError(f"unknown source {source!r}; accepted: {sources} or None")
    table = pd.read_csv(path)
    if source is not None:
        table = table[table["source"] == source].copy()
    table["dataset"] = table["dataset"].replace(DATASET_ALIASES)
    percent = table["metric"].isin(PERCENT_METRICS)
    table.loc[percent, ["mean", "sem"]] /= 100.0
    swept = table["control"].str.extract(r"^(?P<control>\w+?)_rho(?P<rho>[\d.]+)$")
    table["rho"] = pd.to_numeric(swept["rho"]).where(swept["rho"].notna(), np.nan)
    table["control"] = swept["control"].where(swept["control"].notna(), table["control"])
    is_sam = table["control"].str.endswith("sam")
    table.loc[is_sam & table["rho"].isna(), "rho"] = SAM_RHO
    return table.reset_index(drop=True)


def load_json(path: Path) -> dict:
    """A results JSON file; a truncated or junk one is refused naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:  # ValueError: JSONDecodeError, or an integer of over 4,300 digits
        raise ValueError(f"{path} is not readable JSON ({error}); restore it (git checkout -- {path}) or rewrite it "
                         "with the command that made it") from None


def _scalars(record: dict, prefix: str = "") -> dict:
    """Numeric leaves of a (possibly nested) JSON record, nested keys joined with '.'."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_scalars(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def run_record(run_dir: Path) -> dict:
    """One row for a run: its grid coordinates, status, and every numeric figure it recorded."""
    run_dir = Path(run_dir)
    config = load_json(run_dir / "config.json")
    summary = load_json(run_dir / "summary.json")
    metrics_path = run_dir / "metrics.json"
    metrics = load_json(metrics_path) if metrics_path.is_file() else {}
    sam = str(config["control"]).endswith("sam")
    record = {
        "dataset": config["dataset"],
        "arch": config["arch"],
        "control": config["control"],
        "seed": int(config["seed"]),
        "rho": float(config.get("rho", SAM_RHO)) if sam else np.nan,
        "epochs": config.get("epochs"),
        "batch_size": config.get("batch_size"),
        "lr": config.get("lr"),
        "status": summary.get("status", "finished"),
        "evaluated": metrics_path.is_file(),
        "run_dir": str(run_dir),
    }
    record.update(_scalars({k: v for k, v in summary.items() if k != "config"}))
    # evaluation figures win over training-time ones; "run" repeats the config, "units" is text
    figures = _scalars({k: v for k, v in metrics.items() if k not in ("run", "units")})
    for name in PERCENT_METRICS:  # sharpness.measuring.evaluate writes these in percent, like the paper
        if name in figures:
            figures[name] /= 100.0
    record.update(figures)
    return record


PREDICTIONS_JSON = "test_predictions.json"  # the committed form (results/cpu_study): .pt files stay out of git


def saved_predictions(run_dir: Path):
    """A run's top-1 test predictions as saved by `evaluate_run` (.pt) or committed as JSON; None if neither."""
    import torch

    from ..measuring.evaluate import PREDICTIONS_FILE

    if (run_dir / PREDICTIONS_FILE).is_file():
        try:  # weights_only: plain tensors only, never a pickled object (which could run code)
            return torch.load(run_dir / PREDICTIONS_FILE, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            raise ValueError(f"{run_dir / PREDICTIONS_FILE} is not a plain tensor of predictions ({type(error).__name__}); "
                             f"delete it and run `python -m sharpness evaluate {run_dir}` again") from None
    if (run_dir / PREDICTIONS_JSON).is_file():
        return torch.tensor(load_json(run_dir / PREDICTIONS_JSON))
    return None


def add_disagreement(runs: pd.DataFrame) -> pd.DataFrame:
    """Add `prediction_disagreement` per run: its mean top-1 disagreement with every other seed of its
    (dataset, arch, control, rho), from the test predictions `evaluate_run` saved.

    The mean over a group's runs is then exactly the all-pairs disagreement the paper reports (the
    runs' values share pairs, so `summarise` gives them no SEM). Groups with fewer than two runs with
    predictions get NaN.
    """
    from ..measuring.evaluate import prediction_disagreement

    runs = runs.copy()
    runs["prediction_disagreement"] = np.nan
    for _, group in runs.groupby(list(GROUP_KEYS), dropna=False):
        predictions = {index: saved_predictions(Path(run_dir)) for index, run_dir in group["run_dir"].items()}
        predictions = {index: values for index, values in predictions.items() if values is not None}
        if len(predictions) < 2:
            continue
        for index, own in predictions.items():
            others = [prediction_disagreement([own, other]) for j, other in predictions.items() if j != index]
            runs.loc[index, "prediction_disagreement"] = float(np.mean(others))
    return runs


def runs_from_dirs(run_dirs) -> pd.DataFrame:
    """One row per finished run directory (see `run_record`), with prediction disagreement added."""
    records = [run_record(Path(run_dir)) for run_dir in run_dirs]
    if not records:
        return pd.DataFrame(columns=[*GROUP_KEYS, "seed", "status", "run_dir"])
    runs = pd.DataFrame(records).sort_values([*GROUP_KEYS, "seed"], na_position="first").reset_index(drop=True)
    return add_disagreement(runs)


def run_history(run_dir: Path) -> pd.DataFrame:
    """A run's per-epoch rows (metrics.jsonl) with its grid coordinates (batch size and learning rate too, which
    tell apart the cells of a batch x lr sweep), for training curves. The learning rate each epoch ran at (the
    schedule's) is kept as `epoch_lr`, so the run's `lr` column does not overwrite it."""
    from ..core.runs import read_jsonl

    config = load_json(Path(run_dir) / "config.json")
    history = pd.DataFrame(read_jsonl(Path(run_dir) / "metrics.jsonl")).rename(columns={"lr": "epoch_lr"})
    for key in ("dataset", "arch", "control", "seed"):
        history[key] = config[key]
    for key in ("batch_size", "lr"):
        history[key] = config.get(key)
    history["rho"] = float(config.get("rho", SAM_RHO)) if str(config["control"]).endswith("sam") else np.nan
    return history


def collect_runs(runs_dir: Path | str) -> pd.DataFrame:
    """Every finished run (a `summary.json`) under `runs_dir`, one row each, sorted by grid position."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"runs directory {str(runs_dir)!r} does not exist")
    return runs_from_dirs(path.parent for path in sorted(runs_dir.rglob("summary.json")))


def machine_description() -> str:
    """Host, CPU count and accelerator, e.g. 'host (16 CPUs, NVIDIA H100 80GB HBM3)'."""
    import torch

    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} ({os.cpu_count()} CPUs, {accelerator}, torch {torch.__version__})"


def provenance(settings: dict, data: str) -> dict:
    """Where a grid's figures came from: machine, commit, data, date and the settings that made them."""
    return {
        "machine": machine_description(),
        "commit": git_commit(),
        "data": data,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
    }


def history_path(grid_path: Path | str) -> Path:
    """Where the per-epoch rows of a grid summary live: beside it, as <grid>.history.csv."""
    return Path(grid_path).with_suffix(".history.csv")


def run_key(row: dict) -> tuple:
    """What identifies a run across grids and machines: setting, control, seed and the hyperparameters that
    vary. A grid holds one row per key."""
    rho = as_number(row.get("rho"))
    return (row.get("dataset"), row.get("arch"), row.get("control"), int(row["seed"]), None if rho is None else round(rho, 6),
            as_number(row.get("epochs")), as_number(row.get("batch_size")), as_number(row.get("lr")))


def _duplicates(rows: list[dict]) -> list[tuple]:
    """The run keys held twice (rows without a seed, e.g. a pilot's settings, are no runs of a grid)."""
    seen, twice = set(), []
    for row in (row for row in rows if row.get("seed") is not None):
        key = run_key(row)
        if key in seen:
            twice.append(key)
        seen.add(key)
    return twice


def save_grid(runs: pd.DataFrame, path: Path | str, settings: dict, data: str, tier: str | None = None,
              merge: bool = False) -> Path:
    """Write a grid's per-run figures and their provenance as one JSON file (e.g. results/<grid>.json),
    and the runs' training curves beside it (`history_path`) where their run folders are at hand.
    `tier` ("gpu", "cpu") ranks the grid among committed ones (`committed_grids`). `merge`: keep the runs
    already in `path` that `runs` does not hold (a sweep per seed adds up); the new rows win for the same run.

    Per-run rows, not only means, so SEMs and Wilcoxon tests can be recomputed from the file.
    """
    from ..core.runs import atomic_write_json, atomic_write_text

    path = Path(path)
    rows = json.loads(runs.drop(columns=["run_dir"], errors="ignore").to_json(orient="records"))
    if _duplicates(rows):
        raise ValueError(f"not writing {path}: the runs hold {_duplicates(rows)[0]} twice; a grid holds one row per run")
    origin = provenance(settings, data) | ({"tier": tier} if tier else {})
    histories = (pd.concat([run_history(run_dir) for run_dir in runs["run_dir"]], ignore_index=True)
                 if "run_dir" in runs.columns and len(runs) else None)
    if merge and path.is_file():
        old_rows, old_origin = load_grid(path)
        old_history = load_history(path)
        new_keys = {run_key(row) for row in rows}
        kept = [row for row in json.loads(old_rows.to_json(orient="records")) if run_key(row) not in new_keys]
        rows = kept + rows
        origin["earlier"] = [*old_origin.get("earlier", []), {k: v for k, v in old_origin.items() if k != "earlier"}]
        if len(old_history):
            cells = cell_keys(old_history)
            kept_keys = {run_identity(row, cells) for row in kept}
            old_history = old_history[[run_identity(row, cells) in kept_keys for row in old_history.to_dict("records")]]
            histories = old_history if histories is None else pd.concat([old_history, histories], ignore_index=True)
    history_text = None if histories is None else histories.to_csv(index=False)
    if _unchanged(path, rows, origin, history_text):
        return path  # the same runs, settings and curves: the file keeps the machine, commit and date that made them
    atomic_write_json(path, {"provenance": origin, "runs": rows})
    if histories is not None:
        atomic_write_text(history_path(path), history_text)
    return path


def _unchanged(path: Path, rows: list, origin: dict, history_text: str | None) -> bool:
    """Whether the grid file `path` already holds `rows` with the same settings, data, tier (and earlier
    provenance) as `origin`, and its history file `history_text`: rewriting it would change only when and
    where it was written."""
    if not path.is_file():
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # damaged: rewrite it
    if not isinstance(document, dict) or not isinstance(document.get("provenance"), dict):
        return False
    volatile = ("machine", "commit", "date")
    same_origin = {k: v for k, v in document["provenance"].items() if k not in volatile} == \
        json.loads(json.dumps({k: v for k, v in origin.items() if k not in volatile}))
    same_history = history_text is None or (history_path(path).is_file() and history_path(path).read_text() == history_text)
    return same_origin and document.get("runs") == rows and same_history


# The largest magnitude a grid's figure may have: means and SEMs over its runs sum squares, and a square beyond
# float64's range (about 1.8e308) is infinite, so 1e308 reads as a figure but averages to inf (OverflowError in
# the pages' formatting). 1e150 leaves room for the sum of squares of any number of runs a grid holds.
LARGEST_FIGURE = 1e150


def finite_figure(value) -> bool:
    """Whether a grid's value is no number, or one whose mean and SEM with others stay finite (NaN: missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return (isinstance(value, float) and math.isnan(value)) or abs(value) <= LARGEST_FIGURE


# What every row of a grid holds (`run_record` writes them): without them a page cannot place or count the run.
ROW_KEYS = ("dataset", "arch", "control", "seed", "status")


def _check_grid_shape(path, document) -> None:
    """Refuse, naming the file and the fix, a grid that is no {"provenance": {...}, "runs": [row, ...]} with at
    least one run, each row with `ROW_KEYS` (names as text, the seed a whole number)."""
    fix = f"restore it (git checkout -- {path}) or rewrite it from the run folders (sweep ... --results {path})"
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a grid summary (a JSON object with provenance and runs); {fix}")
    missing = {"provenance", "runs"} - set(document)
    if missing:
        raise ValueError(f"{path} is not a grid summary: missing {sorted(missing)}; {fix}")
    if not isinstance(document["provenance"], dict):
        raise ValueError(f"{path}: its provenance is no JSON object; {fix}")
    rows = document["runs"]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: its runs are no list of JSON objects; {fix}")
    if not rows:
        raise ValueError(f"{path} holds no runs; remove it, or {fix}")
    for number, row in enumerate(rows, start=1):
        lacking = [key for key in ROW_KEYS if key not in row]
        if lacking:
            raise ValueError(f"{path}: run {number} of {len(rows)} lacks {', '.join(lacking)}; every run has "
                             f"{', '.join(ROW_KEYS)}; {fix}")
        wrong = [key for key in ROW_KEYS if key != "seed" and not isinstance(row[key], str)]
        if wrong or isinstance(row["seed"], bool) or not isinstance(row["seed"], (int, type(None))):
            key = wrong[0] if wrong else "seed"
            raise ValueError(f"{path}: run {number} of {len(rows)} has {key} = {json.dumps(row[key])[:40]} "
                             f"({'a whole number' if key == 'seed' else 'text'} expected); {fix}")
        for name in (name for name in row if name.removeprefix("clean.") in METRICS):
            value = row[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{path}: run {number} of {len(rows)} has {name} = {json.dumps(value)[:40]} (a number "
                                 f"or null expected); {fix}")


def load_grid(path: Path | str) -> tuple[pd.DataFrame, dict]:
    """(per-run rows, provenance) of a grid saved by `save_grid`; a file holding a run twice is refused."""
    document = load_json(Path(path))
    _check_grid_shape(path, document)
    infinite = [(key, name, value) for row in document["runs"] if row.get("status") == "finished" and row.get("seed") is not None
                for name, value in row.items() if not finite_figure(value) for key in [run_key(row)]]
    if infinite:
        key, name, value = infinite[0]
        what = (f"an infinite {name}" if isinstance(value, float) and math.isinf(value)
                else f"{name} = {float(value) if isinstance(value, float) else '10^%d' % (len(str(abs(value))) - 1)}, "
                     f"beyond {LARGEST_FIGURE:g}")
        raise ValueError(f"{path}: the finished run {key} has {what}; a finished run's measures are finite and small "
                         "enough to average (their squares must not overflow): recompute them "
                         "(sharpness evaluate --overwrite) or remove the row")
    twice = _duplicates(document["runs"])
    if twice:
        raise ValueError(f"{path} holds {len(twice)} runs twice (e.g. {twice[0]}): a grid holds one row per run; "
                         "remove the duplicate rows, or rewrite the file from the run folders (sweep ... --results)")
    runs = pd.DataFrame(document["runs"])
    if "rho" in runs.columns:
        runs["rho"] = pd.to_numeric(runs["rho"])
    return runs, document["provenance"]


def load_history(grid_path: Path | str) -> pd.DataFrame:
    """The per-epoch rows saved beside a grid summary (empty if none were saved). Where saved, every run of
    the grid must have one row per epoch it completed: a truncated or partial file is refused, named."""
    path = history_path(grid_path)
    if not path.is_file():
        return pd.DataFrame()
    fix = f"restore it (git checkout -- {path}) or rewrite it from the run folders (sweep ... --results {grid_path})"
    try:
        history = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable history ({error}); {fix}") from None
    missing = {"epoch", "control", "seed", "train_loss"} - set(history.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}; {fix}")
    if history[["epoch", "control", "seed", "train_loss"]].isna().any().any():
        raise ValueError(f"{path} has rows with empty cells (a truncated file?); {fix}")
    epochs: dict[tuple, list] = {}
    cells = cell_keys(history)
    for row in history.to_dict("records"):
        epochs.setdefault(run_identity(row, cells), []).append(int(row["epoch"]))
    for row in load_json(Path(grid_path))["runs"]:
        completed = as_number(row.get("epochs_completed", row.get("epochs")))
        if completed is None or row.get("seed") is None:
            continue
        key = run_identity(row, cells)
        if "dataset" not in history.columns:
            key = (None, None, *key[2:])
        if sorted(epochs.get(key, [])) != list(range(1, int(completed) + 1)):
            raise ValueError(f"{path} lacks epochs of the run {key} (has {len(epochs.get(key, ()))} of {int(completed)}); {fix}")
    return history


BENCH_GRID_JSON = RESULTS_DIR / "bench_grid.json"


def config_row(config) -> dict:
    """The identifying fields of a run's config, as a grid row holds them (`run_key` reads them)."""
    return config_row_from_dict(config.to_dict())


def config_row_from_dict(config: dict) -> dict:
    row = {key: config.get(key) for key in ("dataset", "arch", "control", "seed", "epochs", "batch_size", "lr")}
    row["rho"] = config.get("rho") if str(config["control"]).endswith("sam") else None
    return row


def appendix_f1_paper(reference_dir: Path = REFERENCE_DIR) -> pd.DataFrame:
    """The paper's Appendix F.1 figures (`results/reference/appendix_f1.csv`): sharpness of the augmentation
    control measured on augmented and on clean training images."""
    path = Path(reference_dir) / "appendix_f1.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["arch", "dataset", "control", "metric", "measured_on", "mean", "sem"])
    table = pd.read_csv(path)
    unknown = set(table["measured_on"]) - {"augmented", "clean"}
    if unknown:
        raise ValueError(f"{path}: measured_on must be 'augmented' or 'clean', found {sorted(unknown)}; fix the file")
    return table
