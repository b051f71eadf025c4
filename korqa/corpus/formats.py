"""Every data file korqa reads, defined once and validated: SQuAD/KorQuAD JSON, kowiki JSONL,
text files and folders of them.

A corpus path means the same to `index`, `cloze`, `vocab`, `pretrain` and vocabulary trimming:

  .json, .json.gz     SQuAD format (KorQuAD): one document per article, titled by it; its
                      distinct contexts are the paragraphs (the questions: `read_squad`)
  .jsonl, .jsonl.xz   kowiki: one {"id", "title", "paragraphs"} document per line, streamed
  .txt, .md           one document: paragraphs are separated by blank lines and titled by
                      headings; UTF-8, else CP949 with a warning (`korqa.corpus.text`)
  .pdf, .docx, .hwp,  one document, read from its layout or structure, headings titling the
  .hwpx, .html, .htm  paragraphs as in .md (`korqa.corpus.documents`; the `documents` extra);
                      one that cannot be read is skipped with a warning, or an error with
                      `TextReading.strict`
  a folder            every file of those kinds but SQuAD JSON under it, recursively, in path
                      order. Files it skipped (unreadable, or of other kinds) are named in one
                      warning at the end

A document's id is its file's absolute path, plus `#` and its id inside a kowiki or SQuAD file
(`document_id`): two files never share one, and the same file gets the same ids each time.

Suffixes are matched without regard to case. Every error names the file and the field.
"""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from korqa.corpus.documents import DOCUMENT_SUFFIXES
from korqa.corpus.documents.files import SkippedFiles, document_file
from korqa.corpus.paragraph import Document, Paragraph, document_id, paragraph_id
from korqa.corpus.text import TextReading, read_text, text_document
from korqa.splits import title_key

log = logging.getLogger("korqa.corpus")

SQUAD_SUFFIXES = (".json", ".json.gz")
KOWIKI_SUFFIXES = (".jsonl", ".jsonl.xz")
MARKDOWN_SUFFIX = ".md"  # headings are `#` lines only (a .txt file also has title lines)
TEXT_SUFFIXES = (".txt", MARKDOWN_SUFFIX)
# A folder holds documents, not SQuAD sets.
FOLDER_SUFFIXES = KOWIKI_SUFFIXES + TEXT_SUFFIXES + DOCUMENT_SUFFIXES


# ---- JSON files -----------------------------------------------------------------------------


