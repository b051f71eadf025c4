"""The shipped compact retriever encoder against the untrimmed e5 it was made from, in one run.

    korqa import-e5 --out E5FULL --dtype int8           # every one of e5's 250,002 pieces
    python3 bench/retriever_encoder.py --peer E5FULL [--encoder models/korqa-retriever]

Both encoders run as korqa runs them (ONNX Runtime, the graph beside the weights). On the
corpus of KorQuAD dev's 961 distinct paragraphs and all 5,774 questions:
- size: model.safetensors and the vocabulary;
- build speed: the paragraphs encoded in chunks of 64, the two encoders taking turns chunk by
  chunk, reported as seconds per 1,000 paragraphs;
- query encoding: `--sample` questions encoded one at a time as a question is (p50, p90 ms),
  taking turns;
- encodings: the largest difference between the two encoders' vectors of the same text (the
  trimmed vocabulary keeps every piece of the texts it was trimmed on, so they should match);
- recall@1/5 of dense retrieval and of the hybrid (BM25 + dense, korqa's preset), all
  questions and the test split (articles ≡ 4 mod 5) alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from korqa.corpus import ParagraphStore, load_corpus
from korqa.retrieval import HybridRetriever, make_retriever
from korqa.retrieval.base import index_text
from korqa.retrieval.dense import PASSAGE_PREFIX, QUERY_PREFIX, DenseRetriever
from korqa.retrieval.evaluate import GoldJudge, load_questions
from korqa.retrieval.registry import REGISTRY
from korqa.splits import is_test_article

REPO = Path(__file__).resolve().parents[1]
KORQUAD = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
CHUNK = 64


def recall(ranks: list[int | None], k: int, select: list[bool] | None = None) -> float:
    chosen = ranks if select is None else [r for r, s in zip(ranks, select, strict=True) if s]
    return round(sum(r is not None and r <= k for r in chosen) / len(chosen), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, default=REPO / "models" / "korqa-retriever")
    parser.add_argument("--peer", type=Path, required=True, help="the untrimmed e5 directory")
    parser.add_argument("--data", type=Path, default=KORQUAD)
    parser.add_argument("--sample", type=int, default=200, help="questions timed one by one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    encoders = {"shipped": DenseRetriever(args.encoder), "untrimmed": DenseRetriever(args.peer)}
    report: dict = {name: {"weights_mb": round((r.encoder_dir / "model.safetensors").stat()
                                               .st_size / 1e6, 1),
                           "vocabulary": json.loads((r.encoder_dir / "config.json").read_text(
                               encoding="utf-8"))["vocab_size"]}
                    for name, r in encoders.items()}
    questions = load_questions(args.data, "all")
    is_test = [is_test_article(q.article_index) for q in questions]
    with tempfile.TemporaryDirectory() as scratch, \
            ParagraphStore(Path(scratch) / "paragraphs.sqlite") as store:
        store.add(load_corpus([args.data]))
        paragraphs = list(store)
        texts = [PASSAGE_PREFIX + index_text(p, False) for p in paragraphs]
        for retriever in encoders.values():
            retriever.encode(texts[:2], retriever.max_length)  # sessions loaded, not timed
        vectors: dict[str, list[np.ndarray]] = {name: [] for name in encoders}
        seconds = dict.fromkeys(encoders, 0.0)
        for number, first in enumerate(range(0, len(texts), CHUNK)):
            order = list(encoders) if number % 2 == 0 else list(encoders)[::-1]
            for name in order:
                retriever = encoders[name]
                start = time.perf_counter()
                vectors[name].append(retriever.encode(texts[first:first + CHUNK],
                                                      retriever.max_length))
                seconds[name] += time.perf_counter() - start
        passages = {name: np.concatenate(parts) for name, parts in vectors.items()}
        for name, retriever in encoders.items():
            retriever.embeddings = passages[name]
            retriever.paragraph_ids = [p.id for p in paragraphs]
            report[name]["s_per_1000_paragraphs"] = round(seconds[name] * 1000 / len(texts), 1)

        step = max(1, len(questions) // args.sample)
        latencies: dict[str, list[float]] = {name: [] for name in encoders}
        for number, question in enumerate(questions[::step][:args.sample]):
            order = list(encoders) if number % 2 == 0 else list(encoders)[::-1]
            for name in order:
                retriever = encoders[name]
                start = time.perf_counter()
                retriever.encode([QUERY_PREFIX + question.question], retriever.query_max_length)
                latencies[name].append((time.perf_counter() - start) * 1000)
        query_vectors = {}
        for name, retriever in encoders.items():
            ms = sorted(latencies[name])
            report[name]["query_ms_p50"] = round(statistics.median(ms), 1)
            report[name]["query_ms_p90"] = round(ms[int(0.9 * (len(ms) - 1))], 1)
            query_vectors[name] = retriever.encode([QUERY_PREFIX + q.question for q in questions],
                                                   retriever.query_max_length)
        report["max_abs_diff"] = {
            "passages": float(np.abs(passages["shipped"] - passages["untrimmed"]).max()),
            "questions": float(np.abs(query_vectors["shipped"] - query_vectors["untrimmed"])
                               .max())}

        for name, retriever in encoders.items():  # retrieval below reuses these vectors
            known = dict(zip((QUERY_PREFIX + q.question for q in questions),
                             query_vectors[name], strict=True))
            retriever.encode = lambda texts, *_, known=known, **__: np.stack(
                [known[text] for text in texts])
        judge = GoldJudge(store, "context")
        bm25 = make_retriever("bm25")
        bm25.index(store, total=len(store), progress=False)
        for name, retriever in encoders.items():
            hybrid = HybridRetriever([bm25, retriever], **REGISTRY["hybrid"].preset)
            hybrid.paragraph_ids = hybrid._shared_ids()
            for kind, searcher in (("dense", retriever), ("hybrid", hybrid)):
                hits = []
                for first in range(0, len(questions), 256):
                    batch = questions[first:first + 256]
                    hits.extend(searcher.retrieve_many([q.question for q in batch], 20))
                ranks = [judge.first_hit_rank(q, h) for q, h in zip(questions, hits, strict=True)]
                report[name][kind] = {f"recall@{k}": recall(ranks, k) for k in (1, 5)}
                report[name][kind].update({f"test recall@{k}": recall(ranks, k, is_test)
                                           for k in (1, 5)})
    print(json.dumps(report, indent=1, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
