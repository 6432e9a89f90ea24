"""No import cycle among toporder_sync's modules (flows/ and tasks/ included), read from the source.

The graph is built from the module-level imports of every ``.py`` file: those that run when a
module is imported, including under a module-level ``if`` or ``try``, but neither imports inside
functions (they run later, once every module is loaded) nor those under ``if TYPE_CHECKING:``
(they never run). Importing ``a.b.c`` also imports the packages ``a`` and ``a.b``, so those are
edges too, except towards the importing module's own packages, which are being imported
already. flows/ and tasks/ are the packages ``toporder_sync.flows`` and ``toporder_sync.tasks``
(pyproject's package-dir).

A cycle makes a module's behaviour depend on which one is imported first; the outbox and its
handlers had one (outbox -> notifications -> outbox, outbox -> pennylane -> pennylane.sink ->
outbox), broken by having each handler module register itself with the outbox.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Where each package's source lives (pyproject's [tool.setuptools.package-dir]).
SOURCES: Mapping[str, Path] = {
    "toporder_sync": REPO / "toporder_sync",
    "toporder_sync.flows": REPO / "flows",
    "toporder_sync.tasks": REPO / "tasks",
}

Graph = dict[str, set[str]]


def modules(sources: Mapping[str, Path]) -> dict[str, Path]:
    """Every module's dotted name and file; a package is named by its ``__init__.py``."""
    found = {}
    for package, directory in sources.items():
        for path in sorted(directory.rglob("*.py")):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse,
                          node.finalbody):
                yield from _module_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _module_level_imports(node.body)


def _imported(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The dotted names ``node`` may load: the modules named, and for ``from M import n``,
    ``M.n`` too (``n`` may be a submodule)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1])
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    yield target
    yield from (f"{target}.{alias.name}" for alias in node.names)


def import_graph(sources: Mapping[str, Path]) -> Graph:
    """Module -> the project's modules it imports at module level."""
    known = modules(sources)
    graph: Graph = {}
    for name, path in known.items():
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if path.name == "__init__.py":
            own_packages.add(name)
        edges = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _module_level_imports(tree.body):
            for target in _imported(name, path, node):
                parts = target.split(".")
                # ``a.b.c`` runs a/__init__ and a/b/__init__ first.
                for i in range(1, len(parts) + 1):
                    loaded = ".".join(parts[:i])
                    if loaded in known and loaded != name and loaded not in own_packages:
                        edges.add(loaded)
        graph[name] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``a -> ... -> a``) in each strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A path from the component's first module back to itself, through the component."""
    start = min(component)
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph[node] & component):
            if other == start:
                return [*paths[node], start]
            if other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_no_import_cycle_among_the_project_modules() -> None:
    found = cycles(import_graph(SOURCES))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_accounting_core_does_not_import_the_simulator() -> None:
    graph = import_graph(SOURCES)
    offenders = {
        module: sorted(target for target in targets if target.startswith("toporder_sync.simulator"))
        for module, targets in graph.items()
        if module.startswith("toporder_sync.core")
    }
    assert not {module: found for module, found in offenders.items() if found}


def test_the_outbox_imports_none_of_its_handlers_even_inside_a_function() -> None:
    # The cycle this file was written for hid behind imports inside functions: the handlers
    # register themselves with the outbox (``outbox.register``), never the other way round.
    path = SOURCES["toporder_sync"] / "outbox.py"
    imports = [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.Import | ast.ImportFrom)]
    loaded = {target for node in imports
              for target in _imported("toporder_sync.outbox", path, node)}
    assert not {name for name in loaded
                if name.startswith(("toporder_sync.notifications", "toporder_sync.pennylane"))}


def _every_import(name: str, path: Path) -> set[str]:
    """The dotted names every import of ``path`` may load, at any level (inside functions and
    under ``if TYPE_CHECKING:`` too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {target for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
            for target in _imported(name, path, node)}


def test_tasks_never_import_flows_even_inside_a_function() -> None:
    # The dependency goes one way: a flow calls tasks, a task is given what it needs of a flow
    # (``tasks.daily.client_days``'s ``day_flow``). An import inside a function hid the way
    # back once; it dodges the cycle finder above, not this test.
    offenders = {
        name: sorted(target for target in _every_import(name, path)
                     if target == "toporder_sync.flows"
                     or target.startswith("toporder_sync.flows."))
        for name, path in modules({"toporder_sync.tasks": SOURCES["toporder_sync.tasks"]}).items()
    }
    assert not {name: found for name, found in offenders.items() if found}


# (files of a throwaway package "pkg", the cycles expected)
CASES = [
    pytest.param({"a.py": "from pkg import b\n", "b.py": "import pkg.a\n"},
                 [["pkg.a", "pkg.b", "pkg.a"]], id="two modules"),
    pytest.param({"a.py": "from . import b\n", "b.py": "from .c import x\n",
                  "c.py": "from pkg.a import y\n"},
                 [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]], id="relative imports, three modules"),
    pytest.param({"a.py": "def f():\n    from pkg import b\n", "b.py": "import pkg.a\n"},
                 [], id="an import inside a function does not count"),
    pytest.param({"a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                          "    from pkg import b\n", "b.py": "import pkg.a\n"},
                 [], id="an import for type checking does not count"),
    pytest.param({"a.py": "try:\n    from pkg import b\nexcept ImportError:\n    b = None\n",
                  "b.py": "import pkg.a\n"},
                 [["pkg.a", "pkg.b", "pkg.a"]], id="an import under try counts"),
    pytest.param({"sub/__init__.py": "from pkg import a\n", "sub/leaf.py": "",
                  "a.py": "from pkg.sub.leaf import x\n"},
                 [["pkg.a", "pkg.sub", "pkg.a"]], id="importing a submodule runs its package"),
    pytest.param({"sub/__init__.py": "from pkg.sub.leaf import x\n",
                  "sub/leaf.py": "from pkg.sub import other\n", "sub/other.py": ""},
                 [], id="a package re-exporting its own submodules"),
]


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_the_cycle_finder(tmp_path: Path, files: dict[str, str],
                          expected: list[list[str]]) -> None:
    (tmp_path / "__init__.py").write_text("")
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    assert cycles(import_graph({"pkg": tmp_path})) == expected
