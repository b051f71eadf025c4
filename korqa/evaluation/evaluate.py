"""Evaluate a saved reader on a KorQuAD split: predict, score with and without particle trimming."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from korqa.corpus.formats import read_squad
from korqa.evaluation.korquad_metric import evaluate_predictions
from korqa.evaluation.report import build_report, write_report
from korqa.reader.features import FeatureConfig, convert_examples_to_features
from korqa.reader.predict import Candidate, PredictConfig, decode_predictions, read_logits
from korqa.splits import select_split
from korqa.tokenization import Tokenizer

EVALUATION_SPLITS = ("test", "validation", "all")
PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest.json"


def evaluate_model(
    model_dir: str | Path | None,  # None: the default reader (korqa.paths)
    data: str | Path,
    split: str = "test",
    feature_config: FeatureConfig | None = None,
    predict_config: PredictConfig | None = None,
    device: str = "cpu",
    report_dir: str | Path | None = None,
    progress: bool = False,
    int8: bool = False,
    engine: str = "torch",
) -> dict[str, Any]:
    """Scores of the reader in `model_dir` on one split of `data` (KorQuAD 1.0 metric, 0–100).

    split: "test" (articles ≡ 4 mod 5), "validation" (group-k-fold fold 0 of the other
    articles, 5 folds, seed 0: what `korqa train` validates on) or "all". The model runs once;
    its logits are decoded with and without particle trimming, and both are reported (only
    without, when predict_config turns trimming off);
    the top-level exact_match/f1 follow predict_config.trim_particles. With `report_dir`,
    predictions.json, nbest.json and the error analysis are written there. With int8 the model
    is read with smoothed int8 linears on the CPU (it must ship a calibration); `engine` is
    "torch", "onnx" (ONNX Runtime, CPU) or "auto". The result's "int8" and "engine" say which
    way it ran.
    """
    from korqa.modeling import load_reader_model
    from korqa.modeling.engines import is_quantized, resolve_engine
    from korqa.paths import resolve_reader_dir

    if split not in EVALUATION_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(EVALUATION_SPLITS)}")
    predict_config = predict_config or PredictConfig()
    started = time.perf_counter()
    examples = select_split(read_squad(data), split)
    if not examples:
        raise ValueError(f"{data}: split {split!r} holds no questions")
    model_dir = resolve_reader_dir(model_dir)  # a clear error when it holds no model
    feature_config = feature_config or FeatureConfig.for_model(model_dir)
    say = _say if progress else lambda _: None
    say(f"{len(examples)} questions of the {split} split; loading the reader {model_dir}")
    tokenizer = Tokenizer.from_pretrained(model_dir)
    engine = resolve_engine(engine, device)
    model = load_reader_model(model_dir, int8, engine, device).to(device)

    say(f"cutting the questions' paragraphs into windows ({engine} engine)")
    features = convert_examples_to_features(examples, tokenizer, feature_config, False)
    logits = read_logits(model, features, tokenizer, predict_config, device, progress)
    decoded: dict[bool, dict[str, list[Candidate]]] = {}
    scores: dict[bool, dict[str, float]] = {}
    # Trimmed and untrimmed answers are compared only when trimming is asked for: --no-trim
    # must also run where Kiwi (kiwipiepy) is not installed.
    for trim in (True, False) if predict_config.trim_particles else (False,):
        decoded[trim] = decode_predictions(examples, features, logits,
                                           replace(predict_config, trim_particles=trim),
                                           progress)
        scores[trim] = evaluate_predictions(examples, best_answers(decoded[trim]))

    primary = predict_config.trim_particles
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
        "model": str(model_dir),
        "int8": is_quantized(model),
        "engine": engine,
        "data": str(data),
        "feature_config": asdict(feature_config),
        "predict_config": asdict(predict_config),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if report_dir is not None:
        say(f"writing predictions and the error analysis to {report_dir}")
        report = build_report(examples, decoded[primary], features)
        result["report_files"] = [str(path) for path in
                                  write_outputs(decoded[primary], report, report_dir)]
    return result


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
