"""Web pages (.html, .htm: a saved page) through trafilatura: the main text without navigation,
sidebars, footers and scripts.

trafilatura finds the main content and returns it as XML (headings with their level,
paragraphs, lists, tables); each becomes a section. The page's title opens the outline when the
main text does not start with a heading. The bytes go to trafilatura as they are, so it reads
the page's own charset (UTF-8, EUC-KR, …).
"""

from __future__ import annotations

import functools
from configparser import ConfigParser
from pathlib import Path

import trafilatura
from lxml import etree
from trafilatura.settings import use_config

from korqa.corpus.documents import Section, UnreadableDocument, table_rows

HEADING_LEVELS = {f"h{n}": n for n in range(1, 7)}
# trafilatura falls back to the whole page's text when the main text it found is shorter
# than 250 characters; a short Korean page (a notice, a recipe) is often that short.
MIN_MAIN_TEXT = 20


@functools.cache
def _config() -> ConfigParser:
    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", str(MIN_MAIN_TEXT))
    return config


def read(path: Path) -> list[Section]:
    raw = path.read_bytes()
    if not raw.strip():
        raise UnreadableDocument("an empty file")
    extracted = trafilatura.extract(raw, output_format="xml", include_tables=True,
                                    include_comments=False, include_images=False,
                                    with_metadata=True, config=_config())
    if not extracted:
        raise UnreadableDocument("no main text found (an empty page, a frame set, or a page "
                                 "that builds its text with JavaScript)")
    doc = etree.fromstring(extracted.encode("utf-8"))
    main = doc.find("main")
    sections = [] if main is None else [s for s in map(_section, main) if s is not None]
    title = " ".join((doc.get("title") or "").split())
    if title and not (sections and sections[0].level is not None):
        sections.insert(0, Section(title, 1))
    return sections


def _section(element: etree._Element) -> Section | None:
    if element.tag == "head":
        text = _text(element)
        return Section(text, HEADING_LEVELS.get(element.get("rend", ""), 2)) if text else None
    if element.tag == "table":
        rows = [[_text(cell) for cell in row.iter("cell")] for row in element.iter("row")]
        text = table_rows(rows)
    elif element.tag == "list":
        text = "\n".join(item for item in (_text(i) for i in element.iter("item")) if item)
    else:  # p, quote, code, …
        text = _text(element)
    return Section(text) if text else None


def _text(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())
