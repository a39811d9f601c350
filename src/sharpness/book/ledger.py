"""The reproduction ledger: one row per claim, table and figure of the paper, and how far we have shown it.

Every row is derived from what is committed (grid summaries and their per-epoch histories under
`results/`, stored toy-fit runs and landscapes, the paper's figures under `results/reference/`), never
typed, so the page that shows it (`book/ledger.md`) changes when results are committed. A row's status is
one of `STATUSES`, by the rule `STATUS_RULE` states (printed on the page).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.paths import REFERENCE_DIR, RESULTS_DIR
from ..studies import registry, store
from ..training import minimum
from ..training.controls import SAM_RHO
from . import across, claims, prose, stats

PAPER_SCALE = "reproduced at the paper's scale"
REDUCED_SCALE = "reproduced at a reduced real scale"
PARTLY = "partly reproduced"
NOT_SHOWN = "not shown at this n"
CONTRADICTED = "contradicted"
NOT_REPRODUCED = "not reproduced"
TOO_FEW_SEEDS = "not enough seeds"
STAND_IN = "stand-in only"
NOT_RUN = "not run yet"
STATUSES = (PAPER_SCALE, REDUCED_SCALE, PARTLY, NOT_SHOWN, CONTRADICTED, NOT_REPRODUCED, TOO_FEW_SEEDS, STAND_IN, NOT_RUN)
#: The claims besides "sharper" that a full reproduction of the central claim needs to hold.
QUALITY_CLAIMS = ("more accurate", "better calibrated", "more robust to corruptions")
# The paper's high-dimensional runs: 10 seeds per control (its tables), epochs from sharpness.training.controls.
PAPER_SEEDS = 10
# Data sets the offline stand-in uses: runs on them never count as real-data evidence.
STAND_IN_DATASETS = ("digits",)
# The paper's toy fitting study (sharpness.toys.fit's default FitConfig is the paper's setting).
DATASET_NAMES, network_name = prose.DATASET_NAMES, prose.network_name
# What each finding across networks or settings (`book.across`) means for the paper's claim.
ACROSS_STATUS = {
    across.NOT_RUN: NOT_RUN, across.TOO_FEW: NOT_RUN,  # one family or cell so far: the comparison is not run yet
    "no Goldilocks zone": REDUCED_SCALE, "a Goldilocks zone": CONTRADICTED,
    "disjoint ranges": REDUCED_SCALE, "overlapping": NOT_REPRODUCED,
    "reverses": REDUCED_SCALE, "nearly vanishes": REDUCED_SCALE, "weakens": PARTLY,
    "keeps its sign": NOT_REPRODUCED, "mixed within": NOT_REPRODUCED, "no slope": NOT_REPRODUCED,
    "holds in every cell": REDUCED_SCALE, "holds in part": PARTLY, "holds in no cell": CONTRADICTED,
}
# Relative difference within which a toy Hessian statistic agrees with the paper's printed (rounded) one.
TOY_TOLERANCE = 5e-3


@dataclass
class CommittedGrid:
    """One grid summary under results/ (`store.save_grid`): its runs and what made them."""

    path: Path
    runs: pd.DataFrame
    provenance: dict

    @property
    def settings(self) -> dict:
        return self.provenance.get("settings", {}) or {}

    @property
    def is_rho_sweep(self) -> bool:
        return self.path.stem.endswith("_rho")

    @property
    def tier(self) -> str:
        """'gpu', 'cpu' or '' as the provenance says (older grids do not say)."""
        return str(self.provenance.get("tier") or self.settings.get("tier", ""))

    @property
    def real_data(self) -> bool:
        return not set(self.runs["dataset"]) <= set(STAND_IN_DATASETS)

    def epochs(self) -> list[int]:
        column = self.runs["epochs"] if "epochs" in self.runs.columns else pd.Series([self.settings.get("epochs")])
        return sorted({int(e) for e in column.dropna()})

    def command(self, default: str) -> str:
        """The command that made the grid, as its settings record it, else `default`."""
        return f"`{self.settings['command']}`" if self.settings.get("command") else default

    def seeds(self) -> list[int]:
        return sorted({int(s) for s in self.runs["seed"].dropna()})

    def train_images(self) -> int | None:
        """The training subset size where the settings record one (None: the whole training set)."""
        for key in ("train_images", "train_samples", "max_train_samples", "train_subset", "subset"):
            value = self.settings.get(key, (self.settings.get("train_options") or {}).get(key))
            if value:
                return int(value)
        return None

    def at_paper_scale(self, dataset: str) -> bool:
        from ..training.controls import hyperparameters

        epochs, seeds = self.epochs(), self.seeds()
        return (self.real_data and self.train_images() is None and bool(epochs)
                and min(epochs) >= hyperparameters(dataset).epochs and len(seeds) >= PAPER_SEEDS)

    def seed_counts(self) -> str:
        """Seeds per control (per radius in a rho sweep), '5' where all have the same count, else listed."""
        key = "rho" if self.is_rho_sweep else "control"
        counts = stats.finished_runs(self.runs).groupby(key, sort=False)["seed"].nunique()
        if counts.nunique() <= 1:
            return f"{int(counts.iloc[0]) if len(counts) else 0}"
        label = (lambda r: f"rho {r:g}") if key == "rho" else str
        return ", ".join(f"{label(name)}: {int(count)}" for name, count in counts.items())

    def description(self) -> str:
        """What we ran, read from the runs and the provenance: data, network, seeds, epochs, machine."""
        datasets = "/".join(DATASET_NAMES.get(d, d) for d in self.runs["dataset"].unique())
        archs = "/".join(network_name(a) for a in self.runs["arch"].unique())
        subset = self.train_images()
        epochs = "/".join(map(str, self.epochs())) or "?"
        tier = f"{self.tier.upper()} run; " if self.tier else ""
        counts = self.seed_counts()
        if self.is_rho_sweep:
            shape = f"{self.runs['rho'].nunique()} radii, seeds {'per radius ' if ':' in counts else 'each '}{counts}"
        else:
            shape = (f"{self.runs['control'].nunique()} controls x {counts} seed{'s' * (counts != '1')}" if ":" not in counts
                     else f"{self.runs['control'].nunique()} controls, seeds per control {counts}")
        return (f"{archs} on {datasets}" + (f" ({subset:,} training images)" if subset else "")
                + f", {shape}, {epochs} epochs; "
                + f"{tier}{self.provenance.get('machine', 'machine not recorded')}, {str(self.provenance.get('date', ''))[:10]} "
                + f"(`{self.path.name}`)")

    def minimum_check(self) -> pd.DataFrame:
        """`minimum.check` of every run against the per-epoch history committed beside the grid."""
        return minimum.check(self.runs, store.load_history(self.path))


def committed_grids(results_dir: Path = RESULTS_DIR) -> list[CommittedGrid]:
    """Every grid summary under `results_dir` (see `registry.committed_grids`), loaded."""
    grids = []
    for path in registry.committed_grids(results_dir):
        try:
            runs, provenance = store.load_grid(path)
        except (ValueError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a readable grid summary ({error}); fix or remove it (every *.json at the "
                             f"top of {Path(results_dir).name}/ and its campaign/ is read as a grid summary: keep other "
                             "files in a subfolder)") from error
        grids.append(CommittedGrid(path, runs, provenance))
    return grids


@dataclass
class Row:
    item: str  # the paper's claim, table or figure
    status: str
    ran: str  # what we ran
    ours: str  # our figure
    paper: str  # the paper's figure beside it
    command: str  # what produces ours
    chapter: str  # the book page that shows it (path under book/, no suffix)


# --- the controls study: claims tested on a grid -------------------------------------------------

STATUS_RULE = (
    f"A real-data row is decided by the runs that reached a minimum ({minimum.criterion()}). "
    f"Each claim is tested for each control against the baseline with a one-sided paired t-test over the seeds "
    f"both reached a minimum in, Holm-corrected over the tally's tests at {claims.ALPHA:g}; correlated "
    "sharpness measures count once (a control is sharper when a majority of the measure families are). "
    f"A claim holds when it holds for a majority of the controls with at least {claims.MIN_SEEDS} paired seeds. "
    f"*Not reproduced*: the runs exist but too few reached a minimum to test; *not enough seeds*: fewer than "
    f"{claims.MIN_SEEDS} paired seeds; *contradicted*: a majority of controls go significantly against the "
    "sharpness or the accuracy claim; *reproduced* (at the paper's scale, or reduced): sharper and every "
    "measured quality claim (accuracy, calibration, corruption robustness) hold, with no control left out; "
    "*partly reproduced*: some claims hold; *not shown at this n*: none holds and none is contradicted.")


def claims_status(tally: claims.Tally, scale: str) -> tuple[str, str]:
    """(status, our figures in words) for a claim tested on one setting, by `STATUS_RULE`; `scale` is the
    status a full reproduction gets (PAPER_SCALE or REDUCED_SCALE)."""
    summary = tally.summary.set_index("claim")
    checked = tally.checked
    at_minimum = f"{tally.runs_at_minimum} runs reached a minimum"
    most = int(tally.all_tests["n"].max()) if len(tally.all_tests) else 0
    if not most:  # no finished baseline run paired with a control: nothing was tested, nothing reproduced
        return NOT_RUN, ("no comparison with the baseline possible: no control shares a seed with a finished baseline "
                         "run measured on a claimed metric")
    if not summary["tested"].sum():
        if most >= claims.MIN_SEEDS:
            return NOT_REPRODUCED, f"{at_minimum}, too few to test: {minimum.reasons_sentence(checked)}"
        return TOO_FEW_SEEDS, (f"{at_minimum}; at most {most} paired seed{'s' * (most != 1)} per comparison, "
                               f"the tests need {claims.MIN_SEEDS}")
    majority = summary["majority"]
    left_out = tally.left_out()
    text = f"{at_minimum}; claim by claim, the controls that hold it: {claims.summary_sentence(tally.summary)}"
    if left_out:
        away = checked[checked["control"].isin(left_out)]
        text += f"; left out, too few runs at a minimum: {minimum.reasons_sentence(away)}"
    if claims.AGAINST in (majority.get("sharper"), majority.get("more accurate")):
        return CONTRADICTED, text
    quality = [majority[c] for c in QUALITY_CLAIMS if c in majority.index and summary.loc[c, "tested"]]
    if majority.get("sharper") == claims.HOLDS and all(v == claims.HOLDS for v in quality) and not left_out:
        return scale, text
    if (majority == claims.HOLDS).any():
        return PARTLY, text
    return NOT_SHOWN, text


def paper_claims(paper: pd.DataFrame, dataset: str, arch: str, baseline: str = "baseline", controls=None) -> str:
    """The paper's figures for one setting, claim by claim by the direction of its means (it prints no
    per-seed values, so no test): which controls' means go the claimed way."""
    rows = paper[(paper["dataset"] == dataset) & (paper["arch"] == arch)]
    rows = rows[rows["rho"].isna() | np.isclose(rows["rho"].fillna(SAM_RHO), SAM_RHO)]
    summary = claims.claim_summary(claims.mean_verdicts(rows, baseline, controls))
    if summary.empty:
        return "no figures printed"
    parts = [f"{row['claim']}: {len(row['holds for'])} of {row['tested']}" for row in summary.to_dict("records") if row["tested"]]
    return "by the direction of its means (no per-seed values to test): " + "; ".join(parts)


