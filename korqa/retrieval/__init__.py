"""Paragraph retrieval: Korean terms, TF-IDF, BM25, dense and hybrid retrievers, saved indexes.

Importing this package never imports torch; only `korqa.retrieval.dense` uses it, lazily.
"""

from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.bm25 import BM25Retriever
from korqa.retrieval.evaluate import Question, evaluate_recall, load_questions
from korqa.retrieval.hybrid import HybridRetriever
from korqa.retrieval.index import Index, build_index, make_retriever
from korqa.retrieval.registry import KINDS, load_retriever, retriever_class
from korqa.retrieval.terms import TermAnalyzer, TermConfig
from korqa.retrieval.tfidf import TfidfRetriever

__all__ = [
    "KINDS",
    "BM25Retriever",
    "Hit",
    "HybridRetriever",
    "Index",
    "Question",
    "Retriever",
    "TermAnalyzer",
    "TermConfig",
    "TfidfRetriever",
    "build_index",
    "evaluate_recall",
    "load_questions",
    "load_retriever",
    "make_retriever",
    "retriever_class",
]
