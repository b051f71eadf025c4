"""Feedback: durable storage, POST /feedback checks, and the SQuAD export `korqa train` reads."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tiny import (
    DOCS,
    build_tiny_index,
    make_tiny_reader,
    one_torch_thread,
    tiny_paragraph_id,
    tiny_pipeline,
)

from korqa.cli import main
from korqa.corpus.formats import read_squad
from korqa.server.app import create_app
from korqa.server.feedback import (
    FEEDBACK_FILE,
    Feedback,
    FeedbackFull,
    FeedbackStore,
    export_squad,
    locate_span,
)

HALLA_TEXT = DOCS[1][2][0]
HALLA_ID = "kowiki:halla:0"
HALLA_Q = "한라산의 높이는 얼마인가?"


def test_locate_span_checks_the_given_start_or_finds_the_first() -> None:
    assert locate_span("가나다 나다", "나다", None) == 1
    assert locate_span("가나다 나다", "나다", 4) == 4
    assert locate_span("가나다 나다", "나다", 2) is None
    assert locate_span("가나다", "라", None) is None
    assert locate_span("가나다", "", None) is None
    assert locate_span("가나다", "가", -1) is None


def test_the_store_is_wal_durable_and_thread_safe(tmp_path: Path) -> None:
    db = tmp_path / "fb" / FEEDBACK_FILE
    store = FeedbackStore(db)

    def add(worker: int) -> None:
        for i in range(25):
            store.add(Feedback(f"q{worker}-{i}", "a", "p", "correct", 0, title="t", context="a"))

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    with FeedbackStore(db) as reopened:
        assert len(reopened) == 100
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(ValueError, match="verdict"):
        FeedbackStore(db).add(Feedback("q", "a", "p", "maybe"))
    (tmp_path / "other.sqlite").write_bytes(b"not a database at all, just some bytes" * 10)
    with pytest.raises(ValueError, match="feedback database"):
        FeedbackStore(tmp_path / "other.sqlite")


def test_export_replays_verdicts_and_counts_what_it_drops(tmp_path: Path) -> None:
    db = tmp_path / FEEDBACK_FILE
    context = "한라산은 제주도에 있다. 한라산의 높이는 1947미터이다."
    other = "김장은 겨울에 김치를 담그는 일이다."
    rows = [
        Feedback("높이는?", "1947미터", "p1", "correct", context.index("1947미터"),
                 title="한라산", context=context),
        Feedback("높이는?", "1947미터", "p1", "correct", None, title="한라산", context=context),
        Feedback("어디에 있나?", "한라산", "p1", "correct", None, title="한라산",
                 context=context),  # located: its first occurrence
        Feedback("어디에 있나?", "한라산", "p1", "wrong", 0, " 제주도", context.index("제주도") - 1,
                 title="한라산", context=context),  # withdraws 한라산, adds 제주도 (space cut)
        Feedback("김장이란?", "겨울", "p2", "wrong", None, title="김치", context=other),
        Feedback("김장이란?", "겨울", "p2", "wrong", None, "김치를 담그는 일", 3, title="김치",
                 context=other),  # the start does not match: invalid, not guessed
        Feedback("김장이란?", "  ", "p2", "correct", None, title="김치", context=other),
        Feedback("   ", "김장", "p2", "correct", 0, title="김치", context=other),
        Feedback("인사", "안녕하세요", "faq:3", "correct", 0),
    ]
    with FeedbackStore(db) as store:
        for row in rows:
            store.add(row)
    out = tmp_path / "out" / "feedback.json"
    counts = export_squad(db, out)
    assert counts == {"out": str(out), "rows": 9, "questions": 2, "answers": 2,
                      "dropped_empty": 2, "dropped_invalid": 1, "dropped_duplicate": 1,
                      "withdrawn": 1, "wrong_without_correction": 1, "no_paragraph": 1}
    examples = {e.question: e for e in read_squad(out)}  # valid for `korqa train`
    assert set(examples) == {"높이는?", "어디에 있나?"}
    height, where = examples["높이는?"], examples["어디에 있나?"]
    assert [(a.text, a.start) for a in height.answers] == [("1947미터", context.index("1947미터"))]
    assert [(a.text, a.start) for a in where.answers] == [("제주도", context.index("제주도"))]
    assert height.context == context and height.title == "한라산"
    assert len({e.qid for e in examples.values()}) == 2
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data["data"]) == 1 and len(data["data"][0]["paragraphs"]) == 1


def test_export_of_nothing_is_an_empty_valid_file(tmp_path: Path) -> None:
    FeedbackStore(tmp_path / FEEDBACK_FILE).close()
    counts = export_squad(tmp_path / FEEDBACK_FILE, tmp_path / "empty.json")
    assert counts["questions"] == 0 and read_squad(tmp_path / "empty.json") == []
    with pytest.raises(FileNotFoundError):
        export_squad(tmp_path / "missing.sqlite", tmp_path / "x.json")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with one_torch_thread():
        model_dir = make_tiny_reader(tmp_path / "reader")
        index_dir = build_tiny_index(tmp_path / "index")
        app = create_app(tiny_pipeline(index_dir, model_dir, threshold=0.0), tmp_path / "data")
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client


def test_feedback_round_trip_to_a_squad_file_with_exact_offsets(client: TestClient,
                                                                 tmp_path: Path) -> None:
    HALLA_ID = tiny_paragraph_id(tmp_path / "index", "halla")  # noqa: N806 - the module's name
    answer = client.post("/ask", json={"question": HALLA_Q}).json()
    assert answer["paragraph_id"] == HALLA_ID
    shown = {"question": HALLA_Q, "answer": answer["answer"], "paragraph_id": HALLA_ID}
    right = client.post("/feedback", json={**shown, "verdict": "correct",
                                           "answer_start": answer["start"]})
    assert right.status_code == 201 and right.json()["id"] == 1
    start = HALLA_TEXT.index("1947미터")
    fixed = client.post("/feedback", json={**shown, "verdict": "wrong",
                                           "corrected_answer": "1947미터",
                                           "corrected_start": start})
    assert fixed.status_code == 201
    other_q = {"question": "꼭대기에 있는 호수는?", "answer": "", "paragraph_id": HALLA_ID}
    assert client.post("/feedback", json={**other_q, "verdict": "wrong",
                                          "corrected_answer": "백록담",
                                          "corrected_start": HALLA_TEXT.index("백록담")}
                       ).status_code == 201
    # Spans that are not in the paragraph are refused while the user can still fix them.
    for bad in [{**shown, "verdict": "wrong", "corrected_answer": "1947미터",
                 "corrected_start": start + 1},
                {**shown, "verdict": "wrong", "corrected_answer": "백두산", "corrected_start": 0},
                {**shown, "verdict": "correct", "answer": "없는 답"},
                {**shown, "paragraph_id": "kowiki:nowhere:0", "verdict": "correct"}]:
        response = client.post("/feedback", json=bad)
        assert response.status_code == 422 and response.json()["error"], bad
    # This server has no FAQ: an FAQ verdict names nothing it answered.
    faq = {"question": "인사", "answer": "안녕", "verdict": "correct", "paragraph_id": "faq:0"}
    refused = client.post("/feedback", json=faq)
    assert refused.status_code == 422 and "unknown FAQ entry" in refused.json()["error"]
    assert client.get("/health").json()["feedback"] == 3

    out = tmp_path / "feedback-squad.json"
    assert main(["feedback", "export", "--data-dir", str(tmp_path / "data"),
                 "--out", str(out)]) == 0
    examples = {e.question: e for e in read_squad(out)}
    height = examples[HALLA_Q]
    # The "wrong" verdict withdrew the shown answer (unless it was the right one already).
    assert height.answers[0].text == "1947미터" and height.answers[0].start == start
    assert [a.text for a in height.answers] == ["1947미터"]
    lake = examples["꼭대기에 있는 호수는?"]
    assert (lake.answers[0].text, lake.answers[0].start) == ("백록담", HALLA_TEXT.index("백록담"))
    for example in examples.values():
        for gold in example.answers:
            assert example.context[gold.start:gold.end] == gold.text
    assert height.context == HALLA_TEXT and height.title == "한라산"
    assert main(["feedback", "export", "--db", str(tmp_path / "none.sqlite"),
                 "--out", str(out)]) == 2


def test_offsets_past_any_paragraph_are_refused_not_a_server_error(client: TestClient) -> None:
    shown = {"question": HALLA_Q, "answer": "1947미터", "paragraph_id": HALLA_ID}
    for field in ("answer_start", "corrected_start"):
        body = {**shown, "verdict": "wrong" if field == "corrected_start" else "correct",
                field: 2**63}
        if field == "corrected_start":
            body["corrected_answer"] = "1947미터"
        response = client.post("/feedback", json=body)
        assert response.status_code == 422 and field in response.json()["error"], field


def test_verdicts_on_one_long_paragraph_keep_it_once(tmp_path: Path) -> None:
    # 200 verdicts on a 100,000-character paragraph: one copy of it, not 200.
    context = "가나다라마바사아자차. " * 8_000
    db = tmp_path / FEEDBACK_FILE
    with FeedbackStore(db) as store:
        for i in range(200):
            store.add(Feedback(f"질문 {i}", "가나다", "p", "correct", 0, title="긴 문서",
                               context=context))
    # Closed: the write-ahead log is checkpointed into the file.
    assert db.stat().st_size < 2_000_000
    counts = export_squad(db, tmp_path / "out.json")
    assert counts["questions"] == 200
    assert all(e.context == context for e in read_squad(tmp_path / "out.json"))


def test_the_store_takes_no_more_than_its_limit(tmp_path: Path) -> None:
    with FeedbackStore(tmp_path / FEEDBACK_FILE, max_rows=2) as store:
        store.add(Feedback("q1", "a", "p", "correct", 0, title="t", context="a"))
        store.add(Feedback("q2", "a", "p", "correct", 0, title="t", context="a"))
        with pytest.raises(FeedbackFull, match="export"):
            store.add(Feedback("q3", "a", "p", "correct", 0, title="t", context="a"))
    with FeedbackStore(tmp_path / FEEDBACK_FILE, max_rows=2) as reopened:
        assert len(reopened) == 2
        with pytest.raises(FeedbackFull):
            reopened.add(Feedback("q3", "a", "p", "correct", 0, title="t", context="a"))


def test_a_version_1_store_exports_as_before_and_migrates_on_open(tmp_path: Path) -> None:
    db = tmp_path / FEEDBACK_FILE
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE feedback (id INTEGER PRIMARY KEY, created REAL NOT NULL,
            question TEXT NOT NULL, answer TEXT NOT NULL, paragraph_id TEXT NOT NULL,
            verdict TEXT NOT NULL, answer_start INTEGER, corrected_answer TEXT,
            corrected_start INTEGER, title TEXT, context TEXT);
        PRAGMA user_version = 1;""")
    rows = [(0.0, HALLA_Q, "1947미터", HALLA_ID, "correct", HALLA_TEXT.index("1947미터"), None,
             None, "한라산", HALLA_TEXT),
            (1.0, "인사", "안녕", "faq:0", "correct", 0, None, None, None, None)]
    with conn:
        conn.executemany("INSERT INTO feedback (created, question, answer, paragraph_id, "
                         "verdict, answer_start, corrected_answer, corrected_start, title, "
                         "context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    before = export_squad(db, tmp_path / "before.json")
    with FeedbackStore(db) as store:
        assert len(store) == 2
    after = export_squad(db, tmp_path / "after.json")
    assert {**before, "out": ""} == {**after, "out": ""}
    assert (tmp_path / "before.json").read_text() == (tmp_path / "after.json").read_text()
    check = sqlite3.connect(db)
    assert check.execute("SELECT COUNT(*) FROM feedback WHERE context IS NOT NULL").fetchone() \
        == (0,)
    check.close()
