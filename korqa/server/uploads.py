"""Files uploaded to `korqa serve` (POST /documents/files, the page's "문서 추가"): each read by
the readers `korqa index` reads it with, within the server's limits, into an API document.

A .txt or .md file goes through the text splitter (UTF-8, else CP949, as korqa.corpus.text
decodes files); a PDF, DOCX, HWP, HWPX or HTML file through korqa.corpus.documents. The
document's id is the file's name (characters an id cannot hold become "_"), so uploading a file
again replaces its paragraphs, as re-indexing an edited file does; its title is its first
heading, else the file name without its suffix. A file that cannot be read is refused with the
reason, naming the file, and nothing of its request is stored.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from korqa.corpus.documents import DOCUMENT_SUFFIXES, MissingExtra, UnreadableDocument
from korqa.corpus.documents.files import titled_blocks
from korqa.corpus.formats import MARKDOWN_SUFFIX, TEXT_SUFFIXES
from korqa.corpus.text import UnreadableText, decode_text, text_document
from korqa.server.middleware import ApiError
from korqa.server.schemas import MAX_PARAGRAPHS

UPLOAD_SUFFIXES = TEXT_SUFFIXES + DOCUMENT_SUFFIXES
MAX_UPLOAD = 20 * 1024 * 1024  # bytes in one upload request, all of its files together
MAX_FILES = 100  # per request
_NOT_IN_ID = re.compile(r"[^\w.\-]+")
MAX_ID = 100


@dataclass(frozen=True)
class Upload:
    """One uploaded file read: its document id and title, and the (number, section title,
    text) of each paragraph."""

    doc_id: str
    title: str
    split: list[tuple[int, str, str]]


def file_name(raw: str | None) -> str:
    """The name of an uploaded file without any folders a browser or client sent with it."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        raise ApiError(422, "an uploaded file has no name; send each file with its name")
    return name


def document_id(name: str) -> str:
    """The id of the document uploaded as file `name`: the name, with runs of characters an id
    cannot hold (spaces, brackets …) as "_"."""
    return _NOT_IN_ID.sub("_", name).strip("_")[:MAX_ID] or "document"


def read_upload(raw_name: str | None, content: BinaryIO) -> Upload:
    """The uploaded file `raw_name` with bytes `content`, read as `korqa index` reads such a
    file; ApiError (415: a kind korqa does not read, or whose reader is not installed; 422:
    unreadable, or more paragraphs than a document may have here) naming the file."""
    name = file_name(raw_name)
    suffix = Path(name).suffix.lower()
    stem = Path(name).stem or name
    if suffix not in UPLOAD_SUFFIXES:
        raise ApiError(415, f"{name}: korqa does not read {suffix or 'files without a suffix'}"
                            f"; it reads {', '.join(UPLOAD_SUFFIXES)} files")
    try:
        if suffix in TEXT_SUFFIXES:
            text, _ = decode_text(content.read())
            title, split = text_document(text, stem, markdown=suffix == MARKDOWN_SUFFIX)
        else:
            # The readers take a path: the bytes go to a scratch file of the same kind.
            with tempfile.TemporaryDirectory(prefix="korqa-upload-") as scratch:
                path = Path(scratch) / f"upload{suffix}"
                with path.open("wb") as copy:
                    while chunk := content.read(1 << 20):
                        copy.write(chunk)
                title, split = titled_blocks(path, stem)
    except MissingExtra as error:
        raise ApiError(415, f"{name}: this server cannot read it: {error}") from None
    except (UnreadableDocument, UnreadableText) as error:
        raise ApiError(422, f"{name}: cannot be read: {error}") from None
    if not split:
        raise ApiError(422, f"{name}: holds no text")
    if len(split) > MAX_PARAGRAPHS:
        raise ApiError(422, f"{name}: {len(split)} paragraphs; a document added here may have "
                            f"at most {MAX_PARAGRAPHS} (index it with `korqa index` instead)")
    return Upload(document_id(name), title, split)