def load_json(path: str | Path) -> Any:
    """A JSON file's content (`.gz` read through gzip); a missing file or bad JSON is one clear
    error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if _is_gzip(path) else path.read_bytes()
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
    scratch.write_bytes(gzip.compress(raw) if _is_gzip(path) else raw)
    scratch.replace(path)


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


# ---- SQuAD / KorQuAD ------------------------------------------------------------------------


@dataclass
class GoldAnswer:
    """One gold answer of a dataset question: its text and the character offset where it
    starts in the context."""

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
    answers: list[GoldAnswer] = field(default_factory=list)
    is_impossible: bool = False


def read_squad(path: str | Path) -> list[SquadExample]:
    """Parse and validate a SQuAD v1.1 / KorQuAD 1.0 file (v2-style unanswerable questions too;
    `.json` or `.json.gz`); errors name the article, question and field."""
    return read_squad_json(load_json(path), source=str(path))


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


def squad_documents(obj: Any, source: str = "<json>",
                    path: Path | None = None) -> Iterator[Document]:
    """The documents of a SQuAD object (validated whole first): one per article, each distinct
    context once.

    The doc id is the article title (suffixed `#2`, `#3`… when a title repeats), qualified by
    the file `path` it was read from (`document_id`) when given, and a paragraph's index is its
    position in its article, so ids do not depend on which duplicates were skipped. A context
    already seen (in any article) is skipped: the first one wins.
    """
    read_squad_json(obj, source)
    return _squad_documents(obj, path)


def _squad_documents(obj: dict[str, Any], path: Path | None = None) -> Iterator[Document]:
    seen_contexts: set[str] = set()
    title_counts: dict[str, int] = {}
    for article in obj["data"]:
        title = article.get("title", "")
        title_counts[title] = title_counts.get(title, 0) + 1
        doc_id = title if title_counts[title] == 1 else f"{title}#{title_counts[title]}"
        doc_id = doc_id if path is None else document_id(path, doc_id)
        paragraphs = []
        for index, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            if context.strip() and context not in seen_contexts:
                seen_contexts.add(context)
                paragraphs.append(Paragraph(paragraph_id("squad", doc_id, index), title, context,
                                            doc_id))
        yield Document(doc_id, title, paragraphs)


def squad_texts(obj: Any, source: str = "<json>") -> Iterator[str]:
    """Every text of a SQuAD object a model reads: titles, contexts, questions, answers."""
    examples = read_squad_json(obj, source)
    for document in _squad_documents(obj):
        yield from document_texts(document)
    for example in examples:
        yield example.question
        yield from (answer.text for answer in example.answers)


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


# An HTML/XML tag as Wikipedia dumps leave them in contexts ("</b>", "<b data-parsoid='…'>").
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


def without_markup(obj: Any, drop_titles: Iterable[str] = (),
                   source: str = "<json>") -> tuple[dict[str, Any], dict[str, int]]:
    """A copy of a SQuAD object with markup tags cut out of its contexts and answers (answer
    offsets moved with them: an answer is what is left of its span) and without the articles
    titled as in `drop_titles`, and counts of what changed. An answer left empty is dropped;
    so is a question left without answers (unless unanswerable)."""
    read_squad_json(obj, source)
    dropped_titles = {title_key(title) for title in drop_titles}
    counts = {"articles_dropped": 0, "contexts_cleaned": 0, "answers_dropped": 0,
              "questions_dropped": 0}
    articles = []
    for article in obj["data"]:
        if title_key(article.get("title", "")) in dropped_titles:
            counts["articles_dropped"] += 1
            continue
        paragraphs = []
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            kept = _kept_spans(context)
            clean = "".join(context[a:b] for a, b in kept)
            counts["contexts_cleaned"] += clean != context
            qas = []
            for qa in paragraph["qas"]:
                answers = []
                for answer in qa.get("answers", []):
                    start = _moved(answer["answer_start"], kept)
                    end = _moved(answer["answer_start"] + len(answer["text"]), kept)
                    text = clean[start:end]
                    start += len(text) - len(text.lstrip())
                    if text.strip():
                        answers.append({**answer, "text": text.strip(), "answer_start": start})
                    else:
                        counts["answers_dropped"] += 1
                if answers or qa.get("is_impossible", False):
                    qas.append({**qa, "answers": answers})
                else:
                    counts["questions_dropped"] += 1
            if qas:
                paragraphs.append({**paragraph, "context": clean, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return {**obj, "data": articles}, counts


def _kept_spans(text: str) -> list[tuple[int, int]]:
    """The [start, end) runs of `text` outside markup tags."""
    spans, position = [], 0
    for tag in _TAG.finditer(text):
        if tag.start() > position:
            spans.append((position, tag.start()))
        position = tag.end()
    if position < len(text):
        spans.append((position, len(text)))
    return spans


def _moved(offset: int, kept: list[tuple[int, int]]) -> int:
    """Where character `offset` of the original lands once only the `kept` runs remain (a
    character inside a tag moves to the next kept one)."""
    removed = 0
    previous_end = 0
    for start, end in kept:
        removed += start - previous_end
        if offset < end:
            return max(offset, start) - removed
        previous_end = end
    return previous_end - removed  # past the last kept run: the end of the clean text


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


def _read_answer(raw: Any, context: str, where: str) -> GoldAnswer:
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
    return GoldAnswer(text, start)


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


# ---- kowiki JSONL ---------------------------------------------------------------------------


def kowiki_documents(path: str | Path) -> Iterator[Document]:
    """The documents of a kowiki-style JSONL file, plain or `.xz`, read line by line so a shard
    is never held in memory whole. A document's id is `document_id(path, its "id")`; a
    paragraph's index is its position in the document."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: corpus file not found")
    with _open_text(path) as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(doc, dict):
                raise ValueError(f"{where}: expected a JSON object per line")
            doc_id, title, paragraphs = doc.get("id"), doc.get("title"), doc.get("paragraphs")
            if isinstance(doc_id, int):
                doc_id = str(doc_id)
            if not isinstance(doc_id, str) or not doc_id:
                raise ValueError(f"{where}: field 'id' must be a non-empty string")
            if not isinstance(title, str):
                raise ValueError(f"{where}: field 'title' must be a string")
            if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
                raise ValueError(f"{where}: field 'paragraphs' must be a list of strings")
            doc_id = document_id(path, doc_id)
            yield Document(doc_id, title, [
                Paragraph(paragraph_id("kowiki", doc_id, index), title, text, doc_id)
                for index, text in enumerate(paragraphs) if text.strip()
            ])


def read_jsonl(path: str | Path, hint: str = "") -> list[Any]:
    """The values of a JSON-lines file that korqa appends to (a run's log, a cache), one per
    non-blank line. A last line that is not JSON is skipped: a process killed mid-write leaves
    it torn, and what it held is written again. A bad line before the last is an error naming
    the file and line, followed by `hint` (what to do about it)."""
    return [value for _, value in numbered_jsonl(path, hint, torn_end_ok=True)]


def numbered_jsonl(path: str | Path, hint: str = "", torn_end_ok: bool = False,
                   ) -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON-lines file; a line that is not
    JSON is an error naming the file and line (and `hint`), except a torn last line when
    `torn_end_ok` (files korqa appends to; a file a person wrote has no torn end)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    values = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            if number < len(lines) or not torn_end_ok:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg})"
                                 + (f"; {hint}" if hint else "")) from None
    return values


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


