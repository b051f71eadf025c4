"""`korqa serve`: the HTTP API (FastAPI) and the web chat page over one `QAPipeline`."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import MISSING
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

import fastapi_offline
from fastapi import FastAPI, Header, Request
from fastapi import Path as UrlPath
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from korqa.corpus.paragraph import Paragraph, paragraph_id
from korqa.corpus.store import ParagraphStore
from korqa.corpus.text import TextReading
from korqa.pipeline import Answer, AnswerCandidate, QAPipeline
from korqa.retrieval.index import STORE_FILE
from korqa.server.config import DEFAULT_DEADLINE, ServerConfig
from korqa.server.engine import Busy, Engine, NoIndex, repair_index
from korqa.server.feedback import (
    FEEDBACK_FILE,
    Feedback,
    FeedbackFull,
    FeedbackStore,
    locate_span,
)

log = logging.getLogger("korqa.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI as fastapi-offline ships it: FastAPI's own /docs loads it from a CDN,
# which a machine without internet cannot reach.
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
DEFAULT_DATA_DIR = Path("~/.local/share/korqa/server")
MAX_QUESTION = 500  # characters
MAX_TOP_K = 20
MAX_BODY = 2 * 1024 * 1024  # bytes; room for a few dozen pages of added documents
MAX_DOCUMENTS = 100  # per request
MAX_PARAGRAPHS = 1000  # per document
MAX_PARAGRAPH_CHARS = 20_000
MAX_TEXT_CHARS = 200_000
MAX_ANSWER = 2_000
API_KEY_ENV = "KORQA_API_KEY"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HEADER_TIMEOUT = 5  # seconds a connection may take to send its request headers
BODY_TIMEOUT = 30.0  # seconds a request body may take to arrive
DISCONNECT_POLL = 0.25  # seconds between checks that a waiting client is still there
API_DOC_PREFIX = "api:"  # the store's document id of an API document
MAX_OFFSET = 2**31 - 1  # a character offset; SQLite's integers stop at 2**63 - 1
# The page loads its script and style from this server only; nothing inline, nothing remote.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
DOC_ID_PATTERN = r"^[\w.\-]+$"
_SENTENCE_END = re.compile(r"[.?!。]\s")


def _cut(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, each ending at a sentence end (else a
    space) where one falls in the second half of the piece."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        ends = [m.end() for m in _SENTENCE_END.finditer(window)] or \
            [i + 1 for i, c in enumerate(window) if c.isspace()]
        cut = ends[-1] if ends and ends[-1] > limit // 2 else limit
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    return [p for p in [*pieces, text] if p]


# ---- request bodies -------------------------------------------------------------------------


def _clean_text(value: str, what: str) -> str:
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
        value = _clean_text(value, "question")
        if not value:
            raise ValueError("question is empty")
        return value


class DocumentIn(_Strict):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    text: Annotated[str | None, Field(max_length=MAX_TEXT_CHARS,
                                      description="split into paragraphs on blank lines, "
                                                  "a longer one cut to the paragraph "
                                                  "limit")] = None
    paragraphs: Annotated[
        list[Annotated[str, Field(max_length=MAX_PARAGRAPH_CHARS)]] | None,
        Field(max_length=MAX_PARAGRAPHS)] = None
    id: Annotated[str | None, Field(
        min_length=1, max_length=100, pattern=DOC_ID_PATTERN,
        description="document id; re-adding an id replaces all of its paragraphs "
                    "(default: a hash of the title and paragraphs)")] = None

    @model_validator(mode="after")
    def _content(self) -> DocumentIn:
        if (self.text is None) == (self.paragraphs is None):
            raise ValueError("give exactly one of 'text' and 'paragraphs'")
        self.title = _clean_text(self.title, "title")
        if not self.title:
            raise ValueError("title is empty")
        blocks = _BLANK_LINES.split(self.text.replace("\r\n", "\n")) if self.text is not None \
            else self.paragraphs or []
        cleaned = (_clean_text(b, "paragraph") for b in blocks)
        self.paragraphs = [piece for p in cleaned if p for piece in _cut(p, MAX_PARAGRAPH_CHARS)]
        self.text = None
        if not self.paragraphs:
            raise ValueError("the document has no text")
        if len(self.paragraphs) > MAX_PARAGRAPHS:
            raise ValueError(f"the document has {len(self.paragraphs)} paragraphs; at most "
                             f"{MAX_PARAGRAPHS}")
        return self


class AddDocumentsRequest(_Strict):
    documents: Annotated[list[DocumentIn], Field(min_length=1, max_length=MAX_DOCUMENTS)]


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
        self.question = _clean_text(self.question, "question")
        if not self.question:
            raise ValueError("question is empty")
        _clean_text(self.answer, "answer")
        if (self.corrected_answer is None) != (self.corrected_start is None):
            raise ValueError("give 'corrected_answer' and 'corrected_start' together")
        if self.corrected_answer is not None and self.verdict != "wrong":
            raise ValueError("a correction goes with verdict 'wrong'")
        if self.verdict == "correct" and not self.answer.strip():
            raise ValueError("verdict 'correct' needs the answer that was shown")
        return self


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


# ---- errors and limits ------------------------------------------------------------------------


class ApiError(Exception):
    """A client-facing error: the status and one readable sentence."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _validation_response(error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error", "invalid JSON")
            return _error(400, f"malformed JSON body: {reason}")
    fields = []
    for problem in problems:
        # loc starts with "body"; the rest names the field ("documents", 0, "title").
        where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "body"
        message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
        fields.append({"field": where, "message": message})  # never the input: it may be huge
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return _error(422, f"invalid request: {summary}", fields=fields)


