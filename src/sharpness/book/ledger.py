"""The reproduction ledger: one row per claim, table and figure of the paper, and how far we have shown it.

Every row is derived from what is committed (grid summaries under `results/`, stored toy-fit runs and
landscapes, the paper's reference figures under `results/reference/`), never typed, so the page that
shows it (`book/ledger.md`) changes when results are committed. A row's status is one of `STATUSES`:

- at the paper's scale: the paper's data and network, at least its epochs and seeds;
- at a reduced real scale: the paper's kind of data (real CIFAR, the toy functions themselves), but a
  smaller network, fewer epochs, seeds or points;
- stand-in only: the chapter shows the offline stand-in it trains at build time (digits, small CNN);
- not run yet: nothing of ours bears on it;
- contradicted: a real-data run where fewer than half of the claimed comparisons go the paper's way.
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
from . import prose, stats, tables

PAPER_SCALE = "reproduced at the paper's scale"
REDUCED_SCALE = "reproduced at a reduced real scale"
STAND_IN = "stand-in only"
NOT_RUN = "not run yet"
CONTRADICTED = "contradicted"
STATUSES = (PAPER_SCALE, REDUCED_SCALE, STAND_IN, NOT_RUN, CONTRADICTED)

# The paper's high-dimensional runs: 10 seeds per control (its tables), epochs from sharpness.training.controls.
PAPER_SEEDS = 10
# Data sets the offline stand-in uses: runs on them never count as real-data evidence.
STAND_IN_DATASETS = ("digits",)
# The paper's toy fitting study (sharpness.toys.fit's default FitConfig is the paper's setting).
ARCH_NAMES = {"resnet18": "ResNet-18", "vgg19": "VGG-19", "vgg19_bn": "VGG19-BN", "vit": "ViT"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar10_folder": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny ImageNet"}
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

    def description(self) -> str:
        """What we ran, read from the runs and the provenance: data, network, seeds, epochs, machine."""
        datasets = "/".join(DATASET_NAMES.get(d, d) for d in self.runs["dataset"].unique())
        archs = "/".join(ARCH_NAMES.get(a, a) for a in self.runs["arch"].unique())
        subset = self.train_images()
        epochs = "/".join(map(str, self.epochs())) or "?"
        seeds = self.seeds()
        tier = f"{self.tier.upper()} run; " if self.tier else ""
        return (f"{archs} on {datasets}" + (f" ({subset:,} training images)" if subset else "")
                + f", {len(self.runs['control'].unique())} controls x {len(seeds)} seeds, {epochs} epochs; "
                + f"{tier}{self.provenance.get('machine', 'machine not recorded')}, {str(self.provenance.get('date', ''))[:10]} "
                + f"(`{self.path.name}`)")


def committed_grids(results_dir: Path = RESULTS_DIR) -> list[CommittedGrid]:
    """Every grid summary under `results_dir` (see `registry.committed_grids`), loaded."""
    grids = []
    for path in registry.committed_grids(results_dir):
        try:
            runs, provenance = store.load_grid(path)
        except (ValueError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a readable grid summary ({error}); fix or remove it") from error
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


# --- the controls study: claims checked on a grid ------------------------------------------------

def claim_tally(runs: pd.DataFrame) -> tuple[int, int]:
    """(agreeing, total) (control, metric) comparisons with the baseline that go the paper's way,
    over the sharpness and learned-function metrics with a claim (`stats.claim_check`)."""
    check = stats.claim_check(stats.summarise(runs))
    return (int(check["controls agreeing"].sum()), int(check["controls"].sum())) if len(check) else (0, 0)


def _grid_status(grid: CommittedGrid, dataset: str, runs: pd.DataFrame) -> tuple[str, str]:
    agree, total = claim_tally(runs)
    if not total:  # no finished baseline (or no measure with a claim): nothing was tested, nothing reproduced
        return NOT_RUN, "no comparison with the baseline possible: the grid has no finished baseline run with a claimed measure"
    tally = f"{agree} of {total} comparisons with the baseline go the paper's way"
    if agree < total / 2:
        return CONTRADICTED, tally
    return (PAPER_SCALE if grid.at_paper_scale(dataset) else REDUCED_SCALE), tally


def _paper_tally(paper: pd.DataFrame, dataset: str, arch: str) -> str:
    rows = paper[(paper["dataset"] == dataset) & (paper["arch"] == arch)]
    check = stats.claim_check(rows[rows["rho"].isna() | np.isclose(rows["rho"].fillna(0.05), 0.05)])
    return f"{int(check['controls agreeing'].sum())} of {int(check['controls'].sum())} go its way" if len(check) else "—"


def _accuracy_span(long: pd.DataFrame) -> str:
    """'baseline 0.720 ± 0.002 -> aug_sam 0.908' style: test accuracy of the baseline and the best control."""
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
        item = f"Table: {ARCH_NAMES.get(arch, arch)} on {DATASET_NAMES.get(dataset, dataset)}, six controls"
        theirs = f"{_accuracy_span(paper[(paper['dataset'] == dataset) & (paper['arch'] == arch)])}; {_paper_tally(paper, dataset, arch)}"
        command = (f"`python -m sharpness sweep --datasets {dataset} --archs {arch} --seeds 0 1 2 3 4 5 6 7 8 9 "
                   f"--results results/{dataset}_{arch}.json`")
        matching = [(grid, block) for grid in grids if not grid.is_rho_sweep
                    for (ours_dataset, ours_arch), block in grid.runs.groupby(["dataset", "arch"], sort=False)
                    if stats.paper_setting(ours_dataset, ours_arch, paper)[:2] == (dataset, arch)
                    and stats.paper_setting(ours_dataset, ours_arch, paper)[2]]
        if not matching:
            rows.append(Row(item, NOT_RUN, "nothing yet", "—", theirs, command, "study/results"))
            continue
        grid, block = matching[-1]
        status, tally = _grid_status(grid, dataset, stats.finished_runs(block))
        ours = f"{_accuracy_span(stats.summarise(stats.finished_runs(block)))}; {tally}"
        rows.append(Row(item, status, grid.description(), ours, theirs, command, "study/results"))
    return rows


def central_claim_row(grids: list[CommittedGrid], paper: pd.DataFrame) -> Row:
    """The paper's headline: regularised controls end sharper and compute better functions."""
    item = "Central claim: regularised controls sit at sharper minima and are more accurate, calibrated and robust"
    theirs = f"ResNet-18 on CIFAR-10: {_paper_tally(paper, 'cifar10', 'resnet18')}"
    real = [grid for grid in grids if not grid.is_rho_sweep and grid.real_data]
    command = "`python -m sharpness sweep ... --results results/<dataset>_<arch>.json`"
    if not real:
        return Row(item, STAND_IN,
                   "the study chapters train an offline grid at build time (scikit-learn digits, small CNN, a few epochs)",
                   "not a reproduction: see the results chapter", theirs, command, "study/results")
    grid = real[0]  # the best tier (registry.committed_grids: GPU campaign, then CPU study)
    command = grid.command(default=command)
    runs = stats.finished_runs(grid.runs)
    dataset = runs["dataset"].iloc[0]
    status, tally = _grid_status(grid, stats.paper_setting(dataset, runs["arch"].iloc[0], paper)[0], runs)
    if status == PAPER_SCALE and not stats.paper_setting(dataset, runs["arch"].iloc[0], paper)[2]:
        status = REDUCED_SCALE  # the paper's scale in epochs and seeds, but not one of its networks
    return Row(item, status, grid.description(), tally, theirs, command, "study/results")


