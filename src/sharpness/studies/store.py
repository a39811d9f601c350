"""The store: per-run rows read from run folders, and grid files under results/ written and read back.

`collect_runs` / `runs_from_dirs` turn run folders (written by `training.train` and `measuring.evaluate`)
into one row per run; `save_grid` / `load_grid` keep a grid's per-run rows in `results/` together with
their provenance (per-run rows, not only means, so SEMs and tests can be recomputed from the file);
`paper_results` reads the paper's own figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import REFERENCE_DIR, RESULTS_DIR
from ..core.provenance import git_commit
from ..training.controls import SAM_RHO


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
    # Fisher-Rao norm and the Hessian extras (DESIGN.md)
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
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


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
        return torch.load(run_dir / PREDICTIONS_FILE, weights_only=True)
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
    tell apart the cells of a batch x lr sweep), for training curves."""
    from ..core.runs import read_jsonl

    config = load_json(Path(run_dir) / "config.json")
    history = pd.DataFrame(read_jsonl(Path(run_dir) / "metrics.jsonl"))
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


def save_grid(runs: pd.DataFrame, path: Path | str, settings: dict, data: str, tier: str | None = None) -> Path:
    """Write a grid's per-run figures and their provenance as one JSON file (e.g. results/<grid>.json),
    and the runs' training curves beside it (`history_path`) where their run folders are at hand.
    `tier` ("gpu", "cpu") ranks the grid among committed ones (`committed_grids`).

    Per-run rows, not only means, so SEMs and Wilcoxon tests can be recomputed from the file.
    """
    from ..core.runs import atomic_write_json, atomic_write_text

    path = Path(path)
    rows = runs.drop(columns=["run_dir"], errors="ignore")
    origin = provenance(settings, data) | ({"tier": tier} if tier else {})
    document = {"provenance": origin, "runs": json.loads(rows.to_json(orient="records"))}
    atomic_write_json(path, document)
    if "run_dir" in runs.columns and len(runs):
        histories = pd.concat([run_history(run_dir) for run_dir in runs["run_dir"]], ignore_index=True)
        atomic_write_text(history_path(path), histories.to_csv(index=False))
    return path


def load_grid(path: Path | str) -> tuple[pd.DataFrame, dict]:
    """(per-run rows, provenance) of a grid saved by `save_grid`."""
    document = load_json(Path(path))
    missing = {"provenance", "runs"} - set(document)
    if missing:
        raise ValueError(f"{path} is not a grid summary: missing {sorted(missing)}")
    runs = pd.DataFrame(document["runs"])
    if "rho" in runs.columns:
        runs["rho"] = pd.to_numeric(runs["rho"])
    return runs, document["provenance"]


def load_history(grid_path: Path | str) -> pd.DataFrame:
    """The per-epoch rows saved beside a grid summary (empty if none were saved)."""
    path = history_path(grid_path)
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


BENCH_GRID_JSON = RESULTS_DIR / "bench_grid.json"

