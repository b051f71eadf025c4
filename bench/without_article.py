"""Is leaving an article out at search time the same as an index built without it?

    python3 bench/without_article.py --articles 3           # test articles 4, 9, 14

`korqa evaluate-open`'s unanswerable set asks each KorQuAD question over the dev paragraphs
minus its own article, by dropping that article's paragraphs from a longer result list
(`korqa.evaluation.open_domain.WithoutArticle`) instead of building one index per article.
The peer here is the real thing: for each of a few test articles, an index built from the dev
file without it. For every question of those articles it prints how often the top-3 paragraph
ids agree, in order and as a set, the largest relative difference of their BM25 scores, and
with --read, what matters: how often the pipeline (shipped reader and confidence) says "don't
know" over each, and how often the two decisions agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from korqa.corpus.formats import load_json, read_squad
from korqa.evaluation.open_domain import WithoutArticle, largest_article
from korqa.pipeline.sources import cached_index
from korqa.retrieval.index import Index, build_index
from korqa.splits import is_test_article

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "korquad" / \
    "KorQuAD_v1.0_dev.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--articles", type=int, default=3, help="test articles to rebuild for")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--read", action="store_true", help="also run the pipeline over both")
    args = parser.parse_args()
    reader = None
    if args.read:
        from korqa.pipeline import QAPipeline, load_reader

        reader = load_reader()
    dataset = load_json(args.data)
    examples = read_squad(args.data)
    full = Index(cached_index([args.data]))
    search = WithoutArticle(full, largest_article(full))
    chosen = [i for i in range(len(dataset["data"])) if is_test_article(i)][: args.articles]
    same = same_set = total = 0
    worst = 0.0
    refused = {"dropped": 0, "rebuilt": 0, "agree": 0}
    for article_index in chosen:
        title = dataset["data"][article_index]["title"]
        rest = dict(dataset, data=[a for i, a in enumerate(dataset["data"])
                                   if i != article_index])
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "without.json"
            path.write_text(json.dumps(rest, ensure_ascii=False), encoding="utf-8")
            build_index(Path(scratch) / "idx", [path], progress=False)
            with Index(Path(scratch) / "idx") as rebuilt:
                search.exclude_title = title
                for example in (e for e in examples if e.article_index == article_index):
                    ours = search.search(example.question, args.k)
                    peer = rebuilt.search(example.question, args.k)
                    total += 1
                    same += [p.id for p, _ in ours] == [p.id for p, _ in peer]
                    same_set += {p.id for p, _ in ours} == {p.id for p, _ in peer}
                    if reader is not None:
                        known = [not QAPipeline(where, reader).ask(example.question).known
                                 for where in (search, rebuilt)]
                        refused["dropped"] += known[0]
                        refused["rebuilt"] += known[1]
                        refused["agree"] += known[0] == known[1]
                    for (_, a), (_, b) in zip(ours, peer, strict=False):
                        worst = max(worst, abs(a - b) / max(abs(b), 1e-9))
    print(json.dumps({"articles": len(chosen), "questions": total,
                      "top_k_same_order": round(same / total, 4) if total else None,
                      "top_k_same_set": round(same_set / total, 4) if total else None,
                      "max_relative_score_difference": round(worst, 4),
                      **({f"dont_know_{name}": count for name, count in refused.items()}
                         if reader is not None else {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
