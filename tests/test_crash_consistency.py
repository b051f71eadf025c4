"""Crash consistency of the index's write path (issue 16, items 1 and 9): a real `korqa serve`
process is SIGKILLed while paused inside a rebuild, restarted, and asked; and the states such a
crash leaves are repaired at the next open."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from faults import paused_at
from server_support import LiveServer
from tiny import build_tiny_index

from korqa.cli import main as korqa_main
from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import ParagraphStore
from korqa.retrieval.index import (
    OLD_DIR,
    RETRIEVER_DIR,
    STAGING_DIR,
    STORE_FILE,
    Index,
    make_retriever,
)
from korqa.retrieval.manifest import read_manifest
from korqa.server.engine import rebuild_retriever, repair_index

# The issue's `shrink` document: one paragraph before and after, so an in-place update keeps
# the paragraph count. Each text has syllables no other paragraph has, so a question made of
# them finds that text's paragraph only through a retriever that indexed it.
OLD = "파란여우 마을의 우체국장은 뷁꽯이다."
NEW = "은빛수달 연구소의 소장은 제갈현무이다."
ASK_OLD = "뷁꽯"
ASK_NEW = "은빛수달 연구소의 소장은 누구인가?"
SHRINK = Paragraph("api:shrink:0", "마을", OLD, "api:shrink")


pytestmark = pytest.mark.usefixtures("one_thread")


def index_with_shrink(directory: Path) -> Path:
    """The tiny index plus the acknowledged `shrink` document holding OLD."""
    build_tiny_index(directory)
    with ParagraphStore(directory / STORE_FILE) as store:
        store.replace_documents([SHRINK])
    rebuild_retriever(directory)
    return directory


def state_of(index: Index) -> str:
    """"old" or "new" when store and retriever agree on `shrink`; "mix" when they do not."""
    old_hits = index.search(ASK_OLD, 1)
    new_hits = index.search(ASK_NEW, 1)
    if not old_hits and new_hits and new_hits[0][0].id == SHRINK.id \
            and new_hits[0][0].text == NEW:
        return "new"
    if old_hits and old_hits[0][0].id == SHRINK.id and old_hits[0][0].text == OLD \
            and (not new_hits or new_hits[0][0].text != NEW):
        return "old"
    return "mix"


def update_in_place(directory: Path) -> None:
    """What a server killed between storing an update and swapping in its retriever left
    (before stores were changed in the rebuild's own transaction)."""
    with ParagraphStore(directory / STORE_FILE) as store:
        store.replace_documents([Paragraph(SHRINK.id, "연구소", NEW, SHRINK.doc_id)])


# ---- the states a crash leaves, repaired at the next open ----------------------------------------


def test_an_in_place_update_that_missed_the_retriever_is_found_and_repaired(
        tmp_path: Path) -> None:
    # Item 1: the paragraph count is the same before and after, so counts cannot tell.
    index_dir = index_with_shrink(tmp_path / "index")
    with Index(index_dir) as index:
        assert state_of(index) == "old"
    update_in_place(index_dir)
    with pytest.raises(ValueError, match=r"generation .*korqa verify --index .* --repair"):
        Index(index_dir)
    assert repair_index(index_dir) is True
    with Index(index_dir) as index:
        assert state_of(index) == "new"
    assert repair_index(index_dir) is False  # and a clean restart leaves it alone


def test_korqa_verify_repair_rebuilds_a_stale_retriever(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index_dir = index_with_shrink(tmp_path / "index")
    update_in_place(index_dir)
    assert korqa_main(["verify", "--index", str(index_dir), "--repair"]) == 0
    assert json.loads(capsys.readouterr().out)["repaired"] is True
    with Index(index_dir) as index:
        assert state_of(index) == "new"


@pytest.mark.parametrize("recorded", [True, False], ids=["generations", "older-korqa"])
def test_a_swap_cut_between_removing_and_renaming_finishes_from_retriever_new(
        tmp_path: Path, recorded: bool) -> None:
    # Item 9: the update committed, its retriever saved as retriever.new/, retriever/ gone.
    index_dir = index_with_shrink(tmp_path / "index")
    update_in_place(index_dir)
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        retriever = make_retriever("bm25", morphemes=False)
        retriever.index(store, progress=False)
        retriever.save(index_dir / STAGING_DIR,
                       store_generation=store.generation if recorded else None)
    shutil.rmtree(index_dir / RETRIEVER_DIR)
    with Index(index_dir) as index:  # opening only reads: it answers from retriever.new/
        assert state_of(index) == "new"
    assert repair_index(index_dir) is True  # a writer (the server at start) finishes the swap
    assert not (index_dir / STAGING_DIR).exists() and not (index_dir / OLD_DIR).exists()
    with Index(index_dir) as index:
        assert state_of(index) == "new"


def test_a_retriever_saved_for_a_store_change_that_never_committed_is_dropped(
        tmp_path: Path) -> None:
    index_dir = index_with_shrink(tmp_path / "index")
    (index_dir / RETRIEVER_DIR).rename(index_dir / STAGING_DIR)
    shutil.copytree(index_dir / STAGING_DIR, index_dir / RETRIEVER_DIR)
    manifest_path = index_dir / STAGING_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["store_generation"] = "999-0000000000000000"  # a generation never committed
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with Index(index_dir) as index:
        assert state_of(index) == "old"
    assert repair_index(index_dir) is False
    assert not (index_dir / STAGING_DIR).exists()


def test_an_index_older_than_generations_opens_and_is_stamped_once(tmp_path: Path) -> None:
    index_dir = index_with_shrink(tmp_path / "index")
    manifest_path = index_dir / RETRIEVER_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["store_generation"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with Index(index_dir) as index:  # unknown: the paragraph counts decide, as before
        assert state_of(index) == "old"
    assert repair_index(index_dir) is True  # the store has a generation: rebuild once
    assert "store_generation" in read_manifest(index_dir / RETRIEVER_DIR, verify=False)
    assert repair_index(index_dir) is False


def test_a_store_older_than_generations_opens_and_gains_one_on_its_first_write(
        tmp_path: Path) -> None:
    index_dir = index_with_shrink(tmp_path / "index")
    with sqlite3.connect(index_dir / STORE_FILE) as connection:
        connection.execute("DROP TABLE meta")
    manifest_path = index_dir / RETRIEVER_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["store_generation"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with Index(index_dir) as index:
        assert index.store.generation is None and state_of(index) == "old"
    assert repair_index(index_dir) is False  # read-only until something writes
    update_in_place(index_dir)  # the first write adds the generation
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        assert store.generation is not None and store.generation.startswith("2-")
    assert repair_index(index_dir) is True
    with Index(index_dir) as index:
        assert state_of(index) == "new"


def test_every_write_moves_the_generation_on_and_a_rollback_does_not(tmp_path: Path) -> None:
    index_dir = index_with_shrink(tmp_path / "index")
    with ParagraphStore(index_dir / STORE_FILE) as store:
        seen = [store.generation]
        store.replace_documents([SHRINK])  # no change: same generation
        assert store.generation == seen[-1]
        store.add([Paragraph("api:x:0", "추가", "새 문단", "api:x")])
        seen.append(store.generation)
        store.replace_documents([Paragraph("api:x:0", "추가", "고친 문단", "api:x")])
        seen.append(store.generation)
        store.remove_documents(["api:x"])
        seen.append(store.generation)
        with pytest.raises(RuntimeError), store.transaction():
            store.add([Paragraph("api:y:0", "추가", "되돌릴 문단", "api:y")])
            assert store.generation != seen[-1]
            raise RuntimeError("rolled back")
        assert store.generation == seen[-1]
    assert len(set(seen)) == len(seen)
    assert [int(g.split("-")[0]) for g in seen] == sorted(int(g.split("-")[0]) for g in seen)


def test_readers_read_on_while_a_large_write_waits_for_its_retriever(tmp_path: Path) -> None:
    # The server's write transaction stays open while the retriever is rebuilt: a write as
    # large as a request body may be must not lock the question worker's reads out meanwhile.
    index_dir = index_with_shrink(tmp_path / "index")
    big = [Paragraph(f"api:big:{i}", "큰 글", "가나다라 " * 2_000, "api:big") for i in range(100)]
    with ParagraphStore(index_dir / STORE_FILE) as store, store.transaction():
        store.replace_documents(big)
        with ParagraphStore(index_dir / STORE_FILE, readonly=True) as reader:
            reader._conn.execute("PRAGMA busy_timeout = 100")
            assert len(reader) == len(store) - len(big)


# ---- a real server process, killed inside a rebuild ------------------------------------------

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

    def state(self) -> str:
        """state_of over HTTP: the retrieved paragraph and its text (the answer's context)."""
        old, new = self.ask(ASK_OLD), self.ask(ASK_NEW)
        old_found = [hit["paragraph_id"] for hit in old["retrieved"]]
        new_found = [hit["paragraph_id"] for hit in new["retrieved"]]
        if not old_found and new_found == [SHRINK.id] and new["context"] == NEW:
            return "new"
        if old_found == [SHRINK.id] and old["context"] == OLD and new["context"] != NEW:
            return "old"
        return "mix"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stderr.close()


def post_update(url: str, timeout: float) -> httpx.Response:
    return httpx.post(url + "/documents", timeout=timeout, json={"documents": [
        {"id": "shrink", "title": "연구소", "paragraphs": [NEW]}]})


@pytest.mark.parametrize(("point", "after"), [
    ("saved", "old"),  # retriever.new saved, the store not committed: the write never happened
    ("committed", "new"),  # committed, not swapped: the next start swaps in retriever.new
    ("swapping", "new"),  # retriever/ moved aside, retriever.new not yet renamed (item 9)
])
def test_a_server_killed_inside_an_update_restarts_with_old_or_new_never_a_mix(
        tmp_path: Path, tiny_reader_dir: Path, point: str, after: str) -> None:
    index_dir = index_with_shrink(tmp_path / "index")
    flag = tmp_path / "paused"
    server = ServerProcess(index_dir, tiny_reader_dir, pause=point, flag=flag)
    try:
        assert server.state() == "old"
        try:
            post_update(server.url, timeout=0.5)  # never answered: the rebuild pauses
        except httpx.TimeoutException:
            pass
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert time.monotonic() < deadline, "the rebuild never reached " + point
            time.sleep(0.05)
    finally:
        server.kill()
    if point == "swapping":  # what item 9 found: no retriever/, a complete retriever.new/
        assert not (index_dir / RETRIEVER_DIR).exists()
        assert (index_dir / STAGING_DIR / "manifest.json").is_file()

    server = ServerProcess(index_dir, tiny_reader_dir)
    try:
        assert server.state() == after
        assert not (index_dir / STAGING_DIR).exists() and not (index_dir / OLD_DIR).exists()
        if after == "old":
            # Acknowledged writes are visible after a SIGKILL right after the answer.
            response = post_update(server.url, timeout=60)
            assert response.status_code == 200 and response.json()["updated"] == 1
    finally:
        server.kill()
    if after == "old":
        server = ServerProcess(index_dir, tiny_reader_dir)
        try:
            assert server.state() == "new"
        finally:
            server.kill()
    assert repair_index(index_dir) is False  # nothing left to repair: a clean restart agrees


# ---- what the soak (bench/load.py soak) found ----------------------------------------------------


class _SlowPipeline:
    """Stands in for a QAPipeline whose every question takes `seconds`."""

    index = None
    faq = None

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def ask(self, question: str, top_k: int | None = None) -> object:
        time.sleep(self.seconds)
        return type("A", (), {"to_json": lambda _: {"answer": question}})()

    def close(self) -> None:
        pass


def test_a_question_slower_than_the_header_timeout_still_gets_its_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # hypercorn's read timeout counts the silence of a client waiting for its answer: set to
    # the header timeout, it closed the connection of every question that took longer, the
    # server then dropped the question as abandoned, and the client got no answer at all
    # (the soak's RemoteProtocolErrors, or a 499) instead of its answer, or 504 at the deadline.
    import korqa.server.launch
    from korqa.server.app import create_app

    monkeypatch.setattr(korqa.server.launch, "HEADER_TIMEOUT", 1)
    app = create_app(lambda: _SlowPipeline(2.5), tmp_path)
    with LiveServer(app) as server:
        answer = httpx.post(server.url + "/ask", json={"question": "느린 질문"}, timeout=30)
        assert answer.status_code == 200 and answer.json() == {"answer": "느린 질문"}
        with socket.create_connection(("127.0.0.1", server.port)) as silent:
            silent.settimeout(10)
            started = time.monotonic()
            assert silent.recv(1) == b""  # one that sends nothing is still let go
            assert time.monotonic() - started < 5
