"""An index directory: the paragraph store (SQLite) plus one saved retriever over it.

    DIR/paragraphs.sqlite     every paragraph (id, title, text, doc id), so answering never
                              reloads the source files, and the store's generation
    DIR/retriever/            the retriever's files and its manifest (hashes, params, count,
                              the store generation it indexed)

    DIR/segments/             a BM25 retriever's segments, shared by every commit

Indexing a corpus path into an existing DIR makes the store hold what that path holds now
(changed documents replaced whole, deleted ones removed; other paths' documents kept). A BM25
retriever is updated in place: the paragraphs the store change touched are marked deleted and
the stored ones among them indexed in a new segment (`korqa.retrieval.bm25`); other retrievers
are rebuilt over the whole store. The store changes commit only once the new retriever is saved
beside the old one (DIR/retriever.new/: for BM25 a few kilobytes naming its segments), which
then replaces it by two renames, and a new DIR is built beside its final name. Whatever a crash
interrupts, the store's generation names the retriever that belongs to it: the old one, or a
complete retriever.new/ whose swap the next writer finishes; segments neither names are
removed after each commit.
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

from korqa.corpus.formats import load_corpus
from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import AddResult, DocumentInfo, ParagraphStore
from korqa.corpus.text import TextReading
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.manifest import read_manifest
from korqa.retrieval.registry import load_retriever, retriever_class
from korqa.retrieval.terms import TermConfig

STORE_FILE = "paragraphs.sqlite"
RETRIEVER_DIR = "retriever"
STAGING_DIR = RETRIEVER_DIR + ".new"  # the rebuilt retriever, until it is swapped in
OLD_DIR = RETRIEVER_DIR + ".old"  # the replaced one, during the swap
SEGMENTS_DIR = "segments"  # segments of a BM25 retriever, shared by retriever/ and .new/
# Test-only: "POINT:FILE" makes a rebuild that reaches POINT (see `_rebuild`) create FILE and
# then wait to be killed, so tests can SIGKILL a real server at a known point of a write.
PAUSE_ENV = "KORQA_TEST_PAUSE_AT"
# Indexes the store with the retriever in another way (e.g. on a cluster): same result.
Indexer = Callable[[Retriever, ParagraphStore, int, bool], None]
# Changes a loaded retriever to follow a store change in place, given the paragraph ids the
# change touched (`incremental_update`, or a merge).
Updater = Callable[[Retriever, ParagraphStore, list[str]], None]


# The tuned presets (bench/retrieval.py; tuned on KorQuAD dev's non-test questions). The
# retriever classes keep plain defaults (char 1-2 grams, no title) for other callers.
TUNED: dict[str, dict[str, Any]] = {
    "bm25": {"terms": TermConfig(ngrams=(1, 2), morphemes=True), "k1": 0.6, "b": 0.75,
             "with_title": True},
    "tfidf": {"terms": TermConfig(ngrams=(2,), morphemes=True), "sublinear_tf": True,
              "with_title": True},
    # Weighted min-max fusion beat reciprocal-rank fusion in every pairing tried; TF-IDF adds
    # almost nothing to BM25 (same terms), so the hybrid is BM25 + dense (bench/retrieval.py
    # still measures BM25 + TF-IDF with these weights).
    "hybrid+tfidf": {"fusion": "weighted", "weights": (1.0, 0.1), "depth": 100},
    # Tuned on kowiki with non-test KorQuAD questions (bench/kowiki.py tune; the numbers are
    # in the README): the article share barely moves recall there, and skipping the terms of
    # over 20 % of the paragraphs spares a query their long posting lists.
    "articles": {"terms": TermConfig(ngrams=(1, 2), morphemes=True), "k1": 0.6, "b": 0.75,
                 "weight": 0.1, "title_weight": 1.0, "max_df": 0.2},
    "hybrid+dense": {"fusion": "weighted", "weights": (1.0, 0.3), "depth": 100},
}


def make_retriever(
    kind: str,
    encoder: str | Path | None = None,
    morphemes: bool = True,
    **options: Any,
) -> Retriever:
    """A retriever of `kind` with korqa's tuned presets (`TUNED`); `options` override them.

    `dense` and `hybrid` (BM25 fused with dense) encode with `encoder`, by default the shipped
    retriever encoder (`korqa.paths.default_encoder_dir`). `morphemes=False` drops the Kiwi
    morphemes from the sparse terms: Kiwi analyses ~30k characters/s, hours for all of
    kowiki, while character n-grams alone index it in minutes.
    """
    if kind == "dense":
        return retriever_class("dense")(encoder, **options)
    if kind == "hybrid":
        components = [make_retriever("bm25", morphemes=morphemes),
                      make_retriever("dense", encoder)]
        return retriever_class("hybrid")(components, **{**TUNED["hybrid+dense"], **options})
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
        saved = _same_saved_retriever(out, retriever) if corpus_paths and index_with is None \
            else None
        if saved is not None:
            return _rebuild(out, saved, read, progress, name=out, update=incremental_update)
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
    retriever = saved_retriever(directory)

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

    result, total = _rebuild(directory, retriever, remove, progress, name=directory,
                             update=_updater(retriever))
    return result.removed, total


def merge_index(directory: str | Path, max_segments: int | None = 1) -> tuple[int, int]:
    """Merge the segments of a BM25 index down to `max_segments` (None: as the tiered policy
    says), dropping deleted rows, as one commit. Returns (segments before, after)."""
    directory = Path(directory)
    _require_index(directory)
    retriever = saved_retriever(directory)
    if not hasattr(retriever, "merge"):
        raise ValueError(f"{directory}: a {retriever.kind} retriever has no segments to merge "
                         "(only bm25 does)")
    before = len(retriever.segments)

    def merge(retriever: Any, store: ParagraphStore, touched: list[str]) -> None:
        retriever.merge(max_segments)

    _rebuild(directory, retriever, lambda store: AddResult(0, 0, 0), False, name=directory,
             update=merge)
    return before, len(retriever.segments)


def incremental_update(retriever: Any, store: ParagraphStore, touched: list[str]) -> None:
    """Make a segmented retriever follow a store change: delete every touched paragraph,
    index the stored ones among them in a new segment, merge as the policy says."""
    retriever.delete(touched)
    retriever.add(store.present(touched))
    retriever.merge()


def _updater(retriever: Retriever) -> Updater | None:
    return incremental_update if hasattr(retriever, "merge") else None


def _same_saved_retriever(directory: Path, wanted: Retriever) -> Retriever | None:
    """The index's saved retriever when it can be updated in place and has `wanted`'s kind
    and settings; None when `wanted` must be built afresh."""
    if _updater(wanted) is None:
        return None
    try:
        manifest = read_manifest(directory / RETRIEVER_DIR, verify=False)
        if manifest["kind"] != wanted.kind or manifest["params"] != wanted.params():
            return None
        saved = saved_retriever(directory)
    except (FileNotFoundError, ValueError):
        return None
    return saved


def change_index(
    directory: str | Path,
    change: Callable[[ParagraphStore], AddResult],
    swap_guard: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    progress: bool = False,
) -> tuple[AddResult, int]:
    """Apply `change` to the store of the index `directory` and rebuild its retriever with the
    saved settings, committing both together (`_rebuild`; `swap_guard` as there). Returns
    what `change` returned and how many paragraphs the retriever indexes."""
    directory = Path(directory)
    _require_index(directory)
    retriever = saved_retriever(directory)
    return _rebuild(directory, retriever, change, progress, name=directory,
                    swap_guard=swap_guard, update=_updater(retriever))


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
    swap_guard: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    index_with: Indexer | None = None,
    update: Updater | None = None,
) -> tuple[AddResult, int]:
    """Apply `change` to the store and index the result, all in one store transaction that
    commits only after the new retriever is saved beside the old one, which it then replaces.

    With `update`, `retriever` is the saved one and follows the change in place (given the
    paragraph ids it touched) instead of indexing the whole store; if it turns out not to
    match the store (it indexes another generation, or the counts disagree after), it is
    rebuilt whole after all. The saved retriever records the store generation it indexed, so
    whatever a crash interrupts, the next open can tell which retriever belongs to the
    committed store (`current_retriever`). `swap_guard`, when given, is entered just before
    the commit and left after the swap (the server pauses its questions there)."""
    directory.mkdir(parents=True, exist_ok=True)
    finish_swap(directory)  # a swap a crash interrupted, before this change builds on it
    staging = directory / STAGING_DIR
    if hasattr(retriever, "segment_home"):
        retriever.segment_home = directory / SEGMENTS_DIR
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(ParagraphStore(directory / STORE_FILE))
        try:
            with store.transaction():
                current = update is not None and \
                    getattr(retriever, "store_generation", None) == store.generation
                with store.changes() as touched:
                    result = change(store)
                total = len(store)
                if total == 0:
                    raise ValueError(f"{name}: no paragraphs to index (give --corpus PATH)")
                if current:
                    assert update is not None
                    update(retriever, store, touched)
                if not current or len(retriever) != total:
                    if index_with is None:
                        retriever.index(store, total=total, progress=progress)
                    else:
                        index_with(retriever, store, total, progress)
                shutil.rmtree(staging, ignore_errors=True)
                generation = store.generation
                retriever.save(staging, store_generation=generation)
                _sync_tree(staging)
                _test_pause("saved")
                if swap_guard is not None:
                    stack.enter_context(swap_guard())
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            collect_segments(directory)
            raise
        _test_pause("committed")
        _swap(directory)
    collect_segments(directory)
    if hasattr(retriever, "store_generation"):
        retriever.store_generation = generation  # it may be updated again in place
    return result, total


def collect_segments(directory: Path) -> list[str]:
    """Remove the segments in DIR/segments that neither retriever/ nor retriever.new/ names
    (merged away, or written by a change that never committed). Returns their names."""
    from korqa.retrieval.bm25 import referenced_segments

    home = directory / SEGMENTS_DIR
    if not home.is_dir():
        return []
    keep = referenced_segments(directory / RETRIEVER_DIR) | \
        referenced_segments(directory / STAGING_DIR)
    gone = sorted(p.name for p in home.iterdir() if p.name not in keep)
    for name in gone:
        shutil.rmtree(home / name, ignore_errors=True)
    return gone


def _swap(directory: Path) -> None:
    """retriever.new → retriever by two renames; a crash between them leaves retriever.old and
    retriever.new, which `finish_swap` (or the next rebuild) completes."""
    target, staging, old = (directory / RETRIEVER_DIR, directory / STAGING_DIR,
                            directory / OLD_DIR)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    _test_pause("swapping")
    staging.rename(target)
    _sync_tree(directory, files=False)
    shutil.rmtree(old, ignore_errors=True)


def _sync_tree(root: Path, files: bool = True) -> None:
    """fsync the files under `root` (when `files`) and its folders, so that a power cut after
    the store's commit cannot leave a retriever whose manifest outlived its data."""
    paths = sorted(root.rglob("*")) if files else []
    for path in [*paths, root]:
        if path.is_dir() or files:
            flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
            fd = os.open(path, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _test_pause(point: str) -> None:
    """Test-only (see PAUSE_ENV): at `point`, create the named file and wait to be killed."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or wanted.split(":", 1)[0] != point:
        return
    import time

    Path(wanted.split(":", 1)[1]).touch()
    while True:
        time.sleep(1)


def _manifest_or_none(directory: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(directory, verify=False)
    except (FileNotFoundError, ValueError):
        return None


def current_retriever(directory: Path, generation: str | None, count: int) -> Path:
    """The saved retriever of `directory` that indexes its store as committed: `retriever/`,
    or a complete `retriever.new/` whose swap a crash interrupted. `generation` and `count`
    describe the store.

    A retriever recording another generation of the store is stale: ValueError naming the
    command that rebuilds it. Without a recorded generation on either side (an index older
    than generations) it is `retriever/`, and the caller's paragraph count check decides.
    """
    target, staging = directory / RETRIEVER_DIR, directory / STAGING_DIR
    manifests = {path: _manifest_or_none(path) for path in (target, staging)}
    if generation is not None:
        for path, manifest in manifests.items():
            if manifest is not None and manifest.get("store_generation") == generation:
                return path
    manifest = manifests[target]
    if manifest is None:
        new = manifests[staging]
        if new is not None and new.get("store_generation") is None \
                and new["paragraph_count"] == count:
            return staging  # an older korqa's swap, interrupted
        return target  # loading it names what is missing or wrong
    recorded = manifest.get("store_generation")
    if generation is None or recorded is None:
        return target
    raise ValueError(
        f"{directory}: the retriever indexes generation {recorded.split('-')[0]} of the store "
        f"({manifest['paragraph_count']} paragraphs), which is at generation "
        f"{generation.split('-')[0]} ({count} paragraphs; a write was interrupted, or the "
        f"store was changed without rebuilding the retriever): "
        f"{REPAIR_HINT.format(directory=directory)}")


REPAIR_HINT = ("rebuild the retriever with `korqa verify --index {directory} --repair` "
               "(`korqa serve` does this at start)")


def saved_retriever(directory: str | Path) -> Retriever:
    """The saved retriever of an index, to rebuild with its settings: finishes an interrupted
    swap first (this writes), then loads it without hashing its files."""
    directory = Path(directory)
    finish_swap(directory)
    return load_retriever(directory / RETRIEVER_DIR, verify=False)


def finish_swap(directory: str | Path) -> bool:
    """Complete a retriever swap that a crash interrupted, and clear what a crash left behind
    (a stale retriever.new/, a retriever.old/). Returns whether it swapped."""
    directory = Path(directory)
    staging, old = directory / STAGING_DIR, directory / OLD_DIR
    if not staging.exists() and not old.exists():
        return False
    if not (directory / STORE_FILE).is_file():
        for leftover in (staging, old):
            shutil.rmtree(leftover, ignore_errors=True)
        return False
    with ParagraphStore(directory / STORE_FILE, readonly=True) as store:
        generation, count = store.generation, len(store)
    try:
        chosen = current_retriever(directory, generation, count)
    except ValueError:
        chosen = None  # stale or incomplete: left for the caller's rebuild
    swapped = chosen == staging
    if swapped:
        _swap(directory)
    if chosen is not None:
        shutil.rmtree(staging, ignore_errors=True)
        collect_segments(directory)
    shutil.rmtree(old, ignore_errors=True)
    return swapped


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
        try:
            stored = len(self.store)
            for attempt in (1, 2):
                # Reads only: the swap itself is finished by the next writer or `korqa serve`.
                self.retriever_dir = current_retriever(self.directory, self.store.generation,
                                                       stored)
                try:
                    self.retriever = load_retriever(self.retriever_dir, verify=verify)
                    break
                except FileNotFoundError:
                    # A writer in another process committed meanwhile and removed the
                    # segments it merged away: the store's new state names the new ones.
                    if attempt == 2:
                        raise
                    self.store.close()
                    self.store = ParagraphStore(self.directory / STORE_FILE, readonly=True)
                    stored = len(self.store)
        except BaseException:
            self.store.close()
            raise
        indexed = len(self.retriever)
        if stored != indexed:
            self.store.close()
            raise ValueError(
                f"{self.directory}: the store has {stored} paragraphs but the retriever indexes "
                f"{indexed}: {REPAIR_HINT.format(directory=self.directory)}"
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
        top = index.retriever_dir / MANIFEST_FILE  # the one file no manifest hashes
        files = [p for p in index.retriever_dir.rglob("*") if p.is_file() and p != top]
        from korqa.retrieval.bm25 import referenced_segments

        for name in sorted(referenced_segments(index.retriever_dir)):
            files += [p for p in (directory / SEGMENTS_DIR / name).iterdir()
                      if p.name != MANIFEST_FILE]
        return {"index": str(directory), "retriever": index.retriever.kind,
                "paragraphs": len(index.store), "files_hashed": len(files),
                "bytes_hashed": sum(p.stat().st_size for p in files)}