def batch_lr_row(grids: list[CommittedGrid]) -> Row:
    """Figure 1 / Appendix F.2: minima over a batch-size x learning-rate sweep."""
    item = "Figure 1 / Appendix F.2: sharpness vs quality over a batch {128, 256} x lr {1e-3, 1e-2} sweep (240 minima)"
    command = "`python -m sharpness sweep ... --batch-size B --lr LR` for each (B, LR) of the sweep"
    for grid in grids:
        columns = [c for c in ("batch_size", "lr") if c in grid.runs.columns]
        if columns and len(grid.runs[columns].drop_duplicates()) > 1 and grid.real_data:
            minima = len(stats.finished_runs(grid.runs))
            return Row(item, REDUCED_SCALE, grid.description(), f"{minima} minima", "240 minima", command, "study/results")
    return Row(item, NOT_RUN, "no batch x learning-rate sweep (the results chapter's scatter shows the controls study's runs, one setting)",
               "—", "240 minima", command, "study/results")


def rho_row(grids: list[CommittedGrid], paper: pd.DataFrame) -> Row:
    item = "SAM radius sweep: rho in {0.5, 0.25, 0.05, 0.025, 0.005, 0.0025}"
    printed = stats.paper_rho_sweep(paper)
    theirs = f"figures printed for rho {', '.join(f'{r:g}' for r in sorted(printed['rho'].unique(), reverse=True))}"
    command = "`python -m sharpness sweep --controls baseline_sam --rhos paper ... --results results/<dataset>_<arch>_rho.json`"
    sweeps = [grid for grid in grids if grid.is_rho_sweep]
    if not sweeps:
        return Row(item, STAND_IN, "the chapter trains an offline sweep at build time (digits, small CNN)",
                   "not a reproduction", theirs, command, "study/rho")
    grid = sweeps[-1]
    command = grid.command(default=command)
    radii = sorted(grid.runs["rho"].dropna().unique(), reverse=True)
    ours = f"radii {', '.join(f'{r:g}' for r in radii)}"
    history = store.load_history(grid.path)
    if len(history):
        checked = stats.minimum_check(history[history["control"] == "baseline_sam"])
        stuck = sorted(checked.loc[~checked["at_minimum"], "rho"].unique(), reverse=True)
        kept = stats.runs_at_minimum(grid.runs[grid.runs["control"] == "baseline_sam"], checked)
        means = stats.rho_means(kept, tables.RHO_METRICS)
        if len(means) >= 2:
            moved = stats.moves_the_papers_way(means)
            ours += (f"; rho {means.index[0]:g} → {means.index[-1]:g}: {sum(moved.values())} of {len(moved)} "
                     "metrics move the paper's way")
        if stuck:
            ours += (f"; no minimum (train accuracy < {stats.MINIMUM_TRAIN_ACCURACY:.0%}) in some or all runs "
                     f"at rho {', '.join(f'{r:g}' for r in stuck)}")
    status = (PAPER_SCALE if grid.at_paper_scale(grid.runs["dataset"].iloc[0]) else REDUCED_SCALE) if grid.real_data else STAND_IN
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
    from ..toys import fit

    paper = fit.FitConfig()
    item = "Toy fitting study: sharper learned minima for more complex functions"
    theirs = f"{len(paper.functions)} functions x {len(paper.seeds)} seeds, {paper.epochs:,} epochs, {paper.train_points:,} points"
    command = "`python -m sharpness.toys.fit --preset full --out results/toy_fit/full`"
    stored = fit.stored_results(results_dir / "toy_fit")
    if not stored:
        return Row(item, REDUCED_SCALE, "the chapter's quick run at build time only", "see the chapter", theirs, command, "toy/fitting")
    longest = stored[-1]
    config = longest.config
    scale = PAPER_SCALE if (config.epochs >= paper.epochs and len(config.seeds) >= len(paper.seeds)
                            and config.train_points >= paper.train_points) else REDUCED_SCALE
    ran = (f"{len(config.functions)} functions x {len(config.seeds)} seeds, {config.epochs:,} epochs, "
           f"{config.train_points:,} points ({longest.provenance.get('machine', '?')})")
    agreement = fit.rank_agreement(longest, "top_eigenvalue").dropna(subset=["spearman"])
    tightest = agreement.iloc[-1] if len(agreement) else None
    if tightest is not None and tightest["spearman"] <= 0:
        scale = CONTRADICTED  # at the tightest target ranked, the learned order is not the analytic one
    ours = ("no target reached by enough functions to rank them" if tightest is None else
            f"top eigenvalue vs Table 1 at loss ≤ {tightest['target']:g}: Spearman {tightest['spearman']:+.2f} "
            f"over {int(tightest['functions'])} functions; never fitted: {', '.join(fit.unfitted_functions(longest)) or 'none'}")
    return Row(item, scale, ran, ours, theirs, command, "toy/fitting")


