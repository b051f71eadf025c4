"""BM25 over segments: korqa's Korean terms, raw counts per segment, statistics at query time.

The index is a list of immutable, memory-mapped segments (`korqa.retrieval.segments`) plus, per
segment, the rows deleted since it was written. Adding paragraphs writes a new small segment;
deleting marks rows; a tiered policy merges segments. Scores use the collection statistics of
all live rows, summed across segments when a query runs, so they equal a one-shot build:

    score(d, q) = Σ_{t ∈ q} idf(t) · tf / (tf + k1 · (1 − b + b · |d| / avg|d|)),
    idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5))      (bm25s's and Lucene's "lucene" BM25)

(`idf`, `length_norm` and `term_scores` below; |d| counts a paragraph's terms with repeats.)

A saved retriever directory holds only `segments.json` (which segments, where) and the deleted
rows of each segment; the segments themselves live in a folder beside it (an index directory's
`segments/`), shared by every commit, so a change writes kilobytes, not the index.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval import sparse_matrix as sp
from korqa.retrieval.base import Hit, Retriever, stream_texts

if TYPE_CHECKING:
    from korqa.corpus.store import ParagraphStore
from korqa.retrieval.manifest import check_count, read_manifest, write_manifest
from korqa.retrieval.segments import MergePolicy, Segment, merge, query_hashes
from korqa.retrieval.sparse import count_matrix, top_k
from korqa.retrieval.terms import TermAnalyzer, TermConfig

SEGMENTS_FILE = "segments.json"
SEGMENTS_DIR = "segments"  # default home of the segments, inside a standalone retriever
LEGACY_DIR = "bm25s"  # a BM25 index saved whole by bm25s, before segments


class BM25Retriever(Retriever):
    """Okapi BM25 (the "lucene" variant of bm25s) over `TermConfig` terms, in segments.

    bm25s's own splitter drops one-syllable words (산, 강), so terms come from `TermAnalyzer`.
    `index` builds one segment; `add`, `delete` and `merge` change the index in place, and
    `save` writes only what is new.
    """

    kind = "bm25"
    incremental = True

    def __init__(
        self,
        terms: TermConfig | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        with_title: bool = False,
        unique_query_terms: bool = False,
        chunk_size: int = 20_000,
        mmap: bool = True,  # segments are always memory-mapped; kept for callers
        merge_policy: MergePolicy | None = None,
    ) -> None:
        self.terms = terms or TermConfig()
        self.k1 = k1
        self.b = b
        self.with_title = with_title
        # Whether a query term repeated in the question counts once (BM25's qtf = 1) or per
        # occurrence (what bm25s does with a list of tokens).
        self.unique_query_terms = unique_query_terms
        self.chunk_size = chunk_size
        self.merge_policy = merge_policy or MergePolicy()
        self.analyzer = TermAnalyzer(self.terms)
        self.segments: list[Segment] = []
        self.deleted: dict[str, np.ndarray] = {}  # segment name → its deleted rows, sorted
        self._next = 1
        self._stats: tuple[list[np.ndarray], list[np.ndarray | None]] | None = None

    def params(self) -> dict[str, Any]:
        return {"terms": self.terms.to_dict(), "k1": self.k1, "b": self.b,
                "with_title": self.with_title, "unique_query_terms": self.unique_query_terms}

    # ---- building and changing ----------------------------------------------------------

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        segment = self._segment(paragraphs, total, progress)
        if segment is None:
            raise ValueError("bm25: the corpus has no paragraphs")
        self.segments, self.deleted = [segment], {}
        self._stats = None

    def add(self, paragraphs: Iterable[Paragraph]) -> int:
        """Index `paragraphs` in a new segment (their ids must not be live already: delete
        them first). Returns how many were added."""
        segment = self._segment(paragraphs, None, False)
        if segment is None:
            return 0
        self.segments.append(segment)
        self._stats = None
        return segment.size

    def delete(self, ids: Iterable[str]) -> int:
        """Mark the rows of these paragraph ids deleted; ids not indexed are skipped.
        Returns how many rows were deleted."""
        ids = list(dict.fromkeys(ids))
        deleted = 0
        for segment in self.segments:
            if not ids:
                break
            rows = [r for r in segment.rows_of(ids) if r is not None]
            old = self.deleted.get(segment.name, np.empty(0, dtype=np.int32))
            fresh = np.setdiff1d(np.asarray(rows, dtype=np.int32), old)
            if len(fresh):
                self.deleted[segment.name] = np.union1d(old, fresh).astype(np.int32)
                deleted += len(fresh)
        if deleted:
            self._stats = None
        return deleted

    def update(self, store: ParagraphStore, touched: Sequence[str]) -> None:
        """Delete every touched paragraph, index the stored ones among them in a new segment,
        merge as the policy says."""
        self.delete(touched)
        self.add(store.present(touched))
        self.merge()

    def merge(self, max_segments: int | None = None) -> int:
        """Merge segments: down to `max_segments` (smallest first), or as the tiered policy
        says when None. Returns how many segments were merged away."""
        before = len(self.segments)
        if max_segments is not None:
            if max_segments < 1:
                raise ValueError(f"merge: max_segments must be at least 1, got {max_segments}")
            order = sorted(range(before), key=lambda i: self._live_count(i))
            extra = before - max_segments
            # Merging k segments removes k − 1; rewrite segments with deletions too.
            groups = [sorted(order[:extra + 1])] if extra > 0 else []
            if not groups and max_segments == 1 and self.deleted:
                groups = [[0]]
        else:
            sizes = [(s.size, self._live_count(i)) for i, s in enumerate(self.segments)]
            groups = self.merge_policy.plan(sizes)
        # Groups are taken as segments, not positions: merging one moves the others.
        for members in [[self.segments[i] for i in group] for group in groups]:
            self._merge_group(sorted(next(i for i, s in enumerate(self.segments) if s is m)
                                     for m in members))
        return before - len(self.segments)

    def _merge_group(self, group: list[int]) -> None:
        members = [self.segments[i] for i in group]
        live = [self._live_mask(s) for s in members]
        if sum(self._live_count(i) for i in group) == 0:
            merged = None  # all deleted: drop them
        else:
            merged = merge(self._new_name(), members, live)
        for segment in members:
            self.deleted.pop(segment.name, None)
        first = group[0]
        kept = [s for i, s in enumerate(self.segments) if i not in set(group)]
        if merged is not None:
            # The merged rows take the place of the first merged segment: ties among equal
            # scores keep breaking by the order paragraphs were first added.
            kept.insert(first, merged)
        self.segments = kept
        self._stats = None

    def _segment(self, paragraphs: Iterable[Paragraph], total: int | None,
                 progress: bool) -> Segment | None:
        ids: list[str] = []
        counts, vocabulary = count_matrix(
            stream_texts(paragraphs, ids, self.with_title), self.analyzer,
            chunk_size=self.chunk_size, total=total, progress=progress, desc="bm25 terms",
        )
        if not ids:
            return None
        return Segment.from_counts(self._new_name(), counts, vocabulary, ids)

    def _new_name(self) -> str:
        taken = {s.name for s in self.segments}
        while (name := f"seg-{self._next:06d}") in taken:
            self._next += 1
        self._next += 1
        return name

    # ---- searching ----------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self._live_count(i) for i in range(len(self.segments)))

    @property
    def paragraph_ids(self) -> list[str]:  # type: ignore[override]
        """Live paragraph ids in row order, segment after segment (materialised: for small
        indexes and hybrids; searching never needs the list)."""
        ids: list[str] = []
        for segment in self.segments:
            mask = self._live_mask(segment)
            all_ids = segment.all_ids()
            ids.extend(all_ids if mask is None else
                       [pid for pid, keep in zip(all_ids, mask.tolist(), strict=True) if keep])
        return ids

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        return [self._retrieve(terms, k) for terms in self.analyzer.many(list(queries))]

    def _retrieve(self, terms: list[str], k: int) -> list[Hit]:
        if self.unique_query_terms:
            terms = list(dict.fromkeys(terms))
        weights = Counter(terms)  # a term repeated in the query counts per occurrence
        if not weights or not self.segments:
            return []
        query = query_hashes(list(weights))
        qtf = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        norms, masks = self._statistics()
        # Postings of the query terms in each segment, live rows only; df sums over segments.
        df = np.zeros(len(query))
        found = []
        for segment, mask in zip(self.segments, masks, strict=True):
            short, long = _postings(segment, segment.columns(query), mask,
                                    self.deleted.get(segment.name))
            if short is not None:
                df += np.bincount(short[2], minlength=len(query))
            for term, _, _, live in long:
                df[term] += live
            found.append((short, long))
        term_weight = (qtf * idf(len(self), df)).astype(np.float32)
        best: list[tuple[float, int, int]] = []
        for position, (segment, norm, (short, long)) in enumerate(zip(
                self.segments, norms, found, strict=True)):
            if short is None and not long:
                continue
            # float32 sums, as bm25s's: np.add.at on them is twice as fast as a fancy-indexed
            # += and ten times np.bincount over a large segment.
            scores = np.zeros(segment.size, dtype=np.float32)
            if short is not None:
                rows, tf, term_of = short
                np.add.at(scores, rows, term_scores(tf, np.take(norm, rows),
                                                    term_weight[term_of]))
            for term, rows, tf, _ in long:
                # Slices of the mapped postings, no copies; deleted rows are zeroed below.
                np.add.at(scores, rows, term_scores(tf, np.take(norm, rows), term_weight[term]))
            if long and segment.name in self.deleted:
                scores[self.deleted[segment.name]] = 0.0
            # Only paragraphs sharing a term score above zero (Lucene's idf is positive).
            hit_rows = np.flatnonzero(scores > 0)
            top_rows, top_scores = top_k(scores[hit_rows], k, hit_rows)
            best.extend(zip(top_scores.tolist(), [position] * len(top_rows), top_rows.tolist(),
                            strict=True))
        best.sort(key=lambda hit: (-hit[0], hit[1], hit[2]))
        best = best[:k]
        ids: dict[tuple[int, int], str] = {}
        for position in {s for _, s, _ in best}:
            rows = [r for _, s, r in best if s == position]
            ids.update(zip([(position, r) for r in rows],
                           self.segments[position].ids_of(rows), strict=True))
        return [(ids[s, r], score) for score, s, r in best]

    def _statistics(self) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Each segment's length norm (over the average live length) and live mask: computed
        once per state of the index, not per query."""
        if self._stats is None:
            masks = [self._live_mask(s) for s in self.segments]
            total = len(self)
            length = sum(float(np.asarray(s.lengths, dtype=np.float64)[m].sum()) if m is not None
                         else float(np.asarray(s.lengths, dtype=np.float64).sum())
                         for s, m in zip(self.segments, masks, strict=True))
            mean = length / total if total else 1.0
            norms = [length_norm(np.asarray(s.lengths, np.float64), mean, self.k1, self.b)
                     for s in self.segments]
            self._stats = (norms, masks)
        return self._stats

    def _live_mask(self, segment: Segment) -> np.ndarray | None:
        rows = self.deleted.get(segment.name)
        if rows is None or not len(rows):
            return None
        mask = np.ones(segment.size, dtype=bool)
        mask[rows] = False
        return mask

    def _live_count(self, position: int) -> int:
        segment = self.segments[position]
        return segment.size - len(self.deleted.get(segment.name, ()))

    # ---- persistence --------------------------------------------------------------------

    def save(self, directory: str | Path, store_generation: str | None = None) -> None:
        """Write new segments into `segment_home` (default DIRECTORY/segments), then the
        deleted rows, `segments.json` and the manifest into `directory`."""
        if not len(self):
            raise ValueError(f"{self.kind} retriever: nothing indexed, nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._save_files(directory)
        write_manifest(directory, self.kind, self.params(), len(self), files,
                       store_generation=store_generation)

    def _save_files(self, directory: Path) -> list[str]:
        home = self.segment_home or directory / SEGMENTS_DIR
        home.mkdir(parents=True, exist_ok=True)
        for segment in self.segments:
            target = home / segment.name
            if segment.path is not None and segment.path.resolve() == target.resolve():
                continue
            if target.exists():  # another commit's segment, or a crash's leftover: rename
                segment.name = self._unused_name(home, segment.name)
                target = home / segment.name
            segment.write(target)
        files = [SEGMENTS_FILE]
        for segment in self.segments:
            rows = self.deleted.get(segment.name)
            if rows is not None and len(rows):
                name = f"deleted-{segment.name}.npy"
                np.save(directory / name, rows.astype(np.int32), allow_pickle=False)
                files.append(name)
        layout = {"home": os.path.relpath(home, directory), "next": self._next,
                  "segments": [{"name": s.name, "rows": s.size,
                                "deleted": len(self.deleted.get(s.name, ()))}
                               for s in self.segments]}
        (directory / SEGMENTS_FILE).write_text(json.dumps(layout, indent=1) + "\n",
                                               encoding="utf-8")
        return files

    def _unused_name(self, home: Path, name: str) -> str:
        previous = self.deleted.pop(name, None)
        while (home / (fresh := f"seg-{self._next:06d}")).exists() or \
                fresh in {s.name for s in self.segments}:
            self._next += 1
        self._next += 1
        if previous is not None:
            self.deleted[fresh] = previous
        return fresh

    @classmethod
    def load(cls, directory: str | Path, verify: bool | str = True) -> Self:
        directory = Path(directory)
        manifest = read_manifest(directory, cls.kind, verify=verify)
        retriever = cls._load_files(directory, manifest, verify)
        check_count(directory, manifest, "the segments' live rows", len(retriever))
        retriever.store_generation = manifest.get("store_generation")
        return retriever

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        if SEGMENTS_FILE not in manifest["files"]:
            if (directory / LEGACY_DIR).is_dir():
                raise ValueError(
                    f"{directory}: a BM25 index saved whole by an older korqa, before "
                    f"segments: rebuild it with `korqa index --out DIR` (DIR is the index "
                    f"directory; its paragraph store is kept, no --corpus needed)")
            raise FileNotFoundError(f"{directory / SEGMENTS_FILE}: not listed in the manifest")
        params = dict(manifest["params"])
        params["terms"] = TermConfig.from_dict(params["terms"])
        retriever = cls(**params)
        try:
            layout = json.loads((directory / SEGMENTS_FILE).read_text(encoding="utf-8"))
            home = directory / layout["home"]
            names = [entry["name"] for entry in layout["segments"]]
            retriever._next = int(layout["next"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{directory / SEGMENTS_FILE}: unreadable ({error}): "
                             "rebuild the index") from None
        for name in names:
            try:
                retriever.segments.append(Segment.open(home / name, verify=verify))
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{error} (segment {name} of {directory})") from None
            deleted = directory / f"deleted-{name}.npy"
            if f"deleted-{name}.npy" in manifest["files"]:
                rows = np.load(deleted, allow_pickle=False)
                if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or
                                                     rows.max() >= retriever.segments[-1].size)):
                    raise ValueError(f"{deleted}: rows out of range for segment {name}")
                retriever.deleted[name] = rows.astype(np.int32)
        if params["k1"] <= 0 or not 0 <= params["b"] <= 1:
            raise ValueError(f"{directory / 'manifest.json'}: field 'params': k1 must be "
                             f"positive and b within [0, 1], got {params['k1']}, {params['b']}")
        return retriever

    def _row_count(self) -> int:
        return len(self)

    def segment_count(self) -> int:
        return len(self.segments)


