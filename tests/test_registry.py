"""The retriever registry (korqa.retrieval.registry): the one list of kinds, their presets, and
that a new retriever needs one module and one entry, nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import pytest
from tiny import write_corpus

from korqa.corpus.paragraph import Paragraph
from korqa.paths import default_encoder_dir
from korqa.retrieval import registry
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.hybrid import HybridRetriever
from korqa.retrieval.index import Index, build_index, merge_index
from korqa.retrieval.registry import KINDS, REGISTRY, RetrieverKind, make_retriever


def test_every_kind_names_its_class_and_says_what_it_is() -> None:
    assert KINDS[0] == "bm25" and set(KINDS) == set(REGISTRY)
    for kind, entry in REGISTRY.items():
        assert entry.load_class().kind == kind
        assert entry.description and "\n" not in entry.description


def test_reading_the_kinds_imports_no_retriever_and_no_torch() -> None:
    # The command line reads KINDS for its choices; that must stay as cheap as it looks.
    code = ("import json, sys, korqa.retrieval.registry as r; r.KINDS; "
            "print(json.dumps([*sys.modules]))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                           text=True, check=True).stdout))
    heavy = {entry.module for entry in REGISTRY.values()} | {
        "korqa.retrieval.base", "korqa.retrieval.index", "torch", "numpy", "sklearn", "scipy"}
    assert "korqa.retrieval.registry" in loaded and loaded & heavy == set()


def test_make_retriever_applies_the_preset_then_the_options() -> None:
    bm25 = make_retriever("bm25")
    assert (bm25.k1, bm25.b, bm25.with_title, bm25.terms.morphemes) == (0.6, 0.75, True, True)
    assert make_retriever("bm25", k1=1.2).k1 == 1.2
    assert make_retriever("tfidf", morphemes=False).terms.morphemes is False
    hybrid = make_retriever("hybrid", morphemes=False)  # the encoder loads on first use
    assert isinstance(hybrid, HybridRetriever)
    assert [c.kind for c in hybrid.components] == ["bm25", "dense"] and hybrid.weights == [1, 0.3]
    assert hybrid.components[0].terms.morphemes is False
    assert hybrid.components[1].encoder_dir == default_encoder_dir()  # the shipped encoder
    other = make_retriever("hybrid", encoder="e5-dir")
    assert other.components[1].encoder_dir == Path("e5-dir")
    with pytest.raises(ValueError, match="unknown retriever kind 'bm52'.*bm25"):
        make_retriever("bm52")


def test_only_an_incremental_retriever_follows_changes_or_merges(tmp_path: Path) -> None:
    assert make_retriever("bm25").incremental
    tfidf = make_retriever("tfidf", morphemes=False)
    assert not tfidf.incremental and tfidf.segment_count() == 1
    with pytest.raises(ValueError, match="no segments to merge"):
        tfidf.merge()
    build_index(tmp_path / "idx", [write_corpus(tmp_path / "c.jsonl")], tfidf, progress=False)
    with pytest.raises(ValueError, match="a tfidf retriever has no segments to merge"):
        merge_index(tmp_path / "idx")


class SharedCharacters(Retriever):
    """A retriever written for this test: paragraphs ranked by the characters they share
    with the query."""

    kind = "shared-characters"

    def params(self) -> dict[str, Any]:
        return {}

    def index(self, paragraphs: Iterable[Paragraph], total: int | None = None,
              progress: bool = True) -> None:
        self.texts = [p.text for p in paragraphs]
        self.paragraph_ids = [p.id for p in paragraphs]

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        out = []
        for query in queries:
            scores = [(len(set(query) & set(text)), row) for row, text in enumerate(self.texts)]
            best = sorted((s for s in scores if s[0]), key=lambda s: (-s[0], s[1]))[:k]
            out.append([(self.paragraph_ids[row], float(score)) for score, row in best])
        return out

    def _save_files(self, directory: Path) -> list[str]:
        (directory / "texts.json").write_text(json.dumps(self.texts, ensure_ascii=False),
                                              encoding="utf-8")
        return ["texts.json"]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        retriever = cls()
        retriever.texts = json.loads((directory / "texts.json").read_text(encoding="utf-8"))
        return retriever

    def _row_count(self) -> int:
        return len(self.texts)


def test_a_new_retriever_is_one_module_and_one_registry_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.REGISTRY, "shared-characters", RetrieverKind(
        __name__, "SharedCharacters", "paragraphs sharing the query's characters"))
    index_dir = tmp_path / "idx"
    build_index(index_dir, [write_corpus(tmp_path / "c.jsonl")], "shared-characters",
                progress=False)
    with Index(index_dir) as index:  # loaded back through the manifest's kind
        assert isinstance(index.retriever, SharedCharacters)
        paragraph, score = index.search("한라산의 높이", 1)[0]
        assert "한라산" in paragraph.text and score > 0