def _setting_scale(grid: CommittedGrid, dataset: str, arch: str, paper: pd.DataFrame) -> str:
    paper_dataset, _, same = stats.paper_setting(dataset, arch, paper)
    return PAPER_SCALE if same and grid.at_paper_scale(paper_dataset) else REDUCED_SCALE


def _accuracy_span(long: pd.DataFrame) -> str:
    """'baseline 0.720 ± 0.002, best aug_sam 0.908' style: test accuracy of the baseline and the best control."""
    accuracy = long[(long["metric"] == "test_accuracy") & (long["rho"].isna() | np.isclose(long["rho"].fillna(0.05), 0.05))]
    if accuracy.empty or "baseline" not in set(accuracy["control"]):
        return "no test accuracy"
    base = accuracy[accuracy["control"] == "baseline"].iloc[0]
    best = accuracy.loc[accuracy["mean"].idxmax()]
    return (f"test accuracy: baseline {stats.format_mean_sem(base['mean'], base['sem'])}, "
            f"best {best['control']} {stats.format_mean_sem(best['mean'], best['sem'])}")


def table_rows(grids: list[CommittedGrid], paper: pd.DataFrame) -> list[Row]:
    """One row per (dataset, arch) the paper tabulates for its six controls, matched with our grids."""
    settings = paper[paper["rho"].isna() | np.isclose(paper["rho"].fillna(0.05), 0.05)][["dataset", "arch"]]
    rows = []
    for dataset, arch in settings.drop_duplicates().itertuples(index=False, name=None):
        item = f"Table: {network_name(arch)} on {DATASET_NAMES.get(dataset, dataset)}, six controls"
        theirs = (f"{_accuracy_span(paper[(paper['dataset'] == dataset) & (paper['arch'] == arch)])}; "
                  f"{paper_claims(paper, dataset, arch)}")
        command = (f"`python -m sharpness sweep --datasets {dataset} --archs {arch} --seeds 0 1 2 3 4 5 6 7 8 9 "
                   f"--results results/{dataset}_{arch}.json`")
        matching = [(grid, block) for grid in grids if not grid.is_rho_sweep
                    for (ours_dataset, ours_arch), block in grid.runs.groupby(["dataset", "arch"], sort=False)
                    if stats.paper_setting(ours_dataset, ours_arch, paper)[:2] == (dataset, arch)
                    and stats.paper_setting(ours_dataset, ours_arch, paper)[2]]
        if not matching:
            rows.append(Row(item, NOT_RUN, "nothing yet", "—", theirs, command, "study/results"))
            continue
        grid, block = matching[0]  # the best tier first, as the chapters pick (registry.committed_grids)
        tally = claims.tally(block, store.load_history(grid.path))
        status, text = claims_status(tally, _setting_scale(grid, block["dataset"].iloc[0], block["arch"].iloc[0], paper))
        ours = f"{_accuracy_span(stats.summarise(stats.finished_runs(block)))}; {text}"
        rows.append(Row(item, status, grid.description(), ours, theirs, command, "study/results"))
    return rows


