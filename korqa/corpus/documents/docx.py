"""Word documents (.docx) through python-docx: the body's paragraphs and tables in order.

A paragraph is a heading when its style is a heading style ("Heading N", shown as "제목 N" in
a Korean Word) or carries an outline level, and a title ("Title") is a level-1 heading; page
headers and footers are not part of the body, so they are left out. A table becomes a paragraph
of rows, a merged cell once.
"""

from __future__ import annotations

import re
from pathlib import Path

from docx import Document
from docx.opc.exceptions import OpcError
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from korqa.corpus.documents import Section, UnreadableDocument, open_zip, table_rows

HEADING_STYLE = re.compile(r"^(?:heading|제목)\s*(\d)$", re.IGNORECASE)
WORD_MAIN = "word/document.xml"


def read(path: Path) -> list[Section]:
    with open_zip(path, "Word (DOCX)") as archive:
        if WORD_MAIN not in archive.namelist():
            raise UnreadableDocument("not a Word (DOCX) file: a zip without word/document.xml")
    try:
        document = Document(str(path))
    except (OpcError, KeyError, ValueError) as error:
        raise UnreadableDocument(f"not a Word (DOCX) file ({error})") from None
    out: list[Section] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if text:
                out.append(Section(text, heading_level(block)))
        elif isinstance(block, Table):
            out.append(Section(table_rows(_rows(block))))
    return out


def heading_level(paragraph: Paragraph) -> int | None:
    """1 for a Title, N for Heading N or an outline level N-1, else None."""
    style = paragraph.style
    while style is not None:
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 1
        match = HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        level = _outline_level(style.element)
        if level is not None:
            return level
        style = style.base_style
    return _outline_level(paragraph._p)


def _outline_level(element) -> int | None:  # an oxml element with an optional w:pPr
    properties = element.find(qn("w:pPr"))
    outline = None if properties is None else properties.find(qn("w:outlineLvl"))
    if outline is None:
        return None
    value = int(outline.get(qn("w:val"), "9"))
    return value + 1 if value < 9 else None  # 9 is "body text"


def _rows(table: Table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell appears once per column it spans
                continue
            seen.add(id(cell._tc))
            nested = [table_rows(_rows(inner)) for inner in cell.tables]
            cells.append(" ".join([cell.text, *nested]))
        rows.append(cells)
    return rows
