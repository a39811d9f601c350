"""Aggregate finished runs into the paper's tables: mean +/- SEM over seeds, Wilcoxon tests, ours vs paper.

A run directory (written by `sharpness.train` and `sharpness.evaluate`) holds `config.json`,
`summary.json` and `metrics.json`. `collect_runs` turns a tree of them into one row per run;
`summarise` gives mean and SEM per (dataset, arch, control, rho); `wilcoxon_vs_baseline` tests a
control against the baseline with seeds as pairs (every control of a seed starts from the same
weights, so the pairing is real); `comparison_table` puts our figures beside the paper's.
`save_grid` / `load_grid` store a grid's per-run rows in `results/` together with their provenance.
The last sections hold what the study chapters show (notes, tables, slopes), so the chapters stay thin.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .controls import SAM_RHO
from .paths import REFERENCE_DIR, RESULTS_DIR
from .provenance import git_commit

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
SHARPNESS_METRICS = ("fisher_rao_norm", "sam_sharpness", "relative_flatness")
EXTRA_SHARPNESS_METRICS = ("relative_flatness", "fisher_rao_norm_exact", "hessian_top_eigenvalue", "hessian_trace")
# Our metric that is computed the paper's way, where its name differs from the paper's: the tables
# beside the paper show it against the paper's figure.
PAPER_EQUIVALENT = {"relative_flatness_paper": "relative_flatness"}
# Measured on clean training images for the augmentation controls (the paper's Appendix F.1 check).
CLEAN_PREFIX = "clean."
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
    "relative_flatness_paper": "greater",
    "fisher_rao_norm_exact": "greater",
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
    table.loc[is_sam & table["rho"].isna(), "rho"] = SAM_RHO
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
    for name in PERCENT_METRICS:  # sharpness.evaluate writes these in percent, like the paper
        if name in figures:
            figures[name] /= 100.0
    record.update(figures)
    return record


PREDICTIONS_JSON = "test_predictions.json"  # the committed form (results/cpu_study): .pt files stay out of git


def saved_predictions(run_dir: Path):
    """A run's top-1 test predictions as saved by `evaluate_run` (.pt) or committed as JSON; None if neither."""
    import torch

    from .evaluate import PREDICTIONS_FILE

    if (run_dir / PREDICTIONS_FILE).is_file():
        return torch.load(run_dir / PREDICTIONS_FILE, weights_only=True)
    if (run_dir / PREDICTIONS_JSON).is_file():
        return torch.tensor(_read_json(run_dir / PREDICTIONS_JSON))
    return None


def add_disagreement(runs: pd.DataFrame) -> pd.DataFrame:
    """Add `prediction_disagreement` per run: its mean top-1 disagreement with every other seed of its
    (dataset, arch, control, rho), from the test predictions `evaluate_run` saved.

    The mean over a group's runs is then exactly the all-pairs disagreement the paper reports (the
    runs' values share pairs, so `summarise` gives them no SEM). Groups with fewer than two runs with
    predictions get NaN.
    """
    from .evaluate import prediction_disagreement

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
    """A run's per-epoch rows (metrics.jsonl) with its grid coordinates, for training curves."""
    from .runs import read_jsonl

    config = _read_json(Path(run_dir) / "config.json")
    history = pd.DataFrame(read_jsonl(Path(run_dir) / "metrics.jsonl"))
    for key in ("dataset", "arch", "control", "seed"):
        history[key] = config[key]
    history["rho"] = float(config.get("rho", SAM_RHO)) if str(config["control"]).endswith("sam") else np.nan
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


def standard_error(values) -> float:
    """Sample standard deviation / sqrt(n); NaN for a single value (no spread to estimate)."""
    return stats.sem(values) if len(values) > 1 else np.nan


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
    table = grouped.agg(mean="mean", sem=standard_error, n="count").reset_index()
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


