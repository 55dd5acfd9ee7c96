"""The shape of src/csautomation, computed from its source: packages form a layered graph
(no two import each other, no longer cycle either), no module reaches into another's
`_private` names, and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "csautomation"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
SKIP = ("migrations/versions",)  # Alembic's generated revisions


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module
    name: str | None  # the name imported from it, when `from target import name`
    line: int


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(s in path.as_posix() for s in SKIP):
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def imports() -> Iterator[Import]:
    """Every import of one of our modules, at any depth (in functions and TYPE_CHECKING
    blocks too: a dependency is a dependency)."""
    for name, path in MODULES.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        yield Import(name, alias.name, None, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in MODULES:
                        yield Import(name, full, None, node.lineno)
                    elif base in MODULES:
                        yield Import(name, base, alias.name, node.lineno)


IMPORTS = list(imports())


def package(module: str) -> str:
    """csautomation.rules.loader -> rules; a top-level module is its own node."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph() -> dict[str, dict[str, list[Import]]]:
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in IMPORTS:
        a, b = package(imp.module), package(imp.target)
        if a != b:
            graph[a][b].append(imp)
    return graph


def cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def describe(graph: dict[str, dict[str, list[Import]]], component: list[str]) -> str:
    lines = [" <-> ".join(component)]
    for a in component:
        for b in component:
            for imp in graph[a].get(b, [])[:3]:
                where = MODULES[imp.module].relative_to(SRC)
                lines.append(f"  {where}:{imp.line}: {a} -> {imp.target}")
    return "\n".join(lines)


def test_the_package_graph_has_no_cycle() -> None:
    graph = package_graph()
    found = cycles(graph)
    assert not found, "package import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself: a graph with a -> b -> c -> a is reported."""
    fake = Import("x", "y", None, 1)
    graph: dict[str, dict[str, list[Import]]] = {
        "a": {"b": [fake]},
        "b": {"c": [fake]},
        "c": {"a": [fake]},
        "d": {"a": [fake]},
    }
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{MODULES[i.module].relative_to(SRC)}:{i.line}: {i.name} from {i.target}"
        for i in IMPORTS
        if i.name and i.name.startswith("_") and not i.name.startswith("__")
    ]
    assert not private, "\n".join(private)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name: str) -> None:
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(SRC)}: {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(SRC)}: " + ", ".join(long)


def test_every_exception_is_in_the_drawn_tree() -> None:
    """Every exception class defined in src/ derives from CsAutomationError and is drawn in
    errors.py's docstring; the one exception to that is named there too."""
    import importlib
    import inspect

    from csautomation import errors

    outside = {"_Terminated"}  # cli.common: a requested stop, not an error
    found: list[str] = []
    for name in MODULES:
        if ".migrations" in name:  # Alembic's env.py runs only under Alembic
            continue
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if cls_name in outside:
                assert cls_name in (errors.__doc__ or "")
                continue
            if not issubclass(cls, errors.CsAutomationError):
                found.append(f"{name}.{cls_name} is not a CsAutomationError")
            elif cls_name not in (errors.__doc__ or ""):
                found.append(f"{name}.{cls_name} is not drawn in errors.py")
    assert not found, "\n".join(found)
