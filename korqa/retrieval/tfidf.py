"""TF-IDF + cosine retrieval (the seed's ContextFinder) over sparse matrices."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval import sparse_matrix as sp
from korqa.retrieval.base import Hit, Retriever, stream_texts
from korqa.retrieval.sparse import count_matrix, load_matrix, query_counts, save_matrix, top_k
from korqa.retrieval.terms import TermAnalyzer, TermConfig

MATRIX_FILE = "tfidf_matrix.npz"
IDF_FILE = "idf.npy"
VOCAB_FILE = "vocab.json"
# Queries are scored in batches whose (queries × touched paragraphs) product stays bounded.
_SCORE_BUDGET = 50_000_000


class TfidfRetriever(Retriever):
    """Cosine similarity of L2-normalised TF-IDF vectors, weighted as scikit-learn's
    TfidfTransformer weighs them (smooth idf, optionally sublinear tf; `tfidf_weights`).

    Counts come from `sparse.count_matrix` (streamed, chunked) so that large corpora never
    hold their terms as Python lists. The weighted matrix is kept
    transposed (terms × paragraphs, CSR): a query row times it touches only the postings of
    the query's terms and yields a sparse score row, never a dense corpus matrix.
    """

    kind = "tfidf"

    def __init__(
        self,
        terms: TermConfig | None = None,
        sublinear_tf: bool = True,
        with_title: bool = False,
        chunk_size: int = 20_000,
    ) -> None:
        super().__init__()
        self.terms = terms or TermConfig()
        self.sublinear_tf = sublinear_tf
        self.with_title = with_title
        self.chunk_size = chunk_size
        self.analyzer = TermAnalyzer(self.terms)
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float32)  # set by `index`, saved with the index
        self.matrix_t: sp.CompressedMatrix = sp.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"terms": self.terms.to_dict(), "sublinear_tf": self.sublinear_tf,
                "with_title": self.with_title}

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        ids: list[str] = []
        counts, vocabulary = count_matrix(
            stream_texts(paragraphs, ids, self.with_title), self.analyzer,
            chunk_size=self.chunk_size, total=total, progress=progress, desc="tfidf terms",
        )
        if not ids:
            raise ValueError("tfidf: the corpus has no paragraphs")
        self.idf = smooth_idf(counts)
        # In place on the counts' CSR arrays: no second corpus-sized copy while weighting.
        weighted = tfidf_weights(counts, self.idf, self.sublinear_tf)
        del counts
        self.matrix_t = weighted.T.tocsr()
        self.vocabulary = vocabulary
        self.paragraph_ids = ids

    def query_vectors(self, queries: Sequence[str]) -> sp.CompressedMatrix:
        """The queries' L2-normalised TF-IDF vectors (rows), as the paragraphs' were made."""
        counts = query_counts(self.analyzer.many(list(queries)), self.vocabulary)
        return tfidf_weights(counts, self.idf, self.sublinear_tf)

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        hits: list[list[Hit]] = []
        batch = max(1, min(256, _SCORE_BUDGET // max(1, len(self.paragraph_ids))))
        for start in range(0, len(queries), batch):
            scores = self.query_vectors(queries[start:start + batch]) @ self.matrix_t
            for row in range(scores.shape[0]):
                lo, hi = scores.indptr[row], scores.indptr[row + 1]
                rows, values = top_k(scores.data[lo:hi], k, scores.indices[lo:hi])
                hits.append(self._hits(rows, values))
        return hits

    # ---- persistence --------------------------------------------------------------------

    def _save_files(self, directory: Path) -> list[str]:
        save_matrix(directory / MATRIX_FILE, self.matrix_t)
        np.save(directory / IDF_FILE, self.idf, allow_pickle=False)
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (directory / VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False),
                                            encoding="utf-8")
        return [MATRIX_FILE, IDF_FILE, VOCAB_FILE]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        params = dict(manifest["params"])
        params["terms"] = TermConfig.from_dict(params["terms"])
        retriever = cls(**params)
        terms = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
        retriever.vocabulary = {term: i for i, term in enumerate(terms)}
        idf = np.load(directory / IDF_FILE, allow_pickle=False)
        retriever.matrix_t = sp.csr_matrix(load_matrix(directory / MATRIX_FILE))
        width = len(terms)
        if idf.shape != (width,) or retriever.matrix_t.shape[0] != width:
            raise ValueError(
                f"{directory}: {VOCAB_FILE} has {width} terms but {IDF_FILE} has shape "
                f"{idf.shape} and {MATRIX_FILE} {retriever.matrix_t.shape[0]} rows"
            )
        retriever.idf = idf
        return retriever

    def _row_count(self) -> int:
        return self.matrix_t.shape[1]


def smooth_idf(counts: sp.CompressedMatrix) -> np.ndarray:
    """idf(t) = ln((1 + n) / (1 + df(t))) + 1 over a (documents × terms) count matrix without
    repeated entries, in its dtype: scikit-learn's smooth idf."""
    df = np.bincount(counts.indices[:counts.nnz], minlength=counts.shape[1]).astype(
        counts.dtype) + counts.dtype.type(1)
    return np.log((counts.shape[0] + 1) / df) + counts.dtype.type(1)


def tfidf_weights(counts: sp.CompressedMatrix, idf: np.ndarray,
                  sublinear_tf: bool) -> sp.CompressedMatrix:
    """Counts (CSR, rows = texts) weighted in place: tf (1 + ln tf if sublinear) × idf, each
    row L2-normalised (its norm summed in float64); returned for chaining."""
    data = counts.data
    if sublinear_tf:
        np.log(data, out=data)
        data += 1.0
    data *= idf[counts.indices].astype(data.dtype, copy=False)
    rows = counts.shape[0]
    row_of = np.repeat(np.arange(rows), np.diff(counts.indptr))
    norms = np.sqrt(np.bincount(row_of, weights=data.astype(np.float64) ** 2, minlength=rows))
    norms[norms == 0] = 1.0
    data /= norms[row_of].astype(data.dtype)
    return counts
