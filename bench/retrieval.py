"""Recall@1/5/10/20 and per-query latency of every retriever on KorQuAD dev, in one run.

The corpus is all of KorQuAD dev's distinct contexts; every question is retrieved on its own.
Recall is given on all questions, on the tuning questions (articles not ≡ 4 mod 5) and on the
test questions (≡ 4 mod 5). Dense retrievers are included when the e5 encoder is found.

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
from korqa.retrieval.evaluate import in_split, load_questions, rank_questions

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
DEFAULT_ENCODER = Path("/work/models_tmp/e5-ko-fp32")
KS = (1, 5, 10, 20)


def retrievers(encoder: Path | None) -> dict[str, Retriever]:
    lineup: dict[str, Retriever] = {
        # The seed's ContextFinder: character bigrams inside words, no title, no morphemes.
        "tfidf char-bigram (seed)": TfidfRetriever(TermConfig(ngrams=(2,))),
        "tfidf (tuned)": make_retriever("tfidf"),
        "bm25 char 1-2 grams": BM25Retriever(TermConfig(ngrams=(1, 2))),
        "bm25 (tuned, default)": make_retriever("bm25"),
        "hybrid bm25+tfidf rrf": make_retriever("hybrid", fusion="rrf", weights=(3, 1),
                                                rrf_k=5),
        "hybrid bm25+tfidf weighted": make_retriever("hybrid"),
    }
    if encoder is not None:
        lineup["dense e5"] = make_retriever("dense", encoder)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--encoder", type=Path, help=f"e5 directory (default {DEFAULT_ENCODER} "
                                                     "when it exists)")
    parser.add_argument("--no-dense", action="store_true")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these retrievers")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    encoder = args.encoder
    if encoder is None and not args.no_dense and (DEFAULT_ENCODER / "config.json").exists():
        encoder = DEFAULT_ENCODER
    if args.no_dense:
        encoder = None

    questions = load_questions(args.data, "all")
    is_test = [in_split(q.article_index, "test") for q in questions]
    is_tuning = [not t for t in is_test]
    lineup = retrievers(encoder)
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
        built: set[int] = set()
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
            ranking = rank_questions(retriever, store, questions, max(KS), rule="context")
            row = {"retriever": name, "index_s": round(index_s, 2),
                   "ms_per_query": round(float(ranking.latencies_ms.mean()), 2)}
            row.update({f"recall@{k}": round(ranking.recall(k), 4) for k in KS})
            row.update({f"tuning recall@{k}": round(ranking.recall(k, is_tuning), 4)
                        for k in (1, 5)})
            row.update({f"test recall@{k}": round(ranking.recall(k, is_test), 4) for k in (1, 5)})
            rows.append(row)
            print(f"  {name}: {row}", file=sys.stderr)

    header = ("| retriever | R@1 | R@5 | R@10 | R@20 | tuning R@1 / R@5 | test R@1 / R@5 "
              "| ms/query | index s |")
    print(f"\nKorQuAD dev, {len(questions)} questions, corpus = its {n_paragraphs} contexts\n")
    print(header)
    print("|---" * 9 + "|")
    for row in rows:
        print(f"| {row['retriever']} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in KS)
              + f" | {row['tuning recall@1']:.4f} / {row['tuning recall@5']:.4f}"
              + f" | {row['test recall@1']:.4f} / {row['test recall@5']:.4f}"
              + f" | {row['ms_per_query']:.2f} | {row['index_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
