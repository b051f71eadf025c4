"""The IVF-PQ dense retriever: close to exact search, saved in parts, loaded back the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from korqa.corpus import Paragraph
from korqa.retrieval import load_retriever

pytest.importorskip("faiss")
from korqa.retrieval.dense_pq import CompressedDenseRetriever  # noqa: E402


def clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 centres: what sentence embeddings look like to k-means."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    vectors = centres[rng.integers(0, 40, count)] + 0.5 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def fake_encoder(tmp_path) -> str:
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"hidden_size": 32}), encoding="utf-8")
    return str(encoder)


def test_compressed_search_finds_most_of_the_exact_top_ten(tmp_path):
    vectors = clustered(4000, 32)
    retriever = CompressedDenseRetriever(fake_encoder(tmp_path), nlist=16, m=16, nprobe=4)
    retriever.compress(vectors)
    queries = clustered(50, 32, seed=1)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]

    def overlap(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found,
                                                                        strict=True)]))

    _, found = retriever.ann.search(queries, 10)
    assert overlap(found) >= 0.7
    # Probing every cell leaves only the PQ error: closer still, and the exact nearest
    # neighbour is always among the ten.
    retriever.ann.nprobe = 16
    _, everywhere = retriever.ann.search(queries, 10)
    assert overlap(everywhere) > overlap(found)
    assert all(a[0] in b for a, b in zip(exact, everywhere, strict=True))


def test_saved_in_parts_of_the_given_size_and_loaded_back_the_same(tmp_path):
    vectors = clustered(3000, 32)
    retriever = CompressedDenseRetriever(fake_encoder(tmp_path), nlist=8, m=8, nprobe=8,
                                         part_mib=0.02)
    retriever.compress(vectors)
    retriever.paragraph_ids = [f"p{i}" for i in range(len(vectors))]
    retriever.save(tmp_path / "index")
    parts = sorted((tmp_path / "index").glob("ivfpq.*.npy"))
    assert len(parts) > 1 and all(p.stat().st_size <= 0.02 * 2**20 for p in parts)
    loaded = load_retriever(tmp_path / "index")
    assert isinstance(loaded, CompressedDenseRetriever) and loaded.params() == retriever.params()
    queries = clustered(5, 32, seed=2)
    assert np.array_equal(loaded.ann.search(queries, 5)[1], retriever.ann.search(queries, 5)[1])
    # A lost part is named, not read as a shorter index.
    parts[-1].unlink()
    with pytest.raises((ValueError, FileNotFoundError), match="ivfpq"):
        load_retriever(tmp_path / "index", verify=False)


def test_a_small_corpus_trains_fewer_cells_and_bits(tmp_path):
    retriever = CompressedDenseRetriever(fake_encoder(tmp_path), nlist=4096, m=8, nbits=8)
    retriever.compress(clustered(100, 32))
    assert retriever.nlist == 2 and retriever.nbits == 6  # 100 // 39 cells, 2^6 ≤ 100 points
    assert retriever.ann.ntotal == 100
    with pytest.raises(ValueError, match="m=5 must divide"):
        CompressedDenseRetriever(retriever.encoder_dir, m=5).compress(clustered(100, 32))


def test_indexes_paragraphs_with_a_tiny_encoder_and_drops_the_float_vectors(tmp_path):
    from tiny import tiny_encoder

    syllables = "가나다라마바사아자차카타파하"
    texts = [f"문단 {i}번은 {syllables[i % 14]}로 시작한다" for i in range(120)]
    encoder = tiny_encoder(tmp_path / "encoder", texts, intermediate_size=32, max_positions=64)
    paragraphs = [Paragraph(f"t:{i}", "문단", text, str(i)) for i, text in enumerate(texts)]
    retriever = CompressedDenseRetriever(encoder, m=8, max_length=64, batch_size=32)
    retriever.index(paragraphs, progress=False)
    assert retriever.embeddings.size == 0 and retriever.ann.ntotal == 120
    assert retriever.nlist == 3 and retriever.nbits == 6
    hits = retriever.retrieve(texts[7], 5)
    assert len(hits) == 5 and {pid for pid, _ in hits} <= {p.id for p in paragraphs}
    retriever.save(tmp_path / "index")
    assert load_retriever(tmp_path / "index").retrieve(texts[7], 5) == hits
