"""Sentences for the pages, computed from the runs: notes on what a page shows, findings, legends, short names.

Each note takes a `sharpness.studies.registry.Study` (runs, history, provenance, offline, label).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import REFERENCE_DIR, RESULTS_DIR
from ..core.untrusted import escape
from ..studies import registry, store
from ..studies.store import BENCH_GRID_JSON, METRICS, PERCENT_METRICS, load_json
from ..training import minimum
from ..training.controls import SAM_RHO
from .stats import (
    CLAIM_DIRECTION, PAPER_RHO_HIGH, SHARPNESS_METRICS, finished_runs, format_mean_sem, sam_rho_runs, simpson_finding,
    simpson_slopes
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


ARCH_NAMES = {"resnet18": "ResNet-18", "vgg19": "VGG-19", "vgg19_bn": "VGG19-BN", "vit": "ViT"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar10_folder": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny ImageNet"}
#: Data sets on which the paper fine-tunes ImageNet-pretrained networks (its Tiny ImageNet setting;
#: `controls.hyperparameters`).
FINE_TUNED = ("tiny_imagenet",)


def network_name(arch: str) -> str:
    """A network as the page names it: the paper's by their names, the CPU families by `registry.NETWORK_NAMES`."""
    return ARCH_NAMES.get(arch) or registry.NETWORK_NAMES.get(arch, arch)


def paper_settings_note() -> str:
    """The (data set, network) settings of the paper's tables, read from our transcription of them."""
    paper = store.paper_results(None)
    parts = []
    for dataset, block in paper.groupby("dataset", sort=False):
        archs = ", ".join(network_name(a) for a in dict.fromkeys(block["arch"]))
        tuned = " (pretrained on ImageNet, fine-tuned)" if dataset in FINE_TUNED else ""
        parts.append(f"{DATASET_NAMES.get(dataset, dataset)}: {archs}{tuned}")
    return "The paper's tables cover " + "; ".join(parts) + "."


def committed_controls_settings(results_dir: Path = RESULTS_DIR) -> tuple[Path, dict] | None:
    """(path, settings) of the best-tier committed controls grid (not a rho sweep), or None."""
    path = registry.committed_grid("controls", results_dir)
    return None if path is None else (path, store.load_grid(path)[1].get("settings") or {})


def measured_images_note(results_dir: Path = RESULTS_DIR) -> str:
    """Over which training images the committed study took its measures, read from its settings."""
    committed = committed_controls_settings(results_dir)
    if committed is None:
        return ("No study is committed under `results/`: the pages measure the offline stand-in's runs over their "
                "whole (small) training set.")
    path, settings = committed
    train, slow = settings.get("train_images"), settings.get("slow_measure_images")
    whole = f"all {int(train):,} training images of each run" if train else "each run's whole training set"
    subset = (f"a fixed {int(slow):,} of them" + (f" ({int(slow) / int(train):.0%})" if train else "")) if slow else "all of them"
    return (f"In the committed study (`{escape(path.name)}`), the Fisher-Rao norm and relative flatness are taken over "
            f"{whole}; SAM-sharpness and the Hessian measures over {subset}.")


def training_settings_note(results_dir: Path = RESULTS_DIR) -> str:
    """The paper's SGD settings on CIFAR-10 beside those of the committed controls grid, read from both."""
    from ..training.controls import hyperparameters

    paper = hyperparameters("cifar10")
    text = (f"The paper trains with SGD (momentum {paper.momentum:g}), batch {paper.batch_size}, learning rate "
            f"{paper.lr:g} ({paper.schedule}), {paper.epochs} epochs on CIFAR-10.")
    committed = committed_controls_settings(results_dir)
    if committed is None:
        return text + " No study of ours is committed yet."
    path, settings = committed
    formats = {"batch_size": "batch {}", "lr": "learning rate {:g}", "lr_schedule": "{} schedule", "epochs": "{} epochs",
               "train_images": "{:,} training images"}
    listed = ", ".join(form.format(settings[key]) for key, form in formats.items() if settings.get(key) is not None)
    return text + f" Our committed study (`{escape(path.name)}`) used {escape(listed)}."


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


