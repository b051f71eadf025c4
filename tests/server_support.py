"""Helpers shared by the server tests: a tiny index and reader, and uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from test_pipeline import DOCS, make_tiny_reader, write_corpus

from korqa.modeling import BertForQuestionAnswering
from korqa.pipeline import PipelineConfig, QAPipeline, Reader
from korqa.retrieval.index import Index, build_index, make_retriever
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
        model = BertForQuestionAnswering.from_pretrained(model_dir)
        reader = Reader(model, Tokenizer.from_pretrained(model_dir), trim_particles=False)
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
    """`app` served by uvicorn on a free 127.0.0.1 port in a thread, for real HTTP clients."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; we keep the socket
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=60)
