"""Readers for office documents and web pages: PDF, DOCX, HWP 5, HWPX and HTML.

Each reader turns one file into its outline: headings (level 1 = top) and paragraphs in
reading order, tables as one paragraph of rows ("셀 | 셀 | 셀"). `korqa.corpus.formats` titles
the paragraphs from it as it does for .md files ("제목 › 소제목"). The libraries behind them (the
`documents` extra; bench/documents.py measured the choice) are imported only when such a file
is read; HWPX needs only the standard library.

A file that cannot be read raises UnreadableDocument, whose message says why in a few words
(encrypted, no text layer, not a Word document, …); a missing library raises MissingExtra.
"""

from __future__ import annotations

import importlib
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from korqa.extras import install_hint

# suffix → (reader module, what the file is called in messages)
READERS: dict[str, tuple[str, str]] = {
    ".pdf": ("pdf", "PDF"),
    ".docx": ("docx", "Word (DOCX)"),
    ".hwp": ("hwp", "HWP"),
    ".hwpx": ("hwpx", "HWPX"),
    ".html": ("html", "HTML"),
    ".htm": ("html", "HTML"),
}
DOCUMENT_SUFFIXES = tuple(READERS)
EXTRA = "documents"
# A zip member or decompressed stream larger than this is refused (a zip bomb, not a document).
MAX_PART_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Section:
    """One piece of a document's outline: a heading (`level` 1 = top) or a paragraph (None)."""

    text: str
    level: int | None = None


class UnreadableDocument(ValueError):
    """A document file that cannot be read; the message says why, briefly."""


class MissingExtra(UnreadableDocument):
    """The library that reads this kind of file is not installed."""


def is_document(path: Path) -> bool:
    return path.suffix.lower() in READERS


def read_document(path: Path) -> list[Section]:
    """The outline of the document file `path` (its kind from its suffix).

    Raises UnreadableDocument (the file is damaged, encrypted, of another kind, or holds no
    text) or MissingExtra; other errors are bugs and pass through."""
    module_name, _ = READERS[path.suffix.lower()]
    try:
        reader = importlib.import_module(f"korqa.corpus.documents.{module_name}")
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("korqa"):
            raise MissingExtra(f"needs the {EXTRA} extra ({error.name} is not installed): "
                               f"{install_hint(EXTRA)}") from None
        raise
    try:
        sections = reader.read(path)
    except UnreadableDocument:
        raise
    except OSError as error:
        raise UnreadableDocument(error.strerror or str(error)) from None
    except (zipfile.BadZipFile, zlib.error, struct.error, EOFError, SyntaxError) as error:
        # SyntaxError: ElementTree's and lxml's XML errors derive from it.
        raise UnreadableDocument(f"damaged or not a {READERS[path.suffix.lower()][1]} file "
                                 f"({_short(error)})") from None
    if not any(section.text.strip() for section in sections):
        raise UnreadableDocument("holds no text")
    return sections


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:120] if text else type(error).__name__


def open_zip(path: Path, kind: str) -> zipfile.ZipFile:
    """`path` as a zip archive (DOCX, HWPX), checked not to inflate beyond MAX_PART_BYTES."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UnreadableDocument(f"not a {kind} file (not a zip archive)") from None
    if any(info.file_size > MAX_PART_BYTES for info in archive.infolist()):
        archive.close()
        raise UnreadableDocument(f"a part inflates beyond {MAX_PART_BYTES >> 20} MB")
    return archive


def table_rows(rows: list[list[str]]) -> str:
    """A table as text: a line per row, its non-empty cells joined by " | " (a cell's own
    line breaks become spaces)."""
    lines = []
    for row in rows:
        cells = [text for text in (" ".join(cell.split()) for cell in row) if text]
        if cells:
            lines.append(" | ".join(cells))
    return "\n".join(lines)
