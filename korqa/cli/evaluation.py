"""Evaluation: `korqa evaluate`, `evaluate-open`, `score`, `retrieval-eval`, `open-sets` and
`split`. Every result is a dict the library computes; those with a table print its text form
unless --json is given."""

from __future__ import annotations

from korqa.cli.command import Command

CONFIG = "korqa.evaluation.config"
OPEN = "korqa.evaluation.open_domain"

COMMANDS = (
    Command(
        "evaluate", "EM/F1 of a saved reader on a KorQuAD split, with an error analysis",
        "Loads the reader (--model, else the shipped one), predicts, and scores with the "
        "KorQuAD 1.0 metric with and without trimming trailing particles off the answers (both "
        "are reported; --no-trim makes the untrimmed one primary). --split test = articles "
        "whose index is 4 mod 5; validation = group-k-fold fold 0 (5 folds, seed 0) of the "
        "other articles, what `korqa train` validates on; all = every question. --limit N "
        "scores N of them drawn at random (the same --seed, the same questions). --report DIR "
        "writes predictions.json, nbest.json, error_analysis.md and error_analysis.json.",
        (f"{CONFIG}:EvaluateConfig",), "korqa.evaluation.evaluate:evaluate",
        text="korqa.evaluation.evaluate:format_evaluation"),
    Command(
        "evaluate-open",
        "answerable EM/F1, abstention on unanswerable and off-topic questions, AUROC, ECE",
        "Runs the three sets of `korqa open-sets` through the whole pipeline (BM25 over the "
        "--data paragraphs, top-3) and reports, with the reader's confidence and with the rule "
        "before it: EM/F1 on the answerable set with a don't-know counted wrong, the "
        "abstention rate of each set, and AUROC and ECE (10 bins) of the shown confidence "
        "against the best guess being exactly right. --report DIR writes reliability.png, "
        "coverage_accuracy.png and summary.json.",
        (f"{CONFIG}:OpenEvaluationConfig",), f"{OPEN}:evaluate_open",
        text=f"{OPEN}:format_open_evaluation"),
    Command(
        "score", "EM/F1 of a predictions file against a SQuAD-format file",
        "KorQuAD 1.0 metric by default: exact match of normalised strings and F1 over their "
        "characters (spaces removed), the best over gold answers; questions without a "
        "prediction score 0. --metric squad: SQuAD v1.1's token F1. Scores are percentages.",
        (f"{CONFIG}:ScoreConfig",), "korqa.evaluation.evaluate:score_file",
        text="korqa.evaluation.evaluate:format_score"),
    Command(
        "retrieval-eval", "recall@k of a retriever on KorQuAD questions",
        "recall@k = share of questions with a gold paragraph in the top k. Gold (--rule): "
        "'context' = the corpus paragraphs whose text equals or contains the question's "
        "context; 'title-answer' = a retrieved paragraph of the question's article title that "
        "contains a gold answer text (kowiki); 'auto' = context if the first question's "
        "context is in the corpus, else title-answer. Latency is per query (one retrieve call "
        "each).",
        ("korqa.retrieval.evaluate:RecallConfig",), "korqa.retrieval.evaluate:evaluate_retrieval",
        text="korqa.retrieval.evaluate:format_recall"),
    Command(
        "open-sets", "write the answerable / unanswerable / off-topic question sets",
        "answerable: KorQuAD questions over the dev paragraphs, their own included; "
        "unanswerable: the same questions with their article's paragraphs left out of the "
        "search (exclude_title); offtopic: ChatbotData small talk. --split test: the KorQuAD "
        "test articles (index 4 mod 5) and chitchat rows 4 mod 5; validation: the reader's "
        "held-out fold 0 and the other chitchat rows. One JSON object a line.",
        (f"{CONFIG}:OpenSetsConfig",), f"{OPEN}:write_open_sets"),
    Command(
        "split", "write train/validation/test splits of a SQuAD file (ids or SQuAD files)",
        "test = articles whose index in `data` is 4 mod 5 (OUT/test). korquad writes the other "
        "articles as OUT/train_validation; the CV schemes split them into OUT/fold{i}/train "
        "and OUT/fold{i}/validation. group-kfold keeps each article in one fold (questions of "
        "one article leak into each other); stratified balances question types "
        "(korqa.questions.question_type); shuffle draws --folds random 1/folds hold-outs. A "
        "SQuAD file written here numbers its articles afresh, so cut no further split from it "
        "by index.",
        ("korqa.training.config:SplitConfig",), "korqa.training.cross_validation:write_splits"),
)
