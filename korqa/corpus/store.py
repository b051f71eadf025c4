"""A persistent paragraph store in SQLite: add (one row per id), get by ids, count, iterate."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from korqa.corpus.paragraph import Paragraph

STORE_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS paragraphs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    doc_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS paragraphs_title ON paragraphs (title);
"""
# SQLite's default limit on bound parameters is 999 in old builds; stay below it.
_IN_BATCH = 500


@dataclass(frozen=True)
class AddResult:
    """What one `ParagraphStore.add` did."""

    added: int
    updated: int
    unchanged: int


class ParagraphStore:
    """Paragraphs on disk, in insertion order (`seq`), unique by `Paragraph.id`.

    Adding a paragraph whose id is already stored replaces its title/text/doc id, so re-adding
    an edited source file updates the store in place; its position (`seq`) is kept.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"{self.path}: paragraph store not found")
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path)
        self._check_or_create(readonly)

    def _check_or_create(self, readonly: bool) -> None:
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.path}: not a SQLite paragraph store ({error})") from None
        if not tables and not readonly:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
            self._conn.commit()
            return
        if "paragraphs" not in tables or version != STORE_VERSION:
            raise ValueError(
                f"{self.path}: not a korqa paragraph store of version {STORE_VERSION} "
                f"(user_version={version}, tables={sorted(tables)})"
            )

    # ---- writing ------------------------------------------------------------------------

    def add(self, paragraphs: Iterable[Paragraph], batch_size: int = 10_000) -> AddResult:
        """Insert new paragraphs and update changed ones, in batches (one transaction each)."""
        before = len(self)
        changed = seen = 0
        iterator = iter(paragraphs)
        while batch := list(islice(iterator, batch_size)):
            start = self._conn.total_changes
            with self._conn:
                self._conn.executemany(
                    "INSERT INTO paragraphs (id, title, text, doc_id) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET title = excluded.title, "
                    "text = excluded.text, doc_id = excluded.doc_id "
                    "WHERE title != excluded.title OR text != excluded.text "
                    "OR doc_id != excluded.doc_id",
                    [(p.id, p.title, p.text, p.doc_id) for p in batch],
                )
            changed += self._conn.total_changes - start
            seen += len(batch)
        added = len(self) - before
        return AddResult(added=added, updated=changed - added, unchanged=seen - changed)

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM paragraphs").fetchone()[0]

    def count(self) -> int:
        return len(self)

    def get(self, ids: Iterable[str]) -> list[Paragraph]:
        """Paragraphs for `ids`, in the same order; an unknown id raises KeyError naming it."""
        ids = list(ids)
        found: dict[str, Paragraph] = {}
        for start in range(0, len(ids), _IN_BATCH):
            chunk = ids[start:start + _IN_BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT id, title, text, doc_id FROM paragraphs WHERE id IN ({marks})", chunk
            )
            found.update((row[0], Paragraph(*row)) for row in rows)
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"{self.path}: paragraph id {missing[0]!r} not in the store")
        return [found[i] for i in ids]

    def by_title(self, title: str) -> list[Paragraph]:
        """All paragraphs of documents titled `title`, in insertion order (title is indexed)."""
        rows = self._conn.execute(
            "SELECT id, title, text, doc_id FROM paragraphs WHERE title = ? ORDER BY seq", (title,)
        )
        return [Paragraph(*row) for row in rows]

    def containing(self, text: str) -> list[str]:
        """Ids of paragraphs whose text equals or contains `text` (a full scan, in C)."""
        rows = self._conn.execute(
            "SELECT id FROM paragraphs WHERE instr(text, ?) > 0 ORDER BY seq", (text,)
        )
        return [row[0] for row in rows]

    def __iter__(self) -> Iterator[Paragraph]:
        return self.iterate()

    def iterate(self) -> Iterator[Paragraph]:
        """All paragraphs in insertion order, streamed from disk."""
        # A separate cursor so that other queries on this store may run while iterating.
        cursor = self._conn.cursor()
        cursor.execute("SELECT id, title, text, doc_id FROM paragraphs ORDER BY seq")
        while rows := cursor.fetchmany(5_000):
            for row in rows:
                yield Paragraph(*row)

    def ids(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT id FROM paragraphs ORDER BY seq")]

    # ---- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ParagraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
