"""How sure the pipeline is of an answer: the probability that it is exactly right.

The reader was trained on KorQuAD 1.0, where every question has an answer in its paragraph, so
its span score says "the best span here", not "the answer is here": asked where 에베레스트산 is
over a paragraph about 북한산 it gives 북한산's height with 0.95. And the fused score gives any
span of the top paragraph at least 0.8. So the shown confidence comes from a small verifier:
a logistic regression over what the pipeline already has (reader span and "no answer" scores,
retrieval, how much of the question the paragraph holds, the answer's type against the
question word), then an isotonic map, fitted on held-out predictions, from its output to the
rate of exact matches. Below a threshold chosen on validation for a stated precision the
pipeline says it does not know.

`fit_confidence` fits it (scikit-learn, imported only there); `Confidence` applies it with
numpy from `confidence.json` beside the reader's weights, so `korqa ask` loads no more than a
small JSON file for it. A reader without one (freshly trained, not yet calibrated) gets
`UNCALIBRATED`: its span score taken as the probability, with `SPAN_SCORE_THRESHOLD`. Either
way the pipeline decides on one quantity, the probability, against one threshold (the
calibration's own, or `PipelineConfig.threshold`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from korqa.pipeline.answers import AnswerCandidate, RetrievedParagraph
from korqa.questions import QUESTION_TYPES, question_type

if TYPE_CHECKING:
    from korqa.reader.predict import Candidate

CONFIDENCE_FILE = "confidence.json"
FORMAT = "korqa-confidence/1"

FEATURES: tuple[str, ...] = (
    "log_span",  # log of the reader's span score (softmax over spans + "no answer")
    "log_null",  # log of the "no answer" share of the answer's paragraph
    "span_margin",  # span score minus the best other candidate's
    "piece_coverage",  # share of the question's pieces (by weight) found in the paragraph
    "bigram_coverage",  # share of the question's character bigrams found in the paragraph
    "local_piece_coverage",  # the same two within LOCAL_RADIUS characters of the answer:
    "local_bigram_coverage",  # a question is asked about the sentence holding its answer
    "longest_match",  # longest run of the question's characters found as is near the answer
    "word_coverage",  # share of the question's words (particles cut) found in the paragraph
    "first_word_found",  # its first word, mostly the topic ("이순신 장군은 …"), is there
    "answer_digit",  # the answer holds a digit
    "log_answer_chars",
    "type_mismatch",  # 언제 without a date, 몇 without a number, 누구/어디 with digits
    *(f"type_{name}" for name in QUESTION_TYPES),
)

# Retrieval scores are left out on purpose: the raw BM25 score's scale follows the corpus (idf
# over 4 documents is a fraction of idf over 961 paragraphs), and so does the gap between the
# first and second paragraph (a 4-document index always has a lone clear hit). They added
# nothing on the validation sets and made a small index of one's own documents look
# answerable (the model card has the numbers).
_DATE = re.compile(r"\d|년|월|일|세기|시대|시절|때|초|말|무렵|전후")
_NUMBER = re.compile(r"\d|[한두세네]\s?[가-힣]|여러|수십|수백|수천|수만|절반|첫|하나|둘|셋|넷")
_WORD = re.compile(r"[0-9A-Za-z가-힣]+")
# Characters either side of an answer that count as its neighbourhood (about a sentence each).
LOCAL_RADIUS = 80
# Particles and endings cut off a question's words before looking for them (no Kiwi: `korqa
# ask` must not load it for this); longest first, so "에서" goes before "에".
_PARTICLE = re.compile(r"(?:이라는|라는|이란|에서|에게|으로|부터|까지|처럼|보다|은|는|이|가|을|를|"
                       r"의|에|로|와|과|도|만|란)$")


class PieceTokenizer(Protocol):
    """What the coverage features need of a tokenizer (`korqa.tokenization.Tokenizer` is one)."""

    def encode_batch(self, texts: list[str]) -> list[Any]: ...

    def piece_weights(self) -> np.ndarray: ...


class Calibration(Protocol):
    """Turns the pipeline's read of a question into the probability that each candidate is
    exactly right; under `threshold` the pipeline says it does not know."""

    threshold: float

    def probabilities(self, question: str, ranked: Sequence[AnswerCandidate],
                      retrieved: Sequence[RetrievedParagraph],
                      readings: Sequence[Sequence[Candidate]],
                      tokenizer: PieceTokenizer) -> list[float]: ...


# On the reader's span score (a softmax over every span of the paragraph plus a "no answer"
# event): below it the best span got less than a tenth of the mass.
SPAN_SCORE_THRESHOLD = 0.1


@dataclass(frozen=True)
class SpanScore:
    """The fallback calibration of a reader without `confidence.json`: the reader's span score
    as the probability. It is overconfident on paragraphs that do not hold the answer (see the
    module docstring), which is what `korqa calibrate-confidence` fixes."""

    threshold: float = SPAN_SCORE_THRESHOLD

    def probabilities(self, question: str, ranked: Sequence[AnswerCandidate],
                      retrieved: Sequence[RetrievedParagraph],
                      readings: Sequence[Sequence[Candidate]],
                      tokenizer: PieceTokenizer) -> list[float]:
        return [c.reader_score or 0.0 for c in ranked]


UNCALIBRATED = SpanScore()


@dataclass
class Confidence:
    """A fitted verifier and its calibration, as stored in `confidence.json`."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    iso_x: np.ndarray  # isotonic breakpoints: verifier probability -> rate of exact matches
    iso_y: np.ndarray
    threshold: float  # under this probability the pipeline says it does not know
    precision: float  # the precision on validation the threshold was chosen for
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def verifier(self, values: dict[str, float]) -> float:
        """The logistic regression's probability, before calibration."""
        x = np.array([values[name] for name in self.features], dtype=np.float64)
        z = float(((x - self.mean) / self.scale) @ self.coef + self.intercept)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def probability(self, values: dict[str, float]) -> float:
        """The calibrated probability that the answer these features describe is exactly right."""
        return float(np.interp(self.verifier(values), self.iso_x, self.iso_y))

    def probabilities(self, question: str, ranked: Sequence[AnswerCandidate],
                      retrieved: Sequence[RetrievedParagraph],
                      readings: Sequence[Sequence[Candidate]],
                      tokenizer: PieceTokenizer) -> list[float]:
        """The probability of each of `ranked` (the pipeline's fused candidates)."""
        return [self.probability(values) for values in
                candidate_features(question, ranked, retrieved, readings, tokenizer)]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(self.features),
                "mean": _floats(self.mean), "scale": _floats(self.scale),
                "coef": _floats(self.coef), "intercept": round(self.intercept, 6),
                "isotonic": {"x": _floats(self.iso_x), "y": _floats(self.iso_y)},
                "threshold": round(self.threshold, 6), "precision": self.precision,
                "fitted_on": self.fitted_on}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Confidence:
        """Read a `confidence.json`; errors name the file and the field, and how to remake it."""
        path = Path(path)
        fix = "remake it with `korqa calibrate-confidence`"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable confidence file ({error}); {fix}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: field 'format' must be {FORMAT!r}; {fix}")
        try:
            features = tuple(data["features"])
            arrays = [np.asarray(data[name], dtype=np.float64)
                      for name in ("mean", "scale", "coef")]
            iso_x = np.asarray(data["isotonic"]["x"], dtype=np.float64)
            iso_y = np.asarray(data["isotonic"]["y"], dtype=np.float64)
            confidence = cls(features, *arrays, float(data["intercept"]), iso_x, iso_y,
                             float(data["threshold"]), float(data["precision"]),
                             dict(data.get("fitted_on", {})))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: missing or malformed field {error}; {fix}") from None
        unknown = set(features) - set(FEATURES)
        if unknown or any(len(a) != len(features) for a in arrays) or len(iso_x) != len(iso_y) \
                or len(iso_x) == 0:
            raise ValueError(f"{path}: features {sorted(unknown) or features} do not match this "
                             f"korqa's (or the arrays' lengths differ); {fix}")
        return confidence


