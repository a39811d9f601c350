"""Which library files a chapter runs, and one hash of them, so the book re-executes what they changed.

The build's execution cache keys a chapter on its own code only; a chapter that calls
`sharpness.book.figures.toy` would keep showing old outputs after that module changed. A chapter's fingerprint
hashes every `sharpness` module its executed cells import, followed through the library's own imports
(function-level imports included, parent packages too), so only the chapters that can see an edit
are run again. A chapter that reaches `sharpness.core.paths` (the one place that names `results/`) reads
committed results, so its fingerprint also hashes every file under `results/`: committing a finished
run re-executes the pages that show it, and the ledger.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import jupytext

PACKAGE = "sharpness"
LIBRARY_DIR = Path(__file__).resolve().parents[1]
RESULTS_MODULE = f"{PACKAGE}.core.paths"  # names RESULTS_DIR: a chapter reaching it reads committed results


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


def chapter_fingerprint(chapter: Path, library_dir: Path = LIBRARY_DIR, results_dir: Path | None = None) -> str:
    """sha256 over the names and bytes of the library modules the chapter's executed cells reach, and,
    where one of them is `RESULTS_MODULE`, of the files under `results_dir` (when given)."""
    modules = library_modules(library_dir)
    used = dependencies(imported_modules(executed_code(chapter)), modules)
    digest = hashlib.sha256()
    for name in sorted(used):
        digest.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    if results_dir is not None and RESULTS_MODULE in used and results_dir.is_dir():
        for path in sorted(p for p in results_dir.rglob("*") if p.is_file()):
            digest.update(path.relative_to(results_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
