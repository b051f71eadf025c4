"""Load test of `korqa serve` on loopback: N concurrent clients asking for a fixed time.

    python3 bench/load.py                                  # tiny random reader, its own server
    python3 bench/load.py --clients 50 --duration 20       # shorter, on a busy machine
    python3 bench/load.py --model models/korqa-reader      # the real reader, its own server
    python3 bench/load.py --url http://127.0.0.1:8000      # a server already running
    python3 bench/load.py batching --model DIR             # one reader call per question vs
                                                           # one per batch of questions
    python3 bench/load.py soak --duration 60               # the askers, plus a writer posting,
                                                           # replacing and deleting documents and
                                                           # slowloris and abandoned clients; then
                                                           # SIGKILL and check the index on disk
    python3 bench/load.py --ray --replicas 1 2             # embedded vs Ray Serve with 1 and 2
                                                           # replicas, taking turns

Each client posts /ask (questions about the sample corpus, round robin) and waits for the
answer before asking again. Reported: requests, throughput, p50/p90/p99 latency, errors (any
non-200, transport failure or answer whose context[start:end] is not its answer; must be 0),
the server's peak RSS (from /health) and, for a server it started, the server's CPU time per
request (which, unlike latency, does not depend on what else the machine is running).
Without --url the script starts `korqa serve` itself on a free loopback port with a throw-away
data dir and stops it at the end; it talks to loopback only, and stops by itself after
--duration (at most 10 minutes; answers in flight then are still waited for).

Micro-batching (the `batching` mode): concurrent questions could share one reader call. On a
2-core CPU (busy with a training run, torch on 1 thread), 8 questions of 3 paragraphs:
    tiny random reader (1 layer, 32 wide):   22 ms/question one by one, 5 ms batched
    e5-small-sized reader (12 layers, 384):  1384 ms/question one by one, 1503 ms batched
so it only pays for toy models, whose cost is Python overhead; a real reader is compute-bound
and batching adds padding. The server therefore answers one question at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from procfs import cpu_seconds, memory_mib, process_tree

QUESTIONS = [
    "한라산의 높이는 얼마인가?", "한글은 누가 만들었나?", "훈민정음은 언제 알려졌나?",
    "경복궁은 어디에 있나?", "이순신은 어느 전쟁에서 활약했나?", "고려를 세운 사람은?",
    "직지는 언제 만들어졌나?", "백두산의 높이는?", "추석은 음력 몇 월 며칠인가?",
    "광합성에 필요한 것은?", "물은 몇 도에서 끓나?", "부산항은 어떤 항구인가?",
]
MAX_DURATION = 600.0
MAX_CLIENTS = 500


# ---- a server of our own ------------------------------------------------------------------------


def make_tiny_reader(directory: Path) -> Path:
    """A random 1-layer BERT reader whose vocabulary is the sample corpus's syllables."""
    import torch

    from korqa.modeling import BertConfig, BertForQuestionAnswering
    from korqa.modeling.checkpoint import save_pretrained
    from korqa.paths import sample_corpus_path

    text = sample_corpus_path().read_text(encoding="utf-8") + "".join(QUESTIONS)
    chars = sorted({c for c in text if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    save_pretrained(BertForQuestionAnswering(config), directory)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, scratch: Path, extra: tuple[str, ...] = (),
                 threads: int | None = None) -> tuple[subprocess.Popen, str]:
    model = args.model or make_tiny_reader(scratch / "tiny-reader")
    port = free_port()
    command = [sys.executable, "-m", "korqa.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model", str(model), "--data-dir", str(scratch / "data"),
               "--max-queue", str(args.max_queue), "--log-level", "warning", *extra]
    if args.index:
        command += ["--index", args.index]
    if threads or args.threads:
        command += ["--threads", str(threads or args.threads)]
    log = (scratch / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}):\n"
                             f"{(scratch / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"the server did not answer /health within {args.startup_timeout} s")


def tree_cpu_seconds(pids: set[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := cpu_seconds(pid)) is not None}


