"""`korqa serve`: the HTTP API (FastAPI) and the web chat page over one `QAPipeline`."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from korqa.corpus.paragraph import Paragraph, paragraph_id
from korqa.corpus.store import ParagraphStore
from korqa.pipeline import PipelineConfig, QAPipeline
from korqa.retrieval.index import STORE_FILE
from korqa.server.engine import Busy, Engine, NoIndex, repair_index
from korqa.server.feedback import FEEDBACK_FILE, Feedback, FeedbackStore, locate_span

log = logging.getLogger("korqa.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_DATA_DIR = Path("~/.local/share/korqa/server")
MAX_QUESTION = 500  # characters
MAX_TOP_K = 20
MAX_BODY = 2 * 1024 * 1024  # bytes; room for a few dozen pages of added documents
MAX_DOCUMENTS = 100  # per request
MAX_PARAGRAPHS = 1000  # per document
MAX_PARAGRAPH_CHARS = 20_000
MAX_TEXT_CHARS = 200_000
MAX_ANSWER = 2_000
# The page loads its script and style from this server only; nothing inline, nothing remote.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")


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
                                      description="split into paragraphs on blank lines")] = None
    paragraphs: Annotated[
        list[Annotated[str, Field(max_length=MAX_PARAGRAPH_CHARS)]] | None,
        Field(max_length=MAX_PARAGRAPHS)] = None
    id: Annotated[str | None, Field(
        min_length=1, max_length=100, pattern=r"^[\w.\-]+$",
        description="document id; re-adding an id updates its paragraphs in place "
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
        self.paragraphs = [p for p in (_clean_text(b, "paragraph") for b in blocks) if p]
        self.text = None
        if not self.paragraphs:
            raise ValueError("the document has no text")
        return self


class AddDocumentsRequest(_Strict):
    documents: Annotated[list[DocumentIn], Field(min_length=1, max_length=MAX_DOCUMENTS)]


class FeedbackRequest(_Strict):
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)]
    answer: Annotated[str, Field(max_length=MAX_ANSWER)]
    paragraph_id: Annotated[str, Field(min_length=1, max_length=300)]
    verdict: Literal["correct", "wrong"]
    answer_start: Annotated[int | None, Field(ge=0, description="where the shown answer "
                                                                "starts in the paragraph")] = None
    corrected_answer: Annotated[str | None, Field(min_length=1, max_length=MAX_ANSWER)] = None
    corrected_start: Annotated[int | None, Field(ge=0)] = None

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


class AnswerCandidateOut(BaseModel):
    answer: str
    score: float
    reader_score: float | None
    retrieval_score: float
    retrieval_raw: float
    title: str
    paragraph_id: str
    start: int
    end: int


class AnswerOut(BaseModel):
    """`korqa ask --json`: the answer is context[start:end]; known=false means "don't know"."""

    question: str
    answer: str
    score: float
    known: bool
    source: Literal["reader", "faq", "none"]
    title: str
    paragraph_id: str
    context: str
    start: int | None
    end: int | None
    candidates: list[AnswerCandidateOut]
    retrieved: list[dict[str, Any]]
    faq_question: str | None = None


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


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions from reading the body; our handler
                    # turns it into the JSON error.
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


# ---- the application --------------------------------------------------------------------------


def create_app(open_pipeline: Callable[[], QAPipeline], data_dir: str | Path,
               allow_origins: Sequence[str] = (), max_queue: int = 64,
               max_body: int = MAX_BODY) -> FastAPI:
    """The API and page over the pipeline `open_pipeline()` returns (opened on the engine's
    worker thread). Feedback goes to `data_dir/feedback.sqlite`."""
    engine = Engine(open_pipeline, max_queue=max_queue)
    feedback = FeedbackStore(Path(data_dir) / FEEDBACK_FILE)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(engine.start)  # loading the model must not block the loop
        try:
            yield
        finally:
            await run_in_threadpool(engine.stop)
            feedback.close()

    app = FastAPI(title="korqa", version="1", lifespan=lifespan,
                  description="Korean question answering: retriever + reader over an index.")
    app.state.engine = engine
    app.state.feedback = feedback
    errors = {400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}}

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
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
    async def ask(body: AskRequest) -> JSONResponse:
        """Answer one question: `korqa ask --json`'s object."""
        try:
            future = engine.ask(body.question, body.top_k)
        except Busy as error:
            raise ApiError(503, f"the server is busy ({error}); retry shortly",
                           {"Retry-After": "1"}) from None
        try:
            return JSONResponse(await asyncio.wrap_future(future))
        except ValueError as error:  # the pipeline's own rejection of a question
            raise ApiError(422, str(error)) from None

    @app.post("/documents", responses={409: {"model": ErrorOut}, **errors})
    async def add_documents(body: AddDocumentsRequest) -> dict[str, Any]:
        """Add (or update, by id) documents; returns once the retriever indexes them."""
        paragraphs, documents = _paragraphs(body)
        try:
            future = engine.add_paragraphs(paragraphs)
        except NoIndex as error:
            raise ApiError(409, str(error)) from None
        # Once accepted, an addition is carried out even if this client goes away.
        result = await asyncio.shield(asyncio.wrap_future(future))
        return {**result, "documents": documents}

    @app.post("/feedback", status_code=201, responses={**errors})
    async def add_feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Record a verdict on an answer, and the right span when the user selected one."""
        item = await run_in_threadpool(_checked_feedback, engine.index_dir, body)
        return {"id": await run_in_threadpool(feedback.add, item)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Whether the model and index are loaded, the paragraph count, the queue."""
        return {**engine.health(), "feedback": await run_in_threadpool(len, feedback)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", _StaticFolder(directory=STATIC_DIR), name="static")
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=max_body)
    return app


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
        paragraphs += [Paragraph(pid, document.title, text, doc_id)
                       for pid, text in zip(ids, texts, strict=True)]
        documents.append({"id": doc_id, "title": document.title, "paragraph_ids": ids})
    return paragraphs, documents


