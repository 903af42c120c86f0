"""The shape of the code, read from its source (ast; nothing is imported or executed).

* No import circles between modules, nor between packages (a top-level module such as
  ``store`` or ``cli`` counts as a package of its own). Imports inside functions count too:
  a lazy import hides a circle from Python, not from a reader.
* The directions docs/architecture.md names: analysis reads results and does not import
  refinement; refinement is a library the pipeline calls and does not import stream.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "stream3d"

# (importer package, imported package) pairs that must never appear.
FORBIDDEN = {
    ("analysis", "refine"): "analysis reads results; scores against a truth are in scoring/",
    ("refine", "stream"): "refinement is a library the pipeline calls",
    ("scoring", "refine"): "scoring sits below refinement",
    ("scoring", "analysis"): "scoring sits below analysis",
    ("physics", "config"): "physics is pure torch, no config objects",
    ("physics", "io"): "physics does no I/O",
    ("physics", "store"): "physics does no I/O",
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the stream3d package."""
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module that ``name`` (a dotted path, maybe module.attribute) lives in."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported stream3d module: line of the first such import}."""
    mods = _modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in mods.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [_owner(a.name, mods) for a in node.names]
            else:
                if node.level:
                    base = package[:len(package) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods
                           else _owner(source, mods) for a in node.names]
            for target in targets:
                if target and target.startswith("stream3d") and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def package_of(module: str) -> str:
    """``stream3d.refine.tiles`` -> ``refine``; ``stream3d.store`` -> ``store``;
    the package root ``stream3d`` -> ``stream3d``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]] | dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package_graph(graph: dict[str, dict[str, int]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = defaultdict(set)
    for module, edges in graph.items():
        for target in edges:
            a, b = package_of(module), package_of(target)
            if a != b:
                packages[a].add(b)
    return packages


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph()


def test_the_graph_sees_imports_at_every_depth(graph):
    # A lazy import (inside a function) and a from-import of a submodule are both edges.
    assert "stream3d.analysis.run" in graph["stream3d"]  # the root's lazy open_run
    assert "stream3d.stream.compute" in graph["stream3d.stream.pipeline"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back(graph):
    assert cycles(graph) == [], "import circles between modules"


def test_no_package_imports_itself_back(graph):
    found = cycles(_package_graph(graph))
    detail = [
        f"{m}:{line} -> {t}" for m, edges in sorted(graph.items()) for t, line in edges.items()
        if any({package_of(m), package_of(t)} <= set(c) for c in found)
        and package_of(m) != package_of(t)]
    assert found == [], f"import circles between packages {found}: " + "; ".join(detail)


def test_imports_run_in_the_intended_directions(graph):
    wrong = [f"{module}:{line} imports {target} ({FORBIDDEN[package_of(module), package_of(target)]})"
             for module, edges in sorted(graph.items()) for target, line in edges.items()
             if (package_of(module), package_of(target)) in FORBIDDEN]
    assert wrong == []


MAX_FUNCTION_LINES = 80


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` for every function or method longer than ``limit`` lines
    (from its first decorator to its last line)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - first + 1
                if lines > limit:
                    found.append(f"{relative}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_80_lines():
    assert long_functions() == []