def _controls_grid(grids: list[CommittedGrid]) -> CommittedGrid | None:
    """The best-tier real-data controls grid (`registry.committed_grids` orders them), or None."""
    real = [grid for grid in grids if not grid.is_rho_sweep and grid.real_data]
    return real[0] if real else None


def central_claim_row(grids: list[CommittedGrid], paper: pd.DataFrame) -> Row:
    """The paper's headline: regularised controls end sharper and compute better functions."""
    item = "Central claim: regularised controls sit at sharper minima and are more accurate, calibrated and robust"
    theirs = f"ResNet-18 on CIFAR-10, {paper_claims(paper, 'cifar10', 'resnet18')}"
    command = "`python -m sharpness sweep ... --results results/<dataset>_<arch>.json`"
    grid = _controls_grid(grids)
    if grid is None:
        return Row(item, STAND_IN,
                   "the study chapters train an offline grid at build time (scikit-learn digits, small CNN, a few epochs)",
                   "not a reproduction: see the results chapter", theirs, command, "study/results")
    command = grid.command(default=command)
    dataset, arch = grid.runs["dataset"].iloc[0], grid.runs["arch"].iloc[0]
    runs = grid.runs[(grid.runs["dataset"] == dataset) & (grid.runs["arch"] == arch)]
    status, text = claims_status(claims.tally(runs, store.load_history(grid.path)), _setting_scale(grid, dataset, arch, paper))
    return Row(item, status, grid.description(), text, theirs, command, "study/results")


def sharpest_model_row(grids: list[CommittedGrid], paper: pd.DataFrame) -> Row:
    """The paper's sharpest model: aug_sam against aug (sharper and better in the paper's ResNet-18 figures)."""
    item = "The sharpest model: augmentation + SAM against augmentation alone (sharper and better)"
    theirs = f"ResNet-18 on CIFAR-10, {paper_claims(paper, 'cifar10', 'resnet18', baseline='aug', controls=['aug_sam'])}"
    command = "`python -m sharpness sweep ... --controls aug aug_sam ...`"
    grid = _controls_grid(grids)
    if grid is None or not {"aug", "aug_sam"} <= set(grid.runs["control"]):
        return Row(item, NOT_RUN, "no real-data grid with both aug and aug_sam", "—", theirs, command, "study/results")
    dataset, arch = grid.runs["dataset"].iloc[0], grid.runs["arch"].iloc[0]
    runs = grid.runs[(grid.runs["dataset"] == dataset) & (grid.runs["arch"] == arch)]
    tally = claims.tally(runs, store.load_history(grid.path), baseline="aug", controls=["aug_sam"])
    status, text = claims_status(tally, _setting_scale(grid, dataset, arch, paper))
    return Row(item, status, grid.description(), text, theirs, grid.command(default=command), "study/results")


def _across_row(item: str, finding: tuple[str, str], ran: str, theirs: str, part: str) -> Row:
    """A row from a finding of `book.across` on our CPU runs across networks or settings (`part` of
    `cpu-families`), its status by ACROSS_STATUS (a ledger status passes as it is)."""
    from ..studies.cpu_families import COMMANDS

    status, sentence = finding
    return Row(item, ACROSS_STATUS.get(status, status), ran, sentence, theirs, f"`{COMMANDS[part]}`", "study/across")


def _family_claim(claim: str, results_dir: Path) -> tuple[str, str] | None:
    """One ledger (status, sentence) for a claim across our families (`across.family_findings`), judged by each
    sharpness measure: their common status where the measures agree, else partly reproduced; the sentence gives the
    finding of every measure the runs have. None where no run of ours across families is committed."""
    findings = across.family_findings(claim, *(across.committed_paths(results_dir)[k] for k in ("families", "study")))
    judged = [(status, sentence) for status, sentence in findings if status != across.NOT_RUN]  # measures not measured
    if not judged:
        return None
    statuses = {ACROSS_STATUS.get(status, status) for status, _ in judged}
    return (statuses.pop() if len(statuses) == 1 else PARTLY), " ".join(sentence[:1].upper() + sentence[1:] for _, sentence in judged)


def _families_ran(results_dir: Path) -> tuple[str, str]:
    """(status, what ran) of the CPU families plan under `results_dir`."""
    return across.families_finding(across.committed_paths(results_dir)["families"])


def _batch_lr_grid(grids: list[CommittedGrid]) -> CommittedGrid | None:
    for grid in grids:
        columns = [c for c in ("batch_size", "lr") if c in grid.runs.columns]
        if columns and len(grid.runs[columns].drop_duplicates()) > 1 and grid.real_data:
            return grid
    return None


