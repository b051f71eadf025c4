"""`korqa index --ray`: term analysis and dense encoding as Ray Data `map_batches` over N workers.

The driver reads the paragraph store in shards into Ray's object store; for each component of
the retriever (bm25, tfidf, dense; a hybrid's components one by one) a Ray Data pipeline runs
that component's own analysis over the shards on `workers` actors: `TermAnalyzer.many` for
character n-grams and Kiwi morphemes, `DenseRetriever.encode` for passage vectors. The driver
then indexes the store exactly as a single process does, except that the analyser (or the
encoder) hands back the workers' results, in store order, instead of computing them. So the
vocabulary, term statistics and vectors are built by the same code from the same terms in the
same order: the same index. What stays serial on the driver is reading the corpus into the
store, counting terms into the vocabulary, the BM25/TF-IDF weights and writing the files.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from korqa.corpus.store import ParagraphStore
from korqa.retrieval.base import Retriever, index_text
from korqa.retrieval.terms import TermAnalyzer, TermConfig

log = logging.getLogger("korqa.index")

SHARD_SIZE = 1000  # paragraphs per Ray Data row: big enough to amortise a task, small to balance
# Separators of the workers' term lists: terms are runs of \w characters (n-grams, words) or
# Kiwi morpheme forms, never control characters; a worker checks that.
_TERM_SEP, _TEXT_SEP = "\x1f", "\x1e"


@dataclass
class IndexStats:
    """Where the driver's time went in the last `index_on_ray` (seconds)."""

    shards: int = 0
    workers: int = 0
    read_s: float = 0.0  # reading the store into shards
    index_s: float = 0.0  # the retriever's index(): analysis fed from the workers, counting
    wait_s: float = 0.0  # of index_s: waiting for the workers' next shard
    ray_start_s: float = 0.0  # starting (or joining) the cluster
    per_component: dict[str, float] = field(default_factory=dict)

    @property
    def serial_s(self) -> float:
        """Driver time not spent waiting on workers: the part more workers cannot shorten."""
        return self.read_s + self.index_s - self.wait_s


last_stats = IndexStats()


def ray_indexer(workers: int, address: str | None = None) -> Callable[..., None]:
    """An `index_with` for `build_index`: joins (or starts) a Ray cluster for the build."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")

    def run(retriever: Retriever, store: ParagraphStore, total: int, progress: bool) -> None:
        import ray

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        started = not ray.is_initialized()
        clock = time.perf_counter()
        if started:
            # A local cluster gets one CPU per worker; a running one is used as it is.
            # "local" always starts one: without it, Ray joins the last cluster started on
            # this machine, or waits for it if it has stopped.
            ray.init(address=address or "local", num_cpus=workers if address is None else None,
                     include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
        joined = time.perf_counter() - clock
        try:
            index_on_ray(retriever, store, total, progress, workers).ray_start_s = joined
        finally:
            if started:
                ray.shutdown()

    return run


def index_on_ray(retriever: Retriever, store: ParagraphStore, total: int, progress: bool,
                 workers: int, shard_size: int = SHARD_SIZE) -> IndexStats:
    """`retriever.index(store)` with its analysis on `workers` Ray Data workers."""
    import ray

    global last_stats
    stats = IndexStats(workers=workers)
    # Several shards per worker, so that the work spreads evenly over them.
    shard_size = max(1, min(shard_size, max(50, -(-total // (4 * workers)))))
    start = time.perf_counter()
    shards: list[Any] = []
    batch: list[tuple[str, str]] = []
    for paragraph in store:
        batch.append((paragraph.title, paragraph.text))
        if len(batch) == shard_size:
            shards.append(ray.put(batch))
            batch = []
    if batch:
        shards.append(ray.put(batch))
    stats.shards = len(shards)
    stats.read_s = time.perf_counter() - start
    leaves = _leaves(retriever)
    restore: list[Callable[[], None]] = []
    try:
        for leaf in leaves:
            restore.append(_feed(leaf, shards, workers, stats))
        start = time.perf_counter()
        retriever.index(store, total=total, progress=progress)
        stats.index_s = time.perf_counter() - start
    finally:
        for undo in restore:
            undo()
    last_stats = stats
    log.info("ray index: %d shards, %d workers, serial %.1f s of %.1f s", stats.shards,
             workers, stats.serial_s, stats.read_s + stats.index_s)
    return stats


def _leaves(retriever: Retriever) -> list[Retriever]:
    components = getattr(retriever, "components", None)
    if components is None:
        return [retriever]
    return [leaf for component in components for leaf in _leaves(component)]


def _feed(leaf: Retriever, shards: list[Any], workers: int,
          stats: IndexStats) -> Callable[[], None]:
    """Make `leaf` take its analysis from the workers; returns how to undo that."""
    if isinstance(getattr(leaf, "analyzer", None), TermAnalyzer):
        original = leaf.analyzer
        config = {"kind": "terms", "terms": leaf.terms.to_dict(), "with_title": leaf.with_title}
        leaf.analyzer = _ReplayTerms(original, lambda: _run(shards, config, workers, stats),
                                     stats, leaf.kind)

        def undo() -> None:
            leaf.analyzer = original

        return undo
    if leaf.kind == "dense":
        config = {"kind": "dense", "params": leaf.params()}
        replay = _ReplayVectors(lambda: _run(shards, config, workers, stats), stats)
        leaf.encode = replay  # an instance attribute: index() calls self.encode(passages…)

        def undo_dense() -> None:
            del leaf.encode

        return undo_dense
    raise ValueError(f"korqa index --ray: the {leaf.kind} retriever has no parallel form")


def _run(shards: list[Any], config: dict[str, Any], workers: int,
         stats: IndexStats) -> Iterator[dict[str, Any]]:
    """The workers' result for each shard, in shard order."""
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"shard": i} for i in range(len(shards))],
                                  override_num_blocks=max(1, min(len(shards), 4 * workers)))
    # Dense encoding takes a GPU per worker where the cluster has them.
    gpus = 1 if config["kind"] == "dense" and ray.cluster_resources().get("GPU", 0) else 0
    dataset = dataset.map_batches(
        _Analyse, fn_constructor_args=(shards, {**config, "gpu": bool(gpus)}), batch_size=1,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        num_gpus=gpus)
    expected = 0
    early: dict[int, dict[str, Any]] = {}
    waited = time.perf_counter()
    for row in dataset.iter_rows():
        stats.wait_s += time.perf_counter() - waited
        early[int(row["shard"])] = row
        while expected in early:  # order is preserved; this only guards it
            yield early.pop(expected)
            expected += 1
        waited = time.perf_counter()
    if expected != len(shards):
        raise RuntimeError(f"ray index: {expected} of {len(shards)} shards came back")


