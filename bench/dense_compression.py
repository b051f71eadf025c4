"""What IVF-PQ compression of e5 vectors costs in recall, against exact search, on a slice.

    python3 bench/dense_compression.py --encoder E5_DIR --distractors 6000 --cache runs/dc

The slice: KorQuAD dev's paragraphs (the gold ones) plus `--distractors` random paragraphs of
one kowiki shard. Questions: every non-test KorQuAD question (the context rule: a hit is its own
paragraph). The peer is exact inner-product search over the same float32 vectors; each row
is faiss IVF-PQ (`korqa.retrieval.dense_pq`) at one setting, with its bytes per paragraph and
that size projected to kowiki's 2,131,841 paragraphs. Vectors are cached in `--cache`
(encoding is the slow part on a CPU).

Codebooks trained on a few thousand vectors are worse than kowiki's (trained on 200,000), so
the loss measured here is an upper bound for the same m.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from korqa.corpus.formats import load_corpus
from korqa.retrieval.dense import PASSAGE_PREFIX, QUERY_PREFIX, DenseRetriever
from korqa.retrieval.dense_pq import CompressedDenseRetriever
from korqa.retrieval.evaluate import load_questions

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KOWIKI_PARAGRAPHS = 2_131_841


def slice_paragraphs(data: Path, shard: Path, distractors: int, seed: int) -> list[str]:
    gold = [p.text for p in load_corpus([data])]
    pool = [p.text for p in load_corpus([shard])]
    return gold + random.Random(seed).sample(pool, distractors)


def cached(path: Path, make) -> np.ndarray:
    if path.exists():
        return np.load(path, allow_pickle=False)
    vectors = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors, allow_pickle=False)
    return vectors


def recalls(ranked: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    found = ranked == gold[:, None]
    return {f"recall@{k}": round(float(found[:, :k].any(axis=1).mean()), 4) for k in (1, 5, 20)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, help="an imported e5 (korqa import-e5)")
    parser.add_argument("--data", default=str(ROOT / "korquad" / "KorQuAD_v1.0_dev.json"))
    parser.add_argument("--shard", default=str(ROOT / "kowiki" / "kowiki_03.jsonl.xz"))
    parser.add_argument("--distractors", type=int, default=1500)
    parser.add_argument("--questions", type=int, default=1000, help="non-test (random)")
    parser.add_argument("--max-length", type=int, default=128,
                        help="passage tokens (e5 reads 512; fewer keeps a CPU run short)")
    parser.add_argument("--cache", required=True, help="folder for the encoded vectors")
    parser.add_argument("--m", type=int, nargs="+", default=[16, 32, 48])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    texts = slice_paragraphs(Path(args.data), Path(args.shard), args.distractors, args.seed)
    questions = load_questions(args.data, "validation")
    questions = random.Random(args.seed).sample(questions, min(args.questions, len(questions)))
    position = {text: i for i, text in reversed(list(enumerate(texts)))}
    gold = np.array([position[q.context] for q in questions])
    encoder = DenseRetriever(args.encoder, batch_size=32)
    cache = Path(args.cache)
    start = time.perf_counter()
    name = f"{args.distractors}-{args.max_length}-{args.questions}-{args.seed}"
    passages = cached(cache / f"passages-{name}.npy", lambda: encoder.encode(
        [PASSAGE_PREFIX + t for t in texts], args.max_length, progress=sys.stderr.isatty()))
    queries = cached(cache / f"queries-{name}.npy", lambda: encoder.encode(
        [QUERY_PREFIX + q.question for q in questions], 64))
    out: dict = {"paragraphs": len(texts), "questions": len(questions),
                 "encode_s": round(time.perf_counter() - start, 1)}
    exact = np.argsort(-(queries @ passages.T), axis=1)[:, :20]
    out["exact (float32, 1,536 bytes a paragraph)"] = recalls(exact, gold)
    for m in args.m:
        retriever = CompressedDenseRetriever(args.encoder, nlist=4096, m=m)
        retriever.compress(passages, seed=args.seed)
        # Codes and ids only: the coarse centroids and PQ codebooks are a fixed few MB.
        fixed = (retriever.ann.nlist + 2**retriever.nbits) * passages.shape[1] * 4
        per_paragraph = (len(faiss.serialize_index(retriever.ann)) - fixed) / len(texts)
        for nprobe in args.nprobe:
            retriever.ann.nprobe = nprobe
            _, ranked = retriever.ann.search(queries, 20)
            out[f"ivfpq nlist {retriever.nlist} m {m} nprobe {nprobe}"] = {
                **recalls(ranked, gold), "bytes_a_paragraph": round(per_paragraph, 1),
                "kowiki_mb": round(per_paragraph * KOWIKI_PARAGRAPHS / 2**20, 1)}
    text = json.dumps(out, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
