"""Corpus loaders: KorQuAD/SQuAD JSON, kowiki JSONL(.xz), folders of .txt/.md; all streaming."""

from __future__ import annotations

import json
import lzma
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from korqa.corpus.paragraph import Paragraph, paragraph_id
from korqa.corpus.text import TextReading, read_text, text_paragraphs

TEXT_SUFFIXES = (".txt", ".md")


def iter_squad(path: str | Path) -> Iterator[Paragraph]:
    """Paragraphs of a SQuAD v1.1-format file (KorQuAD): each distinct context once.

    The doc id is the article title (suffixed `#2`, `#3`… when a title repeats) and the index is
    the paragraph's position in its article, so ids do not depend on which duplicates were
    skipped. A context already seen (in any article) is skipped: the first occurrence wins.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: not SQuAD format: top-level field 'data' (a list) is missing")
    seen_contexts: set[str] = set()
    title_counts: dict[str, int] = {}
    for a_index, article in enumerate(data["data"]):
        where = f"{path}: data[{a_index}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise ValueError(f"{where}: field 'paragraphs' (a list) is missing")
        title = article.get("title", "")
        if not isinstance(title, str):
            raise ValueError(f"{where}: field 'title' must be a string")
        title_counts[title] = title_counts.get(title, 0) + 1
        doc_id = title if title_counts[title] == 1 else f"{title}#{title_counts[title]}"
        for p_index, paragraph in enumerate(article["paragraphs"]):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str):
                raise ValueError(f"{where}.paragraphs[{p_index}]: field 'context' must be a string")
            if not context.strip() or context in seen_contexts:
                continue
            seen_contexts.add(context)
            yield Paragraph(paragraph_id("squad", doc_id, p_index), title, context, doc_id)


def iter_jsonl(path: str | Path) -> Iterator[Paragraph]:
    """Paragraphs of a kowiki-style JSONL file, plain or `.xz`: one `{"id","title","paragraphs"}`
    document per line, read line by line so a shard is never held in memory whole."""
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
            for index, text in enumerate(paragraphs):
                if text.strip():
                    yield Paragraph(paragraph_id("kowiki", doc_id, index), title, text, doc_id)


def iter_text_file(
    path: str | Path, doc_id: str | None = None, reading: TextReading | None = None
) -> Iterator[Paragraph]:
    """Paragraphs of one .txt/.md file, split on blank lines; headings title them and the
    document's title is its first heading, else the file stem (`korqa.corpus.text`).

    The file is decoded as `reading` says (UTF-8, else CP949, with a warning); an unreadable
    file yields nothing under `reading.skip_bad` and raises ValueError otherwise.
    """
    path = Path(path)
    text = read_text(path, reading or TextReading())
    if text is None:
        return
    doc_id = doc_id or path.name
    for index, title, block in text_paragraphs(text, path.stem, markdown=path.suffix == ".md"):
        yield Paragraph(paragraph_id("file", doc_id, index), title, block, doc_id)


def iter_text_folder(folder: str | Path, reading: TextReading | None = None) -> Iterator[Paragraph]:
    """Paragraphs of every .txt/.md file under `folder` (recursively, in sorted path order).

    The doc id is the path relative to the folder (`sub/busan.txt`), so moving the folder keeps
    the ids.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no {'/'.join(TEXT_SUFFIXES)} files in this folder")
    for file in files:
        yield from iter_text_file(file, file.relative_to(folder).as_posix(), reading)


def load_corpus(
    paths: Iterable[str | Path], reading: TextReading | None = None
) -> Iterator[Paragraph]:
    """Paragraphs of every path, dispatched by kind: a folder, `.json` (SQuAD/KorQuAD),
    `.jsonl`/`.jsonl.xz` (kowiki), or a single `.txt`/`.md` file. `reading` says how .txt/.md
    files are decoded (JSON is always UTF-8)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from iter_text_folder(path, reading)
        elif not path.exists():
            raise FileNotFoundError(f"{path}: corpus path not found")
        elif path.name.endswith((".jsonl", ".jsonl.xz")):
            yield from iter_jsonl(path)
        elif path.suffix == ".json":
            yield from iter_squad(path)
        elif path.suffix in TEXT_SUFFIXES:
            yield from iter_text_file(path, reading=reading)
        else:
            raise ValueError(
                f"{path}: unknown corpus kind (expected a folder, .json, .jsonl, .jsonl.xz, "
                ".txt or .md)"
            )


def _read_json(path: Path) -> object:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")