# ---- text files -----------------------------------------------------------------------------


def text_file_document(path: str | Path, reading: TextReading | None = None) -> Document | None:
    """One .txt/.md file as a document (its id: `document_id(path)`): paragraphs split on blank
    lines, headings title them and the document's title is its first heading, else the file
    stem (`korqa.corpus.text`).

    The file is decoded as `reading` says (UTF-8, else CP949, with a warning); an unreadable
    file is None under `reading.skip_bad` and a ValueError otherwise.
    """
    path = Path(path)
    text = read_text(path, reading or TextReading())
    if text is None:
        return None
    return text_to_document(text, document_id(path), path.stem,
                            markdown=path.suffix.lower() == MARKDOWN_SUFFIX)


def text_to_document(text: str, doc_id: str, default_title: str, markdown: bool,
                     source_kind: str = "file") -> Document:
    """Text as one document, split by `korqa.corpus.text` (the one splitter of text files and
    of text posted to `korqa serve`): its title is its first heading, else `default_title`;
    paragraph ids are `<source_kind>:<doc_id>:<block number>`."""
    title, blocks = text_document(text, default_title, markdown)
    return Document(doc_id, title, [
        Paragraph(paragraph_id(source_kind, doc_id, index), section, block, doc_id)
        for index, section, block in blocks])


# ---- paths: files and folders ---------------------------------------------------------------


def corpus_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files behind corpus `paths`: files as given (checked to be a known kind), folders
    expanded to the files of the kinds a folder holds (`FOLDER_SUFFIXES`)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(folder_files(path))
        elif not path.exists():
            raise FileNotFoundError(f"{path}: corpus path not found")
        else:
            kind_of(path)
            files.append(path)
    return files


def folder_files(folder: Path) -> list[Path]:
    """Every file of a kind a folder holds (`FOLDER_SUFFIXES`) under `folder`, recursively,
    in path order."""
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.name.lower().endswith(FOLDER_SUFFIXES))
    if not files:
        raise ValueError(f"{folder}: no {', '.join(FOLDER_SUFFIXES)} files in this folder")
    return files


def other_files(folder: Path) -> list[Path]:
    """The files under `folder` of kinds a folder does not hold, hidden ones (and Office's
    `~$` lock files) left out."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.lower().endswith(FOLDER_SUFFIXES)
                  and not p.name.startswith("~$")
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def kind_of(path: Path) -> str:
    """The kind of a corpus file by its suffix: "squad", "kowiki", "text" or "document"."""
    name = path.name.lower()
    if name.endswith(KOWIKI_SUFFIXES):
        return "kowiki"
    if name.endswith(SQUAD_SUFFIXES):
        return "squad"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(DOCUMENT_SUFFIXES):
        return "document"
    raise ValueError(f"{path}: unknown corpus kind (expected a folder, "
                     f"{', '.join(SQUAD_SUFFIXES + FOLDER_SUFFIXES)})")


def file_documents(path: Path, reading: TextReading | None = None,
                   skipped: SkippedFiles | None = None) -> Iterator[Document]:
    """The documents of one corpus file, by its kind. A file skipped as unreadable is noted in
    `skipped`."""
    kind = kind_of(path)
    if kind == "kowiki":
        yield from kowiki_documents(path)
    elif kind == "squad":
        yield from squad_documents(load_json(path), source=str(path), path=path)
    elif kind == "document":
        if (document := document_file(path, reading, skipped)) is not None:
            yield document
    elif (document := text_file_document(path, reading)) is not None:
        yield document
    elif skipped is not None:
        skipped.files.append((path, "cannot be read as text"))


def iter_documents(
    paths: Iterable[str | Path], reading: TextReading | None = None
) -> Iterator[Document]:
    """The documents of every corpus path (files and folders), in order; a folder ends with
    one warning naming the files it skipped."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            skipped = SkippedFiles()
            for file in folder_files(path):
                yield from file_documents(file, reading, skipped)
            if (summary := skipped.summary(path, other_files(path))) is not None:
                log.warning("%s", summary)
        elif not path.exists():
            raise FileNotFoundError(f"{path}: corpus path not found")
        else:
            yield from file_documents(path, reading=reading)


def load_corpus(
    paths: Iterable[str | Path], reading: TextReading | None = None
) -> Iterator[Paragraph]:
    """The paragraphs of every corpus path, streamed; `reading` says how .txt/.md files are
    decoded (JSON is always UTF-8)."""
    for document in iter_documents(paths, reading):
        yield from document.paragraphs


def document_texts(document: Document) -> Iterator[str]:
    """A document's title, then each paragraph (after its section title, where it has one)."""
    yield document.title
    for paragraph in document.paragraphs:
        if paragraph.title != document.title:
            yield paragraph.title
        yield paragraph.text
