"""Recall@1/5/10/20 and per-query latency of every retriever on KorQuAD dev, in one run.

The corpus is all of KorQuAD dev's distinct contexts. Recall comes from batched retrieval
(`retrieve_many`, the same rankings as one query at a time) of every question, on all questions,
the tuning questions (articles not ≡ 4 mod 5) and the test questions (≡ 4 mod 5). Latency is
the mean wall (and CPU) time of single `retrieve` calls over an evenly spaced sample of
questions, the cost of one user query. Dense retrievers are included when the e5 encoder is
found; encoding the passages takes minutes on a CPU, so `--dense-index DIR` may reuse a saved
dense index.

    python bench/retrieval.py [--data KorQuAD_v1.0_dev.json] [--encoder DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from korqa.corpus import ParagraphStore, load_corpus
from korqa.retrieval import (
    BM25Retriever,
    HybridRetriever,
    Retriever,
    TermConfig,
    TfidfRetriever,
    make_retriever,
)
from korqa.retrieval.dense import DenseRetriever
from korqa.retrieval.evaluate import GoldJudge, load_questions
from korqa.retrieval.registry import TFIDF_FUSION
from korqa.splits import is_test_article

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
DEFAULT_ENCODER = Path("/work/models_tmp/e5-ko-fp32")
KS = (1, 5, 10, 20)


def retrievers(encoder: Path | None, dense_index: Path | None = None) -> dict[str, Retriever]:
    lineup: dict[str, Retriever] = {
        # The seed's ContextFinder: character bigrams inside words, no title, no morphemes.
        "tfidf char-bigram (seed)": TfidfRetriever(TermConfig(ngrams=(2,))),
        "tfidf (tuned)": make_retriever("tfidf"),
        "bm25 char 1-2 grams": BM25Retriever(TermConfig(ngrams=(1, 2))),
        "bm25 (tuned, default)": make_retriever("bm25"),
        "hybrid bm25+tfidf rrf": HybridRetriever(
            [make_retriever("bm25"), make_retriever("tfidf")],
            **{**TFIDF_FUSION, "fusion": "rrf", "weights": (3, 1), "rrf_k": 5}),
        "hybrid bm25+tfidf weighted": HybridRetriever(
            [make_retriever("bm25"), make_retriever("tfidf")], **TFIDF_FUSION),
    }
    if encoder is not None:
        lineup["dense e5"] = (DenseRetriever.load(dense_index) if dense_index
                              else make_retriever("dense", encoder))
        lineup["hybrid bm25+dense rrf"] = make_retriever("hybrid", encoder, fusion="rrf",
                                                         weights=(3, 1), rrf_k=5)
        lineup["hybrid bm25+dense weighted"] = make_retriever("hybrid", encoder)
    return lineup


def share_components(lineup: dict[str, Retriever]) -> None:
    """Hybrids reuse the already-built default components instead of indexing them again."""
    by_params = {}
    for retriever in lineup.values():
        if not isinstance(retriever, HybridRetriever):
            by_params[(retriever.kind, json.dumps(retriever.params(), sort_keys=True))] = retriever
    for retriever in lineup.values():
        if isinstance(retriever, HybridRetriever):
            retriever.components = [
                by_params.get((c.kind, json.dumps(c.params(), sort_keys=True)), c)
                for c in retriever.components
            ]


def recall(ranks: list[int | None], k: int, select: list[bool] | None = None) -> float:
    chosen = ranks if select is None else [r for r, s in zip(ranks, select, strict=True) if s]
    return round(sum(r is not None and r <= k for r in chosen) / len(chosen), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--encoder", type=Path, help=f"e5 directory (default {DEFAULT_ENCODER} "
                                                     "when it exists)")
    parser.add_argument("--no-dense", action="store_true")
    parser.add_argument("--dense-index", type=Path,
                        help="a saved dense retriever over the same corpus, instead of encoding")
    parser.add_argument("--latency-sample", type=int, default=300, metavar="N",
                        help="questions timed one by one (default 300)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these retrievers")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    encoder = args.encoder
    if encoder is None and not args.no_dense and (DEFAULT_ENCODER / "config.json").exists():
        encoder = DEFAULT_ENCODER
    if args.no_dense:
        encoder = None

    questions = load_questions(args.data, "all")
    is_test = [is_test_article(q.article_index) for q in questions]
    is_tuning = [not t for t in is_test]
    if args.dense_index is not None and encoder is None:
        encoder = Path(DenseRetriever.load(args.dense_index).encoder_dir)
    lineup = retrievers(encoder, args.dense_index)
    if args.only:
        lineup = {name: r for name, r in lineup.items() if name in args.only}
    share_components(lineup)
    rows = []
    with tempfile.TemporaryDirectory() as scratch, \
            ParagraphStore(Path(scratch) / "paragraphs.sqlite") as store:
        store.add(load_corpus([args.data]))
        n_paragraphs = len(store)
        print(f"corpus: {len(store)} paragraphs; questions: {len(questions)} "
              f"({sum(is_tuning)} tuning, {sum(is_test)} test); encoder: {encoder}",
              file=sys.stderr)
        judge = GoldJudge(store, "context")
        step = max(1, len(questions) // args.latency_sample)
        sample = questions[::step][:args.latency_sample]
        store_ids = store.ids()
        # A retriever loaded from disk (--dense-index) is already built over the same corpus.
        built = {id(r) for r in lineup.values()
                 if not isinstance(r, HybridRetriever) and r.paragraph_ids}
        for retriever in lineup.values():
            if id(retriever) in built and retriever.paragraph_ids != store_ids:
                raise SystemExit(f"{args.dense_index}: indexes other paragraphs than {args.data}")
        for name, retriever in lineup.items():
            start = time.perf_counter()
            parts = retriever.components if isinstance(retriever, HybridRetriever) else []
            for part in parts:
                if id(part) not in built:
                    part.index(store, total=len(store), progress=False)
                    built.add(id(part))
            if parts:
                retriever.paragraph_ids = retriever._shared_ids()
            elif id(retriever) not in built:
                retriever.index(store, total=len(store), progress=False)
                built.add(id(retriever))
            index_s = time.perf_counter() - start
            hits = []
            for first in range(0, len(questions), 256):
                batch = questions[first:first + 256]
                hits.extend(retriever.retrieve_many([q.question for q in batch], max(KS)))
            ranks = [judge.first_hit_rank(q, h) for q, h in zip(questions, hits, strict=True)]
            start, start_cpu = time.perf_counter(), time.process_time()
            for question in sample:
                retriever.retrieve(question.question, max(KS))
            ms = (time.perf_counter() - start) * 1000 / len(sample)
            cpu_ms = (time.process_time() - start_cpu) * 1000 / len(sample)
            row = {"retriever": name, "index_s": round(index_s, 2), "ms_per_query": round(ms, 2),
                   "cpu_ms_per_query": round(cpu_ms, 2)}
            row.update({f"recall@{k}": recall(ranks, k) for k in KS})
            row.update({f"tuning recall@{k}": recall(ranks, k, is_tuning) for k in (1, 5)})
            row.update({f"test recall@{k}": recall(ranks, k, is_test) for k in (1, 5)})
            rows.append(row)
            print(f"  {name}: {row}", file=sys.stderr)

    header = ("| retriever | R@1 | R@5 | R@10 | R@20 | tuning R@1 / R@5 | test R@1 / R@5 "
              "| ms/query (CPU ms) | index s |")
    print(f"\nKorQuAD dev, {len(questions)} questions, corpus = its {n_paragraphs} contexts\n")
    print(header)
    print("|---" * 9 + "|")
    for row in rows:
        print(f"| {row['retriever']} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in KS)
              + f" | {row['tuning recall@1']:.4f} / {row['tuning recall@5']:.4f}"
              + f" | {row['test recall@1']:.4f} / {row['test recall@5']:.4f}"
              + f" | {row['ms_per_query']:.2f} ({row['cpu_ms_per_query']:.2f})"
              + f" | {row['index_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
