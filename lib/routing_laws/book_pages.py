"""The book's pages: chapter notebooks (authoring with ``new_notebook``, the rules ``check_chapter``
enforces) and the table of contents (``_toc.yml``: which pages exist, which are staged chapters).
Re-exported by ``routing_laws.book``, which executes the chapters and builds the book.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

from routing_laws.errors import RoutingLawsError, check_choice
from routing_laws.io_utils import atomic_write_text, repo_root

STAGE_DIR = Path("book") / "executed"
CHAPTER_DIR = Path("chapters")
TOC = "_toc.yml"


class BookBuildError(RoutingLawsError):
    """jupyter-book failed, or the toc names pages that do not exist."""


# --------------------------------------------------------------------------- notebooks
def new_notebook(cells: Iterable[tuple[str, str]], parameters: str = 'profile = "auto"'):
    """A chapter notebook from ``(kind, source)`` cells (kind md|code), with the ``parameters`` cell
    inserted after the title (first markdown) cell, and python3 kernelspec + language_info set."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3",
                                    "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py"}
    for i, (kind, source) in enumerate(cells):
        check_choice(f"cells[{i}] kind", kind, ("md", "code"))
        nb.cells.append(v4.new_markdown_cell(source) if kind == "md" else v4.new_code_cell(source))
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0  # after the title cell
    nb.cells.insert(at, v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    for c in nb.cells:  # stable ids: a regenerated notebook diffs cleanly
        c.id = hashlib.sha1(c.source.encode()).hexdigest()[:8] + f"{nb.cells.index(c):04d}"
    nbformat.validate(nb)
    return nb


def write_notebook(nb, path: str | os.PathLike) -> Path:
    import nbformat

    return atomic_write_text(path, nbformat.writes(nb) + "\n")


def check_chapter(path: str | os.PathLike) -> list[str]:
    """Rule violations of a chapter source (empty list = fine): outputs, parameters cell, kernelspec."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    problems = []
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("metadata.kernelspec.name must be 'python3'")
    if nb.metadata.get("language_info", {}).get("name") != "python":
        problems.append("metadata.language_info.name must be 'python'")
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        problems.append(f"needs exactly one cell tagged 'parameters', found {len(params)}")
    elif "profile" not in _declared(params[0].source):
        problems.append("the parameters cell must set profile (e.g. profile = \"auto\")")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            problems.append(f"cell {i} has outputs or an execution count (clear outputs before committing)")
    return problems


def _declared(source: str) -> set[str]:
    """Names assigned at top level of a parameters cell."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


# --------------------------------------------------------------------------- toc
def toc_pages(root: Path | None = None) -> list[str]:
    """Every ``file:`` / ``root:`` entry of ``_toc.yml``, in order, without suffix."""
    import yaml

    root = Path(root or repo_root())
    path = root / TOC
    if not path.is_file():
        raise BookBuildError(f"{path} is missing (the book's table of contents)")
    try:
        toc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BookBuildError(f"{path} is not valid YAML: {e}") from None
    pages: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    pages.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return pages


def toc_chapters(root: Path | None = None) -> list[str]:
    """Chapter names (``02_training``) the toc lists as staged notebooks, in order."""
    prefix = STAGE_DIR.as_posix() + "/"
    return [p[len(prefix):].removesuffix(".ipynb") for p in toc_pages(root) if p.startswith(prefix)]


def check_toc(root: Path | None = None, *, need_staged: bool = True) -> list[str]:
    """Raise ``BookBuildError`` listing every toc entry whose source (or staged copy) is missing."""
    root = Path(root or repo_root())
    missing = []
    chapters = set(toc_chapters(root))
    for page in toc_pages(root):
        name = page.removeprefix(STAGE_DIR.as_posix() + "/").removesuffix(".ipynb")
        if name in chapters and page.startswith(STAGE_DIR.as_posix()):
            src = root / CHAPTER_DIR / f"{name}.ipynb"
            if not src.is_file():
                missing.append(f"{TOC} lists {page} but its source {src.relative_to(root)} does not exist")
            elif need_staged and not (root / STAGE_DIR / f"{name}.ipynb").is_file():
                missing.append(f"{page}.ipynb is not staged (run: routing-laws book --only {name})")
        elif not any((root / (page + s)).is_file() for s in ("", ".md", ".ipynb")):
            missing.append(f"{TOC} lists {page} but no {page}.md or {page}.ipynb exists")
    if missing:
        raise BookBuildError("; ".join(missing))
    return sorted(chapters)
