"""Helpers shared by the server tests: a tiny index and reader, and a live server on a loopback
port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from hypercorn.asyncio import serve as serve_asgi
from test_pipeline import DOCS, make_tiny_reader, write_corpus

from korqa.modeling import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model
from korqa.pipeline import PipelineConfig, QAPipeline
from korqa.reader.config import ReaderConfig
from korqa.reader.reader import Reader
from korqa.retrieval.index import Index, build_index, make_retriever
from korqa.server.app import server_config
from korqa.tokenization import Tokenizer

__all__ = ["DOCS", "LiveServer", "build_tiny_index", "make_tiny_reader", "one_torch_thread",
           "tiny_pipeline"]


def build_tiny_index(directory: Path) -> Path:
    """The four-document test corpus indexed with BM25 over character n-grams (no Kiwi: fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(directory.parent / f"{directory.name}-corpus.jsonl")
    build_index(directory, [corpus], make_retriever("bm25", morphemes=False), progress=False)
    return directory


def tiny_pipeline(index_dir: Path, model_dir: Path, **config: object) -> Callable[[], QAPipeline]:
    """A function opening a pipeline over `index_dir` with the tiny reader (particle trimming
    off: it loads Kiwi, seconds these tests do not need)."""

    def open_pipeline() -> QAPipeline:
        model = load_model(BertForQuestionAnswering, model_dir)
        reader = Reader(model, Tokenizer.from_pretrained(model_dir),
                        ReaderConfig(trim_particles=False))
        return QAPipeline(Index(index_dir), reader, config=PipelineConfig(**config))

    return open_pipeline


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a while: with the cores busy (a training run beside the tests),
    two threads make each tiny forward pass dozens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LiveServer:
    """`app` served as `korqa serve` serves it (hypercorn, its timeouts) on a free 127.0.0.1
    port in a thread, for real HTTP clients."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))  # the kernel picks a free port
            self.port = probe.getsockname()[1]
        config = server_config("127.0.0.1", self.port, "warning")

        async def stopped() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.05)

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve_asgi(self.app, config, shutdown_trigger=stopped),),
            daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self._thread is not None
        self._stop.set()
        self._thread.join(timeout=60)