def rho_findings(sam_runs: pd.DataFrame, checked: pd.DataFrame, history: pd.DataFrame | None = None) -> str:
    """Markdown computed from our sweep: the radii at which SAM did not bring the network to a minimum
    (`checked`, a `minimum.check` of the sweep's runs) with the reasons; how many runs per radius did; then,
    between the smallest and the largest radius with enough runs at a minimum, the claims tested (a larger
    radius sharper, more accurate, better calibrated: one-sided paired t-tests, Holm-corrected)."""
    from ..training import minimum
    from . import claims

    lines = []
    failed = checked[~checked["at_minimum"]]
    if len(failed):
        lines.append(f"**Runs that reached no minimum** ({minimum.criterion()}): "
                     f"{minimum.reasons_sentence(checked, by='rho')}. Their sharpness describes no minimum: the "
                     "figure draws them as grey crosses and the comparison below leaves them out.")
    counts = minimum.counts(checked.sort_values("rho", ascending=False), by="rho")
    lines.append("Runs at a minimum per radius: " + "; ".join(f"rho {r:g}: {c}" for r, c in counts.items()) + ".")
    kept = checked[checked["at_minimum"]].groupby("rho")["seed"].nunique()
    enough = sorted(kept[kept >= claims.MIN_SEEDS].index)
    if len(enough) < 2:
        lines.append(f"Fewer than two radii have {claims.MIN_SEEDS} or more runs at a minimum, so no two radii are "
                     "compared.")
        return "\n\n".join(lines)
    low, high = enough[0], enough[-1]
    tally = claims.tally(claims.by_radius(sam_runs), claims.by_radius(history) if history is not None else pd.DataFrame(),
                         baseline=f"rho {low:g}", controls=[f"rho {high:g}"])
    verdicts = claims.verdicts(tally.tests)
    parts = [f"{row['claim']}: {row['verdict']}" for row in verdicts.to_dict("records") if row["verdict"] != claims.NOT_TESTED]
    lines.append(f"rho = {high:g} against rho = {low:g}, paired over the seeds both reached a minimum in (one-sided "
                 f"paired t-tests in the paper's direction, Holm-corrected; a claim 'not shown' is within the "
                 f"seed-to-seed spread): " + "; ".join(parts) + ".")
    return "\n\n".join(lines)


def rho_paper_sentence(paper_sweep: pd.DataFrame, low: float = SAM_RHO, high: float = PAPER_RHO_HIGH) -> str:
    """What the paper's printed figures say between two radii, each metric's value at `low` and `high`
    (sharpness as a fold change), with the pairing labelled as our inference; the reading 'a better function
    at a sharper minimum' only where every printed metric supports it."""
    by_rho = paper_sweep.pivot_table(index="metric", columns="rho", values="mean")
    if not {low, high} <= set(by_rho.columns):
        return f"The paper prints no figures for both rho = {low:g} and rho = {high:g}."
    parts, better, sharper = [], [], []
    for metric, row in by_rho[[low, high]].dropna().iterrows():
        name = metric_name(metric)
        if metric in SHARPNESS_METRICS:
            parts.append(f"{name} x{row[high] / row[low]:.3g}")
            sharper.append(row[high] > row[low])
        else:
            parts.append(f"{name} {row[low]:.3g} → {row[high]:.3g}")
            if metric in CLAIM_DIRECTION:
                better.append((row[high] > row[low]) == (CLAIM_DIRECTION[metric] == "greater"))
    text = (f"In the paper's figures, from rho = {low:g} (its baseline + SAM row: our inference, the tables do not "
            f"say which control the sweep used) to rho = {high:g}: " + "; ".join(parts) + ".")
    if better and sharper and all(better) and all(sharper):
        text += (f" If that pairing is right, the larger radius finds a better function at a *sharper* minimum; "
                 f"the paper itself calls rho = {high:g} the best trade-off, not the largest radius the best.")
    return text


def appendix_f1_paper_sentence(reference_dir: Path = REFERENCE_DIR) -> str:
    """The paper's F.1 figures in words: each measure on augmented beside clean data."""
    table = store.appendix_f1_paper(reference_dir)
    if table.empty:
        return "the paper's Appendix F.1 figures are not transcribed under results/reference/"
    parts = []
    for (arch, dataset, control, metric), block in table.groupby(["arch", "dataset", "control", "metric"], sort=False):
        on = block.set_index("measured_on")
        figures = [f"{format_mean_sem(on.loc[kind, 'mean'], on.loc[kind, 'sem'])} on {kind}"
                   for kind in ("augmented", "clean") if kind in on.index]
        parts.append(escape(f"{control} {metric_name(metric)} ({arch}, {dataset}): {' vs '.join(figures)} data"))
    return "the paper's Appendix F.1: " + "; ".join(parts)


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


