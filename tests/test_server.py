"""`korqa serve`'s HTTP API on a tiny random reader: answers, limits, documents, restarts."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from server_support import LiveServer
from starlette.exceptions import HTTPException
from tiny import DOCS, build_tiny_index, tiny_pipeline

from korqa.cli import build_parser
from korqa.corpus.paragraph import Paragraph, document_id
from korqa.corpus.store import ParagraphStore
from korqa.corpus.text import MAX_PARAGRAPH_CHARS
from korqa.retrieval.index import STORE_FILE, Index
from korqa.server.app import ServerConfig, create_app, serve
from korqa.server.engine import Busy, Engine, repair_index
from korqa.server.launch import HEADER_TIMEOUT, allowed_host_names, prepare_index
from korqa.server.middleware import BodyLimit
from korqa.server.schemas import (
    MAX_QUESTION,
    AnswerCandidateOut,
    AnswerOut,
    DocumentIn,
    ErrorOut,
)
from korqa.server.writes import Writes

HALLA = "한라산의 높이는 얼마인가?"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_reader_dir: Path) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("server")
    app = create_app(tiny_pipeline(build_tiny_index(root / "index"), tiny_reader_dir,
                                   threshold=0.0), root / "data", max_body=64 * 1024)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_ask_returns_what_korqa_ask_json_prints(client: TestClient, tmp_path: Path,
                                                tiny_reader_dir: Path) -> None:
    response = client.post("/ask", json={"question": HALLA})
    assert response.status_code == 200
    data = response.json()
    # The same pipeline asked directly gives the same object, field for field.
    index_dir = client.app.state.engine.index_dir
    with tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0)() as pipeline:
        assert data == json.loads(json.dumps(pipeline.ask(HALLA).to_json()))
    assert data["known"] and data["answer"]
    assert data["context"][data["start"]:data["end"]] == data["answer"]
    assert data["title"] == "한라산" and len(data["retrieved"]) == 3
    one = client.post("/ask", json={"question": HALLA, "top_k": 1}).json()
    assert len(one["retrieved"]) == 1
    assert client.post("/ask", json={"question": HALLA, "top_k": 20}).status_code == 200


def test_health_page_static_files_and_schema(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_loaded"] and health["index_loaded"]
    assert health["paragraphs"] == len(DOCS) and health["retriever"] == "bm25"
    assert health["peak_rss_mb"] > 0
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/ask", "/documents", "/feedback", "/health"} <= set(paths)
    assert "AnswerOut" in json.dumps(paths["/ask"])


def test_the_answer_schema_is_what_to_json_writes(client: TestClient) -> None:
    data = client.post("/ask", json={"question": HALLA}).json()
    # The response model is made from the Answer dataclass: the same keys, and it reads back.
    assert set(AnswerOut.model_fields) == set(data) | {"faq_question"}
    assert AnswerOut.model_validate(data).model_dump(exclude={"faq_question"}) == data
    assert set(AnswerCandidateOut.model_fields) == set(data["candidates"][0])
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    answer = schemas["AnswerOut"]
    assert {"question", "answer", "score", "known", "start", "end", "candidates",
            "retrieved", "faq_question"} <= set(answer["properties"])
    assert answer["properties"]["source"]["enum"] == ["reader", "faq", "none"]
    assert "faq_question" not in answer["required"] and "context" in answer["required"]
    assert set(schemas["RetrievedOut"]["properties"]) == set(data["retrieved"][0])
    assert "reader_score" in schemas["AnswerCandidateOut"]["properties"]


HOSTILE_PATHS = [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fcli.py", "/static//etc/passwd", "/static/%00", "/nothing",
    "/static/%ff", "/static/a%00b.js", "/static/app.js%00", "/%00", "/%ff", "/static/",
    "/static", "/static/..\\app.py", "/static/..%5capp.py", "/static/%5c%5cserver%5cshare",
    "/static/%c0%af", "/static/%c0%ae%c0%ae/app.py", "/static/%ed%a0%80", "/static/%",
    "/static/%zz", "/static/%0d%0aSet-Cookie:%20a=b", "/static/..;/app.py",
    "/static/%ED%95%9C%EB%9D%BC%EC%82%B0.js", "/static/%e2%80%ae", "/static/con",
    "/static/" + "../" * 40 + "etc/passwd", "/static/" + "a" * 10_000, "/" + "a" * 10_000,
    "/static/" + "%ff" * 3_000, "/static/" + "a/" * 2_000, "/docs/%00", "/docs%00",
    "/docs-assets/%00", "/docs-assets/../core.py", "/docs-assets/%2e%2e/core.py",
    "/favicon.ico%00", "/ask%00", "/ask/%00", "/health%00", "/documents/..%2f..%2fapp.py",
    "/feedback/%ff", "/redoc", "//", "///etc/passwd",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_no_path_leaves_the_static_folder(client: TestClient, path: str) -> None:
    # httpx would normalise "..", so the raw path goes through the transport as written.
    response = client.request("GET", client.base_url.copy_with(raw_path=path.encode()))
    assert response.status_code == 404
    assert "error" in response.json()
    assert "import" not in response.text and "Traceback" not in response.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/ask?question=%00", 405), ("GET", "/ask?question=%ff%fe&top_k=%00", 405),
    ("POST", "/static/%00", 405), ("PUT", "/ask%00", 404), ("DELETE", "/health", 405),
    ("POST", "/docs-assets/%00", 405), ("GET", "/health?%00=%ff", 200),
    ("POST", "/ask?question=%00", 415),  # the body is what counts, and there is none
])
def test_hostile_queries_and_methods_get_a_clean_answer(client: TestClient, method: str,
                                                        path: str, status: int) -> None:
    response = client.request(method, client.base_url.copy_with(raw_path=path.encode()))
    assert response.status_code == status
    assert "Traceback" not in response.text and "internal" not in response.text


def test_raw_bytes_no_client_library_would_send_get_a_400(tmp_path: Path) -> None:
    # Unescaped UTF-8, control bytes and NULs in the request line: uvicorn refuses them before
    # the app sees them; the point is that nothing answers 500 or hangs.
    with LiveServer(create_app(_BlockingPipeline, tmp_path)) as live:
        for target in ["/static/한라산".encode(), b"/static/\xff\xfe", b"/static/a\x00b",
                       b"/ask?question=\x00", b"/static/\x7f", b"/static/a\tb"]:
            with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
                sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 400 "), (target, reply[:100])
            assert b"Traceback" not in reply


def test_the_favicon_and_offline_api_docs(client: TestClient) -> None:
    page = client.get("/")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.text
    for path in ["/favicon.ico", "/static/favicon.svg"]:
        icon = client.get(path)
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
        assert ElementTree.fromstring(icon.content).tag == "{http://www.w3.org/2000/svg}svg"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # Nothing the page loads comes from elsewhere (FastAPI's default uses a CDN).
    assert "cdn" not in docs.text and "https://" not in docs.text
    assets = re.findall(r'(?:href|src)="(/[^"]+)"', docs.text)
    assert len(assets) == 3  # script, style, icon
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


BAD_BODIES = {
    "malformed JSON": (b'{"question": "abc"', "application/json", 400),
    "empty body": (b"", "application/json", 422),
    "a JSON list": (b'["question"]', "application/json", 422),
    "a JSON string": (b'"question"', "application/json", 422),
    "binary": (bytes(range(256)) * 4, "application/json", 400),
    "binary as octet-stream": (bytes(range(256)), "application/octet-stream", 415),
    "form data": (b"question=abc", "application/x-www-form-urlencoded", 415),
    "JSON as text/plain": (b'{"question": "abc"', "text/plain", 415),
    "empty question": (b'{"question": ""}', "application/json", 422),
    "blank question": (b'{"question": "  \\n "}', "application/json", 422),
    "too long question": (json.dumps({"question": "가" * (MAX_QUESTION + 1)}).encode(),
                          "application/json", 422),
    "lone surrogate": (b'{"question": "\\ud800 abc"}', "application/json", 422),
    "NUL": (b'{"question": "abc\\u0000"}', "application/json", 422),
    "number question": (b'{"question": 5}', "application/json", 422),
    "null question": (b'{"question": null}', "application/json", 422),
    "no question": (b'{"top_k": 3}', "application/json", 422),
    "unknown field": (b'{"question": "abc", "topk": 3}', "application/json", 422),
    "top_k 0": (b'{"question": "abc", "top_k": 0}', "application/json", 422),
    "top_k 21": (b'{"question": "abc", "top_k": 21}', "application/json", 422),
    "top_k string": (b'{"question": "abc", "top_k": "3"}', "application/json", 422),
    "top_k bool": (b'{"question": "abc", "top_k": true}', "application/json", 422),
    "top_k float": (b'{"question": "abc", "top_k": 2.5}', "application/json", 422),
    "huge body": (json.dumps({"question": "a" * 100_000}).encode(), "application/json", 413),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_requests_get_a_4xx_json_error(client: TestClient, name: str) -> None:
    body, content_type, status = BAD_BODIES[name]
    response = client.post("/ask", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error
    assert len(response.content) < 4000  # the offending input is not echoed back


def test_a_body_that_is_not_json_is_told_to_send_json(client: TestClient) -> None:
    response = client.post("/ask", content=b"question=abc")  # no Content-Type at all
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]


def test_head_of_the_page_is_allowed(client: TestClient) -> None:
    response = client.head("/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]


def test_an_oversized_body_without_a_length_is_cut_off(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'"}'

    response = client.post("/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "error" in response.json()
    assert client.post("/ask", json={"question": HALLA}).status_code == 200  # still serving


def test_wrong_methods_and_bad_documents_and_feedback_bodies(client: TestClient) -> None:
    assert client.get("/ask").status_code == 405
    assert "error" in client.get("/ask").json()
    for body in [{"documents": []},
                 {"documents": [{"title": "t"}]},
                 {"documents": [{"title": "t", "text": "a", "paragraphs": ["b"]}]},
                 {"documents": [{"title": "t", "text": "  \n\n  "}]},
                 {"documents": [{"title": "", "text": "abc"}]},
                 {"documents": [{"title": "t", "text": "abc", "id": "a:b"}]},
                 {"documents": [{"title": "t", "text": "abc", "extra": 1}]},
                 {"documents": "abc"}]:
        response = client.post("/documents", json=body)
        assert response.status_code == 422 and response.json()["error"], body
    for body in [{"question": "q", "answer": "a", "paragraph_id": "x", "verdict": "maybe"},
                 {"question": "q", "answer": "", "paragraph_id": "x", "verdict": "correct"},
                 {"question": "q", "answer": "a", "paragraph_id": "x", "verdict": "correct",
                  "corrected_answer": "b", "corrected_start": 0},
                 {"question": "q", "answer": "a", "paragraph_id": "x", "verdict": "wrong",
                  "corrected_answer": "b"}]:
        response = client.post("/feedback", json=body)
        assert response.status_code == 422 and response.json()["error"], body


class _BlockingPipeline:
    """Stands in for a QAPipeline whose questions take as long as the test wants."""

    index = None
    faq = None

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.asked: list[str] = []  # the questions it was given to read, in order

    def ask(self, question: str, top_k: int | None = None) -> object:
        self.asked.append(question)
        self.started.set()
        self.release.wait(30)
        return type("A", (), {"to_json": lambda _: {"answer": question}})()

    def close(self) -> None:
        pass


def test_a_full_queue_answers_503_and_recovers(tmp_path: Path) -> None:
    blocking = _BlockingPipeline()
    app = create_app(lambda: blocking, tmp_path, max_queue=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        results: list[int] = []

        def ask() -> None:
            results.append(client.post("/ask", json={"question": "q"}).status_code)

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        assert blocking.started.wait(10)
        deadline = time.monotonic() + 10
        while app.state.engine.pending() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the second question is queued behind the first
        busy = client.post("/ask", json={"question": "q"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "busy" in busy.json()["error"]
        blocking.release.set()
        for thread in threads:
            thread.join(10)
        assert results == [200, 200]
        assert client.post("/ask", json={"question": "again"}).json() == {"answer": "again"}
        # An FAQ-only pipeline has no index to add documents to.
        response = client.post("/documents", json={"documents": [{"title": "t", "text": "x"}]})
        assert response.status_code == 409 and response.json()["error"]


def test_cross_origin_requests_only_from_allowed_origins(tmp_path: Path) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    closed = create_app(lambda: _BlockingPipeline(), tmp_path / "a")
    with TestClient(closed) as client:
        response = client.options("/ask", headers={"Origin": "http://evil.example", **preflight})
        assert "access-control-allow-origin" not in response.headers
        response = client.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in response.headers
    opened = create_app(lambda: _BlockingPipeline(), tmp_path / "b",
                        allow_origins=["http://app.example"])
    with TestClient(opened) as client:
        response = client.options("/ask", headers={"Origin": "http://app.example", **preflight})
        assert response.headers["access-control-allow-origin"] == "http://app.example"
        response = client.options("/ask", headers={"Origin": "http://evil.example", **preflight})
        assert "access-control-allow-origin" not in response.headers


def test_engine_refuses_beyond_its_queue_without_leaking_slots() -> None:
    blocking = _BlockingPipeline()
    engine = Engine(lambda: blocking, max_queue=1)
    engine.start()
    try:
        first = engine.ask("a")
        with pytest.raises(Busy):
            engine.ask("b")
        blocking.release.set()
        assert first.result(10) == {"answer": "a"}
        assert engine.ask("c").result(10) == {"answer": "c"}
    finally:
        engine.stop()


def _doc(i: int) -> dict:
    # Each document has words no other has, so asking its own text retrieves it first.
    return {"title": f"추가문서{i}", "id": f"doc{i}",
            "text": f"가상의 섬 뷁{i}꽯{i}은 북쪽 바다에 있으며 주민은 {100 + i}명이다."}


def _well_formed(answer: dict) -> bool:
    if answer["known"]:
        return answer["context"][answer["start"]:answer["end"]] == answer["answer"] != ""
    return answer["answer"] == "" and answer["start"] is None


def test_documents_added_while_questions_are_in_flight(tmp_path: Path,
                                                      tiny_reader_dir: Path) -> None:
    index_dir = build_tiny_index(tmp_path / "index")
    make_app = lambda: create_app(tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0),  # noqa: E731
                                  tmp_path / "data")
    writers, per_writer = 3, 3
    failures: list[str] = []
    answers: list[dict] = []
    added: list[dict] = []
    done = threading.Event()

    with LiveServer(make_app()) as server:
        def write(w: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for j in range(per_writer):
                    response = http.post("/documents",
                                         json={"documents": [_doc(w * per_writer + j)]})
                    if response.status_code != 200:
                        failures.append(f"documents {response.status_code} {response.text}")
                    else:
                        added.append(response.json())

        def read() -> None:
            questions = [HALLA, "한글은 누가 만들었나?", "뷁1꽯1 주민은 몇 명인가?"]
            with httpx.Client(base_url=server.url, timeout=60) as http:
                i = 0
                while not done.is_set() or i < 3:
                    response = http.post("/ask", json={"question": questions[i % 3]})
                    i += 1
                    if response.status_code != 200 or not _well_formed(response.json()):
                        failures.append(f"ask {response.status_code} {response.text[:200]}")
                    else:
                        answers.append(response.json())

        readers = [threading.Thread(target=read) for _ in range(3)]
        writer_threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in readers + writer_threads:
            thread.start()
        for thread in writer_threads:
            thread.join(120)
        done.set()
        for thread in readers:
            thread.join(120)
        assert failures == []
        total = len(DOCS) + writers * per_writer
        assert len(added) == writers * per_writer
        assert all(r["added"] == 1 and r["paragraphs"] <= total for r in added)
        assert max(r["paragraphs"] for r in added) == total  # no write lost
        health = httpx.get(f"{server.url}/health").json()
        assert health["paragraphs"] == total and health["index_generation"] >= 1
        assert len(answers) >= 9
        _assert_retrievable(server.url, range(writers * per_writer))

    # A restart on the same index keeps every added document.
    with LiveServer(make_app()) as server:
        assert httpx.get(f"{server.url}/health").json()["paragraphs"] == total
        _assert_retrievable(server.url, range(writers * per_writer))
        again = httpx.post(f"{server.url}/documents", json={"documents": [_doc(0)]}, timeout=60)
        assert again.json()["unchanged"] == 1 and again.json()["added"] == 0


def _assert_retrievable(url: str, numbers: range) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in numbers:
            doc = _doc(i)
            answer = http.post("/ask", json={"question": doc["text"], "top_k": 1}).json()
            assert answer["retrieved"][0]["paragraph_id"] == f"api:doc{i}:0", (i, answer)


def test_documents_split_on_blank_lines_and_update_by_id(tmp_path: Path,
                                                         tiny_reader_dir: Path) -> None:
    index_dir = build_tiny_index(tmp_path / "index")
    app = create_app(tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0), tmp_path / "data")
    with TestClient(app, raise_server_exceptions=False) as client:
        text = "첫 문단이다.\n\n둘째 문단이다.\r\n  \r\n셋째 문단이다."
        first = client.post("/documents", json={"documents": [
            {"title": "문단", "text": text},
            {"title": "목록", "paragraphs": ["하나", " ", "둘"], "id": "list"}]})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["added"], body["updated"], body["paragraphs"]) == (5, 0, len(DOCS) + 5)
        split, listed = body["documents"]
        assert len(split["paragraph_ids"]) == 3 and split["paragraph_ids"][0].startswith("api:")
        assert listed["paragraph_ids"] == ["api:list:0", "api:list:1"]
        update = client.post("/documents", json={"documents": [
            {"title": "목록", "paragraphs": ["하나", "셋"], "id": "list"}]}).json()
        assert (update["added"], update["updated"], update["unchanged"]) == (0, 1, 1)
        with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
            assert store.get(["api:list:1"])[0].text == "셋"
            assert store.get([split["paragraph_ids"][1]])[0].text == "둘째 문단이다."


def test_reposting_a_document_replaces_it_and_delete_removes_it(tmp_path: Path,
                                                               tiny_reader_dir: Path) -> None:
    index_dir = build_tiny_index(tmp_path / "index")
    app = create_app(tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0), tmp_path / "data")
    with TestClient(app, raise_server_exceptions=False) as client:
        three = ["파란여우 마을의 우체국장은 남궁별이다.", "뷁뷁 둘째 문단.", "꽯꽯 셋째 문단."]
        assert client.post("/documents", json={"documents": [
            {"title": "마을", "paragraphs": three, "id": "shrink"}]}).status_code == 200
        one = client.post("/documents", json={"documents": [
            {"title": "연구소", "paragraphs": ["은빛수달 연구소의 소장은 제갈현무이다."],
             "id": "shrink"}]}).json()
        assert (one["updated"], one["removed"], one["paragraphs"]) == (1, 2, len(DOCS) + 1)
        with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
            assert [p.id for p in store if p.id.startswith("api:")] == ["api:shrink:0"]
        found = client.post("/ask", json={"question": "뷁뷁 꽯꽯 파란여우"}).json()
        assert all(not hit["paragraph_id"].startswith("api:shrink:")
                   or hit["paragraph_id"] == "api:shrink:0" for hit in found["retrieved"])

        gone = client.delete("/documents/shrink")
        assert gone.status_code == 200 and gone.json()["removed"] == 1
        assert gone.json()["paragraphs"] == len(DOCS)
        with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
            assert not [p.id for p in store if p.id.startswith("api:")]
        assert client.delete("/documents/shrink").status_code == 404
        assert client.delete("/documents/a%3Ab").status_code == 422
        assert client.get("/health").json()["paragraphs"] == len(DOCS)


def test_a_long_text_is_cut_to_the_paragraph_limit() -> None:
    sentence = "가나다라마바사 아자차카타파하. "
    long_text = sentence * (MAX_PARAGRAPH_CHARS // len(sentence) * 3)
    document = DocumentIn(title="긴 글", text=long_text + "\n\n짧은 문단.")
    texts = [p.text for p in document.store_paragraphs()[1]]
    assert len(texts) == 4  # three pieces of about the limit, and the short one
    assert all(len(text) <= MAX_PARAGRAPH_CHARS for text in texts)
    assert all(text.endswith(".") for text in texts)
    assert "".join(texts[:-1]).replace(" ", "") == long_text.replace(" ", "")


MARKDOWN = """# 한라산

