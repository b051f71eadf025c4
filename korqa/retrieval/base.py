"""The retriever interface: index paragraphs, retrieve (paragraph id, score) lists, save, load,
and, for a retriever that can, follow changes of the paragraph store in place."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.manifest import check_count, read_manifest, write_manifest

if TYPE_CHECKING:
    from korqa.corpus.store import ParagraphStore

Hit = tuple[str, float]
IDS_FILE = "paragraph_ids.json"


class Retriever(ABC):
    """Ranks indexed paragraphs for a query.

    Usage mirrors bm25s: `index(paragraphs)`, `retrieve(query, k)`, `save(dir)`, `load(dir)`.
    Row i of every index is `paragraph_ids[i]`; hits are `(paragraph id, score)`, best first,
    and only paragraphs the retriever actually scored (e.g. sharing a term) are returned.

    An index directory (`korqa.retrieval.index`) rebuilds a retriever over the whole store on
    every write, unless its class sets `incremental`: then it calls `update` with the ids a
    write touched, and `merge` on request.
    """

    kind: ClassVar[str]
    incremental: ClassVar[bool] = False
    # The paragraph store generation this retriever indexes, as its manifest records it.
    store_generation: str | None = None
    # Where files shared by every commit of an index directory go (BM25's segments); None:
    # inside the retriever's own directory. A retriever saved whole ignores it.
    segment_home: Path | None = None

    def __init__(self) -> None:
        self.paragraph_ids: list[str] = []

    @classmethod
    def from_preset(cls, preset: Mapping[str, Any], encoder: str | Path | None = None,
                    morphemes: bool = True, **options: Any) -> Self:
        """A retriever with `preset` (its registry entry's tuned settings), `options`
        replacing any of them (`korqa.retrieval.registry.make_retriever`). `morphemes=False`
        drops the Kiwi morphemes from its terms; `encoder` is for retrievers that embed."""
        settings = {**preset, **options}
        if not morphemes and "terms" in settings:
            settings["terms"] = replace(settings["terms"], morphemes=False)
        return cls(**settings)

    # ---- to implement -------------------------------------------------------------------

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable construction parameters, saved in the manifest."""

    @abstractmethod
    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        """Build the index over `paragraphs` (streamed once; `total` only sizes the progress)."""

    @abstractmethod
    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top-`k` hits of each query."""

    @abstractmethod
    def _save_files(self, directory: Path) -> list[str]:
        """Write the index files into `directory`; return their names."""

    @classmethod
    @abstractmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        """Rebuild a retriever from checked files; `paragraph_ids` is filled in by `load`."""

    @abstractmethod
    def _row_count(self) -> int:
        """How many paragraphs the loaded index files hold."""

    # ---- changing in place (only where `incremental` is set) ------------------------------

    def update(self, store: ParagraphStore, touched: Sequence[str]) -> None:
        """Follow a store change: `touched` are the ids of every paragraph it added, replaced
        or removed (`store.present(touched)` gives those still stored)."""
        raise ValueError(f"a {self.kind} retriever is rebuilt whole on every change")

    def merge(self, max_segments: int | None = None) -> int:
        """Merge segments down to `max_segments` (None: as the retriever's policy says);
        returns how many were merged away."""
        raise ValueError(f"a {self.kind} retriever has no segments to merge (only bm25 does)")

    def segment_count(self) -> int:
        """How many parts a search visits: 1 for a retriever saved whole."""
        return 1

    # ---- shared -------------------------------------------------------------------------

    def retrieve(self, query: str, k: int = 10) -> list[Hit]:
        return self.retrieve_many([query], k)[0]

    def __len__(self) -> int:
        return len(self.paragraph_ids)

    def save(self, directory: str | Path, store_generation: str | None = None) -> None:
        """Write the index files, the row → paragraph id list and a manifest with their hashes
        (and `store_generation`, the generation of the paragraph store that was indexed)."""
        if not self.paragraph_ids:
            raise ValueError(f"{self.kind} retriever: nothing indexed, nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._save_files(directory)
        (directory / IDS_FILE).write_text(
            json.dumps(self.paragraph_ids, ensure_ascii=False), encoding="utf-8"
        )
        write_manifest(directory, self.kind, self.params(), len(self.paragraph_ids),
                       [*files, IDS_FILE], store_generation=store_generation)

    @classmethod
    def load(cls, directory: str | Path, verify: bool | str = True) -> Self:
        """Load a saved retriever, checking the manifest and its files as far as `verify` says
        (`korqa.retrieval.manifest.CHECKS`; True: every file hash)."""
        directory = Path(directory)
        manifest = read_manifest(directory, cls.kind, verify=verify)
        retriever = cls._load_files(directory, manifest, verify)
        ids = json.loads((directory / IDS_FILE).read_text(encoding="utf-8"))
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{directory / IDS_FILE}: expected a JSON list of paragraph ids")
        retriever.paragraph_ids = ids
        check_count(directory, manifest, IDS_FILE, len(ids))
        check_count(directory, manifest, "the index matrix", retriever._row_count())
        retriever.store_generation = manifest.get("store_generation")
        return retriever

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        ids = self.paragraph_ids
        return [(ids[r], float(s)) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]


def index_text(paragraph: Paragraph, with_title: bool) -> str:
    """The text a lexical index sees: optionally the title too, so entity questions match it."""
    return f"{paragraph.title}\n{paragraph.text}" if with_title else paragraph.text


def stream_texts(
    paragraphs: Iterable[Paragraph], ids: list[str], with_title: bool
) -> Iterator[str]:
    """Texts of `paragraphs` for indexing, recording each paragraph's id in `ids` on the way."""
    for paragraph in paragraphs:
        ids.append(paragraph.id)
        yield index_text(paragraph, with_title)
