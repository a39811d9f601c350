"""Figures of the toy-fit study: losses and sharpness over training, at matched losses, against chapter 1."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...core.untrusted import escape
from ...toys import fit, toy

MEASURE_LABELS = fit.MEASURE_LABELS
# Column headers for tables of these measures, short enough that a table fits the page, and their legend.
MEASURE_SHORT = {"top_eigenvalue": "λ max", "hessian_trace": "trace", "fisher_rao": "FR",
                 "fisher_rao_exact": "FR exact", "train_loss": "train loss", "test_accuracy": "test acc."}
MEASURE_LEGEND = ("λ max = Hessian top eigenvalue, trace = Hessian trace (Hutchinson), FR = Fisher-Rao norm "
                  "(homogeneous form), FR exact = Fisher-Rao norm from ⟨θ, ∇ℓᵢ⟩")
COLOURS = dict(zip(toy.FUNCTIONS, plotly.colors.qualitative.D3))


def settings_label(result: fit.FitResult) -> str:
    """What produced the figure: setting, seeds, epochs, points, optimiser, where and when."""
    config = result.config
    return (
        f"{len(config.seeds)} seeds, {config.epochs:,} epochs, {config.train_points:,} train / "
        f"{config.test_points:,} test points, Adam lr {config.lr:g}, full batch; "
        f"{result.provenance.get('machine', '?').split(' (')[0]} {result.provenance.get('date', '')[:10]}"
    )


def stored_run_note(stored: list[fit.FitResult]) -> str:
    """Markdown naming the largest stored run (the last of `fit.stored_results`) and its provenance, escaped
    (it is read from results/), or saying that none is stored."""
    if not stored:
        return "No stored run yet: the figures below repeat this page's quick run."
    longer = stored[-1]
    return escape(f"**Stored run** (the largest of {len(stored)}): {settings_label(longer)}; "
                  f"commit {str(longer.provenance.get('commit', '?'))[:10]}; {longer.provenance.get('seconds', float('nan')) / 60:.0f} min "
                  f"on {longer.provenance.get('machine', '?')}.")


def subtitle(text: str, width: int = 95) -> str:
    """`text` as lines at 12 px (readable; plotly's <sub> draws about 9 px) broken to fit the book's column."""
    return "".join(f'<br><span style="font-size:12px">{line}</span>' for line in textwrap.wrap(text, width))


def _mean_sem(frame: pd.DataFrame, by: list[str], column: str) -> pd.DataFrame:
    return frame.groupby(by, sort=False)[column].agg(["mean", "sem", "count"]).reset_index()


def loss_curves(result: fit.FitResult) -> go.Figure:
    """Train and test loss (mean over seeds) against epoch for every function; targets dotted."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("train loss (MSE)", "test loss (MSE)"), shared_yaxes=True)
    history = result.over_training()
    for column, col in (("train_loss", 1), ("test_loss", 2)):
        stats = _mean_sem(history, ["function", "epoch"], column)
        for name, group in stats.groupby("function", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=group["epoch"].clip(lower=0.5), y=group["mean"], mode="lines+markers",
                    name=toy.get(name).label, legendgroup=name, showlegend=col == 1,
                    line=dict(color=COLOURS[name]),
                ),
                1, col,
            )
        for target in result.config.target_losses:
            figure.add_hline(y=target, line=dict(dash="dot", color="grey", width=1), row=1, col=col)
    figure.update_xaxes(type="log", title_text="epoch (epoch 0 drawn at 0.5)")
    figure.update_yaxes(type="log")
    figure.update_layout(
        height=480, legend=dict(orientation="h", y=-0.25), margin=dict(t=130),
        title=f"Loss over training; dotted: target losses{subtitle(settings_label(result))}",
    )
    return figure


def _measure_grid(titles) -> go.Figure:
    return make_subplots(rows=2, cols=2, subplot_titles=[MEASURE_LABELS[m] for m in titles], vertical_spacing=0.18)


def sharpness_over_training(result: fit.FitResult) -> go.Figure:
    """Each measure (mean over seeds, SEM bars) against epoch, one line per function."""
    figure = _measure_grid(fit.MEASURES)
    history = result.over_training()
    for index, measure in enumerate(fit.MEASURES):
        row, col = divmod(index, 2)
        stats = _mean_sem(history, ["function", "epoch"], measure)
        for name, group in stats.groupby("function", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=group["epoch"].clip(lower=0.5), y=group["mean"], error_y=dict(array=group["sem"]),
                    mode="lines+markers", name=toy.get(name).label, legendgroup=name, showlegend=index == 0,
                    line=dict(color=COLOURS[name]),
                ),
                row + 1, col + 1,
            )
    figure.update_xaxes(type="log", title_text="epoch")
    figure.update_yaxes(type="log")
    figure.update_layout(
        height=780, legend=dict(orientation="h", y=-0.12), margin=dict(t=140),
        title=f"Sharpness over training (mean ± SEM over seeds){subtitle(settings_label(result))}",
    )
    return figure


