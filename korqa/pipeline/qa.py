"""Question → retrieved paragraphs → reader spans → answers fused with the retrieval score.

This is the only module that knows both the retriever and the reader (DrQA's pipeline/drqa.py):
the retriever returns paragraphs with scores, the reader returns spans with probability-like
scores and character offsets, and here they meet. Every answer keeps both scores, the paragraph
it came from and its [start, end) characters in that paragraph, so callers can highlight it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from korqa.corpus.paragraph import Paragraph
from korqa.faq import DEFAULT_FAQ_THRESHOLD, FAQIndex, FAQMatch
from korqa.modeling.engines import EngineChoice
from korqa.pipeline.answers import Answer, AnswerCandidate, RetrievedParagraph
from korqa.pipeline.confidence import Calibration, reader_calibration
from korqa.pipeline.limits import check_question, check_top_k

if TYPE_CHECKING:  # the reader loads with its first use, so FAQ-only use stays light
    from korqa.reader.predict import Candidate
    from korqa.reader.reader import Reader

# Both fitted by `korqa.evaluation.fusion.tune_fusion` on KorQuAD validation questions (BM25,
# top-3; each refit is in the model card). The reader's span scores are overconfident on wrong
# paragraphs, so retrieval earns the weight.
DEFAULT_FUSION_WEIGHT = 0.8
# Paragraphs whose retrieval score is under this share of the top one's are not read (0 reads
# all top_k): far-behind paragraphs cost reader time and mostly lure it into wrong spans.
DEFAULT_READ_GATE = 0.9


class ParagraphSearch(Protocol):
    """What the pipeline needs of an index: `korqa.retrieval.index.Index` is one."""

    def search(self, query: str, k: int = 10) -> list[tuple[Paragraph, float]]: ...

    def close(self) -> None: ...


# A search in place of the index's own for one question (a conversation's document prior).
SearchFunction = Callable[[str, int], list[tuple[Paragraph, float]]]


@dataclass
class PipelineConfig(EngineChoice):
    """Knobs of one pipeline; the defaults are what `korqa ask` uses. The reader runs on
    `EngineChoice`'s engine, int8 and device."""

    # The "help" metadata is each knob's `korqa ask/chat/serve` help text (korqa.cli_options).
    top_k: int = field(default=3, metadata={"help": "paragraphs to read", "metavar": "N"})
    fusion_weight: float = field(default=DEFAULT_FUSION_WEIGHT, metadata={
        "help": "retrieval weight w in (1-w)·reader + w·retrieval", "metavar": "W",
        "aliases": ("--weight",)})
    read_gate: float = field(default=DEFAULT_READ_GATE, metadata={
        "help": "read only paragraphs whose retrieval score is at least G times the top one's; "
                "0 reads all --top-k", "metavar": "G"})
    # Under it the answer is "don't know"; None: the threshold of the reader's calibration
    # (korqa.pipeline.confidence: its confidence.json's, else SPAN_SCORE_THRESHOLD's).
    threshold: float | None = field(default=None, metadata={
        "help": "confidence under which the answer is 'don't know' (default: the threshold "
                "fitted with the reader's confidence.json; 0.1 without one)", "metavar": "T"})
    n_best: int = field(default=5, metadata={
        "help": "answers listed per question (and spans kept per paragraph)", "metavar": "N"})
    faq_threshold: float = field(default=DEFAULT_FAQ_THRESHOLD, metadata={
        "help": "FAQ similarity at which a stored question answers on its own", "metavar": "S"})
    # `ReaderConfig` fields (korqa.reader.config) that replace the reader directory's own, e.g.
    # {"stop_confidence": None} (`--all-windows`) or {"max_answer_length": 20}. n_best is the
    # pipeline's own above, and the pipeline reads one window per forward pass.
    reader_overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "overrides": "korqa.reader.config:ReaderConfig", "skip": ("n_best", "batch_size"),
        "title": "reading (each replaces the reader's reader_config.json)"})

    def __post_init__(self) -> None:
        check_top_k(self.top_k)
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"fusion weight must be in [0, 1], got {self.fusion_weight}")
        if not 0.0 <= self.read_gate <= 1.0:
            raise ValueError(f"read gate must be in [0, 1], got {self.read_gate}")
        if self.n_best < 1:
            raise ValueError(f"n_best must be at least 1, got {self.n_best}")

    @classmethod
    def with_overrides(cls, **options: Any) -> PipelineConfig:
        """The defaults with every option that is not None replaced (unset flags are None)."""
        return cls(**{name: value for name, value in options.items() if value is not None})


def load_reader(model: str | Path | None = None, config: PipelineConfig | None = None) -> Reader:
    """The reader in `model` (default: `korqa.paths.default_reader_dir()`) as the pipeline reads
    with it: `config`'s engine, int8, device and window rule, and one window per forward pass
    (a question's windows differ in length, and on a CPU padding them into one batch cost more
    than it saved)."""
    from korqa.reader.directory import ReaderDir

    config = config or PipelineConfig()
    return ReaderDir(model).load(config.engine, config.int8, config.device,
                                 **{**config.reader_overrides, "batch_size": 1})