def boundary_row() -> Row:
    from ..toys import boundary

    full, quick = boundary.BoundaryConfig(), boundary.BoundaryConfig(**boundary.QUICK)
    return Row("Decision boundaries: tighter boundaries give sharper minima", REDUCED_SCALE,
               f"the chapter's quick run at build time: {len(quick.separations)} separations x {len(quick.seeds)} seeds, "
               f"{quick.points_per_class} points per class",
               "see the chapter (test accuracy at the smallest separation says when sharpness comes with memorising)",
               "the paper's synthetic boundary study", f"the chapter with `SETTING = \"full\"` ({len(full.separations)} "
               f"separations x {len(full.seeds)} seeds)", "toy/boundaries")


# --- landscapes, Simpson, appendix ----------------------------------------------------------------

def landscape_row(results_dir: Path = RESULTS_DIR) -> Row:
    item = "Loss landscapes: one filter-normalised 2-D surface per control"
    command = "`python -m sharpness.measuring.landscape --runs-dir runs --dataset cifar10 --arch resnet18 --seed 0 --resolution 51 --out results/landscapes`"
    surfaces = sorted(p for p in (results_dir / "landscapes").glob("*/*/seed*/*.json"))
    if not surfaces:
        return Row(item, STAND_IN, "the chapter computes small surfaces of the offline runs at build time",
                   "not a reproduction", "51 x 51 surfaces, ResNet-18", command, "study/landscapes")
    dataset, arch = surfaces[0].parts[-4], surfaces[0].parts[-3]
    real = dataset not in STAND_IN_DATASETS
    if arch == "cnn_mlp":  # drawn by the CPU study from its seed-0 runs
        command = "`python -m sharpness cpu-study`"
    return Row(item, REDUCED_SCALE if real else STAND_IN,
               f"{len(surfaces)} stored surfaces, {ARCH_NAMES.get(arch, arch)} on {DATASET_NAMES.get(dataset, dataset)}",
               "see the chapter", "51 x 51 surfaces, ResNet-18", command, "study/landscapes")


