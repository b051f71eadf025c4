"""PDF through pypdfium2 (Google's PDFium): paragraphs rebuilt from the layout, one page at a
time so that a long file never has more than one page open.

PDFium gives each page's text runs with their boxes. Runs on one baseline make a line (runs
far apart, like table cells, are joined by " | "). Lines make paragraphs; a new one starts at a
vertical gap clearly wider than the document's usual line gap, at an indented first line, after
a short line that ends a sentence, and where the type size changes. Lines in clearly larger
type than the body are headings, levelled by size. Lines in the top or bottom tenth of the page
that repeat on most pages (digits ignored), and page numbers there, are running headers and
footers and are dropped. A paragraph that a page break cuts mid-sentence continues on the next
page. A PDF with no text at all has no text layer (a scan): korqa does not do OCR.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pypdfium2 as pdfium

from korqa.corpus.documents import Section, UnreadableDocument

EDGE_BAND = 0.1  # of the page height, at the top and at the bottom
HEADING_RATIO = 1.2  # a heading's type is this much larger than the body's
CELL_GAP = 1.0  # runs this many line heights apart on one line are separate cells
_PAGE_NUMBER = re.compile(r"^[-–—(\[\s]*(?:page\s*|p\.\s*)?(\d+|[ivxlcdm]+)"
                          r"(?:\s*(?:/|of)\s*\d+)?\s*(?:쪽|페이지)?[-–—)\]\s]*$", re.IGNORECASE)
_SENTENCE_END = (".", "?", "!", "…", "。", "다", "요", ":", '"', "”", "'", "’", ")")


@dataclass
class _Line:
    text: str
    top: float  # from the page's top edge, so top < bottom
    bottom: float
    left: float
    right: float
    cells: int  # text runs far apart on this line (a table row when > 1)
    edge: bool  # in the top or bottom band of its page

    @property
    def height(self) -> float:
        return self.bottom - self.top


def read(path: Path) -> list[Section]:
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as error:
        message = str(error).lower()
        if "password" in message:
            raise UnreadableDocument("encrypted (password-protected PDF)") from None
        if "format" in message:
            raise UnreadableDocument("damaged or not a PDF file") from None
        raise UnreadableDocument(str(error)) from None
    pages: list[list[_Line]] = []
    try:
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    pages.append(_page_lines(textpage, page.get_height()))
                finally:
                    textpage.close()
            finally:
                page.close()
    finally:
        document.close()
    if not any(pages):
        raise UnreadableDocument("no text layer (a scanned PDF? korqa does not do OCR)")
    return _sections(_without_running_lines(pages))


def _page_lines(textpage: pdfium.PdfTextPage, page_height: float) -> list[_Line]:
    """The page's lines, top to bottom; each line's runs left to right. A run whose vertical
    middle falls within the line above's first run joins that line."""
    runs = []
    for index in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(index)
        text = textpage.get_text_bounded(left, bottom, right, top)
        if text.strip():
            runs.append((page_height - top, page_height - bottom, left, right, text))
    lines: list[list[tuple[float, float, float, float, str]]] = []
    for run in sorted(runs, key=lambda r: (r[0] + r[1]) / 2):
        middle = (run[0] + run[1]) / 2
        if lines and lines[-1][0][0] <= middle <= lines[-1][0][1] + 0.5:
            lines[-1].append(run)
        else:
            lines.append([run])
    out = []
    for line in lines:
        line.sort(key=lambda r: r[2])
        height = median(r[1] - r[0] for r in line)
        parts, cells = [line[0][4].strip()], 1
        for previous, run in zip(line, line[1:], strict=False):
            far = run[2] - previous[3] > CELL_GAP * height
            cells += far
            parts.append((" | " if far else " ") + run[4].strip())
        top, bottom = min(r[0] for r in line), max(r[1] for r in line)
        edge = top < EDGE_BAND * page_height or bottom > (1 - EDGE_BAND) * page_height
        out.append(_Line(" ".join("".join(parts).split()), top, bottom, line[0][2], line[-1][3],
                         cells, edge))
    return out


