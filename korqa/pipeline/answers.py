"""What the pipeline returns: retrieved paragraphs, answer candidates and the answer, each with
every score that ranked it and the characters of its paragraph it spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from korqa.corpus.paragraph import Paragraph


@dataclass
class AnswerCandidate:
    """One answer span from one paragraph, with every score that ranked it."""

    answer: str
    # The probability that this answer is exactly right (korqa.pipeline.confidence), once the
    # pipeline has decided; fused, (1 − w)·reader + w·retrieval, as `fuse` ranks; for FAQ
    # answers the question similarity.
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
    # A conversation's follow-up as it was understood and read (korqa.pipeline.conversation);
    # None when the question was read as typed.
    resolved_question: str | None = None
    hint: str | None = None  # what to do instead, when korqa could not even try (one line)

    def to_json(self) -> dict[str, Any]:
        data = {"question": self.question,
                "resolved_question": self.resolved_question or self.question,
                "answer": self.answer, "score": self.score,
                "known": self.known, "source": self.source, "title": self.title,
                "paragraph_id": self.paragraph_id, "context": self.context,
                "start": self.start, "end": self.end,
                "candidates": [c.to_json() for c in self.candidates],
                "retrieved": [{"paragraph_id": r.paragraph.id, "title": r.paragraph.title,
                               "retrieval_score": r.retrieval_score,
                               "retrieval_raw": r.retrieval_raw} for r in self.paragraphs]}
        if self.faq_question is not None:
            data["faq_question"] = self.faq_question
        data["hint"] = self.hint
        return data
