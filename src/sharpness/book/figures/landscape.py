"""Figures of loss landscapes: contours and surfaces per control on one colour scale, the measures beside
them, model interpolation, and a live explorer (control, seed, resolution).

Colour is log10 of the loss on one shared range, so a control looks broad or narrow by comparison with
the others and not by its own colour stretch.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import spearmanr

from ...core.untrusted import escape
from ...measuring.landscape import MEASURE_LABELS, ControlLandscape, Surface
from .live import LatestOnly, live_figure, sync_state

COLOURSCALE = "Viridis"
LOSS_TICKS = (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000)


def settings_label(landscapes: Sequence[ControlLandscape], separator: str = "; ") -> str:
    """Which data and settings produced the surfaces, for figure titles (two parts joined by `separator`)."""
    first = landscapes[0]
    p = first.surface.provenance
    resolution = "x".join(map(str, p.get("resolution", [])))
    # stored surfaces are files from elsewhere: every value they bring is escaped (the separator may be markup)
    return (
        escape(f"{setting_name(first.dataset, first.arch)}, seed {first.seed}; {resolution} grid on {p.get('span')}, "
               f"directions seed {p.get('directions_seed')}") + separator
        + escape(f"{p.get('subset_size')} training images, eval mode, {p.get('device', '?')}")
    )


def setting_name(dataset: str, arch: str) -> str:
    """How titles name the runs: the CPU study by its description, anything else by data set and arch."""
    from ...studies import registry

    if (dataset, arch) == (registry.PROTOCOL["dataset"], registry.PROTOCOL["arch"]):
        return f"real CIFAR-10, {registry.network_label()}, CPU study"
    return f"{dataset}, {arch}"


def visual_rise(surface: Surface) -> float:
    """What the picture shows: the mean loss over the grid above the loss at the centre."""
    return float(surface.loss.mean() - surface.value_at_origin())


OFFLINE_SURFACES_NOTE = (
    "No GPU surfaces are stored under `results/landscapes/`, so this page computed small ones while it "
    "was built, from the book's offline runs (a small CNN trained for a few epochs on scikit-learn's "
    "digits on a CPU, the same runs as the results chapter). They show the method end to end; they are "
    "**not** the paper's ResNet-18 / CIFAR-10 landscapes, and these briefly trained networks sit only "
    "near a minimum."
)


def source_note(landscapes: Sequence[ControlLandscape]) -> str:
    """Markdown: which surfaces are shown, and whether they are stored GPU ones or the offline stand-in."""
    stored = landscapes[0].source != "offline runs"
    device = landscapes[0].surface.provenance.get("device", "an unrecorded device")
    origin = (f"They were computed on {escape(device)} from the trained runs and stored under `results/landscapes/` "
              "with their provenance." if stored else OFFLINE_SURFACES_NOTE)
    return f"**Surfaces shown: {escape(settings_label(landscapes))}.** {origin}"


def minimum_note(landscapes: Sequence[ControlLandscape]) -> str:
    """Markdown: whether the runs the surfaces are drawn around reached a minimum (`minimum.check` of the
    committed controls grid that holds them), or that no committed grid says."""
    from ...studies import registry, store
    from ...training import minimum

    committed = registry.committed_grid("controls")
    if landscapes[0].source == "offline runs" or committed is None:
        return "_Whether these runs reached a minimum is not checked: no committed grid holds them._"
    runs, _ = store.load_grid(committed)
    checked = minimum.check(runs, store.load_history(committed))
    drawn = {(item.dataset, item.arch, item.control, item.seed) for item in landscapes}
    around = checked[[run in drawn for run in checked[["dataset", "arch", "control", "seed"]].itertuples(index=False, name=None)]]
    if around.empty:
        return f"_No run of `{escape(committed.name)}` matches these surfaces, so whether they are minima is not checked._"
    away = escape(minimum.reasons_sentence(around))  # control names come from the results files
    return (f"Runs at a minimum ({minimum.criterion()}): {int(around['at_minimum'].sum())} of {len(around)} of the "
            "runs drawn here" + (f". **Surfaces around runs that reached no minimum** show the descent, not a "
                                 f"minimum: {away}." if away else "."))


def picture_measure_correlations(landscapes: Sequence[ControlLandscape]) -> dict[str, float]:
    """Spearman rank correlation, over the controls, of the picture's `visual_rise` with each invariant
    measure (keys as `MEASURE_LABELS`): +1 when a measure orders the controls as the picture does."""
    rise = [visual_rise(item.surface) for item in landscapes]
    return {key: float(spearmanr(rise, [item.measures[key] for item in landscapes]).statistic) for key in MEASURE_LABELS}


def correlation_note(landscapes: Sequence[ControlLandscape]) -> str:
    """Markdown list of `picture_measure_correlations`, with how to read them."""
    lines = [f"- picture vs {MEASURE_LABELS[key]}: Spearman rank correlation {rho:+.2f} over {len(landscapes)} controls"
             for key, rho in picture_measure_correlations(landscapes).items()]
    return "\n".join(lines) + ("\n\n(+1: the same order as the picture, -1: the reverse; with six controls of one "
                               "seed these are descriptions, not tests.)")


MEASURE_SHORT = {"fisher_rao_norm": "FR", "relative_flatness": "RF", "sam_sharpness": "SAM"}


def measures_text(item: ControlLandscape, separator: str = "<br>", short: bool = False) -> str:
    """The loss and accuracy at the centre, then the invariant measures (short names: FR, RF, SAM)."""
    names = MEASURE_SHORT if short else MEASURE_LABELS
    origin = item.surface
    centre = f"loss {origin.value_at_origin():.3g}, acc {origin.value_at_origin(origin.accuracy):.2f}"
    measures = (" · " if short else "; ").join(f"{escape(names.get(k, k))} {v:.3g}" for k, v in item.measures.items())
    return f"{'' if short else 'train '}{centre}{separator}{measures}"


def _log_range(landscapes: Sequence[ControlLandscape]) -> tuple[float, float]:
    values = np.concatenate([np.log10(np.maximum(item.surface.loss.ravel(), 1e-12)) for item in landscapes])
    return float(values.min()), float(values.max())


def _colourbar(low: float, high: float) -> dict:
    ticks = [t for t in LOSS_TICKS if low - 0.05 <= np.log10(t) <= high + 0.05] or [10**low, 10**high]
    return dict(title="loss", tickvals=[np.log10(t) for t in ticks], ticktext=[f"{t:g}" for t in ticks])


def _require_2d(landscapes: Sequence[ControlLandscape]) -> None:
    if not landscapes:
        raise ValueError("no landscapes to draw")
    flat = [item.control for item in landscapes if item.surface.dims != 2]
    if flat:
        raise ValueError(f"these surfaces are not 2-D: {flat}")


def contour_grid(landscapes: Sequence[ControlLandscape], columns: int = 2) -> go.Figure:
    """One contour map per control, shared log colour scale, measures in each panel's title."""
    _require_2d(landscapes)
    rows = int(np.ceil(len(landscapes) / columns))
    titles = [f"<b>{escape(item.control)}</b>: {measures_text(item, short=True)}" for item in landscapes]
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.1)
    low, high = _log_range(landscapes)
    for index, item in enumerate(landscapes):
        alphas, betas = item.surface.axes
        figure.add_trace(
            go.Contour(
                x=alphas, y=betas, z=np.log10(item.surface.loss), zmin=low, zmax=high, colorscale=COLOURSCALE,
                ncontours=20, showscale=index == 0, colorbar=_colourbar(low, high), name=escape(item.control),
                customdata=item.surface.loss, hovertemplate="a %{x:.2f}, b %{y:.2f}: loss %{customdata:.4g}<extra></extra>",
            ),
            row=index // columns + 1, col=index % columns + 1,
        )
    for annotation in figure.layout.annotations:
        annotation.font.size = 11
    # Axis names on the outer panels: the two filter-normalised directions, in units of the weights.
    for col in range(1, columns + 1):
        figure.update_xaxes(title_text="a (direction 1)", title_font_size=11, row=rows, col=col)
    for row in range(1, rows + 1):
        figure.update_yaxes(title_text="b (direction 2)", title_font_size=11, row=row, col=1)
    figure.update_layout(
        title=dict(text="Training loss around each minimum (log colour, one scale)<br><sup>FR Fisher-Rao norm, "
                        f"RF relative flatness, SAM SAM-sharpness<br>{settings_label(landscapes, '<br>')}</sup>"),
        height=300 * rows + 210, margin=dict(t=210),
    )
    return figure


