"""`korqa serve --ray`: the same HTTP API and chat page, served by N Ray Serve replicas.

    client ─HTTP─▶ Serve proxy ─▶ replica 1..N   each: create_app()'s FastAPI app over its own
                                     │            QAPipeline, reading the shared index directory
                                     ▼
                                IndexWriter       one actor: POST/DELETE /documents, /feedback,
                                                  the index generation and the replica table

Every replica runs the app of `korqa.server.app.create_app` unchanged (its routes, validation, API
key, allowed hosts, deadline and body limit included), with `ClusterWrites` behind the write
routes: the writes go to the single `IndexWriter` actor (so two replicas never rebuild the
retriever at once, and SQLite has one writer), and /health adds the cluster's view. Each replica
asks the writer for the current generation every `POLL_SECONDS`, which doubles as its heartbeat;
when the writer has rebuilt the index, the replica reopens it between two questions (the
engine's own swap), without a restart. The index directory must be reachable at the same path
from every node (one machine, or a shared filesystem), and korqa installed on every node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import asdict, astuple
from pathlib import Path
from typing import Any

import ray
from ray import serve

from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import AddResult, ParagraphStore
from korqa.retrieval.index import STORE_FILE, change_index
from korqa.server.config import ServerConfig
from korqa.server.engine import Engine
from korqa.server.feedback import FEEDBACK_FILE, Feedback, FeedbackFull, FeedbackStore
from korqa.server.middleware import ApiError
from korqa.server.schemas import ErrorOut
from korqa.server.writes import Writes

log = logging.getLogger("korqa.server")

NAMESPACE = "korqa"
WRITER_NAME = "korqa-index-writer"
APP_NAME = "korqa"
POLL_SECONDS = 0.5
# A replica that has not checked in for this long is left out of /health (killed, restarting).
STALE_SECONDS = 5.0
# How long POST /documents waits for every live replica to serve the new generation.
SWITCH_TIMEOUT = 120.0
SHUTDOWN_SECONDS = 60


# ---- the single writer ------------------------------------------------------------------------


@ray.remote(num_cpus=0, max_concurrency=16)
class IndexWriter:
    """Owns every write to the index directory and the feedback database.

    Threaded (max_concurrency): /health and heartbeats are answered while a rebuild runs;
    the rebuilds themselves are serialised by a lock, as in the embedded server.
    """

    def __init__(self, index_dir: str, data_dir: str) -> None:
        self.index_dir = Path(index_dir)
        self.feedback = FeedbackStore(Path(data_dir) / FEEDBACK_FILE)
        self.generation = 0
        self.indexing = False
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._replicas: dict[str, dict[str, Any]] = {}

    def add_paragraphs(self, rows: list[tuple[str, str, str, str]]) -> dict[str, Any]:
        """Store the documents (each replaces all of its stored paragraphs, as in the embedded
        server), rebuild the retriever in place, start a new generation."""

        def replace(store: ParagraphStore) -> dict[str, int]:
            result = store.replace_documents([Paragraph(*row) for row in rows])
            return {"added": result.added, "updated": result.updated,
                    "unchanged": result.unchanged, "removed": result.removed}

        return self._write(replace)

    def remove_documents(self, doc_ids: list[str]) -> dict[str, Any]:
        """Delete documents whole; KeyError (nothing changed) for an unknown id."""
        return self._write(lambda store: {"removed": store.remove_documents(doc_ids)})

    def _write(self, change: Any) -> dict[str, Any]:
        done: list[dict[str, int]] = []

        def apply(store: ParagraphStore) -> AddResult:
            done.append(change(store))
            return AddResult(0, 0, 0)

        with self._write_lock:
            self.indexing = True
            try:
                # The store's change commits with its retriever, as in the embedded server: a
                # replica opening the index meanwhile sees the old generation or the new one.
                _, total = change_index(self.index_dir, apply)
            finally:
                self.indexing = False
            result = done[0]
            with self._state_lock:
                self.generation += 1
                generation = self.generation
        return {**result, "paragraphs": total, "generation": generation}

    def add_feedback(self, item: dict[str, Any]) -> int:
        return self.feedback.add(Feedback(**item))

    def heartbeat(self, replica: str, info: dict[str, Any]) -> int:
        """A replica says what it serves; the answer is the generation it should serve."""
        with self._state_lock:
            self._replicas[replica] = {**info, "seen": time.time()}
            return self.generation

    def status(self) -> dict[str, Any]:
        now = time.time()
        with self._state_lock:
            live = [{"replica": name, **{k: v for k, v in info.items() if k != "seen"}}
                    for name, info in sorted(self._replicas.items())
                    if now - info["seen"] < STALE_SECONDS]
            generation = self.generation
        return {"generation": generation, "indexing": self.indexing, "replicas": live,
                "feedback": len(self.feedback)}


# ---- a reader replica -------------------------------------------------------------------------


@serve.ingress()
class KorqaReplica:
    """One reader: korqa's FastAPI app over its own pipeline, pinned to `threads` threads."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._stop = threading.Event()
        threads = int(options["threads"])
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before any thread pool starts
        from korqa.modeling.onnx_engine import set_default_threads

        set_default_threads(threads)
        if options["config"]["engine"] == "torch":
            import torch  # only for the torch engine, as in the embedded server

            torch.set_num_threads(threads)
        self.options = options
        self.threads = threads
        self.writer = ray.get_actor(WRITER_NAME, namespace=NAMESPACE)
        context = serve.get_replica_context()
        self.name = context.replica_id.unique_id
        self.generation = 0
        self.korqa_app: Any = None  # `app` is Serve's own attribute

    def __serve_build_asgi_app__(self) -> Any:
        from korqa.pipeline import PipelineConfig, open_pipeline
        from korqa.server.app import create_app

        options = self.options
        index_dir = Path(options["index_dir"])
        config = PipelineConfig.with_overrides(**options["config"])
        # The generation is read before the index is opened: a rebuild in between only makes
        # this replica reopen once more.
        self.generation = ray.get(self.writer.heartbeat.remote(self.name, self._info()))
        app = create_app(lambda: open_pipeline(index_dir, (), options["faq"], options["model"],
                                               config, small_talk=options["small_talk"]),
                         options["data_dir"], options["allow_origins"], options["max_queue"],
                         deadline=options["deadline"], allowed_hosts=options["allowed_hosts"],
                         api_key=options["api_key"], max_wait=options["max_wait"],
                         make_writes=lambda engine, feedback: ClusterWrites(engine, feedback,
                                                                            self))
        self.korqa_app = app
        threading.Thread(target=self._follow, name="korqa-generation", daemon=True).start()
        return app

    def _info(self) -> dict[str, Any]:
        engine = self.korqa_app.state.engine if self.korqa_app is not None else None
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "host": socket.gethostname(), "threads": self.threads,
                "generation": self.generation,
                "ready": bool(engine is not None and engine.reader_loaded),
                "paragraphs": engine.paragraphs if engine is not None else 0}

    def _follow(self) -> None:
        """Heartbeat; reopen the index when the writer has moved to a newer generation."""
        while not self._stop.wait(POLL_SECONDS):
            try:
                wanted = ray.get(self.writer.heartbeat.remote(self.name, self._info()))
                engine = self.korqa_app.state.engine
                if wanted != self.generation and engine.reader_loaded:
                    engine.reopen_index().result()
                    self.generation = wanted
                    self.writer.heartbeat.remote(self.name, self._info())
            except Exception:  # noqa: BLE001 - the writer restarting; try again next tick
                log.exception("replica %s: following the index generation failed", self.name)

    def __del__(self) -> None:
        self._stop.set()


