"""How long one added, replaced or deleted document takes to become visible while the server's
engine answers questions, on a saved index (a BM25 index updates its segments in place).

The server's own `Engine` runs over the index with a stand-in pipeline that only retrieves (the
reader is not what is measured); a client thread asks questions all along. Each write is timed
from the call to its acknowledgement, which `Engine` gives only once the question thread serves
the new index, and is then checked by a question. `--rebuild-peer` also times one full rebuild
of the retriever, what every write cost before segments (`korqa.server.engine.rebuild_retriever`).
The index keeps its other documents; the bench's own document is deleted at the end.

    python bench/live_writes.py --index DIR [--writes 5] [--rebuild-peer] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.index import Index
from korqa.server.engine import Engine, rebuild_retriever

DOC = "bench:live"
OLD = Paragraph(f"{DOC}:0", "벤치마크 문서", "파란여우 마을의 우체국장은 뷁꽯이다.", DOC)
NEW = Paragraph(f"{DOC}:0", "벤치마크 문서", "은빛수달 연구소의 소장은 제갈현무이다.", DOC)
ASK_OLD, ASK_NEW = "파란여우 마을 우체국장 뷁꽯", "은빛수달 연구소 소장 제갈현무"
QUESTIONS = ["대한민국의 수도는 어디인가?", "한라산의 높이는 얼마인가?",
             "세종대왕은 언제 태어났나?", "임진왜란은 몇 년에 일어났나?",
             "광합성은 어디에서 일어나는가?"]


class _Answer:
    def __init__(self, hits: list[tuple[Paragraph, float]]) -> None:
        self.hits = hits

    def to_json(self) -> dict[str, Any]:
        return {"ids": [p.id for p, _ in self.hits], "texts": [p.text for p, _ in self.hits]}


class RetrievalOnly:
    """What `Engine` needs of a pipeline, answering with the top paragraphs only."""

    faq = None
    reader = None

    def __init__(self, directory: Path) -> None:
        self.index = Index(directory)

    def ask(self, question: str, top_k: int | None = None) -> _Answer:
        return _Answer(self.index.search(question, top_k or 3))

    def close(self) -> None:
        self.index.close()


def rss_mb() -> float:
    """Resident memory of this process now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--writes", type=int, default=5, help="repeats of add/replace/delete")
    parser.add_argument("--rebuild-peer", action="store_true",
                        help="also time one full rebuild of the retriever")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    engine = Engine(lambda: RetrievalOnly(args.index))
    engine.start()
    open_s = time.perf_counter() - start
    print(f"{args.index}: {engine.paragraphs} paragraphs, opened in {open_s:.2f} s",
          file=sys.stderr)
    # Warm-up, not timed: the first question and the first write each load Kiwi once.
    engine.ask(QUESTIONS[0]).result()
    engine.add_paragraphs([OLD]).result()
    engine.remove_documents([DOC]).result()
    latencies: list[tuple[float, float]] = []  # (when, ms)
    stop = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            begin = time.perf_counter()
            engine.ask(QUESTIONS[i % len(QUESTIONS)]).result()
            latencies.append((begin, (time.perf_counter() - begin) * 1000))
            i += 1

    asker = threading.Thread(target=client, daemon=True)
    asker.start()
    time.sleep(3.0)  # questions alone, before any write
    serving_mb = rss_mb()
    writes_from = time.perf_counter()
    timings: dict[str, list[float]] = {"add": [], "replace": [], "delete": []}

    def top(question: str) -> dict[str, Any]:
        return engine.ask(question, 1).result()

    for _ in range(args.writes):
        for label, call, check in (
                ("add", lambda: engine.add_paragraphs([OLD]),
                 lambda: top(ASK_OLD)["texts"] == [OLD.text]),
                ("replace", lambda: engine.add_paragraphs([NEW]),
                 lambda: top(ASK_NEW)["texts"] == [NEW.text]
                 and OLD.text not in top(ASK_OLD)["texts"]),
                ("delete", lambda: engine.remove_documents([DOC]),
                 lambda: NEW.id not in top(ASK_NEW)["ids"])):
            begin = time.perf_counter()
            call().result()
            timings[label].append(time.perf_counter() - begin)
            assert check(), f"{label}: not visible after its acknowledgement"
    writes_to = time.perf_counter()
    time.sleep(1.0)
    stop.set()
    asker.join()
    engine.stop()

    before = [ms for when, ms in latencies if when < writes_from]
    during = [ms for when, ms in latencies if writes_from <= when < writes_to]
    row: dict[str, Any] = {
        "index": str(args.index), "paragraphs": engine.paragraphs, "open_s": round(open_s, 2),
        **{f"{label}_s_median": round(statistics.median(v), 3) for label, v in timings.items()},
        **{f"{label}_s_max": round(max(v), 3) for label, v in timings.items()},
        "question_ms_p50_before": round(float(np.median(before)), 1) if before else None,
        "question_ms_p50_during": round(float(np.median(during)), 1) if during else None,
        "question_ms_p90_during": round(float(np.percentile(during, 90)), 1) if during else None,
        "questions_during_writes": len(during),
        "rss_mb_serving": round(serving_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.rebuild_peer:
        begin = time.perf_counter()
        rebuild_retriever(args.index)
        row["full_rebuild_s"] = round(time.perf_counter() - begin, 2)
    print(json.dumps(row, ensure_ascii=False, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, ensure_ascii=False, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
