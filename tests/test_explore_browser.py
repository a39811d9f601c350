"""The live explorer app in a real browser: Voila serves it, headless Chromium moves a slider.

Skipped, with the reason, where Playwright's python package or a Chromium binary is missing
(`.ci/run` installs Debian's chromium; set CHROMIUM=/path/to/chrome to use another).
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from conftest import PAGE_TIMEOUT_S

from sharpness.toys import toy

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python package) is not installed")

CHROMIUM = os.environ.get("CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)"),
]
# PAGE_TIMEOUT_S bounds a failure, it is not an expectation: every wait ends as soon as its condition holds.
# The toy tab's surface trace as the browser holds it, or null while no figure holds one yet (plotly may be
# mid-redraw, or a figure without a surface drawn first): waited for, never read before it exists.
SURFACE_JS = """() => {
    for (const plot of document.querySelectorAll(".js-plotly-plot")) {
        const t = (plot.data || []).find(t => t && t.type === "surface" && t.x && t.y && t.z);
        if (t) return [Array.from(t.x), Array.from(t.y), Array.from(t.z, row => Array.from(row))];
    }
    return null;
}"""

# Width of the toy figure as plotly laid it out, the width its container offers, and the right edge of its
# contour panel (the x axis of the xy subplot), once the figure holds a surface.
WIDTHS_JS = """() => {
    for (const plot of document.querySelectorAll(".js-plotly-plot")) {
        const layout = plot._fullLayout;
        if (!layout || !(plot.data || []).some(t => t && t.type === "surface")) continue;
        return [layout.width, plot.parentElement.clientWidth, layout.xaxis._offset + layout.xaxis._length];
    }
    return null;
}"""


@pytest.fixture(scope="module")
def page(explorer_app_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.requested = []  # every address the page asked for, to check none is off this machine
        page.on("request", lambda request: page.requested.append(request.url))
        page.goto(explorer_app_url, timeout=PAGE_TIMEOUT_S * 1000)
        page.wait_for_function(SURFACE_JS, timeout=PAGE_TIMEOUT_S * 1000)
        yield page
        browser.close()


def drag_slider(page, label: str, fraction: float) -> float:
    """Drag the handle of the slider named `label` to `fraction` of its track; returns the value it reads out."""
    slider = page.locator(".widget-slider", has_text=label)
    track, handle = slider.locator(".noUi-target").bounding_box(), slider.locator(".noUi-handle").bounding_box()
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * fraction, y, steps=8)
    page.mouse.up()
    return float(slider.locator(".widget-readout").inner_text().replace("\N{MINUS SIGN}", "-"))


def surface_in_page(page) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y and z of the toy tab's surface trace, as the browser holds them."""
    x, y, z = page.wait_for_function(SURFACE_JS, timeout=PAGE_TIMEOUT_S * 1000).json_value()
    return np.asarray(x), np.asarray(y), np.asarray(z)


def rosenbrock_hessian(x: float, y: float, b: float, a: float = 1.0) -> np.ndarray:
    """By hand: f = (a - x)^2 + b (y - x^2)^2."""
    return np.array([[2 - 4 * b * (y - x**2) + 8 * b * x**2, -4 * b * x], [-4 * b * x, 2 * b]])


def test_moving_the_parameter_slider_redraws_the_surface_the_library_computes(page):
    x, y, z = surface_in_page(page)
    np.testing.assert_allclose(z, (1 - x[None, :]) ** 2 + 100 * (y[:, None] - x[None, :] ** 2) ** 2, rtol=1e-9)

    b = drag_slider(page, "b", 0.15)
    assert b != 100.0, "the drag did not move the slider"
    expected = (1 - x[None, :]) ** 2 + b * (y[:, None] - x[None, :] ** 2) ** 2
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while not np.allclose(surface_in_page(page)[2], expected, rtol=1e-9):
        assert time.monotonic() < deadline, f"the surface was not redrawn for b = {b} within {PAGE_TIMEOUT_S} s of moving the slider"
        time.sleep(0.25)

    # The read-out gives the Hessian at the point (1, 1): the library's numbers, which match the hand formula.
    stats = toy.hessian_stats("rosenbrock", (1.0, 1.0), b=b)
    np.testing.assert_allclose(stats.eigenvalues, np.linalg.eigvalsh(rosenbrock_hessian(1.0, 1.0, b)), rtol=1e-9)
    page.locator(".widget-html-content", has_text=f"trace {stats.trace:.4g};").wait_for(timeout=PAGE_TIMEOUT_S * 1000)


def test_the_page_asks_nothing_of_any_machine_but_this_one(page):
    off = [url for url in page.requested if not url.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert page.requested and off == []


@pytest.mark.parametrize("width", [800, 1400])
def test_the_contour_panel_stays_on_the_page_when_the_window_is_resized(page, width):
    page.set_viewport_size({"width": width, "height": 1000})
    # plotly redraws a responsive figure on the window's resize event; wait until it has, however long that takes
    page.wait_for_function(f"() => {{ const w = ({WIDTHS_JS})(); return w && w[1] < {width} && Math.abs(w[0] - w[1]) <= 2; }}",
                           timeout=PAGE_TIMEOUT_S * 1000)
    figure_width, container_width, contour_right = page.evaluate(WIDTHS_JS)
    assert contour_right <= figure_width <= container_width + 2


def test_arrow_presses_on_a_retraining_slider_show_a_busy_sign_and_end_at_the_last_press(page):
    page.get_by_role("tab", name="Decision boundaries").click()
    title = page.locator(".js-plotly-plot .gtitle", has_text="separation 1")
    title.first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    slider = page.locator(".widget-slider", has_text="separation")
    slider.locator(".noUi-handle").focus()
    for _ in range(3):  # 1 -> 1.75 in steps of 0.25, faster than one retrain
        page.keyboard.press("ArrowRight")
    page.get_by_text("training a network for separation").first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    page.locator(".js-plotly-plot .gtitle", has_text="separation 1.75").first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    page.get_by_text("training a network for separation").first.wait_for(state="hidden", timeout=PAGE_TIMEOUT_S * 1000)
    assert slider.locator(".widget-readout").inner_text() == "1.75"
