"""Automated error analysis of reader predictions: error buckets, breakdowns, worst examples."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from korqa.corpus.formats import GoldAnswer, SquadExample
from korqa.evaluation.korquad_metric import normalize_answer, score_example
from korqa.morphology import kiwi
from korqa.questions import QUESTION_TYPES, question_type
from korqa.reader.features import InputFeatures
from korqa.reader.josa import is_particle_tail
from korqa.reader.predict import Candidate

# Every question lands in exactly one bucket, tried in this order.
BUCKETS: dict[str, str] = {
    "correct": "exact match",
    "outside_windows": "no window holds the whole gold answer (truncation), so it was unreachable",
    "no_answer": "the reader abstained (empty prediction)",
    "particle_attached": "prediction = gold + trailing particle/ending (임종석이 for 임종석)",
    "boundary": "prediction and gold overlap but their boundaries differ",
    "wrong_entity": "no overlap, but the same kind of answer (both dates, numbers or names)",
    "completely_wrong": "no overlap and a different kind of answer",
}
LENGTH_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("unanswerable", 0, 0), ("1-3", 1, 3), ("4-6", 4, 6), ("7-10", 7, 10), ("11-20", 11, 20),
    ("21+", 21, 10**9),
)
REPORT_JSON = "error_analysis.json"
REPORT_MD = "error_analysis.md"

_DATE = re.compile(r"\d\s*(?:년|월|일|세기|년대|시|분)|(?:^|\s)(?:[1-9]|1[0-2])월|기원전")
_NUMBER = re.compile(r"\d|(?:^|\s)(?:한|두|세|네|다섯|여섯|일곱|여덟|아홉|열|수십|수백|수천)\s")


def answer_kind(text: str) -> str:
    """Coarse kind of an answer string: "date", "number", "name" or "other".

    A name is an answer whose last noun Kiwi tags as proper (NNP) or foreign script (SL, which
    in Korean text is nearly always a name: "Hz" aside).
    """
    if _DATE.search(text):
        return "date"
    if _NUMBER.search(text):
        return "number"
    nouns = [m.tag for m in kiwi().tokenize(text) if m.tag.startswith("NN") or m.tag == "SL"]
    return "name" if nouns and nouns[-1] in ("NNP", "SL") else "other"


def classify(example: SquadExample, prediction: Candidate, reachable: bool) -> str:
    """The bucket (a key of BUCKETS) of one prediction."""
    exact, _ = score_example(prediction.text, example)
    if exact:
        return "correct"
    if not reachable:
        return "outside_windows"
    if not prediction.text:
        return "no_answer"
    golds = [answer.text for answer in example.answers]
    for gold in golds:
        if prediction.text.startswith(gold) and is_particle_tail(prediction.text, len(gold)):
            return "particle_attached"
    for answer in example.answers:
        overlaps = prediction.start < answer.end and answer.start < prediction.end
        # The same words found at another mention count as a boundary error too.
        nested = answer.text in prediction.text or prediction.text in answer.text
        if overlaps or nested:
            return "boundary"
    kind = answer_kind(prediction.text)
    if kind != "other" and any(answer_kind(gold) == kind for gold in golds):
        return "wrong_entity"
    return "completely_wrong"


def reachable_questions(
    examples: list[SquadExample], features: list[InputFeatures]
) -> list[bool]:
    """Per example: does some window's context hold a gold answer from its first to last char?"""
    spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for feature in features:
        offsets = [offset for offset in feature.token_offsets if offset is not None]
        if offsets:
            spans[feature.example_index].append((offsets[0][0], offsets[-1][1]))
    reachable = []
    for index, example in enumerate(examples):
        if not example.answers:
            reachable.append(True)
            continue
        reachable.append(any(
            start <= first and last <= end
            for first, last in map(_stripped_span, example.answers)
            for start, end in spans[index]
        ))
    return reachable


def build_report(
    examples: list[SquadExample],
    predictions: dict[str, list[Candidate]],
    features: list[InputFeatures],
    worst: int = 20,
    snippet_chars: int = 60,
) -> dict[str, Any]:
    """Buckets, EM/F1 by question type and by gold length, and the `worst` most confident misses.

    `features` are the windows the predictions were read from (for `outside_windows`).
    """
    reachable = reachable_questions(examples, features)
    rows = []
    for example, can_reach in zip(examples, reachable, strict=True):
        candidates = predictions.get(example.qid) or [Candidate("", 0, 0, 0.0, 0.0, 0.0)]
        best = candidates[0]
        exact, f1 = score_example(best.text, example)
        rows.append({
            "example": example, "prediction": best, "exact_match": exact, "f1": f1,
            "bucket": classify(example, best, can_reach),
            "question_type": question_type(example.question),
            "answer_length": _length_bucket(example),
        })
    total = len(rows)
    buckets = {name: {"count": 0, "share": 0.0, "meaning": meaning}
               for name, meaning in BUCKETS.items()}
    for row in rows:
        buckets[row["bucket"]]["count"] += 1
    for bucket in buckets.values():
        bucket["share"] = round(100.0 * bucket["count"] / total, 2) if total else 0.0
    misses = sorted((row for row in rows if not row["exact_match"]),
                    key=lambda row: (row["f1"], -row["prediction"].score))
    return {
        "summary": _scores(rows),
        "buckets": buckets,
        "by_question_type": _breakdown(rows, "question_type", QUESTION_TYPES),
        "by_answer_length": _breakdown(rows, "answer_length",
                                       [name for name, _, _ in LENGTH_BUCKETS]),
        "worst": [_worst_entry(row, snippet_chars) for row in misses[:worst]],
    }


