"""BM25 retrieval with bm25s, fed korqa's Korean terms instead of bm25s's own splitter."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import bm25s
import numpy as np
import scipy.sparse as sp

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.base import Hit, Retriever, stream_texts
from korqa.retrieval.sparse import count_matrix, top_k
from korqa.retrieval.terms import TermAnalyzer, TermConfig

BM25S_DIR = "bm25s"


class BM25Retriever(Retriever):
    """Okapi BM25 (bm25s's "lucene" variant) over `TermConfig` terms.

    bm25s's own splitter drops one-syllable words (산, 강), so terms come from `TermAnalyzer`.
    bm25s builds its eager score matrix from Python lists of every paragraph's term ids, which
    does not fit for millions of paragraphs; `bm25_weights` computes the same matrix from the
    chunked count matrix (a test checks it equals `bm25s.BM25.index`) and bm25s scores, saves
    (plain .npy + JSON) and memory-maps it.
    """

    kind = "bm25"

    def __init__(
        self,
        terms: TermConfig | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        with_title: bool = False,
        unique_query_terms: bool = False,
        chunk_size: int = 20_000,
        mmap: bool = False,
    ) -> None:
        super().__init__()
        self.terms = terms or TermConfig()
        self.k1 = k1
        self.b = b
        self.with_title = with_title
        # Whether a query term repeated in the question counts once (BM25's qtf = 1) or per
        # occurrence (what bm25s does with a list of tokens).
        self.unique_query_terms = unique_query_terms
        self.chunk_size = chunk_size
        self.mmap = mmap
        self.analyzer = TermAnalyzer(self.terms)
        self.model = bm25s.BM25(k1=k1, b=b, method="lucene")

    def params(self) -> dict[str, Any]:
        return {"terms": self.terms.to_dict(), "k1": self.k1, "b": self.b,
                "with_title": self.with_title, "unique_query_terms": self.unique_query_terms}

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        ids: list[str] = []
        counts, vocabulary = count_matrix(
            stream_texts(paragraphs, ids, self.with_title), self.analyzer,
            chunk_size=self.chunk_size, total=total, progress=progress, desc="bm25 terms",
        )
        if not ids:
            raise ValueError("bm25: the corpus has no paragraphs")
        scores = bm25_weights(counts, self.k1, self.b)
        del counts
        self.model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self.model.scores = {"data": scores.data, "indices": scores.indices,
                             "indptr": scores.indptr, "num_docs": len(ids)}
        self.model.vocab_dict = vocabulary
        self.model.unique_token_ids_set = set(vocabulary.values())
        self.model.nonoccurrence_array = None
        self.paragraph_ids = ids

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        vocabulary = self.model.vocab_dict
        hits: list[list[Hit]] = []
        for terms in self.analyzer.many(list(queries)):
            if self.unique_query_terms:
                terms = list(dict.fromkeys(terms))
            term_ids = [vocabulary[t] for t in terms if t in vocabulary]
            if not term_ids:
                hits.append([])
                continue
            scores = self.model.get_scores_from_ids(term_ids)
            # Only paragraphs sharing a term score above zero (Lucene's idf is positive).
            rows = np.flatnonzero(scores > 0)
            best, values = top_k(scores[rows], k, rows)
            hits.append(self._hits(best, values))
        return hits

    # ---- persistence --------------------------------------------------------------------

    def _save_files(self, directory: Path) -> list[str]:
        target = directory / BM25S_DIR
        self.model.save(target, show_progress=False)
        return sorted(p.relative_to(directory).as_posix() for p in target.iterdir())

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        params = dict(manifest["params"])
        params["terms"] = TermConfig.from_dict(params["terms"])
        retriever = cls(**params)
        try:
            model = bm25s.BM25.load(directory / BM25S_DIR, mmap=retriever.mmap,
                                    allow_pickle=False, show_progress=False)
        except (ValueError, OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{directory / BM25S_DIR}: unreadable bm25s index ({error})") from None
        if (model.k1, model.b, model.method) != (retriever.k1, retriever.b, "lucene"):
            raise ValueError(
                f"{directory / BM25S_DIR}/params.index.json: k1/b/method "
                f"{(model.k1, model.b, model.method)} disagree with the manifest "
                f"{(retriever.k1, retriever.b, 'lucene')}"
            )
        retriever.model = model
        return retriever

    def _row_count(self) -> int:
        return int(self.model.scores["num_docs"])


def bm25_weights(counts: sp.csr_matrix, k1: float, b: float) -> sp.csc_matrix:
    """bm25s's eager "lucene" scores from a (paragraphs × terms) count matrix, as CSC.

    score(d, t) = idf(t) · tf / (tf + k1 · (1 − b + b · |d| / avg|d|)),
    idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5)), |d| = number of terms in d (with repeats).
    Computed in place on the counts' data; the CSC arrays are what bm25s stores.
    """
    n_docs = counts.shape[0]
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    mean_length = lengths.mean() if n_docs else 1.0
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (k1 * (1.0 - b + b * lengths / mean_length)).astype(np.float32)
    # Row blocks bound the temporary per-entry arrays (kowiki has ~10^9 entries).
    for start in range(0, n_docs, 100_000):
        stop = min(start + 100_000, n_docs)
        lo, hi = counts.indptr[start], counts.indptr[stop]
        rows = np.repeat(np.arange(start, stop), np.diff(counts.indptr[start:stop + 1]))
        tf = counts.data[lo:hi]
        tf /= tf + norm[rows]
        tf *= idf[counts.indices[lo:hi]]
    return counts.tocsc()
