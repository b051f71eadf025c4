"""The house's shape, checked: imports between korqa's modules flow one way (no cycle, lower
layers never reach up), and the split rules and each data file format have one definition."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "korqa"
# Layers that follow the data, lowest first. A module imports only from its own package and
# from the packages of lower layers; two packages of one layer never import each other. The
# top layer (the command line, the server and what runs them, and the public face `korqa`)
# may import anything below it, and its parts each other (without a cycle).
LAYERS: list[tuple[str, ...]] = [
    ("korqa.version", "korqa.paths", "korqa.lazy", "korqa.memory", "korqa.extras", "korqa.errors",
     "korqa.questions", "korqa.morphology", "korqa.tokenization", "korqa.splits"),
    ("korqa.corpus",),
    ("korqa.modeling", "korqa.korquad_metric"),
    ("korqa.retrieval", "korqa.reader"),
    ("korqa.faq", "korqa.convert"),
    ("korqa.open_sets",),
    ("korqa.pipeline", "korqa.training"),
    ("korqa.evaluation", "korqa.pretraining"),
]
TOP = ("korqa.server", "korqa.distributed", "korqa.cli", "korqa.cli_options", "korqa.__main__",
       "korqa")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """korqa modules `path` imports anywhere: at the top, inside functions (lazily), and in
    `if TYPE_CHECKING:` blocks (a type-only import is still an arrow between modules)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in candidates if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(paths)) - {name} for name, path in paths.items()}


def unit(module: str) -> str | None:
    """The layered package (or top-level module) `module` belongs to, if any."""
    for name in [*(name for layer in LAYERS for name in layer), *TOP]:
        if module == name or (name != "korqa" and module.startswith(name + ".")):
            return name
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, what it imports) for every import that does not flow down the layers."""
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    rank.update({name: len(LAYERS) for name in TOP})
    wrong = []
    for module, targets in sorted(graph.items()):
        home = unit(module)
        for target in sorted(targets):
            there = unit(target)
            if home is None or there is None or home == there:
                continue
            if rank[there] > rank[home] or (rank[there] == rank[home] and home not in TOP):
                wrong.append((module, target))
    return wrong


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
    # Nor between packages: one package reaching another both ways is a cycle of the layers.
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        home = unit(module) or module
        packages.setdefault(home, set()).update(unit(t) or t for t in targets)
    assert cycles({name: targets - {name} for name, targets in packages.items()}) == []


def test_a_cycle_would_be_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer() -> None:
    assert [module for module in import_graph() if unit(module) is None] == []


def test_imports_flow_down_the_layers() -> None:
    assert layer_violations(import_graph()) == []


def test_a_layer_violation_would_be_found(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from korqa.pipeline.qa import Answer\n"
                      "def f():\n    from korqa.evaluation import fusion\n"
                      "    import korqa.reader.reader\n", encoding="utf-8")
    known = {"korqa.pipeline.qa", "korqa.evaluation", "korqa.reader.reader"}
    assert imports(module, known) == known  # type-only and function-level imports count
    assert layer_violations({"korqa.retrieval.m": known}) == [
        ("korqa.retrieval.m", "korqa.evaluation"), ("korqa.retrieval.m", "korqa.pipeline.qa"),
        ("korqa.retrieval.m", "korqa.reader.reader")]  # above, and beside in its layer
    assert layer_violations({"korqa.cli.m": known, "korqa.server.x": {"korqa.cli"}}) == []


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