# The 3-D surfaces' axes: a, b the two directions (the captions say which), titles at 14 px; the camera stands
# back from plotly's default so the box, its tick labels and titles stay inside the panel.
SCENE = dict(xaxis=dict(title=dict(text="a", font_size=14)), yaxis=dict(title=dict(text="b", font_size=14)),
             zaxis=dict(title=dict(text="loss", font_size=14)), camera=dict(eye=dict(x=1.7, y=1.7, z=1.2)))


def surface_dropdown(landscapes: Sequence[ControlLandscape]) -> go.Figure:
    """A 3-D surface per control behind a dropdown; z axis and colours fixed across controls."""
    _require_2d(landscapes)
    low, high = _log_range(landscapes)
    top = max(float(item.surface.loss.max()) for item in landscapes)
    figure = go.Figure()
    for index, item in enumerate(landscapes):
        alphas, betas = item.surface.axes
        figure.add_trace(
            go.Surface(
                x=alphas, y=betas, z=item.surface.loss, surfacecolor=np.log10(item.surface.loss), cmin=low, cmax=high,
                colorscale=COLOURSCALE, colorbar=_colourbar(low, high), visible=index == 0, name=escape(item.control),
                hovertemplate="a %{x:.2f}, b %{y:.2f}: loss %{z:.4g}<extra></extra>",
            )
        )

    def title(item: ControlLandscape) -> str:
        return f"{escape(item.control)}: {measures_text(item, '<br>')}<br><sup>{settings_label(landscapes, '<br>')}</sup>"

    buttons = [
        dict(label=escape(item.control), method="update",
             args=[{"visible": [i == index for i in range(len(landscapes))]}, {"title.text": title(item)}])
        for index, item in enumerate(landscapes)
    ]
    figure.update_layout(
        title=dict(text=title(landscapes[0]), font=dict(size=13)),
        updatemenus=[dict(buttons=buttons, x=0.0, y=1.0, xanchor="left", yanchor="top")],
        scene=SCENE,
        height=600, margin=dict(t=140),
    )
    figure.update_scenes(zaxis_range=[0, top * 1.02])
    return figure


