"""`korqa serve`: the HTTP API (FastAPI) and the web chat page over one `QAPipeline`.

The parts: schemas.py (request and response models, limits), middleware.py (Host allow list,
API key, body limits, errors as JSON), writes.py (where writes go), routes.py (the routes, by
group), launch.py (the index, port and host names before the app runs); here they are put
together, and `serve` runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from korqa.corpus.store import ParagraphStore
from korqa.pipeline import QAPipeline
from korqa.retrieval.index import STORE_FILE
from korqa.server.config import DEFAULT_DEADLINE, DEFAULT_MAX_WAIT, ServerConfig
from korqa.server.engine import Engine, repair_index
from korqa.server.feedback import FEEDBACK_FILE, FeedbackStore
from korqa.server.launch import (
    DEFAULT_DATA_DIR,
    allowed_host_names,
    api_key_of,
    check_port,
    prepare_index,
    server_config,
)
from korqa.server.middleware import MAX_BODY, BodyLimit, HostAllowList, add_error_handlers
from korqa.server.routes import (
    add_document_routes,
    add_feedback_and_health_routes,
    add_page_routes,
    add_question_routes,
)
from korqa.server.schemas import UPLOAD_PATH
from korqa.server.uploads import MAX_UPLOAD
from korqa.server.writes import Writes

__all__ = ["ServerConfig", "create_app", "serve"]


def create_app(open_pipeline: Callable[[], QAPipeline], data_dir: str | Path,
               allow_origins: Sequence[str] = (), max_queue: int = 64,
               max_body: int = MAX_BODY, deadline: float = DEFAULT_DEADLINE,
               max_upload: int = MAX_UPLOAD,
               allowed_hosts: Sequence[str] | None = None,
               api_key: str | None = None,
               make_writes: Callable[[Engine, FeedbackStore], Writes] | None = None,
               max_wait: float = DEFAULT_MAX_WAIT) -> FastAPI:
    """The API and page over the pipeline `open_pipeline()` returns (opened on the engine's
    worker thread). Feedback goes to `data_dir/feedback.sqlite`. A question expected to wait
    longer than `max_wait` (at most `deadline`) is refused at once with 503; one not answered
    within `deadline` seconds answers 504. A request body may hold `max_body` bytes, an upload
    of files `max_upload`. With `allowed_hosts`, other Host headers get 421;
    with `api_key`, adding and removing documents needs it. `make_writes` decides where
    writes and /health go (default: this process's engine and feedback store)."""
    engine = Engine(open_pipeline, max_queue=max_queue, max_wait=min(max_wait, deadline))
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
    add_error_handlers(app)
    add_question_routes(app, engine, deadline)
    add_document_routes(app, writes, api_key, max_upload)
    add_feedback_and_health_routes(app, engine, writes)
    add_page_routes(app)
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Content-Type", "Authorization"])
    app.add_middleware(BodyLimit, max_bytes=max_body, paths={UPLOAD_PATH: max_upload})
    if allowed_hosts is not None:
        app.add_middleware(HostAllowList, hosts=allowed_hosts)
    return app


def serve(settings: ServerConfig) -> int:
    """Load everything, then serve until interrupted (Ctrl-C)."""
    api_key = api_key_of(settings.host, settings.api_key)
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
                                           settings.pipeline, small_talk=sources.small_talk),
                     data_dir, settings.allow_origins, settings.max_queue,
                     deadline=settings.deadline, allowed_hosts=hosts, api_key=api_key,
                     max_wait=settings.max_wait)
    # Started here, so a missing model is one clear error before the port opens.
    app.state.engine.start()
    asyncio.run(serve_asgi(app, server_config(settings.host, settings.port,
                                              settings.log_level, settings.deadline)))
    return 0