def passes_gate(item: RetrievedParagraph, rank: int, gate: float) -> bool:
    """Whether a paragraph is read: the top one always, others scoring ≥ gate × the top."""
    return rank == 0 or item.retrieval_score >= gate


def normalise_retrieval(scores: Sequence[float]) -> list[float]:
    """Scores divided by the best one, so the top paragraph gets 1 whatever the retriever's scale.

    BM25 is unbounded and cosine lies in [0, 1]; dividing by the top keeps ratios (a paragraph
    half as relevant gets 0.5), where min-max would always send the last of k to 0.
    """
    top = max(scores, default=0.0)
    if top <= 0.0:
        return [0.0 for _ in scores]
    return [max(score, 0.0) / top for score in scores]


def fuse(retrieved: Sequence[RetrievedParagraph], readings: Sequence[Sequence[Candidate]],
         weight: float, n_best: int | None = None) -> list[AnswerCandidate]:
    """Every span of every paragraph scored (1 − w)·reader + w·retrieval, best first, one per text.

    `readings[i]` are the reader's candidates (text, start, end, score) for `retrieved[i]`.
    An answer text found in several paragraphs is kept once, where it scored best.
    """
    pool: list[AnswerCandidate] = []
    for item, candidates in zip(retrieved, readings, strict=True):
        paragraph = item.paragraph
        for c in candidates:
            fused = (1.0 - weight) * c.score + weight * item.retrieval_score
            pool.append(AnswerCandidate(c.text, fused, c.score, item.retrieval_score,
                                        item.retrieval_raw, paragraph.title, paragraph.id,
                                        c.start, c.end, paragraph.text))
    # Ties (w = 1 gives every span of a paragraph the same score) fall back to the reader.
    pool.sort(key=lambda c: (-c.score, -(c.reader_score or 0.0)))
    return _dedupe(pool, n_best)


def _dedupe(ranked: list[AnswerCandidate], n_best: int | None) -> list[AnswerCandidate]:
    """The first (best) candidate of each answer text, at most `n_best` of them."""
    seen: set[str] = set()
    kept = []
    for candidate in ranked:
        if candidate.answer in seen:
            continue
        seen.add(candidate.answer)
        kept.append(candidate)
        if n_best is not None and len(kept) == n_best:
            break
    return kept


