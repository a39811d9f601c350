"""The static-book machinery: plotly outputs become HTML, and a missing figure fails the check."""

import json
from types import SimpleNamespace

import plotly.graph_objects as go
import pytest

from sharpness.book import build as book
from sharpness.book.figures import show

CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# A chapter

```{code-cell} ipython3
show(first)
```

```{code-cell} ipython3
show(second)
```

```{code-cell} ipython3
:tags: [skip-execution]

show(live_only)
```
"""


def _figure_div():
    return '<div id="a" class="plotly-graph-div" style="height:100%"></div>'


@pytest.fixture
def built_book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "chapter.md").write_text(CHAPTER)
    html = tmp_path / "_build" / "html"
    (html / "_static").mkdir(parents=True)
    (html / "_static" / "plotly.min.js").write_text("/* plotly */")
    (html / "book").mkdir()
    return tmp_path, html


def test_expected_figures_counts_executed_show_calls_only(built_book):
    root, _ = built_book
    assert book.expected_figures(root / "book" / "chapter.md") == 2


def test_check_passes_when_every_figure_is_on_the_page(built_book):
    root, html = built_book
    page = f'<script src="_static/plotly.min.js"></script>{_figure_div()}{_figure_div()}'
    (html / "book" / "chapter.html").write_text(page)
    assert book.check(root / "_build", root / "book") == []


def test_check_fails_when_a_figure_was_dropped(built_book):
    root, html = built_book
    (html / "book" / "chapter.html").write_text(f'<script src="_static/plotly.min.js"></script>{_figure_div()}')
    problems = book.check(root / "_build", root / "book")
    assert len(problems) == 1 and "1 plotly figures, expected 2" in problems[0]


def test_check_fails_without_shipped_plotly_js(built_book):
    root, html = built_book
    (html / "_static" / "plotly.min.js").unlink()
    (html / "book" / "chapter.html").write_text(_figure_div() * 2)
    problems = book.check(root / "_build", root / "book")
    assert any("_static/plotly.min.js is missing" in p for p in problems)
    assert any("does not load plotly.min.js" in p for p in problems)


@pytest.mark.parametrize("tag", [
    '<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>',
    '<link rel="stylesheet" href="//fonts.example.org/font.css">',
    '<script src="https://unpkg.com/thebe@0.8.2/lib/index.js" async></script>',
    '<div style="background: url(\'http://example.org/x.png\')"></div>',
])
def test_check_fails_when_a_page_requests_a_remote_url(built_book, tag):
    root, html = built_book
    page = f'<script src="_static/plotly.min.js"></script>{_figure_div() * 2}'
    (html / "book" / "chapter.html").write_text(page)
    (html / "index.html").write_text(f'<html><head>{tag}</head><a href="https://arxiv.org/abs/2510.12451">paper</a></html>')
    problems = book.check(root / "_build", root / "book")
    assert len(problems) == 1 and problems[0].startswith("index.html requests a URL that is not local: ")


def test_links_and_local_files_are_not_remote_requests(tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<a href="https://arxiv.org">x</a><script src="_static/a.js"></script>'
                    '<link rel="icon" href="../_static/favicon.svg"><img src="data:image/png;base64,AAAA">')
    assert book.remote_requests(page) == []


def test_check_fails_when_a_page_carries_an_inline_script_twice(built_book):
    root, html = built_book
    page = f'<script src="_static/plotly.min.js"></script>{_figure_div() * 2}'
    (html / "book" / "chapter.html").write_text(page)
    twice = '<script>const THEBE_JS_URL = "x";</script><script>var once = 1;</script>'
    (html / "index.html").write_text(f'<html><head>{twice}<script>const THEBE_JS_URL = "x";</script></head></html>')
    assert book.check(root / "_build", root / "book") == [
        'index.html carries this inline script twice: const THEBE_JS_URL = "x";']


def test_each_script_stays_on_the_page_once():
    """Sphinx 7.4 hands a page the same inline script named None and named '': the page gets one."""
    from sphinx.builders.html._assets import _JavaScript
    scripts = [_JavaScript("doctools.js", priority=200), _JavaScript(None, priority=500, body="const A = 1"),
               _JavaScript("", priority=500, body="const A = 1"), _JavaScript("", priority=500, body="const B = 2")]
    context = {"script_files": scripts}
    book._one_copy_of_each_script(None, "page", "page.html", context, None)
    assert [s.attributes.get("body") for s in context["script_files"]] == [None, "const A = 1", "const B = 2"]


def test_plotly_mime_output_renders_to_a_drawable_div():
    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    data = SimpleNamespace(mime_type=book.PLOTLY_MIME, content=json.loads(figure.to_json()))
    (node,) = book.PlotlyMimeRenderer.handle_mime(None, data, inline=False)
    html = node.astext()
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html
    assert "[3,4]" in html.replace(" ", "")
    assert book.PlotlyMimeRenderer.handle_mime(None, SimpleNamespace(mime_type="text/plain", content=""), False) is None


def test_renderer_plugin_is_registered_with_myst_nb():
    from myst_nb.core.render import get_mime_priority, load_mime_renders

    assert book.PlotlyMimeRenderer in load_mime_renders()
    priority = get_mime_priority("html", [])
    assert priority.index(book.PLOTLY_MIME) < priority.index("text/html")


def test_show_rejects_non_figures():
    with pytest.raises(TypeError, match="plotly Figure, got dict"):
        show({"data": []})


def test_pages_use_the_shipped_mathjax_only_when_it_is_there(tmp_path):
    cdn = "https://cdn.example/mathjax.js"
    app, config = SimpleNamespace(srcdir=str(tmp_path)), SimpleNamespace(mathjax_path=cdn)
    book._use_local_mathjax(app, config)
    assert config.mathjax_path == cdn
    entry = tmp_path / "book" / "_static" / book.MATHJAX_ENTRY
    entry.parent.mkdir(parents=True)
    entry.write_text("// mathjax")
    book._use_local_mathjax(app, config)
    assert config.mathjax_path == "mathjax/tex-mml-chtml.js"
