"""The explorer app without a browser: tabs built on first view, failures shown in place, synced figures."""

import re
import threading
import urllib.parse
import urllib.request

import ipywidgets as widgets
import numpy as np
import pytest
from conftest import PAGE_TIMEOUT_S

from sharpness.book.figures.boundary import BoundaryExplorer
from sharpness.book.figures.explore import EXPLORERS, ExplorerApp, voila_arguments
from sharpness.book.figures.landscape import LandscapeExplorer
from sharpness.book.figures.live import LatestOnly
from sharpness.book.figures.toy_widgets import ToyExplorer
from sharpness.core.paths import EXPLORER_APP
from sharpness.measuring.landscape import ControlLandscape, Surface
from sharpness.toys import toy


class Stub:
    def __init__(self, label):
        self.label = label

    def widget(self):
        return widgets.Label(self.label)


def test_each_tab_is_built_once_when_first_opened():
    built = []

    def builder(label):
        return lambda: built.append(label) or Stub(label)

    app = ExplorerApp({"one": builder("one"), "two": builder("two")})
    assert built == ["one"] and app.tabs.titles == ("one", "two")
    app.tabs.selected_index = 1
    app.tabs.selected_index = 0
    app.tabs.selected_index = 1
    assert built == ["one", "two"]
    assert app.tabs.children[1].children[0].value == "two"


def test_a_tab_that_fails_to_build_says_why_and_the_others_still_work():
    def broken():
        raise RuntimeError("no offline runs in /nowhere")

    app = ExplorerApp({"fine": lambda: Stub("fine"), "broken": broken})
    app.tabs.selected_index = 1
    (message,) = app.tabs.children[1].children
    assert "could not start" in message.value and "no offline runs in /nowhere" in message.value
    assert app.tabs.children[0].children[0].value == "fine"


def test_the_app_serves_the_three_explorers_from_the_committed_notebook():
    assert list(EXPLORERS) == ["Toy functions", "Decision boundaries", "Loss landscapes"]
    assert EXPLORER_APP.is_file() and "ExplorerApp()" in EXPLORER_APP.read_text()
    arguments = voila_arguments(9000, open_browser=False)
    assert arguments[:3] == [str(EXPLORER_APP), "--port=9000", "--Voila.ip=127.0.0.1"] and arguments[-1] == "--no-browser"
    # idle kernels of closed pages are culled (jupyter-server's settings, read by Voila's kernel manager)
    assert {"--MappingKernelManager.cull_idle_timeout=300", "--MappingKernelManager.cull_connected=False"} <= set(arguments)


def test_a_redrawn_figure_is_what_a_page_loaded_afterwards_draws():
    # Voila's page connects after the notebook ran: it draws the widget's synced state, not the edits.
    explorer = ToyExplorer("rosenbrock", resolution=7)
    explorer.parameter.value = 20.0
    synced = explorer.figure._widget_data
    assert [t["type"] for t in synced] == [t.type for t in explorer.figure.data]
    surface = next(t for t in synced if t["type"] == "surface")
    x, y = np.asarray(surface["x"]), np.asarray(surface["y"])
    np.testing.assert_allclose(np.asarray(surface["z"]), (1 - x[None, :]) ** 2 + 20.0 * (y[:, None] - x[None, :] ** 2) ** 2)
    assert explorer.figure._widget_layout["title"]["text"].startswith(toy.get("rosenbrock").label)


def flat_landscape(control: str, seed: int, resolution: int) -> ControlLandscape:
    axis = np.linspace(-1, 1, resolution)
    loss = np.ones((resolution, resolution))
    return ControlLandscape("digits", "simple_cnn", control, seed, Surface([axis, axis], loss, loss / 2, {}), {})


def test_every_explorers_figure_follows_the_window_width():
    # What the browser's view reads when it draws: plotly's `responsive` config redraws the figure on a window
    # resize, to the container's width (autosize, no fixed width). tests/test_explore_browser.py resizes a page.
    explorers = [ToyExplorer("rosenbrock", resolution=7),
                 BoundaryExplorer(separation=4.0, points_per_class=10, sizes=(2, 4, 1), max_epochs=50),
                 LandscapeExplorer(flat_landscape, controls=("baseline",), seeds=(0,), resolutions=(3,))]
    for explorer in explorers:
        figure = explorer.figure
        assert figure._config.get("responsive") is True, type(explorer).__name__
        assert figure._widget_layout.get("autosize") is True and "width" not in figure._widget_layout


