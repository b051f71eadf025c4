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
from korqa.pipeline.limits import check_question, check_top_k
from korqa.tokenization import Tokenizer

if TYPE_CHECKING:  # the reader loads with its first use, so FAQ-only use stays light
    from korqa.corpus.formats import SquadExample
    from korqa.pipeline.confidence import Confidence
    from korqa.reader.predict import Candidate
    from korqa.reader.reader import Reader

# Both fitted by `tune_fusion` on KorQuAD validation questions (BM25, top-3; each refit is in
# the model card). The reader's span scores are overconfident on wrong paragraphs, so retrieval
# earns the weight.
DEFAULT_FUSION_WEIGHT = 0.8
# Paragraphs whose retrieval score is under this share of the top one's are not read (0 reads
# all top_k): far-behind paragraphs cost reader time and mostly lure it into wrong spans.
DEFAULT_READ_GATE = 0.9
# For a reader without a fitted confidence (`korqa calibrate-confidence`) only: on the reader's
# score (a softmax over every span of the paragraph plus a "no answer" event), below it the
# best span got less than a tenth of the mass, and the pipeline says it does not know. A reader
# with a confidence.json brings its own threshold on the calibrated probability.
DEFAULT_THRESHOLD = 0.1


class ParagraphSearch(Protocol):
    """What the pipeline needs of an index: `korqa.retrieval.index.Index` is one."""

    def search(self, query: str, k: int = 10) -> list[tuple[Paragraph, float]]: ...


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
    # Under it the answer is "don't know": on the calibrated confidence when the reader has one
    # (None: the one fitted with it), else on the reader's span score (None: DEFAULT_THRESHOLD).
    threshold: float | None = field(default=None, metadata={
        "help": "confidence under which the answer is 'don't know' (default: the threshold "
                "fitted with the reader's confidence.json)", "metavar": "T"})
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


@dataclass
class AnswerCandidate:
    """One answer span from one paragraph, with every score that ranked it."""

    answer: str
    # The calibrated probability that this answer is exactly right when the reader ships a
    # confidence (korqa.pipeline.confidence); else fused: (1 − w)·reader + w·retrieval.
    score: float
    # The reader's probability-like span score, comparable across paragraphs; None for FAQ
    # answers, which no reader looked at.
    reader_score: float | None
    retrieval_score: float  # the paragraph's retrieval score divided by the top one's (0–1)
    retrieval_raw: float  # the retriever's own score (BM25, cosine, …)
    title: str
    paragraph_id: str
    start: int  # characters of `context`: context[start:end] == answer
    end: int
    context: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": self.score, "reader_score": self.reader_score,
                "retrieval_score": self.retrieval_score, "retrieval_raw": self.retrieval_raw,
                "title": self.title, "paragraph_id": self.paragraph_id,
                "start": self.start, "end": self.end}


@dataclass
class RetrievedParagraph:
    """A paragraph the retriever returned, with its raw and normalised score."""

    paragraph: Paragraph
    retrieval_raw: float
    retrieval_score: float


@dataclass
class Answer:
    """The pipeline's reply to one question.

    When `known` is False the pipeline does not know: `answer` is "", `start`/`end` are None and
    `title`/`paragraph_id`/`context` name the closest paragraph (the retriever's first), or are
    empty when nothing matched at all; `candidates` still lists the best guesses.
    `source` is "reader", "faq", or "none" (nothing above the thresholds).
    """

    question: str
    answer: str
    score: float
    known: bool
    title: str
    paragraph_id: str
    context: str
    start: int | None
    end: int | None
    candidates: list[AnswerCandidate] = field(default_factory=list)
    source: str = "reader"
    paragraphs: list[RetrievedParagraph] = field(default_factory=list)
    faq_question: str | None = None  # the stored question matched, for FAQ answers

    def to_json(self) -> dict[str, Any]:
        data = {"question": self.question, "answer": self.answer, "score": self.score,
                "known": self.known, "source": self.source, "title": self.title,
                "paragraph_id": self.paragraph_id, "context": self.context,
                "start": self.start, "end": self.end,
                "candidates": [c.to_json() for c in self.candidates],
                "retrieved": [{"paragraph_id": r.paragraph.id, "title": r.paragraph.title,
                               "retrieval_score": r.retrieval_score,
                               "retrieval_raw": r.retrieval_raw} for r in self.paragraphs]}
        if self.faq_question is not None:
            data["faq_question"] = self.faq_question
        return data


