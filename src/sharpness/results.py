"""Aggregate finished runs into the paper's tables: mean +/- SEM over seeds, Wilcoxon tests, ours vs paper.

A run directory (written by `sharpness.train` and `sharpness.evaluate`) holds `config.json`,
`summary.json` and `metrics.json`. `collect_runs` turns a tree of them into one row per run;
`summarise` gives mean and SEM per (dataset, arch, control, rho); `wilcoxon_vs_baseline` tests a
control against the baseline with seeds as pairs (every control of a seed starts from the same
weights, so the pairing is real); `comparison_table` puts our figures beside the paper's.
`save_grid` / `load_grid` store a grid's per-run rows in `results/` together with their provenance.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .paths import REFERENCE_DIR, REPO_ROOT, RESULTS_DIR

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
)
SHARPNESS_METRICS = ("fisher_rao_norm", "sam_sharpness", "relative_flatness")
# The paper's claim for a regularised control against the baseline, as a one-sided alternative:
# "greater" means the regularised control is expected to score higher (e.g. sharper, more accurate).
CLAIM_DIRECTION = {
    "test_accuracy": "greater",
    "test_ece": "less",
    "corruption_accuracy": "greater",
    "generalisation_gap": "less",
    "fisher_rao_norm": "greater",
    "sam_sharpness": "greater",
    "relative_flatness": "greater",
    "hessian_top_eigenvalue": "greater",
    "hessian_trace": "greater",
}
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
    table.loc[is_sam & table["rho"].isna(), "rho"] = 0.05
    return table.reset_index(drop=True)


def _read_json(path: Path) -> dict:
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
    config = _read_json(run_dir / "config.json")
    summary = _read_json(run_dir / "summary.json")
    metrics_path = run_dir / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
    sam = str(config["control"]).endswith("sam")
    record = {
        "dataset": config["dataset"],
        "arch": config["arch"],
        "control": config["control"],
        "seed": int(config["seed"]),
        "rho": float(config.get("rho", 0.05)) if sam else np.nan,
        "epochs": config.get("epochs"),
        "status": summary.get("status", "finished"),
        "evaluated": metrics_path.is_file(),
        "run_dir": str(run_dir),
    }
    record.update(_scalars({k: v for k, v in summary.items() if k != "config"}))
    # evaluation figures win over training-time ones; "run" repeats the config, "units" is text
    figures = _scalars({k: v for k, v in metrics.items() if k not in ("run", "units")})
    for name in PERCENT_METRICS:  # sharpness.evaluate writes these in percent, like the paper
        if name in figures:
            figures[name] /= 100.0
    record.update(figures)
    return record


def add_disagreement(runs: pd.DataFrame) -> pd.DataFrame:
    """Add `prediction_disagreement` per run: its mean top-1 disagreement with every other seed of its
    (dataset, arch, control, rho), from the test predictions `evaluate_run` saved.

    The mean over a group's runs is then exactly the all-pairs disagreement the paper reports (the
    runs' values share pairs, so `summarise` gives them no SEM). Groups with fewer than two runs with
    predictions get NaN.
    """
    import torch

    from .evaluate import PREDICTIONS_FILE, prediction_disagreement

    runs = runs.copy()
    runs["prediction_disagreement"] = np.nan
    for _, group in runs.groupby(list(GROUP_KEYS), dropna=False):
        paths = {index: Path(run_dir) / PREDICTIONS_FILE for index, run_dir in group["run_dir"].items()}
        paths = {index: path for index, path in paths.items() if path.is_file()}
        if len(paths) < 2:
            continue
        predictions = {index: torch.load(path, weights_only=True) for index, path in paths.items()}
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
    """A run's per-epoch rows (metrics.jsonl) with its grid coordinates, for training curves."""
    from .runs import read_jsonl

    config = _read_json(Path(run_dir) / "config.json")
    history = pd.DataFrame(read_jsonl(Path(run_dir) / "metrics.jsonl"))
    for key in ("dataset", "arch", "control", "seed"):
        history[key] = config[key]
    history["rho"] = float(config.get("rho", 0.05)) if str(config["control"]).endswith("sam") else np.nan
    return history


