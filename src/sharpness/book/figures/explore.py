"""The three live explorers as one app (served by `make explore` through Voila, or shown in a notebook).

Each tab builds its explorer the first time it is opened: the toy functions draw at once, a decision
boundary trains a small network (seconds), and the landscape explorer may first train the book's
offline runs (minutes on a CPU), so nobody waits for a tab they never open.

Usage: python -m sharpness.book.figures.explore [--port 8866] [--no-browser]   (what `make explore` runs)
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import traceback
from typing import Callable, Sequence

import ipywidgets as widgets

from ...core.cli_values import port
from ...core.paths import EXPLORER_APP
from .boundary import BoundaryExplorer
from .landscape import LandscapeExplorer
from .toy_widgets import ToyExplorer

DEFAULT_PORT = 8866

# Tab title -> how to build its explorer (the defaults the chapters use).
EXPLORERS: dict[str, Callable[[], object]] = {
    "Toy functions": lambda: ToyExplorer("rosenbrock"),
    "Decision boundaries": lambda: BoundaryExplorer(separation=1.0),
    "Loss landscapes": lambda: LandscapeExplorer(seeds=(0, 1), resolutions=(11, 21, 51)),
}


class ExplorerApp:
    """A Tab per explorer, each built on first view; a failed build shows its error in the tab."""

    def __init__(self, explorers: dict[str, Callable[[], object]] | None = None):
        self.builders = dict(EXPLORERS if explorers is None else explorers)
        self.explorers: dict[str, object] = {}
        self.tabs = widgets.Tab(children=[widgets.VBox() for _ in self.builders], titles=list(self.builders))
        self.tabs.observe(self._on_select, names="selected_index")
        self.tabs.selected_index = 0
        self._on_select()

    def _on_select(self, change=None) -> None:
        index = self.tabs.selected_index
        if index is None:
            return
        title = list(self.builders)[index]
        if title in self.explorers:
            return
        box = self.tabs.children[index]
        box.children = [widgets.HTML(f"<i>Building the {html.escape(title.lower())} explorer...</i>")]
        try:
            explorer = self.builders[title]()
        except Exception as error:  # the reader sees why, the other tabs keep working
            box.children = [widgets.HTML(
                f"<b>The {html.escape(title.lower())} explorer could not start:</b> {html.escape(str(error))}"
                f"<pre>{html.escape(traceback.format_exc(limit=3))}</pre>"
            )]
            return
        self.explorers[title] = explorer
        box.children = [explorer.widget()]

    def widget(self) -> widgets.Widget:
        return self.tabs

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())


# A closed page leaves its kernel (about 1 GB with torch) running: Voila culls kernels idle this long with no
# page connected, checking every CULL_INTERVAL_S (jupyter-server's MappingKernelManager settings).
CULL_IDLE_S, CULL_INTERVAL_S = 300, 60


# The app's Voila template ("offline": the lab template without its CDN links), found on JUPYTER_PATH.
TEMPLATES = EXPLORER_APP.parent / "jupyter"
TEMPLATE = "offline"


def voila_arguments(port: int = DEFAULT_PORT, open_browser: bool = True) -> list[str]:
    """Voila's command line for the app: this machine only (127.0.0.1), nothing loaded from off it, one kernel
    per page, idle kernels of closed pages culled."""
    return [str(EXPLORER_APP), f"--port={port}", "--Voila.ip=127.0.0.1", f"--template={TEMPLATE}",
            # jupytext's lab extension needs JupyterLab's document manager, which Voila lacks (#RUNTIME-012)
            '--VoilaConfiguration.extension_denylist=["jupyterlab-jupytext"]',
            f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE_S}",
            f"--MappingKernelManager.cull_interval={CULL_INTERVAL_S}", "--MappingKernelManager.cull_connected=False",
            *([] if open_browser else ["--no-browser"])]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the live explorers (toy functions, boundaries, landscapes) with Voila.")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT)
    parser.add_argument("--no-browser", action="store_true", help="only print the address")
    args = parser.parse_args(argv)
    if not EXPLORER_APP.is_file():
        print(f"error: {EXPLORER_APP} is missing; the app needs a source checkout (git clone, then make explore)",
              file=sys.stderr)
        return 1
    from voila.app import main as voila_main

    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(TEMPLATES), os.environ.get("JUPYTER_PATH")]))
    voila_main(voila_arguments(args.port, open_browser=not args.no_browser))
    return 0


if __name__ == "__main__":
    sys.exit(main())
