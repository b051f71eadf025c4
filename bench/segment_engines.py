"""Which engine for a segmented BM25 index: Tantivy against korqa's own segments over bm25s-style
scoring, with bm25s's whole-index scoring (the engine before segments) as the peer, in one run.

Every engine gets the same korqa terms (tuned: character 1-2-grams + Kiwi morphemes + title,
the bm25 preset of `korqa.retrieval.registry`), analysed once, so the comparison is of the
engines alone; the shared analysis time per query is printed beside them. Tantivy receives the
terms joined by spaces into a field with its whitespace tokenizer (no lower-casing, no
stemming); its BM25 constants are fixed at k1 = 1.2, b = 0.75 (tantivy-py exposes no others),
so korqa's segments are also run at those. Tantivy is not a korqa dependency: `pip install
tantivy==0.27.0` first, or its row is skipped.

Measured per engine: recall@1/5/20 over all KorQuAD dev questions (context rule, as
bench/retrieval.py), search ms/query (one query at a time, terms given), build seconds, bytes on
disk, and the time until one added, replaced or deleted paragraph is searchable (commit plus
reopen), median of `--writes` repeats.

    python bench/segment_engines.py [--data KorQuAD_v1.0_dev.json] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from korqa.corpus import ParagraphStore, load_corpus
from korqa.corpus.paragraph import Paragraph
from korqa.retrieval.base import index_text
from korqa.retrieval.bm25 import BM25Retriever, bm25_weights
from korqa.retrieval.evaluate import GoldJudge, load_questions
from korqa.retrieval.registry import REGISTRY, load_retriever
from korqa.retrieval.sparse import count_matrix, top_k
from korqa.retrieval.terms import TermAnalyzer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
KS = (1, 5, 20)
NEW = Paragraph("bench:new:0", "벤치마크",
                "새로 더한 문단은 곧바로 검색되어야 한다. 파란여우 우체국장.", "bench:new")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Bm25sWhole:
    """korqa's BM25 before segments: bm25s's eager weight matrix over the whole corpus; any
    change rebuilt it."""

    def __init__(self, k1: float, b: float) -> None:
        self.k1, self.b = k1, b

    def build(self, texts: list[str], ids: list[str], analyzer: TermAnalyzer, where: Path) -> None:
        counts, vocabulary = count_matrix(texts, analyzer, progress=False)
        scores = bm25_weights(counts, self.k1, self.b)
        model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        model.scores = {"data": scores.data, "indices": scores.indices, "indptr": scores.indptr,
                        "num_docs": len(ids)}
        model.vocab_dict = vocabulary
        model.unique_token_ids_set = set(vocabulary.values())
        model.nonoccurrence_array = None
        model.save(where, show_progress=False)
        self.model = bm25s.BM25.load(where, mmap=True, allow_pickle=False, show_progress=False)
        self.ids = ids

    def search(self, terms: list[str], k: int) -> list[str]:
        vocabulary = self.model.vocab_dict
        term_ids = [vocabulary[t] for t in terms if t in vocabulary]
        if not term_ids:
            return []
        scores = self.model.get_scores_from_ids(term_ids)
        rows = np.flatnonzero(scores > 0)
        best, _ = top_k(scores[rows], k, rows)
        return [self.ids[r] for r in best.tolist()]


class KorqaSegments:
    """korqa's segments (`korqa.retrieval.bm25`), saved and reloaded memory-mapped; a write is
    a new segment or a tombstone plus a commit (manifest) and a reload."""

    def __init__(self, k1: float, b: float, segments: int = 1) -> None:
        self.k1, self.b, self.n_segments = k1, b, segments

    def build(self, paragraphs: list[Paragraph], where: Path) -> None:
        settings = {**REGISTRY["bm25"].preset, "k1": self.k1, "b": self.b}
        retriever = BM25Retriever(**settings)
        size = -(-len(paragraphs) // self.n_segments)
        retriever.index(paragraphs[:size], progress=False)
        for start in range(size, len(paragraphs), size):
            retriever.add(paragraphs[start:start + size])
        self.where = where
        retriever.save(where / "r0")
        self.retriever = load_retriever(where / "r0", verify=False)
        self.commits = 0

    def search(self, terms: list[str], k: int) -> list[str]:
        return [pid for pid, _ in self.retriever._retrieve(terms, k)]

    def write(self, add: list[Paragraph], delete: list[str]) -> None:
        self.retriever.delete(delete)
        self.retriever.add(add)
        self.retriever.segment_home = self.where / "r0" / "segments"
        self.commits += 1
        self.retriever.save(self.where / f"r{self.commits}")
        self.retriever = load_retriever(self.where / f"r{self.commits}", verify=False)


class Tantivy:
    """Tantivy (PyPI `tantivy`): Lucene-style segments, deletes and merges of its own; terms
    given as space-separated tokens to its whitespace tokenizer."""

    def build(self, paragraphs: list[Paragraph], terms: list[list[str]], where: Path) -> None:
        import tantivy

        self.tantivy = tantivy
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("id", stored=True, tokenizer_name="raw")
        builder.add_text_field("terms", stored=False, tokenizer_name="ws", index_option="freq")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema, path=str(where))
        self.index.register_tokenizer(
            "ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        self.writer = self.index.writer(heap_size=256_000_000, num_threads=2)
        for paragraph, tokens in zip(paragraphs, terms, strict=True):
            self.writer.add_document(tantivy.Document(id=paragraph.id, terms=" ".join(tokens)))
        self.writer.commit()
        self.writer.wait_merging_threads()
        self.writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, terms: list[str], k: int) -> list[str]:
        tantivy = self.tantivy
        if not terms:
            return []
        # One SHOULD clause per query term occurrence: a repeated term counts per occurrence,
        # as in korqa's BM25.
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "terms", t))
             for t in terms])
        hits = self.searcher.search(query, k).hits
        return [self.searcher.doc(address)["id"][0] for _, address in hits]

    def write(self, add: list[tuple[Paragraph, list[str]]], delete: list[str]) -> None:
        for pid in delete:
            self.writer.delete_documents_by_term("id", pid)
        for paragraph, tokens in add:
            self.writer.add_document(self.tantivy.Document(id=paragraph.id,
                                                           terms=" ".join(tokens)))
        self.writer.commit()
        self.index.reload()
        self.searcher = self.index.searcher()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--writes", type=int, default=5, help="repeats of each write timing")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    questions = load_questions(args.data, "all")
    settings = REGISTRY["bm25"].preset
    analyzer = TermAnalyzer(settings["terms"])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        store = ParagraphStore(scratch_dir / "paragraphs.sqlite")
        store.add(load_corpus([args.data]))
        paragraphs = list(store)
        texts = [index_text(p, settings["with_title"]) for p in paragraphs]
        ids = [p.id for p in paragraphs]
        judge = GoldJudge(store, "context")
        start = time.perf_counter()
        query_terms = analyzer.many([q.question for q in questions])
        analysis_ms = (time.perf_counter() - start) * 1000 / len(questions)
        start = time.perf_counter()
        for question in questions[::20]:
            analyzer(question.question)
        single_analysis_ms = (time.perf_counter() - start) * 1000 / len(questions[::20])
        new_terms = analyzer(index_text(NEW, True))
        print(f"corpus {len(paragraphs)} paragraphs, {len(questions)} questions; analysis "
              f"{single_analysis_ms:.2f} ms/query alone, {analysis_ms:.2f} batched",
              file=sys.stderr)

        k1 = settings["k1"]
        lineup: list[tuple[str, Any]] = [
            (f"bm25s whole index (before), k1={k1}", Bm25sWhole(k1, 0.75)),
            (f"korqa segments, 1 segment, k1={k1}", KorqaSegments(k1, 0.75)),
            (f"korqa segments, 8 segments, k1={k1}", KorqaSegments(k1, 0.75, segments=8)),
            ("korqa segments, 1 segment, k1=1.2", KorqaSegments(1.2, 0.75)),
            ("tantivy, k1=1.2 (fixed)", Tantivy()),
        ]
        if importlib.util.find_spec("tantivy") is None:
            print("tantivy is not installed (pip install tantivy==0.27.0): skipped",
                  file=sys.stderr)
            lineup = lineup[:-1]
        for number, (name, engine) in enumerate(lineup):
            where = scratch_dir / f"engine{number}"
            where.mkdir()
            start = time.perf_counter()
            if isinstance(engine, Bm25sWhole):
                engine.build(texts, ids, analyzer, where)
            elif isinstance(engine, Tantivy):
                engine.build(paragraphs, [analyzer(t) for t in texts], where)
            else:
                engine.build(paragraphs, where)
            build_s = time.perf_counter() - start
            times = []
            ranks = []
            for question, terms in zip(questions, query_terms, strict=True):
                begin = time.perf_counter()
                found = engine.search(terms, max(KS))
                times.append(time.perf_counter() - begin)
                ranks.append(judge.first_hit_rank(question, [(pid, 0.0) for pid in found]))
            row: dict[str, Any] = {"engine": name, "build_s": round(build_s, 2),
                                   "disk_mb": round(disk_bytes(where) / 1e6, 2),
                                   "search_ms": round(1000 * float(np.mean(times)), 3)}
            for k in KS:
                row[f"recall@{k}"] = round(sum(r is not None and r <= k for r in ranks)
                                           / len(ranks), 4)
            row.update(write_times(engine, NEW, new_terms, paragraphs, analyzer, texts, ids,
                                   where, args.writes))
            rows.append(row)
            print(f"  {row}", file=sys.stderr)
        store.close()

    print(f"\nKorQuAD dev, {len(questions)} questions, {len(paragraphs)} paragraphs; terms "
          f"analysed once (one query alone: {single_analysis_ms:.2f} ms)\n")
    print("| engine | R@1 | R@5 | R@20 | search ms/query | build s | disk MB | add ms "
          "| replace ms | delete ms |")
    print("|---" * 10 + "|")
    for row in rows:
        print(f"| {row['engine']} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in KS)
              + f" | {row['search_ms']:.3f} | {row['build_s']:.2f} | {row['disk_mb']:.2f}"
              + f" | {row['add_ms']:.1f} | {row['replace_ms']:.1f} | {row['delete_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n",
                             encoding="utf-8")
    return 0


def write_times(engine: Any, new: Paragraph, new_terms: list[str], paragraphs: list[Paragraph],
                analyzer: TermAnalyzer, texts: list[str], ids: list[str], where: Path,
                repeats: int) -> dict[str, float]:
    """Median ms until one added, replaced or deleted paragraph is searchable (checked)."""
    replaced = Paragraph(new.id, new.title, new.text + " 은빛수달 연구소", new.doc_id)
    replaced_terms = analyzer(index_text(replaced, True))
    out: dict[str, list[float]] = {"add_ms": [], "replace_ms": [], "delete_ms": []}
    for _ in range(1 if isinstance(engine, Bm25sWhole) else repeats):
        for label, add, delete, probe, present in (
                ("add_ms", [(new, new_terms)], [], new_terms, True),
                ("replace_ms", [(replaced, replaced_terms)], [new.id], replaced_terms, True),
                ("delete_ms", [], [new.id], replaced_terms, False)):
            start = time.perf_counter()
            if isinstance(engine, Bm25sWhole):  # before segments: every write rebuilt
                now = [p for p in paragraphs if p.id not in delete] + [p for p, _ in add]
                paragraphs = now
                texts = [index_text(p, True) for p in now]
                ids = [p.id for p in now]
                target = where / f"rebuild{len(out[label])}{label}"
                engine.build(texts, ids, analyzer, target)
            elif isinstance(engine, Tantivy):
                engine.write(add, delete)
            else:
                engine.write([p for p, _ in add], delete)
            out[label].append((time.perf_counter() - start) * 1000)
            found = new.id in engine.search(probe, 1)
            assert found == present, (label, engine)
    return {label: round(statistics.median(values), 1) for label, values in out.items()}


if __name__ == "__main__":
    sys.exit(main())
