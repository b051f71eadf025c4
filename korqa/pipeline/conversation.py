"""A conversation: follow-up questions understood from the turns before them.

People chat: after "세종대왕의 아버지는 누구야?" they ask "그는 몇 년에 즉위했어?", "어머니는?" or
"몇 년에 죽었어?". Each question of a `Conversation` is first resolved into a standalone one
(korqa.pipeline.resolver: Kiwi's part-of-speech tags, no generative model): a pronoun or "그 N"
is replaced by the topic or the previous answer, a dropped subject is put back, and a question
about something else starts a new topic. The resolved question is what retrieval searches for
and what the reader reads; `Answer.resolved_question` shows it, so a person can see, and
correct, a wrong guess.

While the topic holds, retrieval leans toward its document: that document's paragraphs score
(1 + DOCUMENT_PRIOR) times their own. A topic shift switches this off. A follow-up's answer must
come from a paragraph that speaks of what the person asked (a word of theirs besides the
reference): "그의 혈액형은?" is not answered from a paragraph about him that never mentions a
blood type, which the topic's name alone would make look relevant. A reference with nothing
before it to refer to ("그는 누구야?" as the first question) is not guessed at: the answer is
"don't know" with a hint to name the subject.

`Conversation(pipeline)` keeps the turns; `ask(pipeline, question, history=…)` is the stateless
form (what an HTTP API takes): the history, oldest first, is replayed through the resolver.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from korqa.corpus.paragraph import Paragraph
from korqa.pipeline.answers import Answer
from korqa.pipeline.display import DONT_KNOW
from korqa.pipeline.qa import QAPipeline, SearchFunction
from korqa.pipeline.resolver import (
    CONTEXT_TURNS,
    PRIOR_DEPTH,
    Resolution,
    analyse,
    asked_words,
    resolve,
    topic_of,
)

__all__ = ["Conversation", "HistoryError", "Resolution", "Turn", "ask", "parse_history",
           "prefer_document", "resolve", "topic_of"]

# Tuned on the development conversations (non-test KorQuAD articles; bench/conversations.py).
DOCUMENT_PRIOR = 0.5  # the topic document's scores × (1 + this) while the topic holds
FOLLOW_UPS = ("reference", "answer", "ellipsis")  # resolutions that rewrote the question
MAX_HISTORY_TURNS = 50  # a stateless question's history: more turns or characters are refused
MAX_HISTORY_CHARS = 20_000
MAX_TURN_CHARS = 1_000  # of one question or answer: the resolver reads them, and fast
UNSUPPORTED = "찾은 문단에는 '{word}'에 대한 내용이 없어요."


class HistoryError(ValueError):
    """A history of the wrong shape or over the caps (an HTTP API answers it with 422)."""


@dataclass
class Turn:
    """One question of a conversation and what came of it."""

    question: str  # as typed
    resolved_question: str  # as understood: what was searched for and read
    answer: str  # "" when korqa did not know
    document: str | None = None  # the answer's document id (the topic's, for a "don't know")
    paragraph_id: str | None = None
    title: str = ""
    kind: str = "standalone"  # how it was resolved: see Resolution.kind
    topic: str | None = None  # the subject the next follow-up refers to


class Conversation:
    """Questions asked one after another, each understood with the turns before it.

        chat = Conversation(pipeline)
        chat.ask("세종대왕의 아버지는 누구야?")
        chat.ask("그는 몇 년에 즉위했어?").resolved_question  # "태종은 몇 년에 즉위했어?"
    """

    def __init__(self, pipeline: QAPipeline, top_k: int | None = None) -> None:
        self.pipeline = pipeline
        self.top_k = top_k
        self.turns: list[Turn] = []

    @classmethod
    def from_history(cls, pipeline: QAPipeline, history: Any,
                     top_k: int | None = None) -> Conversation:
        """A conversation that has had `history` (see `parse_history`); its turns are resolved
        again, and each answer's document is found by searching for it."""
        conversation = cls(pipeline, top_k)
        for question, answer in parse_history(history)[-CONTEXT_TURNS:]:
            resolution = conversation.resolve(question)
            document, paragraph_id, title = conversation._locate(resolution, answer)
            conversation._record(question, resolution, answer, document, paragraph_id, title)
        return conversation

    def reset(self) -> None:
        """Start over: the next question is a first question."""
        self.turns.clear()

    def resolve(self, question: str) -> Resolution:
        """How `question` would be understood after the turns so far (nothing is asked)."""
        return resolve(question, self.turns, self._search())

    def ask(self, question: str) -> Answer:
        """The answer to `question` read as the conversation so far makes it; the turn is
        kept. `answer.resolved_question` says how the question was understood."""
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        resolution = self.resolve(question)
        if resolution.kind == "unresolved":
            answer = Answer(question, "", 0.0, False, "", "", "", None, None, source="none",
                            hint=resolution.hint)
        else:
            search = self._search()
            leaning = prefer_document(search, resolution.document) \
                if search is not None and resolution.document is not None else None
            answer = self.pipeline.ask(resolution.question, self.top_k, search=leaning)
            answer.question = question
            if answer.known and resolution.kind in FOLLOW_UPS:
                answer = _unless_unsupported(question, resolution, answer)
        answer.resolved_question = resolution.question
        document = _document_of(answer)
        if not answer.known and resolution.kind != "shift" and resolution.document:
            document = resolution.document
        self._record(question, resolution, answer.answer if answer.known else "", document,
                     answer.paragraph_id or None, answer.title)
        return answer

    def _record(self, question: str, resolution: Resolution, answer: str,
                document: str | None, paragraph_id: str | None, title: str) -> None:
        """Keep the turn, with the topic the next follow-up will refer to."""
        current = next((t for t in reversed(self.turns[-CONTEXT_TURNS:]) if t.topic), None)
        # Within one document its title decides; a side subject ("4인용 식탁" in a question about
        # 전지현's film) does not replace the topic.
        previous = current.topic if current is not None and resolution.kind != "shift" and \
            document is not None and document == current.document else None
        self.turns.append(Turn(question, resolution.question, answer, document, paragraph_id,
                               title, resolution.kind,
                               topic_of(resolution.question, title, answer, previous)))

    def _search(self) -> SearchFunction | None:
        return self.pipeline.index.search if self.pipeline.index is not None else None

    def _locate(self, resolution: Resolution, answer: str) -> tuple[str | None, str | None, str]:
        """The document, paragraph and title a history's answer most likely came from: the
        first paragraph retrieved for the resolved question that holds the answer."""
        search = self._search()
        if search is None or resolution.kind == "unresolved":
            return None, None, ""
        if resolution.document is not None:
            search = prefer_document(search, resolution.document)
        hits = search(resolution.question, PRIOR_DEPTH)
        holding = [p for p, _ in hits if answer and answer in p.text]
        if holding:
            return holding[0].doc_id, holding[0].id, holding[0].title
        if resolution.document is not None:
            return resolution.document, None, ""
        return (hits[0][0].doc_id, None, hits[0][0].title) if hits else (None, None, "")