def batch_lr_row(grids: list[CommittedGrid], results_dir: Path = RESULTS_DIR) -> Row:
    """Figure 1 / Appendix F.2: minima over a batch-size x learning-rate sweep (ours: `cpu-families --part
    batch-lr`, else any committed grid that varies both)."""
    item = "Figure 1 / Appendix F.2: sharpness vs quality over a batch {128, 256} x lr {1e-3, 1e-2} sweep (240 minima)"
    ours = across.load_runs(across.committed_paths(results_dir)["batch_lr"])
    if len(ours):  # our CPU sweep: the row counts its cells and each control's minima in each
        from ..studies.cpu_families import BATCH_SIZES, LEARNING_RATES, MINIMA_PER_CONTROL

        needed, planned = MINIMA_PER_CONTROL["batch-lr"], len(BATCH_SIZES) * len(LEARNING_RATES)
        counts = across.minima_per_control(ours, across.CELL, needed)
        cells, complete = len(counts), int(counts["complete"].sum())
        status, counted = _minima_counted(ours.index.isin(across.usable_runs(ours).index))
        if status != NOT_REPRODUCED:  # runs that missed are left out (the page names them): every cell has its minima?
            status = REDUCED_SCALE if complete == planned else PARTLY
        return _across_row(item, (status, f"{counted}; {cells} of the {planned} cells run, {complete} with {needed} "
                                          f"runs at a minimum of every control"),
                           f"{len(ours)} runs of the CPU batch x learning-rate sweep ({cells} of {planned} cells)",
                           "240 minima", "batch-lr")
    command = "`python -m sharpness sweep ... --batch-size B --lr LR` for each (B, LR) of the sweep"
    grid = _batch_lr_grid(grids)
    if grid is None:
        return Row(item, NOT_RUN, "no batch x learning-rate sweep (the results chapter's scatter shows the controls "
                   "study's runs, one setting)", "—", "240 minima", command, "study/results")
    status, counted = _minima_counted(grid.minimum_check()["at_minimum"])
    return Row(item, status, grid.description(), counted, "240 minima", command, "study/results")


def _minima_counted(at_minimum: pd.Series) -> tuple[str, str]:
    """(status, 'k of n runs reached a minimum') of a sweep whose claim is its minima: all, some or none."""
    minima = int(at_minimum.sum())
    status = NOT_REPRODUCED if minima == 0 else REDUCED_SCALE if minima == len(at_minimum) else PARTLY
    return status, f"{minima} of {len(at_minimum)} runs reached a minimum"


def appendix_g_rows(grids: list[CommittedGrid], results_dir: Path = RESULTS_DIR) -> list[Row]:
    """Appendix G.1 (the batch x learning-rate sweep's per-setting claims) and G.2; neither is transcribed
    under results/reference/, so the paper's column names the claim only."""
    grid = _batch_lr_grid(grids)
    command = "`python -m sharpness sweep ... --batch-size B --lr LR` for each (B, LR) of the sweep"
    g1 = ("Appendix G.1: over batch {128, 256} x lr {1e-3, 1e-2}, aug + SAM stays best and sharper than the baseline "
          "while the learning rate moves absolute sharpness")
    g2 = "Appendix G.2"
    paper = "the appendix's figures are not transcribed under results/reference/"
    finding = across.figure1_finding(across.committed_paths(results_dir)["batch_lr"])
    if finding[0] != across.NOT_RUN:  # our CPU sweep: the claim judged per cell on runs at a minimum
        return [_across_row(g1, finding, "the CPU batch x learning-rate sweep", paper, "batch-lr"),
                Row(g2, NOT_RUN, "nothing of ours bears on it", "—", paper, "—", "study/results")]
    if grid is None:
        ran = "no batch x learning-rate sweep of ours"
        return [Row(g1, NOT_RUN, ran, "—", paper, command, "study/results"),
                Row(g2, NOT_RUN, "nothing of ours bears on it", "—", paper, "—", "study/results")]
    checked = grid.minimum_check()
    return [Row(g1, PARTLY if checked["at_minimum"].any() else NOT_REPRODUCED, grid.description(),
                f"{int(checked['at_minimum'].sum())} of {len(checked)} runs reached a minimum; per-setting claims: "
                "see the results chapter", paper, command, "study/results"),
            Row(g2, NOT_RUN, "nothing of ours bears on it", "—", paper, "—", "study/results")]


def goldilocks_row(grids: list[CommittedGrid], results_dir: Path = RESULTS_DIR) -> Row:
    """'No Goldilocks zone': the sharpest model is not always the best across architectures and data sets."""
    item = "No Goldilocks zone: no single level of sharpness is best across architectures and data sets"
    paper = store.paper_results("workshop")
    measures = [m for m in claims.DECIDING.values() if m in set(paper["metric"])]
    same, total = {m: 0 for m in measures}, {m: 0 for m in measures}
    means: dict[tuple[str, str], dict[str, dict[str, float]]] = {}  # (dataset, arch) -> metric -> control -> mean
    default = paper[paper["rho"].isna() | np.isclose(paper["rho"].fillna(0.05), 0.05)]
    for dataset, arch, control, metric, mean in default[["dataset", "arch", "control", "metric", "mean"]].itertuples(index=False):
        means.setdefault((dataset, arch), {}).setdefault(metric, {})[control] = mean
    for by_metric in means.values():
        for measure in measures:
            both = set(by_metric.get("test_accuracy", {})) & set(by_metric.get(measure, {}))
            if both:
                total[measure] += 1
                same[measure] += int(max(both, key=by_metric[measure].get) == max(both, key=by_metric["test_accuracy"].get))
    theirs = ("the paper's workshop tables, re-analysed: the sharpest control is also the most accurate in "
              + "; ".join(f"{same[m]} of {total[m]} (data set, architecture) settings by {prose.metric_name(m)}"
                          for m in measures if total[m]))
    finding = _family_claim("goldilocks", results_dir)
    if finding is not None:
        return _across_row(item, finding, _families_ran(results_dir)[1], theirs, "families")
    ours_settings = {(d, a) for grid in grids if grid.real_data and not grid.is_rho_sweep
                     for d, a in grid.runs[["dataset", "arch"]].drop_duplicates().itertuples(index=False)}
    command = "`python -m sharpness sweep --archs resnet18 vgg19 vit ...` (several architectures)"
    if len(ours_settings) < 2:
        return Row(item, NOT_RUN, f"our grids cover {len(ours_settings)} (data set, architecture) setting; the claim needs two or more",
                   "—", theirs, command, "study/results")
    return Row(item, NOT_SHOWN, f"{len(ours_settings)} settings", "see the results chapter", theirs, command, "study/results")


