"""The unit of retrieval: one paragraph with a stable id, its document's title and id; and a
document, as a corpus file yields it."""

from __future__ import annotations

from dataclasses import dataclass


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
