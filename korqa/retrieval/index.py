"""An index directory: the paragraph store (SQLite) plus one saved retriever over it.

    DIR/paragraphs.sqlite     every paragraph (id, title, text, doc id), so answering never
                              reloads the source files
    DIR/retriever/            the retriever's files and its manifest (hashes, params, count)

Indexing into an existing DIR adds the new paragraphs to the store and rebuilds the retriever
over the whole store; the new retriever is written beside the old one and swapped in last, so
an interrupted build leaves the previous index usable.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from korqa.corpus.loaders import load_corpus
from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import AddResult, ParagraphStore
from korqa.retrieval.base import Hit, Retriever
from korqa.retrieval.registry import load_retriever, retriever_class
from korqa.retrieval.terms import TermConfig

STORE_FILE = "paragraphs.sqlite"
RETRIEVER_DIR = "retriever"


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
) -> tuple[AddResult, int]:
    """Add the corpus to `out`'s store, then (re)build and save the retriever over all of it.

    Returns what the store add did and how many paragraphs the retriever indexes.
    """
    out = Path(out)
    if isinstance(retriever, str):
        retriever = make_retriever(retriever, encoder)
    out.mkdir(parents=True, exist_ok=True)
    with ParagraphStore(out / STORE_FILE) as store:
        added = AddResult(0, 0, 0)
        if corpus_paths:
            paragraphs = tqdm(load_corpus(corpus_paths), desc="reading corpus", unit="par",
                              disable=not progress, mininterval=1.0)
            added = store.add(paragraphs)
        total = len(store)
        if total == 0:
            raise ValueError(f"{out / STORE_FILE}: no paragraphs to index (give --corpus PATH)")
        retriever.index(store, total=total, progress=progress)
    staging = out / (RETRIEVER_DIR + ".new")
    if staging.exists():
        shutil.rmtree(staging)
    retriever.save(staging)
    target = out / RETRIEVER_DIR
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return added, total


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
