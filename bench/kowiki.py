"""Open-domain QA over all of Korean Wikipedia: build, tune on non-test questions, then test.

    flock /tmp/kowiki.lock nice -n 10 python3 bench/kowiki.py build \
        --corpus ../shared/data/kowiki/kowiki_0*.jsonl.xz --out KOWIKI
    flock /tmp/kowiki.lock python3 bench/kowiki.py tune --index KOWIKI --limit 1000
    flock /tmp/kowiki.lock python3 bench/kowiki.py recall --index KOWIKI --split test
    flock /tmp/kowiki.lock python3 bench/kowiki.py answer --index KOWIKI --threads 2

build:  `korqa index` with the two-stage article retriever (korqa.retrieval.articles): wall and
        CPU time, peak RSS, size on disk.
tune:   recall@1/5/20 of KorQuAD questions of the non-test articles (validation and train: the
        retriever was never fitted on them) for a grid of the article retriever's query-time
        knobs; the peer is the same index's paragraph BM25 alone (weight 0), which is exactly
        `korqa index --retriever bm25 --no-morphemes`'s ranking.
recall: recall@1/5/20/100 and per-query latency on a split, the chosen knobs against weight 0.
answer: EM/F1 and latency of `QAPipeline.ask` on every test question (bench/end_to_end.py's
        loop), and the process's RSS while serving.

A hit is a paragraph of the gold article's title that contains a gold answer (the title-answer
rule of `korqa retrieval-eval`): kowiki's paragraphs come from another dump than KorQuAD's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from korqa.retrieval.articles import ArticleRetriever
from korqa.retrieval.base import Retriever
from korqa.retrieval.evaluate import GoldJudge, evaluate_recall, load_questions
from korqa.retrieval.hybrid import HybridRetriever
from korqa.retrieval.index import Index, build_index
from korqa.retrieval.terms import TermConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "korquad" / \
    "KorQuAD_v1.0_dev.json"
KNOBS = ("weight", "title_weight", "articles", "max_df")
KOWIKI_CHARS = 333_900_000


def memory_mb() -> dict[str, float]:
    """This process's peak RSS, and its RSS now split into anonymous and file-backed pages
    (memory-mapped index files count as file pages: the kernel can drop them)."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {name: value.split()[0] for name, _, value in (line.partition(":") for line in status)
              if name in ("VmRSS", "RssAnon", "RssFile")}
    return {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss": int(fields["VmRSS"]) / 1024, "rss_anon": int(fields["RssAnon"]) / 1024,
            "rss_file": int(fields["RssFile"]) / 1024}


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def build(args: argparse.Namespace) -> dict[str, Any]:
    retriever = ArticleRetriever(terms=TermConfig(ngrams=(1, 2), morphemes=args.morphemes))
    start, cpu = time.perf_counter(), time.process_time()
    _, count = build_index(args.out, args.corpus, retriever=retriever,
                           progress=sys.stderr.isatty())
    return {"paragraphs": count, "articles": len(retriever.article_ids),
            "terms": len(retriever.vocabulary), "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(time.process_time() - cpu, 1), "disk_mb": round(disk_mb(
                Path(args.out)), 1), "memory_mb": memory_mb()}


def configure(retriever: Retriever, **knobs: Any) -> Retriever:
    """Set the article retriever's query-time knobs (in a hybrid: its article component's;
    `hybrid_weights` sets the hybrid's fusion weights)."""
    articles = retriever
    if isinstance(retriever, HybridRetriever):
        if "hybrid_weights" in knobs:
            retriever.weights = [float(w) for w in knobs.pop("hybrid_weights")]
        articles = next(c for c in retriever.components if isinstance(c, ArticleRetriever))
    for name, value in knobs.items():
        if name not in KNOBS:
            raise ValueError(f"unknown knob {name!r} (expected one of {', '.join(KNOBS)})")
        setattr(articles, name, value)
    return retriever


def tune(args: argparse.Namespace) -> dict[str, Any]:
    """Recall of every grid point on non-test questions. Each question's score vectors are
    computed once per max_df; the fusions are then ranked over candidates (the top paragraphs
    by paragraph BM25 and every paragraph of the top articles), enough for recall@20."""
    questions = load_questions(args.data, "validation")
    questions = random.Random(args.seed).sample(questions, min(args.limit, len(questions)))
    with Index(args.index) as index:
        retriever = index.retriever
        if not isinstance(retriever, ArticleRetriever):
            raise SystemExit(f"{args.index}: not an article index ({retriever.kind})")
        judge = GoldJudge(index.store, "title-answer")
        grid = list(itertools.product(args.weights, args.title_weights, args.articles))
        found: dict[tuple, list[int | None]] = {}
        for max_df in args.max_df:
            configure(retriever, max_df=max_df)
            for question in questions:
                ranked = fused_rankings(retriever, question.question, grid, depth=20)
                for point, rows in ranked.items():
                    hits = [(retriever.paragraph_ids[r], 0.0) for r in rows]
                    found.setdefault((*point, max_df), []).append(
                        judge.first_hit_rank(question, hits))
        answerable = sum(judge.answerable(q) for q in questions)
    table = []
    for point, ranks in found.items():
        row = dict(zip(("weight", "title_weight", "articles", "max_df"), point, strict=True))
        row.update({f"recall@{k}": round(sum(r is not None and r <= k for r in ranks)
                                         / len(ranks), 4) for k in (1, 5, 20)})
        table.append(row)
    table.sort(key=lambda r: (-r["recall@5"], -r["recall@1"]))
    return {"questions": len(questions), "answerable": answerable, "split": "validation",
            "best": table[0], "table": table}