# Posting lists longer than this are scored as slices of the mapping, one term at a time;
# shorter ones are gathered together (a Python loop over ~100 short terms cost more than them).
LONG_POSTINGS = 1 << 10


def _postings(segment: Segment, columns: np.ndarray, mask: np.ndarray | None,
              deleted: np.ndarray | None) -> tuple[Any, list[tuple[int, Any, Any, int]]]:
    """The postings of `columns` (−1: term absent) in one segment: the short lists gathered,
    live rows only, as (rows, tf, query term of each), or None; and each long list as (query
    term, rows, tf, live postings), its deleted rows still in."""
    terms = np.flatnonzero(columns >= 0)
    chosen = columns[terms]
    starts = segment.indptr[chosen]
    lengths = segment.indptr[chosen + 1] - starts
    is_long = lengths > LONG_POSTINGS
    long = []
    for term, start, length in zip(terms[is_long].tolist(), starts[is_long].tolist(),
                                   lengths[is_long].tolist(), strict=True):
        rows, tf = segment.rows[start:start + length], segment.tf[start:start + length]
        live = length
        if deleted is not None and len(deleted):
            # Rows ascend within a column: count the deleted ones by binary search.
            at = np.minimum(np.searchsorted(rows, deleted), length - 1)
            live -= int(np.count_nonzero(rows[at] == deleted))
        long.append((term, rows, tf, live))
    terms, starts, lengths = terms[~is_long], starts[~is_long], lengths[~is_long]
    if not len(terms):
        return None, long
    # Every posting position of the short columns: one run per column, in query order.
    runs = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum())) + np.repeat(starts - runs, lengths)
    rows, tf = segment.rows[positions], segment.tf[positions]
    term_of = np.repeat(terms.astype(np.int32), lengths)
    if mask is not None:
        keep = mask[rows]
        rows, tf, term_of = rows[keep], tf[keep], term_of[keep]
    return (rows, tf, term_of), long


def referenced_segments(directory: Path) -> set[str]:
    """Names of the segments a saved BM25 retriever in `directory` uses (none if it is not
    one, or unreadable)."""
    try:
        layout = json.loads((directory / SEGMENTS_FILE).read_text(encoding="utf-8"))
        return {entry["name"] for entry in layout["segments"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


# ---- the formula (module docstring), once for the segments' query-time scores and the eager
# weights below --------------------------------------------------------------------------------


def idf(paragraphs: int, df: np.ndarray) -> np.ndarray:
    """Lucene's BM25 idf of terms found in `df` of `paragraphs` paragraphs (float64)."""
    return np.log1p((paragraphs - df + 0.5) / (df + 0.5))


def length_norm(lengths: np.ndarray, mean: float, k1: float, b: float) -> np.ndarray:
    """k1 · (1 − b + b · |d| / avg|d|) of each paragraph, as float32."""
    return (k1 * (1.0 - b + b * lengths / mean)).astype(np.float32)


def term_scores(tf: np.ndarray, norm: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """weight · tf / (tf + norm) of each posting, given its paragraph's `length_norm` and its
    term's weight (idf, times the term's count in a query); computed in `norm`'s buffer."""
    np.add(norm, tf, out=norm)
    np.divide(tf, norm, out=norm)
    norm *= weight
    return norm


def bm25_weights(counts: sp.CompressedMatrix, k1: float, b: float) -> sp.CompressedMatrix:
    """bm25s's eager "lucene" scores from a (paragraphs × terms) count matrix, as CSC: each
    paragraph's score for each term alone (the articles retriever's weights)."""
    n_docs = counts.shape[0]
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    mean_length = lengths.mean() if n_docs else 1.0
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    weights = idf(n_docs, df).astype(np.float32)
    counts = counts.copy()
    rows = np.repeat(np.arange(n_docs), np.diff(counts.indptr))
    counts.data = term_scores(counts.data, length_norm(lengths, mean_length, k1, b)[rows],
                              weights[counts.indices])
    return counts.tocsc()