def format_mean_sem(mean: float, sem: float) -> str:
    """Compact 'mean ± SEM': the SEM to two significant digits (one where the second is 0) and the mean
    to the same decimal place ('0.825 ± 0.078', '2903 ± 89', '4.05e-06 ± 2.2e-07'); '—' where there
    is no figure.

    Without an SEM (or with SEM 0) the mean keeps three significant digits.
    """
    if _missing(mean):
        return "—"
    if _missing(sem) or sem == 0:
        return f"{mean:.3g}" + ("" if _missing(sem) else " ± 0")
    sem_exponent = math.floor(math.log10(abs(sem)))
    decimals = 1 - sem_exponent  # two significant digits of the SEM...
    if math.isclose(round(sem, decimals), round(sem, decimals - 1)):
        decimals -= 1  # ...but no invented trailing zero: 0.002 stays 0.002, not 0.0020
    if decimals <= 6 and (abs(mean) >= 1e-3 or mean == 0):
        places = max(decimals, 0)
        return f"{round(mean, decimals):.{places}f} ± {round(sem, decimals):.{places}f}"
    mean_exponent = math.floor(math.log10(abs(mean))) if mean else sem_exponent
    mantissa_digits = max(mean_exponent - sem_exponent + decimals + sem_exponent, 0)
    return f"{mean:.{mantissa_digits}e} ± {sem:.{decimals + sem_exponent}e}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def comparison_table(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    dataset: str,
    arch: str,
    metrics=None,
    paper_dataset: str | None = None,
    paper_arch: str | None = None,
    rho: float | None = SAM_RHO,
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
    for ours_name, theirs in PAPER_EQUIVALENT.items():  # the paper's figure moves beside ours computed its way
        if ours_name in set(ours_rows["metric"]):
            paper_rows = paper_rows.replace({"metric": {theirs: ours_name}})
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
        others = block[(block["control"] != baseline) & (block["rho"].isna() | np.isclose(block["rho"].fillna(SAM_RHO), SAM_RHO))]
        sign = 1 if CLAIM_DIRECTION[metric] == "greater" else -1
        agree = int((sign * (others["mean"] - base) > 0).sum())
        rows.append({"dataset": dataset, "arch": arch, "metric": metric, "claim": f"{CLAIM_DIRECTION[metric]} than baseline",
                     "controls agreeing": agree, "controls": len(others)})
    return pd.DataFrame(rows)


# --- Grid summaries in results/ ----------------------------------------------------------------


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
    from .runs import atomic_write_json, atomic_write_text

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


#: Where a grid came from, best first: a GPU campaign, the CPU study; grids without a tier come last.
TIERS = ("gpu", "cpu")


