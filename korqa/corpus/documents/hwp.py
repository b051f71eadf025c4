"""HWP 5 (Hangul 2002 and later): an OLE compound file (read with olefile) whose BodyText/
SectionN streams hold zlib-compressed records, as the public spec "한글 문서 파일 형식 5.0"
describes them.

A record header is 32 bits: tag (10), level (10), size (12; 0xFFF: a 32-bit size follows).
Records nest by level: a paragraph (PARA_HEADER) owns its text (PARA_TEXT, UTF-16 with
control characters) and its controls (CTRL_HEADER); a table control owns its TABLE record and a
LIST_HEADER per cell, each followed by the cell's paragraphs. Tables become paragraphs of rows;
other controls (page headers and footers, notes, text boxes) are left out. A paragraph whose style
(DocInfo's STYLE records) is one of Hangul's outline styles ("개요 N") is a heading of level N.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import olefile

from korqa.corpus.documents import MAX_PART_BYTES, Section, UnreadableDocument, table_rows

SIGNATURE = b"HWP Document File"
HWP3_SIGNATURE = b"HWP Document File V3"
TAG_STYLE = 0x10 + 10
TAG_PARA_HEADER = 0x10 + 50
TAG_PARA_TEXT = 0x10 + 51
TAG_CTRL_HEADER = 0x10 + 55
TAG_LIST_HEADER = 0x10 + 56
TAG_TABLE = 0x10 + 61
FLAG_COMPRESSED, FLAG_PASSWORD, FLAG_DISTRIBUTION = 1, 2, 4
# Control characters that take one code unit; every other code below 32 takes eight.
_ONE_UNIT = {0, 10, 13, 24, 25, 26, 27, 28, 29, 30, 31}
_AS_TEXT = {9: "\t", 10: "\n", 24: "-", 30: " ", 31: " "}


def _ctrl(name: str) -> int:
    a, b, c, d = (ord(ch) for ch in name)
    return a << 24 | b << 16 | c << 8 | d


TABLE = _ctrl("tbl ")
OUTLINE_STYLE = re.compile(r"^(?:개요|Outline)\s*(\d)$")


@dataclass
class _Record:
    tag: int
    level: int
    data: bytes
    children: list[_Record] = field(default_factory=list)


def read(path: Path) -> list[Section]:
    data = path.read_bytes()[:32]
    if data.startswith(HWP3_SIGNATURE):
        raise UnreadableDocument("an HWP 3 file; save it as HWP 5 or HWPX in Hangul")
    if not olefile.isOleFile(str(path)):
        raise UnreadableDocument("not an HWP file (not an OLE compound file)")
    with olefile.OleFileIO(str(path)) as ole:
        if not ole.exists("FileHeader"):
            raise UnreadableDocument("not an HWP file (no FileHeader stream)")
        header = ole.openstream("FileHeader").read(40)
        if not header.startswith(SIGNATURE) or len(header) < 40:
            raise UnreadableDocument("not an HWP file (no HWP signature)")
        (flags,) = struct.unpack_from("<I", header, 36)
        if flags & FLAG_PASSWORD:
            raise UnreadableDocument("encrypted (password-protected HWP)")
        if flags & FLAG_DISTRIBUTION:
            raise UnreadableDocument("a distribution-only HWP (배포용 문서): its text is "
                                     "encrypted")
        compressed = bool(flags & FLAG_COMPRESSED)
        levels = _outline_levels(_stream(ole, "DocInfo", compressed)) \
            if ole.exists("DocInfo") else {}
        sections = sorted((entry for entry in ole.listdir()
                           if len(entry) == 2 and entry[0] == "BodyText"
                           and re.fullmatch(r"Section\d+", entry[1])),
                          key=lambda entry: int(entry[1][7:]))
        if not sections:
            raise UnreadableDocument("not an HWP file (no BodyText sections)")
        out: list[Section] = []
        for entry in sections:
            for record in _tree(_records(_stream(ole, "/".join(entry), compressed))):
                if record.tag == TAG_PARA_HEADER:
                    out.extend(_paragraph(record, levels))
    return out


def _stream(ole: olefile.OleFileIO, name: str, compressed: bool) -> bytes:
    raw = ole.openstream(name).read()
    if not compressed:
        return raw
    inflater = zlib.decompressobj(-15)
    data = inflater.decompress(raw, MAX_PART_BYTES)
    if inflater.unconsumed_tail:
        raise UnreadableDocument(f"{name} inflates beyond {MAX_PART_BYTES >> 20} MB")
    return data


def _records(data: bytes) -> list[_Record]:
    records = []
    position = 0
    while position + 4 <= len(data):
        (word,) = struct.unpack_from("<I", data, position)
        position += 4
        tag, level, size = word & 0x3FF, (word >> 10) & 0x3FF, word >> 20
        if size == 0xFFF:
            (size,) = struct.unpack_from("<I", data, position)
            position += 4
        if position + size > len(data):
            raise UnreadableDocument("damaged HWP file (a record runs past its stream)")
        records.append(_Record(tag, level, data[position:position + size]))
        position += size
    return records


def _tree(records: list[_Record]) -> list[_Record]:
    """Records nested by level: each one's children are the deeper records after it."""
    roots: list[_Record] = []
    stack: list[_Record] = []
    for record in records:
        while stack and stack[-1].level >= record.level:
            stack.pop()
        (stack[-1].children if stack else roots).append(record)
        stack.append(record)
    return roots