class QAPipeline:
    """Built once (index, reader, FAQ loaded), then `ask` answers question after question.

    `reader` may be a `Reader` or a function returning one: the pipeline calls it on the first
    question that needs the reader, so FAQ-only answers work before any model is available.
    `confidence` decides when it does not know (`korqa.pipeline.confidence`); by default the
    calibration of the reader's directory, loaded with the reader.
    """

    def __init__(self, index: ParagraphSearch | None = None,
                 reader: Reader | Callable[[], Reader] | None = None,
                 faq: FAQIndex | None = None, config: PipelineConfig | None = None,
                 confidence: Calibration | None = None) -> None:
        if index is None and faq is None:
            raise ValueError("a pipeline needs an index of paragraphs, an FAQ, or both")
        if index is not None and reader is None:
            raise ValueError("a pipeline with an index needs a reader (or a function loading one)")
        self.index = index
        self.faq = faq
        self.config = config or PipelineConfig()
        self._reader = reader
        self._confidence = confidence

    def close(self) -> None:
        """Close the index's paragraph store."""
        if self.index is not None:
            self.index.close()

    def __enter__(self) -> QAPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def reader(self) -> Reader:
        from korqa.reader.reader import Reader

        if self._reader is None:
            raise ValueError("this pipeline has no reader")
        if not isinstance(self._reader, Reader):
            self._reader = self._reader()
        if self._confidence is None:  # with the reader: a bad confidence.json fails at start
            self._confidence = reader_calibration(self._reader.directory)
        return self._reader

    @property
    def confidence(self) -> Calibration:
        """The calibration the pipeline decides with (see the class docstring)."""
        if self._confidence is None:
            self.reader  # noqa: B018 - loading the reader settles it
        assert self._confidence is not None
        return self._confidence

    @confidence.setter
    def confidence(self, calibration: Calibration) -> None:
        self._confidence = calibration

    def ask(self, question: str, top_k: int | None = None,
            search: SearchFunction | None = None) -> Answer:
        """The best answer to `question`: from the FAQ when a stored question is close enough,
        else read from the `top_k` best paragraphs (found by `search`, default the index's);
        `known` is False under the threshold."""
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        check_question(question)
        if top_k is not None:
            check_top_k(top_k)
        faq_matches = self.faq.search(question, k=self.config.n_best) if self.faq else []
        if faq_matches and faq_matches[0].score >= self.config.faq_threshold:
            return _faq_answer(question, faq_matches)
        if self.index is None:
            return _unknown(question, [], [], faq_matches)
        retrieved, candidates = self.read(question, top_k, search=search)
        return self.decide(question, retrieved, candidates)

    def read(self, question: str, top_k: int | None = None, gate: float | None = None,
             search: SearchFunction | None = None,
             ) -> tuple[list[RetrievedParagraph], list[list[Candidate]]]:
        """The retrieved paragraphs and the reader's candidates for each, not yet fused.

        Paragraphs under the read gate (`PipelineConfig.read_gate`, or `gate`) are returned
        but not read: their candidate lists are empty. `search` replaces the index's own.
        """
        if self.index is None:
            raise ValueError("this pipeline has no paragraph index")
        k = self.config.top_k if top_k is None else top_k
        if k < 1:
            raise ValueError(f"top_k must be at least 1, got {k}")
        hits = (search or self.index.search)(question, k)
        normalised = normalise_retrieval([score for _, score in hits])
        retrieved = [RetrievedParagraph(p, raw, norm)
                     for (p, raw), norm in zip(hits, normalised, strict=True)]
        if not retrieved:  # nothing to read: no need to load the reader to say so
            return [], []
        to_read = [i for i, item in enumerate(retrieved) if self._passes(item, i, gate)]
        read = self.reader.read(question, [retrieved[i].paragraph.text for i in to_read],
                                n_best=self.config.n_best)
        readings: list[list[Candidate]] = [[] for _ in retrieved]
        for i, candidates in zip(to_read, read, strict=True):
            readings[i] = candidates
        return retrieved, readings

    def _passes(self, item: RetrievedParagraph, rank: int, gate: float | None) -> bool:
        return passes_gate(item, rank, self.config.read_gate if gate is None else gate)

    def decide(self, question: str, retrieved: list[RetrievedParagraph],
               readings: list[list[Candidate]], weight: float | None = None,
               gate: float | None = None) -> Answer:
        """Fuse the reader's candidates with retrieval scores, score each with the probability
        that it is exactly right (`confidence`; fusion order kept) and answer the first unless
        that is under the threshold. Readings of paragraphs under the read gate are left out,
        as if they had not been read."""
        weight = self.config.fusion_weight if weight is None else weight
        readings = [candidates if self._passes(item, i, gate) else []
                    for i, (item, candidates) in enumerate(zip(retrieved, readings, strict=True))]
        ranked = fuse(retrieved, readings, weight, self.config.n_best)
        if not ranked:
            return _unknown(question, retrieved, [], [], 0.0)
        confidence = self.confidence
        probabilities = confidence.probabilities(question, ranked, retrieved, readings,
                                                 self.reader.tokenizer)
        ranked = [replace(c, score=p) for c, p in zip(ranked, probabilities, strict=True)]
        threshold = confidence.threshold if self.config.threshold is None \
            else self.config.threshold
        best = ranked[0]
        if best.score < threshold:
            return _unknown(question, retrieved, ranked, [], best.score)
        return Answer(question, best.answer, best.score, True, best.title, best.paragraph_id,
                      best.context, best.start, best.end, ranked, "reader", retrieved)


def _faq_answer(question: str, matches: list[FAQMatch]) -> Answer:
    best = matches[0]
    entry = best.entry
    # The stored answer is its own "paragraph": highlighting it whole is still exact.
    candidates = _dedupe([_faq_candidate(m) for m in matches], None)
    return Answer(question, entry.answer, best.score, True, "FAQ", f"faq:{entry.id}",
                  entry.answer, 0, len(entry.answer), candidates, "faq",
                  faq_question=entry.question)


def _faq_candidate(match: FAQMatch) -> AnswerCandidate:
    entry = match.entry
    # An FAQ answer has no span reader: its only evidence is the question similarity.
    return AnswerCandidate(entry.answer, match.score, None, match.score, match.score, "FAQ",
                           f"faq:{entry.id}", 0, len(entry.answer), entry.answer)


def _unknown(question: str, retrieved: list[RetrievedParagraph],
             ranked: list[AnswerCandidate], faq_matches: list[FAQMatch],
             score: float | None = None) -> Answer:
    """A "don't know" answer that still shows the closest paragraph and the best guesses;
    `score` (default: the best guess's) is under every answer the pipeline would give."""
    candidates = ranked or _dedupe([_faq_candidate(m) for m in faq_matches], None)
    if score is None:
        score = candidates[0].score if candidates else 0.0
    if retrieved:
        closest = retrieved[0].paragraph
        return Answer(question, "", score, False, closest.title, closest.id, closest.text,
                      None, None, candidates, "none", retrieved)
    return Answer(question, "", score, False, "", "", "", None, None, candidates, "none",
                  retrieved)
