"""An index directory: the paragraph store (SQLite) plus one saved retriever over it.

    DIR/paragraphs.sqlite     every paragraph (id, title, text, doc id), so answering never
                              reloads the source files
    DIR/retriever/            the retriever's files and its manifest (hashes, params, count)

Indexing a corpus path into an existing DIR makes the store hold what that path holds now
(changed documents replaced whole, deleted ones removed; other paths' documents kept) and
rebuilds the retriever over the whole store. The store changes commit only once the new
retriever is saved beside the old one, which it then replaces, and a new DIR is built beside
its final name: an interrupted build leaves the previous index usable, or none at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from korqa.corpus.loaders import load_corpus
from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import AddResult, DocumentInfo, ParagraphStore
from korqa.corpus.text import TextReading
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.registry import load_retriever, retriever_class
from korqa.retrieval.terms import TermConfig

STORE_FILE = "paragraphs.sqlite"
RETRIEVER_DIR = "retriever"
# Indexes the store with the retriever in another way (e.g. on a cluster): same result.
Indexer = Callable[[Retriever, ParagraphStore, int, bool], None]


# The tuned presets (bench/retrieval.py; tuned on KorQuAD dev's non-test questions). The
# retriever classes keep plain defaults (char 1-2 grams, no title) for other callers.
TUNED: dict[str, dict[str, Any]] = {
    "bm25": {"terms": TermConfig(ngrams=(1, 2), morphemes=True), "k1": 0.6, "b": 0.75,
             "with_title": True},
    "tfidf": {"terms": TermConfig(ngrams=(2,), morphemes=True), "sublinear_tf": True,
              "with_title": True},
    # Weighted min-max fusion beat reciprocal-rank fusion in every pairing tried; TF-IDF adds
    # almost nothing to BM25 (same terms), so with an encoder the hybrid is BM25 + dense.
    "hybrid": {"fusion": "weighted", "weights": (1.0, 0.1), "depth": 100},
    "hybrid+dense": {"fusion": "weighted", "weights": (1.0, 0.3), "depth": 100},
}


def make_retriever(
    kind: str,
    encoder: str | Path | None = None,
    morphemes: bool = True,
    **options: Any,
) -> Retriever:
    """A retriever of `kind` with korqa's tuned presets (`TUNED`); `options` override them.

    `hybrid` fuses BM25 with TF-IDF, or with the dense retriever when an `encoder` is given.
    `morphemes=False` drops the Kiwi morphemes from the sparse terms: Kiwi analyses ~30k
    characters/s, hours for all of kowiki, while character n-grams alone index it in minutes.
    """
    if kind == "dense":
        if encoder is None:
            raise ValueError("the dense retriever needs --encoder DIR (an e5 model directory)")
        return retriever_class("dense")(encoder, **options)
    if kind == "hybrid":
        components = [make_retriever("bm25", morphemes=morphemes)]
        if encoder is None:
            components.append(make_retriever("tfidf", morphemes=morphemes))
            preset = "hybrid"
        else:
            components.append(make_retriever("dense", encoder))
            preset = "hybrid+dense"
        return retriever_class("hybrid")(components, **{**TUNED[preset], **options})
    settings = {**TUNED.get(kind, {}), **options}
    if not morphemes and "terms" in settings:
        settings["terms"] = replace(settings["terms"], morphemes=False)
    return retriever_class(kind)(**settings)


def build_index(
    out: str | Path,
    corpus_paths: Sequence[str | Path] = (),
    retriever: Retriever | str = "bm25",
    encoder: str | Path | None = None,
    progress: bool = True,
    reading: TextReading | None = None,
    index_with: Indexer | None = None,
) -> tuple[AddResult, int]:
    """Make `out` index what `corpus_paths` hold now, and (re)build its retriever over the
    whole store. Without corpus paths only the retriever is rebuilt.

    Each corpus path is a source: every document read from it replaces all of its stored
    paragraphs, and documents it held at its last indexing but holds no longer (deleted
    files) are removed. Documents of other sources (other paths, documents added through
    `korqa serve`) stay. `reading` says how .txt/.md files are decoded.

    A new `out` is built in a directory beside it and renamed into place; an existing index
    is changed in one store transaction, committed only once the new retriever is saved. So
    a failure leaves `out` as it was, or absent. Returns what changed in the store and how
    many paragraphs the retriever indexes. `index_with(retriever, store, total, progress)`
    replaces `retriever.index(store, …)` (korqa.distributed.index: the same index on Ray).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory; --out names the index "
                         "directory to create or update")
    if isinstance(retriever, str):
        retriever = make_retriever(retriever, encoder)

    def read(store: ParagraphStore) -> AddResult:
        return _sync_sources(store, corpus_paths, reading, progress)

    if (out / STORE_FILE).is_file():
        return _rebuild(out, retriever, read, progress, name=out, index_with=index_with)
    return _create(out, lambda staging: _rebuild(staging, retriever, read, progress, name=out,
                                                 index_with=index_with))