def load_confidence(model_dir: str | Path) -> Confidence | None:
    """The reader's calibration (`CONFIDENCE_FILE` in its directory), or None when it has none."""
    path = Path(model_dir) / CONFIDENCE_FILE
    return Confidence.load(path) if path.is_file() else None


def reader_calibration(model_dir: str | Path | None) -> Calibration:
    """What decides for a reader loaded from `model_dir`: its confidence.json, else (or for a
    reader made in memory, `model_dir` None) `UNCALIBRATED`."""
    fitted = load_confidence(model_dir) if model_dir is not None else None
    return UNCALIBRATED if fitted is None else fitted


def _floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


# ---- features --------------------------------------------------------------------------------


def question_coverage(question: str, title: str, text: str,
                      tokenizer: PieceTokenizer) -> tuple[float, float]:
    """(piece coverage, bigram coverage): how much of a question a paragraph holds.

    Pieces are the reader's tokenizer's, weighted by −log p (a name weighs ~12, a particle ~5),
    so "에베레스트산의 높이는?" over a paragraph about 북한산's 높이 misses a heavy piece.
    Bigrams are of the question's characters within each word. The title counts as part of
    the paragraph (a page about 세종대왕 may never repeat the name).
    """
    question_enc, title_enc, text_enc = tokenizer.encode_batch([question, title or " ", text])
    weights = tokenizer.piece_weights()
    asked = set(question_enc.ids)
    present = set(title_enc.ids) | set(text_enc.ids)
    total = float(sum(weights[i] for i in asked))
    covered = float(sum(weights[i] for i in asked & present))
    bigrams = {word[i:i + 2] for word in _WORD.findall(question) for i in range(len(word) - 1)}
    haystack = f"{title}\n{text}"
    found = sum(bigram in haystack for bigram in bigrams)
    return covered / total if total else 0.0, found / len(bigrams) if bigrams else 0.0