def load_reader(model: str | Path | None = None, config: PipelineConfig | None = None,
                confidence: bool = True) -> Reader:
    """The reader in `model` (default: `korqa.paths.default_reader_dir()`) as the pipeline reads
    with it: `config`'s engine, int8, device and window rule, one window per forward pass (a
    question's windows differ in length, and on a CPU padding them into one batch cost more
    than it saved), and the confidence.json beside it unless `confidence` is False (refitting
    it must not need the old file to be readable)."""
    from korqa.pipeline.confidence import load_confidence
    from korqa.reader.directory import ReaderDir

    config = config or PipelineConfig()
    directory = ReaderDir(model)
    reader = directory.load(config.engine, config.int8, config.device,
                            **{**config.reader_overrides, "batch_size": 1})
    reader.confidence = load_confidence(directory.path) if confidence else None
    return reader


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
    """

    def __init__(self, index: ParagraphSearch | None = None,
                 reader: Reader | Callable[[], Reader] | None = None,
                 faq: FAQIndex | None = None, config: PipelineConfig | None = None) -> None:
        if index is None and faq is None:
            raise ValueError("a pipeline needs an index of paragraphs, an FAQ, or both")
        if index is not None and reader is None:
            raise ValueError("a pipeline with an index needs a reader (or a function loading one)")
        self.index = index
        self.faq = faq
        self.config = config or PipelineConfig()
        self._reader = reader

    def close(self) -> None:
        """Close the index's paragraph store (if it has one to close)."""
        close = getattr(self.index, "close", None)
        if close is not None:
            close()

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
        return self._reader

    def _reader_loaded(self) -> bool:
        from korqa.reader.reader import Reader

        return isinstance(self._reader, Reader)

    def ask(self, question: str, top_k: int | None = None) -> Answer:
        """The best answer to `question`: from the FAQ when a stored question is close enough,
        else read from the `top_k` best paragraphs; `known` is False under the threshold."""
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
        retrieved, candidates = self.read(question, top_k)
        return self.decide(question, retrieved, candidates)

    def read(self, question: str, top_k: int | None = None, gate: float | None = None,
             ) -> tuple[list[RetrievedParagraph], list[list[Candidate]]]:
        """The retrieved paragraphs and the reader's candidates for each, not yet fused.

        Paragraphs under the read gate (`PipelineConfig.read_gate`, or `gate`) are returned
        but not read: their candidate lists are empty.
        """
        if self.index is None:
            raise ValueError("this pipeline has no paragraph index")
        k = self.config.top_k if top_k is None else top_k
        if k < 1:
            raise ValueError(f"top_k must be at least 1, got {k}")
        hits = self.index.search(question, k)
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
        """Fuse the reader's candidates with retrieval scores and apply the threshold; readings
        of paragraphs under the read gate are left out, as if they had not been read."""
        weight = self.config.fusion_weight if weight is None else weight
        readings = [candidates if self._passes(item, i, gate) else []
                    for i, (item, candidates) in enumerate(zip(retrieved, readings, strict=True))]
        ranked = fuse(retrieved, readings, weight, self.config.n_best)
        confidence = self.reader.confidence if self._reader_loaded() else None
        if ranked and confidence is not None:
            ranked = calibrate(question, ranked, retrieved, readings, confidence,
                               self.reader.tokenizer)
            threshold = confidence.threshold if self.config.threshold is None \
                else self.config.threshold
            if ranked[0].score < threshold:
                return _unknown(question, retrieved, ranked, [], ranked[0].score)
        elif not ranked or (ranked[0].reader_score or 0.0) < (
                DEFAULT_THRESHOLD if self.config.threshold is None else self.config.threshold):
            # Uncalibrated: a fused score would show a guess above real answers; show none.
            return _unknown(question, retrieved, ranked, [], 0.0)
        best = ranked[0]
        return Answer(question, best.answer, best.score, True, best.title, best.paragraph_id,
                      best.context, best.start, best.end, ranked, "reader", retrieved)


