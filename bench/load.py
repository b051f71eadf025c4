"""Load test of `korqa serve` on loopback: N concurrent clients asking for a fixed time.

    python3 bench/load.py                                  # tiny random reader, its own server
    python3 bench/load.py --clients 50 --duration 20       # shorter, on a busy machine
    python3 bench/load.py --model models/korqa-reader      # the real reader, its own server
    python3 bench/load.py --url http://127.0.0.1:8000      # a server already running
    python3 bench/load.py batching --model DIR             # one reader call per question vs
                                                           # one per batch of questions
    python3 bench/load.py overload --model models/korqa-reader --before /tmp/before
                                                           # capacity, then 2x as many questions:
                                                           # goodput, 200/503/504 shares, p50/p99,
                                                           # this tree and TREE taking turns
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
                 threads: int | None = None, tree: Path | None = None,
                 data_dir: Path | None = None, nice: int = 0) -> tuple[subprocess.Popen, str]:
    """`korqa serve` on a free loopback port: this checkout's korqa, or the one in `tree` (a
    `git archive` of another commit, served by the same Python and packages), its niceness
    changed by `nice`."""
    model = Path(args.model).resolve() if args.model else \
        make_tiny_reader(scratch / "tiny-reader")
    port = free_port()
    command = [sys.executable, "-m", "korqa.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model", str(model),
               "--data-dir", str(data_dir or scratch / "data"),
               "--max-queue", str(args.max_queue), "--log-level", "warning", *extra]
    if args.index:
        command += ["--index", str(Path(args.index).resolve())]
    if threads or args.threads:
        command += ["--threads", str(threads or args.threads)]
    log = (scratch / "server.log").open("a")
    # Run from the scratch folder: `python -m` puts the working folder first on sys.path.
    env = {**os.environ, "PYTHONPATH": str((tree or Path(__file__).parents[1]).resolve())}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=scratch,
                               env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None)
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


# ---- overload: capacity, then twice as many questions as it answers -------------------------


async def open_loop(url: str, rate: float, duration: float, timeout: float) -> dict:
    """Questions arriving at `rate` per second for `duration` seconds, evenly spaced, each
    whether or not the earlier ones were answered (as independent users ask), and one writer
    posting a document, one after another: every status and time."""
    import httpx

    outcomes: list[tuple[int | str, float]] = []
    writes: list[float] = []
    last_answer = [0.0]

    async def writer(http: httpx.AsyncClient) -> None:
        number = 0
        while time.monotonic() - begin < duration:
            number += 1
            started = time.perf_counter()
            response = await http.post("/documents", timeout=300, json={"documents": [
                {"id": f"w{number}", "title": "쓰기", "paragraphs": [f"부하 중 쓰기 {number}"]}]})
            if response.status_code == 200:
                writes.append(time.perf_counter() - started)
            await asyncio.sleep(1.0)

    port = urlsplit(url).port or 80
    requests = [_raw_post("/ask", {"question": question}) for question in QUESTIONS]

    async def one(request: bytes) -> None:
        # A bare HTTP/1.1 exchange, not httpx: on a loaded machine the client must keep
        # sending at the rate however many answers come back at once.
        started = time.perf_counter()
        try:
            status: int | str = await asyncio.wait_for(_exchange(port, request), timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as failure:
            status = type(failure).__name__
        outcomes.append((status, time.perf_counter() - started))
        last_answer[0] = time.monotonic()

    limits = httpx.Limits(max_connections=MAX_CLIENTS, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        tasks = []
        begin = time.monotonic()
        writing = asyncio.create_task(writer(http))
        while (now := time.monotonic() - begin) < duration:
            due = len(tasks) / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(requests[len(tasks) % len(requests)])))
        sent = time.monotonic() - begin
        await asyncio.gather(*tasks, writing)
    writes.sort()
    # Goodput over the whole time answers came, the backlog after the last arrival included.
    return {**summarise(outcomes, max(last_answer[0] - begin, duration)),
            "sent_rps": round(len(tasks) / sent, 2), "writes": len(writes),
            "write_s": {"p50": round(statistics.median(writes), 2) if writes else None,
                        "max": round(writes[-1], 2) if writes else None}}


def _raw_post(path: str, body: dict) -> bytes:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


async def _exchange(port: int, request: bytes) -> int:
    """Send `request` on a fresh connection; the status of the answer, read whole."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()  # to the end: Connection: close
        return status
    finally:
        writer.close()


