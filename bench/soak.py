"""Soak of `korqa serve` with kill -9 restarts, on loopback only, bounded in time.

    python3 bench/soak.py                                   # 20 lives of 10 s, tiny reader
    python3 bench/soak.py --lives 20 --life-seconds 10 --clients 40 --hostile
    python3 bench/soak.py --model models/korqa-reader       # the real reader (slower lives)

Each life starts the server on the same data directory (its own index, the sample corpus),
then 40 askers and one writer (posting, replacing with fewer paragraphs and deleting documents
in turn) run until a moment drawn at random in the second half of the life, when the server is
SIGKILLed, writes and questions in flight. The next life restarts it (a restart is stuck if
/health does not answer within --restart-timeout) and first checks over HTTP that every
acknowledged write is there: each live paragraph is the first hit for its own text, no
deleted or replaced text is found; the one write in flight at the kill may be there or not.
After the last kill the index on disk must hold exactly the acknowledged documents without
repair. Reported: acknowledged writes and how many were lost, restarts and how many stuck,
restart seconds, the seconds each acknowledged write took under the askers (p50, max), the
server's RSS before each kill (flat: every life after the first, which
also traces the reader and copies the index, within 10 % of each other),
the 200/503/504 shares of the questions answered before each kill and the p50/p99 of the 200s.
With --hostile, slowloris connections and abandoned questions run too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import QUESTIONS, rss_mb, start_server  # noqa: E402 - bench/load.py, beside it

SOAK_SLOW = 100  # slowloris connections held open at once (--hostile)
DOCUMENTS = 12  # document ids the writer cycles through
MAX_TOTAL = 1800.0  # seconds the whole soak may take


def soak_text(version: int, part: int) -> str:
    """A paragraph no other paragraph resembles: syllables picked by its version and part."""
    syllables = "".join(chr(0xAC00 + (version * 7919 + part * 104729 + i * 2741) % 11172)
                        for i in range(8))
    return f"소크 문서 {version}판 {part}째 문단의 암호는 {syllables}이다."


class Writer:
    """Posts, replaces (with fewer paragraphs) and deletes documents in turn. `model` holds
    what the server acknowledged (doc id → its paragraphs' texts); `in_flight` the write sent
    and not answered: (doc, texts after it, or None for a delete)."""

    def __init__(self) -> None:
        self.model: dict[str, list[str]] = {}
        self.last: dict[str, list[str]] = {}  # every document's latest texts, deleted or not
        self.in_flight: tuple[str, list[str] | None] | None = None
        self.version = 0
        self.acknowledged = 0
        self.seconds: list[float] = []  # from sending each acknowledged write to its answer
        self.refused: dict[str, int] = {}

    async def run(self, http, stop: asyncio.Event) -> None:
        while not stop.is_set():
            doc = f"soak{self.version % DOCUMENTS}"
            self.version += 1
            if doc not in self.model:
                texts: list[str] | None = [soak_text(self.version, k) for k in range(3)]
            elif len(self.model[doc]) > 1:
                texts = [soak_text(self.version, 0)]
            else:
                texts = None
            self.in_flight = (doc, texts)
            if texts is not None:
                self.last[doc] = texts
            started = time.perf_counter()
            try:
                if texts is None:
                    response = await http.delete(f"/documents/{doc}", timeout=300)
                else:
                    response = await http.post("/documents", timeout=300, json={"documents": [
                        {"id": doc, "title": f"소크 {doc}", "paragraphs": texts}]})
            except Exception:  # noqa: BLE001 - the kill: the outcome is settled after restart
                return
            self.in_flight = None
            if response.status_code == 200:
                self.acknowledged += 1
                self.seconds.append(time.perf_counter() - started)
                if texts is None:
                    self.model.pop(doc, None)
                else:
                    self.model[doc] = texts
            else:
                key = f"HTTP {response.status_code}"
                self.refused[key] = self.refused.get(key, 0) + 1


async def present(http, doc: str, texts: list[str] | None, last: list[str]) -> bool:
    """Whether the server holds `doc` as `texts` (None: not at all: none of its `last` texts
    is found as its paragraph), asked over HTTP."""
    if texts is None:
        for text in last:
            answer = (await http.post("/ask", json={"question": text, "top_k": 1})).json()
            if any(hit["paragraph_id"].startswith(f"api:{doc}:") for hit in answer["retrieved"]):
                return False
        return True
    for k, text in enumerate(texts):
        answer = (await http.post("/ask", json={"question": text, "top_k": 1})).json()
        if [hit["paragraph_id"] for hit in answer["retrieved"]] != [f"api:{doc}:{k}"]:
            return False
    return True


async def check_writes(url: str, writer: Writer) -> int:
    """Acknowledged writes missing after a restart; settles the write in flight at the kill
    (either outcome is right) into `writer.model`."""
    import httpx

    lost = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for k in range(DOCUMENTS):
            doc = f"soak{k}"
            expected = writer.model.get(doc)
            last = writer.last.get(doc, [])
            if writer.in_flight is not None and writer.in_flight[0] == doc:
                after = writer.in_flight[1]
                if await present(http, doc, after, last):
                    if after is None:
                        writer.model.pop(doc, None)
                    else:
                        writer.model[doc] = after
                    continue
            if not await present(http, doc, expected, last):
                lost += 1
        writer.in_flight = None
    return lost


async def asker(http, number: int, stop: asyncio.Event, statuses: dict[str, int],
                answered: list[float]) -> None:
    i = number
    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = await http.post("/ask", json={"question": QUESTIONS[i % len(QUESTIONS)]})
        except Exception:  # noqa: BLE001 - the kill ends every connection
            return
        i += 1
        statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
        if response.status_code == 200:
            answered.append(time.perf_counter() - started)


async def soak_hostile(port: int, stop: asyncio.Event, counts: dict[str, float]) -> None:
    """Keep SOAK_SLOW slowloris connections open (a header line every 2 s, never finished) and
    send abandoned questions (a whole request, closed before the answer) five times a second;
    counts what was sent and how long the server let a slow connection live."""
    request = json.dumps({"question": QUESTIONS[0]}, ensure_ascii=False).encode()
    abandoned = (b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(request)).encode() + b"\r\n\r\n" + request)

    async def slow() -> None:
        opened = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["slow_refused"] += 1
            return
        counts["slow_opened"] += 1
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.is_set():
                try:
                    if await asyncio.wait_for(reader.read(1), 2.0) == b"":
                        break  # the server closed it
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
        except OSError:
            pass
        finally:
            counts["slow_longest_s"] = max(counts["slow_longest_s"], time.monotonic() - opened)
            writer.close()

    async def slow_pool() -> None:
        live: set[asyncio.Task] = set()
        while not stop.is_set():
            while len(live) < SOAK_SLOW:
                task = asyncio.create_task(slow())
                live.add(task)
                task.add_done_callback(live.discard)
            await asyncio.sleep(0.2)
        await asyncio.gather(*live, return_exceptions=True)

    async def abandon() -> None:
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(abandoned)
                await writer.drain()
                writer.close()
                counts["abandoned"] += 1
            except OSError:
                counts["abandoned_refused"] += 1
            await asyncio.sleep(0.2)

    await asyncio.gather(slow_pool(), abandon())


async def life(url: str, process, clients: int, seconds: float, writer: Writer,
               statuses: dict[str, int], answered: list[float], hostile: dict | None,
               rng: random.Random) -> float | None:
    """Askers and the writer until a random moment in the life's second half, then SIGKILL;
    returns the server's RSS just before the kill."""
    import httpx

    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        tasks = [asyncio.create_task(asker(http, n, stop, statuses, answered))
                 for n in range(clients)]
        tasks.append(asyncio.create_task(writer.run(http, stop)))
        if hostile is not None:
            tasks.append(asyncio.create_task(
                soak_hostile(urlsplit(url).port or 80, stop, hostile)))
        await asyncio.sleep(seconds * rng.uniform(0.5, 1.0))
        rss = rss_mb(process.pid)
        process.kill()  # SIGKILL, writes and questions in flight
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    process.wait(30)
    return rss


def soak_main(args: argparse.Namespace) -> int:
    import httpx

    if not 1 <= args.lives <= 100 or not 0 < args.life_seconds <= 120:
        raise SystemExit("--lives must be in [1, 100] and --life-seconds in (0, 120]")
    rng = random.Random(args.seed)
    writer = Writer()
    statuses: dict[str, int] = {}
    answered: list[float] = []
    hostile = {"slow_opened": 0, "slow_refused": 0, "slow_longest_s": 0.0, "abandoned": 0,
               "abandoned_refused": 0} if args.hostile else None
    restarts, stuck, lost, rss = [], 0, 0, []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="korqa-soak-") as scratch:
        data = Path(scratch) / "data"
        for number in range(args.lives):
            if time.monotonic() - began > MAX_TOTAL:
                break
            started = time.monotonic()
            try:
                process, url = start_server(args, Path(scratch), data_dir=data)
            except SystemExit as failure:
                stuck += 1
                print(f"life {number}: the server did not start: {failure}", file=sys.stderr)
                break
            restarts.append(round(time.monotonic() - started, 2))
            if number:
                lost += asyncio.run(check_writes(url, writer))
            else:
                for question in QUESTIONS[:3]:  # warm-up: the first answer loads lazily
                    httpx.post(f"{url}/ask", json={"question": question}, timeout=300)
            rss.append(asyncio.run(life(url, process, args.clients, args.life_seconds, writer,
                                        statuses, answered, hostile, rng)))
            print(f"life {number}: restart {restarts[-1]} s, {writer.acknowledged} writes "
                  f"acknowledged, {lost} lost, RSS {rss[-1]} MiB", file=sys.stderr, flush=True)
        # The last kill, checked on disk: the index opens without repair and holds exactly the
        # acknowledged documents (the write in flight settled by a last start).
        process, url = start_server(args, Path(scratch), data_dir=data)
        lost += asyncio.run(check_writes(url, writer))
        process.kill()
        process.wait(30)
        disk = check_soak_on_disk(data / "index", writer.model)
    answered.sort()
    total = sum(statuses.values())
    # The first life also traces the reader for ONNX Runtime (torch loaded) and copies the
    # index: the restarts after it are what must stay flat.
    measured = [r for r in rss[1:] if r is not None]

    def pct(q: float) -> float | None:
        return round(1000 * answered[min(len(answered) - 1, int(q * len(answered)))], 1) \
            if answered else None

    result = {
        "model": str(args.model or "tiny random"), "lives": len(restarts),
        "clients": args.clients, "life_seconds": args.life_seconds,
        "writes_acknowledged": writer.acknowledged, "writes_refused": writer.refused,
        "write_s": {"p50": round(statistics.median(writer.seconds), 3) if writer.seconds
                    else None, "max": round(max(writer.seconds, default=0.0), 3)},
        "acknowledged_writes_lost": lost, "restarts_stuck": stuck,
        "first_start_s": restarts[0] if restarts else None,
        "restart_s": {"median": statistics.median(restarts[1:]) if restarts[1:] else None,
                      "max": max(restarts[1:], default=None)},
        "rss_mb_before_each_kill": rss,
        "rss_flat_within_10pct": bool(measured) and max(measured) <= 1.1 * min(measured),
        "questions": total,
        "shares": {kind: round(n / max(total, 1), 3) for kind, n in sorted(statuses.items())},
        "answered_ms": {"p50": pct(0.5), "p99": pct(0.99)},
        "on_disk_after_last_kill": disk,
        **({"hostile": hostile} if hostile is not None else {}),
    }
    result["ok"] = (lost == 0 and stuck == 0 and result["rss_flat_within_10pct"]
                    and disk["store_matches_acknowledged"]
                    and disk["retriever_matches_acknowledged"] and not disk["repair_needed"])
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0 if result["ok"] else 1


