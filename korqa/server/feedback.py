"""User feedback on answers, stored durably in SQLite, and exported as SQuAD training data."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEEDBACK_FILE = "feedback.sqlite"
FEEDBACK_VERSION = 2
MAX_FEEDBACK_ROWS = 100_000  # a bound on what anonymous clients can make the server store
VERDICTS = ("correct", "wrong")
# Each paragraph a verdict refers to is kept once, by digest: its offsets must survive a later
# edit of the document, and a thousand verdicts on one long paragraph must not copy it a
# thousand times.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS shown_paragraphs (
    digest TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    context TEXT NOT NULL
);
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
    paragraph_digest TEXT REFERENCES shown_paragraphs (digest)
);
"""
# Version 1 copied title and context into every row.
_MIGRATE_FROM_1 = """
CREATE TABLE shown_paragraphs (digest TEXT PRIMARY KEY, title TEXT NOT NULL,
                               context TEXT NOT NULL);
ALTER TABLE feedback ADD COLUMN paragraph_digest TEXT REFERENCES shown_paragraphs (digest);
"""


@dataclass(frozen=True)
class Feedback:
    """One verdict on one answer.

    `title` and `context` are the paragraph as it was shown at feedback time: the offsets
    refer to that text, and a document re-added later with other text must not move them.
    They are None for answers that came from no paragraph (FAQ answers).
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


class FeedbackFull(RuntimeError):
    """The store holds MAX_FEEDBACK_ROWS verdicts; export and clear it to take more."""


def paragraph_digest(title: str, context: str) -> str:
    return hashlib.sha256(f"{title}\n{context}".encode()).hexdigest()


class FeedbackStore:
    """An append-only SQLite table of `Feedback`, safe to share between threads.

    WAL lets the exporter read while the server writes; synchronous=FULL makes every accepted
    verdict survive a power cut, which matters more than speed at a few writes per minute.
    """

    def __init__(self, path: str | Path, max_rows: int = MAX_FEEDBACK_ROWS) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
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
        elif "feedback" in tables and version == 1:
            self._migrate_from_1()
        elif "feedback" not in tables or version != FEEDBACK_VERSION:
            self._conn.close()
            raise ValueError(f"{self.path}: not a korqa feedback database of version "
                             f"{FEEDBACK_VERSION} (user_version={version})")
        self._rows = self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def _migrate_from_1(self) -> None:
        """Move version 1's per-row copies into shown_paragraphs, in one transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _MIGRATE_FROM_1.split(";")):
                conn.execute(statement)
            rows = conn.execute("SELECT id, title, context FROM feedback "
                                "WHERE context IS NOT NULL").fetchall()
            for row_id, title, context in rows:
                digest = self._keep_paragraph(title or "", context)
                conn.execute("UPDATE feedback SET paragraph_digest = ? WHERE id = ?",
                             (digest, row_id))
            conn.execute("UPDATE feedback SET title = NULL, context = NULL")
            conn.execute(f"PRAGMA user_version = {FEEDBACK_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        conn.execute("VACUUM")  # give back the space the copies took

    def _keep_paragraph(self, title: str, context: str) -> str:
        digest = paragraph_digest(title, context)
        self._conn.execute("INSERT OR IGNORE INTO shown_paragraphs (digest, title, context) "
                           "VALUES (?, ?, ?)", (digest, title, context))
        return digest

    def add(self, item: Feedback) -> int:
        """Store one verdict; returns its id once it is committed."""
        if item.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {item.verdict!r}")
        with self._lock:
            if self._rows >= self.max_rows:
                raise FeedbackFull(f"{self.path} holds {self._rows} verdicts, its limit; "
                                   "export them (korqa feedback export) and move the file away")
            with self._conn:
                digest = (None if item.context is None
                          else self._keep_paragraph(item.title or "", item.context))
                cursor = self._conn.execute(
                    "INSERT INTO feedback (created, question, answer, paragraph_id, verdict, "
                    "answer_start, corrected_answer, corrected_start, paragraph_digest) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), item.question, item.answer, item.paragraph_id, item.verdict,
                     item.answer_start, item.corrected_answer, item.corrected_start, digest))
            self._rows += 1
            return int(cursor.lastrowid)

    def __len__(self) -> int:
        with self._lock:
            return self._rows

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
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        # Version 1 (read-only here, so not migrated) kept the paragraph in each row.
        shown = ("f.title, f.context FROM feedback AS f" if version == 1 else
                 "p.title, p.context FROM feedback AS f LEFT JOIN shown_paragraphs AS p "
                 "ON p.digest = f.paragraph_digest")
        rows = conn.execute(
            "SELECT f.id, question, answer, verdict, answer_start, corrected_answer, "
            f"corrected_start, {shown} ORDER BY f.id").fetchall()
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


@dataclass(kw_only=True)
class FeedbackExportConfig:
    """`korqa feedback export`: which feedback store, and the SQuAD file to write."""

    db: str | None = field(default=None, metadata={
        "help": "a feedback.sqlite file", "metavar": "FILE", "exclusive": "store"})
    data_dir: str | None = field(default=None, metadata={
        "help": "the server's data dir (default ~/.local/share/korqa/server)", "metavar": "DIR",
        "exclusive": "store"})
    out: str = field(metadata={"help": "SQuAD JSON to write", "metavar": "FILE"})


def export_feedback(config: FeedbackExportConfig) -> dict[str, Any]:
    """`korqa feedback export`: `export_squad` of the store `config` names."""
    data_dir = Path(config.data_dir or "~/.local/share/korqa/server").expanduser()
    return export_squad(config.db or data_dir / FEEDBACK_FILE, config.out)
