"""Which library files a chapter runs, and one hash of them, so the book re-executes what they changed.

The build's execution cache keys a chapter on its own code only; a chapter that calls
`sharpness.book.figures.toy` would keep showing old outputs after that module changed. A chapter's fingerprint
hashes every `sharpness` module its executed cells import, followed through the library's own imports
(function-level imports included, parent packages too), so only the chapters that can see an edit
are run again. It also hashes the committed results the chapter can read, and only those: where its
code or a module it reaches writes `RESULTS_DIR / "cpu_study"` (or a name `sharpness.core.paths` defines
so, like REFERENCE_DIR), that part of `results/` counts (an f-string's fields count as `*`); a bare
`RESULTS_DIR` (a default argument, a comparison) counts all of `results/`, so nothing a chapter reads
is missed, unless the module declares what it reads (`RESULTS_READ`, the build helpers: none). Committing a study run then re-executes the pages that show it, not the toy chapters.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import jupytext

PACKAGE = "sharpness"
LIBRARY_DIR = Path(__file__).resolve().parents[1]
PATHS_MODULE = f"{PACKAGE}.core.paths"  # defines RESULTS_DIR and the names below it (it reads nothing itself)
RESULTS_NAME = "RESULTS_DIR"
# A module that names RESULTS_DIR without reading what is there (the build passes it to this module) says so
# with `RESULTS_READ = ()`; otherwise what it reads is found from its code.
DECLARED_READS = "RESULTS_READ"


def library_modules(library_dir: Path = LIBRARY_DIR) -> dict[str, Path]:
    """Module name -> source file for every module of the package (packages by their __init__.py)."""
    modules = {}
    for path in sorted(library_dir.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(library_dir).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Dotted names `source` imports (`from a import b` gives a and a.b); relative ones resolved from `module`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def dependencies(roots: set[str], modules: dict[str, Path]) -> set[str]:
    """The library modules reachable from `roots` through imports, with the packages that contain them."""
    seen: set[str] = set()
    todo = [name for name in roots if name in modules]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        path = modules[name]
        found = imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        todo.extend(other for other in (*parents, *found) if other in modules and other not in seen)
    return seen


def executed_code(chapter: Path) -> str:
    """The code cells the build runs (not `skip-execution`), IPython magics and shell lines left out."""
    notebook = jupytext.read(chapter)
    cells = [cell.source for cell in notebook.cells
             if cell.cell_type == "code" and "skip-execution" not in cell.metadata.get("tags", [])]
    lines = "\n".join(cells).splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def results_names(paths_source: str) -> dict[str, str]:
    """Names `sharpness.core.paths` defines inside results/, with their place there ("" for RESULTS_DIR itself)."""
    names = {RESULTS_NAME: ""}
    for node in ast.parse(paths_source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.BinOp) and isinstance(node.value.op, ast.Div)
                and _results_name(node.value.left, names) is not None and _path_part(node.value.right) is not None):
            names[node.targets[0].id] = _join(names[_results_name(node.value.left, names)], _path_part(node.value.right))
    return names


def _results_name(node: ast.AST, names: dict[str, str]) -> str | None:
    """The results name `node` reads (RESULTS_DIR, or results.RESULTS_DIR and the like), else None."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr in names:
        return node.attr
    return None


def _path_part(node: ast.AST) -> str | None:
    """The literal path `node` spells: a string, or an f-string with `*` for its fields; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "*" for part in node.values)
    return None


def _join(base: str, part: str) -> str:
    return f"{base}/{part}" if base else part


def declared_reads(tree: ast.Module) -> set[str] | None:
    """A module's own `RESULTS_READ = (...)` (places under results/ it reads), where it declares one."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == DECLARED_READS):
            return set(ast.literal_eval(node.value))
    return None


def results_read(source: str, names: dict[str, str]) -> set[str]:
    """The places under results/ `source` can read: `RESULTS_DIR / "x"` gives "x"; a bare use gives the
    name's whole folder ("" for RESULTS_DIR: everything); a module's RESULTS_READ, where it has one, wins."""
    places, joined = set(), set()
    tree = ast.parse(source)
    declared = declared_reads(tree)
    if declared is not None:
        return declared
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            name, part = _results_name(node.left, names), _path_part(node.right)
            if name is not None and part is not None:
                places.add(_join(names[name], part))
                joined.add(id(node.left))
    for node in ast.walk(tree):
        name = _results_name(node, names)
        if name is not None and id(node) not in joined:
            places.add(names[name])
    return places


def results_files(results_dir: Path, places: set[str]) -> list[Path]:
    """The files under `results_dir` at `places` (files, folders with everything below them, or globs)."""
    found = set()
    for place in places:
        for match in (results_dir.glob(place) if place else [results_dir]):
            found.update([match] if match.is_file() else (p for p in match.rglob("*") if p.is_file()))
    return sorted(found)


def chapter_results(chapter: Path, library_dir: Path = LIBRARY_DIR) -> set[str]:
    """The places under results/ the chapter's executed code, and the library modules it reaches, can read."""
    modules = library_modules(library_dir)
    code = executed_code(chapter)
    used = dependencies(imported_modules(code), modules)
    paths = modules.get(PATHS_MODULE)
    names = results_names(paths.read_text(encoding="utf-8")) if paths else {RESULTS_NAME: ""}
    places = results_read(code, names)
    for name in used - {PATHS_MODULE}:
        places |= results_read(modules[name].read_text(encoding="utf-8"), names)
    return places


def chapter_fingerprint(chapter: Path, library_dir: Path = LIBRARY_DIR, results_dir: Path | None = None) -> str:
    """sha256 over the names and bytes of the library modules the chapter's executed cells reach, and of
    the files under `results_dir` (when given) that they can read (`chapter_results`)."""
    modules = library_modules(library_dir)
    used = dependencies(imported_modules(executed_code(chapter)), modules)
    digest = hashlib.sha256()
    for name in sorted(used):
        digest.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    if results_dir is not None and results_dir.is_dir():
        for path in results_files(results_dir, chapter_results(chapter, library_dir)):
            digest.update(path.relative_to(results_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