def fused_rankings(retriever: ArticleRetriever, query: str, grid: list[tuple],
                   depth: int) -> dict[tuple, np.ndarray]:
    """The top-`depth` rows of each (weight, title_weight, articles) fusion for one query, as
    ArticleRetriever._retrieve ranks them, over the candidate rows."""
    term_ids = retriever._query_terms(retriever.analyzer(query))
    if not term_ids:
        return {point: np.empty(0, dtype=np.int64) for point in grid}
    paragraph = retriever._column_sum("paragraphs", term_ids, len(retriever.article_of))
    body = retriever._column_sum("articles", term_ids, len(retriever.article_ids))
    title = retriever._column_sum("titles", term_ids, len(retriever.article_ids))
    top_paragraphs = np.argpartition(-paragraph, 1000)[:1000]
    out = {}
    for title_weight in sorted({p[1] for p in grid}):
        article = body + title_weight * title
        top_articles = np.argsort(-article)[:50]
        candidates = np.union1d(top_paragraphs,
                                np.flatnonzero(np.isin(retriever.article_of, top_articles)))
        for weight, tw, articles in grid:
            if tw != title_weight:
                continue
            kept = article
            if articles:
                kept = np.zeros_like(article)
                kept[top_articles[:articles]] = article[top_articles[:articles]]
            fused = paragraph[candidates] / max(paragraph.max(), 1e-9)
            if weight:
                fused = fused + weight * kept[retriever.article_of[candidates]] / max(
                    kept.max(), 1e-9)
            order = np.lexsort((candidates, -fused))[:depth]
            out[(weight, tw, articles)] = candidates[order][fused[order] > 0]
    return out


def recall(args: argparse.Namespace) -> dict[str, Any]:
    questions = load_questions(args.data, args.split)
    with Index(args.index) as index:
        retriever = index.retriever
        chosen = json.loads(args.knobs)
        runs = {"peer": json.loads(args.peer), "two-stage": chosen}
        out: dict[str, Any] = {"split": args.split, "knobs": chosen,
                               "peer_knobs": json.loads(args.peer)}
        retriever.retrieve("워밍업", 5)  # first touch of the mapped files
        for name, knobs in runs.items():
            saved = {k: getattr(retriever, k) for k in KNOBS}
            configure(retriever, **dict(knobs))
            out[name] = evaluate_recall(retriever, index.store, questions, (1, 5, 20, 100),
                                        rule="title-answer")
            configure(retriever, **saved)
        out["memory_mb"] = memory_mb()
    return out


