"""The tree is the map of the flow: imports run one way (DESIGN.md "Flow and layout").

Read with `ast` from the files themselves (every import, also those inside functions): no import
circle between files nor between top-level packages, each package imports only the rooms below
it, no production package imports a simulator, and no module imports another's private name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each room may import (besides itself): the flow of DESIGN.md, downward only.
BELOW = {
    "standards": set(),
    "transforms": {"standards"},
    "connectors": {"transforms", "standards"},
    "quality": {"transforms", "standards"},
    "warehouse": {"transforms", "standards"},
    "reporting": {"quality", "warehouse", "connectors", "transforms", "standards"},
    "pipeline": {"reporting", "quality", "warehouse", "connectors", "transforms", "standards"},
    "exchange": {"pipeline", "reporting", "quality", "warehouse", "connectors", "transforms", "standards"},
    "dags": {"pipeline", "reporting", "exchange", "quality", "warehouse", "connectors", "transforms", "standards"},
    # the stand-ins and the demo's orchestration run every stage; nothing above imports them
    "simulators": {"dags", "pipeline", "reporting", "exchange", "quality", "warehouse", "connectors",
                   "transforms", "standards"},
}
PRODUCTION = tuple(BELOW)


@dataclass(frozen=True)
class Import:
    """One import statement of a module: the project module it reaches, and the names it takes."""

    source: str  # importing module, dotted
    target: str  # imported project module, dotted
    names: tuple[str, ...]
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted name → file of every module of the given top-level packages (migrations included)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` is, or the module a `from name import x` names reach."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """Every import of a module (top level and inside functions) that reaches a project module.

    `from a.b import c` reaches module `a.b.c` when it exists, else `a.b`. A package's own
    `__init__` is not counted as imported by its submodules (Python runs it, but it is the
    package, not a dependency), as import-linter/grimp do.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name, modules)
                if target:
                    yield Import(module, target, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                target = resolve(f"{base}.{alias.name}", modules) if base else None
                if target == f"{base}.{alias.name}":
                    yield Import(module, target, (), node.lineno)
                    continue
                target = resolve(base, modules)
                if target:
                    yield Import(module, target, (alias.name,), node.lineno)


def import_graph(root: Path, packages: Iterable[str]) -> tuple[dict[str, set[str]], list[Import]]:
    modules = project_modules(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    found: list[Import] = []
    for name, path in modules.items():
        for imp in imports_of(name, path, modules):
            found.append(imp)
            if imp.target != name:
                graph[name].add(imp.target)
    return graph, found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for source, targets in graph.items():
        top = source.split(".")[0]
        packages.setdefault(top, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != top)
    return packages


@pytest.fixture(scope="module")
def production():
    return import_graph(ROOT, PRODUCTION)


def test_no_import_circle_between_files(production):
    graph, _ = production
    cycles = find_cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them, "
          f"{len(cycles)} circles")
    assert not cycles, "import circles: " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_packages_import_one_way(production):
    graph, _ = production
    packages = package_graph(graph)
    for name in PRODUCTION:
        print(f"{name} → {', '.join(sorted(packages.get(name, ()))) or '(nothing)'}")
    assert not find_cycles(packages), f"circle between packages: {find_cycles(packages)}"
    wrong = {name: sorted(targets - BELOW[name]) for name, targets in packages.items() if targets - BELOW[name]}
    assert not wrong, f"imports against the flow (room → rooms it may not import): {wrong}"


def test_no_production_package_imports_a_simulator(production):
    _, found = production
    offending = [f"{imp.source}:{imp.line} imports {imp.target}" for imp in found
                 if imp.target.split(".")[0] == "simulators" and imp.source.split(".")[0] != "simulators"]
    assert not offending, "\n".join(offending)


def test_no_module_imports_a_private_name():
    """`from x import _y` reaches into another module's internals: offer a public name instead."""
    offending = []
    for package in (*PRODUCTION, "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    offending += [f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}"
                                  for alias in node.names
                                  if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not offending, "\n".join(offending)


def test_the_checks_find_a_circle_and_a_wrong_import(tmp_path):
    """The checks above can fail: a planted circle and a planted upward import are found."""
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    (tmp_path / "low" / "__init__.py").write_text("")
    (tmp_path / "high" / "__init__.py").write_text("")
    (tmp_path / "low" / "a.py").write_text("from low.b import thing\n")
    (tmp_path / "low" / "b.py").write_text("def f():\n    from low import a\n    from high.c import x\n")
    (tmp_path / "high" / "c.py").write_text("import low.a\n")
    graph, found = import_graph(tmp_path, ["low", "high"])
    assert find_cycles(graph) == [["high.c", "low.a", "low.b"]]
    assert find_cycles(package_graph(graph)) == [["high", "low"]]
    assert Import("low.b", "high.c", ("x",), 3) in found
