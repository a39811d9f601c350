"""The paper's claims across networks and settings, computed from per-run tables: Simpson's paradox (within-family
against pooled trends), "no Goldilocks zone", sharpness not comparable across families, and Figure 1's
batch x lr claims. Pure functions of tables (one row per run or per control mean); each returns its data and a
computed status, "not run yet" when there are no runs; `*_finding(path)` read a committed grid and return
(status, sentence) for the ledger.

Which runs count: only those at a minimum (`at_minimum`, written into each row of the grids of
`sharpness.studies.cpu_families` by the study's criterion), since sharpness describes a minimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..studies import store
from ..training.controls import CONTROLS, SAM_RHO
from ..training import minimum
from ..training.models import ARCHS
from . import prose, stats

NOT_RUN = "not run yet"
TOO_FEW = "too few runs"
MIN_POINTS = 3  # a within-family correlation needs at least this many points
FAMILY = "arch"
CELL = ("batch_size", "lr")
# Figure 1's axes: sharpness measures on x, the quality of the function on y.
FIGURE1_SHARPNESS = ("fisher_rao_norm", "relative_flatness")
FIGURE1_QUALITY = ("generalisation_gap", "train_loss", "test_accuracy", "test_ece")
# Which way is better for a quality metric (the claim direction against the baseline says it).
HIGHER_IS_BETTER = {metric: direction == "greater" for metric, direction in stats.CLAIM_DIRECTION.items()}
HIGHER_IS_BETTER["train_loss"] = False


@dataclass
class Finding:
    """A computed status, one sentence that says why, and the table it was read from."""

    status: str
    sentence: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def pair(self) -> tuple[str, str]:
        return self.status, self.sentence


def usable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished runs at a minimum (all finished runs where no verdict was recorded)."""
    if not len(runs):
        return runs
    kept = runs[runs.get("status", pd.Series("finished", index=runs.index)) == "finished"]
    if "at_minimum" in kept.columns:
        kept = kept[kept["at_minimum"].fillna(False).astype(bool)]
    return kept


def control_means(runs: pd.DataFrame, metrics, by=(FAMILY,)) -> pd.DataFrame:
    """One row per (`by`..., control): the mean over seeds of each metric, and the seed count."""
    by = [*by, "control"]
    metrics = [m for m in metrics if m in runs.columns]
    if not len(runs):
        return pd.DataFrame(columns=[*by, *metrics, "seeds"])
    grouped = runs.groupby(by, sort=False)
    return grouped[metrics].mean().join(grouped.size().rename("seeds")).reset_index()


