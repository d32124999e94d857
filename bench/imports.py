"""The import graph of the `dreamtray` package: modules, import edges and cycles (strongly connected groups).

    python bench/imports.py            # figures for the installed dreamtray
    python bench/imports.py --cycles   # and each cycle's modules

Every import counts, also those inside functions and under TYPE_CHECKING, as import-linter sees them.
"""

from __future__ import annotations

import argparse
import sys

import grimp


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm over the package's own modules; groups of two or more are import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


def figures(package: str = "dreamtray") -> dict[str, object]:
    graph = grimp.build_graph(package)
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    edges = sum(len(graph.find_modules_directly_imported_by(m) & modules) for m in modules)
    return {"modules": len(modules), "edges": edges, "cycles": strongly_connected(graph, modules)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", action="store_true", help="list the modules of each cycle")
    args = parser.parse_args()
    found = figures()
    print(f"modules {found['modules']}, import edges {found['edges']}, cycles {len(found['cycles'])}")
    if args.cycles:
        for group in found["cycles"]:
            print("  cycle:", " <-> ".join(group))


if __name__ == "__main__":
    main()
