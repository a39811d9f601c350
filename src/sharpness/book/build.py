"""Book build helpers: plotly figures in the static HTML, shipped offline, and checked to be there.

- `PlotlyMimeRenderer`: a myst-nb mime-renderer plugin (registered as an entry point in pyproject.toml).
  plotly >= 6 in a headless kernel emits only `application/vnd.plotly.v1+json`, which myst-nb would drop
  with a warning; this plugin turns that output into a div and a `Plotly.newPlot` call instead, so
  chapters display figures the ordinary way and live notebooks keep plotly's own renderer.
- `prepare`: copies plotly.js from the installed plotly package into the book's `_static` (no CDN), and
  MathJax from the npm registry where npm is available (else pages load MathJax from its CDN).
- `setup`: a Sphinx extension (listed in `_config.yml`) pointing pages at that local MathJax when present,
  and loading plotly.js only on pages that draw a figure; re-executing a chapter when the library code it
  runs, or the committed results it reads, have changed (`library_fingerprint`): its cached outputs are
  dropped and Sphinx reads it again. Every chapter page offers its executed notebook (.ipynb) for
  download; launch buttons appear only when `_config.yml` names the repository; each script appears once.
- `check`: fails when a chapter's figures did not reach its HTML page, or when any page would request
  a URL that is not local (a CDN script, stylesheet, font or image).

Usage: python -m sharpness.book prepare | check BUILD_DIR
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jupytext
import plotly
import plotly.io as pio
from docutils import nodes

from ..core.paths import RESULTS_DIR
from .library_fingerprint import LIBRARY_DIR, chapter_fingerprint

PLOTLY_MIME = "application/vnd.plotly.v1+json"
RESULTS_READ = ()  # names RESULTS_DIR only to hand it to the fingerprints; a page reading this module reads no results

ROOT = Path(__file__).resolve().parents[3]
STATIC = ROOT / "book" / "_static"
MATHJAX_PACKAGE = "mathjax@3.2.2"
# The combined TeX/MathML component and what it loads lazily (fonts, menu, accessibility), not the
# 4 MB speech engine.
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "adaptors")
MATHJAX_ENTRY = "mathjax/tex-mml-chtml.js"
FIGURE_CALL = re.compile(r"(?<![\w.])show\(")


# The figure is drawn while the page is still laying out, so plotly may fall back to its default
# 700 px width; once the page has loaded, fit it to the column it actually sits in.
FIT_TO_COLUMN = "window.addEventListener('load', function () { Plotly.Plots.resize('{plot_id}'); });"


class PlotlyMimeRenderer:
    """Renders plotly's mime bundle as HTML that draws with the page's own plotly.js."""

    # Above text/html (30) for the HTML builder; other builders do not list it and skip it.
    mime_priority_overrides = [("html", PLOTLY_MIME, 15), ("dirhtml", PLOTLY_MIME, 15)]

    @staticmethod
    def handle_mime(renderer, data, inline):
        if inline or data.mime_type != PLOTLY_MIME:
            return None
        html = pio.to_html(
            data.content, include_plotlyjs=False, full_html=False, validate=False,
            config={"responsive": True}, post_script=FIT_TO_COLUMN,
        )
        return [nodes.raw("", html, format="html", classes=["output", "text_html"])]


def prepare(static_dir: Path = STATIC) -> Path:
    """Copy plotly.min.js from the installed plotly package into the book's static folder (no CDN)."""
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    static_dir.mkdir(parents=True, exist_ok=True)
    target = static_dir / "plotly.min.js"
    shutil.copyfile(source, target)
    return target


