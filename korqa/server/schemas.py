"""What `korqa serve` accepts and answers: the request bodies (validated by pydantic, with the
server's limits) and the response models its OpenAPI schema shows."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import MISSING
from dataclasses import fields as dataclass_fields
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)

from korqa.corpus.formats import text_to_document
from korqa.corpus.paragraph import Paragraph, paragraph_id
from korqa.corpus.text import MAX_PARAGRAPH_CHARS
from korqa.pipeline import Answer, AnswerCandidate
from korqa.pipeline.limits import MAX_QUESTION_CHARS, MAX_TOP_K

MAX_QUESTION = MAX_QUESTION_CHARS  # the CLI's limit too (korqa.pipeline.limits)
MAX_DOCUMENTS = 100  # per request
MAX_PARAGRAPHS = 1000  # per document
MAX_TEXT_CHARS = 200_000
MAX_ANSWER = 2_000
MAX_OFFSET = 2**31 - 1  # a character offset; SQLite's integers stop at 2**63 - 1
API_DOC_PREFIX = "api:"  # the store's document id of an API document
DOC_ID_PATTERN = r"^[\w.\-]+$"
UPLOAD_PATH = "/documents/files"  # the one route whose body is multipart/form-data (files)


def clean_text(value: str, what: str) -> str:
    """`value` stripped; errors for text no tokenizer should see (lone surrogates, controls)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate)") from None
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
        raise ValueError(f"{what} contains control characters")
    return value.strip()


class _Strict(BaseModel):
    # Unknown fields are an error: a misspelt "top_k" must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class AskRequest(_Strict):
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)]
    top_k: Annotated[int | None, Field(ge=1, le=MAX_TOP_K,
                                       description="paragraphs to read (server default: "
                                                   "--top-k)")] = None

    @field_validator("question")
    @classmethod
    def _question(cls, value: str) -> str:
        value = clean_text(value, "question")
        if not value:
            raise ValueError("question is empty")
        return value


class DocumentIn(_Strict):
    title: Annotated[str, Field(min_length=1, max_length=200, description=(
        "the document's title; with 'text', a first heading in the text takes its place, as "
        "the first heading of a .md file takes its file name's"))]
    text: Annotated[str | None, Field(max_length=MAX_TEXT_CHARS, description=(
        "split into paragraphs as a .md (or, with format 'txt', .txt) file is: blank lines "
        "separate them, headings title the paragraphs under them, a paragraph over "
        f"{MAX_PARAGRAPH_CHARS} characters is cut at sentence ends"))] = None
    format: Literal["md", "txt"] = Field("md", description="how 'text' marks its headings: "
                                                          "as a .md file or as a .txt file")
    paragraphs: Annotated[
        list[Annotated[str, Field(max_length=MAX_PARAGRAPH_CHARS)]] | None,
        Field(max_length=MAX_PARAGRAPHS)] = None
    id: Annotated[str | None, Field(
        min_length=1, max_length=100, pattern=DOC_ID_PATTERN,
        description="document id; re-adding an id replaces all of its paragraphs "
                    "(default: a hash of the title and paragraphs)")] = None
    # (number, title, text) of each paragraph, as the splitter made them
    _split: list[tuple[int, str, str]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _content(self) -> DocumentIn:
        if (self.text is None) == (self.paragraphs is None):
            raise ValueError("give exactly one of 'text' and 'paragraphs'")
        self.title = clean_text(self.title, "title")
        if not self.title:
            raise ValueError("title is empty")
        if self.text is not None:
            clean_text(self.text, "text")
            # Numbered and titled as the same text in a file would be: one splitter.
            document = text_to_document(self.text, "-", self.title,
                                        markdown=self.format == "md")
            self._split = [(int(p.id.rsplit(":", 1)[1]), p.title, p.text)
                           for p in document.paragraphs]
        else:
            cleaned = (clean_text(p, "paragraph") for p in self.paragraphs or [])
            self._split = [(number, self.title, text)
                           for number, text in enumerate(p for p in cleaned if p)]
        if not self._split:
            raise ValueError("the document has no text")
        if len(self._split) > MAX_PARAGRAPHS:
            raise ValueError(f"the document has {len(self._split)} paragraphs; at most "
                             f"{MAX_PARAGRAPHS}")
        return self

    def store_paragraphs(self) -> tuple[str, list[Paragraph]]:
        """The document's id and its paragraphs as the store keeps them (`api_paragraphs`)."""
        doc_id = self.id or hashlib.sha256(json.dumps(
            [self.title, [text for _, _, text in self._split]], ensure_ascii=False
        ).encode("utf-8")).hexdigest()[:16]
        return doc_id, api_paragraphs(doc_id, self._split)


def api_paragraphs(doc_id: str, split: list[tuple[int, str, str]]) -> list[Paragraph]:
    """The (number, title, text) pieces of a document added through the API as the store keeps
    them: ids `api:<doc id>:<n>`, stored apart from corpus documents, so that re-indexing a
    folder holding a file of the same name never touches them."""
    return [Paragraph(paragraph_id("api", doc_id, number), title, text, API_DOC_PREFIX + doc_id)
            for number, title, text in split]


class AddDocumentsRequest(_Strict):
    documents: Annotated[list[DocumentIn], Field(min_length=1, max_length=MAX_DOCUMENTS)]

    def store_paragraphs(self) -> tuple[list[Paragraph], list[dict[str, Any]]]:
        """Every document's paragraphs for the store, and what POST /documents reports of
        each: its id, title and paragraph ids."""
        paragraphs: list[Paragraph] = []
        documents = []
        for document in self.documents:
            doc_id, found = document.store_paragraphs()
            paragraphs += found
            documents.append({"id": doc_id, "title": document.title,
                              "paragraph_ids": [p.id for p in found]})
        return paragraphs, documents


class FeedbackRequest(_Strict):
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)]
    answer: Annotated[str, Field(max_length=MAX_ANSWER)]
    paragraph_id: Annotated[str, Field(min_length=1, max_length=300)]
    verdict: Literal["correct", "wrong"]
    answer_start: Annotated[int | None, Field(ge=0, le=MAX_OFFSET, description="where the "
                                              "shown answer starts in the paragraph")] = None
    corrected_answer: Annotated[str | None, Field(min_length=1, max_length=MAX_ANSWER)] = None
    corrected_start: Annotated[int | None, Field(ge=0, le=MAX_OFFSET)] = None

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackRequest:
        self.question = clean_text(self.question, "question")
        if not self.question:
            raise ValueError("question is empty")
        clean_text(self.answer, "answer")
        if (self.corrected_answer is None) != (self.corrected_start is None):
            raise ValueError("give 'corrected_answer' and 'corrected_start' together")
        if self.corrected_answer is not None and self.verdict != "wrong":
            raise ValueError("a correction goes with verdict 'wrong'")
        if self.verdict == "correct" and not self.answer.strip():
            raise ValueError("verdict 'correct' needs the answer that was shown")
        return self