def remove_documents(directory: str | Path, doc_ids: Sequence[str],
                     progress: bool = False) -> tuple[int, int]:
    """Drop documents by id (`list_documents` gives them) and rebuild the retriever with its
    saved settings. Returns (paragraphs removed, paragraphs left); fails, changing nothing,
    on an unknown id or when no paragraph would be left."""
    directory = Path(directory)
    _require_index(directory)
    retriever = load_retriever(directory / RETRIEVER_DIR, verify=False)

    def remove(store: ParagraphStore) -> AddResult:
        try:
            removed = store.remove_documents(doc_ids)
        except KeyError as error:
            raise ValueError(f"{error.args[0]} (`korqa documents --index {directory}` lists "
                             "the document ids)") from None
        if len(store) == 0:
            raise ValueError(f"{directory}: removing these documents would leave the index "
                             "empty; delete the directory instead")
        return AddResult(0, 0, 0, removed=removed, removed_documents=len(set(doc_ids)))

    result, total = _rebuild(directory, retriever, remove, progress, name=directory)
    return result.removed, total


def list_documents(directory: str | Path) -> list[DocumentInfo]:
    """The documents of an index: id, title, paragraph count, source path."""
    directory = Path(directory)
    _require_index(directory)
    with ParagraphStore(directory / STORE_FILE, readonly=True) as store:
        return store.documents()


def _require_index(directory: Path) -> None:
    if not (directory / STORE_FILE).is_file():
        raise FileNotFoundError(f"{directory / STORE_FILE}: not an index directory "
                                "(build one with `korqa index --corpus PATH --out DIR`)")


def _sync_sources(store: ParagraphStore, corpus_paths: Sequence[str | Path],
                  reading: TextReading | None, progress: bool) -> AddResult:
    total = AddResult(0, 0, 0)
    if not corpus_paths:
        return total
    with tqdm(desc="reading corpus", unit="par", disable=not progress,
              mininterval=1.0) as bar:
        for raw in corpus_paths:
            path = Path(raw)
            paragraphs = _counted(load_corpus([path], reading), bar)
            done = store.sync_source(paragraphs, str(path.resolve()))
            total = AddResult(*(a + b for a, b in zip(astuple(total), astuple(done),
                                                      strict=True)))
    return total


def _counted(paragraphs: Iterator[Paragraph], bar: tqdm) -> Iterator[Paragraph]:
    for paragraph in paragraphs:
        bar.update()
        yield paragraph


