"""Corpora for retrieval: paragraphs with stable ids, their loaders and a SQLite store."""

from korqa.corpus.loaders import (
    iter_jsonl,
    iter_squad,
    iter_text_file,
    iter_text_folder,
    load_corpus,
)
from korqa.corpus.paragraph import Paragraph, paragraph_id
from korqa.corpus.store import AddResult, DocumentInfo, ParagraphStore
from korqa.corpus.text import TextReading

__all__ = [
    "AddResult",
    "DocumentInfo",
    "Paragraph",
    "ParagraphStore",
    "TextReading",
    "iter_jsonl",
    "iter_squad",
    "iter_text_file",
    "iter_text_folder",
    "load_corpus",
    "paragraph_id",
]
