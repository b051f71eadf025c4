"""The part of scipy.sparse that korqa's sparse retrievers use, in numpy: CSR and CSC matrices.

scipy is 140 MB of a 400 MB install, and korqa needs a few dozen lines of it: building count
matrices, converting between row and column layouts, stacking, selecting rows and columns,
sums and products, and scipy's .npz files (read and written the same, without pickle). The
names and behaviour follow scipy's (`csr_matrix`, `tocsc`, `sum_duplicates`, …), so the
retrievers read as they did; the tests check each operation against scipy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class CompressedMatrix:
    """A CSR (rows compressed) or CSC (columns compressed) matrix: `indptr[i]:indptr[i+1]`
    delimit the entries of row i (column i for CSC); `indices` are their columns (rows)."""

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 shape: tuple[int, int], format: str) -> None:
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = (int(shape[0]), int(shape[1]))
        self.format = format
        self.has_sorted_indices = False

    # ---- layout ----------------------------------------------------------------------

    @property
    def _major(self) -> int:
        return self.shape[0] if self.format == "csr" else self.shape[1]

    @property
    def _minor(self) -> int:
        return self.shape[1] if self.format == "csr" else self.shape[0]

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1]) if len(self.indptr) else 0

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def _majors(self) -> np.ndarray:
        """The major index (row of a CSR, column of a CSC) of every entry."""
        return np.repeat(np.arange(self._major, dtype=np.int64), np.diff(self.indptr))

    def _swapped(self) -> CompressedMatrix:
        """The same entries compressed along the other axis; within each new major slice they
        keep their old order, so indices come out ascending (scipy's tocsr/tocsc)."""
        order = np.argsort(self.indices[:self.nnz], kind="stable")
        majors = self._majors()
        indptr = np.zeros(self._minor + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.indices[:self.nnz], minlength=self._minor), out=indptr[1:])
        swapped = CompressedMatrix(self.data[order], majors[order].astype(np.int32), indptr,
                                   self.shape, "csc" if self.format == "csr" else "csr")
        swapped.has_sorted_indices = True
        return swapped

    def tocsr(self) -> CompressedMatrix:
        return self if self.format == "csr" else self._swapped()

    def tocsc(self) -> CompressedMatrix:
        return self if self.format == "csc" else self._swapped()

    def asformat(self, format: str) -> CompressedMatrix:
        return self.tocsr() if format == "csr" else self.tocsc()

    @property
    def T(self) -> CompressedMatrix:  # noqa: N802 (scipy's name)
        """The transpose: the same arrays read along the other axis."""
        return CompressedMatrix(self.data, self.indices, self.indptr,
                                (self.shape[1], self.shape[0]),
                                "csc" if self.format == "csr" else "csr")

    def copy(self) -> CompressedMatrix:
        copied = CompressedMatrix(self.data.copy(), self.indices.copy(), self.indptr.copy(),
                                  self.shape, self.format)
        copied.has_sorted_indices = self.has_sorted_indices
        return copied

    def sort_indices(self) -> None:
        """Each major slice's entries in ascending index order, in place."""
        if self.has_sorted_indices:
            return
        order = np.lexsort((self.indices[:self.nnz], self._majors()))
        self.indices, self.data = self.indices[order], self.data[order]
        self.has_sorted_indices = True

    def sum_duplicates(self) -> None:
        """Entries of the same (row, column) summed into one, indices sorted, in place."""
        majors = self._majors()
        order = np.lexsort((self.indices[:self.nnz], majors))
        indices, majors, data = self.indices[order], majors[order], self.data[order]
        first = np.ones(len(indices), dtype=bool)
        first[1:] = (indices[1:] != indices[:-1]) | (majors[1:] != majors[:-1])
        starts = np.flatnonzero(first)
        self.data = (np.add.reduceat(data, starts) if len(starts) else data).astype(
            self.data.dtype, copy=False)
        self.indices = indices[starts].astype(self.indices.dtype, copy=False)
        indptr = np.zeros(self._major + 1, dtype=self.indptr.dtype)
        np.cumsum(np.bincount(majors[starts], minlength=self._major), out=indptr[1:])
        self.indptr = indptr
        self.has_sorted_indices = True

    # ---- reading -----------------------------------------------------------------------

    def toarray(self) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=self.data.dtype)
        majors, minors = self._majors(), self.indices[:self.nnz]
        rows, columns = (majors, minors) if self.format == "csr" else (minors, majors)
        np.add.at(dense, (rows, columns), self.data[:self.nnz])
        return dense

    def sum(self, axis: int) -> np.ndarray:
        """Row (axis=1) or column (axis=0) sums as an [n, 1] or [1, n] array, as scipy's
        (whose np.matrix `np.asarray(…).ravel()` flattens the same way)."""
        along = self.tocsr() if axis == 1 else self.tocsc()
        sums = np.bincount(along._majors(), weights=along.data[:along.nnz],
                           minlength=along._major).astype(self.data.dtype)
        return sums.reshape(-1, 1) if axis == 1 else sums.reshape(1, -1)

    def __getitem__(self, key: Any) -> CompressedMatrix:
        """Rows `m[rows]` (as CSR) or columns `m[:, columns]` (as CSC): integer arrays."""
        if isinstance(key, tuple):
            rows, columns = key
            if rows != slice(None):
                raise NotImplementedError("only m[rows] and m[:, columns]")
            return self.tocsc()._take(np.asarray(columns))
        return self.tocsr()._take(np.asarray(key))

    def _take(self, majors: np.ndarray) -> CompressedMatrix:
        """These major slices (rows of a CSR, columns of a CSC), in the order given."""
        starts = self.indptr[majors].astype(np.int64)
        lengths = self.indptr[majors + 1] - starts
        indptr = np.zeros(len(majors) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        picks = _spans(starts, lengths)
        shape = (len(majors), self._minor) if self.format == "csr" else \
            (self._minor, len(majors))
        taken = CompressedMatrix(self.data[picks], self.indices[picks], indptr, shape,
                                 self.format)
        taken.has_sorted_indices = self.has_sorted_indices
        return taken

    # ---- arithmetic -------------------------------------------------------------------

    def __add__(self, other: CompressedMatrix) -> CompressedMatrix:
        if self.shape != other.shape:
            raise ValueError(f"inconsistent shapes {self.shape} and {other.shape}")
        a, b = self.tocsr(), other.tocsr()
        rows = np.concatenate([a._majors(), b._majors()])
        columns = np.concatenate([a.indices[:a.nnz], b.indices[:b.nnz]])
        data = np.concatenate([a.data[:a.nnz], b.data[:b.nnz]])
        return _from_coordinates(data, rows, columns, self.shape, "csr")

    def __matmul__(self, other: CompressedMatrix) -> CompressedMatrix:
        """The sparse product. Each entry (i, k) of `self` times row k of `other` is added to
        row i in the order scipy's csr_matmat adds them, in the same precision, so the sums
        are scipy's to the bit; zeros are dropped, as scipy drops them."""
        if self.shape[1] != other.shape[0]:
            raise ValueError(f"dimension mismatch {self.shape} @ {other.shape}")
        a, b = self.tocsr(), other.tocsr()
        terms = a.indices[:a.nnz]
        starts = b.indptr[terms].astype(np.int64)
        lengths = b.indptr[terms + 1] - starts
        picks = _spans(starts, lengths)
        rows = np.repeat(a._majors(), lengths)
        width = b.shape[1]
        keys = rows * width + b.indices[picks]
        unique, inverse = np.unique(keys, return_inverse=True)
        dtype = np.result_type(a.data, b.data)
        sums = np.zeros(len(unique), dtype=dtype)
        np.add.at(sums, inverse, b.data[picks] * np.repeat(a.data[:a.nnz], lengths))
        keep = sums != 0
        unique, sums = unique[keep], sums[keep]
        indptr = np.zeros(a.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(unique // width, minlength=a.shape[0]), out=indptr[1:])
        product = CompressedMatrix(sums, (unique % width).astype(np.int32), indptr,
                                   (a.shape[0], width), "csr")
        product.has_sorted_indices = True
        return product


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions starts[i] … starts[i] + lengths[i] − 1 of every i, concatenated."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - ends + lengths, lengths) + np.arange(ends[-1] if len(ends) else 0)


def _from_coordinates(data: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                      shape: tuple[int, int], format: str) -> CompressedMatrix:
    """COO entries → a compressed matrix, duplicates summed, indices sorted."""
    majors, minors = (rows, columns) if format == "csr" else (columns, rows)
    major_count = shape[0] if format == "csr" else shape[1]
    order = np.argsort(majors, kind="stable")
    indptr = np.zeros(major_count + 1, dtype=np.int64)
    np.cumsum(np.bincount(np.asarray(majors, dtype=np.int64), minlength=major_count),
              out=indptr[1:])
    matrix = CompressedMatrix(np.asarray(data)[order], np.asarray(minors, dtype=np.int32)[order],
                              indptr, shape, format)
    matrix.sum_duplicates()
    return matrix


def _make(arg: Any, shape: tuple[int, int] | None, dtype: Any, format: str) -> CompressedMatrix:
    if isinstance(arg, CompressedMatrix):
        return arg.asformat(format)
    if isinstance(arg, tuple) and len(arg) == 2 and all(isinstance(n, int) for n in arg):
        empty = CompressedMatrix(np.zeros(0, dtype=dtype or np.float64),
                                 np.zeros(0, dtype=np.int32),
                                 np.zeros((arg[0] if format == "csr" else arg[1]) + 1,
                                          dtype=np.int32), arg, format)
        empty.has_sorted_indices = True
        return empty
    if shape is None:
        raise ValueError("a sparse matrix from arrays needs its shape")
    if isinstance(arg, tuple) and len(arg) == 2:  # (data, (rows, columns))
        data, (rows, columns) = arg
        return _from_coordinates(np.asarray(data, dtype=dtype), np.asarray(rows),
                                 np.asarray(columns), shape, format)
    data, indices, indptr = arg
    return CompressedMatrix(np.asarray(data, dtype=dtype), np.asarray(indices),
                            np.asarray(indptr), shape, format)


def csr_matrix(arg: Any, shape: tuple[int, int] | None = None,
               dtype: Any = None) -> CompressedMatrix:
    """scipy's constructor: (data, indices, indptr), (data, (rows, columns)), (m, n) for an
    empty matrix, or another matrix (converted)."""
    return _make(arg, shape, dtype, "csr")


def csc_matrix(arg: Any, shape: tuple[int, int] | None = None,
               dtype: Any = None) -> CompressedMatrix:
    return _make(arg, shape, dtype, "csc")


def vstack(blocks: list[CompressedMatrix], format: str = "csr") -> CompressedMatrix:
    """The blocks one below the other (they must have as many columns)."""
    widths = {block.shape[1] for block in blocks}
    if len(widths) != 1:
        raise ValueError(f"blocks of different widths {sorted(widths)} cannot be stacked")
    rows = [block.tocsr() for block in blocks]
    indptr = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for block in rows:
        indptr.append(np.asarray(block.indptr[1:], dtype=np.int64) + offset)
        offset += block.nnz
    stacked = CompressedMatrix(np.concatenate([b.data[:b.nnz] for b in rows]),
                               np.concatenate([b.indices[:b.nnz] for b in rows]),
                               np.concatenate(indptr), (sum(b.shape[0] for b in rows),
                                                        widths.pop()), "csr")
    stacked.has_sorted_indices = all(b.has_sorted_indices for b in rows)
    return stacked.asformat(format)


def save_npz(path: str | Path, matrix: CompressedMatrix, compressed: bool = False) -> None:
    """scipy's .npz layout (data, indices, indptr, format, shape): plain arrays."""
    save = np.savez_compressed if compressed else np.savez
    save(path, data=matrix.data, indices=matrix.indices, indptr=matrix.indptr,
         format=np.array(matrix.format.encode("ascii")), shape=np.array(matrix.shape))


def load_npz(path: str | Path) -> CompressedMatrix:
    """A matrix scipy's save_npz (or `save_npz` here) wrote; pickles are refused."""
    with np.load(path, allow_pickle=False) as stored:
        format = stored["format"].item()
        format = format.decode("ascii") if isinstance(format, bytes) else str(format)
        if format not in ("csr", "csc"):
            raise ValueError(f"sparse format {format!r} is not csr or csc")
        shape = tuple(int(n) for n in stored["shape"])
        return CompressedMatrix(stored["data"], stored["indices"], stored["indptr"],
                                (shape[0], shape[1]), format)
