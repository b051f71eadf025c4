"""Sparse term-count matrices built in chunks, their vocabulary, and top-k over sparse scores.

The corpus is streamed: each chunk of paragraphs becomes a small CSR matrix of float32 counts
(scipy sums the repeated (row, term) entries in C), and the chunks are stacked once at the end,
so memory holds the counts, not Python lists of terms. The vocabulary grows as terms are met.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from korqa.retrieval import sparse_matrix as sp
from korqa.retrieval.terms import TermAnalyzer

Vocabulary = dict[str, int]


def count_matrix(
    texts: Iterable[str],
    analyzer: TermAnalyzer,
    chunk_size: int = 20_000,
    total: int | None = None,
    progress: bool = True,
    desc: str = "counting terms",
) -> tuple[sp.CompressedMatrix, Vocabulary]:
    """Counts of each term (column) in each text (row), and the vocabulary of the columns
    (term → column, in order of first occurrence). float32, as the weights made from them.

    `texts` is consumed once, `chunk_size` at a time; `total` only sizes the progress bar.
    """
    vocabulary: Vocabulary = {}
    chunks: list[sp.CompressedMatrix] = []
    bar = tqdm(total=total, desc=desc, unit="par", disable=not progress, mininterval=1.0)
    for batch in _batches(texts, chunk_size):
        chunks.append(_count_chunk(analyzer.many(batch), vocabulary))
        bar.update(len(batch))
    bar.close()
    width = len(vocabulary)
    # Earlier chunks were built when the vocabulary was smaller: widen them (no data copy).
    chunks = [
        sp.csr_matrix((c.data, c.indices, c.indptr), shape=(c.shape[0], width)) for c in chunks
    ]
    if not chunks:
        return sp.csr_matrix((0, width), dtype=np.float32), vocabulary
    matrix = chunks[0] if len(chunks) == 1 else sp.vstack(chunks, format="csr")
    return matrix, vocabulary


def query_counts(term_lists: list[list[str]], vocabulary: Vocabulary) -> sp.CompressedMatrix:
    """Counts of already-extracted query terms against a fixed vocabulary (unknown terms drop)."""
    indptr = array("i", [0])
    indices = array("i")
    get = vocabulary.get
    for terms in term_lists:
        indices.extend(i for i in map(get, terms) if i is not None)
        indptr.append(len(indices))
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), np.frombuffer(indices, dtype=np.int32),
         np.frombuffer(indptr, dtype=np.int32)),
        shape=(len(term_lists), len(vocabulary)),
    )
    matrix.sum_duplicates()
    return matrix


def top_k(scores: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The k best (row, score) pairs, best first; ties keep the lower row first.

    `scores` is dense over all rows, or (with `rows`) the scores of just those rows, as given by
    the data/indices of a sparse score vector, so the corpus never has to be densified.
    """
    if rows is None:
        rows = np.arange(len(scores))
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if k < len(scores):
        keep = np.argpartition(-scores, k - 1)[:k]
        scores, rows = scores[keep], rows[keep]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def save_matrix(path: Path, matrix: sp.CompressedMatrix) -> None:
    """A sparse matrix as .npz (scipy's format: plain arrays, no pickle)."""
    sp.save_npz(path, matrix, compressed=False)


def load_matrix(path: Path) -> sp.CompressedMatrix:
    # scipy's loader reads with allow_pickle=False; a bad file raises a clear ValueError.
    try:
        return sp.load_npz(path)
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(f"{path}: not a readable sparse matrix ({error})") from None


def _count_chunk(term_lists: list[list[str]], vocabulary: Vocabulary) -> sp.CompressedMatrix:
    indptr = array("i", [0])
    indices = array("i")
    setdefault = vocabulary.setdefault
    for terms in term_lists:
        # `len(vocabulary)` is read before each insert, so a new term gets the next id.
        indices.extend([setdefault(term, len(vocabulary)) for term in terms])
        indptr.append(len(indices))
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), np.frombuffer(indices, dtype=np.int32),
         np.frombuffer(indptr, dtype=np.int32)),
        shape=(len(term_lists), len(vocabulary)),
    )
    matrix.sum_duplicates()  # repeated terms of a row become one entry with their count
    return matrix


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
