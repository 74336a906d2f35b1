"""Print the project's import graph (module -> module) from the code, and check its direction.

    python -m tools.import_graph            # every edge, then the checks
    python -m tools.import_graph --check    # only the checks; exit 1 on a circle or an arrow up

Imports are read with `ast` (nothing is imported or run), including imports inside functions and
under TYPE_CHECKING, so a lazy import cannot hide an arrow. Layers, from the top: the faces
(webui, ui, api, launch) and the door in front of them, then tuning, then asr. An arrow from a
lower layer to a higher one, or any circle between modules, is reported.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The product and the harness above it: an import of benchmarks from the product is an arrow up.
PRODUCT = ("asr", "tuning", "ui", "door", "webui", "api", "launch", "benchmarks")
LAYERS = {"benchmarks": 3, "webui": 2, "ui": 2, "door": 2, "api": 2, "launch": 2, "tuning": 1, "asr": 0}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files(root: Path = ROOT) -> list[Path]:
    files = []
    for top in PRODUCT:
        if (root / f"{top}.py").is_file():
            files.append(root / f"{top}.py")
        elif (root / top).is_dir():
            files += sorted((root / top).rglob("*.py"))
    return files


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The product modules `path` imports (a package import counts as its __init__)."""
    name = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: Iterable[str] = ()
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            # `from pkg import name`: the submodule pkg.name where there is one, else pkg itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            # The longest product module the target names: `from asr.text import export` is asr.text.export.
            parts = target.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in modules:
                    if candidate != name:
                        found.add(candidate)
                    break
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = product_files(root)
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, modules, root) for f in files}


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def arrows_up(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in edges.items() for b in targets if layer(b) > layer(a))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print only the checks")
    args = parser.parse_args(argv)
    edges = graph()
    if not args.check:
        for module in sorted(edges):
            for target in sorted(edges[module]):
                print(f"{module} -> {target}")
    up, loops = arrows_up(edges), circles(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports; "
          f"{len(up)} arrow(s) up, {len(loops)} circle(s)")
    for a, b in up:
        print(f"arrow up: {a} -> {b}")
    for loop in loops:
        print("circle: " + " <-> ".join(loop))
    return 1 if up or loops else 0


if __name__ == "__main__":
    sys.exit(main())
