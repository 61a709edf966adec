"""Who may import whom: `app` (HTTP) and `tasks` (Celery) both stand on `taskrecord`;
neither imports the other, the core imports neither, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "tasks", "taskrecord", "v1sim", "deploy")
FORBIDDEN = {
    "app": {"tasks"},
    "tasks": {"app"},
    "taskrecord": {"app", "tasks", "deploy", "v1sim"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse(path: Path) -> ast.Module:
    source = path.read_text()
    try:
        return ast.parse(source, str(path))
    except SystemError:
        # CPython 3.11's AST constructor can raise a spurious "recursion depth mismatch"
        # when another thread's AST conversion failed meanwhile (python/cpython#106905;
        # seen once in a full suite run): the same source parses the second time.
        return ast.parse(source, str(path))


def imports_of(path: Path) -> set[str]:
    """Every project module this file imports, at any depth (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `from a.b import c` names either module a.b.c or attribute c of a.b.
        graph[name] = {imp for imp in imports_of(path) if imp in modules and imp != name}
    return graph


def test_layers_import_only_downwards() -> None:
    graph = project_graph()
    violations = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] in FORBIDDEN.get(module.split(".")[0], set())
    ]
    assert violations == []


def test_boundary_check_sees_a_violation() -> None:
    """The check itself can fail: an `app` module importing `tasks` is reported."""
    fake = ast.parse("from tasks.celery_app import create_celery_app\n")
    names = {n.module for n in ast.walk(fake) if isinstance(n, ast.ImportFrom)}
    assert any(name and name.split(".")[0] in FORBIDDEN["app"] for name in names)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ importing its own submodule is not a cycle of modules.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    assert find_cycle(project_graph()) is None


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