def sharpness_at_targets(result: fit.FitResult) -> go.Figure:
    """Each measure at the first epoch each target train loss was reached; missing points: not reached."""
    figure = _measure_grid(fit.MEASURES)
    for index, measure in enumerate(fit.MEASURES):
        row, col = divmod(index, 2)
        stats = fit.summary_at_targets(result, measure)
        for name, group in stats.groupby("function", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=group["target"], y=group["mean"], error_y=dict(array=group["sem"]), mode="lines+markers",
                    customdata=np.stack([group["seeds_reached"], group["seeds"]], axis=1),
                    hovertemplate="target %{x}: %{y:.4g}<br>seeds reached %{customdata[0]}/%{customdata[1]}"
                    "<extra>" + toy.get(name).label + "</extra>",
                    name=toy.get(name).label, legendgroup=name, showlegend=index == 0, line=dict(color=COLOURS[name]),
                ),
                row + 1, col + 1,
            )
    figure.update_xaxes(type="log", autorange="reversed", title_text="target train loss")
    figure.update_yaxes(type="log")
    figure.update_layout(
        height=780, legend=dict(orientation="h", y=-0.12), margin=dict(t=140),
        title="Sharpness at matched train loss (mean ± SEM over the seeds that reached it)"
        f"{subtitle(settings_label(result))}",
    )
    return figure


def ordering_figure(result: fit.FitResult, measure: str = "top_eigenvalue", analytic: str = "max_eigenvalue") -> go.Figure:
    """Network sharpness at each target against the curvature of the target function at its minimum."""
    reference = fit.analytic_curvature(analytic)
    agreement = fit.rank_agreement(result, measure, analytic).set_index("target")
    stats = fit.summary_at_targets(result, measure)
    figure = go.Figure()
    labelled = set()  # name each function once, at the loosest target it appears in
    for target, group in stats.groupby("target", sort=False):
        group = group[group["seeds_reached"] == group["seeds"]]
        if group.empty:
            continue
        rho = agreement.loc[target, "spearman"]
        rho_text = "n/a" if np.isnan(rho) else f"{rho:.2f}"
        names = [toy.get(n).label for n in group["function"]]
        figure.add_trace(go.Scatter(
            x=reference[group["function"]].to_numpy(), y=group["mean"], error_y=dict(array=group["sem"]),
            mode="markers+text", text=[n if n not in labelled else "" for n in names], textposition="top center",
            hovertext=names, hovertemplate="%{hovertext}: %{y:.4g}<extra></extra>",
            name=f"loss ≤ {target:g}: Spearman ρ = {rho_text} ({len(group)} functions)",
        ))
        labelled.update(names)
    figure.update_xaxes(type="log", title_text=f"target function at its minimum: {analytic.replace('_', ' ')} (chapter 1)")
    figure.update_yaxes(type="log", title_text=f"network: {MEASURE_LABELS[measure]}")
    figure.update_layout(
        height=580, legend=dict(title="matched train loss", orientation="h", y=-0.2), margin=dict(t=130),
        title=f"Does the network's sharpness follow the function's curvature?{subtitle(settings_label(result))}",
    )
    return figure


def findings_markdown(result: fit.FitResult, analytic: str = "max_eigenvalue") -> str:
    """What a run shows, measure by measure: Spearman's correlation of the networks' sharpness with
    chapter 1's curvature at each target loss (over the functions every seed reached), and which
    functions never reached a target. Computed from `fit.rank_agreement`, so it follows the data."""
    unfitted = fit.unfitted_functions(result)
    named = " and ".join([", ".join(unfitted[:-1]), unfitted[-1]] if len(unfitted) > 1 else unfitted)
    lines = [f"No seed brought {named} to any target loss, so {'they take' if len(unfitted) > 1 else 'it takes'} "
             "no part in the comparison." if unfitted else "Every function reached at least one target loss."]
    for measure in fit.MEASURES:
        agreement = fit.rank_agreement(result, measure, analytic)
        ranked = agreement.dropna(subset=["spearman"])
        if ranked.empty:
            lines.append(f"- **{MEASURE_LABELS[measure]}**: no target reached by at least three functions.")
            continue
        cells = ", ".join(f"{row.spearman:+.2f} at loss ≤ {row.target:g} ({row.functions} functions)"
                          for row in ranked.itertuples())
        agree = int((ranked["spearman"] >= 0.999).sum())
        lines.append(f"- **{MEASURE_LABELS[measure]}**: {cells}; the order is exactly chapter 1's at {agree} of "
                     f"{len(ranked)} targets.")
    return "\n".join(lines[:1] + [""] + lines[1:])
