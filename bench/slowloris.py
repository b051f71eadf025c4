"""Slow clients against the HTTP servers korqa could run on, in one run, taking turns.

Opens N connections that send their request headers (or a JSON body) a line (a byte) every
2 s and never finish, and reports how many each server still holds after T seconds, and how
long a fresh request takes meanwhile. korqa serves with hypercorn (`server_config`); uvicorn,
its previous server, is the peer when it is installed (`pip install uvicorn`).

    python3 bench/slowloris.py --connections 200 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
import threading
import time

from fastapi import FastAPI

from korqa.server.launch import server_config
from korqa.server.middleware import BodyLimit


def tiny_app() -> BodyLimit:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    return BodyLimit(app, max_bytes=2_000_000)


def start_hypercorn(port: int) -> threading.Event:
    from hypercorn.asyncio import serve

    stop = threading.Event()

    async def stopped() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)

    config = server_config("127.0.0.1", port, "error")
    threading.Thread(target=asyncio.run, args=(serve(tiny_app(), config,
                                                     shutdown_trigger=stopped),),
                     daemon=True).start()
    return stop


def start_uvicorn(port: int) -> threading.Event:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(tiny_app(), port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)),
                     daemon=True).start()
    return stop


async def slow_client(port: int, mode: str, seconds: float) -> bool:
    """True when the server still holds the connection after `seconds`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    head = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" if mode == "headers" else
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{")
    try:
        writer.write(head)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(2)
            writer.write(b"X-Slow: 1\r\n" if mode == "headers" else b" ")
            await writer.drain()
            try:
                if not await asyncio.wait_for(reader.read(1), 0.01) or reader.at_eof():
                    return False  # answered (an error) or closed: let go
            except TimeoutError:
                pass
        return True
    except OSError:
        return False
    finally:
        writer.close()


async def fresh_request(port: int) -> float:
    tic = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()
    return time.perf_counter() - tic


async def attack(port: int, mode: str, connections: int, seconds: float) -> tuple[int, float]:
    clients = [asyncio.create_task(slow_client(port, mode, seconds))
               for _ in range(connections)]
    await asyncio.sleep(seconds / 2)
    latency = await fresh_request(port)
    held = sum(await asyncio.gather(*clients))
    return held, latency


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    servers = {"hypercorn (korqa serve)": start_hypercorn}
    if importlib.util.find_spec("uvicorn"):
        servers["uvicorn"] = start_uvicorn
    print(f"{args.connections} slow connections for {args.seconds:g} s each")
    print(f"{'server':<24} {'mode':<8} {'still held':>10} {'fresh request':>14}")
    for mode in ("headers", "body"):
        for name, start in servers.items():
            port = free_port()
            stop = start(port)
            time.sleep(1.5)
            held, latency = asyncio.run(attack(port, mode, args.connections, args.seconds))
            stop.set()
            print(f"{name:<24} {mode:<8} {held:>5}/{args.connections:<4} "
                  f"{latency * 1000:>11.0f} ms")


if __name__ == "__main__":
    main()
