"""FAQ mode: find the stored question most like the user's (TF-IDF cosine), give its answer.

Small talk ("안녕", "고마워", "넌 누구야?") is a few dozen pairs shipped in korqa/data/
small_talk.json and on by default (`small_talk_entries`). They are exact entries: answered only
when the question is one of theirs word for word, spaces, punctuation and ASCII case aside,
never for being similar, so that "세종대왕은 누구야?" is never taken for "넌 누구야?".
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.terms import TermConfig
from korqa.retrieval.tfidf import TfidfRetriever

# Cosine similarity of TF-IDF vectors over syllable 1- and 2-grams. On ChatbotData a reworded
# question ("요즘 너무 힘들어요" → "너무 힘들어") scores 0.65–0.9, while encyclopedia questions
# reach up to ~0.46 through shared endings ("한라산의 높이는?" → "소개팅 성공률 높이는 법"), so
# the bar sits above that: a document question must not get a small-talk answer.
DEFAULT_FAQ_THRESHOLD = 0.6
_QUESTION_KEYS = ("q", "question", "질문")
_ANSWER_KEYS = ("a", "answer", "답", "답변")
SMALL_TALK = Path(__file__).resolve().parent / "data" / "small_talk.json"
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class FAQEntry:
    """One stored pair; `id` is its position in the file (0-based, data rows only), or after
    the file's for the small talk added to it. An `exact` entry answers only its own question
    (`question_key`), never a similar one."""

    id: int
    question: str
    answer: str
    exact: bool = False


def question_key(question: str) -> str:
    """What an exact entry compares: the question's words run together, without spaces and
    punctuation, ASCII lower-cased (Hangul has no case and is left as it is)."""
    return "".join(_WORDS.findall(unicodedata.normalize("NFC", question))).lower()


def small_talk_entries(first_id: int = 0) -> list[FAQEntry]:
    """The shipped small talk (greetings, thanks, who korqa is) as exact entries numbered from
    `first_id` on."""
    return [replace(entry, id=first_id + n, exact=True)
            for n, entry in enumerate(load_faq(SMALL_TALK))]


@dataclass(frozen=True)
class FAQMatch:
    """A stored pair and how similar its question is to the user's (cosine, 0–1)."""

    entry: FAQEntry
    score: float


def load_faq(path: str | Path) -> list[FAQEntry]:
    """Question/answer pairs from a CSV (columns Q,A or question,answer; `.gz` allowed) or a
    JSON list of {"question", "answer"} objects. Rows with an empty question are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FAQ file not found")
    text = _read_text(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".json":
        entries = _from_json(text, path)
    elif kind in (".csv", ".tsv"):
        entries = _from_csv(text, path, delimiter="\t" if kind == ".tsv" else ",")
    else:
        raise ValueError(f"{path}: unknown FAQ format (expected .csv, .tsv or .json, "
                         "optionally .gz)")
    if not entries:
        raise ValueError(f"{path}: no question/answer pairs in this file")
    return entries


class FAQIndex:
    """TF-IDF over the stored questions, using the retrievers' Korean terms and weighting; exact
    entries are looked up by `question_key` instead (a pair of the file asking the same
    question wins)."""

    def __init__(self, entries: list[FAQEntry], terms: TermConfig | None = None) -> None:
        if not entries:
            raise ValueError("FAQ: no question/answer pairs to index")
        self.entries = entries
        similar = [entry for entry in entries if not entry.exact]
        asked = {question_key(entry.question) for entry in similar}
        self._exact: dict[str, FAQEntry] = {}
        for entry in entries:
            if entry.exact and question_key(entry.question) not in asked:
                self._exact.setdefault(question_key(entry.question), entry)
        self._by_id = {str(entry.id): entry for entry in similar}
        self._retriever: TfidfRetriever | None = None
        if similar:
            self._retriever = TfidfRetriever(terms=terms)
            # Each stored question is a one-sentence "paragraph"; the retriever only needs ids.
            self._retriever.index(
                (Paragraph(str(e.id), "FAQ", e.question, "faq") for e in similar),
                total=len(similar), progress=False,
            )

    @classmethod
    def from_file(cls, path: str | Path, terms: TermConfig | None = None) -> FAQIndex:
        return cls(load_faq(path), terms)

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, question: str, k: int = 5) -> list[FAQMatch]:
        """The `k` stored pairs whose questions are most similar to `question`, best first: an
        exact entry asking the same question (similarity 1), then the similar entries."""
        if not question.strip():
            return []
        exact = self._exact.get(question_key(question))
        matches = [FAQMatch(exact, 1.0)] if exact is not None else []
        if self._retriever is not None:
            hits = self._retriever.retrieve(question, k)
            matches += [FAQMatch(self._by_id[pid], score) for pid, score in hits]
        return matches[:k]

    def match(self, question: str, threshold: float = DEFAULT_FAQ_THRESHOLD) -> FAQMatch | None:
        """The best stored pair if its similarity reaches `threshold`, else None."""
        best = self.search(question, k=1)
        return best[0] if best and best[0].score >= threshold else None


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: not a readable gzip file ({error})") from None
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.start})") from None


def _pick(keys: list[str], wanted: tuple[str, ...], path: Path, what: str) -> str:
    lowered = {key.strip().lower(): key for key in keys}
    for name in wanted:
        if name in lowered:
            return lowered[name]
    raise ValueError(f"{path}: no {what} column (looked for {', '.join(wanted)}; "
                     f"found {', '.join(keys) or 'none'})")


def _from_csv(text: str, path: Path, delimiter: str) -> list[FAQEntry]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = list(reader.fieldnames or [])
    q_key = _pick(header, _QUESTION_KEYS, path, "question")
    a_key = _pick(header, _ANSWER_KEYS, path, "answer")
    entries: list[FAQEntry] = []
    for row_number, row in enumerate(reader):
        question, answer = (row.get(q_key) or "").strip(), (row.get(a_key) or "").strip()
        if not question:
            continue
        if not answer:
            # Line numbers count the header as line 1.
            raise ValueError(f"{path}:{row_number + 2}: question {question!r} has no answer")
        entries.append(FAQEntry(row_number, question, answer))
    return entries


def _from_json(text: str, path: Path) -> list[FAQEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{\"question\", \"answer\"}} objects")
    entries: list[FAQEntry] = []
    for index, item in enumerate(data):
        where = f"{path}: item {index}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
        question, answer = item.get("question"), item.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ValueError(f"{where}: fields 'question' and 'answer' must be strings")
        if not question.strip():
            continue
        if not answer.strip():
            raise ValueError(f"{where}: question {question!r} has no answer")
        entries.append(FAQEntry(index, question.strip(), answer.strip()))
    return entries