def ship_mathjax(static_dir: Path = STATIC) -> str:
    """Unpack MathJax from the npm registry into `_static/mathjax`; says what happened."""
    if (static_dir / MATHJAX_ENTRY).is_file():
        return f"MathJax already in {static_dir / 'mathjax'}"
    npm = shutil.which("npm")
    if npm is None:
        return "npm not found: pages will load MathJax from its CDN"
    with tempfile.TemporaryDirectory() as scratch:
        packed = subprocess.run(
            [npm, "pack", MATHJAX_PACKAGE, "--pack-destination", scratch, "--silent"],
            capture_output=True, text=True, timeout=300,
        )
        if packed.returncode != 0:
            return f"npm pack {MATHJAX_PACKAGE} failed ({packed.stderr.strip()[:200]}): MathJax from its CDN"
        with tarfile.open(next(Path(scratch).glob("*.tgz"))) as archive:
            archive.extractall(scratch, filter="data")
        es5 = Path(scratch) / "package" / "es5"
        staging = Path(scratch) / "mathjax"
        staging.mkdir()
        for part in MATHJAX_PARTS:
            copy = shutil.copytree if (es5 / part).is_dir() else shutil.copyfile
            copy(es5 / part, staging / part)
        target = static_dir / "mathjax"
        shutil.rmtree(target, ignore_errors=True)  # a copy interrupted earlier, without its entry file
        shutil.move(staging, target)
    return f"MathJax ({MATHJAX_PACKAGE}) unpacked into {target}"


def _use_local_mathjax(app, config) -> None:
    if (Path(app.srcdir) / "book" / "_static" / MATHJAX_ENTRY).is_file():
        config.mathjax_path = MATHJAX_ENTRY


PLOTLY_JS = "plotly.min.js"


def _plotly_where_drawn(app, pagename, templatename, context, doctree) -> None:
    """Load plotly.js (3.5 MB) only on pages whose body holds a plotly figure."""
    if 'class="plotly-graph-div"' in context.get("body", ""):
        app.add_js_file(PLOTLY_JS, priority=100)  # called here, Sphinx adds it to this page only


# Beside jupyter-cache's database: each chapter's library fingerprint as of its cached outputs.
FINGERPRINTS_FILE = "sharpness-library-fingerprints.json"


def _write_json_atomically(path: Path, data) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)


def stale_chapters(cache_dir: Path, chapters: dict[str, Path], library_dir: Path = LIBRARY_DIR,
                   results_dir: Path | None = RESULTS_DIR) -> list[str]:
    """Chapters (docname -> source) whose library fingerprint (with the committed results they read)
    changed since their outputs were cached.

    Their cache records are removed, so they execute again; the new fingerprints are recorded. A chapter
    never fingerprinted before counts as changed (its cached outputs may predate any library edit).
    """
    from jupyter_cache import get_cache

    cache_dir.mkdir(parents=True, exist_ok=True)
    record_file = cache_dir / FINGERPRINTS_FILE
    recorded = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    current = {docname: chapter_fingerprint(path, library_dir, results_dir) for docname, path in chapters.items()}
    stale = sorted(docname for docname, fingerprint in current.items() if recorded.get(docname) != fingerprint)
    if stale:
        cache = get_cache(str(cache_dir))
        stale_sources = {str(chapters[docname]) for docname in stale}
        for record in cache.list_cache_records():
            if record.uri in stale_sources:
                cache.remove_cache(record.pk)
    _write_json_atomically(record_file, {**recorded, **current})
    return stale


