"""The library's layers: no module imports from a layer above its own, and no modules import each other in a circle.

Layers, bottom first: core <- toys, training <- measuring <- studies <- book (toys and training are
side by side and import neither each other). The top-level modules (`sharpness`, `__main__`) sit above
everything. Every import counts, function-level ones included, as the AST shows them.
"""

from __future__ import annotations

from pathlib import Path

from sharpness.book.library_fingerprint import LIBRARY_DIR, imported_modules, library_modules

LAYERS = {"core": 0, "toys": 1, "training": 1, "measuring": 2, "studies": 3, "book": 4}
TOP = max(LAYERS.values()) + 1


def package_of(module: str) -> str:
    """'sharpness.studies.sweep' -> 'studies'; top-level modules -> '' (above every layer)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def rank(module: str) -> int:
    return LAYERS.get(package_of(module), TOP)


def import_graph(library_dir: Path = LIBRARY_DIR) -> dict[str, set[str]]:
    """Module -> the library modules it imports (anywhere in its source)."""
    modules = library_modules(library_dir)
    graph = {}
    for name, path in modules.items():
        found = imported_modules(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py")
        graph[name] = {other for other in found if other in modules and other != name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module reaches above its layer or sideways into another package of it."""
    return sorted(
        (module, other)
        for module, imports in graph.items()
        for other in imports
        if package_of(other) != package_of(module) and rank(other) >= rank(module)
    )


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_the_checks_catch_a_bad_graph():
    bad = {
        "sharpness.core.paths": {"sharpness.training.train"},  # core reaching up
        "sharpness.toys.fit": {"sharpness.training.data"},  # sideways
        "sharpness.training.train": {"sharpness.core.paths"},
        "sharpness.training.data": set(),
        "sharpness.studies.sweep": {"sharpness.studies.cpu_study", "sharpness.measuring.landscape"},
        "sharpness.studies.cpu_study": {"sharpness.studies.sweep"},
        "sharpness.measuring.landscape": {"sharpness.studies.sweep"},  # up, and closes a circle
        "sharpness.__main__": {"sharpness.book.build"},
        "sharpness.book.build": set(),
    }
    assert upward_imports(bad) == [
        ("sharpness.core.paths", "sharpness.training.train"),
        ("sharpness.measuring.landscape", "sharpness.studies.sweep"),
        ("sharpness.toys.fit", "sharpness.training.data"),
    ]
    assert import_cycles(bad) == [
        ["sharpness.core.paths", "sharpness.training.train"],
        ["sharpness.measuring.landscape", "sharpness.studies.cpu_study", "sharpness.studies.sweep"],
    ]
    good = {"sharpness.core.paths": set(), "sharpness.training.train": {"sharpness.core.paths"},
            "sharpness.book.stats": {"sharpness.studies.store"}, "sharpness.studies.store": set()}
    assert upward_imports(good) == [] and import_cycles(good) == []


def test_the_graph_sees_every_layer():
    graph = import_graph()
    assert {package_of(module) for module in graph} >= set(LAYERS)
    assert "sharpness.studies.registry" in graph["sharpness.studies.sweep"]  # a real edge, so the walk works


def test_no_module_imports_upward():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []
