"""Immutable BM25 segments on disk, memory-mapped; deletes are marked, merges rewrite.

A segment holds the raw statistics of some paragraphs, never their BM25 weights, so that
collection statistics (paragraph count, average length, document frequency) can be summed
over all segments at query time, less the deleted rows, and scores equal a one-shot build:

    SEGMENT/terms.npy      uint64 [T]     term hashes, sorted (the columns)
    SEGMENT/indptr.npy     int64 [T + 1]  postings of column j: rows/tf[indptr[j]:indptr[j+1]]
    SEGMENT/rows.npy       int32 [P]      row of each posting, ascending within a column
    SEGMENT/tf.npy         float32 [P]    term count of each posting
    SEGMENT/lengths.npy    float32 [R]    terms in each row, with repeats
    SEGMENT/ids.npy        uint8 [bytes]  the rows' paragraph ids, UTF-8, one after another
    SEGMENT/id_offsets.npy int64 [R + 1]  where each id starts in ids.npy
    SEGMENT/id_hashes.npy  uint64 [R]     id hashes, sorted, and id_rows.npy their rows
    SEGMENT/manifest.json  the files' sha256, sizes and times (`korqa.retrieval.manifest`)

Terms and ids are looked up by a 64-bit BLAKE2b hash with `searchsorted` on the mapped arrays,
so opening a segment reads no vocabulary or id list into Python objects: what stays resident
is what queries touch. Ids are compared byte for byte after the hash; two distinct terms of one
segment sharing a hash (odds about 1e-6 at kowiki's vocabulary size) stop the build.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from pathlib import Path

import numpy as np

from korqa.retrieval import sparse_matrix as sp
from korqa.retrieval.manifest import read_manifest, write_manifest

SEGMENT_KIND = "bm25-segment"
_ARRAYS = ("terms", "indptr", "rows", "tf", "lengths", "ids", "id_offsets", "id_hashes",
           "id_rows")
# Opened segments by (path, inode, mtime of their manifest): a writer's reload or a server's
# reopen maps each unchanged segment once. Segments never change once written.
_OPEN: weakref.WeakValueDictionary[tuple, Segment] = weakref.WeakValueDictionary()


def hashes(strings: Sequence[str]) -> np.ndarray:
    """The 64-bit BLAKE2b hash of each string, as uint64 (stable across processes)."""
    digest = b"".join(blake2b(s.encode("utf-8"), digest_size=8).digest() for s in strings)
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64)


@lru_cache(maxsize=1 << 17)
def _query_hash(term: str) -> bytes:
    return blake2b(term.encode("utf-8"), digest_size=8).digest()


def query_hashes(terms: Sequence[str]) -> np.ndarray:
    """`hashes` for query terms, remembering the recent ones: questions repeat their terms
    (particles, common syllables), and hashing was a sixth of a query's time."""
    digest = b"".join(map(_query_hash, terms))
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64)


@dataclass(eq=False)
class Segment:
    """One segment's arrays (in memory until written, then memory-mapped) and its name."""

    name: str
    terms: np.ndarray
    indptr: np.ndarray
    rows: np.ndarray
    tf: np.ndarray
    lengths: np.ndarray
    ids: np.ndarray
    id_offsets: np.ndarray
    id_hashes: np.ndarray
    id_rows: np.ndarray
    path: Path | None = None  # where it is written; None while only in memory

    @property
    def size(self) -> int:
        return len(self.lengths)

    # ---- building -----------------------------------------------------------------------

    @classmethod
    def from_counts(cls, name: str, counts: sp.CompressedMatrix, vocabulary: dict[str, int],
                    ids: Sequence[str]) -> Segment:
        """A segment from a (rows × terms) count matrix whose columns `vocabulary` names.
        Consumes `counts` (its column indices are rewritten in place)."""
        if counts.shape[0] != len(ids):
            raise ValueError(f"segment {name}: {counts.shape[0]} rows but {len(ids)} ids")
        term_hashes = hashes(list(vocabulary))  # the vocabulary's order is its column order
        order = np.argsort(term_hashes, kind="stable")
        sorted_hashes = term_hashes[order]
        if len(sorted_hashes) > 1 and bool(np.any(sorted_hashes[1:] == sorted_hashes[:-1])):
            raise ValueError(f"segment {name}: two terms share a 64-bit hash")
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        # Renumbering the columns in place and converting once avoids a second copy of the
        # postings (at kowiki scale, gigabytes); tocsc leaves each column's rows ascending.
        counts.indices = rank[counts.indices]
        counts.has_sorted_indices = False
        lengths = np.asarray(counts.sum(axis=1), dtype=np.float32).ravel()
        csc = counts.tocsc()
        return cls(name, sorted_hashes, csc.indptr.astype(np.int64, copy=False),
                   csc.indices.astype(np.int32, copy=False),
                   csc.data.astype(np.float32, copy=False), lengths, *_id_arrays(ids))

    def write(self, directory: Path) -> None:
        """Save the arrays as .npy files plus a manifest in `directory` (replaced if it
        exists), fsynced, and map them from there."""
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        names = []
        for field in _ARRAYS:
            np.save(directory / f"{field}.npy", np.ascontiguousarray(getattr(self, field)),
                    allow_pickle=False)
            names.append(f"{field}.npy")
        write_manifest(directory, SEGMENT_KIND, {}, self.size, names)
        for path in [*sorted(directory.iterdir()), directory, directory.parent]:
            _fsync(path)
        opened = Segment.open(directory, verify="none")
        for field in (*_ARRAYS, "path", "name"):
            setattr(self, field, getattr(opened, field))

    @classmethod
    def open(cls, directory: Path, verify: bool | str = "stat") -> Segment:
        """Map a written segment, checking its files as far as `verify` says."""
        manifest = read_manifest(directory, SEGMENT_KIND, verify=verify)
        info = (directory / "manifest.json").stat()
        key = (str(directory.resolve()), info.st_ino, info.st_mtime_ns)
        if (cached := _OPEN.get(key)) is not None:
            return cached
        arrays = {}
        for field in _ARRAYS:
            try:
                # A plain ndarray view of the mapping: np.memmap's Python-level __getitem__
                # cost a fifth of a query's time.
                arrays[field] = np.load(directory / f"{field}.npy", mmap_mode="r",
                                        allow_pickle=False).view(np.ndarray)
            except ValueError:  # numpy cannot map an empty array
                arrays[field] = np.load(directory / f"{field}.npy", allow_pickle=False)
        segment = cls(directory.name, **arrays, path=directory)
        if segment.size != manifest["paragraph_count"] or len(segment.indptr) != \
                len(segment.terms) + 1 or len(segment.id_offsets) != segment.size + 1:
            raise ValueError(f"{directory}: the segment's arrays disagree in length: "
                             "rebuild the index")
        _OPEN[key] = segment
        return segment

    # ---- reading ------------------------------------------------------------------------

    def columns(self, term_hashes: np.ndarray) -> np.ndarray:
        """The column of each hash, or -1 where the segment lacks the term."""
        if not len(self.terms):
            return np.full(len(term_hashes), -1, dtype=np.int64)
        found = np.searchsorted(self.terms, term_hashes)
        clipped = np.minimum(found, len(self.terms) - 1)
        return np.where(self.terms[clipped] == term_hashes, clipped, -1)

    def id(self, row: int) -> str:
        lo, hi = int(self.id_offsets[row]), int(self.id_offsets[row + 1])
        return bytes(self.ids[lo:hi]).decode("utf-8")

    def ids_of(self, rows: Sequence[int]) -> list[str]:
        starts = self.id_offsets[rows].tolist()
        ends = self.id_offsets[np.asarray(rows, dtype=np.int64) + 1].tolist()
        blob = self.ids
        return [blob[a:b].tobytes().decode("utf-8") for a, b in zip(starts, ends, strict=True)]

    def all_ids(self) -> list[str]:
        blob = bytes(self.ids).decode("utf-8")
        # Offsets count bytes; decoding per row keeps multi-byte Hangul intact.
        if blob.isascii():
            offsets = self.id_offsets.tolist()
            return [blob[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]
        return [self.id(r) for r in range(self.size)]

    def rows_of(self, ids: Sequence[str]) -> list[int | None]:
        """The row of each paragraph id, or None where this segment lacks it."""
        wanted = hashes(ids)
        starts = np.searchsorted(self.id_hashes, wanted)
        found: list[int | None] = []
        for pid, key, start in zip(ids, wanted.tolist(), starts.tolist(), strict=True):
            row = None
            # Equal hashes sit together; compare the ids themselves (collisions are possible).
            while start < self.size and int(self.id_hashes[start]) == key:
                candidate = int(self.id_rows[start])
                if self.id(candidate) == pid:
                    row = candidate
                    break
                start += 1
            found.append(row)
        return found


def merge(name: str, segments: Sequence[Segment], live: Sequence[np.ndarray | None]) -> Segment:
    """One segment holding the live rows of `segments`, in order (`live[i]`: a bool mask of
    segment i's rows, None when none is deleted). Columns are the union of their terms."""
    union = np.unique(np.concatenate([s.terms for s in segments])) if segments else \
        np.empty(0, dtype=np.uint64)
    blocks, lengths, ids = [], [], []
    for segment, mask in zip(segments, live, strict=True):
        # Map the segment's sorted columns into the sorted union without touching postings:
        # both orders agree, so only the column pointers move.
        counts = np.zeros(len(union), dtype=np.int64)
        counts[np.searchsorted(union, segment.terms)] = np.diff(segment.indptr)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        block = sp.csc_matrix((np.asarray(segment.tf), np.asarray(segment.rows), indptr),
                              shape=(segment.size, len(union)))
        keep = np.arange(segment.size) if mask is None else np.flatnonzero(mask)
        blocks.append(block[keep].tocsr())
        lengths.append(np.asarray(segment.lengths)[keep])
        all_ids = segment.all_ids()
        ids.extend(all_ids[r] for r in keep.tolist())
    matrix = sp.vstack(blocks, format="csc") if blocks else sp.csc_matrix((0, 0))
    matrix.sort_indices()
    # Drop terms whose every posting was deleted.
    used = np.flatnonzero(np.diff(matrix.indptr) > 0)
    matrix = matrix[:, used]
    return Segment(name, union[used], matrix.indptr.astype(np.int64),
                   matrix.indices.astype(np.int32), matrix.data.astype(np.float32),
                   np.concatenate(lengths).astype(np.float32) if lengths else
                   np.empty(0, dtype=np.float32), *_id_arrays(ids))


@dataclass(frozen=True)
class MergePolicy:
    """Tiered merging, after Lucene's TieredMergePolicy: segments are sorted into tiers by
    live size (`floor_rows` × `per_tier`^i); a tier that holds `per_tier` segments merges
    into one. A segment whose deleted share exceeds `max_deleted` is rewritten, and one
    without live rows dropped, so tombstones do not pile up in a segment no tier merges."""

    per_tier: int = 10
    floor_rows: int = 1000
    max_deleted: float = 0.5

    def plan(self, sizes: Sequence[tuple[int, int]]) -> list[list[int]]:
        """Groups of segment positions to merge, from each segment's (rows, live rows)."""
        tiers: dict[int, list[int]] = {}
        expunge = []
        for i, (rows, live) in enumerate(sizes):
            if rows and (rows - live) / rows > self.max_deleted:
                expunge.append(i)
                continue
            tier = int(np.floor(np.log(max(live, self.floor_rows) / self.floor_rows)
                                / np.log(self.per_tier)))
            tiers.setdefault(tier, []).append(i)
        groups = [members for members in tiers.values() if len(members) >= self.per_tier]
        groups += [[i] for i in expunge]
        return sorted(groups)


def _id_arrays(ids: Sequence[str]) -> tuple[np.ndarray, ...]:
    encoded = [i.encode("utf-8") for i in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    id_hashes = hashes(list(ids))
    order = np.argsort(id_hashes, kind="stable")
    return blob, offsets, id_hashes[order], order.astype(np.int32)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