class HostAllowList:
    """Answer only requests whose Host header names this server: a page on another site that
    rebinds its DNS name to 127.0.0.1 still sends its own name, and is refused."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
            if _host_name(host) not in self.hosts:
                response = _error(421, "this server does not answer for that host name; "
                                       "`korqa serve --allowed-hosts` lists the names it does")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name of a Host header without its port: `[::1]:8000` → `::1`, `a:80` → `a`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_api_key(expected: str | None, authorization: str | None) -> None:
    """Writes need `Authorization: Bearer KEY` when the server has a key."""
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             expected.encode()):
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <api key>' "
                            "(the key korqa serve was started with)",
                       {"WWW-Authenticate": "Bearer"})


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not they declare a length,
    and bodies still arriving `max_seconds` after they began with 408."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_seconds: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = _error(413, f"request body over {self.max_bytes} bytes")
            await response(scope, receive, send)
            return
        seen = 0
        give_up = asyncio.get_running_loop().time() + self.max_seconds

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                # FastAPI re-raises HTTPExceptions from reading the body; our handler turns
                # them into the JSON error.
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
                if message.get("more_body") and asyncio.get_running_loop().time() > give_up:
                    raise HTTPException(408, f"request body still arriving after "
                                             f"{self.max_seconds:g} s")
            return message

        await self.app(scope, limited, send)


# ---- where writes go ------------------------------------------------------------------------


class Writes:
    """What the document, feedback and health routes do: in this process, through the engine's
    writer thread and the feedback store. `korqa serve --ray` subclasses it to send writes to
    its single writer actor; the routes, their validation and their API key stay create_app's.
    """

    # Responses the writes add to the routes' own, for the OpenAPI schema.
    errors: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut}}

    def __init__(self, engine: Engine, feedback: FeedbackStore) -> None:
        self.engine = engine
        self.feedback = feedback

    async def add_paragraphs(self, paragraphs: list[Paragraph]) -> dict[str, Any]:
        """Store the paragraphs (each document replacing its own) and reindex."""
        return await self._write(lambda: self.engine.add_paragraphs(paragraphs))

    async def remove_documents(self, doc_ids: list[str]) -> dict[str, Any]:
        """Delete whole documents and reindex; KeyError (nothing changed) for an unknown id."""
        return await self._write(lambda: self.engine.remove_documents(doc_ids))

    async def _write(self, submit: Callable[[], Future]) -> dict[str, Any]:
        try:
            future = submit()
        except NoIndex as error:
            raise ApiError(409, str(error)) from None
        # Once accepted, a write is carried out even if its client goes away.
        return await asyncio.shield(asyncio.wrap_future(future))

    async def add_feedback(self, item: Feedback) -> int:
        try:
            return await run_in_threadpool(self.feedback.add, item)
        except FeedbackFull as error:
            raise ApiError(503, f"feedback is full: {error}") from None

    async def health(self) -> dict[str, Any]:
        return {**self.engine.health(),
                "feedback": await run_in_threadpool(len, self.feedback)}


# ---- the application --------------------------------------------------------------------------


def create_app(open_pipeline: Callable[[], QAPipeline], data_dir: str | Path,
               allow_origins: Sequence[str] = (), max_queue: int = 64,
               max_body: int = MAX_BODY, deadline: float = DEFAULT_DEADLINE,
               allowed_hosts: Sequence[str] | None = None,
               api_key: str | None = None,
               make_writes: Callable[[Engine, FeedbackStore], Writes] | None = None) -> FastAPI:
    """The API and page over the pipeline `open_pipeline()` returns (opened on the engine's
    worker thread). Feedback goes to `data_dir/feedback.sqlite`. A question not answered
    within `deadline` seconds answers 504. With `allowed_hosts`, other Host headers get 421;
    with `api_key`, adding and removing documents needs it. `make_writes` decides where
    writes and /health go (default: this process's engine and feedback store)."""
    engine = Engine(open_pipeline, max_queue=max_queue)
    feedback = FeedbackStore(Path(data_dir) / FEEDBACK_FILE)
    writes = (make_writes or Writes)(engine, feedback)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(engine.start)  # loading the model must not block the loop
        try:
            yield
        finally:
            await run_in_threadpool(engine.stop)
            feedback.close()

    app = FastAPI(title="korqa", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None,
                  description="Korean question answering: retriever + reader over an index.")
    app.state.engine = engine
    app.state.feedback = feedback
    errors = {400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}}

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and media_type != "application/json":
            return _error(415, f"send the body as JSON with 'Content-Type: application/json' "
                               f"(got {media_type or 'no Content-Type'!r})")
        return _validation_response(error)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=error)
        return _error(500, "internal server error")

    @app.post("/ask", response_model=None,
              responses={200: {"model": AnswerOut}, 503: {"model": ErrorOut}, **errors})
    async def ask(body: AskRequest, request: Request) -> JSONResponse:
        """Answer one question: `korqa ask --json`'s object."""
        try:
            future = engine.ask(body.question, body.top_k)
        except Busy as error:
            raise ApiError(503, f"the server is busy ({error}); retry shortly",
                           {"Retry-After": "1"}) from None
        answer = asyncio.wrap_future(future)
        give_up = asyncio.get_running_loop().time() + deadline
        # A question still queued when its client leaves, or past its deadline, is dropped
        # before the reader spends time on it.
        while not answer.done():
            await asyncio.wait({answer}, timeout=DISCONNECT_POLL)
            if answer.done():
                break
            if await request.is_disconnected():
                future.cancel()
                return JSONResponse({"error": "the client went away"}, status_code=499)
            if asyncio.get_running_loop().time() >= give_up:
                future.cancel()
                raise ApiError(504, f"no answer within {deadline:g} s; the server is "
                                    "overloaded or the question too long")
        try:
            return JSONResponse(answer.result())
        except ValueError as error:  # the pipeline's own rejection of a question
            raise ApiError(422, str(error)) from None
        except sqlite3.DatabaseError as error:
            store = engine.index_dir / STORE_FILE if engine.index_dir else "the index"
            raise ApiError(503, f"{store} could not be read ({error}); rebuild it with "
                                "`korqa index`") from None

    write_errors = {**errors, **writes.errors}

    @app.post("/documents", responses=write_errors)
    async def add_documents(body: AddDocumentsRequest,
                            authorization: Annotated[str | None, Header()] = None,
                            ) -> dict[str, Any]:
        """Add (or replace, by id) documents; returns once the retriever indexes them."""
        check_api_key(api_key, authorization)
        paragraphs, documents = _paragraphs(body)
        return {**await writes.add_paragraphs(paragraphs), "documents": documents}

    @app.delete("/documents/{doc_id}", responses={404: {"model": ErrorOut}, **writes.errors})
    async def delete_document(
            doc_id: Annotated[str, UrlPath(max_length=100, pattern=DOC_ID_PATTERN)],
            authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Remove a document added through POST /documents, all of its paragraphs."""
        check_api_key(api_key, authorization)
        try:
            result = await writes.remove_documents([API_DOC_PREFIX + doc_id])
        except KeyError:
            raise ApiError(404, f"no document {doc_id!r} was added here") from None
        return {**result, "id": doc_id}

    @app.post("/feedback", status_code=201, responses={**errors})
    async def add_feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Record a verdict on an answer, and the right span when the user selected one."""
        item = await run_in_threadpool(_checked_feedback, engine.index_dir,
                                       engine.faq_answers, body)
        return {"id": await writes.add_feedback(item)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the model and index are loaded, the paragraph count, the queue."""
        return await writes.health()

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers=PAGE_HEADERS)

    _add_docs_pages(app)
    app.mount("/static", _StaticFolder(directory=STATIC_DIR), name="static")
    app.mount("/docs-assets", _StaticFolder(directory=DOCS_ASSETS), name="docs-assets")
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Content-Type", "Authorization"])
    app.add_middleware(BodyLimit, max_bytes=max_body)
    if allowed_hosts is not None:
        app.add_middleware(HostAllowList, hosts=allowed_hosts)
    return app


def _add_docs_pages(app: FastAPI) -> None:
    """/docs: Swagger UI over /openapi.json, every asset served from here. (No /redoc: ReDoc
    loads its logo from its CDN whatever the options.)"""

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title="korqa API",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/favicon.svg", oauth2_redirect_url=None,
            # No badge from the online validator: the page must not reach outside.
            swagger_ui_parameters={"validatorUrl": None})


class _StaticFolder(StaticFiles):
    """StaticFiles resolves every path and refuses anything outside the directory; a NUL byte
    would reach `os.stat` and raise, so it is refused here as a missing file."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if "\x00" in path:
            return "", None
        return super().lookup_path(path)


def _paragraphs(body: AddDocumentsRequest) -> tuple[list[Paragraph], list[dict[str, Any]]]:
    """The store's paragraphs for the posted documents, ids `api:<doc id>:<n>`."""
    paragraphs: list[Paragraph] = []
    documents = []
    for document in body.documents:
        texts = document.paragraphs or []
        doc_id = document.id or hashlib.sha256(
            json.dumps([document.title, texts], ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:16]
        ids = [paragraph_id("api", doc_id, i) for i in range(len(texts))]
        # Stored apart from corpus documents, so that re-indexing a folder holding a file of
        # the same name never touches it.
        paragraphs += [Paragraph(pid, document.title, text, API_DOC_PREFIX + doc_id)
                       for pid, text in zip(ids, texts, strict=True)]
        documents.append({"id": doc_id, "title": document.title, "paragraph_ids": ids})
    return paragraphs, documents


def _checked_feedback(index_dir: Path | None, faq_answers: dict[str, str],
                      body: FeedbackRequest) -> Feedback:
    """`body` as stored feedback, with the paragraph's text; ApiError for spans that are not
    in the paragraph, and for FAQ entries this server does not have (checked now, while the
    user can still fix the selection)."""
    item = Feedback(body.question, body.answer, body.paragraph_id, body.verdict,
                    body.answer_start, body.corrected_answer, body.corrected_start)
    if body.paragraph_id.startswith("faq:"):
        if body.paragraph_id not in faq_answers:
            raise ApiError(422, f"unknown FAQ entry {body.paragraph_id!r}")
        if body.answer != faq_answers[body.paragraph_id]:
            raise ApiError(422, f"the answer is not the answer of {body.paragraph_id!r}")
        if body.corrected_answer is not None:
            raise ApiError(422, "an FAQ answer has no paragraph to select a correction from")
        return item  # an FAQ answer: no paragraph, nothing to locate
    if index_dir is None:
        raise ApiError(422, f"unknown paragraph_id {body.paragraph_id!r}")
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        try:
            paragraph = store.get([body.paragraph_id])[0]
        except KeyError:
            raise ApiError(422, f"unknown paragraph_id {body.paragraph_id!r}") from None
    context = paragraph.text
    if body.verdict == "correct" and locate_span(context, body.answer, body.answer_start) is None:
        raise ApiError(422, "the answer is not in the paragraph at answer_start")
    if body.corrected_answer is not None and locate_span(
            context, body.corrected_answer, body.corrected_start) != body.corrected_start:
        raise ApiError(422, "corrected_answer is not the paragraph's text at corrected_start")
    return Feedback(**{**item.__dict__, "title": paragraph.title, "context": context})


# ---- korqa serve ------------------------------------------------------------------------------


def prepare_index(index: str | Path | None, corpus: Sequence[str | Path],
                  data_dir: Path, reading: TextReading | None = None) -> Path:
    """The index directory the server answers from and adds documents to.

    `index` is used in place. Otherwise the server keeps its own copy in `data_dir/index`
    (added documents must not go into the shared cache, which mirrors a corpus): made from
    the cached index of `corpus` (or of the sample corpus) on first start, and brought up to
    date with `corpus` when its files change (`build_index`); documents added through the API
    stay.
    """
    from korqa.paths import sample_corpus_path
    from korqa.pipeline.sources import cached_index, corpus_fingerprint
    from korqa.retrieval.index import build_index, saved_retriever, verify_index

    if index:
        if corpus:
            raise ValueError("give either an index directory or corpus paths, not both")
        return Path(index)
    paths = [str(Path(p).resolve()) for p in corpus] or [str(sample_corpus_path())]
    fingerprint = corpus_fingerprint(paths, reading)
    target = data_dir / "index"
    marker = target / "server-corpus.json"
    if not (target / STORE_FILE).is_file():
        staging = data_dir / "index.copying"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(cached_index(paths, reading=reading), staging)
        verify_index(staging)  # a copy is where a file goes bad unseen: hash it once here
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    else:
        known = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
        if known.get("fingerprint") != fingerprint:
            build_index(target, paths, saved_retriever(target), progress=False,
                        reading=reading)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "paths": paths},
                                 ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return target


def serve(settings: ServerConfig) -> int:
    """Load everything, then serve until interrupted (Ctrl-C)."""
    api_key = settings.api_key or os.environ.get(API_KEY_ENV) or None
    if not _is_loopback(settings.host) and api_key is None:
        raise ValueError(f"--host {settings.host} is reachable from other machines: give "
                         f"--api-key KEY (or set {API_KEY_ENV}) so that only you can add "
                         "and remove documents")
    check_port(settings.host, settings.port)  # before seconds of loading, not after
    from hypercorn.asyncio import serve as serve_asgi

    from korqa.pipeline import open_pipeline

    hosts = allowed_host_names(settings.host, settings.allowed_hosts)
    if settings.threads:
        from korqa.modeling.onnx_engine import set_default_threads

        set_default_threads(settings.threads)  # ONNX Runtime's sessions
        if settings.pipeline.engine == "torch":
            import torch  # only for the torch engine: it alone holds ~200 MB

            torch.set_num_threads(settings.threads)
    data_dir = Path(settings.data_dir or DEFAULT_DATA_DIR).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    sources = settings.sources
    index_dir = prepare_index(sources.index, sources.corpus, data_dir, settings.reading)
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        store.check()
    repair_index(index_dir)
    app = create_app(lambda: open_pipeline(index_dir, (), sources.faq, sources.model,
                                           settings.pipeline),
                     data_dir, settings.allow_origins, settings.max_queue,
                     deadline=settings.deadline, allowed_hosts=hosts, api_key=api_key)
    # Started here, so a missing model is one clear error before the port opens.
    app.state.engine.start()
    asyncio.run(serve_asgi(app, server_config(settings.host, settings.port,
                                              settings.log_level, settings.deadline)))
    return 0


def server_config(host: str, port: int, log_level: str = "info",
                  deadline: float = DEFAULT_DEADLINE):  # -> hypercorn Config
    """Hypercorn, not uvicorn: it closes a connection that has not finished its request
    headers within HEADER_TIMEOUT, where uvicorn holds a slowloris client forever (BodyLimit
    bounds a trickled body)."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_timeout = HEADER_TIMEOUT  # idle, or still sending its headers
    # Nothing at all arrived for this long. A client waiting for its answer is silent too, so
    # this must outlast a question's deadline (else its connection is cut before the 504);
    # headers are bounded by the idle timeout above and bodies by BodyLimit.
    config.read_timeout = max(BODY_TIMEOUT, deadline) + HEADER_TIMEOUT
    config.loglevel = log_level.upper()
    return config


def allowed_host_names(host: str, extra: Sequence[str]) -> list[str] | None:
    """The Host names `korqa serve --host HOST` answers for: loopback's, HOST itself (unless
    it is a wildcard address), and `extra`; None (any) when `extra` holds "*"."""
    if "*" in extra:
        return None
    names = [*LOOPBACK_NAMES, *(_host_name(name) for name in extra)]
    if host not in ("0.0.0.0", "::", ""):
        names.append(_host_name(host))
    return names


def check_port(host: str, port: int) -> None:
    """ValueError naming the port and --port when `host:port` cannot be listened on (in use,
    no permission, no such address). Binds the way the server will, then lets go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is in use; stop what uses it or "
                                 "choose another port with --port") from None
            raise ValueError(f"cannot listen on {host} port {port} ({error.strerror or error}); "
                             "check --host and --port") from None
        except OverflowError:
            raise ValueError(f"--port {port}: a port is a number from 0 to 65535") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