def write_report(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Write error_analysis.json and error_analysis.md into `directory`; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / REPORT_JSON, directory / REPORT_MD
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return [json_path, md_path]


def render_markdown(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        "# Reader error analysis", "",
        f"{summary['total']} questions: EM {summary['exact_match']:.2f}, "
        f"F1 {summary['f1']:.2f} (KorQuAD 1.0 metric).", "",
        "## Where the answers went", "",
        "| bucket | questions | share % | meaning |", "|---|---:|---:|---|",
    ]
    for name, bucket in report["buckets"].items():
        lines.append(f"| {name} | {bucket['count']} | {bucket['share']:.2f} | "
                     f"{bucket['meaning']} |")
    for title, key in (("By question type", "by_question_type"),
                       ("By gold answer length (characters)", "by_answer_length")):
        lines += ["", f"## {title}", "", "| group | questions | EM | F1 |", "|---|---:|---:|---:|"]
        for name, scores in report[key].items():
            lines.append(f"| {name} | {scores['total']} | {scores['exact_match']:.2f} | "
                         f"{scores['f1']:.2f} |")
    lines += ["", "## Worst misses (lowest F1, most confident first)", ""]
    for entry in report["worst"]:
        lines += [
            f"### {entry['qid']} ({entry['bucket']}, F1 {entry['f1']:.2f}, "
            f"score {entry['score']:.3f})", "",
            f"- question: {entry['question']}",
            f"- gold: {' | '.join(entry['gold'])}",
            f"- prediction: {entry['prediction'] or '(empty)'}",
            f"- context: …{_escape(entry['context_snippet'])}…", "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    total = len(rows)
    percent = 100.0 / total if total else 0.0
    return {
        "exact_match": round(percent * sum(row["exact_match"] for row in rows), 2),
        "f1": round(percent * sum(row["f1"] for row in rows), 2),
        "total": total,
    }


def _breakdown(rows: list[dict[str, Any]], key: str, order: list[str] | tuple[str, ...]) -> dict:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    return {name: _scores(groups[name]) for name in order if groups[name]}


def _length_bucket(example: SquadExample) -> str:
    length = len(example.answers[0].text) if example.answers else 0
    return next(name for name, low, high in LENGTH_BUCKETS if low <= length <= high)


def _worst_entry(row: dict[str, Any], snippet_chars: int) -> dict[str, Any]:
    example: SquadExample = row["example"]
    prediction: Candidate = row["prediction"]
    return {
        "qid": example.qid,
        "bucket": row["bucket"],
        "question_type": row["question_type"],
        "f1": round(row["f1"], 4),
        "score": prediction.score,
        "question": example.question,
        "gold": [answer.text for answer in example.answers],
        "prediction": prediction.text,
        "prediction_span": [prediction.start, prediction.end],
        "context_snippet": _snippet(example, prediction, snippet_chars),
        "normalized": {"gold": [normalize_answer(a.text) for a in example.answers],
                       "prediction": normalize_answer(prediction.text)},
        "candidate": asdict(prediction),
    }


def _snippet(example: SquadExample, prediction: Candidate, chars: int) -> str:
    """Context around the gold answer (and the prediction, when close): gold in [[ ]], the
    prediction in {{ }}."""
    marks = []
    if example.answers:
        marks.append((example.answers[0].start, example.answers[0].end, "[[", "]]"))
    if prediction.text:
        marks.append((prediction.start, prediction.end, "{{", "}}"))
    if not marks:
        return example.context[: 2 * chars]
    low = max(0, min(start for start, _, _, _ in marks) - chars)
    high = min(len(example.context), max(end for _, end, _, _ in marks) + chars)
    if high - low > 6 * chars and len(marks) == 2:
        # Prediction far from the gold: show the gold's neighbourhood only.
        marks = marks[:1]
        low, high = max(0, marks[0][0] - chars), min(len(example.context), marks[0][1] + chars)
    inserts = []
    for start, end, opening, closing in marks:
        inserts += [(start, 0, opening), (end, 1, closing)]
    text = example.context
    pieces, cursor = [], low
    for position, _, mark in sorted(inserts):
        position = min(max(position, low), high)
        pieces.append(text[cursor:position])
        pieces.append(mark)
        cursor = position
    pieces.append(text[cursor:high])
    return "".join(pieces).replace("\n", " ")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _stripped_span(answer: GoldAnswer) -> tuple[int, int]:
    # Token offsets never cover spaces, so a gold answer with spaces at its edges counts as
    # held when its words are.
    lead = len(answer.text) - len(answer.text.lstrip())
    trail = len(answer.text) - len(answer.text.rstrip())
    return answer.start + lead, answer.end - trail