def answer(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from end_to_end import run  # the same question loop and scoring

    from korqa.corpus.formats import read_squad
    from korqa.evaluation.fusion import tune_fusion
    from korqa.pipeline import PipelineConfig, QAPipeline, load_reader
    from korqa.splits import korquad_split, select_split

    if args.threads:
        torch.set_num_threads(args.threads)
    index = Index(args.index)
    configure(index.retriever, **json.loads(args.knobs))
    reader = load_reader(args.model, PipelineConfig(engine="auto", device="cpu"))
    config = PipelineConfig.with_overrides(top_k=args.top_k, device="cpu",
                                           fusion_weight=args.weight, read_gate=args.gate)
    pipeline = QAPipeline(index, reader, config=config)
    examples = read_squad(args.data)
    _, test = korquad_split(examples)
    if args.limit:
        test = random.Random(args.seed).sample(test, args.limit)
    pipeline.ask(test[0].question)  # loads Kiwi and warms the engine: not a user's latency
    results: dict[str, Any] = {"index": str(args.index), "knobs": json.loads(args.knobs),
                               "top_k": args.top_k, "threads": torch.get_num_threads()}
    if args.tune:  # the answer fusion weight and read gate, on validation questions
        validation = select_split(examples, "validation")
        validation = random.Random(args.seed).sample(validation, min(args.tune,
                                                                     len(validation)))
        tuning = tune_fusion(pipeline, validation, top_k=args.top_k)
        config.fusion_weight, config.read_gate = tuning.best_weight, tuning.best_gate
        results["tuning"] = {"questions": tuning.questions, "best_weight": tuning.best_weight,
                             "best_gate": tuning.best_gate}
    results.update(fusion_weight=config.fusion_weight, read_gate=config.read_gate)
    results.update(run(pipeline, reader, test, args.top_k, oracle=False))
    results.pop("recall_at_k", None)  # KorQuAD-context equality: meaningless over kowiki
    results["memory_mb"] = memory_mb()
    index.close()
    return results


def morphemes(args: argparse.Namespace) -> dict[str, Any]:
    """Are Kiwi morphemes worth their time at kowiki scale? Measured on a slice: the articles
    of the non-test questions plus `--docs` random articles, indexed with and without
    morpheme terms; Kiwi's rate with one thread and with two projects the full build."""
    from kiwipiepy import Kiwi

    from korqa.corpus.store import ParagraphStore
    from korqa.morphology import kiwi
    from korqa.retrieval.index import STORE_FILE
    from korqa.splits import title_key

    questions = load_questions(args.data, "validation")
    with ParagraphStore(Path(args.index) / STORE_FILE, readonly=True) as store:
        titles = {t for q in questions for t in (q.title, title_key(q.title))}
        documents = store.documents()
        titles |= {d.title for d in random.Random(args.seed).sample(documents, args.docs)}
        paragraphs = [p for title in sorted(titles) for p in store.by_title(title)]
        texts = [f"{p.title}\n{p.text}" for p in paragraphs]
        chars = sum(map(len, texts))
        out: dict[str, Any] = {"paragraphs": len(paragraphs), "chars": chars,
                               "questions": len(questions)}
        analysers = {"korqa's Kiwi": kiwi(()),
                     "Kiwi(num_workers=2)": Kiwi(num_workers=2, load_default_dict=False,
                                                 load_typo_dict=False, load_multi_dict=False)}
        for name, analyser in analysers.items():
            analyser.tokenize("가")
            start, cpu = time.perf_counter(), time.process_time()
            list(analyser.tokenize(texts))
            wall = time.perf_counter() - start
            used = time.process_time() - cpu
            out[name] = {
                "chars_per_s": round(chars / wall), "cpu_s": round(used, 1),
                "chars_per_cpu_s": round(chars / used),
                "kowiki_projected_min": round(KOWIKI_CHARS / (chars / wall) / 60, 1)}
        knobs = json.loads(args.knobs)
        for morph in (False, True):
            retriever = ArticleRetriever(terms=TermConfig(ngrams=(1, 2), morphemes=morph))
            start, cpu = time.perf_counter(), time.process_time()
            retriever.index(paragraphs, progress=False)
            built = {"wall_s": round(time.perf_counter() - start, 1),
                     "cpu_s": round(time.process_time() - cpu, 1)}
            for name, setting in {"paragraph BM25 (weight 0)": {"weight": 0.0},
                                  "two-stage": knobs}.items():
                configure(retriever, **setting)
                result = evaluate_recall(retriever, store, questions, (1, 5, 20),
                                         rule="title-answer")
                built[name] = {k: round(v, 4) for k, v in result.items() if "recall" in k}
            out["with morphemes" if morph else "character n-grams"] = built
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build")
    p.add_argument("--corpus", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--morphemes", action="store_true", help="add Kiwi morphemes to the terms")
    p = sub.add_parser("tune")
    p.add_argument("--index", required=True)
    p.add_argument("--limit", type=int, default=1000, help="non-test questions (random)")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0])
    p.add_argument("--title-weights", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    p.add_argument("--articles", type=int, nargs="+", default=[0, 5, 20])
    p.add_argument("--max-df", type=float, nargs="+", default=[1.0])
    p = sub.add_parser("recall")
    p.add_argument("--index", required=True)
    p.add_argument("--split", default="test", choices=["test", "validation"])
    p.add_argument("--peer", default='{"weight": 0.0, "max_df": 1.0}',
                   help="the peer's knobs (default: paragraph BM25 alone, every term)")
    p = sub.add_parser("morphemes")
    p.add_argument("--index", required=True, help="the kowiki index (its store is read)")
    p.add_argument("--docs", type=int, default=3000, help="random articles beside the gold ones")
    p = sub.add_parser("answer")
    p.add_argument("--index", required=True)
    p.add_argument("--model", help="reader directory (default: the shipped reader)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--weight", type=float, help="answer fusion weight (default: korqa's)")
    p.add_argument("--gate", type=float, help="read gate (default: korqa's)")
    p.add_argument("--threads", type=int)
    p.add_argument("--limit", type=int, help="test questions (default: all)")
    p.add_argument("--tune", type=int, metavar="N",
                   help="first fit the answer fusion weight and read gate on N validation "
                        "questions")
    for p in sub.choices.values():
        p.add_argument("--data", default=str(DEFAULT_DATA), help="KorQuAD 1.0 dev JSON")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", metavar="FILE", help="also write the results here")
        if p.prog.split()[-1] in ("recall", "answer", "morphemes"):
            p.add_argument("--knobs", default="{}",
                           help='article retriever knobs as JSON, e.g. {"weight": 1.0}')
    args = parser.parse_args()
    commands = {"build": build, "tune": tune, "recall": recall, "answer": answer,
                "morphemes": morphemes}
    results = commands[args.command](args)
    text = json.dumps(results, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
