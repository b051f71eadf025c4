"""Kiwi with and without its dictionaries: build cost, and what they change on KorQuAD.

    python3 bench/kiwi_dictionary.py [--data KorQuAD_v1.0_dev.json]

korqa builds Kiwi without its default, typo and multi-word dictionaries (`korqa.morphology`).
This measures each analyser in one run: CPU seconds and resident memory to build one (in a
fresh process each, the language model loaded), BM25 recall@1/5/20 with korqa's tuned terms
over the 961 KorQuAD dev paragraphs for all 5,774 questions (index and queries analysed by that
analyser), and the reader's EM/F1 on the test split with particle trimming done by that
analyser (the logits are computed once: trimming is the only step that differs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
VARIANTS = {"all dictionaries (korqa before)": ("default", "typo", "multi"),
            "without multi-word": ("default", "typo"),
            "none (korqa's default)": ()}
# VmHWM, not ru_maxrss: Linux carries a child's ru_maxrss over from its parent at fork.
BUILD = """
import json, resource, sys
from kiwipiepy import Kiwi
loaded = sys.argv[1].split(",")
Kiwi(load_default_dict="default" in loaded, load_typo_dict="typo" in loaded,
     load_multi_dict="multi" in loaded).tokenize("가")
usage = resource.getrusage(resource.RUSAGE_SELF)
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": int(peak[0]) / 1024}))
"""


def build_cost(dictionaries: tuple[str, ...]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", BUILD, ",".join(dictionaries)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    from korqa import morphology
    from korqa.corpus import ParagraphStore, load_corpus
    from korqa.corpus.formats import read_squad
    from korqa.evaluation.evaluate import best_answers
    from korqa.korquad_metric import evaluate_predictions
    from korqa.reader import josa
    from korqa.reader.directory import ReaderDir
    from korqa.reader.features import convert_examples_to_features
    from korqa.reader.predict import decode_predictions, read_logits
    from korqa.retrieval.evaluate import evaluate_recall, load_questions
    from korqa.retrieval.registry import REGISTRY, retriever_class
    from korqa.splits import select_split

    reader = ReaderDir().load()
    examples = select_split(read_squad(args.data), "test")
    tokenizer, predict_config = reader.tokenizer, reader.config
    features = convert_examples_to_features(examples, tokenizer, predict_config, False)
    logits = read_logits(reader.engine, features, tokenizer, predict_config)
    questions = load_questions(args.data)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        store = ParagraphStore(Path(scratch) / "paragraphs.sqlite")
        store.add(load_corpus([args.data]))
        for name, dictionaries in VARIANTS.items():
            morphology._analysers.clear()  # trimming takes whichever analyser is built
            morphology.kiwi(dictionaries)
            josa._cut.cache_clear()
            decoded = decode_predictions(examples, features, logits, predict_config)
            scores = evaluate_predictions(examples, best_answers(decoded))
            preset = dict(REGISTRY["bm25"].preset)
            preset["terms"] = replace(preset["terms"], kiwi_dictionaries=dictionaries)
            retriever = retriever_class("bm25")(**preset)
            retriever.index(store, total=len(store), progress=False)
            recall = evaluate_recall(retriever, store, questions, (1, 5, 20))
            results[name] = {**build_cost(dictionaries), "em": scores["exact_match"],
                             "f1": scores["f1"],
                             **{k: recall[k] for k in ("recall@1", "recall@5", "recall@20")}}
        store.close()
    print(f"{'Kiwi':<32} {'build CPU s':>11} {'RSS MB':>7} {'recall@1':>9} {'@5':>7} "
          f"{'@20':>7} {'EM':>6} {'F1':>6}")
    for name, row in results.items():
        print(f"{name:<32} {row['cpu_s']:>11.2f} {row['rss_mb']:>7.0f} {row['recall@1']:>9.4f} "
              f"{row['recall@5']:>7.4f} {row['recall@20']:>7.4f} {row['em']:>6.2f} "
              f"{row['f1']:>6.2f}")
    print(f"({len(questions)} questions for recall, {len(examples)} test questions for EM/F1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
