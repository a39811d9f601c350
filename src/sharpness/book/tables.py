"""Table layout for the pages: ours beside the paper's, the rho sweep, the setup chapter's tables.

Cells are 'mean ± SEM' strings (`stats.format_mean_sem`), headers are short (`prose.METRIC_SHORT`) so
that tables fit a narrow page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..studies.store import METRICS
from ..training.controls import SAM_RHO
from .prose import CONTROL_LEGEND, CONTROL_SHORT, METRIC_SHORT
from .stats import SHARPNESS_METRICS, dataset_arch_pairs, in_our_conventions, format_mean_sem, paper_setting, summarise


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
    paper_rows = in_our_conventions(ours_rows, paper_rows)  # the paper's figure moves beside ours computed its way
    if ours_rows.empty and paper_rows.empty:
        raise ValueError(f"neither we nor the paper have runs for dataset={dataset!r}, arch={arch!r}")
    if metrics is None:
        present = set(ours_rows["metric"]) | set(paper_rows["metric"])
        metrics = [m for m in METRICS if m in present]
    from ..training.controls import CONTROLS  # the paper's order of controls

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


# The learned-function metrics of the comparison tables, in the paper's order.
FUNCTION_METRICS = ("test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement", "generalisation_gap")


# The metrics of the rho sweep's figure and table.
RHO_METRICS = ("test_accuracy", "test_ece", "fisher_rao_norm", "relative_flatness", "sam_sharpness")


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


def rho_state_table(runs: pd.DataFrame, checked: pd.DataFrame, rho_scale: float, weight_norm: float) -> pd.DataFrame:
    """Per radius, why it trains or not, from the runs themselves: the step SAM took (the paper's rho x
    `rho_scale`) against ||theta_0|| (`weight_norm`), how many runs reached a minimum, and the trained
    network's state on its measured images (median over seeds): accuracy, the share of hidden ReLUs that
    never fire, and the spread of its logits (a network that predicts one constant has none)."""
    state = {"measured_set.accuracy": "accuracy (measured images)", "measured_set.dead_unit_fraction": "dead hidden units",
             "measured_set.logit_spread": "logit spread"}
    rows = []
    for rho, block in runs.groupby("rho", sort=True):
        verdicts = checked[np.isclose(checked["rho"].astype(float), float(rho))]
        row = {"rho (the paper's)": f"{rho:g}", "radius used": f"{rho * rho_scale:.3g}",
               "radius / ||θ₀||": f"{100 * rho * rho_scale / weight_norm:.2g}%",
               "runs at a minimum": f"{int(verdicts['at_minimum'].sum())} of {len(verdicts)}"}
        for column, name in state.items():
            value = block[column].median() if column in block.columns else np.nan
            row[name] = "—" if pd.isna(value) else f"{value:.1%}" if "fraction" in column or "accuracy" in column else f"{value:.3g}"
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_tables(study, paper: pd.DataFrame, summary: pd.DataFrame | None = None,
                      checked: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(caption, `comparison_table`) per (dataset, arch) of the study: first the learned function's
    metrics, then sharpness, each beside the paper's matching setting (`paper_setting`). With `checked`
    (a `minimum.check`), each table ends with a row counting our runs at a minimum per control."""
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
            tables.append((f"{kind}: {caption}. {CONTROL_LEGEND}", with_minimum_row(narrow_layout(table), checked)))
    return tables


MINIMUM_ROW = "runs at a minimum"


def with_minimum_row(table: pd.DataFrame, checked: pd.DataFrame | None) -> pd.DataFrame:
    """`table` (controls as short-named columns) with a last row counting our runs at a minimum per control
    ('k of n', `minimum.counts`); unchanged without `checked`."""
    if checked is None:
        return table
    from ..training import minimum

    counts = minimum.counts(checked).rename(index=CONTROL_SHORT)
    key = (MINIMUM_ROW, "ours") if isinstance(table.index, pd.MultiIndex) else MINIMUM_ROW
    row = pd.DataFrame([[counts.get(c, "—") for c in table.columns]], columns=table.columns,
                       index=pd.MultiIndex.from_tuples([key], names=table.index.names) if isinstance(key, tuple) else [key])
    return pd.concat([table, row])


def beside_paper_sharpness(summary: pd.DataFrame) -> tuple[str, ...]:
    """The sharpness metrics set beside the paper's: relative flatness in the paper's convention where
    we measured it that way (the paper's values scale with its batch count; compare orderings)."""
    if "relative_flatness_paper" in set(summary["metric"]):
        return ("fisher_rao_norm", "sam_sharpness", "relative_flatness_paper")
    return SHARPNESS_METRICS