def longest_match(question: str, text: str) -> float:
    """The longest run of the question's characters (spaces ignored) found in `text`, as a
    share of the question: KorQuAD-style questions copy phrases of their answer's sentence."""
    from difflib import SequenceMatcher

    asked = "".join(question.split())
    if not asked:
        return 0.0
    matcher = SequenceMatcher(None, asked, "".join(text.split()), autojunk=False)
    return matcher.find_longest_match(0, len(asked), 0, matcher.b and len(matcher.b)).size \
        / len(asked)


def word_coverage(question: str, title: str, text: str) -> tuple[float, float]:
    """(share of the question's words found in the title or text, 1 if its first word is),
    each word with a trailing particle cut ("이순신" of "이순신은"); one-letter stems skipped."""
    haystack = f"{title}\n{text}"
    stems = [_PARTICLE.sub("", word) for word in _WORD.findall(question)]
    stems = [stem for stem in stems if len(stem) > 1]
    if not stems:
        return 0.0, 0.0
    found = [stem in haystack for stem in stems]
    return sum(found) / len(found), float(found[0])


def answer_features(question: str, answer: str, span: float, null: float, margin: float,
                    coverage: tuple[float, float], local: tuple[float, float],
                    longest: float = 0.0, words: tuple[float, float] = (0.0, 0.0),
                    ) -> dict[str, float]:
    """The verifier's inputs for one answer (see FEATURES)."""
    kind = question_type(question)
    digit = any(ch.isdigit() for ch in answer)
    mismatch = ((kind == "언제" and not _DATE.search(answer))
                or (kind == "몇" and not _NUMBER.search(answer))
                or (kind in ("누구", "어디") and digit))
    values = {"log_span": math.log(max(span, 1e-6)), "log_null": math.log(max(null, 1e-6)),
              "span_margin": margin, "piece_coverage": coverage[0],
              "bigram_coverage": coverage[1], "local_piece_coverage": local[0],
              "local_bigram_coverage": local[1], "longest_match": longest,
              "word_coverage": words[0], "first_word_found": words[1],
              "answer_digit": float(digit), "log_answer_chars": math.log(1 + len(answer)),
              "type_mismatch": float(mismatch)}
    values.update({f"type_{name}": float(kind == name) for name in QUESTION_TYPES})
    return values


