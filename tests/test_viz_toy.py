"""Toy figures: the static controls switch the right traces, and the live explorer redraws correctly."""

import numpy as np
import pytest

from sharpness.book.figures import toy as toy_figures
from sharpness.book.figures.toy_widgets import ToyExplorer
from sharpness.toys import toy


def test_explorer_dropdown_shows_exactly_one_function_per_button():
    figure = toy_figures.explorer_figure(resolution=11)
    (menu,) = figure.layout.updatemenus
    assert [b.label for b in menu.buttons] == [f.label for f in toy.FUNCTIONS.values()]
    surfaces_seen = []
    for button in menu.buttons:
        visible = button.args[0]["visible"]
        shown = [trace for trace, v in zip(figure.data, visible) if v]
        (surface,) = [t for t in shown if t.type == "surface"]
        surfaces_seen.append(surface.name)
        assert sum(t.type == "contour" for t in shown) == 1
    assert surfaces_seen == [f.label for f in toy.FUNCTIONS.values()]


def test_eigen_arrows_point_along_the_hessian_eigenvectors_with_curvature_lengths():
    arrows = toy_figures.eigen_arrows("rosenbrock", (1.0, 1.0), box_size=4.0)
    stats = toy.hessian_stats("rosenbrock", (1.0, 1.0))
    sharp, flat = (np.array([a.x[1] - a.x[0], a.y[1] - a.y[0]]) for a in arrows)
    assert abs(np.dot(sharp / np.linalg.norm(sharp), stats.eigenvectors[:, 1])) == pytest.approx(1.0)
    assert abs(np.dot(flat / np.linalg.norm(flat), stats.eigenvectors[:, 0])) == pytest.approx(1.0)
    assert np.linalg.norm(sharp) == pytest.approx(1.2)  # 30% of the box for the sharpest direction
    assert np.linalg.norm(flat) == pytest.approx(0.12)  # ratio 4e-4, clipped to the 10% floor


def test_log_colour_only_where_values_span_decades():
    assert toy_figures.function_traces("rosenbrock", resolution=21).log_colour
    assert not toy_figures.function_traces("sphere", resolution=21, domain=(-1, 1, -1, 1)).log_colour


def test_parameter_slider_titles_follow_the_analytic_curvature():
    values = [1, 50, 200]
    figure = toy_figures.parameter_slider_figure("rosenbrock", "b", values, resolution=11)
    (slider,) = figure.layout.sliders
    for value, step in zip(values, slider.steps):
        expected = toy.hessian_stats("rosenbrock", (1, 1), b=value).max_eigenvalue
        assert f"λmax = {expected:.4g}" in step.args[1]["title.text"]
    with pytest.raises(ValueError, match="no parameter 'c'; accepted: a, b"):
        toy_figures.parameter_slider_figure("rosenbrock", "c", [1])


@pytest.mark.parametrize("name, parameter, paper_value", [("rosenbrock", "b", 100), ("rastrigin", "A", 10)])
def test_parameter_slider_opens_at_the_papers_value(name, parameter, paper_value):
    values = [1, 5, paper_value, 2 * paper_value]
    figure = toy_figures.parameter_slider_figure(name, parameter, values, resolution=11)
    (slider,) = figure.layout.sliders
    assert slider.active == 2 and slider.steps[2].label == f"{paper_value:g}"
    shown = [trace.visible for trace in figure.data]
    assert shown == list(slider.steps[2].args[0]["visible"])  # the traces on screen are that step's
    assert figure.layout.title.text == slider.steps[2].args[1]["title.text"]


def test_live_explorer_redraws_and_reads_out_the_local_hessian():
    explorer = ToyExplorer("rosenbrock", resolution=11)
    assert explorer.parameter.description == "b" and explorer.parameter.value == 100
    explorer.parameter.value = 20.0
    explorer.x.value, explorer.y.value = 0.5, 1.0
    expected = toy.hessian_stats("rosenbrock", (0.5, 1.0), b=20.0)
    assert explorer.stats.eigenvalues == pytest.approx(expected.eigenvalues)
    assert f"{expected.trace:.4g}" in explorer.readout.value
    surface = next(t for t in explorer.figure.data if t.type == "surface")
    xs, ys, z = np.asarray(surface.x), np.asarray(surface.y), np.asarray(surface.z)
    assert z[3, 7] == pytest.approx(float(toy.get("rosenbrock")(xs[7], ys[3], b=20.0)))  # redrawn with b = 20
    assert (xs[0], xs[-1], ys[0], ys[-1]) == pytest.approx(toy.get("rosenbrock").domain)  # zoom 1: the whole box
    explorer.zoom.value = 4.0
    xs = np.asarray(next(t for t in explorer.figure.data if t.type == "surface").x)
    assert (xs[0], xs[-1]) == pytest.approx((0.0, 1.0))  # a quarter of the 4 wide box, centred on x = 0.5
    arrow = [t for t in explorer.figure.data if t.type == "scatter" and t.mode == "lines+markers"][0]
    assert (arrow.x[0], arrow.y[0]) == (0.5, 1.0)  # arrows now start at the chosen point


