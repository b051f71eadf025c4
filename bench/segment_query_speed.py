"""Search time of a saved segmented BM25 index against bm25s's whole-index scoring (the engine
before segments) built in the same run from the same terms of the same store, on an index of
any size (e.g. one kowiki shard): the scale point that bench/segment_engines.py's 961
paragraphs cannot show. Queries are KorQuAD dev questions (every `--step`-th); terms are
analysed once; both must return the same top 20.

    python bench/segment_query_speed.py --index DIR [--step 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bm25s
import numpy as np

from korqa.corpus.store import ParagraphStore
from korqa.retrieval.base import stream_texts
from korqa.retrieval.bm25 import bm25_weights
from korqa.retrieval.evaluate import load_questions
from korqa.retrieval.registry import load_retriever
from korqa.retrieval.sparse import count_matrix, top_k

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--step", type=int, default=40)
    args = parser.parse_args(argv)

    segmented = load_retriever(args.index / "retriever", verify=False)
    questions = load_questions(args.data, "all")[::args.step]
    terms = segmented.analyzer.many([q.question for q in questions])
    with ParagraphStore(args.index / "paragraphs.sqlite", readonly=True) as store:
        ids: list[str] = []
        counts, vocabulary = count_matrix(stream_texts(store, ids, segmented.with_title),
                                          segmented.analyzer, progress=False)
    weights = bm25_weights(counts, segmented.k1, segmented.b)
    del counts
    whole = bm25s.BM25(k1=segmented.k1, b=segmented.b, method="lucene")
    whole.scores = {"data": weights.data, "indices": weights.indices,
                    "indptr": weights.indptr, "num_docs": len(ids)}
    whole.vocab_dict = vocabulary
    whole.nonoccurrence_array = None

    def bm25s_top(query: list[str]) -> list[str]:
        term_ids = [vocabulary[t] for t in query if t in vocabulary]
        if not term_ids:
            return []
        scores = whole.get_scores_from_ids(term_ids)
        rows = np.flatnonzero(scores > 0)
        return [ids[r] for r in top_k(scores[rows], 20, rows)[0].tolist()]

    def segments_top(query: list[str]) -> list[str]:
        return [pid for pid, _ in segmented._retrieve(query, 20)]

    same = sum(bm25s_top(q) == segments_top(q) for q in terms)
    print(f"{args.index}: {len(ids)} paragraphs, {len(segmented.segments)} segment(s); "
          f"{len(terms)} questions, same top 20 for {same}")
    cpu = {}
    for name, search in (("bm25s whole", bm25s_top), ("segments", segments_top)) * 2:
        search(terms[0])
        wall, start = time.perf_counter(), time.process_time()
        for query in terms:
            search(query)
        cpu[name] = (time.process_time() - start) * 1000 / len(terms)
        print(f"  {name}: {(time.perf_counter() - wall) * 1000 / len(terms):.1f} ms/query, "
              f"{cpu[name]:.1f} CPU ms")
    print(f"segments / bm25s (CPU, last round): {cpu['segments'] / cpu['bm25s whole']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