def rho_row(grids: list[CommittedGrid], paper: pd.DataFrame) -> Row:
    """The SAM radius sweep: which radii reached a minimum, and the paper's printed comparison (rho 0.25
    against 0.05, whose pairing with the paper's baseline + SAM row is our inference) tested on ours."""
    item = "SAM radius sweep: rho in {0.5, 0.25, 0.05, 0.025, 0.005, 0.0025}"
    printed = stats.paper_rho_sweep(paper)
    theirs = (f"figures printed for rho {', '.join(f'{r:g}' for r in sorted(printed['rho'].unique(), reverse=True))}. "
              f"{prose.rho_paper_sentence(printed)}")
    command = "`python -m sharpness sweep --controls baseline_sam --rhos paper ... --results results/<dataset>_<arch>_rho.json`"
    sweeps = [grid for grid in grids if grid.is_rho_sweep]
    if not sweeps:
        return Row(item, STAND_IN, "the chapter trains an offline sweep at build time (digits, small CNN)",
                   "not a reproduction", theirs, command, "study/rho")
    grid = sweeps[0]  # the one the rho chapter shows (sweep.committed_grid)
    command = grid.command(default=command)
    if not grid.real_data:
        return Row(item, STAND_IN, grid.description(), "not a reproduction", theirs, command, "study/rho")
    runs = claims.by_radius(grid.runs[grid.runs["control"] == "baseline_sam"])
    history = store.load_history(grid.path)
    if len(history):
        history = claims.by_radius(history[history["control"] == "baseline_sam"])
    checked = minimum.check(runs, history)
    reached = ", ".join(f"{name}: {count}" for name, count in minimum.counts(checked.sort_values("rho", ascending=False)).items())
    high, low = f"rho {stats.PAPER_RHO_HIGH:g}", f"rho {SAM_RHO:g}"
    if not {high, low} <= set(runs["control"]):
        return Row(item, NOT_RUN, grid.description(), f"runs at a minimum per radius: {reached}; no runs at both "
                   f"{high} and {low}", theirs, command, "study/rho")
    pair = runs["control"].isin([low, high])
    tally = claims.tally(runs[pair], history[history["control"].isin([low, high])] if len(history) else history,
                         baseline=low, controls=[high])
    scale = PAPER_SCALE if grid.at_paper_scale(grid.runs["dataset"].iloc[0]) else REDUCED_SCALE
    status, text = claims_status(tally, scale)
    ours = f"runs at a minimum per radius: {reached}; {high} against {low} (the paper's printed pair): {text}"
    return Row(item, status, grid.description(), ours, theirs, command, "study/rho")


# --- the toy chapters --------------------------------------------------------------------------

def toy_hessian_row(reference_dir: Path = REFERENCE_DIR) -> Row:
    """Tables 1-2: our autograd Hessian statistics against the paper's printed ones, minimum by minimum."""
    from ..toys import toy

    columns = ["condition_number", "hessian_trace", "hessian_determinant", "max_eigenvalue"]
    reference = pd.read_csv(reference_dir / "toy_hessians.csv")
    ours = pd.DataFrame(toy.minima_table())
    merged = ours.merge(reference, on="function", suffixes=("", "_paper"))
    merged = merged[np.isclose(merged["x"], merged["x_paper"], atol=1e-4) & np.isclose(merged["y"], merged["y_paper"], atol=1e-4)]
    relative = pd.concat([(merged[c] - merged[f"{c}_paper"]).abs() / merged[f"{c}_paper"].abs() for c in columns], axis=1)
    worst = float(relative.to_numpy().max())
    status = PAPER_SCALE if len(merged) == len(reference) and worst <= TOY_TOLERANCE else CONTRADICTED
    return Row("Tables 1-2: Hessian statistics at the minima of seven toy functions", status,
               "autograd Hessians in float64 at every known minimum (computed when the book is built)",
               f"{len(merged)} minima x {len(columns)} statistics; largest relative difference {worst:.1e}",
               f"{len(reference)} minima, printed rounded", "the chapter's cell (`sharpness.toys.toy.minima_table()`)",
               "toy/functions")


def toy_fit_row(results_dir: Path = RESULTS_DIR) -> Row:
    """The learned sharpness ordered as Table 1's analytic curvature, at every target loss (not the best).

    Status: reproduced (at its scale) where every function of the paper was fitted and the Spearman
    correlation is positive at every ranked target; contradicted where it is at most 0 at every one;
    partly reproduced otherwise (including functions never fitted). With 3 to 7 functions no Spearman
    correlation is significant; the row gives every target's value and function count."""
    from ..toys import fit

    paper = fit.FitConfig()
    item = "Toy fitting study: sharper learned minima for more complex functions"
    theirs = f"{len(paper.functions)} functions x {len(paper.seeds)} seeds, {paper.epochs:,} epochs, {paper.train_points:,} points"
    command = "`python -m sharpness.toys.fit --preset full --out results/toy_fit/full`"
    stored = fit.stored_results(results_dir / "toy_fit")
    if not stored:
        return Row(item, NOT_RUN, "no stored fitting run under results/toy_fit/ (the chapter's quick run at build "
                   "time is not stored)", "—", theirs, command, "toy/fitting")
    longest = stored[-1]
    config = longest.config
    scale = PAPER_SCALE if (config.epochs >= paper.epochs and len(config.seeds) >= len(paper.seeds)
                            and config.train_points >= paper.train_points) else REDUCED_SCALE
    ran = (f"{len(config.functions)} functions x {len(config.seeds)} seeds, {config.epochs:,} epochs, "
           f"{config.train_points:,} points ({longest.provenance.get('machine', '?')})")
    agreement = fit.rank_agreement(longest, "top_eigenvalue")
    ranked = agreement.dropna(subset=["spearman"])
    unfitted = fit.unfitted_functions(longest)
    targets = "; ".join(
        f"loss ≤ {row['target']:g}: " + (f"{row['spearman']:+.2f} over {int(row['functions'])} functions"
                                          if not np.isnan(row["spearman"]) else f"{int(row['functions'])} functions, too few to rank")
        for row in agreement.to_dict("records"))
    ours = (f"Spearman correlation of the learned top eigenvalue with Table 1's, per target: {targets}; "
            f"never fitted: {', '.join(unfitted) or 'none'}")
    if ranked.empty:
        status = NOT_SHOWN
    elif (ranked["spearman"] <= 0).all():
        status = CONTRADICTED
    elif (ranked["spearman"] > 0).all() and not unfitted and set(config.functions) >= set(paper.functions):
        status = scale
    else:
        status = PARTLY
    return Row(item, status, ran, ours, theirs, command, "toy/fitting")


