"""Names and text from files we did not write (results files, campaign archives, notebook parameters).

Two rules, one place: a name from outside that becomes a path is checked against a strict pattern (or a
closed vocabulary) and the path it makes must stay inside its folder (`name`, `inside`); a string from
outside that reaches a page is HTML-escaped where the page is made (`escape`, `styled`), so a hostile
results file shows its text and never runs it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

# One path component: letters, digits, '.', '_', '-'; not starting with '.' (no '..', no hidden files).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class UntrustedValueError(ValueError):
    """A value from a file or a parameter that may not become a path; the message names it and the fix."""


def name(value, what: str, source: str, accepted=None) -> str:
    """`value` as a safe path component: one of `accepted` where given, else matching NAME.
    `what` says which field it is and `source` where it came from (both go into the error)."""
    if accepted is not None:
        if value not in accepted:
            raise UntrustedValueError(f"{source}: {what} {value!r} is not one of {', '.join(map(str, accepted))}; "
                                      "fix or remove that file (it may have been tampered with)")
        return str(value)
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise UntrustedValueError(f"{source}: {what} {value!r} may not name a file (letters, digits, '.', '_' and '-' "
                                  "only, not starting with '.'); fix or remove that file (it may have been tampered with)")
    return value


def inside(root: str | Path, path: str | Path, source: str) -> Path:
    """`path` if it resolves inside `root` (links followed), else an UntrustedValueError naming `source`."""
    root_resolved, resolved = Path(root).resolve(), Path(path).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise UntrustedValueError(f"{source} would write {path}, outside {root}; refused: fix or remove that file")
    return Path(path)


def escape(text) -> str:
    """`text` (any value) as HTML/Markdown text that displays as itself: <, >, &, quotes escaped."""
    return html.escape(str(text))


def escaped_frame(table):
    """A copy of the DataFrame `table` whose string cells and labels are HTML-escaped (numbers untouched)."""
    import pandas as pd

    def clean(value):
        return escape(value) if isinstance(value, str) else value

    def clean_index(index: pd.Index) -> pd.Index:
        if isinstance(index, pd.MultiIndex):
            return pd.MultiIndex.from_tuples([tuple(clean(v) for v in entry) for entry in index], names=index.names)
        return pd.Index([clean(v) for v in index], name=clean(index.name) if index.name is not None else None)

    copy = table.map(clean)
    copy.index, copy.columns = clean_index(table.index), clean_index(table.columns)
    return copy


#: Characters above which a table cell is prose that may wrap; figures ("0.6370 ± 0.0041") are shorter and
#: never break (the book's stylesheet keeps table cells on one line).
PROSE_CELL = 32


def styled(table, caption: str | None = None):
    """`table.style` with every string (cells, labels, caption) HTML-escaped: pandas' Styler escapes none.
    Columns of text longer than PROSE_CELL wrap, so that a long label does not push the figures off the page."""
    import pandas as pd

    frame = escaped_frame(table)
    prose = [column for column in frame.columns if not pd.api.types.is_numeric_dtype(frame[column])
             and frame[column].astype(str).str.len().max() > PROSE_CELL] if len(frame) else []
    styler = frame.style
    if prose:
        styler = styler.set_properties(subset=prose, **{"white-space": "normal", "min-width": "12em"})
    return styler if caption is None else styler.set_caption(escape(caption))