# ---- responses ------------------------------------------------------------------------------


def _model_of(cls: type, name: str, drop: tuple[str, ...] = (),
              **changed: Any) -> type[BaseModel]:
    """A response model with the fields and types of dataclass `cls`, less `drop` and with
    `changed` (name: (type, default)) where its `to_json` writes a field otherwise; the
    schema follows the dataclass (tests hold it to `to_json`'s keys)."""
    hints = get_type_hints(cls)
    specs = {spec.name: (hints[spec.name], ... if spec.default is MISSING else spec.default)
             for spec in dataclass_fields(cls)
             if spec.name not in drop and spec.name not in changed}
    return create_model(name, __doc__=cls.__doc__, **specs, **changed)


AnswerCandidateOut = _model_of(AnswerCandidate, "AnswerCandidateOut", drop=("context",))


class RetrievedOut(BaseModel):
    """A paragraph the retriever returned (Answer.paragraphs, as to_json writes it)."""

    paragraph_id: str
    title: str
    retrieval_score: float
    retrieval_raw: float


AnswerOut = _model_of(Answer, "AnswerOut", drop=("paragraphs",),
                      source=(Literal["reader", "faq", "none"], "reader"),
                      candidates=(list[AnswerCandidateOut], ...),
                      retrieved=(list[RetrievedOut], ...))


class ErrorOut(BaseModel):
    error: str


class AddedDocumentOut(BaseModel):
    """A document POST /documents or /documents/files stored."""

    id: str
    title: str
    paragraph_ids: list[str]


class AddedOut(BaseModel):
    """What adding documents changed: paragraphs added, updated (same id, new text), unchanged
    and removed (a replaced document's paragraphs it no longer has); the index's paragraphs
    after it; and each document stored."""

    added: int
    updated: int
    unchanged: int
    removed: int
    paragraphs: int
    documents: list[AddedDocumentOut]


class DocumentOut(BaseModel):
    """A document added through the API: its id (DELETE /documents/{id} removes it), title
    (its first heading, else the title or file name it was given) and paragraph count."""

    id: str
    title: str
    paragraphs: int


class DocumentListOut(BaseModel):
    """The documents added here, and what POST /documents/files takes: files of these suffixes,
    at most `max_upload_bytes` in one request."""

    documents: list[DocumentOut]
    max_upload_bytes: int
    suffixes: list[str]
