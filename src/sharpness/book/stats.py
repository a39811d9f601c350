"""Statistics of the runs: summaries (mean +/- SEM over seeds), paired Wilcoxon tests, claim tallies, slopes.

`summarise` gives mean and SEM per (dataset, arch, control, rho); `wilcoxon_vs_baseline` tests a control
against the baseline with seeds as pairs (every control of a seed starts from the same weights, so the
pairing is real). The claims themselves are tested in `book.claims` (paired t-tests, Holm).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..studies.store import GROUP_KEYS, METRICS, paper_results
from ..training.controls import SAM_RHO


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
    if not (math.isfinite(mean) and math.isfinite(sem)):  # no digits to align: shown as they are ('inf ± inf')
        return f"{mean:.3g} ± {sem:.2g}"
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


def finished_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained to the end (diverged runs have no meaningful measures)."""
    return runs[runs["status"] == "finished"]


def sam_rho_runs(study) -> pd.DataFrame:
    """The finished SAM-on-baseline runs of a rho sweep (one row per radius and seed)."""
    return finished_runs(study.runs[study.runs["control"] == "baseline_sam"])


def paper_rho_sweep(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's SAM-on-baseline rows (ResNet-18, CIFAR-10), the only setting its rho sweep prints."""
    return paper[(paper["control"] == "baseline_sam") & (paper["dataset"] == "cifar10") & (paper["arch"] == "resnet18")]


#: The larger radius of the paper's printed rho comparison (its rho-sweep row); the smaller is SAM_RHO, whose
#: figures we take from its baseline + SAM row (our inference: its tables do not say which control the sweep used).
PAPER_RHO_HIGH = 0.25


def rho_means(runs: pd.DataFrame, metrics) -> pd.DataFrame:
    """rho x metric means over seeds (the metrics `runs` carries), smallest radius first."""
    return runs.groupby("rho")[[m for m in metrics if m in runs.columns]].mean().sort_index()


def dataset_arch_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (dataset, arch) pairs of some runs, in the order they first appear."""
    return list(runs[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))


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


def paper_counterpart(metric: str) -> str | None:
    """The paper's metric computed the way our `metric` is, or None where the paper has none (our relative
    flatness as a clean mean: the paper's figure is in its own convention, ours is `relative_flatness_paper`)."""
    if metric in PAPER_EQUIVALENT:
        return PAPER_EQUIVALENT[metric]
    return None if metric in PAPER_EQUIVALENT.values() else metric


def in_our_conventions(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows with each figure renamed to our metric computed its way (`PAPER_EQUIVALENT`), where
    we have that metric: the paper's relative flatness then sits beside ours in the paper's convention, and
    nothing sets it beside our other convention."""
    for ours_name, theirs in PAPER_EQUIVALENT.items():
        if ours_name in set(ours["metric"]):
            paper = paper.replace({"metric": {theirs: ours_name}})
    return paper


def first_setting_beside_paper(study, summary: pd.DataFrame, paper: pd.DataFrame) -> dict:
    """Our control means of the study's first (dataset, arch) and the paper's matching ones (SAM at
    rho 0.05), over the metrics both have: what `figures.results.controls_beside_paper` draws."""
    dataset, arch = dataset_arch_pairs(study.runs)[0]
    paper_dataset, paper_arch, _ = paper_setting(dataset, arch, paper)
    ours = summary[(summary["dataset"] == dataset) & (summary["arch"] == arch)]
    paper_rows = in_our_conventions(ours, paper[(paper["dataset"] == paper_dataset) & (paper["arch"] == paper_arch)
                                                & (paper["rho"].isna() | (paper["rho"] == SAM_RHO))])
    return {
        "ours": ours,
        "paper": paper_rows,
        "metrics": [m for m in METRICS if m in set(ours["metric"]) and m in set(paper_rows["metric"])],
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


def initial_weights(control: str, seed: int, dataset: str = "digits", arch: str = "simple_cnn",
                    num_classes: int = 10, image_size: int = 32):
    """The flattened starting weights of a run of (control, seed), as `sharpness.training.train` draws them."""
    import torch

    from ..training.train import RunConfig, initial_model

    config = RunConfig(dataset=dataset, arch=arch, control=control, seed=seed, runs_dir="unused")
    return torch.nn.utils.parameters_to_vector(initial_model(config, num_classes, image_size).parameters())


def initial_weight_differences(seeds=(0, 1), **setting) -> pd.DataFrame:
    """Largest |difference| of starting weights: every control against the baseline of the same seed
    (0 when seeds pair), then the baselines of the first two seeds (not 0: seeds differ).
    `setting`: dataset, arch, num_classes, image_size as for `initial_weights`."""
    from ..training.controls import CONTROLS

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
    """Properties of `sharpness.training.train.epoch_order` (the order training visits images in, for every control:
    tests/test_train.py checks that against the batches training draws) over `count` images:
    every image exactly once per epoch ("permutation"), a new order each epoch ("epochs_differ") and
    other orders for seed 1 than for seed 0 ("seeds_differ")."""
    import torch

    from ..training.train import epoch_order

    orders = [epoch_order(0, epoch, count) for epoch in range(epochs)]
    return {
        "permutation": all(torch.equal(order.sort().values, torch.arange(count)) for order in orders),
        "epochs_differ": all(not torch.equal(a, b) for a, b in zip(orders, orders[1:])),
        "seeds_differ": not torch.equal(orders[0], epoch_order(1, 0, count)),
    }

