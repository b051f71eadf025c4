"""korqa on Ray: the optional extra, `korqa index --ray` (the same index), and `korqa serve --ray`
on a real two-node cluster started here (`ray start --head` + `ray start --address`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tiny import DOCS, build_tiny_index, make_tiny_reader, tiny_encoder, write_corpus

from bench.procfs import process_tree
from korqa.cli import main
from korqa.distributed import INSTALL_COMMAND
from korqa.retrieval.index import RETRIEVER_DIR, SEGMENTS_DIR, Index, build_index
from korqa.retrieval.registry import make_retriever

QUESTIONS = ["한라산의 높이는 얼마인가?", "한글은 누가 만들었나?", "김장이란 무엇인가?",
             "가장 큰 행성은?", "백두산의 높이는?", "제주도에는 무엇이 있나?"]


# ---- the extra ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["index", "--corpus", "CORPUS", "--out", "OUT", "--ray", "--no-progress"],
    ["serve", "--ray", "--replicas", "2", "--index", "OUT"],
])
def test_a_ray_option_without_ray_names_the_pip_command(command: list[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    argv = [str(corpus) if a == "CORPUS" else str(tmp_path / "idx") if a == "OUT" else a
            for a in command]
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert INSTALL_COMMAND in error and "--ray" in error
    assert not (tmp_path / "idx").exists()  # failed before doing anything


def test_the_default_path_never_imports_ray(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    code = ("import sys; from korqa.cli import main; "
            f"main(['index', '--corpus', {str(corpus)!r}, '--out', {str(tmp_path / 'i')!r}, "
            "'--no-morphemes', '--no-progress']); "
            "from korqa.server.app import create_app; "
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "i" / RETRIEVER_DIR).is_dir()


# ---- korqa index --ray ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance (2 CPUs) for the index tests, stopped at the end."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _tiny_encoder(directory: Path) -> Path:
    texts = [title + "".join(texts) for _, title, texts in DOCS] + QUESTIONS
    return tiny_encoder(directory, texts)


def _same_index(one: Path, two: Path) -> None:
    """Byte-equal retriever files and BM25 segments, except dense vectors, which may differ in
    the last bits (encoded in other batches): those are compared with a tolerance."""
    def retriever_files(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for folder in (RETRIEVER_DIR, SEGMENTS_DIR)
                      for p in (root / folder).rglob("*") if p.is_file())

    files = retriever_files(one)
    assert files == retriever_files(two)
    for name in files:
        if name.name == "embeddings.npy":
            np.testing.assert_allclose(np.load(one / name), np.load(two / name), atol=1e-5)
        elif name.name != "manifest.json":  # it holds the hashes (and so the vectors')
            assert (one / name).read_bytes() == (two / name).read_bytes(), name


@pytest.mark.slow
def test_ray_index_equals_a_single_process_build(tmp_path: Path, local_ray: None) -> None:
    from korqa.distributed import index as ray_index

    corpus = write_corpus(tmp_path / "corpus.jsonl")
    encoder = _tiny_encoder(tmp_path / "encoder")
    for kind, options in [("bm25", {}), ("hybrid", {}), ("hybrid", {"encoder": encoder})]:
        serial, parallel = tmp_path / f"{kind}-1", tmp_path / f"{kind}-ray"
        build_index(serial, [corpus], make_retriever(kind, **options), progress=False)

        def one_paragraph_shards(retriever, store, total, progress):  # noqa: ANN001
            ray_index.index_on_ray(retriever, store, total, progress, workers=2, shard_size=1)

        build_index(parallel, [corpus], make_retriever(kind, **options), progress=False,
                    index_with=one_paragraph_shards)
        assert ray_index.last_stats.shards == len(DOCS) and ray_index.last_stats.workers == 2
        _same_index(serial, parallel)
        with Index(serial) as a, Index(parallel) as b:
            for question in QUESTIONS:
                # Dense vectors of a paragraph encoded alone (a shard of one) and in a padded
                # batch differ in the last float bits: the scores, not their roundings, agree.
                one, two = a.search(question, 10), b.search(question, 10)
                assert [p.id for p, _ in one] == [p.id for p, _ in two]
                assert [s for _, s in one] == pytest.approx([s for _, s in two], abs=1e-5)


@pytest.mark.slow
def test_ray_index_of_korquad_dev_gives_the_same_top_10_for_every_question(
        tmp_path: Path, korquad_dev: Path, local_ray: None,
        capsys: pytest.CaptureFixture) -> None:
    # The default retriever: BM25 over character n-grams and Kiwi morphemes (the hybrid's
    # dense half is checked on the small corpus above: encoding all of KorQuAD dev twice would
    # take CI minutes).
    assert main(["index", "--corpus", str(korquad_dev), "--out", str(tmp_path / "one"),
                 "--no-progress"]) == 0
    assert main(["index", "--corpus", str(korquad_dev), "--out", str(tmp_path / "ray"),
                 "--no-progress", "--ray", "--workers", "2"]) == 0
    capsys.readouterr()
    _same_index(tmp_path / "one", tmp_path / "ray")
    data = json.loads(korquad_dev.read_text(encoding="utf-8"))["data"]
    questions = [qa["question"] for article in data for p in article["paragraphs"]
                 for qa in p["qas"]]
    assert len(questions) == 5774
    with Index(tmp_path / "one") as a, Index(tmp_path / "ray") as b:
        for start in range(0, len(questions), 500):
            batch = questions[start:start + 500]
            assert [[(p.id, s) for p, s in hits] for hits in a.search_many(batch, 10)] == \
                [[(p.id, s) for p, s in hits] for hits in b.search_many(batch, 10)]


# ---- a real cluster: korqa serve --ray ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Processes:
    """Processes this test started, stopped with everything they started, even on failure."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen] = []
        self.seen: set[int] = set()

    def start(self, command: list[str], log: Path, **env: str) -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, **self.env, **env},
                                   start_new_session=True)
        self.started.append(process)
        return process

    def note_children(self) -> None:
        """Remember the current process tree (a dead parent's children are re-parented)."""
        self.seen |= process_tree([p.pid for p in self.started])

    def stop(self, process: subprocess.Popen, timeout: float = 60) -> None:
        self.note_children()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def stop_all(self) -> list[int]:
        """Stop in reverse order, then kill whatever of their trees is left; returns the
        PIDs that had to be killed."""
        for process in reversed(self.started):
            self.stop(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in self.seen):
            time.sleep(0.5)
        left = [p for p in self.seen | process_tree([p.pid for p in self.started])
                if _alive(p) and p != os.getpid()]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Processes]]:
    """A Ray head and a second worker node, 1 CPU each, as separate `ray start --block`
    processes on loopback; everything they started is stopped afterwards by PID."""
    pytest.importorskip("ray")
    logs = tmp_path_factory.mktemp("ray-logs")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    # Ray's token authentication, with a token of this test's own (never ~/.ray's).
    token = logs / "auth_token"
    token.write_text(secrets.token_hex(32))
    processes = Processes({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                           "RAY_AUTH_TOKEN_PATH": str(token)})
    gcs = _free_port()
    node = ["--num-cpus", "1", "--disable-usage-stats", "--block"]

    def ports() -> list[str]:  # two nodes on one machine must not share the agents' ports
        return ["--dashboard-agent-listen-port", str(_free_port()),
                "--dashboard-agent-grpc-port", str(_free_port()),
                "--runtime-env-agent-port", str(_free_port()),
                "--metrics-export-port", str(_free_port()),
                "--node-manager-port", str(_free_port()),
                "--object-manager-port", str(_free_port())]

    try:
        processes.start([ray_cli, "start", "--head", "--port", str(gcs),
                         "--include-dashboard", "false", *node, *ports()],
                        logs / "head.log")
        address = f"127.0.0.1:{gcs}"
        _wait_for_nodes(ray_cli, address, 1, processes, logs)
        processes.start([ray_cli, "start", "--address", address, *node, *ports()],
                        logs / "worker.log")
        _wait_for_nodes(ray_cli, address, 2, processes, logs)
        yield address, processes
    finally:
        left = processes.stop_all()
        assert not [p for p in left if _alive(p)], f"processes left running: {left}"


