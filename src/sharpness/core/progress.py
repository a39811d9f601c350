"""Progress bars: tqdm's (a widget in notebooks, text elsewhere), all off while TQDM_DISABLE is set.

tqdm reads TQDM_DISABLE only as the default of `disable`, and the library passes `disable=not progress`
explicitly, so the variable alone would not silence it. The book build sets it: a progress widget frozen
into a static page draws only with require.js and the widget manager from a CDN.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm as _tqdm


def switched_off() -> bool:
    """Whether TQDM_DISABLE asks for no progress bars (any value but empty, 0 or false)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def tqdm(*args, disable: bool = False, **kwargs):
    """tqdm.auto.tqdm, with TQDM_DISABLE honoured even where `disable` is given."""
    return _tqdm(*args, disable=disable or switched_off(), **kwargs)


def bars_reach_a_terminal() -> bool:
    """Whether a text bar is drawn live for a reader: bars on and stderr a terminal. In a kernel (papermill's
    --log-output, Jupyter) tqdm draws a widget that a log never shows; in a redirected run, nothing live."""
    return not switched_off() and sys.stderr.isatty()


def log_line(text: str) -> None:
    """Print one progress line (flushed) where no bar reaches a terminal; where one does, the bar says it."""
    if not bars_reach_a_terminal():
        print(text, flush=True)
