"""Retrieval recall@k of KorQuAD questions against an indexed corpus, with per-query latency.

A question is a hit at k when one of its gold paragraphs is among the top k. Gold is decided
by one of two rules:

  context       the corpus paragraphs whose text equals or contains the question's context
                (a KorQuAD-derived corpus, or text files that hold the contexts);
  title-answer  a retrieved paragraph of the question's article title whose text contains one
                of the gold answer texts (kowiki and other corpora from other dumps, whose
                paragraphs differ from KorQuAD's contexts). Titles are compared with
                underscores read as spaces: KorQuAD writes "알렉산더_헤이그", kowiki
                "알렉산더 헤이그".

`auto` picks `context` when the first question's context is found in the corpus, otherwise
`title-answer`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from korqa.corpus.formats import read_squad
from korqa.corpus.store import ParagraphStore
from korqa.corpus.text import TextReading
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.maintenance import INDEX_HELP, PROGRESS_HELP, RetrieverChoice
from korqa.splits import SPLIT_NAMES, select_split, title_key

RULES = ("auto", "context", "title-answer")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    context: str
    title: str
    answers: tuple[str, ...]
    article_index: int


def load_questions(path: str | Path, split: str = "all") -> list[Question]:
    """The questions of a SQuAD-format file in `split` (`korqa.splits`), in file order."""
    return [Question(e.qid, e.question, e.context, e.title,
                     tuple(answer.text for answer in e.answers), e.article_index)
            for e in select_split(read_squad(path), split)]


def choose_rule(questions: Sequence[Question], store: ParagraphStore, rule: str = "auto") -> str:
    if rule not in RULES:
        raise ValueError(f"unknown gold rule {rule!r} (expected one of {', '.join(RULES)})")
    if rule != "auto":
        return rule
    if not questions:
        return "context"
    return "context" if store.containing(questions[0].context) else "title-answer"


class GoldJudge:
    """Decides whether a retrieved paragraph is gold for a question, under one rule."""

    def __init__(self, store: ParagraphStore, rule: str) -> None:
        self.store = store
        self.rule = rule
        self._context_gold: dict[str, frozenset[str]] = {}

    def gold_ids(self, question: Question) -> frozenset[str]:
        """Context rule: every gold paragraph id (cached per distinct context)."""
        if question.context not in self._context_gold:
            self._context_gold[question.context] = frozenset(
                self.store.containing(question.context))
        return self._context_gold[question.context]

    def answerable(self, question: Question) -> bool:
        """Whether any corpus paragraph is gold (else no retriever can find it)."""
        if self.rule == "context":
            return bool(self.gold_ids(question))
        variants = dict.fromkeys([question.title, title_key(question.title)])
        return any(self._title_answer(question, p.title, p.text)
                   for title in variants for p in self.store.by_title(title))

    def first_hit_rank(self, question: Question, hits: Sequence[Hit]) -> int | None:
        """1-based rank of the first gold paragraph among `hits`, or None."""
        if self.rule == "context":
            gold = self.gold_ids(question)
            return next((r for r, (pid, _) in enumerate(hits, 1) if pid in gold), None)
        paragraphs = self.store.get([pid for pid, _ in hits])
        return next((r for r, p in enumerate(paragraphs, 1)
                     if self._title_answer(question, p.title, p.text)), None)

    @staticmethod
    def _title_answer(question: Question, title: str, text: str) -> bool:
        return (title_key(title) == title_key(question.title)
                and any(answer in text for answer in question.answers))


@dataclass(frozen=True)
class Ranking:
    """Where each question's first gold paragraph was retrieved, and how long each query took."""

    rule: str
    ranks: list[int | None]  # 1-based rank of the first gold hit within the depth, or None
    latencies_ms: np.ndarray  # wall time of each query
    cpu_ms: np.ndarray  # CPU time of each query (all threads): stable on a busy machine
    without_gold: int  # questions with no gold paragraph anywhere in the corpus

    def recall(self, k: int, select: Sequence[bool] | None = None) -> float:
        ranks = self.ranks if select is None else [r for r, s in zip(self.ranks, select,
                                                                      strict=True) if s]
        return sum(r is not None and r <= k for r in ranks) / max(1, len(ranks))


def rank_questions(
    retriever: Retriever,
    store: ParagraphStore,
    questions: Sequence[Question],
    depth: int,
    rule: str = "auto",
    progress: bool = False,
) -> Ranking:
    """Retrieve each question on its own (`retrieve`, not a batch, so the latency is what one
    user query costs) and find its first gold hit among the top `depth`."""
    if not questions:
        raise ValueError("no questions to evaluate (is the split empty?)")
    rule = choose_rule(questions, store, rule)
    judge = GoldJudge(store, rule)
    ranks: list[int | None] = []
    latencies = np.empty(len(questions))
    cpu = np.empty(len(questions))
    iterator: Iterable[Question] = questions
    if progress:
        from tqdm import tqdm

        iterator = tqdm(questions, desc="retrieval-eval", unit="q", mininterval=1.0)
    for i, question in enumerate(iterator):
        start, start_cpu = time.perf_counter(), time.process_time()
        hits = retriever.retrieve(question.question, depth)
        latencies[i] = (time.perf_counter() - start) * 1000.0
        cpu[i] = (time.process_time() - start_cpu) * 1000.0
        ranks.append(judge.first_hit_rank(question, hits))
    without_gold = sum(not judge.answerable(q) for q in questions)
    return Ranking(rule, ranks, latencies, cpu, without_gold)


