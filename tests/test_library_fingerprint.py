"""A chapter re-executes exactly when a library module it can reach has changed."""

from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

from sharpness.book.build import FINGERPRINTS_FILE, stale_chapters
from sharpness.book.library_fingerprint import (
    chapter_fingerprint, chapter_results, dependencies, executed_code, imported_modules, library_modules,
    results_files, results_names, results_read,
)

CHAPTER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {name: python3, display_name: Python 3}
---

```{code-cell} ipython3
%matplotlib inline
from sharpness import top
```

```{code-cell} ipython3
:tags: [skip-execution]

from sharpness.viz.unused import Explorer
```
"""


@pytest.fixture
def project(tmp_path):
    """A tiny `sharpness` package: top imports helper inside a function, viz.unused is only in a skipped cell."""
    library = tmp_path / "sharpness"
    (library / "viz").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "top.py": "def f():\n    from .helper import g\n    return g()\n",
        "helper.py": "from . import constants\ndef g():\n    return constants.K\n",
        "constants.py": "K = 1\n",
        "viz/__init__.py": "",
        "viz/unused.py": "from ..top import f\n",
    }
    for name, text in files.items():
        (library / name).write_text(text)
    chapter = tmp_path / "chapter.md"
    chapter.write_text(CHAPTER)
    return library, chapter


def test_relative_imports_resolve_against_the_importing_module():
    assert imported_modules("from .toy import grid", "sharpness.viz.toy_widgets") == {"sharpness.viz.toy", "sharpness.viz.toy.grid"}
    assert imported_modules("from .. import toy", "sharpness.viz.boundary") == {"sharpness", "sharpness.toy"}
    assert imported_modules("from . import live", "sharpness.viz", is_package=True) == {"sharpness.viz", "sharpness.viz.live"}
    assert imported_modules("import numpy as np, sharpness.toy") == {"numpy", "sharpness.toy"}


def test_dependencies_follow_function_level_imports_and_skip_unexecuted_cells(project):
    library, chapter = project
    assert "skip-execution" not in executed_code(chapter) and "Explorer" not in executed_code(chapter)
    assert "%matplotlib" not in executed_code(chapter)
    used = dependencies(imported_modules(executed_code(chapter)), library_modules(library))
    assert used == {"sharpness", "sharpness.top", "sharpness.helper", "sharpness.constants"}


def test_fingerprint_changes_only_with_modules_the_chapter_reaches(project):
    library, chapter = project
    before = chapter_fingerprint(chapter, library)
    (library / "viz" / "unused.py").write_text("from ..top import f  # edited\n")
    assert chapter_fingerprint(chapter, library) == before
    (library / "constants.py").write_text("K = 2\n")  # two imports away, inside a function
    assert chapter_fingerprint(chapter, library) != before


def test_stale_chapters_drop_their_cached_outputs_once_per_change(project, tmp_path):
    library, chapter = project
    cache_dir = tmp_path / "cache"
    cache = get_cache(str(cache_dir))
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from sharpness import top")])
    executed.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}

    def cache_outputs():
        cache.cache_notebook_bundle(CacheBundleIn(executed, str(chapter)), check_validity=False, overwrite=True)

    cache_outputs()
    # Never fingerprinted: its outputs may predate a library edit, so it runs again.
    assert stale_chapters(cache_dir, {"chapter": chapter}, library) == ["chapter"]
    assert cache.list_cache_records() == []
    assert (cache_dir / FINGERPRINTS_FILE).is_file()
    cache_outputs()
    assert stale_chapters(cache_dir, {"chapter": chapter}, library) == []
    assert len(cache.list_cache_records()) == 1  # unchanged library: the cached outputs are kept
    (library / "helper.py").write_text("from . import constants\ndef g():\n    return constants.K + 1\n")
    assert stale_chapters(cache_dir, {"chapter": chapter}, library) == ["chapter"]
    assert cache.list_cache_records() == []


def test_committed_results_count_only_for_chapters_that_reach_the_results_paths(project, tmp_path):
    library, chapter = project
    results = tmp_path / "results"
    (results / "grid").mkdir(parents=True)
    (results / "grid" / "summary.json").write_text('{"runs": 18}')
    before = chapter_fingerprint(chapter, library, results)
    (results / "grid" / "summary.json").write_text('{"runs": 20}')
    assert chapter_fingerprint(chapter, library, results) == before  # this chapter never opens results/

    (library / "core").mkdir()
    (library / "core" / "paths.py").write_text("RESULTS_DIR = 'results'\n")
    (library / "constants.py").write_text("from .core.paths import RESULTS_DIR\nK = 1\nGRID = RESULTS_DIR / 'grid'\n")
    reads_results = chapter_fingerprint(chapter, library, results)
    assert chapter_fingerprint(chapter, library, results) == reads_results
    (results / "grid" / "seed3").mkdir()
    (results / "grid" / "seed3" / "summary.json").write_text("{}")  # a newly committed run
    after_new_run = chapter_fingerprint(chapter, library, results)
    assert after_new_run != reads_results
    (results / "grid" / "summary.json").write_text('{"runs": 21}')  # a rewritten grid summary
    after_rewrite = chapter_fingerprint(chapter, library, results)
    assert after_rewrite != after_new_run
    (results / "toy_fit").mkdir()
    (results / "toy_fit" / "fit.json").write_text("{}")  # what the chapter cannot read
    assert chapter_fingerprint(chapter, library, results) == after_rewrite


def test_results_places_from_literals_f_strings_paths_names_and_bare_uses():
    names = results_names("from pathlib import Path\nRESULTS_DIR = Path('results')\nREFERENCE_DIR = RESULTS_DIR / 'reference'\n"
                          "RUNS_DIR = Path('runs')\n")
    assert names == {"RESULTS_DIR": "", "REFERENCE_DIR": "reference"}
    source = ("from .core.paths import RESULTS_DIR, REFERENCE_DIR\nfrom .core import paths\n"
              "A = RESULTS_DIR / 'cpu_study' / 'x'\nB = RESULTS_DIR / f'{name}_cpu.json'\n"
              "C = REFERENCE_DIR / 'paper.csv'\nD = paths.REFERENCE_DIR\n")
    assert results_read(source, names) == {"cpu_study", "*_cpu.json", "reference/paper.csv", "reference"}
    assert "" in results_read("def f(folder=RESULTS_DIR):\n    return folder\n", names)  # anything: all of it
    assert "" in results_read("x = RESULTS_DIR / name\n", names)  # a path not spelt out: all of it
    declared = "RESULTS_READ = ('grid',)\ndef stale(folder=RESULTS_DIR):\n    return folder\n"
    assert results_read(declared, names) == {"grid"}  # the module's own statement wins over the bare use


def test_the_book_toy_chapters_read_no_study_results():
    """The issue's case: committing a study run must not re-execute the toy chapters (they read the paper's
    figures and toy_fit only), while every study chapter that shows the CPU study still sees its runs."""
    book = Path(__file__).resolve().parents[1] / "book"
    results_dir = Path(__file__).resolve().parents[1] / "results"
    run_file = results_dir / "cpu_study" / "cifar10_folder" / "x" / "baseline" / "seed0" / "summary.json"
    for chapter in sorted((book / "toy").glob("*.md")):
        places = chapter_results(chapter)
        assert "" not in places and not any(place.startswith("cpu_study") for place in places), (chapter, places)
        assert run_file not in results_files(results_dir, places)
    assert chapter_results(book / "toy" / "fitting.md") == {"toy_fit"}
    assert chapter_results(book / "toy" / "boundaries.md") == {"boundaries"}  # its stored study
    for name in ("results.md", "rho.md", "setup.md"):
        places = chapter_results(book / "study" / name)
        assert "" in places or "cpu_study" in places, (name, places)