def test_typed_point_moves_the_point_and_bad_text_gets_a_message():
    explorer = ToyExplorer("rosenbrock", resolution=11)
    explorer.typed_point.value = "0.5, 1"
    assert (explorer.x.value, explorer.y.value) == (0.5, 1.0) and explorer.message.value == ""
    assert explorer.stats.trace == pytest.approx(toy.hessian_stats("rosenbrock", (0.5, 1.0), b=100.0).trace)
    x_min, x_max, _, _ = toy.get("rosenbrock").domain
    for text, says in (("abc", "could not read 'abc' as a point"), ("1, 2, 3", "could not read"),
                       ("nan, 1", "not a finite point"), (f"{x_max + 1}, 1", "outside this function's domain")):
        explorer.typed_point.value = text
        assert says in explorer.message.value, text
        assert (explorer.x.value, explorer.y.value) == (0.5, 1.0)  # the point stays where it was


def test_the_zoom_box_stays_inside_the_functions_box():
    # Rosenbrock's box is x in [-2, 2], y in [-1, 3]: zoom 2 gives a 2 x 2 window, centred on the point
    # where it fits and pushed back against the edge where it would stick out.
    assert toy_figures.zoomed_domain("rosenbrock", 2.0, centre=(0.5, 1.0)) == pytest.approx((-0.5, 1.5, 0.0, 2.0))
    assert toy_figures.zoomed_domain("rosenbrock", 2.0, centre=(1.9, -0.9)) == pytest.approx((0.0, 2.0, -1.0, 1.0))
    assert toy_figures.zoomed_domain("rosenbrock", 1.0, centre=(1.0, 1.0)) == pytest.approx((-2.0, 2.0, -1.0, 3.0))


def test_go_to_accepts_exactly_the_points_the_figure_shows():
    # The two points: (2.5, 1) was drawn but refused, (-1.8, 2.8) accepted but off the picture.
    explorer = ToyExplorer("rosenbrock", resolution=11)
    explorer.typed_point.value = "-1.8, 2.8"
    assert (explorer.x.value, explorer.y.value) == (-1.8, 2.8) and explorer.message.value == ""
    surface = next(t for t in explorer.figure.data if t.type == "surface")
    assert surface.x[0] <= -1.8 <= surface.x[-1] and surface.y[0] <= 2.8 <= surface.y[-1]
    explorer.typed_point.value = "2.5, 1"
    assert "(2.5, 1) lies outside" in explorer.message.value and "x in [-2, 2], y in [-1, 3]" in explorer.message.value
    assert max(surface.x) < 2.5 and (explorer.x.value, explorer.y.value) == (-1.8, 2.8)


def test_live_explorer_switches_function_and_resets_controls():
    explorer = ToyExplorer("rosenbrock", resolution=11)
    explorer.zoom.value = 10.0
    explorer.function.value = "booth"
    assert explorer.parameter.disabled and explorer.params == {}
    assert (explorer.x.value, explorer.y.value) == (1.0, 3.0) and explorer.zoom.value == 1.0
    assert explorer.figure.layout.title.text.startswith("Booth")
    explorer.function.value = "rastrigin"
    assert explorer.parameter.description == "A" and explorer.params == {"A": 10.0}


def test_parameter_slider_steps_share_height_colour_and_contour_levels():
    values = [1, 200]
    figure = toy_figures.parameter_slider_figure("rosenbrock", "b", values, resolution=11)
    surfaces = [t for t in figure.data if t.type == "surface"]
    contours = [t for t in figure.data if t.type == "contour"]
    highest = max(float(np.max(s.z)) for s in surfaces)
    assert figure.layout.scene.zaxis.range[1] == pytest.approx(highest)
    assert len({(s.cmin, s.cmax) for s in surfaces}) == 1 and surfaces[0].cmax == pytest.approx(np.log10(1 + highest), rel=1e-3)
    assert len({(c.contours.start, c.contours.end, c.contours.size) for c in contours}) == 1
    # b = 1 stays low on the shared scale: its colours use a small part of the range
    assert max(map(float, np.ravel(contours[0].z))) < 0.8 * contours[0].zmax