def picture_versus_measures(landscapes: Sequence[ControlLandscape]) -> go.Figure:
    """Each control's rank (1 = flattest) by what the picture shows and by each invariant measure."""
    _require_2d(landscapes)
    rows = {"picture: mean loss rise": [visual_rise(item.surface) for item in landscapes]}
    for key, name in MEASURE_LABELS.items():
        if all(key in item.measures for item in landscapes):
            rows[name] = [item.measures[key] for item in landscapes]
    values = np.array(list(rows.values()))
    ranks = values.argsort(axis=1).argsort(axis=1) + 1
    controls = [escape(item.control) for item in landscapes]
    figure = go.Figure(
        go.Heatmap(
            z=ranks, x=controls, y=list(rows), text=[[f"{v:.3g}" for v in row] for row in values],
            texttemplate="%{text}", colorscale="RdBu_r", zmin=1, zmax=len(controls),
            colorbar=dict(title="rank<br>(1 flattest)"), hovertemplate="%{y}<br>%{x}: %{text} (rank %{z})<extra></extra>",
        )
    )
    figure.update_layout(
        title=dict(text="Where the picture and the numbers agree (same colour) or not"
                        f"<br><sup>{settings_label(landscapes, '<br>')}</sup>"),
        yaxis=dict(autorange="reversed"), height=400, margin=dict(l=10, t=110),
    )
    return figure


