"""sharpness: the library behind the study book on flat and sharp minima (arXiv 2510.12451).

Modules: `toy` (test functions, Hessians), `viz` (figures), and, as the book grows, `fit`, `boundary`,
`data`, `models`, `controls`, `sam`, `train`, `measures`, `evaluate`, `corruptions`, `landscape`,
`results`, `sweep`.
"""

__version__ = "0.1.0"
