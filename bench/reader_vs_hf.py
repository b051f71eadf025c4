"""korqa's reader against transformers' question-answering pipeline, on the same weights.

    python3 bench/reader_vs_hf.py                          # the shipped reader, 200 test questions
    python3 bench/reader_vs_hf.py --model DIR --limit 500 --threads 2

Needs transformers 4.x (`pip install -e .[test]` pins it below 5, which removed the
question-answering pipeline). The peer is HF's pipeline over our fine-tuned weights written in
HF's own format (fp32 safetensors + tokenizer.json, loaded by AutoModelForQuestionAnswering /
AutoTokenizer), cutting the same windows (the model's reader_config.json: 320 tokens, stride
160 for the shipped reader; HF's doc_stride is the overlap between windows, so it gets the
overlap that korqa's step gives for each question) and answers ≤ 30 tokens. korqa's side is
`korqa.reader.reader.Reader` as `korqa ask` uses it (ONNX Runtime, float weights), the same
reader on PyTorch (`--engine torch`), and ONNX Runtime with smoothed int8 linears (`--int8`)
when the model ships a calibration. HF reads every window of a paragraph; korqa reads them most
promising first and stops at a confident one (`korqa.reader.predict.read_logits`), or reads
them all with `--all-windows`.

Questions: KorQuAD test-split questions (random, seeded), each with its gold paragraph, asked one
at a time (a chatbot's load); the readers take turns question by question, so machine noise hits
all alike. Prints questions/s of each, korqa's speed-up over HF, and KorQuAD 1.0 EM/F1 of each.

HF's pipeline runs with align_to_words=False, as a Korean user would set it: its default
stretches a span to whole whitespace-separated words, which in Korean carry their particles and
punctuation ("5명(세입자" for "5명"); on the 200 default questions that cost it 8 F1 (71.14
against 79.08) and changed nothing in its speed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from korqa.corpus.formats import read_squad
from korqa.korquad_metric import score_example
from korqa.modeling import BertForQuestionAnswering
from korqa.modeling.checkpoint import load_model, save_pretrained
from korqa.modeling.config import ABSMAX_FILE
from korqa.pipeline import PipelineConfig, load_reader
from korqa.reader.directory import ReaderDir
from korqa.reader.reader import Reader
from korqa.splits import select_split

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "korquad" / \
    "KorQuAD_v1.0_dev.json"
MAX_ANSWER_LENGTH = 30  # tokens


def hf_pipeline(model_dir: Path, workdir: Path):  # -> transformers.QuestionAnsweringPipeline
    """HF's QA pipeline over the weights of `model_dir`, re-saved as plain fp32 HF files."""
    import shutil

    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        sys.exit("reader_vs_hf: needs transformers<5 (5.x removed the question-answering "
                 "pipeline); pip install 'transformers<5'")
    save_pretrained(load_model(BertForQuestionAnswering, model_dir), workdir, dtype="fp32")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, workdir / name)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(workdir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(workdir)
    return transformers.pipeline("question-answering", model=model, tokenizer=tokenizer,
                                 device="cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="reader directory (default: the shipped reader)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="KorQuAD 1.0 dev JSON")
    parser.add_argument("--limit", type=int, default=200, help="test questions (random, seeded)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all-windows", action="store_true",
                        help="korqa reads every window, as HF does (default: up to the first "
                             "confident one, most promising first)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    model_dir = ReaderDir(args.model).require().path
    questions = select_split(read_squad(args.data), "test")
    if args.limit < len(questions):
        questions = random.Random(args.seed).sample(questions, args.limit)
    window = ReaderDir(model_dir).config()

    def load(**options: object) -> Reader:  # as `korqa ask` loads it
        all_windows = {"stop_confidence": None} if args.all_windows else {}
        config = PipelineConfig(reader_overrides=all_windows, **options)
        return load_reader(model_dir, config, confidence=False)

    korqa = {"korqa_onnx_fp32": load(), "korqa_torch_fp32": load(engine="torch")}
    if (model_dir / ABSMAX_FILE).is_file():
        korqa["korqa_onnx_int8"] = load(int8=True)
    tokenizer = korqa["korqa_onnx_fp32"].tokenizer

    with tempfile.TemporaryDirectory() as workdir:
        hf = hf_pipeline(model_dir, Path(workdir))

        def ask_hf(question: str, context: str) -> str:
            # korqa steps `doc_stride` tokens from window to window; HF overlaps them by
            # `doc_stride`: this overlap gives HF the windows korqa cuts.
            question_tokens = min(len(tokenizer.encode(question).ids), window.max_query_length)
            room = window.max_seq_length - question_tokens - tokenizer.pair_overhead
            with torch.inference_mode():
                out = hf(question=question, context=context, max_seq_len=window.max_seq_length,
                         doc_stride=max(room - window.doc_stride, 0),
                         max_question_len=window.max_query_length,
                         max_answer_len=MAX_ANSWER_LENGTH, top_k=1, align_to_words=False)
            return out["answer"]

        def reading(reader: Reader):
            def ask(question: str, context: str) -> str:
                best = reader.read(question, [context], n_best=1,
                                   max_answer_length=MAX_ANSWER_LENGTH)[0]
                return best[0].text if best else ""
            return ask

        runners = {"hf_pipeline_fp32": ask_hf}
        runners.update({name: reading(reader) for name, reader in korqa.items()})
        for ask in runners.values():  # warm-up: first calls load Kiwi, allocate, etc.
            ask(questions[0].question, questions[0].context)
        seconds = {name: 0.0 for name in runners}
        scores = {name: [0.0, 0.0] for name in runners}
        for i, example in enumerate(questions):
            names = list(runners)[i % len(runners):] + list(runners)[:i % len(runners)]
            for name in names:
                start = time.perf_counter()
                answer = runners[name](example.question, example.context)
                seconds[name] += time.perf_counter() - start
                exact, f1 = score_example(answer, example)
                scores[name][0] += exact
                scores[name][1] += f1

    n = len(questions)
    results = {"model": str(model_dir), "questions": n, "threads": args.threads,
               "torch": torch.__version__, "readers": {}}
    for name in runners:
        results["readers"][name] = {"questions_per_s": round(n / seconds[name], 2),
                                    "exact_match": round(100 * scores[name][0] / n, 2),
                                    "f1": round(100 * scores[name][1] / n, 2)}
    hf_rate = results["readers"]["hf_pipeline_fp32"]["questions_per_s"]
    for row in results["readers"].values():
        row["speedup_over_hf"] = round(row["questions_per_s"] / hf_rate, 2)
    print(f"{n} KorQuAD test questions with their gold paragraph, {args.threads} threads, "
          f"one question at a time")
    print(f"{'reader':<22}{'q/s':>8}{'× HF':>8}{'EM':>8}{'F1':>8}")
    for name, row in results["readers"].items():
        print(f"{name:<22}{row['questions_per_s']:>8.2f}{row['speedup_over_hf']:>8.2f}"
              f"{row['exact_match']:>8.2f}{row['f1']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