def _wait_for_nodes(ray_cli: str, address: str, count: int, processes: Processes,
                    logs: Path) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for process in processes.started:
            if process.poll() is not None:
                raise RuntimeError(f"ray start exited: {process.args}\n" + "\n".join(
                    p.read_text()[-2000:] for p in logs.glob("*.log")))
        done = subprocess.run([sys.executable, "-c", code, address], capture_output=True,
                              text=True, timeout=120, env={**os.environ, **processes.env})
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise RuntimeError(f"the cluster did not reach {count} nodes")


def _serve(processes: Processes, index: Path, model: Path, data: Path, port: int, log: Path,
           *extra: str) -> tuple[subprocess.Popen, str]:
    korqa = str(Path(sys.executable).with_name("korqa"))
    process = processes.start(
        [korqa, "serve", "--index", str(index), "--model", str(model), "--data-dir", str(data),
         "--host", "127.0.0.1", "--port", str(port), "--threshold", "0", "--log-level",
         "warning", *extra], log, OMP_NUM_THREADS="1")
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(url: str, process: subprocess.Popen, log: Path, replicas: int = 0) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"korqa serve exited:\n{log.read_text()[-4000:]}")
        try:
            health = httpx.get(f"{url}/health", timeout=10).json()
            live = health.get("ray", {}).get("replicas", [])
            if health.get("status") == "ok" and (
                    not replicas or sum(r["ready"] for r in live) == replicas):
                return health
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"korqa serve did not get ready:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_serve_on_a_two_node_cluster(cluster: tuple[str, Processes],
                                     tmp_path: Path) -> None:
    address, processes = cluster
    model = make_tiny_reader(tmp_path / "reader")
    embedded_index = build_tiny_index(tmp_path / "embedded-index")
    # A copy: the same documents under the same ids (an id names the file it was read from).
    ray_index = Path(shutil.copytree(embedded_index, tmp_path / "ray-index"))
    embedded, embedded_url = _serve(processes, embedded_index, model, tmp_path / "data-1",
                                    _free_port(), tmp_path / "embedded.log")
    served, url = _serve(processes, ray_index, model, tmp_path / "data-2", _free_port(),
                         tmp_path / "ray.log", "--ray", "--ray-address", address,
                         "--replicas", "2")
    _wait_ready(embedded_url, embedded, tmp_path / "embedded.log")
    health = _wait_ready(url, served, tmp_path / "ray.log", replicas=2)
    replicas = health["ray"]["replicas"]
    # One replica on each node (each reserves its one CPU), both on generation 0.
    assert len({r["node"] for r in replicas}) == 2
    assert [r["generation"] for r in replicas] == [0, 0]
    assert all(r["threads"] == 1 and r["paragraphs"] == len(DOCS) for r in replicas)

    # The same answers as the embedded server, from whichever replica answers.
    with httpx.Client(timeout=60) as client:
        for question in QUESTIONS * 2:
            one = client.post(f"{embedded_url}/ask", json={"question": question})
            two = client.post(f"{url}/ask", json={"question": question})
            assert one.status_code == two.status_code == 200
            assert one.json() == two.json()
        page = client.get(f"{url}/")
        assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
        assert client.post(f"{url}/ask", json={"question": ""}).status_code == 422

        # A write goes through the single writer; every replica moves to generation 1.
        added = client.post(f"{url}/documents", json={"documents": [
            {"title": "설악산", "text": "설악산은 강원도에 있는 산으로 높이는 1708미터이다."}]})
        assert added.status_code == 200, added.text
        assert added.json()["added"] == 1 and added.json()["index_generation"] == 1
        health = client.get(f"{url}/health").json()
        assert [r["generation"] for r in health["ray"]["replicas"]] == [1, 1]
        assert health["paragraphs"] == len(DOCS) + 1
        for _ in range(6):  # both replicas (the router spreads requests) see the document
            found = client.post(f"{url}/ask", json={"question": "설악산은 어디에 있나?"}).json()
            assert found["title"] == "설악산"
        feedback = client.post(f"{url}/feedback", json={
            "question": "설악산은 어디에 있나?", "answer": "강원도",
            "paragraph_id": found["paragraph_id"], "verdict": "correct"})
        assert feedback.status_code == 201 and feedback.json() == {"id": 1}
        assert client.get(f"{url}/health").json()["feedback"] == 1

        # Removing it is a write too: generation 2 everywhere, and no replica finds it.
        doc_id = added.json()["documents"][0]["id"]
        removed = client.delete(f"{url}/documents/{doc_id}")
        assert removed.status_code == 200, removed.text
        assert removed.json()["removed"] == 1 and removed.json()["index_generation"] == 2
        assert client.delete(f"{url}/documents/{doc_id}").status_code == 404
        health = client.get(f"{url}/health").json()
        assert [r["generation"] for r in health["ray"]["replicas"]] == [2, 2]
        for _ in range(6):
            gone = client.post(f"{url}/ask", json={"question": "설악산은 어디에 있나?"}).json()
            assert gone["title"] != "설악산"

    failed = _kill_a_replica_under_load(url, replicas[0]["pid"])
    # Only requests in flight on the killed replica may fail: each replica takes at most
    # max_ongoing_requests (4), and 3 clients ask one question at a time.
    assert failed <= 3, failed
    processes.stop(served)
    assert served.returncode == 0, (tmp_path / "ray.log").read_text()[-3000:]


def _kill_a_replica_under_load(url: str, pid: int) -> int:
    """SIGKILL replica `pid` while 3 clients ask; wait until Ray has replaced it; then every
    request must succeed again. Returns how many requests failed."""
    failures: list[object] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    response = client.post(f"{url}/ask", json={"question": QUESTIONS[0]})
                    if response.status_code != 200:
                        failures.append(response.status_code)
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(2)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 180
        while True:
            assert time.monotonic() < deadline, "Ray did not replace the killed replica"
            try:
                live = httpx.get(f"{url}/health", timeout=10).json()["ray"]["replicas"]
            except (httpx.HTTPError, ValueError, KeyError):
                live = []
            if len(live) == 2 and pid not in {r["pid"] for r in live} and \
                    all(r["ready"] for r in live):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    failed = len(failures)
    print(f"killed replica {pid}: {failed} request(s) in flight failed: {failures}")
    with httpx.Client(timeout=60) as client:
        for question in QUESTIONS * 3:
            assert client.post(f"{url}/ask", json={"question": question}).status_code == 200
    return failed