def prefer_document(search: SearchFunction, document: str,
                    prior: float | None = None) -> SearchFunction:
    """`search` with `document`'s paragraphs scored (1 + prior) times higher (default prior:
    DOCUMENT_PRIOR)."""
    boost = 1.0 + (DOCUMENT_PRIOR if prior is None else prior)

    def leaning(query: str, k: int) -> list[tuple[Paragraph, float]]:
        hits = search(query, max(k, PRIOR_DEPTH))
        scored = [(p, s * boost if p.doc_id == document else s) for p, s in hits]
        scored.sort(key=lambda hit: -hit[1])  # stable: ties keep the retriever's order
        return scored[:k]

    return leaning


def _unless_unsupported(question: str, resolution: Resolution, answer: Answer) -> Answer:
    """`answer`, or a "don't know" when no paragraph retrieved for it that holds the answer
    mentions any of the words the person typed besides the reference (nouns anywhere, verbs
    and adjectives by their stem)."""
    words = asked_words(question, resolution)
    holding = [item.paragraph.text for item in answer.paragraphs
               if answer.answer in item.paragraph.text and item.paragraph.text != answer.context]
    text = " ".join([answer.title, answer.context, *holding])
    # A noun of two or more letters anywhere in the text; a one-letter one ("키") would be
    # found inside other words, so it and the stems are compared with the text's morphemes.
    if not words or any(len(word) > 1 and word in text for word in words):
        return answer
    # "그의 종교는?" → 기독교, "그가 속한 정당은?" → 보수당: the answer ends as the noun asked for
    if any(len(word) > 1 and answer.answer.endswith(word[-1]) for word in words):
        return answer
    stems = {token.form for token in analyse(text)}
    if any(word in stems for word in words):
        return answer
    return replace(answer, answer="", known=False, start=None, end=None, source="none",
                   hint=UNSUPPORTED.format(word=words[0]))