#: The toy claim "generalisation gaps stay similar while sharpness differs", made testable: at a target
#: loss, the functions' mean gaps (test - train loss) span at most this share of the target...
GAP_SIMILAR_SHARE = 0.1
#: ...while their mean top eigenvalues differ by at least this factor.
SHARPNESS_DIFFERS_FOLD = 2.0


def toy_gap_row(results_dir: Path = RESULTS_DIR) -> Row:
    """The toy fitting claim that generalisation gaps stay similar while sharpness differs, per target
    loss over the functions every seed fitted (`GAP_SIMILAR_SHARE`, `SHARPNESS_DIFFERS_FOLD`)."""
    from ..toys import fit

    item = "Toy fitting study: generalisation gaps stay similar across functions while sharpness differs"
    theirs = "the paper's fitting study (its gaps are not transcribed under results/reference/)"
    command = "`python -m sharpness.toys.fit --preset full --out results/toy_fit/full`"
    stored = fit.stored_results(results_dir / "toy_fit")
    if not stored:
        return Row(item, NOT_RUN, "no stored fitting run under results/toy_fit/", "—", theirs, command, "toy/fitting")
    result = stored[-1]
    gaps, sharpness = fit.summary_at_targets(result, "gap"), fit.summary_at_targets(result, "top_eigenvalue")
    merged = gaps.merge(sharpness, on=["function", "target"], suffixes=("_gap", "_sharpness"))
    merged = merged[merged["seeds_reached_gap"] == merged["seeds_gap"]]
    verdicts, parts = [], []
    for target, block in merged.groupby("target", sort=False):
        if len(block) < 3:
            parts.append(f"loss ≤ {target:g}: {len(block)} functions, too few")
            continue
        gap_span = (block["mean_gap"].max() - block["mean_gap"].min()) / target
        fold = block["mean_sharpness"].max() / block["mean_sharpness"].min()
        holds = gap_span <= GAP_SIMILAR_SHARE and fold >= SHARPNESS_DIFFERS_FOLD
        verdicts.append(holds)
        parts.append(f"loss ≤ {target:g} ({len(block)} functions): gaps span {gap_span:.1%} of the target, "
                     f"top eigenvalue x{fold:.0f}: {'holds' if holds else 'does not hold'}")
    status = (NOT_SHOWN if not verdicts else REDUCED_SCALE if all(verdicts) else PARTLY if any(verdicts) else NOT_SHOWN)
    ours = (f"the claim holds at a target when the functions' mean gaps span at most {GAP_SIMILAR_SHARE:.0%} of the "
            f"target loss and their top eigenvalues differ at least x{SHARPNESS_DIFFERS_FOLD:g}: " + "; ".join(parts))
    return Row(item, status, f"the stored fitting run ({len(result.config.functions)} functions x "
               f"{len(result.config.seeds)} seeds, {result.config.epochs:,} epochs)", ours, theirs, command, "toy/fitting")


def boundary_row(results_dir: Path = RESULTS_DIR) -> Row:
    """The stored boundary studies (results/boundaries/): per study and measure, the Spearman correlation of the
    separation with the seeds' mean sharpness (`boundary.trend_table`); the claim holds where it is negative
    (closer classes, a tighter boundary, a sharper minimum). Reproduced where every one is negative, contradicted
    where none is and some is positive, not shown where none could be computed or all are 0, partly otherwise;
    the chapter's quick run at build time is not stored and not read."""
    from ..toys import boundary

    item = "Decision boundaries: tighter boundaries give sharper minima"
    theirs = "the paper's synthetic boundary study (its setting is not transcribed under results/reference/)"
    command = (f"`python -m sharpness boundary --out results/boundaries/full` (add `--stop-loss {boundary.MATCHED_LOSS:g}` "
               "for a matched loss)")
    studies = boundary.stored_results(results_dir / boundary.STORED_DIR.name)
    if not studies:
        full = boundary.BoundaryConfig()
        return Row(item, NOT_RUN, "no boundary study is stored under results/boundaries/; the chapter runs a quick "
                   "one at build time that the ledger does not read", "see the chapter", theirs,
                   f"{command}: {len(full.separations)} separations x {len(full.seeds)} seeds", "toy/boundaries")
    ran = [f"{study.name} ({study.stopping_rule()}): {len(study.config.separations)} separations x "
           f"{len(study.config.seeds)} seeds, {2 * study.config.points_per_class} points, cap "
           f"{study.config.max_epochs:,} epochs ({study.made()})" for study in studies]
    trends = boundary.trend_table(studies)
    parts = []
    for name, block in trends.groupby("study", sort=False):
        reached = int(block["separations reached"].iloc[0])
        correlations = ", ".join(f"{measure} {rho:+.2f} (p = {p_value:.2g})" if not np.isnan(rho) else f"{measure}: none"
                                 for measure, rho, p_value in zip(block["measure"], block["spearman"], block["p"]))
        parts.append(f"{name} ({block['stopping rule'].iloc[0]}; the {reached} separations every seed reached"
                     + (", too few to rank" if reached < 3 else "") + f"): {correlations}")
    judged = trends["spearman"].dropna()
    status = (NOT_SHOWN if (judged == 0).all() else REDUCED_SCALE if (judged < 0).all()
              else CONTRADICTED if (judged >= 0).all() else PARTLY)
    ours = ("Spearman correlation of the class separation with the mean sharpness over seeds (negative: closer "
            "classes, sharper minima; two-sided p) in " + "; ".join(parts))
    return Row(item, status, "; ".join(ran), ours, theirs, command, "toy/boundaries")


# --- landscapes, Simpson, appendix ----------------------------------------------------------------

