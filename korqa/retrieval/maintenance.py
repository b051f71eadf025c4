"""Building and looking after an index directory as `korqa index`, `documents`, `remove`,
`merge` and `verify` are asked to: each command's settings (config dataclasses; their "help"
is the command line's, korqa.cli_options) and a function that does it and returns its report.

Light to import (no retriever module, no index code until a function runs): `korqa index
--help` reads these classes. The retriever choices are the registry's (`registry.KINDS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from korqa.corpus.text import TextReading
from korqa.retrieval.registry import KINDS, summary

if TYPE_CHECKING:
    from korqa.retrieval.base import Retriever
    from korqa.retrieval.index import Indexer

PROGRESS_HELP = "hide the progress bars"
INDEX_HELP = "an index built by `korqa index`"


@dataclass
class RetrieverChoice:
    """Which retriever to build, with korqa's tuned presets (`korqa.retrieval.make_retriever`)."""

    retriever: str = field(default="bm25", metadata={
        "help": f"which retriever to build: {summary()}", "choices": KINDS})
    encoder: str | None = field(default=None, metadata={
        "help": "e5 encoder directory (dense, dense-ivfpq, hybrid)", "metavar": "DIR"})
    morphemes: bool = field(default=True, metadata={
        "help": "character n-grams only (Kiwi morphemes take hours on all of kowiki)",
        "flag": "--no-morphemes"})

    def make(self, **options: Any) -> Retriever:
        """A new, empty retriever of this choice; `options` replace its presets."""
        from korqa.retrieval import make_retriever

        return make_retriever(self.retriever, self.encoder, self.morphemes, **options)


@dataclass(kw_only=True)
class IndexConfig:
    """`korqa index`: what to read into which index, with which retriever."""

    corpus: list[str] = field(default_factory=list, metadata={
        "help": "corpus files/folders to index (none: rebuild the retriever over what OUT "
                "holds)", "metavar": "PATH"})
    out: str = field(metadata={"help": "index directory", "metavar": "DIR"})
    choice: RetrieverChoice = field(default_factory=RetrieverChoice)
    fusion: Literal["rrf", "weighted"] | None = field(default=None, metadata={
        "help": "hybrid fusion (default: tuned)"})
    reading: TextReading = field(default_factory=TextReading)
    progress: bool = field(default=True, metadata={"help": PROGRESS_HELP,
                                                   "flag": "--no-progress"})


def index_corpus(config: IndexConfig, index_with: Indexer | None = None) -> dict[str, Any]:
    """`korqa index`: make `config.out` hold what its corpus paths hold now
    (`korqa.retrieval.index.build_index`) and say what changed. `index_with` indexes the store
    in another way (korqa.distributed: the same index, built on Ray)."""
    from korqa.retrieval.index import build_index

    hybrid = config.choice.retriever == "hybrid"
    retriever = config.choice.make(**({"fusion": config.fusion} if hybrid and config.fusion
                                      else {}))
    start = time.perf_counter()
    added, total = build_index(config.out, config.corpus, retriever, progress=config.progress,
                               reading=config.reading, index_with=index_with)
    return {"out": config.out, "retriever": config.choice.retriever, "paragraphs": total,
            "added": added.added, "updated": added.updated, "unchanged": added.unchanged,
            "removed": added.removed, "removed_documents": added.removed_documents,
            "seconds": round(time.perf_counter() - start, 2)}


@dataclass
class IndexDir:
    """`korqa documents` (and the commands below): an index directory."""

    index: str = field(metadata={"help": INDEX_HELP, "metavar": "DIR"})


def documents(target: IndexDir) -> list[dict[str, Any]]:
    """`korqa documents`: {id, title, paragraphs, source} of each document of the index."""
    from korqa.retrieval.index import list_documents

    return [{"id": d.doc_id, "title": d.title, "paragraphs": d.paragraphs, "source": d.source}
            for d in list_documents(target.index)]


def format_documents(rows: list[dict[str, Any]], target: IndexDir) -> str:
    """One tab-separated line per document: id, paragraphs, title, source (- for none)."""
    columns = ("id", "paragraphs", "title")
    return "\n".join("\t".join([*(str(row[key]) for key in columns), row["source"] or "-"])
                     for row in rows)


@dataclass(kw_only=True)
class RemoveConfig(IndexDir):
    """`korqa remove`: documents to drop from an index."""

    ids: list[str] = field(metadata={"help": "document ids (`korqa documents`)",
                                     "metavar": "ID", "positional": True})
    progress: bool = field(default=True, metadata={"help": PROGRESS_HELP,
                                                   "flag": "--no-progress"})


def remove(config: RemoveConfig) -> dict[str, Any]:
    """`korqa remove`: drop the documents and update the retriever; what was removed."""
    from korqa.retrieval.index import remove_documents

    removed, total = remove_documents(config.index, config.ids, progress=config.progress)
    return {"index": config.index, "removed_documents": len(set(config.ids)),
            "removed": removed, "paragraphs": total}


@dataclass
class MergeConfig(IndexDir):
    """`korqa merge`: how many segments a BM25 index keeps."""

    segments: int = field(default=1, metadata={
        "help": "how many segments to keep at most (default 1)", "metavar": "N"})


def merge(config: MergeConfig) -> dict[str, Any]:
    """`korqa merge`: the segment counts before and after."""
    from korqa.retrieval.index import merge_index

    before, after = merge_index(config.index, config.segments)
    return {"index": config.index, "segments_before": before, "segments": after}


@dataclass
class VerifyConfig(IndexDir):
    """`korqa verify`: check an index, after a repair if asked."""

    repair: bool = field(default=False, metadata={
        "help": "first make the retriever match the store if an interrupted write left them "
                "apart: finish the retriever's swap, or rebuild it with its saved settings "
                "(what `korqa serve` does at start)"})