def grid_tier(path: Path | str) -> str | None:
    """The `tier` in a grid summary's provenance ("gpu", "cpu"), or None where it names none."""
    try:
        document = _read_json(Path(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a readable grid summary ({error}); fix or remove it") from None
    origin = document.get("provenance", {})
    return origin.get("tier") or origin.get("settings", {}).get("tier")  # grids of the first CPU-study code kept it in settings


def committed_grids(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Grid summaries committed under results/ and results/campaign/ (imported campaigns), best tier first
    (see TIERS), then by name; not the paper's reference folder, not benchmarks."""
    found = [p for folder in (Path(results_dir), Path(results_dir) / "campaign")
             for p in folder.glob("*.json") if not p.stem.startswith("bench")]
    rank = lambda path: TIERS.index(grid_tier(path)) if grid_tier(path) in TIERS else len(TIERS)  # noqa: E731
    return sorted(found, key=lambda path: (rank(path), path.name))


# --- What the study chapters show ----------------------------------------------------------------
# Each function below takes a `sharpness.sweep.Study` (runs, history, provenance, offline, label).

# The learned-function metrics of the comparison tables, in the paper's order.
FUNCTION_METRICS = ("test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement", "generalisation_gap")
# The metrics of the rho sweep's figure and table.
RHO_METRICS = ("test_accuracy", "test_ece", "fisher_rao_norm", "relative_flatness", "sam_sharpness")
BENCH_GRID_JSON = RESULTS_DIR / "bench_grid.json"

_OFFLINE_CONTROLS_NOTE = (
    "No grid summary is committed under `results/`, so this page trained a small offline grid "
    "while it was built: a few epochs of a small CNN on scikit-learn's digits, on a CPU. It shows the "
    "machinery end to end; its numbers are **not** a reproduction of the paper's, and the paper's "
    "figures beside them come from ResNet-18 on CIFAR-10. One caveat of the stand-in data: the "
    "augmentation is CIFAR's (random crops and horizontal flips), and a mirrored digit is often no "
    "longer the same digit, so the augmentation controls can lose accuracy here for a reason that "
    "has nothing to do with sharpness."
)
_OFFLINE_RHO_NOTE = (
    "No rho-sweep summary is committed under `results/`, so this page trained a small offline "
    "sweep on a CPU (digits, small CNN, a few epochs): it shows the machinery, not the paper's "
    "numbers. The paper prints figures for rho = 0.25 and 0.05 only (ResNet-18, CIFAR-10); they "
    "appear as open diamonds."
)
_NO_BENCH_NOTE = (
    "No GPU measurement is committed (`results/bench_grid.json` is absent): the session that built "
    "this chapter had no GPU, so the grid projection of `python bench/grid.py` on an H100 and the "
    "real ResNet-18 / CIFAR-10 table could not be produced. Run `python bench/grid.py` and "
    "`python -m sharpness sweep --datasets cifar10_folder --archs resnet18 --seeds 0 1 2 ... "
    "--results results/cifar10_resnet18.json` on a GPU machine to fill them in."
)


def finished_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained to the end (diverged runs have no meaningful measures)."""
    return runs[runs["status"] == "finished"]


def _provenance_sentence(provenance: dict, with_data: bool = True) -> str:
    data = f"; data: {provenance['data']}" if with_data else ""
    return f"Machine: {provenance['machine']}; commit `{provenance['commit'][:10]}`{data}; date: {provenance['date']}."


def study_note(study) -> str:
    """Markdown naming the runs of the controls study and their provenance, with the offline caveat
    where the page trained its own small grid instead of reading a committed one."""
    note = f"**Runs shown: {study.label}** ({runs_scale(study.runs)}). {_provenance_sentence(study.provenance)}"
    return note + (f"\n\n{_OFFLINE_CONTROLS_NOTE}" if study.offline else "")


def runs_scale(runs: pd.DataFrame) -> str:
    """What the runs are, read from them: data, network, controls, seeds and epochs (never typed)."""
    runs = finished_runs(runs)
    seeds = sorted(int(s) for s in runs["seed"].unique())
    epochs = sorted(int(e) for e in runs["epochs"].dropna().unique()) if "epochs" in runs.columns else []
    return (f"{'/'.join(runs['dataset'].unique())}, {'/'.join(runs['arch'].unique())}: "
            f"{runs['control'].nunique()} controls x {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
            f"{'/'.join(map(str, epochs)) or 'unrecorded'} epochs")


def units_note() -> str:
    """How the percent figures of the evaluation reach the tables: as fractions, like accuracy."""
    from .evaluate import UNITS

    recorded = "; ".join(f"{name.replace('_', ' ')} in {UNITS[name]}" for name in PERCENT_METRICS if name in UNITS)
    return (f"`sharpness.evaluate` records {recorded}, as the paper prints them; every table and figure of "
            f"the results chapters divides them by 100, so they are fractions like accuracy (a gap of 0.05 is "
            f"5 percentage points), and the paper's figures beside them are converted the same way.")


def wilcoxon_note(runs: pd.DataFrame) -> str:
    """The paired test's resolution with the seeds actually paired: n and the smallest attainable p, 2^-n."""
    pvalues = wilcoxon_table(finished_runs(runs))
    counts = sorted(pvalues["n"].unique()) if len(pvalues) else [0]
    n = int(min(counts))
    smallest = f"{2.0 ** -n:.3g}" if n else "undefined"
    seeds = f"n = {n}" if len(counts) == 1 else f"n = {n} to {int(max(counts))}"
    return (f"Here {seeds} seeds are paired, so the smallest possible p-value is $2^{{-{n}}}$ = {smallest}"
            + (": the tests can show a direction but never significance at 0.05." if n and 2.0 ** -n > 0.05 else "."))


def sam_rho_runs(study) -> pd.DataFrame:
    """The finished SAM-on-baseline runs of a rho sweep (one row per radius and seed)."""
    return finished_runs(study.runs[study.runs["control"] == "baseline_sam"])


def rho_note(study) -> str:
    """Markdown naming the rho sweep's radii, seeds and provenance, with the offline caveat."""
    sam_runs = sam_rho_runs(study)
    radii = ", ".join(f"{r:g}" for r in sorted(sam_runs["rho"].unique()))
    seeds = ", ".join(str(s) for s in sorted(sam_runs["seed"].unique()))
    note = f"**Runs shown: {study.label}** (radii {radii}; seeds {seeds}). {_provenance_sentence(study.provenance, with_data=False)}"
    return note + (f"\n\n{_OFFLINE_RHO_NOTE}" if study.offline else "")


def paper_rho_sweep(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's SAM-on-baseline rows (ResNet-18, CIFAR-10), the only setting its rho sweep prints."""
    return paper[(paper["control"] == "baseline_sam") & (paper["dataset"] == "cifar10") & (paper["arch"] == "resnet18")]


#: A run has reached a minimum when its final training accuracy is at least this (the study's bar).
MINIMUM_TRAIN_ACCURACY = 0.95
RUN_KEYS = [*GROUP_KEYS, "seed"]


def minimum_check(history: pd.DataFrame) -> pd.DataFrame:
    """Per run: training loss at the first and last epoch, the final training accuracy, and whether the
    run reached a minimum (`MINIMUM_TRAIN_ACCURACY`). Sharpness away from a minimum describes no minimum."""
    keys = [k for k in RUN_KEYS if k in history.columns]
    ordered = history.sort_values("epoch").groupby(keys, dropna=False)
    first, last = ordered.first(), ordered.last()
    check = pd.DataFrame({
        "epochs": last["epoch"], "first_train_loss": first["train_loss"], "last_train_loss": last["train_loss"],
        "last_train_accuracy": last["train_accuracy"],
    })
    check["at_minimum"] = check["last_train_accuracy"] >= MINIMUM_TRAIN_ACCURACY
    return check.reset_index()


def _trend(values: pd.Series) -> str:
    """'rises', 'falls' or 'is not monotone' over an ordered series."""
    steps = np.sign(np.diff(values.to_numpy()))
    if (steps > 0).all():
        return "rises"
    if (steps < 0).all():
        return "falls"
    return "is not monotone"


def _span(values: pd.Series, digits: int = 2) -> str:
    """'a–b' for the smallest and largest of `values`, or one number where they are equal at `digits`."""
    low, high = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return low if low == high else f"{low}–{high}"


def metric_name(metric: str) -> str:
    """A metric's name in a sentence ("Fisher-Rao norm", "test ECE")."""
    return MEASURE_NAMES.get(metric, metric.replace("_", " ").replace("ece", "ECE"))


def runs_at_minimum(runs: pd.DataFrame, checked: pd.DataFrame) -> pd.DataFrame:
    """The runs that `checked` (a `minimum_check`) does not list as away from a minimum."""
    away = set(checked.loc[~checked["at_minimum"], RUN_KEYS].itertuples(index=False, name=None))
    return runs[[run not in away for run in runs[RUN_KEYS].itertuples(index=False, name=None)]]


def rho_means(runs: pd.DataFrame, metrics) -> pd.DataFrame:
    """rho x metric means over seeds (the metrics `runs` carries), smallest radius first."""
    return runs.groupby("rho")[[m for m in metrics if m in runs.columns]].mean().sort_index()


def moves_the_papers_way(means: pd.DataFrame) -> dict[str, bool]:
    """Per metric with a claim: does it move in the claimed direction (`CLAIM_DIRECTION`) from the first
    row of `means` (rho x metric, sorted) to the last?"""
    low, high = means.index[0], means.index[-1]
    return {m: bool((means.loc[high, m] > means.loc[low, m]) == (CLAIM_DIRECTION[m] == "greater"))
            for m in means.columns if m in CLAIM_DIRECTION}


def rho_findings(sam_runs: pd.DataFrame, checked: pd.DataFrame, metrics) -> str:
    """Markdown computed from our sweep: the radii at which SAM did not bring the network to a minimum
    (`checked`, a `minimum_check` of the sweep's runs); then, over the runs that reached one, how each
    metric moves with the radius, and which of them move the paper's way (`CLAIM_DIRECTION`) between the
    smallest radius and the largest."""
    failed = checked[~checked["at_minimum"]]
    lines = []
    if len(failed):
        radii = sorted(failed["rho"].unique())
        runs_there = int(checked["rho"].isin(radii).sum())
        lines.append(
            f"**At rho = {', '.join(f'{r:g}' for r in radii)} SAM did not bring this network to a minimum** "
            f"in {len(failed)} of {runs_there} runs: after {int(failed['epochs'].max())} epochs their training "
            f"accuracy is {_span(failed['last_train_accuracy'])} (the bar: {MINIMUM_TRAIN_ACCURACY:.0%}) and their "
            f"training loss {_span(failed['last_train_loss'])}, from {_span(failed['first_train_loss'])} after "
            "the first epoch. Their sharpness describes no minimum: the figure draws them as grey crosses and "
            "the trends below leave them out.")
    kept = runs_at_minimum(sam_runs, checked)
    means = rho_means(kept, metrics)
    if len(means) < 2:
        lines.append("Fewer than two radii reached a minimum, so there is no trend to read.")
        return "\n\n".join(lines)
    seeds = kept.groupby("rho")["seed"].nunique()
    seed_count = str(seeds.min()) if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    low, high = means.index[0], means.index[-1]
    parts = [f"{metric_name(m)} {_trend(means[m])} ({means.loc[low, m]:.3g} → {means.loc[high, m]:.3g})" for m in means.columns]
    lines.append(
        f"Over the radii whose runs reached a minimum (rho = {', '.join(f'{r:g}' for r in means.index)}; "
        f"{seed_count} seeds each), from rho = {low:g} to {high:g}: " + "; ".join(parts) + ".")
    moved = moves_the_papers_way(means)
    with_paper = [metric_name(m) for m, agrees in moved.items() if agrees]
    against = [metric_name(m) for m, agrees in moved.items() if not agrees]
    lines.append(
        f"Comparing only those two radii, the larger one moves the paper's way (more accurate, better calibrated, "
        f"sharper) for {', '.join(with_paper) or 'none'}; the other way for {', '.join(against) or 'none'}. "
        "A single pair of radii with this many seeds is a description, not a test.")
    return "\n\n".join(lines)


def rho_paper_sentence(paper_sweep: pd.DataFrame, low: float = 0.05, high: float = 0.25) -> str:
    """What the paper's printed sweep says between two radii, computed from its figures: each metric's
    value at `low` and `high`, sharpness as a fold change."""
    by_rho = paper_sweep.pivot_table(index="metric", columns="rho", values="mean")
    if not {low, high} <= set(by_rho.columns):
        return f"The paper prints no figures for both rho = {low:g} and rho = {high:g}."
    parts = []
    for metric, row in by_rho[[low, high]].dropna().iterrows():
        name = metric_name(metric)
        if metric in SHARPNESS_METRICS:
            parts.append(f"{name} x{row[high] / row[low]:.0f}")
        else:
            parts.append(f"{name} {row[low]:.3g} → {row[high]:.3g}")
    return (f"In the paper's figures, going from rho = {low:g} to rho = {high:g}: " + "; ".join(parts)
            + ". Where accuracy rises and calibration error falls while the sharpness measures grow, the larger "
              "radius finds a better function at a *sharper* minimum.")


# Short column headers for the six controls, and the legend that explains them.
CONTROL_SHORT = {"baseline": "base", "baseline_sam": "base+S", "aug": "aug", "aug_sam": "aug+S", "wd": "wd", "wd_sam": "wd+S"}
CONTROL_LEGEND = "Columns: base = baseline, aug = augmentation, wd = weight decay, +S = with SAM (rho 0.05)"
METRIC_SHORT = {"test_accuracy": "test acc.", "test_ece": "ECE", "corruption_accuracy": "corruption acc.",
                "prediction_disagreement": "disagreement", "generalisation_gap": "gen. gap",
                "fisher_rao_norm": "Fisher-Rao", "sam_sharpness": "SAM-sharpness", "relative_flatness": "rel. flatness",
                "relative_flatness_paper": "rel. flat. (paper's)", "fisher_rao_norm_exact": "Fisher-Rao (exact)",
                "hessian_top_eigenvalue": "Hessian top eig.", "hessian_trace": "Hessian trace"}


def rho_table(long: pd.DataFrame, metrics) -> pd.DataFrame:
    """metric x rho table of 'mean ± SEM' strings (short metric names, `METRIC_SHORT`), largest rho first,
    so that a sweep of six radii fits a narrow page; `long` as from `summarise` or `paper_results`.
    Metrics without a figure are left out; missing cells are '—'."""
    cells = long.assign(figure=[format_mean_sem(m, s) for m, s in zip(long["mean"], long["sem"])])
    table = cells.pivot_table(index="metric", columns="rho", values="figure", aggfunc="first")
    table = table.reindex(index=[m for m in metrics if m in table.index]).fillna("—")
    table = table.sort_index(axis=1, ascending=False).rename(columns=lambda rho: f"{rho:g}", index=METRIC_SHORT)
    table.columns.name, table.index.name = "rho", None
    return table


def dataset_arch_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, arch) pairs of some runs, in the order they first appear."""
    return list(runs[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))


def comparison_tables(study, paper: pd.DataFrame, summary: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(caption, `comparison_table`) per (dataset, arch) of the study: first the learned function's
    metrics, then sharpness, each beside the paper's matching setting (`paper_setting`)."""
    summary = summarise(study.runs) if summary is None else summary
    present = set(summary["metric"]) | set(paper["metric"])
    tables = []
    for dataset, arch in dataset_arch_pairs(study.runs):
        paper_dataset, paper_arch, same = paper_setting(dataset, arch, paper)
        caption = (f"ours: {arch} on {dataset} ({study.label}); paper: {paper_arch} on {paper_dataset}"
                   + ("" if same else " (a different setting: compare orderings, not values)"))
        for kind, metrics in (("The learned function", FUNCTION_METRICS), ("Sharpness", beside_paper_sharpness(summary))):
            table = comparison_table(summary, paper, dataset, arch, metrics=[m for m in metrics if m in present],
                                     paper_dataset=paper_dataset, paper_arch=paper_arch)
            tables.append((f"{kind}: {caption}. {CONTROL_LEGEND}", narrow_layout(table)))
    return tables


def beside_paper_sharpness(summary: pd.DataFrame) -> tuple[str, ...]:
    """The sharpness metrics set beside the paper's: relative flatness in the paper's convention where
    we measured it that way (the paper's values scale with its batch count; compare orderings)."""
    if "relative_flatness_paper" in set(summary["metric"]):
        return ("fisher_rao_norm", "sam_sharpness", "relative_flatness_paper")
    return SHARPNESS_METRICS


def ours_table(summary: pd.DataFrame, metrics) -> pd.DataFrame:
    """Controls x metrics of 'mean ± SEM' for figures the paper has no counterpart of (one dataset/arch)."""
    from .controls import CONTROLS

    rows = summary[summary["metric"].isin(metrics) & (summary["rho"].isna() | np.isclose(summary["rho"].fillna(0.05), 0.05))]
    cells = rows.assign(figure=[format_mean_sem(m, e) for m, e in zip(rows["mean"], rows["sem"])])
    table = cells.pivot_table(index="control", columns="metric", values="figure", aggfunc="first")
    table = table.reindex(index=[c for c in CONTROLS if c in table.index], columns=[m for m in metrics if m in table.columns])
    return table.fillna("—")


def clean_data_check(runs: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """The paper's Appendix F.1 check: for each augmentation control and sharpness measure, the mean
    measured on the augmented training images (as trained, the paper's choice) and on the clean ones,
    beside the baseline's (which trains on clean images), and whether each is sharper than the baseline.

    Empty where the runs carry no clean-data measures.
    """
    runs = finished_runs(runs)
    clean_columns = [c for c in runs.columns if c.startswith(CLEAN_PREFIX)]
    rows = []
    for column in clean_columns:
        metric = column.removeprefix(CLEAN_PREFIX)
        if metric not in runs.columns:
            continue
        base = runs.loc[runs["control"] == baseline, metric]
        for control, block in runs[runs[column].notna()].groupby("control", sort=False):
            augmented, clean = block[metric], block[column]
            rows.append({
                "measure": metric, "control": control, "seeds": len(block),
                "baseline": format_mean_sem(base.mean(), standard_error(base)),
                "augmented data": format_mean_sem(augmented.mean(), standard_error(augmented)),
                "clean data": format_mean_sem(clean.mean(), standard_error(clean)),
                "sharper than baseline (augmented)": bool(augmented.mean() > base.mean()),
                "sharper than baseline (clean)": bool(clean.mean() > base.mean()),
            })
    return pd.DataFrame(rows)


CLEAN_CHECK_HEADERS = {"augmented data": "augmented", "clean data": "clean",
                       "sharper than baseline (augmented)": "sharper (aug.)",
                       "sharper than baseline (clean)": "sharper (clean)"}


def clean_data_table(check: pd.DataFrame) -> pd.DataFrame:
    """`clean_data_check` for the page: short measure, control and column names, yes/no verdicts."""
    table = check.replace({"measure": METRIC_SHORT, "control": CONTROL_SHORT}).rename(columns=CLEAN_CHECK_HEADERS)
    for column in ("sharper (aug.)", "sharper (clean)"):
        table[column] = table[column].map({True: "yes", False: "no"})
    return table


def clean_data_sentence(check: pd.DataFrame) -> str:
    """One sentence computed from `clean_data_check`: in how many (control, measure) cases the verdict
    'sharper than the baseline' is the same on clean as on augmented data, and which ones flip."""
    augmented, clean = check["sharper than baseline (augmented)"], check["sharper than baseline (clean)"]
    flips = check[augmented != clean]
    text = (f"The verdict 'sharper than the baseline' is the same on clean and augmented data in "
            f"{len(check) - len(flips)} of {len(check)} cases")
    if flips.empty:
        return text + "."
    listed = "; ".join(
        f"{row['control']}, {row['measure']}: sharper on {'augmented' if row['sharper than baseline (augmented)'] else 'clean'} data only"
        for _, row in flips.iterrows())
    return f"{text}; it flips in {len(flips)} ({listed})."


def narrow_layout(table: pd.DataFrame) -> pd.DataFrame:
    """A `comparison_table` turned on its side: one row per (metric, ours/paper), one short-named column
    per control, so six columns fit a narrow page instead of two per metric."""
    turned = table.T.rename(columns=CONTROL_SHORT).rename(index=METRIC_SHORT, level="metric")
    turned.columns.name = None
    return turned


def wilcoxon_pvalues(runs: pd.DataFrame) -> pd.DataFrame:
    """`wilcoxon_table` of the finished runs as a (dataset, arch, control) x metric table of p-values."""
    tests = wilcoxon_table(finished_runs(runs))
    return tests.pivot_table(index=["dataset", "arch", "control"], columns="metric", values="pvalue")


def claim_agreement(summary: pd.DataFrame, paper: pd.DataFrame, label: str) -> pd.DataFrame:
    """Per metric with a claim, 'k of n' controls moving in the claimed direction (`claim_check`):
    ours (named `label`) beside the paper's ResNet-18 on CIFAR-10."""

    def agreeing(check):
        return check.set_index("metric").apply(lambda row: f"{row['controls agreeing']} of {row['controls']}", axis=1)

    ours, theirs = _claim_checks(summary, paper)
    return pd.DataFrame({
        "claim (vs baseline)": ours.set_index("metric")["claim"],
        f"ours ({label})": agreeing(ours),
        "paper (ResNet-18, CIFAR-10)": agreeing(theirs),
    }).rename_axis("metric").fillna("—")


def _claim_checks(summary: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`claim_check` of ours and of the paper's ResNet-18 on CIFAR-10; the paper's row of a metric we
    also compute its way (PAPER_EQUIVALENT) is repeated under our name."""
    ours = claim_check(summary)
    theirs = claim_check(paper[(paper["dataset"] == "cifar10") & (paper["arch"] == "resnet18")])
    for ours_name, theirs_name in PAPER_EQUIVALENT.items():
        if ours_name in set(ours["metric"]):
            theirs = pd.concat([theirs, theirs[theirs["metric"] == theirs_name].assign(metric=ours_name)])
    return ours, theirs


def differences_from_paper(summary: pd.DataFrame, paper: pd.DataFrame) -> str:
    """A sentence computed from the claim checks: the metrics where most of our controls go the paper's
    way, and those where most of the paper's do but most of ours do not (or the reverse)."""
    ours, theirs = (check.set_index("metric") for check in _claim_checks(summary, paper))
    majority = lambda check: check["controls agreeing"] > check["controls"] / 2  # noqa: E731
    ours_hold, paper_holds = majority(ours), majority(theirs).reindex(ours.index)
    held = [m for m in ours.index if ours_hold[m]]
    differ = [f"{m} ({ours.loc[m, 'controls agreeing']} of {ours.loc[m, 'controls']} ours, "
              f"{int(theirs.loc[m, 'controls agreeing'])} of {int(theirs.loc[m, 'controls'])} the paper's)"
              for m in ours.index if m in theirs.index and ours_hold[m] != paper_holds[m]]
    text = (f"Most of our controls move in the paper's claimed direction for {len(held)} of {len(ours)} metrics"
            + (f" ({', '.join(held)})" if held else "") + ".")
    return text + (f" Ours and the paper's differ on: {'; '.join(differ)}." if differ else
                   " Where the paper's ResNet-18 figures exist, the majorities agree on every metric.")


def first_setting_beside_paper(study, summary: pd.DataFrame, paper: pd.DataFrame) -> dict:
    """Our control means of the study's first (dataset, arch) and the paper's matching ones (SAM at
    rho 0.05), over the metrics both have: what `viz.results.controls_beside_paper` draws."""
    dataset, arch = dataset_arch_pairs(study.runs)[0]
    paper_dataset, paper_arch, _ = paper_setting(dataset, arch, paper)
    paper_rows = paper[(paper["dataset"] == paper_dataset) & (paper["arch"] == paper_arch)
                       & (paper["rho"].isna() | (paper["rho"] == SAM_RHO))]
    return {
        "ours": summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)],
        "paper": paper_rows,
        "metrics": [m for m in METRICS if m in set(summary["metric"]) and m in set(paper["metric"])],
        "setting": (dataset, arch),
        "paper_setting": (paper_dataset, paper_arch),
    }


def paper_control_means(source: str = "workshop", dataset: str = "cifar10") -> pd.DataFrame:
    """The paper's control means on `dataset`, one row per (arch, control), one column per metric."""
    paper = paper_results(source)
    return (paper[paper["dataset"] == dataset]
            .pivot_table(index=["arch", "control"], columns="metric", values="mean").reset_index())


def decade_line(sharpness, quality) -> tuple[float, float] | None:
    """Least-squares line of `quality` on log10(`sharpness`) as (slope per decade, intercept), or None
    with fewer than two distinct sharpness values."""
    log_sharpness = np.log10(np.asarray(sharpness, dtype=float))
    if len(np.unique(log_sharpness)) < 2:
        return None
    slope, intercept = np.polyfit(log_sharpness, np.asarray(quality, dtype=float), 1)
    return float(slope), float(intercept)


def decade_slope(sharpness, quality) -> float:
    """The slope of `decade_line`: change of `quality` per factor 10 of sharpness (NaN without a line)."""
    line = decade_line(sharpness, quality)
    return np.nan if line is None else line[0]


def simpson_slopes(points: pd.DataFrame, quality: str = "test_accuracy", measures=SHARPNESS_METRICS) -> pd.DataFrame:
    """Per sharpness measure, the `decade_slope` of `quality` within each architecture and pooled over
    all of them: opposite signs are Simpson's paradox. `points`: one row per (arch, control)."""
    rows = []
    for measure in measures:
        within = {f"within {arch}": decade_slope(block[measure], block[quality]) for arch, block in points.groupby("arch")}
        rows.append({"sharpness measure": measure, **within, "pooled": decade_slope(points[measure], points[quality])})
    return pd.DataFrame(rows)


# A pooled slope smaller than this share of the smallest within-architecture slope counts as vanished.
VANISHING_SHARE = 0.25
MEASURE_NAMES = {"fisher_rao_norm": "Fisher-Rao norm", "sam_sharpness": "SAM-sharpness", "relative_flatness": "relative flatness"}


SIMPSON_PHRASES = {"reverses": "reverses", "nearly vanishes": "nearly vanishes", "weakens": "is weaker but keeps its sign",
                   "keeps its sign": "keeps its sign and strength"}


def simpson_finding(within: list[float], pooled: float) -> str:
    """What pooling does to a trend: 'reverses', 'nearly vanishes', 'weakens', 'keeps its sign' (or
    'mixed within' when the architectures disagree), from the slopes alone."""
    within = [w for w in within if not np.isnan(w)]
    if not within or np.isnan(pooled):
        return "no slope"
    signs = {np.sign(w) for w in within}
    if len(signs) > 1:
        return "mixed within"
    smallest = min(abs(w) for w in within)
    if abs(pooled) < VANISHING_SHARE * smallest:
        return "nearly vanishes"
    if np.sign(pooled) != signs.pop():
        return "reverses"
    return "weakens" if abs(pooled) < smallest else "keeps its sign"


def simpson_sentence(points: pd.DataFrame, quality: str = "test_accuracy", measures=SHARPNESS_METRICS) -> str:
    """One sentence per sharpness measure saying, from `simpson_slopes`, whether pooling over
    architectures reverses, removes, weakens or keeps the within-architecture trend of `quality`."""
    sentences = []
    for row in simpson_slopes(points, quality, measures).to_dict("records"):
        measure, pooled = row.pop("sharpness measure"), row.pop("pooled")
        within = list(row.values())
        finding = simpson_finding(within, pooled)
        name, label = MEASURE_NAMES.get(measure, measure), quality.replace("_", " ")
        span = f"{min(within):+.3f} to {max(within):+.3f}"
        if finding == "no slope":
            sentences.append(f"{name}: no slope to compare")
        elif finding == "mixed within":
            sentences.append(f"{name}: the architectures disagree in sign ({span} per decade; pooled {pooled:+.3f})")
        else:
            sentences.append(f"{name}: {label} rises with sharpness within every architecture ({span} per decade)"
                             if min(within) > 0 else f"{name}: {label} falls with sharpness within every architecture ({span} per decade)")
            sentences[-1] += f"; pooled over architectures the trend {SIMPSON_PHRASES[finding]} ({pooled:+.3f})"
    return "; ".join(sentences) + "."


def grid_benchmark_note(path: Path | str = BENCH_GRID_JSON) -> str:
    """Markdown: the measured GPU throughput and projected grid time of `bench/grid.py --save`, or
    what to run where no measurement is committed."""
    path = Path(path)
    if not path.is_file():
        return _NO_BENCH_NOTE
    bench = _read_json(path)
    best, origin = bench["best"], bench["provenance"]
    return (f"Measured on {origin['machine']} ({origin['date']}): "
            f"{best['runs_in_parallel']} concurrent runs gave {best['images_per_second']:,.0f} "
            f"training images per second in total, {best['share_of_bf16_peak']:.1%} of the bf16 peak; "
            f"projected time for the ResNet-18 / CIFAR-10 grid (6 controls x 10 seeds x 100 epochs, with "
            f"evaluation): {best['projected_grid_minutes']:.0f} minutes (goal: 60).")


# --- The setup chapter: the controls and the pairing of seeds ------------------------------------

SETUP_DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "digits")


def controls_table() -> pd.DataFrame:
    """One row per control: which regularisers it switches on (`sharpness.controls`)."""
    from .controls import CONTROLS, get_control

    return pd.DataFrame(
        [{"control": c.name, "augmentation": c.augment, "SAM": c.sam, "weight decay": c.weight_decay}
         for c in map(get_control, CONTROLS)]
    )


def hyperparameter_table(datasets=SETUP_DATASETS) -> pd.DataFrame:
    """One row per data set: its fixed SGD settings (`sharpness.controls.hyperparameters`)."""
    from .controls import hyperparameters

    return pd.DataFrame([{"data set": name, **vars(hyperparameters(name))} for name in datasets])


def initial_weights(control: str, seed: int, dataset: str = "digits", arch: str = "simple_cnn",
                    num_classes: int = 10, image_size: int = 32):
    """The flattened starting weights of a run of (control, seed), as `sharpness.train` draws them."""
    import torch

    from .train import RunConfig, initial_model

    config = RunConfig(dataset=dataset, arch=arch, control=control, seed=seed, runs_dir="unused")
    return torch.nn.utils.parameters_to_vector(initial_model(config, num_classes, image_size).parameters())


def initial_weight_differences(seeds=(0, 1), **setting) -> pd.DataFrame:
    """Largest |difference| of starting weights: every control against the baseline of the same seed
    (0 when seeds pair), then the baselines of the first two seeds (not 0: seeds differ).
    `setting`: dataset, arch, num_classes, image_size as for `initial_weights`."""
    from .controls import CONTROLS

    column = "max |initial weight difference|"
    rows = []
    for seed in seeds:
        reference = initial_weights("baseline", seed, **setting)
        for control in CONTROLS[1:]:
            difference = (initial_weights(control, seed, **setting) - reference).abs().max().item()
            rows.append({"seed": seed, "control vs baseline": control, column: difference})
    first, second = seeds[:2]
    difference = (initial_weights("baseline", first, **setting) - initial_weights("baseline", second, **setting)).abs().max().item()
    rows.append({"seed": f"{first} vs {second}", "control vs baseline": "baseline", column: difference})
    return pd.DataFrame(rows)


def epoch_order_checks(count: int, epochs: int = 3) -> dict[str, bool]:
    """Properties of `sharpness.train.epoch_order` (the order training visits images in, for every control:
    tests/test_train.py checks that against the batches training draws) over `count` images:
    every image exactly once per epoch ("permutation"), a new order each epoch ("epochs_differ") and
    other orders for seed 1 than for seed 0 ("seeds_differ")."""
    import torch

    from .train import epoch_order

    orders = [epoch_order(0, epoch, count) for epoch in range(epochs)]
    return {
        "permutation": all(torch.equal(order.sort().values, torch.arange(count)) for order in orders),
        "epochs_differ": all(not torch.equal(a, b) for a, b in zip(orders, orders[1:])),
        "seeds_differ": not torch.equal(orders[0], epoch_order(1, 0, count)),
    }
