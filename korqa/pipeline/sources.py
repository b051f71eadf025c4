"""Build a pipeline from paths: an index dir, a corpus cached on first use, or the sample."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from korqa.corpus.text import TEXT_RULES_VERSION, TextReading
from korqa.faq import FAQIndex, load_faq, small_talk_entries
from korqa.paths import cache_dir, sample_corpus_path
from korqa.pipeline.qa import PipelineConfig, QAPipeline, load_reader
from korqa.retrieval.index import RETRIEVER_DIR, STORE_FILE, Index, build_index
from korqa.retrieval.manifest import FORMAT_VERSION, MANIFEST_FILE
from korqa.retrieval.terms import TermConfig
from korqa.version import __version__


@dataclass
class PipelineSources:
    """Where a pipeline's paragraphs, FAQ pairs and reader come from (`open_pipeline`'s first
    arguments); the "help" metadata is `korqa ask/chat/serve`'s (korqa.cli_options)."""

    index: str | None = field(default=None, metadata={
        "help": "an index built by `korqa index`", "metavar": "DIR", "exclusive": "paragraphs"})
    corpus: list[str] = field(default_factory=list, metadata={
        "help": "corpus files/folders, indexed into the cache on first use (default: the small "
                "sample corpus shipped with korqa)", "metavar": "PATH",
        "exclusive": "paragraphs"})
    faq: str | None = field(default=None, metadata={
        "help": "question/answer pairs (CSV with Q,A columns, .gz allowed, or a JSON list of "
                "{question, answer}); a close match is answered from it first",
        "metavar": "FILE"})
    model: str | None = field(default=None, metadata={
        "help": "reader model directory (default: $KORQA_MODEL or models/korqa-reader)",
        "metavar": "DIR"})
    small_talk: bool = field(default=True, metadata={
        "help": "no small talk: by default a greeting, thanks or \"who are you?\", asked word "
                "for word, gets a friendly reply (korqa/data/small_talk.json) instead of "
                "\"don't know\"", "flag": "--no-small-talk"})


def open_pipeline(index: str | Path | None = None, corpus: Sequence[str | Path] = (),
                  faq: str | Path | None = None, model: str | Path | None = None,
                  config: PipelineConfig | None = None, progress: bool = False,
                  reading: TextReading | None = None, small_talk: bool = True) -> QAPipeline:
    """A ready pipeline. Paragraphs come from `index` (a `korqa index` dir), else from `corpus`
    files indexed into the cache on first use (.txt/.md decoded as `reading` says), else from
    the shipped sample corpus. The reader (`model`, else `korqa.paths.default_reader_dir()`)
    starts loading first: ONNX Runtime loads its graph on a thread while the index opens and
    Kiwi builds. A reader that cannot be loaded is tried again on the first question that
    needs it, so FAQ answers work without one. With `small_talk`, the shipped greetings follow
    the `faq` file's pairs (korqa.faq)."""
    load = partial(load_reader, model, config or PipelineConfig())
    try:
        reader = load()
    except (FileNotFoundError, ValueError):
        reader = load  # its error, if it persists, comes with the first question that reads
    paragraphs = open_index(index, corpus, progress, reading)
    entries = load_faq(faq) if faq else []
    if small_talk:
        entries += small_talk_entries(first_id=len(entries))
    faq_index = FAQIndex(entries) if entries else None
    return QAPipeline(paragraphs, reader, faq_index, config)


def open_index(index: str | Path | None = None, corpus: Sequence[str | Path] = (),
               progress: bool = False, reading: TextReading | None = None) -> Index:
    """The paragraph index to answer from (see `open_pipeline`)."""
    if index and corpus:
        raise ValueError("give either an index directory or corpus paths, not both")
    if index:
        return Index(index)
    return Index(cached_index(list(corpus) or [sample_corpus_path()], progress, reading))


def cached_index(paths: Sequence[str | Path], progress: bool = False,
                 reading: TextReading | None = None) -> Path:
    """An index of `paths` under the cache dir, built on first use and reused while the files
    (paths, sizes, modification times), how text is read and korqa's index format stay the
    same."""
    target = cache_dir() / "indexes" / corpus_fingerprint(paths, reading)
    if _complete(target):
        return target
    # Built beside the target and renamed into place, so a crash or a concurrent build never
    # leaves a half-written index under the name later runs will trust.
    staging = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    build_index(staging, [Path(p) for p in paths], progress=progress, reading=reading)
    (staging / "sources.json").write_text(
        json.dumps([str(Path(p).resolve()) for p in paths], ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8")
    if _complete(target):  # another process finished first; use its index
        shutil.rmtree(staging, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def corpus_fingerprint(paths: Sequence[str | Path], reading: TextReading | None = None) -> str:
    """A short hash of the corpus files' resolved paths, sizes and mtimes, and korqa's version
    (and of `reading`, when it is not the default)."""
    # The default terms are part of what a cached index is: a change of them rebuilds it.
    entries: list[list[object]] = [[__version__, FORMAT_VERSION, TEXT_RULES_VERSION,
                                    TermConfig().to_dict()]]
    if reading is not None and reading != TextReading():
        entries.append([reading.encoding, reading.skip_bad])
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: corpus path not found")
        path = path.resolve()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            entries.append([str(file), stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(entries, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:16]


def _complete(directory: Path) -> bool:
    return (directory / STORE_FILE).is_file() and \
        (directory / RETRIEVER_DIR / MANIFEST_FILE).is_file()
