"""Retriever kinds by name, so an index directory can be loaded from its manifest's `kind`."""

from __future__ import annotations

import importlib
from pathlib import Path

from korqa.retrieval.base import Retriever
from korqa.retrieval.manifest import read_manifest

# Modules are imported on first use: the dense retriever pulls in torch, and nothing else may.
_MODULES = {
    "tfidf": ("korqa.retrieval.tfidf", "TfidfRetriever"),
    "bm25": ("korqa.retrieval.bm25", "BM25Retriever"),
    "hybrid": ("korqa.retrieval.hybrid", "HybridRetriever"),
    "dense": ("korqa.retrieval.dense", "DenseRetriever"),
    "articles": ("korqa.retrieval.articles", "ArticleRetriever"),
    "dense-ivfpq": ("korqa.retrieval.dense_pq", "CompressedDenseRetriever"),
}
KINDS = tuple(_MODULES)
# What each kind is, in a line: `korqa index --retriever`'s help (its choices are KINDS).
SUMMARIES = {
    "tfidf": "TF-IDF cosine over character n-grams and morphemes",
    "bm25": "Okapi BM25 in live segments",
    "hybrid": "bm25 fused with tfidf, or with dense given --encoder",
    "dense": "e5 vectors, needs --encoder",
    "articles": "paragraph BM25 fused with article BM25 (kowiki)",
    "dense-ivfpq": "dense vectors compressed with faiss IVF-PQ, needs --encoder and the ann "
                   "extra",
}


def summary() -> str:
    """Every kind with its line, in registry order."""
    return "; ".join(f"{kind}: {SUMMARIES[kind]}" for kind in KINDS)


def retriever_class(kind: str) -> type[Retriever]:
    if kind not in _MODULES:
        raise ValueError(f"unknown retriever kind {kind!r} (expected one of {', '.join(KINDS)})")
    module, name = _MODULES[kind]
    return getattr(importlib.import_module(module), name)


def load_retriever(directory: str | Path, verify: bool | str = True) -> Retriever:
    """Load whichever retriever `directory/manifest.json` describes."""
    directory = Path(directory)
    kind = read_manifest(directory, verify=False)["kind"]
    return retriever_class(kind).load(directory, verify=verify)
