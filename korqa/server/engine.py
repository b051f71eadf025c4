"""The server's pipeline owner: one worker thread answers, one writer thread adds documents."""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import queue
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from korqa.corpus.paragraph import Paragraph
from korqa.corpus.store import AddResult, ParagraphStore
from korqa.errors import IndexFault, as_index_fault
from korqa.memory import return_freed_memory
from korqa.pipeline import QAPipeline
from korqa.retrieval.index import (
    RETRIEVER_DIR,
    STORE_FILE,
    Index,
    build_index,
    change_index,
    current_retriever,
    finish_swap,
    saved_retriever,
)
from korqa.retrieval.manifest import MANIFEST_FILE, read_manifest

log = logging.getLogger("korqa.server")


# Worker jobs by priority: a write's swap and an index reopen go before every waiting
# question (a write waits for the question being read, not for the queue), then questions in
# the order they came, then the stop.
CONTROL, QUESTION, STOP = 0, 1, 2
# One question's service time is estimated as the median of the last this many answers: robust
# to the slow first answer (lazy loading) and to the odd long question, which a mean would
# carry into many needless refusals.
SERVICE_WINDOW = 32


class Busy(Exception):
    """The question would wait longer than the server allows (or the queue is full): refused
    at once; `retry_after` estimates in how many seconds it would be let in."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoIndex(Exception):
    """The pipeline answers from an FAQ only: there is no paragraph index to add to."""


_Write = Callable[[ParagraphStore], dict[str, int]]  # one change to the store, on the writer


@dataclass
class _Job:
    run: Callable[[], Any]
    future: Future
    counted: bool  # holds a queue slot (questions do; control jobs never wait for one)


class Engine:
    """Runs a `QAPipeline` on one worker thread with a bounded queue of questions.

    Admission: the engine estimates one question's service time (the median of the last
    answers, measured on the worker) and counts the questions admitted and not yet done; a
    question that would wait longer than `max_wait` seconds behind them is refused at once
    (`Busy`, with the wait it would take to be let in), so that the questions let in are
    answered in time instead of all of them late. The queue's bound (`max_queue`) holds too.

    The pipeline is opened on the worker and used only there: the index's SQLite connection
    belongs to the thread that opened it, and one thread is also what the CPU wants, since
    torch already spreads a forward pass over the cores. Adding documents happens on a
    second thread, which changes the paragraph store and rebuilds the retriever on disk in
    one store transaction; it commits and swaps the retriever in while the worker waits
    between two questions, and the worker then reopens the index: every question sees the
    old index or the new one, never a mix, and a crash at any point leaves the store and a
    retriever of the same generation (`repair_index` finishes what it interrupted).
    Additions that arrive during a rebuild are written and indexed together by the next one.

    Micro-batching concurrent questions through one reader call was measured (see
    bench/load.py's docstring) and is not done: it helps a toy model only.
    """

    def __init__(self, open_pipeline: Callable[[], QAPipeline], max_queue: int = 64,
                 max_wait: float | None = None) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if max_wait is not None and max_wait <= 0:
            raise ValueError(f"max_wait must be positive, got {max_wait}")
        self._open_pipeline = open_pipeline
        self.max_queue = max_queue
        self.max_wait = max_wait
        self._slots = threading.BoundedSemaphore(max_queue)
        self._jobs: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()  # first come, first served within a priority
        self._admitted = 0  # questions let in and not yet answered, dropped or cancelled
        self._answer_times: collections.deque[float] = collections.deque(maxlen=SERVICE_WINDOW)
        self._service: float | None = None  # seconds one question takes: their median
        self._admission_lock = threading.Lock()
        self._writes: queue.Queue[tuple[_Write, Future] | None] = queue.Queue()
        self._pipeline: QAPipeline | None = None
        self._worker: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._started = False
        self.index_dir: Path | None = None
        self.paragraphs = 0
        self.retriever_kind: str | None = None
        self.reader_loaded = False
        self.faq_entries = 0
        self.faq_answers: dict[str, str] = {}  # FAQ paragraph_id → its answer, for feedback
        self.indexing = False
        self.generation = 0  # bumped each time a rebuilt index is swapped in

    # ---- lifetime -----------------------------------------------------------------------

    def start(self) -> None:
        """Open the pipeline on the worker thread; raises what opening it raised. Idempotent."""
        with self._state_lock:
            if self._started:
                return
            ready: Future = Future()
            self._worker = threading.Thread(target=self._work, args=(ready,),
                                            name="korqa-qa-worker", daemon=True)
            self._worker.start()
            ready.result()  # re-raises a failed open here, in the caller
            self._writer = threading.Thread(target=self._write, name="korqa-index-writer",
                                            daemon=True)
            self._writer.start()
            self._started = True

    def stop(self) -> None:
        """Finish the queued work, close the pipeline and end both threads."""
        with self._state_lock:
            if not self._started:
                return
            self._started = False
            self._writes.put(None)
            assert self._writer is not None and self._worker is not None
            self._writer.join()
            self._jobs.put((STOP, next(self._order), None))
            self._worker.join()

    # ---- questions ----------------------------------------------------------------------

    def ask(self, question: str, top_k: int | None = None) -> Future:
        """A future of `korqa ask --json`'s dict for `question`; raises Busy when the question
        would wait longer than `max_wait`, or the queue is full."""
        wait = self.expected_wait()
        if self.max_wait is not None and wait > self.max_wait:
            raise Busy(f"the questions ahead would take about {wait:.1f} s, more than the "
                       f"{self.max_wait:g} s a question may wait", wait - self.max_wait)
        if not self._slots.acquire(blocking=False):
            raise Busy(f"{self.max_queue} questions are already waiting")

        def run() -> dict[str, Any]:
            assert self._pipeline is not None
            return self._pipeline.ask(question, top_k).to_json()

        try:
            future = self._submit(run, counted=True)
        except BaseException:
            self._slots.release()
            raise
        with self._admission_lock:
            self._admitted += 1
        future.add_done_callback(self._left)  # answered, failed or cancelled (client gone)
        return future

    def _left(self, _: Future) -> None:
        with self._admission_lock:
            self._admitted -= 1

    def expected_wait(self) -> float:
        """Seconds a question asked now would wait for the ones admitted before it, by the
        measured service time (0 before the first answer)."""
        with self._admission_lock:
            return self._admitted * (self._service or 0.0)

    def _measured(self, seconds: float) -> None:
        with self._admission_lock:
            self._answer_times.append(seconds)
            self._service = statistics.median(self._answer_times)

    def pending(self) -> int:
        return self._jobs.qsize()

    def _submit(self, run: Callable[[], Any], counted: bool) -> Future:
        if self._worker is None or not self._worker.is_alive():
            raise RuntimeError("the question worker is not running")
        future: Future = Future()
        self._jobs.put((QUESTION if counted else CONTROL, next(self._order),
                        _Job(run, future, counted)))
        return future

    def _work(self, ready: Future) -> None:
        try:
            self._pipeline = self._open_pipeline()
            self._describe(self._pipeline)
        except BaseException as error:  # noqa: BLE001 - handed to the thread that started us
            ready.set_exception(error)
            return
        ready.set_result(None)
        try:
            while (job := self._jobs.get()[2]) is not None:
                if job.future.set_running_or_notify_cancel():
                    started = time.perf_counter()
                    try:
                        job.future.set_result(job.run())
                    except BaseException as error:  # noqa: BLE001 - the caller decides
                        job.future.set_exception(error)
                    if job.counted:
                        self._measured(time.perf_counter() - started)
                if job.counted:
                    self._slots.release()
                if self._jobs.empty():
                    return_freed_memory()  # between questions: nobody waits for it
        finally:
            self._pipeline.close()

    def _describe(self, pipeline: QAPipeline) -> None:
        """Load the reader now (not on the first question) and note what /health reports."""
        index = pipeline.index
        if isinstance(index, Index):
            self.index_dir = index.directory
            self.paragraphs = len(index.store)
            self.retriever_kind = index.retriever.kind
        self.faq_entries = len(pipeline.faq) if pipeline.faq is not None else 0
        entries = pipeline.faq.entries if pipeline.faq is not None else []
        self.faq_answers = {f"faq:{entry.id}": entry.answer for entry in entries}
        if index is not None:
            pipeline.reader  # noqa: B018 - the property loads the model: fail at start, not later
            self.reader_loaded = True

    def reopen_index(self) -> Future:
        """Reopen the index directory between two questions (another process rebuilt it);
        the future is set once questions see the new index."""
        return self._submit(self._reopen_index, counted=False)

    def _reopen_index(self) -> None:
        """On the worker: swap in the index the writer just rebuilt, close the old one."""
        assert self._pipeline is not None and self.index_dir is not None
        old = self._pipeline.index
        # The writer wrote and hashed these files a moment ago; re-hashing only costs time.
        # It holds the index's lock until this returns: waiting for it would never end.
        new = Index(self.index_dir, verify=False, wait=0)
        self._pipeline.index = new
        if old is not None:
            old.close()
        self.paragraphs = len(new.store)
        self.generation += 1

    # ---- documents ----------------------------------------------------------------------

    def add_paragraphs(self, paragraphs: Sequence[Paragraph]) -> Future:
        """A future of {added, updated, unchanged, removed, paragraphs}, set once the
        paragraphs are stored and the swapped-in retriever indexes them. Each document given
        replaces all of its stored paragraphs."""
        paragraphs = list(paragraphs)

        def replace(store: ParagraphStore) -> dict[str, int]:
            result = store.replace_documents(paragraphs)
            return {"added": result.added, "updated": result.updated,
                    "unchanged": result.unchanged, "removed": result.removed}

        return self._enqueue(replace)

    def remove_documents(self, doc_ids: Sequence[str]) -> Future:
        """A future of {removed, paragraphs}; KeyError (nothing removed) for an unknown id."""
        doc_ids = list(doc_ids)
        return self._enqueue(lambda store: {"removed": store.remove_documents(doc_ids)})

    def _enqueue(self, write: _Write) -> Future:
        if self.index_dir is None:
            raise NoIndex("this server answers from an FAQ only: there is no paragraph index")
        future: Future = Future()
        self._writes.put((write, future))
        return future

    def _write(self) -> None:
        stopping = False
        while not stopping:
            first = self._writes.get()
            if first is None:
                break
            batch = [first]
            # Everything that queued up meanwhile shares this rebuild.
            while True:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._apply(batch)

    def _apply(self, batch: list[tuple[_Write, Future]]) -> None:
        """Carry out the writes (one that fails alone hears of it) and rebuild the retriever,
        in one store transaction that commits only once the new retriever is saved; swap it
        in while the worker waits between two questions; then answer each write."""
        assert self.index_dir is not None
        done: list[tuple[Future, dict[str, int]]] = []

        def change(store: ParagraphStore) -> AddResult:
            for write, future in batch:
                try:
                    done.append((future, write(store)))
                except (KeyError, ValueError) as error:
                    future.set_exception(error)
            if not done:
                raise _NothingWritten
            return AddResult(0, 0, 0)

        self.indexing = True
        try:
            _, total = change_index(self.index_dir, change, swap_guard=self._questions_paused)
        except _NothingWritten:
            return
        except BaseException as error:  # noqa: BLE001 - every waiting request hears of it
            if isinstance(error, IndexFault):  # expected (a full disk…): one line, no trace
                log.warning("writing documents failed: %s", error)
            else:
                log.exception("writing documents failed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            self.indexing = False
        for future, result in done:
            future.set_result({**result, "paragraphs": total})

    @contextmanager
    def _questions_paused(self) -> Iterator[None]:
        """Hold the worker between two questions while the store commits and the retriever
        is swapped, then have it reopen the index: no question reads the new store through
        the old retriever (a deleted paragraph would be a KeyError)."""
        parked, resume = threading.Event(), threading.Event()
        swapped = False

        def hold() -> None:
            parked.set()
            resume.wait()
            if swapped:
                self._reopen_index()

        held = self._submit(hold, counted=False)
        while not parked.wait(0.1):
            if held.done():  # the worker ended: the job never ran
                held.result()
                raise RuntimeError("the question worker is not running")
        try:
            yield
            swapped = True
        finally:
            resume.set()
        held.result()

    # ---- status -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        # ru_maxrss is in KiB on Linux: the peak resident memory of this process so far.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "status": "ok" if self._started else "starting",
            "model_loaded": self.reader_loaded,
            "index_loaded": self.index_dir is not None,
            "paragraphs": self.paragraphs,
            "retriever": self.retriever_kind,
            "faq_entries": self.faq_entries,
            "indexing": self.indexing,
            "index_generation": self.generation,
            "queue": {"waiting": self.pending(), "max": self.max_queue,
                      "expected_wait_s": round(self.expected_wait(), 3),
                      "service_s": None if self._service is None else round(self._service, 4)},
            "peak_rss_mb": round(peak, 1),
        }


class _NothingWritten(Exception):
    """Every write of a batch failed: there is nothing to commit or index."""


def rebuild_retriever(directory: Path) -> int:
    """Re-index the whole paragraph store of `directory` with its retriever's own settings
    (read back from the saved retriever) and save it in place; returns the paragraph count."""
    _, total = build_index(directory, (), saved_retriever(directory), progress=False)
    return total


def repair_index(directory: Path) -> bool:
    """Make the saved retriever index the store as committed, whatever a crash interrupted:
    finish a swap from a complete retriever.new/, or rebuild the retriever when it records
    another store generation (an in-place update keeps the paragraph count) or, for an index
    older than generations, another paragraph count. Returns whether it rebuilt or swapped."""
    swapped = finish_swap(directory)
    with ParagraphStore(directory / STORE_FILE, readonly=True) as store:
        generation, stored, digest = store.generation, len(store), store.digest
    if digest is None:  # a store written by an older korqa: opening it to write records one
        with contextlib.suppress(IndexFault), as_index_fault(directory):
            ParagraphStore(directory / STORE_FILE).close()
    try:
        manifest = read_manifest(directory / RETRIEVER_DIR, verify=False)
        current_retriever(directory, generation, stored)
    except (FileNotFoundError, ValueError) as error:
        if not (directory / RETRIEVER_DIR / MANIFEST_FILE).is_file():
            raise  # nothing to read the retriever's settings from
        log.warning("%s; rebuilding the retriever", error)
        rebuild_retriever(directory)
        return True
    recorded, indexed = manifest.get("store_generation"), manifest["paragraph_count"]
    if stored == indexed and (recorded == generation or generation is None):
        return swapped
    # Counts differ, or the retriever predates generations while the store has one: rebuild
    # once, after which it records the store's generation.
    log.warning("%s: the store (generation %s, %d paragraphs) and the retriever (generation "
                "%s, %d) differ; rebuilding the retriever", directory, generation, stored,
                recorded, indexed)
    rebuild_retriever(directory)
    return True