class ClusterWrites(Writes):
    """The server's writes, sent to the single writer actor: each returns once every live
    replica serves the new index generation. /health adds the cluster's view."""

    errors: dict[int | str, dict[str, Any]] = {504: {"model": ErrorOut}}

    def __init__(self, engine: Engine, feedback: FeedbackStore, replica: KorqaReplica) -> None:
        super().__init__(engine, feedback)
        self.replica = replica
        self.writer = replica.writer

    async def add_paragraphs(self, paragraphs: list[Paragraph]) -> dict[str, Any]:
        result = await asyncio.shield(self.writer.add_paragraphs.remote(
            [astuple(p) for p in paragraphs]))
        return await self._all_switched(result)

    async def remove_documents(self, doc_ids: list[str]) -> dict[str, Any]:
        try:
            result = await asyncio.shield(self.writer.remove_documents.remote(doc_ids))
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, KeyError):
                raise error.cause from None
            raise
        return await self._all_switched(result)

    async def _all_switched(self, result: dict[str, Any]) -> dict[str, Any]:
        """`result`, its generation as `index_generation`, once every live replica serves it."""
        generation = result.pop("generation")
        deadline = time.monotonic() + SWITCH_TIMEOUT
        while time.monotonic() < deadline:
            status = await self.writer.status.remote()
            if all(r["generation"] >= generation for r in status["replicas"]):
                return {**result, "index_generation": generation}
            await asyncio.sleep(POLL_SECONDS / 2)
        raise ApiError(504, "the change is stored and indexed, but not every replica switched "
                            "to the new index in time")

    async def add_feedback(self, item: Feedback) -> int:
        try:
            return await self.writer.add_feedback.remote(asdict(item))
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, FeedbackFull):
                raise ApiError(503, f"feedback is full: {error.cause}") from None
            raise

    async def health(self) -> dict[str, Any]:
        """This replica's state, and every live replica with the generation it serves."""
        status = await self.writer.status.remote()
        replica = self.replica
        return {**self.engine.health(), "index_generation": replica.generation,
                "indexing": status["indexing"], "feedback": status["feedback"],
                "ray": {"replica": replica.name, "generation": status["generation"],
                        "replicas": status["replicas"]}}