def simpson_row(grids: list[CommittedGrid]) -> Row:
    item = "Simpson's paradox: pooled over architectures, the sharpness-accuracy trend differs from within each"
    points = stats.paper_control_means("workshop", dataset="cifar10")
    theirs = "the paper's own figures (workshop tables, CIFAR-10), re-analysed: " + prose.simpson_sentence(points)
    several = [grid for grid in grids if grid.real_data and not grid.is_rho_sweep and grid.runs["arch"].nunique() > 1]
    command = "`python -m sharpness sweep --archs resnet18 vgg19 vit ...` (several architectures on one data set)"
    if not several:
        return Row(item, NOT_RUN, "no grid of ours spans two architectures", "—", theirs, command, "study/results")
    grid = several[-1]
    return Row(item, REDUCED_SCALE, grid.description(), "see the results chapter", theirs, command, "study/results")


def appendix_f1_row(grids: list[CommittedGrid]) -> Row:
    """Appendix F.1: the augmentation controls' sharpness measured again on clean training images."""
    item = "Appendix F.1: sharpness of the augmentation controls on clean instead of augmented data"
    theirs = "the paper's appendix repeats the measures on clean data (its figures are not transcribed under results/reference/)"
    for grid in grids:
        check = stats.clean_data_check(grid.runs) if grid.real_data and not grid.is_rho_sweep else pd.DataFrame()
        if len(check):
            command = f"`{grid.settings['command']}`" if grid.settings.get("command") else "`evaluate_run(..., also_clean=True)`"
            return Row(item, REDUCED_SCALE, grid.description(), prose.clean_data_sentence(check), theirs, command, "study/results")
    return Row(item, NOT_RUN, "no run measured on both kinds of data", "—", theirs,
               "`python -m sharpness cpu-study` (measures aug controls on both)", "study/results")


def ledger(results_dir: Path = RESULTS_DIR, reference_dir: Path = REFERENCE_DIR) -> list[Row]:
    """Every row of the ledger, in the paper's order, from what is committed under `results_dir`."""
    grids = committed_grids(results_dir)
    paper = store.paper_results(None, path=reference_dir / "paper_results.csv")
    return [
        toy_hessian_row(reference_dir), toy_fit_row(results_dir), boundary_row(),
        central_claim_row(grids, paper), *table_rows(grids, paper), batch_lr_row(grids), appendix_f1_row(grids),
        rho_row(grids, paper), landscape_row(results_dir), simpson_row(grids),
    ]


def ledger_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([vars(row) for row in rows])


STATUS_COLOURS = {PAPER_SCALE: "#b7e1b0", REDUCED_SCALE: "#dcefd6", STAND_IN: "#fbe3b5", NOT_RUN: "#e6e6e6",
                  CONTRADICTED: "#f4b6b0"}


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
