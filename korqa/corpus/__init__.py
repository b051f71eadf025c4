"""Corpora for retrieval: paragraphs with stable ids, the file formats they come from (one
reader per format) and a SQLite store."""

from korqa.corpus.formats import iter_documents, load_corpus
from korqa.corpus.paragraph import Document, Paragraph, paragraph_id
from korqa.corpus.store import AddResult, DocumentInfo, ParagraphStore
from korqa.corpus.text import TextReading

__all__ = [
    "AddResult",
    "Document",
    "DocumentInfo",
    "Paragraph",
    "ParagraphStore",
    "TextReading",
    "iter_documents",
    "load_corpus",
    "paragraph_id",
]