def interpolation_figure(surface: Surface, label_a: str, label_b: str) -> go.Figure:
    """Loss and accuracy along the straight line from model a (alpha 0) to model b (alpha 1)."""
    alphas = surface.axes[0]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Scatter(x=alphas, y=surface.loss, name="training loss", mode="lines+markers"))
    figure.add_trace(go.Scatter(x=alphas, y=surface.accuracy, name="training accuracy", mode="lines+markers",
                                line=dict(dash="dot")), secondary_y=True)
    for alpha, name in ((0, label_a), (1, label_b)):
        figure.add_vline(x=alpha, line=dict(color="grey", dash="dash"), annotation_text=name)
    p = surface.provenance
    figure.update_layout(
        title=dict(text=f"Interpolating {label_a} (alpha 0) to {label_b} (alpha 1)<br><sup>{p.get('subset_size')} "
                        f"training images, eval mode, BN statistics interpolated too, {p.get('device', '?')}</sup>"),
        xaxis_title="alpha", height=420,
    )
    figure.update_yaxes(title_text="loss", type="log", secondary_y=False)
    figure.update_yaxes(title_text="accuracy", range=[0, 1.02], tickmode="linear", tick0=0, dtick=0.2,
                        showgrid=False, secondary_y=True)
    return figure


class LandscapeExplorer:
    """Live: pick control, seed and resolution; the surface and its measures are computed (and cached).

    `compute(control, seed, resolution) -> ControlLandscape` does the work; by default the book's
    offline runs (`sharpness.studies.surfaces.control_landscapes`). Needs a running kernel. A 51 x 51 surface
    takes minutes on a CPU, so it is computed off the kernel's main thread (`LatestOnly`): choices made
    meanwhile replace each other, and only the newest is computed next.
    """

    def __init__(
        self,
        compute: Callable[[str, int, int], ControlLandscape] | None = None,
        controls: Sequence[str] = ("baseline", "baseline_sam", "aug", "aug_sam", "wd", "wd_sam"),
        seeds: Sequence[int] = (0, 1),
        resolutions: Sequence[int] = (11, 21, 51),
    ):
        self.compute = compute or _offline_landscape
        self.control = widgets.Dropdown(options=list(controls), description="control")
        self.seed = widgets.Dropdown(options=list(seeds), description="seed")
        self.resolution = widgets.Dropdown(options=list(resolutions), description="resolution")
        self.readout = widgets.HTML()
        self.progress = widgets.Output()  # the computation's progress bars (tqdm draws widgets here)
        self.figure = live_figure()
        self.figure.update_layout(height=520, scene=SCENE)
        self._cache: dict[tuple, ControlLandscape] = {}
        self.updates = LatestOnly(self._landscape, self._draw, describe=self._describe)
        self.updates.follow((self.control, self.seed, self.resolution), self._request)

    def _request(self) -> tuple[str, int, int]:
        return self.control.value, self.seed.value, self.resolution.value

    @staticmethod
    def _describe(request: tuple[str, int, int]) -> str:
        control, seed, resolution = request
        return f"computing the {resolution} x {resolution} surface of {control}, seed {seed}"

    def _landscape(self, request: tuple[str, int, int]) -> ControlLandscape:
        """The surface for `request`, computed once and then served from the cache."""
        if request not in self._cache:
            self.progress.clear_output()
            failure = None
            with self.progress:  # in a kernel, Output shows an exception and swallows it: keep it to raise here
                try:
                    self._cache[request] = self.compute(*request)
                except Exception as error:
                    failure = error
            if failure is not None:
                raise failure  # LatestOnly shows it in the busy line; the bars stay for the reader
            self.progress.clear_output()
        return self._cache[request]

    def _draw(self, item: ControlLandscape) -> None:
        alphas, betas = item.surface.axes
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.add_trace(go.Surface(x=alphas, y=betas, z=item.surface.loss, colorscale=COLOURSCALE,
                                             surfacecolor=np.log10(item.surface.loss), showscale=False))
            self.figure.layout.title.text = (f"{escape(item.control)}, seed {escape(item.seed)}<br>"
                                             f"<sup>{settings_label([item], '<br>')}</sup>")
        sync_state(self.figure)
        self.readout.value = measures_text(item)

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.control, self.seed, self.resolution]), self.updates.status,
                             self.readout, self.progress, self.figure])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())


def _offline_landscape(control: str, seed: int, resolution: int) -> ControlLandscape:
    from ...measuring.landscape import control_landscapes

    return control_landscapes(seed, controls=[control], resolution=resolution, use_stored=False, progress=True)[0]
