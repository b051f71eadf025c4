"""User feedback on answers, stored durably in SQLite, and exported as SQuAD training data."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FEEDBACK_FILE = "feedback.sqlite"
FEEDBACK_VERSION = 1
VERDICTS = ("correct", "wrong")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    paragraph_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('correct', 'wrong')),
    answer_start INTEGER,
    corrected_answer TEXT,
    corrected_start INTEGER,
    title TEXT,
    context TEXT
);
"""


@dataclass(frozen=True)
class Feedback:
    """One verdict on one answer.

    `title` and `context` are the paragraph as it was shown, copied at feedback time: the
    offsets refer to that text, and a document re-added later with other text must not move
    them. They are None for answers that came from no paragraph (FAQ answers).
    """

    question: str
    answer: str
    paragraph_id: str
    verdict: str
    answer_start: int | None = None
    corrected_answer: str | None = None
    corrected_start: int | None = None
    title: str | None = None
    context: str | None = None


class FeedbackStore:
    """An append-only SQLite table of `Feedback`, safe to share between threads.

    WAL lets the exporter read while the server writes; synchronous=FULL makes every accepted
    verdict survive a power cut, which matters more than speed at a few writes per minute.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection for all request threads, serialised by the lock.
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        self._lock = threading.Lock()
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            self._conn.close()
            raise ValueError(f"{self.path}: not a SQLite feedback database ({error})") from None
        if not tables:
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version = {FEEDBACK_VERSION}")
        elif "feedback" not in tables or version != FEEDBACK_VERSION:
            self._conn.close()
            raise ValueError(f"{self.path}: not a korqa feedback database of version "
                             f"{FEEDBACK_VERSION} (user_version={version})")

    def add(self, item: Feedback) -> int:
        """Store one verdict; returns its id once it is committed."""
        if item.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {item.verdict!r}")
        row = asdict(item)
        with self._lock, self._conn:
            cursor = self._conn.execute(
                "INSERT INTO feedback (created, question, answer, paragraph_id, verdict, "
                "answer_start, corrected_answer, corrected_start, title, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), row["question"], row["answer"], row["paragraph_id"],
                 row["verdict"], row["answer_start"], row["corrected_answer"],
                 row["corrected_start"], row["title"], row["context"]))
            return int(cursor.lastrowid)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def locate_span(context: str, text: str, start: int | None) -> int | None:
    """Where `text` starts in `context`: `start` if the text is there, else (with no start
    given) its first occurrence; None when it is not in the context at all."""
    if not text:
        return None
    if start is not None:
        return start if 0 <= start and context[start:start + len(text)] == text else None
    found = context.find(text)
    return found if found >= 0 else None


def export_squad(db: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the confirmed answers and user-corrected spans of `db` as a SQuAD v1.1 file.

    Rows are replayed in order. "correct" adds the shown answer as a gold span; "wrong" first
    withdraws that answer (if an earlier verdict had confirmed it for the same question and
    paragraph) and then adds the corrected span when one was selected. Each (question,
    paragraph) becomes one question whose answers are its surviving spans. Entries that cannot
    give a valid span are dropped and counted by reason. Returns the counts.
    """
    db = Path(db)
    if not db.is_file():
        raise FileNotFoundError(f"{db}: feedback database not found")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, question, answer, verdict, answer_start, corrected_answer, "
            "corrected_start, title, context FROM feedback ORDER BY id").fetchall()
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{db}: not a korqa feedback database ({error})") from None
    finally:
        conn.close()

    counts: Counter[str] = Counter()
    # (question, context) → {"qid", "title", "spans": [(text, start)]}, in first-seen order.
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for (row_id, question, answer, verdict, answer_start, corrected, corrected_start, title,
         context) in rows:
        question = question.strip()
        if context is None:
            counts["no_paragraph"] += 1  # FAQ answers: no paragraph to train a reader on
            continue
        key = (question, context)
        group = groups.setdefault(key, {"qid": f"feedback-{row_id}", "title": title or "",
                                        "spans": []})
        if verdict == "correct":
            text, start = answer, answer_start
        else:
            before = len(group["spans"])
            group["spans"] = [span for span in group["spans"] if span[0] != answer.strip()]
            counts["withdrawn"] += before - len(group["spans"])
            if corrected is None:
                counts["wrong_without_correction"] += 1
                continue
            text, start = corrected, corrected_start
        # A selection dragged over a space keeps it; the span is the text without it.
        stripped = text.strip()
        if start is not None and stripped:
            start += len(text) - len(text.lstrip())
        if not question or not stripped:
            counts["dropped_empty"] += 1
            continue
        start = locate_span(context, stripped, start)
        if start is None:
            counts["dropped_invalid"] += 1
            continue
        if (stripped, start) in group["spans"]:
            counts["dropped_duplicate"] += 1
            continue
        group["spans"].append((stripped, start))

    articles: dict[str, dict[str, Any]] = {}
    paragraphs: dict[tuple[str, str], dict[str, Any]] = {}
    exported = 0
    for (question, context), group in groups.items():
        if not group["spans"]:
            continue
        article = articles.setdefault(group["title"], {"title": group["title"],
                                                       "paragraphs": []})
        paragraph = paragraphs.get((group["title"], context))
        if paragraph is None:
            paragraph = paragraphs[(group["title"], context)] = {"context": context, "qas": []}
            article["paragraphs"].append(paragraph)
        # Latest first: training reads the first answer, and later feedback is better informed.
        answers = [{"text": text, "answer_start": start}
                   for text, start in reversed(group["spans"])]
        paragraph["qas"].append({"id": group["qid"], "question": question, "answers": answers})
        exported += 1

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    data = {"version": "korqa-feedback-1", "data": list(articles.values())}
    staging.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    staging.replace(out)  # a reader of `out` never sees half a file
    return {"out": str(out), "rows": len(rows), "questions": exported,
            "answers": sum(len(g["spans"]) for g in groups.values()),
            **{reason: counts[reason] for reason in (
                "dropped_empty", "dropped_invalid", "dropped_duplicate", "withdrawn",
                "wrong_without_correction", "no_paragraph")}}