def _document_of(answer: Answer) -> str | None:
    for item in answer.paragraphs:
        if item.paragraph.id == answer.paragraph_id:
            return item.paragraph.doc_id
    return answer.paragraphs[0].paragraph.doc_id if answer.paragraphs else None


def ask(pipeline: QAPipeline, question: str, history: Any = None,
        top_k: int | None = None) -> Answer:
    """The stateless form of `Conversation.ask`: `history` is the conversation so far,
    `[{"question": …, "answer": …}, …]` oldest first (see `parse_history`)."""
    return Conversation.from_history(pipeline, history or [], top_k).ask(question)


def parse_history(history: Any) -> list[tuple[str, str]]:
    """A client's history as (question, answer) pairs, checked.

    The history is a list, oldest first, of objects with a "question" (a non-empty string) and
    an "answer" (a string; "", null, missing or an answer starting with "모르겠어요" mean no
    answer); other keys are ignored. At most MAX_HISTORY_TURNS turns, MAX_TURN_CHARS characters
    a question or answer and MAX_HISTORY_CHARS in all, else HistoryError; only the last
    CONTEXT_TURNS are used. A turn without
    Hangul (another language) is kept but gives follow-ups no topic.
    """
    if not isinstance(history, list):
        raise HistoryError('history must be a list of {"question": …, "answer": …} objects, '
                           f"oldest first; got {type(history).__name__}")
    if len(history) > MAX_HISTORY_TURNS:
        raise HistoryError(f"history has {len(history)} turns; at most {MAX_HISTORY_TURNS} are "
                           "accepted (send the latest ones)")
    pairs, characters = [], 0
    for number, item in enumerate(history):
        if not isinstance(item, dict):
            raise HistoryError(f"history[{number}] must be an object with \"question\" and "
                               f"\"answer\", got {type(item).__name__}")
        question, answer = item.get("question"), item.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise HistoryError(f'history[{number}]["question"] must be a non-empty string')
        if answer is not None and not isinstance(answer, str):
            raise HistoryError(f'history[{number}]["answer"] must be a string or null')
        answer = (answer or "").strip()
        longest = max(len(question), len(answer))
        if longest > MAX_TURN_CHARS:
            raise HistoryError(f"history[{number}] has a question or answer of {longest} "
                               f"characters; at most {MAX_TURN_CHARS} each")
        characters += len(question) + len(answer)
        if characters > MAX_HISTORY_CHARS:
            raise HistoryError(f"history holds more than {MAX_HISTORY_CHARS} characters; send "
                               "fewer or shorter turns")
        if answer.startswith(DONT_KNOW.rstrip(".")):
            answer = ""
        pairs.append((question.strip(), answer))
    return pairs

