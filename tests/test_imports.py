"""The package's import graph: every module imports on its own, no cycles, no function-level imports.

The graph is read with ``ast`` from every ``lib/routing_laws/**/*.py``: ``import routing_laws.x``,
``from routing_laws import x`` (x a module), ``from routing_laws.x import y`` and relative imports.
An import inside a function or class body hides a dependency from the reader and usually a cycle, so
the test lists every one it finds, with its file and line.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

PKG = "routing_laws"
ROOT = Path(__file__).resolve().parents[1] / "lib" / PKG


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Package modules named by one import statement."""
    out = []
    if isinstance(node, ast.Import):
        out = [a.name for a in node.names if a.name == PKG or a.name.startswith(PKG + ".")]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against this module's package
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        if src != PKG and not src.startswith(PKG + "."):
            return []
        for a in node.names:
            sub = f"{src}.{a.name}"
            out.append(sub if sub in MODULES else src)
    # the package itself is imported first by any of its submodules: an edge to it is no dependency
    return [t for t in out if t != PKG and t != module]


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> package modules it imports, anywhere), and 'file:line module imports x inside f' entries."""
    graph, nested = {}, []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()

        def visit(node, scope):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    found = _targets(child, name, is_package)
                    edges.update(found)
                    if found and scope:
                        nested.append(f"{path.relative_to(ROOT.parent)}:{child.lineno} {name} imports "
                                      f"{', '.join(sorted(set(found)))} inside {scope}")
                inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else None
                visit(child, scope or inner)

        visit(tree, None)
        graph[name] = edges
    return graph, nested


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan), each as a sorted module list."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_graph_reader_sees_cycles_and_nested_imports(tmp_path):
    """The checker itself can fail: a made-up two-module cycle and a nested import are found."""
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("def f():\n    from routing_laws import moe\n")
    node = tree.body[0].body[0]
    assert _targets(node, f"{PKG}.model", False) == [f"{PKG}.moe"]


def test_package_import_graph_has_no_cycle():
    graph, _ = import_graph()
    assert len(graph) >= 10 and f"{PKG}.moe" in graph[f"{PKG}.model"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among package modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_function_level_imports_inside_the_package():
    _, nested = import_graph()
    assert not nested, f"{len(nested)} package imports inside functions or classes (move them to the top):\n" + \
        "\n".join(nested)


def test_every_module_imports_on_its_own():
    """Each module imported first, in one fresh interpreter, with the package's modules cleared in between."""
    script = f"""
import importlib, json, sys, traceback
failures = {{}}
for name in {sorted(MODULES)!r}:
    for m in [m for m in sys.modules if m == {PKG!r} or m.startswith({PKG!r} + ".")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""
    env_path = str(ROOT.parent)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": env_path, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, "modules that fail to import on their own:\n" + "\n\n".join(
        f"{k}:\n{v}" for k, v in failures.items())