def candidate_features(question: str, ranked: Sequence[AnswerCandidate],
                       retrieved: Sequence[RetrievedParagraph],
                       readings: Sequence[Sequence[Candidate]],
                       tokenizer: PieceTokenizer) -> list[dict[str, float]]:
    """Features of every fused candidate in `ranked`, from the pipeline's own read."""
    null = {item.paragraph.id: (candidates[0].null_score if candidates else 1.0)
            for item, candidates in zip(retrieved, readings, strict=True)}
    coverage: dict[str, tuple[float, float]] = {}
    out = []
    for index, c in enumerate(ranked):
        if c.paragraph_id not in coverage:
            coverage[c.paragraph_id] = question_coverage(question, c.title, c.context, tokenizer)
        near = c.context[max(0, c.start - LOCAL_RADIUS):c.end + LOCAL_RADIUS]
        local = question_coverage(question, "", near, tokenizer)
        longest = longest_match(question, near)
        others = [o.reader_score or 0.0 for j, o in enumerate(ranked) if j != index]
        span = c.reader_score or 0.0
        out.append(answer_features(question, c.answer, span, null.get(c.paragraph_id, 1.0),
                                   span - max(others, default=0.0), coverage[c.paragraph_id],
                                   local, longest,
                                   word_coverage(question, c.title, c.context)))
    return out


# ---- fitting -----------------------------------------------------------------------------------


@dataclass
class Fit:
    """`fit_confidence`'s result: the model and its held-out (out-of-fold) probabilities."""

    confidence: Confidence
    held_out: np.ndarray  # calibrated probability of each row, from a model that never saw it


def fit_confidence(rows: Sequence[dict[str, float]], answerable: Sequence[bool],
                   right: Sequence[bool], groups: Sequence[str], precision: float,
                   folds: int = 5, c: float = 1.0) -> Fit:
    """Fit the verifier on `rows` (features of each question's best answer).

    The logistic regression learns `answerable` (the index holds the question's article: the
    answer is there to be found), and the isotonic map turns its probability into the rate of
    `right` (the best answer is an exact match). Fitted on exact match directly, the regression
    spends its weights on telling exact from partial answers, which no feature here sees well,
    and tells answerable from unanswerable questions worse (the model card has the numbers).

    The regression is fitted `folds` times on all but one group fold (groups: the article, so
    one article's questions never judge each other) to get every row's held-out probability;
    the isotonic map is fitted on those, and the final regression on every row. `held_out` are
    the rows' calibrated probabilities through the regression and map of folds without them;
    the threshold is the lowest of those at which the answered rows are right at `precision` or
    better.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    x = np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float64)
    a = np.asarray(answerable, dtype=np.int64)
    y = np.asarray(right, dtype=np.int64)
    if len(set(a.tolist())) < 2 or len(set(y.tolist())) < 2:
        raise ValueError("fitting the confidence needs answerable and unanswerable questions, "
                         "and right and wrong answers")
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"precision must be in (0, 1], got {precision}")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0.0] = 1.0
    z = (x - mean) / scale

    def regression() -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=2000)

    def isotonic() -> IsotonicRegression:
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")

    fold_list = list(GroupKFold(n_splits=folds).split(z, a, groups))
    verifier_held_out = np.zeros(len(y))
    for train, test in fold_list:
        verifier_held_out[test] = regression().fit(z[train], a[train]).predict_proba(z[test])[:, 1]
    # Calibrated held out too: each fold through a map fitted on the other folds, so the
    # threshold and the reported calibration are not judged on the map's own data.
    calibrated = np.zeros(len(y))
    for train, test in fold_list:
        fold_map = isotonic().fit(verifier_held_out[train], y[train])
        calibrated[test] = fold_map.predict(verifier_held_out[test])
    final_map = isotonic().fit(verifier_held_out, y)
    final = regression().fit(z, a)
    threshold = threshold_for_precision(calibrated, y.astype(bool), precision)
    confidence = Confidence(FEATURES, mean, scale, final.coef_[0], float(final.intercept_[0]),
                            np.asarray(final_map.X_thresholds_, dtype=np.float64),
                            np.asarray(final_map.y_thresholds_, dtype=np.float64),
                            threshold, precision)
    return Fit(confidence, np.asarray(calibrated, dtype=np.float64))


def threshold_for_precision(probability: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The lowest threshold t such that the rows with probability ≥ t are right at `precision`
    or better (1.0, i.e. answer nothing, when no t reaches it)."""
    order = np.argsort(-probability, kind="stable")
    hits = np.cumsum(right[order])
    answered = np.arange(1, len(order) + 1)
    best = 1.0
    for i in range(len(order)):
        # A threshold can only fall between distinct probabilities.
        if i + 1 < len(order) and probability[order[i + 1]] == probability[order[i]]:
            continue
        if hits[i] / answered[i] >= precision:
            best = float(probability[order[i]])
    return best
