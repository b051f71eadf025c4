"""The pipeline's confidence: features, the JSON file, fitting, the open-domain sets and metrics,
and the shipped reader saying "모르겠어요" to questions its documents do not answer."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from korqa.corpus.paragraph import Paragraph
from korqa.evaluation.open_domain import (
    WithoutArticle,
    auroc,
    coverage_accuracy,
    expected_calibration_error,
    summarise,
)
from korqa.open_sets import build_open_sets
from korqa.paths import default_reader_dir
from korqa.pipeline.confidence import (
    CONFIDENCE_FILE,
    FEATURES,
    Confidence,
    answer_features,
    fit_confidence,
    longest_match,
    question_coverage,
    threshold_for_precision,
)


def identity_confidence(feature: str = "piece_coverage", threshold: float = 0.5) -> Confidence:
    """A confidence that is sigmoid(one feature), calibrated as is."""
    coef = np.array([1.0 if name == feature else 0.0 for name in FEATURES])
    grid = np.linspace(0.0, 1.0, 11)
    return Confidence(FEATURES, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), coef, 0.0,
                      grid, grid, threshold, 0.7, {"questions": 3})


class CharTokenizer:
    """Every character a piece of weight 1, except "의" (a particle) of weight 0.1."""

    def encode_batch(self, texts: list[str]) -> list[SimpleNamespace]:
        return [SimpleNamespace(ids=[ord(c) for c in text if not c.isspace()]) for text in texts]

    def piece_weights(self) -> np.ndarray:
        weights = np.ones(0x10000)
        weights[ord("의")] = 0.1
        return weights


# ---- features --------------------------------------------------------------------------------


def test_coverage_weighs_the_missing_name_and_counts_the_title():
    covered, bigrams = question_coverage("에베레스트의 높이", "북한산",
                                         "북한산의 높이는 836미터이다.", CharTokenizer())
    # 높, 이 and 의 present (2.1 of 7.1); 에베레스트 missing, each syllable weighing 1.
    assert covered == pytest.approx(2.1 / 7.1)
    assert bigrams == pytest.approx(1 / 6)  # of 에베 베레 레스 스트 트의 높이, only 높이
    covered, _ = question_coverage("세종 높이", "세종", "높이는 1397미터", CharTokenizer())
    assert covered == 1.0  # 세종 is in the title only


def test_longest_match_is_the_longest_copied_run_of_the_question():
    # "북한산의높이는" of "북한산의높이는?": spaces do not count.
    assert longest_match("북한산의 높이는?", "서울의 북한산의 높이는 836미터") == \
        pytest.approx(7 / 8)
    assert longest_match("에베레스트", "북한산") == 0.0


def test_answer_type_against_the_question_word():
    when = answer_features("세종은 언제 태어났나?", "조선", 0.9, 0.01, 0.5, (1, 1),
                           (1, 1))
    assert when["type_mismatch"] == 1.0 and when["type_언제"] == 1.0
    dated = answer_features("세종은 언제 태어났나?", "1397년", 0.9, 0.01, 0.5, (1, 1),
                            (1, 1))
    assert dated["type_mismatch"] == 0.0 and dated["answer_digit"] == 1.0
    who = answer_features("한글을 만든 사람은 누구인가?", "1443년", 0.9, 0.01, 0.5, (1, 1),
                          (1, 1))
    assert who["type_mismatch"] == 1.0
    assert set(when) == set(FEATURES)


# ---- the JSON file ---------------------------------------------------------------------------


def test_confidence_round_trips_through_json_and_applies_the_isotonic_map(tmp_path):
    confidence = identity_confidence()
    confidence.iso_x, confidence.iso_y = np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.1, 0.9])
    loaded = Confidence.load(confidence.save(tmp_path / CONFIDENCE_FILE))
    values = dict.fromkeys(FEATURES, 0.0)  # sigmoid(0) = 0.5 -> 0.1
    assert loaded.probability(values) == pytest.approx(0.1)
    values["piece_coverage"] = np.log(3.0)  # sigmoid = 0.75 -> halfway from 0.1 to 0.9
    assert loaded.probability(values) == pytest.approx(0.5)
    assert loaded.threshold == 0.5 and loaded.fitted_on == {"questions": 3}
    assert "pickle" not in (tmp_path / CONFIDENCE_FILE).read_text()


def test_a_bad_confidence_file_names_the_file_field_and_fix(tmp_path):
    path = tmp_path / CONFIDENCE_FILE
    data = identity_confidence().to_json()
    del data["coef"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"confidence\.json.*'coef'.*calibrate-confidence"):
        Confidence.load(path)
    data = identity_confidence().to_json()
    data["features"][0] = "no_such_feature"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no_such_feature"):
        Confidence.load(path)


# ---- fitting ---------------------------------------------------------------------------------


def test_threshold_is_the_lowest_that_keeps_the_precision():
    probability = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([True, True, False, True, False, False])
    # Answering down to 0.6: 3 of 4 right (0.75); down to 0.5: 3 of 5 (0.6).
    assert threshold_for_precision(probability, right, 0.75) == 0.6
    assert threshold_for_precision(probability, right, 0.6) == 0.5
    assert threshold_for_precision(probability, right, 1.0) == 0.8
    assert threshold_for_precision(np.array([0.3]), np.array([False]), 0.5) == 1.0


def test_fit_learns_answerability_and_calibrates_to_exact_match_on_held_out_folds():
    rng = np.random.default_rng(0)
    rows, answerable, right, groups = [], [], [], []
    for i in range(800):
        coverage = float(rng.uniform())
        row = dict.fromkeys(FEATURES, 0.0)
        row.update(piece_coverage=coverage, log_span=float(rng.normal()))
        rows.append(row)
        answerable.append(bool(rng.uniform() < coverage))  # P(answerable) = coverage
        right.append(answerable[-1] and bool(rng.uniform() < 0.7))  # 70 % of those exact
        groups.append(f"article-{i % 40}")
    fit = fit_confidence(rows, answerable, right, groups, precision=0.6)
    c = fit.confidence
    low, high = (dict(rows[0], piece_coverage=v) for v in (0.1, 0.9))
    # P(right) = 0.7 · coverage: about 0.07 and 0.63.
    assert c.probability(low) < 0.2 and 0.5 < c.probability(high) < 0.75
    held = fit.held_out
    assert expected_calibration_error(held, np.array(right, dtype=float)) < 0.06
    answered = held >= c.threshold
    assert np.mean(np.array(right)[answered]) >= 0.6


# ---- sets and metrics ------------------------------------------------------------------------


def test_without_article_drops_its_paragraphs_and_keeps_the_order():
    hits = [(Paragraph(f"p{i}", title, "…", title), 10.0 - i)
            for i, title in enumerate(["서울", "부산", "서울", "김치", "부산"])]
    index = SimpleNamespace(search=lambda query, k: hits[:k])
    search = WithoutArticle(index, article_paragraphs=2)
    assert [p.id for p, _ in search.search("q", 3)] == ["p0", "p1", "p2"]
    search.exclude_title = "서울"
    assert [(p.id, s) for p, s in search.search("q", 3)] == [("p1", 9.0), ("p3", 7.0),
                                                             ("p4", 6.0)]


def test_open_sets_split_like_korquad_and_never_mix(korquad_dev, tmp_path):
    chitchat = tmp_path / "chat.csv"
    chitchat.write_text("Q,A,label\n" + "".join(f"질문 {i}?,답,0\n" for i in range(20)),
                        encoding="utf-8")
    test = build_open_sets(korquad_dev, chitchat, "test", answerable=30, offtopic=3)
    validation = build_open_sets(korquad_dev, chitchat, "validation", answerable=30)
    kinds = [q.kind for q in test]
    assert kinds.count("answerable") == kinds.count("unanswerable") == 30
    assert kinds.count("offtopic") == 3
    assert [q.kind for q in validation].count("offtopic") == 15
    assert all(q.exclude_title == q.group for q in test if q.kind == "unanswerable")
    assert {q.group for q in test if q.kind != "offtopic"}.isdisjoint(
        {q.group for q in validation if q.kind != "offtopic"})
    assert {int(q.qid.split("-")[1]) % 5 for q in test if q.kind == "offtopic"} == {4}
    assert 4 not in {int(q.qid.split("-")[1]) % 5 for q in validation if q.kind == "offtopic"}


def test_auroc_ece_and_coverage_on_worked_examples():
    score = np.array([0.9, 0.8, 0.3, 0.1])
    right = np.array([1.0, 0.0, 1.0, 0.0])
    assert auroc(score, right) == pytest.approx(0.75)  # 3 of 4 right/wrong pairs in order
    # Bins: 0.9 (right) |0.9-1|, 0.8 (wrong) 0.8, 0.3 (right) 0.7, 0.1 (wrong) 0.1.
    assert expected_calibration_error(score, right) == pytest.approx((0.1 + 0.8 + 0.7 + 0.1) / 4)
    coverage, accuracy = coverage_accuracy(score, right)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert accuracy.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])


def test_summary_counts_a_dont_know_as_wrong_on_the_answerable_set():
    rows = [{"kind": "answerable", "known": True, "score": 0.9, "em": 1.0, "f1": 1.0,
             "guess_em": 1.0, "guess_f1": 1.0, "guess_score": 0.9},
            {"kind": "answerable", "known": False, "score": 0.2, "em": 0.0, "f1": 0.0,
             "guess_em": 1.0, "guess_f1": 1.0, "guess_score": 0.2},
            {"kind": "unanswerable", "known": False, "score": 0.1, "em": 0.0, "f1": 0.0,
             "guess_em": 0.0, "guess_f1": 0.0, "guess_score": 0.1},
            {"kind": "offtopic", "known": True, "score": 0.6, "em": 0.0, "f1": 0.0,
             "guess_em": 0.0, "guess_f1": 0.0, "guess_score": 0.6}]
    summary = summarise(rows)
    assert summary["answerable"]["f1"] == 50.0 and summary["answerable"]["abstention"] == 50.0
    assert summary["answerable"]["best_guess_f1"] == 100.0
    assert summary["unanswerable"]["abstention"] == 100.0
    assert summary["offtopic"]["abstention"] == 0.0
    assert summary["confidence"]["precision_answered"] == 50.0


# ---- the shipped reader and its shipped confidence ---------------------------------------------

DOCUMENTS = {
    "세종대왕": "세종대왕은 조선의 제4대 왕이다. 세종대왕은 1397년에 한양에서 태어났다. 그는 "
                "1443년에 훈민정음을 창제하였고 1446년에 이를 반포하였다. 한글날은 매년 "
                "10월 9일로, 훈민정음 반포를 기념하는 날이다.",
    "서울": "서울은 대한민국의 수도이다. 서울은 1394년 조선의 태조 이성계가 도읍을 한양으로 "
            "옮기면서 수도가 되었다. 서울의 북쪽에는 북한산이 있으며, 북한산의 높이는 836미터이다.",
    "김치": "김치는 배추와 무를 소금에 절인 뒤 고춧가루와 젓갈 같은 양념에 버무려 발효시킨 한국의 "
            "전통 음식이다. 김장은 겨울 동안 먹을 김치를 늦가을에 한꺼번에 담그는 일이다. 김장 "
            "문화는 2013년에 유네스코 인류무형문화유산에 등재되었다.",
    "부산": "부산은 대한민국 제2의 도시이자 가장 큰 항구 도시이다. 해운대 해수욕장에는 여름마다 "
            "많은 관광객이 찾아온다. 부산국제영화제는 1996년에 처음 열렸다.",
}
NOT_ANSWERED = ["에베레스트산의 높이는 얼마인가?", "이순신 장군은 몇 년에 태어났나?",
                "오늘 날씨 어때?", "일본의 수도는 어디인가?"]
ANSWERED = [("세종대왕은 몇 년에 태어났나?", "1397년"),
            ("북한산의 높이는 얼마인가?", "836미터"),
            ("조선의 도읍을 한양으로 옮긴 왕은 누구인가?", "이성계"),
            ("김장 문화가 유네스코 인류무형문화유산에 등재된 해는?", "2013년"),
            ("부산국제영화제는 언제 처음 열렸나?", "1996년")]


@pytest.fixture(scope="module")
def shipped_pipeline(tmp_path_factory):
    reader_dir = default_reader_dir()
    if not (reader_dir / CONFIDENCE_FILE).is_file():
        pytest.skip(f"no shipped reader with a {CONFIDENCE_FILE} at {reader_dir}")
    from korqa.pipeline import open_pipeline

    folder = tmp_path_factory.mktemp("documents")
    for title, text in DOCUMENTS.items():
        (folder / f"{title}.txt").write_text(text + "\n", encoding="utf-8")
    with open_pipeline(corpus=[folder]) as pipeline:
        yield pipeline


@pytest.mark.parametrize("question", NOT_ANSWERED)
def test_shipped_reader_says_it_does_not_know_what_the_documents_do_not_say(
        shipped_pipeline, question):
    answer = shipped_pipeline.ask(question)
    threshold = shipped_pipeline.confidence.threshold
    assert answer.known is False and answer.answer == ""
    # The don't-know shows the guess, under any confidence korqa answers with.
    assert answer.candidates and answer.score == answer.candidates[0].score < threshold


@pytest.mark.parametrize(("question", "expected"), ANSWERED)
def test_shipped_reader_still_answers_what_the_documents_say(shipped_pipeline, question,
                                                             expected):
    answer = shipped_pipeline.ask(question)
    assert answer.known is True and expected in answer.answer
    assert shipped_pipeline.confidence.threshold <= answer.score <= 1.0
    assert answer.score == answer.candidates[0].score
    assert answer.candidates[0].reader_score is not None


def test_a_calibrated_reader_puts_the_probability_in_the_answer_json(shipped_pipeline):
    data = shipped_pipeline.ask("북한산의 높이는 얼마인가?").to_json()
    assert {"score", "known"} <= set(data)
    assert {"reader_score", "retrieval_score"} <= set(data["candidates"][0])
    assert data["score"] == data["candidates"][0]["score"]
    assert data["candidates"][0]["reader_score"] != data["score"]


def test_a_calibrated_reader_reads_its_confidence_file():
    path = Path(default_reader_dir()) / CONFIDENCE_FILE
    if not path.is_file():
        pytest.skip("no shipped confidence")
    confidence = Confidence.load(path)
    assert 0.0 < confidence.threshold < 1.0
    assert np.all(np.diff(confidence.iso_y) >= 0)  # calibrated probability never falls
