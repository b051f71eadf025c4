"""The unit of retrieval: one paragraph with a stable id, its document's title and id; and a
document, as a corpus file yields it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paragraph:
    """One retrievable paragraph.

    `id` is deterministic across runs: `<source kind>:<doc id>:<paragraph index in the doc>`, so
    re-indexing the same file yields the same ids and the store can deduplicate by id.
    """

    id: str
    title: str
    text: str
    doc_id: str


def paragraph_id(source_kind: str, doc_id: str, index: int) -> str:
    """The stable id of the `index`-th paragraph (0-based, counted in the source) of a document."""
    return f"{source_kind}:{doc_id}:{index}"


@dataclass(frozen=True)
class Document:
    """One document of a corpus file: its id, title and (non-blank) paragraphs."""

    id: str
    title: str
    paragraphs: list[Paragraph]


def document_id(path: Path, inner: str | None = None) -> str:
    """The id of a document read from the corpus file `path`: the file's absolute path (links
    resolved), then `#inner` for one of the documents a kowiki or SQuAD file holds (its id,
    its article title). Distinct for `A/notes.txt` and `B/notes.txt`, and the same each time
    the same file is read, which is how re-indexing a path replaces its documents. Every
    reader of corpus files names its documents through this one function."""
    name = path.resolve().as_posix()
    return name if inner is None else f"{name}#{inner}"