def summarise(outcomes: list[tuple[int | str, float]], duration: float) -> dict:
    """Shares of each status, goodput (answers per second over `duration`), p50/p99 of the
    answered."""
    answered = sorted(seconds for status, seconds in outcomes if status == 200)
    kinds: dict[str, int] = {}
    for status, _ in outcomes:
        kinds[str(status)] = kinds.get(str(status), 0) + 1

    def pct(values: list[float], q: float) -> float | None:
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) \
            if values else None

    return {"requests": len(outcomes), "goodput_rps": round(len(answered) / duration, 2),
            "shares": {kind: round(n / max(len(outcomes), 1), 3) for kind, n in
                       sorted(kinds.items())},
            "answered_ms": {"p50": pct(answered, 0.50), "p99": pct(answered, 0.99)}}


def measure_capacity(url: str, args: argparse.Namespace) -> float:
    """Questions answered per second by --clients askers who wait for each answer."""
    closed = asyncio.run(run_load(url, args.clients, args.capacity_seconds, None))
    return (closed["requests"] - closed["errors"]) / closed["seconds"]


def overload_main(args: argparse.Namespace) -> int:
    """For each server (this checkout; with --before, also that tree), taking turns: measure
    its capacity (questions answered per second by --clients askers who wait for each answer),
    send questions at --factor times that rate and see what comes back, measure the capacity
    again; goodput is compared with the mean of the two capacities."""
    import httpx

    if args.client_nice:
        # On a machine other jobs load, a client starved of CPU sends late: its arrivals,
        # not the server, would decide the rate. Only this process's priority changes.
        os.nice(args.client_nice)
    trees = [("after", None)] + ([("before", Path(args.before))] if args.before else [])
    rows: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for round_number in range(args.rounds):
        for name, tree in trees if round_number % 2 == 0 else trees[::-1]:
            with tempfile.TemporaryDirectory(prefix="korqa-overload-") as scratch:
                # The server back at the priority every other job has (--client-nice).
                process, url = start_server(args, Path(scratch), tree=tree,
                                            nice=-args.client_nice)
                try:
                    for question in QUESTIONS[:4]:
                        httpx.post(f"{url}/ask", json={"question": question}, timeout=300)
                    capacity = measure_capacity(url, args)
                    result = asyncio.run(open_loop(url, args.factor * capacity, args.duration,
                                                   timeout=60))
                    # Measured again after: the mean of the two follows a machine whose other
                    # load drifts during the run.
                    capacity = (capacity + measure_capacity(url, args)) / 2
                finally:
                    stop_tree(process)
            result.update(round=round_number, capacity_rps=round(capacity, 2),
                          offered_rps=round(args.factor * capacity, 2),
                          goodput_share=round(result["goodput_rps"] / capacity, 3))
            rows[name].append(result)
            print(f"{name:6} round {round_number}: capacity {capacity:.2f}/s, offered "
                  f"{args.factor * capacity:.2f}/s (sent {result['sent_rps']}/s), goodput "
                  f"{result['goodput_rps']}/s "
                  f"({result['goodput_share']:.0%}), shares {result['shares']}, answered p50 "
                  f"{result['answered_ms']['p50']} p99 {result['answered_ms']['p99']} ms; "
                  f"{result['writes']} writes, p50 {result['write_s']['p50']} max "
                  f"{result['write_s']['max']} s",
                  file=sys.stderr, flush=True)
    print(json.dumps({"model": str(args.model or "tiny random"), "factor": args.factor,
                      "clients_for_capacity": args.clients, "duration_s": args.duration,
                      "threads": args.threads, "rows": rows}, ensure_ascii=False, indent=2))
    return 0




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["load", "batching", "overload"],
                        default="load")
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
    parser.add_argument("--rounds", type=int, default=2,
                        help="--ray, overload: turns of each server")
    parser.add_argument("--before", metavar="TREE",
                        help="overload: also serve the korqa in TREE (`git archive` of another "
                             "commit), taking turns with this one")
    parser.add_argument("--factor", type=float, default=2.0,
                        help="overload: questions sent per second, as a multiple of capacity")
    parser.add_argument("--capacity-seconds", type=float, default=20.0,
                        help="overload: how long capacity is measured")
    parser.add_argument("--client-nice", type=int, default=0,
                        help="overload: change this client's niceness by N (negative: more "
                             "CPU for the client, needs root), so that it keeps the rate")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.mode == "overload":
        if not 0 < args.duration <= MAX_DURATION:
            raise SystemExit(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
        return overload_main(args)
    if args.mode == "batching":
        return batching_main(args)
    return ray_main(args) if args.ray else load_main(args)


if __name__ == "__main__":
    sys.exit(main())
