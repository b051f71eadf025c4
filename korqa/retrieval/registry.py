"""The retriever kinds, one entry each: the module and class that implement it, a line saying
what it is (the command line's help), and korqa's tuned preset for it.

Adding a retriever is one module (a `korqa.retrieval.base.Retriever` subclass) and one entry
here: `korqa index --retriever`, `make_retriever` and loading a saved index all read this list.
Light to import on purpose (the command line reads `KINDS` for its choices): no retriever
module is imported before its kind is used, since the dense ones pull in torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from korqa.retrieval.manifest import read_manifest
from korqa.retrieval.terms import TermConfig

if TYPE_CHECKING:
    from korqa.retrieval.base import Retriever


@dataclass(frozen=True)
class RetrieverKind:
    """One kind of retriever. The presets are korqa's tuned settings (bench/retrieval.py, on
    KorQuAD dev's non-test questions); the classes keep plain defaults for other callers."""

    module: str
    class_name: str
    description: str
    preset: Mapping[str, Any] = field(default_factory=dict)

    def load_class(self) -> type[Retriever]:
        return getattr(importlib.import_module(self.module), self.class_name)


_TUNED_TERMS = TermConfig(ngrams=(1, 2), morphemes=True)

REGISTRY: dict[str, RetrieverKind] = {
    "bm25": RetrieverKind(
        "korqa.retrieval.bm25", "BM25Retriever",
        "Okapi BM25 over character n-grams and Kiwi morphemes, changed in place (the default)",
        {"terms": _TUNED_TERMS, "k1": 0.6, "b": 0.75, "with_title": True}),
    "tfidf": RetrieverKind(
        "korqa.retrieval.tfidf", "TfidfRetriever",
        "TF-IDF cosine over character bigrams and Kiwi morphemes",
        {"terms": TermConfig(ngrams=(2,), morphemes=True), "sublinear_tf": True,
         "with_title": True}),
    # Weighted min-max fusion beat reciprocal-rank fusion in every pairing tried; TF-IDF adds
    # almost nothing to BM25 (same terms: `TFIDF_FUSION`, measured by bench/retrieval.py), so
    # the hybrid is BM25 + dense.
    "hybrid": RetrieverKind(
        "korqa.retrieval.hybrid", "HybridRetriever",
        "BM25 fused with dense e5 vectors (the shipped encoder, or --encoder)",
        {"fusion": "weighted", "weights": (1.0, 0.3), "depth": 100}),
    "dense": RetrieverKind(
        "korqa.retrieval.dense", "DenseRetriever",
        "e5 sentence vectors, exact cosine search (the shipped encoder, or --encoder)"),
    # Tuned on kowiki with non-test KorQuAD questions (bench/kowiki.py tune; the numbers are
    # in the README): the article share barely moves recall there, and skipping the terms of
    # over 20 % of the paragraphs spares a query their long posting lists.
    "articles": RetrieverKind(
        "korqa.retrieval.articles", "ArticleRetriever",
        "paragraph BM25 plus a share of its article's, for all of Wikipedia",
        {"terms": _TUNED_TERMS, "k1": 0.6, "b": 0.75, "weight": 0.1, "title_weight": 1.0,
         "max_df": 0.2}),
    "dense-ivfpq": RetrieverKind(
        "korqa.retrieval.dense_pq", "CompressedDenseRetriever",
        "e5 vectors compressed with faiss IVF-PQ (needs the [ann] extra)"),
}
# BM25 fused with TF-IDF: the hybrid's peer in bench/retrieval.py, no kind of its own.
TFIDF_FUSION: Mapping[str, Any] = {"fusion": "weighted", "weights": (1.0, 0.1), "depth": 100}
KINDS = tuple(REGISTRY)


def retriever_kind(kind: str) -> RetrieverKind:
    if kind not in REGISTRY:
        raise ValueError(f"unknown retriever kind {kind!r} (expected one of {', '.join(KINDS)})")
    return REGISTRY[kind]


def summary() -> str:
    """Every kind with its one-line description, in registry order (`--retriever`'s help)."""
    return "; ".join(f"{kind}: {REGISTRY[kind].description}" for kind in KINDS)


def retriever_class(kind: str) -> type[Retriever]:
    return retriever_kind(kind).load_class()


def make_retriever(
    kind: str,
    encoder: str | Path | None = None,
    morphemes: bool = True,
    **options: Any,
) -> Retriever:
    """A retriever of `kind` with its tuned preset (`REGISTRY`); `options` override it.

    `encoder` is an e5 model directory for the retrievers that embed (default: the shipped
    retriever encoder, `korqa.paths.default_encoder_dir`). `morphemes=False` drops the Kiwi
    morphemes from the sparse terms: Kiwi analyses ~30k characters/s, hours for all of
    kowiki, while character n-grams alone index it in minutes.
    """
    entry = retriever_kind(kind)
    return entry.load_class().from_preset(entry.preset, encoder, morphemes, **options)


def load_retriever(directory: str | Path, verify: bool | str = True) -> Retriever:
    """Load whichever retriever `directory/manifest.json` describes."""
    directory = Path(directory)
    kind = read_manifest(directory, verify=False)["kind"]
    return retriever_class(kind).load(directory, verify=verify)