def addresses_off_this_machine(page: str) -> set[str]:
    """Every http(s) address in a page that points off 127.0.0.1, less XML namespace names (xmlns and rdf
    attributes of an inline SVG: identifiers a browser never fetches)."""
    names = set(re.findall(r'(?:xmlns(?::\w+)?|rdf:\w+)="(https?://[^"]+)"', page))
    addresses = set(re.findall(r"https?://[^\s\"'()<>]+", page)) - names
    return {a for a in addresses if urllib.parse.urlsplit(a).hostname not in ("127.0.0.1", "localhost")}


def test_address_finder_sees_what_voilas_own_template_loads_from_a_cdn():
    # The lab template's lines as Voila 0.5 writes them (the app's template drops them).
    page = ('<svg xmlns="http://www.w3.org/2000/svg"><cc:Work rdf:resource="http://purl.org/dc/dcmitype/StillImage"/>'
            '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/all.min.css" />'
            '<script src="http://127.0.0.1:8866/voila/static/voila.js"></script>'
            '(await import("https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs"))')
    assert addresses_off_this_machine(page) == {
        "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/all.min.css",
        "https://cdnjs.cloudflare.com/ajax/libs/mermaid/11.10.0/mermaid.esm.min.mjs"}


@pytest.mark.slow
def test_the_served_page_loads_nothing_from_off_this_machine(explorer_app_url):
    # Offline, a CDN link is a failed request (Font Awesome's, "#RUNTIME-012" in the console). The icons come
    # with Voila's own bundle; tests/test_explore_browser.py also watches the requests a browser makes.
    with urllib.request.urlopen(explorer_app_url, timeout=PAGE_TIMEOUT_S) as response:
        page = response.read().decode()
    assert "application/vnd.jupyter.widget-view+json" in page  # the app's page, its widgets drawn, not an error
    assert addresses_off_this_machine(page) == set()


def test_steps_made_during_a_slow_redraw_replace_each_other_and_a_busy_sign_shows():
    # The reader presses an arrow key 3 times while the first request computes: only the newest is computed
    # next, the first's result (no longer what the slider shows) is never drawn, and the sign says what runs.
    first_started, release = threading.Event(), threading.Event()
    computed, drawn = [], []

    def compute(request):
        computed.append(request)
        first_started.set()
        assert release.wait(timeout=60)
        return 10 * request

    updates = LatestOnly(compute, drawn.append, describe=lambda request: f"request {request}")
    updates.submit(1)
    assert first_started.wait(timeout=60) and "Busy: request 1" in updates.status.value
    for request in (2, 3, 4):
        updates.submit(request)  # returns at once: the kernel stays free for the next press
    assert "Busy: request 4" in updates.status.value and drawn == []
    release.set()
    assert updates.wait(timeout=60)
    assert computed == [1, 4] and drawn == [40] and updates.status.value == ""


def test_a_failed_redraw_says_why_and_the_next_request_still_draws():
    def compute(request):
        if request < 0:
            raise ValueError(f"no network for {request}")
        return request

    drawn = []
    updates = LatestOnly(compute, drawn.append, describe=lambda request: f"request {request}")
    updates.submit(-1)
    assert updates.wait(timeout=60) and "request -1 failed:</b> no network for -1" in updates.status.value
    updates.submit(5)
    assert updates.wait(timeout=60) and drawn == [5] and updates.status.value == ""


def test_the_boundary_explorer_trains_only_the_newest_separation():
    explorer = BoundaryExplorer(separation=4.0, points_per_class=10, sizes=(2, 4, 1), max_epochs=50)
    trained, train, pressed = [], explorer.updates.compute, threading.Event()

    def compute(request):  # the training, held until the reader's presses are made (however slow they are)
        trained.append(request[0])
        assert pressed.wait(timeout=60)
        return train(request)

    explorer.updates.compute = compute
    for separation in (3.0, 2.0, 1.0):  # three presses while the first training runs
        explorer.separation.value = separation
    assert "training a network for separation 1, seed 0, 10 points/class" in explorer.updates.status.value
    pressed.set()
    assert explorer.updates.wait(timeout=300)  # a bound for a failure, not an expectation
    # at most the one the worker had taken when the presses came, then the newest: never one per press
    assert trained[-1] == 1.0 and len(trained) <= 2
    assert explorer.figure.layout.title.text.startswith("separation 1") and explorer.result.config.separations == (1.0,)