def _without_running_lines(pages: list[list[_Line]]) -> list[list[_Line]]:
    """Pages without page numbers and without header or footer lines that repeat (digits
    ignored) on at least half of the pages, when there are two or more."""
    edges = [[line for line in page if line.edge] for page in pages]
    counts = Counter(key for page in edges for key in {_key(line) for line in page})
    least = max(2, (len(pages) + 1) // 2)
    running = {key for key, count in counts.items() if count >= least}
    out = []
    for page, edge in zip(pages, edges, strict=True):
        dropped = {id(line) for line in edge
                   if _key(line) in running or _PAGE_NUMBER.match(line.text)}
        out.append([line for line in page if id(line) not in dropped])
    return out


def _key(line: _Line) -> str:
    return re.sub(r"\d+", "#", "".join(line.text.split()))


def _sections(pages: list[list[_Line]]) -> list[Section]:
    lines = [line for page in pages for line in page]
    body = _body_height(lines)
    gaps = [b.top - a.bottom for page in pages for a, b in zip(page, page[1:], strict=False)
            if abs(a.height - b.height) < 0.2 * body and b.top - a.bottom > -0.5 * body]
    # The gap between the lines of a paragraph: a low one of those seen (in a short document
    # most gaps may be between paragraphs), and at most what a generous leading leaves.
    usual_gap = min(sorted(gaps)[len(gaps) // 4], 0.7 * body) if gaps else 0.3 * body
    heading_sizes = sorted({round(line.height) for line in lines
                            if line.height >= HEADING_RATIO * body}, reverse=True)
    column_right = max(line.right for line in lines)
    column_left = min(line.left for line in lines)

    sections: list[Section] = []
    current: list[_Line] = []

    def flush() -> None:
        if not current:
            return
        text = "".join(_joined(current))
        size = round(median(line.height for line in current))
        is_heading = size in heading_sizes and len(current) <= 2 and len(text) <= 100 \
            and all(line.cells == 1 for line in current)
        sections.append(Section(text, heading_sizes.index(size) + 1 if is_heading else None))
        current.clear()

    for page in pages:
        for number, line in enumerate(page):
            if current:
                previous = current[-1]
                if number == 0:  # a page break: continue only a sentence or a table it cut
                    new = _size_changes(previous, line, body) or (
                        (previous.cells > 1) != (line.cells > 1)
                        or previous.cells == 1 and previous.text.endswith(_SENTENCE_END))
                else:
                    new = _breaks(previous, line, body, usual_gap, column_left, column_right)
                if new:
                    flush()
            current.append(line)
    flush()
    return sections


def _body_height(lines: list[_Line]) -> float:
    """The height of most of the text: the median line height, weighted by characters."""
    heights = sorted((line.height, len(line.text)) for line in lines)
    half, seen = sum(n for _, n in heights) / 2, 0
    for height, count in heights:
        seen += count
        if seen >= half:
            return height
    return heights[-1][0]


def _size_changes(a: _Line, b: _Line, body: float) -> bool:
    big_a, big_b = a.height >= HEADING_RATIO * body, b.height >= HEADING_RATIO * body
    return big_a != big_b or (big_a and abs(a.height - b.height) > 0.15 * a.height)


def _breaks(a: _Line, b: _Line, body: float, usual_gap: float, column_left: float,
            column_right: float) -> bool:
    """Whether line `b` starts a new paragraph after line `a` on the same page."""
    if _size_changes(a, b, body) or (a.cells > 1) != (b.cells > 1):
        return True
    gap = b.top - a.bottom
    if gap > usual_gap + 0.5 * body or gap < -0.5 * body:  # wide gap, or a new column
        return True
    if a.cells > 1:
        return False  # rows of one table
    indented = b.left - column_left > 0.8 * body and b.left - a.left > 0.8 * body
    short_end = column_right - a.right > 3 * body and a.text.endswith(_SENTENCE_END)
    return indented or short_end


def _joined(lines: list[_Line]) -> list[str]:
    out = [lines[0].text]
    for previous, line in zip(lines, lines[1:], strict=False):
        out.append("\n" if previous.cells > 1 else "" if previous.text.endswith("-") else " ")
        out.append(line.text)
    return out
