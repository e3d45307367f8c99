"""The package's modules import each other one way only: no cycle, not even through an import
hidden inside a function. A cycle means two modules that cannot be understood, tested or changed
apart; a function-level import that only hides one is the same cycle.
"""

from __future__ import annotations

import ast
import os

PACKAGE = "rgpkd_jax"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)


def _module_names() -> dict[str, str]:
    """Dotted module name -> file, for every .py file of the package."""
    names = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (functions included)."""
    modules = _module_names()
    graph = {}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        targets = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module
                # `from pkg import sub` imports the submodule when there is one, else pkg itself.
                targets.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                               for alias in node.names)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "rgpkd_jax.train" in graph  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_hidden_cycle():
    """The checker itself: a cycle through a function-level import is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_are_edges(tmp_path, monkeypatch):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from rgpkd_jax import y\n")
    (pkg / "y.py").write_text("import rgpkd_jax.x\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", str(pkg))
    graph = import_graph()
    assert graph["rgpkd_jax.x"] == {"rgpkd_jax.y"} and graph["rgpkd_jax.y"] == {"rgpkd_jax.x"}
    assert find_cycle(graph) is not None
