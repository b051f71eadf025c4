"""The house's shape, checked: imports between korqa's modules flow one way (no cycle, lower
layers never reach up), and the split rule has one definition."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "korqa"
# Layers that follow the data; a module may import from its own layer and those before it.
LOWER_THAN = {
    "korqa.corpus": ("korqa.retrieval", "korqa.reader", "korqa.pipeline", "korqa.server",
                     "korqa.training", "korqa.evaluation", "korqa.cli"),
    "korqa.retrieval": ("korqa.reader", "korqa.pipeline", "korqa.server", "korqa.training",
                        "korqa.evaluation", "korqa.cli"),
    "korqa.modeling": ("korqa.reader", "korqa.pipeline", "korqa.retrieval", "korqa.server",
                       "korqa.training", "korqa.evaluation", "korqa.cli"),
    "korqa.reader": ("korqa.pipeline", "korqa.retrieval", "korqa.server", "korqa.training",
                     "korqa.evaluation", "korqa.cli"),
    "korqa.pipeline": ("korqa.server", "korqa.training", "korqa.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """korqa modules `path` imports when it runs (lazy imports included, `if TYPE_CHECKING:`
    blocks not: they never execute)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for stmt in block.body for node in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in candidates if name in known)
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: runtime_imports(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    assert cycles(graph) == []


def test_a_cycle_would_be_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_never_import_higher_ones() -> None:
    graph = import_graph()
    wrong = [(module, target) for module, targets in graph.items() for target in targets
             for layer, above in LOWER_THAN.items()
             if (module == layer or module.startswith(layer + "."))
             and any(target == up or target.startswith(up + ".") for up in above)]
    assert wrong == []


def test_the_split_rule_and_the_title_key_are_defined_once() -> None:
    rule = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
            if "% TEST_MODULUS" in path.read_text(encoding="utf-8")
            or "% 5" in path.read_text(encoding="utf-8")]
    assert rule == ["splits.py"]
    titles = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
              if 'replace("_", " ")' in path.read_text(encoding="utf-8")]
    assert titles == ["splits.py"]