한라산은 제주도 가운데에 있는 산이다.
높이는 1947미터이다.

## 등산로

성판악 코스가 가장 길다.\r
\r
관음사 코스는 가파르다.

설악산
======

설악산은 강원도에 있다.
"""


@pytest.mark.parametrize("fmt", ["md", "txt"])
def test_posted_text_and_a_text_file_give_the_same_paragraphs(
        tmp_path: Path, tiny_reader_dir: Path, fmt: str) -> None:
    # Issue 28 item 4: one splitter. The same text as a .md/.txt file (named as the posted
    # title) and through POST /documents: the same paragraphs, section titles and numbers.
    from korqa.corpus.formats import load_corpus

    (tmp_path / "docs").mkdir()
    source = tmp_path / "docs" / f"산.{fmt}"
    source.write_text(MARKDOWN, encoding="utf-8")
    from_file = list(load_corpus([source]))
    index_dir = build_tiny_index(tmp_path / "index")
    app = create_app(tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0), tmp_path / "data")
    with TestClient(app, raise_server_exceptions=False) as client:
        posted = client.post("/documents", json={"documents": [
            {"id": "mountain", "title": "산", "text": MARKDOWN, "format": fmt}]})
        assert posted.status_code == 200, posted.text
        ids = posted.json()["documents"][0]["paragraph_ids"]
    with ParagraphStore(index_dir / STORE_FILE, readonly=True) as store:
        from_api = store.get(ids)
    assert [(p.title, p.text) for p in from_api] == [(p.title, p.text) for p in from_file]
    assert [p.id.rsplit(":", 1)[1] for p in from_api] == \
        [p.id.rsplit(":", 1)[1] for p in from_file]
    assert [p.title for p in from_api] == ["한라산", "한라산 › 등산로", "한라산 › 등산로",
                                           "한라산 › 설악산"]
    assert from_api[0].text == "한라산은 제주도 가운데에 있는 산이다.\n높이는 1947미터이다."


def test_restart_repairs_a_retriever_that_missed_stored_paragraphs(tmp_path: Path) -> None:
    index_dir = build_tiny_index(tmp_path / "index")
    # What a crash between storing documents and swapping in the rebuilt retriever leaves.
    with ParagraphStore(index_dir / STORE_FILE) as store:
        store.add([Paragraph("api:x:0", "추가", "뷁뷁 꽯꽯 새 문단", "x")])
    with pytest.raises(ValueError, match="rebuild"):
        Index(index_dir)
    assert repair_index(index_dir) is True
    with Index(index_dir) as index:
        assert index.search("뷁뷁 꽯꽯", 1)[0][0].id == "api:x:0"
    assert repair_index(index_dir) is False


def test_the_servers_own_index_keeps_added_documents_when_the_corpus_grows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    from tiny import write_corpus

    import korqa.retrieval.index

    monkeypatch.setenv("KORQA_CACHE", str(tmp_path / "cache"))
    # The cache builds its index with Kiwi morphemes: seconds of loading these checks do not need.
    monkeypatch.setattr(korqa.retrieval.index, "make_retriever",
                        partial(korqa.retrieval.index.make_retriever, morphemes=False))
    corpus = write_corpus(tmp_path / "c.jsonl", DOCS[:2])
    data = tmp_path / "data"
    target = prepare_index(None, [corpus], data)
    assert target == data / "index"
    with ParagraphStore(target / STORE_FILE) as store:
        store.add([Paragraph("api:x:0", "추가", "새 문단", "x")])
    repair_index(target)
    assert prepare_index(None, [corpus], data) == target  # same corpus: left as it is
    write_corpus(corpus, DOCS)
    prepare_index(None, [corpus], data)
    with Index(target) as index:
        assert len(index.store) == len(DOCS) + 1
        assert index.store.get(["api:x:0"])[0].text == "새 문단"
    # A document deleted from the corpus leaves the server's index; the API's stays.
    write_corpus(corpus, DOCS[1:])
    prepare_index(None, [corpus], data)
    with Index(target) as index:
        names = [document_id(corpus, name) for name, _, _ in DOCS]
        assert [d.doc_id for d in index.store.documents()] == [names[1], "x", *names[2:]]
    with pytest.raises(ValueError, match="not both"):
        prepare_index(tmp_path, [corpus], data)


def test_the_cli_parses_serve_and_feedback_export() -> None:
    args = build_parser().parse_args(["serve", "--index", "idx", "--allow-origin", "http://a",
                                      "--allow-origin", "http://b", "--top-k", "5"])
    assert (args.host, args.port, args.allow_origins, args.top_k) == \
        ("127.0.0.1", 8000, ["http://a", "http://b"], 5)
    args = build_parser().parse_args(["feedback", "export", "--db", "f.sqlite", "--out", "o"])
    assert (args.db, args.out) == ("f.sqlite", "o")


def test_a_question_past_its_deadline_answers_504_and_is_not_read(tmp_path: Path) -> None:
    blocking = _BlockingPipeline()
    app = create_app(lambda: blocking, tmp_path, deadline=0.5)
    with TestClient(app, raise_server_exceptions=False) as client:
        first = threading.Thread(target=client.post, args=("/ask",),
                                 kwargs={"json": {"question": "first"}})
        first.start()
        assert blocking.started.wait(10)
        late = client.post("/ask", json={"question": "queued"})  # waits behind "first"
        assert late.status_code == 504 and "0.5 s" in late.json()["error"]
        blocking.release.set()
        first.join(10)
        assert client.post("/ask", json={"question": "after"}).status_code == 200
    assert blocking.asked == ["first", "after"]  # the queued one was dropped, never read


def test_a_question_whose_client_left_is_dropped_before_it_is_read(tmp_path: Path) -> None:
    blocking = _BlockingPipeline()
    app = create_app(lambda: blocking, tmp_path)
    with LiveServer(app) as server:
        first = threading.Thread(target=httpx.post, args=(f"{server.url}/ask",),
                                 kwargs={"json": {"question": "first"}, "timeout": 30})
        first.start()
        assert blocking.started.wait(10)
        with pytest.raises(httpx.ReadTimeout):  # this client gives up and closes
            httpx.post(f"{server.url}/ask", json={"question": "abandoned"}, timeout=0.5)
        time.sleep(1.0)  # the server notices the closed connection
        blocking.release.set()
        first.join(10)
        answer = httpx.post(f"{server.url}/ask", json={"question": "after"}, timeout=30)
        assert answer.json() == {"answer": "after"}
    assert blocking.asked == ["first", "after"]


def test_other_host_names_are_refused_so_dns_rebinding_cannot_reach_the_api(
        tmp_path: Path) -> None:
    app = create_app(lambda: _BlockingPipeline(), tmp_path,
                     allowed_hosts=allowed_host_names("127.0.0.1", []))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert client.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example",
                     ""):
            response = client.post("/documents", headers={"Host": host},
                                   json={"documents": [{"title": "t", "text": "x"}]})
            assert response.status_code == 421 and "--allowed-hosts" in response.json()["error"]
    assert allowed_host_names("0.0.0.0", ["Box.lan"]) == ["localhost", "127.0.0.1", "::1",
                                                          "box.lan"]
    assert allowed_host_names("0.0.0.0", ["*"]) is None


def test_with_an_api_key_only_its_holder_adds_or_removes_documents(tmp_path: Path,
                                                                  tiny_reader_dir: Path) -> None:
    index_dir = build_tiny_index(tmp_path / "index")
    app = create_app(tiny_pipeline(index_dir, tiny_reader_dir, threshold=0.0), tmp_path / "data",
                     api_key="s3cret")
    document = {"documents": [{"title": "t", "text": "뷁뷁 꽯꽯", "id": "keyed"}]}
    with TestClient(app, raise_server_exceptions=False) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = client.post("/documents", json=document, headers=headers)
            assert response.status_code == 401 and "Bearer" in response.json()["error"]
            assert client.delete("/documents/keyed", headers=headers).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert client.post("/documents", json=document, headers=right).status_code == 200
        assert client.delete("/documents/keyed", headers=right).status_code == 200
        assert client.post("/ask", json={"question": HALLA}).status_code == 200  # reads: open


def test_serving_beyond_loopback_needs_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KORQA_API_KEY", raising=False)
    with pytest.raises(ValueError, match="--api-key"):
        serve(ServerConfig(host="0.0.0.0"))  # refused before anything loads


def test_a_damaged_store_is_found_at_start_and_answers_503_later(tmp_path: Path) -> None:
    index_dir = build_tiny_index(tmp_path / "index")
    store_file = index_dir / STORE_FILE
    with ParagraphStore(store_file, readonly=True) as store:
        store.check()  # a sound store passes
    data = bytearray(store_file.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[page + 100:2 * page] = b"\xff" * (page - 100)  # a page of garbage
    store_file.write_bytes(bytes(data))
    with ParagraphStore(store_file, readonly=True) as store, \
            pytest.raises(ValueError, match=r"(?s)paragraphs\.sqlite is damaged.*korqa index"):
        store.check()

    class DamagedPipeline(_BlockingPipeline):
        def ask(self, question: str, top_k: int | None = None) -> object:
            raise sqlite3.DatabaseError("database disk image is malformed")

    app = create_app(lambda: DamagedPipeline(), tmp_path / "data")
    app.state.engine.index_dir = index_dir
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/ask", json={"question": HALLA})
    assert response.status_code == 503
    assert str(store_file) in response.json()["error"]


def test_a_client_that_never_finishes_its_headers_is_disconnected(tmp_path: Path) -> None:
    app = create_app(lambda: _BlockingPipeline(), tmp_path)
    with LiveServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as loris:
        loris.settimeout(HEADER_TIMEOUT + 5)
        loris.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < HEADER_TIMEOUT + 5:
            try:
                loris.sendall(b"X-Slow: 1\r\n")  # a header line now and then, never the end
                if loris.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - started < HEADER_TIMEOUT + 5
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_a_body_trickled_past_its_time_is_refused_with_408() -> None:
    inner = FastAPI()

    @inner.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    @inner.exception_handler(HTTPException)
    async def as_json(_: object, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    app = BodyLimit(inner, max_bytes=1_000_000, max_seconds=1.0)

    def trickle() -> Iterator[bytes]:
        yield b'{"a": "'
        for _ in range(30):
            time.sleep(0.1)
            yield b"x"
        yield b'"}'

    with LiveServer(app) as server:
        response = httpx.post(f"{server.url}/echo", content=trickle(), timeout=30,
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 408 and "1 s" in response.json()["error"]
        fast = httpx.post(f"{server.url}/echo", json={"a": "x"}, timeout=30)
        assert fast.json() == {"a": "x"}


def test_the_write_routes_go_through_the_writes_create_app_is_given(tmp_path: Path) -> None:
    """`korqa serve --ray` swaps only where writes go (`make_writes`); the routes, their
    validation and their API key stay create_app's."""
    calls: list[tuple[str, object]] = []

    class Recorded(Writes):
        errors = {504: {"model": ErrorOut}}

        async def add_paragraphs(self, paragraphs: list[Paragraph]) -> dict[str, object]:
            calls.append(("add", [p.id for p in paragraphs]))
            return {"added": len(paragraphs), "index_generation": 7}

        async def remove_documents(self, doc_ids: list[str]) -> dict[str, object]:
            calls.append(("remove", doc_ids))
            if doc_ids != ["api:known"]:
                raise KeyError(doc_ids[0])
            return {"removed": 1}

        async def health(self) -> dict[str, object]:
            return {"status": "elsewhere"}

    def never() -> None:
        raise AssertionError("no question is asked here: the pipeline is never opened")

    app = create_app(never, tmp_path / "data", api_key="k", make_writes=Recorded)
    client = TestClient(app)  # no lifespan: the engine never starts
    key = {"Authorization": "Bearer k"}
    body = {"documents": [{"id": "known", "title": "설악산", "text": "설악산은 강원도에 있다."}]}
    assert client.post("/documents", json=body).status_code == 401
    assert client.post("/documents", json={"documents": [{"title": ""}]},
                       headers=key).status_code == 422
    assert calls == []
    added = client.post("/documents", json=body, headers=key)
    assert added.status_code == 200
    assert added.json() == {"added": 1, "index_generation": 7, "documents": [
        {"id": "known", "title": "설악산", "paragraph_ids": ["api:known:0"]}]}
    assert client.delete("/documents/known", headers=key).json() == {"removed": 1, "id": "known"}
    assert client.delete("/documents/other", headers=key).status_code == 404
    assert calls == [("add", ["api:known:0"]), ("remove", ["api:known"]),
                     ("remove", ["api:other"])]
    assert client.get("/health").json() == {"status": "elsewhere"}
    responses = client.get("/openapi.json").json()["paths"]["/documents"]["post"]["responses"]
    assert "504" in responses and "409" not in responses
