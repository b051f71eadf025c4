"""Live servers on loopback ports, for the server tests (their tiny index and reader are in
tiny.py): an app served in a thread (`LiveServer`), and `korqa serve` in a process that a test
may SIGKILL (`ServerProcess`)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from faults import paused_at
from hypercorn.asyncio import serve as serve_asgi

from korqa.server.launch import server_config

__all__ = ["LiveServer", "ServerProcess"]


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


SERVER = """
import sys
sys.path.insert(0, {tests!r})
import korqa.pipeline
from tiny import tiny_pipeline
from korqa.pipeline import PipelineConfig, PipelineSources
from korqa.server.app import ServerConfig, serve

def open_tiny(index_dir, corpus, faq, model, config, **options):
    return tiny_pipeline(index_dir, {model!r}, threshold=0.0)()

korqa.pipeline.open_pipeline = open_tiny  # serve() as is, around the tiny reader
serve(ServerConfig(sources=PipelineSources(index={index!r}), data_dir={data!r}, port={port},
                   log_level="warning", pipeline=PipelineConfig(engine="torch"), threads=1))
"""


class ServerProcess:
    """`korqa serve`'s serve() in a child process over `index_dir`, killed with SIGKILL."""

    def __init__(self, index_dir: Path, model_dir: Path, pause: str | None = None,
                 flag: Path | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        code = paused_at(pause, flag or index_dir / "paused") + SERVER.format(
            tests=str(Path(__file__).parent), model=str(model_dir), index=str(index_dir),
            data=str(index_dir.parent / "data"), port=self.port)
        self.process = subprocess.Popen([sys.executable, "-c", code],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=5).json()["status"] == "ok":
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the server did not start: {self.process.stderr.read()!r}")
            time.sleep(0.1)

    def ask(self, question: str) -> dict:
        response = httpx.post(self.url + "/ask", json={"question": question, "top_k": 1},
                              timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stderr.close()
