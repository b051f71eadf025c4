"""HWPX (Hangul's OWPML, KS X 6101): a zip of XML parts, read with the standard library.

The sections are Contents/section*.xml in the order the package's spine lists them (else by
number). A paragraph (`hp:p`) is the text of its runs (`hp:t`); a table (`hp:tbl`) becomes a
paragraph of rows, each cell the text of its paragraphs; page headers, footers, footnotes and
endnotes are left out. A paragraph whose style is one of Hangul's outline styles ("개요 N",
"Outline N") is a heading of level N.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from korqa.corpus.documents import Section, UnreadableDocument, open_zip, table_rows

PARAGRAPH_NS = "http://www.hancom.co.kr/hwpml/2011/paragraph"
HEAD_NS = "http://www.hancom.co.kr/hwpml/2011/head"
_P, _RUN, _T, _TBL, _TR, _TC = (f"{{{PARAGRAPH_NS}}}{name}"
                                for name in ("p", "run", "t", "tbl", "tr", "tc"))
_SKIPPED = {f"{{{PARAGRAPH_NS}}}{name}"
            for name in ("header", "footer", "footNote", "endNote", "fieldBegin")}
_SECTION = re.compile(r"^Contents/section(\d+)\.xml$")
OUTLINE_STYLE = re.compile(r"^(?:개요|Outline)\s*(\d)$")


def read(path: Path) -> list[Section]:
    with open_zip(path, "HWPX") as archive:
        names = archive.namelist()
        sections = sorted((n for n in names if _SECTION.match(n)),
                          key=lambda n: int(_SECTION.match(n).group(1)))  # type: ignore[union-attr]
        if not sections:
            kind = "an encrypted HWPX" if "META-INF/manifest.xml" in names and \
                _encrypted(archive) else "not an HWPX file"
            raise UnreadableDocument(f"{kind} (no Contents/section0.xml)")
        if _encrypted(archive):
            raise UnreadableDocument("encrypted (password-protected HWPX)")
        levels = outline_levels(archive)
        out: list[Section] = []
        for name in sections:
            root = ET.fromstring(archive.read(name))
            for paragraph in root:
                if paragraph.tag == _P:
                    out.extend(_paragraph(paragraph, levels))
    return out


def _encrypted(archive: zipfile.ZipFile) -> bool:
    try:
        manifest = archive.read("META-INF/manifest.xml")
    except KeyError:
        return False
    return b"encryption-data" in manifest


def outline_levels(archive: zipfile.ZipFile) -> dict[str, int]:
    """Style id → heading level, for the outline styles Contents/header.xml defines."""
    try:
        head = ET.fromstring(archive.read("Contents/header.xml"))
    except KeyError:
        return {}
    levels = {}
    for style in head.iter(f"{{{HEAD_NS}}}style"):
        for name in (style.get("name", ""), style.get("engName", "")):
            match = OUTLINE_STYLE.match(name.strip())
            if match:
                levels[style.get("id", "")] = int(match.group(1))
                break
    return levels


def _paragraph(paragraph: ET.Element, levels: dict[str, int]) -> list[Section]:
    """A paragraph's text, then the tables in it."""
    text: list[str] = []
    tables: list[Section] = []
    for run in paragraph:
        if run.tag != _RUN:
            continue
        for child in run:
            if child.tag == _T:
                text.append("".join(child.itertext()))
            elif child.tag == _TBL:
                tables.append(Section(table_rows(_rows(child))))
    joined = "".join(text).strip()
    head = [Section(joined, levels.get(paragraph.get("styleIDRef", "")))] if joined else []
    return head + tables


def _rows(table: ET.Element) -> list[list[str]]:
    return [[" ".join(_texts(cell)) for cell in row if cell.tag == _TC]
            for row in table if row.tag == _TR]


def _texts(element: ET.Element) -> list[str]:
    """The text of every paragraph under `element` (nested tables' too), headers and notes
    left out."""
    out = []
    for child in element:
        if child.tag in _SKIPPED:
            continue
        if child.tag == _P:
            out.append("".join("".join(t.itertext()) for t in _own_texts(child)))
            out.extend(text for run in child if run.tag == _RUN
                       for table in run if table.tag == _TBL for text in _texts(table))
        else:
            out.extend(_texts(child))
    return [text for text in out if text.strip()]


def _own_texts(paragraph: ET.Element) -> list[ET.Element]:
    return [t for run in paragraph if run.tag == _RUN for t in run if t.tag == _T]
