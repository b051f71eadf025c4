"""The house's shape, checked: imports between korqa's modules flow one way (no cycle, lower
layers never reach up), and the split rules and each data file format have one definition."""

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


def modules_containing(*needles: str) -> list[str]:
    return sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                  if any(needle in path.read_text(encoding="utf-8") for needle in needles))


def test_the_split_rules_and_the_title_key_are_defined_once() -> None:
    assert modules_containing("% TEST_MODULUS", "% 5") == ["splits.py"]
    assert modules_containing('replace("_", " ")') == ["splits.py"]
    # Split names are resolved and the validation fold is cut in one place, so every command's
    # "validation" is the same questions.
    assert modules_containing("def select_split", "def train_validation_test",
                              "def korquad_split") == ["splits.py"]
    # The e5 prefixes are the retriever's; the converter records the same ones.
    assert modules_containing('"query: "', '"passage: "') == ["retrieval/dense.py"]


FORMATS = "corpus/formats.py"
# Fields that only SQuAD/KorQuAD and kowiki files have: reading one is reading the format.
DATASET_FIELDS = {"qas", "answer_start", "is_impossible", "paragraphs", "context"}


def dataset_field_reads(path: Path) -> list[int]:
    """Lines that read a dataset field: `x["qas"]` or `x.get("qas")` (building a file, as in
    `article["paragraphs"].append(...)`, is not reading one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
            appended = getattr(parents.get(node), "attr", None) == "append"
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get"
              and node.args):
            key, appended = node.args[0], False
        else:
            continue
        if isinstance(key, ast.Constant) and key.value in DATASET_FIELDS and not appended:
            lines.append(node.lineno)
    return lines


def test_squad_and_kowiki_files_are_read_in_one_module() -> None:
    readers = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                     if dataset_field_reads(path))
    assert readers == [FORMATS]


def test_a_reader_elsewhere_would_be_found(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f(p):\n    return [qa for qa in p['qas']], p.get('context')\n"
                      "def g(article):\n    article['paragraphs'].append({'qas': []})\n")
    assert dataset_field_reads(module) == [2, 2]


def test_compressed_files_and_corpus_suffixes_are_handled_in_one_module() -> None:
    imports = {path.relative_to(PACKAGE).as_posix(): runtime_modules(path)
               for path in PACKAGE.rglob("*.py")}
    # faq.py reads its own question/answer files (.csv.gz, .json.gz), no corpus or dataset.
    assert sorted(m for m, names in imports.items() if "gzip" in names) == [FORMATS, "faq.py"]
    assert sorted(m for m, names in imports.items() if "lzma" in names) == [FORMATS]
    # What a path's suffix (and so a folder) means is decided once, for index, cloze, vocab,
    # pretrain and vocabulary trimming alike; open_domain.py names its own cache file.
    suffixes = {".jsonl", ".jsonl.xz", ".xz", ".md", ".json.gz"}
    assert sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                  if any(isinstance(node, ast.Constant) and node.value in suffixes
                         for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
                  ) == [FORMATS, "evaluation/open_domain.py"]


def runtime_modules(path: Path) -> set[str]:
    """Every top-level module name `path` imports (standard library included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def json_read_per_line(path: Path) -> bool:
    """Whether `path` parses JSON inside a loop (`for line in …: json.loads(line)`): reading
    a JSON-lines file, which corpus/formats.py does for everyone (`read_jsonl`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "loads"
               and getattr(node.func.value, "id", None) == "json"
               for loop in ast.walk(tree) if isinstance(loop, LOOPS) for node in ast.walk(loop))


LOOPS = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def test_json_lines_are_read_in_one_module() -> None:
    # One reader of JSON-lines files, tolerating the torn last line a kill leaves (issue 28).
    assert sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                  if json_read_per_line(path)) == [FORMATS]


def test_the_product_holds_no_test_switch() -> None:
    # Tests stop a writer through the documented seam (`korqa.retrieval.index.commit_step`,
    # armed by tests/faults.py in the process they kill), not through an environment variable
    # that makes the product hang (issue 28 item 9).
    assert modules_containing("KORQA_TEST", "_test_pause") == []
