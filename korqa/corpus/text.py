"""Plain-text documents (.txt/.md): decoding Korean files as they come, and their headings.

Decoding tries UTF-8 first (with or without a byte-order mark), UTF-16 when the file starts
with its byte-order mark (Notepad's "Unicode"), and then CP949, the superset of EUC-KR that
Korean Windows saves by default (or the encoding given as `TextReading.encoding`). A file read
as anything but UTF-8 is named in a warning. The result must also look like text: no NUL
byte (unless `encoding` names one, like UTF-16, whose text has them), at most 1% control
characters, and, for a guessed CP949, mostly Hangul among the non-ASCII characters, since
random bytes often decode as CP949 Hanja and symbols.

Headings (`text_document`) title the paragraphs under them and are never paragraphs:

- `# 제목` … `###### 제목` lines (a space after the #s; not inside ``` fences), in .md and .txt;
- a line underlined by `===` or `---` (a setext heading: the two lines are the whole block);
- in .txt only, a short title line: a block of one line of at most 30 characters that does not
  end like a sentence (. ? ! … : ; , or the endings 다/요), is not a list item, and is followed
  by a paragraph; two such lines in a row are a title and a section. Three or more in a row
  (a poem, an address) stay paragraphs.

The document's title is its first heading (else the file stem); later headings are sections,
nested by level, shown as "한라산 › 등산로". A paragraph's number in its id is the position of
its block in the file, a heading counting as a block of its own, so headings that stand apart
from the text (blank lines around them) leave every paragraph's id as it was before. A block
longer than MAX_PARAGRAPH_CHARS is cut into pieces of at most that length, each ending at a
sentence end (else a space) where one falls in its second half; each piece counts as a block.

This is the one splitter of text into paragraphs: files (`korqa.corpus.formats`) and text
posted to `korqa serve` go through it alike.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("korqa.corpus")

# Bumped whenever corpus files (korqa.corpus.formats) are read into different paragraphs or
# ids, so that indexes cached by an earlier korqa (korqa.pipeline.sources) are rebuilt.
TEXT_RULES_VERSION = 5
FALLBACK_ENCODING = "cp949"
SECTION_SEPARATOR = " › "
TITLE_MAX_CHARS = 30
MAX_PARAGRAPH_CHARS = 20_000

# C0/C1 controls other than tab, newlines, vertical tab and form feed; U+FFFD; private use.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff]")
_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f\s]")
_SLICE = 1000
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^([-*+•·▪]|\d+[.)])\s")
_SENTENCE_END = (".", "?", "!", "…", ":", ";", ",", "。", "？", "！", "다", "요")
_CUT_AT = re.compile(r"[.?!。]\s")


@dataclass(frozen=True)
class TextReading:
    """How .txt/.md files are read.

    `encoding`: tried after UTF-8 instead of CP949 (UTF-8 files are always read as UTF-8).
    `skip_bad`: a file that cannot be read as text is skipped with a warning, not an error.
    `strict`: a document file (PDF, DOCX, HWP, HWPX, HTML) that cannot be read stops the
    indexing, instead of being skipped with a warning (korqa.corpus.documents).
    """

    # The "help" metadata is the command line's (korqa.cli_options): index, ask, chat, serve …
    encoding: str | None = field(default=None, metadata={
        "help": ".txt/.md files that are not UTF-8 are read in this encoding (default: "
                "detected: UTF-8 with or without BOM, UTF-16 with BOM, else CP949/EUC-KR; each "
                "file not read as UTF-8 is named in a warning)", "metavar": "NAME"})
    skip_bad: bool = field(default=False, metadata={
        "help": "skip .txt/.md files that cannot be read as text (binary files, unknown "
                "encodings) with a warning (default: such a file is an error)"})
    strict: bool = field(default=False, metadata={
        "help": "stop at the first PDF, DOCX, HWP, HWPX or HTML file that cannot be read "
                "(encrypted, damaged, no text layer, its extra missing) instead of skipping it "
                "with a warning"})

    def __post_init__(self) -> None:
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"--encoding {self.encoding!r}: unknown encoding "
                                 "(e.g. cp949, euc-kr, utf-16, shift_jis)") from None


class UnreadableText(ValueError):
    """Bytes that are not text in any encoding tried; the message says why."""


def decode_text(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """`data` as text and the name of the encoding that read it (see the module docstring).

    `encoding` replaces CP949 as the one tried after UTF-8. Raises UnreadableText.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, used = _strict(data, "utf-16"), "utf-16"
    elif b"\x00" in data and encoding is None:
        raise UnreadableText(f"byte {data.index(0)} is NUL: a binary file, not text")
    elif b"\x00" in data:  # NUL is valid UTF-8, but such a file can only be UTF-16/32 text
        used = codecs.lookup(encoding).name
        text = _strict(data, used)
    else:
        try:
            text, used = data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError as error:
            used = codecs.lookup(encoding or FALLBACK_ENCODING).name
            try:
                text = data.decode(used)
            except UnicodeDecodeError as other:
                raise UnreadableText(f"neither UTF-8 (byte {error.start}) nor "
                                     f"{used.upper()} (byte {other.start})") from None
            if encoding is None:
                _check_hangul(text, used)
    controls = len(_CONTROL.findall(text))
    if controls * 100 > len(text):
        raise UnreadableText(f"read as {used.upper()}, {controls} of its {len(text)} characters "
                             "are control characters: a binary file, or another encoding")
    return text, used


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise UnreadableText(f"not {encoding.upper()} (byte {error.start})") from None


