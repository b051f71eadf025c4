"""Evaluate a saved reader on a KorQuAD split: predict, score with and without particle trimming."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from korqa.corpus.formats import read_squad
from korqa.evaluation.config import EvaluateConfig, ScoreConfig
from korqa.evaluation.report import build_report, write_report
from korqa.korquad_metric import evaluate_predictions
from korqa.reader.features import FeatureConfig, convert_examples_to_features
from korqa.reader.predict import Candidate, PredictConfig, decode_predictions, read_logits
from korqa.reader.reader import Reader
from korqa.splits import EVALUATION_SPLITS, sample_split, select_split

log = logging.getLogger("korqa.evaluation")

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest.json"


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """`korqa evaluate`: the reader `config.model` (its engine and reading as `config` says)
    scored by `evaluate_model`."""
    from korqa.reader.directory import ReaderDir

    choice = config.engine
    reader = ReaderDir(config.model).load(choice.engine, choice.int8, choice.device,
                                          **config.reader_overrides)
    return evaluate_model(reader, config.data, config.split, config.report, config.progress,
                          config.limit, config.seed)


def format_evaluation(result: dict[str, Any], config: EvaluateConfig) -> str:
    """`evaluate`'s result as lines for people."""
    sample = f" (drawn at random, seed {result['seed']})" if "seed" in result else ""
    lines = [f"{result['model']} on {result['split']}: {result['total']} questions{sample}, "
             f"{result['articles']} articles, {result['windows_read']} of {result['windows']} "
             f"windows read, {result['seconds']} s"]
    for label, key in (("with particle trimming", "with_trimming"),
                       ("without particle trimming", "without_trimming")):
        scores = result[key]
        if scores is not None:  # None: --no-trim, not decoded with trimming
            lines.append(f"  {label:<26} EM {scores['exact_match']:6.2f}  "
                         f"F1 {scores['f1']:6.2f}")
    lines += [f"  wrote {path}" for path in result.get("report_files", [])]
    return "\n".join(lines)


def evaluate_model(
    reader: Reader,
    data: str | Path,
    split: str = "test",
    report_dir: str | Path | None = None,
    progress: bool = False,
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores of `reader` (`ReaderDir.load`) on one split of `data` (KorQuAD 1.0 metric, 0–100).

    split: "test" (articles ≡ 4 mod 5), "validation" (group-k-fold fold 0 of the other
    articles, 5 folds, seed 0: what `korqa train` validates on) or "all". The windows and the
    reading are the reader's `ReaderConfig`. The model runs once; its logits are decoded with
    and without particle trimming, and both are reported (only without, when the config turns
    trimming off); the top-level exact_match/f1 follow its trim_particles. With `report_dir`,
    predictions.json, nbest.json and the error analysis are written there. The result's
    "int8" and "engine" say how it read. With `limit`, `limit` questions of the split drawn at
    random with `seed` (`korqa.splits.sample_split`: the same seed, the same questions) are
    scored, and the result states the seed.
    """
    if split not in EVALUATION_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(EVALUATION_SPLITS)}")
    config, engine, tokenizer = reader.config, reader.engine, reader.tokenizer
    started = time.perf_counter()
    examples = select_split(read_squad(data), split)
    if not examples:
        raise ValueError(f"{data}: split {split!r} holds no questions")
    say = _say if progress else lambda _: None
    sampled = limit is not None and limit < len(examples)
    drawn = f"{limit} drawn at random (seed {seed}) of the " if sampled else ""
    say(f"{drawn}{len(examples)} questions of the {split} split; the reader {reader.directory}")
    examples = sample_split(examples, limit, seed)

    say(f"cutting the questions' paragraphs into windows ({engine.name} engine)")
    features = convert_examples_to_features(examples, tokenizer, config, False)
    logits = read_logits(engine, features, tokenizer, config, progress=progress)
    decoded: dict[bool, dict[str, list[Candidate]]] = {}
    scores: dict[bool, dict[str, float]] = {}
    # Trimmed and untrimmed answers are compared only when trimming is asked for: --no-trim
    # must also run where Kiwi (kiwipiepy) is not installed.
    for trim in (True, False) if config.trim_particles else (False,):
        decoded[trim] = decode_predictions(examples, features, logits,
                                           replace(config, trim_particles=trim), progress)
        scores[trim] = evaluate_predictions(examples, best_answers(decoded[trim]))

    primary = config.trim_particles
    result: dict[str, Any] = {
        "exact_match": scores[primary]["exact_match"],
        "f1": scores[primary]["f1"],
        "total": scores[primary]["total"],
        "trim_particles": primary,
        "with_trimming": ({key: scores[True][key] for key in ("exact_match", "f1")}
                          if True in scores else None),
        "without_trimming": {key: scores[False][key] for key in ("exact_match", "f1")},
        "split": split,
        "articles": len({example.article_index for example in examples}),
        "windows": len(features),
        "windows_read": sum(window is not None for window in logits),
        "model": str(reader.directory),
        "int8": engine.is_int8,
        "engine": engine.name,
        "data": str(data),
        "feature_config": _fields(config, FeatureConfig),
        "predict_config": _fields(config, PredictConfig),
        "seconds": round(time.perf_counter() - started, 2),
        **({"limit": limit, "seed": seed} if sampled else {}),
    }
    if report_dir is not None:
        say(f"writing predictions and the error analysis to {report_dir}")
        report = build_report(examples, decoded[primary], features)
        result["report_files"] = [str(path) for path in
                                  write_outputs(decoded[primary], report, report_dir)]
    return result


def _fields(config: object, part: type) -> dict[str, Any]:
    """The fields of `config` that the dataclass `part` declares."""
    return {field.name: getattr(config, field.name) for field in fields(part)}


def _say(message: str) -> None:
    """A stage without a bar of its own, on stderr beside the bars."""
    print(f"korqa: {message}", file=sys.stderr, flush=True)


def best_answers(nbest: dict[str, list[Candidate]]) -> dict[str, str]:
    """The top answer text per question id ("" when there is no candidate)."""
    return {qid: candidates[0].text if candidates else "" for qid, candidates in nbest.items()}


def write_outputs(
    nbest: dict[str, list[Candidate]], report: dict[str, Any], directory: str | Path
) -> list[Path]:
    """predictions.json ({qid: answer}), nbest.json and the error analysis, in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    predictions_path, nbest_path = directory / PREDICTIONS_FILE, directory / NBEST_FILE
    _write_json(predictions_path, best_answers(nbest))
    _write_json(nbest_path, {qid: [asdict(c) for c in candidates]
                             for qid, candidates in nbest.items()})
    return [predictions_path, nbest_path, *write_report(report, directory)]


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def score_file(config: ScoreConfig) -> dict[str, Any]:
    """`korqa score`: `evaluate_predictions` of the predictions file `config.predictions`
    against `config.data`; questions without a prediction score 0, and a warning counts them."""
    from korqa.corpus.formats import load_json, read_squad

    examples = read_squad(config.data)
    predictions = load_json(config.predictions)
    if not isinstance(predictions, dict):
        raise ValueError(f"{config.predictions}: expected a JSON object of question id -> "
                         "answer")
    result = evaluate_predictions(examples, predictions, config.metric)
    missing = sum(example.qid not in predictions for example in examples)
    if missing:
        log.warning("korqa score: %d of %d questions have no prediction (scored 0)", missing,
                    result["total"])
    return result


def format_score(result: dict[str, Any], config: ScoreConfig) -> str:
    return (f"{config.metric}: EM {result['exact_match']:.2f}  F1 {result['f1']:.2f}  "
            f"({result['total']} questions)")
