"""Where the repository keeps things, so chapters, notebooks and tests agree on one layout."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS_DIR = REPO_ROOT / "results"
REFERENCE_DIR = RESULTS_DIR / "reference"
RUNS_DIR = REPO_ROOT / "runs"
DATA_DIR = REPO_ROOT / "data"
EXPLORER_APP = REPO_ROOT / "explore" / "explorers.ipynb"  # the Voila app (`make explore`)