def _check_hangul(text: str, encoding: str) -> None:
    # Garbage decodes as garbage throughout, so 100 evenly spaced slices judge a long file.
    step = max(len(text) // 100, _SLICE)
    sample = "".join(text[i:i + _SLICE] for i in range(0, len(text), step))
    foreign = len(_NON_ASCII.findall(sample))
    if len(_HANGUL.findall(sample)) * 2 < foreign:
        raise UnreadableText(f"not UTF-8, and read as {encoding.upper()} it is mostly not Hangul "
                             "(random bytes, or another encoding)")


def read_text(path: Path, reading: TextReading) -> str | None:
    """The text of the file `path`; None (after a warning) if it is unreadable and
    `reading.skip_bad`, else a ValueError naming the file and the fix."""
    try:
        text, used = decode_text(path.read_bytes(), reading.encoding)
    except UnreadableText as error:
        if reading.skip_bad:
            log.warning("%s: skipped, not indexed: %s", path, error)
            return None
        raise ValueError(f"{path}: cannot be read as text: {error}. If it is text in another "
                         "encoding, pass --encoding NAME; to index the other files without it, "
                         "pass --skip-bad") from None
    except OSError as error:
        if reading.skip_bad:
            log.warning("%s: skipped, not indexed: %s", path, error.strerror)
            return None
        raise ValueError(f"{path}: cannot be read: {error.strerror}; to index the other files "
                         "without it, pass --skip-bad") from None
    if used != "utf-8":
        log.warning("%s: not UTF-8; read as %s", path, used.upper())
    return text


@dataclass(frozen=True)
class _Block:
    text: str
    level: int | None  # a heading's level (1 = top); None for a paragraph
    whole: bool  # the block is all of one blank-line-separated block of the file


def text_document(text: str, stem: str, markdown: bool) -> tuple[str, list[tuple[int, str, str]]]:
    """A text file's title and the (number, title, text) of each of its paragraphs (see the
    module docstring)."""
    blocks = _blocks(text)
    if not markdown:
        blocks = _plain_titles(blocks)
    return _titled(blocks, stem)


def outline_document(outline: Iterable[tuple[str, int | None]],
                     stem: str) -> tuple[str, list[tuple[int, str, str]]]:
    """As `text_document`, for a document read as an outline (korqa.corpus.documents): its
    (text, heading level or None) pieces in order, a heading titling the paragraphs under it."""
    return _titled([_Block(text, level, True) for text, level in outline if text.strip()], stem)


def _titled(blocks: list[_Block], stem: str) -> tuple[str, list[tuple[int, str, str]]]:
    headings = [b for b in blocks if b.level is not None]
    doc_title = headings[0].text if headings else stem
    return doc_title, list(_paragraphs(blocks, doc_title))


def document_title(paragraph_title: str) -> str:
    """The title of the document a paragraph titled `paragraph_title` belongs to: the title's
    part before its sections ("한라산 › 등산로" → "한라산"), as `text_document` joins them."""
    return paragraph_title.split(SECTION_SEPARATOR, 1)[0]


def cut_long(text: str, limit: int = MAX_PARAGRAPH_CHARS) -> list[str]:
    """`text` in pieces of at most `limit` characters, each ending at a sentence end (else a
    space) where one falls in the second half of the piece; blank pieces are dropped."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        ends = [m.end() for m in _CUT_AT.finditer(window)] or \
            [i + 1 for i, c in enumerate(window) if c.isspace()]
        cut = ends[-1] if ends and ends[-1] > limit // 2 else limit
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    return [p for p in [*pieces, text.strip()] if p]


def _paragraphs(blocks: list[_Block], doc_title: str) -> Iterator[tuple[int, str, str]]:
    sections: list[tuple[int, str]] = []
    first = True
    for number, block in enumerate(blocks):
        if block.level is None:
            yield number, SECTION_SEPARATOR.join([doc_title, *(t for _, t in sections)]), \
                block.text
        elif first:
            first = False  # the document's title
        else:
            while sections and sections[-1][0] >= block.level:
                sections.pop()
            sections.append((block.level, block.text))


def _blocks(text: str) -> list[_Block]:
    """Blank-line-separated blocks, with `#` heading lines split off as blocks of their own."""
    blocks: list[_Block] = []
    fenced = False
    for raw in _BLANK_LINES.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        if not raw.strip():
            continue
        lines = raw.strip().split("\n")
        if not fenced and len(lines) == 2 and _SETEXT.match(lines[1]) and \
                not _ATX.match(lines[0]) and not _FENCE.match(lines[0]):
            blocks.append(_Block(lines[0].strip(), 1 if "=" in lines[1] else 2, True))
            continue
        body: list[str] = []
        parts: list[_Block] = []
        for line in lines:
            if _FENCE.match(line):
                fenced = not fenced
            heading = None if fenced else _ATX.match(line)
            if heading is None:
                body.append(line)
                continue
            if "\n".join(body).strip():
                parts.append(_Block("\n".join(body).strip(), None, False))
            body = []
            parts.append(_Block(heading.group(2).strip(), len(heading.group(1)), False))
        if "\n".join(body).strip():
            parts.append(_Block("\n".join(body).strip(), None, False))
        if len(parts) == 1:
            parts = [_Block(parts[0].text, parts[0].level, True)]
        for part in parts:
            if part.level is None and len(part.text) > MAX_PARAGRAPH_CHARS:
                blocks.extend(_Block(piece, None, False) for piece in cut_long(part.text))
            else:
                blocks.append(part)
    return blocks


def _title_like(block: _Block) -> bool:
    text = block.text
    return (block.level is None and block.whole and "\n" not in text
            and len(text) <= TITLE_MAX_CHARS and not text.endswith(_SENTENCE_END)
            and not _LIST_ITEM.match(text))


def _plain_titles(blocks: list[_Block]) -> list[_Block]:
    """Turn runs of one or two title-like lines that a paragraph follows into headings."""
    out = list(blocks)
    start = 0
    while start < len(out):
        end = start
        while end < len(out) and _title_like(out[end]):
            end += 1
        followed = end < len(out) and out[end].level is None
        if 0 < end - start <= 2 and followed:
            base = 2 if any(b.level is not None for b in out[:start]) else 1
            for offset, i in enumerate(range(start, end)):
                out[i] = _Block(out[i].text, base + offset, True)
        start = end + 1 if end > start else start + 1
    return out