def collect_runs(runs_dir: Path | str) -> pd.DataFrame:
    """Every finished run (a `summary.json`) under `runs_dir`, one row each, sorted by grid position."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"runs directory {str(runs_dir)!r} does not exist")
    return runs_from_dirs(path.parent for path in sorted(runs_dir.rglob("summary.json")))


def _metric_columns(runs: pd.DataFrame, metrics) -> list[str]:
    if metrics is None:
        return [m for m in METRICS if m in runs.columns]
    missing = [m for m in metrics if m not in runs.columns]
    if missing:
        raise ValueError(f"metrics {missing} not in the runs; available: {sorted(runs.columns)}")
    return list(metrics)


def summarise(runs: pd.DataFrame, metrics=None, finished_only: bool = True) -> pd.DataFrame:
    """Mean, SEM (sample std / sqrt(n)) and seed count per (dataset, arch, control, rho) and metric.

    Long form: one row per group and metric. Diverged runs are left out unless `finished_only=False`.
    Prediction disagreement gets its mean (the all-pairs value) and no SEM (see `add_disagreement`).
    """
    columns = _metric_columns(runs, metrics)
    if finished_only and "status" in runs.columns:
        runs = runs[runs["status"] == "finished"]
    long = runs.melt(id_vars=list(GROUP_KEYS) + ["seed"], value_vars=columns, var_name="metric").dropna(
        subset=["value"]
    )
    grouped = long.groupby([*GROUP_KEYS, "metric"], dropna=False, sort=False)["value"]
    table = grouped.agg(mean="mean", sem=lambda v: stats.sem(v) if len(v) > 1 else np.nan, n="count").reset_index()
    # A run's disagreement is shared with the runs it is paired with: not independent, so no SEM.
    table.loc[table["metric"] == "prediction_disagreement", "sem"] = np.nan
    return table


def wilcoxon_vs_baseline(
    runs: pd.DataFrame,
    metric: str,
    control: str,
    baseline: str = "baseline",
    alternative: str | None = None,
) -> dict:
    """One-sided Wilcoxon signed-rank test of `control` against `baseline`, seeds as pairs.

    Runs of one (dataset, arch) only; the alternative defaults to the paper's claim for `metric`
    (`CLAIM_DIRECTION`). With n seeds the smallest attainable p-value is 2**-n (n=3: 0.125).
    """
    if alternative is None:
        if metric not in CLAIM_DIRECTION:
            raise ValueError(f"no claim direction for {metric!r}; pass alternative= or use one of {sorted(CLAIM_DIRECTION)}")
        alternative = CLAIM_DIRECTION[metric]
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative {alternative!r}; accepted: 'greater', 'less', 'two-sided'")
    for key in ("dataset", "arch"):
        if runs[key].nunique() > 1:
            raise ValueError(f"runs span several {key}s {sorted(runs[key].unique())}; select one first")
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} not in the runs; available: {sorted(runs.columns)}")
    by_seed = {
        name: runs[runs["control"] == name].set_index("seed")[metric].dropna() for name in (control, baseline)
    }
    seeds = sorted(set(by_seed[control].index) & set(by_seed[baseline].index))
    result = {"metric": metric, "control": control, "baseline": baseline, "alternative": alternative, "n": len(seeds)}
    if len(seeds) < 2:
        return {**result, "statistic": np.nan, "pvalue": np.nan}
    differences = by_seed[control].loc[seeds].to_numpy() - by_seed[baseline].loc[seeds].to_numpy()
    if np.all(differences == 0):
        return {**result, "statistic": 0.0, "pvalue": 1.0}
    test = stats.wilcoxon(differences, alternative=alternative)
    return {**result, "statistic": float(test.statistic), "pvalue": float(test.pvalue)}


def wilcoxon_table(runs: pd.DataFrame, metrics=None, baseline: str = "baseline") -> pd.DataFrame:
    """Wilcoxon p-values of every non-baseline control for every metric with a claim, per dataset/arch."""
    columns = [m for m in _metric_columns(runs, metrics) if m in CLAIM_DIRECTION]
    rows = []
    for (dataset, arch), block in runs.groupby(["dataset", "arch"], sort=False):
        for control in block["control"].unique():
            if control == baseline:
                continue
            for metric in columns:
                rows.append({"dataset": dataset, "arch": arch, **wilcoxon_vs_baseline(block, metric, control, baseline)})
    return pd.DataFrame(rows)


def format_mean_sem(mean: float, sem: float, digits: int = 3) -> str:
    """'0.720 ± 0.002' with `digits` significant figures for both, or '—' where there is no figure."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean:.{digits}g}"
    if sem is None or (isinstance(sem, float) and math.isnan(sem)):
        return text
    return f"{text} ± {sem:.{digits}g}"