def stop_tree(process: subprocess.Popen, timeout: float = 90) -> None:
    """SIGTERM the server, then SIGKILL whatever of its process tree is left."""
    tree = process_tree([process.pid])
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    time.sleep(2)
    for pid in tree - {process.pid}:
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


def rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    """The process's resident set now (VmRSS) or at its peak (VmHWM), in MiB."""
    value = memory_mib(pid).get(key)
    return None if value is None else round(value, 1)


# ---- the load ------------------------------------------------------------------------------------


async def run_load(url: str, clients: int, duration: float, top_k: int | None) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + duration

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def client(number: int, http: httpx.AsyncClient) -> None:
        i = number
        while time.monotonic() < deadline:
            body = {"question": QUESTIONS[i % len(QUESTIONS)]}
            if top_k:
                body["top_k"] = top_k
            i += 1
            start = time.perf_counter()
            try:
                response = await http.post("/ask", json=body)
            except httpx.HTTPError as failure:
                error(type(failure).__name__)
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                error(f"HTTP {response.status_code}")
                continue
            answer = response.json()
            if answer["known"] and \
                    answer["context"][answer["start"]:answer["end"]] != answer["answer"]:
                error("span does not match its context")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # A request may wait behind the whole queue; the timeout only bounds a stuck server.
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(n, http) for n in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies),
            "throughput_rps": round(len(latencies) / elapsed, 2),
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                           "mean": round(1000 * statistics.fmean(latencies), 1)
                           if latencies else None},
            "errors": sum(errors.values()), "error_kinds": errors}


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"{url}: this load test only talks to loopback addresses")


def load_main(args: argparse.Namespace) -> int:
    import httpx

    if not 0 < args.duration <= MAX_DURATION:
        raise SystemExit(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
    if not 0 < args.clients <= MAX_CLIENTS:
        raise SystemExit(f"--clients must be in [1, {MAX_CLIENTS}]")
    with tempfile.TemporaryDirectory(prefix="korqa-load-") as scratch:
        process = None
        url = args.url
        if url:
            check_loopback(url)
        else:
            process, url = start_server(args, Path(scratch))
        try:
            # Warm-up: the first answer loads lazily-built things (particle trimming's Kiwi).
            for question in QUESTIONS[:3]:
                httpx.post(f"{url}/ask", json={"question": question}, timeout=300)
            cpu_before = cpu_seconds(process.pid) if process is not None else None
            result = asyncio.run(run_load(url, args.clients, args.duration, args.top_k))
            if cpu_before is not None and result["requests"]:
                # CPU per answer does not depend on how busy the machine is; wall time does.
                used = (cpu_seconds(process.pid) or cpu_before) - cpu_before
                result["server_cpu_ms_per_request"] = round(1000 * used / result["requests"], 1)
            health = httpx.get(f"{url}/health", timeout=30).json()
            result["server_peak_rss_mb"] = health.get("peak_rss_mb")
            if process is not None:
                result["server_peak_rss_mb"] = rss_mb(process.pid, "VmHWM") or \
                    result["server_peak_rss_mb"]
            result["paragraphs"] = health.get("paragraphs")
            result["url"] = url
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        latency = result["latency_ms"]
        print(f"{result['clients']} clients for {result['seconds']} s against {result['url']} "
              f"({result['paragraphs']} paragraphs)")
        print(f"  requests     {result['requests']}  ({result['throughput_rps']} /s)")
        print(f"  latency ms   p50 {latency['p50']}  p90 {latency['p90']}  p99 {latency['p99']}  "
              f"mean {latency['mean']}")
        print(f"  errors       {result['errors']} {result['error_kinds'] or ''}")
        print(f"  server peak RSS {result['server_peak_rss_mb']} MiB, CPU per request "
              f"{result.get('server_cpu_ms_per_request', '?')} ms")
    return 0 if result["errors"] == 0 else 1


# ---- Ray Serve: 1 and 2 replicas, taking turns ---------------------------------------------


def ray_main(args: argparse.Namespace) -> int:
    """The embedded server and `korqa serve --ray --replicas N` for each N, in turns: each turn
    starts its server (and, for Ray, its local cluster), loads it for --duration, stops it.
    CPU time is summed over the server's whole process tree (replicas, proxy, controller)."""
    import httpx

    turns = [("embedded", (), args.threads)] + [
        (f"ray x{n}", ("--ray", "--replicas", str(n)), n * args.threads) for n in args.replicas]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in turns}
    for round_number in range(args.rounds):
        for name, extra, threads in turns:
            with tempfile.TemporaryDirectory(prefix="korqa-load-") as scratch:
                process, url = start_server(args, Path(scratch), extra, threads)
                try:
                    for question in QUESTIONS[:4]:
                        httpx.post(f"{url}/ask", json={"question": question}, timeout=300)
                    before = tree_cpu_seconds(process_tree([process.pid]))
                    result = asyncio.run(run_load(url, args.clients, args.duration, args.top_k))
                    after = tree_cpu_seconds(process_tree([process.pid]))
                    used = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
                    result["cpu_ms_per_request"] = round(1000 * used / max(result["requests"], 1),
                                                         1)
                    health = httpx.get(f"{url}/health", timeout=30).json()
                    result["replicas"] = len(health.get("ray", {}).get("replicas", [])) or 1
                finally:
                    stop_tree(process)
            result["round"] = round_number
            runs[name].append(result)
            print(f"{name:9} round {round_number}: {result['throughput_rps']} req/s, p50 "
                  f"{result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms, "
                  f"CPU {result['cpu_ms_per_request']} ms/request, errors {result['errors']}",
                  file=sys.stderr, flush=True)
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "throughput_rps": statistics.median(r["throughput_rps"] for r in results),
            "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in results),
            "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in results),
            "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in results),
            "errors": sum(r["errors"] for r in results), "rounds": len(results)}
    base = summary["embedded"]["throughput_rps"] or 1.0
    for row in summary.values():
        row["x_embedded"] = round(row["throughput_rps"] / base, 2)
    print(json.dumps({"clients": args.clients, "duration_s": args.duration,
                      "threads_per_replica": args.threads, "model": args.model or "tiny random",
                      "summary": summary, "runs": runs}, ensure_ascii=False, indent=2))
    return 0 if all(row["errors"] == 0 for row in summary.values()) else 1


