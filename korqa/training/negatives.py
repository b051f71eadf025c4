"""Unanswerable training questions, SQuAD 2.0 style, so the reader learns to say none.

A KorQuAD question is paired with the paragraphs of *other* articles that BM25 ranks highest
for it (the paragraphs a chitchat with that index would read when the question's own article is
missing), and small-talk questions with the paragraph BM25 ranks first for them. Each pair is
written as `is_impossible`, so `korqa train --extra-data` trains its windows towards the null
span ([CLS]), as windows without the answer already are.

Paragraphs come from the questions' own split only: train-fold questions read train-fold
paragraphs, so no validation or test paragraph is ever trained on. Small-talk rows follow
`korqa evaluate-open`'s rule (rows ≡ 4 mod 5 are test questions) and leave out the rows its
validation set asks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korqa.corpus.formats import SquadExample, read_squad, read_squad_json, write_json
from korqa.corpus.paragraph import Paragraph
from korqa.splits import TRAINING_SPLITS, select_split

NEGATIVES_VERSION = "korqa-negatives/1"


@dataclass
class NegativesConfig:
    """What `korqa negatives` writes; the "help" metadata is its `--help` (korqa.cli_options)."""

    data: str = field(metadata={"help": "KorQuAD/SQuAD JSON the questions and paragraphs come from",
                                "metavar": "FILE"})
    out: str = field(metadata={"help": "SQuAD 2.0 JSON to write (.json.gz ok)",
                               "metavar": "FILE"})
    split: str = field(default="train", metadata={
        "help": "whose questions and paragraphs", "choices": TRAINING_SPLITS})
    per_question: int = field(default=1, metadata={
        "help": "other-article paragraphs per question (the highest BM25 ranks)", "metavar": "N"})
    chitchat: str | None = field(default=None, metadata={
        "help": "ChatbotData-style CSV of small talk to pair with paragraphs too",
        "metavar": "FILE"})
    chitchat_count: int = field(default=1000, metadata={
        "help": "small-talk questions drawn (seeded)", "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "random seed"})


def other_article_paragraphs(examples: Sequence[SquadExample], per_question: int,
                             search: _ParagraphSearch | None = None,
                             search_depth: int = 50) -> list[list[Paragraph]]:
    """For each example, the `per_question` paragraphs of other articles among `examples`'
    paragraphs that BM25 ranks highest for its question (fewer when fewer share a term);
    `search` is BM25 over those paragraphs when the caller has it already."""
    search = search or _ParagraphSearch(examples)
    ranked = search.search([e.question for e in examples], search_depth)
    return [[p for p in hits if p.title != example.title][:per_question]
            for example, hits in zip(examples, ranked, strict=True)]


def negative_dataset(examples: Sequence[SquadExample], per_question: int = 1,
                     small_talk: Sequence[str] = (), seed: int = 0) -> dict[str, Any]:
    """A SQuAD 2.0 object: every question of `examples` over its `other_article_paragraphs`,
    and each `small_talk` question over the paragraph BM25 ranks first for it (a random one
    when none shares a term), all unanswerable; articles keep their paragraphs' titles."""
    rng = random.Random(seed)
    search = _ParagraphSearch(examples)
    pairs: list[tuple[str, str, Paragraph]] = []
    for example, others in zip(examples, other_article_paragraphs(examples, per_question, search),
                               strict=True):
        pairs += [(f"negative-{example.qid}-{n}", example.question, paragraph)
                  for n, paragraph in enumerate(others)]
    for n, (question, hits) in enumerate(zip(small_talk, search.search(list(small_talk), 1),
                                             strict=True)):
        pairs.append((f"negative-smalltalk-{n}", question,
                      hits[0] if hits else rng.choice(search.paragraphs)))
    articles: dict[str, dict[str, Any]] = {}
    contexts: dict[str, dict[str, Any]] = {}
    for qid, question, paragraph in pairs:
        article = articles.setdefault(paragraph.title, {"title": paragraph.title,
                                                        "paragraphs": []})
        if paragraph.id not in contexts:
            contexts[paragraph.id] = {"context": paragraph.text, "qas": []}
            article["paragraphs"].append(contexts[paragraph.id])
        contexts[paragraph.id]["qas"].append(
            {"id": qid, "question": question, "answers": [], "is_impossible": True})
    return {"version": NEGATIVES_VERSION, "data": list(articles.values())}


def training_small_talk(path: str | Path, data: str | Path, count: int, seed: int) -> list[str]:
    """`count` small-talk questions (seeded) from rows that are neither test questions nor
    asked by `korqa calibrate-confidence`'s validation set over `data`."""
    from korqa.faq import load_faq
    from korqa.open_sets import build_open_sets
    from korqa.splits import is_test_article

    asked = {q.question for q in build_open_sets(data, path, "validation") if q.kind == "offtopic"}
    rows = [entry for entry in load_faq(path) if not is_test_article(entry.id)]
    questions = list(dict.fromkeys(e.question for e in rows if e.question not in asked))
    return random.Random(seed).sample(questions, min(count, len(questions)))


def write_negatives(config: NegativesConfig) -> dict[str, Any]:
    """Write `config.out`, read it back as any SQuAD file is read, and count what it holds."""
    if config.per_question < 1:
        raise ValueError(f"per_question must be at least 1, got {config.per_question}")
    examples = select_split(read_squad(config.data), config.split)
    small_talk = (training_small_talk(config.chitchat, config.data, config.chitchat_count,
                                      config.seed) if config.chitchat else [])
    dataset = negative_dataset(examples, config.per_question, small_talk, config.seed)
    write_json(dataset, config.out)
    count = len(read_squad_json(dataset, config.out))
    return {"out": config.out, "questions": count, "small_talk": len(small_talk),
            "articles": len(dataset["data"])}


class _ParagraphSearch:
    """BM25 over the distinct paragraphs of some examples, titled by their articles."""

    def __init__(self, examples: Sequence[SquadExample]) -> None:
        from korqa.retrieval.bm25 import BM25Retriever

        seen: dict[str, Paragraph] = {}
        for example in examples:
            if example.context not in seen:
                seen[example.context] = Paragraph(f"p{len(seen)}", example.title,
                                                  example.context, example.title)
        self.paragraphs = list(seen.values())
        self._by_id = {paragraph.id: paragraph for paragraph in self.paragraphs}
        self._bm25 = BM25Retriever()
        self._bm25.index(self.paragraphs, progress=False)

    def search(self, queries: list[str], k: int) -> list[list[Paragraph]]:
        return [[self._by_id[pid] for pid, _ in hits]
                for hits in self._bm25.retrieve_many(queries, k)]