def check_soak_on_disk(index_dir: Path, model: dict[str, list[str]]) -> dict:
    """After the server was SIGKILLed: the index opens without repair and holds exactly the
    acknowledged API documents, in its store and in its retriever."""
    from korqa.retrieval.index import Index
    from korqa.server.engine import repair_index

    with Index(index_dir) as index:
        stored = {}
        for paragraph in index.store:
            if paragraph.doc_id.startswith("api:"):
                stored.setdefault(paragraph.doc_id[4:], []).append(paragraph.text)
        indexed = {pid for pid in index.retriever.paragraph_ids if pid.startswith("api:")}
    expected = {f"api:{doc}:{k}" for doc, texts in model.items() for k in range(len(texts))}
    return {"store_matches_acknowledged": stored == model,
            "retriever_matches_acknowledged": indexed == expected,
            "repair_needed": repair_index(index_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lives", type=int, default=20, help="server starts, each ended by "
                                                               "kill -9 (default 20)")
    parser.add_argument("--life-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--model", help="reader dir (default: a tiny random reader)")
    parser.set_defaults(index=None)  # the server's own index of the sample corpus
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--startup-timeout", dest="startup_timeout", type=float, default=120.0)
    parser.add_argument("--hostile", action="store_true",
                        help="slowloris connections and abandoned questions as well")
    parser.add_argument("--seed", type=int, default=0)
    return soak_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