# ---- batching: one reader call per question or per batch ----------------------------------------


def batching_main(args: argparse.Namespace) -> int:
    """Time `QAPipeline.ask` one question at a time against the same questions' paragraphs
    read in one `predict` call (the pipeline's own pieces, composed here only to measure)."""
    from dataclasses import replace

    import torch

    from korqa.corpus.formats import SquadExample
    from korqa.modeling import BertForQuestionAnswering
    from korqa.modeling.checkpoint import load_model
    from korqa.pipeline import (
        PipelineConfig,
        QAPipeline,
        RetrievedParagraph,
        normalise_retrieval,
    )
    from korqa.pipeline.sources import open_index
    from korqa.reader.config import ReaderConfig
    from korqa.reader.predict import predict
    from korqa.reader.reader import Reader
    from korqa.tokenization import Tokenizer

    torch.set_num_threads(args.threads or torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="korqa-batching-") as scratch:
        model_dir = args.model or make_tiny_reader(Path(scratch) / "tiny")
        model = load_model(BertForQuestionAnswering, model_dir)
        reader = Reader(model, Tokenizer.from_pretrained(model_dir),
                        ReaderConfig(batch_size=1, trim_particles=False))
    index = open_index(args.index)
    pipeline = QAPipeline(index, reader, config=PipelineConfig(threshold=0.0))
    questions = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[:args.batch]
    k = pipeline.config.top_k

    def one_by_one() -> list:
        return [pipeline.ask(q) for q in questions]

    def batched() -> list:
        retrieved = []
        examples = []
        for i, hits in enumerate(index.search_many(questions, k)):
            scores = normalise_retrieval([score for _, score in hits])
            retrieved.append([RetrievedParagraph(p, raw, s)
                              for (p, raw), s in zip(hits, scores, strict=True)])
            examples += [SquadExample(f"{i}:{j}", questions[i], p.text, "", 0)
                         for j, (p, _) in enumerate(hits)]
        config = replace(reader.config, n_best=pipeline.config.n_best)
        read = predict(reader.engine, reader.tokenizer, examples, config, config)
        return [pipeline.decide(q, retrieved[i],
                                [[c for c in read[f"{i}:{j}"] if c.text]
                                 for j in range(len(retrieved[i]))])
                for i, q in enumerate(questions)]

    same = [a.answer for a in one_by_one()] == [a.answer for a in batched()]
    times: dict[str, list[float]] = {"one_by_one": [], "batched": []}
    for _ in range(args.repeats):
        for name, run in (("one_by_one", one_by_one), ("batched", batched)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    result = {name: round(1000 * statistics.median(t) / len(questions), 1)
              for name, t in times.items()}
    print(json.dumps({"ms_per_question": result, "batch": len(questions),
                      "same_answers": same, "threads": torch.get_num_threads(),
                      "model": str(args.model or "tiny random")}, indent=2))
    return 0


# ---- soak: questions while documents change, with slow and abandoned clients ------------------


SOAK_SLOW = 100  # slowloris connections held open at once
SOAK_DEADLINE = 10.0  # the server's default question deadline (`korqa serve --deadline`)


def soak_text(version: int, part: int) -> str:
    """A paragraph no other paragraph resembles: syllables picked by its version and part."""
    syllables = "".join(chr(0xAC00 + (version * 7919 + part * 104729 + i * 2741) % 11172)
                        for i in range(8))
    return f"소크 문서 {version}판 {part}째 문단의 암호는 {syllables}이다."


async def soak_writer(http, stop: asyncio.Event, model: dict[str, list[str]],
                      log: dict[str, int]) -> None:
    """Post, replace (fewer paragraphs) and delete documents in turn; `model` holds what the
    server acknowledged: doc id → its paragraphs' texts."""
    version = 0
    slot = 0
    while not stop.is_set():
        doc = f"soak{slot % 12}"
        slot += 1
        version += 1
        if doc not in model:
            op, texts = "post", [soak_text(version, k) for k in range(3)]
        elif len(model[doc]) > 1:
            op, texts = "replace", [soak_text(version, 0)]
        else:
            op, texts = "delete", []
        try:
            if op == "delete":
                response = await http.delete(f"/documents/{doc}", timeout=300)
            else:
                response = await http.post("/documents", timeout=300, json={
                    "documents": [{"id": doc, "title": f"소크 {doc}", "paragraphs": texts}]})
        except Exception as failure:  # noqa: BLE001 - counted: an unacknowledged write
            log[f"{op} {type(failure).__name__}"] = log.get(f"{op} {type(failure).__name__}",
                                                            0) + 1
            continue
        if response.status_code == 200:
            log[op] = log.get(op, 0) + 1
            if op == "delete":
                model.pop(doc, None)
            else:
                model[doc] = texts
        else:
            log[f"{op} HTTP {response.status_code}"] = \
                log.get(f"{op} HTTP {response.status_code}", 0) + 1


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


async def run_soak(url: str, pid: int, clients: int, duration: float) -> dict:
    import httpx

    port = urlsplit(url).port or 80
    stop = asyncio.Event()
    model: dict[str, list[str]] = {}
    writes: dict[str, int] = {}
    hostile = {"slow_opened": 0, "slow_refused": 0, "slow_longest_s": 0.0, "abandoned": 0,
               "abandoned_refused": 0}
    rss: list[float | None] = [rss_mb(pid)]

    async def sample_rss() -> None:
        while not stop.is_set():
            await asyncio.sleep(5)
            rss.append(rss_mb(pid))

    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        background = [asyncio.create_task(soak_writer(http, stop, model, writes)),
                      asyncio.create_task(soak_hostile(port, stop, hostile)),
                      asyncio.create_task(sample_rss())]
        # The same askers as `load`; 503 (queue full) and 504 (past the deadline) are the
        # server's designed answers under overload, counted apart.
        load = await run_load(url, clients, duration, None)
        stop.set()
        await asyncio.gather(*background)
        by_design = {kind: n for kind, n in load["error_kinds"].items()
                     if kind in ("HTTP 503", "HTTP 504")}
        load["errors"] -= sum(by_design.values())
        load["error_kinds"] = {k: n for k, n in load["error_kinds"].items() if k not in by_design}
        load["by_design"] = by_design
        # Every acknowledged write, asked for over HTTP: each live paragraph is the first hit
        # for its own text, and no deleted or replaced text is found.
        missing = 0
        for doc, texts in model.items():
            for k, text in enumerate(texts):
                answer = (await http.post("/ask", json={"question": text, "top_k": 1})).json()
                if [h["paragraph_id"] for h in answer["retrieved"]] != [f"api:{doc}:{k}"]:
                    missing += 1
        health = (await http.get("/health")).json()
    rss.append(rss_mb(pid))
    return {**load, "writes": writes, "hostile": {**hostile, "slow_longest_s":
                                                  round(hostile["slow_longest_s"], 1)},
            "documents_live": len(model), "acknowledged_not_found_over_http": missing,
            "rss_mb": {"start": rss[0], "end": rss[-1],
                       "max": max((r for r in rss if r is not None), default=None),
                       "samples": rss},
            "paragraphs": health.get("paragraphs"), "model": model}


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


def soak_main(args: argparse.Namespace) -> int:
    """`load`'s askers plus a writer and hostile clients against a server of our own; then
    SIGKILL it and check the index on disk."""
    import httpx

    if not 0 < args.duration <= MAX_DURATION:
        raise SystemExit(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
    if not 0 < args.clients <= MAX_CLIENTS:
        raise SystemExit(f"--clients must be in [1, {MAX_CLIENTS}]")
    with tempfile.TemporaryDirectory(prefix="korqa-soak-") as scratch:
        process, url = start_server(args, Path(scratch))
        try:
            for question in QUESTIONS[:3]:
                httpx.post(f"{url}/ask", json={"question": question}, timeout=300)
            result = asyncio.run(run_soak(url, process.pid, args.clients, args.duration))
            result["server_peak_rss_mb"] = rss_mb(process.pid, "VmHWM")
        finally:
            process.kill()  # SIGKILL: what is on disk must already be whole
            process.wait(30)
        model = result.pop("model")
        result["on_disk_after_sigkill"] = check_soak_on_disk(Path(scratch) / "data" / "index",
                                                             model)
    p99 = result["latency_ms"]["p99"]
    result["p99_within_deadline"] = p99 is not None and p99 <= 1000 * SOAK_DEADLINE
    disk = result["on_disk_after_sigkill"]
    ok = (result["errors"] == 0 and result["p99_within_deadline"]
          and result["acknowledged_not_found_over_http"] == 0
          and disk["store_matches_acknowledged"] and disk["retriever_matches_acknowledged"]
          and not disk["repair_needed"])
    result["ok"] = ok
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["load", "batching", "soak"], default="load")
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--model", help="reader dir for the server it starts (default: tiny)")
    parser.add_argument("--index", help="index dir for the server it starts (default: sample)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at most 600)")
    parser.add_argument("--top-k", type=int, help="paragraphs per question (server default)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the server it starts (default 1)")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--batch", type=int, default=8, help="batching: questions per batch")
    parser.add_argument("--repeats", type=int, default=5, help="batching: timed rounds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ray", action="store_true",
                        help="the embedded server against `korqa serve --ray --replicas N` for "
                             "each N of --replicas, taking turns (needs the ray extra)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2],
                        help="--ray: replica counts to compare (default 1 2)")
    parser.add_argument("--rounds", type=int, default=2, help="--ray: turns of each server")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.mode == "soak":
        return soak_main(args)
    if args.mode == "batching":
        return batching_main(args)
    return ray_main(args) if args.ray else load_main(args)


if __name__ == "__main__":
    sys.exit(main())
