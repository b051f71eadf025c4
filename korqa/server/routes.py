"""The routes of `korqa serve`, by group: questions, documents, feedback and health, the page
and its API documentation. `korqa.server.app.create_app` puts them together."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import fastapi_offline
import python_multipart  # noqa: F401 - FastAPI's uploads need it; missing, this names it
from fastapi import FastAPI, File, Header, Request, UploadFile
from fastapi import Path as UrlPath
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import ParagraphStore
from korqa.retrieval.index import STORE_FILE
from korqa.server.engine import Busy, Engine
from korqa.server.feedback import Feedback, locate_span
from korqa.server.middleware import ApiError, check_api_key
from korqa.server.schemas import (
    API_DOC_PREFIX,
    DOC_ID_PATTERN,
    UPLOAD_PATH,
    AddDocumentsRequest,
    AddedOut,
    AnswerOut,
    AskRequest,
    DocumentListOut,
    ErrorOut,
    FeedbackRequest,
    api_paragraphs,
)
from korqa.server.uploads import MAX_FILES, MAX_UPLOAD, UPLOAD_SUFFIXES, read_upload
from korqa.server.writes import Writes

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI as fastapi-offline ships it: FastAPI's own /docs loads it from a CDN,
# which a machine without internet cannot reach.
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
DISCONNECT_POLL = 0.25  # seconds between checks that a waiting client is still there
# The page loads its script and style from this server only; nothing inline, nothing remote.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}}


def add_question_routes(app: FastAPI, engine: Engine, deadline: float) -> None:
    """POST /ask: one question, answered by the engine's worker within `deadline`."""

    @app.post("/ask", response_model=None,
              responses={200: {"model": AnswerOut}, 503: {"model": ErrorOut}, **ERRORS})
    async def ask(body: AskRequest, request: Request) -> JSONResponse:
        """Answer one question: `korqa ask --json`'s object."""
        try:
            future = engine.ask(body.question, body.top_k)
        except Busy as error:
            raise ApiError(503, f"the server is busy ({error}); retry shortly",
                           {"Retry-After": str(max(1, math.ceil(error.retry_after)))}) from None
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


# Module level: with postponed annotations FastAPI evaluates them in the module's globals.
UPLOAD_FILES_HELP = (f"one or more files: {', '.join(UPLOAD_SUFFIXES)}, read as `korqa index` "
                     f"reads them; at most {MAX_FILES} files, and as many bytes in all as "
                     "GET /documents says (max_upload_bytes)")


def add_document_routes(app: FastAPI, writes: Writes, api_key: str | None,
                        max_upload: int = MAX_UPLOAD) -> None:
    """POST /documents (JSON), POST /documents/files (uploads) and DELETE /documents/{id},
    through `writes`, behind the API key; GET /documents lists what they added."""

    # The models document the answers without filtering them: writes elsewhere (Ray) add keys.
    @app.post("/documents", response_model=None,
              responses={200: {"model": AddedOut}, **ERRORS, **writes.errors})
    async def add_documents(body: AddDocumentsRequest,
                            authorization: Annotated[str | None, Header()] = None,
                            ) -> dict[str, Any]:
        """Add (or replace, by id) documents; returns once the retriever indexes them."""
        check_api_key(api_key, authorization)
        paragraphs, documents = body.store_paragraphs()
        return {**await writes.add_paragraphs(paragraphs), "documents": documents}

    @app.post(UPLOAD_PATH, response_model=None,
              responses={200: {"model": AddedOut}, **ERRORS, 401: {"model": ErrorOut},
                         415: {"model": ErrorOut}, **writes.errors})
    async def add_files(
            files: Annotated[list[UploadFile], File(description=UPLOAD_FILES_HELP)],
            authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Add (or replace) documents from files, as multipart/form-data. Each file is one
        document whose id is its name: uploading it again replaces its paragraphs. A file that
        cannot be read refuses the whole request, naming the file and why (415: a kind korqa
        does not read here; 422: damaged, encrypted, no text layer, …)."""
        check_api_key(api_key, authorization)
        if len(files) > MAX_FILES:
            raise ApiError(413, f"{len(files)} files; at most {MAX_FILES} per request")
        # Reading a PDF takes a while: off the event loop.
        uploads = [await run_in_threadpool(read_upload, file.filename, file.file)
                   for file in files]
        paragraphs: list[Paragraph] = []
        documents = []
        for upload in uploads:
            found = api_paragraphs(upload.doc_id, upload.split)
            paragraphs += found
            documents.append({"id": upload.doc_id, "title": upload.title,
                              "paragraph_ids": [p.id for p in found]})
        return {**await writes.add_paragraphs(paragraphs), "documents": documents}

    @app.get("/documents", response_model=DocumentListOut)
    async def list_documents() -> dict[str, Any]:
        """The documents added through POST /documents and /documents/files, oldest first
        (those of the corpus the index was built from are `korqa documents`'s to list), and
        what an upload may hold."""
        index_dir = writes.engine.index_dir
        documents = [] if index_dir is None else \
            await run_in_threadpool(_api_documents, index_dir)
        return {"documents": documents, "max_upload_bytes": max_upload,
                "suffixes": list(UPLOAD_SUFFIXES)}

    @app.delete("/documents/{doc_id}", responses={404: {"model": ErrorOut}, **writes.errors})
    async def delete_document(
            doc_id: Annotated[str, UrlPath(max_length=100, pattern=DOC_ID_PATTERN)],
            authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Remove a document added through POST /documents or /documents/files, all of its
        paragraphs."""
        check_api_key(api_key, authorization)
        try:
            result = await writes.remove_documents([API_DOC_PREFIX + doc_id])
        except KeyError:
            raise ApiError(404, f"no document {doc_id!r} was added here") from None
        return {**result, "id": doc_id}


def _api_documents(index_dir: Path) -> list[dict[str, Any]]:
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        return [{"id": d.doc_id.removeprefix(API_DOC_PREFIX), "title": d.title,
                 "paragraphs": d.paragraphs} for d in store.documents(API_DOC_PREFIX)]


def add_feedback_and_health_routes(app: FastAPI, engine: Engine, writes: Writes) -> None:
    """POST /feedback (checked against the paragraph it names) and GET /health."""

    @app.post("/feedback", status_code=201, responses={**ERRORS})
    async def add_feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Record a verdict on an answer, and the right span when the user selected one."""
        item = await run_in_threadpool(_checked_feedback, engine.index_dir,
                                       engine.faq_answers, body)
        return {"id": await writes.add_feedback(item)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the model and index are loaded, the paragraph count, the queue."""
        return await writes.health()


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


def add_page_routes(app: FastAPI) -> None:
    """The chat page, its favicon and static files, and /docs: Swagger UI over /openapi.json,
    every asset served from here. (No /redoc: ReDoc loads its logo from its CDN whatever the
    options.)"""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers=PAGE_HEADERS)

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

    app.mount("/static", _StaticFolder(directory=STATIC_DIR), name="static")
    app.mount("/docs-assets", _StaticFolder(directory=DOCS_ASSETS), name="docs-assets")


class _StaticFolder(StaticFiles):
    """StaticFiles resolves every path and refuses anything outside the directory; a NUL byte
    would reach `os.stat` and raise, so it is refused here as a missing file."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if "\x00" in path:
            return "", None
        return super().lookup_path(path)
