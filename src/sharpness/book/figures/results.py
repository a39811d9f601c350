"""Figures of the high-dimensional study: sharpness against evaluation, Simpson's paradox, the SAM rho sweep.

Inputs are the per-run rows of `sharpness.studies.store.collect_runs` / `load_grid` (ours) and the long
table of `sharpness.studies.store.paper_results` (the paper's). Every figure names its data in its title.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ...core.untrusted import styled
from .. import prose, stats

LABELS = {
    "test_accuracy": "test accuracy",
    "test_ece": "test ECE",
    "corruption_accuracy": "corruption accuracy",
    "prediction_disagreement": "prediction disagreement",
    "generalisation_gap": "generalisation gap",
    "fisher_rao_norm": "Fisher-Rao norm",
    "sam_sharpness": "SAM-sharpness",
    "relative_flatness": "relative flatness (clean mean)",  # two conventions, never under one label
    "relative_flatness_paper": "relative flatness (paper's convention)",
    "hessian_top_eigenvalue": "Hessian top eigenvalue",
    "hessian_trace": "Hessian trace",
}
CONTROL_COLOURS = dict(
    zip(("baseline", "baseline_sam", "aug", "aug_sam", "wd", "wd_sam"), qualitative.Plotly)
)


def label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))


def _check_columns(runs: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the runs; available: {sorted(runs.columns)}")


CELL_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "star", "hexagon")


def sharpness_vs_evaluation(
    runs: pd.DataFrame, sharpness_metrics, evaluation_metrics, title: str, away=frozenset(), setting: str | None = None
) -> go.Figure:
    """The paper's Figure 1 layout: one panel per (sharpness, evaluation) pair, a point per run,
    coloured by control, with each control's mean +/- SEM as a cross. Sharpness axes are logarithmic.
    Runs whose (control, seed) is in `away` (no minimum; `minimum.check`) are open circles. With `setting` (a column
    naming each run's setting, e.g. a cell of a batch x lr sweep) each setting has its own marker and a control's
    mean is taken within a setting, never across settings."""
    sharpness_metrics, evaluation_metrics = list(sharpness_metrics), list(evaluation_metrics)
    if not (sharpness_metrics and evaluation_metrics):
        return no_measures(title)
    _check_columns(runs, sharpness_metrics + evaluation_metrics + ["control", "seed"] + ([setting] if setting else []))
    where_column = setting or "_one setting"
    runs = runs if setting else runs.assign(**{where_column: ""})
    settings = list(dict.fromkeys(runs[where_column]))
    symbols = dict(zip(settings, itertools.cycle(CELL_SYMBOLS)))
    figure = make_subplots(
        rows=len(evaluation_metrics), cols=len(sharpness_metrics), shared_xaxes="columns", shared_yaxes="rows",
        horizontal_spacing=0.04, vertical_spacing=0.06,
    )
    for col, x_metric in enumerate(sharpness_metrics, start=1):
        for row, y_metric in enumerate(evaluation_metrics, start=1):
            for (control, where), block in runs.groupby(["control", where_column], sort=False):
                colour, symbol = CONTROL_COLOURS.get(control), symbols[where]
                named = f"{control}, {where}" if setting else control
                first = row == 1 and col == 1 and where == settings[0]
                figure.add_scatter(
                    x=block[x_metric], y=block[y_metric], mode="markers", name=control, legendgroup=control,
                    showlegend=first, marker=dict(color=colour, size=7, opacity=0.6, symbol=[
                        f"{symbol}-open" if (control, s) in away else symbol for s in block["seed"]]),
                    text=[f"{named}, seed {s}" + (" (no minimum)" if (control, s) in away else "")
                          for s in block["seed"]], row=row, col=col,
                    hovertemplate="%{text}<br>x=%{x:.3g}<br>y=%{y:.3g}<extra></extra>",
                )
                if len(block) > 1:
                    figure.add_scatter(
                        x=[block[x_metric].mean()], y=[block[y_metric].mean()], mode="markers",
                        legendgroup=control, showlegend=False, marker=dict(color=colour, size=13, symbol="x"),
                        error_x=dict(array=[block[x_metric].sem()]), error_y=dict(array=[block[y_metric].sem()]),
                        hovertemplate=f"{named} mean<extra></extra>", row=row, col=col,
                    )
            if row == len(evaluation_metrics):
                figure.update_xaxes(title_text=label(x_metric), type="log", row=row, col=col)
            else:
                figure.update_xaxes(type="log", row=row, col=col)
            if col == 1:
                figure.update_yaxes(title_text=label(y_metric), row=row, col=col)
    if setting:  # the legend keys the markers too: a grey, empty trace per setting (clicking it hides no run)
        for where in settings:
            figure.add_scatter(x=[None], y=[None], mode="markers", name=str(where), legendgroup="settings",
                               legendgrouptitle_text=setting, marker=dict(color="grey", size=7, symbol=symbols[where]),
                               hoverinfo="skip", row=1, col=1)
    figure.update_layout(title=title, height=260 * len(evaluation_metrics) + 120, legend_title_text="control")
    return figure


def _fit_line(x: np.ndarray, y: np.ndarray):
    """`stats.decade_line` drawn over the x range: (x ends, y ends, slope), or None without a line."""
    line = stats.decade_line(x, y)
    if line is None:
        return None
    slope, intercept = line
    ends = np.log10([x.min(), x.max()])
    return 10**ends, slope * ends + intercept, slope


def simpsons_paradox(points: pd.DataFrame, x_metric: str, y_metric: str, title: str) -> go.Figure:
    """Control means of several architectures: a trend line within each architecture and one pooled
    over all of them. Pooling can reverse the within-architecture trend (Simpson's paradox), which is
    why the paper compares sharpness only within an architecture and data set.

    `points`: one row per (arch, control) with columns arch, control, `x_metric`, `y_metric`.
    """
    _check_columns(points, ["arch", "control", x_metric, y_metric])
    points = points.dropna(subset=[x_metric, y_metric])
    points = points[points[x_metric] > 0]
    figure = go.Figure()
    for (arch, block), colour in zip(points.groupby("arch", sort=False), qualitative.D3):
        name = prose.network_name(arch)
        figure.add_scatter(
            x=block[x_metric], y=block[y_metric], mode="markers+text", text=block["control"],
            textposition="top center", textfont=dict(size=9), name=name, legendgroup=arch,
            marker=dict(color=colour, size=10),
        )
        line = _fit_line(block[x_metric].to_numpy(), block[y_metric].to_numpy())
        if line is not None:
            figure.add_scatter(
                x=line[0], y=line[1], mode="lines", line=dict(color=colour), legendgroup=arch,
                name=f"{name} trend (slope {line[2]:+.3g} per decade)",
            )
    pooled = _fit_line(points[x_metric].to_numpy(), points[y_metric].to_numpy())
    if pooled is not None:
        figure.add_scatter(
            x=pooled[0], y=pooled[1], mode="lines", line=dict(color="black", dash="dash"),
            name=f"pooled over architectures (slope {pooled[2]:+.3g} per decade)",
        )
    figure.update_xaxes(title_text=f"{label(x_metric)} (log)", type="log")
    figure.update_yaxes(title_text=label(y_metric))
    figure.update_layout(title=title, height=520)
    return figure


RHO_TICKS = (0.0025, 0.005, 0.025, 0.05, 0.25, 0.5)


def rho_sweep(ours: pd.DataFrame, paper: pd.DataFrame | None, metrics, title: str,
              not_at_minimum: pd.DataFrame | None = None) -> go.Figure:
    """One row per metric against SAM's rho (log axis): our runs (mean +/- SEM over seeds) on the left,
    the paper's printed figures on the right, each on its own y axis so neither flattens the other.
    Runs listed in `not_at_minimum` (rho, seed; see `minimum.check`) are grey crosses, off the line."""
    metrics = list(metrics)
    if not metrics:
        return no_measures(title)
    _check_columns(ours, ["rho", *metrics])
    failed_runs = set() if not_at_minimum is None else set(zip(not_at_minimum["rho"], not_at_minimum["seed"]))
    failed = pd.Series([run in failed_runs for run in zip(ours["rho"], ours["seed"])], index=ours.index, dtype=bool)
    ours, stuck = ours[~failed], ours[failed]
    figure = make_subplots(
        rows=len(metrics), cols=2, column_titles=["ours", "the paper's (ResNet-18, CIFAR-10)"],
        row_titles=[label(m) for m in metrics], shared_xaxes=True, horizontal_spacing=0.1, vertical_spacing=0.05,
    )
    for row, metric in enumerate(metrics, start=1):
        by_rho = ours.dropna(subset=["rho", metric]).groupby("rho")[metric]
        summary = pd.DataFrame({"mean": by_rho.mean(), "sem": by_rho.sem()}).reset_index()
        figure.add_scatter(
            x=summary["rho"], y=summary["mean"], error_y=dict(array=summary["sem"].fillna(0)),
            mode="lines+markers", name="ours (mean ± SEM)", showlegend=False,
            marker=dict(color=qualitative.Plotly[1]), row=row, col=1,
        )
        if len(stuck):
            figure.add_scatter(
                x=stuck["rho"], y=stuck[metric], mode="markers", name="no minimum", showlegend=False,
                marker=dict(symbol="x", size=9, color="grey"), hovertemplate="rho %{x}: did not reach a minimum<extra></extra>",
                row=row, col=1,
            )
        printed = (paper[(paper["metric"] == stats.paper_counterpart(metric)) & paper["rho"].notna()]
                   if paper is not None else paper)  # only a figure computed as ours is set beside it
        if printed is not None and len(printed):
            figure.add_scatter(
                x=printed["rho"], y=printed["mean"], error_y=dict(array=printed["sem"]), mode="markers",
                name="paper", showlegend=False, marker=dict(symbol="diamond-open", size=11, color="black"),
                row=row, col=2,
            )
    # Log rho with every other tick labelled, so neighbouring radii (0.025 and 0.05) do not overlap.
    figure.update_xaxes(type="log", tickvals=list(RHO_TICKS),
                        ticktext=[f"{r:g}" if i % 2 == 1 else "" for i, r in enumerate(RHO_TICKS)])
    figure.update_xaxes(title_text="rho", row=len(metrics))
    figure.update_annotations(font_size=12)
    if len(stuck):
        title += "<br>grey crosses: runs that did not reach a minimum, left out of the line"
    # The right margin holds the row titles (metric names), written sideways beside the paper's panels;
    # the title at 13 px in short lines fits a 700 px column.
    figure.update_layout(title=dict(text=title, font_size=13), height=190 * len(metrics) + 160,
                         margin=dict(t=140, r=70))
    return figure


def no_measures(title: str) -> go.Figure:
    """The figure of a grid whose runs carry none of the measures a figure plots (trained, never evaluated):
    its title and a note saying so, instead of a figure of no panels (which plotly refuses to make)."""
    figure = go.Figure()
    figure.add_annotation(text="These runs carry none of the measures this figure shows (not evaluated?).",
                          showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(title=dict(text=title, font_size=13), height=300)
    return figure


def controls_beside_paper(ours: pd.DataFrame, paper: pd.DataFrame, metrics, title: str) -> go.Figure:
    """Per metric, the controls' means +/- SEM, ours and the paper's in two columns of panels (their
    scales differ, so each has its own axis). `ours`/`paper`: long tables with control, metric, mean, sem.
    Each panel is titled above it (metric and whose), so nothing hangs off the side of a narrow page."""
    metrics = list(metrics)
    if not metrics:
        return no_measures(title)
    figure = make_subplots(
        rows=len(metrics), cols=2, vertical_spacing=0.3 / max(1, len(metrics)), horizontal_spacing=0.1,
        subplot_titles=[f"{label(m)}: {who}" for m in metrics for who in ("ours", "the paper's")],
    )
    order = {control: position for position, control in enumerate(CONTROL_COLOURS)}  # the paper's order
    for row, metric in enumerate(metrics, start=1):
        for col, table in enumerate((ours, paper), start=1):
            rows = table[table["metric"] == metric].sort_values("control", key=lambda c: c.map(order))
            figure.add_bar(
                x=[prose.CONTROL_SHORT.get(c, c) for c in rows["control"]], y=rows["mean"],
                error_y=dict(array=rows["sem"].fillna(0)), showlegend=False, row=row, col=col,
                marker_color=[CONTROL_COLOURS.get(c, "grey") for c in rows["control"]],
                customdata=np.stack([rows["control"], rows["sem"].fillna(0)], axis=-1) if len(rows) else None,
                hovertemplate="%{customdata[0]}: %{y:.4g} ± %{customdata[1]:.2g}<extra></extra>",
            )
    figure.update_annotations(font_size=12)
    figure.update_xaxes(tickangle=0, automargin=True)
    figure.update_yaxes(automargin=True)
    figure.update_layout(title=dict(text=title, font_size=13), height=210 * len(metrics) + 140,
                         margin=dict(t=120, l=60, r=20))
    return figure


def training_bands(history: pd.DataFrame, title: str, metrics=("train_loss", "train_accuracy"),
                   checked: pd.DataFrame | None = None) -> go.Figure:
    """Per control, the median over seeds of each metric per epoch (a line) and the seeds' range (a band
    in the control's colour): whether the controls reach a training minimum reads off six lines, not 30.
    Runs that `checked` (a `minimum.check`) finds away from a minimum are also drawn alone, dotted."""
    _check_columns(history, ["control", "seed", "epoch", *metrics])
    away = set() if checked is None else set(checked.loc[~checked["at_minimum"], ["control", "seed"]].itertuples(index=False, name=None))
    if checked is not None:
        title += f"<br>dotted: runs that reached no minimum ({len(away)} of {len(checked)})"
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[label(m) for m in metrics],
                           horizontal_spacing=0.12)
    controls = [c for c in CONTROL_COLOURS if c in set(history["control"])]
    for col, metric in enumerate(metrics, start=1):
        for control in controls:
            per_epoch = history[history["control"] == control].groupby("epoch")[metric]
            low, middle, high = per_epoch.min(), per_epoch.median(), per_epoch.max()
            colour = CONTROL_COLOURS[control]
            fill = "rgba({}, {}, {}, 0.2)".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))
            figure.add_scatter(x=[*high.index, *low.index[::-1]], y=[*high, *low[::-1]], fill="toself",
                               fillcolor=fill, line=dict(width=0), hoverinfo="skip", showlegend=False,
                               legendgroup=control, row=1, col=col)
            figure.add_scatter(x=middle.index, y=middle, mode="lines", name=control, legendgroup=control,
                               line=dict(color=colour, width=2), showlegend=col == 1, row=1, col=col,
                               hovertemplate=f"{control}, epoch %{{x}}: median %{{y:.3g}}<extra></extra>")
            for seed in sorted(seed for c, seed in away if c == control):
                run = history[(history["control"] == control) & (history["seed"] == seed)]
                figure.add_scatter(x=run["epoch"], y=run[metric], mode="lines", legendgroup=control, showlegend=False,
                                   line=dict(color=colour, width=1.5, dash="dot"), row=1, col=col,
                                   hovertemplate=f"{control}, seed {seed} (no minimum), epoch %{{x}}: %{{y:.3g}}<extra></extra>")
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title=dict(text=title, font_size=13), height=460, margin=dict(t=120),
                         legend=dict(orientation="h", x=0, y=-0.22))
    return figure


def pvalue_table(pvalues: pd.DataFrame, caption: str, pvalue_columns=None):
    """A table of p-values as a pandas Styler (strings escaped, `styled`): 3 significant figures, a dash where
    no test was possible, greener for smaller p (fully green at p = 0, none from p = 0.5). `pvalue_columns`:
    the columns that hold p-values (None: all); other numeric columns get 3 significant figures."""
    columns = list(pvalues.columns) if pvalue_columns is None else [c for c in pvalue_columns if c in pvalues.columns]
    others = [c for c in pvalues.columns if c not in columns and pd.api.types.is_float_dtype(pvalues[c])]
    return (styled(pvalues, caption).format("{:.3g}", na_rep="—", subset=columns + others)
            .map(lambda p: f"background-color: rgba(40, 160, 70, {max(0.0, 1 - 2 * p):.2f})" if pd.notna(p) else "",
                 subset=columns))


def study_beside_paper(study, summary: pd.DataFrame, paper: pd.DataFrame, at_minimum: str | None = None) -> go.Figure:
    """`controls_beside_paper` for the study's first (dataset, arch) and the paper's matching setting;
    `at_minimum` ('k of n', from `minimum.check`) is named in the title beside our means."""
    shown = stats.first_setting_beside_paper(study, summary, paper)
    (dataset, arch), (paper_dataset, paper_arch) = shown["setting"], shown["paper_setting"]
    minima = "" if at_minimum is None else f"; {at_minimum} runs reached a minimum"
    return controls_beside_paper(
        shown["ours"], shown["paper"], shown["metrics"],
        title=f"<b>Per control, mean ± SEM, each on its own axis</b><br>ours: {arch}, {dataset}, {study.label}{minima}"
              f"<br>the paper's: {paper_arch}, {paper_dataset} (arXiv 2510.12451)",
    )


def study_sharpness_vs_evaluation(study, checked: pd.DataFrame | None = None) -> go.Figure:
    """`sharpness_vs_evaluation` of the study's finished runs, over the measures they have; runs that
    `checked` (a `minimum.check`) finds away from a minimum are open circles, counted in the title."""
    runs = stats.finished_runs(study.runs)
    away = set() if checked is None else set(checked.loc[~checked["at_minimum"], ["control", "seed"]].itertuples(index=False, name=None))
    note = ("" if checked is None else f"<br><sup>open circles: runs that reached no minimum "
            f"({len(away)} of {len(checked)}); crosses: means over all runs</sup>")
    return sharpness_vs_evaluation(
        runs,
        [m for m in stats.SHARPNESS_METRICS if m in runs.columns],
        [m for m in ("test_accuracy", "test_ece", "corruption_accuracy") if m in runs.columns],
        title=f"Sharpness vs evaluation, one point per run<br>{study.label}{note}", away=away,
    )
