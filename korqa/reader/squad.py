"""Read SQuAD v1.1 / KorQuAD 1.0 (and v2-style unanswerable) JSON into validated examples."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    """One gold answer: its text and the character offset where it starts in the context."""

    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class SquadExample:
    """One question about one paragraph, with its gold answers (empty when unanswerable)."""

    qid: str
    question: str
    context: str
    title: str
    article_index: int
    answers: list[Answer] = field(default_factory=list)
    is_impossible: bool = False


def read_squad(path: str | Path) -> list[SquadExample]:
    """Parse and validate a SQuAD-format file; errors name the article, question and field."""
    return read_squad_json(load_json(path), source=str(path))


def load_json(path: str | Path) -> Any:
    """A JSON file's content (`.gz` read through gzip); a missing file or bad JSON is one clear
    error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return json.loads(raw.decode("utf-8"))
    except (OSError, EOFError) as error:  # a truncated or non-gzip .gz
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None


def write_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as UTF-8 JSON (gzip for `.gz`), Hangul unescaped, via a scratch file renamed
    into place so an interrupted write never leaves half a file."""
    path = Path(path)
    raw = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    scratch = path.with_name(path.name + ".partial")
    scratch.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    scratch.replace(path)


def subset_dataset(obj: dict[str, Any], qids: set[str]) -> dict[str, Any]:
    """A copy of a (validated) SQuAD object keeping only questions in `qids`, every other field
    as it was; paragraphs and articles left without questions are dropped."""
    articles = []
    for article in obj["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [qa for qa in paragraph["qas"] if qa["id"] in qids]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return {**obj, "data": articles}


def read_squad_json(obj: Any, source: str = "<json>") -> list[SquadExample]:
    """Examples from an already-parsed SQuAD object, in file order; see `read_squad`."""
    data = _get(obj, "data", list, source)
    examples: list[SquadExample] = []
    seen: dict[str, str] = {}
    for article_index, article in enumerate(data):
        where = f"{source}: article {article_index}"
        if not isinstance(article, dict):
            raise ValueError(f"{where}: expected an object, got {type(article).__name__}")
        # SQuAD always has a title, but other SQuAD-format sets may not; it is only metadata.
        title = _get(article, "title", str, where, default="")
        where = f"{where} ({title!r})" if title else where
        for paragraph_index, paragraph in enumerate(_get(article, "paragraphs", list, where)):
            p_where = f"{where}, paragraph {paragraph_index}"
            if not isinstance(paragraph, dict):
                raise ValueError(f"{p_where}: expected an object, got {type(paragraph).__name__}")
            context = _get(paragraph, "context", str, p_where)
            for qa_index, qa in enumerate(_get(paragraph, "qas", list, p_where)):
                q_where = f"{p_where}, question {qa_index}"
                example = _read_qa(qa, context, title, article_index, q_where, where)
                if example.qid in seen:
                    raise ValueError(
                        f"{where}, question {example.qid!r}: duplicate id "
                        f"(first seen in {seen[example.qid]})"
                    )
                seen[example.qid] = f"article {article_index}"
                examples.append(example)
    return examples


def _read_qa(
    qa: Any, context: str, title: str, article_index: int, where: str, article_where: str
) -> SquadExample:
    qid = _get(qa, "id", str, where)
    if not qid:
        raise ValueError(f"{where}: field 'id' is empty")
    # Once the id is known it names the question better than its position does.
    where = f"{article_where}, question {qid!r}"
    question = _get(qa, "question", str, where)
    is_impossible = _get(qa, "is_impossible", bool, where, default=False)
    raw_answers = _get(qa, "answers", list, where)
    answers = [_read_answer(raw, context, f"{where}: answers[{i}]")
               for i, raw in enumerate(raw_answers)]
    if is_impossible and answers:
        raise ValueError(f"{where}: field 'answers' must be empty when 'is_impossible' is true")
    if not is_impossible and not answers:
        raise ValueError(f"{where}: field 'answers' is empty but 'is_impossible' is not true")
    return SquadExample(qid, question, context, title, article_index, answers, is_impossible)


def _read_answer(raw: Any, context: str, where: str) -> Answer:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
    text = _get(raw, "text", str, where)
    start = _get(raw, "answer_start", int, where)
    if not text:
        raise ValueError(f"{where}: field 'text' is empty")
    if start < 0 or start + len(text) > len(context):
        raise ValueError(
            f"{where}: field 'answer_start' {start} is out of range for a {len(text)}-character "
            f"answer in a {len(context)}-character context"
        )
    found = context[start:start + len(text)]
    if found != text:
        raise ValueError(
            f"{where}: field 'text' {text!r} does not match the context at answer_start {start} "
            f"({found!r})"
        )
    return Answer(text, start)


_MISSING = object()


def _get(obj: dict, key: str, kind: type, where: str, default: Any = _MISSING) -> Any:
    """`obj[key]` checked to be a `kind`; a clear error naming `where` and the field otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        if default is not _MISSING:
            return default
        raise ValueError(f"{where}: missing field {key!r}")
    value = obj[key]
    # bool is a subclass of int; an answer_start of `true` is still a wrong type.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(
            f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}"
        )
    return value
