"""A persistent paragraph store in SQLite: add (one row per id), get by ids, count, iterate;
documents replaced whole, per corpus source, or removed by id.

Every change also moves on the store's content digest, in the same transaction: the sum,
modulo 2**256, of one sha256 per paragraph row (id, title, text, doc id), kept with the
generation in the `meta` table. Triggers on korqa's own writing connections add and subtract
the rows a statement touches, so a write costs its own rows, not the store's; `check_digest`
(`korqa verify`) sums every row again, and a row changed by anything else, or damaged on disk,
no longer adds up.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from korqa.corpus.paragraph import Paragraph
from korqa.corpus.text import document_title
from korqa.errors import DamagedIndex, ReadOnlyIndex, storage_fault

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
# Added to stores of version 1 on their first write (older korqa ignores both): which corpus
# path each document was read from, so re-indexing that path can drop what it no longer holds.
_SOURCES_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS paragraphs_doc ON paragraphs (doc_id);
"""
# Added like `documents` (older korqa ignores it): the store's generation, a new value written in
# the same transaction as every change, which the saved retriever records as the state it
# indexed. "N-TOKEN": N counts the changes, the random TOKEN keeps two histories that reached
# the same N (one rolled back, one committed) from looking alike.
_META_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_UPSERT = (
    "INSERT INTO paragraphs (id, title, text, doc_id) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET title = excluded.title, "
    "text = excluded.text, doc_id = excluded.doc_id "
    "WHERE title != excluded.title OR text != excluded.text "
    "OR doc_id != excluded.doc_id"
)
# Change tracking for an incremental retriever (`ParagraphStore.changes`): temp triggers, on
# this connection only, note every paragraph id inserted, updated or deleted.
_TRACK_SCHEMA = (
    "CREATE TEMP TABLE IF NOT EXISTS touched (id TEXT PRIMARY KEY)",
    # Not INSERT OR IGNORE: inside a trigger, the firing statement's conflict policy (an
    # upsert's) would replace the IGNORE.
    "CREATE TEMP TRIGGER IF NOT EXISTS touched_insert AFTER INSERT ON main.paragraphs "
    "BEGIN INSERT INTO touched (id) SELECT new.id "
    "WHERE NOT EXISTS (SELECT 1 FROM touched WHERE id = new.id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS touched_update AFTER UPDATE ON main.paragraphs "
    "BEGIN INSERT INTO touched (id) SELECT old.id "
    "WHERE NOT EXISTS (SELECT 1 FROM touched WHERE id = old.id); "
    "INSERT INTO touched (id) SELECT new.id "
    "WHERE NOT EXISTS (SELECT 1 FROM touched WHERE id = new.id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS touched_delete AFTER DELETE ON main.paragraphs "
    "BEGIN INSERT INTO touched (id) SELECT old.id "
    "WHERE NOT EXISTS (SELECT 1 FROM touched WHERE id = old.id); END",
)
# The content digest (module docstring): temp triggers on each writing connection call
# korqa_digest(sign, row…) for every row inserted, deleted or updated.
_DIGEST_SCHEMA = (
    "CREATE TEMP TRIGGER IF NOT EXISTS digest_insert AFTER INSERT ON main.paragraphs "
    "BEGIN SELECT korqa_digest(1, new.id, new.title, new.text, new.doc_id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS digest_delete AFTER DELETE ON main.paragraphs "
    "BEGIN SELECT korqa_digest(-1, old.id, old.title, old.text, old.doc_id); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS digest_update AFTER UPDATE ON main.paragraphs "
    "BEGIN SELECT korqa_digest(-1, old.id, old.title, old.text, old.doc_id); "
    "SELECT korqa_digest(1, new.id, new.title, new.text, new.doc_id); END",
)
_DIGEST_MODULUS = 1 << 256
# SQLite's default limit on bound parameters is 999 in old builds; stay below it.
_IN_BATCH = 500


def row_digest(paragraph_id: str, title: str, text: str, doc_id: str) -> int:
    """One row's share of the content digest: its sha256 as an integer (fields separated by a
    byte no UTF-8 text holds, so no two rows hash alike by shifting text between fields)."""
    joined = b"\xff".join(field.encode("utf-8", "surrogatepass")
                          for field in (paragraph_id, title, text, doc_id))
    return int.from_bytes(hashlib.sha256(joined).digest(), "big")