def _checked_feedback(index_dir: Path | None, body: FeedbackRequest) -> Feedback:
    """`body` as stored feedback, with the paragraph's text; ApiError for spans that are not
    in the paragraph (checked now, while the user can still fix the selection)."""
    item = Feedback(body.question, body.answer, body.paragraph_id, body.verdict,
                    body.answer_start, body.corrected_answer, body.corrected_start)
    if body.paragraph_id.startswith("faq:"):
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


@dataclass
class ServerSettings:
    """What `korqa serve` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8000
    index: str | None = None
    corpus: list[str] = field(default_factory=list)
    faq: str | None = None
    model: str | None = None
    data_dir: str | None = None
    top_k: int = 3
    weight: float | None = None
    read_gate: float | None = None
    threshold: float | None = None
    int8: bool = False  # smoothed int8 linears on CPU (the model must ship a calibration)
    engine: str = "auto"  # torch, onnx (ONNX Runtime) or auto (onnx when installed)
    all_windows: bool = False  # read every window, not only up to the first confident one
    allow_origins: list[str] = field(default_factory=list)
    max_queue: int = 64
    threads: int | None = None
    log_level: str = "info"


def prepare_index(index: str | Path | None, corpus: Sequence[str | Path],
                  data_dir: Path) -> Path:
    """The index directory the server answers from and adds documents to.

    `index` is used in place. Otherwise the server keeps its own copy in `data_dir/index`
    (added documents must not go into the shared cache, which mirrors a corpus): made from
    the cached index of `corpus` (or of the sample corpus) on first start, and extended when
    `corpus` changes; documents added through the API stay.
    """
    from korqa.paths import sample_corpus_path
    from korqa.pipeline.sources import cached_index, corpus_fingerprint
    from korqa.retrieval.index import RETRIEVER_DIR, build_index, verify_index
    from korqa.retrieval.registry import load_retriever

    if index:
        if corpus:
            raise ValueError("give either an index directory or corpus paths, not both")
        return Path(index)
    paths = [str(Path(p).resolve()) for p in corpus] or [str(sample_corpus_path())]
    fingerprint = corpus_fingerprint(paths)
    target = data_dir / "index"
    marker = target / "server-corpus.json"
    if not (target / STORE_FILE).is_file():
        staging = data_dir / "index.copying"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(cached_index(paths), staging)
        verify_index(staging)  # a copy is where a file goes bad unseen: hash it once here
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    else:
        known = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
        if known.get("fingerprint") != fingerprint:
            build_index(target, paths, load_retriever(target / RETRIEVER_DIR, verify=False),
                        progress=False)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "paths": paths},
                                 ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return target


def serve(settings: ServerSettings) -> int:
    """Load everything, then serve until interrupted (Ctrl-C)."""
    import uvicorn

    from korqa.pipeline import open_pipeline

    if settings.threads:
        from korqa.modeling.onnx_engine import set_default_threads

        set_default_threads(settings.threads)  # ONNX Runtime's sessions
        if settings.engine == "torch":
            import torch  # only for the torch engine: it alone holds ~200 MB

            torch.set_num_threads(settings.threads)
    data_dir = Path(settings.data_dir or DEFAULT_DATA_DIR).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    index_dir = prepare_index(settings.index, settings.corpus, data_dir)
    repair_index(index_dir)
    config = PipelineConfig.with_overrides(
        top_k=settings.top_k, int8=settings.int8, engine=settings.engine,
        all_windows=settings.all_windows, fusion_weight=settings.weight,
        read_gate=settings.read_gate, threshold=settings.threshold)
    app = create_app(lambda: open_pipeline(index_dir, (), settings.faq, settings.model, config),
                     data_dir, settings.allow_origins, settings.max_queue)
    # Started here, so a missing model is one clear error before the port opens.
    app.state.engine.start()
    if not _is_loopback(settings.host):
        log.warning("listening on %s: reachable from other machines, with no authentication",
                    settings.host)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