def ours_table(summary: pd.DataFrame, metrics, checked: pd.DataFrame | None = None) -> pd.DataFrame:
    """Controls x metrics of 'mean ± SEM' for figures the paper has no counterpart of (one dataset/arch),
    with a last column counting the runs at a minimum where `checked` (a `minimum.check`) is given."""
    from ..training.controls import CONTROLS

    rows = summary[summary["metric"].isin(metrics) & (summary["rho"].isna() | np.isclose(summary["rho"].fillna(0.05), 0.05))]
    cells = rows.assign(figure=[format_mean_sem(m, e) for m, e in zip(rows["mean"], rows["sem"])])
    table = cells.pivot_table(index="control", columns="metric", values="figure", aggfunc="first")
    table = table.reindex(index=[c for c in CONTROLS if c in table.index], columns=[m for m in metrics if m in table.columns])
    if checked is not None and len(table.columns):
        from ..training import minimum

        table[MINIMUM_ROW] = minimum.counts(checked).reindex(table.index)
    return table.fillna("—")


CLEAN_CHECK_HEADERS = {"augmented data": "augmented", "clean data": "clean",
                       "sharper than baseline (augmented)": "sharper (aug.)",
                       "sharper than baseline (clean)": "sharper (clean)"}


def clean_data_table(check: pd.DataFrame) -> pd.DataFrame:
    """`clean_data_check` for the page: short measure, control and column names, yes/no verdicts."""
    table = check.replace({"measure": METRIC_SHORT, "control": CONTROL_SHORT}).rename(columns=CLEAN_CHECK_HEADERS)
    for column in ("sharper (aug.)", "sharper (clean)"):
        table[column] = table[column].map({True: "yes", False: "no"})
    return table


def narrow_layout(table: pd.DataFrame) -> pd.DataFrame:
    """A `comparison_table` turned on its side: one row per (metric, ours/paper), one short-named column
    per control, so six columns fit a narrow page instead of two per metric."""
    turned = table.T.rename(columns=CONTROL_SHORT).rename(index=METRIC_SHORT, level="metric")
    turned.columns.name = None
    return turned


SETUP_DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "digits")


def controls_table() -> pd.DataFrame:
    """One row per control: which regularisers it switches on (`sharpness.training.controls`)."""
    from ..training.controls import CONTROLS, get_control

    return pd.DataFrame(
        [{"control": c.name, "augmentation": c.augment, "SAM": c.sam, "weight decay": c.weight_decay}
         for c in map(get_control, CONTROLS)]
    )


def hyperparameter_table(datasets=SETUP_DATASETS) -> pd.DataFrame:
    """One row per data set: its fixed SGD settings (`sharpness.training.controls.hyperparameters`)."""
    from ..training.controls import hyperparameters

    return pd.DataFrame([{"data set": name, **vars(hyperparameters(name))} for name in datasets])


CLAIM_TABLE_COLUMNS = {"n": "n", "difference": "mean diff.", "p": "p (t)", "p_holm": "p (Holm)",
                       "p_wilcoxon": "p (Wilcoxon)", "verdict": "verdict"}


def claim_test_table(tests: pd.DataFrame) -> pd.DataFrame:
    """The deciding tests of a `claims.claim_tests` as a page table: (claim, measure, control) rows with n,
    mean difference, the t-test's p, its Holm-adjusted p, Wilcoxon's p beside it, and the verdict."""
    deciding = tests[tests["deciding"]].copy()
    deciding["measure"] = deciding["metric"].map(lambda m: METRIC_SHORT.get(m, m))
    deciding["control"] = deciding["control"].map(lambda c: CONTROL_SHORT.get(c, c))
    table = deciding.set_index(["claim", "measure", "control"])[list(CLAIM_TABLE_COLUMNS)]
    return table.rename(columns=CLAIM_TABLE_COLUMNS)


def claims_beside_paper(tally, paper: pd.DataFrame, dataset: str = "cifar10", arch: str = "resnet18") -> pd.DataFrame:
    """Per claim, the controls that hold it: ours over the runs at a minimum (deciding), ours over every run
    (labelled: not minima), and the paper's by the direction of its means (it prints no per-seed values)."""
    from . import claims

    theirs = paper[(paper["dataset"] == dataset) & (paper["arch"] == arch)]
    theirs = theirs[theirs["rho"].isna() | np.isclose(theirs["rho"].fillna(SAM_RHO), SAM_RHO)]
    columns = {"ours, runs at a minimum": tally.summary, "ours, all runs (not all at a minimum)": tally.all_summary,
               f"paper ({arch}, {dataset}), direction of means": claims.claim_summary(claims.mean_verdicts(theirs))}
    cells = {}
    for label, summary in columns.items():
        cells[label] = {row["claim"]: _holders(row) for row in summary.to_dict("records")}
    return pd.DataFrame(cells, dtype=object).rename_axis("claim (vs baseline)").fillna("—")


def _holders(row: dict) -> str:
    from . import claims

    if row["majority"] == claims.NOT_TESTED:
        return "not tested"
    if not row["tested"]:
        return "not enough seeds" if row["too few seeds"] else "—"
    names = ", ".join(CONTROL_SHORT.get(c, c) for c in row["holds for"]) or "none"
    return f"{len(row['holds for'])} of {row['tested']} ({names})"
