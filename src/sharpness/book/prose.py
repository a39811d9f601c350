"""Sentences for the pages, computed from the runs: notes on what a page shows, findings, legends, short names.

Each note takes a `sharpness.studies.registry.Study` (runs, history, provenance, offline, label).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.untrusted import escape
from ..studies.store import BENCH_GRID_JSON, PERCENT_METRICS, load_json
from .stats import (
    MINIMUM_TRAIN_ACCURACY, SHARPNESS_METRICS, claim_checks_beside_paper, finished_runs, moves_the_papers_way,
    rho_means, runs_at_minimum, sam_rho_runs, simpson_finding, simpson_slopes, wilcoxon_table
)


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
    "No GPU measurement is committed (`results/bench_grid.json` is absent), so there is no grid projection "
    "of `python bench/grid.py` on an H100 and no ResNet-18 / CIFAR-10 grid: the runs on this page are {runs}. "
    "Run `python bench/grid.py` and `python -m sharpness sweep --datasets cifar10_folder --archs resnet18 "
    "--seeds 0 1 2 ... --results results/cifar10_resnet18.json` on a GPU machine to fill them in."
)


def _provenance_sentence(provenance: dict, with_data: bool = True) -> str:
    """Markdown from a results file's provenance, escaped (see `core.untrusted`)."""
    data = f"; data: {escape(provenance.get('data', 'unrecorded'))}" if with_data else ""
    commit = str(provenance.get("commit", "?"))[:10]
    commit = f"`{commit}`" if re.fullmatch(r"[0-9a-f]+", commit) else escape(commit)  # code spans show entities raw
    return f"Machine: {escape(provenance.get('machine', 'unrecorded'))}; commit {commit}{data}; date: {escape(provenance.get('date', 'unrecorded'))}."


def study_note(study) -> str:
    """Markdown naming the runs of the controls study and their provenance, with the offline caveat
    where the page trained its own small grid instead of reading a committed one."""
    note = f"**Runs shown: {escape(study.label)}** ({escape(runs_scale(study.runs))}). {_provenance_sentence(study.provenance)}"
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
    from ..measuring.evaluate import UNITS

    recorded = "; ".join(f"{name.replace('_', ' ')} in {UNITS[name]}" for name in PERCENT_METRICS if name in UNITS)
    return (f"`sharpness.measuring.evaluate` records {recorded}, as the paper prints them; every table and figure of "
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


def rho_note(study) -> str:
    """Markdown naming the rho sweep's radii, seeds and provenance, with the offline caveat."""
    sam_runs = sam_rho_runs(study)
    radii = ", ".join(f"{r:g}" for r in sorted(sam_runs["rho"].unique()))
    seeds = ", ".join(str(s) for s in sorted(sam_runs["seed"].unique()))
    note = (f"**Runs shown: {escape(study.label)}** (radii {escape(radii)}; seeds {escape(seeds)}). "
            f"{_provenance_sentence(study.provenance, with_data=False)}")
    return note + (f"\n\n{_OFFLINE_RHO_NOTE}" if study.offline else "")


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
        f"{escape(row['control'])}, {escape(row['measure'])}: sharper on {'augmented' if row['sharper than baseline (augmented)'] else 'clean'} data only"
        for _, row in flips.iterrows())
    return f"{text}; it flips in {len(flips)} ({listed})."


def differences_from_paper(summary: pd.DataFrame, paper: pd.DataFrame) -> str:
    """A sentence computed from the claim checks: the metrics where most of our controls go the paper's
    way, and those where most of the paper's do but most of ours do not (or the reverse)."""
    ours, theirs = (check.set_index("metric") for check in claim_checks_beside_paper(summary, paper))
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


MEASURE_NAMES = {"fisher_rao_norm": "Fisher-Rao norm", "sam_sharpness": "SAM-sharpness", "relative_flatness": "relative flatness"}


SIMPSON_PHRASES = {"reverses": "reverses", "nearly vanishes": "nearly vanishes", "weakens": "is weaker but keeps its sign",
                   "keeps its sign": "keeps its sign and strength"}


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


def grid_benchmark_note(path: Path | str = BENCH_GRID_JSON, runs_label: str = "the study's") -> str:
    """Markdown: the measured GPU throughput and projected grid time of `bench/grid.py --save`, or, where
    no measurement is committed, which runs the page shows (`runs_label`, the study's label) and what to run."""
    path = Path(path)
    if not path.is_file():
        return _NO_BENCH_NOTE.format(runs=runs_label)
    bench = load_json(path)
    best, origin = bench["best"], bench["provenance"]
    return (f"Measured on {escape(origin['machine'])} ({escape(origin['date'])}): "
            f"{best['runs_in_parallel']} concurrent runs gave {best['images_per_second']:,.0f} "
            f"training images per second in total, {best['share_of_bf16_peak']:.1%} of the bf16 peak; "
            f"projected time for the ResNet-18 / CIFAR-10 grid (6 controls x 10 seeds x 100 epochs, with "
            f"evaluation): {best['projected_grid_minutes']:.0f} minutes (goal: 60).")

