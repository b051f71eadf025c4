"""Dense e5 vectors compressed with faiss IVF-PQ, for corpora whose float vectors do not fit.

Korean Wikipedia's 2.13 M paragraphs are 3.3 GB of float32 e5-small vectors. IVF-PQ keeps, per
paragraph, `m` one-byte codes (product quantisation of the 384 dimensions into `m` groups)
and its id in one of `nlist` inverted lists (coarse k-means cells); a query scores the codes of
the `nprobe` nearest cells only. At m = 32 that is about 40 bytes a paragraph (85 MB for
kowiki), which also fits what a lent GPU machine can send back (files of at most 16 MiB: the
index is saved in parts of `part_mib`).

The index is faiss's own serialisation (plain bytes, no pickle), saved as uint8 .npy parts.
faiss is imported only here, when an index is built or loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.base import Hit
from korqa.retrieval.dense import QUERY_PREFIX, DenseRetriever

if TYPE_CHECKING:
    import faiss

PART_PREFIX = "ivfpq."
MIN_POINTS_PER_CELL = 39  # faiss's own minimum for k-means training


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ImportError("the compressed dense retriever needs faiss: "
                          "pip install -c constraints.txt faiss-cpu") from None
    return faiss


class CompressedDenseRetriever(DenseRetriever):
    """`DenseRetriever`'s vectors in a faiss IVF-PQ index (inner product = cosine).

    nlist/m/nbits/nprobe: faiss's IVF-PQ parameters (module docstring). A corpus too small for
    them trains fewer cells and fewer bits (k-means needs 39 points a cell, PQ 2^nbits points),
    which `params()` then records.
    """

    kind = "dense-ivfpq"

    def __init__(
        self,
        encoder: str | Path,
        nlist: int = 4096,
        m: int = 32,
        nbits: int = 8,
        nprobe: int = 64,
        train_size: int = 200_000,
        part_mib: float = 15.0,
        **dense: Any,
    ) -> None:
        super().__init__(encoder, **dense)
        self.nlist, self.m, self.nbits, self.nprobe = nlist, m, nbits, nprobe
        self.train_size = train_size
        self.part_mib = part_mib
        self.ann: faiss.IndexIVFPQ | None = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "nlist": self.nlist, "m": self.m, "nbits": self.nbits,
                "nprobe": self.nprobe, "train_size": self.train_size,
                "part_mib": self.part_mib}

    def index(
        self, paragraphs: Iterable[Paragraph], total: int | None = None, progress: bool = True
    ) -> None:
        super().index(paragraphs, total=total, progress=progress)
        self.compress(self.embeddings)
        self.embeddings = np.zeros((0, self.embeddings.shape[1]), dtype=np.float32)

    def compress(self, vectors: np.ndarray, seed: int = 0) -> None:
        """Train the coarse cells and the PQ codebooks on (a sample of) `vectors`, then add
        them all: row i of `vectors` becomes faiss id i, i.e. `paragraph_ids[i]`."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        count, dim = vectors.shape
        if dim % self.m:
            raise ValueError(f"dense-ivfpq: m={self.m} must divide the vector size {dim}")
        self.nlist = max(1, min(self.nlist, count // MIN_POINTS_PER_CELL))
        self.nbits = max(1, min(self.nbits, int(math.log2(max(2, count)))))
        sample = vectors
        if count > self.train_size:
            rows = np.random.default_rng(seed).choice(count, self.train_size, replace=False)
            sample = vectors[np.sort(rows)]
        quantizer = faiss.IndexFlatIP(dim)
        ann = faiss.IndexIVFPQ(quantizer, dim, self.nlist, self.m, self.nbits,
                               faiss.METRIC_INNER_PRODUCT)
        ann.cp.seed = seed
        ann.pq.cp.seed = seed
        ann.train(sample)
        ann.add(vectors)
        ann.nprobe = self.nprobe
        self.ann = ann

    def retrieve_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        if not queries:
            return []
        if self.ann is None:
            raise ValueError("dense-ivfpq: nothing indexed")
        vectors = self.encode([QUERY_PREFIX + q for q in queries], self.query_max_length)
        self.ann.nprobe = self.nprobe
        scores, rows = self.ann.search(vectors, k)
        return [self._hits(r[r >= 0], s[r >= 0]) for r, s in zip(rows, scores, strict=True)]

    # ---- persistence --------------------------------------------------------------------

    def _save_files(self, directory: Path) -> list[str]:
        if self.ann is None:
            raise ValueError("dense-ivfpq: nothing indexed, nothing to save")
        data = _faiss().serialize_index(self.ann)  # a uint8 array
        step = int(self.part_mib * 2**20) - 128  # room for the .npy header
        files = [f"{PART_PREFIX}{i:03d}.npy" for i in range(math.ceil(len(data) / step))]
        for i, name in enumerate(files):
            np.save(directory / name, data[i * step:(i + 1) * step], allow_pickle=False)
        return [*files, *self._save_encoder(directory)]

    @classmethod
    def _load_files(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> Self:
        retriever = cls(**manifest["params"])
        retriever._check_encoder(directory)
        parts = sorted(directory.glob(f"{PART_PREFIX}*.npy"))
        if not parts:
            raise FileNotFoundError(f"{directory}/{PART_PREFIX}000.npy: the compressed vectors "
                                    "are missing: rebuild the index")
        data = np.concatenate([np.load(p, allow_pickle=False) for p in parts])
        try:
            retriever.ann = _faiss().deserialize_index(data)
        except RuntimeError as error:
            raise ValueError(f"{directory}/{PART_PREFIX}*.npy: not a faiss index "
                             f"({str(error).splitlines()[0]}): rebuild the index") from None
        retriever.ann.nprobe = retriever.nprobe
        return retriever

    def _row_count(self) -> int:
        return 0 if self.ann is None else int(self.ann.ntotal)