def calibrate(question: str, ranked: list[AnswerCandidate], retrieved: list[RetrievedParagraph],
              readings: list[list[Candidate]], confidence: Confidence,
              tokenizer: Tokenizer) -> list[AnswerCandidate]:
    """`ranked` (fusion order, kept) with each score replaced by the calibrated probability
    that the candidate is exactly right."""
    from korqa.pipeline.confidence import candidate_features

    features = candidate_features(question, ranked, retrieved, readings, tokenizer)
    return [replace(c, score=confidence.probability(values))
            for c, values in zip(ranked, features, strict=True)]


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


@dataclass
class FusionTuning:
    """The result of `tune_fusion`: the best (w, gate) and a row for every pair tried."""

    best_weight: float
    best_gate: float
    # (w, gate, EM, F1, paragraphs read per question), EM and F1 in percent
    table: list[tuple[float, float, float, float, float]]
    questions: int


def tune_fusion(pipeline: QAPipeline, examples: Sequence[SquadExample],
                weights: Sequence[float] | None = None, gates: Sequence[float] | None = None,
                top_k: int | None = None, f1_tolerance: float = 0.25) -> FusionTuning:
    """The fusion weight and read gate for `examples`: of the pairs within `f1_tolerance`
    points of the best end-to-end F1, the one reading the fewest paragraphs (then the best F1,
    then EM), since reading is what answering costs and such F1 gaps are noise.

    `examples` are `SquadExample`s with gold answers; give validation questions, never test
    ones (for KorQuAD, `korqa.training.splits` decides which are which). Each question is
    retrieved and read once with no gate; only the cheap gating and fusion are redone for
    every pair.
    """
    from korqa.evaluation.korquad_metric import score_example

    if not examples:
        raise ValueError("tuning the fusion needs at least one validation question")
    weights = [i / 20 for i in range(21)] if weights is None else list(weights)
    gates = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] if gates is None else list(gates)
    for name, values in (("fusion weights", weights), ("read gates", gates)):
        if not values or any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"{name} must be in [0, 1], got {values}")
    read = [(example, *pipeline.read(example.question, top_k, gate=0.0))
            for example in examples]
    table = []
    for gate in gates:
        paragraphs = sum(sum(passes_gate(item, i, gate) for i, item in enumerate(retrieved))
                         for _, retrieved, _ in read) / len(read)
        for weight in weights:
            em = f1 = 0.0
            for example, retrieved, readings in read:
                answer = pipeline.decide(example.question, retrieved, readings, weight, gate)
                # A "don't know" is scored by the best guess: the threshold is not tuned here.
                text = answer.candidates[0].answer if answer.candidates else ""
                exact, overlap = score_example(text, example)
                em, f1 = em + exact, f1 + overlap
            table.append((weight, gate, 100.0 * em / len(read), 100.0 * f1 / len(read),
                          paragraphs))
    top_f1 = max(row[3] for row in table)
    close = [row for row in table if row[3] >= top_f1 - f1_tolerance]
    # min keeps the first of equal rows, so ties go to the smaller weight.
    best = min(close, key=lambda row: (row[4], -row[3], -row[2]))
    return FusionTuning(best[0], best[1], table, len(read))
