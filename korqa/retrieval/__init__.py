"""Paragraph retrieval: Korean terms, TF-IDF, BM25, dense and hybrid retrievers, saved indexes.

Importing this package never imports torch; only `korqa.retrieval.dense` uses it, lazily.
Names are imported on first use (PEP 562), since importing any submodule runs this file first:
`korqa ask` over a BM25 index must not pay for scikit-learn (TF-IDF), a second and more.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Hit": "korqa.retrieval.base",
    "Retriever": "korqa.retrieval.base",
    "BM25Retriever": "korqa.retrieval.bm25",
    "Question": "korqa.retrieval.evaluate",
    "evaluate_recall": "korqa.retrieval.evaluate",
    "load_questions": "korqa.retrieval.evaluate",
    "HybridRetriever": "korqa.retrieval.hybrid",
    "Index": "korqa.retrieval.index",
    "build_index": "korqa.retrieval.index",
    "make_retriever": "korqa.retrieval.index",
    "KINDS": "korqa.retrieval.registry",
    "load_retriever": "korqa.retrieval.registry",
    "retriever_class": "korqa.retrieval.registry",
    "TermAnalyzer": "korqa.retrieval.terms",
    "TermConfig": "korqa.retrieval.terms",
    "TfidfRetriever": "korqa.retrieval.tfidf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'korqa.retrieval' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
