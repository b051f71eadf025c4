"""`korqa verify`: an index checked in full, beyond what opening it checks.

Opening an index to answer (`Index`) rolls back a write a kill interrupted, clears what dead
writers left, and compares each retriever and segment file's size and modification time with
its manifest (hashing only a file whose time changed). Verifying also hashes every file,
runs SQLite's integrity check, and sums the store's paragraphs against the content digest
recorded with its generation (`korqa.corpus.store`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from korqa.errors import DamagedIndex
from korqa.retrieval.bm25 import referenced_segments
from korqa.retrieval.index import SEGMENTS_DIR, STORE_FILE, Index
from korqa.retrieval.manifest import MANIFEST_FILE


def verify_index(directory: str | Path) -> dict[str, Any]:
    """Check an index directory in full: every retriever and segment file against its sha256,
    the SQLite store's integrity and its paragraphs against their content digest, and that
    store and retriever hold the same paragraphs. Raises DamagedIndex, ValueError or
    FileNotFoundError naming the file that fails; returns what was checked."""
    directory = Path(directory)
    with Index(directory, verify="hash") as index:
        uri = f"file:{directory / STORE_FILE}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True)) as connection:
                problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as error:
            problems = [str(error)]
        if problems != ["ok"]:
            raise DamagedIndex(f"{directory / STORE_FILE}: SQLite integrity check failed "
                               f"({'; '.join(problems[:3])}): rebuild the index")
        digest = index.store.check_digest()
        top = index.retriever_dir / MANIFEST_FILE  # the one file no manifest hashes
        files = [p for p in index.retriever_dir.rglob("*") if p.is_file() and p != top]
        for name in sorted(referenced_segments(index.retriever_dir)):
            files += [p for p in (directory / SEGMENTS_DIR / name).iterdir()
                      if p.name != MANIFEST_FILE]
        return {"index": str(directory), "retriever": index.retriever.kind,
                "paragraphs": len(index.store), "files_hashed": len(files),
                "bytes_hashed": sum(p.stat().st_size for p in files),
                "content_digest": digest[:16]}
