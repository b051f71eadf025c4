"""Indexes and what users told the server: `korqa index`, `documents`, `remove`, `merge`,
`verify` (korqa.retrieval.maintenance) and `feedback export` (korqa.server.feedback)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from korqa.cli.command import Command, Interrupted

if TYPE_CHECKING:
    from korqa.distributed import RayIndexing
    from korqa.retrieval.maintenance import IndexConfig, VerifyConfig

MAINTENANCE = "korqa.retrieval.maintenance"
DOC_IDS = ("Document ids are as `korqa documents` lists them: a folder's file by its path "
           "inside the folder (sub/busan.txt), a single .txt/.md file by its name, a KorQuAD "
           "article by its title, a kowiki article by its id.")


def index(config: IndexConfig, cluster: RayIndexing) -> dict[str, Any]:
    from korqa.distributed import indexer
    from korqa.retrieval.maintenance import index_corpus

    before = _index_state(config.out)
    try:
        return index_corpus(config, indexer(cluster))
    except KeyboardInterrupt:
        # A change commits whole or not at all (korqa.retrieval.index), so the index is the
        # old one unless Ctrl-C came in the moment after its commit: say which, as checked.
        unchanged = _index_state(config.out) == before
        raise Interrupted("중단됨: 색인은 그대로입니다" if unchanged
                          else "중단됨: 바뀐 색인은 이미 저장되었습니다") from None


def _index_state(out: str) -> tuple[str | None, int] | None:
    """The committed state of the index at `out`: its store's generation and paragraph
    count; None where there is no readable index."""
    import sqlite3

    from korqa.corpus.store import ParagraphStore
    from korqa.retrieval.index import STORE_FILE

    store_file = Path(out) / STORE_FILE
    if not store_file.is_file():
        return None
    try:
        with ParagraphStore(store_file, readonly=True) as store:
            return store.generation, len(store)
    except (ValueError, sqlite3.Error):
        return None


def verify(config: VerifyConfig) -> dict[str, Any]:
    # The repair is the server's start-up one (korqa.server.engine), which sits above retrieval.
    from korqa.retrieval.verify import verify_index

    repaired = {}
    if config.repair:
        from korqa.server.engine import repair_index

        repaired = {"repaired": repair_index(Path(config.index))}
    return {**verify_index(config.index), "ok": True, **repaired}


COMMANDS = (
    Command(
        "index", "build or update a retrieval index (paragraph store + retriever)",
        "Read the corpus into OUT/paragraphs.sqlite and (re)build the retriever in "
        "OUT/retriever/. Corpus paths: .txt/.md files (one document each), KorQuAD/SQuAD "
        ".json(.gz), kowiki .jsonl(.xz), or a folder of .txt/.md/.jsonl(.xz) files. On an "
        "existing OUT, each corpus path given makes the index hold what that path holds now: "
        "a changed document replaces all of its paragraphs and documents deleted from it leave "
        "the index; documents of other paths (and those added through `korqa serve`) stay. "
        "`korqa documents` lists the documents, `korqa remove` drops some. A new OUT is built "
        "beside it and renamed into place, and changes to an existing one commit only once the "
        "retriever is rebuilt: a failed or interrupted (Ctrl-C) run leaves OUT as it was. "
        "Headings (# 제목, a line underlined with ===/---, and in .txt a short title line "
        "above a paragraph) title the "
        "paragraphs under them (\"한라산 › 등산로\") and are not paragraphs themselves.",
        (f"{MAINTENANCE}:IndexConfig", "korqa.distributed:RayIndexing"), index),
    Command(
        "documents", "list the documents of an index (id, paragraphs, title, source)",
        "One line per document: id, paragraph count, title and the corpus path it was read "
        "from (- for documents added through `korqa serve`); --json: a list of {id, title, "
        f"paragraphs, source}}. {DOC_IDS}",
        (f"{MAINTENANCE}:IndexDir",), f"{MAINTENANCE}:documents",
        text=f"{MAINTENANCE}:format_documents"),
    Command(
        "remove", "drop documents from an index and update its retriever",
        "Delete the documents' paragraphs and update the retriever: a BM25 index marks their "
        "rows deleted, other retrievers are rebuilt with the settings they were built with. An "
        "unknown id changes nothing. Re-indexing a folder that still holds a removed file "
        f"brings it back. {DOC_IDS}",
        (f"{MAINTENANCE}:RemoveConfig",), f"{MAINTENANCE}:remove"),
    Command(
        "merge", "merge the segments of a BM25 index",
        "Rewrite a BM25 index's segments as --segments segments (default 1), dropping the "
        "paragraphs marked deleted, in one crash-safe commit. Adding and removing documents "
        "already merges small segments as they pile up; this is for a quiet moment.",
        (f"{MAINTENANCE}:MergeConfig",), f"{MAINTENANCE}:merge"),
    Command(
        "verify", "check an index in full: every file's sha256 and the SQLite store",
        "Hash every retriever file against its manifest and run SQLite's integrity check on "
        "the paragraph store. Answering (ask, chat, serve) only compares file sizes and "
        "modification times, and hashes a file only when its time changed (copy indexes with "
        "`cp -p` to keep the times), so a file corrupted in place is caught here: run it after "
        "copying an index or when in doubt. Exits 2 naming the first file that fails.",
        (f"{MAINTENANCE}:VerifyConfig",), verify),
    Command("feedback", "what users told `korqa serve` about its answers"),
    Command(
        "feedback export", "write confirmed answers and corrected spans as SQuAD training data",
        "Replay the feedback in order: 'correct' verdicts add the shown answer, 'wrong' "
        "verdicts withdraw it and add the span the user selected. Writes a SQuAD v1.1 file for "
        "`korqa train --extra-data`; entries without a valid span (empty, not in the "
        "paragraph, duplicates) are dropped and counted.",
        ("korqa.server.feedback:FeedbackExportConfig",), "korqa.server.feedback:export_feedback"),
)