def landscape_row(grids: list[CommittedGrid], results_dir: Path = RESULTS_DIR) -> Row:
    """The stored surfaces: their resolution read from the files, and whether the runs they were drawn
    around reached a minimum (the controls grid's verdicts)."""
    from ..measuring.landscape import PAPER_RESOLUTION, stored_landscapes

    item = "Loss landscapes: one filter-normalised 2-D surface per control"
    theirs = f"{PAPER_RESOLUTION} x {PAPER_RESOLUTION} surfaces, ResNet-18"
    command = (f"`python -m sharpness.measuring.landscape --runs-dir runs --dataset cifar10 --arch resnet18 --seed 0 "
               f"--resolution {PAPER_RESOLUTION} --out results/landscapes`")
    surfaces = stored_landscapes(root=results_dir / "landscapes")
    if not surfaces:
        return Row(item, STAND_IN, "the chapter computes small surfaces of the offline runs at build time",
                   "not a reproduction", theirs, command, "study/landscapes")
    shapes = sorted({" x ".join(map(str, np.shape(s.surface.loss))) for s in surfaces})
    dataset, arch = surfaces[0].dataset, surfaces[0].arch
    ran = (f"{len(surfaces)} stored surfaces ({', '.join(sorted({s.control for s in surfaces}))}), "
           f"{network_name(arch)} on {DATASET_NAMES.get(dataset, dataset)}, {' and '.join(shapes)}")
    if dataset in STAND_IN_DATASETS:
        return Row(item, STAND_IN, ran, "not a reproduction", theirs, command, "study/landscapes")
    grid = next((g for g in grids if not g.is_rho_sweep and {dataset, arch} <= set(g.runs["dataset"]) | set(g.runs["arch"])), None)
    if grid is not None and grid.settings.get("command"):
        command = f"`{grid.settings['command']}`"
    if grid is None:
        return Row(item, NOT_RUN, ran, "no committed grid holds the runs they were drawn around (an earlier "
                   "protocol's?), so whether those reached a minimum cannot be read: none of the committed grid's "
                   "runs has a stored surface", theirs, command, "study/landscapes")
    checked = grid.minimum_check()
    drawn = {(s.control, s.seed) for s in surfaces}
    around = checked[[(c, s) in drawn for c, s in zip(checked["control"], checked["seed"])]]
    away = around[~around["at_minimum"]]
    if len(away):
        return Row(item, NOT_REPRODUCED, ran, f"{len(away)} of {len(around)} surfaces are drawn around runs that "
                   f"reached no minimum: {minimum.reasons_sentence(away)}", theirs, command, "study/landscapes")
    return Row(item, REDUCED_SCALE, ran, f"every surface is drawn around a run at a minimum ({len(around)} runs)",
               theirs, command, "study/landscapes")


def simpson_row(grids: list[CommittedGrid], results_dir: Path = RESULTS_DIR) -> Row:
    item = "Simpson's paradox: pooled over architectures, the sharpness-accuracy trend differs from within each"
    points = stats.paper_control_means("workshop", dataset="cifar10")
    theirs = "the paper's own figures (workshop tables, CIFAR-10), re-analysed: " + prose.simpson_sentence(points)
    finding = _family_claim("simpson", results_dir)
    if finding is not None:
        return _across_row(item, finding, _families_ran(results_dir)[1], theirs, "families")
    several = [grid for grid in grids if grid.real_data and not grid.is_rho_sweep and grid.runs["arch"].nunique() > 1]
    command = "`python -m sharpness sweep --archs resnet18 vgg19 vit ...` (several architectures on one data set)"
    if not several:
        return Row(item, NOT_RUN, "no grid of ours spans two architectures", "—", theirs, command, "study/results")
    grid = several[0]
    return Row(item, NOT_SHOWN, grid.description(), "see the results chapter", theirs, command, "study/results")


def comparability_row(results_dir: Path = RESULTS_DIR) -> Row:
    """Sharpness is not comparable across architectures: per family the range of the Fisher-Rao norm."""
    item = "Sharpness is not comparable across architectures: each network family has its own scale"
    theirs = "the paper's argument (Section 5): sharpness values of different architectures are not compared"
    finding = _family_claim("scales", results_dir) or (NOT_RUN, "No run of ours across families is committed yet.")
    return _across_row(item, finding, _families_ran(results_dir)[1], theirs, "families")


def _fewest_seeds(runs: pd.DataFrame, controls) -> int:
    """The smallest number of seeds any of `controls` has among `runs` (0 for a control without runs)."""
    return int(runs.groupby("control")["seed"].nunique().reindex(list(controls)).fillna(0).min())


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def appendix_f1_row(grids: list[CommittedGrid], reference_dir: Path = REFERENCE_DIR) -> Row:
    """Appendix F.1: the augmentation controls' sharpness measured again on clean training images. Status:
    reproduced where every verdict 'sharper than the baseline' is the same on both kinds of data, over runs
    that reached a minimum; not reproduced where the augmentation runs reached none."""
    item = "Appendix F.1: sharpness of the augmentation controls on clean instead of augmented data"
    theirs = prose.appendix_f1_paper_sentence(reference_dir)
    command = "`python -m sharpness cpu-study` (measures aug controls on both)"
    for grid in grids:
        check = stats.clean_data_check(grid.runs) if grid.real_data and not grid.is_rho_sweep else pd.DataFrame()
        if not len(check):
            continue
        command = grid.command(default="`evaluate_run(..., also_clean=True)`")
        checked = grid.minimum_check()
        kept = minimum.at_minimum(stats.finished_runs(grid.runs), checked)
        measured = checked[checked["control"].isin(set(check["control"]) | {"baseline"})]
        compared = [*check["control"].unique(), "baseline"]
        if _fewest_seeds(kept, compared) < claims.MIN_SEEDS:
            everything = f"over every run (not all minima): {_lower_first(prose.clean_data_sentence(check))}"
            if _fewest_seeds(stats.finished_runs(grid.runs), compared) < claims.MIN_SEEDS:
                return Row(item, TOO_FEW_SEEDS, grid.description(), f"fewer than {claims.MIN_SEEDS} seeds of the "
                           f"augmentation controls or the baseline; {everything}", theirs, command, "study/results")
            return Row(item, NOT_REPRODUCED, grid.description(), f"too few runs at a minimum to compare: "
                       f"{minimum.reasons_sentence(measured)}; {everything}", theirs, command, "study/results")
        at_minimum = stats.clean_data_check(kept)
        same = (at_minimum["sharper than baseline (augmented)"] == at_minimum["sharper than baseline (clean)"]).all()
        return Row(item, REDUCED_SCALE if same else PARTLY, grid.description(),
                   f"runs at a minimum: {prose.clean_data_sentence(at_minimum)}", theirs, command, "study/results")
    return Row(item, NOT_RUN, "no run measured on both kinds of data", "—", theirs, command, "study/results")


