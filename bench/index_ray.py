"""`korqa index --ray` against a single-process build, on the first N paragraphs of a corpus.

    python3 bench/index_ray.py --corpus ../shared/data/kowiki/kowiki_00.jsonl.xz \\
        --paragraphs 4000 --workers 1 2 1 2 --encoder models/korqa-reader --dense-paragraphs 200

The sparse index is korqa's default BM25 (character 1-2 grams + Kiwi morphemes, with titles).
Reported, for the single process and for Ray with each worker count: wall time, and for Ray the
driver's serial part (reading the store into shards, counting terms into the vocabulary, the
weights, writing; everything but waiting for workers); whether the files are byte-identical to
the single-process build. Also the CPU seconds per paragraph of term analysis (the part Ray
spreads) and, with --encoder, of dense encoding on one thread: the inputs of docs/scaling.md.
The encoder may be any korqa BERT directory (the shipped reader stands in for e5-small: the same
network, one layer fewer).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path


def write_subset(corpus: str, count: int, out: Path) -> list:
    """The first `count` paragraphs of `corpus`, as a korqa JSONL corpus (one document per
    paragraph, so the store holds exactly these)."""
    from korqa.corpus.formats import load_corpus

    paragraphs = list(islice(load_corpus([Path(corpus)]), count))
    with out.open("w", encoding="utf-8") as handle:
        for i, p in enumerate(paragraphs):
            handle.write(json.dumps({"id": f"p{i}", "title": p.title, "paragraphs": [p.text]},
                                    ensure_ascii=False) + "\n")
    return paragraphs


def same_files(one: Path, two: Path) -> bool:
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) and all(
        (one / f).read_bytes() == (two / f).read_bytes() for f in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--paragraphs", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 1, 2],
                        help="worker counts, run in this order (default 1 2 1 2: turns)")
    parser.add_argument("--encoder", help="a BERT directory for the dense encoding cost")
    parser.add_argument("--dense-paragraphs", type=int, default=200)
    args = parser.parse_args(argv)

    import torch

    from korqa.distributed import index as ray_index
    from korqa.retrieval.base import index_text
    from korqa.retrieval.index import RETRIEVER_DIR, build_index
    from korqa.retrieval.registry import REGISTRY, make_retriever
    from korqa.retrieval.terms import TermAnalyzer

    torch.set_num_threads(1)
    result: dict = {"paragraphs": args.paragraphs}
    with tempfile.TemporaryDirectory(prefix="korqa-index-ray-") as scratch:
        root = Path(scratch)
        corpus = root / "subset.jsonl"
        paragraphs = write_subset(args.corpus, args.paragraphs, corpus)
        result["characters"] = sum(len(p.text) + len(p.title) for p in paragraphs)
        texts = [index_text(p, True) for p in paragraphs]

        analyzer = TermAnalyzer(REGISTRY["bm25"].preset["terms"])
        analyzer.many(texts[:10])  # Kiwi's model loads once
        cpu = time.process_time()
        for start in range(0, len(texts), 1000):
            analyzer.many(texts[start:start + 1000])
        result["analysis_cpu_s_per_paragraph"] = (time.process_time() - cpu) / len(texts)

        start = time.perf_counter()
        cpu = time.process_time()
        build_index(root / "serial", [corpus], make_retriever("bm25"), progress=False)
        result["serial"] = {"wall_s": round(time.perf_counter() - start, 2),
                            "cpu_s_per_paragraph": (time.process_time() - cpu) / len(texts)}
        for workers in args.workers:
            out = root / f"ray-{workers}"
            start = time.perf_counter()
            build_index(out, [corpus], make_retriever("bm25"), progress=False,
                        index_with=ray_index.ray_indexer(workers))
            wall = time.perf_counter() - start
            stats = ray_index.last_stats
            result.setdefault("ray", []).append({"workers": workers,
                "wall_s": round(wall, 2), "waiting_for_workers_s": round(stats.wait_s, 2),
                # Everything but waiting: reading the corpus into the store, shards, counting,
                # weights, writing, and starting Ray (also given on its own).
                "serial_s": round(wall - stats.wait_s, 2),
                "ray_start_s": round(stats.ray_start_s, 2), "shards": stats.shards,
                "identical_to_serial": same_files(root / "serial" / RETRIEVER_DIR,
                                                  out / RETRIEVER_DIR)})
            shutil.rmtree(out)
            print(f"ray x{workers}: {result['ray'][-1]}", file=sys.stderr, flush=True)

        if args.encoder:
            from korqa.retrieval.dense import PASSAGE_PREFIX, DenseRetriever

            dense = DenseRetriever(args.encoder)
            passages = [PASSAGE_PREFIX + t for t in texts[:args.dense_paragraphs]]
            dense.encode(passages[:4], dense.max_length)  # load the model
            cpu = time.process_time()
            dense.encode(passages, dense.max_length)
            result["dense_cpu_s_per_paragraph"] = (time.process_time() - cpu) / len(passages)
            result["dense_encoder"] = args.encoder
    for key in ("analysis_cpu_s_per_paragraph", "dense_cpu_s_per_paragraph"):
        if key in result:
            result[key] = round(result[key], 5)
    result["serial"]["cpu_s_per_paragraph"] = round(result["serial"]["cpu_s_per_paragraph"], 5)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