def _outline_levels(doc_info: bytes) -> dict[int, int]:
    """Style number → heading level, for the outline styles DocInfo defines."""
    levels = {}
    styles = [r for r in _records(doc_info) if r.tag == TAG_STYLE]
    for number, record in enumerate(styles):
        names = []
        position = 0
        for _ in range(2):  # the local name, then the English one
            (length,) = struct.unpack_from("<H", record.data, position)
            names.append(record.data[position + 2:position + 2 + 2 * length].decode(
                "utf-16-le", "replace"))
            position += 2 + 2 * length
        for name in names:
            match = OUTLINE_STYLE.match(name.strip())
            if match:
                levels[number] = int(match.group(1))
                break
    return levels


def _paragraph(record: _Record, levels: dict[int, int]) -> list[Section]:
    """A paragraph's text (a heading when its style is an outline one), then its tables."""
    text = "".join(_text(child.data) for child in record.children
                   if child.tag == TAG_PARA_TEXT).strip()
    style = record.data[10] if len(record.data) > 10 else 0
    out = [Section(text, levels.get(style))] if text else []
    for control in record.children:
        if control.tag == TAG_CTRL_HEADER and len(control.data) >= 4 and \
                struct.unpack_from("<I", control.data)[0] == TABLE:
            out.append(Section(table_rows(_rows(control))))
    return out


def _rows(control: _Record) -> list[list[str]]:
    """A table control's cells, placed by their row and column addresses."""
    cells: dict[tuple[int, int], list[str]] = {}
    current: list[str] | None = None
    for child in control.children:
        if child.tag == TAG_LIST_HEADER and len(child.data) >= 12:
            column, row = struct.unpack_from("<HH", child.data, 8)
            current = cells.setdefault((row, column), [])
        elif child.tag == TAG_PARA_HEADER and current is not None:
            current.extend(section.text for section in _paragraph(child, {}))
    if not cells:
        return []
    rows = [[" ".join(cells[r, c]) for (r, c) in sorted(cells) if r == row]
            for row in sorted({r for r, _ in cells})]
    return rows


def _text(units: bytes) -> str:
    """PARA_TEXT's UTF-16 with its control characters: breaks and spaces kept as text, inline
    and extended controls (8 code units each: tables, fields, pictures) dropped."""
    out = []
    count = len(units) // 2
    codes = struct.unpack(f"<{count}H", units[:count * 2])
    i = 0
    while i < count:
        code = codes[i]
        if code >= 32:
            start = i
            while i < count and codes[i] >= 32:
                i += 1
            out.append(units[start * 2:i * 2].decode("utf-16-le", "replace"))
            continue
        out.append(_AS_TEXT.get(code, ""))
        i += 1 if code in _ONE_UNIT else 8
    return "".join(out)
