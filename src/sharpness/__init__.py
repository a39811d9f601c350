"""sharpness: the library behind the study book on flat and sharp minima (arXiv 2510.12451).

Packages, in layers (a package imports only from the ones above it):

- `core`: repository paths, run folders on disk (atomic writes), progress bars, provenance, threads.
- `toys`: the toy functions with analytic Hessians (`toy`), networks fitted to them (`fit`), boundaries.
- `training`: data sets, models, the six controls, SAM, and training one run (`train`).
- `measuring`: sharpness measures, evaluating a run, corrupted test sets, loss landscapes.
- `studies`: which study a page shows (`registry`), grid files (`store`), surfaces a page shows, and the
  orchestrators that run grids (`sweep`, `cpu_study`, `campaign`, `campaign_import`).
- `book`: statistics (`stats`), sentences (`prose`) and tables (`tables`) for the pages, the ledger,
  the figures (`figures`) and the build helpers (`build`).

`python -m sharpness <command>` is the command line (see `__main__`).
"""

__version__ = "0.1.0"
