"""End-to-end QA on KorQuAD's test split: `QAPipeline.ask` latency and EM/F1, against an oracle.

    python3 bench/end_to_end.py --model models/korqa-reader            # all 1,387 test questions
    python3 bench/end_to_end.py --model DIR --limit 200 --top-k 3
    python3 bench/end_to_end.py --model DIR --tune 300                 # fit w on validation first

Questions: the KorQuAD dev articles whose index is 4 mod 5 (korqa's test split). Paragraphs:
every dev paragraph (964), indexed once into the cache with korqa's default retriever (or
`--index DIR`). Each question goes through `QAPipeline.ask` (retrieve top-k, read those that
pass the read gate, fuse); its wall time is the latency. The named peer is the oracle reader:
the same reader given only the gold paragraph, i.e. the reader's own score with perfect
retrieval. The ratios say how much of the reader's F1 survives retrieval, and what the k-paragraph
read costs against a one-paragraph read.

EM/F1 are KorQuAD 1.0's. "answered" counts a "don't know" as wrong; "best guess" ignores the
threshold. `--tune N` fits the fusion weight and the read gate on N questions of the validation
fold (the reader's model-selection fold, never the test split), then evaluates the test split.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from korqa.corpus.formats import SquadExample, read_squad
from korqa.evaluation.fusion import tune_fusion
from korqa.korquad_metric import score_example
from korqa.pipeline import PipelineConfig, QAPipeline, cached_index, load_reader
from korqa.pipeline.qa import passes_gate
from korqa.reader.directory import ReaderDir
from korqa.reader.reader import Reader
from korqa.retrieval.index import Index
from korqa.splits import korquad_split, select_split

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "korquad" / \
    "KorQuAD_v1.0_dev.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample(examples: list[SquadExample], limit: int | None, seed: int) -> list[SquadExample]:
    """`limit` questions drawn at random (seeded), so a short run still spans many articles."""
    if limit is None or limit >= len(examples):
        return examples
    return sorted(random.Random(seed).sample(examples, limit), key=examples.index)


def run(pipeline: QAPipeline, reader: Reader, questions: list[SquadExample], top_k: int,
        oracle: bool) -> dict:
    rows = []
    for example in questions:
        start = time.perf_counter()
        answer = pipeline.ask(example.question, top_k)
        seconds = time.perf_counter() - start
        guess = answer.candidates[0].answer if answer.candidates else ""
        row = {"seconds": seconds, "known": answer.known,
               "answered": score_example(answer.answer if answer.known else "", example),
               "guess": score_example(guess, example),
               "recall": any(example.context == r.paragraph.text for r in answer.paragraphs),
               "read": sum(passes_gate(r, i, pipeline.config.read_gate)
                           for i, r in enumerate(answer.paragraphs))}
        if oracle:
            start = time.perf_counter()
            read = reader.read(example.question, [example.context],
                               n_best=pipeline.config.n_best,
                               max_answer_length=pipeline.config.max_answer_length)[0]
            row["oracle_seconds"] = time.perf_counter() - start
            row["oracle"] = score_example(read[0].text if read else "", example)
        rows.append(row)
    return summarise(rows, oracle)


def summarise(rows: list[dict], oracle: bool) -> dict:
    n = len(rows)
    ms = [1000 * r["seconds"] for r in rows]

    def mean(key: str, index: int) -> float:
        return round(100 * sum(r[key][index] for r in rows) / n, 2)

    out = {"questions": n, "latency_ms": {"p50": round(percentile(ms, 0.5), 1),
                                          "p90": round(percentile(ms, 0.9), 1),
                                          "mean": round(statistics.fmean(ms), 1)},
           "answered": {"exact_match": mean("answered", 0), "f1": mean("answered", 1)},
           "best_guess": {"exact_match": mean("guess", 0), "f1": mean("guess", 1)},
           "dont_know_rate": round(100 * sum(not r["known"] for r in rows) / n, 2),
           "paragraphs_read": round(sum(r["read"] for r in rows) / n, 2),
           "recall_at_k": round(100 * sum(r["recall"] for r in rows) / n, 2)}
    if oracle:
        oracle_ms = [1000 * r["oracle_seconds"] for r in rows]
        out["oracle"] = {"exact_match": mean("oracle", 0), "f1": mean("oracle", 1),
                         "latency_ms_p50": round(percentile(oracle_ms, 0.5), 1)}
        f1 = out["oracle"]["f1"]
        out["ratios"] = {
            "f1_end_to_end_over_oracle": round(out["best_guess"]["f1"] / f1, 3) if f1 else None,
            "latency_p50_end_to_end_over_oracle":
                round(out["latency_ms"]["p50"] / out["oracle"]["latency_ms_p50"], 2),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="reader directory (default: korqa.paths)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="KorQuAD 1.0 dev JSON")
    parser.add_argument("--index", help="a `korqa index` dir over the same paragraphs "
                                        "(default: --data indexed into the cache)")
    parser.add_argument("--limit", type=int, help="test questions to ask (random, seeded)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--weight", type=float, help="fusion weight (default 0.8)")
    parser.add_argument("--gate", type=float,
                        help="read gate: skip paragraphs under gate × the top retrieval score "
                             "(default 0.9; 0 reads all top-k)")
    parser.add_argument("--threshold", type=float,
                        help="don't-know threshold (default: the reader's confidence.json)")
    parser.add_argument("--int8", action="store_true",
                        help="read with smoothed int8 linears (the model must ship a calibration)")
    parser.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                        help="what runs the reader (default: onnx when onnxruntime is installed)")
    parser.add_argument("--tune", type=int, metavar="N",
                        help="first fit the fusion weight and read gate on N validation-fold "
                             "questions")
    parser.add_argument("--no-oracle", dest="oracle", action="store_false",
                        help="skip the gold-paragraph peer")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all-windows", action="store_true",
                        help="read every window of a long paragraph (korqa ask --all-windows)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model_dir = ReaderDir(args.model).require().path
        examples = read_squad(args.data)
        index = Index(args.index or cached_index([args.data], progress=sys.stderr.isatty()))
    except (FileNotFoundError, ValueError) as error:
        print(f"end_to_end: error: {error}", file=sys.stderr)
        return 2
    all_windows = {"stop_confidence": None} if args.all_windows else {}
    reader = load_reader(model_dir, PipelineConfig(int8=args.int8, engine=args.engine,
                                                   device=args.device,
                                                   reader_overrides=all_windows))
    config = PipelineConfig.with_overrides(top_k=args.top_k, device=args.device,
                                           fusion_weight=args.weight, read_gate=args.gate,
                                           threshold=args.threshold)
    pipeline = QAPipeline(index, reader, config=config)
    _, test = korquad_split(examples)
    questions = sample(test, args.limit, args.seed)

    results: dict = {"model": str(model_dir), "index": str(index.directory),
                     "device": args.device, "threads": torch.get_num_threads(),
                     "int8": reader.engine.is_int8, "engine": reader.engine.name,
                     "all_windows": reader.config.stop_confidence is None,
                     "top_k": args.top_k}
    if args.tune:
        validation = sample(select_split(examples, "validation"), args.tune, args.seed)
        tuning = tune_fusion(pipeline, validation, top_k=args.top_k)
        pipeline.config.fusion_weight = tuning.best_weight
        pipeline.config.read_gate = tuning.best_gate
        results["tuning"] = {
            "questions": tuning.questions, "best_weight": tuning.best_weight,
            "best_gate": tuning.best_gate,
            "table": {f"w {w:.2f} gate {g:.2f}": f"EM {em:.2f} F1 {f1:.2f} read {n:.2f}"
                      for w, g, em, f1, n in tuning.table}}
    results["fusion_weight"] = pipeline.config.fusion_weight
    results["read_gate"] = pipeline.config.read_gate
    results["threshold"] = pipeline.config.threshold
    # The first call loads Kiwi (particle trimming) and warms torch; it is not a user's latency.
    pipeline.ask(questions[0].question)
    results.update(run(pipeline, reader, questions, args.top_k, args.oracle))
    text = json.dumps(results, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