def recover_journal(path: Path) -> None:
    """Roll back a write that a kill interrupted inside SQLite's commit (its hot journal is
    left beside the store), before anything reads the store: a read-only connection cannot,
    and would fail with "attempt to write a readonly database". A brief read-write connection
    lets SQLite roll it back, losing nothing that was committed. A journal that cannot be
    rolled back here (a read-only folder) is a one-line error naming the repair command."""
    journal = path.with_name(path.name + "-journal")
    if not journal.is_file() or journal.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            return  # a live writer holds it: not a crash's journal
        fault = storage_fault(error, path)
        kind = ReadOnlyIndex if isinstance(fault, ReadOnlyIndex) else DamagedIndex
        raise kind(f"{path}: a write was interrupted and its journal ({journal.name}) cannot "
                   f"be rolled back here ({error}): run `korqa verify --index {path.parent} "
                   "--repair` as a user who can write to that folder") from None


@dataclass(frozen=True)
class AddResult:
    """What one `ParagraphStore.add` did."""

    added: int
    updated: int
    unchanged: int
    removed: int = 0  # paragraphs dropped: of documents gone from their source, or now shorter
    removed_documents: int = 0


@dataclass(frozen=True)
class DocumentInfo:
    """One stored document: its id, its title (its first heading or file name: what its first
    paragraph's title holds before any section), paragraph count, and the corpus path it was
    read from (None for documents added otherwise, e.g. through the API)."""

    doc_id: str
    title: str
    paragraphs: int
    source: str | None