def differences_from_paper(tally, paper: pd.DataFrame, dataset: str = "cifar10", arch: str = "resnet18") -> str:
    """A sentence computed by one rule for both sides: per claim, does it hold for a majority of the controls,
    ours by Holm-corrected paired tests over the runs at a minimum, the paper's by the direction of its means;
    the claims where the two differ are named."""
    from . import claims

    theirs = paper[(paper["dataset"] == dataset) & (paper["arch"] == arch)]
    theirs = theirs[theirs["rho"].isna() | np.isclose(theirs["rho"].fillna(SAM_RHO), SAM_RHO)]
    ours = tally.summary.set_index("claim")
    paper_summary = claims.claim_summary(claims.mean_verdicts(theirs)).set_index("claim")
    tested = [c for c in ours.index if ours.loc[c, "tested"]]
    if not tested:
        return (f"No claim could be tested on our runs at a minimum ({tally.runs_at_minimum} runs reached one), so "
                "nothing of ours can agree or disagree with the paper yet.")
    held = [c for c in tested if ours.loc[c, "majority"] == claims.HOLDS]
    differ = [f"{c} (ours: {len(ours.loc[c, 'holds for'])} of {ours.loc[c, 'tested']} controls; the paper's means: "
              f"{len(paper_summary.loc[c, 'holds for'])} of {paper_summary.loc[c, 'tested']})"
              for c in tested if c in paper_summary.index
              and (ours.loc[c, "majority"] == claims.HOLDS) != (paper_summary.loc[c, "majority"] == claims.HOLDS)]
    text = (f"On our runs at a minimum, {len(held)} of {len(tested)} tested claims hold for a majority of the controls"
            + (f" ({', '.join(held)})" if held else "") + ".")
    return text + (f" Ours and the paper's differ on: {'; '.join(differ)}." if differ else
                   " For every tested claim, ours and the paper's majorities agree.")


def paper_pair_sentence(paper: pd.DataFrame, first: str, second: str, dataset: str = "cifar10",
                        arch: str = "resnet18") -> str:
    """The paper's figures for two controls side by side, metric by metric (`second` first), computed from
    its table; a metric it prints for only one of them is left out."""
    rows = paper[(paper["dataset"] == dataset) & (paper["arch"] == arch)
                 & (paper["rho"].isna() | np.isclose(paper["rho"].fillna(SAM_RHO), SAM_RHO))]
    means = rows.pivot_table(index="metric", columns="control", values="mean", aggfunc="first")
    if not {first, second} <= set(means.columns):
        return f"The paper prints no figures for both {first} and {second} ({arch}, {dataset})."
    parts = [f"{metric_name(m)} {means.loc[m, second]:.4g} against {means.loc[m, first]:.4g}"
             for m in METRICS if m in means.index and not means.loc[m, [first, second]].isna().any()]
    return f"In the paper's figures ({arch}, {dataset}), {second} against {first}: " + "; ".join(parts) + "."


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



def plateau_misses(grid_paths) -> tuple[int, pd.DataFrame]:
    """How many runs the grids at `grid_paths` hold, and those the criterion left out for a loss still falling
    alone (their accuracy passed): grid, control, seed, batch size, lr and the fall it read (relative, nats)."""
    total, rows = 0, []
    for path in dict.fromkeys(Path(p) for p in grid_paths if Path(p).is_file()):
        runs = store.load_grid(path)[0]
        checked = minimum.check(runs, store.load_history(path))
        total += len(checked)
        for row in checked[checked["reason"].str.contains("still falling")].to_dict("records"):
            rows.append({"grid": path.stem, "arch": row["arch"], "control": row["control"], "seed": row["seed"],
                         "batch_size": row.get("batch_size"), "lr": row.get("lr"), "fall": row["loss_drop"],
                         "fall_nats": row["loss_drop_nats"]})
    columns = ["grid", "arch", "control", "seed", "batch_size", "lr", "fall", "fall_nats"]
    return total, pd.DataFrame(rows, columns=columns)


def plateau_misses_sentence(total: int, misses: pd.DataFrame, frozen: pd.DataFrame, frozen_network: str) -> str:
    """The runs the plateau rule alone left out, each set against the windows of frozen-weight passes of
    `frozen_network`'s runs (`sharpness.measuring.plateau_noise.all_windows`): a miss is within that noise where
    some window fell at least as far, relatively and in nats."""
    if not len(misses):
        return f"Of the {total} runs of the committed grids, the plateau rule alone left none out."
    named = "; ".join(f"{network_name(row.arch)} {row.control} seed {row.seed} (batch {row.batch_size:g}, "
                      f"lr {row.lr:g}): fell {row.fall:.1%} ({row.fall_nats:.1e} nats)" for row in misses.itertuples())
    within = sum(bool(((frozen["fall"] >= row.fall) & (frozen["fall_nats"] >= row.fall_nats)).any())
                 for row in misses.itertuples())
    verdict = (f"{within} of those {len(misses)} falls {'is' if within == 1 else 'are'} matched by one of them, so "
               "noise alone could have left such a run out" if within else "none fell as far as any of those, on both counts")
    return (f"Of the {total} runs of the committed grids, the plateau rule alone left {len(misses)} out: {named}. "
            f"Of the {len(frozen)} windows of passes with the weights of {frozen_network} runs frozen, {verdict}.")