def evaluate_recall(
    retriever: Retriever,
    store: ParagraphStore,
    questions: Sequence[Question],
    ks: Sequence[int] = (1, 5, 10, 20),
    rule: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """recall@k for each k (0–1), the rule used, and per-query latency in milliseconds (wall
    time; `cpu_mean` is CPU time, which a machine shared with other jobs inflates less)."""
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"k values must be positive integers, got {list(ks)}")
    ranking = rank_questions(retriever, store, questions, max(ks), rule, progress)
    latencies = ranking.latencies_ms
    result: dict[str, Any] = {f"recall@{k}": ranking.recall(k) for k in sorted(set(ks))}
    result.update({
        "questions": len(questions),
        "rule": ranking.rule,
        "questions_without_gold": ranking.without_gold,
        "latency_ms": {"mean": float(latencies.mean()), "p50": float(np.median(latencies)),
                       "p95": float(np.percentile(latencies, 95)),
                       "cpu_mean": float(ranking.cpu_ms.mean())},
    })
    return result


@dataclass(kw_only=True)
class RecallConfig:
    """`korqa retrieval-eval`: which questions, over which index (or corpus indexed for it)."""

    data: str = field(metadata={"help": "SQuAD-format questions (KorQuAD dev)"})
    index: str | None = field(default=None, metadata={
        "help": INDEX_HELP, "metavar": "DIR", "exclusive": "paragraphs", "required": True})
    corpus: list[str] = field(default_factory=list, metadata={
        "help": "index these paths in a temporary directory first (with --retriever, "
                "--encoder, --no-morphemes)", "metavar": "PATH", "exclusive": "paragraphs"})
    choice: RetrieverChoice = field(default_factory=RetrieverChoice)
    reading: TextReading = field(default_factory=TextReading)
    split: str = field(default="test", metadata={
        "help": "test = articles whose index is 4 mod 5; validation = group-k-fold fold 0 of "
                "the others, what `korqa train` validates on; train+validation = all of the "
                "others", "choices": SPLIT_NAMES})
    k: str = field(default="1,5,10,20", metadata={"help": "comma-separated cut-offs"})
    rule: Literal["auto", "context", "title-answer"] = field(default="auto", metadata={
        "help": "which paragraphs count as gold, as described above"})
    progress: bool = field(default=True, metadata={"help": PROGRESS_HELP,
                                                   "flag": "--no-progress"})

    def cutoffs(self) -> list[int]:
        try:
            return [int(k) for k in self.k.split(",") if k.strip()]
        except ValueError:
            raise ValueError(f"--k: expected comma-separated integers, got {self.k!r}") from None


def evaluate_retrieval(config: RecallConfig) -> dict[str, Any]:
    """`korqa retrieval-eval`: `evaluate_recall` over `config.index`, or over its corpus
    indexed in a temporary directory, with the retriever's kind and the split."""
    import tempfile

    from korqa.retrieval.index import Index, build_index

    ks = config.cutoffs()
    questions = load_questions(config.data, config.split)
    with tempfile.TemporaryDirectory(prefix="korqa-index-") as scratch:
        directory = config.index
        if directory is None:
            directory = scratch
            build_index(scratch, config.corpus, config.choice.make(), progress=config.progress,
                        reading=config.reading)
        with Index(directory) as index:
            result = evaluate_recall(index.retriever, index.store, questions, ks, config.rule,
                                     progress=config.progress)
            return {**result, "retriever": index.retriever.kind, "split": config.split}


def format_recall(result: dict[str, Any], config: RecallConfig) -> str:
    """`evaluate_retrieval`'s result as lines for people."""
    lines = [f"{result['retriever']} on {result['questions']} questions (split "
             f"{result['split']}, gold rule {result['rule']}, "
             f"{result['questions_without_gold']} without a gold paragraph in the corpus)"]
    lines += [f"  recall@{k:<4} {result[f'recall@{k}']:.4f}" for k in sorted(set(config.cutoffs()))]
    latency = result["latency_ms"]
    lines.append(f"  latency    {latency['mean']:.2f} ms/query (p50 {latency['p50']:.2f}, "
                 f"p95 {latency['p95']:.2f}; CPU {latency['cpu_mean']:.2f})")
    return "\n".join(lines)
