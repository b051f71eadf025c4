"""Office documents and web pages as corpus files: one file read into a titled document
(`document_file`), and the files a folder skipped, named in one summary line (`SkippedFiles`).
`korqa.corpus.formats` calls them for the suffixes of `DOCUMENT_SUFFIXES`."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from korqa.corpus.documents import MissingExtra, UnreadableDocument, read_document
from korqa.corpus.paragraph import Document, Paragraph, document_id, paragraph_id
from korqa.corpus.text import TextReading, outline_document

log = logging.getLogger("korqa.corpus")


class SkippedFiles:
    """The files a corpus path skipped and why, for the one summary line at its end; warns
    about each file as it is skipped, but only once about a missing extra."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []
        self._extra_warned = False

    def skip(self, path: Path, reason: str, missing_extra: bool = False) -> None:
        self.files.append((path, "its extra is not installed" if missing_extra else reason))
        if not missing_extra:
            log.warning("%s: skipped, not indexed: %s", path, reason)
        elif not self._extra_warned:
            self._extra_warned = True
            log.warning("%s: skipped, not indexed: this kind of file %s", path, reason)

    def summary(self, folder: Path, others: list[Path]) -> str | None:
        """One line naming every file skipped and why, and counting the files of other kinds
        by suffix; None when nothing was skipped."""
        if not self.files and not others:
            return None
        named = [f"{path.relative_to(folder).as_posix()}: {reason}"
                 for path, reason in self.files]
        if others:
            kinds = Counter(path.suffix.lower() or "(no suffix)" for path in others)
            named.append(f"{len(others)} file{'s' * (len(others) > 1)} of kinds korqa does not "
                         "read (" + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
                         + ")")
        count = len(self.files) + len(others)
        return f"{folder}: skipped {count} file{'s' * (count > 1)} — " + "; ".join(named)


def titled_blocks(path: Path, default_title: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The title of the document file `path` (its first heading, else `default_title`) and the
    (number, section title, text) of each paragraph, headings titling the paragraphs under
    them as in .md files. Raises UnreadableDocument (or MissingExtra)."""
    return outline_document(((s.text, s.level) for s in read_document(path)), default_title)


def document_file(path: Path, reading: TextReading | None = None,
                  skipped: SkippedFiles | None = None) -> Document | None:
    """A PDF, DOCX, HWP, HWPX or HTML file as a document (`korqa.corpus.documents`), its
    headings titling its paragraphs as in .md files. One that cannot be read is None, after a
    warning (noted in `skipped`), or a ValueError with `reading.strict`."""
    reading = reading or TextReading()
    try:
        title, blocks = titled_blocks(path, path.stem)
    except UnreadableDocument as error:
        if reading.strict:
            raise ValueError(f"{path}: cannot be read: {error}") from None
        (skipped or SkippedFiles()).skip(path, str(error), isinstance(error, MissingExtra))
        return None
    doc_id = document_id(path)
    return Document(doc_id, title, [Paragraph(paragraph_id("file", doc_id, index), section,
                                              block, doc_id) for index, section, block in blocks])