class _Analyse:
    """A Ray Data worker: one component's analysis of one shard per call."""

    def __init__(self, shards: list[Any], config: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)  # one CPU per worker: N workers on N cores
        self.shards = shards
        self.config = config
        if config["kind"] == "terms":
            self.analyzer = TermAnalyzer(TermConfig.from_dict(config["terms"]))
        else:
            from korqa.retrieval.dense import DenseRetriever

            self.encoder = DenseRetriever(**config["params"],
                                          device="cuda" if config["gpu"] else "cpu")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        from korqa.corpus.paragraph import Paragraph
        from korqa.retrieval.dense import PASSAGE_PREFIX

        number = int(batch["shard"][0])
        rows = ray.get(self.shards[number])
        if self.config["kind"] == "terms":
            with_title = self.config["with_title"]
            texts = [index_text(Paragraph("", title, text, ""), with_title)
                     for title, text in rows]
            # Terms are pieces of the text (or Kiwi's forms of it): a text without the
            # separators yields no term with one.
            if any(_TERM_SEP in text or _TEXT_SEP in text for text in texts):
                raise ValueError("korqa index --ray: a paragraph contains the control "
                                 "characters U+001E/U+001F; index it without --ray")
            lists = self.analyzer.many(texts)
            joined = _TEXT_SEP.join(_TERM_SEP.join(terms) for terms in lists)
            return {"shard": np.array([number]), "terms": np.array([joined], dtype=object),
                    "count": np.array([len(lists)])}
        params = self.config["params"]
        texts = [PASSAGE_PREFIX + index_text(Paragraph("", title, text, ""),
                                             params["with_title"]) for title, text in rows]
        vectors = self.encoder.encode(texts, self.encoder.max_length)
        return {"shard": np.array([number]), "vectors": np.array([vectors.tobytes()],
                                                                  dtype=object),
                "count": np.array([len(texts)]), "dim": np.array([vectors.shape[1]])}


class _ReplayTerms:
    """Stands in for a retriever's TermAnalyzer while it indexes: `many(texts)` returns the
    workers' term lists of the next len(texts) paragraphs (queries use the original after)."""

    def __init__(self, original: TermAnalyzer, start: Callable[[], Iterator[dict[str, Any]]],
                 stats: IndexStats, name: str) -> None:
        self.config = original.config
        self._start = start
        self._rows: Iterator[dict[str, Any]] | None = None
        self._ready: deque[list[str]] = deque()
        self._stats = stats
        self._name = name

    def many(self, texts: list[str]) -> list[list[str]]:
        if self._rows is None:
            self._rows = self._start()  # the pipeline starts when indexing reaches this leaf
        while len(self._ready) < len(texts):
            row = next(self._rows, None)
            if row is None:
                raise RuntimeError("ray index: the workers returned fewer paragraphs than the "
                                   "store holds")
            joined = str(row["terms"])
            self._ready.extend([t.split(_TERM_SEP) if t else [] for t in
                                joined.split(_TEXT_SEP)])
        return [self._ready.popleft() for _ in texts]

    def __call__(self, text: str) -> list[str]:
        return self.many([text])[0]


class _ReplayVectors:
    """Stands in for DenseRetriever.encode while it indexes: the workers' passage vectors."""

    def __init__(self, start: Callable[[], Iterator[dict[str, Any]]],
                 stats: IndexStats) -> None:
        self._start = start
        self._stats = stats

    def __call__(self, texts: list[str], max_length: int, progress: bool = False,
                 desc: str = "") -> np.ndarray:
        parts = []
        for row in self._start():
            dim = int(row["dim"])
            parts.append(np.frombuffer(row["vectors"], dtype=np.float32).reshape(-1, dim))
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        if len(vectors) != len(texts):
            raise RuntimeError(f"ray index: {len(vectors)} vectors for {len(texts)} passages")
        return vectors
