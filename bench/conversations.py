"""Conversations over KorQuAD: follow-up F1 with context, without it, and fully specified.

    python3 bench/conversations.py --set dev                 # hand-written dev + rule chains
    python3 bench/conversations.py --set test                # the final number, once
    python3 bench/conversations.py --set dev --grid          # DOCUMENT_PRIOR × SHIFT_RATIO
    python3 bench/conversations.py --set dev --peer concat   # another resolver, same run

Paragraphs: every KorQuAD dev paragraph (961), BM25 (korqa's default index) built once into
the cache, as `bench/end_to_end.py` does. `--set dev` asks bench/conversations/dev.jsonl (hand
written over non-test articles) and the follow-up chains `rule_conversations` makes from the
non-test articles; `--set test` asks bench/conversations/test.jsonl (test articles only).

`--grid` refits the resolver's two knobs on the dev set: each pair re-asks every conversation,
the reader's reads cached across pairs (same question, same paragraphs, same spans).
`--peer concat` is the simplest resolver, for comparison: every follow-up is the previous
question and this one joined, retrieval and reader both reading that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from korqa.corpus.formats import read_squad
from korqa.evaluation import chat
from korqa.pipeline import PipelineConfig, QAPipeline, cached_index, load_reader, resolver
from korqa.pipeline import conversation as conversation_module
from korqa.retrieval.index import Index
from korqa.splits import is_test_article

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
SETS = ROOT / "bench" / "conversations"


def memoise_reads(pipeline: QAPipeline) -> None:
    """The reader's reads cached by (question, paragraphs, n_best): the grid asks the same
    resolved questions over the same paragraphs again and again."""
    reader = pipeline.reader
    read = reader.read
    cache: dict = {}

    def cached(question, texts, n_best=None, **kwargs):  # noqa: ANN001, ANN202
        key = (question, tuple(texts), n_best, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = read(question, texts, n_best=n_best, **kwargs)
        return cache[key]

    reader.read = cached


class ConcatResolver:
    """The peer: a follow-up is read as the previous question followed by this one."""

    def __enter__(self) -> None:
        self.resolve = conversation_module.resolve

        def concat(question, turns, search=None):  # noqa: ANN001, ANN202
            question = question.strip()
            if not turns:
                return conversation_module.Resolution(question, "standalone")
            return conversation_module.Resolution(f"{turns[-1].question} {question}",
                                                  "reference", turns[-1].document)

        conversation_module.resolve = concat

    def __exit__(self, *exc: object) -> None:
        conversation_module.resolve = self.resolve


def conversations_for(name: str, examples: list) -> list:
    path = SETS / f"{name}.jsonl"
    found = chat.load_conversations(path, examples)
    by_id = {e.qid: e for e in examples}
    # The split rule, checked: dev conversations never touch a test article, test ones only.
    for conv in found:
        for turn in conv.turns:
            if turn.qid is not None and is_test_article(by_id[turn.qid].article_index) \
                    != (name == "test"):
                raise SystemExit(f"{path}: {conv.id} names {turn.qid} of the wrong split")
    if name == "dev":
        found += chat.rule_conversations(examples, "train+validation")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["dev", "test"], default="dev")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="KorQuAD 1.0 dev JSON")
    parser.add_argument("--model", help="reader directory (default: korqa.paths)")
    parser.add_argument("--index", help="a `korqa index` dir over the same paragraphs")
    parser.add_argument("--limit", type=int, help="the first N conversations")
    parser.add_argument("--grid", action="store_true", help="tune DOCUMENT_PRIOR, SHIFT_RATIO")
    parser.add_argument("--peer", choices=["concat"], help="also run this resolver")
    parser.add_argument("--json", metavar="FILE", help="write every turn here")
    args = parser.parse_args()
    examples = read_squad(args.data)
    conversations = conversations_for(args.set, examples)[:args.limit]
    index = Index(args.index or cached_index([args.data], progress=sys.stderr.isatty()))
    pipeline = QAPipeline(index, load_reader(args.model, PipelineConfig()))
    print(f"{args.set}: {len(conversations)} conversations, "
          f"{sum(len(c.turns) for c in conversations)} turns", file=sys.stderr)
    if args.grid:
        memoise_reads(pipeline)
        rows = []
        for prior in (0.0, 0.25, 0.5, 1.0):
            for ratio in (0.3, 0.5, 0.7):
                conversation_module.DOCUMENT_PRIOR, resolver.SHIFT_RATIO = prior, ratio
                start = time.perf_counter()
                report = chat.evaluate_chat(pipeline, conversations)
                summary = report.summary()
                rows.append({"prior": prior, "shift_ratio": ratio,
                             "seconds": round(time.perf_counter() - start),
                             "follow_up_f1": report.rows["follow-ups"]["resolved"]["f1"],
                             "shift_f1": report.rows["shift"]["resolved"]["f1"],
                             "answerable_f1": report.rows["answerable"]["resolved"]["f1"],
                             **summary})
                print(json.dumps(rows[-1]), flush=True)
        return 0
    start = time.perf_counter()
    report = chat.evaluate_chat(pipeline, conversations, progress=sys.stderr.isatty())
    print(chat.format_chat_report(report))
    print(f"({time.perf_counter() - start:.0f} s)")
    # What resolving costs a question: the same typed questions, with context and alone (the
    # first time each is asked alone), in the same run.
    paired = [(r["seconds"]["resolved"], r["seconds"]["alone"]) for r in report.turns
              if r["seconds"]["alone"] is not None]
    with_context = statistics.median(p[0] for p in paired) * 1000
    alone = statistics.median(p[1] for p in paired) * 1000
    print(f"ms per question, median of {len(paired)}: with context {with_context:.0f}, "
          f"alone {alone:.0f} ({with_context / alone:.2f}×)")
    if args.peer == "concat":
        with ConcatResolver():
            peer = chat.evaluate_chat(pipeline, conversations, progress=sys.stderr.isatty())
        print("\npeer: previous question + this one")
        print(chat.format_chat_report(peer))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1),
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
