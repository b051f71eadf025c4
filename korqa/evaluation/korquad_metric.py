"""KorQuAD 1.0 exact match and character F1, and SQuAD v1.1's token F1, from their definitions."""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from korqa.corpus.formats import SquadExample, read_squad_json

if TYPE_CHECKING:
    from korqa.evaluation.config import ScoreConfig

log = logging.getLogger("korqa.evaluation")

METRICS = ("korquad", "squad")

# KorQuAD 1.0 turns these quotes and brackets into spaces before dropping ASCII punctuation.
_KORQUAD_SPACED = str.maketrans({c: " " for c in "'\"《》<>〈〉()‘’"})
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ENGLISH_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """KorQuAD 1.0 normalisation: quotes/brackets → space, lower-case, no ASCII punctuation,
    single spaces. Lower-casing only touches Latin letters; Hangul has no case."""
    text = text.translate(_KORQUAD_SPACED).lower().translate(_ASCII_PUNCTUATION)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 when the normalised strings are equal (KorQuAD 1.0)."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """F1 over the multiset of characters of the normalised strings, spaces removed (KorQuAD 1.0).

    Worked example: gold "1989년 2월 15일" has 10 characters, prediction "1989년 2월 15일에" 11,
    10 in common: precision 10/11, recall 1, F1 = 2·(10/11)/(10/11 + 1) = 20/21 ≈ 0.952.
    """
    return _f1(list(normalize_answer(prediction).replace(" ", "")),
               list(normalize_answer(ground_truth).replace(" ", "")))


def squad_normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower-case, no punctuation, no English articles, single spaces."""
    text = text.lower().translate(_ASCII_PUNCTUATION)
    return " ".join(_ENGLISH_ARTICLES.sub(" ", text).split())


def squad_exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth))


def squad_f1_score(prediction: str, ground_truth: str) -> float:
    """SQuAD v1.1 F1 over whitespace tokens of the normalised strings."""
    return _f1(squad_normalize_answer(prediction).split(),
               squad_normalize_answer(ground_truth).split())


def _f1(prediction: list[str], ground_truth: list[str]) -> float:
    if not prediction and not ground_truth:
        # Only reachable for unanswerable questions (gold "") answered with "": a hit.
        return 1.0
    common = sum((Counter(prediction) & Counter(ground_truth)).values())
    if common == 0:
        return 0.0
    precision = common / len(prediction)
    recall = common / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


_SCORERS: dict[str, tuple[Callable[[str, str], float], Callable[[str, str], float]]] = {
    "korquad": (exact_match_score, f1_score),
    "squad": (squad_exact_match_score, squad_f1_score),
}


def score_example(
    prediction: str, example: SquadExample, metric: str = "korquad"
) -> tuple[float, float]:
    """(EM, F1) of one prediction, each the maximum over the example's gold answers (0–1)."""
    exact, f1 = _scorers(metric)
    # An unanswerable question's only right answer is the empty string.
    golds = [answer.text for answer in example.answers] or [""]
    return (max(exact(prediction, gold) for gold in golds),
            max(f1(prediction, gold) for gold in golds))


def evaluate_predictions(
    examples_or_dataset: list[SquadExample] | dict[str, Any],
    predictions: dict[str, str],
    metric: str = "korquad",
) -> dict[str, float]:
    """{"exact_match", "f1", "total"} over all gold questions, in percent; missing ids score 0.

    `examples_or_dataset` is a list of examples or a parsed SQuAD-format JSON object.
    """
    _scorers(metric)
    if isinstance(examples_or_dataset, dict):
        examples = read_squad_json(examples_or_dataset, source="dataset")
    else:
        examples = list(examples_or_dataset)
    exact_total = f1_total = 0.0
    for example in examples:
        prediction = predictions.get(example.qid)
        if prediction is None:
            continue
        if not isinstance(prediction, str):
            raise ValueError(
                f"prediction for question {example.qid!r} should be a string, "
                f"got {type(prediction).__name__}"
            )
        exact, f1 = score_example(prediction, example, metric)
        exact_total += exact
        f1_total += f1
    total = len(examples)
    return {
        "exact_match": 100.0 * exact_total / total if total else 0.0,
        "f1": 100.0 * f1_total / total if total else 0.0,
        "total": total,
    }


def _scorers(metric: str) -> tuple[Callable[[str, str], float], Callable[[str, str], float]]:
    if metric not in _SCORERS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return _SCORERS[metric]


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