def status_rules() -> str:
    """Markdown: how every row's status follows from the data (the claims' rule, then each other row's)."""
    from ..measuring.landscape import PAPER_RESOLUTION
    from ..studies.cpu_families import MINIMA_PER_CONTROL

    return "\n".join([
        f"- **Claims on a grid** (central claim, the paper's tables, the sharpest model, the SAM radius): {STATUS_RULE}",
        f"- **Tables 1-2**: reproduced where every Hessian statistic of every minimum is within {TOY_TOLERANCE:.1%} "
        "of the printed figure, contradicted otherwise.",
        "- **Toy fitting**: reproduced (at its scale) where every function was fitted and the Spearman correlation "
        "with Table 1 is positive at every ranked target; contradicted where it is at most 0 at every one; partly "
        "reproduced otherwise. With 3 to 7 functions no correlation is significant, so every target is listed.",
        f"- **Toy gaps**: the claim holds at a target where the functions' mean gaps span at most "
        f"{GAP_SIMILAR_SHARE:.0%} of the target loss and their top eigenvalues differ at least x{SHARPNESS_DIFFERS_FOLD:g}; "
        "reproduced at every ranked target, partly at some, not shown at none.",
        f"- **Appendix F.1**: over runs at a minimum ({claims.MIN_SEEDS} or more seeds of each augmentation control "
        "and the baseline), reproduced where every verdict 'sharper than the baseline' (by means) is the same on "
        "clean and augmented data, partly reproduced where some flip.",
        f"- **Landscapes**: not reproduced where a surface is drawn around a run that reached no minimum; the "
        f"resolution is read from the files (the paper's: {PAPER_RESOLUTION} x {PAPER_RESOLUTION}).",
        "- **Across networks and settings** (our CPU families and batch x learning-rate sweep, runs at a minimum; "
        "`book.across`): Simpson's paradox reproduced where pooling reverses or nearly removes a trend that every "
        "family shares, partly where it only weakens it, not reproduced where it keeps it or the families disagree; "
        "no Goldilocks zone reproduced where some family has a worse control inside the band of the best controls' "
        "sharpness, contradicted where none has; not comparable reproduced where some pair of families has disjoint "
        "ranges; Appendix G.1 reproduced where aug + SAM is best and sharper than the baseline in every cell and the "
        "learning rate moves every control's sharpness beyond its seeds' range at every batch size, contradicted where "
        "none of the three holds anywhere, partly otherwise; Figure 1 reproduced at a reduced scale where "
        f"every cell of the sweep has {MINIMA_PER_CONTROL['batch-lr']} runs at a minimum of every control (a run that "
        "missed is left out, and the chapter names it), not reproduced where no run reached one, partly otherwise. "
        "One family or cell so far: not run yet.",
        "- **Decision boundaries**: per stored study and measure (Hessian top eigenvalue, trace, Fisher-Rao norm), "
        "the Spearman correlation of the class separation with the mean sharpness over the separations every seed "
        "reached; reproduced (at its scale) where every one is negative, contradicted where none is negative and some "
        "positive, not shown where none could be computed or all are 0, partly otherwise; each is listed with its "
        "p-value (few separations: the sign alone decides the status).",
        "- **Rows that need data we have not committed** (the paper's GPU grids, a batch x learning-rate sweep, "
        "several architectures): not run yet.",
    ])


def ledger(results_dir: Path = RESULTS_DIR, reference_dir: Path = REFERENCE_DIR) -> list[Row]:
    """Every row of the ledger, in the paper's order, from what is committed under `results_dir`."""
    grids = committed_grids(results_dir)
    paper = store.paper_results(None, path=reference_dir / "paper_results.csv")
    return [
        toy_hessian_row(reference_dir), toy_fit_row(results_dir), toy_gap_row(results_dir), boundary_row(results_dir),
        central_claim_row(grids, paper), sharpest_model_row(grids, paper), *table_rows(grids, paper),
        goldilocks_row(grids, results_dir), comparability_row(results_dir), batch_lr_row(grids, results_dir),
        *appendix_g_rows(grids, results_dir), appendix_f1_row(grids, reference_dir),
        rho_row(grids, paper), landscape_row(grids, results_dir), simpson_row(grids, results_dir),
    ]


def ledger_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([vars(row) for row in rows])


STATUS_COLOURS = {PAPER_SCALE: "#b7e1b0", REDUCED_SCALE: "#dcefd6", PARTLY: "#eef6d8", NOT_SHOWN: "#f3f0d9",
                  CONTRADICTED: "#f4b6b0", NOT_REPRODUCED: "#f6cfc0", TOO_FEW_SEEDS: "#ececec", STAND_IN: "#fbe3b5",
                  NOT_RUN: "#e6e6e6"}


def _inline_code(text: str) -> str:
    """Escape text for HTML, turning `...` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def ledger_html(rows: list[Row]) -> str:
    """The ledger as a three-column HTML table (item, status, details) that fits a narrow column."""
    body = []
    for row in rows:
        link = f'<a href="{row.chapter}.html">{html.escape(row.item)}</a>'
        details = (f"<b>ran:</b> {_inline_code(row.ran)}<br><b>ours:</b> {_inline_code(row.ours)}"
                   f"<br><b>paper:</b> {_inline_code(row.paper)}<br><b>command:</b> {_inline_code(row.command)}")
        body.append(f'<tr><td>{link}</td><td style="background:{STATUS_COLOURS[row.status]}">{row.status}</td>'
                    f"<td>{details}</td></tr>")
    return ('<table class="ledger"><thead><tr><th>the paper\'s</th><th>status</th><th>what we ran, ours beside '
            "the paper's, and the command</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def status_counts(rows: list[Row]) -> str:
    counts = pd.Series([row.status for row in rows]).value_counts()
    return "; ".join(f"{status}: {counts[status]}" for status in STATUSES if status in counts)
