"""The book: statistics, sentences and tables for the result pages, the ledger, figures, and build helpers.

`python -m sharpness.book prepare | check BUILD_DIR` runs the build helpers (`build`); the plotly
renderer plugin is registered as `sharpness.book:PlotlyMimeRenderer` (pyproject.toml) and loaded from
`build` only when asked for, so that pages importing `book.stats` do not load the build's dependencies.
"""


def __getattr__(name: str):
    if name == "PlotlyMimeRenderer":
        from .build import PlotlyMimeRenderer

        return PlotlyMimeRenderer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
