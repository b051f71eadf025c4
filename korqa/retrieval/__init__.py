"""Paragraph retrieval: Korean terms, TF-IDF, BM25, dense and hybrid retrievers, saved indexes.

Importing this package never imports torch; only `korqa.retrieval.dense` uses it, lazily.
Names are imported on first use (`korqa.lazy`), since importing any submodule runs this file
first: `korqa ask` over a BM25 index must not pay for scikit-learn (TF-IDF), a second and more.
"""

from korqa.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "base": ("Hit", "Retriever"),
    "bm25": ("BM25Retriever",),
    "evaluate": ("Question", "evaluate_recall", "load_questions"),
    "hybrid": ("HybridRetriever",),
    "index": ("Index", "build_index"),
    "registry": ("KINDS", "load_retriever", "make_retriever", "retriever_class"),
    "terms": ("TermAnalyzer", "TermConfig"),
    "tfidf": ("TfidfRetriever",),
})
