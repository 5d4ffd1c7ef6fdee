"""The project's import graph, and the import cycles in it.

grimp (the engine of import-linter) reads every import statement, including the ones inside
functions, so a cycle hidden behind a function-level import still shows.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_PACKAGES = ("jobplatform", "jobs", "storage", "processors")
# Development-only code that production must not reach; "bench" is a folder of scripts, not
# a package, so it only ever shows as an external import.
DEV_ONLY_PACKAGES = ("tests", "bench", "devstack")
# Top-level packages of the repository that are not the project's own modules.
NOT_PROJECT_PACKAGES = ("tests",)


def project_packages(root: Path = ROOT) -> list[str]:
    """Every top-level package of the repository except the tests, so a new one is covered too."""
    return sorted(
        path.name
        for path in root.iterdir()
        if (path / "__init__.py").is_file() and path.name not in NOT_PROJECT_PACKAGES
    )


def build_graph(packages: Iterable[str], *, external: bool = False) -> grimp.ImportGraph:
    """The import graph of `packages`; no cache, so an edit since the last run always shows."""
    names = list(packages)
    return grimp.build_graph(*names, include_external_packages=external, cache_dir=None)


def edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}


def strongly_connected_components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that a deep graph cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
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
                components.append(sorted(component))
    return components


def _shortest_path(graph: Mapping[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path: list[str] = []
            step: str | None = node
            while step is not None:
                path.append(step)
                step = previous[step]
            return path[::-1]
        for succ in sorted(graph.get(node, ())):
            if succ in within and succ not in previous:
                previous[succ] = node
                queue.append(succ)
    raise ValueError(f"no path from {start} to {goal}")


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each import edge that lies on a cycle, without repeats.

    Every edge inside a strongly connected component is on some cycle; listing the shortest
    one per edge names every import that has to go, without enumerating exponentially many
    cycles. Each cycle is a chain that starts and ends with the same module.
    """
    seen: set[tuple[str, ...]] = set()
    cycles: list[list[str]] = []
    for component in strongly_connected_components(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph.get(component[0], ()):
            continue
        for importer in component:
            for imported in sorted(graph.get(importer, set()) & members):
                loop = [importer, *_shortest_path(graph, imported, importer, members)]
                body = loop[:-1]
                # The same loop found from another edge is the same cycle rotated.
                turn = body.index(min(body))
                key = tuple(body[turn:] + body[:turn])
                if key not in seen:
                    seen.add(key)
                    cycles.append([*key, key[0]])
    return cycles


def describe_cycle(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """`a -> b (line 12 of a) -> a (line 40 of b)`: each step with the line that makes it."""
    steps = [cycle[0]]
    for importer, imported in itertools.pairwise(cycle):
        details = graph.get_import_details(importer=importer, imported=imported)
        lines = sorted({detail["line_number"] for detail in details})
        where = f" (line {', '.join(map(str, lines))} of {importer})" if lines else ""
        steps.append(f"{imported}{where}")
    return " -> ".join(steps)


def cycle_report(packages: Iterable[str]) -> list[str]:
    """Every import cycle among `packages`, each as a readable chain; empty when there is none."""
    graph = build_graph(packages)
    return [describe_cycle(graph, cycle) for cycle in find_cycles(edges(graph))]


def forbidden_imports(importers: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """Each import from a module of `importers` into a package of `forbidden`, with its line."""
    graph = build_graph(importers, external=True)
    found = []
    for target in forbidden:
        if target not in graph.modules:
            continue
        for importer in sorted(graph.find_modules_that_directly_import(target)):
            for detail in graph.get_import_details(importer=importer, imported=target):
                found.append(f"{importer} line {detail['line_number']}: {detail['line_contents']}")
    return found