class ParagraphStore:
    """Paragraphs on disk, in insertion order (`seq`), unique by `Paragraph.id`.

    Adding a paragraph whose id is already stored replaces its title/text/doc id, so re-adding
    an edited source file updates the store in place; its position (`seq`) is kept.
    `sync_source` goes further: each document read replaces all of its stored paragraphs, and
    documents last read from the same source but absent now are removed.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self._delta = 0  # the digest change of this connection's uncommitted writes
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"{self.path}: paragraph store not found")
            recover_journal(self.path)
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path)
            # A transaction whose changes outgrow the page cache spills them to the file,
            # which locks every reader out until the commit: room for a 10 MB API write in
            # memory, so a server answers on while the retriever over it is rebuilt.
            self._conn.execute("PRAGMA cache_size = -65536")
            self._conn.create_function("korqa_digest", 5, self._digest_row)
        self._in_transaction = False
        self._has_meta = False
        self._changed = 0  # paragraph rows the current write changed (see `_writing`)
        self._check_or_create(readonly)

    def _check_or_create(self, readonly: bool) -> None:
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.path}: not a SQLite paragraph store ({error})") from None
        if not tables and not readonly:
            self._conn.executescript(_SCHEMA + _SOURCES_SCHEMA + _META_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
            self._has_sources = self._has_meta = True
            self._bump_generation()
            self._conn.commit()
            self._track_digest()
            return
        if "paragraphs" not in tables or version != STORE_VERSION:
            raise ValueError(
                f"{self.path}: not a korqa paragraph store of version {STORE_VERSION} "
                f"(user_version={version}, tables={sorted(tables)})"
            )
        self._has_sources = "documents" in tables
        self._has_meta = "meta" in tables
        if not readonly and not self._has_sources:
            self._conn.executescript(_SOURCES_SCHEMA)
            self._has_sources = True
        if not readonly and not self._has_meta:
            self._conn.executescript(_META_SCHEMA)
            self._has_meta = True
            with self._conn:
                self._bump_generation()
        if not readonly:
            self._track_digest()

    def _track_digest(self) -> None:
        """Keep the content digest on this writing connection; a store written by an older
        korqa gets its first digest now, summed over every row (once)."""
        if self._meta("digest") is None:
            with self._conn:
                self._set_meta("digest", f"{self.computed_digest():064x}")
        for statement in _DIGEST_SCHEMA:
            self._conn.execute(statement)

    def _digest_row(self, sign: int, *row: str) -> None:
        self._delta += sign * row_digest(*row)

    def computed_digest(self) -> int:
        """The content digest summed over every stored row now."""
        total = 0
        cursor = self._conn.execute("SELECT id, title, text, doc_id FROM paragraphs")
        while rows := cursor.fetchmany(5_000):
            for row in rows:
                total += row_digest(*row)
        return total % _DIGEST_MODULUS

    @property
    def digest(self) -> str | None:
        """The content digest recorded with the current generation (hex); None for a store
        no korqa able to record one has written to."""
        return self._meta("digest")

    def check_digest(self) -> str:
        """Sum every row again and compare with the digest recorded with the generation:
        DamagedIndex when they differ (a row changed outside korqa, or a damaged file).
        Returns the digest; ValueError for a store without one."""
        self._conn.execute("BEGIN")  # one snapshot for the rows and the recorded digest
        try:
            recorded = self.digest
            computed = self.computed_digest()
        finally:
            self._conn.rollback()
        if recorded is None:
            raise ValueError(f"{self.path}: no content digest recorded (written by an older "
                             "korqa): `korqa verify --repair` records one")
        if int(recorded, 16) != computed:
            generation = (self.generation or "?").split("-")[0]
            raise DamagedIndex(
                f"{self.path}: its paragraphs do not match the content digest recorded with "
                f"generation {generation} (a paragraph was changed outside korqa, or the file "
                "is damaged): rebuild the index from its sources (`korqa index --corpus PATH "
                "--out DIR`) or restore it from a copy")
        return recorded
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside commits together at the end, or not at all on an error.

        Reads on this store inside the block see the uncommitted writes, so a retriever can be
        built over the new state before it is committed.
        """
        if self._in_transaction:
            raise RuntimeError(f"{self.path}: a transaction is already open")
        self._in_transaction = True
        try:
            yield
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            self._delta = 0
            raise
        finally:
            self._in_transaction = False

    @contextmanager
    def _writing(self) -> Iterator[None]:
        # Inside `transaction()` the outer block commits; otherwise each write commits itself.
        # Either way a change moves the generation on in the same transaction.
        # (Counted by the writers from each statement's rowcount, not by total_changes, which
        # counts temp tables and the change-tracking triggers too.)
        self._changed = 0
        if self._in_transaction:
            yield
            if self._changed:
                self._bump_generation()
        else:
            try:
                with self._conn:
                    yield
                    if self._changed:
                        self._bump_generation()
            except BaseException:
                self._delta = 0  # rolled back with the rows it counted
                raise

    def _bump_generation(self) -> None:
        """A new generation, and the digest moved on by the rows changed since the last."""
        current = self.generation
        count = int(current.split("-")[0]) if current else 0
        self._set_meta("generation", f"{count + 1}-{secrets.token_hex(8)}")
        digest = self._meta("digest")
        if digest is not None and self._delta:
            self._set_meta("digest", f"{(int(digest, 16) + self._delta) % _DIGEST_MODULUS:064x}")
        self._delta = 0

    def _meta(self, key: str) -> str | None:
        if not self._has_meta:
            return None
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    @property
    def generation(self) -> str | None:
        """The store's generation ("N-TOKEN"), new with every committed change, as this
        connection sees it (inside `transaction()`: with its uncommitted changes). None for a
        store that no korqa able to record it has written to."""
        return self._meta("generation")

    # ---- writing ------------------------------------------------------------------------

    def add(self, paragraphs: Iterable[Paragraph], batch_size: int = 10_000) -> AddResult:
        """Insert new paragraphs and update changed ones, in batches (one transaction each)."""
        before = len(self)
        changed = seen = 0
        iterator = iter(paragraphs)
        while batch := list(islice(iterator, batch_size)):
            with self._writing():
                done = self._conn.executemany(
                    _UPSERT, [(p.id, p.title, p.text, p.doc_id) for p in batch]).rowcount
                changed += done
                self._changed += done
            seen += len(batch)
        added = len(self) - before
        return AddResult(added=added, updated=changed - added, unchanged=seen - changed)

    def sync_source(
        self, paragraphs: Iterable[Paragraph], source: str, batch_size: int = 10_000
    ) -> AddResult:
        """Store every document of `paragraphs` (all read from `source`, e.g. a folder's
        resolved path) as it is now, and drop what `source` no longer holds.

        A document read replaces all of its stored paragraphs: ids it no longer yields are
        removed. Documents recorded for `source` that were not read this time (the file was
        deleted) are removed whole. Documents of other sources are left alone.
        """
        self._require_sources()
        conn = self._conn
        with self._writing():
            added, changed, seen, removed = self._replace(paragraphs, batch_size, source)
            gone = [row[0] for row in conn.execute(
                "SELECT doc_id FROM documents WHERE source = ? "
                "AND doc_id NOT IN (SELECT doc_id FROM temp.sync_docs)", (source,))]
            removed += self._delete_documents(gone)
        return AddResult(added=added, updated=changed - added, unchanged=seen - changed,
                         removed=removed, removed_documents=len(gone))

    def replace_documents(self, paragraphs: Iterable[Paragraph],
                          batch_size: int = 10_000) -> AddResult:
        """Store every document of `paragraphs` as it is now: a document given replaces all
        of its stored paragraphs (ids it no longer yields are removed). Other documents stay."""
        self._require_sources()
        with self._writing():
            added, changed, seen, removed = self._replace(paragraphs, batch_size, None)
        return AddResult(added=added, updated=changed - added, unchanged=seen - changed,
                         removed=removed)

    def _replace(self, paragraphs: Iterable[Paragraph], batch_size: int,
                 source: str | None) -> tuple[int, int, int, int]:
        """Upsert `paragraphs` and drop their documents' other paragraphs, inside the caller's
        transaction; records `source` for each document when given. Leaves the documents it
        saw in temp.sync_docs. Returns (added, changed, seen, removed) paragraph counts."""
        conn = self._conn
        before = len(self)
        changed = seen = 0
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS sync_docs (doc_id TEXT PRIMARY KEY)")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS sync_ids (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM temp.sync_docs")
        conn.execute("DELETE FROM temp.sync_ids")
        iterator = iter(paragraphs)
        while batch := list(islice(iterator, batch_size)):
            done = conn.executemany(
                _UPSERT, [(p.id, p.title, p.text, p.doc_id) for p in batch]).rowcount
            changed += done
            self._changed += done
            seen += len(batch)
            conn.executemany("INSERT OR IGNORE INTO temp.sync_ids (id) VALUES (?)",
                             [(p.id,) for p in batch])
            docs = [(d,) for d in dict.fromkeys(p.doc_id for p in batch)]
            conn.executemany("INSERT OR IGNORE INTO temp.sync_docs (doc_id) VALUES (?)", docs)
            if source is not None:
                conn.executemany(
                    "INSERT INTO documents (doc_id, source) VALUES (?, ?) "
                    "ON CONFLICT(doc_id) DO UPDATE SET source = excluded.source",
                    [(d, source) for (d,) in docs])
        added = len(self) - before
        dropped = conn.execute(
            "DELETE FROM paragraphs WHERE doc_id IN (SELECT doc_id FROM temp.sync_docs) "
            "AND id NOT IN (SELECT id FROM temp.sync_ids)").rowcount
        self._changed += dropped
        return added, changed, seen, dropped

    def resolve_documents(self, names: Sequence[str]) -> list[str]:
        """The stored document id each of `names` means: itself when stored, else the one id
        that ends with `/NAME` or `#NAME` (a file's path inside its folder, a kowiki id or
        article title inside its file). KeyError for a name that matches none, ValueError for
        one that matches several."""
        table = "documents" if self._has_sources else "paragraphs"
        resolved = []
        for name in names:
            if self._conn.execute("SELECT 1 FROM paragraphs WHERE doc_id = ? LIMIT 1",
                                  (name,)).fetchone() is not None:
                resolved.append(name)
                continue
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # LIKE narrows the scan but ignores ASCII case: the ends are compared exactly.
            found = [row[0] for row in self._conn.execute(
                f"SELECT DISTINCT doc_id FROM {table} WHERE doc_id LIKE ? ESCAPE '\\' "
                "OR doc_id LIKE ? ESCAPE '\\'", (f"%/{escaped}", f"%#{escaped}"))
                if row[0].endswith((f"/{name}", f"#{name}"))]
            if not found:
                raise KeyError(f"{self.path}: document id {name!r} not in the store")
            if len(found) > 1:
                raise ValueError(f"document id {name!r} names several documents ("
                                 f"{', '.join(found[:3])}, …): give the whole id")
            resolved.append(found[0])
        return resolved

    def remove_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete documents whole (paragraphs and source); returns the paragraphs removed.
        An id that is not stored raises KeyError naming it, before anything is deleted."""
        # One indexed lookup per id: listing every document scans the whole store.
        missing = [d for d in doc_ids if self._conn.execute(
            "SELECT 1 FROM paragraphs WHERE doc_id = ? LIMIT 1", (d,)).fetchone() is None]
        if missing:
            raise KeyError(f"{self.path}: document id {missing[0]!r} not in the store")
        self._require_sources()
        with self._writing():
            return self._delete_documents(list(dict.fromkeys(doc_ids)))

    def _delete_documents(self, doc_ids: list[str]) -> int:
        removed = 0
        for start in range(0, len(doc_ids), _IN_BATCH):
            chunk = doc_ids[start:start + _IN_BATCH]
            marks = ",".join("?" * len(chunk))
            dropped = self._conn.execute(
                f"DELETE FROM paragraphs WHERE doc_id IN ({marks})", chunk).rowcount
            removed += dropped
            self._changed += dropped
            self._conn.execute(f"DELETE FROM documents WHERE doc_id IN ({marks})", chunk)
        return removed

    def _require_sources(self) -> None:
        if not self._has_sources:
            raise ValueError(f"{self.path}: opened read-only: documents cannot be changed")

    @contextmanager
    def changes(self) -> Iterator[list[str]]:
        """Collect, into the list yielded (filled when the block ends), the ids of every
        paragraph inserted, updated or deleted inside the block: what an incremental
        retriever must delete and re-add."""
        for statement in _TRACK_SCHEMA:
            self._conn.execute(statement)
        self._conn.execute("DELETE FROM temp.touched")
        touched: list[str] = []
        yield touched
        touched.extend(row[0] for row in self._conn.execute("SELECT id FROM temp.touched"))
        self._conn.execute("DELETE FROM temp.touched")

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

    def present(self, ids: Iterable[str]) -> list[Paragraph]:
        """The paragraphs of `ids` that are stored, in insertion order; others are skipped."""
        ids = list(ids)
        found: list[tuple[int, Paragraph]] = []
        for start in range(0, len(ids), _IN_BATCH):
            chunk = ids[start:start + _IN_BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT seq, id, title, text, doc_id FROM paragraphs WHERE id IN ({marks})",
                chunk)
            found.extend((row[0], Paragraph(*row[1:])) for row in rows)
        return [paragraph for _, paragraph in sorted(found, key=lambda item: item[0])]

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

    def documents(self, prefix: str = "") -> list[DocumentInfo]:
        """Every stored document (whose id starts with `prefix`), in the order its first
        paragraph was stored."""
        source = "documents.source" if self._has_sources else "NULL"
        join = "LEFT JOIN documents USING (doc_id)" if self._has_sources else ""
        # A range of ids rather than LIKE, whose wildcards a prefix may hold.
        where, bounds = ("WHERE doc_id >= ? AND doc_id < ?",
                         (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))) if prefix else ("", ())
        # The bare `title` column comes from the row of MIN(seq): SQLite's documented rule.
        rows = self._conn.execute(
            f"SELECT doc_id, title, COUNT(*), {source}, MIN(seq) AS first FROM paragraphs "
            f"{join} {where} GROUP BY doc_id ORDER BY first", bounds)
        return [DocumentInfo(row[0], document_title(row[1]), row[2], row[3]) for row in rows]

    def ids(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT id FROM paragraphs ORDER BY seq")]

    # ---- lifetime -----------------------------------------------------------------------

    def check(self) -> None:
        """SQLite's quick_check of every page; ValueError naming the file when it fails."""
        try:
            problems = [row[0] for row in self._conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as error:
            problems = [str(error)]
        if problems != ["ok"]:
            raise ValueError(f"{self.path} is damaged ({'; '.join(problems[:3])}): rebuild the "
                             f"index with `korqa index`, or restore the file from a copy")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ParagraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
