"""A live server on a loopback port, for the server tests (their tiny index and reader are in
tiny.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from fastapi import FastAPI
from hypercorn.asyncio import serve as serve_asgi

from korqa.server.launch import server_config

__all__ = ["LiveServer"]


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