def _rebuild(
    directory: Path,
    retriever: Retriever,
    change: Callable[[ParagraphStore], AddResult],
    progress: bool,
    name: Path,
    index_with: Indexer | None = None,
) -> tuple[AddResult, int]:
    """Apply `change` to the store and index the result, all in one store transaction that
    commits only after the new retriever is saved beside the old one, which it then replaces."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / (RETRIEVER_DIR + ".new")
    try:
        with ParagraphStore(directory / STORE_FILE) as store, store.transaction():
            result = change(store)
            total = len(store)
            if total == 0:
                raise ValueError(f"{name}: no paragraphs to index (give --corpus PATH)")
            if index_with is None:
                retriever.index(store, total=total, progress=progress)
            else:
                index_with(retriever, store, total, progress)
            shutil.rmtree(staging, ignore_errors=True)
            retriever.save(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target = directory / RETRIEVER_DIR
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return result, total


def _create(out: Path, build: Callable[[Path], tuple[AddResult, int]]) -> tuple[AddResult, int]:
    """Run `build` in a directory beside `out` and rename it into place; on failure remove it,
    and any parent folders made for it, so nothing is left that reads as a broken index."""
    absolute = out.resolve()
    made = [p for p in (absolute, *absolute.parents) if not p.exists()][1:]
    existing = next(p for p in absolute.parents if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{out}: {existing} is a file, not a folder; choose another --out")
    absolute.parent.mkdir(parents=True, exist_ok=True)
    staging = absolute.with_name(f".{absolute.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = build(staging)
        if absolute.exists():  # an empty or unrelated folder: put the index files into it
            for child in staging.iterdir():
                dest = absolute / child.name
                if dest.is_dir():
                    shutil.rmtree(dest)
                child.replace(dest)
            staging.rmdir()
        else:
            staging.rename(absolute)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return result


class Index:
    """A loaded index directory: search returns paragraphs, not just ids.

    verify: how the retriever's files are checked (`korqa.retrieval.manifest.CHECKS`). The
    default "stat" compares sizes and modification times and hashes only files whose time
    changed; `verify_index` (`korqa verify`) hashes everything.
    """

    def __init__(self, directory: str | Path, verify: bool | str = "stat") -> None:
        self.directory = Path(directory)
        if not (self.directory / STORE_FILE).exists():
            raise FileNotFoundError(f"{self.directory / STORE_FILE}: not an index directory "
                                    "(build one with `korqa index --corpus PATH --out DIR`)")
        self.store = ParagraphStore(self.directory / STORE_FILE, readonly=True)
        self.retriever = load_retriever(self.directory / RETRIEVER_DIR, verify=verify)
        stored, indexed = len(self.store), len(self.retriever)
        if stored != indexed:
            raise ValueError(
                f"{self.directory}: the store has {stored} paragraphs but the retriever indexes "
                f"{indexed}: re-run `korqa index --out {self.directory}` to rebuild it"
            )

    def search(self, query: str, k: int = 10) -> list[tuple[Paragraph, float]]:
        return self.search_many([query], k)[0]

    def search_many(
        self, queries: Sequence[str], k: int = 10
    ) -> list[list[tuple[Paragraph, float]]]:
        return [self._paragraphs(hits) for hits in self.retriever.retrieve_many(queries, k)]

    def _paragraphs(self, hits: list[Hit]) -> list[tuple[Paragraph, float]]:
        try:
            paragraphs = self.store.get([pid for pid, _ in hits])
        except KeyError as error:
            raise ValueError(f"{self.directory}: {error.args[0]}: rebuild the index") from None
        return [(p, score) for p, (_, score) in zip(paragraphs, hits, strict=True)]

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_index(directory: str | Path) -> dict[str, Any]:
    """Check an index directory in full: every retriever file against its sha256, the SQLite
    store's integrity, and that both hold the same paragraphs. Raises ValueError (or
    FileNotFoundError) naming the file that fails; returns what was checked."""
    import sqlite3
    from contextlib import closing

    from korqa.retrieval.manifest import MANIFEST_FILE

    directory = Path(directory)
    with Index(directory, verify="hash") as index:
        uri = f"file:{directory / STORE_FILE}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True)) as connection:
                problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as error:
            problems = [str(error)]
        if problems != ["ok"]:
            raise ValueError(f"{directory / STORE_FILE}: SQLite integrity check failed "
                             f"({'; '.join(problems[:3])}): rebuild the index")
        top = directory / RETRIEVER_DIR / MANIFEST_FILE  # the one file no manifest hashes
        files = [p for p in (directory / RETRIEVER_DIR).rglob("*") if p.is_file() and p != top]
        return {"index": str(directory), "retriever": index.retriever.kind,
                "paragraphs": len(index.store), "files_hashed": len(files),
                "bytes_hashed": sum(p.stat().st_size for p in files)}