def _reexecute_when_library_changed(app, env, added, changed, removed) -> list[str]:
    """Sphinx `env-get-outdated`: chapters to read (and execute) again although their text is unchanged."""
    config = getattr(env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache":
        return []
    chapters = {docname: Path(env.doc2path(docname)) for docname in env.found_docs
                if Path(env.doc2path(docname)).suffix in (".md", ".ipynb")}
    stale = stale_chapters(Path(config.execution_cache_path), chapters)
    if stale:
        from sphinx.util import logging

        logging.getLogger(__name__).info("library code changed: re-executing %s", ", ".join(stale))
    return [docname for docname in stale if docname not in added | changed]


def _launch_buttons_need_a_repository(app, config) -> None:
    """Launch buttons point into the repository: with no `repository.url` in _config.yml, none are shown."""
    options = config.html_theme_options
    if not options.get("repository_url"):
        options.pop("launch_buttons", None)


def _offer_notebook_download(app, pagename, templatename, context, doctree) -> None:
    """Put the chapter's executed notebook beside its source, for the theme's download menu (.ipynb).

    The theme does this itself only when launch buttons are on; a reader may want the notebook anyway.
    """
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def _one_copy_of_each_script(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated scripts from a page. Sphinx 7.4 keeps an inline script that an extension adds after the
    builder started (sphinx-thebe's `const THEBE_JS_URL`, togglebutton's selector) twice, once named None
    and once '', and the second `const` stops the page's script with "already declared"."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (str(script.filename or ""), tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    """Sphinx extension: local MathJax when `prepare` shipped one; plotly.js on the pages that draw figures,
    before any require.js, so it defines the global `Plotly`; chapters re-run when their library changed;
    a notebook download on every chapter; launch buttons only with a repository URL."""
    app.connect("config-inited", _use_local_mathjax)
    app.connect("config-inited", _launch_buttons_need_a_repository)
    app.connect("html-page-context", _plotly_where_drawn)
    app.connect("html-page-context", _one_copy_of_each_script, priority=900)  # after every script is added
    # Before the theme's header buttons (priority 501) read `ipynb_source`.
    app.connect("html-page-context", _offer_notebook_download, priority=500)
    app.connect("env-get-outdated", _reexecute_when_library_changed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def expected_figures(chapter: Path) -> int:
    """Figures a chapter should show: `show(` calls in code cells that the build executes."""
    notebook = jupytext.read(chapter)
    count = 0
    for cell in notebook.cells:
        if cell.cell_type != "code" or "skip-execution" in cell.metadata.get("tags", []):
            continue
        count += len(FIGURE_CALL.findall(cell.source))
    return count


def rendered_figures(page: Path) -> int:
    return page.read_text(encoding="utf-8").count('class="plotly-graph-div"')


# Tags whose URL the browser fetches when the page loads (links to other sites are not fetched).
FETCHED = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*?\ssrc=[\"']([^\"']+)[\"']"
    r"|<link\b[^>]*?\shref=[\"']([^\"']+)[\"']", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
CSS_URL = re.compile(r"url\(\s*[\"']?([^\"')]+)", re.IGNORECASE)


def remote_requests(page: Path) -> list[str]:
    """URLs a built page would fetch from elsewhere: script/img/iframe sources, <link> targets (styles,
    icons, preloads) and url(...) in inline styles, when absolute (http:, https:, or protocol-relative)."""
    text = page.read_text(encoding="utf-8")
    urls = [a or b for a, b in FETCHED.findall(text)] + CSS_URL.findall(text)
    return sorted({url for url in urls if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url.strip(), re.IGNORECASE)})


def repeated_scripts(page: Path) -> list[str]:
    """Inline scripts a page carries more than once (a repeated `const` throws when the page loads)."""
    bodies = INLINE_SCRIPT.findall(page.read_text(encoding="utf-8"))
    return sorted({body.strip()[:60] for body in bodies if bodies.count(body) > 1})


def check(build_dir: Path, book_dir: Path = ROOT / "book") -> list[str]:
    """Problems found: pages missing figures, plotly.js not shipped or not loaded, and any page that
    would fetch something that is not local (`remote_requests`) or carries an inline script twice."""
    html_dir = build_dir / "html" if (build_dir / "html").is_dir() else build_dir
    problems = []
    if not (html_dir / "_static" / "plotly.min.js").is_file():
        problems.append(f"{html_dir}/_static/plotly.min.js is missing: figures cannot draw offline")
    for chapter in sorted(book_dir.rglob("*.md")):
        if "_static" in chapter.parts:
            continue
        expected = expected_figures(chapter)
        if expected == 0:
            continue
        page = html_dir / chapter.relative_to(book_dir.parent).with_suffix(".html")
        if not page.is_file():
            problems.append(f"{page} was not built (expected {expected} figures)")
            continue
        found = rendered_figures(page)
        if found < expected:
            problems.append(f"{page.relative_to(html_dir)}: {found} plotly figures, expected {expected}")
        if PLOTLY_JS not in page.read_text(encoding="utf-8"):
            problems.append(f"{page.relative_to(html_dir)} does not load {PLOTLY_JS}")
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" in page.relative_to(html_dir).parts:
            continue
        for url in remote_requests(page):
            problems.append(f"{page.relative_to(html_dir)} requests a URL that is not local: {url}")
        for script in repeated_scripts(page):
            problems.append(f"{page.relative_to(html_dir)} carries this inline script twice: {script}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        print(f"plotly.js copied to {prepare()}")
        print(ship_mathjax())
        return 0
    if argv[:1] == ["check"] and len(argv) == 2:
        problems = check(Path(argv[1]))
        for problem in problems:
            print("BOOK CHECK:", problem, file=sys.stderr)
        if not problems:
            print("book check: every chapter's figures are in the HTML, and no page requests a remote URL")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