def comparison_table(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    dataset: str,
    arch: str,
    metrics=None,
    paper_dataset: str | None = None,
    paper_arch: str | None = None,
    rho: float | None = 0.05,
) -> pd.DataFrame:
    """Controls x metrics, each cell 'ours' and 'paper' as 'mean ± SEM' strings (two column levels).

    `ours` is `summarise(...)`, `paper` is `paper_results(...)`. `paper_dataset`/`paper_arch` pick the
    paper's setting to compare with (default: the same as ours; e.g. compare offline digits runs with
    the paper's CIFAR-10). SAM rows use `rho` (None: any).
    """
    paper_dataset, paper_arch = paper_dataset or dataset, paper_arch or arch

    def select(table, data_name, arch_name):
        rows = table[(table["dataset"] == data_name) & (table["arch"] == arch_name)]
        if rho is not None:
            rows = rows[rows["rho"].isna() | np.isclose(rows["rho"].fillna(-1), rho)]
        return rows

    ours_rows, paper_rows = select(ours, dataset, arch), select(paper, paper_dataset, paper_arch)
    if ours_rows.empty and paper_rows.empty:
        raise ValueError(f"neither we nor the paper have runs for dataset={dataset!r}, arch={arch!r}")
    if metrics is None:
        present = set(ours_rows["metric"]) | set(paper_rows["metric"])
        metrics = [m for m in METRICS if m in present]
    from .controls import CONTROLS  # the paper's order of controls

    controls = [c for c in CONTROLS if c in set(ours_rows["control"]) | set(paper_rows["control"])]
    cells = {}
    for metric in metrics:
        for who, rows in (("ours", ours_rows), ("paper", paper_rows)):
            column = []
            for control in controls:
                match = rows[(rows["control"] == control) & (rows["metric"] == metric)]
                column.append(format_mean_sem(*match[["mean", "sem"]].iloc[0]) if len(match) else "—")
            cells[(metric, who)] = column
    table = pd.DataFrame(cells, index=pd.Index(controls, name="control"))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["metric", "source"])
    return table


def paper_setting(dataset: str, arch: str, paper: pd.DataFrame) -> tuple[str, str, bool]:
    """The paper's (dataset, arch) to set beside ours, and whether it is the same setting.

    The CIFAR-10 JPEG pack is CIFAR-10; a setting the paper never ran (the offline digits grid) is
    compared with the paper's ResNet-18 on CIFAR-10, and flagged as a different setting.
    """
    paper_dataset = "cifar10" if dataset == "cifar10_folder" else dataset
    paper_arch = "vgg19" if arch == "vgg19_bn" and paper_dataset != "tiny_imagenet" else arch
    present = ((paper["dataset"] == paper_dataset) & (paper["arch"] == paper_arch)).any()
    if present:
        return paper_dataset, paper_arch, True
    return "cifar10", "resnet18", False


def claim_check(summary: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """Per (dataset, arch, metric with a claim): how many controls beat the baseline in the claimed
    direction (e.g. are sharper, or better calibrated), out of how many. Works on ours and the paper's."""
    rows = []
    for (dataset, arch, metric), block in summary.groupby(["dataset", "arch", "metric"], sort=False):
        if metric not in CLAIM_DIRECTION or baseline not in set(block["control"]):
            continue
        base = block.loc[block["control"] == baseline, "mean"].iloc[0]
        others = block[(block["control"] != baseline) & (block["rho"].isna() | np.isclose(block["rho"].fillna(0.05), 0.05))]
        sign = 1 if CLAIM_DIRECTION[metric] == "greater" else -1
        agree = int((sign * (others["mean"] - base) > 0).sum())
        rows.append({"dataset": dataset, "arch": arch, "metric": metric, "claim": f"{CLAIM_DIRECTION[metric]} than baseline",
                     "controls agreeing": agree, "controls": len(others)})
    return pd.DataFrame(rows)


# --- Grid summaries in results/ ----------------------------------------------------------------


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_description() -> str:
    """Host, CPU count and accelerator, e.g. 'host (16 CPUs, NVIDIA H100 80GB HBM3)'."""
    import torch

    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} ({os.cpu_count()} CPUs, {accelerator}, torch {torch.__version__})"


def provenance(settings: dict, data: str) -> dict:
    """Where a grid's figures came from: machine, commit, data, date and the settings that made them."""
    return {
        "machine": machine_description(),
        "commit": _git_commit(),
        "data": data,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
    }


def history_path(grid_path: Path | str) -> Path:
    """Where the per-epoch rows of a grid summary live: beside it, as <grid>.history.csv."""
    return Path(grid_path).with_suffix(".history.csv")


def save_grid(runs: pd.DataFrame, path: Path | str, settings: dict, data: str) -> Path:
    """Write a grid's per-run figures and their provenance as one JSON file (e.g. results/<grid>.json),
    and the runs' training curves beside it (`history_path`) where their run folders are at hand.

    Per-run rows, not only means, so SEMs and Wilcoxon tests can be recomputed from the file.
    """
    from .runs import atomic_write_json, atomic_write_text

    path = Path(path)
    rows = runs.drop(columns=["run_dir"], errors="ignore")
    document = {"provenance": provenance(settings, data), "runs": json.loads(rows.to_json(orient="records"))}
    atomic_write_json(path, document)
    if "run_dir" in runs.columns and len(runs):
        histories = pd.concat([run_history(run_dir) for run_dir in runs["run_dir"]], ignore_index=True)
        atomic_write_text(history_path(path), histories.to_csv(index=False))
    return path


def load_grid(path: Path | str) -> tuple[pd.DataFrame, dict]:
    """(per-run rows, provenance) of a grid saved by `save_grid`."""
    document = _read_json(Path(path))
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


def committed_grids(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Grid summaries committed under results/ (not the paper's reference folder, not benchmarks)."""
    return sorted(p for p in Path(results_dir).glob("*.json") if not p.stem.startswith("bench"))
