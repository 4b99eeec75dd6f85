"""misdir's modules import one another without a circle, and none outgrows one idea (issue 28).

The import graph is read from the source with `ast`, without importing anything. An edge A -> B stands for
each import in A that names B, a module of misdir other than A, wherever the import stands: at module level,
inside a function (a lazy import), or under `if TYPE_CHECKING:`. A lazy or type-only import does not fail
when misdir is imported, but A still depends on B: a circle drawn through one is a circle in the design, and
moving an import into a function must not make a circle pass.

Which module an import names:
- `import misdir.a.b` and `from misdir.a.b import x`: `misdir.a.b`;
- `from misdir.a import b`: the submodule `misdir.a.b` where `b` is a module file, else the package `misdir.a`
  (whose `__init__` re-exports the name `b`); relative imports are resolved against A's own package;
- the packages Python initializes on the way to `misdir.a.b` (`misdir`, `misdir.a`) are not counted, as
  import-linter and grimp do not count them: an import names the module it means. A package's `__init__`
  that re-exports its submodules is a module like any other: importing a name from it is an edge to it.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "misdir"
MAX_LINES = 600

KNOWN_CYCLES: dict[frozenset[str], str] = {}
"""Circles tolerated for now, each with why; an entry whose circle is gone fails
`test_known_cycles_still_exist` (then remove the entry)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The misdir modules one import statement names (see the module docstring)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in known)
        return
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in known:
            yield submodule
        elif base in known:
            yield base


def import_graph() -> dict[str, dict[str, int]]:
    """For each module of misdir, the misdir modules it imports, each with the line of its first import."""
    found = modules()
    known = set(found)
    graph: dict[str, dict[str, int]] = {}
    for name, path in found.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(node, name, path.name == "__init__.py", known):
                    if target != name:
                        edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The components of more than one module, by Tarjan's algorithm (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    """A component as the imports that tie it, one `file:line imports module` a line."""
    members = set(component)
    lines = [f"circle of {len(component)} modules: {', '.join(component)}"]
    for name in component:
        path = modules()[name].relative_to(PACKAGE.parent)
        ties = sorted((line, target) for target, line in graph[name].items() if target in members)
        lines += [f"  {path}:{line} imports {target}" for line, target in ties]
    return "\n".join(lines)


def test_no_import_cycles():
    graph = import_graph()
    components = strongly_connected(graph)
    known = [c for c in components if frozenset(c) in KNOWN_CYCLES]
    for component in known:
        why = KNOWN_CYCLES[frozenset(component)]
        warnings.warn(f"known import circle ({why}):\n{describe(component, graph)}", stacklevel=1)
    unknown = [c for c in components if frozenset(c) not in KNOWN_CYCLES]
    assert not unknown, "misdir imports in a circle:\n" + "\n".join(describe(c, graph) for c in unknown)


def test_known_cycles_still_exist():
    """An allowed circle that is gone leaves its entry in `KNOWN_CYCLES`: remove the entry."""
    components = {frozenset(c) for c in strongly_connected(import_graph())}
    gone = [f"{sorted(c)} ({why})" for c, why in KNOWN_CYCLES.items() if c not in components]
    assert not gone, f"no longer a circle; remove from KNOWN_CYCLES: {'; '.join(gone)}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import misdir.models.load", {"misdir.models.load"}),
        ("from misdir.models.load import load_model", {"misdir.models.load"}),
        ("from misdir.models import load", {"misdir.models.load"}),
        ("from misdir.models import Model", {"misdir.models"}),
        ("from misdir import catalog, DirectionSet", {"misdir.catalog", "misdir"}),
        ("from . import model", {"misdir.models.model"}),
        ("from ..catalog import catalog_entry", {"misdir.catalog"}),
        ("def f():\n    from misdir.catalog import catalog_entry", {"misdir.catalog"}),
        ("if TYPE_CHECKING:\n    from misdir.hooks import hooks", {"misdir.hooks"}),
        ("import torch\nfrom torch import nn", set()),
    ],
)
def test_what_an_import_names(source, expected):
    known = set(modules())
    found = {
        target
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for target in imported(node, "misdir.models.shape", False, known)
    }
    assert found == expected


def test_finds_a_circle_and_only_the_circle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e": 1}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_module_outgrows_one_idea():
    lengths = {module_name(path): len(path.read_text().splitlines()) for path in modules().values()}
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): {long}"