def named_networks(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with its family column read as the networks' names (`prose.network_name`), for the page."""
    if FAMILY not in table.columns:
        return table
    return table.assign(**{FAMILY: table[FAMILY].map(prose.network_name)}).rename(columns={FAMILY: "network"})


# --- Simpson's paradox ------------------------------------------------------------------------------


def correlation_row(sharpness, quality) -> dict:
    """n, Spearman and Pearson (on log10 sharpness) with their p-values, and the slope per decade of sharpness."""
    x, y = np.asarray(sharpness, dtype=float), np.asarray(quality, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    row = {"n": int(len(x)), "spearman": np.nan, "spearman_p": np.nan, "pearson": np.nan, "pearson_p": np.nan,
           "slope_per_decade": np.nan}
    if len(x) >= MIN_POINTS and len(np.unique(x)) > 1 and len(np.unique(y)) > 1:
        spearman, pearson = scipy_stats.spearmanr(x, y), scipy_stats.pearsonr(np.log10(x), y)
        row.update(spearman=float(spearman.statistic), spearman_p=float(spearman.pvalue),
                   pearson=float(pearson.statistic), pearson_p=float(pearson.pvalue),
                   slope_per_decade=stats.decade_slope(x, y))
    return row


def trends(points: pd.DataFrame, measure: str, quality: str, group: str = FAMILY) -> pd.DataFrame:
    """The trend of `quality` against `measure` within each `group` and pooled over all of them (last row)."""
    rows = [{group: name, **correlation_row(block[measure], block[quality])} for name, block in points.groupby(group, sort=False)]
    rows.append({group: "pooled", **correlation_row(points[measure], points[quality])})
    return pd.DataFrame(rows)


def simpson(points: pd.DataFrame, measure: str, quality: str, group: str = FAMILY) -> Finding:
    """Does pooling over families reverse, remove or weaken the within-family trend? (Spearman correlations,
    judged by `stats.simpson_finding`.) Status: NOT_RUN, TOO_FEW, or the finding ('reverses', ...)."""
    name, label = prose.metric_name(measure), prose.metric_name(quality)
    if not len(points) or measure not in points.columns or quality not in points.columns:
        return Finding(NOT_RUN, f"{name} against {label}: no runs of ours across families yet.")
    table = trends(points, measure, quality, group)
    within = table[table[group] != "pooled"]
    judged = within[within["n"] >= MIN_POINTS]
    if len(judged) < 2:
        return Finding(TOO_FEW, f"{name} against {label}: {len(judged)} famil{'y has' if len(judged) == 1 else 'ies have'} "
                                f"{MIN_POINTS} or more points; the comparison needs two.", table)
    pooled = float(table.loc[table[group] == "pooled", "spearman"].iloc[0])
    finding = stats.simpson_finding(judged["spearman"].tolist(), pooled)
    low, high = f"{judged['spearman'].min():+.2f}", f"{judged['spearman'].max():+.2f}"
    span = f"{low} in every family" if low == high else f"{low} to {high}"
    if finding == "mixed within":
        sentence = f"{name} against {label}: the families disagree in sign (Spearman {span}; pooled {pooled:+.2f})."
    elif finding == "no slope":
        sentence = f"{name} against {label}: no correlation to compare."
    else:
        direction = "rises" if judged["spearman"].min() > 0 else "falls"
        sentence = (f"{name} against {label}: {label} {direction} with sharpness within every family (Spearman {span}); "
                    f"pooled over families the trend {prose.SIMPSON_PHRASES[finding]} ({pooled:+.2f}).")
    return Finding(finding, sentence, table)


# --- no Goldilocks zone -------------------------------------------------------------------------------


def goldilocks(points: pd.DataFrame, measure: str, quality: str = "test_accuracy", group: str = FAMILY) -> Finding:
    """Is there one level of sharpness that is best everywhere? `points`: one row per (group, control).

    Per family: the best control by `quality`, its sharpness, and whether it is the family's sharpest. The band
    is [lowest, highest] sharpness of the families' best controls; a Goldilocks zone exists when, in every
    family, the best control is the only one whose sharpness falls in that band. Status: NOT_RUN, TOO_FEW,
    'no Goldilocks zone' or 'a Goldilocks zone'."""
    name, label = prose.metric_name(measure), prose.metric_name(quality)
    if not len(points) or measure not in points.columns or quality not in points.columns:
        return Finding(NOT_RUN, f"{name}: no runs of ours across families yet.")
    higher = HIGHER_IS_BETTER.get(quality, True)
    rows = []
    for family, block in points.dropna(subset=[measure, quality]).groupby(group, sort=False):
        if len(block) < 2:
            continue
        best = block.loc[block[quality].idxmax() if higher else block[quality].idxmin()]
        rows.append({group: family, "best control": best["control"], f"best {quality}": best[quality],
                     "its sharpness": best[measure], "controls": len(block),
                     "best is sharpest": bool(best[measure] == block[measure].max()),
                     "_sharpness": block[measure].to_numpy(), "_best": best[measure]})
    if len(rows) < 2:
        return Finding(TOO_FEW, f"{name}: {len(rows)} famil{'y' if len(rows) == 1 else 'ies'} with two or more controls; "
                                "the comparison needs two.")
    low, high = min(r["_best"] for r in rows), max(r["_best"] for r in rows)
    for row in rows:
        inside = (row["_sharpness"] >= low) & (row["_sharpness"] <= high)
        row["others in band"] = int(inside.sum()) - 1
    table = pd.DataFrame(rows).drop(columns=["_sharpness", "_best"])
    sharpest = int(table["best is sharpest"].sum())
    zone = bool((table["others in band"] == 0).all())
    status = "a Goldilocks zone" if zone else "no Goldilocks zone"
    sentence = (f"{name}: the sharpest control is the best by {label} in {sharpest} of {len(table)} families; the best "
                f"controls' sharpness spans {low:.3g} to {high:.3g}, and "
                + ("no other control falls in that band in any family, so one band picks the best everywhere."
                   if zone else f"{int((table['others in band'] > 0).sum())} famil"
                   f"{'y has' if int((table['others in band'] > 0).sum()) == 1 else 'ies have'} a worse control inside it: "
                   "no single level of sharpness is best everywhere."))
    return Finding(status, sentence, table)


def ranges_apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (lowest, highest) ranges do not overlap at all; ranges that touch are not apart."""
    return bool(a[1] < b[0] or b[1] < a[0])


def scale_comparison(points: pd.DataFrame, measure: str, group: str = FAMILY) -> Finding:
    """Sharpness is not comparable across families: per family the range of `measure`, and how many pairs of
    families have ranges that do not overlap at all. Status: NOT_RUN, TOO_FEW, 'disjoint ranges' or 'overlapping'."""
    name = prose.metric_name(measure)
    if not len(points) or measure not in points.columns:
        return Finding(NOT_RUN, f"{name}: no runs of ours across families yet.")
    table = points.groupby(group, sort=False)[measure].agg(["min", "median", "max", "count"]).reset_index()
    table = table[table["count"] >= MIN_POINTS]  # a range needs a few controls: one run's value is no scale
    if len(table) < 2:
        return Finding(TOO_FEW, f"{name}: {len(table)} famil{'y has' if len(table) == 1 else 'ies have'} "
                                f"{MIN_POINTS} or more controls at a minimum; the comparison needs two.", table)
    pairs = [(a, b) for i, a in enumerate(table.itertuples()) for b in list(table.itertuples())[i + 1:]]
    disjoint = sum(ranges_apart((a.min, a.max), (b.min, b.max)) for a, b in pairs)
    ratio = table["median"].max() / table["median"].min()
    status = "disjoint ranges" if disjoint else "overlapping"
    return Finding(status, f"{name}: the family medians differ by a factor {ratio:.3g}; {disjoint} of {len(pairs)} pairs of "
                           "families have ranges that do not overlap at all.", table)


# --- Figure 1 / Appendix F.2: the batch x lr sweep --------------------------------------------------------


def cell_label(batch_size, lr) -> str:
    return f"batch {int(batch_size)}, lr {float(lr):g}"


CLEAR_LEAD = "aug_sam ahead beyond the seeds' range"  # the G.1 table's column: its lead over the runner-up is no tie


def figure1_claims(runs: pd.DataFrame, measure: str = "fisher_rao_norm", quality: str = "test_accuracy",
                   seeds_needed: int = 1) -> Finding:
    """Appendix G.1 on a batch x lr grid: in each cell, is aug_sam the best control by `quality`, and sharper than
    the baseline by `measure` (control means; where aug_sam is best, whether its seeds' range of `quality` is apart
    from the runner-up's, the sentence counting those cells)? And does the learning rate move every control's absolute sharpness
    (from the smallest to the largest lr at each batch size, beyond the control's seeds' range: a move inside the
    seeds' spread is no effect)? The batch size's move at each lr is reported the same way. Only cells with
    `seeds_needed` runs at a minimum of every control in CONTROLS count (a mean of one seed, or a cell missing a
    control, is not the paper's claim); the others stay in the table, marked and named. Status: NOT_RUN, TOO_FEW
    (fewer than two cells counted), 'holds in every cell' (aug_sam best and sharper in every cell counted, and the
    lr moving every control at every batch size with two lrs counted, of which there must be one), 'holds in no
    cell' (none of the three anywhere), 'holds in part' (the rest: the sentence counts each part)."""
    name, label = prose.metric_name(measure), prose.metric_name(quality)
    if not len(runs) or not set(CELL) <= set(runs.columns):
        return Finding(NOT_RUN, "No batch x learning-rate sweep of ours yet.")
    runs = usable_runs(runs)
    means = control_means(runs, [measure, quality], by=CELL)
    # what each mean rests on: the fewest runs at a minimum of any control, one never run counting 0
    seeds = minima_per_control(runs, CELL, seeds_needed).set_index(list(CELL))["fewest"]
    spread, quality_spread = seed_spread(runs, measure), seed_spread(runs, quality)
    # a cell's epochs, where the runs record them (a lower lr is given more epochs to reach a minimum)
    epochs = (runs.groupby(list(CELL))["epochs"].agg(lambda e: int(e.iloc[0]) if e.nunique() == 1 else None)
              if "epochs" in runs.columns else pd.Series(dtype=object))
    higher = HIGHER_IS_BETTER.get(quality, True)
    rows = []
    for (batch, lr), block in means.groupby(list(CELL), sort=True):
        block = block.set_index("control")
        # a cell without aug_sam or the baseline rests on 0 seeds of it: listed and named as not counted, not compared
        pair = {"aug_sam", "baseline"} <= set(block.index)
        # stable: among equal means the first control wins, as idxmax picked it before the runner-up was needed
        ranked = block[quality].sort_values(ascending=not higher, kind="stable").index if pair else []
        best = ranked[0] if pair else None
        # a lead inside the seeds' spread is no lead: aug_sam's seeds against the runner-up's
        clear = (ranges_apart(*(tuple(quality_spread.loc[(batch, lr, control), ["min", "max"]]) for control in ranked[:2]))
                 if best == "aug_sam" and len(ranked) > 1 else None)
        baseline = spread.reindex([(batch, lr, "baseline")]).iloc[0]
        rows.append({"cell": cell_label(batch, lr), "batch_size": batch, "lr": lr, "epochs": epochs.get((batch, lr)),
                     "best control": best,
                     "aug_sam best": best == "aug_sam" if pair else None,
                     CLEAR_LEAD: clear,
                     "aug_sam sharper than baseline": bool(block.loc["aug_sam", measure] > block.loc["baseline", measure])
                     if pair else None,
                     "baseline sharpness": baseline["mean"], "baseline lowest seed": baseline["min"],
                     "baseline highest seed": baseline["max"], "controls": len(block), "seeds": int(seeds.loc[(batch, lr)])})
    table = pd.DataFrame(rows)
    if len(table):  # whether a cell counts, beside its name: in a table wider than the page it stays in view
        table.insert(1, "counted", table["seeds"] >= seeds_needed)
    waiting = "" if table.empty or table["counted"].all() else (
        f" Not counted yet, fewer than {seeds_needed} seed{'s' * (seeds_needed != 1)} of some control: "
        + "; ".join(f"{cell} ({seeds} seed{'s' * (seeds != 1)})" for cell, seeds in
                    table.loc[~table["counted"], ["cell", "seeds"]].itertuples(index=False)) + ".")
    counted = table[table["counted"]] if len(table) else table
    if len(counted) < 2:
        return Finding(TOO_FEW, f"{len(counted)} cell{'s' * (len(counted) != 1)} with {seeds_needed} or more seeds of "
                                f"every control, aug_sam and the baseline among them; the sweep needs two or more."
                                + waiting, table)
    parts = counted[["aug_sam best", "aug_sam sharper than baseline"]].astype(bool)
    axes = [AxisMove.of(spread, fixed, block, varied) for fixed, block, varied in _sweep_axes(counted)]
    lr_moves = [axis.every_control_moved for axis in axes if axis.varied == "lr"]
    status = ("holds in every cell" if parts.all(axis=None) and lr_moves and all(lr_moves)
              else "holds in no cell" if not parts.any(axis=None) and not any(lr_moves) else "holds in part")
    lr_part = (f"; the learning rate moves every control's {name} beyond its seeds' range at {sum(lr_moves)} of "
               f"{len(lr_moves)} batch size{'s' * (len(lr_moves) != 1)}" if lr_moves
               else "; one learning rate counted, so its effect on sharpness is not judged yet")
    seeds = "; ".join(f"{cell}: {count}" for cell, count in zip(counted["cell"], counted["seeds"]))
    best_cells = int(counted["aug_sam best"].sum())
    clear_cells = int(counted[CLEAR_LEAD].eq(True).sum())
    margin = ("" if not best_cells else f" (ahead of the runner-up beyond the seeds' range in {clear_cells} of them)"
              if best_cells > 1 else f" (its lead over the runner-up {'beyond' if clear_cells else 'within'} the seeds' range)")
    sentence = (f"aug_sam is the best control by {label} in {best_cells} of {len(counted)} cells{margin} and "
                f"sharper than the baseline by {name} in {int(counted['aug_sam sharper than baseline'].sum())}" + lr_part
                + "." + "".join(f" {axis.sentence(name)}" for axis in axes) + reversals(axes, name)
                + f" Control means; seeds per cell, the fewest of any control: {seeds}." + waiting)
    return Finding(status, sentence, table)


def seed_spread(runs: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Each control's `measure` over its seeds in each cell: min, mean and max, indexed by (batch_size, lr, control)."""
    return runs.groupby([*CELL, "control"])[measure].agg(["min", "mean", "max"])


def sharpness_per_cell(runs: pd.DataFrame, measure: str = "fisher_rao_norm") -> pd.DataFrame:
    """One row per control, one column per cell: 'mean (lowest-highest seed)' of `measure` over the runs at a
    minimum, the figures G.1's moves along the learning rate and the batch size are read from."""
    runs = usable_runs(runs)
    if not len(runs) or not set(CELL) <= set(runs.columns):
        return pd.DataFrame()
    spread = seed_spread(runs, measure)
    text = pd.Series([f"{mean:.3g} ({low:.3g}-{high:.3g})" for low, mean, high in spread.to_numpy()], index=spread.index)
    table = text.unstack(list(CELL))
    table = table.reindex([control for control in CONTROLS if control in table.index])
    table.columns = [cell_label(batch, lr) for batch, lr in table.columns]
    return table.rename_axis("control").reset_index()


AXIS_NAMES = {"lr": "learning rate", "batch_size": "batch size"}


def _sweep_axes(cells: pd.DataFrame):
    """(label of the value held, its cells, the column varied) for each line of the sweep along which more than one
    value of the other axis was counted: lr at a fixed batch size, batch size at a fixed lr."""
    for held, varied in (("batch_size", "lr"), ("lr", "batch_size")):
        for value, block in cells.groupby(held):
            if block[varied].nunique() > 1:
                yield (f"batch {int(value)}" if held == "batch_size" else f"lr {float(value):g}"), block, varied


@dataclass
class AxisMove:
    """Along one line of the sweep (`fixed` held, `varied` from its smallest to its largest value counted): each
    control's mean sharpness at both ends and whether its seeds' ranges there are apart (the move exceeds the
    seeds' spread)."""

    fixed: str
    varied: str
    ends: tuple[str, str]  # 'lr 0.001', 'lr 0.01'
    means: dict[str, tuple[float, float]]
    ranges: dict[str, tuple[tuple[float, float], tuple[float, float]]]  # (lowest, highest seed) at each end
    epochs: tuple[int | None, int | None] = (None, None)  # each end's training length, where its runs record one

    @classmethod
    def of(cls, spread: pd.DataFrame, fixed: str, block: pd.DataFrame, varied: str) -> "AxisMove":
        low, high = (row for _, row in block.sort_values(varied).iloc[[0, -1]].iterrows())
        ends = tuple(f"lr {float(row['lr']):g}" if varied == "lr" else f"batch {int(row['batch_size'])}" for row in (low, high))
        epochs = tuple(int(row["epochs"]) if pd.notna(row.get("epochs")) else None for row in (low, high))
        means, ranges = {}, {}
        for control in CONTROLS:
            at = [spread.reindex([(row["batch_size"], row["lr"], control)]).iloc[0] for row in (low, high)]
            if any(pd.isna(end["mean"]) for end in at):
                continue
            means[control] = (at[0]["mean"], at[1]["mean"])
            ranges[control] = ((at[0]["min"], at[0]["max"]), (at[1]["min"], at[1]["max"]))
        return cls(fixed, varied, ends, means, ranges, epochs)

    @property
    def moved(self) -> dict[str, bool]:
        """Per control: whether its seeds' ranges at the two ends are apart."""
        return {control: ranges_apart(*ends) for control, ends in self.ranges.items()}

    @property
    def every_control_moved(self) -> bool:
        return bool(self.moved) and all(self.moved.values())

    @property
    def direction(self) -> str | None:
        """'higher' or 'lower': where every control that moved went at the far end; None where none moved or they split."""
        rose = {self.means[c][1] > self.means[c][0] for c, apart in self.moved.items() if apart}
        return None if len(rose) != 1 else "higher" if rose.pop() else "lower"

    @property
    def epochs_differ(self) -> bool:
        return None not in self.epochs and self.epochs[0] != self.epochs[1]

    def sentence(self, name: str) -> str:
        """'At batch 128, from lr 0.001 (1,200 epochs) to lr 0.01 (120 epochs) the Fisher-Rao norm moves beyond its
        seeds' range for 2 of 6 controls, all higher at lr 0.01: aug (0.738 to 1.73), ...; not the baseline's
        (0.123, seeds 0.121-0.125, to 0.119, seeds ...).' The epochs are named where the two ends differ."""
        verdicts = self.moved
        moved = [c for c, apart in verdicts.items() if apart]
        listed = ", ".join(f"{c} ({self.means[c][0]:.3g} to {self.means[c][1]:.3g})" for c in moved)
        rose = sum(self.means[c][1] > self.means[c][0] for c in moved)
        # which way: the same step can sharpen some controls and flatten others
        way = ("" if not moved else f", all {self.direction} at {self.ends[1]}" if self.direction
               else f" ({rose} higher at {self.ends[1]}, {len(moved) - rose} lower)")
        # a move along the sweep may also change the training length (a cell runs until it reaches a minimum)
        start, end = (label + (f" ({epochs:,} epochs)" if self.epochs_differ else "")
                      for label, epochs in zip(self.ends, self.epochs))
        text = (f"At {self.fixed}, from {start} to {end} the {name} moves beyond its seeds' range for "
                f"{len(moved)} of {len(verdicts)} controls{way}" + (f": {listed}" if moved else ""))
        if verdicts.get("baseline") is False:
            (low, high), ((a, b), (c, d)) = self.means["baseline"], self.ranges["baseline"]
            text += f"; not the baseline's ({low:.3g}, seeds {a:.3g}-{b:.3g}, to {high:.3g}, seeds {c:.3g}-{d:.3g})"
        return text + "."


def reversals(axes: list[AxisMove], name: str) -> str:
    """A sentence for each axis whose step moves the controls one way along one line of the sweep and the other way
    along another ('the batch size's effect reverses with the learning rate'), naming the lines whose two ends also
    trained for different lengths: there the move is the axis's and the training length's together."""
    text = ""
    for varied, held in (("lr", "batch_size"), ("batch_size", "lr")):
        lines = [axis for axis in axes if axis.varied == varied and axis.direction]
        if {axis.direction for axis in lines} != {"higher", "lower"}:
            continue
        ways = "; ".join(f"at {axis.fixed} {'' if at else 'the controls that move are '}all {axis.direction} at "
                         f"{axis.ends[1]} than at {axis.ends[0]}" for at, axis in enumerate(lines))
        longer = [f"at {axis.fixed} ({axis.epochs[0]:,} against {axis.epochs[1]:,} epochs)"
                  for axis in lines if axis.epochs_differ]
        longer = " and ".join([", ".join(longer[:-1]), longer[-1]] if len(longer) > 1 else longer)
        text += (f" So the {AXIS_NAMES[varied]}'s effect on the {name} reverses with the {AXIS_NAMES[held]}: {ways}"
                 + (f"; the two ends also trained for different lengths {longer}, so there the move is the training "
                    f"length's as much as the {AXIS_NAMES[varied]}'s" if longer else "") + ".")
    return text


# --- reading committed grids (what the chapter and the ledger call) ----------------------------------------


def minima_per_control(runs: pd.DataFrame, by, needed: int) -> pd.DataFrame:
    """Per subject (the columns `by`: a family, or a cell's batch size and lr): each control's runs at a minimum (a
    control without runs counts 0), the fewest of any control, and whether every control has `needed`."""
    if not len(runs):
        return pd.DataFrame()
    minima = runs.assign(at_minimum=runs.index.isin(usable_runs(runs).index))
    counts = (minima.groupby([*by, "control"])["at_minimum"].sum().unstack("control")
              .reindex(columns=list(CONTROLS)).fillna(0).astype(int))
    counts["fewest"] = counts.min(axis=1)
    counts["complete"] = counts["fewest"] >= needed
    return counts.rename_axis(columns=None).reset_index()


def short_of_minimum(runs: pd.DataFrame, by) -> str:
    """The runs not at a minimum, named (subject, control, seed) with the criterion's reason: what every comparison
    leaves out. Empty where every run reached one."""
    if not len(runs):
        return ""
    missed = runs.drop(usable_runs(runs).index).sort_values([*by, "control", "seed"])
    named = []
    for row in missed.to_dict("records"):
        subject = (cell_label(row["batch_size"], row["lr"]) if tuple(by) == CELL else prose.network_name(row[FAMILY]))
        why = row.get("minimum_reason") if row.get("status", "finished") == "finished" else row.get("status")
        named.append(f"{subject}: {row['control']} seed {int(row['seed'])}" + (f" ({why})" if isinstance(why, str) and why else ""))
    return "; ".join(named)


def load_runs(path: Path) -> pd.DataFrame:
    """The per-run rows of a committed grid (an empty table where none is committed), each with `at_minimum`:
    as recorded in the grid, or judged now from the per-epoch rows committed beside it."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    runs = store.load_grid(path)[0]
    for column, known in (("arch", ARCHS), ("control", CONTROLS)):
        unknown = sorted(set(runs.get(column, pd.Series(dtype=str)).dropna()) - set(known))
        if unknown:  # names from the file reach the page: only the library's own are accepted
            raise ValueError(f"{path}: unknown {column} {unknown[0]!r}; expected one of {', '.join(known)}. "
                             f"Rewrite the file from its runs (python -m sharpness cpu-families) or remove it.")
    if "at_minimum" not in runs.columns:
        runs = minimum_verdicts(runs, store.load_history(path))
    return runs


def minimum_verdicts(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus `at_minimum` and `minimum_reason` by `sharpness.minimum`'s criterion (`minimum.check`), from
    `history`: the per-epoch rows committed beside the grid."""
    checked = minimum.check(runs, history)
    return runs.assign(at_minimum=checked["at_minimum"].to_numpy(), minimum_reason=checked["reason"].to_numpy())


def committed_paths(results_dir: Path | None = None) -> dict[str, Path]:
    """Where the grids these findings read are committed: the families, the CPU study (the CNN-MLP family), and
    the batch x lr sweep; under `results_dir` when given (the same layout as results/)."""
    from ..core.paths import RESULTS_DIR
    from ..studies import cpu_families, cpu_study

    paths = {"families": cpu_families.FAMILIES_GRID, "study": cpu_study.GRID_FILE, "batch_lr": cpu_families.BATCH_LR_GRID}
    return paths if results_dir is None else {name: Path(results_dir) / path.relative_to(RESULTS_DIR) for name, path in paths.items()}


def family_points(families_grid: Path | None = None, study_grid: Path | None = None) -> pd.DataFrame:
    """Control means (runs at a minimum) of every family: the families grid and the CPU study's grid (the CNN-MLP
    family); by default the committed ones (`committed_paths`)."""
    paths = committed_paths()
    grids = (families_grid or paths["families"], study_grid or paths["study"])
    runs = pd.concat([load_runs(p) for p in grids], ignore_index=True)
    runs = usable_runs(runs)
    if len(runs) and "rho" in runs.columns:  # the controls at the default radius only
        runs = runs[runs["rho"].isna() | np.isclose(runs["rho"].fillna(SAM_RHO), SAM_RHO)]
    return control_means(runs, [*store.METRICS, "train_loss"])


#: The sharpness measures the claims across families are judged by, each on its own.
FAMILY_MEASURES = ("fisher_rao_norm", "relative_flatness", "sam_sharpness")
FAMILY_CLAIMS = {"simpson": lambda points, measure: simpson(points, measure, "test_accuracy"),
                 "goldilocks": goldilocks, "scales": scale_comparison}


def family_findings(claim: str, families_grid: Path | None = None, study_grid: Path | None = None) -> list[tuple[str, str]]:
    """(status, sentence) of `claim` (a key of FAMILY_CLAIMS: Simpson's paradox against test accuracy, no Goldilocks
    zone, scales not comparable) on our families by each of FAMILY_MEASURES, the committed grids read once."""
    points = family_points(families_grid, study_grid)
    return [FAMILY_CLAIMS[claim](points, measure).pair() for measure in FAMILY_MEASURES]


def families_finding(families_grid: Path | None = None) -> tuple[str, str]:
    """(status, sentence): how much of the families plan is committed: per family its runs at a minimum, its seeds
    and the fewest minima of any control against what the plan asks (`cpu_families.MINIMA_PER_CONTROL`), then the
    runs left out."""
    from ..studies.cpu_families import FAMILIES, MINIMA_PER_CONTROL

    runs = load_runs(families_grid or committed_paths()["families"])
    if not len(runs):
        return NOT_RUN, "No run of the three CPU families is committed yet."
    needed, usable = MINIMA_PER_CONTROL["families"], usable_runs(runs)
    fewest = minima_per_control(runs, (FAMILY,), needed).set_index(FAMILY)["fewest"]
    per_family = "; ".join(f"{prose.network_name(arch)}: {len(usable[usable[FAMILY] == arch])} of {len(block)} runs at a minimum "
                           f"over {block['seed'].nunique()} seed(s), at least {fewest[arch]} of every control"
                           for arch, block in runs.groupby(FAMILY, sort=False))
    complete = int((fewest >= needed).sum())
    status = f"{complete} of {len(FAMILIES)} with {needed} runs at a minimum of every control"
    missed = short_of_minimum(runs, (FAMILY,))
    return status, per_family + "." + (f" Not at a minimum, left out of every comparison: {missed}." if missed else "")


def figure1_finding(batch_lr_grid: Path | None = None, measure: str = "fisher_rao_norm") -> tuple[str, str]:
    """(status, sentence) for the ledger's Figure 1 / Appendix G.1 rows, on our runs at a minimum."""
    runs = load_runs(batch_lr_grid or committed_paths()["batch_lr"])
    if not len(runs):
        return NOT_RUN, "No batch x learning-rate sweep of ours is committed yet."
    from ..studies.cpu_families import MINIMA_PER_CONTROL

    usable = usable_runs(runs)
    status, sentence = figure1_claims(usable, measure, seeds_needed=MINIMA_PER_CONTROL["batch-lr"]).pair()
    missed = short_of_minimum(runs, CELL)
    return status, (f"{len(usable)} of {len(runs)} runs at a minimum; {sentence[0].lower()}{sentence[1:]}"
                    + (f" Not at a minimum, left out: {missed}." if missed else ""))