# ---- korqa serve --ray --------------------------------------------------------------------------


def serve_ray(settings: ServerConfig, address: str | None, replicas: int) -> int:
    """`korqa serve` on Ray Serve: `replicas` readers, one writer; until SIGINT/SIGTERM."""
    from korqa.server.engine import repair_index
    from korqa.server.launch import (
        DEFAULT_DATA_DIR,
        allowed_host_names,
        api_key_of,
        check_port,
        is_loopback,
        prepare_index,
    )

    if replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {replicas}")
    api_key = api_key_of(settings.host, settings.api_key)
    check_port(settings.host, settings.port)
    data_dir = Path(settings.data_dir or DEFAULT_DATA_DIR).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sources = settings.sources
    index_dir = prepare_index(sources.index, sources.corpus, data_dir,
                              settings.reading).resolve()
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        store.check()
    repair_index(index_dir)
    # --threads is the total: each replica gets its share, and reserves as many CPUs, so N
    # replicas on N cores do not oversubscribe them.
    threads = max(1, (settings.threads or replicas) // replicas)
    options = {
        "index_dir": str(index_dir), "data_dir": str(data_dir), "faq": sources.faq,
        "small_talk": sources.small_talk,
        "model": str(Path(sources.model).resolve()) if sources.model else None,
        "allow_origins": list(settings.allow_origins), "max_queue": settings.max_queue,
        "threads": threads, "deadline": settings.deadline, "max_wait": settings.max_wait,
        "api_key": api_key,
        "allowed_hosts": allowed_host_names(settings.host, settings.allowed_hosts),
        "config": asdict(settings.pipeline),
    }
    # "local" always starts a cluster of its own: without it, Ray joins the last cluster
    # started on this machine, or waits for it if it has stopped.
    ray.init(address=address or "local", namespace=NAMESPACE, include_dashboard=False,
             logging_level=logging.WARNING)
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopping.set())
    try:
        # Restarted if its process dies: its state is the files, a counter and the replica
        # table (refilled by the next heartbeats); the counter restarting only makes each
        # replica reopen the index once more.
        writer = IndexWriter.options(name=WRITER_NAME, max_restarts=-1).remote(
            str(index_dir), str(data_dir))
        ray.get(writer.status.remote())
        serve.start(http_options={"host": settings.host, "port": settings.port},
                    proxy_location="HeadOnly")
        deployment = serve.deployment(
            KorqaReplica, name="reader", num_replicas=replicas,
            ray_actor_options={"num_cpus": threads},
            # A replica answers one question at a time; a short queue each lets the router
            # spread load by queue length.
            max_ongoing_requests=4, health_check_period_s=2, health_check_timeout_s=30)
        serve.run(deployment.bind(options), name=APP_NAME, route_prefix="/",
                  blocking=False)
        if not is_loopback(settings.host):
            log.warning("listening on %s: reachable from other machines, with no "
                        "authentication", settings.host)
        print(f"korqa serve --ray: {replicas} replica(s) × {threads} thread(s) at "
              f"http://{settings.host}:{settings.port}", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        # Serve's shutdown waits for the cluster; one that is going away (Ctrl-C reaches the
        # processes of a local cluster too) must not keep this process from exiting.
        closing = threading.Thread(target=serve.shutdown, daemon=True)
        closing.start()
        closing.join(SHUTDOWN_SECONDS)
        if closing.is_alive():
            log.warning("Ray Serve did not shut down within %d s", SHUTDOWN_SECONDS)
        ray.shutdown()
    return 0
