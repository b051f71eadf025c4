"""Two-stage retrieval, DrQA style: BM25 over whole articles, fused with BM25 over paragraphs.

Over a whole encyclopedia a question usually names its article ("임종석이 …"), while the
paragraph that answers it may share few terms with it. So each paragraph is scored twice, from
one pass of term analysis: by paragraph BM25 (its text and its article's title), and by the BM25
of its article (title + every paragraph, one document) plus a title-only field, which tells the
article a question is about. The fused score of a paragraph p of article a(p) is

    score(p) = bm25_par(p) / max_par + w · art(a(p)) / max_art,
    art(a)   = bm25_article(a) + title_weight · bm25_title(a),

where max_* is the query's best score, so w says how much finding the right article counts
against finding the right paragraph; `articles` > 0 keeps art() only for the top `articles`
articles (DrQA's "read the top articles"). Query terms in more than `max_df` of the paragraphs
(the commonest syllables) are skipped: their idf is near zero, and their posting lists are most
of the query's cost.

Files: one vocabulary (JSON) and three CSC matrices of BM25 weights as plain .npy arrays
(paragraphs, articles, titles: columns are terms, so a query sums a few columns), plus the
article row of every paragraph; loaded memory-mapped, so serving reads only the columns it uses.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from tqdm import tqdm

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval import sparse_matrix as sp
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.bm25 import bm25_weights
from korqa.retrieval.sparse import top_k
from korqa.retrieval.terms import TermAnalyzer, TermConfig

VOCABULARY_FILE = "vocabulary.json"
ARTICLE_OF_FILE = "article_of_paragraph.npy"
MATRICES = PARAGRAPHS, ARTICLES, TITLES = ("paragraphs", "articles", "titles")
PARTS = ("data", "indices", "indptr")


def _matrix_file(matrix: str, part: str) -> str:
    return f"{matrix}.{part}.npy"


class ArticleRetriever(Retriever):
    """Paragraph BM25 fused with article BM25 (module docstring). `k1`/`b` apply to paragraphs,
    `article_k1`/`article_b` to articles and titles; the query-time knobs (`weight`,
    `title_weight`, `articles`, `max_df`) can be changed on a loaded index."""

    kind = "articles"

    def __init__(
        self,
        terms: TermConfig | None = None,
        k1: float = 0.6,
        b: float = 0.75,
        article_k1: float = 1.2,
        article_b: float = 0.75,
        weight: float = 1.0,
        title_weight: float = 1.0,
        articles: int = 0,
        max_df: float = 1.0,
        chunk_size: int = 20_000,
    ) -> None:
        super().__init__()
        if not 0.0 < max_df <= 1.0:
            raise ValueError(f"articles: max_df must be in (0, 1], got {max_df}")
        if articles < 0:
            raise ValueError(f"articles: articles must be 0 (all) or positive, got {articles}")
        self.terms = terms or TermConfig()
        self.k1, self.b = k1, b
        self.article_k1, self.article_b = article_k1, article_b
        self.weight = weight
        self.title_weight = title_weight
        self.articles = articles
        self.max_df = max_df
        self.chunk_size = chunk_size
        self.analyzer = TermAnalyzer(self.terms)
        self.vocabulary: dict[str, int] = {}
        self.matrices: dict[str, dict[str, np.ndarray]] = {}
        self.article_of = np.zeros(0, dtype=np.int32)
        self.article_ids: list[str] = []

    def params(self) -> dict[str, Any]:
        return {"terms": self.terms.to_dict(), "k1": self.k1, "b": self.b,
                "article_k1": self.article_k1, "article_b": self.article_b,
                "weight": self.weight, "title_weight": self.title_weight,
                "articles": self.articles, "max_df": self.max_df}

    # ---- indexing -----------------------------------------------------------------------

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        counts = _ArticleCounts(self.analyzer)
        bar = tqdm(total=total, desc="article terms", unit="par", disable=not progress,
                   mininterval=1.0)
        for batch in _batches(paragraphs, self.chunk_size):
            counts.add(batch)
            bar.update(len(batch))
        bar.close()
        if not counts.paragraph_ids:
            raise ValueError("articles: the corpus has no paragraphs")
        width = len(counts.vocabulary)
        # One matrix at a time, each freed once weighted: kowiki's paragraph counts alone are
        # gigabytes.
        stacked = {PARAGRAPHS: lambda: counts.stack(counts.take("paragraph_rows"), width),
                   ARTICLES: lambda: counts.articles(width),
                   TITLES: lambda: counts.stack(counts.take("title_rows"), width)}
        self.matrices = {}
        for name, make in stacked.items():
            k1, b = (self.k1, self.b) if name == PARAGRAPHS else (self.article_k1,
                                                                     self.article_b)
            weights = bm25_weights(make(), k1, b)
            self.matrices[name] = {"data": weights.data,
                                   "indices": weights.indices.astype(np.int32, copy=False),
                                   "indptr": weights.indptr.astype(np.int64, copy=False)}
            del weights
        self.vocabulary = counts.vocabulary
        self.article_of = np.frombuffer(counts.article_of, dtype=np.int32).copy()
        self.article_ids = counts.article_ids
        self.paragraph_ids = counts.paragraph_ids

    # ---- retrieval ----------------------------------------------------------------------

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        return [self._retrieve(terms, k) for terms in self.analyzer.many(list(queries))]

    def _retrieve(self, terms: list[str], k: int) -> list[Hit]:
        term_ids = self._query_terms(terms)
        if not term_ids:
            return []
        paragraph = self._column_sum(PARAGRAPHS, term_ids, len(self.article_of))
        article = self._column_sum(ARTICLES, term_ids, len(self.article_ids))
        if self.title_weight:
            article += self.title_weight * self._column_sum(TITLES, term_ids,
                                                            len(self.article_ids))
        if self.articles and self.articles < len(article):
            keep = np.argpartition(-article, self.articles - 1)[:self.articles]
            kept = np.zeros_like(article)
            kept[keep] = article[keep]
            article = kept
        best_paragraph, best_article = paragraph.max(), article.max()
        fused = paragraph / best_paragraph if best_paragraph > 0 else paragraph
        if best_article > 0 and self.weight:
            fused += (self.weight / best_article) * article[self.article_of]
        rows = np.flatnonzero(fused > 0)
        best, values = top_k(fused[rows], k, rows)
        return self._hits(best, values)

    def _query_terms(self, terms: list[str]) -> list[int]:
        """Known query terms (with repeats, as BM25's query term frequency), less those in more
        than `max_df` of the paragraphs."""
        ids = [self.vocabulary[t] for t in terms if t in self.vocabulary]
        if self.max_df >= 1.0:
            return ids
        indptr = self.matrices[PARAGRAPHS]["indptr"]
        limit = self.max_df * len(self.article_of)
        return [i for i in ids if indptr[i + 1] - indptr[i] <= limit]

    def _column_sum(self, name: str, term_ids: list[int], rows: int) -> np.ndarray:
        """Σ over the query terms of the term's column: one BM25 score per row."""
        matrix = self.matrices[name]
        indptr, indices, data = matrix["indptr"], matrix["indices"], matrix["data"]
        spans = [(int(indptr[t]), int(indptr[t + 1])) for t in term_ids]
        spans = [(lo, hi) for lo, hi in spans if hi > lo]
        if not spans:
            return np.zeros(rows, dtype=np.float64)
        where = np.concatenate([indices[lo:hi] for lo, hi in spans])
        weights = np.concatenate([data[lo:hi] for lo, hi in spans])
        return np.bincount(where, weights=weights, minlength=rows)

    # ---- persistence --------------------------------------------------------------------

    def _save_files(self, directory: Path) -> list[str]:
        files = []
        for name in MATRICES:
            for part in PARTS:
                np.save(directory / _matrix_file(name, part), self.matrices[name][part],
                        allow_pickle=False)
                files.append(_matrix_file(name, part))
        np.save(directory / ARTICLE_OF_FILE, self.article_of, allow_pickle=False)
        (directory / VOCABULARY_FILE).write_text(
            json.dumps({"terms": list(self.vocabulary), "articles": self.article_ids},
                       ensure_ascii=False), encoding="utf-8")
        return [*files, ARTICLE_OF_FILE, VOCABULARY_FILE]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        params = dict(manifest["params"])
        params["terms"] = TermConfig.from_dict(params["terms"])
        retriever = cls(**params)
        path = directory / VOCABULARY_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            terms, article_ids = saved["terms"], saved["articles"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: unreadable vocabulary ({error}): rebuild the index") \
                from None
        retriever.vocabulary = {term: i for i, term in enumerate(terms)}
        retriever.article_ids = article_ids
        retriever.matrices = {name: {part: _load_array(directory / _matrix_file(name, part))
                                     for part in PARTS} for name in MATRICES}
        retriever.article_of = _load_array(directory / ARTICLE_OF_FILE)
        retriever._check_shapes(directory)
        return retriever

    def _check_shapes(self, directory: Path) -> None:
        width = len(self.vocabulary)
        for name, matrix in self.matrices.items():
            if len(matrix["indptr"]) != width + 1 or len(matrix["data"]) != len(
                    matrix["indices"]):
                raise ValueError(f"{directory}/{name}.*.npy: the {name} matrix does not match "
                                 f"the {width:,} terms of {VOCABULARY_FILE}: rebuild the index")
        if len(self.article_of) and int(self.article_of.max()) >= len(self.article_ids):
            raise ValueError(f"{directory / ARTICLE_OF_FILE}: names articles beyond the "
                             f"{len(self.article_ids):,} of {VOCABULARY_FILE}: rebuild the index")

    def _row_count(self) -> int:
        return len(self.article_of)


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable array ({error}): rebuild the index") from None


class _ArticleCounts:
    """Term counts of paragraphs (text + title), of article titles and of article texts, from
    one analysis of each paragraph and each title. A document's paragraphs need not be
    consecutive: rows of one article from different chunks are summed at the end."""

    def __init__(self, analyzer: TermAnalyzer) -> None:
        self.analyzer = analyzer
        self.vocabulary: dict[str, int] = {}
        self.paragraph_ids: list[str] = []
        self.article_ids: list[str] = []
        self.article_row: dict[str, int] = {}
        self.title_terms: list[list[int]] = []
        self.article_of = array("i")
        self.paragraph_rows: list[sp.CompressedMatrix] = []
        self.title_rows: list[sp.CompressedMatrix] = []
        self.article_parts: list[sp.CompressedMatrix] = []
        self.part_articles = array("i")  # the article of each row of article_parts
        self.part_terms: list[list[int]] = []
        self.open_article = -1
        self.open_terms: list[int] = []

    def _ids(self, terms: list[str]) -> list[int]:
        setdefault, vocabulary = self.vocabulary.setdefault, self.vocabulary
        return [setdefault(term, len(vocabulary)) for term in terms]

    def add(self, batch: list[Paragraph]) -> None:
        new = [p for p in dict.fromkeys(p.doc_id for p in batch) if p not in self.article_row]
        titles = {p.doc_id: p.title for p in batch}
        title_terms = self.analyzer.many([titles[d] for d in new])
        new_title_rows = []
        for doc_id, terms in zip(new, title_terms, strict=True):
            self.article_row[doc_id] = len(self.article_ids)
            self.article_ids.append(doc_id)
            ids = self._ids(terms)
            self.title_terms.append(ids)
            new_title_rows.append(ids)
        self.title_rows.append(_rows(new_title_rows))
        text_terms = [self._ids(t) for t in self.analyzer.many([p.text for p in batch])]
        rows = [self.article_row[p.doc_id] for p in batch]
        self.article_of.extend(rows)
        self.paragraph_ids.extend(p.id for p in batch)
        self.paragraph_rows.append(_rows([terms + self.title_terms[row]
                                          for terms, row in zip(text_terms, rows, strict=True)]))
        # Each article's text becomes one row once its paragraphs end; the last article of a
        # chunk stays open, since its paragraphs usually go on in the next chunk.
        for terms, row in zip(text_terms, rows, strict=True):
            if row != self.open_article:
                self._close_article()
                self.open_article = row
            self.open_terms.extend(terms)

    def _close_article(self) -> None:
        if self.open_article < 0:
            return
        self.part_terms.append(self.open_terms)
        self.part_articles.append(self.open_article)
        self.open_article, self.open_terms = -1, []
        if len(self.part_terms) >= 5_000:
            self.article_parts.append(_rows(self.part_terms))
            self.part_terms = []

    def take(self, name: str) -> list[sp.CompressedMatrix]:
        """The chunks of `name`, handed over: the counter keeps no reference."""
        chunks = getattr(self, name)
        setattr(self, name, [])
        return chunks

    def stack(self, chunks: list[sp.CompressedMatrix], width: int) -> sp.CompressedMatrix:
        widened = [sp.csr_matrix((c.data, c.indices, c.indptr), shape=(c.shape[0], width))
                   for c in chunks]
        return sp.vstack(widened, format="csr") if len(widened) > 1 else widened[0]

    def articles(self, width: int) -> sp.CompressedMatrix:
        """Article texts (every paragraph) plus the title once."""
        self._close_article()
        if self.part_terms:
            self.article_parts.append(_rows(self.part_terms))
            self.part_terms = []
        parts = self.stack(self.take("article_parts"), width)
        owners = np.frombuffer(self.part_articles, dtype=np.int32)
        count = len(self.article_ids)
        if len(owners) != count or np.any(owners != np.arange(count)):
            pick = sp.csr_matrix((np.ones(len(owners), dtype=np.float32),
                                  (owners, np.arange(len(owners)))), shape=(count, len(owners)))
            parts = (pick @ parts).tocsr()  # a document whose paragraphs were not together
        return (parts + self.stack(self.title_rows, width)).tocsr()


def _rows(term_ids: list[list[int]]) -> sp.CompressedMatrix:
    """A CSR matrix of counts, one row per list of term ids (width: the largest id + 1)."""
    indptr = array("i", [0])
    indices = array("i")
    for ids in term_ids:
        indices.extend(ids)
        indptr.append(len(indices))
    width = int(max(indices)) + 1 if len(indices) else 0
    matrix = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), np.frombuffer(indices, dtype=np.int32),
         np.frombuffer(indptr, dtype=np.int32)), shape=(len(term_ids), width))
    matrix.sum_duplicates()
    return matrix


def _batches(paragraphs: Iterable[Paragraph], size: int) -> Iterator[list[Paragraph]]:
    batch: list[Paragraph] = []
    for paragraph in paragraphs:
        batch.append(paragraph)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
